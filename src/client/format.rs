//! What `ringmq consume` understands and prints: where `--from` starts
//! (an offset, the last N records, a time as RFC 3339 or epoch ms) and how
//! `--format` prints a record (kcat's `%`-fields, or JSON lines).

use super::ConsumedRecord;
use std::fmt::Write as _;

/// Where a consume starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    Earliest,
    Latest,
    Offset(u64),
    /// The last N records of each partition (fewer where it holds fewer).
    Last(u64),
    /// The first record at or after this time (ms since the epoch).
    Timestamp(i64),
}

impl StartFrom {
    /// `beginning`/`earliest`, `end`/`latest`, an offset, `-N` (the last N),
    /// `@MS` (epoch milliseconds) or an RFC 3339 time
    /// (`2026-12-07T10:00:00Z`, `2026-12-07T10:00:00.250+01:00`).
    pub fn parse(text: &str) -> Result<StartFrom, String> {
        let from = match text {
            "beginning" | "earliest" => StartFrom::Earliest,
            "end" | "latest" => StartFrom::Latest,
            _ if text.starts_with('-') => StartFrom::Last(text[1..].parse().map_err(|_| explain(text))?),
            _ if text.starts_with('@') => StartFrom::Timestamp(text[1..].parse().map_err(|_| explain(text))?),
            _ if text.bytes().all(|b| b.is_ascii_digit()) => {
                StartFrom::Offset(text.parse().map_err(|_| explain(text))?)
            }
            _ => StartFrom::Timestamp(parse_rfc3339_ms(text).ok_or_else(|| explain(text))?),
        };
        Ok(from)
    }
}

fn explain(text: &str) -> String {
    format!(
        "--from takes beginning, end, an offset, -N (the last N records), @MS (epoch milliseconds) or an \
         RFC 3339 time such as 2026-12-07T10:00:00Z; not {text:?}"
    )
}

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn digits(text: &str, range: std::ops::Range<usize>) -> Option<i64> {
    let part = text.get(range)?;
    part.bytes().all(|b| b.is_ascii_digit()).then(|| part.parse().ok())?
}

/// Milliseconds since the epoch of an RFC 3339 time:
/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (`t`/`z`/a space accepted too).
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') {
        return None;
    }
    if !matches!(bytes.get(10), Some(b'T' | b't' | b' '))
        || bytes.get(13) != Some(&b':')
        || bytes.get(16) != Some(&b':')
    {
        return None;
    }
    let (year, month, day) = (digits(text, 0..4)?, digits(text, 5..7)?, digits(text, 8..10)?);
    let (hour, minute, second) = (digits(text, 11..13)?, digits(text, 14..16)?, digits(text, 17..19)?);
    let days_in_month = [
        31,
        if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let month_days = *days_in_month.get(usize::try_from(month - 1).ok()?)?;
    if !(1..=month_days).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let length = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if length == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &fraction[..length.min(3)]);
        millis = padded.parse::<i64>().ok()?;
        rest = &fraction[length..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes().get(3) != Some(&b':') {
                return None;
            }
            let (hours, minutes) = (digits(rest, 1..3)?, digits(rest, 4..6)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            sign * (hours * 60 + minutes)
        }
    };
    let seconds =
        days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second.min(59) - offset_minutes * 60;
    Some(seconds * 1_000 + millis)
}

/// How `ringmq consume` prints each record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// kcat's fields: `%t` topic, `%p` partition, `%o` offset, `%T`
    /// timestamp (ms), `%k` key, `%K` key length (-1 for null), `%s` value,
    /// `%S` value length, `%h` headers (`k=v,k2=v2`), `%%`; `\n`, `\t`,
    /// `\r`, `\\` escapes. Nothing is added: end the format with `\n`.
    Template(Vec<Piece>),
    /// One JSON object per line: topic, partition, offset, timestamp, key,
    /// value, headers; bytes that are not UTF-8 become `{"base64": "..."}`.
    JsonLines,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(Vec<u8>),
    Topic,
    Partition,
    Offset,
    Timestamp,
    Key,
    KeyLength,
    Value,
    ValueLength,
    Headers,
}

impl Format {
    /// The value of each record on its own line: `consume`'s default.
    pub fn values() -> Format {
        Format::Template(vec![Piece::Value, Piece::Text(b"\n".to_vec())])
    }

    /// `json`, or a kcat-style template.
    pub fn parse(text: &str) -> Result<Format, String> {
        if text == "json" {
            return Ok(Format::JsonLines);
        }
        let mut pieces = Vec::new();
        let mut literal = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            let piece = match c {
                '%' => match chars.next() {
                    Some('t') => Piece::Topic,
                    Some('p') => Piece::Partition,
                    Some('o') => Piece::Offset,
                    Some('T') => Piece::Timestamp,
                    Some('k') => Piece::Key,
                    Some('K') => Piece::KeyLength,
                    Some('s') => Piece::Value,
                    Some('S') => Piece::ValueLength,
                    Some('h') => Piece::Headers,
                    Some('%') => {
                        literal.push(b'%');
                        continue;
                    }
                    other => {
                        return Err(format!(
                            "--format: unknown field %{} (fields: %t %p %o %T %k %K %s %S %h %%, or json)",
                            other.map_or(String::new(), String::from)
                        ))
                    }
                },
                '\\' => {
                    let escaped = match chars.next() {
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('r') => '\r',
                        Some('\\') => '\\',
                        other => {
                            return Err(format!(
                                "--format: unknown escape \\{} (\\n \\t \\r \\\\)",
                                other.map_or(String::new(), String::from)
                            ))
                        }
                    };
                    let mut buffer = [0u8; 4];
                    literal.extend_from_slice(escaped.encode_utf8(&mut buffer).as_bytes());
                    continue;
                }
                c => {
                    let mut buffer = [0u8; 4];
                    literal.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
                    continue;
                }
            };
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(piece);
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Format::Template(pieces))
    }

    /// Appends `record` (of `topic`/`partition`) to `out` as this format says.
    pub fn write(&self, out: &mut Vec<u8>, topic: &str, partition: u32, record: &ConsumedRecord) {
        match self {
            Format::JsonLines => {
                let headers: Vec<serde_json::Value> = record
                    .headers
                    .iter()
                    .map(|(key, value)| serde_json::json!([json_bytes(key), value.as_deref().map(json_bytes)]))
                    .collect();
                let line = serde_json::json!({
                    "topic": topic,
                    "partition": partition,
                    "offset": record.offset,
                    "timestamp": record.timestamp,
                    "key": record.key.as_deref().map(json_bytes),
                    "value": record.value.as_deref().map(json_bytes),
                    "headers": headers,
                });
                out.extend_from_slice(line.to_string().as_bytes());
                out.push(b'\n');
            }
            Format::Template(pieces) => {
                let length = |bytes: &Option<Vec<u8>>| bytes.as_ref().map_or(-1, |b| b.len() as i64);
                for piece in pieces {
                    match piece {
                        Piece::Text(text) => out.extend_from_slice(text),
                        Piece::Topic => out.extend_from_slice(topic.as_bytes()),
                        Piece::Partition => out.extend_from_slice(partition.to_string().as_bytes()),
                        Piece::Offset => out.extend_from_slice(record.offset.to_string().as_bytes()),
                        Piece::Timestamp => out.extend_from_slice(record.timestamp.to_string().as_bytes()),
                        Piece::Key => out.extend_from_slice(record.key.as_deref().unwrap_or_default()),
                        Piece::KeyLength => out.extend_from_slice(length(&record.key).to_string().as_bytes()),
                        Piece::Value => out.extend_from_slice(record.value.as_deref().unwrap_or_default()),
                        Piece::ValueLength => out.extend_from_slice(length(&record.value).to_string().as_bytes()),
                        Piece::Headers => {
                            for (index, (key, value)) in record.headers.iter().enumerate() {
                                if index > 0 {
                                    out.push(b',');
                                }
                                out.extend_from_slice(key);
                                out.push(b'=');
                                out.extend_from_slice(value.as_deref().unwrap_or_default());
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Bytes as a JSON string when they are UTF-8, else `{"base64": "..."}`.
fn json_bytes(bytes: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::Value::String(text.to_owned()),
        Err(_) => serde_json::json!({ "base64": base64(bytes) }),
    }
}

/// Standard base64 with padding (RFC 4648).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let word = chunk.iter().enumerate().fold(0u32, |word, (i, &b)| word | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                let _ = out.write_char(char::from(ALPHABET[(word >> (18 - 6 * i) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn from_reads_every_form_and_refuses_the_rest() {
        assert_eq!(StartFrom::parse("beginning").unwrap(), StartFrom::Earliest);
        assert_eq!(StartFrom::parse("end").unwrap(), StartFrom::Latest);
        assert_eq!(StartFrom::parse("42").unwrap(), StartFrom::Offset(42));
        assert_eq!(StartFrom::parse("-10").unwrap(), StartFrom::Last(10));
        assert_eq!(StartFrom::parse("@1700000000000").unwrap(), StartFrom::Timestamp(1_700_000_000_000));
        assert_eq!(StartFrom::parse("2023-11-14T22:13:20Z").unwrap(), StartFrom::Timestamp(1_700_000_000_000));
        for bad in ["-x", "@", "soon", "2023-11-14", "2023-02-30T00:00:00Z", "2023-11-14T22:13:20", "12a"] {
            assert!(StartFrom::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc3339_times_with_fractions_and_offsets() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ms("2023-11-14T22:13:20.5Z"), Some(1_700_000_000_500));
        assert_eq!(parse_rfc3339_ms("2023-11-14T23:13:20.123456+01:00"), Some(1_700_000_000_123));
        assert_eq!(parse_rfc3339_ms("2023-11-14T21:43:20-00:30"), Some(1_700_000_000_000));
        assert_eq!(parse_rfc3339_ms("2024-02-29T00:00:00Z"), Some(1_709_164_800_000));
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59Z"), Some(-1_000));
        for bad in ["2023-11-14T22:13:20+0100", "2023-13-01T00:00:00Z", "2023-11-14T24:00:00Z", "2023-11-14T22:13:20.Z"]
        {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    fn record() -> ConsumedRecord {
        ConsumedRecord {
            offset: 7,
            timestamp: 1_700_000_000_000,
            key: Some(b"k1".to_vec()),
            value: Some(vec![0xff, b'v']),
            headers: vec![(b"h".to_vec(), Some(b"x".to_vec())), (b"n".to_vec(), None)],
        }
    }

    #[test]
    fn templates_print_kcat_fields_and_escapes() {
        let format = Format::parse("%t/%p@%o %T %k(%K)=%s(%S) [%h] 100%%\\n").unwrap();
        let mut out = Vec::new();
        format.write(&mut out, "orders", 3, &record());
        assert_eq!(out, b"orders/3@7 1700000000000 k1(2)=\xffv(2) [h=x,n=] 100%\n".to_vec());
        let mut out = Vec::new();
        Format::values().write(&mut out, "t", 0, &ConsumedRecord { key: None, value: None, ..record() });
        assert_eq!(out, b"\n");
        assert!(Format::parse("%q").is_err());
        assert!(Format::parse("\\x").is_err());
    }

    #[test]
    fn json_lines_keep_bytes_that_are_not_utf8() {
        let mut out = Vec::new();
        Format::JsonLines.write(&mut out, "orders", 3, &record());
        let line: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(line["offset"], 7);
        assert_eq!(line["key"], "k1");
        assert_eq!(line["value"]["base64"], "/3Y=");
        assert_eq!(line["headers"], serde_json::json!([["h", "x"], ["n", null]]));
        assert_eq!(base64(b"any carnal pleas"), "YW55IGNhcm5hbCBwbGVhcw==");
        assert_eq!(base64(b""), "");
    }
}
