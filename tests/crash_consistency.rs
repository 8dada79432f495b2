//! Guards the durability contract against power loss: after any sequence of
//! appends, durable appends, power losses (clean or with torn tails), process
//! crashes and reopens,
//! every record acknowledged as durable is present and identical, no torn byte is
//! ever returned, offsets stay dense, and a durable offset is never reused.

mod common;

use common::{batch_of, decode_all, Rng, Stored};
use ringmq::io::{Runtime, SimStorage};
use ringmq::log::{GroupCommit, LogConfig, PartitionLog, SharedLog};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

const SEQUENCES: u64 = 2000;
const OPERATIONS_PER_SEQUENCE: usize = 60;

fn config(rng: &mut Rng) -> LogConfig {
    LogConfig {
        segment_bytes: 300 + rng.below(3000) as u64,
        segment_ms: None,
        index_interval_bytes: 1 + rng.below(600) as u64,
        retention_ms: None,
        retention_bytes: None,
        // Half the sequences grow the file with every append, half overwrite
        // a window of zeros written ahead.
        zero_ahead_bytes: if rng.below(2) == 0 { 0 } else { 1 + rng.below(4000) as u64 },
    }
}

/// Reads the whole log and checks it against what was appended.
fn check(log: &mut PartitionLog<SimStorage>, appended: &BTreeMap<u64, Stored>, durable_end: u64, seed: u64) {
    let next = log.next_offset();
    assert!(next >= durable_end, "seed {seed}: durable offsets lost: log ends at {next}, {durable_end} were acked");
    let mut offset = log.earliest_offset();
    while offset < next {
        let bytes = log.read(offset, 1 + (offset as usize * 37) % 5000).unwrap();
        assert!(!bytes.is_empty(), "seed {seed}: empty read at {offset} below the end {next}");
        let records = decode_all(&bytes);
        let mut progressed = false;
        let start = offset;
        for record in records.into_iter().filter(|r| r.offset >= start) {
            assert_eq!(record.offset, offset, "seed {seed}: offsets are not dense");
            let want =
                appended.get(&offset).unwrap_or_else(|| panic!("seed {seed}: offset {offset} was never appended"));
            assert_eq!(&record, want, "seed {seed}: record at {offset} differs from what was appended");
            offset += 1;
            progressed = true;
        }
        assert!(progressed, "seed {seed}: read at {offset} made no progress");
    }
    assert_eq!(offset, next);
}

async fn run_sequence(seed: u64) {
    let mut rng = Rng::new(seed);
    let storage = SimStorage::new();
    let dir = "/data/topics/t/0";
    let config = config(&mut rng);
    let mut log: SharedLog<SimStorage> =
        Rc::new(RefCell::new(PartitionLog::open(storage.clone(), dir, config.clone()).await.unwrap()));
    let mut commit = GroupCommit::new(None);
    let mut appended: BTreeMap<u64, Stored> = BTreeMap::new();
    let mut durable_end = 0u64;
    let mut counter = 0u64;
    let trace = std::env::var_os("RINGMQ_SEED").is_some();
    for step in 0..OPERATIONS_PER_SEQUENCE {
        let operation = rng.below(11);
        if trace {
            let log = log.borrow();
            eprintln!(
                "step {step}: op {operation}; log {}..{} durable {} segments {:?}",
                log.earliest_offset(),
                log.next_offset(),
                log.durable_offset(),
                log.segment_base_offsets()
            );
        }
        match operation {
            0..=4 => {
                let count = 1 + rng.below(5);
                let timestamp = 1_000 + step as i64;
                let values: Vec<Vec<u8>> = (0..count)
                    .map(|_| {
                        counter += 1;
                        format!("s{seed}-r{counter}-{}", "x".repeat(rng.below(200))).into_bytes()
                    })
                    .collect();
                let mut batch = batch_of(&values, timestamp);
                let durable = rng.below(3) == 0;
                let info = if durable {
                    let (info, _) = futures_util::future::join(
                        commit.append(&log, &mut batch, ringmq::log::Acks::Durable),
                        commit.flush_round(),
                    )
                    .await;
                    let info = info.unwrap();
                    durable_end = info.next_offset;
                    info
                } else {
                    log.borrow_mut().append(&mut batch).unwrap()
                };
                assert_eq!(info.next_offset - info.base_offset, count as u64);
                // Offsets past the end are free again only if they were never durable.
                assert!(info.base_offset >= durable_end || durable, "seed {seed}: durable offset reused");
                for (index, value) in values.into_iter().enumerate() {
                    let offset = info.base_offset + index as u64;
                    appended.insert(offset, Stored { offset, timestamp, value });
                }
            }
            5 | 6 => {
                // Power loss, half of the time with torn tails.
                let mut torn = Rng::new(seed ^ step as u64);
                let mut tear = |bound: usize| torn.below(bound);
                if rng.below(2) == 0 {
                    storage.power_loss(Some(&mut tear));
                } else {
                    storage.power_loss(None);
                }
                drop(log);
                let reopened = PartitionLog::open(storage.clone(), dir, config.clone()).await.unwrap();
                log = Rc::new(RefCell::new(reopened));
                commit = GroupCommit::new(None);
                let next = log.borrow().next_offset();
                appended.retain(|&offset, _| offset < next);
                check(&mut log.borrow_mut(), &appended, durable_end, seed);
                assert_eq!(
                    log.borrow().durable_offset(),
                    log.borrow().earliest_offset(),
                    "nothing is durable before a round"
                );
                commit.sync_soon(&log);
                commit.flush_round().await;
                assert_eq!(log.borrow().durable_offset(), next, "the first round makes the recovered log durable");
                durable_end = next;
            }
            7 => {
                // Clean shutdown and reopen: everything written survives.
                let next = log.borrow().next_offset();
                let owned = Rc::try_unwrap(log).ok().unwrap().into_inner();
                owned.close().await.unwrap();
                storage.power_loss(None);
                log = Rc::new(RefCell::new(PartitionLog::open(storage.clone(), dir, config.clone()).await.unwrap()));
                commit = GroupCommit::new(None);
                assert_eq!(log.borrow().next_offset(), next, "seed {seed}: a clean close lost data");
                assert_eq!(log.borrow().recovery_report().truncated_bytes, 0, "seed {seed}: clean close left a tail");
                durable_end = next;
            }
            8 => {
                // The process crashes (no power loss): everything written is still
                // in the page cache. After reopening, one round must make all of
                // it durable, sealed segments included, before a power loss.
                drop(log);
                log = Rc::new(RefCell::new(PartitionLog::open(storage.clone(), dir, config.clone()).await.unwrap()));
                commit = GroupCommit::new(None);
                commit.sync_soon(&log);
                commit.flush_round().await;
                let next = log.borrow().next_offset();
                assert_eq!(log.borrow().durable_offset(), next);
                durable_end = next;
            }
            _ => check(&mut log.borrow_mut(), &appended, durable_end, seed),
        }
    }
}

#[test]
fn durable_records_survive_every_power_loss() {
    let runtime = Runtime::new().unwrap();
    // RINGMQ_SEED=N replays one sequence (with a trace of its operations).
    let only: Option<u64> = std::env::var("RINGMQ_SEED").ok().and_then(|v| v.parse().ok());
    runtime.block_on(async {
        for seed in only.map_or(0..SEQUENCES, |seed| seed..seed + 1) {
            run_sequence(seed).await;
        }
    });
}
