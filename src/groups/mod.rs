//! Queue semantics on top of the log: consumer groups (membership, assignment,
//! committed offsets) and the small durable state files they keep.
//!
//! A group is coordinated by one shard, [`coordinator`]`(group)`; its state lives
//! under `DATA_DIR/groups/<group>/`. The shard side (requests, timers, files) is
//! in `server::coordinator`; what is here does no networking.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

pub mod classic;
pub mod consumer;
pub mod share;
pub mod state_log;
pub mod store;

use crate::protocol::{Reader, Writer, TOPIC_NAME_WIRE_BYTES_MAX};
use state_log::{frame_record, STATE_RECORD_HEADER_BYTES};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The directory under the data directory that holds every group's state.
pub const GROUPS_DIR: &str = "groups";
/// The committed-offsets file inside a group's directory.
pub const OFFSETS_FILE: &str = "offsets.log";
/// Groups one shard coordinates.
pub const GROUPS_PER_SHARD_MAX: usize = 10_000;

/// The shard that coordinates `group`.
pub fn coordinator(group: &str, shards: u16) -> u16 {
    (crc32fast::hash(group.as_bytes()) % u32::from(shards.max(1))) as u16
}

pub fn group_dir(data_dir: &Path, group: &str) -> PathBuf {
    data_dir.join(GROUPS_DIR).join(group)
}

/// Kinds of records in a group's offsets file.
const RECORD_OFFSET: u8 = 1;

/// A committed offset as stored: topic, partition, offset, metadata, commit time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetRecord {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub metadata: String,
    pub committed_at_ms: i64,
}

impl OffsetRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::with_capacity(32 + self.topic.len() + self.metadata.len());
        writer.u8(RECORD_OFFSET);
        writer.string(&self.topic);
        writer.u32(self.partition);
        writer.i64(self.offset);
        writer.string(&self.metadata);
        writer.i64(self.committed_at_ms);
        writer.into_inner()
    }

    /// `None` for a record of another kind or one that does not decode.
    pub fn decode(payload: &[u8]) -> Option<OffsetRecord> {
        let mut reader = Reader::new(payload);
        if reader.u8().ok()? != RECORD_OFFSET {
            return None;
        }
        let record = OffsetRecord {
            topic: reader.string(TOPIC_NAME_WIRE_BYTES_MAX).ok()?.to_owned(),
            partition: reader.u32().ok()?,
            offset: reader.i64().ok()?,
            metadata: reader.string(crate::protocol::group::COMMIT_METADATA_BYTES_MAX).ok()?.to_owned(),
            committed_at_ms: reader.i64().ok()?,
        };
        reader.finish().ok()?;
        Some(record)
    }
}

/// A group's committed offsets: (topic, partition) -> (offset, metadata).
pub type Offsets = BTreeMap<(String, u32), (i64, String)>;

/// A framed offset record besides its topic and metadata: record header, kind
/// u8, topic length u16, partition u32, offset i64, metadata length u16, commit
/// time i64.
pub const OFFSET_RECORD_FIXED_BYTES: u64 = STATE_RECORD_HEADER_BYTES as u64 + 1 + 2 + 4 + 8 + 2 + 8;

/// The offsets an offsets file's records leave: later records win, and a
/// tombstone (offset < 0: the topic was deleted) removes the partition.
pub fn replay_offsets(records: &[Vec<u8>]) -> Offsets {
    let mut offsets = Offsets::new();
    for record in records.iter().filter_map(|payload| OffsetRecord::decode(payload)) {
        if record.offset < 0 {
            offsets.remove(&(record.topic, record.partition));
        } else {
            offsets.insert((record.topic, record.partition), (record.offset, record.metadata));
        }
    }
    offsets
}

/// Frames one record per offset (what a compacted offsets file holds).
pub fn framed_offsets(offsets: &Offsets, committed_at_ms: i64) -> Vec<u8> {
    let mut live = Vec::new();
    for ((topic, partition), (offset, metadata)) in offsets {
        let record = OffsetRecord {
            topic: topic.clone(),
            partition: *partition,
            offset: *offset,
            metadata: metadata.clone(),
            committed_at_ms,
        };
        let _ = frame_record(&mut live, &record.encode());
    }
    live
}

/// What [`framed_offsets`] of `offsets` takes, for the compaction check.
pub fn offsets_live_bytes(offsets: &Offsets) -> u64 {
    offsets
        .iter()
        .map(|((topic, _), (_, metadata))| OFFSET_RECORD_FIXED_BYTES + (topic.len() + metadata.len()) as u64)
        .sum()
}

/// Tombstones (offset -1) for partitions whose topic was deleted.
pub fn framed_tombstones(gone: &[(String, u32)], at_ms: i64) -> Vec<u8> {
    let mut framed = Vec::new();
    for (topic, partition) in gone {
        let record = OffsetRecord {
            topic: topic.clone(),
            partition: *partition,
            offset: -1,
            metadata: String::new(),
            committed_at_ms: at_ms,
        };
        let _ = frame_record(&mut framed, &record.encode());
    }
    framed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_records_round_trip_and_garbage_is_refused() {
        let record =
            OffsetRecord { topic: "t".into(), partition: 3, offset: 99, metadata: "m".into(), committed_at_ms: 5 };
        let bytes = record.encode();
        assert_eq!(OffsetRecord::decode(&bytes), Some(record));
        for cut in 0..bytes.len() {
            assert_eq!(OffsetRecord::decode(&bytes[..cut]), None);
        }
    }

    #[test]
    fn coordinators_spread_over_shards() {
        let shards: std::collections::BTreeSet<u16> = (0..64).map(|i| coordinator(&format!("g{i}"), 4)).collect();
        assert_eq!(shards.len(), 4);
    }
}
