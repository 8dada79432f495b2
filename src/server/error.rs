//! Why a broker did not start or did not stop cleanly: typed, so the C ABI
//! and the CLI report the real kind (a locked directory, a disk error, a
//! missing io_uring), not a sentence to parse.

use super::dir_lock;
use crate::protocol::ErrorCode;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// A state file or directory that could not be read or written, with what
/// was being done to it.
#[derive(Debug)]
pub struct StateError {
    pub context: String,
    pub source: io::Error,
}

impl StateError {
    pub fn new(context: impl Into<String>, source: io::Error) -> StateError {
        StateError { context: context.into(), source }
    }
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.source)
    }
}

impl std::error::Error for StateError {}

/// What went wrong in one shard thread.
#[derive(Debug)]
#[non_exhaustive]
pub enum ShardError {
    /// The shard's io_uring runtime could not be made.
    Runtime(crate::io::RuntimeError),
    /// A partition could not be opened (recovery refused it).
    Partition { shard: u16, topic: String, code: ErrorCode },
    /// A group's, share-partition's or the producer ids' state, or a
    /// listener, could not be read, written or registered.
    Storage { shard: u16, error: StateError },
    /// The final fdatasync of a partition failed at shutdown.
    FinalSync { shard: u16, source: io::Error },
    /// The shard thread panicked.
    Panicked { shard: u16 },
}

impl fmt::Display for ShardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardError::Runtime(error) => error.fmt(f),
            ShardError::Partition { shard, topic, code } => {
                write!(f, "shard {shard}: cannot open the partitions of topic {topic}: {code}")
            }
            ShardError::Storage { shard, error } => write!(f, "shard {shard}: {error}"),
            ShardError::FinalSync { shard, source } => write!(f, "shard {shard}: {source}"),
            ShardError::Panicked { shard } => write!(f, "shard {shard}: its thread panicked"),
        }
    }
}

impl std::error::Error for ShardError {}

/// Why a server (or an embedded broker) did not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// Another broker holds the data directory's lock (see [`dir_lock`]).
    Locked { data_dir: PathBuf, holder_pid: Option<u32> },
    /// io_uring is missing or refused by the kernel.
    NoIoUring(crate::io::RuntimeError),
    /// A shard could not start: a partition, a state file or a listener.
    Shard(ShardError),
    /// The data directory, a port or an eventfd could not be had.
    Io { context: String, source: io::Error },
    /// A refused configuration or data directory; the message says which and
    /// what to do.
    Refused(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Locked { data_dir, holder_pid } => {
                let held = dir_lock::LockError::Held { data_dir: data_dir.clone(), holder_pid: *holder_pid };
                held.fmt(f)
            }
            StartError::NoIoUring(error) => error.fmt(f),
            StartError::Shard(error) => error.fmt(f),
            StartError::Io { context, source } => write!(f, "{context}: {source}"),
            StartError::Refused(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for StartError {}

impl StartError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> StartError {
        StartError::Io { context: context.into(), source }
    }
}

impl From<String> for StartError {
    fn from(message: String) -> Self {
        StartError::Refused(message)
    }
}

impl From<&str> for StartError {
    fn from(message: &str) -> Self {
        StartError::Refused(message.to_owned())
    }
}

impl From<ShardError> for StartError {
    fn from(error: ShardError) -> Self {
        match error {
            ShardError::Runtime(error) => StartError::NoIoUring(error),
            other => StartError::Shard(other),
        }
    }
}

impl From<dir_lock::LockError> for StartError {
    fn from(error: dir_lock::LockError) -> Self {
        match error {
            dir_lock::LockError::Held { data_dir, holder_pid } => StartError::Locked { data_dir, holder_pid },
            dir_lock::LockError::Io { path, error } => {
                StartError::Io { context: format!("cannot lock {}", path.display()), source: error }
            }
        }
    }
}
