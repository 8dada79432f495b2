//! Hostile peers at scale: many connections flood the server (both
//! listeners) with mutated requests of every API (valid frames with flipped
//! bytes, cut short, with random lengths, or random bytes), while a good
//! client produces and fetches. The server must stay up, its memory must stay
//! under a bound, the good client must never fail, and the data written
//! before and during the flood must read back intact.
//!
//! Short version in README's test command; the long one by hand:
//! `RINGMQ_FLOOD_SECS=600 cargo test --release --test hostile_flood -- --nocapture`.

mod common;

use common::{batch_of, start_server, temp_dir, Rng};
use ringmq::client::{Client, Retention};
use ringmq::log::Acks;
use ringmq::protocol::fetch::FetchRequest;
use ringmq::protocol::group::{CommittedOffset, GroupRequest, JoinGroup, OffsetCommit};
use ringmq::protocol::hello::HelloRequest;
use ringmq::protocol::metadata::MetadataRequest;
use ringmq::protocol::offsets::ListOffsetsRequest;
use ringmq::protocol::produce::ProduceRequest;
use ringmq::protocol::producer_id::InitProducerIdRequest;
use ringmq::protocol::share::{ShareAckRequest, ShareFetchRequest};
use ringmq::protocol::topic::{CreateTopicRequest, DeleteTopicRequest};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Flooding connections at once (each reconnects when the server closes it).
const FLOOD_CONNECTIONS: usize = 32;
/// Flood threads: each drives its share of the connections in turn.
const FLOOD_THREADS: usize = 4;
/// How much this process's RSS (server and flood together) may grow.
const RSS_GROWTH_MAX_BYTES: u64 = 256 * 1024 * 1024;
const FLOOD_SECS_DEFAULT: u64 = 8;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// One valid request frame of every native API (and a few Kafka ones), to mutate.
fn native_seeds() -> Vec<Vec<u8>> {
    let batch = batch_of(&[b"seed".to_vec(), b"seed-2".to_vec()], 1);
    vec![
        HelloRequest { client_name: "flood".into() }.encode(1),
        MetadataRequest { topics: vec!["good".into(), "other".into()] }.encode(2),
        CreateTopicRequest { name: "flood-topic".into(), partitions: 2, retention_ms: -2, retention_bytes: -2 }
            .encode(3),
        DeleteTopicRequest { name: "flood-topic".into() }.encode(4),
        ListOffsetsRequest { topic: "good".into(), partition: 0, query: -1 }.encode(5),
        ProduceRequest::encode(6, Acks::Written, &[("flood-sink", 0, &batch)]),
        FetchRequest { topic: "good".into(), partition: 0, offset: 0, max_bytes: 4096, max_wait_ms: 10, min_bytes: 0 }
            .encode(7),
        GroupRequest::Join(JoinGroup {
            group: "flood-group".into(),
            member_id: String::new(),
            session_timeout_ms: 6000,
            rebalance_timeout_ms: 100,
            topics: vec!["flood-sink".into()],
        })
        .encode(8),
        GroupRequest::Heartbeat { group: "flood-group".into(), member_id: "m".into(), generation: 1 }.encode(9),
        GroupRequest::Leave { group: "flood-group".into(), member_id: "m".into() }.encode(10),
        GroupRequest::Commit(OffsetCommit {
            group: "flood-group".into(),
            member_id: String::new(),
            generation: 0,
            offsets: vec![CommittedOffset {
                topic: "flood-sink".into(),
                partition: 0,
                offset: 1,
                metadata: "m".into(),
            }],
        })
        .encode(11),
        GroupRequest::Fetch { group: "flood-group".into(), partitions: vec![("flood-sink".into(), 0)] }.encode(12),
        GroupRequest::Describe { group: "flood-group".into() }.encode(13),
        ringmq::protocol::group::encode_list_groups_request(14),
        InitProducerIdRequest { name: String::new() }.encode(15),
        ShareFetchRequest {
            group: "flood-share".into(),
            member_id: "m".into(),
            topic: "flood-sink".into(),
            partition: 0,
            max_records: 10,
            max_bytes: 4096,
            max_wait_ms: 10,
            lease_ms: 1000,
            max_deliveries: 3,
            dead_letter_topic: String::new(),
        }
        .encode(16),
        ShareAckRequest {
            group: "flood-share".into(),
            member_id: "m".into(),
            topic: "flood-sink".into(),
            partition: 0,
            lease_ms: 1000,
            ranges: vec![(0, 1, 1)],
        }
        .encode(17),
    ]
}

/// Kafka frames: ApiVersions v3, Metadata v1 and v11, Produce v3, Fetch v4.
fn kafka_seeds() -> Vec<Vec<u8>> {
    let frame =
        |key: i16, version: i16, flexible: bool, body: &[u8]| common::kafka_request(key, version, 7, flexible, body);
    let batch = batch_of(&[b"kafka-seed".to_vec()], 1);
    let mut produce = vec![0xff, 0xff, 0, 1, 0, 0, 0x13, 0x88, 0, 0, 0, 1, 0, 4];
    produce.extend_from_slice(b"sink"); // never the good client's topic
    produce.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
    produce.extend_from_slice(&(batch.len() as i32).to_be_bytes());
    produce.extend_from_slice(&batch);
    let mut fetch = vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 10, 0, 0, 0, 1, 0, 0x10, 0, 0, 0, 0, 0, 0, 1, 0, 4];
    fetch.extend_from_slice(b"good");
    fetch.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0]);
    vec![
        frame(18, 3, true, &[3, b'f', b'l', 2, b'1', 0]),
        frame(3, 1, false, &[0, 0, 0, 1, 0, 4, b'g', b'o', b'o', b'd']),
        frame(3, 11, true, &[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, b'g', b'o', b'o', b'd', 0, 0, 0, 0]),
        frame(0, 3, false, &produce),
        frame(1, 4, false, &fetch),
    ]
}

/// A hostile version of `seed`: bytes flipped, cut short, a random length
/// field, a huge count spliced in, or plain random bytes.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut frame = seed.to_vec();
    match rng.below(6) {
        0 => {
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(frame.len());
                frame[at] ^= 1 << rng.below(8);
            }
        }
        1 => frame.truncate(rng.below(frame.len())),
        2 => {
            let length = rng.next_u64() as u32;
            frame[..4].copy_from_slice(&length.to_be_bytes());
        }
        3 if frame.len() > 16 => {
            let at = 12 + rng.below(frame.len() - 16);
            frame[at..at + 4].copy_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
        }
        4 => {
            let tail_at = 4 + rng.below(frame.len() - 4);
            for byte in &mut frame[tail_at..] {
                *byte = rng.next_u64() as u8;
            }
        }
        _ => frame = (0..rng.below(64)).map(|_| rng.next_u64() as u8).collect(),
    }
    frame
}

fn flood(addresses: Vec<(SocketAddr, Vec<Vec<u8>>)>, seed: u64, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) {
    let mut rng = Rng::new(seed);
    let per_thread = FLOOD_CONNECTIONS / FLOOD_THREADS;
    let mut streams: Vec<Option<(TcpStream, usize)>> = (0..per_thread).map(|_| None).collect();
    let mut sink = [0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        for slot in &mut streams {
            if slot.is_none() {
                let target = rng.below(addresses.len());
                if let Ok(stream) = TcpStream::connect(addresses[target].0) {
                    stream.set_nonblocking(true).unwrap();
                    *slot = Some((stream, target));
                }
            }
            let Some((stream, target)) = slot else { continue };
            let seeds = &addresses[*target].1;
            let pick = rng.below(seeds.len());
            let frame = mutate(&mut rng, &seeds[pick]);
            let closed = stream.write_all(&frame).is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock);
            sent.fetch_add(1, Ordering::Relaxed);
            // Drain what the server answered, so it is never stalled on us.
            let gone = matches!(stream.read(&mut sink), Ok(0)) || closed;
            if gone || rng.below(50) == 0 {
                *slot = None;
            }
        }
    }
}

#[test]
fn a_flood_of_mutated_requests_leaves_the_server_up_bounded_and_the_good_client_served() {
    let seconds: u64 =
        std::env::var("RINGMQ_FLOOD_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(FLOOD_SECS_DEFAULT);
    let dir = temp_dir("hostile-flood");
    let server = start_server(&dir, 2, |config| {
        config.kafka.listen = Some("127.0.0.1:0".parse().unwrap());
    });
    let good = Client::connect(&server.address().to_string()).unwrap();
    good.create_topic("good", 1, Retention::Default, Retention::Default).unwrap();
    let mut written: Vec<Vec<u8>> = Vec::new();
    for i in 0..100 {
        let value = format!("before-{i}").into_bytes();
        good.produce("good", 0, &batch_of(std::slice::from_ref(&value), 1), Acks::Durable).unwrap();
        written.push(value);
    }
    let rss_before = rss_bytes();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let targets = vec![(server.address(), native_seeds()), (server.kafka_address().unwrap(), kafka_seeds())];
    let threads: Vec<_> = (0..FLOOD_THREADS)
        .map(|i| {
            let (targets, stop, sent) = (targets.clone(), stop.clone(), sent.clone());
            std::thread::spawn(move || flood(targets, 1000 + i as u64, stop, sent))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut rss_peak = rss_before;
    let mut round = 0;
    while Instant::now() < deadline {
        let value = format!("during-{round}").into_bytes();
        let offset = good.produce("good", 0, &batch_of(std::slice::from_ref(&value), 1), Acks::Durable).unwrap();
        assert_eq!(offset, Some(written.len() as u64), "the good client's produce during the flood");
        written.push(value);
        let request = FetchRequest {
            topic: "good".into(),
            partition: 0,
            offset: 0,
            max_bytes: 1 << 20,
            max_wait_ms: 0,
            min_bytes: 0,
        };
        let fetched = good.fetch(&request).unwrap();
        assert!(!fetched.records.is_empty(), "the good client's fetch during the flood");
        rss_peak = rss_peak.max(rss_bytes());
        round += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    let growth = rss_peak.saturating_sub(rss_before);
    eprintln!(
        "flood: {} mutated requests in {seconds} s over {FLOOD_CONNECTIONS} connections; {round} good rounds; \
         RSS grew by {:.1} MiB at most",
        sent.load(Ordering::Relaxed),
        growth as f64 / (1 << 20) as f64
    );
    assert!(growth < RSS_GROWTH_MAX_BYTES, "RSS grew by {growth} bytes under the flood");
    assert!(sent.load(Ordering::Relaxed) > 1000, "the flood sent too little to mean anything");
    // Everything the good client wrote, before and during, reads back in order.
    let mut offset = 0u64;
    let mut read = Vec::new();
    while (offset as usize) < written.len() {
        let request = FetchRequest {
            topic: "good".into(),
            partition: 0,
            offset,
            max_bytes: 1 << 20,
            max_wait_ms: 0,
            min_bytes: 0,
        };
        let records = ringmq::client::decode_records(&good.fetch(&request).unwrap().records, offset).unwrap();
        assert!(!records.is_empty());
        offset = records.last().unwrap().offset + 1;
        read.extend(records.into_iter().map(|r| r.value.unwrap()));
    }
    assert_eq!(read, written);
    server.shutdown().unwrap();
}
