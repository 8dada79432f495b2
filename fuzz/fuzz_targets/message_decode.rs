//! Any bytes through every request and response decoder of the native
//! protocol (groups, producer ids and share groups included): must never panic.
//! Run: `cargo +nightly fuzz run message_decode` from the repository root.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringmq::fuzzing::message_decode(data));
