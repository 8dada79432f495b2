//! The partition log: an append-only, totally ordered, crash-safe sequence of
//! RecordBatch v2 batches split into segments, with sparse indexes, recovery,
//! retention, and group commit. The on-disk layout is drawn in `docs/STORAGE.md`
//! and at the top of [`partition`] and [`index`].
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

pub mod group_commit;
pub mod index;
pub mod partition;
pub mod producers;
mod segments;

pub use group_commit::{Acks, GroupCommit, GroupCommitStats, SharedLog};
pub use partition::{AppendInfo, PartitionLog, RecoveryReport, RetentionReport};

use crate::batch::BatchError;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest segment: positions in the indexes are `u32`, and a segment may exceed
/// its roll size by one batch.
pub const SEGMENT_BYTES_MAX: u64 = 2 * 1024 * 1024 * 1024;
/// Roll size when none is configured (Kafka's `log.segment.bytes`).
pub const SEGMENT_BYTES_DEFAULT: u64 = 1024 * 1024 * 1024;
/// Roll age when none is configured (Kafka's `log.roll.ms`: 7 days).
pub const SEGMENT_MS_DEFAULT: u64 = 7 * 24 * 3600 * 1000;
/// Bytes appended between two index entries (Kafka's `log.index.interval.bytes`).
/// Bounds the scan a read or a recovery makes from an index entry.
pub const INDEX_INTERVAL_BYTES_DEFAULT: u64 = 4096;
/// Retention age when none is configured (Kafka's `log.retention.ms`: 7 days).
pub const RETENTION_MS_DEFAULT: u64 = 7 * 24 * 3600 * 1000;

const _: () = assert!(SEGMENT_BYTES_MAX + crate::batch::BATCH_BYTES_MAX as u64 <= u32::MAX as u64);

/// Settings of one partition log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll to a new segment when the active one would pass this size.
    pub segment_bytes: u64,
    /// Roll when the active segment is older than this (counted from when this
    /// process created or opened it).
    pub segment_ms: Option<u64>,
    pub index_interval_bytes: u64,
    /// Delete sealed segments whose newest record is older than this.
    pub retention_ms: Option<u64>,
    /// Delete the oldest sealed segments while the log is larger than this.
    pub retention_bytes: Option<u64>,
    /// Zeros kept written ahead of the active segment's end for small
    /// appends (0: none); see [`partition::ZERO_AHEAD_BYTES`].
    pub zero_ahead_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            segment_ms: Some(SEGMENT_MS_DEFAULT),
            index_interval_bytes: INDEX_INTERVAL_BYTES_DEFAULT,
            retention_ms: Some(RETENTION_MS_DEFAULT),
            retention_bytes: None,
            zero_ahead_bytes: partition::ZERO_AHEAD_BYTES,
        }
    }
}

impl LogConfig {
    pub fn validate(&self) -> Result<(), LogError> {
        if self.segment_bytes == 0 || self.segment_bytes > SEGMENT_BYTES_MAX {
            return Err(LogError::Config(format!(
                "segment_bytes must be between 1 and {SEGMENT_BYTES_MAX}, got {}",
                self.segment_bytes
            )));
        }
        if self.index_interval_bytes == 0 || self.index_interval_bytes > SEGMENT_BYTES_MAX {
            return Err(LogError::Config(format!("index_interval_bytes must be between 1 and {SEGMENT_BYTES_MAX}")));
        }
        for (name, value) in [("segment_ms", self.segment_ms), ("retention_ms", self.retention_ms)] {
            if value.is_some_and(|ms| ms == 0 || ms > i64::MAX as u64) {
                return Err(LogError::Config(format!("{name} must be between 1 and {}", i64::MAX)));
            }
        }
        Ok(())
    }
}

/// `DATA_DIR/topics/<topic>/<partition>`.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: u32) -> PathBuf {
    data_dir.join("topics").join(topic).join(partition.to_string())
}

/// Errors of the partition log. Cloneable so one failed fsync can be answered to
/// every producer that waited on it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum LogError {
    /// The batch failed validation; nothing was written.
    InvalidBatch(BatchError),
    /// A read below the earliest or above the latest offset.
    OffsetOutOfRange { requested: u64, earliest: u64, latest: u64 },
    /// The disk is full; nothing of the append is visible. Retry once space is free.
    NoSpace { detail: String },
    /// An fdatasync failed earlier. It is never retried: data in the page cache may
    /// be lost, so the partition refuses writes until it is reopened.
    Poisoned { cause: Arc<io::Error> },
    /// A stored batch failed its checks on read (a CRC mismatch keeps the
    /// expected and found values; a length outside the limits keeps it).
    Corrupt(BatchError),
    /// An I/O error other than the above.
    Io { context: &'static str, source: Arc<io::Error> },
    /// Invalid settings.
    Config(String),
    /// The log is closed.
    Closed,
}

impl LogError {
    pub(crate) fn io(context: &'static str, source: io::Error) -> LogError {
        if crate::io::is_no_space(&source) {
            return LogError::NoSpace { detail: format!("{context}: {source}") };
        }
        LogError::Io { context, source: Arc::new(source) }
    }
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::InvalidBatch(error) => write!(f, "invalid batch: {error}"),
            LogError::OffsetOutOfRange { requested, earliest, latest } => write!(
                f,
                "offset {requested} is out of range: the log holds offsets {earliest} to {latest} (exclusive)"
            ),
            LogError::NoSpace { detail } => {
                write!(f, "no space left on the device; the append was not applied ({detail})")
            }
            LogError::Poisoned { cause } => write!(
                f,
                "partition refuses writes after a failed fdatasync ({cause}); reopen it to recover what is on disk"
            ),
            LogError::Corrupt(error) => write!(f, "a stored batch failed its checks: {error}"),
            LogError::Io { context, source } => write!(f, "{context}: {source}"),
            LogError::Config(message) => write!(f, "invalid log configuration: {message}"),
            LogError::Closed => write!(f, "the log is closed"),
        }
    }
}

impl std::error::Error for LogError {}

impl From<BatchError> for LogError {
    fn from(error: BatchError) -> Self {
        LogError::InvalidBatch(error)
    }
}
