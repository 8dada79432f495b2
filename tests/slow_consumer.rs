//! Slow consumers against a real `ringmq serve` process: connections that
//! pipeline many fetches and then read their socket slowly or not at all,
//! while producers write. The server's memory must stay bounded and the
//! producers must not stall.
//!
//! Short version (256 MiB written) in README's test command; the long one
//! (10 GB) by hand:
//! `RINGMQ_SLOW_CONSUMER_MIB=10240 cargo test --release --test slow_consumer -- --nocapture`.

mod common;

use common::temp_dir;
use ringmq::client::{Client, Retention};
use ringmq::log::Acks;
use ringmq::protocol::fetch::FetchRequest;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connections that pipeline fetches and never read.
const STALLED_CONSUMERS: usize = 8;
/// Connections that read 4 KiB every 50 ms.
const CRAWLING_CONSUMERS: usize = 2;
/// Fetches each slow connection sends at once.
const PIPELINED_FETCHES: u32 = 1000;
/// Bytes each of those fetches asks for.
const FETCH_MAX_BYTES: u32 = 1 << 20;
const RECORD_BYTES: usize = 1024;
const BATCH_RECORDS: usize = 512;
const PRODUCERS: usize = 2;
/// The server's anonymous memory (heap, buffers; not the page cache it
/// maps for zero-copy fetches) may not pass this.
const SERVER_ANON_RSS_MAX_BYTES: u64 = 512 * 1024 * 1024;
/// No produce may take longer than this: past it the producers stalled (a
/// stall, not a speed: the figure is printed; a loaded 2-core CI machine
/// running the debug build beside other tests must not trip it).
const PRODUCE_STALL_MAX: Duration = Duration::from_secs(30);

/// (RssAnon, RssFile) of `pid` in bytes.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("RssAnon:"), field("RssFile:") + field("RssShmem:"))
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &std::path::Path) -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringmq"))
        .args(["serve", "--shards", "2", "--listen", "127.0.0.1:0", "--kafka-listen", "off"])
        .args(["--retention-bytes", &(1u64 << 30).to_string(), "--retention-check-interval-ms", "500"])
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = Vec::new();
    let stdout = child.stdout.as_mut().unwrap();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    let line = String::from_utf8(line).unwrap();
    let address = line.split_whitespace().nth(3).expect("ringmq listening on ADDRESS").to_string();
    (Server(child), address)
}

fn slow_consumer(address: &str, crawl: bool, stop: Arc<AtomicBool>) {
    let mut stream = TcpStream::connect(address).unwrap();
    let mut frames = Vec::new();
    for i in 0..PIPELINED_FETCHES {
        let request = FetchRequest {
            topic: "firehose".into(),
            partition: i % 2,
            offset: 0,
            max_bytes: FETCH_MAX_BYTES,
            max_wait_ms: 1000,
            min_bytes: FETCH_MAX_BYTES,
        };
        frames.extend_from_slice(&request.encode(i));
    }
    // The server stops reading when this connection's in-flight limit is
    // reached, so the write may block: send it from its own thread.
    let mut writer = stream.try_clone().unwrap();
    std::thread::spawn(move || {
        let _ = writer.write_all(&frames);
    });
    let mut chunk = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if crawl && stream.read(&mut chunk).is_err() {
            return;
        }
    }
}

#[test]
fn slow_and_stalled_consumers_neither_grow_the_server_nor_stall_producers() {
    let mib: u64 = std::env::var("RINGMQ_SLOW_CONSUMER_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let dir = temp_dir("slow-consumer");
    let (server, address) = start(&dir);
    let client = Client::connect(&address).unwrap();
    client.create_topic("firehose", 2, Retention::Default, Retention::Default).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // RINGMQ_SLOW_CONSUMERS=0 gives the producers' baseline on this machine.
    let slow: usize = std::env::var("RINGMQ_SLOW_CONSUMERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let count = if slow == 0 { 0 } else { STALLED_CONSUMERS + CRAWLING_CONSUMERS };
    let consumers: Vec<_> = (0..count)
        .map(|i| {
            let (address, stop) = (address.clone(), stop.clone());
            std::thread::spawn(move || slow_consumer(&address, i >= STALLED_CONSUMERS, stop))
        })
        .collect();
    let written = Arc::new(AtomicU64::new(0));
    let slowest = Arc::new(AtomicU64::new(0));
    let target = mib << 20;
    let started = Instant::now();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (address, written, slowest) = (address.clone(), written.clone(), slowest.clone());
            std::thread::spawn(move || {
                let client = Client::connect(&address).unwrap();
                let values: Vec<Vec<u8>> = (0..BATCH_RECORDS).map(|i| vec![(i % 251) as u8; RECORD_BYTES]).collect();
                let batch = common::batch_of(&values, 1);
                while written.load(Ordering::Relaxed) < target {
                    let sent = Instant::now();
                    client.produce("firehose", p as u32, &batch, Acks::Written).unwrap();
                    slowest.fetch_max(sent.elapsed().as_micros() as u64, Ordering::Relaxed);
                    written.fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let (mut anon_peak, mut file_peak) = (0, 0);
    while producers.iter().any(|p| !p.is_finished()) {
        let (anon, file) = rss(server.0.id());
        anon_peak = anon_peak.max(anon);
        file_peak = file_peak.max(file);
        std::thread::sleep(Duration::from_millis(100));
    }
    for producer in producers {
        producer.join().unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let slowest = Duration::from_micros(slowest.load(Ordering::Relaxed));
    eprintln!(
        "slow consumer: {mib} MiB produced in {seconds:.1} s ({:.0} MiB/s) beside {STALLED_CONSUMERS} stalled and \
         {CRAWLING_CONSUMERS} crawling consumers ({PIPELINED_FETCHES} fetches of {} KiB each); slowest produce \
         {slowest:?}; server RSS peak: {:.0} MiB anonymous, {:.0} MiB file-backed",
        mib as f64 / seconds,
        FETCH_MAX_BYTES / 1024,
        anon_peak as f64 / (1 << 20) as f64,
        file_peak as f64 / (1 << 20) as f64
    );
    assert!(anon_peak < SERVER_ANON_RSS_MAX_BYTES, "the server's anonymous RSS reached {anon_peak} bytes");
    assert!(slowest < PRODUCE_STALL_MAX, "a produce took {slowest:?}: the producers stalled");
    // A fresh consumer is served at once.
    let request = FetchRequest {
        topic: "firehose".into(),
        partition: 0,
        offset: 0,
        max_bytes: 4096,
        max_wait_ms: 0,
        min_bytes: 0,
    };
    let earliest = client.list_offsets("firehose", 0, ringmq::protocol::offsets::QUERY_EARLIEST).unwrap().offset;
    let fetched = client.fetch(&FetchRequest { offset: earliest as u64, ..request }).unwrap();
    assert!(!fetched.records.is_empty());
    stop.store(true, Ordering::Relaxed);
    for consumer in consumers {
        consumer.join().unwrap();
    }
    drop(server);
}
