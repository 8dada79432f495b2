//! Guards the embedded client's fetches from a partition's tail ring (the
//! owner publishes its newest small batches; the client reads them without a
//! round trip through the shard): the same records, high watermark and
//! earliest offset as the shard's own fetch, the shard's answer for what the
//! ring does not hold (lapped, too large), no stale data after a topic is
//! deleted and created again, and long polls that wait as documented.

mod common;

use bytes::BytesMut;
use common::{batch_of, temp_dir, values_of};
use ringmq::client::Retention;
use ringmq::embedded::{Broker, EmbeddedClient};
use ringmq::log::Acks;
use ringmq::protocol::fetch::FetchRequest;
use ringmq::server::tail_ring::TAIL_RING_SLOTS;
use ringmq::server::ServerConfig;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn open(name: &str, busy_poll: bool) -> Broker {
    let mut config = ServerConfig::new(temp_dir(&format!("follow-{name}-{busy_poll}")));
    config.shards = 2;
    config.pin_threads = false;
    config.busy_poll = busy_poll;
    Broker::open(config).unwrap()
}

fn request(topic: &str, offset: u64, max_bytes: u32, max_wait_ms: u32, min_bytes: u32) -> FetchRequest {
    FetchRequest { topic: topic.into(), partition: 0, offset, max_bytes, max_wait_ms, min_bytes }
}

fn produce(client: &EmbeddedClient, topic: &str, value: &[u8]) -> u64 {
    let batch = BytesMut::from(&batch_of(&[value.to_vec()], 1)[..]);
    client.produce(topic, 0, batch, Acks::Written).unwrap().unwrap()
}

fn follower_fetches(broker: &Broker) -> u64 {
    broker.counters().follower_fetches.load(Ordering::Relaxed)
}

fn serves_the_newest_batches_as_the_shard_would(busy_poll: bool) {
    let broker = open("same", busy_poll);
    let client = broker.client();
    client.create_topic("f", 1, Retention::Default, Retention::Default).unwrap();
    // The first fetch makes the ring; nothing is there yet.
    assert!(client.fetch(request("f", 0, 1 << 20, 0, 1)).unwrap().records.is_empty());
    let count = TAIL_RING_SLOTS as u64 + 36;
    for i in 0..count {
        assert_eq!(produce(&client, "f", format!("v{i}").as_bytes()), i);
    }
    let before = follower_fetches(&broker);
    for offset in 0..count {
        // One batch per fetch (max_bytes below two of them).
        let followed = client.fetch(request("f", offset, 1, 0, 1)).unwrap();
        assert_eq!(values_of(&followed.records), vec![format!("v{offset}")], "offset {offset}");
        // The shard's own answer (fetch_async always asks the shard).
        let asked = client.fetch_async(request("f", offset, 1, 0, 1)).unwrap().wait().unwrap();
        assert_eq!(followed.records, asked.records, "offset {offset}: the same bytes");
        assert_eq!((followed.high_watermark, followed.earliest), (asked.high_watermark, asked.earliest));
    }
    // The oldest were lapped (asked of the shard), the newest came from the ring.
    let from_ring = follower_fetches(&broker) - before;
    assert_eq!(from_ring, TAIL_RING_SLOTS as u64, "each of the ring's batches, once");
    // Many batches in one fetch, up to max_bytes.
    let all = client.fetch(request("f", 40, 1 << 20, 0, 1)).unwrap();
    let expected: Vec<String> = (40..count).map(|i| format!("v{i}")).collect();
    assert_eq!(values_of(&all.records), expected);
    assert_eq!(all.high_watermark, count);
    broker.close().unwrap();
}

#[test]
fn a_follower_gets_the_same_answers_as_the_shard() {
    serves_the_newest_batches_as_the_shard_would(false);
}

#[test]
fn a_busy_polling_follower_gets_the_same_answers_as_the_shard() {
    serves_the_newest_batches_as_the_shard_would(true);
}

#[test]
fn a_batch_too_large_for_the_ring_is_read_from_the_log() {
    let broker = open("large", false);
    let client = broker.client();
    client.create_topic("f", 1, Retention::Default, Retention::Default).unwrap();
    assert!(client.fetch(request("f", 0, 1 << 20, 0, 1)).unwrap().records.is_empty());
    let large = vec![b'x'; 6000];
    produce(&client, "f", &large);
    produce(&client, "f", b"small");
    let before = follower_fetches(&broker);
    let first = client.fetch(request("f", 0, 1 << 20, 0, 1)).unwrap();
    assert_eq!(values_of(&first.records), vec![String::from_utf8(large).unwrap(), "small".into()]);
    assert_eq!(follower_fetches(&broker), before, "the shard answered");
    assert_eq!(values_of(&client.fetch(request("f", 1, 1 << 20, 0, 1)).unwrap().records), vec!["small"]);
    assert_eq!(follower_fetches(&broker), before + 1, "the ring answered");
    broker.close().unwrap();
}

#[test]
fn a_topic_deleted_and_created_again_is_not_served_from_the_old_ring() {
    let broker = open("recreate", false);
    let client = broker.client();
    client.create_topic("f", 1, Retention::Default, Retention::Default).unwrap();
    assert!(client.fetch(request("f", 0, 1 << 20, 0, 1)).unwrap().records.is_empty());
    produce(&client, "f", b"old");
    assert_eq!(values_of(&client.fetch(request("f", 0, 1 << 20, 0, 1)).unwrap().records), vec!["old"]);
    client.delete_topic("f").unwrap();
    assert!(client.fetch(request("f", 0, 1 << 20, 0, 1)).is_err(), "no such topic now");
    client.create_topic("f", 1, Retention::Default, Retention::Default).unwrap();
    assert!(client.fetch(request("f", 0, 1 << 20, 0, 1)).unwrap().records.is_empty());
    produce(&client, "f", b"new");
    assert_eq!(values_of(&client.fetch(request("f", 0, 1 << 20, 0, 1)).unwrap().records), vec!["new"]);
    broker.close().unwrap();
}

fn long_polls_wait_for_the_next_batch(busy_poll: bool) {
    let broker = open("wait", busy_poll);
    let client = broker.client();
    client.create_topic("f", 1, Retention::Default, Retention::Default).unwrap();
    produce(&client, "f", b"first");
    assert_eq!(values_of(&client.fetch(request("f", 0, 1 << 20, 0, 1)).unwrap().records), vec!["first"]);
    // At the end: the wait runs its time and answers nothing.
    let started = Instant::now();
    assert!(client.fetch(request("f", 1, 1 << 20, 100, 1)).unwrap().records.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(90), "waited {:?}", started.elapsed());
    // A batch produced by another thread ends the wait.
    let producer = {
        let client = broker.client();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            produce(&client, "f", b"second");
        })
    };
    let started = Instant::now();
    let next = client.fetch(request("f", 1, 1 << 20, 10_000, 1)).unwrap();
    assert_eq!(values_of(&next.records), vec!["second"]);
    assert!(started.elapsed() < Duration::from_secs(5));
    producer.join().unwrap();
    // min_bytes above what there is: the fetch waits for its time, then
    // answers what there is.
    let started = Instant::now();
    let little = client.fetch(request("f", 1, 1 << 20, 100, 1 << 16)).unwrap();
    assert_eq!(values_of(&little.records), vec!["second"]);
    assert!(started.elapsed() >= Duration::from_millis(90), "waited {:?}", started.elapsed());
    broker.close().unwrap();
}

#[test]
fn long_polls_of_a_follower_wait_as_documented() {
    long_polls_wait_for_the_next_batch(false);
}

#[test]
fn busy_polling_long_polls_of_a_follower_wait_as_documented() {
    long_polls_wait_for_the_next_batch(true);
}
