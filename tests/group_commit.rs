//! Guards group commit: many producers waiting for `durable` are answered by
//! shared fdatasync rounds (far fewer syncs than appends), each answer comes only
//! after its data is synced, and the flush interval syncs `written` data too.

mod common;

use common::batch_of;
use ringmq::io::{spawn_local, FileStorage, Runtime, SimStorage};
use ringmq::log::{Acks, GroupCommit, LogConfig, PartitionLog, SharedLog};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

const APPENDERS: usize = 8;
const APPENDS_EACH: usize = 40;

#[test]
fn concurrent_durable_appends_share_fdatasync_rounds() {
    let dir = std::env::temp_dir().join(format!("ringmq-test-group-commit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Runtime::new().unwrap().block_on(async {
        let log: SharedLog<FileStorage> =
            Rc::new(RefCell::new(PartitionLog::open(FileStorage::new(), &dir, LogConfig::default()).await.unwrap()));
        let commit = GroupCommit::new(None);
        let flusher = spawn_local(commit.clone().run());
        let mut tasks = Vec::new();
        for appender in 0..APPENDERS {
            let (log, commit) = (log.clone(), commit.clone());
            tasks.push(spawn_local(async move {
                let mut offsets = Vec::new();
                for i in 0..APPENDS_EACH {
                    let value = format!("appender {appender} record {i}").into_bytes();
                    let mut batch = batch_of(&[value], 1);
                    let info = commit.append(&log, &mut batch, Acks::Durable).await.unwrap();
                    // Answered only once durable.
                    assert!(log.borrow().durable_offset() >= info.next_offset);
                    offsets.push(info.base_offset);
                }
                offsets
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        all.sort_unstable();
        assert_eq!(all, (0..(APPENDERS * APPENDS_EACH) as u64).collect::<Vec<_>>(), "offsets are dense and unique");
        let stats = commit.stats();
        let appends = (APPENDERS * APPENDS_EACH) as u64;
        println!("{appends} durable appends, {} rounds, {} fdatasyncs", stats.rounds, stats.fsyncs);
        assert!(stats.rounds >= 1);
        assert!(
            stats.fsyncs * 2 <= appends,
            "group commit should share syncs among {APPENDERS} waiting appenders: {} fsyncs for {appends} appends",
            stats.fsyncs
        );
        commit.stop();
        flusher.await.unwrap();
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_flush_interval_syncs_written_data() {
    Runtime::new().unwrap().block_on(async {
        let storage = SimStorage::new();
        let log: SharedLog<SimStorage> =
            Rc::new(RefCell::new(PartitionLog::open(storage.clone(), "/d/t/0", LogConfig::default()).await.unwrap()));
        let commit = GroupCommit::new(Some(Duration::from_millis(5)));
        let flusher = spawn_local(commit.clone().run());
        let info = commit.append(&log, &mut batch_of(&[b"w".to_vec()], 1), Acks::Written).await.unwrap();
        assert_eq!(log.borrow().durable_offset(), 0, "written is answered before any sync");
        for _ in 0..200 {
            if log.borrow().durable_offset() >= info.next_offset {
                break;
            }
            ringmq::io::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(log.borrow().durable_offset(), info.next_offset, "the interval never synced written data");
        storage.power_loss(None);
        commit.stop();
        flusher.await.unwrap();
        drop(log);
        let reopened = PartitionLog::open(storage, "/d/t/0", LogConfig::default()).await.unwrap();
        assert_eq!(reopened.next_offset(), 1);
    });
}

#[test]
fn without_an_interval_written_data_is_not_synced_behind_the_producers_back() {
    Runtime::new().unwrap().block_on(async {
        let storage = SimStorage::new();
        let log: SharedLog<SimStorage> =
            Rc::new(RefCell::new(PartitionLog::open(storage.clone(), "/d/t/0", LogConfig::default()).await.unwrap()));
        let commit = GroupCommit::new(None);
        // The round that makes a freshly opened log durable (its file and directory).
        commit.sync_soon(&log);
        assert_eq!(commit.flush_round().await, 2);
        let syncs = storage.sync_count();
        commit.append(&log, &mut batch_of(&[b"w".to_vec()], 1), Acks::Written).await.unwrap();
        assert_eq!(commit.flush_round().await, 0);
        assert_eq!(storage.sync_count(), syncs);
        // A durable append later makes both durable with one log sync.
        let (info, fsyncs) = futures_util::future::join(
            commit.append(&log, &mut batch_of(&[b"d".to_vec()], 2), Acks::Durable),
            commit.flush_round(),
        )
        .await;
        assert_eq!(info.unwrap().next_offset, 2);
        assert_eq!(fsyncs, 1);
        storage.power_loss(None);
        drop(log);
        assert_eq!(PartitionLog::open(storage, "/d/t/0", LogConfig::default()).await.unwrap().next_offset(), 2);
    });
}

#[test]
fn a_waiter_for_an_offset_not_yet_written_is_answered_once_it_is_synced() {
    Runtime::new().unwrap().block_on(async {
        let storage = SimStorage::new();
        let log: SharedLog<SimStorage> =
            Rc::new(RefCell::new(PartitionLog::open(storage.clone(), "/d/t/0", LogConfig::default()).await.unwrap()));
        let commit = GroupCommit::new(None);
        let flusher = spawn_local(commit.clone().run());
        let waiting = {
            let (log, commit) = (log.clone(), commit.clone());
            spawn_local(async move { commit.wait_durable(&log, 3).await })
        };
        ringmq::io::sleep(Duration::from_millis(5)).await;
        for i in 0..3u8 {
            commit.append(&log, &mut batch_of(&[vec![i]], 1), Acks::Written).await.unwrap();
        }
        let answered = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert!(matches!(answered, Ok(Ok(Ok(())))), "the waiter was never answered: {answered:?}");
        assert!(log.borrow().durable_offset() >= 3);
        commit.stop();
        flusher.await.unwrap();
    });
}
