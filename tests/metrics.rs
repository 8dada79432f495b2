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
    // One more, rejected: it goes to the dead-letter topic.
    let rejected = share.receive(1, Duration::from_millis(100)).unwrap();
    assert_eq!(rejected.len(), 1);
    share.acknowledge_all(&rejected, ringmq::groups::share::AckKind::Reject).unwrap();

    let (status, body) = get(metrics, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let samples = parse(&body);
    assert_eq!(samples["ringmq_produce_records_total"], 14.0 + 1.0, "and the dead letter");
    assert!(samples["ringmq_fetch_records_total"] >= 12.0, "10 fetched + 2 leased");
    assert!(samples["ringmq_fsync_round_seconds_count"] >= 1.0, "the durable produce synced");
    assert_eq!(samples["ringmq_produce_seconds_count"], 2.0, "one sample per partition produced to");
    assert!(samples["ringmq_produce_seconds_bucket{le=\"+Inf\"}"] == 2.0);
    assert_eq!(samples["ringmq_dead_letters_total"], 1.0, "the rejected record was dead-lettered");
    assert_eq!(samples["ringmq_partitions"], 3.0, "t's two and the dead-letter topic's one");
    assert_eq!(samples["ringmq_partitions_poisoned"], 0.0);
    assert_eq!(samples["ringmq_partition_end_offset{topic=\"t\",partition=\"0\"}"], 10.0);
    assert_eq!(samples["ringmq_group_committed_offset{group=\"readers\",topic=\"t\",partition=\"0\"}"], 3.0);
    assert_eq!(samples["ringmq_group_lag{group=\"readers\",topic=\"t\",partition=\"0\"}"], 7.0);
    let partition = leased[0].partition;
    let acquired: f64 = samples.iter().filter(|(k, _)| k.starts_with("ringmq_share_acquired{")).map(|(_, v)| v).sum();
    assert_eq!(acquired, 2.0, "two leased (the rejected one is archived)");
    let available: f64 = samples.iter().filter(|(k, _)| k.starts_with("ringmq_share_available{")).map(|(_, v)| v).sum();
    assert_eq!(available, 14.0 - 3.0, "the rest of both partitions is available");
    let _ = partition;
    let connections: f64 = samples.iter().filter(|(k, _)| k.starts_with("ringmq_connections{")).map(|(_, v)| v).sum();
    assert!(connections >= 2.0, "two clients are connected");
    assert!(samples.contains_key("ringmq_ring_depth{shard=\"1\"}"));
    let (status, _) = get(metrics, "/other");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    server.shutdown().unwrap();
}

/// Every metric the Grafana dashboard (docs/grafana/ringmq.json) queries is
/// one the server exports, so a renamed metric cannot leave a panel empty.
#[test]
fn the_dashboard_queries_only_exported_metrics() {
    let dir = temp_dir("metrics-dashboard");
    let server = start_server(&dir, 1, |config| config.metrics_listen = Some("127.0.0.1:0".parse().unwrap()));
    let (_, body) = get(server.metrics_address().unwrap(), "/metrics");
    let families: BTreeSet<&str> = body
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split(' ').next())
        .collect();
    let dashboard = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/grafana/ringmq.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(at) = rest.find("ringmq_") {
                let name: String = rest[at..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                rest = &rest[at + name.len()..];
                let family = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix).filter(|f| families.contains(f)))
                    .unwrap_or(&name)
                    .to_string();
                queried.insert(family);
            }
        }
    }
    assert!(queried.len() >= 15, "the dashboard covers the metrics: {queried:?}");
    for family in &queried {
        assert!(families.contains(family.as_str()), "the dashboard queries {family}, which the server does not export");
    }
    for wanted in
        ["ringmq_produce_seconds", "ringmq_group_lag", "ringmq_dead_letters_total", "ringmq_produce_bytes_total"]
    {
        assert!(queried.contains(wanted), "the dashboard shows {wanted}");
    }
    server.shutdown().unwrap();
}
