//! The Kafka wire protocol, as far as ringmq speaks it on its second
//! listener: frames, request headers, the advertised (API, version) pairs,
//! error codes, and the messages (see [`messages`]). Written from Kafka's
//! JSON message schemas (docs/KAFKA.md lists what is supported), with the
//! same discipline as [`crate::protocol`]: decoders borrow from the frame,
//! check every count against the bytes present, and never panic.
//!
//! ```text
//! frame:           size i32, then header and body (size bytes)
//! request header:  api_key i16, api_version i16, correlation_id i32,
//!                  client_id nullable string (i16 length, also when flexible),
//!                  tagged fields (flexible versions only)
//! response header: correlation_id i32, tagged fields (flexible, not ApiVersions)
//! ```

pub mod codec;
pub mod messages;

pub use crate::protocol::FrameCheck;
pub use codec::{DecodeError, Reader, Writer};

/// Largest request frame accepted (Kafka's `socket.request.max.bytes`).
pub const REQUEST_BYTES_MAX: usize = 100 * 1024 * 1024;
/// Bytes of the size field in front of every frame.
pub const SIZE_BYTES: usize = 4;
/// api_key, api_version, correlation_id.
pub const HEADER_FIXED_BYTES: usize = 8;
/// Longest client id kept (longer ones are refused).
pub const CLIENT_ID_BYTES_MAX: usize = 32 * 1024;

const _: () = assert!(REQUEST_BYTES_MAX <= i32::MAX as usize);

/// API keys.
pub mod api {
    pub const PRODUCE: i16 = 0;
    pub const FETCH: i16 = 1;
    pub const LIST_OFFSETS: i16 = 2;
    pub const METADATA: i16 = 3;
    pub const OFFSET_COMMIT: i16 = 8;
    pub const OFFSET_FETCH: i16 = 9;
    pub const FIND_COORDINATOR: i16 = 10;
    pub const JOIN_GROUP: i16 = 11;
    pub const HEARTBEAT: i16 = 12;
    pub const LEAVE_GROUP: i16 = 13;
    pub const SYNC_GROUP: i16 = 14;
    pub const DESCRIBE_GROUPS: i16 = 15;
    pub const LIST_GROUPS: i16 = 16;
    pub const API_VERSIONS: i16 = 18;
    pub const CREATE_TOPICS: i16 = 19;
    pub const DELETE_TOPICS: i16 = 20;
    pub const INIT_PRODUCER_ID: i16 = 22;
    pub const DESCRIBE_CONFIGS: i16 = 32;
    pub const SASL_HANDSHAKE: i16 = 17;
    pub const SASL_AUTHENTICATE: i16 = 36;
}

/// One advertised API: key, lowest and highest version, and the first
/// flexible version of the API (whether or not it is advertised).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiSupport {
    pub key: i16,
    pub min: i16,
    pub max: i16,
    pub flexible_from: i16,
}

const fn support(key: i16, min: i16, max: i16, flexible_from: i16) -> ApiSupport {
    ApiSupport { key, min, max, flexible_from }
}

/// What the listener advertises: each API from its lowest served version
/// through its flexible versions, up to the last version that names topics
/// (not topic ids) and needs nothing ringmq does not build. Produce is
/// advertised from 0 because librdkafka 2.0 stops compressing when the
/// minimum is higher (KAFKA-18659); versions 0–2 are answered with
/// UNSUPPORTED_VERSION. Transactions, OffsetForLeaderEpoch, telemetry and
/// KIP-848 are not advertised because they are not built. docs/KAFKA.md says
/// why each maximum is where it is.
/// `flexible_from` of an API whose every version is classic (SaslHandshake).
pub const NEVER_FLEXIBLE: i16 = i16::MAX;

/// SaslHandshake starts at 1: version 0 sends the SASL messages outside
/// Kafka's framing, which every client since Kafka 1.0 replaces with
/// SaslAuthenticate.
pub const SUPPORTED: [ApiSupport; 20] = [
    support(api::PRODUCE, 0, 10, 9),
    support(api::FETCH, 4, 12, 12),
    support(api::LIST_OFFSETS, 1, 6, 6),
    support(api::METADATA, 0, 11, 9),
    support(api::OFFSET_COMMIT, 2, 8, 8),
    support(api::OFFSET_FETCH, 1, 7, 6),
    support(api::FIND_COORDINATOR, 0, 4, 3),
    support(api::JOIN_GROUP, 0, 9, 6),
    support(api::HEARTBEAT, 0, 4, 4),
    support(api::LEAVE_GROUP, 0, 5, 4),
    support(api::SYNC_GROUP, 0, 5, 4),
    support(api::DESCRIBE_GROUPS, 0, 5, 5),
    support(api::LIST_GROUPS, 0, 3, 3),
    support(api::API_VERSIONS, 0, 3, 3),
    support(api::CREATE_TOPICS, 2, 6, 5),
    support(api::DELETE_TOPICS, 1, 5, 4),
    support(api::INIT_PRODUCER_ID, 0, 4, 2),
    support(api::DESCRIBE_CONFIGS, 1, 4, 4),
    support(api::SASL_HANDSHAKE, 1, 1, NEVER_FLEXIBLE),
    support(api::SASL_AUTHENTICATE, 0, 2, 2),
];

/// Produce versions below this one carry message sets older than
/// RecordBatch v2, which ringmq does not store.
pub const PRODUCE_VERSION_MIN_SERVED: i16 = 3;

/// The advertised range of `key`.
pub fn support_of(key: i16) -> Option<&'static ApiSupport> {
    SUPPORTED.iter().find(|api| api.key == key)
}

/// Whether `version` of `key` uses the flexible encoding.
pub fn is_flexible(key: i16, version: i16) -> bool {
    support_of(key).is_some_and(|api| version >= api.flexible_from)
}

/// Kafka error codes ringmq answers with.
pub mod error {
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const RECORD_LIST_TOO_LARGE: i16 = 18;
    pub const INVALID_REQUIRED_ACKS: i16 = 21;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    pub const INVALID_CONFIG: i16 = 40;
    pub const INVALID_REQUEST: i16 = 42;
    pub const POLICY_VIOLATION: i16 = 44;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
    pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
    pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
    pub const ILLEGAL_SASL_STATE: i16 = 34;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const SASL_AUTHENTICATION_FAILED: i16 = 58;
    pub const UNKNOWN_PRODUCER_ID: i16 = 59;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const INVALID_RECORD: i16 = 87;
}

/// The Kafka code for a ringmq error code.
pub fn error_code(code: crate::protocol::ErrorCode) -> i16 {
    use crate::protocol::ErrorCode as E;
    match code {
        E::None => error::NONE,
        E::Internal | E::InvalidRecordState => error::UNKNOWN_SERVER_ERROR,
        E::CorruptBatch => error::CORRUPT_MESSAGE,
        E::UnknownTopicOrPartition => error::UNKNOWN_TOPIC_OR_PARTITION,
        E::OffsetOutOfRange => error::OFFSET_OUT_OF_RANGE,
        E::TooLarge => error::MESSAGE_TOO_LARGE,
        E::MalformedRequest | E::InvalidArgument | E::UnknownApi => error::INVALID_REQUEST,
        E::UnsupportedVersion => error::UNSUPPORTED_VERSION,
        E::TopicAlreadyExists => error::TOPIC_ALREADY_EXISTS,
        E::InvalidTopicName => error::INVALID_TOPIC_EXCEPTION,
        E::InvalidPartitionCount => error::INVALID_PARTITIONS,
        E::NoSpace | E::StorageFailure => error::KAFKA_STORAGE_ERROR,
        // Retriable for clients: they refresh metadata and come back.
        E::ShuttingDown => error::NOT_LEADER_OR_FOLLOWER,
        E::ResourceLimit => error::POLICY_VIOLATION,
        E::UnknownMemberId => error::UNKNOWN_MEMBER_ID,
        E::IllegalGeneration => error::ILLEGAL_GENERATION,
        E::RebalanceInProgress => error::REBALANCE_IN_PROGRESS,
        E::InvalidGroupId => error::INVALID_GROUP_ID,
        E::GroupKindMismatch => error::INCONSISTENT_GROUP_PROTOCOL,
        E::UnknownGroup => error::GROUP_ID_NOT_FOUND,
        E::OutOfOrderSequence => error::OUT_OF_ORDER_SEQUENCE_NUMBER,
        E::UnknownProducerId => error::UNKNOWN_PRODUCER_ID,
        E::ProducerFenced => error::INVALID_PRODUCER_EPOCH,
        E::AuthenticationFailed => error::SASL_AUTHENTICATION_FAILED,
        E::AuthenticationRequired => error::ILLEGAL_SASL_STATE,
        E::TopicNotAuthorized => error::TOPIC_AUTHORIZATION_FAILED,
        E::GroupNotAuthorized => error::GROUP_AUTHORIZATION_FAILED,
        E::ClusterNotAuthorized => error::CLUSTER_AUTHORIZATION_FAILED,
    }
}

/// A parsed request header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    /// The body uses the flexible encoding.
    pub flexible: bool,
}

/// Checks the size field of the frame at the start of `buffer`. A size under
/// a header's or over [`REQUEST_BYTES_MAX`] cannot be answered (the stream
/// cannot be re-synchronised): the connection closes.
pub fn check_frame(buffer: &[u8]) -> Result<FrameCheck, DecodeError> {
    let Some(size) = buffer.get(..SIZE_BYTES) else {
        return Ok(FrameCheck::Incomplete { needed: SIZE_BYTES });
    };
    let size = i32::from_be_bytes([size[0], size[1], size[2], size[3]]);
    let size = usize::try_from(size).map_err(|_| DecodeError("negative frame size"))?;
    if size < HEADER_FIXED_BYTES {
        return Err(DecodeError("frame shorter than a request header"));
    }
    if size > REQUEST_BYTES_MAX {
        return Err(DecodeError("frame over the request size limit"));
    }
    let frame_bytes = SIZE_BYTES + size;
    if buffer.len() < frame_bytes {
        Ok(FrameCheck::Incomplete { needed: frame_bytes })
    } else {
        Ok(FrameCheck::Complete { frame_bytes })
    }
}

/// Parses the header of `request` (a frame without its size field) and
/// returns it with the number of bytes it took. The header's encoding follows
/// from the API and version; an API or version not advertised is parsed as a
/// classic header (so it can be answered), its body left undecoded.
pub fn parse_header(request: &[u8]) -> Result<(RequestHeader, usize), DecodeError> {
    let mut reader = Reader::new(request, false);
    let api_key = reader.i16()?;
    let api_version = reader.i16()?;
    let correlation_id = reader.i32()?;
    let client_id = reader.nullable_string(CLIENT_ID_BYTES_MAX)?.map(str::to_owned);
    let flexible = is_flexible(api_key, api_version);
    let mut header_bytes = reader.consumed();
    if flexible {
        let mut tags = Reader::new(request.get(header_bytes..).unwrap_or(&[]), true);
        tags.tags()?;
        header_bytes += tags.consumed();
    }
    Ok((RequestHeader { api_key, api_version, correlation_id, client_id, flexible }, header_bytes))
}

/// Starts a response frame: a placeholder size, the correlation id, and for
/// flexible responses (except ApiVersions, whose header stays v0) the empty
/// tag section. [`finish_frame`] fills the size in.
pub fn response_writer(header: &RequestHeader) -> Writer {
    let mut writer = Writer::new(header.flexible);
    writer.i32(0);
    writer.i32(header.correlation_id);
    if header.flexible && header.api_key != api::API_VERSIONS {
        writer.tags();
    }
    writer
}

/// The frame of a finished response: its size field set.
pub fn finish_frame(writer: Writer) -> Vec<u8> {
    finish_frame_with(writer, 0)
}

/// The head of a frame followed by `more` bytes in other buffers.
pub fn finish_frame_with(writer: Writer, more: usize) -> Vec<u8> {
    let mut frame = writer.into_inner();
    let size = (frame.len() - SIZE_BYTES + more) as i32;
    if let Some(field) = frame.get_mut(..SIZE_BYTES) {
        field.copy_from_slice(&size.to_be_bytes());
    }
    frame
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_api_is_advertised_in_both_encodings() {
        for api in SUPPORTED {
            assert!(api.min <= api.max);
            if api.flexible_from == NEVER_FLEXIBLE {
                // SaslHandshake: Kafka's schema has no flexible version.
                assert_eq!(api.key, api::SASL_HANDSHAKE);
                assert!(!is_flexible(api.key, api.max));
                continue;
            }
            assert!(api.min < api.flexible_from, "api {}: a classic version", api.key);
            assert!(api.max >= api.flexible_from, "api {}: a flexible version", api.key);
            assert!(!is_flexible(api.key, api.flexible_from - 1) && is_flexible(api.key, api.flexible_from));
        }
    }

    #[test]
    fn frames_are_checked_before_anything_is_read() {
        assert_eq!(check_frame(&[0, 0]).unwrap(), FrameCheck::Incomplete { needed: 4 });
        assert!(check_frame(&[0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(check_frame(&[0, 0, 0, 3]).is_err());
        assert!(check_frame(&[0x7f, 0, 0, 0]).is_err());
        assert_eq!(check_frame(&[0, 0, 0, 8, 1]).unwrap(), FrameCheck::Incomplete { needed: 12 });
        assert_eq!(
            check_frame(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap(),
            FrameCheck::Complete { frame_bytes: 12 }
        );
    }

    #[test]
    fn a_flexible_header_keeps_a_classic_client_id_then_tags() {
        // ApiVersions v3: key 18, version 3, correlation 7, client id "ab", no tags.
        let request = [0, 18, 0, 3, 0, 0, 0, 7, 0, 2, b'a', b'b', 0, 0xff];
        let (header, used) = parse_header(&request).unwrap();
        assert!(header.flexible);
        assert_eq!(header.client_id.as_deref(), Some("ab"));
        assert_eq!(used, 13);
        let (header, used) = parse_header(&[0, 3, 0, 1, 0, 0, 0, 9, 0xff, 0xff]).unwrap();
        assert!(!header.flexible);
        assert_eq!(header.client_id, None);
        assert_eq!(used, 10);
    }
}
