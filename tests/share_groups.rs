//! Guards share groups (queues) end to end: members drain a topic with every
//! record accepted exactly once; release and lease expiry redeliver with the
//! delivery count raised; reject and max deliveries dead-letter the record with
//! headers naming its origin, and it is never delivered again; a restart keeps
//! what was accepted and frees what was leased; describe counts the states.

mod common;

use common::{batch_of, start_server, temp_dir};
use ringmq::client::group::describe_group;
use ringmq::client::share::{ShareConsumer, ShareConsumerConfig, ShareRecord};
use ringmq::client::Transport;
use ringmq::client::{decode_records, Client, Retention};
use ringmq::groups::share::AckKind;
use ringmq::log::Acks;
use ringmq::protocol::fetch::FetchRequest;
use ringmq::protocol::group::{KIND_SHARE, STATE_STABLE};
use ringmq::protocol::ErrorCode;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn fill(client: &mut Client, topic: &str, partitions: u32, per_partition: usize) {
    client.create_topic(topic, partitions, Retention::Default, Retention::Default).unwrap();
    for partition in 0..partitions {
        for chunk in (0..per_partition).collect::<Vec<_>>().chunks(100) {
            let values: Vec<Vec<u8>> = chunk.iter().map(|i| format!("{partition}-{i}").into_bytes()).collect();
            client.produce(topic, partition, &batch_of(&values, 1), Acks::Written).unwrap();
        }
    }
}

fn value(record: &ShareRecord) -> String {
    String::from_utf8(record.record.value.clone().unwrap()).unwrap()
}

#[test]
fn four_members_drain_a_topic_with_every_record_accepted_exactly_once() {
    let dir = temp_dir("share-drain");
    let server = start_server(&dir, 2, |_| {});
    let bootstrap = server.address().to_string();
    let mut admin = Client::connect(&bootstrap).unwrap();
    fill(&mut admin, "jobs", 2, 2000);
    let started = Instant::now();
    let members: Vec<_> = (0..4)
        .map(|_| {
            let bootstrap = bootstrap.clone();
            std::thread::spawn(move || {
                let client = Client::connect(&bootstrap).unwrap();
                let config = ShareConsumerConfig { max_records: 100, ..Default::default() };
                let mut consumer = ShareConsumer::new(client, "workers", "jobs", config).unwrap();
                let mut accepted = Vec::new();
                loop {
                    let records = consumer.receive(100, Duration::from_millis(300)).unwrap();
                    if records.is_empty() {
                        return accepted;
                    }
                    consumer.acknowledge_all(&records, AckKind::Accept).unwrap();
                    accepted.extend(records.iter().map(|r| (r.partition, r.record.offset, value(r))));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for member in members {
        let accepted = member.join().unwrap();
        assert!(!accepted.is_empty(), "every member got work");
        all.extend(accepted);
    }
    let elapsed = started.elapsed();
    let unique: BTreeSet<(u32, u64)> = all.iter().map(|(p, o, _)| (*p, *o)).collect();
    assert_eq!(unique.len(), all.len(), "no record accepted twice");
    assert_eq!(unique.len(), 4000, "every record accepted");
    // The 300 ms idle wait at the end of each member is part of `elapsed`.
    eprintln!("share group: 4 members accepted 4000 records in {elapsed:?}");
    let description = describe_group(&admin, "workers").unwrap();
    assert_eq!(description.kind, KIND_SHARE);
    for share in &description.share {
        assert_eq!((share.start, share.end, share.available, share.acquired), (2000, 2000, 0, 0));
    }
    server.shutdown().unwrap();
}

fn dead_letters(client: &mut Client, topic: &str) -> Vec<ringmq::client::ConsumedRecord> {
    let request =
        FetchRequest { topic: topic.into(), partition: 0, offset: 0, max_bytes: 1 << 20, max_wait_ms: 0, min_bytes: 0 };
    decode_records(&client.fetch(&request).unwrap().records, 0).unwrap()
}

fn header<'a>(record: &'a ringmq::client::ConsumedRecord, name: &str) -> &'a str {
    let (_, value) = record.headers.iter().find(|(k, _)| k == name.as_bytes()).expect("header present");
    std::str::from_utf8(value.as_deref().unwrap()).unwrap()
}

#[test]
fn release_expiry_reject_and_max_deliveries_behave_as_documented() {
    let dir = temp_dir("share-redelivery");
    let server = start_server(&dir, 2, |_| {});
    let bootstrap = server.address().to_string();
    let mut admin = Client::connect(&bootstrap).unwrap();
    fill(&mut admin, "q", 1, 3);
    let config = ShareConsumerConfig {
        lease: Duration::from_millis(2000),
        max_deliveries: 3,
        max_records: 1,
        ..Default::default()
    };
    let mut a = ShareConsumer::new(Client::connect(&bootstrap).unwrap(), "g", "q", config.clone()).unwrap();
    let mut b = ShareConsumer::new(Client::connect(&bootstrap).unwrap(), "g", "q", config).unwrap();
    let wait = Duration::from_millis(50);
    // Release: the same record comes back with its count raised.
    let first = a.receive(1, wait).unwrap();
    assert_eq!((first[0].record.offset, first[0].delivery_count), (0, 1));
    let other = b.receive(1, wait).unwrap();
    assert_eq!(other[0].record.offset, 1, "members get disjoint records");
    assert_eq!(b.acknowledge(&[(0, 0, AckKind::Accept)]).unwrap(), vec![ErrorCode::InvalidRecordState], "a's record");
    a.acknowledge_all(&first, AckKind::Release).unwrap();
    let again = b.receive(1, wait).unwrap();
    assert_eq!((again[0].record.offset, again[0].delivery_count), (0, 2));
    // Lease expiry: b lets offset 0's lease run out but renews offset 1's.
    // (Leases run 2 s; the renewed one has about 0.8 s left at the accept below.)
    std::thread::sleep(Duration::from_millis(1200));
    b.acknowledge_all(&other, AckKind::Renew).unwrap();
    std::thread::sleep(Duration::from_millis(900));
    let third = a.receive(1, Duration::from_millis(1000)).unwrap();
    assert_eq!((third[0].record.offset, third[0].delivery_count), (0, 3), "0 expired; 1 was renewed");
    b.acknowledge_all(&other, AckKind::Accept).unwrap_or_else(|e| panic!("the renewed lease is still held: {e}"));
    assert_eq!(b.acknowledge(&[(0, 0, AckKind::Accept)]).unwrap(), vec![ErrorCode::InvalidRecordState], "expired");
    // The third delivery was the last: releasing dead-letters it.
    a.acknowledge_all(&third, AckKind::Release).unwrap();
    // Reject dead-letters at once.
    let rejected = a.receive(1, wait).unwrap();
    assert_eq!(rejected[0].record.offset, 2);
    a.acknowledge_all(&rejected, AckKind::Reject).unwrap();
    // Nothing is left to deliver, ever.
    assert!(a.receive(1, Duration::from_millis(400)).unwrap().is_empty());
    let letters = dead_letters(&mut admin, "q.dlq");
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0].value.as_deref(), Some(&b"0-0"[..]));
    assert_eq!(header(&letters[0], "ringmq.dlq.reason"), "max-deliveries");
    assert_eq!(header(&letters[0], "ringmq.dlq.delivery.count"), "3");
    assert_eq!(header(&letters[0], "ringmq.dlq.topic"), "q");
    assert_eq!(header(&letters[0], "ringmq.dlq.partition"), "0");
    assert_eq!(header(&letters[0], "ringmq.dlq.offset"), "0");
    assert_eq!(header(&letters[0], "ringmq.dlq.group"), "g");
    assert_eq!(letters[1].value.as_deref(), Some(&b"0-2"[..]));
    assert_eq!(header(&letters[1], "ringmq.dlq.reason"), "rejected");
    assert_eq!(letters[1].key.as_deref(), Some(&b"k"[..]), "key kept");
    server.shutdown().unwrap();
}

#[test]
fn a_restart_keeps_accepted_records_archived_and_frees_leased_ones() {
    let dir = temp_dir("share-restart");
    let server = start_server(&dir, 2, |_| {});
    let bootstrap = server.address().to_string();
    let mut admin = Client::connect(&bootstrap).unwrap();
    fill(&mut admin, "q", 2, 10);
    let mut consumer = ShareConsumer::new(Client::connect(&bootstrap).unwrap(), "g", "q", Default::default()).unwrap();
    let mut received = Vec::new();
    while received.len() < 20 {
        received.extend(consumer.receive(7, Duration::from_millis(100)).unwrap());
    }
    let (accept, keep): (Vec<ShareRecord>, Vec<ShareRecord>) =
        received.into_iter().partition(|r| r.record.offset % 2 == 0);
    consumer.acknowledge_all(&accept, AckKind::Accept).unwrap();
    let description = describe_group(&admin, "g").unwrap();
    let acquired: u64 = description.share.iter().map(|s| s.acquired).sum();
    assert_eq!(acquired, 10, "the odd offsets are still leased");
    assert_eq!(description.state, STATE_STABLE);
    assert!(admin.list_groups().unwrap().iter().any(|g| g.group == "g" && g.kind == KIND_SHARE));
    server.shutdown().unwrap();

    let server = start_server(&dir, 2, |_| {});
    let bootstrap = server.address().to_string();
    let mut consumer = ShareConsumer::new(Client::connect(&bootstrap).unwrap(), "g", "q", Default::default()).unwrap();
    let mut again = Vec::new();
    loop {
        let records = consumer.receive(100, Duration::from_millis(200)).unwrap();
        if records.is_empty() {
            break;
        }
        again.extend(records);
    }
    let expected: BTreeSet<(u32, u64)> = keep.iter().map(|r| (r.partition, r.record.offset)).collect();
    let got: BTreeSet<(u32, u64)> = again.iter().map(|r| (r.partition, r.record.offset)).collect();
    assert_eq!(got, expected, "accepted records are not delivered again; leased ones are");
    assert!(again.iter().all(|r| r.delivery_count == 2), "the delivery count survived the restart");
    server.shutdown().unwrap();
}

#[test]
fn a_receive_that_gets_nothing_leaves_no_state_behind() {
    let dir = temp_dir("share-nothing");
    let server = start_server(&dir, 2, |_| {});
    let bootstrap = server.address().to_string();
    let admin = Client::connect(&bootstrap).unwrap();
    admin.create_topic("empty", 1, Retention::Default, Retention::Default).unwrap();
    let mut consumer =
        ShareConsumer::new(Client::connect(&bootstrap).unwrap(), "idle", "empty", Default::default()).unwrap();
    assert!(consumer.receive(10, Duration::from_millis(50)).unwrap().is_empty());
    assert!(!dir.join("groups").join("idle").exists(), "no state file for a group that received nothing");
    server.shutdown().unwrap();
}

#[test]
fn a_rejected_range_is_dead_lettered_in_order_and_never_delivered_again() {
    let dir = temp_dir("share-reject-range");
    let server = start_server(&dir, 2, |_| {});
    let bootstrap = server.address().to_string();
    let mut admin = Client::connect(&bootstrap).unwrap();
    fill(&mut admin, "q", 1, 5);
    let mut consumer = ShareConsumer::new(Client::connect(&bootstrap).unwrap(), "g", "q", Default::default()).unwrap();
    let got = consumer.receive(10, Duration::from_millis(200)).unwrap();
    assert_eq!(got.len(), 5);
    consumer.acknowledge_all(&got, AckKind::Reject).unwrap();
    assert!(consumer.receive(10, Duration::from_millis(200)).unwrap().is_empty());
    let letters = dead_letters(&mut admin, "q.dlq");
    let offsets: Vec<&str> = letters.iter().map(|r| header(r, "ringmq.dlq.offset")).collect();
    assert_eq!(offsets, ["0", "1", "2", "3", "4"]);
    assert!(letters.iter().all(|r| header(r, "ringmq.dlq.reason") == "rejected"));
    let description = describe_group(&admin, "g").unwrap();
    assert_eq!((description.share[0].start, description.share[0].archived), (5, 5));
    server.shutdown().unwrap();
}
