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

fuzz_target!(|data: &[u8]| ringmq::fuzzing::storage_decode(data));
