//! Guards `/metrics`: scraped over HTTP and parsed strictly as Prometheus text
//! (every sample declared by a TYPE line, each family's samples together, values
//! numbers), with values that match what the test did: records produced and
//! fetched, fsync rounds, a group's lag, a share group's leased records.

mod common;

use common::{batch_of, start_server, temp_dir};
use ringmq::client::group::commit_offsets;
use ringmq::client::share::{ShareConsumer, ShareConsumerConfig};
use ringmq::client::{Client, Retention};
use ringmq::log::Acks;
use ringmq::protocol::fetch::FetchRequest;
use ringmq::protocol::group::CommittedOffset;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

fn get(address: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// Parses the exposition; returns samples keyed by `name{labels}`.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut types = BTreeMap::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(types.insert(name.to_string(), kind.to_string()).is_none(), "family declared twice: {name}");
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (key, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
        let name = key.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix).filter(|base| types.get(*base).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample before its TYPE: {line}");
        if current.as_deref() != Some(family) {
            assert!(!finished.contains(family), "samples of {family} are not together");
            if let Some(previous) = current.replace(family.to_string()) {
                finished.insert(previous);
            }
        }
        assert!(samples.insert(key.to_string(), value).is_none(), "duplicate sample {key}");
    }
    samples
}

#[test]
fn metrics_are_scraped_parsed_and_match_what_happened() {
    let dir = temp_dir("metrics");
    let server = start_server(&dir, 2, |config| config.metrics_listen = Some("127.0.0.1:0".parse().unwrap()));
    let metrics = server.metrics_address().unwrap();
    let client = Client::connect(&server.address().to_string()).unwrap();
    client.create_topic("t", 2, Retention::Default, Retention::Default).unwrap();
    let values: Vec<Vec<u8>> = (0..10).map(|i| vec![b'v', i]).collect();
    client.produce("t", 0, &batch_of(&values, 1), Acks::Durable).unwrap();
    client.produce("t", 1, &batch_of(&values[..4], 1), Acks::Written).unwrap();
    let request =
        FetchRequest { topic: "t".into(), partition: 0, offset: 0, max_bytes: 1 << 20, max_wait_ms: 0, min_bytes: 1 };
    client.fetch(&request).unwrap();
    let commit = vec![CommittedOffset { topic: "t".into(), partition: 0, offset: 3, metadata: String::new() }];
    commit_offsets(&client, "readers", commit).unwrap();
    let config = ShareConsumerConfig { max_records: 2, ..Default::default() };
    let mut share =
        ShareConsumer::new(Client::connect(&server.address().to_string()).unwrap(), "q", "t", config).unwrap();
    let leased = share.receive(2, Duration::from_millis(100)).unwrap();
    assert_eq!(leased.len(), 2);

    let (status, body) = get(metrics, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let samples = parse(&body);
    assert_eq!(samples["ringmq_produce_records_total"], 14.0);
    assert!(samples["ringmq_fetch_records_total"] >= 12.0, "10 fetched + 2 leased");
    assert!(samples["ringmq_fsync_round_seconds_count"] >= 1.0, "the durable produce synced");
    assert_eq!(samples["ringmq_partitions"], 2.0);
    assert_eq!(samples["ringmq_partitions_poisoned"], 0.0);
    assert_eq!(samples["ringmq_partition_end_offset{topic=\"t\",partition=\"0\"}"], 10.0);
    assert_eq!(samples["ringmq_group_committed_offset{group=\"readers\",topic=\"t\",partition=\"0\"}"], 3.0);
    assert_eq!(samples["ringmq_group_lag{group=\"readers\",topic=\"t\",partition=\"0\"}"], 7.0);
    let partition = leased[0].partition;
    let key = format!("ringmq_share_acquired{{group=\"q\",topic=\"t\",partition=\"{partition}\"}}");
    assert_eq!(samples[&key], 2.0);
    let end = if partition == 0 { 10.0 } else { 4.0 };
    let key = format!("ringmq_share_available{{group=\"q\",topic=\"t\",partition=\"{partition}\"}}");
    assert_eq!(samples[&key], end - 2.0, "the rest of the partition is available");
    let connections: f64 = samples.iter().filter(|(k, _)| k.starts_with("ringmq_connections{")).map(|(_, v)| v).sum();
    assert!(connections >= 2.0, "two clients are connected");
    assert!(samples.contains_key("ringmq_ring_depth{shard=\"1\"}"));
    let (status, _) = get(metrics, "/other");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    server.shutdown().unwrap();
}
