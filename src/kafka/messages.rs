//! The Kafka messages ringmq serves: one decoder per request and one encoder
//! per response, each covering every advertised version (fields are read and
//! written under the version ranges of Kafka's JSON schemas). Requests borrow
//! from the frame; Produce's records stay positions in it, so the batches are
//! appended without a copy.

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

fn partition_indexes(reader: &mut Reader<'_>) -> Result<Vec<i32>, DecodeError> {
    array_of(reader, PARTITIONS_PER_REQUEST_MAX, 4, |r| r.i32())
}

// ---------------------------------------------------------------- ApiVersions

/// ApiVersions 0–3 (v3 carries the client's software name, skipped).
pub fn decode_api_versions(body: &[u8], version: i16, flexible: bool) -> Result<(), DecodeError> {
    let mut reader = Reader::new(body, flexible);
    if version >= 3 {
        reader.string(NAME_BYTES_MAX)?;
        reader.string(NAME_BYTES_MAX)?;
        reader.tags()?;
    }
    reader.finish()
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
    let mut reader = Reader::new(body, false);
    let topics = nullable_array_of(&mut reader, TOPICS_PER_REQUEST_MAX, 2, topic)?;
    // v0: an empty array means every topic; v1+: null does.
    let topics = match topics {
        Some(topics) if version == 0 && topics.is_empty() => None,
        other => other,
    };
    let allow_auto_topic_creation = if version >= 4 { reader.bool()? } else { true };
    if version >= 8 {
        reader.bool()?;
        reader.bool()?;
    }
    reader.finish()?;
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
        }
        if version >= 8 {
            writer.i32(AUTHORIZED_OPERATIONS_OMITTED);
        }
    }
    if version >= 8 {
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
    let mut reader = Reader::new(body, false);
    let transactional_id = if version >= 3 { nullable_name(&mut reader)? } else { None };
    let acks = reader.i16()?;
    let timeout_ms = reader.i32()?;
    let topics = array_of(&mut reader, TOPICS_PER_REQUEST_MAX, 6, |reader| {
        let name = topic(reader)?;
        let partitions = array_of(reader, PARTITIONS_PER_REQUEST_MAX, 8, |reader| {
            let index = reader.i32()?;
            let records = reader.nullable_bytes(super::REQUEST_BYTES_MAX)?.unwrap_or(&[]);
            Ok(ProducePartition { index, position: reader.consumed() - records.len(), length: records.len() })
        })?;
        Ok(ProduceTopic { name, partitions })
    })?;
    reader.finish()?;
    Ok(ProduceRequest { transactional_id, acks, timeout_ms, topics })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducePartitionResult {
    pub index: i32,
    pub error: i16,
    pub base_offset: i64,
    pub log_start_offset: i64,
}

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
        }
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
    let mut reader = Reader::new(body, false);
    let _replica_id = reader.i32()?;
    let max_wait_ms = reader.i32()?;
    let min_bytes = reader.i32()?;
    let max_bytes = if version >= 3 { reader.i32()? } else { i32::MAX };
    let isolation_level = if version >= 4 { reader.i8()? } else { 0 };
    if version >= 7 {
        let _session_id = reader.i32()?;
        let _session_epoch = reader.i32()?;
    }
    let partition_bytes = 16 + if version >= 5 { 8 } else { 0 } + if version >= 9 { 4 } else { 0 };
    let topics = array_of(&mut reader, TOPICS_PER_REQUEST_MAX, 6, |reader| {
        let name = topic(reader)?;
        let partitions = array_of(reader, PARTITIONS_PER_REQUEST_MAX, partition_bytes, |reader| {
            let partition = reader.i32()?;
            if version >= 9 {
                let _current_leader_epoch = reader.i32()?;
            }
            let fetch_offset = reader.i64()?;
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
        array_of(&mut reader, TOPICS_PER_REQUEST_MAX, 6, |reader| {
            topic(reader)?;
            partition_indexes(reader)
        })?;
    }
    if version >= 11 {
        reader.string(NAME_BYTES_MAX)?;
    }
    reader.finish()?;
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

/// A partition's fields up to its records' length; the records follow.
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

// ---------------------------------------------------------------- ListOffsets

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsRequest {
    pub isolation_level: i8,
    /// topic, [(partition, timestamp query)]
    pub topics: Vec<(String, Vec<(i32, i64)>)>,
}

pub fn decode_list_offsets(body: &[u8], version: i16) -> Result<ListOffsetsRequest, DecodeError> {
    let mut reader = Reader::new(body, false);
    let _replica_id = reader.i32()?;
    let isolation_level = if version >= 2 { reader.i8()? } else { 0 };
    let partition_bytes = 12 + if version >= 4 { 4 } else { 0 };
    let topics = array_of(&mut reader, TOPICS_PER_REQUEST_MAX, 6, |reader| {
        let name = topic(reader)?;
        let partitions = array_of(reader, PARTITIONS_PER_REQUEST_MAX, partition_bytes, |reader| {
            let index = reader.i32()?;
            if version >= 4 {
                let _current_leader_epoch = reader.i32()?;
            }
            Ok((index, reader.i64()?))
        })?;
        Ok((name, partitions))
    })?;
    reader.finish()?;
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
        }
    }
}

// ------------------------------------------------------------ FindCoordinator

/// FindCoordinator's key type for a transactional id.
pub const KEY_TYPE_TRANSACTION: i8 = 1;

pub fn decode_find_coordinator(body: &[u8], version: i16) -> Result<(String, i8), DecodeError> {
    let mut reader = Reader::new(body, false);
    let key = name(&mut reader)?;
    let key_type = if version >= 1 { reader.i8()? } else { 0 };
    reader.finish()?;
    Ok((key, key_type))
}

pub fn encode_find_coordinator(
    writer: &mut Writer,
    version: i16,
    error: i16,
    message: Option<&str>,
    broker: &Broker<'_>,
) {
    if version >= 1 {
        writer.i32(0);
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

pub fn decode_init_producer_id(body: &[u8]) -> Result<Option<String>, DecodeError> {
    let mut reader = Reader::new(body, false);
    let transactional_id = nullable_name(&mut reader)?;
    let _transaction_timeout_ms = reader.i32()?;
    reader.finish()?;
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
    let mut reader = Reader::new(body, false);
    let group = name(&mut reader)?;
    let generation = reader.i32()?;
    let member_id = name(&mut reader)?;
    if version >= 7 {
        let _group_instance_id = nullable_name(&mut reader)?;
    }
    if (2..=4).contains(&version) {
        let _retention_time_ms = reader.i64()?;
    }
    let partition_bytes = 14 + if version >= 6 { 4 } else { 0 };
    let topics = array_of(&mut reader, TOPICS_PER_REQUEST_MAX, 6, |reader| {
        let name = topic(reader)?;
        let partitions = array_of(reader, PARTITIONS_PER_REQUEST_MAX, partition_bytes, |reader| {
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
    reader.finish()?;
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
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchRequest {
    pub group: String,
    /// `None`: every partition with a committed offset.
    pub topics: Option<Vec<(String, Vec<i32>)>>,
}

pub fn decode_offset_fetch(body: &[u8]) -> Result<OffsetFetchRequest, DecodeError> {
    let mut reader = Reader::new(body, false);
    let group = name(&mut reader)?;
    let topics = nullable_array_of(&mut reader, TOPICS_PER_REQUEST_MAX, 6, |reader| {
        Ok((topic(reader)?, partition_indexes(reader)?))
    })?;
    reader.finish()?;
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
        }
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
    let mut reader = Reader::new(body, false);
    let topics = array_of(&mut reader, TOPICS_PER_REQUEST_MAX, 16, |reader| {
        let topic_name = topic(reader)?;
        let partitions = reader.i32()?;
        let replication_factor = reader.i16()?;
        let assignments = array_of(reader, PARTITIONS_PER_REQUEST_MAX, 8, |reader| {
            let partition = reader.i32()?;
            Ok((partition, array_of(reader, REPLICAS_PER_PARTITION_MAX, 4, |r| r.i32())?))
        })?;
        let configs = array_of(reader, CONFIG_ENTRIES_MAX, 4, |reader| {
            Ok((name(reader)?, reader.nullable_string(CONFIG_VALUE_BYTES_MAX)?.map(str::to_owned)))
        })?;
        Ok(CreatableTopic { name: topic_name, partitions, replication_factor, assignments, configs })
    })?;
    let _timeout_ms = reader.i32()?;
    let validate_only = if version >= 1 { reader.bool()? } else { false };
    reader.finish()?;
    Ok(CreateTopicsRequest { topics, validate_only })
}

pub fn encode_create_topics(writer: &mut Writer, version: i16, results: &[(String, i16, Option<String>)]) {
    if version >= 2 {
        writer.i32(0);
    }
    writer.array(results.len());
    for (name, error, message) in results {
        writer.string(name);
        writer.i16(*error);
        if version >= 1 {
            writer.nullable_string(message.as_deref());
        }
    }
}

pub fn decode_delete_topics(body: &[u8]) -> Result<Vec<String>, DecodeError> {
    let mut reader = Reader::new(body, false);
    let names = array_of(&mut reader, TOPICS_PER_REQUEST_MAX, 2, topic)?;
    let _timeout_ms = reader.i32()?;
    reader.finish()?;
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
    let mut reader = Reader::new(body, false);
    let resources = array_of(&mut reader, TOPICS_PER_REQUEST_MAX, 7, |reader| {
        let resource_type = reader.i8()?;
        let resource_name = name(reader)?;
        let keys = nullable_array_of(reader, CONFIG_ENTRIES_MAX, 2, name)?;
        Ok(ConfigResource { resource_type, name: resource_name, keys })
    })?;
    if version >= 1 {
        reader.bool()?;
    }
    if version >= 3 {
        reader.bool()?;
    }
    reader.finish()?;
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
        }
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
    let mut reader = Reader::new(body, false);
    let group = name(&mut reader)?;
    let session_timeout_ms = reader.i32()?;
    let rebalance_timeout_ms = if version >= 1 { reader.i32()? } else { session_timeout_ms };
    let member_id = name(&mut reader)?;
    if version >= 5 {
        let _group_instance_id = nullable_name(&mut reader)?;
    }
    let protocol_type = name(&mut reader)?;
    let protocols = array_of(&mut reader, GROUP_ENTRIES_MAX, 6, |reader| {
        Ok((name(reader)?, reader.bytes(GROUP_BLOB_BYTES_MAX)?.to_vec()))
    })?;
    reader.finish()?;
    Ok(JoinGroupRequest { group, session_timeout_ms, rebalance_timeout_ms, member_id, protocol_type, protocols })
}

pub struct JoinGroupAnswer<'a> {
    pub error: i16,
    pub generation: i32,
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
    writer.string(answer.protocol_name);
    writer.string(answer.leader);
    writer.string(answer.member_id);
    writer.array(answer.members.len());
    for (member_id, metadata) in answer.members {
        writer.string(member_id);
        if version >= 5 {
            writer.nullable_string(None);
        }
        writer.bytes(metadata);
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
    let mut reader = Reader::new(body, false);
    let group = name(&mut reader)?;
    let generation = reader.i32()?;
    let member_id = name(&mut reader)?;
    if version >= 3 {
        let _group_instance_id = nullable_name(&mut reader)?;
    }
    let assignments = array_of(&mut reader, GROUP_ENTRIES_MAX, 6, |reader| {
        Ok((name(reader)?, reader.bytes(GROUP_BLOB_BYTES_MAX)?.to_vec()))
    })?;
    reader.finish()?;
    Ok(SyncGroupRequest { group, generation, member_id, assignments })
}

pub fn encode_sync_group(writer: &mut Writer, version: i16, error: i16, assignment: &[u8]) {
    if version >= 1 {
        writer.i32(0);
    }
    writer.i16(error);
    writer.bytes(assignment);
}

/// Heartbeat: (group, generation, member id).
pub fn decode_heartbeat(body: &[u8], version: i16) -> Result<(String, i32, String), DecodeError> {
    let mut reader = Reader::new(body, false);
    let group = name(&mut reader)?;
    let generation = reader.i32()?;
    let member_id = name(&mut reader)?;
    if version >= 3 {
        let _group_instance_id = nullable_name(&mut reader)?;
    }
    reader.finish()?;
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
    let mut reader = Reader::new(body, false);
    let group = name(&mut reader)?;
    let members = if version >= 3 {
        array_of(&mut reader, GROUP_ENTRIES_MAX, 4, |reader| {
            let member_id = name(reader)?;
            let _group_instance_id = nullable_name(reader)?;
            Ok(member_id)
        })?
    } else {
        vec![name(&mut reader)?]
    };
    reader.finish()?;
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
        }
    }
}

pub fn decode_list_groups(body: &[u8]) -> Result<(), DecodeError> {
    Reader::new(body, false).finish()
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
    }
}

pub fn decode_describe_groups(body: &[u8], version: i16) -> Result<Vec<String>, DecodeError> {
    let mut reader = Reader::new(body, false);
    let groups = array_of(&mut reader, GROUP_ENTRIES_MAX, 2, name)?;
    if version >= 3 {
        reader.bool()?;
    }
    reader.finish()?;
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
        }
        if version >= 3 {
            writer.i32(AUTHORIZED_OPERATIONS_OMITTED);
        }
    }
}

/// The topics of a `consumer` protocol subscription (ConsumerProtocolSubscription,
/// any version: the topics come first).
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
            for version in 0..12 {
                let _ = decode_metadata(body, version);
                let _ = decode_produce(body, version);
                let _ = decode_fetch(body, version);
                let _ = decode_list_offsets(body, version);
                let _ = decode_offset_commit(body, version);
                let _ = decode_offset_fetch(body);
                let _ = decode_create_topics(body, version);
                let _ = decode_delete_topics(body);
                let _ = decode_describe_configs(body, version);
                let _ = decode_join_group(body, version);
                let _ = decode_sync_group(body, version);
                let _ = decode_heartbeat(body, version);
                let _ = decode_leave_group(body, version);
                let _ = decode_describe_groups(body, version);
                let _ = decode_find_coordinator(body, version);
                let _ = decode_init_producer_id(body);
                let _ = subscription_topics(body);
                let _ = assignment_partitions(body);
            }
        }
    }
}
