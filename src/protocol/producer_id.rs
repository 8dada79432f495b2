//! InitProducerId (api 23): a producer id and epoch for idempotent produce.
//!
//! request:  name string ("" = a new anonymous producer; a name gets the same
//!           id each time with the epoch raised by one, fencing older instances)
//! response: producer_id i64, epoch u16

use super::{
    api, finish_frame, request_frame, response_frame, DecodeError, ErrorCode, Reader, TOPIC_NAME_WIRE_BYTES_MAX,
};

/// Producer names follow the topic-name rules.
pub const PRODUCER_NAME_WIRE_BYTES_MAX: usize = TOPIC_NAME_WIRE_BYTES_MAX;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitProducerIdRequest {
    pub name: String,
}

impl InitProducerIdRequest {
    pub fn encode(&self, correlation_id: u32) -> Vec<u8> {
        let mut writer = request_frame(api::INIT_PRODUCER_ID, 0, correlation_id);
        writer.string(&self.name);
        finish_frame(writer)
    }

    pub fn decode(body: &[u8]) -> Result<InitProducerIdRequest, DecodeError> {
        let mut reader = Reader::new(body);
        let request = InitProducerIdRequest { name: reader.string(PRODUCER_NAME_WIRE_BYTES_MAX)?.to_owned() };
        reader.finish()?;
        Ok(request)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitProducerIdResponse {
    pub producer_id: i64,
    pub epoch: i16,
}

impl InitProducerIdResponse {
    pub fn encode(&self, correlation_id: u32) -> Vec<u8> {
        let mut writer = response_frame(correlation_id, ErrorCode::None, 10);
        writer.i64(self.producer_id);
        writer.u16(self.epoch as u16);
        finish_frame(writer)
    }

    pub fn decode(body: &[u8]) -> Result<InitProducerIdResponse, DecodeError> {
        let mut reader = Reader::new(body);
        let producer_id = reader.i64()?;
        let epoch = reader.u16()?;
        reader.finish()?;
        if producer_id < 0 || epoch > i16::MAX as u16 {
            return Err(DecodeError { reason: "producer id or epoch out of range" });
        }
        Ok(InitProducerIdResponse { producer_id, epoch: epoch as i16 })
    }
}
