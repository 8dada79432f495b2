//! Guards the failure rules: a failed fdatasync is never retried (the partition is
//! poisoned until reopened, and every waiter gets the error), and a full disk
//! fails the append with a clear error while leaving the log exactly as it was.

mod common;

use common::{batch_of, decode_all};
use ringmq::io::{Runtime, SimFaults, SimStorage};
use ringmq::log::{Acks, GroupCommit, LogConfig, LogError, PartitionLog, SharedLog};
use std::cell::RefCell;
use std::rc::Rc;

const DIR: &str = "/data/topics/t/0";

/// No zeros written ahead: every append grows the file, so a full disk fails it.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        segment_ms: None,
        index_interval_bytes: 256,
        zero_ahead_bytes: 0,
        ..LogConfig::default()
    }
}

fn values(from: usize, count: usize) -> Vec<Vec<u8>> {
    (from..from + count).map(|i| format!("v{i:05}").into_bytes()).collect()
}

#[test]
fn a_failed_fsync_poisons_the_partition_until_reopened() {
    Runtime::new().unwrap().block_on(async {
        let storage = SimStorage::new();
        let log: SharedLog<SimStorage> =
            Rc::new(RefCell::new(PartitionLog::open(storage.clone(), DIR, config()).await.unwrap()));
        let commit = GroupCommit::new(None);
        let (first, _) = futures_util::future::join(
            commit.append(&log, &mut batch_of(&values(0, 2), 1), Acks::Durable),
            commit.flush_round(),
        )
        .await;
        first.unwrap();

        storage.set_faults(SimFaults { fail_syncs: true, ..SimFaults::default() });
        let mut a = batch_of(&values(2, 2), 2);
        let mut b = batch_of(&values(4, 2), 3);
        let (a, b, _) = futures_util::future::join3(
            commit.append(&log, &mut a, Acks::Durable),
            commit.append(&log, &mut b, Acks::Durable),
            commit.flush_round(),
        )
        .await;
        assert!(matches!(a, Err(LogError::Poisoned { .. })), "{a:?}");
        assert!(matches!(b, Err(LogError::Poisoned { .. })), "{b:?}");
        assert_eq!(storage.sync_failure_count(), 1, "one round, one failed fdatasync");
        assert_eq!(commit.stats().failures, 1);

        // The disk recovers, but the partition must not pretend nothing happened.
        storage.set_faults(SimFaults::default());
        let syncs_before = storage.sync_count();
        for acks in [Acks::Written, Acks::Durable] {
            let (result, _) = futures_util::future::join(
                commit.append(&log, &mut batch_of(&values(6, 1), 4), acks),
                commit.flush_round(),
            )
            .await;
            match result {
                Err(LogError::Poisoned { cause }) => {
                    assert_eq!(cause.raw_os_error(), Some(5), "the original EIO is kept")
                }
                other => panic!("append after a failed fsync must fail, got {other:?}"),
            }
        }
        assert_eq!(storage.sync_count(), syncs_before, "a poisoned partition retried an fsync");
        assert!(log.borrow().is_poisoned());
        assert_eq!(log.borrow().durable_offset(), 2);
        // Reads keep working.
        assert_eq!(decode_all(&log.borrow_mut().read(0, 1 << 20).unwrap()).len(), 6);

        // Reopening recovers what is on disk and takes writes again.
        drop(log);
        storage.power_loss(None);
        let mut reopened = PartitionLog::open(storage.clone(), DIR, config()).await.unwrap();
        assert!(!reopened.is_poisoned());
        assert_eq!(reopened.next_offset(), 2, "only the durable records survive the power loss");
        reopened.append(&mut batch_of(&values(2, 1), 5)).unwrap();
    });
}

#[test]
fn no_space_fails_the_append_and_leaves_the_log_unchanged() {
    Runtime::new().unwrap().block_on(async {
        let storage = SimStorage::new();
        let mut log = PartitionLog::open(storage.clone(), DIR, config()).await.unwrap();
        for i in 0..5 {
            log.append(&mut batch_of(&values(i * 4, 4), 10)).unwrap();
        }
        let used = storage.used_bytes();
        let snapshot: Vec<(String, Vec<u8>)> =
            ["00000000000000000000.log", "00000000000000000000.idx", "00000000000000000000.tix"]
                .iter()
                .map(|name| (name.to_string(), storage.read_file(&std::path::Path::new(DIR).join(name)).unwrap()))
                .collect();
        let next = log.next_offset();
        // Room for part of the next batch only: the write is torn by ENOSPC.
        storage.set_faults(SimFaults { capacity_bytes: Some(used + 20), ..SimFaults::default() });
        for _ in 0..3 {
            let error = log.append(&mut batch_of(&values(100, 4), 11)).unwrap_err();
            assert!(matches!(error, LogError::NoSpace { .. }), "{error:?}");
            assert!(error.to_string().contains("no space left"), "{error}");
        }
        assert!(!log.is_poisoned(), "ENOSPC is not a reason to poison");
        assert_eq!(log.next_offset(), next);
        for (name, bytes) in &snapshot {
            let now = storage.read_file(&std::path::Path::new(DIR).join(name)).unwrap();
            assert_eq!(&now, bytes, "{name} changed by a failed append");
        }
        // Reads keep working while the disk is full.
        assert_eq!(decode_all(&log.read(0, 1 << 20).unwrap()).len(), 20);
        // Space comes back: appends succeed at the next offset.
        storage.set_faults(SimFaults::default());
        let info = log.append(&mut batch_of(&values(100, 4), 12)).unwrap();
        assert_eq!(info.base_offset, next);
        let records = decode_all(&log.read(next, 1 << 20).unwrap());
        assert_eq!(records.iter().map(|r| r.value.clone()).collect::<Vec<_>>(), values(100, 4));
    });
}

#[test]
fn no_space_while_rolling_leaves_the_log_unchanged() {
    Runtime::new().unwrap().block_on(async {
        let storage = SimStorage::new();
        let mut log = PartitionLog::open(storage.clone(), DIR, config()).await.unwrap();
        while log.segment_count() == 1 {
            log.append(&mut batch_of(&values(0, 8), 10)).unwrap();
        }
        // Fill the new active segment close to its roll size.
        let segments = log.segment_count();
        let mut appended = 0;
        while log.segment_count() == segments && appended < 100 {
            let next = log.next_offset();
            storage.set_faults(SimFaults { capacity_bytes: Some(storage.used_bytes() + 8), ..SimFaults::default() });
            let result = log.append(&mut batch_of(&values(0, 8), 10));
            assert!(matches!(result, Err(LogError::NoSpace { .. })), "{result:?}");
            assert_eq!(log.next_offset(), next);
            assert_eq!(log.segment_count(), segments);
            storage.set_faults(SimFaults::default());
            log.append(&mut batch_of(&values(0, 8), 10)).unwrap();
            appended += 1;
        }
        // Everything reads back densely.
        let mut offset = 0;
        while offset < log.next_offset() {
            for record in decode_all(&log.read(offset, 1 << 16).unwrap()) {
                if record.offset >= offset {
                    assert_eq!(record.offset, offset);
                    offset += 1;
                }
            }
        }
    });
}

#[test]
fn out_of_range_reads_are_refused_clearly() {
    Runtime::new().unwrap().block_on(async {
        let mut log = PartitionLog::open(SimStorage::new(), DIR, config()).await.unwrap();
        log.append(&mut batch_of(&values(0, 3), 1)).unwrap();
        assert!(log.read(3, 100).unwrap().is_empty(), "reading at the end is empty, not an error");
        let error = log.read(4, 100).unwrap_err();
        assert!(matches!(error, LogError::OffsetOutOfRange { requested: 4, earliest: 0, latest: 3 }), "{error:?}");
        assert!(error.to_string().contains("out of range"));
    });
}

#[test]
fn invalid_batches_are_refused_before_anything_is_written() {
    Runtime::new().unwrap().block_on(async {
        let storage = SimStorage::new();
        let mut log = PartitionLog::open(storage.clone(), DIR, config()).await.unwrap();
        let mut bad_crc = batch_of(&values(0, 3), 1);
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 1;
        assert!(matches!(log.append(&mut bad_crc), Err(LogError::InvalidBatch(_))));
        let mut truncated = batch_of(&values(0, 3), 1);
        truncated.truncate(40);
        assert!(matches!(log.append(&mut truncated), Err(LogError::InvalidBatch(_))));
        assert_eq!(log.next_offset(), 0);
        assert_eq!(storage.used_bytes(), 0);
    });
}
