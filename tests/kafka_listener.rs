//! The Kafka listener with raw frames, written here byte by byte from Kafka's
//! message schemas (not with ringmq's own Kafka codec): the ApiVersions
//! handshake at v0, v3 and v4 (the fallback kafka-python relies on), hostile
//! frames (huge array counts, bad varints, truncated and oversized headers)
//! that must leave the broker serving with bounded memory, and records
//! crossing between the two protocols byte for byte. The real clients
//! (confluent-kafka, kafka-python, kcat) are tested in tests/python/.

mod common;

use common::{batch_of, start_server, temp_dir};
use ringmq::batch::BatchBuilder;
use ringmq::client::{Client, Retention};
use ringmq::log::Acks;
use ringmq::protocol::fetch::FetchRequest;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const API_PRODUCE: i16 = 0;
const API_FETCH: i16 = 1;
const API_METADATA: i16 = 3;
const API_VERSIONS: i16 = 18;
const UNSUPPORTED_VERSION: i16 = 35;
const UNKNOWN_PRODUCER_ID: i16 = 59;

/// RSS growth the hostile frames may cause in this process (the server runs in it).
const HOSTILE_RSS_GROWTH_MAX_BYTES: u64 = 64 * 1024 * 1024;

fn start(name: &str) -> (ringmq::server::ServerHandle, std::path::PathBuf) {
    let dir = temp_dir(name);
    let server = start_server(&dir, 2, |config| {
        config.kafka.listen = Some("127.0.0.1:0".parse().unwrap());
    });
    (server, dir)
}

fn request(api_key: i16, version: i16, correlation_id: i32, flexible: bool, body: &[u8]) -> Vec<u8> {
    common::kafka_request(api_key, version, correlation_id, flexible, body)
}

fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

/// Sends `frame` and reads one response frame (without its size field).
fn call(stream: &mut TcpStream, frame: &[u8]) -> Vec<u8> {
    stream.write_all(frame).unwrap();
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).unwrap();
    let mut response = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut response).unwrap();
    response
}

/// Whether the server closed `stream` (reads to the end within the timeout).
fn closed(stream: &mut TcpStream) -> bool {
    let mut sink = Vec::new();
    stream.read_to_end(&mut sink).is_ok()
}

/// A cursor over response bytes; panics (failing the test) on a short read.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
    fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take(2).try_into().unwrap())
    }
    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take(4).try_into().unwrap())
    }
    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take(8).try_into().unwrap())
    }
    fn uvarint(&mut self) -> u64 {
        let mut value = 0u64;
        for shift in (0..35).step_by(7) {
            let byte = self.take(1)[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return value;
            }
        }
        panic!("uvarint over 5 bytes")
    }
    fn string(&mut self) -> String {
        let length = self.i16();
        String::from_utf8(self.take(length as usize).to_vec()).unwrap()
    }
}

/// The (key, min, max) list of an ApiVersions response at `version`.
fn api_versions(response: &[u8], version: i16) -> (i32, i16, Vec<(i16, i16, i16)>) {
    let mut cursor = Cursor(response);
    let correlation_id = cursor.i32();
    let error = cursor.i16();
    let flexible = version >= 3;
    let count = if flexible { cursor.uvarint() as usize - 1 } else { cursor.i32() as usize };
    let mut apis = Vec::new();
    for _ in 0..count {
        apis.push((cursor.i16(), cursor.i16(), cursor.i16()));
        if flexible {
            assert_eq!(cursor.uvarint(), 0, "no tags in an api entry");
        }
    }
    if version >= 1 {
        assert_eq!(cursor.i32(), 0, "throttle_time_ms");
    }
    if flexible {
        assert_eq!(cursor.uvarint(), 0, "no tags at the end");
    }
    assert!(cursor.0.is_empty(), "{} bytes after the response", cursor.0.len());
    (correlation_id, error, apis)
}

#[test]
fn api_versions_answers_v0_v3_and_falls_back_to_v0_for_v4() {
    let (server, _dir) = start("kafka-api-versions");
    let address = server.kafka_address().expect("the Kafka listener is on");
    let mut stream = connect(address);

    let (correlation_id, error, apis) = api_versions(&call(&mut stream, &request(API_VERSIONS, 0, 1, false, &[])), 0);
    assert_eq!((correlation_id, error), (1, 0));
    let range = |apis: &[(i16, i16, i16)], key| apis.iter().find(|a| a.0 == key).map(|a| (a.1, a.2));
    assert_eq!(range(&apis, API_PRODUCE), Some((0, 10)), "Produce from 0 (KAFKA-18659), up to 10");
    assert_eq!(range(&apis, API_FETCH), Some((4, 12)), "up to 12: Fetch 13 names topics by id");
    assert_eq!(range(&apis, API_METADATA), Some((0, 11)), "up to 11: Metadata 12 looks topics up by id");
    assert_eq!(range(&apis, API_VERSIONS), Some((0, 3)));
    for unbuilt in [23, 24, 25, 26, 68, 71, 72] {
        assert_eq!(range(&apis, unbuilt), None, "api {unbuilt} is not built, so not advertised");
    }

    // v3 as librdkafka sends it: flexible header, compact client software name/version.
    let body = [&[3u8][..], b"ab", &[2], b"1", &[0]].concat();
    let (correlation_id, error, apis_v3) =
        api_versions(&call(&mut stream, &request(API_VERSIONS, 3, 2, true, &body)), 3);
    assert_eq!((correlation_id, error), (2, 0));
    assert_eq!(apis_v3, apis);

    // v4 as kafka-python sends it: not served, so the v0 body with error 35
    // and ApiVersions' own range, and the connection stays open.
    let (correlation_id, error, fallback) =
        api_versions(&call(&mut stream, &request(API_VERSIONS, 4, 3, true, &body)), 0);
    assert_eq!((correlation_id, error), (3, UNSUPPORTED_VERSION));
    assert_eq!(fallback, vec![(API_VERSIONS, 0, 3)]);
    let (correlation_id, error, _) = api_versions(&call(&mut stream, &request(API_VERSIONS, 1, 4, false, &[])), 1);
    assert_eq!((correlation_id, error), (4, 0), "the client retries at a served version on the same connection");
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// A Metadata v1 request for no topics: answered with the broker list.
fn metadata_works(address: SocketAddr, round: usize) {
    let mut stream = connect(address);
    let body = 0i32.to_be_bytes();
    let response = call(&mut stream, &request(API_METADATA, 1, round as i32, false, &body));
    let mut cursor = Cursor(&response);
    assert_eq!(cursor.i32(), round as i32, "round {round}: correlation id");
    assert_eq!(cursor.i32(), 1, "round {round}: one broker");
}

#[test]
fn hostile_frames_close_the_connection_and_leave_the_broker_serving_with_bounded_memory() {
    let (server, _dir) = start("kafka-hostile");
    let address = server.kafka_address().unwrap();
    metadata_works(address, 0);
    let rss_before = rss_bytes();

    let huge_count = i32::MAX.to_be_bytes();
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        // PR #152 of kafka-protocol: an 8-byte Metadata body asking for billions of topics.
        ("metadata with a huge topic count", request(API_METADATA, 1, 1, false, &huge_count)),
        ("metadata with a negative topic count", request(API_METADATA, 1, 1, false, &(-2i32).to_be_bytes())),
        (
            "produce with a huge topic count",
            request(API_PRODUCE, 3, 1, false, &[&[0xff, 0xff, 0, 1, 0, 0, 0, 10][..], &huge_count].concat()),
        ),
        (
            "fetch with a huge partition count",
            request(
                API_FETCH,
                4,
                1,
                false,
                &[
                    &(-1i32).to_be_bytes()[..],
                    &0i32.to_be_bytes(),
                    &0i32.to_be_bytes(),
                    &1i32.to_be_bytes(),
                    &[0],
                    &1i32.to_be_bytes(),
                    &1i16.to_be_bytes(),
                    b"t",
                    &huge_count,
                ]
                .concat(),
            ),
        ),
        // A compact (flexible) count that is a varint of more than 5 bytes.
        ("api versions v3 with a bad varint", request(API_VERSIONS, 3, 1, true, &[0xff, 0xff, 0xff, 0xff, 0xff, 0x0f])),
        (
            "api versions v3 with a huge compact string",
            request(API_VERSIONS, 3, 1, true, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ),
        ("an unknown api", request(999, 0, 1, false, &[])),
        ("an unadvertised version", request(API_METADATA, 42, 1, false, &[])),
        // A header cut inside the client id (length 200, 1 byte present).
        (
            "a truncated header",
            [
                &10i32.to_be_bytes()[..],
                &3i16.to_be_bytes(),
                &1i16.to_be_bytes(),
                &1i32.to_be_bytes(),
                &200i16.to_be_bytes(),
            ]
            .concat(),
        ),
        ("a frame shorter than a header", [&3i32.to_be_bytes()[..], &[0, 3, 0]].concat()),
        ("a negative frame size", (-1i32).to_be_bytes().to_vec()),
        ("a frame over the size limit", i32::MAX.to_be_bytes().to_vec()),
    ];
    for (round, (what, frame)) in hostile.iter().enumerate() {
        for _ in 0..20 {
            let mut stream = connect(address);
            stream.write_all(frame).unwrap();
            assert!(closed(&mut stream), "{what}: the connection is closed");
        }
        metadata_works(address, round + 1);
    }
    // A frame that announces 100 MiB and sends 1 KiB, from many connections at
    // once: the server reads what arrives, it does not reserve what is announced.
    let mut streams = Vec::new();
    for _ in 0..64 {
        let mut stream = connect(address);
        stream.write_all(&(100 * 1024 * 1024i32).to_be_bytes()).unwrap();
        stream.write_all(&[0u8; 1024]).unwrap();
        streams.push(stream);
    }
    metadata_works(address, 100);
    let growth = rss_bytes().saturating_sub(rss_before);
    assert!(growth < HOSTILE_RSS_GROWTH_MAX_BYTES, "RSS grew by {growth} bytes");
    drop(streams);
    metadata_works(address, 101);
}

fn produce_v3(topic: &str, partition: i32, acks: i16, batch: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(-1i16).to_be_bytes()); // transactional_id: null
    body.extend_from_slice(&acks.to_be_bytes());
    body.extend_from_slice(&5000i32.to_be_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&(topic.len() as i16).to_be_bytes());
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&partition.to_be_bytes());
    body.extend_from_slice(&(batch.len() as i32).to_be_bytes());
    body.extend_from_slice(batch);
    body
}

/// (error, base_offset) of a one-partition Produce v3 response.
fn produce_response(response: &[u8]) -> (i16, i64) {
    let mut cursor = Cursor(response);
    cursor.i32();
    assert_eq!(cursor.i32(), 1);
    cursor.string();
    assert_eq!(cursor.i32(), 1);
    cursor.i32();
    let error = cursor.i16();
    let base_offset = cursor.i64();
    cursor.i64(); // log_append_time
    cursor.i32(); // throttle
    assert!(cursor.0.is_empty());
    (error, base_offset)
}

fn fetch_v4(topic: &str, partition: i32, offset: i64) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(-1i32).to_be_bytes()); // replica_id
    body.extend_from_slice(&100i32.to_be_bytes()); // max_wait_ms
    body.extend_from_slice(&1i32.to_be_bytes()); // min_bytes
    body.extend_from_slice(&(1i32 << 20).to_be_bytes()); // max_bytes
    body.push(0); // isolation_level
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&(topic.len() as i16).to_be_bytes());
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&partition.to_be_bytes());
    body.extend_from_slice(&offset.to_be_bytes());
    body.extend_from_slice(&(1i32 << 20).to_be_bytes());
    body
}

/// (error, high_watermark, records) of a one-partition Fetch v4 response.
fn fetch_response(response: &[u8]) -> (i16, i64, Vec<u8>) {
    let mut cursor = Cursor(response);
    cursor.i32();
    cursor.i32(); // throttle
    assert_eq!(cursor.i32(), 1);
    cursor.string();
    assert_eq!(cursor.i32(), 1);
    cursor.i32();
    let error = cursor.i16();
    let high_watermark = cursor.i64();
    assert_eq!(cursor.i64(), high_watermark, "last stable offset = high watermark: no transactions");
    let aborted = cursor.i32();
    assert!(aborted <= 0, "no aborted transactions");
    let length = cursor.i32();
    let records = if length < 0 { Vec::new() } else { cursor.take(length as usize).to_vec() };
    assert!(cursor.0.is_empty());
    (error, high_watermark, records)
}

#[test]
fn records_cross_between_the_native_and_kafka_protocols_byte_for_byte() {
    let (server, _dir) = start("kafka-cross");
    let native = Client::connect(&server.address().to_string()).unwrap();
    native.create_topic("cross", 2, Retention::Default, Retention::Default).unwrap();
    let mut stream = connect(server.kafka_address().unwrap());

    // Kafka in, native out: keys, values, null value, headers, timestamps.
    let mut builder = BatchBuilder::new();
    builder.append(1_700_000_000_000, Some(b"k1"), Some(b"v1"), &[(b"h".as_slice(), Some(b"x".as_slice()))]).unwrap();
    builder.append(1_700_000_000_005, None, None, &[(b"empty".as_slice(), None)]).unwrap();
    let sent = builder.finish().unwrap();
    let (error, base) =
        produce_response(&call(&mut stream, &request(API_PRODUCE, 3, 7, false, &produce_v3("cross", 1, 1, &sent))));
    assert_eq!((error, base), (0, 0));
    let fetch = FetchRequest {
        topic: "cross".into(),
        partition: 1,
        offset: 0,
        max_bytes: 1 << 20,
        max_wait_ms: 0,
        min_bytes: 0,
    };
    let fetched = native.fetch(&fetch).unwrap();
    assert_eq!(fetched.records, sent, "the native fetch returns the batch the Kafka producer sent");
    let records = ringmq::client::decode_records(&fetched.records, 0).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(
        (records[0].timestamp, records[0].key.as_deref(), records[0].value.as_deref()),
        (1_700_000_000_000, Some(&b"k1"[..]), Some(&b"v1"[..]))
    );
    assert_eq!(records[0].headers, vec![(b"h".to_vec(), Some(b"x".to_vec()))]);
    assert_eq!(
        (records[1].timestamp, records[1].key.as_deref(), records[1].value.as_deref()),
        (1_700_000_000_005, None, None)
    );
    assert_eq!(records[1].headers, vec![(b"empty".to_vec(), None)]);

    // Native in, Kafka out: the same bytes, base offset stamped.
    let native_batch = batch_of(&[b"n0".to_vec(), b"n1".to_vec(), b"n2".to_vec()], 1_700_000_000_100);
    assert_eq!(native.produce("cross", 0, &native_batch, Acks::Durable).unwrap(), Some(0));
    let (error, high_watermark, records) =
        fetch_response(&call(&mut stream, &request(API_FETCH, 4, 8, false, &fetch_v4("cross", 0, 0))));
    assert_eq!((error, high_watermark), (0, 3));
    assert_eq!(records, native_batch, "the Kafka fetch returns the batch the native producer sent");

    // An unknown topic through Kafka's Fetch: error 3, nothing else changes.
    let (error, _, records) =
        fetch_response(&call(&mut stream, &request(API_FETCH, 4, 9, false, &fetch_v4("nope", 0, 0))));
    assert_eq!(error, 3);
    assert!(records.is_empty());
    // acks 0 with a corrupt batch: no answer, the connection closes (as Kafka does).
    let mut corrupt = sent.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    stream.write_all(&request(API_PRODUCE, 3, 10, false, &produce_v3("cross", 1, 0, &corrupt))).unwrap();
    assert!(closed(&mut stream));
    assert_eq!(native.list_offsets("cross", 1, ringmq::protocol::offsets::QUERY_LATEST).unwrap().offset, 2);
}

/// A compact string: length + 1 as a one-byte varint (short strings only).
fn compact(text: &str) -> Vec<u8> {
    [&[text.len() as u8 + 1][..], text.as_bytes()].concat()
}

impl Cursor<'_> {
    fn compact_string(&mut self) -> String {
        let length = self.uvarint() as usize - 1;
        String::from_utf8(self.take(length).to_vec()).unwrap()
    }
    fn no_tags(&mut self, what: &str) {
        assert_eq!(self.uvarint(), 0, "an empty tag section after {what}");
    }
}

/// Produce v9, one partition: compact strings and records, a tag section per struct.
fn produce_v9(topic: &str, partition: i32, acks: i16, batch: &[u8]) -> Vec<u8> {
    let mut body = vec![0]; // transactional_id: null
    body.extend_from_slice(&acks.to_be_bytes());
    body.extend_from_slice(&5000i32.to_be_bytes());
    body.push(2); // one topic
    body.extend_from_slice(&compact(topic));
    body.push(2); // one partition
    body.extend_from_slice(&partition.to_be_bytes());
    assert!(batch.len() + 1 < 1 << 14);
    let length = batch.len() as u32 + 1;
    body.extend_from_slice(&[(length as u8 & 0x7f) | 0x80, (length >> 7) as u8]); // a two-byte varint
    body.extend_from_slice(batch);
    body.extend_from_slice(&[0, 0, 0]); // partition, topic, request tags
    body
}

/// (error, base_offset) of a one-partition Produce v9 response.
fn produce_v9_response(response: &[u8]) -> (i16, i64) {
    let mut cursor = Cursor(response);
    cursor.i32();
    cursor.no_tags("the response header");
    assert_eq!(cursor.uvarint(), 2);
    cursor.compact_string();
    assert_eq!(cursor.uvarint(), 2);
    cursor.i32();
    let error = cursor.i16();
    let base_offset = cursor.i64();
    cursor.i64(); // log_append_time
    cursor.i64(); // log_start_offset
    assert_eq!(cursor.uvarint(), 1, "no record errors");
    assert_eq!(cursor.uvarint(), 0, "error message: null");
    cursor.no_tags("the partition");
    cursor.no_tags("the topic");
    cursor.i32(); // throttle
    cursor.no_tags("the response");
    assert!(cursor.0.is_empty());
    (error, base_offset)
}

#[test]
fn flexible_versions_produce_fetch_and_describe_topics_in_compact_form() {
    let (server, _dir) = start("kafka-flexible");
    let native = Client::connect(&server.address().to_string()).unwrap();
    native.create_topic("flex", 1, Retention::Default, Retention::Default).unwrap();
    let mut stream = connect(server.kafka_address().unwrap());

    // Metadata v11: one topic by name (with its null topic id), no auto-create.
    let body = [&[2u8][..], &[0; 16], &compact("flex"), &[0], &[0, 0, 0]].concat();
    let response = call(&mut stream, &request(API_METADATA, 11, 1, true, &body));
    let mut cursor = Cursor(&response);
    assert_eq!(cursor.i32(), 1);
    cursor.no_tags("the response header");
    cursor.i32(); // throttle
    assert_eq!(cursor.uvarint(), 2, "one broker");
    assert_eq!(cursor.i32(), 0);
    assert_eq!(cursor.compact_string(), "127.0.0.1");
    assert_eq!(cursor.i32(), i32::from(server.kafka_address().unwrap().port()));
    assert_eq!(cursor.uvarint(), 0, "rack: null");
    cursor.no_tags("the broker");
    assert_eq!(cursor.compact_string(), "ringmq");
    assert_eq!(cursor.i32(), 0, "controller");
    assert_eq!(cursor.uvarint(), 2, "one topic");
    assert_eq!(cursor.i16(), 0);
    assert_eq!(cursor.compact_string(), "flex");
    assert_eq!(cursor.take(16), &[0; 16], "the null topic id");
    assert_eq!(cursor.take(1), &[0], "not internal");
    assert_eq!(cursor.uvarint(), 2, "one partition");
    assert_eq!((cursor.i16(), cursor.i32(), cursor.i32(), cursor.i32()), (0, 0, 0, 0));
    assert_eq!((cursor.uvarint(), cursor.i32(), cursor.uvarint(), cursor.i32(), cursor.uvarint()), (2, 0, 2, 0, 1));
    cursor.no_tags("the partition");
    assert_eq!(cursor.i32(), i32::MIN, "topic authorized operations omitted");
    cursor.no_tags("the topic");
    cursor.no_tags("the response");
    assert!(cursor.0.is_empty(), "v11 has no cluster authorized operations");

    // Produce v9 in, native and Fetch v12 out.
    let mut builder = BatchBuilder::new();
    builder.append(1_700_000_000_000, Some(b"k"), Some(b"flexible"), &[]).unwrap();
    let sent = builder.finish().unwrap();
    let response = call(&mut stream, &request(API_PRODUCE, 9, 2, true, &produce_v9("flex", 0, -1, &sent)));
    assert_eq!(produce_v9_response(&response), (0, 0));
    assert_eq!(native.list_offsets("flex", 0, ringmq::protocol::offsets::QUERY_LATEST).unwrap().offset, 1);

    let mut body = Vec::new();
    for value in [-1i32, 100, 1, 1 << 20] {
        body.extend_from_slice(&value.to_be_bytes()); // replica, max_wait, min_bytes, max_bytes
    }
    body.push(0); // isolation
    body.extend_from_slice(&0i32.to_be_bytes()); // session id
    body.extend_from_slice(&(-1i32).to_be_bytes()); // session epoch
    body.push(2);
    body.extend_from_slice(&compact("flex"));
    body.push(2);
    body.extend_from_slice(&0i32.to_be_bytes()); // partition
    body.extend_from_slice(&(-1i32).to_be_bytes()); // current leader epoch
    body.extend_from_slice(&0i64.to_be_bytes()); // fetch offset
    body.extend_from_slice(&(-1i32).to_be_bytes()); // last fetched epoch
    body.extend_from_slice(&(-1i64).to_be_bytes()); // log start offset
    body.extend_from_slice(&(1i32 << 20).to_be_bytes());
    body.extend_from_slice(&[0, 0]); // partition, topic tags
    body.push(1); // no forgotten topics
    body.extend_from_slice(&compact(""));
    body.extend_from_slice(&[1, 0, 1, 0]); // cluster_id (tag 0): null
    let response = call(&mut stream, &request(API_FETCH, 12, 3, true, &body));
    let mut cursor = Cursor(&response);
    assert_eq!(cursor.i32(), 3);
    cursor.no_tags("the response header");
    cursor.i32();
    assert_eq!((cursor.i16(), cursor.i32()), (0, 0), "error, session id");
    assert_eq!(cursor.uvarint(), 2);
    assert_eq!(cursor.compact_string(), "flex");
    assert_eq!(cursor.uvarint(), 2);
    assert_eq!((cursor.i32(), cursor.i16(), cursor.i64(), cursor.i64(), cursor.i64()), (0, 0, 1, 1, 0));
    assert_eq!(cursor.uvarint(), 1, "no aborted transactions");
    assert_eq!(cursor.i32(), -1, "preferred read replica");
    let length = cursor.uvarint() as usize - 1;
    assert_eq!(cursor.take(length), &sent[..], "the batch as the producer sent it");
    cursor.no_tags("the partition");
    cursor.no_tags("the topic");
    cursor.no_tags("the response");
    assert!(cursor.0.is_empty());

    // A producer id the partition has never seen, starting at sequence 3:
    // UNKNOWN_PRODUCER_ID (59), not a sequence gap; nothing is appended.
    let mut builder = BatchBuilder::new();
    builder.producer(4242, 0, 3);
    builder.append(1_700_000_000_001, None, Some(b"late"), &[]).unwrap();
    let stranger = builder.finish().unwrap();
    let response = call(&mut stream, &request(API_PRODUCE, 9, 4, true, &produce_v9("flex", 0, -1, &stranger)));
    assert_eq!(produce_v9_response(&response), (UNKNOWN_PRODUCER_ID, -1));
    assert_eq!(native.list_offsets("flex", 0, ringmq::protocol::offsets::QUERY_LATEST).unwrap().offset, 1);
}
