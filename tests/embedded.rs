//! Guards the embedded broker: the in-process client produces with every acks
//! mode from several threads, fetches and long-polls through the shards' rings,
//! works in busy-poll mode, and a close/reopen keeps every acknowledged record.

mod common;

use bytes::BytesMut;
use common::{batch_of, temp_dir, values_of};
use ringmq::client::Retention;
use ringmq::embedded::Broker;
use ringmq::log::Acks;
use ringmq::protocol::fetch::FetchRequest;
use ringmq::server::ServerConfig;
use std::time::{Duration, Instant};

fn config(dir: &std::path::Path, busy_poll: bool) -> ServerConfig {
    let mut config = ServerConfig::new(dir);
    config.shards = 2;
    config.pin_threads = false;
    config.busy_poll = busy_poll;
    config
}

fn fetch(
    client: &ringmq::embedded::EmbeddedClient,
    topic: &str,
    partition: u32,
    offset: u64,
    wait_ms: u32,
) -> Vec<String> {
    let request =
        FetchRequest { topic: topic.into(), partition, offset, max_bytes: 1 << 20, max_wait_ms: wait_ms, min_bytes: 1 };
    values_of(&client.fetch(request).unwrap().records)
}

fn run(busy_poll: bool) {
    let dir = temp_dir(&format!("embedded-{busy_poll}"));
    let broker = Broker::open(config(&dir, busy_poll)).unwrap();
    let client = broker.client();
    client.create_topic("e", 4, Retention::Default, Retention::Default).unwrap();
    assert!(client.create_topic("e", 4, Retention::Default, Retention::Default).is_err());
    // Four threads, one partition each (partitions live on both shards).
    let threads: Vec<_> = (0..4u32)
        .map(|partition| {
            let client = client.clone();
            std::thread::spawn(move || {
                for i in 0..50u64 {
                    let acks = [Acks::Written, Acks::Durable][(i % 2) as usize];
                    let batch = BytesMut::from(&batch_of(&[format!("p{partition}-{i}").into_bytes()], 1)[..]);
                    let base = client.produce("e", partition, batch, acks).unwrap();
                    assert_eq!(base, Some(i));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    // acks=none returns at once; a later acknowledged produce proves it landed first.
    client.produce("e", 0, BytesMut::from(&batch_of(&[b"none".to_vec()], 1)[..]), Acks::None).unwrap();
    let base = client.produce("e", 0, BytesMut::from(&batch_of(&[b"after".to_vec()], 1)[..]), Acks::Written).unwrap();
    assert_eq!(base, Some(51));
    for partition in 0..4u32 {
        let values = fetch(&client, "e", partition, 0, 0);
        assert_eq!(values[..50], (0..50).map(|i| format!("p{partition}-{i}")).collect::<Vec<_>>()[..]);
    }
    let offsets = client.list_offsets("e", 0, -1).unwrap();
    assert_eq!(offsets.latest, 52);
    // A long poll woken by a produce from another thread.
    let poller = {
        let client = client.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            (fetch(&client, "e", 3, 50, 10_000), started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    client.produce("e", 3, BytesMut::from(&batch_of(&[b"wake".to_vec()], 1)[..]), Acks::Written).unwrap();
    let (values, waited) = poller.join().unwrap();
    assert_eq!(values, vec!["wake".to_string()]);
    assert!(waited < Duration::from_secs(5), "not woken: {waited:?}");
    let error =
        client.produce("missing", 0, BytesMut::from(&batch_of(&[b"x".to_vec()], 1)[..]), Acks::Written).unwrap_err();
    assert!(error.to_string().contains("unknown topic"), "{error}");
    let mut corrupt = batch_of(&[b"x".to_vec()], 1);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    let error = client.produce("e", 0, BytesMut::from(&corrupt[..]), Acks::Durable).unwrap_err();
    assert_eq!(error.code(), Some(ringmq::protocol::ErrorCode::CorruptBatch));
    broker.close().unwrap();

    let broker = Broker::open(config(&dir, busy_poll)).unwrap();
    let client = broker.client();
    assert_eq!(client.topics().unwrap().len(), 1);
    assert_eq!(client.list_offsets("e", 3, -1).unwrap().latest, 51);
    assert_eq!(fetch(&client, "e", 1, 49, 0), vec!["p1-49".to_string()]);
    client.delete_topic("e").unwrap();
    assert!(client.topics().unwrap().is_empty());
    broker.close().unwrap();
}

#[test]
fn the_embedded_broker_serves_in_process_clients() {
    run(false);
}

#[test]
fn the_embedded_broker_serves_in_busy_poll_mode() {
    run(true);
}

#[test]
fn calls_after_close_fail_instead_of_hanging() {
    let dir = temp_dir("embedded-closed");
    let broker = Broker::open(config(&dir, false)).unwrap();
    let client = broker.client();
    client.create_topic("c", 2, Retention::Default, Retention::Default).unwrap();
    broker.close().unwrap();
    let started = Instant::now();
    let batch = || BytesMut::from(&batch_of(&[b"late".to_vec()], 1)[..]);
    for acks in [Acks::None, Acks::Written, Acks::Durable] {
        let error = client.produce("c", 1, batch(), acks).unwrap_err();
        assert_eq!(error.code(), Some(ringmq::protocol::ErrorCode::ShuttingDown), "{error}");
    }
    assert!(client.list_offsets("c", 0, -1).is_err());
    assert!(client.create_topic("d", 1, Retention::Default, Retention::Default).is_err());
    assert!(!dir.join("topics/d").exists(), "a refused create left files behind");
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// The batching producer runs on the embedded client through the one
/// `Transport`: idempotent (acks durable) and keyed records land where the
/// partitioner puts them, each once, in order per partition.
#[test]
fn the_batching_producer_runs_on_the_embedded_client() {
    use ringmq::client::{partition_for_key, Producer, ProducerConfig};
    let dir = temp_dir("embedded-producer");
    let broker = Broker::open(config(&dir, false)).unwrap();
    let client = broker.client();
    client.create_topic("batched", 3, Retention::Default, Retention::Default).unwrap();
    let producer = Producer::on(std::sync::Arc::new(client.clone()), ProducerConfig::default()).unwrap();
    for i in 0..300u32 {
        let key = format!("k{}", i % 7);
        producer.send("batched", None, Some(key.as_bytes()), format!("{key}:{i}").as_bytes(), &[]).unwrap();
    }
    let report = producer.flush().unwrap();
    assert_eq!((report.records_acknowledged, report.records_failed), (300, 0), "{report:?}");
    drop(producer);
    let mut seen = 0;
    for partition in 0..3 {
        let values = fetch(&client, "batched", partition, 0, 0);
        let mut last_of_key = std::collections::HashMap::new();
        for value in &values {
            let (key, i) = value.split_once(':').unwrap();
            assert_eq!(partition_for_key(key.as_bytes(), 3), partition, "{value} in partition {partition}");
            let i: u32 = i.parse().unwrap();
            if let Some(previous) = last_of_key.insert(key.to_owned(), i) {
                assert!(previous < i, "{key}: {previous} before {i}");
            }
        }
        seen += values.len();
    }
    assert_eq!(seen, 300);
    drop(client);
    broker.close().unwrap();
}

/// The async queue under `rmq_produce_async`: completions arrive in queue
/// order with consecutive offsets; after close, submits are refused.
#[test]
fn the_async_sender_completes_in_queue_order_and_refuses_after_close() {
    use ringmq::client::sender::{AsyncSender, OutgoingRecord, QueueError};
    use std::sync::{Arc, Mutex};
    let dir = temp_dir("embedded-async");
    let broker = Broker::open(config(&dir, false)).unwrap();
    let client = broker.client();
    client.create_topic("queued", 1, Retention::Default, Retention::Default).unwrap();
    let queue = AsyncSender::new(Arc::new(client.clone()), 64);
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    for i in 0..40u64 {
        let record = OutgoingRecord { value: Some(format!("q{i}").into_bytes()), timestamp: 1, ..Default::default() };
        let acks = [Acks::Written, Acks::Durable][(i % 2) as usize];
        let seen = outcomes.clone();
        let done = Box::new(move |result: ringmq::client::Result<Option<u64>>| {
            seen.lock().unwrap().push(result.unwrap());
        });
        queue.submit("queued", Some(0), vec![record], acks, done).unwrap();
    }
    queue.close();
    let expected: Vec<Option<u64>> = (0..40).map(Some).collect();
    assert_eq!(*outcomes.lock().unwrap(), expected);
    let refused = queue.submit("queued", Some(0), vec![OutgoingRecord::default()], Acks::Written, Box::new(|_| {}));
    assert!(matches!(refused, Err(QueueError::Closed)));
    assert_eq!(fetch(&client, "queued", 0, 0, 0).len(), 40);
    drop(client);
    broker.close().unwrap();
}
