//! Any bytes where ringmq reads its own files back: a partition directory
//! (a segment with its offset and time indexes, opened and recovered as at
//! start-up, then read end to end and searched by time), the state-log files
//! (committed offsets, share-group state) and the TOML config. Must never
//! panic, and every batch a read returns must pass the stored-batch checks:
//! a damaged file is cut or refused, never served as good.
//! Run: `cargo +nightly fuzz run storage_decode -- -malloc_limit_mb=64` from
//! `fuzz/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmq::batch::Batch;
use ringmq::groups::share::{self, SharePartition};
use ringmq::groups::{state_log, OffsetRecord};
use ringmq::io::{OpenMode, Runtime, SimStorage, Storage, StorageFile};
use ringmq::log::{LogConfig, PartitionLog};
use ringmq::server::ConfigFile;
use std::path::Path;

/// Bytes one read asks for.
const READ_BYTES: usize = 64 * 1024;
/// Reads of one recovered log (each makes progress, so this bounds the work).
const READS_MAX: usize = 4096;

thread_local! {
    static RUNTIME: Runtime = Runtime::new().expect("an io_uring runtime");
}

/// Splits off a prefix whose length is the next two bytes (capped to what is there).
fn take_part<'a>(data: &mut &'a [u8]) -> &'a [u8] {
    let Some((length, rest)) = data.split_first_chunk::<2>() else { return std::mem::take(data) };
    let length = usize::from(u16::from_le_bytes(*length)).min(rest.len());
    let (part, rest) = rest.split_at(length);
    *data = rest;
    part
}

fn write(storage: &SimStorage, path: &str, bytes: &[u8]) {
    let file = storage.open(Path::new(path), OpenMode::CreateOrOpen).expect("a simulated file");
    file.write_all_at(bytes, 0).expect("a simulated write");
}

fn partition(mut data: &[u8]) {
    let offset_index = take_part(&mut data);
    let time_index = take_part(&mut data);
    let storage = SimStorage::new();
    let dir = "/data/topics/t/0";
    storage.create_dir_all(Path::new(dir)).expect("a simulated directory");
    write(&storage, &format!("{dir}/{:020}.log", 0), data);
    write(&storage, &format!("{dir}/{:020}.idx", 0), offset_index);
    write(&storage, &format!("{dir}/{:020}.tix", 0), time_index);
    RUNTIME.with(|runtime| {
        runtime.block_on(async {
            let Ok(mut log) = PartitionLog::open(storage, dir, LogConfig::default()).await else { return };
            let mut offset = log.earliest_offset();
            for _ in 0..READS_MAX {
                if offset >= log.next_offset() {
                    break;
                }
                let Ok(bytes) = log.read(offset, READ_BYTES) else { break };
                let mut rest = bytes.as_slice();
                let mut last = None;
                while !rest.is_empty() {
                    let batch = Batch::validate_stored(rest).expect("a recovered log served a damaged batch");
                    last = Some(batch.header().last_offset());
                    rest = &rest[batch.bytes().len()..];
                }
                match last {
                    Some(last) if last >= 0 && (last as u64) >= offset => offset = last as u64 + 1,
                    _ => break,
                }
            }
            for timestamp in [i64::MIN, -1, 0, 1_700_000_000_000, i64::MAX] {
                let _ = log.offset_for_timestamp(timestamp);
            }
        })
    });
}

fn state(data: &[u8]) {
    let parsed = state_log::parse_records(data);
    assert!(parsed.end <= data.len());
    let records = parsed.records;
    // The payloads the checksums let through, and the raw bytes as one
    // payload (a record with a correct checksum can still hold anything).
    let payloads: Vec<Vec<u8>> = records.iter().map(|r| r.to_vec()).chain([data.to_vec()]).collect();
    for payload in &payloads {
        let _ = OffsetRecord::decode(payload);
    }
    let _ = ringmq::groups::replay_offsets(&payloads);
    let mut partition = SharePartition::new(0);
    for payload in &payloads {
        share::replay(&mut partition, payload);
    }
}

fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ConfigFile::parse(text);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    match selector % 3 {
        0 => partition(rest),
        1 => state(rest),
        _ => config(rest),
    }
});
