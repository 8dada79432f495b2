//! The Kafka messages ringmq serves: one decoder per request and one encoder
//! per response, each covering every advertised version, classic and
//! flexible (fields are read and written under the version ranges of Kafka's
//! JSON schemas; in flexible versions every struct ends in a tag section,
//! which the decoders skip and the encoders leave empty). Requests borrow
//! from the frame; Produce's records stay positions in it, so the batches are
//! appended without a copy.

use super::api;
use super::codec::{DecodeError, Reader, Writer};
use crate::protocol::{METADATA_TOPICS_MAX, PARTITIONS_PER_TOPIC_MAX, TOPIC_NAME_WIRE_BYTES_MAX};

/// Topics one request may name.
pub const TOPICS_PER_REQUEST_MAX: usize = METADATA_TOPICS_MAX;
/// Partitions of one topic one request may name.
pub const PARTITIONS_PER_REQUEST_MAX: usize = PARTITIONS_PER_TOPIC_MAX as usize;
/// Longest group id, member id, protocol name or other identifier.
pub const NAME_BYTES_MAX: usize = 32 * 1024;
/// Largest group member metadata or assignment blob.
pub const GROUP_BLOB_BYTES_MAX: usize = 1024 * 1024;
/// Protocols one JoinGroup may offer, and members one SyncGroup may assign.
pub const GROUP_ENTRIES_MAX: usize = 4096;
/// Replicas one CreateTopics assignment may name (ringmq has one broker;
/// Kafka clusters rarely go past a handful).
pub const REPLICAS_PER_PARTITION_MAX: usize = 64;
/// Config entries one CreateTopics topic may carry, or DescribeConfigs key names.
pub const CONFIG_ENTRIES_MAX: usize = 1024;
/// Longest config value.
pub const CONFIG_VALUE_BYTES_MAX: usize = 4096;
/// Longest commit metadata (as ringmq stores it).
pub const COMMIT_METADATA_BYTES_MAX: usize = crate::protocol::group::COMMIT_METADATA_BYTES_MAX;
/// Keys one FindCoordinator (v4+) may ask about.
pub const COORDINATOR_KEYS_MAX: usize = GROUP_ENTRIES_MAX;
/// The topic id ringmq reports (Metadata 10+): the null UUID, Kafka's "no
/// id". ringmq names topics only; the versions that identify topics by id
/// (Fetch 13+, Metadata 12+, Produce 13+, …) are not advertised.
pub const TOPIC_ID_NONE: [u8; 16] = [0; 16];

/// The fewest bytes each kind of field takes in a reader's encoding: the
/// element minimums that bound array counts before anything is allocated
/// (too high a minimum would refuse valid requests, so these are exact).
#[derive(Debug, Clone, Copy)]
struct Least {
    /// A string: i16 length (classic), a 1-byte varint (flexible).
    string: usize,
    /// Bytes, records or an array count: i32 (classic), a 1-byte varint.
    count: usize,
    /// A struct's tag section: none (classic), a 1-byte count (flexible).
    tags: usize,
}

fn least(reader: &Reader<'_>) -> Least {
    if reader.is_flexible() {
        Least { string: 1, count: 1, tags: 1 }
    } else {
        Least { string: 2, count: 4, tags: 0 }
    }
}

/// A reader in the encoding of `version` of API `key`.
fn reader_of(body: &[u8], key: i16, version: i16) -> Reader<'_> {
    Reader::new(body, super::is_flexible(key, version))
}

/// A topic name: Kafka's limit is the schema's; the catalog checks the rules.
fn topic(reader: &mut Reader<'_>) -> Result<String, DecodeError> {
    reader.string(TOPIC_NAME_WIRE_BYTES_MAX).map(str::to_owned)
}

fn name(reader: &mut Reader<'_>) -> Result<String, DecodeError> {
    reader.string(NAME_BYTES_MAX).map(str::to_owned)
}

fn nullable_name(reader: &mut Reader<'_>) -> Result<Option<String>, DecodeError> {
    Ok(reader.nullable_string(NAME_BYTES_MAX)?.map(str::to_owned))
}

/// An array of `element`s (`None` for null), each at least `element_bytes_min`.
fn nullable_array_of<'a, T>(
    reader: &mut Reader<'a>,
    max: usize,
    element_bytes_min: usize,
    mut element: impl FnMut(&mut Reader<'a>) -> Result<T, DecodeError>,
) -> Result<Option<Vec<T>>, DecodeError> {
    let Some(count) = reader.nullable_array(max, element_bytes_min)? else { return Ok(None) };
    let mut elements = Vec::with_capacity(count);
    for _ in 0..count {
        elements.push(element(reader)?);
    }
    Ok(Some(elements))
}

fn array_of<'a, T>(
    reader: &mut Reader<'a>,
    max: usize,
    element_bytes_min: usize,
    element: impl FnMut(&mut Reader<'a>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    Ok(nullable_array_of(reader, max, element_bytes_min, element)?.unwrap_or_default())
}

/// An array of structs: each element's tag section is read after it.
fn structs_of<'a, T>(
    reader: &mut Reader<'a>,
    max: usize,
    element_bytes_min: usize,
    mut element: impl FnMut(&mut Reader<'a>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    array_of(reader, max, element_bytes_min, |reader| {
        let value = element(reader)?;
        reader.tags()?;
        Ok(value)
    })
}

fn partition_indexes(reader: &mut Reader<'_>) -> Result<Vec<i32>, DecodeError> {
    array_of(reader, PARTITIONS_PER_REQUEST_MAX, 4, |r| r.i32())
}

/// An array of names (no tags: its elements are not structs).
fn names(reader: &mut Reader<'_>, max: usize) -> Result<Vec<String>, DecodeError> {
    let string = least(reader).string;
    array_of(reader, max, string, name)
}

/// The request's closing tag section. Bytes after it are ignored, as Kafka's
/// broker ignores them: librdkafka 2.16's Metadata v11 for
/// `AdminClient.list_topics` carries three bytes past the schema's last field.
/// Every field before them was read and checked; nothing is allocated for them.
fn end(mut reader: Reader<'_>) -> Result<(), DecodeError> {
    reader.tags()
}

// ---------------------------------------------------------------- ApiVersions

/// ApiVersions 0–3 (v3 carries the client's software name, skipped).
pub fn decode_api_versions(body: &[u8], version: i16, flexible: bool) -> Result<(), DecodeError> {
    let mut reader = Reader::new(body, flexible);
    if version >= 3 {
        reader.string(NAME_BYTES_MAX)?;
        reader.string(NAME_BYTES_MAX)?;
    }
    end(reader)
}

pub fn encode_api_versions(writer: &mut Writer, version: i16, error: i16, apis: &[(i16, i16, i16)]) {
    writer.i16(error);
    writer.array(apis.len());
    for &(key, min, max) in apis {
        writer.i16(key);
        writer.i16(min);
        writer.i16(max);
        writer.tags();
    }
    if version >= 1 {
        writer.i32(0);
    }
    // The closing tag section is the caller's (see `respond`), as for every body.
}

// ------------------------------------------------------------------- Metadata

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataRequest {
    /// `None`: every topic.
    pub topics: Option<Vec<String>>,
    pub allow_auto_topic_creation: bool,
}

pub fn decode_metadata(body: &[u8], version: i16) -> Result<MetadataRequest, DecodeError> {
    let mut reader = reader_of(body, api::METADATA, version);
    let least = least(&reader);
    let topic_bytes = least.string + least.tags + if version >= 10 { 16 } else { 0 };
    let topics = nullable_array_of(&mut reader, TOPICS_PER_REQUEST_MAX, topic_bytes, |reader| {
        let name = if version >= 10 {
            reader.uuid()?;
            // A null name asks by topic id, which v10 and v11 must not do
            // (Kafka's schema): it reads as "", which no topic is named.
            reader.nullable_string(TOPIC_NAME_WIRE_BYTES_MAX)?.unwrap_or("").to_owned()
        } else {
            topic(reader)?
        };
        reader.tags()?;
        Ok(name)
    })?;
    // v0: an empty array means every topic; v1+: null does.
    let topics = match topics {
        Some(topics) if version == 0 && topics.is_empty() => None,
        other => other,
    };
    let allow_auto_topic_creation = if version >= 4 { reader.bool()? } else { true };
    if (8..=10).contains(&version) {
        reader.bool()?; // include cluster authorized operations
    }
    if version >= 8 {
        reader.bool()?; // include topic authorized operations
    }
    end(reader)?;
    Ok(MetadataRequest { topics, allow_auto_topic_creation })
}

pub struct Broker<'a> {
    pub node_id: i32,
    pub host: &'a str,
    pub port: i32,
}

pub struct TopicMetadata {
    pub error: i16,
    pub name: String,
    /// Each partition's leader node.
    pub leaders: Vec<i32>,
}

/// Authorized operations not reported (Kafka's sentinel).
pub const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;
/// The cluster id ringmq reports.
pub const CLUSTER_ID: &str = "ringmq";

pub fn encode_metadata(
    writer: &mut Writer,
    version: i16,
    brokers: &[Broker<'_>],
    controller: i32,
    topics: &[TopicMetadata],
) {
    if version >= 3 {
        writer.i32(0);
    }
    writer.array(brokers.len());
    for broker in brokers {
        writer.i32(broker.node_id);
        writer.string(broker.host);
        writer.i32(broker.port);
        if version >= 1 {
            writer.nullable_string(None);
        }
        writer.tags();
    }
    if version >= 2 {
        writer.nullable_string(Some(CLUSTER_ID));
    }
    if version >= 1 {
        writer.i32(controller);
    }
    writer.array(topics.len());
    for topic in topics {
        writer.i16(topic.error);
        writer.string(&topic.name);
        if version >= 10 {
            writer.uuid(&TOPIC_ID_NONE);
        }
        if version >= 1 {
            writer.bool(false);
        }
        writer.array(topic.leaders.len());
        for (index, &leader) in topic.leaders.iter().enumerate() {
            writer.i16(super::error::NONE);
            writer.i32(index as i32);
            writer.i32(leader);
            if version >= 7 {
                // Epoch 0 forever: clients validate offsets only when it rises.
                writer.i32(0);
            }
            writer.array(1);
            writer.i32(leader);
            writer.array(1);
            writer.i32(leader);
            if version >= 5 {
                writer.array(0);
            }
            writer.tags();
        }
        if version >= 8 {
            writer.i32(AUTHORIZED_OPERATIONS_OMITTED);
        }
        writer.tags();
    }
    if (8..=10).contains(&version) {
        writer.i32(AUTHORIZED_OPERATIONS_OMITTED);
    }
}

// -------------------------------------------------------------------- Produce

/// One partition's records: where they are in the request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducePartition {
    pub index: i32,
    /// Byte position of the records in the body, and their length (0: null or empty).
    pub position: usize,
    pub length: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceTopic {
    pub name: String,
    pub partitions: Vec<ProducePartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceRequest {
    pub transactional_id: Option<String>,
    pub acks: i16,
    pub timeout_ms: i32,
    pub topics: Vec<ProduceTopic>,
}

pub fn decode_produce(body: &[u8], version: i16) -> Result<ProduceRequest, DecodeError> {
    let mut reader = reader_of(body, api::PRODUCE, version);
    let least = least(&reader);
    let transactional_id = if version >= 3 { nullable_name(&mut reader)? } else { None };
    let acks = reader.i16()?;
    let timeout_ms = reader.i32()?;
    let topic_bytes = least.string + least.count + least.tags;
    let partition_bytes = 4 + least.count + least.tags;
    let topics = structs_of(&mut reader, TOPICS_PER_REQUEST_MAX, topic_bytes, |reader| {
        let name = topic(reader)?;
        let partitions = structs_of(reader, PARTITIONS_PER_REQUEST_MAX, partition_bytes, |reader| {
            let index = reader.i32()?;
            let records = reader.nullable_bytes(super::REQUEST_BYTES_MAX)?.unwrap_or(&[]);
            Ok(ProducePartition { index, position: reader.consumed() - records.len(), length: records.len() })
        })?;
        Ok(ProduceTopic { name, partitions })
    })?;
    end(reader)?;
    Ok(ProduceRequest { transactional_id, acks, timeout_ms, topics })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducePartitionResult {
    pub index: i32,
    pub error: i16,
    pub base_offset: i64,
    pub log_start_offset: i64,
}

/// v10's tagged CurrentLeader and NodeEndpoints (KIP-951) are left out: they
/// are sent by Kafka only with NOT_LEADER_OR_FOLLOWER, and a ringmq partition
/// never moves.
pub fn encode_produce(writer: &mut Writer, version: i16, topics: &[(String, Vec<ProducePartitionResult>)]) {
    writer.array(topics.len());
    for (name, partitions) in topics {
        writer.string(name);
        writer.array(partitions.len());
        for partition in partitions {
            writer.i32(partition.index);
            writer.i16(partition.error);
            writer.i64(partition.base_offset);
            if version >= 2 {
                writer.i64(-1); // log append time: ringmq keeps CreateTime
            }
            if version >= 5 {
                writer.i64(partition.log_start_offset);
            }
            if version >= 8 {
                writer.array(0);
                writer.nullable_string(None);
            }
            writer.tags();
        }
        writer.tags();
    }
    if version >= 1 {
        writer.i32(0);
    }
}

// ---------------------------------------------------------------------- Fetch

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartition {
    pub partition: i32,
    pub fetch_offset: i64,
    pub partition_max_bytes: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    pub max_wait_ms: i32,
    pub min_bytes: i32,
    pub max_bytes: i32,
    pub isolation_level: i8,
    pub topics: Vec<(String, Vec<FetchPartition>)>,
}

pub fn decode_fetch(body: &[u8], version: i16) -> Result<FetchRequest, DecodeError> {
    let mut reader = reader_of(body, api::FETCH, version);
    let least = least(&reader);
    let _replica_id = reader.i32()?;
    let max_wait_ms = reader.i32()?;
    let min_bytes = reader.i32()?;
    let max_bytes = if version >= 3 { reader.i32()? } else { i32::MAX };
    let isolation_level = if version >= 4 { reader.i8()? } else { 0 };
    if version >= 7 {
        let _session_id = reader.i32()?;
        let _session_epoch = reader.i32()?;
    }
    let partition_bytes = 16
        + if version >= 5 { 8 } else { 0 }
        + if version >= 9 { 4 } else { 0 }
        + if version >= 12 { 4 } else { 0 }
        + least.tags;
    let topic_bytes = least.string + least.count + least.tags;
    let topics = structs_of(&mut reader, TOPICS_PER_REQUEST_MAX, topic_bytes, |reader| {
        let name = topic(reader)?;
        let partitions = structs_of(reader, PARTITIONS_PER_REQUEST_MAX, partition_bytes, |reader| {
            let partition = reader.i32()?;
            if version >= 9 {
                let _current_leader_epoch = reader.i32()?;
            }
            let fetch_offset = reader.i64()?;
            if version >= 12 {
                let _last_fetched_epoch = reader.i32()?;
            }
            if version >= 5 {
                let _log_start_offset = reader.i64()?;
            }
            Ok(FetchPartition { partition, fetch_offset, partition_max_bytes: reader.i32()? })
        })?;
        Ok((name, partitions))
    })?;
    if version >= 7 {
        // Fetch sessions are declined (session id 0 is always answered), so a
        // forgotten-topics list has nothing to forget.
        structs_of(&mut reader, TOPICS_PER_REQUEST_MAX, topic_bytes, |reader| {
            topic(reader)?;
            partition_indexes(reader)
        })?;
    }
    if version >= 11 {
        reader.string(NAME_BYTES_MAX)?;
    }
    end(reader)?;
    Ok(FetchRequest { max_wait_ms, min_bytes, max_bytes, isolation_level, topics })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPartitionHead {
    pub index: i32,
    pub error: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// Bytes of records that follow this head (in their own buffer).
    pub records_bytes: usize,
}

pub fn encode_fetch_start(writer: &mut Writer, version: i16, topic_count: usize) {
    if version >= 1 {
        writer.i32(0);
    }
    if version >= 7 {
        writer.i16(super::error::NONE);
        writer.i32(0); // session id: sessions declined
    }
    writer.array(topic_count);
}

pub fn encode_fetch_topic(writer: &mut Writer, name: &str, partition_count: usize) {
    writer.string(name);
    writer.array(partition_count);
}

/// A partition's fields up to its records' length; the records follow, then
/// (flexible) the partition's tag section, [`encode_fetch_struct_end`].
pub fn encode_fetch_partition(writer: &mut Writer, version: i16, head: &FetchPartitionHead) {
    writer.i32(head.index);
    writer.i16(head.error);
    writer.i64(head.high_watermark);
    if version >= 4 {
        // Last stable offset = high watermark: no transactions are open.
        writer.i64(head.high_watermark);
    }
    if version >= 5 {
        writer.i64(head.log_start_offset);
    }
    if version >= 4 {
        writer.array(0); // aborted transactions
    }
    if version >= 11 {
        writer.i32(-1); // preferred read replica
    }
    writer.bytes_length(head.records_bytes);
}

/// The end of a partition (after its records) or of a topic (after its
/// partitions): an empty tag section in flexible versions (v12 's tagged
/// DivergingEpoch, CurrentLeader and SnapshotId concern replication).
pub fn encode_fetch_struct_end(writer: &mut Writer) {
    writer.tags();
}

// ---------------------------------------------------------------- ListOffsets

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsRequest {
    pub isolation_level: i8,
    /// topic, [(partition, timestamp query)]
    pub topics: Vec<(String, Vec<(i32, i64)>)>,
}

pub fn decode_list_offsets(body: &[u8], version: i16) -> Result<ListOffsetsRequest, DecodeError> {
    let mut reader = reader_of(body, api::LIST_OFFSETS, version);
    let least = least(&reader);
    let _replica_id = reader.i32()?;
    let isolation_level = if version >= 2 { reader.i8()? } else { 0 };
    let partition_bytes = 12 + if version >= 4 { 4 } else { 0 } + least.tags;
    let topic_bytes = least.string + least.count + least.tags;
    let topics = structs_of(&mut reader, TOPICS_PER_REQUEST_MAX, topic_bytes, |reader| {
        let name = topic(reader)?;
        let partitions = structs_of(reader, PARTITIONS_PER_REQUEST_MAX, partition_bytes, |reader| {
            let index = reader.i32()?;
            if version >= 4 {
                let _current_leader_epoch = reader.i32()?;
            }
            Ok((index, reader.i64()?))
        })?;
        Ok((name, partitions))
    })?;
    end(reader)?;
    Ok(ListOffsetsRequest { isolation_level, topics })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    pub index: i32,
    pub error: i16,
    pub timestamp: i64,
    pub offset: i64,
}

pub fn encode_list_offsets(writer: &mut Writer, version: i16, topics: &[(String, Vec<ListedOffset>)]) {
    if version >= 2 {
        writer.i32(0);
    }
    writer.array(topics.len());
    for (name, partitions) in topics {
        writer.string(name);
        writer.array(partitions.len());
        for partition in partitions {
            writer.i32(partition.index);
            writer.i16(partition.error);
            writer.i64(partition.timestamp);
            writer.i64(partition.offset);
            if version >= 4 {
                writer.i32(0);
            }
            writer.tags();
        }
        writer.tags();
    }
}

// ------------------------------------------------------------ FindCoordinator

/// FindCoordinator's key type for a transactional id.
pub const KEY_TYPE_TRANSACTION: i8 = 1;

/// FindCoordinator: the keys asked about (one before v4) and their type.
pub fn decode_find_coordinator(body: &[u8], version: i16) -> Result<(Vec<String>, i8), DecodeError> {
    let mut reader = reader_of(body, api::FIND_COORDINATOR, version);
    let (keys, key_type) = if version >= 4 {
        let key_type = reader.i8()?;
        (names(&mut reader, COORDINATOR_KEYS_MAX)?, key_type)
    } else {
        let key = name(&mut reader)?;
        (vec![key], if version >= 1 { reader.i8()? } else { 0 })
    };
    end(reader)?;
    Ok((keys, key_type))
}

/// One answer for all `keys` (the one broker coordinates every group).
pub fn encode_find_coordinator(
    writer: &mut Writer,
    version: i16,
    keys: &[String],
    error: i16,
    message: Option<&str>,
    broker: &Broker<'_>,
) {
    if version >= 1 {
        writer.i32(0);
    }
    if version >= 4 {
        writer.array(keys.len());
        for key in keys {
            writer.string(key);
            writer.i32(broker.node_id);
            writer.string(broker.host);
            writer.i32(broker.port);
            writer.i16(error);
            writer.nullable_string(message);
            writer.tags();
        }
        return;
    }
    writer.i16(error);
    if version >= 1 {
        writer.nullable_string(message);
    }
    writer.i32(broker.node_id);
    writer.string(broker.host);
    writer.i32(broker.port);
}

// ------------------------------------------------------------- InitProducerId

/// InitProducerId: the transactional id. The producer id and epoch of v3+
/// (a producer asking to bump its epoch) are read and not used: ringmq
/// answers every idempotent producer with a fresh id at epoch 0, which
/// clients take as a reset of their sequences.
pub fn decode_init_producer_id(body: &[u8], version: i16) -> Result<Option<String>, DecodeError> {
    let mut reader = reader_of(body, api::INIT_PRODUCER_ID, version);
    let transactional_id = nullable_name(&mut reader)?;
    let _transaction_timeout_ms = reader.i32()?;
    if version >= 3 {
        let _producer_id = reader.i64()?;
        let _producer_epoch = reader.i16()?;
    }
    end(reader)?;
    Ok(transactional_id)
}

pub fn encode_init_producer_id(writer: &mut Writer, error: i16, producer_id: i64, epoch: i16) {
    writer.i32(0);
    writer.i16(error);
    writer.i64(producer_id);
    writer.i16(epoch);
}

// ---------------------------------------------------- OffsetCommit, OffsetFetch

/// One partition of an OffsetCommit: index, offset, metadata.
pub type CommittedPartition = (i32, i64, String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitRequest {
    pub group: String,
    pub generation: i32,
    pub member_id: String,
    pub topics: Vec<(String, Vec<CommittedPartition>)>,
}

pub fn decode_offset_commit(body: &[u8], version: i16) -> Result<OffsetCommitRequest, DecodeError> {
    let mut reader = reader_of(body, api::OFFSET_COMMIT, version);
    let least = least(&reader);
    let group = name(&mut reader)?;
    let generation = reader.i32()?;
    let member_id = name(&mut reader)?;
    if version >= 7 {
        let _group_instance_id = nullable_name(&mut reader)?;
    }
    if (2..=4).contains(&version) {
        let _retention_time_ms = reader.i64()?;
    }
    let partition_bytes = 12 + least.string + if version >= 6 { 4 } else { 0 } + least.tags;
    let topic_bytes = least.string + least.count + least.tags;
    let topics = structs_of(&mut reader, TOPICS_PER_REQUEST_MAX, topic_bytes, |reader| {
        let name = topic(reader)?;
        let partitions = structs_of(reader, PARTITIONS_PER_REQUEST_MAX, partition_bytes, |reader| {
            let index = reader.i32()?;
            let offset = reader.i64()?;
            if version >= 6 {
                let _committed_leader_epoch = reader.i32()?;
            }
            let metadata = reader.nullable_string(COMMIT_METADATA_BYTES_MAX)?.unwrap_or("").to_owned();
            Ok((index, offset, metadata))
        })?;
        Ok((name, partitions))
    })?;
    end(reader)?;
    Ok(OffsetCommitRequest { group, generation, member_id, topics })
}

pub fn encode_offset_commit(writer: &mut Writer, version: i16, topics: &[(String, Vec<(i32, i16)>)]) {
    if version >= 3 {
        writer.i32(0);
    }
    writer.array(topics.len());
    for (name, partitions) in topics {
        writer.string(name);
        writer.array(partitions.len());
        for &(index, error) in partitions {
            writer.i32(index);
            writer.i16(error);
            writer.tags();
        }
        writer.tags();
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchRequest {
    pub group: String,
    /// `None`: every partition with a committed offset.
    pub topics: Option<Vec<(String, Vec<i32>)>>,
}

/// OffsetFetch up to v7 (one group per request; v7's require_stable is read
/// and needs nothing: ringmq has no transactions, so no offset is unstable).
pub fn decode_offset_fetch(body: &[u8], version: i16) -> Result<OffsetFetchRequest, DecodeError> {
    let mut reader = reader_of(body, api::OFFSET_FETCH, version);
    let least = least(&reader);
    let group = name(&mut reader)?;
    let topic_bytes = least.string + least.count + least.tags;
    let topics = nullable_array_of(&mut reader, TOPICS_PER_REQUEST_MAX, topic_bytes, |reader| {
        let topic = (topic(reader)?, partition_indexes(reader)?);
        reader.tags()?;
        Ok(topic)
    })?;
    if version >= 7 {
        let _require_stable = reader.bool()?;
    }
    end(reader)?;
    Ok(OffsetFetchRequest { group, topics })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    pub index: i32,
    pub offset: i64,
    pub metadata: String,
    pub error: i16,
}

pub fn encode_offset_fetch(writer: &mut Writer, version: i16, topics: &[(String, Vec<FetchedOffset>)], error: i16) {
    if version >= 3 {
        writer.i32(0);
    }
    writer.array(topics.len());
    for (name, partitions) in topics {
        writer.string(name);
        writer.array(partitions.len());
        for partition in partitions {
            writer.i32(partition.index);
            writer.i64(partition.offset);
            if version >= 5 {
                writer.i32(-1);
            }
            writer.nullable_string(Some(&partition.metadata));
            writer.i16(partition.error);
            writer.tags();
        }
        writer.tags();
    }
    if version >= 2 {
        writer.i16(error);
    }
}

// ------------------------------------------------------- CreateTopics, Delete

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatableTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    /// Explicit replica assignments: (partition, replica broker ids).
    pub assignments: Vec<(i32, Vec<i32>)>,
    pub configs: Vec<(String, Option<String>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTopicsRequest {
    pub topics: Vec<CreatableTopic>,
    pub validate_only: bool,
}

pub fn decode_create_topics(body: &[u8], version: i16) -> Result<CreateTopicsRequest, DecodeError> {
    let mut reader = reader_of(body, api::CREATE_TOPICS, version);
    let least = least(&reader);
    let topic_bytes = least.string + 6 + 2 * least.count + least.tags;
    let assignment_bytes = 4 + least.count + least.tags;
    let config_bytes = 2 * least.string + least.tags;
    let topics = structs_of(&mut reader, TOPICS_PER_REQUEST_MAX, topic_bytes, |reader| {
        let topic_name = topic(reader)?;
        let partitions = reader.i32()?;
        let replication_factor = reader.i16()?;
        let assignments = structs_of(reader, PARTITIONS_PER_REQUEST_MAX, assignment_bytes, |reader| {
            let partition = reader.i32()?;
            Ok((partition, array_of(reader, REPLICAS_PER_PARTITION_MAX, 4, |r| r.i32())?))
        })?;
        let configs = structs_of(reader, CONFIG_ENTRIES_MAX, config_bytes, |reader| {
            Ok((name(reader)?, reader.nullable_string(CONFIG_VALUE_BYTES_MAX)?.map(str::to_owned)))
        })?;
        Ok(CreatableTopic { name: topic_name, partitions, replication_factor, assignments, configs })
    })?;
    let _timeout_ms = reader.i32()?;
    let validate_only = if version >= 1 { reader.bool()? } else { false };
    end(reader)?;
    Ok(CreateTopicsRequest { topics, validate_only })
}

/// One topic's CreateTopics answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedTopic {
    pub name: String,
    pub error: i16,
    pub message: Option<String>,
    /// The partition count (v5+; -1 when refused).
    pub partitions: i32,
}

pub fn encode_create_topics(writer: &mut Writer, version: i16, results: &[CreatedTopic]) {
    if version >= 2 {
        writer.i32(0);
    }
    writer.array(results.len());
    for result in results {
        writer.string(&result.name);
        writer.i16(result.error);
        if version >= 1 {
            writer.nullable_string(result.message.as_deref());
        }
        if version >= 5 {
            writer.i32(result.partitions);
            writer.i16(if result.error == super::error::NONE { 1 } else { -1 }); // replication factor
                                                                                 // The topic's configs (KIP-525) are null, as Kafka answers a
                                                                                 // client not allowed to describe them: DescribeConfigs has them.
            writer.null_array();
        }
        writer.tags();
    }
}

pub fn decode_delete_topics(body: &[u8], version: i16) -> Result<Vec<String>, DecodeError> {
    let mut reader = reader_of(body, api::DELETE_TOPICS, version);
    let string = least(&reader).string;
    let names = array_of(&mut reader, TOPICS_PER_REQUEST_MAX, string, topic)?;
    let _timeout_ms = reader.i32()?;
    end(reader)?;
    Ok(names)
}

pub fn encode_delete_topics(writer: &mut Writer, version: i16, results: &[(String, i16)]) {
    if version >= 1 {
        writer.i32(0);
    }
    writer.array(results.len());
    for (name, error) in results {
        writer.string(name);
        writer.i16(*error);
        if version >= 5 {
            writer.nullable_string(None);
        }
        writer.tags();
    }
}

// ------------------------------------------------------------ DescribeConfigs

/// DescribeConfigs resource types.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigResource {
    pub resource_type: i8,
    pub name: String,
    /// `None`: every key.
    pub keys: Option<Vec<String>>,
}

pub fn decode_describe_configs(body: &[u8], version: i16) -> Result<Vec<ConfigResource>, DecodeError> {
    let mut reader = reader_of(body, api::DESCRIBE_CONFIGS, version);
    let least = least(&reader);
    let resource_bytes = 1 + least.string + least.count + least.tags;
    let resources = structs_of(&mut reader, TOPICS_PER_REQUEST_MAX, resource_bytes, |reader| {
        let resource_type = reader.i8()?;
        let resource_name = name(reader)?;
        let keys = nullable_array_of(reader, CONFIG_ENTRIES_MAX, least.string, name)?;
        Ok(ConfigResource { resource_type, name: resource_name, keys })
    })?;
    if version >= 1 {
        reader.bool()?;
    }
    if version >= 3 {
        reader.bool()?;
    }
    end(reader)?;
    Ok(resources)
}

/// Where a config value comes from (DescribeConfigs' config_source).
pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;
/// DescribeConfigs v3 config types.
pub const CONFIG_TYPE_STRING: i8 = 2;
pub const CONFIG_TYPE_INT: i8 = 3;
pub const CONFIG_TYPE_LONG: i8 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: &'static str,
    pub value: String,
    pub source: i8,
    pub config_type: i8,
}

pub struct DescribedResource<'a> {
    pub error: i16,
    pub message: Option<&'a str>,
    pub resource_type: i8,
    pub name: &'a str,
    pub configs: Vec<ConfigEntry>,
}

pub fn encode_describe_configs(writer: &mut Writer, version: i16, results: &[DescribedResource<'_>]) {
    writer.i32(0);
    writer.array(results.len());
    for result in results {
        writer.i16(result.error);
        writer.nullable_string(result.message);
        writer.i8(result.resource_type);
        writer.string(result.name);
        writer.array(result.configs.len());
        for config in &result.configs {
            writer.string(config.name);
            writer.nullable_string(Some(&config.value));
            writer.bool(true); // read only: ringmq has no AlterConfigs
            writer.i8(config.source);
            writer.bool(false);
            writer.array(0); // synonyms
            if version >= 3 {
                writer.i8(config.config_type);
                writer.nullable_string(None);
            }
            writer.tags();
        }
        writer.tags();
    }
}

// --------------------------------------------------------------------- Groups

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupRequest {
    pub group: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub member_id: String,
    pub protocol_type: String,
    /// (name, metadata)
    pub protocols: Vec<(String, Vec<u8>)>,
}

pub fn decode_join_group(body: &[u8], version: i16) -> Result<JoinGroupRequest, DecodeError> {
    let mut reader = reader_of(body, api::JOIN_GROUP, version);
    let least = least(&reader);
    let group = name(&mut reader)?;
    let session_timeout_ms = reader.i32()?;
    let rebalance_timeout_ms = if version >= 1 { reader.i32()? } else { session_timeout_ms };
    let member_id = name(&mut reader)?;
    if version >= 5 {
        let _group_instance_id = nullable_name(&mut reader)?;
    }
    let protocol_type = name(&mut reader)?;
    let protocol_bytes = least.string + least.count + least.tags;
    let protocols = structs_of(&mut reader, GROUP_ENTRIES_MAX, protocol_bytes, |reader| {
        Ok((name(reader)?, reader.bytes(GROUP_BLOB_BYTES_MAX)?.to_vec()))
    })?;
    if version >= 8 {
        let _reason = nullable_name(&mut reader)?;
    }
    end(reader)?;
    Ok(JoinGroupRequest { group, session_timeout_ms, rebalance_timeout_ms, member_id, protocol_type, protocols })
}

pub struct JoinGroupAnswer<'a> {
    pub error: i16,
    pub generation: i32,
    /// The group's protocol type (v7+); `None` on an error.
    pub protocol_type: Option<&'a str>,
    pub protocol_name: &'a str,
    pub leader: &'a str,
    pub member_id: &'a str,
    /// (member id, metadata): filled for the leader only.
    pub members: &'a [(String, Vec<u8>)],
}

pub fn encode_join_group(writer: &mut Writer, version: i16, answer: &JoinGroupAnswer<'_>) {
    if version >= 2 {
        writer.i32(0);
    }
    writer.i16(answer.error);
    writer.i32(answer.generation);
    if version >= 7 {
        writer.nullable_string(answer.protocol_type);
        // Kafka answers a refused join with a null protocol name from v7 on.
        writer.nullable_string(answer.protocol_type.map(|_| answer.protocol_name));
    } else {
        writer.string(answer.protocol_name);
    }
    writer.string(answer.leader);
    if version >= 9 {
        writer.bool(false); // skip assignment: the leader always assigns
    }
    writer.string(answer.member_id);
    writer.array(answer.members.len());
    for (member_id, metadata) in answer.members {
        writer.string(member_id);
        if version >= 5 {
            writer.nullable_string(None);
        }
        writer.bytes(metadata);
        writer.tags();
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroupRequest {
    pub group: String,
    pub generation: i32,
    pub member_id: String,
    /// (member id, assignment): sent by the leader.
    pub assignments: Vec<(String, Vec<u8>)>,
}

pub fn decode_sync_group(body: &[u8], version: i16) -> Result<SyncGroupRequest, DecodeError> {
    let mut reader = reader_of(body, api::SYNC_GROUP, version);
    let least = least(&reader);
    let group = name(&mut reader)?;
    let generation = reader.i32()?;
    let member_id = name(&mut reader)?;
    if version >= 3 {
        let _group_instance_id = nullable_name(&mut reader)?;
    }
    if version >= 5 {
        let _protocol_type = nullable_name(&mut reader)?;
        let _protocol_name = nullable_name(&mut reader)?;
    }
    let assignment_bytes = least.string + least.count + least.tags;
    let assignments = structs_of(&mut reader, GROUP_ENTRIES_MAX, assignment_bytes, |reader| {
        Ok((name(reader)?, reader.bytes(GROUP_BLOB_BYTES_MAX)?.to_vec()))
    })?;
    end(reader)?;
    Ok(SyncGroupRequest { group, generation, member_id, assignments })
}

/// SyncGroup v5's protocol type and name are answered null, which clients
/// take as consistent (Kafka fills them from the group; the member has them
/// from its JoinGroup answer).
pub fn encode_sync_group(writer: &mut Writer, version: i16, error: i16, assignment: &[u8]) {
    if version >= 1 {
        writer.i32(0);
    }
    writer.i16(error);
    if version >= 5 {
        writer.nullable_string(None);
        writer.nullable_string(None);
    }
    writer.bytes(assignment);
}

/// Heartbeat: (group, generation, member id).
pub fn decode_heartbeat(body: &[u8], version: i16) -> Result<(String, i32, String), DecodeError> {
    let mut reader = reader_of(body, api::HEARTBEAT, version);
    let group = name(&mut reader)?;
    let generation = reader.i32()?;
    let member_id = name(&mut reader)?;
    if version >= 3 {
        let _group_instance_id = nullable_name(&mut reader)?;
    }
    end(reader)?;
    Ok((group, generation, member_id))
}

/// The response of Heartbeat and of LeaveGroup 0–2: throttle (v1+) and an error.
pub fn encode_error_only(writer: &mut Writer, version: i16, error: i16) {
    if version >= 1 {
        writer.i32(0);
    }
    writer.i16(error);
}

/// LeaveGroup: (group, member ids leaving).
pub fn decode_leave_group(body: &[u8], version: i16) -> Result<(String, Vec<String>), DecodeError> {
    let mut reader = reader_of(body, api::LEAVE_GROUP, version);
    let least = least(&reader);
    let group = name(&mut reader)?;
    let members = if version >= 3 {
        structs_of(&mut reader, GROUP_ENTRIES_MAX, 2 * least.string + least.tags, |reader| {
            let member_id = name(reader)?;
            let _group_instance_id = nullable_name(reader)?;
            if version >= 5 {
                let _reason = nullable_name(reader)?;
            }
            Ok(member_id)
        })?
    } else {
        vec![name(&mut reader)?]
    };
    end(reader)?;
    Ok((group, members))
}

pub fn encode_leave_group(writer: &mut Writer, version: i16, error: i16, members: &[(String, i16)]) {
    encode_error_only(writer, version, error);
    if version >= 3 {
        writer.array(members.len());
        for (member_id, error) in members {
            writer.string(member_id);
            writer.nullable_string(None);
            writer.i16(*error);
            writer.tags();
        }
    }
}

pub fn decode_list_groups(body: &[u8], version: i16) -> Result<(), DecodeError> {
    end(reader_of(body, api::LIST_GROUPS, version))
}

pub fn encode_list_groups(writer: &mut Writer, version: i16, error: i16, groups: &[(String, String)]) {
    if version >= 1 {
        writer.i32(0);
    }
    writer.i16(error);
    writer.array(groups.len());
    for (group, protocol_type) in groups {
        writer.string(group);
        writer.string(protocol_type);
        writer.tags();
    }
}

pub fn decode_describe_groups(body: &[u8], version: i16) -> Result<Vec<String>, DecodeError> {
    let mut reader = reader_of(body, api::DESCRIBE_GROUPS, version);
    let groups = names(&mut reader, GROUP_ENTRIES_MAX)?;
    if version >= 3 {
        reader.bool()?;
    }
    end(reader)?;
    Ok(groups)
}

pub use crate::groups::classic::DescribedMember;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedGroup {
    pub error: i16,
    pub group: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<DescribedMember>,
}

pub fn encode_describe_groups(writer: &mut Writer, version: i16, groups: &[DescribedGroup]) {
    if version >= 1 {
        writer.i32(0);
    }
    writer.array(groups.len());
    for group in groups {
        writer.i16(group.error);
        writer.string(&group.group);
        writer.string(&group.state);
        writer.string(&group.protocol_type);
        writer.string(&group.protocol);
        writer.array(group.members.len());
        for member in &group.members {
            writer.string(&member.member_id);
            if version >= 4 {
                writer.nullable_string(None);
            }
            writer.string(&member.client_id);
            writer.string(&member.client_host);
            writer.bytes(&member.metadata);
            writer.bytes(&member.assignment);
            writer.tags();
        }
        if version >= 3 {
            writer.i32(AUTHORIZED_OPERATIONS_OMITTED);
        }
        writer.tags();
    }
}

/// The topics of a `consumer` protocol subscription (ConsumerProtocolSubscription,
/// any version: the topics come first; the consumer protocol is never flexible).
pub fn subscription_topics(metadata: &[u8]) -> Result<Vec<String>, DecodeError> {
    let mut reader = Reader::new(metadata, false);
    let _version = reader.i16()?;
    array_of(&mut reader, TOPICS_PER_REQUEST_MAX, 2, topic)
}

/// The partitions of a `consumer` protocol assignment (ConsumerProtocolAssignment).
pub fn assignment_partitions(assignment: &[u8]) -> Result<Vec<(String, Vec<i32>)>, DecodeError> {
    if assignment.is_empty() {
        return Ok(Vec::new());
    }
    let mut reader = Reader::new(assignment, false);
    let _version = reader.i16()?;
    array_of(&mut reader, TOPICS_PER_REQUEST_MAX, 6, |reader| Ok((topic(reader)?, partition_indexes(reader)?)))
}

// ------------------------------------------------------------------- SASL

/// SaslHandshake 1: the mechanism the client wants.
pub fn decode_sasl_handshake(body: &[u8], version: i16) -> Result<String, DecodeError> {
    let mut reader = reader_of(body, api::SASL_HANDSHAKE, version);
    let mechanism = reader.string(MECHANISM_BYTES_MAX)?.to_owned();
    end(reader)?;
    Ok(mechanism)
}

/// Longest SASL mechanism name read.
pub const MECHANISM_BYTES_MAX: usize = 32;

pub fn encode_sasl_handshake(writer: &mut Writer, error: i16, mechanisms: &[&str]) {
    writer.i16(error);
    writer.array(mechanisms.len());
    for mechanism in mechanisms {
        writer.string(mechanism);
    }
}

/// SaslAuthenticate 0–2: the client's SASL message.
pub fn decode_sasl_authenticate(body: &[u8], version: i16) -> Result<Vec<u8>, DecodeError> {
    let mut reader = reader_of(body, api::SASL_AUTHENTICATE, version);
    let message = reader.bytes(crate::security::scram::SASL_MESSAGE_BYTES_MAX)?.to_vec();
    end(reader)?;
    Ok(message)
}

pub fn encode_sasl_authenticate(writer: &mut Writer, version: i16, error: i16, message: Option<&str>, bytes: &[u8]) {
    writer.i16(error);
    writer.nullable_string(message);
    writer.bytes(bytes);
    if version >= 1 {
        writer.i64(0); // session_lifetime_ms: sessions do not expire
    }
    writer.tags();
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn produce_records_are_positions_in_the_body() {
        let mut writer = Writer::new(false);
        writer.nullable_string(None);
        writer.i16(-1);
        writer.i32(1000);
        writer.array(1);
        writer.string("t");
        writer.array(2);
        writer.i32(0);
        writer.bytes(b"batch-zero");
        writer.i32(1);
        writer.null_bytes();
        let body = writer.into_inner();
        let request = decode_produce(&body, 7).unwrap();
        let partition = &request.topics[0].partitions[0];
        assert_eq!(&body[partition.position..partition.position + partition.length], b"batch-zero");
        assert_eq!(request.topics[0].partitions[1].length, 0);
        assert_eq!(request.acks, -1);
    }

    #[test]
    fn a_metadata_request_with_a_huge_topic_count_is_refused() {
        // PR #152's shape: an 8-byte body whose count asks for billions of topics.
        assert!(decode_metadata(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0], 1).is_err());
        assert!(decode_metadata(&[0xff, 0xff, 0xff, 0xff], 1).unwrap().topics.is_none());
        assert!(decode_metadata(&[0, 0, 0, 0], 0).unwrap().topics.is_none());
        assert_eq!(decode_metadata(&[0, 0, 0, 0], 1).unwrap().topics, Some(vec![]));
    }

    #[test]
    fn truncated_requests_of_every_api_are_errors_not_panics() {
        let mut writer = Writer::new(false);
        for _ in 0..64 {
            writer.i32(1);
        }
        let bytes = writer.into_inner();
        for cut in 0..bytes.len() {
            let body = &bytes[..cut];
            for version in 0..16 {
                let _ = decode_metadata(body, version);
                let _ = decode_produce(body, version);
                let _ = decode_fetch(body, version);
                let _ = decode_list_offsets(body, version);
                let _ = decode_offset_commit(body, version);
                let _ = decode_offset_fetch(body, version);
                let _ = decode_create_topics(body, version);
                let _ = decode_delete_topics(body, version);
                let _ = decode_describe_configs(body, version);
                let _ = decode_join_group(body, version);
                let _ = decode_sync_group(body, version);
                let _ = decode_heartbeat(body, version);
                let _ = decode_leave_group(body, version);
                let _ = decode_describe_groups(body, version);
                let _ = decode_find_coordinator(body, version);
                let _ = decode_init_producer_id(body, version);
                let _ = subscription_topics(body);
                let _ = assignment_partitions(body);
            }
        }
    }

    /// Every complete flexible request below decodes; each of its prefixes
    /// is refused (an error, never a panic or a wrong success).
    fn decodes_only_whole<T: std::fmt::Debug>(body: &[u8], decode: impl Fn(&[u8]) -> Result<T, DecodeError>) -> T {
        for cut in 0..body.len() {
            assert!(decode(&body[..cut]).is_err(), "a {cut}-byte prefix of {} decoded", body.len());
        }
        decode(body).unwrap()
    }

    #[test]
    fn flexible_produce_fetch_and_metadata_requests_decode_with_their_tags() {
        // Produce v9: compact strings, compact records, a tag section per struct.
        let mut w = Writer::new(true);
        w.nullable_string(None);
        w.i16(-1);
        w.i32(1000);
        w.array(1);
        w.string("t");
        w.array(1);
        w.i32(3);
        w.bytes(b"batch");
        w.tags();
        w.tags();
        w.raw(&[1, 0, 2, 0xab, 0xcd]); // a top-level tag section with one unknown field
        let body = w.into_inner();
        let request = decodes_only_whole(&body, |b| decode_produce(b, 9));
        let partition = &request.topics[0].partitions[0];
        assert_eq!(
            (partition.index, &body[partition.position..partition.position + partition.length]),
            (3, &b"batch"[..])
        );

        // Fetch v12: last_fetched_epoch, tags per partition and topic, rack id, cluster id tag.
        let mut w = Writer::new(true);
        for value in [-1, 500, 1, 1 << 20] {
            w.i32(value);
        }
        w.i8(0);
        w.i32(0);
        w.i32(-1);
        w.array(1);
        w.string("t");
        w.array(1);
        w.i32(2);
        w.i32(-1);
        w.i64(42);
        w.i32(-1);
        w.i64(-1);
        w.i32(4096);
        w.tags();
        w.tags();
        w.array(0);
        w.string("");
        w.raw(&[1, 0, 1, 0]); // cluster_id (tag 0): null
        let request = decodes_only_whole(&w.into_inner(), |b| decode_fetch(b, 12));
        assert_eq!(
            request.topics,
            vec![("t".to_string(), vec![FetchPartition { partition: 2, fetch_offset: 42, partition_max_bytes: 4096 }])]
        );

        // Metadata v10: a topic id before each name; v11 drops the cluster-operations flag.
        for version in [9, 10, 11] {
            let mut w = Writer::new(true);
            w.array(1);
            if version >= 10 {
                w.uuid(&[7; 16]);
            }
            w.string("orders");
            w.tags();
            w.bool(false);
            if version <= 10 {
                w.bool(false);
            }
            w.bool(false);
            w.tags();
            let request = decodes_only_whole(&w.into_inner(), |b| decode_metadata(b, version));
            assert_eq!(request.topics, Some(vec!["orders".to_string()]), "v{version}");
            assert!(!request.allow_auto_topic_creation);
        }
    }

    #[test]
    fn flexible_group_requests_decode_with_their_new_fields() {
        // JoinGroup v8: reason after the protocols.
        let mut w = Writer::new(true);
        w.string("g");
        w.i32(10_000);
        w.i32(30_000);
        w.string("");
        w.nullable_string(None);
        w.string("consumer");
        w.array(1);
        w.string("range");
        w.bytes(&[0, 1]);
        w.tags();
        w.nullable_string(Some("joining"));
        w.tags();
        let join = decodes_only_whole(&w.into_inner(), |b| decode_join_group(b, 8));
        assert_eq!(
            (join.group.as_str(), join.protocols.len(), join.protocols[0].1.as_slice()),
            ("g", 1, &[0u8, 1][..])
        );

        // SyncGroup v5: protocol type and name before the assignments.
        let mut w = Writer::new(true);
        w.string("g");
        w.i32(3);
        w.string("m-1");
        w.nullable_string(None);
        w.nullable_string(Some("consumer"));
        w.nullable_string(Some("range"));
        w.array(1);
        w.string("m-1");
        w.bytes(b"assignment");
        w.tags();
        w.tags();
        let sync = decodes_only_whole(&w.into_inner(), |b| decode_sync_group(b, 5));
        assert_eq!(sync.assignments, vec![("m-1".to_string(), b"assignment".to_vec())]);

        // LeaveGroup v5: a reason per member.
        let mut w = Writer::new(true);
        w.string("g");
        w.array(2);
        for member in ["a", "b"] {
            w.string(member);
            w.nullable_string(None);
            w.nullable_string(Some("bye"));
            w.tags();
        }
        w.tags();
        assert_eq!(decodes_only_whole(&w.into_inner(), |b| decode_leave_group(b, 5)).1, ["a", "b"]);

        // FindCoordinator v4: a key type, then a list of keys.
        let mut w = Writer::new(true);
        w.i8(0);
        w.array(2);
        w.string("g1");
        w.string("g2");
        w.tags();
        assert_eq!(
            decodes_only_whole(&w.into_inner(), |b| decode_find_coordinator(b, 4)),
            (vec!["g1".into(), "g2".into()], 0)
        );

        // OffsetFetch v7: require_stable; InitProducerId v4: producer id and epoch.
        let mut w = Writer::new(true);
        w.string("g");
        w.null_array();
        w.bool(true);
        w.tags();
        assert_eq!(decodes_only_whole(&w.into_inner(), |b| decode_offset_fetch(b, 7)).topics, None);
        let mut w = Writer::new(true);
        w.nullable_string(None);
        w.i32(60_000);
        w.i64(12);
        w.i16(3);
        w.tags();
        assert_eq!(decodes_only_whole(&w.into_inner(), |b| decode_init_producer_id(b, 4)), None);
    }

    #[test]
    fn array_minimums_do_not_refuse_the_smallest_valid_flexible_elements() {
        // 100 Produce topics, each with one partition and empty records: the
        // smallest elements there are; a minimum above them would refuse it.
        let mut w = Writer::new(true);
        w.nullable_string(None);
        w.i16(1);
        w.i32(0);
        w.array(100);
        for _ in 0..100 {
            w.string("");
            w.array(1);
            w.i32(0);
            w.null_bytes();
            w.tags();
            w.tags();
        }
        w.tags();
        assert_eq!(decode_produce(&w.into_inner(), 9).unwrap().topics.len(), 100);
        let mut w = Writer::new(true);
        w.array(50);
        for _ in 0..50 {
            w.string("");
        }
        w.bool(false);
        w.tags();
        assert_eq!(decode_describe_groups(&w.into_inner(), 5).unwrap().len(), 50);
    }

    #[test]
    fn flexible_responses_end_every_struct_with_a_tag_section() {
        let mut w = Writer::new(true);
        let topics = [TopicMetadata { error: 0, name: "t".into(), leaders: vec![0] }];
        encode_metadata(&mut w, 11, &[Broker { node_id: 0, host: "h", port: 9 }], 0, &topics);
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            &0i32.to_be_bytes()[..],             // throttle
            &[2], &0i32.to_be_bytes(), &[2, b'h'], &9i32.to_be_bytes(), &[0], &[0], // one broker, rack null, tags
            &[7], b"ringmq",                     // cluster id
            &0i32.to_be_bytes(),                 // controller
            &[2], &0i16.to_be_bytes(), &[2, b't'], &TOPIC_ID_NONE, &[0], // one topic: error, name, id, internal
            &[2], &0i16.to_be_bytes(), &0i32.to_be_bytes(), &0i32.to_be_bytes(), &0i32.to_be_bytes(),
            &[2], &0i32.to_be_bytes(), &[2], &0i32.to_be_bytes(), &[1], &[0], // replicas, isr, offline, tags
            &i32::MIN.to_be_bytes(), &[0],       // topic authorized operations, tags
        ].concat();
        assert_eq!(w.into_inner(), expected, "v11 has no cluster authorized operations");
    }
}
