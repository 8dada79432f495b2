//! The bodies of the fuzz targets in `fuzz/`: every decoder that reads bytes
//! from outside, fed one input. Here rather than in the targets so that the
//! stable test command can run them too (`tests/fuzz_smoke.rs` replays saved
//! inputs and seeded mutations; cargo-fuzz runs them coverage-guided on a
//! nightly toolchain). Each must never panic; the storage body also asserts
//! that a recovered log never serves a batch that fails the stored-batch checks.

use crate::batch::{self, Batch, BatchHeader};
use crate::groups::share::{self as share_state, SharePartition};
use crate::groups::{state_log, OffsetRecord};
use crate::io::{OpenMode, Runtime, SimStorage, Storage, StorageFile};
use crate::kafka::{self, messages as m};
use crate::log::{LogConfig, PartitionLog};
use crate::protocol::{self, api, group, producer_id, share};
use crate::server::ConfigFile;
use std::path::Path;

/// Bytes one read of a recovered log asks for.
const READ_BYTES: usize = 64 * 1024;
/// Reads of one recovered log (each makes progress, so this bounds the work).
const READS_MAX: usize = 4096;
/// Kafka versions tried for every request decoder (past every advertised one).
const KAFKA_VERSIONS: i16 = 16;

/// Native request and response frames and every request and response body.
pub fn message_decode(data: &[u8]) {
    let _ = protocol::check_request(data);
    let _ = protocol::check_response(data);
    let _ = protocol::parse_request_header(data);
    for key in
        [api::JOIN_GROUP, api::HEARTBEAT, api::LEAVE_GROUP, api::OFFSET_COMMIT, api::OFFSET_FETCH, api::DESCRIBE_GROUP]
    {
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
    let _ = protocol::produce::ProduceResponse::decode(data);
    let _ = protocol::metadata::MetadataRequest::decode(data);
    let _ = protocol::metadata::MetadataResponse::decode(data);
    let _ = protocol::hello::HelloRequest::decode(data);
    let _ = protocol::hello::HelloResponse::decode(data);
    let _ = protocol::topic::CreateTopicRequest::decode(data);
    let _ = protocol::topic::DeleteTopicRequest::decode(data);
    let _ = protocol::offsets::ListOffsetsRequest::decode(data);
    let _ = protocol::offsets::ListOffsetsResponse::decode(data);
    let _ = protocol::security::AuthenticateRequest::decode(data);
    let _ = protocol::security::AuthenticateResponse::decode(data);
    let _ = protocol::security::UserUpsertRequest::decode(data);
    let _ = protocol::security::decode_name_request(data);
    let _ = protocol::security::decode_user_list(data);
    let _ = protocol::security::decode_acl_request(data);
    let _ = protocol::security::decode_acl_list(data);
    sasl_exchange(data);
}

/// Record batches: validation, then every record (also behind a forged CRC).
pub fn batch_decode(data: &[u8]) {
    let _ = batch::batch_size(data);
    let _ = BatchHeader::parse(data);
    let _ = Batch::validate_for_append(data);
    let mut forged = data.to_vec();
    if forged.len() >= batch::BATCH_HEADER_BYTES {
        let length = (forged.len() - 12) as i32;
        forged[8..12].copy_from_slice(&length.to_be_bytes());
        forged[16] = 2;
        let crc = batch::compute_crc(&forged);
        forged[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    for bytes in [data, &forged[..]] {
        if let Ok(batch) = Batch::validate(bytes) {
            for record in batch.records() {
                match record {
                    Ok(record) => {
                        let _ = record.headers.count();
                    }
                    Err(_) => break,
                }
            }
        }
    }
}

/// The server's SASL exchanges fed peer bytes: `data` whole as the first
/// message, and split at its first NUL into a first and a second message
/// (the second reaches the proof check with a known user).
fn sasl_exchange(data: &[u8]) {
    use crate::security::scram::{Credential, ServerExchange, PLAIN, SCRAM_SHA_256};
    // Fixed keys: deriving a real credential per input would cost the fuzzer
    // 4,096 HMAC rounds, and the exchange never checks how they were made.
    let credential =
        Credential { salt: vec![1; 16], iterations: 4096, stored_key: vec![2; 32], server_key: vec![3; 32] };
    let lookup = |user: &str| (user == "u").then(|| credential.clone());
    for mechanism in [SCRAM_SHA_256, PLAIN] {
        if let Ok(mut exchange) = ServerExchange::new(mechanism) {
            let _ = exchange.step(data, lookup);
        }
        if let Ok(mut exchange) = ServerExchange::new(mechanism) {
            let mut parts = data.splitn(2, |b| *b == 0);
            let (first, second) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
            if exchange.step(first, lookup).is_ok() {
                let _ = exchange.step(second, lookup);
            }
        }
    }
}

/// The Kafka listener's decoders: frame check, request header, every request
/// body at every version, the consumer-protocol blobs, and decompression.
pub fn kafka_decode(data: &[u8]) {
    let _ = kafka::check_frame(data);
    let _ = kafka::parse_header(data);
    for version in 0..KAFKA_VERSIONS {
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
        let _ = m::decode_sasl_handshake(data, version);
        let _ = m::decode_sasl_authenticate(data, version);
    }
    let _ = m::subscription_topics(data);
    let _ = m::assignment_partitions(data);
    if let Some((&codec, compressed)) = data.split_first() {
        let _ = crate::compression::decompress(codec % 8, compressed);
    }
}

thread_local! {
    static RUNTIME: Option<Runtime> = Runtime::new().ok();
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
    if let Ok(file) = storage.open(Path::new(path), OpenMode::CreateOrOpen) {
        let _ = file.write_all_at(bytes, 0);
    }
}

/// A partition directory: `offset index length u16 LE, offset index, time
/// index length, time index, segment`. Opened and recovered as at start-up,
/// read end to end and searched by time.
fn partition(mut data: &[u8]) {
    let offset_index = take_part(&mut data);
    let time_index = take_part(&mut data);
    let storage = SimStorage::new();
    let dir = "/data/topics/t/0";
    let _ = storage.create_dir_all(Path::new(dir));
    write(&storage, &format!("{dir}/{:020}.log", 0), data);
    write(&storage, &format!("{dir}/{:020}.idx", 0), offset_index);
    write(&storage, &format!("{dir}/{:020}.tix", 0), time_index);
    RUNTIME.with(|runtime| {
        let Some(runtime) = runtime else { return };
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
                    let checked = Batch::validate_stored(rest.get(..batch_length(rest)).unwrap_or(rest));
                    let batch = checked.expect("a recovered log served a damaged batch");
                    last = Some(batch.header().last_offset());
                    rest = rest.get(batch.bytes().len()..).unwrap_or_default();
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

/// The length of the batch at the start of `bytes`, as its header declares.
fn batch_length(bytes: &[u8]) -> usize {
    batch::batch_size(bytes).ok().flatten().unwrap_or(bytes.len())
}

/// State-log files (committed offsets, share-group state).
fn state(data: &[u8]) {
    let parsed = state_log::parse_records(data);
    assert!(parsed.end <= data.len());
    // The payloads the checksums let through, and the raw bytes as one
    // payload (a record with a correct checksum can still hold anything).
    let payloads: Vec<Vec<u8>> = parsed.records.iter().map(|r| r.to_vec()).chain([data.to_vec()]).collect();
    for payload in &payloads {
        let _ = OffsetRecord::decode(payload);
    }
    let _ = crate::groups::replay_offsets(&payloads);
    let mut partition = SharePartition::new(0);
    for payload in &payloads {
        share_state::replay(&mut partition, payload);
    }
}

/// The first byte picks what the rest is: a partition directory, a state
/// log, or the TOML config.
pub fn storage_decode(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else { return };
    match selector % 3 {
        0 => partition(rest),
        1 => state(rest),
        _ => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = ConfigFile::parse(text);
            }
        }
    }
}
