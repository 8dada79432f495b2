//! Any bytes through every request and response decoder of the native
//! protocol (groups, producer ids and share groups included): must never panic.
//! Run: `cargo +nightly fuzz run message_decode` from the repository root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmq::protocol::{self, api, group, producer_id, share};

fuzz_target!(|data: &[u8]| {
    let _ = protocol::check_request(data);
    let _ = protocol::check_response(data);
    for key in [api::JOIN_GROUP, api::HEARTBEAT, api::LEAVE_GROUP, api::OFFSET_COMMIT, api::OFFSET_FETCH, api::DESCRIBE_GROUP] {
        let _ = group::GroupRequest::decode(key, data);
    }
    let _ = group::GroupResponse::decode_join(data);
    let _ = group::GroupResponse::decode_offsets(data);
    let _ = group::GroupResponse::decode_describe(data);
    let _ = group::decode_list_groups_response(data);
    let _ = producer_id::InitProducerIdRequest::decode(data);
    let _ = producer_id::InitProducerIdResponse::decode(data);
    let _ = share::ShareFetchRequest::decode(data);
    let _ = share::ShareFetchResponse::decode(data);
    let _ = share::ShareAckRequest::decode(data);
    let _ = share::decode_ack_response(data);
    let _ = protocol::fetch::FetchRequest::decode(data);
    let _ = protocol::produce::ProduceRequest::decode(data);
    let _ = protocol::metadata::MetadataRequest::decode(data);
});
