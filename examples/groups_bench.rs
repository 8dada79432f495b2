//! Figures for issue #6, against an in-process server over TCP (loopback):
//! - share-group throughput: 4 members receive and accept 100-byte records
//!   (batches of `--max-records`) until the topic is drained; records/s accepted;
//! - consumer-group rebalance time: with one member consuming a 12-partition
//!   topic, how long a second member's join takes until both hold their new
//!   assignment (the first member notices on its next heartbeat).
//!
//! Run: `cargo run --release --example groups_bench -- DATA_DIR [RECORDS] [ROUNDS]`

use ringmq::batch::BatchBuilder;
use ringmq::client::group::{GroupConsumer, GroupConsumerConfig};
use ringmq::client::share::{ShareConsumer, ShareConsumerConfig};
use ringmq::client::{Client, Retention};
use ringmq::groups::share::AckKind;
use ringmq::log::Acks;
use ringmq::server::ServerConfig;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MEMBERS: usize = 4;
const PARTITIONS: u32 = 4;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: groups_bench DATA_DIR [RECORDS] [ROUNDS]");
    let records: usize = args.next().map_or(200_000, |r| r.parse().expect("RECORDS is a number"));
    let rounds: usize = args.next().map_or(10, |r| r.parse().expect("ROUNDS is a number"));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = ServerConfig::new(&dir);
    config.listen = Some("127.0.0.1:0".parse().expect("an address"));
    config.shards = 2;
    let server = ringmq::server::start(config).expect("the server starts");
    let bootstrap = server.address().to_string();
    let admin = Client::connect(&bootstrap).expect("connect");

    // Share groups: fill, then drain with 4 members accepting everything.
    admin.create_topic("queue", PARTITIONS, Retention::Unlimited, Retention::Unlimited).expect("create");
    let per_partition = records / PARTITIONS as usize;
    for partition in 0..PARTITIONS {
        let mut left = per_partition;
        while left > 0 {
            let count = left.min(1000);
            let mut builder = BatchBuilder::new();
            for _ in 0..count {
                builder.append(1, None, Some(&[b'v'; 100]), &[]).expect("append");
            }
            admin.produce("queue", partition, &builder.finish().expect("finish"), Acks::Written).expect("produce");
            left -= count;
        }
    }
    let max_records: u32 = 500;
    let started = Instant::now();
    let members: Vec<_> = (0..MEMBERS)
        .map(|_| {
            let bootstrap = bootstrap.clone();
            std::thread::spawn(move || {
                let client = Client::connect(&bootstrap).expect("connect");
                let config = ShareConsumerConfig { max_records, ..Default::default() };
                let mut consumer = ShareConsumer::new(client, "bench", "queue", config).expect("share consumer");
                let mut accepted = 0usize;
                let mut last = Instant::now();
                loop {
                    let got = consumer.receive(max_records, Duration::from_millis(100)).expect("receive");
                    if got.is_empty() {
                        return (accepted, last);
                    }
                    consumer.acknowledge_all(&got, AckKind::Accept).expect("accept");
                    accepted += got.len();
                    last = Instant::now();
                }
            })
        })
        .collect();
    let mut accepted = 0;
    let mut finished = started;
    for member in members {
        let (count, last) = member.join().expect("member");
        accepted += count;
        finished = finished.max(last);
    }
    let seconds = finished.duration_since(started).as_secs_f64();
    assert_eq!(accepted, per_partition * PARTITIONS as usize, "every record accepted once");
    println!(
        "share group: {MEMBERS} members accepted {accepted} records of 100 B in {seconds:.3} s = {:.0} records/s \
         (receive up to {max_records}, accept each batch; each receive and accept is fdatasync'ed)",
        accepted as f64 / seconds
    );

    // Consumer groups: a member joins a group whose other member is consuming.
    admin.create_topic("events", 12, Retention::Unlimited, Retention::Unlimited).expect("create");
    let mut times = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let group = format!("rebalance-{round}");
        let config = GroupConsumerConfig { heartbeat_interval: Duration::from_millis(100), ..Default::default() };
        let stop = Arc::new(AtomicBool::new(false));
        let first = {
            let (bootstrap, group, config, stop) = (bootstrap.clone(), group.clone(), config.clone(), stop.clone());
            std::thread::spawn(move || {
                let client = Client::connect(&bootstrap).expect("connect");
                let mut consumer = GroupConsumer::new(client, &group, &["events"], config);
                while !stop.load(Ordering::SeqCst) {
                    consumer.poll(Duration::from_millis(20)).expect("poll");
                }
                consumer.close().expect("close");
            })
        };
        // Let the first member settle into a stable generation; the offset
        // spreads the join over the first member's heartbeat phase.
        std::thread::sleep(Duration::from_millis(300 + (round as u64 * 37) % 100));
        let client = Client::connect(&bootstrap).expect("connect");
        let mut second = GroupConsumer::new(client, &group, &["events"], config);
        let joined = Instant::now();
        second.join().expect("join");
        times.push(joined.elapsed());
        assert_eq!(second.assignment().len(), 6, "balanced: 6 of 12");
        stop.store(true, Ordering::SeqCst);
        first.join().expect("first member");
        second.close().expect("close");
    }
    times.sort();
    println!(
        "consumer group rebalance (a 2nd member joins, heartbeat interval 100 ms): p50 {:.1} ms, max {:.1} ms over {rounds} rounds",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3
    );
    server.shutdown().expect("shutdown");
}
