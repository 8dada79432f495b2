//! Any bytes through the Kafka listener's decoders — the frame check, the
//! request header, every request body at every version (served or not), the
//! consumer-protocol blobs, and the decompression of compressed batches:
//! must never panic, and (run with `-malloc_limit_mb=64`) never allocate by a
//! count or length the input declares.
//! Run: `cargo +nightly fuzz run kafka_decode -- -malloc_limit_mb=64` from the
//! repository root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmq::kafka::{self, messages as m};

fuzz_target!(|data: &[u8]| {
    let _ = kafka::check_frame(data);
    let _ = kafka::parse_header(data);
    for version in 0..16 {
        let _ = m::decode_api_versions(data, version, version >= 3);
        let _ = m::decode_metadata(data, version);
        let _ = m::decode_produce(data, version);
        let _ = m::decode_fetch(data, version);
        let _ = m::decode_list_offsets(data, version);
        let _ = m::decode_offset_commit(data, version);
        let _ = m::decode_create_topics(data, version);
        let _ = m::decode_describe_configs(data, version);
        let _ = m::decode_join_group(data, version);
        let _ = m::decode_sync_group(data, version);
        let _ = m::decode_heartbeat(data, version);
        let _ = m::decode_leave_group(data, version);
        let _ = m::decode_describe_groups(data, version);
        let _ = m::decode_find_coordinator(data, version);
        let _ = m::decode_offset_fetch(data, version);
        let _ = m::decode_delete_topics(data, version);
        let _ = m::decode_init_producer_id(data, version);
        let _ = m::decode_list_groups(data, version);
    }
    let _ = m::subscription_topics(data);
    let _ = m::assignment_partitions(data);
    if let Some((&codec, compressed)) = data.split_first() {
        let _ = ringmq::compression::decompress(codec % 8, compressed);
    }
});
