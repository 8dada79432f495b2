//! Any bytes through every batch decoder entry point: must never panic.
//! Run: `cargo +nightly fuzz run batch_decode` from the repository root.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringmq::fuzzing::batch_decode(data));
