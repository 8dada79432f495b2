//! Produce (api 5): one RecordBatch v2 per entry, to one or more partitions.
//!
//! request:  acks u8 (0 none, 1 written, 2 durable),
//!           entries [topic string, partition u32, batch bytes]
//! response: entries [error u16, base_offset i64]   (same order as the request;
//!           base_offset -1 on error). With acks 0 there is no response at all.

use super::{api, finish_frame, response_frame, DecodeError, ErrorCode, Reader};
use super::{PRODUCE_ENTRIES_MAX, TOPIC_NAME_WIRE_BYTES_MAX};
use crate::log::Acks;

pub const ACKS_NONE: u8 = 0;
pub const ACKS_WRITTEN: u8 = 1;
pub const ACKS_DURABLE: u8 = 2;

pub fn acks_from_u8(value: u8) -> Option<Acks> {
    match value {
        ACKS_NONE => Some(Acks::None),
        ACKS_WRITTEN => Some(Acks::Written),
        ACKS_DURABLE => Some(Acks::Durable),
        _ => None,
    }
}

pub fn acks_to_u8(acks: Acks) -> u8 {
    match acks {
        Acks::None => ACKS_NONE,
        Acks::Written => ACKS_WRITTEN,
        Acks::Durable => ACKS_DURABLE,
    }
}

/// One entry of a decoded request, borrowing from the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceEntry<'a> {
    pub topic: &'a str,
    pub partition: u32,
    pub batch: &'a [u8],
    /// Where `batch` starts in the body, so the server can split the owned frame
    /// buffer instead of copying the batch.
    pub batch_position: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceRequest<'a> {
    pub acks: Acks,
    pub entries: Vec<ProduceEntry<'a>>,
}

impl<'a> ProduceRequest<'a> {
    /// Encodes a request from `(topic, partition, batch)` entries.
    pub fn encode(correlation_id: u32, acks: Acks, entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
        ProduceRequest::encode_in(Vec::new(), correlation_id, acks, entries)
    }

    /// [`ProduceRequest::encode`] into `buffer`'s allocation (a sender that
    /// reuses one buffer does not allocate, and fault in, a frame per request).
    pub fn encode_in(buffer: Vec<u8>, correlation_id: u32, acks: Acks, entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let size: usize = entries.iter().map(|(topic, _, batch)| topic.len() + batch.len() + 10).sum();
        let mut writer = super::request_frame_in(buffer, api::PRODUCE, 0, correlation_id);
        writer.reserve(size + 5);
        writer.u8(acks_to_u8(acks));
        writer.count(entries.len());
        for (topic, partition, batch) in entries {
            writer.string(topic);
            writer.u32(*partition);
            writer.bytes(batch);
        }
        finish_frame(writer)
    }

    pub fn decode(body: &'a [u8]) -> Result<ProduceRequest<'a>, DecodeError> {
        let mut reader = Reader::new(body);
        let acks = acks_from_u8(reader.u8()?).ok_or(DecodeError { reason: "unknown acks" })?;
        let count = reader.count(PRODUCE_ENTRIES_MAX, 10)?;
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let topic = reader.string(TOPIC_NAME_WIRE_BYTES_MAX)?;
            let partition = reader.u32()?;
            let batch_position = reader.consumed() + 4;
            // The frame limit bounds it; a batch over BATCH_BYTES_MAX is refused
            // per entry (TooLarge) by the log, not as a malformed request.
            let batch = reader.bytes(super::REQUEST_BYTES_MAX)?;
            entries.push(ProduceEntry { topic, partition, batch, batch_position });
        }
        reader.finish()?;
        Ok(ProduceRequest { acks, entries })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceResult {
    pub error: u16,
    pub base_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceResponse {
    pub results: Vec<ProduceResult>,
}

impl ProduceResponse {
    pub fn encode(&self, correlation_id: u32) -> Vec<u8> {
        let mut writer = response_frame(correlation_id, ErrorCode::None, 4 + self.results.len() * 10);
        writer.count(self.results.len());
        for result in &self.results {
            writer.u16(result.error);
            writer.i64(result.base_offset);
        }
        finish_frame(writer)
    }

    pub fn decode(body: &[u8]) -> Result<ProduceResponse, DecodeError> {
        let mut reader = Reader::new(body);
        let count = reader.count(PRODUCE_ENTRIES_MAX, 10)?;
        let mut results = Vec::with_capacity(count);
        for _ in 0..count {
            results.push(ProduceResult { error: reader.u16()?, base_offset: reader.i64()? });
        }
        reader.finish()?;
        Ok(ProduceResponse { results })
    }
}
