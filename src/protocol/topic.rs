//! CreateTopic (api 2) and DeleteTopic (api 3).
//!
//! create request: name string, partitions u32, retention_ms i64, retention_bytes i64
//!                 (retention: -1 = unlimited, -2 = the broker's default)
//! delete request: name string
//! responses:      empty body; the header's error code says how it went.

use super::{api, finish_frame, request_frame, DecodeError, Reader, TOPIC_NAME_WIRE_BYTES_MAX};

/// Retention value meaning "no limit".
pub const RETENTION_UNLIMITED: i64 = -1;
/// Retention value meaning "the broker's configured default".
pub const RETENTION_DEFAULT: i64 = -2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTopicRequest {
    pub name: String,
    pub partitions: u32,
    pub retention_ms: i64,
    pub retention_bytes: i64,
}

impl CreateTopicRequest {
    pub fn encode(&self, correlation_id: u32) -> Vec<u8> {
        let mut writer = request_frame(api::CREATE_TOPIC, 0, correlation_id);
        writer.string(&self.name);
        writer.u32(self.partitions);
        writer.i64(self.retention_ms);
        writer.i64(self.retention_bytes);
        finish_frame(writer)
    }

    pub fn decode(body: &[u8]) -> Result<CreateTopicRequest, DecodeError> {
        let mut reader = Reader::new(body);
        let request = CreateTopicRequest {
            name: reader.string(TOPIC_NAME_WIRE_BYTES_MAX)?.to_owned(),
            partitions: reader.u32()?,
            retention_ms: reader.i64()?,
            retention_bytes: reader.i64()?,
        };
        reader.finish()?;
        Ok(request)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteTopicRequest {
    pub name: String,
}

impl DeleteTopicRequest {
    pub fn encode(&self, correlation_id: u32) -> Vec<u8> {
        let mut writer = request_frame(api::DELETE_TOPIC, 0, correlation_id);
        writer.string(&self.name);
        finish_frame(writer)
    }

    pub fn decode(body: &[u8]) -> Result<DeleteTopicRequest, DecodeError> {
        let mut reader = Reader::new(body);
        let name = reader.string(TOPIC_NAME_WIRE_BYTES_MAX)?.to_owned();
        reader.finish()?;
        Ok(DeleteTopicRequest { name })
    }
}
