//! What `/metrics` shows: the shared counters, and a snapshot from every shard
//! taken through its ring (see [`crate::metrics`]).

use super::completion::Completion;
use super::message::{Message, Op, Origin, Reply, ShardMetrics};
use super::shared::Shared;
use crate::metrics::{family, label};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

fn snapshot(shared: &Arc<Shared>, shard: u16) -> Option<ShardMetrics> {
    let completion = Arc::new(Completion::for_current_thread());
    let message = Message::Request { origin: Origin::External(completion.clone()), op: Op::Metrics };
    if !shared.post_external(shard, message) {
        return None;
    }
    match completion.wait(false) {
        Reply::Metrics(metrics) => Some(*metrics),
        _ => None,
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    family(out, name, "counter", help);
    let _ = writeln!(out, "{name} {value}");
}

/// The whole exposition: the server's counters, then what the shards report.
pub(crate) fn render(shared: &Arc<Shared>) -> String {
    let mut out = String::with_capacity(4096);
    render_counters(&mut out, shared);
    let shards: Vec<ShardMetrics> =
        (0..shared.mailboxes.len() as u16).filter_map(|shard| snapshot(shared, shard)).collect();
    family(&mut out, "ringmq_connections", "gauge", "Open client connections per shard.");
    for shard in &shards {
        let _ = writeln!(out, "ringmq_connections{{shard=\"{}\"}} {}", shard.shard, shard.connections);
    }
    let ends = render_partitions(&mut out, &shards);
    render_groups(&mut out, &shards, &ends);
    render_shares(&mut out, &shards);
    out
}

/// The shared counters, the fsync histogram and the ring depths.
fn render_counters(out: &mut String, shared: &Shared) {
    let counters = &shared.counters;
    let load = |value: &std::sync::atomic::AtomicU64| value.load(Ordering::Relaxed);
    counter(out, "ringmq_produce_records_total", "Records appended.", load(&counters.produce_records));
    counter(out, "ringmq_produce_bytes_total", "Batch bytes appended.", load(&counters.produce_bytes));
    counter(out, "ringmq_fetch_records_total", "Records returned by fetches.", load(&counters.fetch_records));
    counter(out, "ringmq_fetch_bytes_total", "Batch bytes returned by fetches.", load(&counters.fetch_bytes));
    counter(
        out,
        "ringmq_fetch_mapped_bytes_total",
        "Batch bytes fetches sent from a mapping of the segment, without a copy into a buffer.",
        load(&counters.fetch_mapped_bytes),
    );
    counter(
        out,
        "ringmq_follower_fetches_total",
        "Fetches of the embedded broker served from a partition's tail ring, without the shard.",
        load(&counters.follower_fetches),
    );
    counter(
        out,
        "ringmq_forwarded_requests_total",
        "Requests forwarded to another shard through a ring.",
        load(&counters.forwarded_requests),
    );
    counter(
        out,
        "ringmq_ring_full_waits_total",
        "Times a sender found a cross-shard ring full and waited.",
        load(&counters.ring_full_waits),
    );
    counter(
        out,
        "ringmq_refused_connections_total",
        "Connections refused because the broker served max_connections.",
        load(&counters.refused_connections),
    );
    counter(
        out,
        "ringmq_tls_failures_total",
        "TLS connections ended by a TLS failure: a refused certificate, a failed handshake, a bad record, plain bytes.",
        load(&counters.tls_failures),
    );
    counter(
        out,
        "ringmq_duplicate_batches_total",
        "Idempotent batches recognised as resends and not appended again.",
        load(&counters.duplicate_batches),
    );
    counter(
        out,
        "ringmq_dead_letters_total",
        "Records share groups moved to their dead-letter topics.",
        load(&counters.dead_letters),
    );
    counters.produce_latency.render(
        out,
        "ringmq_produce_seconds",
        "Produce from a network client, per partition: request read to acknowledgement (page cache or fdatasync, by acks).",
    );
    counters.fsync_rounds.render(
        out,
        "ringmq_fsync_round_seconds",
        "Duration of group-commit rounds (the fdatasyncs of every partition waiting).",
    );
    family(out, "ringmq_ring_depth", "gauge", "Messages waiting in a shard's ring.");
    for (shard, mailbox) in shared.mailboxes.iter().enumerate() {
        let _ = writeln!(out, "ringmq_ring_depth{{shard=\"{shard}\"}} {}", mailbox.len());
    }
}

/// Partition counts and end offsets; returns the end offsets for the lag.
fn render_partitions<'a>(out: &mut String, shards: &'a [ShardMetrics]) -> HashMap<(&'a str, u32), u64> {
    let partitions: Vec<&(String, u32, u64, bool)> = shards.iter().flat_map(|s| &s.partitions).collect();
    family(out, "ringmq_partitions", "gauge", "Partitions open.");
    let _ = writeln!(out, "ringmq_partitions {}", partitions.len());
    family(out, "ringmq_partitions_poisoned", "gauge", "Partitions refusing writes after a failed fsync.");
    let _ = writeln!(out, "ringmq_partitions_poisoned {}", partitions.iter().filter(|p| p.3).count());
    family(out, "ringmq_partition_end_offset", "gauge", "One past the last record of a partition.");
    for (topic, partition, end, _) in &partitions {
        let _ =
            writeln!(out, "ringmq_partition_end_offset{{topic=\"{}\",partition=\"{partition}\"}} {end}", label(topic));
    }
    partitions.iter().map(|p| ((p.0.as_str(), p.1), p.2)).collect()
}

/// Consumer groups' committed offsets and lag. Each family's samples stay
/// together, as the text format requires.
fn render_groups(out: &mut String, shards: &[ShardMetrics], ends: &HashMap<(&str, u32), u64>) {
    let (mut committed_lines, mut lag_lines) = (String::new(), String::new());
    for shard in shards {
        for (group, topic, partition, committed) in &shard.committed {
            let labels = format!("group=\"{}\",topic=\"{}\",partition=\"{partition}\"", label(group), label(topic));
            let _ = writeln!(committed_lines, "ringmq_group_committed_offset{{{labels}}} {committed}");
            if let Some(end) = ends.get(&(topic.as_str(), *partition)) {
                let _ = writeln!(lag_lines, "ringmq_group_lag{{{labels}}} {}", (*end as i64 - committed).max(0));
            }
        }
    }
    family(out, "ringmq_group_committed_offset", "gauge", "A consumer group's committed offset.");
    out.push_str(&committed_lines);
    family(out, "ringmq_group_lag", "gauge", "End offset minus committed offset.");
    out.push_str(&lag_lines);
}

/// Share groups' available and leased records.
fn render_shares(out: &mut String, shards: &[ShardMetrics]) {
    let (mut available_lines, mut acquired_lines) = (String::new(), String::new());
    for shard in shards {
        for (group, topic, partition, available, acquired) in &shard.share {
            let labels = format!("group=\"{}\",topic=\"{}\",partition=\"{partition}\"", label(group), label(topic));
            let _ = writeln!(available_lines, "ringmq_share_available{{{labels}}} {available}");
            let _ = writeln!(acquired_lines, "ringmq_share_acquired{{{labels}}} {acquired}");
        }
    }
    family(out, "ringmq_share_available", "gauge", "Records a share group can still deliver.");
    out.push_str(&available_lines);
    family(out, "ringmq_share_acquired", "gauge", "Records a share group has leased out.");
    out.push_str(&acquired_lines);
}
