//! Guards fetches sent from a mapping of the segment (reads of at least
//! `MAP_READ_MIN_BYTES`): the records that reach a TCP client are exactly the
//! batches produced, from an offset inside a batch and across segment rolls;
//! small fetches are copied as before.

mod common;

use common::{batch_of, start_server, temp_dir, values_of};
use ringmq::client::{Client, Retention};
use ringmq::log::partition::MAP_READ_MIN_BYTES;
use ringmq::log::Acks;
use ringmq::protocol::fetch::FetchRequest;
use std::sync::atomic::Ordering;

const BATCHES: usize = 200;
const RECORDS_PER_BATCH: usize = 10;

fn value(batch: usize, record: usize) -> String {
    format!("{batch:04}-{record:02}-{}", "x".repeat(1000))
}

#[test]
fn large_fetches_send_the_segment_mapped_and_byte_for_byte() {
    let dir = temp_dir("fetch-mapped");
    // Small segments: 2 MB of records roll a few times.
    let server = start_server(&dir, 1, |config| config.segment_bytes = 512 * 1024);
    let client = Client::connect(&server.address().to_string()).unwrap();
    client.create_topic("m", 1, Retention::Default, Retention::Default).unwrap();
    let mut sent = Vec::new();
    for b in 0..BATCHES {
        let values: Vec<Vec<u8>> = (0..RECORDS_PER_BATCH).map(|r| value(b, r).into_bytes()).collect();
        let batch = batch_of(&values, 1);
        client.produce("m", 0, &batch, Acks::Written).unwrap();
        sent.extend((0..RECORDS_PER_BATCH).map(|r| value(b, r)));
    }
    let request = |offset: u64, max_bytes: u32| FetchRequest {
        topic: "m".into(),
        partition: 0,
        offset,
        max_bytes,
        max_wait_ms: 0,
        min_bytes: 1,
    };
    let mapped_before = server.counters().fetch_mapped_bytes.load(Ordering::Relaxed);
    // Read everything with large fetches, starting inside a batch.
    let mut offset = 5u64;
    let mut got = Vec::new();
    while offset < sent.len() as u64 {
        let result = client.fetch(&request(offset, 1 << 20)).unwrap();
        assert!(!result.records.is_empty(), "offset {offset}");
        let values = values_of(&result.records);
        let first_in_batch = offset - offset % RECORDS_PER_BATCH as u64;
        // Whole batches: the first one starts at or before the offset.
        assert_eq!(values[0], sent[first_in_batch as usize]);
        got.extend(values.into_iter().skip((offset - first_in_batch) as usize));
        offset = first_in_batch + decoded_count(&result.records);
    }
    assert_eq!(got, sent[5..].to_vec());
    let mapped = server.counters().fetch_mapped_bytes.load(Ordering::Relaxed) - mapped_before;
    assert!(mapped as usize >= MAP_READ_MIN_BYTES, "large fetches were mapped ({mapped} bytes)");
    // A small fetch is copied.
    let mapped_before = server.counters().fetch_mapped_bytes.load(Ordering::Relaxed);
    let small = client.fetch(&request(0, 1)).unwrap();
    assert_eq!(values_of(&small.records)[0], sent[0]);
    assert_eq!(server.counters().fetch_mapped_bytes.load(Ordering::Relaxed), mapped_before);
    server.shutdown().unwrap();
}

fn decoded_count(records: &[u8]) -> u64 {
    values_of(records).len() as u64
}
