//! Guards recovery on real files: a torn or garbage tail is cut back to the last
//! whole batch (and nothing before it is lost), deleted or damaged indexes are
//! rebuilt from the log, and opening a log with sealed segments does not read them.

mod common;

use common::{batch_of, decode_all};
use ringmq::io::{FileStorage, Runtime};
use ringmq::log::{LogConfig, PartitionLog};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringmq-test-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

/// Small segments whose files end at their last batch (no zeros written
/// ahead), so these tests can damage a tail by appending to the file.
fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        segment_ms: None,
        index_interval_bytes: 512,
        zero_ahead_bytes: 0,
        ..LogConfig::default()
    }
}

fn values(from: usize, count: usize) -> Vec<Vec<u8>> {
    (from..from + count).map(|i| format!("value-{i:06}-{}", "p".repeat(i % 90)).into_bytes()).collect()
}

/// Appends 60 batches of 3 records and closes; returns the log's directory.
fn fill(runtime: &Runtime, dir: &Path) -> u64 {
    runtime.block_on(async {
        let mut log = PartitionLog::open(FileStorage::new(), dir, small_segments()).await.unwrap();
        for i in 0..60 {
            log.append(&mut batch_of(&values(i * 3, 3), 1_000 + i as i64)).unwrap();
        }
        let next = log.next_offset();
        log.close().await.unwrap();
        next
    })
}

fn segment_files(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

fn read_everything(log: &mut PartitionLog<FileStorage>) -> Vec<Vec<u8>> {
    let mut offset = log.earliest_offset();
    let mut out = Vec::new();
    while offset < log.next_offset() {
        for record in decode_all(&log.read(offset, 1 << 20).unwrap()) {
            if record.offset >= offset {
                assert_eq!(record.offset, offset);
                out.push(record.value);
                offset += 1;
            }
        }
    }
    out
}

#[test]
fn garbage_and_half_written_batches_at_the_tail_are_truncated() {
    let runtime = Runtime::new().unwrap();
    for (case, tail) in [
        ("garbage", vec![0xAB; 1000]),
        ("half", {
            let batch = batch_of(&values(1000, 4), 5);
            batch[..batch.len() / 2].to_vec()
        }),
        ("header-only", batch_of(&values(2000, 1), 5)[..30].to_vec()),
    ] {
        let dir = temp_dir(&format!("tail-{case}"));
        let next = fill(&runtime, &dir);
        let last = segment_files(&dir, "log").pop().unwrap();
        let length_before = fs::metadata(&last).unwrap().len();
        OpenOptions::new().append(true).open(&last).unwrap().write_all(&tail).unwrap();
        runtime.block_on(async {
            let mut log = PartitionLog::open(FileStorage::new(), &dir, small_segments()).await.unwrap();
            assert_eq!(log.next_offset(), next, "{case}: records lost or invented");
            assert_eq!(log.recovery_report().truncated_bytes, tail.len() as u64, "{case}");
            assert_eq!(fs::metadata(&last).unwrap().len(), length_before, "{case}: the tail is still in the file");
            assert_eq!(read_everything(&mut log), values(0, 180), "{case}");
            // Appends continue densely after the cut.
            let info = log.append(&mut batch_of(&values(180, 2), 9)).unwrap();
            assert_eq!(info.base_offset, next);
            log.close().await.unwrap();
        });
        fs::remove_dir_all(&dir).unwrap();
    }
}

/// Zeros after the last batch (blocks a crash left unwritten, or the window
/// written ahead of appends) hold no batch: nothing is reported cut, and the
/// next append overwrites them.
#[test]
fn a_zero_tail_is_not_a_cut_and_appends_overwrite_it() {
    let runtime = Runtime::new().unwrap();
    let dir = temp_dir("tail-zeros");
    let next = fill(&runtime, &dir);
    let last = segment_files(&dir, "log").pop().unwrap();
    let length_before = fs::metadata(&last).unwrap().len();
    OpenOptions::new().append(true).open(&last).unwrap().write_all(&[0; 4096]).unwrap();
    runtime.block_on(async {
        let mut log = PartitionLog::open(FileStorage::new(), &dir, small_segments()).await.unwrap();
        assert_eq!(log.next_offset(), next, "records lost or invented");
        assert_eq!(log.recovery_report().truncated_bytes, 0);
        assert_eq!(read_everything(&mut log), values(0, 180));
        let info = log.append(&mut batch_of(&values(180, 2), 9)).unwrap();
        assert_eq!(info.base_offset, next);
        log.close().await.unwrap();
    });
    assert_eq!(fs::metadata(&last).unwrap().len(), length_before + 4096, "the append went into the zeros");
    runtime.block_on(async {
        let log = PartitionLog::open(FileStorage::new(), &dir, small_segments()).await.unwrap();
        assert_eq!(log.next_offset(), next + 2);
    });
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_corrupt_batch_in_the_middle_of_the_active_segment_cuts_from_there() {
    let runtime = Runtime::new().unwrap();
    let dir = temp_dir("middle");
    fill(&runtime, &dir);
    let last = segment_files(&dir, "log").pop().unwrap();
    let mut bytes = fs::read(&last).unwrap();
    let first_size = ringmq::batch::batch_size(&bytes).unwrap().unwrap();
    let flip = first_size + 70; // inside the second batch's records
    bytes[flip] ^= 0xFF;
    fs::write(&last, &bytes).unwrap();
    // Remove the indexes so recovery scans the whole segment from its start.
    for path in segment_files(&dir, "idx").into_iter().chain(segment_files(&dir, "tix")) {
        if path.file_stem() == last.file_stem() {
            fs::remove_file(path).unwrap();
        }
    }
    runtime.block_on(async {
        let log = PartitionLog::open(FileStorage::new(), &dir, small_segments()).await.unwrap();
        assert_eq!(log.recovery_report().truncated_bytes, (bytes.len() - first_size) as u64);
        let base: u64 = last.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        assert_eq!(log.next_offset(), base + 3);
        assert!(log.recovery_report().truncation_reason.as_deref().unwrap().contains("CRC"));
    });
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn deleted_and_damaged_indexes_are_rebuilt() {
    let runtime = Runtime::new().unwrap();
    let dir = temp_dir("indexes");
    let next = fill(&runtime, &dir);
    let indexes = segment_files(&dir, "idx");
    assert!(indexes.len() >= 3, "the test needs several segments");
    let originals: Vec<Vec<u8>> = indexes.iter().map(|path| fs::read(path).unwrap()).collect();
    let time_originals: Vec<Vec<u8>> = segment_files(&dir, "tix").iter().map(|path| fs::read(path).unwrap()).collect();
    // Delete every offset index, damage one time index.
    for path in &indexes {
        fs::remove_file(path).unwrap();
    }
    let tix = segment_files(&dir, "tix");
    let mut damaged = fs::read(&tix[0]).unwrap();
    damaged[5] ^= 0x40;
    fs::write(&tix[0], damaged).unwrap();
    runtime.block_on(async {
        let mut log = PartitionLog::open(FileStorage::new(), &dir, small_segments()).await.unwrap();
        assert_eq!(log.next_offset(), next);
        assert_eq!(read_everything(&mut log), values(0, 180));
        assert_eq!(log.offset_for_timestamp(1_010).unwrap(), Some(30));
        log.close().await.unwrap();
    });
    // Rebuilt indexes are identical to the ones the append path wrote.
    for (path, original) in indexes.iter().zip(&originals) {
        assert_eq!(&fs::read(path).unwrap(), original, "{} differs after rebuild", path.display());
    }
    for (path, original) in segment_files(&dir, "tix").iter().zip(&time_originals) {
        assert_eq!(&fs::read(path).unwrap(), original, "{} differs after rebuild", path.display());
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn opening_does_not_read_sealed_segments() {
    let runtime = Runtime::new().unwrap();
    let dir = temp_dir("lazy");
    let next = fill(&runtime, &dir);
    let logs = segment_files(&dir, "log");
    assert!(logs.len() >= 3);
    // Make the sealed segments unreadable garbage (same length): an open that read
    // them would fail or cut them. It must not notice.
    for path in &logs[..logs.len() - 2] {
        let length = fs::metadata(path).unwrap().len() as usize;
        fs::write(path, vec![0x5A; length]).unwrap();
    }
    runtime.block_on(async {
        let log = PartitionLog::open(FileStorage::new(), &dir, small_segments()).await.unwrap();
        assert_eq!(log.next_offset(), next);
        assert_eq!(log.recovery_report().truncated_bytes, 0);
        assert_eq!(log.segment_count(), logs.len());
    });
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_empty_segment_after_a_torn_predecessor_is_dropped() {
    // Power went after a roll created the new segment but before the old one's
    // tail reached the disk: the new segment's base would leave a gap.
    let runtime = Runtime::new().unwrap();
    let dir = temp_dir("gap");
    fill(&runtime, &dir);
    let logs = segment_files(&dir, "log");
    let last = logs.last().unwrap();
    let previous = &logs[logs.len() - 2];
    fs::remove_file(last).unwrap();
    // Cut the previous segment in the middle of its last batch, drop its seal.
    let bytes = fs::read(previous).unwrap();
    fs::write(previous, &bytes[..bytes.len() - 10]).unwrap();
    fs::write(last, b"").unwrap();
    runtime.block_on(async {
        let log = PartitionLog::open(FileStorage::new(), &dir, small_segments()).await.unwrap();
        assert_eq!(log.recovery_report().segments_dropped, 1);
        assert_eq!(log.segment_count(), logs.len() - 1);
        let base: u64 = last.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        assert!(log.next_offset() < base);
    });
    assert!(!last.exists());
    fs::remove_dir_all(&dir).unwrap();
}

/// Descriptors of this process that point into `dir`.
fn open_descriptors_in(dir: &Path) -> usize {
    fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| fs::read_link(entry.unwrap().path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

#[test]
fn a_partition_keeps_one_descriptor_between_uses() {
    // Guards the descriptor budget (10,000 partitions under a 20,000 limit):
    // reading old segments or a retention pass must not leave them open.
    let runtime = Runtime::new().unwrap();
    let dir = temp_dir("descriptors");
    fill(&runtime, &dir);
    runtime.block_on(async {
        let mut log = PartitionLog::open(FileStorage::new(), &dir, small_segments()).await.unwrap();
        let commit = ringmq::log::GroupCommit::<FileStorage>::new(None);
        let shared = std::rc::Rc::new(std::cell::RefCell::new(log));
        commit.sync_soon(&shared);
        commit.flush_round().await;
        log = std::rc::Rc::try_unwrap(shared).ok().unwrap().into_inner();
        assert_eq!(read_everything(&mut log), values(0, 180));
        assert!(open_descriptors_in(&dir) > 1, "reading old segments opens them");
        log.apply_retention(0).unwrap();
        assert_eq!(open_descriptors_in(&dir), 1, "only the active segment stays open");
        assert_eq!(read_everything(&mut log), values(0, 180), "closed segments reopen for reads");
    });
    fs::remove_dir_all(&dir).unwrap();
}

/// A stored batch length is a peer of sorts: the disk's. Reads check it before
/// it sizes a buffer or a step, so a damaged sealed segment (not read at open)
/// answers an error: no 2 GiB allocation, no endless walk over a length of 0.
#[test]
fn a_damaged_batch_length_in_a_sealed_segment_is_an_error_not_an_allocation() {
    for (name, length) in [("huge", 0x7fff_fff0u32), ("zero", 0), ("negative", 0xffff_ff00)] {
        let runtime = Runtime::new().unwrap();
        let dir = temp_dir(&format!("length-{name}"));
        fill(&runtime, &dir);
        let logs = segment_files(&dir, "log");
        let first = &logs[0];
        let mut bytes = fs::read(first).unwrap();
        // The first batch's batch_length field (after its base offset).
        bytes[8..12].copy_from_slice(&length.to_be_bytes());
        fs::write(first, &bytes).unwrap();
        runtime.block_on(async {
            let mut log = PartitionLog::open(FileStorage::new(), &dir, small_segments()).await.unwrap();
            let read = log.read(0, 1 << 20);
            assert!(
                matches!(read, Err(ringmq::log::LogError::Corrupt(_))),
                "{name}: a read over a damaged length answered {:?}",
                read.map(|b| b.len())
            );
            let by_time = log.offset_for_timestamp(0);
            assert!(by_time.is_err(), "{name}: a timestamp search answered {by_time:?}");
            let scan = log.scan_batch_headers(u64::MAX, |_| {});
            assert!(scan.is_err(), "{name}: a header scan over a damaged length succeeded");
        });
        fs::remove_dir_all(&dir).unwrap();
    }
}

/// A stored batch whose bytes changed after it was written reports both CRCs.
#[test]
fn a_corrupt_stored_batch_keeps_its_expected_and_found_crc() {
    let runtime = Runtime::new().unwrap();
    let dir = temp_dir("crc-values");
    fill(&runtime, &dir);
    let logs = segment_files(&dir, "log");
    let mut bytes = fs::read(&logs[0]).unwrap();
    bytes[ringmq::batch::BATCH_HEADER_BYTES + 4] ^= 0xFF; // the first batch's first record: inside the CRC's range
    fs::write(&logs[0], &bytes).unwrap();
    runtime.block_on(async {
        let mut log = PartitionLog::open(FileStorage::new(), &dir, small_segments()).await.unwrap();
        match log.offset_for_timestamp(0).map(|_| ()) {
            Err(ringmq::log::LogError::Corrupt(ringmq::batch::BatchError::CrcMismatch { expected, found })) => {
                assert_ne!(expected, found)
            }
            other => panic!("expected a CRC mismatch, got {other:?}"),
        }
    });
    fs::remove_dir_all(&dir).unwrap();
}

/// The zeros written ahead of small appends: the active segment's file is
/// longer than its data, a reopen finds the end without reporting a cut and
/// keeps the window, a damaged tail after the zeros is still cut, and a
/// sealed segment ends exactly at its last batch.
#[test]
fn zeros_written_ahead_are_not_a_torn_tail_and_leave_sealed_segments() {
    let runtime = Runtime::new().unwrap();
    let dir = temp_dir("zero-ahead");
    let config = LogConfig { zero_ahead_bytes: 2048, ..small_segments() };
    let next = runtime.block_on(async {
        let mut log = PartitionLog::open(FileStorage::new(), &dir, config.clone()).await.unwrap();
        for i in 0..60 {
            log.append(&mut batch_of(&values(i * 3, 3), 1_000 + i as i64)).unwrap();
        }
        log.next_offset()
    });
    let logs = segment_files(&dir, "log");
    assert!(logs.len() > 1, "the appends rolled");
    let (active, sealed) = logs.split_last().unwrap();
    for path in sealed {
        let bytes = fs::read(path).unwrap();
        let mut position = 0;
        while position < bytes.len() {
            position += ringmq::batch::batch_size(&bytes[position..]).unwrap().unwrap();
        }
        assert_eq!(position, bytes.len(), "{}: a sealed segment ends at its last batch", path.display());
    }
    let active_length = fs::metadata(active).unwrap().len();
    runtime.block_on(async {
        let mut log = PartitionLog::open(FileStorage::new(), &dir, config.clone()).await.unwrap();
        assert_eq!(log.next_offset(), next);
        assert_eq!(log.recovery_report().truncated_bytes, 0, "the zeros are not a torn tail");
        assert_eq!(read_everything(&mut log), values(0, 180));
        log.close().await.unwrap();
    });
    assert_eq!(fs::metadata(active).unwrap().len(), active_length, "the window stays");
    let data_end = {
        let bytes = fs::read(active).unwrap();
        let mut position = 0;
        while let Ok(Some(size)) = ringmq::batch::batch_size(&bytes[position..]) {
            position += size;
        }
        position as u64
    };
    assert!(data_end < active_length, "the active segment has zeros after its data");
    OpenOptions::new().append(true).open(active).unwrap().write_all(&[0xAB; 100]).unwrap();
    runtime.block_on(async {
        let mut log = PartitionLog::open(FileStorage::new(), &dir, config).await.unwrap();
        assert_eq!(log.next_offset(), next, "records lost or invented");
        assert_eq!(log.recovery_report().truncated_bytes, active_length + 100 - data_end);
        assert_eq!(read_everything(&mut log), values(0, 180));
        let info = log.append(&mut batch_of(&values(180, 2), 9)).unwrap();
        assert_eq!(info.base_offset, next);
        log.close().await.unwrap();
    });
    fs::remove_dir_all(&dir).unwrap();
}
