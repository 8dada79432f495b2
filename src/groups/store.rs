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
    /// valid records, oldest first; a torn tail is cut off. What it read is
    /// fdatasync'ed before it is returned: after a crash of the process the
    /// file may end in records that never became durable (their appends were
    /// not acknowledged), and once the broker serves them (a committed offset
    /// a consumer resumes from) a power loss must not take them back.
    pub async fn open(storage: S, path: impl Into<PathBuf>, depth: usize) -> io::Result<(StateStore<S>, Vec<Vec<u8>>)> {
        let path = path.into();
        let (log, records) = StateLog::open(storage.clone(), &path)?;
        log.sync().await?;
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

/// Crash tests of the state kept through [`StateStore`], on the simulated
/// disk: random appends and compactions under fdatasync failures and a full disk,
/// process restarts and power losses that tear the unsynced tail. After each
/// restart what was acknowledged must be there, and nothing goes backwards.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
pub(crate) mod crash_tests {
    use super::*;
    use crate::groups::share::{archived_record, delivered_record, live_records, replay, RecordState, SharePartition};
    use crate::groups::state_log::frame_record;
    use crate::groups::{framed_offsets, offsets_live_bytes, replay_offsets, OffsetRecord, Offsets};
    use crate::io::{SimFaults, SimStorage};
    use std::collections::BTreeMap;

    pub(crate) struct Random(pub(crate) u64);

    impl Random {
        pub(crate) fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n.max(1) as u64) as usize
        }
    }

    /// Before an append: maybe a failing fdatasync, maybe a disk that is full
    /// a few bytes from now. Returns whether a fault is set.
    pub(crate) fn inject(storage: &SimStorage, random: &mut Random) -> bool {
        let faults = match random.below(10) {
            0 => SimFaults { fail_syncs: true, ..Default::default() },
            1 => {
                SimFaults { capacity_bytes: Some(storage.used_bytes() + random.below(40) as u64), ..Default::default() }
            }
            _ => SimFaults::default(),
        };
        let faulty = faults.fail_syncs || faults.capacity_bytes.is_some();
        storage.set_faults(faults);
        faulty
    }

    /// A restart: a power loss (torn tail) or a process crash (page cache kept).
    pub(crate) fn restart(storage: &SimStorage, random: &mut Random) {
        storage.set_faults(SimFaults::default());
        if random.below(2) == 0 {
            let mut torn = |n: usize| random.below(n);
            storage.power_loss(Some(&mut torn));
        }
    }

    #[test]
    fn acknowledged_offset_commits_survive_every_crash_and_never_go_backwards() {
        crate::io::block_on(async {
            for seed in 1..=8u64 {
                let storage = SimStorage::new();
                let path = PathBuf::from("/data/groups/g/offsets.log");
                let mut random = Random(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let mut store = StateStore::new(storage.clone(), &path, 3);
                // What the coordinator holds: acknowledged commits (and, after a
                // restart, what the file gave back).
                let mut memory = Offsets::new();
                let mut poisoned = false;
                for round in 0..400i64 {
                    if random.below(25) == 0 {
                        restart(&storage, &mut random);
                        let (reopened, records) = StateStore::open(storage.clone(), &path, 3).await.unwrap();
                        let recovered = replay_offsets(&records);
                        for (key, (acked, _)) in &memory {
                            let found = recovered.get(key).map(|(offset, _)| *offset);
                            assert!(found >= Some(*acked), "seed {seed} round {round}: {key:?} {found:?} < {acked}");
                        }
                        (store, memory, poisoned) = (reopened, recovered, false);
                        continue;
                    }
                    if random.below(15) == 0 {
                        // A compaction, maybe under a fault: the file then
                        // holds the coordinator's offsets, or is left as it was.
                        inject(&storage, &mut random);
                        let _ = store.rewrite(&framed_offsets(&memory, round)).await;
                        storage.set_faults(SimFaults::default());
                        continue;
                    }
                    let partition = random.below(4) as u32;
                    let record = OffsetRecord {
                        topic: "t".into(),
                        partition,
                        offset: round,
                        metadata: "m".repeat(random.below(8)),
                        committed_at_ms: round,
                    };
                    let mut framed = Vec::new();
                    frame_record(&mut framed, &record.encode()).unwrap();
                    inject(&storage, &mut random);
                    let result = store.append(&framed).await;
                    storage.set_faults(SimFaults::default());
                    match result {
                        Ok(()) => {
                            assert!(!poisoned, "seed {seed} round {round}: a poisoned store took an append");
                            memory.insert(("t".into(), partition), (round, record.metadata));
                            let live = || framed_offsets(&memory, round);
                            store.compact(offsets_live_bytes(&memory), live).await.unwrap();
                        }
                        Err(AppendError::Sync(_)) => poisoned = true,
                        Err(AppendError::Write(_)) => {}
                    }
                }
            }
        })
        .unwrap();
    }

    fn is_archived(state: &SharePartition, offset: u64) -> bool {
        offset < state.start || state.records.get(&offset) == Some(&RecordState::Archived)
    }

    fn deliveries(state: &SharePartition, offset: u64) -> u16 {
        match state.records.get(&offset) {
            Some(
                RecordState::Available { deliveries }
                | RecordState::Acquired { deliveries, .. }
                | RecordState::DeadLettering { deliveries },
            ) => *deliveries,
            _ => 0,
        }
    }

    #[test]
    fn acknowledged_share_state_survives_every_crash() {
        crate::io::block_on(async {
            for seed in 1..=8u64 {
                let storage = SimStorage::new();
                let path = PathBuf::from("/data/groups/g/share/t/0.log");
                let mut random = Random(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
                let mut store = StateStore::new(storage.clone(), &path, 5);
                let mut state = SharePartition::new(0);
                // Acknowledged: offsets accepted, and the delivery count each
                // offset had reached.
                let mut accepted: Vec<u64> = Vec::new();
                let mut delivered: BTreeMap<u64, u16> = BTreeMap::new();
                for round in 0..400 {
                    if random.below(25) == 0 {
                        restart(&storage, &mut random);
                        let (reopened, records) = StateStore::open(storage.clone(), &path, 5).await.unwrap();
                        let mut recovered = SharePartition::new(0);
                        for payload in &records {
                            replay(&mut recovered, payload);
                        }
                        for &offset in &accepted {
                            assert!(is_archived(&recovered, offset), "seed {seed} round {round}: {offset} came back");
                        }
                        for (&offset, &count) in &delivered {
                            let kept = is_archived(&recovered, offset) || deliveries(&recovered, offset) >= count;
                            assert!(kept, "seed {seed} round {round}: {offset} lost deliveries ({count})");
                        }
                        (store, state) = (reopened, recovered);
                        continue;
                    }
                    if random.below(15) == 0 {
                        inject(&storage, &mut random);
                        let _ = store.rewrite(&live_records(&state)).await;
                        storage.set_faults(SimFaults::default());
                        continue;
                    }
                    let offset = random.below(64) as u64;
                    let accept = random.below(3) == 0;
                    let count = deliveries(&state, offset).saturating_add(1);
                    let payload =
                        if accept { archived_record(offset, offset) } else { delivered_record(offset, count) };
                    let mut framed = Vec::new();
                    frame_record(&mut framed, &payload).unwrap();
                    inject(&storage, &mut random);
                    let result = store.append(&framed).await;
                    storage.set_faults(SimFaults::default());
                    if result.is_ok() {
                        if accept {
                            state.archive(offset, offset);
                            accepted.push(offset);
                        } else if !is_archived(&state, offset) {
                            state.delivered(offset, count);
                            let reached = delivered.entry(offset).or_default();
                            *reached = (*reached).max(count);
                        }
                        let live = live_records(&state);
                        store.compact(live.len() as u64, || live).await.unwrap();
                    }
                }
            }
        })
        .unwrap();
    }
}
