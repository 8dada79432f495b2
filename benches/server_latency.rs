//! Round trips through a real server over loopback TCP, from the Rust client,
//! next to the reference measured in the same run: a plain TCP ping-pong of 64
//! bytes (std sockets, one thread echoing). Prints p50/p99/p99.9 in microseconds:
//!
//! - produce of one small record, acks=written, and acks=durable;
//! - a fetch long-polling at the end of a partition, woken by a produce (time from
//!   sending the produce to receiving the fetch response);
//! - throughput of one producer sending 1 KiB x 1000-record batches, acks=written,
//!   pipelined four deep.
//!
//! Run: `cargo bench --bench server_latency` (RINGMQ_BENCH_ROUNDS to change the
//! sample count; data in target/bench-data).

use hdrhistogram::Histogram;
use ringmq::batch::BatchBuilder;
use ringmq::client::{Client, Connection, Retention};
use ringmq::log::Acks;
use ringmq::protocol::fetch::FetchRequest;
use ringmq::protocol::produce::ProduceRequest;
use ringmq::server::{self, ServerConfig};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()
}

fn report(name: &str, histogram: &Histogram<u64>) {
    println!(
        "{name:<44} n={:<7} p50={:>7} us  p99={:>7} us  p99.9={:>7} us  max={:>7} us",
        histogram.len(),
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.99),
        histogram.value_at_quantile(0.999),
        histogram.max()
    );
}

fn ping_pong(rounds: usize) -> Histogram<u64> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let echo = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_nodelay(true).unwrap();
        let mut buffer = [0u8; 64];
        while stream.read_exact(&mut buffer).is_ok() {
            if stream.write_all(&buffer).is_err() {
                break;
            }
        }
    });
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut histogram = histogram();
    let mut buffer = [7u8; 64];
    for _ in 0..rounds {
        let start = Instant::now();
        stream.write_all(&buffer).unwrap();
        stream.read_exact(&mut buffer).unwrap();
        histogram.record(start.elapsed().as_micros().max(1) as u64).unwrap();
    }
    drop(stream);
    echo.join().unwrap();
    histogram
}

fn small_batch() -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    builder.append(ringmq::log::partition::now_ms(), None, Some(&[0x61; 100]), &[]).unwrap();
    builder.finish().unwrap()
}

fn produce_round_trips(client: &mut Client, acks: Acks, rounds: usize) -> Histogram<u64> {
    let batch = small_batch();
    let mut histogram = histogram();
    for _ in 0..rounds {
        let start = Instant::now();
        client.produce("latency", 0, &batch, acks).unwrap();
        histogram.record(start.elapsed().as_micros().max(1) as u64).unwrap();
    }
    histogram
}

fn woken_fetches(client: &mut Client, address: SocketAddr, rounds: usize) -> Histogram<u64> {
    let mut histogram = histogram();
    let batch = small_batch();
    let shard = client.topic("wake").unwrap().partition_shards[0];
    let metadata = client.refresh_metadata().unwrap();
    let owner = SocketAddr::new(address.ip(), metadata.shards[shard as usize].port);
    let mut fetcher = Connection::connect(owner).unwrap();
    let start_offset = client.list_offsets("wake", 0, -1).unwrap().latest as u64;
    for offset in start_offset..start_offset + rounds as u64 {
        let request = FetchRequest {
            topic: "wake".into(),
            partition: 0,
            offset,
            max_bytes: 1 << 20,
            max_wait_ms: 5_000,
            min_bytes: 1,
        };
        fetcher.send(|id| request.encode(id)).unwrap();
        // Let the fetch reach the server and park before producing.
        std::thread::sleep(Duration::from_micros(300));
        let start = Instant::now();
        client.produce("wake", 0, &batch, Acks::None).unwrap();
        let (header, _) = fetcher.receive().unwrap();
        assert_eq!(header.error_code, 0);
        histogram.record(start.elapsed().as_micros().max(1) as u64).unwrap();
    }
    histogram
}

fn throughput(address: SocketAddr, client: &mut Client, seconds: u64) -> (f64, f64) {
    let value = vec![0x42u8; 1024];
    let mut builder = BatchBuilder::with_capacity(1000 * 1040);
    for _ in 0..1000 {
        builder.append(1, None, Some(&value), &[]).unwrap();
    }
    let batch = builder.finish().unwrap();
    let shard = client.topic("throughput").unwrap().partition_shards[0];
    let port = client.refresh_metadata().unwrap().shards[shard as usize].port;
    let mut connection = Connection::connect(SocketAddr::new(address.ip(), port)).unwrap();
    const IN_FLIGHT: usize = 4;
    let frame = ProduceRequest::encode(0, Acks::Written, &[("throughput", 0, &batch)]);
    let mut sent = 0u64;
    let mut received = 0u64;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    while Instant::now() < deadline || received < sent {
        while Instant::now() < deadline && sent - received < IN_FLIGHT as u64 {
            connection.send(|_| frame.clone()).unwrap();
            sent += 1;
        }
        let (header, _) = connection.receive_any().unwrap();
        assert_eq!(header.error_code, 0);
        received += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let bytes = received as f64 * batch.len() as f64;
    (bytes / elapsed / 1e6, received as f64 * 1000.0 / elapsed)
}

fn main() {
    // `cargo test --benches` runs bench binaries with no arguments meant for us;
    // only run the measurement under `cargo bench` (which passes --bench).
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let rounds: usize = std::env::var("RINGMQ_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let dir = std::path::PathBuf::from("target/bench-data/server-latency");
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = ServerConfig::new(&dir);
    config.listen = Some("127.0.0.1:0".parse().unwrap());
    config.retention_bytes = Some(2 << 30);
    let handle = server::start(config).unwrap();
    let address = handle.address();
    let mut client = Client::connect(&address.to_string()).unwrap();
    for topic in ["latency", "wake", "throughput"] {
        client.create_topic(topic, 1, Retention::Default, Retention::Default).unwrap();
    }
    println!("shards: {}, rounds: {rounds}", client.server_info().shard_count);
    report("reference: TCP ping-pong 64 B", &ping_pong(rounds));
    report("produce 1 x 100 B, acks=written", &produce_round_trips(&mut client, Acks::Written, rounds));
    report("produce 1 x 100 B, acks=durable", &produce_round_trips(&mut client, Acks::Durable, rounds.min(2000)));
    report("fetch long-poll woken by a produce", &woken_fetches(&mut client, address, rounds.min(2000)));
    report("reference: TCP ping-pong 64 B (again)", &ping_pong(rounds));
    let (mb_per_s, records_per_s) = throughput(address, &mut client, 5);
    println!("producer 1 KiB x 1000/batch, acks=written: {mb_per_s:.0} MB/s, {records_per_s:.0} records/s");
    drop(client);
    handle.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
