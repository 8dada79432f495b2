//! Guards the server end to end over TCP: produce/consume round trips with every
//! acks mode, partitions spread over shards and reached from the wrong shard
//! (forwarding), long polls woken by appends, restarts keeping acked records, and
//! graceful shutdown leaving nothing to truncate.

mod common;

use common::{batch_of, start_server, temp_dir, values_of};
use ringmq::client::{Client, Connection, Fetcher, Producer, ProducerConfig, Retention, StartAt};
use ringmq::log::{Acks, LogConfig, PartitionLog};
use ringmq::protocol::fetch::{FetchRequest, FetchResponse};
use ringmq::protocol::produce::{ProduceRequest, ProduceResponse};
use ringmq::server::catalog::owner;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn values(prefix: &str, count: usize) -> Vec<Vec<u8>> {
    (0..count).map(|i| format!("{prefix}-{i}").into_bytes()).collect()
}

/// Reads a partition from offset 0 to its end, checking offsets are dense.
fn fetch_all(client: &mut Client, topic: &str, partition: u32) -> Vec<String> {
    let mut offset = 0;
    let mut out = Vec::new();
    loop {
        let request =
            FetchRequest { topic: topic.into(), partition, offset, max_bytes: 1 << 20, max_wait_ms: 0, min_bytes: 0 };
        let result = client.fetch(&request).unwrap();
        let records = ringmq::client::decode_records(&result.records, offset).unwrap();
        if records.is_empty() {
            assert_eq!(offset, result.high_watermark, "a read below the end returned nothing");
            return out;
        }
        for record in records {
            assert_eq!(record.offset, offset, "offsets are dense");
            out.push(String::from_utf8(record.value.unwrap()).unwrap());
            offset += 1;
        }
    }
}

#[test]
fn every_acks_mode_round_trips() {
    let dir = temp_dir("roundtrip-acks");
    let server = start_server(&dir, 2, |_| {});
    let bootstrap = server.address().to_string();
    let mut client = Client::connect(&bootstrap).unwrap();
    client.create_topic("t", 1, Retention::Default, Retention::Default).unwrap();
    let mut expected = Vec::new();
    for (mode, acks) in [("none", Acks::None), ("written", Acks::Written), ("durable", Acks::Durable)] {
        let batch = batch_of(&values(mode, 3), 1);
        let answer = client.produce("t", 0, &batch, acks).unwrap();
        match acks {
            Acks::None => assert_eq!(answer, None),
            _ => assert_eq!(answer, Some(expected.len() as u64), "{mode}: base offset"),
        }
        expected.extend(values(mode, 3).into_iter().map(|v| String::from_utf8(v).unwrap()));
    }
    // acks=none has no answer; a later request on the same connection proves order.
    let offsets = client.list_offsets("t", 0, -1).unwrap();
    assert_eq!(offsets.latest, 9);
    assert_eq!(offsets.durable, 9, "the durable produce synced everything before it");
    assert_eq!(fetch_all(&mut client, "t", 0), expected);
    server.shutdown().unwrap();
}

#[test]
fn the_batching_producer_and_fetcher_follow_a_partition() {
    let dir = temp_dir("roundtrip-producer");
    let server = start_server(&dir, 2, |_| {});
    let bootstrap = server.address().to_string();
    let admin = Client::connect(&bootstrap).unwrap();
    admin.create_topic("events", 4, Retention::Unlimited, Retention::Unlimited).unwrap();
    let producer = Producer::new(&bootstrap, ProducerConfig { batch_bytes: 512, ..ProducerConfig::default() }).unwrap();
    for i in 0..500 {
        let key = format!("user-{}", i % 10);
        producer
            .send("events", None, Some(key.as_bytes()), format!("{key}:{i}").as_bytes(), &[(b"n", Some(b"1"))])
            .unwrap();
    }
    let report = producer.flush().unwrap();
    assert_eq!(report.records_acknowledged, 500, "{report:?}");
    assert_eq!(report.records_failed, 0);
    // Each key stays on one partition (Kafka's murmur2), in order.
    let mut seen = 0;
    for partition in 0..4 {
        let mut fetcher =
            Fetcher::new(Client::connect(&bootstrap).unwrap(), "events", partition, StartAt::Earliest).unwrap();
        let mut last_index_per_key = std::collections::HashMap::new();
        loop {
            let records = fetcher.poll(Duration::from_millis(10)).unwrap();
            if records.is_empty() {
                break;
            }
            for record in records {
                let text = String::from_utf8(record.value.unwrap()).unwrap();
                let (key, index) = text.split_once(':').unwrap();
                assert_eq!(
                    ringmq::client::partition_for_key(key.as_bytes(), 4),
                    partition,
                    "{key} on the wrong partition"
                );
                let index: u32 = index.parse().unwrap();
                if let Some(previous) = last_index_per_key.insert(key.to_string(), index) {
                    assert!(index > previous, "{key}: {index} after {previous}");
                }
                assert_eq!(record.headers, vec![(b"n".to_vec(), Some(b"1".to_vec()))]);
                seen += 1;
            }
        }
    }
    assert_eq!(seen, 500);
    drop(producer);
    server.shutdown().unwrap();
}

/// Finds a partition of `topic` owned by `shard`.
fn partition_on(topic: &str, shard: u16, shards: u16) -> u32 {
    (0..64).find(|&p| owner(topic, p, shards) == shard).unwrap()
}

#[test]
fn requests_reaching_the_wrong_shard_are_forwarded_to_the_owner() {
    let dir = temp_dir("roundtrip-forward");
    let server = start_server(&dir, 2, |_| {});
    let mut client = Client::connect(&server.address().to_string()).unwrap();
    client.create_topic("spread", 8, Retention::Default, Retention::Default).unwrap();
    let shards: Vec<u16> = client.topic("spread").unwrap().partition_shards.clone();
    assert!(shards.contains(&0) && shards.contains(&1), "partitions live on both shards: {shards:?}");
    let on_shard_1 = partition_on("spread", 1, 2);
    // Connect to shard 0's own port and produce to a partition shard 1 owns.
    let shard0: SocketAddr = format!("127.0.0.1:{}", server.shard_ports()[0]).parse().unwrap();
    let mut wrong = Connection::connect(shard0).unwrap();
    let before = server.counters().forwarded_requests.load(Ordering::Relaxed);
    for i in 0..20 {
        let batch = batch_of(&values(&format!("fwd{i}"), 2), 1);
        let body = wrong
            .call("produce", |id| ProduceRequest::encode(id, Acks::Durable, &[("spread", on_shard_1, &batch)]))
            .unwrap();
        let response = ProduceResponse::decode(&body).unwrap();
        assert_eq!(response.results[0].error, 0);
        assert_eq!(response.results[0].base_offset, i * 2);
    }
    let body = wrong
        .call("fetch", |id| {
            FetchRequest {
                topic: "spread".into(),
                partition: on_shard_1,
                offset: 0,
                max_bytes: 1 << 20,
                max_wait_ms: 0,
                min_bytes: 0,
            }
            .encode(id)
        })
        .unwrap();
    let fetched = FetchResponse::decode(&body).unwrap();
    assert_eq!(values_of(fetched.records).len(), 40);
    assert!(
        server.counters().forwarded_requests.load(Ordering::Relaxed) >= before + 21,
        "nothing went through the rings"
    );
    // The owner's own port serves the same data.
    assert_eq!(fetch_all(&mut client, "spread", on_shard_1).len(), 40);
    server.shutdown().unwrap();
}

#[test]
fn a_long_polling_fetch_is_woken_by_a_produce() {
    let dir = temp_dir("roundtrip-longpoll");
    let server = start_server(&dir, 2, |_| {});
    let bootstrap = server.address().to_string();
    let client = Client::connect(&bootstrap).unwrap();
    client.create_topic("poll", 2, Retention::Default, Retention::Default).unwrap();
    for partition in 0..2u32 {
        // Fetch through the main port, so one of the two polls crosses shards.
        let mut waiting = Connection::connect(server.address()).unwrap();
        let started = Instant::now();
        let poller = std::thread::spawn(move || {
            let body = waiting
                .call("fetch", |id| {
                    FetchRequest {
                        topic: "poll".into(),
                        partition,
                        offset: 0,
                        max_bytes: 1 << 20,
                        max_wait_ms: 20_000,
                        min_bytes: 1,
                    }
                    .encode(id)
                })
                .unwrap();
            let response = FetchResponse::decode(&body).unwrap();
            (values_of(response.records), started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(200));
        client.produce("poll", partition, &batch_of(&values("wake", 1), 1), Acks::Written).unwrap();
        let (got, waited) = poller.join().unwrap();
        assert_eq!(got, vec!["wake-0".to_string()]);
        assert!(waited >= Duration::from_millis(150), "the fetch did not wait: {waited:?}");
        assert!(waited < Duration::from_secs(10), "the fetch was not woken by the produce: {waited:?}");
    }
    server.shutdown().unwrap();
}

#[test]
fn a_restart_keeps_every_acknowledged_record_and_a_clean_stop_leaves_nothing_to_truncate() {
    let dir = temp_dir("roundtrip-restart");
    let server = start_server(&dir, 2, |_| {});
    let bootstrap = server.address().to_string();
    let client = Client::connect(&bootstrap).unwrap();
    client.create_topic("keep", 3, Retention::Unlimited, Retention::Unlimited).unwrap();
    let mut expected: Vec<Vec<String>> = vec![Vec::new(); 3];
    for round in 0..30 {
        let partition = round % 3;
        let acks = if round % 2 == 0 { Acks::Durable } else { Acks::Written };
        let vals = values(&format!("r{round}"), 5);
        client.produce("keep", partition, &batch_of(&vals, 1), acks).unwrap();
        expected[partition as usize].extend(vals.into_iter().map(|v| String::from_utf8(v).unwrap()));
    }
    drop(client);
    server.shutdown().unwrap();

    // Nothing to truncate: every partition reopens cleanly with all records.
    ringmq::io::Runtime::new().unwrap().block_on(async {
        for partition in 0..3u32 {
            let path = ringmq::log::partition_dir(&dir, "keep", partition);
            let log = PartitionLog::open(ringmq::io::FileStorage::new(), path, LogConfig::default()).await.unwrap();
            assert_eq!(log.recovery_report().truncated_bytes, 0);
            assert_eq!(log.recovery_report().indexes_rebuilt, 0, "a clean stop left indexes to rebuild");
            assert_eq!(log.next_offset(), expected[partition as usize].len() as u64);
        }
    });

    let server = start_server(&dir, 2, |_| {});
    let mut client = Client::connect(&server.address().to_string()).unwrap();
    for partition in 0..3u32 {
        assert_eq!(fetch_all(&mut client, "keep", partition), expected[partition as usize]);
    }
    // Appends continue after the last offset.
    let base = client.produce("keep", 0, &batch_of(&values("after", 1), 1), Acks::Durable).unwrap();
    assert_eq!(base, Some(expected[0].len() as u64));
    server.shutdown().unwrap();
}

#[test]
fn topics_are_created_listed_and_deleted() {
    let dir = temp_dir("roundtrip-topics");
    let server = start_server(&dir, 2, |_| {});
    let client = Client::connect(&server.address().to_string()).unwrap();
    client.create_topic("a", 2, Retention::Limit(60_000), Retention::Limit(1 << 20)).unwrap();
    let error = client.create_topic("a", 2, Retention::Default, Retention::Default).unwrap_err();
    assert_eq!(error.code(), Some(ringmq::protocol::ErrorCode::TopicAlreadyExists), "{error}");
    let error = client.create_topic("bad/name", 1, Retention::Default, Retention::Default).unwrap_err();
    assert_eq!(error.code(), Some(ringmq::protocol::ErrorCode::InvalidTopicName));
    let error = client.create_topic("zero", 0, Retention::Default, Retention::Default).unwrap_err();
    assert_eq!(error.code(), Some(ringmq::protocol::ErrorCode::InvalidPartitionCount));
    let topic = client.topic("a").unwrap().clone();
    assert_eq!((topic.retention_ms, topic.retention_bytes), (60_000, 1 << 20));
    client.produce("a", 1, &batch_of(&values("x", 2), 1), Acks::Durable).unwrap();
    client.delete_topic("a").unwrap();
    assert!(!dir.join("topics/a").exists(), "the topic's files are gone");
    let error = client.produce("a", 1, &batch_of(&values("x", 1), 1), Acks::Durable).unwrap_err();
    assert!(error.to_string().contains("unknown topic"), "{error}");
    // The name can be used again, from empty.
    client.create_topic("a", 1, Retention::Default, Retention::Default).unwrap();
    assert_eq!(client.list_offsets("a", 0, -1).unwrap().latest, 0);
    server.shutdown().unwrap();
}

#[test]
fn a_data_directory_refuses_another_shard_count() {
    let dir = temp_dir("roundtrip-shards");
    start_server(&dir, 2, |_| {}).shutdown().unwrap();
    let mut config = ringmq::server::ServerConfig::new(&dir);
    config.listen = Some("127.0.0.1:0".parse().unwrap());
    config.shards = 1;
    let error = ringmq::server::start(config).err().expect("another shard count must be refused").to_string();
    assert!(error.contains("created with 2 shards"), "{error}");
}
