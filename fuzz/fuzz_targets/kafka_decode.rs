//! Any bytes through the Kafka listener's decoders — the frame check, the
//! request header, every request body at every version (served or not), the
//! consumer-protocol blobs, and the decompression of compressed batches:
//! must never panic, and (run with `-malloc_limit_mb=64`) never allocate by a
//! count or length the input declares.
//! Run: `cargo +nightly fuzz run kafka_decode -- -malloc_limit_mb=64` from the
//! repository root.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringmq::fuzzing::kafka_decode(data));
