//! The Rust reference for the binding benchmarks (bindings/c/bench.c and
//! bindings/python/bench.py do the same): an embedded broker, produce -> consume
//! round trips of one 100-byte record (acks=written, then fetched back, one
//! thread), and produce throughput of 100-byte records, 1000 per call.
//! Run: `cargo run --release --example embedded_roundtrip -- DATA_DIR [ROUNDS]`
//! (`RINGMQ_BUSY_POLL=1` spins the shard and this thread instead of sleeping.)

use bytes::BytesMut;
use ringmq::batch::BatchBuilder;
use ringmq::client::Retention;
use ringmq::embedded::Broker;
use ringmq::log::Acks;
use ringmq::protocol::fetch::FetchRequest;
use ringmq::server::ServerConfig;
use std::time::Instant;

fn batch(records: usize) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    for _ in 0..records {
        builder.append(ringmq::log::partition::now_ms(), None, Some(&[b'v'; 100]), &[]).unwrap();
    }
    builder.finish().unwrap()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: embedded_roundtrip DATA_DIR [ROUNDS]");
    let rounds: usize = args.next().map_or(20_000, |r| r.parse().expect("ROUNDS is a number"));
    let mut config = ServerConfig::new(&dir);
    config.shards = 1;
    config.busy_poll = std::env::var("RINGMQ_BUSY_POLL").is_ok_and(|v| v == "1");
    let broker = Broker::open(config).unwrap();
    let client = broker.client();
    client.create_topic("bench", 1, Retention::Unlimited, Retention::Unlimited).unwrap();
    let mut latencies = Vec::with_capacity(rounds);
    for offset in 0..rounds as u64 {
        let start = Instant::now();
        // Built per call, as the C and Python paths build theirs.
        client.produce("bench", 0, BytesMut::from(&batch(1)[..]), Acks::Written).unwrap();
        let request = FetchRequest {
            topic: "bench".into(),
            partition: 0,
            offset,
            max_bytes: 1 << 20,
            max_wait_ms: 1000,
            min_bytes: 1,
        };
        let records = ringmq::client::decode_records(&client.fetch(request).unwrap().records, offset).unwrap();
        assert_eq!(records.len(), 1);
        latencies.push(start.elapsed().as_secs_f64() * 1e6);
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    println!(
        "Rust embedded produce->consume (100 B, acks=written): p50 {:.1} us, p99 {:.1} us ({rounds} rounds)",
        latencies[rounds / 2],
        latencies[rounds * 99 / 100]
    );
    let calls = rounds / 20 + 1;
    let start = Instant::now();
    for _ in 0..calls {
        client.produce("bench", 0, BytesMut::from(&batch(1000)[..]), Acks::Written).unwrap();
    }
    let rate = (calls * 1000) as f64 / start.elapsed().as_secs_f64();
    println!("Rust embedded produce 100 B records, 1000 per call, acks=written: {rate:.0} records/s");
    broker.close().unwrap();
}
