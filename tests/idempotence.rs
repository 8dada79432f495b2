//! Guards idempotent producers end to end: a resent batch is appended once and
//! answered with its original offset (also after a restart, from state rebuilt
//! out of the log), a sequence gap and a fenced epoch get their own errors and
//! append nothing, producer ids are never handed out twice, and the batching
//! producer is idempotent by default with acks durable.

mod common;

use common::{start_server, temp_dir, values_of};
use ringmq::batch::{BatchBuilder, BatchHeader};
use ringmq::client::{Client, Producer, ProducerConfig, Retention};
use ringmq::embedded::Broker;
use ringmq::log::Acks;
use ringmq::protocol::fetch::FetchRequest;
use ringmq::protocol::ErrorCode;
use ringmq::server::ServerConfig;
use std::sync::atomic::Ordering;

fn batch(producer: (i64, i16), sequence: i32, values: &[&str]) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    builder.producer(producer.0, producer.1, sequence);
    for value in values {
        builder.append(1, None, Some(value.as_bytes()), &[]).unwrap();
    }
    builder.finish().unwrap()
}

fn everything(client: &mut Client, topic: &str) -> Vec<u8> {
    let request =
        FetchRequest { topic: topic.into(), partition: 0, offset: 0, max_bytes: 1 << 20, max_wait_ms: 0, min_bytes: 0 };
    client.fetch(&request).unwrap().records
}

fn code(result: ringmq::client::Result<Option<u64>>) -> Option<ErrorCode> {
    result.err().and_then(|e| e.code())
}

#[test]
fn a_resent_batch_is_appended_once_also_after_a_restart_and_gaps_and_fenced_epochs_are_refused() {
    let dir = temp_dir("idempotence");
    let server = start_server(&dir, 2, |_| {});
    let mut client = Client::connect(&server.address().to_string()).unwrap();
    client.create_topic("t", 1, Retention::Default, Retention::Default).unwrap();
    let producer = client.init_producer_id("").unwrap();
    let first = batch(producer, 0, &["a", "b", "c"]);
    for acks in [Acks::Durable, Acks::Written, Acks::Durable] {
        assert_eq!(client.produce("t", 0, &first, acks).unwrap(), Some(0), "a resend gets the original offset");
    }
    let second = batch(producer, 3, &["d"]);
    assert_eq!(client.produce("t", 0, &second, Acks::Durable).unwrap(), Some(3));
    let gap = batch(producer, 9, &["x"]);
    assert_eq!(code(client.produce("t", 0, &gap, Acks::Durable)), Some(ErrorCode::OutOfOrderSequence));
    let negative = batch(producer, -4, &["x"]);
    assert_eq!(code(client.produce("t", 0, &negative, Acks::Durable)), Some(ErrorCode::InvalidArgument));
    assert_eq!(values_of(&everything(&mut client, "t")), ["a", "b", "c", "d"]);
    assert_eq!(server.counters().duplicate_batches.load(Ordering::Relaxed), 2);
    server.shutdown().unwrap();

    // After a restart the table is rebuilt from the log: the resend is still
    // recognised, and the next sequence continues; ids are never reused.
    let server = start_server(&dir, 2, |_| {});
    let mut client = Client::connect(&server.address().to_string()).unwrap();
    assert_eq!(client.produce("t", 0, &second, Acks::Durable).unwrap(), Some(3));
    assert_eq!(client.produce("t", 0, &batch(producer, 4, &["e"]), Acks::Durable).unwrap(), Some(4));
    let other = client.init_producer_id("").unwrap();
    assert_ne!(other.0, producer.0, "a restart never hands out an id twice");
    assert_eq!(
        code(client.produce("t", 0, &batch(other, 2, &["x"]), Acks::Durable)),
        Some(ErrorCode::UnknownProducerId),
        "a producer the partition has not seen must start at sequence 0"
    );

    // A named producer keeps its id; each init raises the epoch and fences the older.
    let old = client.init_producer_id("billing").unwrap();
    assert_eq!(client.produce("t", 0, &batch(old, 0, &["f"]), Acks::Durable).unwrap(), Some(5));
    let new = client.init_producer_id("billing").unwrap();
    assert_eq!((new.0, new.1), (old.0, old.1 + 1));
    assert_eq!(client.produce("t", 0, &batch(new, 0, &["g"]), Acks::Durable).unwrap(), Some(6));
    assert_eq!(code(client.produce("t", 0, &batch(old, 1, &["x"]), Acks::Durable)), Some(ErrorCode::ProducerFenced));
    assert_eq!(values_of(&everything(&mut client, "t")), ["a", "b", "c", "d", "e", "f", "g"]);
    server.shutdown().unwrap();
    let server = start_server(&dir, 2, |_| {});
    let client = Client::connect(&server.address().to_string()).unwrap();
    assert_eq!(client.init_producer_id("billing").unwrap(), (old.0, old.1 + 2), "named epochs survive restarts");
    let bad = client.init_producer_id("no spaces allowed").unwrap_err();
    assert_eq!(bad.code(), Some(ErrorCode::InvalidArgument));
    server.shutdown().unwrap();
}

#[test]
fn the_batching_producer_is_idempotent_by_default_with_acks_durable() {
    let dir = temp_dir("idempotence-producer");
    let server = start_server(&dir, 1, |_| {});
    let bootstrap = server.address().to_string();
    let mut client = Client::connect(&bootstrap).unwrap();
    client.create_topic("t", 1, Retention::Default, Retention::Default).unwrap();
    for acks in [Acks::Durable, Acks::Written] {
        let producer =
            Producer::new(&bootstrap, ProducerConfig { acks, batch_bytes: 64, ..Default::default() }).unwrap();
        for i in 0..20 {
            producer.send("t", Some(0), None, format!("{i}").as_bytes(), &[]).unwrap();
        }
        let report = producer.flush().unwrap();
        assert_eq!((report.records_acknowledged, report.records_failed), (20, 0));
    }
    let bytes = everything(&mut client, "t");
    let mut rest = &bytes[..];
    let mut headers = Vec::new();
    while !rest.is_empty() {
        let header = BatchHeader::parse(rest).unwrap();
        rest = &rest[header.size_bytes()..];
        headers.push(header);
    }
    let durable: Vec<&BatchHeader> = headers.iter().filter(|h| h.producer_id >= 0).collect();
    assert!(durable.len() > 1, "small batches: several per producer");
    let mut expected_sequence = 0;
    for header in &durable {
        assert_eq!(header.base_sequence, expected_sequence, "dense sequences per partition");
        expected_sequence += header.last_offset_delta + 1;
    }
    assert_eq!(expected_sequence, 20);
    assert!(headers.iter().any(|h| h.producer_id < 0), "acks written is not idempotent by default");
    server.shutdown().unwrap();
}

#[test]
fn the_embedded_broker_deduplicates_too() {
    let dir = temp_dir("idempotence-embedded");
    let mut config = ServerConfig::new(&dir);
    config.shards = 2;
    config.pin_threads = false;
    let broker = Broker::open(config).unwrap();
    let client = broker.client();
    client.create_topic("t", 1, Retention::Default, Retention::Default).unwrap();
    let producer = client.init_producer_id("").unwrap();
    let bytes = batch(producer, 0, &["only once"]);
    for _ in 0..3 {
        let offset = client.produce("t", 0, bytes::BytesMut::from(&bytes[..]), Acks::Durable).unwrap();
        assert_eq!(offset, Some(0));
    }
    assert_eq!(client.list_offsets("t", 0, -1).unwrap().latest, 1);
    broker.close().unwrap();
}
