//! One partition: a directory of segments.
//!
//! ```text
//! DATA_DIR/topics/<topic>/<partition>/
//!     00000000000000000000.log    batches back to back, base offsets stamped
//!     00000000000000000000.idx    sparse offset -> position   (see index.rs)
//!     00000000000000000000.tix    sparse timestamp -> offset  (see index.rs)
//!     00000000000000004096.log    the next segment: named by its base offset,
//!     ...                         20 decimal digits
//! ```
//!
//! The last segment is *active* and takes appends; the others are *sealed*. Opening
//! reads only the active segment (from its last index entry on) and, when that
//! segment is empty or its predecessor lacks a seal entry, the predecessor's index
//! tail. Sealed segments are opened and their indexes loaded on first use.
//!
//! Durability contract (docs/STORAGE.md): an offset below [`PartitionLog::durable_offset`]
//! has been fdatasync'ed, together with every segment before it, and survives power
//! loss; an offset below [`PartitionLog::high_watermark`] is in the page cache and
//! survives a crash of the process.

use super::index::{self, IndexEntry};
use super::segments::{Segment, SegmentFiles, Segments};
use super::{LogConfig, LogError};
use crate::batch::{self, Batch, BatchHeader, BATCH_HEADER_BYTES};
use crate::io::{FileBytes, OpenMode, Storage, StorageFile, SyncFuture};
use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// Index entries kept in memory before they are written to the index files.
/// Bounds what a crash can cost recovery: a scan of at most this many index
/// intervals (256 KiB at the default interval) beyond the last written entry.
pub const INDEX_FLUSH_ENTRIES: usize = 64;

/// Bytes a read takes from the file in one call beyond what the caller asked for,
/// to find the batch holding the requested offset after an index entry.
const READ_SLACK_BYTES: u64 = 64 * 1024;
/// Damaged batches a partition remembers having logged (past it, a damaged
/// batch is logged again at every read that meets it).
const DAMAGE_REPORTS_MAX: usize = 64;
/// Reads of at least this many bytes map the segment (where the storage can)
/// instead of copying it into a buffer: a fetch's records then go from the
/// page cache to the socket directly. Smaller ones are cheaper copied than
/// mapped and unmapped.
pub const MAP_READ_MIN_BYTES: usize = 128 * 1024;
/// Bytes read at a time when walking batch headers.
pub const HEADER_SCAN_WINDOW_BYTES: u64 = 64 * 1024;
/// Zeros written ahead of the active segment's end (the default of
/// [`LogConfig::zero_ahead_bytes`]), so that small appends overwrite blocks
/// the file already has: their fdatasync then writes data only, not the
/// file's size and extents too (measured on ext4 here: p50 121–128 µs
/// against 152–157 µs for an append that grows the file). The window is
/// renewed when an append comes within a quarter of it of its end; the sync
/// after a renewal carries the metadata, once per window. Appends inside the
/// window also cannot fail for lack of space.
pub const ZERO_AHEAD_BYTES: u64 = 256 * 1024;
/// Batches larger than this are not written ahead of: their fdatasync is
/// dominated by the data, and zeroing would write their bytes twice.
pub const ZERO_AHEAD_BATCH_MAX_BYTES: u64 = 64 * 1024;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn segment_file(dir: &Path, base_offset: u64, extension: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{extension}"))
}

fn parse_segment_name(name: &str) -> Option<(u64, &str)> {
    let (stem, extension) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, extension))
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: u64,
    pub last_offset: u64,
    /// High watermark after the append (`last_offset + 1`).
    pub next_offset: u64,
}

/// What opening the log found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Bytes cut from the tail of the active segment (torn or corrupt batches).
    pub truncated_bytes: u64,
    /// Why the first cut batch was refused.
    pub truncation_reason: Option<String>,
    /// Bytes of the log read to verify its tail.
    pub scanned_bytes: u64,
    /// Index files rewritten because they were missing or damaged.
    pub indexes_rebuilt: u32,
    /// Segments after a gap that were dropped (their data was never durable).
    pub segments_dropped: u32,
}

/// What a retention pass deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub segments_deleted: u32,
    pub bytes_deleted: u64,
    pub earliest_offset: u64,
}

/// The outcome of scanning batches from an index entry.
struct ScanResult {
    next_offset: u64,
    position: u64,
    max_timestamp: i64,
    bytes_since_index: u64,
    new_entries: Vec<IndexEntry>,
    /// Where and why the scan stopped before the end of the file.
    failure: Option<(u64, String)>,
    scanned_bytes: u64,
}

/// Reads batches from `start` to `log_length`, validating each (length, magic, CRC,
/// dense base offset) and producing the index entries the append path would have
/// written for them.
fn scan<F: StorageFile>(
    log: &F,
    start: &IndexEntry,
    log_length: u64,
    index_interval_bytes: u64,
) -> io::Result<ScanResult> {
    let mut result = ScanResult {
        next_offset: start.offset,
        position: u64::from(start.position),
        max_timestamp: start.timestamp_before,
        bytes_since_index: 0,
        new_entries: Vec::new(),
        failure: None,
        scanned_bytes: 0,
    };
    let mut buffer = Vec::new();
    let mut first = true;
    while result.position < log_length {
        match read_checked_batch(log, result.position, log_length, result.next_offset, &mut buffer)? {
            Err(reason) => {
                result.failure = Some((result.position, reason));
                break;
            }
            Ok(header) => {
                let size = buffer.len() as u64;
                // The batch at `start` is the one the index entry already describes.
                let needs_entry = !first && result.bytes_since_index >= index_interval_bytes;
                if needs_entry {
                    result.new_entries.push(IndexEntry {
                        offset: result.next_offset,
                        position: result.position as u32,
                        timestamp_before: result.max_timestamp,
                    });
                    result.bytes_since_index = 0;
                }
                if first {
                    result.bytes_since_index = 0;
                }
                first = false;
                result.bytes_since_index += size;
                result.max_timestamp = result.max_timestamp.max(header.max_timestamp);
                result.next_offset += header.records_count as u64;
                result.position += size;
                result.scanned_bytes += size;
            }
        }
    }
    Ok(result)
}

/// Reads the batch at `position` into `buffer` and validates it. The outer error
/// is an I/O failure; the inner one says why the bytes are not a valid batch.
fn read_checked_batch<F: StorageFile>(
    log: &F,
    position: u64,
    log_length: u64,
    expected_offset: u64,
    buffer: &mut Vec<u8>,
) -> io::Result<Result<BatchHeader, String>> {
    let available = log_length - position;
    if available < BATCH_HEADER_BYTES as u64 {
        return Ok(Err(format!("{available} bytes at the end, fewer than a batch header")));
    }
    let mut header_bytes = [0u8; BATCH_HEADER_BYTES];
    log.read_exact_at(&mut header_bytes, position)?;
    let size = match batch::batch_size(&header_bytes) {
        Ok(Some(size)) => size,
        Ok(None) => return Ok(Err("short header".into())),
        Err(error) => return Ok(Err(error.to_string())),
    };
    if size as u64 > available {
        return Ok(Err(format!("batch of {size} bytes but only {available} remain")));
    }
    buffer.resize(size, 0);
    log.read_exact_at(buffer, position)?;
    let batch = match Batch::validate_stored(buffer) {
        Ok(batch) => batch,
        Err(error) => return Ok(Err(error.to_string())),
    };
    let header = *batch.header();
    if header.base_offset != expected_offset as i64 {
        return Ok(Err(format!("batch base offset {} where {expected_offset} was expected", header.base_offset)));
    }
    Ok(Ok(header))
}

/// Files whose fdatasync a flush round must issue, in two phases: `before` (sealed
/// segments and the directory) completes before `active` starts, so data in a new
/// segment is never durable while the segment before it is not.
pub struct SyncPlan {
    /// Run in order; the futures of one phase run together. Sealed segments come
    /// oldest first, one phase each, then the directory, then the active segment:
    /// no segment is durable while one before it may not be.
    pub phases: Vec<Vec<SyncFuture>>,
    /// The high watermark when the plan was made: durable once every phase succeeded.
    pub target_offset: u64,
}

impl SyncPlan {
    /// fdatasyncs in the plan.
    pub fn len(&self) -> usize {
        self.phases.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a loaded segment ends, and the state its next append continues from.
struct Tail {
    next_offset: u64,
    size: u64,
    max_timestamp: i64,
    bytes_since_index: u64,
}

/// Finds a segment's real end when its index does not end in a seal: drops
/// index entries that do not point at a batch (and a stale seal), then scans
/// and validates the batches after the last good entry, adding the entries the
/// append path would have written. `clean` turns false when `entries` changed.
fn scan_tail<F: StorageFile>(
    log: &F,
    base_offset: u64,
    log_length: u64,
    index_interval_bytes: u64,
    entries: &mut Vec<IndexEntry>,
    clean: &mut bool,
) -> Result<(Tail, ScanResult), LogError> {
    while let Some(last) = entries.last().copied() {
        let points_at_batch = u64::from(last.position) < log_length
            && read_base_offset_at(log, last.position).map_err(|e| LogError::io("reading a batch", e))?
                == Some(last.offset);
        if points_at_batch {
            break;
        }
        entries.pop();
        *clean = false;
    }
    let start =
        entries.last().copied().unwrap_or(IndexEntry { offset: base_offset, position: 0, timestamp_before: -1 });
    let scanned =
        scan(log, &start, log_length, index_interval_bytes).map_err(|e| LogError::io("scanning a segment", e))?;
    if entries.is_empty() && scanned.position > 0 {
        entries.push(start);
        *clean = false;
    }
    if !scanned.new_entries.is_empty() {
        entries.extend_from_slice(&scanned.new_entries);
        *clean = false;
    }
    let tail = Tail {
        next_offset: scanned.next_offset,
        size: scanned.position,
        max_timestamp: scanned.max_timestamp,
        bytes_since_index: scanned.bytes_since_index,
    };
    Ok((tail, scanned))
}

/// A segment position that is not in the list: a broken invariant of this
/// file, reported as an error on the partition rather than a panic of the shard.
fn missing_segment(at: usize) -> LogError {
    LogError::io("finding a segment", io::Error::other(format!("no segment at position {at}")))
}

type Waiter = (u64, oneshot::Sender<Result<(), LogError>>);

/// One partition's log. Owned by one shard; not `Send`.
pub struct PartitionLog<S: Storage> {
    storage: S,
    dir: PathBuf,
    config: LogConfig,
    segments: Segments<S::File>,
    durable_offset: u64,
    poisoned: Option<Arc<io::Error>>,
    /// Sealed segments written since the last successful flush.
    sealed_unsynced: Vec<u64>,
    dir_dirty: bool,
    dirty: bool,
    waiters: VecDeque<Waiter>,
    recovery: RecoveryReport,
    /// Damaged stored batches already logged: (segment base offset, byte).
    damage_reported: Vec<(u64, u64)>,
    /// True while this log sits in its group commit's dirty list.
    pub(crate) queued_for_flush: bool,
}

impl<S: Storage> PartitionLog<S> {
    /// Opens (creating if needed) the log in `dir` and recovers the active
    /// segment. What it found becomes durable with the first flush round
    /// ([`PartitionLog::needs_sync`] is true after opening).
    pub async fn open(storage: S, dir: impl Into<PathBuf>, config: LogConfig) -> Result<PartitionLog<S>, LogError> {
        config.validate()?;
        let dir = dir.into();
        storage.create_dir_all(&dir).map_err(|e| LogError::io("creating the partition directory", e))?;
        let mut log = PartitionLog {
            storage,
            dir,
            config,
            segments: Segments::from_bases(&[]),
            durable_offset: 0,
            poisoned: None,
            sealed_unsynced: Vec::new(),
            dir_dirty: false,
            dirty: false,
            waiters: VecDeque::new(),
            recovery: RecoveryReport::default(),
            damage_reported: Vec::new(),
            queued_for_flush: false,
        };
        log.discover_segments()?;
        log.recover_active()?;
        // Nothing recovered is known to be durable yet (a crashed process leaves
        // its writes in the page cache, maybe unsynced): the first flush round
        // syncs the recovered segments, and until then `durable_offset` stays at
        // the start of the log. Opening does not wait for that round, so a
        // broker is ready in milliseconds even with gigabytes left dirty.
        log.durable_offset = log.earliest_offset();
        log.dirty = true;
        log.dir_dirty = true;
        // Every sealed segment, not only those recovery opened: a crashed process
        // may have left any of them unsynced. Their logs are opened only for the
        // sync (a duplicate descriptor carries it), so opening reads none of them.
        log.sealed_unsynced = log.segments.sealed().iter().map(|segment| segment.base_offset).collect();
        if log.recovery.truncated_bytes > 0 || log.recovery.segments_dropped > 0 {
            eprintln!(
                "ringmq: recovered {}: truncated {} bytes ({}), dropped {} segment(s) after a gap",
                log.dir.display(),
                log.recovery.truncated_bytes,
                log.recovery.truncation_reason.as_deref().unwrap_or("no reason"),
                log.recovery.segments_dropped
            );
        }
        Ok(log)
    }

    /// Lists segment files; removes index files whose log is gone (a retention
    /// pass interrupted between deletions).
    fn discover_segments(&mut self) -> Result<(), LogError> {
        let names = self.storage.list_dir(&self.dir).map_err(|e| LogError::io("listing the partition directory", e))?;
        let mut bases: Vec<u64> = names
            .iter()
            .filter_map(|name| parse_segment_name(name))
            .filter(|(_, extension)| *extension == "log")
            .map(|(base, _)| base)
            .collect();
        bases.sort_unstable();
        for (base, extension) in names.iter().filter_map(|name| parse_segment_name(name)) {
            if (extension == "idx" || extension == "tix") && bases.binary_search(&base).is_err() {
                let path = segment_file(&self.dir, base, extension);
                self.storage.remove_file(&path).map_err(|e| LogError::io("removing an orphan index", e))?;
            }
        }
        self.segments = Segments::from_bases(&bases);
        Ok(())
    }

    fn open_files(&self, base_offset: u64) -> Result<SegmentFiles<S::File>, LogError> {
        let path = segment_file(&self.dir, base_offset, "log");
        let log = self.storage.open(&path, OpenMode::CreateOrOpen).map_err(|e| LogError::io("opening a segment", e))?;
        Ok(SegmentFiles { log })
    }

    /// Opens a segment's two index files (creating them when missing).
    fn open_index(&self, base_offset: u64) -> std::io::Result<(S::File, S::File)> {
        let open =
            |extension| self.storage.open(&segment_file(&self.dir, base_offset, extension), OpenMode::CreateOrOpen);
        Ok((open("idx")?, open("tix")?))
    }

    /// Writes a segment's unwritten index entries. Best effort: the index is
    /// rebuilt from the log when it falls behind, so a failure is logged and the
    /// entries stay pending for the next attempt.
    fn flush_index(&mut self, at: usize) {
        let Some(segment) = self.segments.get(at) else { return };
        let entries = segment.entries();
        if segment.index_flushed >= entries.len() {
            return;
        }
        let (base_offset, flushed) = (segment.base_offset, segment.index_flushed);
        let written = self.open_index(base_offset).and_then(|(offsets, times)| {
            let pending = entries.get(flushed..).unwrap_or(&[]);
            let result = index::write_at(&offsets, &times, base_offset, flushed, pending);
            if result.is_err() {
                let _ = index::truncate(&offsets, &times, flushed);
            }
            result
        });
        match written {
            Ok(()) => {
                if let Some(segment) = self.segments.get_mut(at) {
                    segment.index_flushed = segment.entries().len();
                }
            }
            Err(error) => eprintln!(
                "ringmq: {}: cannot write index entries ({error}); they are retried later",
                self.dir.display()
            ),
        }
    }

    /// fdatasyncs of a segment's index files, after flushing them.
    fn index_syncs(&mut self, at: usize) -> Vec<SyncFuture> {
        self.flush_index(at);
        let Some(base_offset) = self.segments.get(at).map(|segment| segment.base_offset) else { return Vec::new() };
        match self.open_index(base_offset) {
            Ok((offsets, times)) => vec![offsets.sync_data(), times.sync_data()],
            Err(error) => vec![Box::pin(async move { Err(error) })],
        }
    }

    /// Recovers the last segment, then makes sure the segment before it ended
    /// exactly where it begins; a gap means the later segment's data never became
    /// durable, so it is dropped and the check repeats.
    fn recover_active(&mut self) -> Result<(), LogError> {
        self.drop_after_first_incomplete_sealed()?;
        loop {
            let last = self.segments.active_at();
            self.load_segment(last, true)?;
            let expected = self.segments.active().base_offset;
            let Some(previous) = last.checked_sub(1) else { break };
            if let Some(segment) = self.segments.get_mut(previous) {
                segment.next_offset = expected;
            }
            let found = self.load_segment(previous, true)?;
            if found == expected {
                break;
            }
            let Some(dropped) = self.segments.pop_active() else { break };
            self.remove_segment_files(dropped.base_offset)?;
            self.recovery.segments_dropped += 1;
            self.dir_dirty = true;
        }
        self.segments.active_mut().created_at_ms = now_ms();
        // The predecessor may have been opened for the check: sealing it again is
        // idempotent (its seal entry is already there or was just written).
        Ok(())
    }

    /// A sealed segment is complete when the last entry of its offset index is its
    /// seal (CRC-checked, offset = the next segment's base, position = the log's
    /// length). Reads 12 bytes of the index and the log's size, not the log.
    fn seal_is_intact(&self, at: usize) -> bool {
        let Some(segment) = self.segments.get(at) else { return false };
        let check = || -> io::Result<bool> {
            let log = self.storage.open(&segment_file(&self.dir, segment.base_offset, "log"), OpenMode::Existing)?;
            let offsets =
                self.storage.open(&segment_file(&self.dir, segment.base_offset, "idx"), OpenMode::Existing)?;
            let index_length = offsets.len()?;
            if index_length < index::OFFSET_ENTRY_BYTES as u64 {
                return Ok(false);
            }
            let mut entry = [0u8; index::OFFSET_ENTRY_BYTES];
            offsets.read_exact_at(&mut entry, index_length - index::OFFSET_ENTRY_BYTES as u64)?;
            Ok(index::decode_offset_entry(&entry, segment.base_offset).is_some_and(|(offset, position)| {
                offset == segment.next_offset && u64::from(position) == log.len().unwrap_or(0)
            }))
        };
        check().unwrap_or(false)
    }

    /// Sealed segments are synced oldest first, so after a power loss the first
    /// one that is not complete marks where the durable log may end: nothing
    /// after it can have been acknowledged as durable. Segments after it are
    /// dropped; it becomes the active segment and its tail is recovered.
    fn drop_after_first_incomplete_sealed(&mut self) -> Result<(), LogError> {
        for at in 0..self.segments.active_at() {
            if self.seal_is_intact(at) {
                continue;
            }
            // Missing or damaged index: find the real end by scanning its tail.
            let Some(expected) = self.segments.get(at).map(|segment| segment.next_offset) else { break };
            if self.load_segment(at, true)? == expected {
                continue;
            }
            while self.segments.len() > at + 1 {
                let Some(dropped) = self.segments.pop_active() else { break };
                drop(dropped.files);
                self.remove_segment_files(dropped.base_offset)?;
                self.recovery.segments_dropped += 1;
                self.dir_dirty = true;
            }
            // Reloaded as the active segment by the caller.
            self.segments.active_mut().entries = None;
            break;
        }
        Ok(())
    }

    /// Opens a segment's files, loads and checks its indexes, and scans its log
    /// from the last good index entry. For the active segment (`repair`), bytes
    /// after the first bad batch are cut. Returns the segment's end offset.
    fn load_segment(&mut self, at: usize, repair: bool) -> Result<u64, LogError> {
        let is_active = at == self.segments.active_at();
        let segment = self.segments.get(at).ok_or_else(|| missing_segment(at))?;
        let (base_offset, expected_end, opened) = (segment.base_offset, segment.next_offset, segment.files.is_some());
        if !opened {
            let files = self.open_files(base_offset)?;
            self.segments.get_mut(at).ok_or_else(|| missing_segment(at))?.files = Some(files);
        }
        let (offset_index, time_index) =
            self.open_index(base_offset).map_err(|e| LogError::io("opening a segment index", e))?;
        let segment = self.segments.get(at).ok_or_else(|| missing_segment(at))?;
        let log = segment.log().map_err(|e| LogError::io("opening a segment", e))?;
        let log_length = log.len().map_err(|e| LogError::io("reading a segment's size", e))?;
        let mut file_length = log_length;
        let loaded = index::load(&offset_index, &time_index, base_offset, log_length)
            .map_err(|e| LogError::io("reading a segment index", e))?;
        let mut entries = loaded.entries;
        let mut clean = loaded.clean;
        if !loaded.clean {
            // Damage, or a write a crash tore: the index is rebuilt from the log.
            eprintln!(
                "ringmq: {}: the index holds bytes that fail its checks after entry {}; rebuilt from the log",
                segment_file(&self.dir, base_offset, "idx").display(),
                entries.len()
            );
        }

        // A sealed segment whose last entry is its seal needs no scan.
        let seal = entries
            .last()
            .copied()
            .filter(|entry| !is_active && entry.offset == expected_end && u64::from(entry.position) == log_length);
        let tail = match seal {
            Some(seal) => Tail {
                next_offset: seal.offset,
                size: log_length,
                max_timestamp: seal.timestamp_before,
                bytes_since_index: 0,
            },
            None => {
                let interval = self.config.index_interval_bytes;
                let (mut tail, scanned) = scan_tail(log, base_offset, log_length, interval, &mut entries, &mut clean)?;
                self.recovery.scanned_bytes += scanned.scanned_bytes;
                if let Some((position, reason)) = scanned.failure {
                    // Zeros after the last batch are the window written ahead
                    // of appends (or blocks a crash left unwritten): nothing
                    // was cut from a batch, and the window stays.
                    let zeros =
                        is_zero_tail(log, position, log_length).map_err(|e| LogError::io("reading a segment", e))?;
                    if repair && !zeros {
                        log.truncate(position).map_err(|e| LogError::io("truncating a torn segment tail", e))?;
                        self.recovery.truncated_bytes += log_length - position;
                        self.recovery.truncation_reason.get_or_insert(reason);
                        file_length = position;
                    } else if !is_active && !zeros {
                        // Damage at rest in a sealed segment (found while its
                        // index is rebuilt): nothing is cut. The segment keeps
                        // its extent, so the batches after the damaged one
                        // stay readable; reads check each batch they serve.
                        eprintln!(
                            "ringmq: {}: the stored batch at byte {position} failed its checks ({reason}) while \
                             its index was rebuilt; it is not served, the rest of the segment is",
                            segment_file(&self.dir, base_offset, "log").display()
                        );
                        tail.next_offset = expected_end;
                        tail.size = log_length;
                    }
                }
                tail
            }
        };
        if !is_active && seal.is_none() && tail.next_offset == expected_end {
            let position = tail.size as u32;
            entries.push(IndexEntry { offset: tail.next_offset, position, timestamp_before: tail.max_timestamp });
            clean = false;
        }
        let mut flushed = entries.len();
        if !clean {
            // Best effort, like every index write: on failure (a full disk) the
            // entries stay pending and the next flush rewrites the files.
            match index::rewrite(&offset_index, &time_index, base_offset, &entries) {
                Ok(()) => self.recovery.indexes_rebuilt += 1,
                Err(error) => {
                    eprintln!("ringmq: {}: cannot rewrite an index ({error}); retried later", self.dir.display());
                    flushed = 0;
                }
            }
        }
        let segment = self.segments.get_mut(at).ok_or_else(|| missing_segment(at))?;
        segment.index_flushed = flushed;
        segment.entries = Some(entries);
        segment.next_offset = tail.next_offset;
        segment.size = tail.size;
        segment.max_timestamp = tail.max_timestamp;
        segment.bytes_since_index = tail.bytes_since_index;
        segment.file_length = file_length;
        Ok(tail.next_offset)
    }

    /// Loads a sealed segment on first use.
    fn ensure_loaded(&mut self, at: usize) -> Result<(), LogError> {
        let segment = self.segments.get(at).ok_or_else(|| missing_segment(at))?;
        if segment.entries.is_none() {
            self.load_segment(at, false)?;
        }
        let segment = self.segments.get(at).ok_or_else(|| missing_segment(at))?;
        if segment.files.is_none() {
            let files = self.open_files(segment.base_offset)?;
            self.segments.get_mut(at).ok_or_else(|| missing_segment(at))?.files = Some(files);
        }
        Ok(())
    }

    /// Closes the descriptors of sealed segments that are synced: a partition
    /// keeps one open descriptor (its active segment) between uses, whatever
    /// retention or a reader of old data opened. Reads reopen on demand.
    fn close_synced_sealed(&mut self) {
        for segment in self.segments.sealed_mut() {
            if !self.sealed_unsynced.contains(&segment.base_offset) {
                segment.files = None;
            }
        }
    }

    fn remove_segment_files(&self, base_offset: u64) -> Result<(), LogError> {
        remove_files(&self.storage, &self.dir, base_offset)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The first offset still held.
    pub fn earliest_offset(&self) -> u64 {
        self.segments.first().base_offset
    }

    /// One past the last appended offset (Kafka's log end offset).
    pub fn next_offset(&self) -> u64 {
        self.segments.active().next_offset
    }

    /// Offsets below this are written to the page cache and visible to readers.
    pub fn high_watermark(&self) -> u64 {
        self.next_offset()
    }

    /// Offsets below this have been fdatasync'ed.
    pub fn durable_offset(&self) -> u64 {
        self.durable_offset
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Base offsets of all segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<u64> {
        self.segments.iter().map(|segment| segment.base_offset).collect()
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// Appends one batch (RecordBatch v2, as a producer built it) and stamps its
    /// base offset in place. Returns once the bytes are in the page cache.
    pub fn append(&mut self, batch: &mut [u8]) -> Result<AppendInfo, LogError> {
        self.append_at(batch, now_ms())
    }

    /// [`PartitionLog::append`] with an explicit clock, for age-based rolling.
    pub fn append_at(&mut self, batch: &mut [u8], now_ms: i64) -> Result<AppendInfo, LogError> {
        if let Some(cause) = &self.poisoned {
            return Err(LogError::Poisoned { cause: cause.clone() });
        }
        let header = *Batch::validate_for_append(batch)?.header();
        let records = header.records_count as u64;
        let rolled = self.maybe_roll(batch.len() as u64, records, now_ms)?;
        let base_offset = self.next_offset();
        batch::stamp_base_offset(batch, base_offset as i64)?;

        let interval = self.config.index_interval_bytes;
        let active = self.segments.active();
        let position = active.size;
        let needs_entry = active.entries().is_empty() || active.bytes_since_index >= interval;
        if let Err(error) = active.log().and_then(|log| log.write_all_at(batch, position)) {
            self.roll_back_append(position, rolled)?;
            return Err(LogError::io("appending to the segment", error));
        }
        let active = self.segments.active_mut();
        if needs_entry {
            let entry =
                IndexEntry { offset: base_offset, position: position as u32, timestamp_before: active.max_timestamp };
            active.entries.get_or_insert_with(Vec::new).push(entry);
            active.bytes_since_index = 0;
        }
        active.bytes_since_index += batch.len() as u64;
        active.size += batch.len() as u64;
        active.next_offset += records;
        active.max_timestamp = active.max_timestamp.max(header.max_timestamp);
        active.file_length = active.file_length.max(active.size);
        let pending = active.entries().len() - active.index_flushed;
        self.dirty = true;
        if batch.len() as u64 <= ZERO_AHEAD_BATCH_MAX_BYTES {
            self.zero_ahead();
        }
        if pending >= INDEX_FLUSH_ENTRIES {
            self.flush_index(self.segments.active_at());
        }
        Ok(AppendInfo { base_offset, last_offset: base_offset + records - 1, next_offset: base_offset + records })
    }

    /// Renews the zeroed window past the active segment's end when an append
    /// came near its end. Best effort: a failure (a full disk) only means the
    /// next appends grow the file again.
    fn zero_ahead(&mut self) {
        let (segment_bytes, window) = (self.config.segment_bytes, self.config.zero_ahead_bytes);
        let active = self.segments.active_mut();
        let near_end = active.size + window / 4 >= active.file_length;
        if window == 0 || !near_end || active.file_length >= segment_bytes {
            return;
        }
        let start = active.file_length;
        let end = (active.size + window).min(segment_bytes).max(start);
        let zeros = vec![0u8; (end - start) as usize];
        match active.log().and_then(|log| log.write_all_at(&zeros, start)) {
            Ok(()) => active.file_length = end,
            // Part of it may be there: the file says how much.
            Err(_) => active.file_length = active.log().and_then(|log| log.len()).unwrap_or(start).max(active.size),
        }
    }

    /// Undoes a partial append so no byte of it stays visible, and the roll it
    /// caused, if any. If even that fails the state of the files is unknown and
    /// the partition is poisoned.
    fn roll_back_append(&mut self, position: u64, rolled: bool) -> Result<(), LogError> {
        let mut undone = self.segments.active().log().and_then(|log| log.truncate(position));
        if undone.is_ok() {
            self.segments.active_mut().file_length = position;
        }
        if rolled && undone.is_ok() {
            undone = self.undo_roll();
        }
        if let Err(error) = undone {
            let cause = Arc::new(error);
            self.poison(cause.clone());
            return Err(LogError::Poisoned { cause });
        }
        Ok(())
    }

    /// Refuses every later write with `cause` and fails every waiter with it.
    fn poison(&mut self, cause: Arc<io::Error>) {
        eprintln!("ringmq: {} refuses writes until reopened: {cause}", self.dir.display());
        self.poisoned = Some(cause.clone());
        for (_, sender) in self.waiters.drain(..) {
            let _ = sender.send(Err(LogError::Poisoned { cause: cause.clone() }));
        }
    }

    /// Rolls when the batch would not fit; returns whether it rolled.
    fn maybe_roll(&mut self, batch_bytes: u64, records: u64, now_ms: i64) -> Result<bool, LogError> {
        let active = self.segments.active();
        if active.size == 0 {
            return Ok(false);
        }
        let too_big = active.size + batch_bytes > self.config.segment_bytes;
        let too_old =
            self.config.segment_ms.is_some_and(|age| now_ms.saturating_sub(active.created_at_ms) >= age as i64);
        let offsets_full = active.next_offset + records - active.base_offset > u64::from(u32::MAX);
        if too_big || too_old || offsets_full {
            self.roll(now_ms)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Seals the active segment (writes its seal entry) and starts a new one.
    fn roll(&mut self, now_ms: i64) -> Result<(), LogError> {
        let new_base = self.next_offset();
        let active = self.segments.active();
        let seal = IndexEntry {
            offset: active.next_offset,
            position: active.size as u32,
            timestamp_before: active.max_timestamp,
        };
        // A sealed segment ends at its last batch: the zeros written ahead go.
        if active.file_length > active.size {
            let cut = active.log().and_then(|log| log.truncate(active.size));
            cut.map_err(|e| LogError::io("cutting the zeros after a sealed segment", e))?;
        }
        let files = match self.open_files(new_base) {
            Ok(files) => files,
            Err(error) => {
                let _ = self.remove_segment_files(new_base);
                return Err(error);
            }
        };
        let active = self.segments.active_mut();
        active.file_length = active.size;
        active.entries.get_or_insert_with(Vec::new).push(seal);
        self.sealed_unsynced.push(active.base_offset);
        self.flush_index(self.segments.active_at());
        self.dir_dirty = true;
        self.segments.push_active(Segment {
            base_offset: new_base,
            next_offset: new_base,
            size: 0,
            files: Some(files),
            entries: Some(Vec::new()),
            max_timestamp: -1,
            bytes_since_index: 0,
            created_at_ms: now_ms,
            index_flushed: 0,
            file_length: 0,
        });
        Ok(())
    }

    /// Undoes [`PartitionLog::roll`] after the append that caused it failed.
    fn undo_roll(&mut self) -> std::io::Result<()> {
        let new = self.segments.pop_active().ok_or_else(|| io::Error::other("no rolled segment to undo"))?;
        drop(new.files);
        // A leftover empty segment would later look like a gap: fail (and so
        // poison) rather than leave it.
        self.remove_segment_files(new.base_offset).map_err(|error| io::Error::other(error.to_string()))?;
        let segment = self.segments.active_mut();
        let base_offset = segment.base_offset;
        self.sealed_unsynced.retain(|&base| base != base_offset);
        segment.entries.get_or_insert_with(Vec::new).pop();
        let count = segment.entries().len();
        if segment.index_flushed > count {
            segment.index_flushed = count;
            let (offsets, times) = self.open_index(base_offset)?;
            index::truncate(&offsets, &times, count)?;
        }
        Ok(())
    }

    /// Whole stored batches starting with the one that holds `offset`, up to
    /// `max_bytes` (always at least one whole batch, so a reader can progress past
    /// a batch larger than its limit). Empty at the high watermark.
    pub fn read(&mut self, offset: u64, max_bytes: usize) -> Result<Vec<u8>, LogError> {
        self.read_bytes(offset, max_bytes, false).map(FileBytes::into_vec)
    }

    /// [`PartitionLog::read`], as a mapping of the segment when `map` is set
    /// and the read is at least [`MAP_READ_MIN_BYTES`].
    pub fn read_bytes(&mut self, offset: u64, max_bytes: usize, map: bool) -> Result<FileBytes, LogError> {
        let (earliest, latest) = (self.earliest_offset(), self.next_offset());
        if offset < earliest || offset > latest {
            return Err(LogError::OffsetOutOfRange { requested: offset, earliest, latest });
        }
        let mut at = self.segments.locate(offset);
        while at < self.segments.len() {
            self.ensure_loaded(at)?;
            let segment = self.segments.get(at).ok_or_else(|| missing_segment(at))?;
            let base_offset = segment.base_offset;
            let (bytes, position) = self.read_from_segment(segment, offset, max_bytes, map)?;
            if !bytes.is_empty() {
                return self.intact(base_offset, position, bytes);
            }
            // Nothing at or after `offset` in this segment: continue in the next.
            at += 1;
        }
        Ok(FileBytes::default())
    }

    /// Calls `visit` with the header of every batch in the last `tail_bytes` of
    /// the log (from a batch boundary at or before that point), oldest first.
    /// Only headers are looked at (read through [`HEADER_SCAN_WINDOW_BYTES`]
    /// windows, bodies skipped); used to rebuild idempotent-producer state after
    /// a restart.
    pub fn scan_batch_headers(&mut self, tail_bytes: u64, mut visit: impl FnMut(&BatchHeader)) -> Result<(), LogError> {
        // Where the last `tail_bytes` begin: a segment, and a batch boundary in
        // it at or before that point (an index entry's position).
        let (mut first_segment, mut first_position) = (0, 0u64);
        let mut remaining = tail_bytes;
        for at in (0..self.segments.len()).rev() {
            self.ensure_loaded(at)?;
            let segment = self.segments.get(at).ok_or_else(|| missing_segment(at))?;
            if segment.size >= remaining {
                let target = segment.size - remaining;
                first_segment = at;
                first_position = segment
                    .entries()
                    .iter()
                    .take_while(|entry| u64::from(entry.position) <= target)
                    .last()
                    .map_or(0, |entry| u64::from(entry.position));
                break;
            }
            remaining -= segment.size;
        }
        for at in first_segment..self.segments.len() {
            self.ensure_loaded(at)?;
            let segment = self.segments.get(at).ok_or_else(|| missing_segment(at))?;
            let log = segment.log().map_err(|e| LogError::io("reading a segment", e))?;
            let mut window: Vec<u8> = Vec::new();
            let mut window_start = 0u64;
            let mut position = if at == first_segment { first_position } else { 0 };
            while position + BATCH_HEADER_BYTES as u64 <= segment.size {
                if position + BATCH_HEADER_BYTES as u64 > window_start + window.len() as u64 || position < window_start
                {
                    let end = segment.size.min(position + HEADER_SCAN_WINDOW_BYTES);
                    window.resize((end - position) as usize, 0);
                    log.read_exact_at(&mut window, position).map_err(|e| LogError::io("reading a segment", e))?;
                    window_start = position;
                }
                let at_position = window.get((position - window_start) as usize..).unwrap_or_default();
                let header = BatchHeader::parse(at_position).map_err(corrupt)?;
                visit(&header);
                position += stored_size(&header)? as u64;
            }
        }
        self.close_synced_sealed();
        Ok(())
    }

    /// Also returns where in the segment file the bytes begin.
    fn read_from_segment(
        &self,
        segment: &Segment<S::File>,
        offset: u64,
        max_bytes: usize,
        map: bool,
    ) -> Result<(FileBytes, u64), LogError> {
        let start = index::floor_by_offset(segment.entries(), offset)
            .map_or(0, |entry| u64::from(entry.position).min(segment.size));
        let window_end =
            segment.size.min(start + max_bytes as u64 + READ_SLACK_BYTES + self.config.index_interval_bytes);
        let log = segment.log().map_err(|e| LogError::io("reading a segment", e))?;
        let window = read_exactly(log, start, (window_end - start) as usize, map)?;
        let mut cursor = 0usize;
        // Skip batches that end before `offset`.
        let mut first = None;
        while cursor + BATCH_HEADER_BYTES <= window.len() {
            let header = BatchHeader::parse(window.get(cursor..).unwrap_or_default()).map_err(corrupt)?;
            let size = stored_size(&header)?;
            if header.last_offset() >= offset as i64 {
                first = Some((cursor, size));
                break;
            }
            cursor += size;
        }
        let Some((first_at, first_size)) = first else {
            return if window_end == segment.size {
                Ok((FileBytes::default(), segment.size))
            } else {
                self.read_from_position(segment, start + cursor as u64, offset, max_bytes)
                    .map(|(bytes, position)| (FileBytes::Owned(bytes), position))
            };
        };
        if first_at + first_size > window.len() {
            // One batch larger than the window: read it on its own (a length
            // past the segment's end is damage, never a mapping beyond EOF).
            let position = start + first_at as u64;
            if position + first_size as u64 > segment.size {
                return Err(LogError::io(
                    "reading a segment",
                    io::Error::new(io::ErrorKind::UnexpectedEof, "a stored batch runs past the end of its segment"),
                ));
            }
            return Ok((read_exactly(log, position, first_size, map)?, position));
        }
        let end = whole_batches_end(&window, first_at, first_size, max_bytes)?;
        Ok((window.narrow(first_at..end), start + first_at as u64))
    }

    /// The whole batches at the start of `bytes` (read from `position` of the
    /// segment at `base_offset`) up to the first that fails the stored-batch
    /// checks (length, magic, CRC-32C, counts): damage at rest (bit rot, a
    /// torn sector of a closed segment) is never served as good. When the
    /// first batch itself is damaged the read fails with `Corrupt`; each
    /// damaged batch is logged once, naming the file, the byte and the offsets.
    fn intact(&mut self, base_offset: u64, position: u64, bytes: FileBytes) -> Result<FileBytes, LogError> {
        let mut cursor = 0;
        while cursor < bytes.len() {
            let rest = bytes.get(cursor..).unwrap_or_default();
            let checked = match batch::batch_size(rest) {
                Ok(Some(size)) if size <= rest.len() => {
                    Batch::validate_stored(rest.get(..size).unwrap_or_default()).map(|_| size)
                }
                Ok(_) => Err(batch::BatchError::Truncated { needed: BATCH_HEADER_BYTES, available: rest.len() }),
                Err(error) => Err(error),
            };
            match checked {
                Ok(size) => cursor += size,
                Err(error) => {
                    self.report_damage(base_offset, position + cursor as u64, rest, &error);
                    if cursor == 0 {
                        return Err(LogError::Corrupt(error));
                    }
                    break;
                }
            }
        }
        Ok(bytes.narrow(0..cursor))
    }

    fn report_damage(&mut self, base_offset: u64, position: u64, bytes: &[u8], error: &batch::BatchError) {
        if self.damage_reported.contains(&(base_offset, position)) {
            return;
        }
        if self.damage_reported.len() < DAMAGE_REPORTS_MAX {
            self.damage_reported.push((base_offset, position));
        }
        let offsets = match BatchHeader::parse(bytes) {
            Ok(header) => format!("offsets {} to {} by its header", header.base_offset, header.last_offset()),
            Err(_) => "offsets unknown".to_string(),
        };
        eprintln!(
            "ringmq: {}: the stored batch at byte {position} ({offsets}) failed its checks: {error}; \
             it is not served (reads from a later offset skip it)",
            segment_file(&self.dir, base_offset, "log").display()
        );
    }

    /// Continues a read whose batch lies past the first window (a sparse index
    /// over very small batches): walks headers from `position` one at a time.
    fn read_from_position(
        &self,
        segment: &Segment<S::File>,
        mut position: u64,
        offset: u64,
        max_bytes: usize,
    ) -> Result<(Vec<u8>, u64), LogError> {
        let log = segment.log().map_err(|e| LogError::io("reading a segment", e))?;
        let mut header_bytes = [0u8; BATCH_HEADER_BYTES];
        while position + BATCH_HEADER_BYTES as u64 <= segment.size {
            log.read_exact_at(&mut header_bytes, position).map_err(|e| LogError::io("reading a segment", e))?;
            let header = BatchHeader::parse(&header_bytes).map_err(corrupt)?;
            if header.last_offset() >= offset as i64 {
                return Ok((read_window_at(segment, position, max_bytes)?, position));
            }
            position += stored_size(&header)? as u64;
        }
        Ok((Vec::new(), position))
    }

    /// The first offset whose record timestamp is at or after `timestamp`, or
    /// `None` when every record is older (Kafka's ListOffsets by timestamp).
    pub fn offset_for_timestamp(&mut self, timestamp: i64) -> Result<Option<u64>, LogError> {
        for at in 0..self.segments.len() {
            self.ensure_loaded(at)?;
            let segment = self.segments.get(at).ok_or_else(|| missing_segment(at))?;
            if segment.max_timestamp < timestamp {
                continue;
            }
            let start = index::floor_by_timestamp(segment.entries(), timestamp).copied().unwrap_or(IndexEntry {
                offset: segment.base_offset,
                position: 0,
                timestamp_before: -1,
            });
            if let Some(found) = search_timestamp(segment, u64::from(start.position), timestamp)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Deletes whole sealed segments past the retention limits, oldest first; never
    /// the active segment. Reads below the new earliest offset then fail with
    /// [`LogError::OffsetOutOfRange`].
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<RetentionReport, LogError> {
        let mut report = RetentionReport::default();
        let sealed = self.segments.active_at();
        for at in 0..sealed {
            self.ensure_loaded(at)?;
        }
        let mut total_bytes: u64 = self.segments.iter().map(|segment| segment.size).sum();
        let mut delete = 0;
        while delete < sealed {
            let Some(segment) = self.segments.get(delete) else { break };
            let over_size = self.config.retention_bytes.is_some_and(|limit| total_bytes - segment.size >= limit);
            let too_old = self.config.retention_ms.is_some_and(|age| {
                segment.max_timestamp >= 0 && now_ms.saturating_sub(segment.max_timestamp) > age as i64
            });
            if !(over_size || too_old) {
                break;
            }
            total_bytes -= segment.size;
            report.bytes_deleted += segment.size;
            delete += 1;
        }
        // One segment at a time, oldest first: if a removal fails, the segments
        // not yet removed stay in the log (and the error is returned).
        for _ in 0..delete {
            let Some(oldest) = self.segments.sealed_mut().first_mut() else { break };
            let base_offset = oldest.base_offset;
            oldest.files = None;
            self.dir_dirty = true;
            self.remove_segment_files(base_offset)?;
            self.segments.remove_oldest_sealed();
            self.sealed_unsynced.retain(|&base| base != base_offset);
            report.segments_deleted += 1;
        }
        self.close_synced_sealed();
        report.earliest_offset = self.earliest_offset();
        Ok(report)
    }

    /// A waiter that resolves once every offset below `offset_end` is durable, or
    /// with the error that made that impossible.
    pub fn wait_durable(&mut self, offset_end: u64) -> oneshot::Receiver<Result<(), LogError>> {
        let (sender, receiver) = oneshot::channel();
        if let Some(cause) = &self.poisoned {
            let _ = sender.send(Err(LogError::Poisoned { cause: cause.clone() }));
        } else if offset_end <= self.durable_offset {
            let _ = sender.send(Ok(()));
        } else {
            self.waiters.push_back((offset_end, sender));
        }
        receiver
    }

    pub(crate) fn has_waiters(&self) -> bool {
        !self.waiters.is_empty()
    }

    pub fn needs_sync(&self) -> bool {
        self.dirty || self.dir_dirty || !self.sealed_unsynced.is_empty()
    }

    /// The fdatasyncs that make everything written so far durable, or `None`.
    pub(crate) fn take_sync_plan(&mut self) -> Option<SyncPlan> {
        if self.poisoned.is_some() || !self.needs_sync() {
            return None;
        }
        let mut sealed = std::mem::take(&mut self.sealed_unsynced);
        sealed.sort_unstable();
        let mut phases = Vec::new();
        for base in sealed {
            if let Some(at) = self.segments.position_of(base) {
                phases.push(self.segment_syncs(at));
            }
        }
        if std::mem::take(&mut self.dir_dirty) {
            phases.push(vec![self.storage.sync_dir(&self.dir)]);
        }
        self.dirty = false;
        let active_sync = match self.segments.active().log() {
            Ok(log) => log.sync_data(),
            Err(error) => Box::pin(async move { Err(error) }),
        };
        phases.push(vec![active_sync]);
        Some(SyncPlan { phases, target_offset: self.next_offset() })
    }

    /// The log and index syncs of one segment, opening its log for the purpose
    /// when it is not open (a sealed segment a crashed process left unsynced).
    fn segment_syncs(&mut self, at: usize) -> Vec<SyncFuture> {
        let Some(segment) = self.segments.get(at) else { return Vec::new() };
        let log_sync = match &segment.files {
            Some(files) => files.log.sync_data(),
            None => {
                let path = segment_file(&self.dir, segment.base_offset, "log");
                match self.storage.open(&path, OpenMode::Existing) {
                    Ok(log) => log.sync_data(),
                    Err(error) => Box::pin(async move { Err(error) }),
                }
            }
        };
        let mut syncs = vec![log_sync];
        syncs.extend(self.index_syncs(at));
        syncs
    }

    /// Everything, oldest segment first, then the directory (on close).
    fn full_sync_plan(&mut self) -> SyncPlan {
        let open: Vec<usize> =
            self.segments.iter().enumerate().filter(|(_, segment)| segment.files.is_some()).map(|(at, _)| at).collect();
        let mut phases: Vec<Vec<SyncFuture>> = open.into_iter().map(|at| self.segment_syncs(at)).collect();
        phases.push(vec![self.storage.sync_dir(&self.dir)]);
        SyncPlan { phases, target_offset: self.next_offset() }
    }

    /// A future that syncs every open file of the log and its directory; record
    /// its outcome with `complete_sync(next_offset, result)`. For shutdown.
    pub fn sync_everything(&mut self) -> impl std::future::Future<Output = io::Result<()>> + 'static {
        let poisoned = self.poisoned.clone();
        let plan = if poisoned.is_some() { None } else { Some(self.full_sync_plan()) };
        async move {
            match (plan, poisoned) {
                (Some(plan), _) => run_plan(plan).await,
                (None, Some(cause)) => Err(io::Error::new(cause.kind(), cause.to_string())),
                (None, None) => Ok(()),
            }
        }
    }

    /// Records the outcome of a flush round. A failure poisons the partition: the
    /// error is kept and returned to every waiter and every later append.
    pub(crate) fn complete_sync(&mut self, target_offset: u64, result: io::Result<()>) {
        if self.poisoned.is_some() {
            // A sync after a failed one proves nothing (the error was consumed).
            return;
        }
        match result {
            Ok(()) => {
                self.durable_offset = self.durable_offset.max(target_offset);
                self.close_synced_sealed();
                while self.waiters.front().is_some_and(|(offset_end, _)| *offset_end <= self.durable_offset) {
                    if let Some((_, sender)) = self.waiters.pop_front() {
                        let _ = sender.send(Ok(()));
                    }
                }
            }
            Err(error) => self.poison(Arc::new(error)),
        }
    }

    /// Syncs everything and closes the files. Nothing is left to truncate on the
    /// next open.
    pub async fn close(mut self) -> Result<(), LogError> {
        if let Some(cause) = &self.poisoned {
            return Err(LogError::Poisoned { cause: cause.clone() });
        }
        let plan = self.full_sync_plan();
        let target = plan.target_offset;
        let result = run_plan(plan).await;
        self.complete_sync(target, result.map_err(|e| io::Error::new(e.kind(), e.to_string())));
        match &self.poisoned {
            Some(cause) => Err(LogError::Poisoned { cause: cause.clone() }),
            None => Ok(()),
        }
    }
}

/// Removes a segment's files. The .log goes first: once it is gone the segment no
/// longer exists, and an interrupted pass leaves only orphan indexes, removed on open.
/// Where the whole batches of `window` that start at `first_at` end: the first
/// batch (of `first_size` bytes, already known to fit) always, then every
/// following batch that fits in the window and within `max_bytes` of `first_at`.
fn whole_batches_end(window: &[u8], first_at: usize, first_size: usize, max_bytes: usize) -> Result<usize, LogError> {
    let mut end = first_at + first_size;
    while end + BATCH_HEADER_BYTES <= window.len() {
        let size = stored_size(&BatchHeader::parse(window.get(end..).unwrap_or_default()).map_err(corrupt)?)?;
        if end + size > window.len() || end + size - first_at > max_bytes {
            break;
        }
        end += size;
    }
    Ok(end)
}

/// Whole batches from `position` (a batch boundary) up to `max_bytes`.
/// `len` bytes at `position`: mapped when `map` is set, the read is large
/// enough and the storage maps; read into a buffer otherwise.
fn read_exactly<F: StorageFile>(log: &F, position: u64, len: usize, map: bool) -> Result<FileBytes, LogError> {
    if map && len >= MAP_READ_MIN_BYTES {
        match log.map(position, len) {
            Ok(Some(mapping)) => return Ok(FileBytes::Mapped(mapping)),
            Ok(None) => {}
            // Out of address space or mappings: the copy still works.
            Err(error) => {
                static REPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
                if !REPORTED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    eprintln!("ringmq: mapping a segment failed ({error}); reading into buffers instead");
                }
            }
        }
    }
    let mut bytes = vec![0u8; len];
    log.read_exact_at(&mut bytes, position).map_err(|e| LogError::io("reading a segment", e))?;
    Ok(FileBytes::Owned(bytes))
}

fn read_window_at<F: StorageFile>(segment: &Segment<F>, position: u64, max_bytes: usize) -> Result<Vec<u8>, LogError> {
    let log = segment.log().map_err(|e| LogError::io("reading a segment", e))?;
    let window_end = segment.size.min(position + (max_bytes as u64).max(BATCH_HEADER_BYTES as u64));
    let mut window = vec![0u8; (window_end - position) as usize];
    log.read_exact_at(&mut window, position).map_err(|e| LogError::io("reading a segment", e))?;
    let first_size = stored_size(&BatchHeader::parse(&window).map_err(corrupt)?)?;
    if first_size > window.len() {
        let mut batch = vec![0u8; first_size];
        log.read_exact_at(&mut batch, position).map_err(|e| LogError::io("reading a segment", e))?;
        return Ok(batch);
    }
    let end = whole_batches_end(&window, 0, first_size, max_bytes)?;
    window.truncate(end);
    Ok(window)
}

/// The first offset in `segment` from `position` whose timestamp is at or after `timestamp`.
fn search_timestamp<F: StorageFile>(
    segment: &Segment<F>,
    mut position: u64,
    timestamp: i64,
) -> Result<Option<u64>, LogError> {
    let log = segment.log().map_err(|e| LogError::io("reading a segment", e))?;
    let mut header_bytes = [0u8; BATCH_HEADER_BYTES];
    while position + BATCH_HEADER_BYTES as u64 <= segment.size {
        log.read_exact_at(&mut header_bytes, position).map_err(|e| LogError::io("reading a segment", e))?;
        let header = BatchHeader::parse(&header_bytes).map_err(corrupt)?;
        if header.max_timestamp >= timestamp {
            let mut bytes = vec![0u8; stored_size(&header)?];
            log.read_exact_at(&mut bytes, position).map_err(|e| LogError::io("reading a segment", e))?;
            let batch = Batch::validate(&bytes).map_err(corrupt)?;
            let section = batch.records_section().map_err(corrupt)?;
            for record in batch.records_in(&section) {
                let record = record.map_err(corrupt)?;
                if record.timestamp >= timestamp {
                    return Ok(Some(record.offset as u64));
                }
            }
        }
        position += stored_size(&header)? as u64;
    }
    Ok(None)
}

fn remove_files<S: Storage>(storage: &S, dir: &Path, base_offset: u64) -> Result<(), LogError> {
    for extension in ["log", "idx", "tix"] {
        match storage.remove_file(&segment_file(dir, base_offset, extension)) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(LogError::io("removing a segment file", error)),
        }
    }
    Ok(())
}

/// Whether every byte of `log` from `position` to `end` is zero.
fn is_zero_tail<F: StorageFile>(log: &F, mut position: u64, end: u64) -> io::Result<bool> {
    let mut window = vec![0u8; HEADER_SCAN_WINDOW_BYTES as usize];
    while position < end {
        let length = (end - position).min(HEADER_SCAN_WINDOW_BYTES) as usize;
        let chunk = window.get_mut(..length).unwrap_or_default();
        log.read_exact_at(chunk, position)?;
        if chunk.iter().any(|&byte| byte != 0) {
            return Ok(false);
        }
        position += length as u64;
    }
    Ok(true)
}

fn read_base_offset_at<F: StorageFile>(log: &F, position: u32) -> io::Result<Option<u64>> {
    let mut prefix = [0u8; 8];
    match log.read_exact_at(&mut prefix, u64::from(position)) {
        Ok(()) => Ok(u64::try_from(i64::from_be_bytes(prefix)).ok()),
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(error) => Err(error),
    }
}

/// The size of a stored batch from its header, checked before it sizes a
/// read, an allocation or a step: at least a header, at most
/// [`crate::batch::BATCH_BYTES_MAX`] (what an append accepts). A length from
/// disk outside that is a corrupt batch, never a 2 GiB buffer or a step of 0.
fn stored_size(header: &BatchHeader) -> Result<usize, LogError> {
    let size = header.size_bytes();
    if size > crate::batch::BATCH_BYTES_MAX {
        return Err(corrupt(crate::batch::BatchError::TooLarge { size, max: crate::batch::BATCH_BYTES_MAX }));
    }
    if size < BATCH_HEADER_BYTES {
        let declared = i64::from(header.batch_length);
        return Err(corrupt(crate::batch::BatchError::LengthMismatch { declared, actual: size }));
    }
    Ok(size)
}

fn corrupt(error: crate::batch::BatchError) -> LogError {
    LogError::Corrupt(error)
}

/// Runs both phases of a plan: every future of a phase is polled together, so
/// their fdatasyncs go to io_uring in one submission.
pub(crate) async fn run_plan(plan: SyncPlan) -> io::Result<()> {
    for phase in plan.phases {
        first_error(futures_util::future::join_all(phase).await)?;
    }
    Ok(())
}

fn first_error(results: Vec<io::Result<()>>) -> io::Result<()> {
    results.into_iter().collect()
}
