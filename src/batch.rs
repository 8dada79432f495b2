//! Kafka RecordBatch v2: the one format ringmq uses on disk, on its own wire and
//! (later) on Kafka's wire.
//!
//! ```text
//! byte  field                   type   notes
//!    0  base_offset             i64    stamped by the broker; outside the CRC
//!    8  batch_length            i32    bytes after this field
//!   12  partition_leader_epoch  i32    outside the CRC
//!   16  magic                   i8     always 2
//!   17  crc                     u32    CRC-32C of bytes 21..end
//!   21  attributes              i16    bits 0-2 compression, 3 timestamp type,
//!                                      4 transactional, 5 control
//!   23  last_offset_delta       i32    records_count - 1 for batches we accept
//!   27  base_timestamp          i64    timestamp of the first record (ms)
//!   35  max_timestamp           i64
//!   43  producer_id             i64    -1 when not idempotent
//!   51  producer_epoch          i16
//!   53  base_sequence           i32
//!   57  records_count           i32
//!   61  records...
//!
//! record: length varint, attributes i8, timestamp_delta varlong,
//!         offset_delta varint, key_length varint (-1 = null), key,
//!         value_length varint (-1 = null), value, headers_count varint,
//!         headers (key_length varint, key, value_length varint (-1 = null), value)
//! ```
//!
//! All integers in the header are big-endian; varints are zigzag-encoded.
//!
//! Decoding never trusts the bytes: every read is bounds-checked, every length is
//! compared with the bytes actually present before it is used, and nothing is
//! allocated with a size that came from the bytes.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use crate::compression;
use std::borrow::Cow;
use std::fmt;

/// Bytes of the fixed batch header, up to and including `records_count`.
pub const BATCH_HEADER_BYTES: usize = 61;
/// `base_offset` + `batch_length`: the part of the header not counted in `batch_length`.
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// Largest batch the log accepts (whole batch, header included). Consumed by the
/// decoder, the log's append path and the protocol's frame limit.
pub const BATCH_BYTES_MAX: usize = 16 * 1024 * 1024;
/// The only batch format version ringmq reads or writes.
pub const MAGIC_V2: i8 = 2;
/// The smallest encoded record: length, attributes, timestamp delta, offset delta,
/// null key, null value, zero headers: one byte each.
pub const RECORD_BYTES_MIN: usize = 7;

const OFFSET_BASE_OFFSET: usize = 0;
const OFFSET_BATCH_LENGTH: usize = 8;
const OFFSET_LEADER_EPOCH: usize = 12;
const OFFSET_MAGIC: usize = 16;
const OFFSET_CRC: usize = 17;
/// The CRC covers everything from the attributes to the end of the batch.
const OFFSET_ATTRIBUTES: usize = 21;
const OFFSET_LAST_OFFSET_DELTA: usize = 23;
const OFFSET_BASE_TIMESTAMP: usize = 27;
const OFFSET_MAX_TIMESTAMP: usize = 35;
const OFFSET_PRODUCER_ID: usize = 43;
const OFFSET_PRODUCER_EPOCH: usize = 51;
const OFFSET_BASE_SEQUENCE: usize = 53;
const OFFSET_RECORDS_COUNT: usize = 57;

const ATTRIBUTE_COMPRESSION_MASK: i16 = 0x07;

const _: () = assert!(OFFSET_RECORDS_COUNT + 4 == BATCH_HEADER_BYTES);
const _: () = assert!(BATCH_BYTES_MAX <= i32::MAX as usize);

/// Why a batch or record was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchError {
    /// Fewer bytes than the header or the declared length needs.
    Truncated {
        needed: usize,
        available: usize,
    },
    /// `batch_length` disagrees with the bytes given.
    LengthMismatch {
        declared: i64,
        actual: usize,
    },
    /// The batch is larger than [`BATCH_BYTES_MAX`].
    TooLarge {
        size: usize,
        max: usize,
    },
    BadMagic {
        found: i8,
    },
    CrcMismatch {
        expected: u32,
        found: u32,
    },
    /// Records are compressed with a codec this build does not decode.
    UnsupportedCompression {
        codec: u8,
    },
    /// Compressed records that do not decompress, or expand past the limit.
    BadCompression {
        reason: String,
    },
    /// A batch with no records.
    Empty,
    /// `records_count`, `last_offset_delta` and the records present disagree.
    CountMismatch {
        records_count: i32,
        last_offset_delta: i32,
    },
    /// A record inside a CRC-valid batch is malformed.
    BadRecord {
        reason: &'static str,
    },
    /// The builder was given more than a batch can hold.
    Overflow {
        reason: &'static str,
    },
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::Truncated { needed, available } => {
                write!(f, "batch truncated: needs {needed} bytes, {available} present")
            }
            BatchError::LengthMismatch { declared, actual } => {
                write!(f, "batch length field says {declared} bytes after the length, {actual} present")
            }
            BatchError::TooLarge { size, max } => {
                write!(f, "batch of {size} bytes exceeds the limit of {max} bytes")
            }
            BatchError::BadMagic { found } => {
                write!(f, "batch magic is {found}, only RecordBatch v2 (magic 2) is supported")
            }
            BatchError::CrcMismatch { expected, found } => {
                write!(f, "batch CRC-32C mismatch: header says {expected:#010x}, bytes give {found:#010x}")
            }
            BatchError::UnsupportedCompression { codec } => {
                write!(f, "batch compression codec {codec} is not supported by this build")
            }
            BatchError::BadCompression { reason } => write!(f, "{reason}"),
            BatchError::Empty => write!(f, "batch holds no records"),
            BatchError::CountMismatch { records_count, last_offset_delta } => {
                write!(f, "batch records_count {records_count} disagrees with last_offset_delta {last_offset_delta}")
            }
            BatchError::BadRecord { reason } => write!(f, "malformed record: {reason}"),
            BatchError::Overflow { reason } => write!(f, "batch builder overflow: {reason}"),
        }
    }
}

impl std::error::Error for BatchError {}

fn read_array<const N: usize>(bytes: &[u8], at: usize) -> Result<[u8; N], BatchError> {
    let end = at.checked_add(N).ok_or(BatchError::Truncated { needed: usize::MAX, available: bytes.len() })?;
    bytes
        .get(at..end)
        .and_then(|slice| <[u8; N]>::try_from(slice).ok())
        .ok_or(BatchError::Truncated { needed: end, available: bytes.len() })
}

fn read_i64(bytes: &[u8], at: usize) -> Result<i64, BatchError> {
    read_array::<8>(bytes, at).map(i64::from_be_bytes)
}
fn read_i32(bytes: &[u8], at: usize) -> Result<i32, BatchError> {
    read_array::<4>(bytes, at).map(i32::from_be_bytes)
}
fn read_u32(bytes: &[u8], at: usize) -> Result<u32, BatchError> {
    read_array::<4>(bytes, at).map(u32::from_be_bytes)
}
fn read_i16(bytes: &[u8], at: usize) -> Result<i16, BatchError> {
    read_array::<2>(bytes, at).map(i16::from_be_bytes)
}
fn read_i8(bytes: &[u8], at: usize) -> Result<i8, BatchError> {
    read_array::<1>(bytes, at).map(i8::from_be_bytes)
}

/// The total size (header included) of the batch whose first bytes are `prefix`,
/// or `None` when fewer than [`LOG_OVERHEAD_BYTES`] are present. The size is
/// checked against [`BATCH_HEADER_BYTES`] and [`BATCH_BYTES_MAX`] before it is returned,
/// so callers may use it to size a read.
pub fn batch_size(prefix: &[u8]) -> Result<Option<usize>, BatchError> {
    if prefix.len() < LOG_OVERHEAD_BYTES {
        return Ok(None);
    }
    let declared = read_i32(prefix, OFFSET_BATCH_LENGTH)?;
    let size = i64::from(declared) + LOG_OVERHEAD_BYTES as i64;
    if size < BATCH_HEADER_BYTES as i64 {
        return Err(BatchError::LengthMismatch { declared: i64::from(declared), actual: prefix.len() });
    }
    let size = usize::try_from(size).map_err(|_| BatchError::TooLarge { size: usize::MAX, max: BATCH_BYTES_MAX })?;
    if size > BATCH_BYTES_MAX {
        return Err(BatchError::TooLarge { size, max: BATCH_BYTES_MAX });
    }
    Ok(Some(size))
}

/// The fixed header of a batch, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Decodes the header fields without checking anything but their presence.
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        if bytes.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::Truncated { needed: BATCH_HEADER_BYTES, available: bytes.len() });
        }
        Ok(BatchHeader {
            base_offset: read_i64(bytes, OFFSET_BASE_OFFSET)?,
            batch_length: read_i32(bytes, OFFSET_BATCH_LENGTH)?,
            partition_leader_epoch: read_i32(bytes, OFFSET_LEADER_EPOCH)?,
            magic: read_i8(bytes, OFFSET_MAGIC)?,
            crc: read_u32(bytes, OFFSET_CRC)?,
            attributes: read_i16(bytes, OFFSET_ATTRIBUTES)?,
            last_offset_delta: read_i32(bytes, OFFSET_LAST_OFFSET_DELTA)?,
            base_timestamp: read_i64(bytes, OFFSET_BASE_TIMESTAMP)?,
            max_timestamp: read_i64(bytes, OFFSET_MAX_TIMESTAMP)?,
            producer_id: read_i64(bytes, OFFSET_PRODUCER_ID)?,
            producer_epoch: read_i16(bytes, OFFSET_PRODUCER_EPOCH)?,
            base_sequence: read_i32(bytes, OFFSET_BASE_SEQUENCE)?,
            records_count: read_i32(bytes, OFFSET_RECORDS_COUNT)?,
        })
    }

    /// The compression codec id (0 = none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> u8 {
        (self.attributes & ATTRIBUTE_COMPRESSION_MASK) as u8
    }

    /// Offset of the last record: `base_offset + last_offset_delta`.
    pub fn last_offset(&self) -> i64 {
        self.base_offset.saturating_add(i64::from(self.last_offset_delta))
    }

    /// Total bytes of the batch, header included.
    pub fn size_bytes(&self) -> usize {
        usize::try_from(self.batch_length).unwrap_or(0).saturating_add(LOG_OVERHEAD_BYTES)
    }
}

/// CRC-32C of a batch's checked region (attributes to the end).
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(batch.get(OFFSET_ATTRIBUTES..).unwrap_or(&[]))
}

/// A batch whose length, magic and CRC have been checked.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    header: BatchHeader,
    bytes: &'a [u8],
}

impl<'a> Batch<'a> {
    /// Checks that `bytes` is exactly one whole batch: length, magic and CRC.
    /// Nothing else may trust a batch before this returns `Ok`.
    pub fn validate(bytes: &'a [u8]) -> Result<Batch<'a>, BatchError> {
        let size =
            batch_size(bytes)?.ok_or(BatchError::Truncated { needed: LOG_OVERHEAD_BYTES, available: bytes.len() })?;
        if size != bytes.len() {
            if size > bytes.len() {
                return Err(BatchError::Truncated { needed: size, available: bytes.len() });
            }
            return Err(BatchError::LengthMismatch {
                declared: (size - LOG_OVERHEAD_BYTES) as i64,
                actual: bytes.len() - LOG_OVERHEAD_BYTES,
            });
        }
        let header = BatchHeader::parse(bytes)?;
        if header.magic != MAGIC_V2 {
            return Err(BatchError::BadMagic { found: header.magic });
        }
        let found = compute_crc(bytes);
        if found != header.crc {
            return Err(BatchError::CrcMismatch { expected: header.crc, found });
        }
        Ok(Batch { header, bytes })
    }

    /// [`Batch::validate_stored`] plus a walk of every record (see
    /// `check_records`): the rules for a batch a producer sends.
    /// Compressed batches are decompressed for the walk (and stored as sent).
    pub fn validate_for_append(bytes: &'a [u8]) -> Result<Batch<'a>, BatchError> {
        let batch = Batch::validate_stored(bytes)?;
        batch.check_records()?;
        Ok(batch)
    }

    /// [`Batch::validate`] plus the header rules every stored batch meets: at
    /// least one record, `last_offset_delta == records_count - 1` (dense offsets),
    /// and a record count the bytes can actually hold. Recovery uses this: it
    /// decides what is torn, not what a producer may send.
    pub fn validate_stored(bytes: &'a [u8]) -> Result<Batch<'a>, BatchError> {
        let batch = Batch::validate(bytes)?;
        let header = batch.header;
        if header.records_count <= 0 {
            return Err(BatchError::Empty);
        }
        if header.last_offset_delta != header.records_count - 1 {
            return Err(BatchError::CountMismatch {
                records_count: header.records_count,
                last_offset_delta: header.last_offset_delta,
            });
        }
        let records_max = (bytes.len() - BATCH_HEADER_BYTES) / RECORD_BYTES_MIN;
        if header.compression() == 0 && header.records_count as usize > records_max {
            return Err(BatchError::CountMismatch {
                records_count: header.records_count,
                last_offset_delta: header.last_offset_delta,
            });
        }
        Ok(batch)
    }

    /// Walks every record: each decodes, offset deltas run 0, 1, 2, ..., no
    /// timestamp exceeds `max_timestamp` (the time index trusts it), and nothing
    /// follows the last record. So no stored batch can fail a reader later.
    fn check_records(&self) -> Result<(), BatchError> {
        let section = self.records_section()?;
        let mut expected_delta: i64 = 0;
        for record in self.records_in(&section) {
            let record = record?;
            if record.offset.wrapping_sub(self.header.base_offset) != expected_delta {
                return Err(bad("offset deltas are not 0, 1, 2, ..."));
            }
            if record.timestamp > self.header.max_timestamp {
                return Err(bad("a record is newer than the batch's max_timestamp"));
            }
            expected_delta += 1;
        }
        if expected_delta != i64::from(self.header.records_count) {
            return Err(bad("fewer records than records_count"));
        }
        Ok(())
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Iterates the records of an uncompressed batch. Compressed batches
    /// yield one [`BatchError::UnsupportedCompression`] error: read them with
    /// [`Batch::records_section`] and [`Batch::records_in`].
    pub fn records(&self) -> RecordIter<'a> {
        RecordIter {
            rest: self.bytes.get(BATCH_HEADER_BYTES..).unwrap_or(&[]),
            remaining: self.header.records_count.max(0),
            base_offset: self.header.base_offset,
            base_timestamp: self.header.base_timestamp,
            failed: false,
            compression: self.header.compression(),
        }
    }

    /// The records section: borrowed when the batch is uncompressed, else
    /// decompressed (bounded by [`compression::DECOMPRESSED_BYTES_MAX`]).
    pub fn records_section(&self) -> Result<Cow<'a, [u8]>, BatchError> {
        let section = self.bytes.get(BATCH_HEADER_BYTES..).unwrap_or(&[]);
        match self.header.compression() {
            compression::CODEC_NONE => Ok(Cow::Borrowed(section)),
            codec => match compression::decompress(codec, section) {
                Ok(records) => Ok(Cow::Owned(records)),
                Err(compression::DecompressError::UnknownCodec(codec)) => {
                    Err(BatchError::UnsupportedCompression { codec })
                }
                Err(error) => Err(BatchError::BadCompression { reason: error.to_string() }),
            },
        }
    }

    /// Iterates the records in `section`, this batch's records section as
    /// [`Batch::records_section`] returned it.
    pub fn records_in<'s>(&self, section: &'s [u8]) -> RecordIter<'s> {
        RecordIter {
            rest: section,
            remaining: self.header.records_count.max(0),
            base_offset: self.header.base_offset,
            base_timestamp: self.header.base_timestamp,
            failed: false,
            compression: compression::CODEC_NONE,
        }
    }
}

/// Writes `base_offset` into the batch header in place. The field lies outside the
/// CRC, so the batch stays valid and is not re-encoded.
pub fn stamp_base_offset(batch: &mut [u8], base_offset: i64) -> Result<(), BatchError> {
    let available = batch.len();
    let field = batch
        .get_mut(OFFSET_BASE_OFFSET..OFFSET_BASE_OFFSET + 8)
        .ok_or(BatchError::Truncated { needed: 8, available })?;
    field.copy_from_slice(&base_offset.to_be_bytes());
    Ok(())
}

/// One decoded record, borrowing from the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Headers<'a>,
}

/// The headers of one record, decoded lazily from bytes that were already checked
/// when the record was decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers<'a> {
    bytes: &'a [u8],
    count: i32,
}

impl<'a> Headers<'a> {
    pub fn len(&self) -> usize {
        self.count.max(0) as usize
    }
    pub fn is_empty(&self) -> bool {
        self.count <= 0
    }
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.count <= 0 {
            return None;
        }
        let mut cursor = self.bytes;
        let key = read_bytes(&mut cursor).ok()??;
        let value = read_bytes(&mut cursor).ok()?;
        self.bytes = cursor;
        self.count -= 1;
        Some((key, value))
    }
}

/// Iterator over the records of a validated batch. Stops after the first error.
#[derive(Debug, Clone)]
pub struct RecordIter<'a> {
    rest: &'a [u8],
    remaining: i32,
    base_offset: i64,
    base_timestamp: i64,
    failed: bool,
    compression: u8,
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<Record<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.compression != 0 {
            self.failed = true;
            return Some(Err(BatchError::UnsupportedCompression { codec: self.compression }));
        }
        if self.remaining == 0 {
            if !self.rest.is_empty() {
                self.failed = true;
                return Some(Err(BatchError::BadRecord { reason: "bytes after the last record" }));
            }
            return None;
        }
        match self.decode_one() {
            Ok(record) => {
                self.remaining -= 1;
                Some(Ok(record))
            }
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}

impl<'a> RecordIter<'a> {
    fn decode_one(&mut self) -> Result<Record<'a>, BatchError> {
        let mut cursor = self.rest;
        let length = read_varint32(&mut cursor)?;
        let length = usize::try_from(length).map_err(|_| bad("negative record length"))?;
        let (mut body, rest) = cursor.split_at_checked(length).ok_or(bad("record length exceeds the batch"))?;
        let _attributes = read_u8(&mut body)?;
        let timestamp_delta = read_varint64(&mut body)?;
        let offset_delta = read_varint32(&mut body)?;
        let key = read_bytes(&mut body)?;
        let value = read_bytes(&mut body)?;
        let header_count = read_varint32(&mut body)?;
        if header_count < 0 {
            return Err(bad("negative header count"));
        }
        let headers_start = body;
        for _ in 0..header_count {
            if read_bytes(&mut body)?.is_none() {
                return Err(bad("null header key"));
            }
            read_bytes(&mut body)?;
        }
        if !body.is_empty() {
            return Err(bad("record length longer than its fields"));
        }
        self.rest = rest;
        Ok(Record {
            offset: self.base_offset.wrapping_add(i64::from(offset_delta)),
            timestamp: self.base_timestamp.wrapping_add(timestamp_delta),
            key,
            value,
            headers: Headers { bytes: headers_start, count: header_count },
        })
    }
}

fn bad(reason: &'static str) -> BatchError {
    BatchError::BadRecord { reason }
}

fn read_u8(cursor: &mut &[u8]) -> Result<u8, BatchError> {
    let (&first, rest) = cursor.split_first().ok_or(bad("record truncated"))?;
    *cursor = rest;
    Ok(first)
}

/// Reads an unsigned LEB128 varint of at most `max_bytes` bytes.
fn read_uvarint(cursor: &mut &[u8], max_bytes: u32) -> Result<u64, BatchError> {
    let mut value: u64 = 0;
    for index in 0..max_bytes {
        let byte = read_u8(cursor)?;
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(bad("varint too long"))
}

/// A zigzag varint that must fit in an `i32`.
pub(crate) fn read_varint32(cursor: &mut &[u8]) -> Result<i32, BatchError> {
    let raw = read_uvarint(cursor, 5)?;
    let raw = u32::try_from(raw).map_err(|_| bad("varint overflows 32 bits"))?;
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// A zigzag varlong.
pub(crate) fn read_varint64(cursor: &mut &[u8]) -> Result<i64, BatchError> {
    let raw = read_uvarint(cursor, 10)?;
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

/// A length-prefixed byte string; length -1 is null.
fn read_bytes<'a>(cursor: &mut &'a [u8]) -> Result<Option<&'a [u8]>, BatchError> {
    let length = read_varint32(cursor)?;
    if length == -1 {
        return Ok(None);
    }
    let length = usize::try_from(length).map_err(|_| bad("negative length"))?;
    let (bytes, rest) = cursor.split_at_checked(length).ok_or(bad("length exceeds the record"))?;
    *cursor = rest;
    Ok(Some(bytes))
}

fn zigzag64(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn varint_len(value: i64) -> usize {
    let mut raw = zigzag64(value);
    let mut len = 1;
    while raw >= 0x80 {
        raw >>= 7;
        len += 1;
    }
    len
}

fn write_varint(out: &mut Vec<u8>, value: i64) {
    let mut raw = zigzag64(value);
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

fn bytes_len(bytes: Option<&[u8]>) -> usize {
    match bytes {
        None => varint_len(-1),
        Some(bytes) => varint_len(bytes.len() as i64) + bytes.len(),
    }
}

fn write_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => write_varint(out, -1),
        Some(bytes) => {
            write_varint(out, bytes.len() as i64);
            out.extend_from_slice(bytes);
        }
    }
}

/// Builds one uncompressed RecordBatch v2 from records.
///
/// ```
/// use ringmq::batch::{Batch, BatchBuilder};
/// let mut builder = BatchBuilder::new();
/// builder.append(1_700_000_000_000, Some(b"k"), Some(b"v"), &[]).unwrap();
/// let bytes = builder.finish().unwrap();
/// let batch = Batch::validate(&bytes).unwrap();
/// assert_eq!(batch.records().count(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    buffer: Vec<u8>,
    records_count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    partition_leader_epoch: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        BatchBuilder::new()
    }
}

impl BatchBuilder {
    pub fn new() -> BatchBuilder {
        BatchBuilder::with_capacity(0)
    }

    /// A builder whose buffer starts with room for `capacity` bytes of records.
    pub fn with_capacity(capacity: usize) -> BatchBuilder {
        BatchBuilder::reusing(Vec::with_capacity(BATCH_HEADER_BYTES + capacity))
    }

    /// A builder writing into `buffer`'s allocation (emptied first): a
    /// sender that hands each finished batch back does not allocate one per batch.
    pub fn reusing(mut buffer: Vec<u8>) -> BatchBuilder {
        buffer.clear();
        buffer.resize(BATCH_HEADER_BYTES, 0);
        BatchBuilder {
            buffer,
            records_count: 0,
            base_timestamp: 0,
            max_timestamp: -1,
            // What Kafka's Java producer sends: no leader epoch known.
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        }
    }

    /// Sets the idempotent-producer fields.
    pub fn producer(&mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> &mut Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    pub fn partition_leader_epoch(&mut self, epoch: i32) -> &mut Self {
        self.partition_leader_epoch = epoch;
        self
    }

    pub fn records_count(&self) -> usize {
        self.records_count as usize
    }

    /// Bytes the finished batch will have.
    pub fn size_bytes(&self) -> usize {
        self.buffer.len()
    }

    /// Bytes that appending this record would add.
    pub fn record_size_bytes(
        timestamp_delta: i64,
        offset_delta: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&[u8], Option<&[u8]>)],
    ) -> usize {
        let body = Self::record_body_len(timestamp_delta, offset_delta, key, value, headers);
        varint_len(body as i64) + body
    }

    fn record_body_len(
        timestamp_delta: i64,
        offset_delta: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&[u8], Option<&[u8]>)],
    ) -> usize {
        let headers_len: usize = headers.iter().map(|(key, value)| bytes_len(Some(key)) + bytes_len(*value)).sum();
        1 + varint_len(timestamp_delta)
            + varint_len(i64::from(offset_delta))
            + bytes_len(key)
            + bytes_len(value)
            + varint_len(headers.len() as i64)
            + headers_len
    }

    /// Appends one record. The first record's timestamp becomes the batch's base.
    pub fn append(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&[u8], Option<&[u8]>)],
    ) -> Result<(), BatchError> {
        if self.records_count == 0 {
            self.base_timestamp = timestamp;
        }
        let timestamp_delta = timestamp.wrapping_sub(self.base_timestamp);
        let offset_delta = self.records_count;
        let body_len = Self::record_body_len(timestamp_delta, offset_delta, key, value, headers);
        let record_len = varint_len(body_len as i64) + body_len;
        if self.buffer.len() + record_len > BATCH_BYTES_MAX {
            return Err(BatchError::Overflow { reason: "batch would exceed BATCH_BYTES_MAX" });
        }
        if self.records_count == i32::MAX {
            return Err(BatchError::Overflow { reason: "too many records" });
        }
        let start = self.buffer.len();
        let out = &mut self.buffer;
        write_varint(out, body_len as i64);
        out.push(0); // record attributes: unused in v2
        write_varint(out, timestamp_delta);
        write_varint(out, i64::from(offset_delta));
        write_bytes(out, key);
        write_bytes(out, value);
        write_varint(out, headers.len() as i64);
        for (header_key, header_value) in headers {
            write_bytes(out, Some(header_key));
            write_bytes(out, *header_value);
        }
        debug_assert_eq!(self.buffer.len() - start, record_len);
        self.records_count += 1;
        self.max_timestamp = if self.records_count == 1 { timestamp } else { self.max_timestamp.max(timestamp) };
        Ok(())
    }

    /// Writes the header and CRC and returns the batch (base offset 0).
    #[expect(
        clippy::indexing_slicing,
        reason = "the buffer starts with the BATCH_HEADER_BYTES reserved by with_capacity"
    )]
    pub fn finish(self) -> Result<Vec<u8>, BatchError> {
        if self.records_count == 0 {
            return Err(BatchError::Empty);
        }
        let mut buffer = self.buffer;
        let batch_length = (buffer.len() - LOG_OVERHEAD_BYTES) as i32;
        let mut header = [0u8; BATCH_HEADER_BYTES];
        header[OFFSET_BATCH_LENGTH..OFFSET_LEADER_EPOCH].copy_from_slice(&batch_length.to_be_bytes());
        header[OFFSET_LEADER_EPOCH..OFFSET_MAGIC].copy_from_slice(&self.partition_leader_epoch.to_be_bytes());
        header[OFFSET_MAGIC] = MAGIC_V2 as u8;
        header[OFFSET_ATTRIBUTES..OFFSET_LAST_OFFSET_DELTA].copy_from_slice(&0i16.to_be_bytes());
        header[OFFSET_LAST_OFFSET_DELTA..OFFSET_BASE_TIMESTAMP]
            .copy_from_slice(&(self.records_count - 1).to_be_bytes());
        header[OFFSET_BASE_TIMESTAMP..OFFSET_MAX_TIMESTAMP].copy_from_slice(&self.base_timestamp.to_be_bytes());
        header[OFFSET_MAX_TIMESTAMP..OFFSET_PRODUCER_ID].copy_from_slice(&self.max_timestamp.to_be_bytes());
        header[OFFSET_PRODUCER_ID..OFFSET_PRODUCER_EPOCH].copy_from_slice(&self.producer_id.to_be_bytes());
        header[OFFSET_PRODUCER_EPOCH..OFFSET_BASE_SEQUENCE].copy_from_slice(&self.producer_epoch.to_be_bytes());
        header[OFFSET_BASE_SEQUENCE..OFFSET_RECORDS_COUNT].copy_from_slice(&self.base_sequence.to_be_bytes());
        header[OFFSET_RECORDS_COUNT..BATCH_HEADER_BYTES].copy_from_slice(&self.records_count.to_be_bytes());
        buffer[..BATCH_HEADER_BYTES].copy_from_slice(&header);
        let crc = compute_crc(&buffer);
        buffer[OFFSET_CRC..OFFSET_ATTRIBUTES].copy_from_slice(&crc.to_be_bytes());
        Ok(buffer)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut builder = BatchBuilder::new();
        builder.append(1000, Some(b"key"), Some(b"value"), &[(b"h", Some(b"v"))]).unwrap();
        builder.append(995, None, Some(b""), &[]).unwrap();
        builder.append(1010, Some(b""), None, &[(b"n", None)]).unwrap();
        builder.finish().unwrap()
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let bytes = sample();
        let batch = Batch::validate(&bytes).unwrap();
        assert_eq!(batch.header().records_count, 3);
        assert_eq!(batch.header().max_timestamp, 1010);
        let records: Vec<_> = batch.records().collect::<Result<_, _>>().unwrap();
        assert_eq!(records[0].key, Some(&b"key"[..]));
        assert_eq!(records[0].headers.collect::<Vec<_>>(), vec![(&b"h"[..], Some(&b"v"[..]))]);
        assert_eq!(records[1].timestamp, 995);
        assert_eq!(records[1].key, None);
        assert_eq!(records[1].value, Some(&b""[..]));
        assert_eq!(records[2].value, None);
        assert_eq!(records[2].offset, 2);
        assert_eq!(records[2].headers.collect::<Vec<_>>(), vec![(&b"n"[..], None)]);
    }

    /// `batch` with its records section replaced by `section` under `codec`,
    /// length and CRC fixed up: what a Kafka producer sends.
    fn recompressed(batch: &[u8], codec: u8, section: &[u8]) -> Vec<u8> {
        let mut out = batch[..BATCH_HEADER_BYTES].to_vec();
        out.extend_from_slice(section);
        let length = (out.len() - LOG_OVERHEAD_BYTES) as i32;
        out[OFFSET_BATCH_LENGTH..OFFSET_LEADER_EPOCH].copy_from_slice(&length.to_be_bytes());
        out[OFFSET_ATTRIBUTES..OFFSET_LAST_OFFSET_DELTA].copy_from_slice(&i16::from(codec).to_be_bytes());
        let crc = compute_crc(&out);
        out[OFFSET_CRC..OFFSET_ATTRIBUTES].copy_from_slice(&crc.to_be_bytes());
        out
    }

    #[test]
    fn compressed_batches_are_checked_on_append_and_read_decompressed() {
        use std::io::Write;
        let plain = sample();
        let section = &plain[BATCH_HEADER_BYTES..];
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(section).unwrap();
        let compressed = recompressed(&plain, compression::CODEC_GZIP, &gzip.finish().unwrap());
        let batch = Batch::validate_for_append(&compressed).unwrap();
        assert_eq!(batch.header().compression(), compression::CODEC_GZIP);
        assert!(matches!(batch.records().next(), Some(Err(BatchError::UnsupportedCompression { codec: 1 }))));
        let decompressed = batch.records_section().unwrap();
        let records: Vec<_> = batch.records_in(&decompressed).collect::<Result<_, _>>().unwrap();
        let expected: Vec<_> = Batch::validate(&plain).unwrap().records().collect::<Result<_, _>>().unwrap();
        assert_eq!(records, expected);

        // Compressed garbage, compressed records that are malformed, an unknown codec.
        let garbage = recompressed(&plain, compression::CODEC_ZSTD, b"not zstd at all");
        assert!(matches!(Batch::validate_for_append(&garbage), Err(BatchError::BadCompression { .. })));
        let mut short = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        short.write_all(&section[..section.len() - 3]).unwrap();
        let short = recompressed(&plain, compression::CODEC_GZIP, &short.finish().unwrap());
        assert!(matches!(Batch::validate_for_append(&short), Err(BatchError::BadRecord { .. })));
        let unknown = recompressed(&plain, 6, section);
        assert_eq!(Batch::validate_for_append(&unknown).unwrap_err(), BatchError::UnsupportedCompression { codec: 6 });
    }

    #[test]
    fn stamping_the_base_offset_keeps_the_crc_valid() {
        let mut bytes = sample();
        stamp_base_offset(&mut bytes, 1 << 40).unwrap();
        let batch = Batch::validate(&bytes).unwrap();
        assert_eq!(batch.header().base_offset, 1 << 40);
        assert_eq!(batch.records().last().unwrap().unwrap().offset, (1 << 40) + 2);
    }

    #[test]
    fn a_flipped_bit_fails_the_crc() {
        let mut bytes = sample();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(matches!(Batch::validate(&bytes), Err(BatchError::CrcMismatch { .. })));
    }

    #[test]
    fn wrong_magic_and_lengths_are_refused() {
        let mut bytes = sample();
        bytes[OFFSET_MAGIC] = 1;
        assert_eq!(Batch::validate(&bytes).unwrap_err(), BatchError::BadMagic { found: 1 });
        let bytes = sample();
        assert!(matches!(Batch::validate(&bytes[..bytes.len() - 1]), Err(BatchError::Truncated { .. })));
        let mut longer = sample();
        longer.push(0);
        assert!(matches!(Batch::validate(&longer), Err(BatchError::LengthMismatch { .. })));
        let mut huge = sample();
        huge[OFFSET_BATCH_LENGTH..OFFSET_LEADER_EPOCH].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(batch_size(&huge), Err(BatchError::TooLarge { .. })));
        huge[OFFSET_BATCH_LENGTH..OFFSET_LEADER_EPOCH].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(batch_size(&huge), Err(BatchError::LengthMismatch { .. })));
    }

    #[test]
    fn varints_match_kafka_zigzag() {
        let mut out = Vec::new();
        for value in [0i64, -1, 1, 63, -64, 64, 300, i32::MAX as i64, i32::MIN as i64, i64::MAX, i64::MIN] {
            out.clear();
            write_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value));
            let mut cursor = &out[..];
            assert_eq!(read_varint64(&mut cursor).unwrap(), value);
            assert!(cursor.is_empty());
        }
        // Kafka: zigzag(-1) = 1, zigzag(1) = 2, zigzag(300) = 600 = 0xd8 0x04.
        out.clear();
        write_varint(&mut out, 300);
        assert_eq!(out, [0xd8, 0x04]);
    }
}
