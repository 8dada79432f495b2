//! Share-group APIs (24, 25): receive records under a lease, acknowledge them.
//!
//! ```text
//! ShareFetch (24)       request:  group string, member_id string, topic string, partition u32,
//!                                 max_records u32, max_bytes u32, max_wait_ms u32,
//!                                 lease_ms u32 (0 = 30 000), max_deliveries u16 (0 = 5),
//!                                 dead_letter_topic string ("" = "<topic>.dlq")
//!                       response: count u32 + [offset i64, delivery_count u16] (the acquired
//!                                 records), records bytes (whole stored batches holding them;
//!                                 a client keeps only the acquired offsets)
//! ShareAcknowledge (25) request:  group string, member_id string, topic string, partition u32,
//!                                 lease_ms u32 (for renew; 0 = 30 000),
//!                                 count u32 + [first_offset i64, last_offset i64, kind u8]
//!                                 (kind 1 accept, 2 release, 3 reject, 4 renew)
//!                       response: count u32 + [error u16] (one per range; a range either
//!                                 applies whole or not at all)
//! ```

use super::group::{GROUP_NAME_WIRE_BYTES_MAX, MEMBER_ID_BYTES_MAX};
use super::{
    api, finish_frame, request_frame, response_frame, DecodeError, ErrorCode, Reader, TOPIC_NAME_WIRE_BYTES_MAX,
};

/// Records one receive may acquire.
pub const SHARE_FETCH_RECORDS_MAX: u32 = 10_000;
/// Ranges one acknowledgement may carry.
pub const SHARE_ACK_RANGES_MAX: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareFetchRequest {
    pub group: String,
    pub member_id: String,
    pub topic: String,
    pub partition: u32,
    pub max_records: u32,
    pub max_bytes: u32,
    pub max_wait_ms: u32,
    pub lease_ms: u32,
    pub max_deliveries: u16,
    pub dead_letter_topic: String,
}

impl ShareFetchRequest {
    pub fn encode(&self, correlation_id: u32) -> Vec<u8> {
        let mut writer = request_frame(api::SHARE_FETCH, 0, correlation_id);
        writer.string(&self.group);
        writer.string(&self.member_id);
        writer.string(&self.topic);
        writer.u32(self.partition);
        writer.u32(self.max_records);
        writer.u32(self.max_bytes);
        writer.u32(self.max_wait_ms);
        writer.u32(self.lease_ms);
        writer.u16(self.max_deliveries);
        writer.string(&self.dead_letter_topic);
        finish_frame(writer)
    }

    pub fn decode(body: &[u8]) -> Result<ShareFetchRequest, DecodeError> {
        let mut reader = Reader::new(body);
        let request = ShareFetchRequest {
            group: reader.string(GROUP_NAME_WIRE_BYTES_MAX)?.to_owned(),
            member_id: reader.string(MEMBER_ID_BYTES_MAX)?.to_owned(),
            topic: reader.string(TOPIC_NAME_WIRE_BYTES_MAX)?.to_owned(),
            partition: reader.u32()?,
            max_records: reader.u32()?,
            max_bytes: reader.u32()?,
            max_wait_ms: reader.u32()?,
            lease_ms: reader.u32()?,
            max_deliveries: reader.u16()?,
            dead_letter_topic: reader.string(TOPIC_NAME_WIRE_BYTES_MAX)?.to_owned(),
        };
        reader.finish()?;
        Ok(request)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShareFetchResponse {
    /// (offset, delivery count) of each acquired record, in offset order.
    pub acquired: Vec<(u64, u16)>,
    pub records: Vec<u8>,
}

impl ShareFetchResponse {
    pub fn encode(&self, correlation_id: u32) -> Vec<u8> {
        let mut writer =
            response_frame(correlation_id, ErrorCode::None, 8 + self.acquired.len() * 10 + self.records.len());
        writer.count(self.acquired.len());
        for (offset, deliveries) in &self.acquired {
            writer.i64(*offset as i64);
            writer.u16(*deliveries);
        }
        writer.bytes(&self.records);
        finish_frame(writer)
    }

    pub fn decode(body: &[u8]) -> Result<ShareFetchResponse, DecodeError> {
        let mut reader = Reader::new(body);
        let count = reader.count(SHARE_FETCH_RECORDS_MAX as usize, 10)?;
        let mut acquired = Vec::with_capacity(count);
        for _ in 0..count {
            let offset = reader.i64()?;
            if offset < 0 {
                return Err(DecodeError { reason: "negative offset" });
            }
            acquired.push((offset as u64, reader.u16()?));
        }
        let records = reader.bytes(super::RESPONSE_BYTES_MAX)?.to_vec();
        reader.finish()?;
        Ok(ShareFetchResponse { acquired, records })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareAckRequest {
    pub group: String,
    pub member_id: String,
    pub topic: String,
    pub partition: u32,
    pub lease_ms: u32,
    /// (first offset, last offset, kind)
    pub ranges: Vec<(u64, u64, u8)>,
}

impl ShareAckRequest {
    pub fn encode(&self, correlation_id: u32) -> Vec<u8> {
        let mut writer = request_frame(api::SHARE_ACKNOWLEDGE, 0, correlation_id);
        writer.string(&self.group);
        writer.string(&self.member_id);
        writer.string(&self.topic);
        writer.u32(self.partition);
        writer.u32(self.lease_ms);
        writer.count(self.ranges.len());
        for (first, last, kind) in &self.ranges {
            writer.i64(*first as i64);
            writer.i64(*last as i64);
            writer.u8(*kind);
        }
        finish_frame(writer)
    }

    pub fn decode(body: &[u8]) -> Result<ShareAckRequest, DecodeError> {
        let mut reader = Reader::new(body);
        let group = reader.string(GROUP_NAME_WIRE_BYTES_MAX)?.to_owned();
        let member_id = reader.string(MEMBER_ID_BYTES_MAX)?.to_owned();
        let topic = reader.string(TOPIC_NAME_WIRE_BYTES_MAX)?.to_owned();
        let partition = reader.u32()?;
        let lease_ms = reader.u32()?;
        let count = reader.count(SHARE_ACK_RANGES_MAX, 17)?;
        let mut ranges = Vec::with_capacity(count);
        for _ in 0..count {
            let (first, last, kind) = (reader.i64()?, reader.i64()?, reader.u8()?);
            if first < 0 || last < 0 {
                return Err(DecodeError { reason: "negative offset" });
            }
            ranges.push((first as u64, last as u64, kind));
        }
        reader.finish()?;
        Ok(ShareAckRequest { group, member_id, topic, partition, lease_ms, ranges })
    }
}

pub fn encode_ack_response(correlation_id: u32, errors: &[ErrorCode]) -> Vec<u8> {
    let mut writer = response_frame(correlation_id, ErrorCode::None, 4 + errors.len() * 2);
    writer.count(errors.len());
    for error in errors {
        writer.u16(*error as u16);
    }
    finish_frame(writer)
}

pub fn decode_ack_response(body: &[u8]) -> Result<Vec<u16>, DecodeError> {
    let mut reader = Reader::new(body);
    let count = reader.count(SHARE_ACK_RANGES_MAX, 2)?;
    let mut errors = Vec::with_capacity(count);
    for _ in 0..count {
        errors.push(reader.u16()?);
    }
    reader.finish()?;
    Ok(errors)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::protocol::{LENGTH_BYTES, REQUEST_HEADER_BYTES};

    #[test]
    fn share_requests_and_responses_round_trip_and_truncations_are_refused() {
        let fetch = ShareFetchRequest {
            group: "g".into(),
            member_id: "m".into(),
            topic: "t".into(),
            partition: 2,
            max_records: 10,
            max_bytes: 1000,
            max_wait_ms: 5,
            lease_ms: 0,
            max_deliveries: 3,
            dead_letter_topic: "".into(),
        };
        let frame = fetch.encode(1);
        let body = &frame[LENGTH_BYTES + REQUEST_HEADER_BYTES..];
        assert_eq!(ShareFetchRequest::decode(body).unwrap(), fetch);
        for cut in 0..body.len() {
            assert!(ShareFetchRequest::decode(&body[..cut]).is_err());
        }
        let ack = ShareAckRequest {
            group: "g".into(),
            member_id: "m".into(),
            topic: "t".into(),
            partition: 0,
            lease_ms: 0,
            ranges: vec![(1, 4, 1), (7, 7, 3)],
        };
        let frame = ack.encode(2);
        let body = &frame[LENGTH_BYTES + REQUEST_HEADER_BYTES..];
        assert_eq!(ShareAckRequest::decode(body).unwrap(), ack);
        for cut in 0..body.len() {
            assert!(ShareAckRequest::decode(&body[..cut]).is_err());
        }
        let response = ShareFetchResponse { acquired: vec![(3, 1), (4, 2)], records: vec![1, 2, 3] };
        let frame = response.encode(3);
        let body = &frame[LENGTH_BYTES + crate::protocol::RESPONSE_HEADER_BYTES..];
        assert_eq!(ShareFetchResponse::decode(body).unwrap(), response);
    }
}
