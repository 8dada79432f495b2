//! Metadata (api 1): shards and their ports, topics, partitions and their owners.
//!
//! request:  topics [name string]            (empty: every topic)
//! response: shards [shard u16, port u16],
//!           topics [name string, error u16, retention_ms i64, retention_bytes i64,
//!                   partitions [partition u32, shard u16]]

use super::{api, finish_frame, request_frame, response_frame, DecodeError, ErrorCode, Reader};
use super::{METADATA_TOPICS_MAX, PARTITIONS_PER_TOPIC_MAX, TOPIC_NAME_WIRE_BYTES_MAX};

/// Shards a response may list.
pub const SHARDS_MAX: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataRequest {
    pub topics: Vec<String>,
}

impl MetadataRequest {
    pub fn encode(&self, correlation_id: u32) -> Vec<u8> {
        let mut writer = request_frame(api::METADATA, 0, correlation_id);
        writer.count(self.topics.len());
        for topic in &self.topics {
            writer.string(topic);
        }
        finish_frame(writer)
    }

    pub fn decode(body: &[u8]) -> Result<MetadataRequest, DecodeError> {
        let mut reader = Reader::new(body);
        let count = reader.count(METADATA_TOPICS_MAX, 2)?;
        let mut topics = Vec::with_capacity(count);
        for _ in 0..count {
            topics.push(reader.string(TOPIC_NAME_WIRE_BYTES_MAX)?.to_owned());
        }
        reader.finish()?;
        Ok(MetadataRequest { topics })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardInfo {
    pub shard: u16,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    pub name: String,
    pub error: u16,
    /// -1: kept forever.
    pub retention_ms: i64,
    /// -1: no size limit.
    pub retention_bytes: i64,
    /// Owner shard of each partition, indexed by partition number.
    pub partition_shards: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataResponse {
    pub shards: Vec<ShardInfo>,
    pub topics: Vec<TopicMetadata>,
}

impl MetadataResponse {
    pub fn encode(&self, correlation_id: u32) -> Vec<u8> {
        let partitions: usize = self.topics.iter().map(|t| t.partition_shards.len()).sum();
        let mut writer = response_frame(correlation_id, ErrorCode::None, 64 + self.topics.len() * 64 + partitions * 6);
        writer.count(self.shards.len());
        for shard in &self.shards {
            writer.u16(shard.shard);
            writer.u16(shard.port);
        }
        writer.count(self.topics.len());
        for topic in &self.topics {
            writer.string(&topic.name);
            writer.u16(topic.error);
            writer.i64(topic.retention_ms);
            writer.i64(topic.retention_bytes);
            writer.count(topic.partition_shards.len());
            for (partition, shard) in topic.partition_shards.iter().enumerate() {
                writer.u32(partition as u32);
                writer.u16(*shard);
            }
        }
        finish_frame(writer)
    }

    pub fn decode(body: &[u8]) -> Result<MetadataResponse, DecodeError> {
        let mut reader = Reader::new(body);
        let count = reader.count(SHARDS_MAX, 4)?;
        let mut shards = Vec::with_capacity(count);
        for _ in 0..count {
            shards.push(ShardInfo { shard: reader.u16()?, port: reader.u16()? });
        }
        let count = reader.count(METADATA_TOPICS_MAX, 24)?;
        let mut topics = Vec::with_capacity(count);
        for _ in 0..count {
            let name = reader.string(TOPIC_NAME_WIRE_BYTES_MAX)?.to_owned();
            let error = reader.u16()?;
            let retention_ms = reader.i64()?;
            let retention_bytes = reader.i64()?;
            let partitions = reader.count(PARTITIONS_PER_TOPIC_MAX as usize, 6)?;
            let mut partition_shards = Vec::with_capacity(partitions);
            for expected in 0..partitions {
                if reader.u32()? as usize != expected {
                    return Err(DecodeError { reason: "partitions out of order" });
                }
                partition_shards.push(reader.u16()?);
            }
            topics.push(TopicMetadata { name, error, retention_ms, retention_bytes, partition_shards });
        }
        reader.finish()?;
        Ok(MetadataResponse { shards, topics })
    }
}
