//! Guards retention (whole sealed segments by age and by size, never the active
//! one, earliest offset moving forward), rolling by size and age, and lookups by
//! timestamp across segments.

mod common;

use common::{batch_of, decode_all};
use ringmq::io::{Runtime, SimStorage};
use ringmq::log::{LogConfig, LogError, PartitionLog};

const DIR: &str = "/data/topics/t/0";

fn values(from: usize, count: usize) -> Vec<Vec<u8>> {
    (from..from + count).map(|i| format!("record-{i:08}-{}", "z".repeat(40)).into_bytes()).collect()
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        segment_ms: None,
        index_interval_bytes: 200,
        retention_ms: None,
        retention_bytes: None,
        zero_ahead_bytes: ringmq::log::partition::ZERO_AHEAD_BYTES,
    }
}

#[test]
fn retention_by_size_deletes_the_oldest_sealed_segments_only() {
    Runtime::new().unwrap().block_on(async {
        let storage = SimStorage::new();
        let mut config = config();
        let mut log = PartitionLog::open(storage.clone(), DIR, config.clone()).await.unwrap();
        for i in 0..100 {
            log.append(&mut batch_of(&values(i * 2, 2), 1_000 + i as i64)).unwrap();
        }
        let segments = log.segment_count();
        assert!(segments >= 10, "expected many segments, got {segments}");
        let bases = log.segment_base_offsets();
        drop(log);

        config.retention_bytes = Some(3 * 1024);
        let mut log = PartitionLog::open(storage.clone(), DIR, config.clone()).await.unwrap();
        let report = log.apply_retention(10_000).unwrap();
        assert!(report.segments_deleted > 0);
        let kept = log.segment_base_offsets();
        assert_eq!(kept, bases[report.segments_deleted as usize..], "a segment other than the oldest was deleted");
        assert_eq!(log.earliest_offset(), kept[0]);
        assert_eq!(report.earliest_offset, kept[0]);
        // Size after retention is within the limit plus less than one segment.
        let remaining: u64 = storage.used_bytes();
        assert!(remaining > 0);
        let error = log.read(kept[0] - 1, 1000).unwrap_err();
        assert!(matches!(error, LogError::OffsetOutOfRange { .. }), "{error:?}");
        let first = decode_all(&log.read(kept[0], 100).unwrap());
        assert_eq!(first[0].offset, kept[0]);
        for base in &bases[..report.segments_deleted as usize] {
            for extension in ["log", "idx", "tix"] {
                let path = std::path::Path::new(DIR).join(format!("{base:020}.{extension}"));
                assert!(storage.read_file(&path).is_none(), "{} survived retention", path.display());
            }
        }

        // Even a limit of one byte keeps the active segment.
        config.retention_bytes = Some(1);
        drop(log);
        let mut log = PartitionLog::open(storage.clone(), DIR, config).await.unwrap();
        log.apply_retention(10_000).unwrap();
        assert_eq!(log.segment_count(), 1);
        assert_eq!(log.earliest_offset(), *bases.last().unwrap());
        assert_eq!(log.next_offset(), 200, "retention must not move the end");
    });
}

#[test]
fn retention_by_age_uses_each_segments_newest_record() {
    Runtime::new().unwrap().block_on(async {
        let mut config = config();
        config.retention_ms = Some(1_000);
        let mut log = PartitionLog::open(SimStorage::new(), DIR, config).await.unwrap();
        // Timestamps: 0..100 s, one batch per second.
        for second in 0..100i64 {
            log.append(&mut batch_of(&values(second as usize * 2, 2), second * 1_000)).unwrap();
        }
        let bases = log.segment_base_offsets();
        // At t = 50.5 s, segments whose newest record is older than 49.5 s go.
        let report = log.apply_retention(50_500).unwrap();
        assert!(report.segments_deleted > 0);
        let earliest = log.earliest_offset();
        let first = decode_all(&log.read(earliest, 1 << 20).unwrap());
        // The new first segment still holds a record newer than the cut, and the
        // segment before it held none.
        let newest_kept_first_segment = {
            let next_base = log.segment_base_offsets().get(1).copied().unwrap_or(u64::MAX);
            first.iter().filter(|r| r.offset < next_base).map(|r| r.timestamp).max().unwrap()
        };
        assert!(50_500 - newest_kept_first_segment <= 1_000, "a segment within retention was deleted");
        assert!(bases.contains(&earliest));
        // Nothing is deleted twice; the active segment is never deleted.
        let again = log.apply_retention(50_500).unwrap();
        assert_eq!(again.segments_deleted, 0);
        let all = log.apply_retention(10_000_000).unwrap();
        assert!(all.segments_deleted > 0);
        assert_eq!(log.segment_count(), 1);
    });
}

#[test]
fn segments_roll_by_age() {
    Runtime::new().unwrap().block_on(async {
        let mut config = config();
        config.segment_bytes = 1 << 20;
        config.segment_ms = Some(60_000);
        let now = ringmq::log::partition::now_ms();
        let mut log = PartitionLog::open(SimStorage::new(), DIR, config).await.unwrap();
        log.append_at(&mut batch_of(&values(0, 1), 1), now).unwrap();
        log.append_at(&mut batch_of(&values(1, 1), 1), now + 59_000).unwrap();
        assert_eq!(log.segment_count(), 1);
        log.append_at(&mut batch_of(&values(2, 1), 1), now + 61_000).unwrap();
        assert_eq!(log.segment_base_offsets(), vec![0, 2]);
    });
}

#[test]
fn offsets_by_timestamp_find_the_first_record_at_or_after() {
    Runtime::new().unwrap().block_on(async {
        let storage = SimStorage::new();
        let mut log = PartitionLog::open(storage.clone(), DIR, config()).await.unwrap();
        // Each batch: records at t, t-5 (out of order), t+1.
        let mut expected = Vec::new();
        for i in 0..80i64 {
            let t = 10_000 + i * 100;
            let mut builder = ringmq::batch::BatchBuilder::new();
            for (j, ts) in [t, t - 5, t + 1].into_iter().enumerate() {
                builder.append(ts, None, Some(&values(i as usize * 3 + j, 1)[0]), &[]).unwrap();
                expected.push(ts);
            }
            log.append(&mut builder.finish().unwrap()).unwrap();
        }
        assert!(log.segment_count() > 3);
        let answer = |target: i64| expected.iter().position(|&ts| ts >= target).map(|p| p as u64);
        for target in [i64::MIN, 0, 9_995, 10_000, 10_001, 10_002, 10_050, 12_345, 17_895, 17_901, 17_902, 99_999] {
            assert_eq!(log.offset_for_timestamp(target).unwrap(), answer(target), "target {target}");
        }
        // After reopening (sealed segments loaded lazily) the answers are the same.
        drop(log);
        let mut log = PartitionLog::open(storage, DIR, config()).await.unwrap();
        for target in (9_900..18_100).step_by(37) {
            assert_eq!(log.offset_for_timestamp(target).unwrap(), answer(target), "target {target} after reopen");
        }
    });
}

#[test]
fn reads_return_whole_batches_from_the_one_holding_the_offset() {
    Runtime::new().unwrap().block_on(async {
        let mut log = PartitionLog::open(SimStorage::new(), DIR, config()).await.unwrap();
        let mut sizes = Vec::new();
        for i in 0..50 {
            let mut batch = batch_of(&values(i * 3, 3), 1);
            sizes.push(batch.len());
            log.append(&mut batch).unwrap();
        }
        for offset in 0..150u64 {
            for max_bytes in [1usize, 200, 500, 5000] {
                let bytes = log.read(offset, max_bytes).unwrap();
                let records = decode_all(&bytes);
                assert_eq!(records[0].offset, offset - offset % 3, "must start with the batch holding {offset}");
                assert!(
                    bytes.len() <= max_bytes.max(sizes[0]),
                    "read {} bytes for a limit of {max_bytes}",
                    bytes.len()
                );
                for (index, record) in records.iter().enumerate() {
                    assert_eq!(record.offset, records[0].offset + index as u64);
                    assert_eq!(record.value, values(record.offset as usize, 1)[0]);
                }
            }
        }
    });
}

/// The producer-table rebuild reads batch headers from the log's end only:
/// every batch from a boundary at or before `tail_bytes` back, in order, across
/// segments, and all of them when the log is shorter.
#[test]
fn batch_headers_are_scanned_from_the_tail_across_segments() {
    Runtime::new().unwrap().block_on(async {
        let storage = SimStorage::new();
        let mut log = PartitionLog::open(storage.clone(), DIR, config()).await.unwrap();
        let mut sizes = Vec::new();
        for i in 0..60 {
            let mut batch = batch_of(&values(i * 2, 2), 1);
            sizes.push(batch.len() as u64);
            log.append(&mut batch).unwrap();
        }
        assert!(log.segment_count() > 3);
        let scan = |log: &mut PartitionLog<SimStorage>, tail: u64| {
            let mut bases = Vec::new();
            log.scan_batch_headers(tail, |h| bases.push(h.base_offset)).unwrap();
            bases
        };
        let everything: Vec<i64> = (0..60).map(|i| i * 2).collect();
        assert_eq!(scan(&mut log, u64::MAX), everything);
        for tail in [1u64, 500, 1500, 3000] {
            let bases = scan(&mut log, tail);
            let covered: u64 = sizes[sizes.len() - bases.len()..].iter().sum();
            assert!(covered >= tail.min(sizes.iter().sum()), "tail {tail}: {covered} bytes scanned");
            assert_eq!(bases, everything[everything.len() - bases.len()..], "a suffix, in order");
            assert!(bases.len() < 60, "tail {tail} scanned everything");
        }
    })
}
