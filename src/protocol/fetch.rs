//! Fetch (api 6): whole stored batches of one partition from an offset, with long
//! polling.
//!
//! request:  topic string, partition u32, offset u64, max_bytes u32,
//!           max_wait_ms u32, min_bytes u32
//! response: high_watermark i64, earliest i64, records bytes (whole batches,
//!           exactly as stored; the first holds `offset`)
//!
//! The server answers at once when at least `min_bytes` are available, else when
//! an append brings them or `max_wait_ms` passes (then with what there is).

use super::{api, finish_frame, request_frame, response_frame, DecodeError, ErrorCode, Reader, Writer};
use super::{FETCH_BYTES_MAX, FETCH_WAIT_MS_MAX, RESPONSE_BYTES_MAX, TOPIC_NAME_WIRE_BYTES_MAX};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub max_bytes: u32,
    pub max_wait_ms: u32,
    pub min_bytes: u32,
}

impl FetchRequest {
    pub fn encode(&self, correlation_id: u32) -> Vec<u8> {
        let mut writer = request_frame(api::FETCH, 0, correlation_id);
        writer.string(&self.topic);
        writer.u32(self.partition);
        writer.u64(self.offset);
        writer.u32(self.max_bytes);
        writer.u32(self.max_wait_ms);
        writer.u32(self.min_bytes);
        finish_frame(writer)
    }

    /// Decodes and clamps `max_bytes` and `max_wait_ms` to the server's limits.
    pub fn decode(body: &[u8]) -> Result<FetchRequest, DecodeError> {
        let mut reader = Reader::new(body);
        let request = FetchRequest {
            topic: reader.string(TOPIC_NAME_WIRE_BYTES_MAX)?.to_owned(),
            partition: reader.u32()?,
            offset: reader.u64()?,
            max_bytes: reader.u32()?.min(FETCH_BYTES_MAX as u32),
            max_wait_ms: reader.u32()?.min(FETCH_WAIT_MS_MAX),
            min_bytes: reader.u32()?,
        };
        reader.finish()?;
        Ok(request)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResponse<'a> {
    pub high_watermark: i64,
    pub earliest: i64,
    pub records: &'a [u8],
}

impl<'a> FetchResponse<'a> {
    pub fn encode(&self, correlation_id: u32) -> Vec<u8> {
        let mut writer: Writer = response_frame(correlation_id, ErrorCode::None, 20 + self.records.len());
        writer.i64(self.high_watermark);
        writer.i64(self.earliest);
        writer.bytes(self.records);
        finish_frame(writer)
    }

    /// The frame up to the records, its length field counting the records
    /// too: sent before the records' own buffer, it makes the same bytes as
    /// [`FetchResponse::encode`] without copying the records into a frame.
    pub fn encode_head(&self, correlation_id: u32) -> Vec<u8> {
        let mut writer: Writer = response_frame(correlation_id, ErrorCode::None, 20);
        writer.i64(self.high_watermark);
        writer.i64(self.earliest);
        writer.u32(self.records.len() as u32);
        let mut head = finish_frame(writer);
        let length = (head.len() - crate::protocol::LENGTH_BYTES + self.records.len()) as u32;
        if let Some(field) = head.get_mut(..crate::protocol::LENGTH_BYTES) {
            field.copy_from_slice(&length.to_be_bytes());
        }
        head
    }

    pub fn decode(body: &'a [u8]) -> Result<FetchResponse<'a>, DecodeError> {
        let mut reader = Reader::new(body);
        let response = FetchResponse {
            high_watermark: reader.i64()?,
            earliest: reader.i64()?,
            records: reader.bytes(RESPONSE_BYTES_MAX)?,
        };
        reader.finish()?;
        Ok(response)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_head_and_the_records_are_the_whole_frame() {
        for records in [&b""[..], b"x", &[7u8; 70_000][..]] {
            let response = FetchResponse { high_watermark: 42, earliest: 3, records };
            let mut split = response.encode_head(9);
            split.extend_from_slice(records);
            assert_eq!(split, response.encode(9));
        }
    }
}
