//! The sparse indexes of one segment, kept in lockstep.
//!
//! ```text
//! NNNNNNNNNNNNNNNNNNNN.idx   offset index, 12 bytes an entry, big-endian:
//!     0  relative_offset u32   offset - segment base offset
//!     4  position        u32   byte position of the batch in the .log
//!     8  crc             u32   CRC-32 (crc32fast) of bytes 0..8
//!
//! NNNNNNNNNNNNNNNNNNNN.tix   time index, 16 bytes an entry, big-endian:
//!     0  timestamp       i64   largest record timestamp *before* this offset
//!                              in the segment (-1 when none)
//!     8  relative_offset u32
//!    12  crc             u32   CRC-32 of bytes 0..12
//! ```
//!
//! Entry `i` of both files describes the same batch boundary. An entry is written
//! for the first batch of a segment and then whenever `index_interval_bytes` have
//! been appended since the last one. When a segment is sealed a final pair is
//! written for its end (`relative_offset` = records in the segment, `position` =
//! file size, `timestamp` = the segment's largest timestamp): recovery reads that
//! seal to know a segment ended cleanly without scanning it.
//!
//! Neither file is fdatasync'ed on the durable path: both are rebuilt from the log
//! when they are missing or fail their checks, so a lost or torn entry costs a
//! scan, never data.

use crate::io::StorageFile;
use std::io;

pub const OFFSET_ENTRY_BYTES: usize = 12;
pub const TIME_ENTRY_BYTES: usize = 16;
/// Entries an index file may hold: a 4 GiB segment indexed every 512 bytes.
/// Loading refuses larger files instead of allocating for them.
pub const INDEX_ENTRIES_MAX: usize = (u32::MAX as usize + 1) / 512;

/// One batch boundary of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Absolute offset of the first record of the batch at `position`.
    pub offset: u64,
    /// Byte position in the segment's .log.
    pub position: u32,
    /// Largest record timestamp in the segment before `offset` (-1 when none).
    pub timestamp_before: i64,
}

impl IndexEntry {
    pub fn encode_offset(&self, base_offset: u64) -> [u8; OFFSET_ENTRY_BYTES] {
        let relative = (self.offset - base_offset) as u32;
        let mut out = [0u8; OFFSET_ENTRY_BYTES];
        out[0..4].copy_from_slice(&relative.to_be_bytes());
        out[4..8].copy_from_slice(&self.position.to_be_bytes());
        let crc = crc32fast::hash(&out[0..8]);
        out[8..12].copy_from_slice(&crc.to_be_bytes());
        out
    }

    pub fn encode_time(&self, base_offset: u64) -> [u8; TIME_ENTRY_BYTES] {
        let relative = (self.offset - base_offset) as u32;
        let mut out = [0u8; TIME_ENTRY_BYTES];
        out[0..8].copy_from_slice(&self.timestamp_before.to_be_bytes());
        out[8..12].copy_from_slice(&relative.to_be_bytes());
        let crc = crc32fast::hash(&out[0..12]);
        out[12..16].copy_from_slice(&crc.to_be_bytes());
        out
    }
}

fn be_u32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(0..4)?.try_into().ok()?))
}

fn be_i64(bytes: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(bytes.get(0..8)?.try_into().ok()?))
}

/// Decodes one offset-index entry: `(offset, position)` when its CRC holds.
pub fn decode_offset_entry(entry: &[u8], base_offset: u64) -> Option<(u64, u32)> {
    let relative = be_u32(entry)?;
    let position = be_u32(entry.get(4..)?)?;
    let crc = be_u32(entry.get(8..)?)?;
    (crc32fast::hash(entry.get(0..8)?) == crc).then_some((base_offset + u64::from(relative), position))
}

/// Reads a whole index file, refusing sizes beyond what a segment can need.
fn read_index_file<F: StorageFile>(file: &F, entry_bytes: usize) -> io::Result<Vec<u8>> {
    let length = file.len()?;
    let limit = (INDEX_ENTRIES_MAX * entry_bytes) as u64;
    let length = length.min(limit) as usize;
    let mut bytes = vec![0u8; length];
    file.read_exact_at(&mut bytes, 0)?;
    Ok(bytes)
}

/// What loading found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedIndex {
    pub entries: Vec<IndexEntry>,
    /// False when either file held bytes past the valid entries (torn, corrupt,
    /// or out of step): the caller rewrites the files from `entries`.
    pub clean: bool,
}

/// Loads both index files and keeps the longest prefix of entry pairs that pass
/// every check: CRCs, offsets strictly increasing, positions increasing and within
/// `log_length`, timestamps non-decreasing, the two files agreeing on offsets.
pub fn load<F: StorageFile>(
    offset_file: &F,
    time_file: &F,
    base_offset: u64,
    log_length: u64,
) -> io::Result<LoadedIndex> {
    let offset_bytes = read_index_file(offset_file, OFFSET_ENTRY_BYTES)?;
    let time_bytes = read_index_file(time_file, TIME_ENTRY_BYTES)?;
    let mut entries = Vec::with_capacity(offset_bytes.len() / OFFSET_ENTRY_BYTES);
    let pairs = offset_bytes.chunks_exact(OFFSET_ENTRY_BYTES).zip(time_bytes.chunks_exact(TIME_ENTRY_BYTES));
    for (offset_entry, time_entry) in pairs {
        match decode_pair(offset_entry, time_entry, base_offset, log_length, entries.last()) {
            Some(entry) => entries.push(entry),
            None => break,
        }
    }
    let clean = offset_bytes.len() == entries.len() * OFFSET_ENTRY_BYTES
        && time_bytes.len() == entries.len() * TIME_ENTRY_BYTES;
    Ok(LoadedIndex { entries, clean })
}

fn decode_pair(
    offset_entry: &[u8],
    time_entry: &[u8],
    base_offset: u64,
    log_length: u64,
    previous: Option<&IndexEntry>,
) -> Option<IndexEntry> {
    let relative = be_u32(offset_entry)?;
    let position = be_u32(offset_entry.get(4..)?)?;
    let crc = be_u32(offset_entry.get(8..)?)?;
    if crc32fast::hash(offset_entry.get(0..8)?) != crc {
        return None;
    }
    let timestamp_before = be_i64(time_entry)?;
    let time_relative = be_u32(time_entry.get(8..)?)?;
    let time_crc = be_u32(time_entry.get(12..)?)?;
    if crc32fast::hash(time_entry.get(0..12)?) != time_crc || time_relative != relative {
        return None;
    }
    let entry = IndexEntry { offset: base_offset + u64::from(relative), position, timestamp_before };
    if u64::from(position) > log_length {
        return None;
    }
    if let Some(previous) = previous {
        let ordered = entry.offset > previous.offset
            && entry.position > previous.position
            && entry.timestamp_before >= previous.timestamp_before;
        if !ordered {
            return None;
        }
    } else if entry.offset != base_offset || entry.position != 0 {
        return None;
    }
    Some(entry)
}

/// Writes `entries` into both files starting at entry number `first`.
pub fn write_at<F: StorageFile>(
    offset_file: &F,
    time_file: &F,
    base_offset: u64,
    first: usize,
    entries: &[IndexEntry],
) -> io::Result<()> {
    let mut offsets = Vec::with_capacity(entries.len() * OFFSET_ENTRY_BYTES);
    let mut times = Vec::with_capacity(entries.len() * TIME_ENTRY_BYTES);
    for entry in entries {
        offsets.extend_from_slice(&entry.encode_offset(base_offset));
        times.extend_from_slice(&entry.encode_time(base_offset));
    }
    offset_file.write_all_at(&offsets, (first * OFFSET_ENTRY_BYTES) as u64)?;
    time_file.write_all_at(&times, (first * TIME_ENTRY_BYTES) as u64)
}

/// Makes both files hold exactly `entries`.
pub fn rewrite<F: StorageFile>(
    offset_file: &F,
    time_file: &F,
    base_offset: u64,
    entries: &[IndexEntry],
) -> io::Result<()> {
    offset_file.truncate(0)?;
    time_file.truncate(0)?;
    write_at(offset_file, time_file, base_offset, 0, entries)
}

/// Truncates both files to their first `count` entries.
pub fn truncate<F: StorageFile>(offset_file: &F, time_file: &F, count: usize) -> io::Result<()> {
    offset_file.truncate((count * OFFSET_ENTRY_BYTES) as u64)?;
    time_file.truncate((count * TIME_ENTRY_BYTES) as u64)
}

/// The last entry at or before `offset`.
pub fn floor_by_offset(entries: &[IndexEntry], offset: u64) -> Option<&IndexEntry> {
    let after = entries.partition_point(|entry| entry.offset <= offset);
    after.checked_sub(1).and_then(|index| entries.get(index))
}

/// The last entry whose `timestamp_before` is below `timestamp`: no record before
/// it can have a timestamp at or above `timestamp`, so a search may start there.
pub fn floor_by_timestamp(entries: &[IndexEntry], timestamp: i64) -> Option<&IndexEntry> {
    let after = entries.partition_point(|entry| entry.timestamp_before < timestamp);
    after.checked_sub(1).and_then(|index| entries.get(index))
}
