//! Authentication and its administration (apis 48–54; docs/PROTOCOL.md).
//!
//! ```text
//! AUTHENTICATE (48)  request:  mechanism string ("SCRAM-SHA-256" | "PLAIN"), message bytes
//!                    response: done u8 (1: authenticated), message bytes
//!                    The first request starts the exchange; SCRAM takes two.
//!                    A failure answers AuthenticationFailed and closes.
//! USER_UPSERT (49)   request:  name string, iterations u32, salt bytes,
//!                              stored_key bytes, server_key bytes
//!                    (the client derives the SCRAM credential: no password
//!                    crosses the wire)
//! USER_DELETE (50)   request:  name string
//! USER_LIST (51)     request:  empty; response: count u32, then name string each
//! ACL_ADD (52)       request:  acl (below)
//! ACL_REMOVE (53)    request:  acl
//! ACL_LIST (54)      request:  empty; response: count u32, then acl each
//!   acl: principal string, kind u8 (0 topic, 1 group), pattern string,
//!        operations u8 (bits: 1 read, 2 write, 4 create, 8 delete, 16 describe)
//! ```
//! 49–54 need a super user (ClusterNotAuthorized otherwise); their empty
//! responses carry the result in the header's error code.

use super::{api, finish_frame, request_frame, response_frame, DecodeError, ErrorCode, Reader};
use crate::security::scram::{self, Credential};
use crate::security::{Acl, Operations, ResourceKind, ACLS_MAX, PATTERN_BYTES_MAX, USERS_MAX};

/// Longest mechanism name.
pub const MECHANISM_BYTES_MAX: usize = 32;
/// Longest salt and key accepted in a credential.
pub const CREDENTIAL_FIELD_BYTES_MAX: usize = 64;
/// A SCRAM-SHA-256 key's length.
pub const KEY_BYTES: usize = 32;

fn malformed(reason: &'static str) -> DecodeError {
    DecodeError { reason }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticateRequest {
    pub mechanism: String,
    pub message: Vec<u8>,
}

impl AuthenticateRequest {
    pub fn encode(&self, correlation_id: u32) -> Vec<u8> {
        let mut writer = request_frame(api::AUTHENTICATE, 0, correlation_id);
        writer.string(&self.mechanism);
        writer.bytes(&self.message);
        finish_frame(writer)
    }

    pub fn decode(body: &[u8]) -> Result<AuthenticateRequest, DecodeError> {
        let mut reader = Reader::new(body);
        let mechanism = reader.string(MECHANISM_BYTES_MAX)?.to_owned();
        let message = reader.bytes(scram::SASL_MESSAGE_BYTES_MAX)?.to_vec();
        reader.finish()?;
        Ok(AuthenticateRequest { mechanism, message })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticateResponse {
    pub done: bool,
    pub message: Vec<u8>,
}

impl AuthenticateResponse {
    pub fn encode(&self, correlation_id: u32) -> Vec<u8> {
        let mut writer = response_frame(correlation_id, ErrorCode::None, 5 + self.message.len());
        writer.u8(u8::from(self.done));
        writer.bytes(&self.message);
        finish_frame(writer)
    }

    pub fn decode(body: &[u8]) -> Result<AuthenticateResponse, DecodeError> {
        let mut reader = Reader::new(body);
        let done = match reader.u8()? {
            0 => false,
            1 => true,
            _ => return Err(malformed("done is neither 0 nor 1")),
        };
        let message = reader.bytes(scram::SASL_MESSAGE_BYTES_MAX)?.to_vec();
        reader.finish()?;
        Ok(AuthenticateResponse { done, message })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserUpsertRequest {
    pub name: String,
    pub credential: Credential,
}

impl UserUpsertRequest {
    pub fn encode(&self, correlation_id: u32) -> Vec<u8> {
        let mut writer = request_frame(api::USER_UPSERT, 0, correlation_id);
        writer.string(&self.name);
        writer.u32(self.credential.iterations);
        writer.bytes(&self.credential.salt);
        writer.bytes(&self.credential.stored_key);
        writer.bytes(&self.credential.server_key);
        finish_frame(writer)
    }

    pub fn decode(body: &[u8]) -> Result<UserUpsertRequest, DecodeError> {
        let mut reader = Reader::new(body);
        let name = reader.string(scram::USER_NAME_BYTES_MAX)?.to_owned();
        let iterations = reader.u32()?;
        let salt = reader.bytes(CREDENTIAL_FIELD_BYTES_MAX)?.to_vec();
        let stored_key = reader.bytes(CREDENTIAL_FIELD_BYTES_MAX)?.to_vec();
        let server_key = reader.bytes(CREDENTIAL_FIELD_BYTES_MAX)?.to_vec();
        reader.finish()?;
        if !(scram::ITERATIONS_MIN..=scram::ITERATIONS_MAX).contains(&iterations) {
            return Err(malformed("iterations out of range"));
        }
        if salt.is_empty() || stored_key.len() != KEY_BYTES || server_key.len() != KEY_BYTES {
            return Err(malformed("a SCRAM-SHA-256 credential has a salt and two 32-byte keys"));
        }
        Ok(UserUpsertRequest { name, credential: Credential { salt, iterations, stored_key, server_key } })
    }
}

/// A request whose body is one name (USER_DELETE).
pub fn encode_name_request(api_key: u16, correlation_id: u32, name: &str) -> Vec<u8> {
    let mut writer = request_frame(api_key, 0, correlation_id);
    writer.string(name);
    finish_frame(writer)
}

pub fn decode_name_request(body: &[u8]) -> Result<String, DecodeError> {
    let mut reader = Reader::new(body);
    let name = reader.string(scram::USER_NAME_BYTES_MAX)?.to_owned();
    reader.finish()?;
    Ok(name)
}

/// A request with an empty body (USER_LIST, ACL_LIST).
pub fn encode_empty_request(api_key: u16, correlation_id: u32) -> Vec<u8> {
    finish_frame(request_frame(api_key, 0, correlation_id))
}

pub fn encode_user_list(correlation_id: u32, names: &[&str]) -> Vec<u8> {
    let mut writer = response_frame(correlation_id, ErrorCode::None, 4 + names.len() * 16);
    writer.count(names.len());
    for name in names {
        writer.string(name);
    }
    finish_frame(writer)
}

pub fn decode_user_list(body: &[u8]) -> Result<Vec<String>, DecodeError> {
    let mut reader = Reader::new(body);
    let count = reader.count(USERS_MAX, 2)?;
    let mut names = Vec::with_capacity(count);
    for _ in 0..count {
        names.push(reader.string(scram::USER_NAME_BYTES_MAX)?.to_owned());
    }
    reader.finish()?;
    Ok(names)
}

fn write_acl(writer: &mut super::Writer, acl: &Acl) {
    writer.string(&acl.principal);
    writer.u8(acl.kind.to_u8());
    writer.string(&acl.pattern);
    writer.u8(acl.operations.0);
}

fn read_acl(reader: &mut Reader) -> Result<Acl, DecodeError> {
    let principal = reader.string(scram::USER_NAME_BYTES_MAX)?.to_owned();
    let kind = ResourceKind::from_u8(reader.u8()?).ok_or(malformed("unknown resource kind"))?;
    let pattern = reader.string(PATTERN_BYTES_MAX)?.to_owned();
    let operations = reader.u8()?;
    if operations & !Operations::MASK != 0 {
        return Err(malformed("unknown operation bits"));
    }
    Ok(Acl { principal, kind, pattern, operations: Operations(operations) })
}

/// ACL_ADD and ACL_REMOVE.
pub fn encode_acl_request(api_key: u16, correlation_id: u32, acl: &Acl) -> Vec<u8> {
    let mut writer = request_frame(api_key, 0, correlation_id);
    write_acl(&mut writer, acl);
    finish_frame(writer)
}

pub fn decode_acl_request(body: &[u8]) -> Result<Acl, DecodeError> {
    let mut reader = Reader::new(body);
    let acl = read_acl(&mut reader)?;
    reader.finish()?;
    Ok(acl)
}

pub fn encode_acl_list(correlation_id: u32, acls: &[Acl]) -> Vec<u8> {
    let mut writer = response_frame(correlation_id, ErrorCode::None, 4 + acls.len() * 32);
    writer.count(acls.len());
    for acl in acls {
        write_acl(&mut writer, acl);
    }
    finish_frame(writer)
}

pub fn decode_acl_list(body: &[u8]) -> Result<Vec<Acl>, DecodeError> {
    let mut reader = Reader::new(body);
    let count = reader.count(ACLS_MAX, 6)?;
    let mut acls = Vec::with_capacity(count);
    for _ in 0..count {
        acls.push(read_acl(&mut reader)?);
    }
    reader.finish()?;
    Ok(acls)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::security::Operation;

    fn body(frame: &[u8]) -> &[u8] {
        &frame[super::super::LENGTH_BYTES + super::super::REQUEST_HEADER_BYTES..]
    }

    #[test]
    fn requests_round_trip_and_every_prefix_is_refused() {
        let credential = Credential::new("pw", scram::ITERATIONS_DEFAULT).unwrap();
        let upsert = UserUpsertRequest { name: "alice".into(), credential };
        let frame = upsert.encode(1);
        assert_eq!(UserUpsertRequest::decode(body(&frame)).unwrap(), upsert);
        for cut in 0..body(&frame).len() {
            assert!(UserUpsertRequest::decode(&body(&frame)[..cut]).is_err());
        }
        let acl = Acl {
            principal: "alice".into(),
            kind: ResourceKind::Group,
            pattern: "g.*".into(),
            operations: Operations::of(&[Operation::Read, Operation::Describe]),
        };
        let frame = encode_acl_request(api::ACL_ADD, 2, &acl);
        assert_eq!(decode_acl_request(body(&frame)).unwrap(), acl);
        for cut in 0..body(&frame).len() {
            assert!(decode_acl_request(&body(&frame)[..cut]).is_err());
        }
        let auth = AuthenticateRequest { mechanism: "PLAIN".into(), message: b"\0a\0b".to_vec() };
        assert_eq!(AuthenticateRequest::decode(body(&auth.encode(3))).unwrap(), auth);
    }

    #[test]
    fn hostile_counts_and_fields_are_refused() {
        let mut huge = Vec::new();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_user_list(&huge).is_err());
        assert!(decode_acl_list(&huge).is_err());
        let mut bad_kind = Vec::new();
        bad_kind.extend_from_slice(&1u16.to_be_bytes());
        bad_kind.push(b'a');
        bad_kind.push(9);
        assert!(decode_acl_request(&bad_kind).is_err());
        let weak = UserUpsertRequest {
            name: "a".into(),
            credential: Credential { salt: vec![1], iterations: 1, stored_key: vec![0; 32], server_key: vec![0; 32] },
        };
        assert!(UserUpsertRequest::decode(body(&weak.encode(1))).is_err(), "too few iterations");
    }
}
