//! The native wire protocol (specified in `docs/PROTOCOL.md`): framing, error
//! codes, limits, and a bounds-checked codec. One file per API holds its request
//! and response with their `encode` and `decode`; the client and the server share
//! them. Nothing here does I/O.
//!
//! ```text
//! request frame:   length u32 | api_key u16 | api_version u16 | correlation_id u32 | body
//! response frame:  length u32 | correlation_id u32 | error_code u16 | body
//! ```
//! `length` counts the bytes after itself. Integers are big-endian.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

pub mod fetch;
pub mod group;
pub mod hello;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod producer_id;
pub mod security;
pub mod share;
pub mod topic;

use std::fmt;

/// Largest request frame a server reads (length field value). Produce requests
/// carry whole batches, so this is a few of [`crate::batch::BATCH_BYTES_MAX`].
pub const REQUEST_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Largest response frame a client accepts. Fetch responses are bounded by
/// [`FETCH_BYTES_MAX`] plus one batch (a fetch returns at least one whole batch).
pub const RESPONSE_BYTES_MAX: usize = FETCH_BYTES_MAX + crate::batch::BATCH_BYTES_MAX + 4096;
/// Most bytes of records one fetch may ask for.
pub const FETCH_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Longest a fetch may long-poll.
pub const FETCH_WAIT_MS_MAX: u32 = 60_000;
/// Topic (and group) names: Kafka's limit and alphabet (`[a-zA-Z0-9._-]`). A
/// name becomes one whole file name on disk (`topics/<topic>/`,
/// `groups/<group>/`, `groups/<group>/share/<topic>/`); nothing is ever
/// appended to it inside that file name (a deleted topic is renamed to a name of
/// its own, temporary files live inside the directory), so every name that
/// [`valid_topic_name`] accepts fits every file the broker derives from it.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Longest file name (one path component) the file systems we run on take
/// (NAME_MAX of ext4, xfs, btrfs, tmpfs).
pub const FILE_NAME_BYTES_MAX: usize = 255;
/// Bytes the broker appends to a topic or group name within one file name.
pub const NAME_IN_FILE_NAME_SUFFIX_BYTES_MAX: usize = 0;
const _: () = assert!(TOPIC_NAME_BYTES_MAX + NAME_IN_FILE_NAME_SUFFIX_BYTES_MAX <= FILE_NAME_BYTES_MAX);
/// Longest topic-name string a decoder accepts: anything a u16 length can say
/// (the frame limit bounds the total). Longer-than-valid names are then refused
/// with their own error (InvalidTopicName, UnknownTopicOrPartition), not as a
/// malformed request.
pub const TOPIC_NAME_WIRE_BYTES_MAX: usize = u16::MAX as usize;
/// Client names in Hello.
pub const CLIENT_NAME_BYTES_MAX: usize = 256;
/// Partitions one topic may have.
pub const PARTITIONS_PER_TOPIC_MAX: u32 = 10_000;
/// Partition entries in one produce request.
pub const PRODUCE_ENTRIES_MAX: usize = 4096;
/// Topics named in one metadata request.
pub const METADATA_TOPICS_MAX: usize = 10_000;
/// Bytes of the request header after the length field.
pub const REQUEST_HEADER_BYTES: usize = 8;
/// Bytes of the response header after the length field.
pub const RESPONSE_HEADER_BYTES: usize = 6;
/// The length field itself.
pub const LENGTH_BYTES: usize = 4;

const _: () = assert!(REQUEST_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(RESPONSE_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(REQUEST_BYTES_MAX > crate::batch::BATCH_BYTES_MAX);

/// API keys. 16..=25 are the group, producer-id and share-group APIs.
pub mod api {
    pub const HELLO: u16 = 0;
    pub const METADATA: u16 = 1;
    pub const CREATE_TOPIC: u16 = 2;
    pub const DELETE_TOPIC: u16 = 3;
    pub const LIST_OFFSETS: u16 = 4;
    pub const PRODUCE: u16 = 5;
    pub const FETCH: u16 = 6;
    pub const JOIN_GROUP: u16 = 16;
    pub const HEARTBEAT: u16 = 17;
    pub const LEAVE_GROUP: u16 = 18;
    pub const OFFSET_COMMIT: u16 = 19;
    pub const OFFSET_FETCH: u16 = 20;
    pub const LIST_GROUPS: u16 = 21;
    pub const DESCRIBE_GROUP: u16 = 22;
    pub const INIT_PRODUCER_ID: u16 = 23;
    pub const SHARE_FETCH: u16 = 24;
    pub const SHARE_ACKNOWLEDGE: u16 = 25;
    pub const AUTHENTICATE: u16 = 48;
    pub const USER_UPSERT: u16 = 49;
    pub const USER_DELETE: u16 = 50;
    pub const USER_LIST: u16 = 51;
    pub const ACL_ADD: u16 = 52;
    pub const ACL_REMOVE: u16 = 53;
    pub const ACL_LIST: u16 = 54;
    /// Every API this server speaks, with its version range.
    pub const SUPPORTED: [(u16, u16, u16); 24] = [
        (HELLO, 0, 0),
        (METADATA, 0, 0),
        (CREATE_TOPIC, 0, 0),
        (DELETE_TOPIC, 0, 0),
        (LIST_OFFSETS, 0, 0),
        (PRODUCE, 0, 0),
        (FETCH, 0, 0),
        (JOIN_GROUP, 0, 0),
        (HEARTBEAT, 0, 0),
        (LEAVE_GROUP, 0, 0),
        (OFFSET_COMMIT, 0, 0),
        (OFFSET_FETCH, 0, 0),
        (LIST_GROUPS, 0, 0),
        (DESCRIBE_GROUP, 0, 0),
        (INIT_PRODUCER_ID, 0, 0),
        (SHARE_FETCH, 0, 0),
        (SHARE_ACKNOWLEDGE, 0, 0),
        (AUTHENTICATE, 0, 0),
        (USER_UPSERT, 0, 0),
        (USER_DELETE, 0, 0),
        (USER_LIST, 0, 0),
        (ACL_ADD, 0, 0),
        (ACL_REMOVE, 0, 0),
        (ACL_LIST, 0, 0),
    ];
}

/// Stable error codes. A retired code is never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
#[non_exhaustive]
pub enum ErrorCode {
    None = 0,
    /// An unexpected server error (a bug); the server's log says more.
    Internal = 1,
    /// A batch failed its length, magic or CRC-32C check.
    CorruptBatch = 2,
    UnknownTopicOrPartition = 3,
    OffsetOutOfRange = 4,
    /// A frame or batch over its limit.
    TooLarge = 5,
    /// The request body could not be decoded.
    MalformedRequest = 6,
    UnsupportedVersion = 7,
    UnknownApi = 8,
    TopicAlreadyExists = 9,
    InvalidTopicName = 10,
    InvalidPartitionCount = 11,
    /// The disk is full; nothing was appended. Retry later.
    NoSpace = 12,
    /// The partition refuses writes after a failed fdatasync (or another storage
    /// failure); the server must be restarted to recover it.
    StorageFailure = 13,
    /// The server is shutting down; retry on another connection later.
    ShuttingDown = 14,
    InvalidArgument = 15,
    /// A broker-wide limit was reached (topics, partitions).
    ResourceLimit = 16,
    /// The member id is not (or no longer) in the group: join again with "".
    UnknownMemberId = 17,
    /// The request names a generation other than the group's current one.
    IllegalGeneration = 18,
    /// The group is rebalancing: commit what you have, then join again.
    RebalanceInProgress = 19,
    /// A group name outside `[a-zA-Z0-9._-]{1,249}`.
    InvalidGroupId = 20,
    /// The group exists as the other kind (consumer vs share group).
    GroupKindMismatch = 21,
    /// No such group.
    UnknownGroup = 22,
    /// An idempotent batch whose sequence is not the next one (a gap, or a
    /// retry older than the last 5 batches); nothing was appended.
    OutOfOrderSequence = 23,
    /// An idempotent batch from an older epoch of its producer: another
    /// instance with the same producer name took over.
    ProducerFenced = 24,
    /// A share acknowledgement for records this member has not acquired (or
    /// whose lease expired).
    InvalidRecordState = 25,
    /// An idempotent batch above sequence 0 from a producer id the partition
    /// does not know (its batches were deleted by retention before a restart,
    /// or it was forgotten past the per-partition bound); nothing was appended.
    UnknownProducerId = 26,
    /// SASL authentication failed: unknown user, wrong password, or an
    /// unreadable exchange. The connection closes after this answer.
    AuthenticationFailed = 27,
    /// The listener requires authentication and the connection has not
    /// authenticated: AUTHENTICATE first. The connection closes after this answer.
    AuthenticationRequired = 28,
    /// The user's ACLs do not allow this operation on the topic; nothing changed.
    TopicNotAuthorized = 29,
    /// The user's ACLs do not allow this operation on the group; nothing changed.
    GroupNotAuthorized = 30,
    /// Only a super user may do this (users and ACLs); nothing changed.
    ClusterNotAuthorized = 31,
}

impl ErrorCode {
    pub fn from_u16(code: u16) -> Option<ErrorCode> {
        use ErrorCode::*;
        Some(match code {
            0 => None,
            1 => Internal,
            2 => CorruptBatch,
            3 => UnknownTopicOrPartition,
            4 => OffsetOutOfRange,
            5 => TooLarge,
            6 => MalformedRequest,
            7 => UnsupportedVersion,
            8 => UnknownApi,
            9 => TopicAlreadyExists,
            10 => InvalidTopicName,
            11 => InvalidPartitionCount,
            12 => NoSpace,
            13 => StorageFailure,
            14 => ShuttingDown,
            15 => InvalidArgument,
            16 => ResourceLimit,
            17 => UnknownMemberId,
            18 => IllegalGeneration,
            19 => RebalanceInProgress,
            20 => InvalidGroupId,
            21 => GroupKindMismatch,
            22 => UnknownGroup,
            23 => OutOfOrderSequence,
            24 => ProducerFenced,
            25 => InvalidRecordState,
            26 => UnknownProducerId,
            27 => AuthenticationFailed,
            28 => AuthenticationRequired,
            29 => TopicNotAuthorized,
            30 => GroupNotAuthorized,
            31 => ClusterNotAuthorized,
            _ => return Option::None,
        })
    }

    pub fn name(self) -> &'static str {
        use ErrorCode::*;
        match self {
            None => "none",
            Internal => "internal error",
            CorruptBatch => "corrupt batch",
            UnknownTopicOrPartition => "unknown topic or partition",
            OffsetOutOfRange => "offset out of range",
            TooLarge => "too large",
            MalformedRequest => "malformed request",
            UnsupportedVersion => "unsupported version",
            UnknownApi => "unknown api",
            TopicAlreadyExists => "topic already exists",
            InvalidTopicName => "invalid topic name",
            InvalidPartitionCount => "invalid partition count",
            NoSpace => "no space left on the device",
            StorageFailure => "storage failure",
            ShuttingDown => "shutting down",
            InvalidArgument => "invalid argument",
            ResourceLimit => "resource limit reached",
            UnknownMemberId => "unknown member id",
            IllegalGeneration => "illegal generation",
            RebalanceInProgress => "rebalance in progress",
            InvalidGroupId => "invalid group id",
            GroupKindMismatch => "group is of another kind",
            UnknownGroup => "unknown group",
            OutOfOrderSequence => "out of order sequence",
            ProducerFenced => "producer fenced",
            InvalidRecordState => "invalid record state",
            UnknownProducerId => "unknown producer id",
            AuthenticationFailed => "authentication failed (unknown user or wrong password)",
            AuthenticationRequired => "authentication required: the listener wants SASL before any other request",
            TopicNotAuthorized => "not authorized for this topic (ask a super user for an ACL: ringmq acl add)",
            GroupNotAuthorized => "not authorized for this group (ask a super user for an ACL: ringmq acl add)",
            ClusterNotAuthorized => "not authorized: only a super user manages users and ACLs",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), *self as u16)
    }
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub reason: &'static str,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed: {}", self.reason)
    }
}

impl std::error::Error for DecodeError {}

fn malformed(reason: &'static str) -> DecodeError {
    DecodeError { reason }
}

/// What [`check_request`] found at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameCheck {
    /// More bytes are needed; at least this many in total.
    Incomplete { needed: usize },
    /// A whole frame of this many bytes (length field included) is present.
    Complete { frame_bytes: usize },
}

/// A request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    pub api_key: u16,
    pub api_version: u16,
    pub correlation_id: u32,
}

/// A frame the server cannot read: answered (when the header is known) and the
/// connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTooLarge {
    pub declared: usize,
    /// The header, when enough bytes arrived to read it.
    pub header: Option<RequestHeader>,
}

/// Checks, without allocating, whether `buffer` starts with a whole request frame.
///
/// A length over the limit is refused once the header behind it has arrived, so
/// the refusal can be answered with the request's correlation id; a length below
/// the header size is refused at once and never answered (there is no header).
pub fn check_request(buffer: &[u8]) -> Result<FrameCheck, FrameTooLarge> {
    match check_frame(buffer, REQUEST_HEADER_BYTES, REQUEST_BYTES_MAX) {
        Ok(check) => Ok(check),
        Err(declared) if declared < REQUEST_HEADER_BYTES => Err(FrameTooLarge { declared, header: None }),
        Err(declared) => match buffer.get(LENGTH_BYTES..LENGTH_BYTES + REQUEST_HEADER_BYTES) {
            None => Ok(FrameCheck::Incomplete { needed: LENGTH_BYTES + REQUEST_HEADER_BYTES }),
            Some(header) => Err(FrameTooLarge { declared, header: parse_request_header(header).ok() }),
        },
    }
}

/// Checks whether `buffer` starts with a whole response frame.
pub fn check_response(buffer: &[u8]) -> Result<FrameCheck, DecodeError> {
    check_frame(buffer, RESPONSE_HEADER_BYTES, RESPONSE_BYTES_MAX)
        .map_err(|_| malformed("response frame over the limit"))
}

fn check_frame(buffer: &[u8], header_bytes: usize, max: usize) -> Result<FrameCheck, usize> {
    let Some(prefix) = buffer.get(..LENGTH_BYTES).and_then(|p| <[u8; LENGTH_BYTES]>::try_from(p).ok()) else {
        return Ok(FrameCheck::Incomplete { needed: LENGTH_BYTES });
    };
    let declared = u32::from_be_bytes(prefix) as usize;
    if declared > max || declared < header_bytes {
        return Err(declared);
    }
    let frame_bytes = LENGTH_BYTES + declared;
    if buffer.len() < frame_bytes {
        return Ok(FrameCheck::Incomplete { needed: frame_bytes });
    }
    Ok(FrameCheck::Complete { frame_bytes })
}

/// Parses the header of a request frame whose length field was already removed.
pub fn parse_request_header(after_length: &[u8]) -> Result<RequestHeader, DecodeError> {
    let mut reader = Reader::new(after_length);
    Ok(RequestHeader { api_key: reader.u16()?, api_version: reader.u16()?, correlation_id: reader.u32()? })
}

/// Starts a request frame; finish it with [`finish_frame`].
pub fn request_frame(api_key: u16, api_version: u16, correlation_id: u32) -> Writer {
    request_frame_in(Vec::with_capacity(64), api_key, api_version, correlation_id)
}

/// [`request_frame`] written into `buffer`'s allocation.
pub fn request_frame_in(buffer: Vec<u8>, api_key: u16, api_version: u16, correlation_id: u32) -> Writer {
    let mut writer = Writer::reusing(buffer);
    writer.u32(0);
    writer.u16(api_key);
    writer.u16(api_version);
    writer.u32(correlation_id);
    writer
}

/// Starts a response frame; finish it with [`finish_frame`].
pub fn response_frame(correlation_id: u32, error: ErrorCode, capacity: usize) -> Writer {
    let mut writer = Writer::with_capacity(capacity + LENGTH_BYTES + RESPONSE_HEADER_BYTES);
    writer.u32(0);
    writer.u32(correlation_id);
    writer.u16(error as u16);
    writer
}

/// Fills in the length field.
pub fn finish_frame(writer: Writer) -> Vec<u8> {
    let mut bytes = writer.into_inner();
    let length = (bytes.len() - LENGTH_BYTES) as u32;
    if let Some(field) = bytes.get_mut(..LENGTH_BYTES) {
        field.copy_from_slice(&length.to_be_bytes());
    }
    bytes
}

/// A response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHeader {
    pub correlation_id: u32,
    /// The raw code, so codes newer than this client are still reported.
    pub error_code: u16,
}

/// Parses a whole response frame (length field included) into header and body.
pub fn parse_response(frame: &[u8]) -> Result<(ResponseHeader, &[u8]), DecodeError> {
    let mut reader = Reader::new(frame.get(LENGTH_BYTES..).ok_or(malformed("short response"))?);
    let header = ResponseHeader { correlation_id: reader.u32()?, error_code: reader.u16()? };
    Ok((header, reader.rest()))
}

/// A bounds-checked big-endian reader over untrusted bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    /// Bytes consumed so far, for callers that split owned buffers.
    consumed: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, consumed: 0 }
    }

    pub fn consumed(&self) -> usize {
        self.consumed
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        let (taken, rest) = self.bytes.split_at_checked(count).ok_or(malformed("truncated"))?;
        self.bytes = rest;
        self.consumed += count;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?.try_into().map_err(|_| malformed("truncated"))
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let [byte] = self.array::<1>()?;
        Ok(byte)
    }
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// A u16-length-prefixed UTF-8 string of at most `max` bytes.
    pub fn string(&mut self, max: usize) -> Result<&'a str, DecodeError> {
        let length = self.u16()? as usize;
        if length > max {
            return Err(malformed("string longer than its limit"));
        }
        std::str::from_utf8(self.take(length)?).map_err(|_| malformed("string is not UTF-8"))
    }

    /// A u32-length-prefixed byte string of at most `max` bytes.
    pub fn bytes(&mut self, max: usize) -> Result<&'a [u8], DecodeError> {
        let length = self.u32()? as usize;
        if length > max {
            return Err(malformed("bytes longer than their limit"));
        }
        self.take(length)
    }

    /// A u32 element count, checked against `max` and against the bytes left
    /// (each element needs at least `element_bytes_min`), so no caller allocates
    /// for elements that are not there.
    pub fn count(&mut self, max: usize, element_bytes_min: usize) -> Result<usize, DecodeError> {
        let count = self.u32()? as usize;
        if count > max {
            return Err(malformed("count over its limit"));
        }
        if count.saturating_mul(element_bytes_min.max(1)) > self.bytes.len() {
            return Err(malformed("count larger than the bytes present"));
        }
        Ok(count)
    }

    pub fn rest(&self) -> &'a [u8] {
        self.bytes
    }

    /// Fails when bytes are left over.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(malformed("trailing bytes"))
        }
    }
}

/// A big-endian writer.
#[derive(Debug, Clone, Default)]
pub struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    pub fn with_capacity(capacity: usize) -> Writer {
        Writer { bytes: Vec::with_capacity(capacity) }
    }
    /// A writer into `bytes`, emptied first (its allocation is reused).
    pub fn reusing(mut bytes: Vec<u8>) -> Writer {
        bytes.clear();
        Writer { bytes }
    }
    /// Room for `additional` more bytes.
    pub fn reserve(&mut self, additional: usize) {
        self.bytes.reserve(additional);
    }
    pub fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }
    pub fn u16(&mut self, value: u16) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }
    pub fn u32(&mut self, value: u32) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }
    pub fn u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }
    pub fn i64(&mut self, value: i64) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }
    /// A u16-length-prefixed string; callers keep strings within their limits.
    pub fn string(&mut self, value: &str) {
        let bytes = value.as_bytes();
        let length = bytes.len().min(u16::MAX as usize);
        self.u16(length as u16);
        self.bytes.extend_from_slice(bytes.get(..length).unwrap_or(bytes));
    }
    pub fn bytes(&mut self, value: &[u8]) {
        self.u32(value.len() as u32);
        self.bytes.extend_from_slice(value);
    }
    pub fn count(&mut self, count: usize) {
        self.u32(count as u32);
    }
    pub fn raw(&mut self, value: &[u8]) {
        self.bytes.extend_from_slice(value);
    }
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
    pub fn into_inner(self) -> Vec<u8> {
        self.bytes
    }
}

/// Whether `name` is a valid topic name: 1 to 249 bytes of `[a-zA-Z0-9._-]`, not
/// `.` or `..` (it becomes a directory name).
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= TOPIC_NAME_BYTES_MAX
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_checked_before_anything_is_allocated() {
        assert_eq!(check_request(&[0, 0]), Ok(FrameCheck::Incomplete { needed: 4 }));
        let mut frame = request_frame(api::HELLO, 0, 7);
        frame.string("me");
        let bytes = finish_frame(frame);
        assert_eq!(check_request(&bytes[..10]), Ok(FrameCheck::Incomplete { needed: bytes.len() }));
        assert_eq!(check_request(&bytes), Ok(FrameCheck::Complete { frame_bytes: bytes.len() }));
        let header = parse_request_header(&bytes[4..]).unwrap();
        assert_eq!(header, RequestHeader { api_key: api::HELLO, api_version: 0, correlation_id: 7 });
        let mut huge = bytes.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        let refused = check_request(&huge).unwrap_err();
        assert_eq!(refused.header.unwrap().correlation_id, 7);
        huge[..4].copy_from_slice(&3u32.to_be_bytes());
        assert!(check_request(&huge).is_err(), "a length below the header size is refused");
    }

    #[test]
    fn counts_cannot_claim_more_than_the_bytes_present() {
        let mut writer = Writer::default();
        writer.u32(1_000_000);
        let bytes = writer.into_inner();
        assert!(Reader::new(&bytes).count(METADATA_TOPICS_MAX, 2).is_err());
        assert!(Reader::new(&bytes).count(10_000_000, 0).is_err());
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(valid_topic_name("orders.v2_eu-west"));
        for bad in ["", ".", "..", "a/b", "a b", "ü", &"x".repeat(250)] {
            assert!(!valid_topic_name(bad), "{bad:?}");
        }
    }

    /// The stable twin of fuzz/fuzz_targets/message_decode.rs: random bodies
    /// through every decoder of the group, producer-id and share APIs.
    #[test]
    fn random_bodies_never_panic_a_decoder() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for round in 0..20_000usize {
            let length = round % 200;
            let bytes: Vec<u8> = (0..length)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    // Small values often, so counts and lengths sometimes fit.
                    if seed % 3 == 0 {
                        (seed >> 40) as u8 % 4
                    } else {
                        (seed >> 32) as u8
                    }
                })
                .collect();
            for key in [api::JOIN_GROUP, api::HEARTBEAT, api::LEAVE_GROUP, api::OFFSET_COMMIT, api::OFFSET_FETCH] {
                let _ = group::GroupRequest::decode(key, &bytes);
            }
            let _ = group::GroupResponse::decode_join(&bytes);
            let _ = group::GroupResponse::decode_offsets(&bytes);
            let _ = group::GroupResponse::decode_describe(&bytes);
            let _ = group::decode_list_groups_response(&bytes);
            let _ = producer_id::InitProducerIdRequest::decode(&bytes);
            let _ = producer_id::InitProducerIdResponse::decode(&bytes);
            let _ = share::ShareFetchRequest::decode(&bytes);
            let _ = share::ShareFetchResponse::decode(&bytes);
            let _ = share::ShareAckRequest::decode(&bytes);
            let _ = share::decode_ack_response(&bytes);
        }
    }

    #[test]
    fn every_error_code_round_trips() {
        for code in 0..=31u16 {
            assert_eq!(ErrorCode::from_u16(code).unwrap() as u16, code);
        }
        assert_eq!(ErrorCode::from_u16(32), None);
    }
}
