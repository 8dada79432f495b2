//! Kafka's primitive types over untrusted bytes, in both encodings: the
//! classic one (i16/i32 length prefixes) and the flexible one of KIP-482
//! (unsigned-varint lengths plus one, tagged fields after every struct). A
//! [`Reader`] or [`Writer`] is made for one encoding, so each message's
//! decoder is written once and serves both.
//!
//! Nothing here allocates from a length or count the peer sent: strings and
//! bytes are borrowed from the frame, and [`Reader::array`] refuses a count
//! that the bytes left cannot hold.

use std::fmt;

/// Most bytes an unsigned varint may take (a u32 needs 5).
pub const UVARINT_BYTES_MAX: usize = 5;
/// Most tagged fields one struct may carry.
pub const TAGGED_FIELDS_MAX: usize = 64;

/// Why a request could not be decoded. The connection answers nothing and
/// closes: the stream cannot be trusted after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed Kafka request: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// A bounds-checked big-endian reader in one of the two encodings.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    consumed: usize,
    flexible: bool,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8], flexible: bool) -> Reader<'a> {
        Reader { bytes, consumed: 0, flexible }
    }

    pub fn is_flexible(&self) -> bool {
        self.flexible
    }

    /// Bytes read so far (for callers that carve owned buffers out of the frame).
    pub fn consumed(&self) -> usize {
        self.consumed
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        let (taken, rest) = self.bytes.split_at_checked(count).ok_or(DecodeError("truncated"))?;
        self.bytes = rest;
        self.consumed += count;
        Ok(taken)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?.try_into().map_err(|_| DecodeError("truncated"))
    }

    pub fn i8(&mut self) -> Result<i8, DecodeError> {
        Ok(i8::from_be_bytes(self.fixed()?))
    }
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        Ok(self.i8()? != 0)
    }
    pub fn i16(&mut self) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.fixed()?))
    }
    pub fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.fixed()?))
    }
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.fixed()?))
    }

    /// An unsigned varint of at most [`UVARINT_BYTES_MAX`] bytes.
    pub fn uvarint(&mut self) -> Result<u32, DecodeError> {
        let mut value: u64 = 0;
        for index in 0..UVARINT_BYTES_MAX {
            let [byte] = self.fixed::<1>()?;
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return u32::try_from(value).map_err(|_| DecodeError("varint over 32 bits"));
            }
        }
        Err(DecodeError("varint longer than 5 bytes"))
    }

    /// A UUID (topic ids): 16 bytes.
    pub fn uuid(&mut self) -> Result<[u8; 16], DecodeError> {
        self.fixed::<16>()
    }

    /// A length prefix: `None` for null. Classic: `wide` picks i32 over i16.
    fn length(&mut self, wide: bool) -> Result<Option<usize>, DecodeError> {
        let length: i64 = if self.flexible {
            i64::from(self.uvarint()?) - 1
        } else if wide {
            i64::from(self.i32()?)
        } else {
            i64::from(self.i16()?)
        };
        match length {
            -1 => Ok(None),
            n if n < 0 => Err(DecodeError("negative length")),
            n => usize::try_from(n).map(Some).map_err(|_| DecodeError("length")),
        }
    }

    fn str_of(&mut self, length: usize, max: usize) -> Result<&'a str, DecodeError> {
        if length > max {
            return Err(DecodeError("string longer than its limit"));
        }
        std::str::from_utf8(self.take(length)?).map_err(|_| DecodeError("string is not UTF-8"))
    }

    /// A nullable string of at most `max` bytes.
    pub fn nullable_string(&mut self, max: usize) -> Result<Option<&'a str>, DecodeError> {
        match self.length(false)? {
            None => Ok(None),
            Some(length) => self.str_of(length, max).map(Some),
        }
    }

    /// A string of at most `max` bytes; null is refused.
    pub fn string(&mut self, max: usize) -> Result<&'a str, DecodeError> {
        self.nullable_string(max)?.ok_or(DecodeError("null string"))
    }

    /// Nullable bytes (records, assignments) of at most `max` bytes.
    pub fn nullable_bytes(&mut self, max: usize) -> Result<Option<&'a [u8]>, DecodeError> {
        match self.length(true)? {
            None => Ok(None),
            Some(length) if length > max => Err(DecodeError("bytes longer than their limit")),
            Some(length) => self.take(length).map(Some),
        }
    }

    /// Bytes of at most `max`; null reads as empty.
    pub fn bytes(&mut self, max: usize) -> Result<&'a [u8], DecodeError> {
        Ok(self.nullable_bytes(max)?.unwrap_or(&[]))
    }

    /// An array's element count (`None` for null), checked against `max` and
    /// against the bytes left, each element taking at least
    /// `element_bytes_min`: no caller allocates for elements that are absent.
    pub fn nullable_array(&mut self, max: usize, element_bytes_min: usize) -> Result<Option<usize>, DecodeError> {
        let Some(count) = self.length(true)? else { return Ok(None) };
        if count > max {
            return Err(DecodeError("array count over its limit"));
        }
        if count.saturating_mul(element_bytes_min.max(1)) > self.bytes.len() {
            return Err(DecodeError("array count larger than the bytes present"));
        }
        Ok(Some(count))
    }

    /// An array's element count; null reads as empty.
    pub fn array(&mut self, max: usize, element_bytes_min: usize) -> Result<usize, DecodeError> {
        Ok(self.nullable_array(max, element_bytes_min)?.unwrap_or(0))
    }

    /// A struct's tagged fields (flexible only): skipped, none is understood.
    pub fn tags(&mut self) -> Result<(), DecodeError> {
        if !self.flexible {
            return Ok(());
        }
        let count = self.uvarint()? as usize;
        if count > TAGGED_FIELDS_MAX {
            return Err(DecodeError("too many tagged fields"));
        }
        for _ in 0..count {
            let _tag = self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.take(size)?;
        }
        Ok(())
    }

    /// Fails when bytes are left over.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(DecodeError("trailing bytes"))
        }
    }
}

/// A big-endian writer in one of the two encodings.
#[derive(Debug, Clone)]
pub struct Writer {
    bytes: Vec<u8>,
    flexible: bool,
}

impl Writer {
    pub fn new(flexible: bool) -> Writer {
        Writer { bytes: Vec::with_capacity(256), flexible }
    }

    /// Continues `bytes` (a frame's head already written).
    pub fn on(bytes: Vec<u8>, flexible: bool) -> Writer {
        Writer { bytes, flexible }
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

    pub fn i8(&mut self, value: i8) {
        self.bytes.push(value as u8);
    }
    pub fn bool(&mut self, value: bool) {
        self.bytes.push(u8::from(value));
    }
    pub fn i16(&mut self, value: i16) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }
    pub fn i32(&mut self, value: i32) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }
    pub fn i64(&mut self, value: i64) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    pub fn uvarint(&mut self, mut value: u32) {
        while value >= 0x80 {
            self.bytes.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.bytes.push(value as u8);
    }

    /// A length prefix (`None`: null). Lengths come from our own buffers,
    /// which are far below every prefix's range.
    fn length(&mut self, length: Option<usize>, wide: bool) {
        match (self.flexible, length) {
            (true, None) => self.uvarint(0),
            (true, Some(n)) => self.uvarint((n as u32).saturating_add(1)),
            (false, None) if wide => self.i32(-1),
            (false, None) => self.i16(-1),
            (false, Some(n)) if wide => self.i32(n as i32),
            (false, Some(n)) => self.i16(n as i16),
        }
    }

    pub fn string(&mut self, value: &str) {
        self.length(Some(value.len()), false);
        self.bytes.extend_from_slice(value.as_bytes());
    }

    pub fn nullable_string(&mut self, value: Option<&str>) {
        match value {
            None => self.length(None, false),
            Some(value) => self.string(value),
        }
    }

    pub fn bytes(&mut self, value: &[u8]) {
        self.length(Some(value.len()), true);
        self.bytes.extend_from_slice(value);
    }

    /// The length prefix of bytes that follow in another buffer.
    pub fn bytes_length(&mut self, length: usize) {
        self.length(Some(length), true);
    }

    pub fn null_bytes(&mut self) {
        self.length(None, true);
    }

    pub fn array(&mut self, count: usize) {
        self.length(Some(count), true);
    }

    pub fn null_array(&mut self) {
        self.length(None, true);
    }

    pub fn uuid(&mut self, value: &[u8; 16]) {
        self.bytes.extend_from_slice(value);
    }

    /// An empty tagged-field section (flexible only).
    pub fn tags(&mut self) {
        if self.flexible {
            self.uvarint(0);
        }
    }

    pub fn raw(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_overlong_ones_are_refused() {
        for value in [0, 1, 127, 128, 16_383, 16_384, u32::MAX] {
            let mut writer = Writer::new(true);
            writer.uvarint(value);
            let bytes = writer.into_inner();
            assert!(bytes.len() <= UVARINT_BYTES_MAX);
            assert_eq!(Reader::new(&bytes, true).uvarint().unwrap(), value);
        }
        assert!(Reader::new(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], true).uvarint().is_err());
        assert!(Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x7f], true).uvarint().is_err());
        assert!(Reader::new(&[0x80], true).uvarint().is_err());
    }

    #[test]
    fn a_count_larger_than_the_bytes_left_is_refused_before_any_allocation() {
        // 0xFFFFFFFF as a compact count, then nothing.
        let mut reader = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x0f], true);
        assert!(reader.array(usize::MAX, 1).is_err());
        let mut reader = Reader::new(&[0x7f, 0xff, 0xff, 0xff, 0, 0], false);
        assert!(reader.array(usize::MAX, 1).is_err());
        let mut reader = Reader::new(&[0, 0, 0, 2, 1, 2], false);
        assert_eq!(reader.array(10, 1).unwrap(), 2);
    }

    #[test]
    fn strings_and_nulls_in_both_encodings() {
        for flexible in [false, true] {
            let mut writer = Writer::new(flexible);
            writer.string("topic");
            writer.nullable_string(None);
            writer.bytes(b"xyz");
            writer.null_bytes();
            writer.tags();
            let bytes = writer.into_inner();
            let mut reader = Reader::new(&bytes, flexible);
            assert_eq!(reader.string(10).unwrap(), "topic");
            assert_eq!(reader.nullable_string(10).unwrap(), None);
            assert_eq!(reader.bytes(10).unwrap(), b"xyz");
            assert_eq!(reader.nullable_bytes(10).unwrap(), None);
            reader.tags().unwrap();
            reader.finish().unwrap();
        }
        assert!(Reader::new(&[0, 5, b'a'], false).string(10).is_err());
        assert!(Reader::new(&[0, 3, b'a', b'b', b'c'], false).string(2).is_err());
    }
}
