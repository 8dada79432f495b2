//! Hello (api 0): version negotiation and server limits.
//!
//! request:  client_name string
//! response: server_version string, shard_count u16, request_bytes_max u32,
//!           apis [api_key u16, version_min u16, version_max u16]

use super::{api, finish_frame, request_frame, response_frame, DecodeError, ErrorCode, Reader, CLIENT_NAME_BYTES_MAX};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloRequest {
    pub client_name: String,
}

impl HelloRequest {
    pub fn encode(&self, correlation_id: u32) -> Vec<u8> {
        let mut writer = request_frame(api::HELLO, 0, correlation_id);
        writer.string(&self.client_name);
        finish_frame(writer)
    }

    pub fn decode(body: &[u8]) -> Result<HelloRequest, DecodeError> {
        let mut reader = Reader::new(body);
        let client_name = reader.string(CLIENT_NAME_BYTES_MAX)?.to_owned();
        reader.finish()?;
        Ok(HelloRequest { client_name })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRange {
    pub api_key: u16,
    pub version_min: u16,
    pub version_max: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloResponse {
    pub server_version: String,
    pub shard_count: u16,
    pub request_bytes_max: u32,
    pub apis: Vec<ApiRange>,
}

/// APIs a hello response may list.
const APIS_MAX: usize = 1024;

impl HelloResponse {
    pub fn encode(&self, correlation_id: u32) -> Vec<u8> {
        let mut writer = response_frame(correlation_id, ErrorCode::None, 64);
        writer.string(&self.server_version);
        writer.u16(self.shard_count);
        writer.u32(self.request_bytes_max);
        writer.count(self.apis.len());
        for api in &self.apis {
            writer.u16(api.api_key);
            writer.u16(api.version_min);
            writer.u16(api.version_max);
        }
        finish_frame(writer)
    }

    pub fn decode(body: &[u8]) -> Result<HelloResponse, DecodeError> {
        let mut reader = Reader::new(body);
        let server_version = reader.string(256)?.to_owned();
        let shard_count = reader.u16()?;
        let request_bytes_max = reader.u32()?;
        let count = reader.count(APIS_MAX, 6)?;
        let mut apis = Vec::with_capacity(count);
        for _ in 0..count {
            apis.push(ApiRange { api_key: reader.u16()?, version_min: reader.u16()?, version_max: reader.u16()? });
        }
        reader.finish()?;
        Ok(HelloResponse { server_version, shard_count, request_bytes_max, apis })
    }
}
