//! ListOffsets (api 4): the earliest offset, the latest, or the first at or after
//! a timestamp, of one partition.
//!
//! request:  topic string, partition u32, query i64
//!           (-2 = earliest, -1 = latest, >= 0 = timestamp in ms)
//! response: offset i64 (-1 when no record is at or after the timestamp),
//!           earliest i64, latest i64 (one past the last record), durable i64

use super::{
    api, finish_frame, request_frame, response_frame, DecodeError, ErrorCode, Reader, TOPIC_NAME_WIRE_BYTES_MAX,
};

pub const QUERY_EARLIEST: i64 = -2;
pub const QUERY_LATEST: i64 = -1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsRequest {
    pub topic: String,
    pub partition: u32,
    pub query: i64,
}

impl ListOffsetsRequest {
    pub fn encode(&self, correlation_id: u32) -> Vec<u8> {
        let mut writer = request_frame(api::LIST_OFFSETS, 0, correlation_id);
        writer.string(&self.topic);
        writer.u32(self.partition);
        writer.i64(self.query);
        finish_frame(writer)
    }

    pub fn decode(body: &[u8]) -> Result<ListOffsetsRequest, DecodeError> {
        let mut reader = Reader::new(body);
        let request = ListOffsetsRequest {
            topic: reader.string(TOPIC_NAME_WIRE_BYTES_MAX)?.to_owned(),
            partition: reader.u32()?,
            query: reader.i64()?,
        };
        reader.finish()?;
        Ok(request)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListOffsetsResponse {
    pub offset: i64,
    pub earliest: i64,
    pub latest: i64,
    pub durable: i64,
}

impl ListOffsetsResponse {
    pub fn encode(&self, correlation_id: u32) -> Vec<u8> {
        let mut writer = response_frame(correlation_id, ErrorCode::None, 32);
        writer.i64(self.offset);
        writer.i64(self.earliest);
        writer.i64(self.latest);
        writer.i64(self.durable);
        finish_frame(writer)
    }

    pub fn decode(body: &[u8]) -> Result<ListOffsetsResponse, DecodeError> {
        let mut reader = Reader::new(body);
        let response = ListOffsetsResponse {
            offset: reader.i64()?,
            earliest: reader.i64()?,
            latest: reader.i64()?,
            durable: reader.i64()?,
        };
        reader.finish()?;
        Ok(response)
    }
}
