//! A small append-only file of checksummed records, compacted by rewriting:
//! where group state (committed offsets, share-group acknowledgements, producer
//! ids) is kept.
//!
//! ```text
//! record: length u32 | crc32 u32 (CRC-32 of payload, crc32fast) | payload
//! ```
//!
//! Opening reads every record and cuts the file at the first one whose length or
//! checksum fails (a torn tail after a crash). An append writes its records at
//! the end and then fdatasyncs; its caller answers only after that. A failed
//! fdatasync poisons the log for good (the page cache may have dropped the
//! bytes; retrying would hide that). Compaction writes the live records to
//! `NAME.tmp`, syncs it, renames it over `NAME` and syncs the directory.

use crate::io::{OpenMode, Storage, StorageFile};
use std::io;
use std::path::{Path, PathBuf};

/// Largest payload of one record.
pub const STATE_RECORD_BYTES_MAX: usize = 64 * 1024;
/// Largest state file read on open (a compacted file stays far below it).
pub const STATE_LOG_BYTES_MAX: u64 = 1 << 30;
/// Compaction runs when the file is larger than this and than twice its live bytes.
pub const STATE_LOG_COMPACT_MIN_BYTES: u64 = 1 << 20;
/// Bytes of the record header.
pub const STATE_RECORD_HEADER_BYTES: usize = 8;

/// Appends one framed record to `out`. Payloads over the limit are refused.
pub fn frame_record(out: &mut Vec<u8>, payload: &[u8]) -> io::Result<()> {
    if payload.len() > STATE_RECORD_BYTES_MAX {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "state record over its size limit"));
    }
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// What a state file holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ParsedRecords<'a> {
    /// The payloads of the valid records, oldest first.
    pub records: Vec<&'a [u8]>,
    /// Where the last valid record ends: what follows is a torn tail (a crash
    /// during an append), cut off on open.
    pub end: usize,
    /// Byte positions of damaged records that valid records follow (damage at
    /// rest, not a torn tail): skipped, and reported by [`StateLog::open`].
    pub damaged: Vec<usize>,
}

/// The valid record at `position`, if one starts there.
fn record_at(bytes: &[u8], position: usize) -> Option<&[u8]> {
    let header = bytes.get(position..position.checked_add(STATE_RECORD_HEADER_BYTES)?)?;
    let (length, crc) = header.split_at(4);
    let length = u32::from_be_bytes(length.try_into().ok()?) as usize;
    if length > STATE_RECORD_BYTES_MAX {
        return None;
    }
    let start = position + STATE_RECORD_HEADER_BYTES;
    let payload = bytes.get(start..start + length)?;
    (crc32fast::hash(payload) == u32::from_be_bytes(crc.try_into().ok()?)).then_some(payload)
}

/// The next valid record after damage at `position`: it starts within one
/// largest record, and is not empty (zeroed bytes read as empty records).
fn resync(bytes: &[u8], position: usize) -> Option<usize> {
    let last = position.saturating_add(STATE_RECORD_HEADER_BYTES + STATE_RECORD_BYTES_MAX).min(bytes.len());
    (position + 1..last).find(|&candidate| record_at(bytes, candidate).is_some_and(|payload| !payload.is_empty()))
}

/// Splits `bytes` into valid record payloads. A record that fails its length
/// or checksum ends the file (a torn tail) unless a valid record follows it
/// within one largest record, in which case it is damage at rest: skipped,
/// its position kept, and the records after it still read.
pub fn parse_records(bytes: &[u8]) -> ParsedRecords<'_> {
    let mut parsed = ParsedRecords::default();
    let mut position = 0;
    while position < bytes.len() {
        if let Some(payload) = record_at(bytes, position) {
            parsed.records.push(payload);
            position += STATE_RECORD_HEADER_BYTES + payload.len();
            parsed.end = position;
            continue;
        }
        match resync(bytes, position) {
            Some(next) => {
                parsed.damaged.push(position);
                position = next;
            }
            None => break,
        }
    }
    parsed
}

pub struct StateLog<S: Storage> {
    storage: S,
    path: PathBuf,
    file: S::File,
    length: u64,
    poisoned: Option<String>,
    /// Its directory entries are not yet known durable: true at every open
    /// (a file created before a crash may have an entry that never was).
    fresh: bool,
}

impl<S: Storage> StateLog<S> {
    /// Opens (creating) `path`, returns the log and the payloads of its valid
    /// records, oldest first. A damaged tail is cut off.
    pub fn open(storage: S, path: &Path) -> io::Result<(StateLog<S>, Vec<Vec<u8>>)> {
        if let Some(parent) = path.parent() {
            storage.create_dir_all(parent)?;
        }
        // A compaction that stopped before its rename leaves a stale temporary.
        let _ = storage.remove_file(&temporary(path));
        let file = storage.open(path, OpenMode::CreateOrOpen)?;
        let length = file.len()?;
        if length > STATE_LOG_BYTES_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is {length} bytes, over the {STATE_LOG_BYTES_MAX}-byte limit", path.display()),
            ));
        }
        let mut bytes = vec![0u8; length as usize];
        file.read_exact_at(&mut bytes, 0)?;
        let parsed = parse_records(&bytes);
        for position in &parsed.damaged {
            eprintln!(
                "ringmq: {}: the record at byte {position} failed its checksum (damage at rest); \
                 skipped, the records after it are kept",
                path.display()
            );
        }
        let records: Vec<Vec<u8>> = parsed.records.into_iter().map(<[u8]>::to_vec).collect();
        let valid = parsed.end;
        if valid as u64 != length {
            eprintln!(
                "ringmq: {}: cut {} bytes after byte {valid} that hold no whole record (a torn tail)",
                path.display(),
                length - valid as u64
            );
            file.truncate(valid as u64)?;
        }
        let log =
            StateLog { storage, path: path.to_path_buf(), file, length: valid as u64, poisoned: None, fresh: true };
        Ok((log, records))
    }

    pub fn len(&self) -> u64 {
        self.length
    }

    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    fn check(&self) -> io::Result<()> {
        match &self.poisoned {
            Some(reason) => Err(io::Error::other(format!("{} refuses writes: {reason}", self.path.display()))),
            None => Ok(()),
        }
    }

    /// Writes framed records (see [`frame_record`]) at the end. A write that
    /// fails is cut back, so the file never keeps half of it.
    pub fn write(&mut self, framed: &[u8]) -> io::Result<()> {
        self.check()?;
        if let Err(error) = self.file.write_all_at(framed, self.length) {
            if self.file.truncate(self.length).is_err() {
                self.poisoned = Some(format!("a failed write could not be undone: {error}"));
            }
            return Err(error);
        }
        self.length += framed.len() as u64;
        Ok(())
    }

    /// fdatasync of everything written so far. A failure poisons the log.
    pub fn sync(&self) -> crate::io::SyncFuture {
        if let Err(error) = self.check() {
            return Box::pin(async move { Err(error) });
        }
        self.file.sync_data()
    }

    /// Once per open: fsyncs the file's directory and the `levels - 1`
    /// directories above it (those the open may have created), so the file's
    /// name survives a power loss.
    pub async fn make_entry_durable(&mut self, levels: usize) -> io::Result<()> {
        if !self.fresh {
            return Ok(());
        }
        let mut directory = self.path.parent();
        for _ in 0..levels {
            let Some(path) = directory else { break };
            self.storage.sync_dir(path).await?;
            directory = path.parent();
        }
        self.fresh = false;
        Ok(())
    }

    /// Records that a sync failed: the log takes no more writes.
    pub fn poison(&mut self, error: &io::Error) {
        self.poisoned.get_or_insert_with(|| format!("fdatasync failed: {error}"));
    }

    /// Whether the file has grown enough past `live_bytes` to be rewritten.
    pub fn wants_compaction(&self, live_bytes: u64) -> bool {
        self.length > STATE_LOG_COMPACT_MIN_BYTES && self.length > live_bytes.saturating_mul(2)
    }

    /// Replaces the file with `framed` (the live records), durably.
    pub async fn rewrite(&mut self, framed: &[u8]) -> io::Result<()> {
        self.check()?;
        let temporary = temporary(&self.path);
        let file = self.storage.open(&temporary, OpenMode::CreateOrOpen)?;
        file.truncate(0)?;
        file.write_all_at(framed, 0)?;
        file.sync_data().await?;
        self.storage.rename(&temporary, &self.path)?;
        let directory = self.path.parent().unwrap_or(Path::new("."));
        if let Err(error) = self.storage.sync_dir(directory).await {
            self.poisoned = Some(format!("syncing the directory after compaction failed: {error}"));
            return Err(error);
        }
        self.file = file;
        self.length = framed.len() as u64;
        Ok(())
    }
}

fn temporary(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::SimStorage;

    #[test]
    fn records_survive_reopen_and_a_torn_tail_is_cut() {
        crate::io::block_on(async {
            let storage = SimStorage::new();
            let path = Path::new("/d/g/offsets.log");
            let (mut log, records) = StateLog::open(storage.clone(), path).unwrap();
            assert!(records.is_empty());
            let mut framed = Vec::new();
            frame_record(&mut framed, b"one").unwrap();
            frame_record(&mut framed, b"two").unwrap();
            log.write(&framed).unwrap();
            log.sync().await.unwrap();
            let mut torn = Vec::new();
            frame_record(&mut torn, b"three").unwrap();
            log.write(&torn[..torn.len() - 1]).unwrap();
            drop(log);
            let (log, records) = StateLog::open(storage.clone(), path).unwrap();
            assert_eq!(records, vec![b"one".to_vec(), b"two".to_vec()]);
            assert_eq!(log.len(), framed.len() as u64);
        })
        .unwrap();
    }

    #[test]
    fn a_flipped_bit_skips_its_record_and_rewrite_replaces_the_file() {
        crate::io::block_on(async {
            let storage = SimStorage::new();
            let path = Path::new("/d/g/offsets.log");
            let (mut log, _) = StateLog::open(storage.clone(), path).unwrap();
            let mut framed = Vec::new();
            for payload in [&b"a"[..], b"b", b"c"] {
                frame_record(&mut framed, payload).unwrap();
            }
            log.write(&framed).unwrap();
            log.sync().await.unwrap();
            storage.corrupt(path, STATE_RECORD_HEADER_BYTES + 1 + STATE_RECORD_HEADER_BYTES, b"X").unwrap();
            drop(log);
            let (mut log, records) = StateLog::open(storage.clone(), path).unwrap();
            assert_eq!(records, vec![b"a".to_vec(), b"c".to_vec()], "damage in the middle skips one record");
            let mut live = Vec::new();
            frame_record(&mut live, b"z").unwrap();
            log.rewrite(&live).await.unwrap();
            log.write(&live).unwrap();
            log.sync().await.unwrap();
            drop(log);
            let (_, records) = StateLog::open(storage, path).unwrap();
            assert_eq!(records, vec![b"z".to_vec(), b"z".to_vec()]);
        })
        .unwrap();
    }

    #[test]
    fn a_failed_sync_poisons_the_log() {
        crate::io::block_on(async {
            let storage = SimStorage::new();
            let path = Path::new("/d/g/offsets.log");
            let (mut log, _) = StateLog::open(storage.clone(), path).unwrap();
            let mut framed = Vec::new();
            frame_record(&mut framed, b"a").unwrap();
            log.write(&framed).unwrap();
            storage.set_faults(crate::io::SimFaults { fail_syncs: true, ..Default::default() });
            let error = log.sync().await.unwrap_err();
            log.poison(&error);
            storage.set_faults(Default::default());
            assert!(log.write(&framed).is_err());
            assert!(log.sync().await.is_err());
        })
        .unwrap();
    }

    #[test]
    fn damage_is_told_from_a_torn_tail_and_zeroed_bytes_are_no_records() {
        let mut bytes = Vec::new();
        for payload in [&b"first"[..], b"second", b"third"] {
            frame_record(&mut bytes, payload).unwrap();
        }
        let second = STATE_RECORD_HEADER_BYTES + 5;
        let mut damaged_length = bytes.clone();
        damaged_length[second] ^= 0x40; // the length of "second": no longer fits
        let parsed = parse_records(&damaged_length);
        assert_eq!(parsed.records, [&b"first"[..], b"third"]);
        assert_eq!((parsed.damaged, parsed.end), (vec![second], bytes.len()));
        // A torn last record: nothing valid follows, so it is cut, not skipped.
        let torn = &bytes[..bytes.len() - 2];
        let parsed = parse_records(torn);
        assert_eq!((parsed.records.len(), parsed.damaged.len(), parsed.end), (2, 0, second + 8 + 6));
        // Zeroed bytes after damage are not taken for records to resync on.
        let mut zeroed = bytes[..second].to_vec();
        zeroed.extend_from_slice(&[0xff; 3]);
        zeroed.extend_from_slice(&[0; 64]);
        let parsed = parse_records(&zeroed);
        assert_eq!((parsed.records.len(), parsed.damaged.len(), parsed.end), (1, 0, second));
    }

    #[test]
    fn parsing_arbitrary_bytes_never_panics() {
        let mut seed = 7u64;
        for length in 0..400 {
            let bytes: Vec<u8> = (0..length)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (seed >> 56) as u8
                })
                .collect();
            let parsed = parse_records(&bytes);
            assert!(parsed.end <= bytes.len());
        }
    }
}
