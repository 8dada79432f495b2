//! Guards name limits (issue 12, item 4): every topic and group name that
//! create accepts survives every later operation — produce, fetch, retention,
//! consumer-group offsets, share-group state, its default dead-letter topic, a
//! restart, delete and re-create. Before, a 249-byte topic could be created but
//! not deleted (its `deleted/` name was too long for the file system), and its
//! default dead-letter topic `<topic>.dlq` was not a valid name.

mod common;

use common::{batch_of, start_server, temp_dir, values_of};
use ringmq::client::group::{commit_offsets, fetch_offsets};
use ringmq::client::share::{ShareConsumer, ShareConsumerConfig};
use ringmq::client::{Client, Retention};
use ringmq::groups::share::default_dead_letter_topic;
use ringmq::groups::share::AckKind;
use ringmq::log::Acks;
use ringmq::protocol::fetch::FetchRequest;
use ringmq::protocol::group::CommittedOffset;
use ringmq::protocol::offsets::QUERY_EARLIEST;
use ringmq::protocol::{ErrorCode, TOPIC_NAME_BYTES_MAX};
use std::time::{Duration, Instant};

fn longest(prefix: &str) -> String {
    let mut name = prefix.to_owned();
    while name.len() < TOPIC_NAME_BYTES_MAX {
        name.push(char::from(b'a' + (name.len() % 26) as u8));
    }
    name
}

/// Records carry the current time, so the default 7-day retention keeps them.
fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Every record of a partition (a read stops at a segment's end: loop).
fn fetch_all(client: &mut Client, topic: &str, partition: u32) -> Vec<String> {
    let mut values = Vec::new();
    let mut offset = client.list_offsets(topic, partition, QUERY_EARLIEST).unwrap().offset as u64;
    loop {
        let request =
            FetchRequest { topic: topic.into(), partition, offset, max_bytes: 1 << 20, max_wait_ms: 0, min_bytes: 0 };
        let result = client.fetch(&request).unwrap();
        if result.records.is_empty() {
            return values;
        }
        let records = ringmq::client::decode_records(&result.records, offset).unwrap();
        offset = records.last().map_or(offset, |r| r.offset + 1);
        values.extend(values_of(&result.records));
    }
}

#[test]
fn the_longest_names_survive_every_operation() {
    let dir = temp_dir("names-longest");
    let tweak = |config: &mut ringmq::server::ServerConfig| {
        config.segment_bytes = 512;
        config.retention_check_interval_ms = 20;
    };
    let server = start_server(&dir, 2, tweak);
    let bootstrap = server.address().to_string();
    let mut client = Client::connect(&bootstrap).unwrap();
    let topic = longest("t-");
    let group = longest("g-");
    assert_eq!(topic.len(), TOPIC_NAME_BYTES_MAX);
    let too_long = format!("{topic}x");
    let refused = client.create_topic(&too_long, 1, Retention::Default, Retention::Default).unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::InvalidTopicName));

    client.create_topic(&topic, 2, Retention::Default, Retention::Default).unwrap();
    for partition in 0..2 {
        client.produce(&topic, partition, &batch_of(&[b"first".to_vec()], now()), Acks::Durable).unwrap();
    }
    assert_eq!(fetch_all(&mut client, &topic, 1), ["first"]);

    // Consumer-group offsets under the longest group name.
    let committed = CommittedOffset { topic: topic.clone(), partition: 1, offset: 1, metadata: String::new() };
    commit_offsets(&client, &group, vec![committed]).unwrap();

    // Share-group state under the longest names, and its default dead-letter
    // topic, which must itself be a valid (and distinct) topic name.
    let dead_letter_topic = default_dead_letter_topic(&topic);
    assert!(ringmq::protocol::valid_topic_name(&dead_letter_topic), "{dead_letter_topic}");
    assert_ne!(dead_letter_topic, topic);
    let share_client = Client::connect(&bootstrap).unwrap();
    let mut consumer = ShareConsumer::new(share_client, &group, &topic, ShareConsumerConfig::default()).unwrap();
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.len() < 2 && Instant::now() < deadline {
        received.extend(consumer.receive(10, Duration::from_millis(200)).unwrap());
    }
    assert_eq!(received.len(), 2);
    consumer.acknowledge_all(&received, AckKind::Reject).unwrap();
    let letters = |client: &mut Client| -> usize {
        (0..client.partition_count(&dead_letter_topic).unwrap())
            .map(|p| fetch_all(client, &dead_letter_topic, p).len())
            .sum()
    };
    assert_eq!(letters(&mut client), 2, "both records dead-lettered");
    drop(consumer);

    // Retention under the longest name: roll segments, then limit the bytes.
    for _ in 0..20 {
        client.produce(&topic, 0, &batch_of(&[vec![b'r'; 200]], now()), Acks::Written).unwrap();
    }
    server.shutdown().unwrap();

    // A restart loads all of it.
    let server = start_server(&dir, 2, tweak);
    let mut client = Client::connect(&server.address().to_string()).unwrap();
    assert_eq!(fetch_all(&mut client, &topic, 1), ["first"]);
    let offsets = fetch_offsets(&client, &group, vec![(topic.clone(), 1)]).unwrap();
    assert_eq!(offsets[0].offset, 1);
    assert_eq!(letters(&mut client), 2);

    // Delete (the dead-letter topic and the topic) and create again.
    client.delete_topic(&dead_letter_topic).unwrap();
    client.delete_topic(&topic).unwrap();
    assert!(!dir.join("deleted").exists() || std::fs::read_dir(dir.join("deleted")).unwrap().next().is_none());
    client.create_topic(&topic, 1, Retention::Default, Retention::Limit(600)).unwrap();
    assert!(fetch_all(&mut client, &topic, 0).is_empty(), "a re-created topic starts empty");
    for _ in 0..20 {
        client.produce(&topic, 0, &batch_of(&[vec![b'r'; 200]], now()), Acks::Written).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let earliest = client.list_offsets(&topic, 0, QUERY_EARLIEST).unwrap().offset;
        if earliest > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "retention never removed a segment of the longest-named topic");
        std::thread::sleep(Duration::from_millis(20));
    }
    client.delete_topic(&topic).unwrap();
    server.shutdown().unwrap();
}

#[test]
fn default_dead_letter_topics_are_valid_and_distinct_for_every_valid_topic() {
    assert_eq!(default_dead_letter_topic("orders"), "orders.dlq");
    let a = longest("a-");
    let b = longest("a-").replace(char::from(a.as_bytes()[TOPIC_NAME_BYTES_MAX - 1]), "Z");
    for topic in [longest(""), a.clone(), b.clone(), "x".repeat(TOPIC_NAME_BYTES_MAX - 4), "x".repeat(246)] {
        let dlq = default_dead_letter_topic(&topic);
        assert!(ringmq::protocol::valid_topic_name(&dlq) && dlq.ends_with(".dlq"), "{dlq}");
        assert_ne!(dlq, topic);
    }
    assert_ne!(default_dead_letter_topic(&a), default_dead_letter_topic(&b));
}
