//! [`StateStore`]: the one way broker state other than the log is made
//! durable: committed group offsets, share-group state and producer ids. It
//! wraps a [`StateLog`] over any [`Storage`], so the fault-injecting
//! simulated disk tests every kind of state the way it tests the log.
//!
//! An append is acknowledged only after: the records are written, the file is
//! fdatasync'ed, and (once per open) the directory entries leading to the file
//! are synced. A failed fdatasync poisons the store: it is never retried (the
//! kernel may have dropped the dirty pages it reported on), and every later
//! append fails until the broker restarts and reads the file again.

use super::state_log::StateLog;
use crate::io::Storage;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Why an append was not acknowledged.
#[derive(Debug)]
pub enum AppendError {
    /// The records could not be written (nothing of them stays in the file);
    /// a full disk is one such error. The store takes later appends.
    Write(io::Error),
    /// The fdatasync (or a directory sync) failed: the store is poisoned.
    Sync(io::Error),
}

impl AppendError {
    pub fn io(&self) -> &io::Error {
        match self {
            AppendError::Write(error) | AppendError::Sync(error) => error,
        }
    }
}

impl fmt::Display for AppendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppendError::Write(error) => write!(f, "writing state failed: {error}"),
            AppendError::Sync(error) => write!(f, "syncing state failed (no more writes until restart): {error}"),
        }
    }
}

impl std::error::Error for AppendError {}

/// A state file: created by its first append, appended durably, compacted.
pub struct StateStore<S: Storage> {
    storage: S,
    path: PathBuf,
    /// Directory levels above the file that its creation may have added (and
    /// whose entries must become durable with the first append).
    depth: usize,
    log: Option<StateLog<S>>,
}

impl<S: Storage> StateStore<S> {
    /// A store whose file does not exist yet: the first append creates it.
    pub fn new(storage: S, path: impl Into<PathBuf>, depth: usize) -> StateStore<S> {
        StateStore { storage, path: path.into(), depth, log: None }
    }

    /// Opens the file at `path` (creating it) and returns the payloads of its
    /// valid records, oldest first; a torn tail is cut off.
    pub fn open(storage: S, path: impl Into<PathBuf>, depth: usize) -> io::Result<(StateStore<S>, Vec<Vec<u8>>)> {
        let path = path.into();
        let (log, records) = StateLog::open(storage.clone(), &path)?;
        Ok((StateStore { storage, path, depth, log: Some(log) }, records))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file exists (was opened, or created by an append).
    pub fn is_created(&self) -> bool {
        self.log.is_some()
    }

    /// Appends framed records (`state_log::frame_record`) durably (see the
    /// module comment). On `Ok` they survive a power loss.
    pub async fn append(&mut self, framed: &[u8]) -> Result<(), AppendError> {
        if self.log.is_none() {
            let (log, _) = StateLog::open(self.storage.clone(), &self.path).map_err(AppendError::Write)?;
            self.log = Some(log);
        }
        let Some(log) = self.log.as_mut() else {
            return Err(AppendError::Write(io::Error::other("the state file is not open")));
        };
        log.write(framed).map_err(AppendError::Write)?;
        if let Err(error) = log.sync().await {
            log.poison(&error);
            return Err(AppendError::Sync(error));
        }
        if let Err(error) = log.make_entry_durable(self.depth).await {
            log.poison(&error);
            return Err(AppendError::Sync(error));
        }
        Ok(())
    }

    /// Replaces the file with `live` once it has grown past twice
    /// `live_bytes`. Best effort: a failure leaves the longer file, which
    /// holds the same state.
    pub async fn compact(&mut self, live_bytes: u64, live: impl FnOnce() -> Vec<u8>) -> io::Result<()> {
        match self.log.as_mut() {
            Some(log) if log.wants_compaction(live_bytes) => log.rewrite(&live()).await,
            _ => Ok(()),
        }
    }

    /// Replaces the file's records with `live`, durably (nothing to do when
    /// the file was never created).
    pub async fn rewrite(&mut self, live: &[u8]) -> io::Result<()> {
        match self.log.as_mut() {
            Some(log) => log.rewrite(live).await,
            None => Ok(()),
        }
    }
}
