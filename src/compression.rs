//! Decompression of the records section of compressed RecordBatches, the way
//! Kafka producers write them: gzip, snappy (raw, as librdkafka writes it, or
//! in the xerial framing of the Java client), lz4 (the LZ4 frame format) and
//! zstd. ringmq stores compressed batches exactly as sent; the broker
//! decompresses once to check the records before it appends, and every
//! native consumer decompresses when it decodes a fetch.
//!
//! The input comes from peers, so the output is bounded: it grows with what
//! the codec actually produces, never by a length the input declares, and
//! stops at [`DECOMPRESSED_BYTES_MAX`].

use std::fmt;
use std::io::Read;

/// Codec ids, the low three bits of a batch's attributes.
pub const CODEC_NONE: u8 = 0;
pub const CODEC_GZIP: u8 = 1;
pub const CODEC_SNAPPY: u8 = 2;
pub const CODEC_LZ4: u8 = 3;
pub const CODEC_ZSTD: u8 = 4;

/// Largest records section a compressed batch may expand to. A batch is at
/// most 16 MiB compressed (`batch::BATCH_BYTES_MAX`); this allows a 4:1
/// ratio at that size, and far more for the small batches clients usually send.
pub const DECOMPRESSED_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Most output one byte of raw snappy input can stand for: the densest
/// element, a 2-byte-offset copy, is 3 bytes for 64 bytes of output (21:1).
/// A declared length past this ratio is a lie, refused before allocating.
const SNAPPY_EXPANSION_MAX: usize = 32;

/// The xerial framing the Java client's snappy stream writes: magic, then
/// version and compatible version (4 bytes each), then blocks of a 4-byte
/// big-endian length followed by raw snappy.
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_BYTES: usize = 16;

/// Why a records section could not be decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecompressError {
    /// A codec id Kafka does not define (5–7).
    UnknownCodec(u8),
    /// The bytes are not a valid stream of the codec.
    Corrupt { codec: u8, reason: String },
    /// The output would pass [`DECOMPRESSED_BYTES_MAX`].
    TooLarge { codec: u8 },
}

impl fmt::Display for DecompressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecompressError::UnknownCodec(codec) => write!(f, "unknown compression codec {codec}"),
            DecompressError::Corrupt { codec, reason } => {
                write!(f, "records compressed with {} do not decompress: {reason}", codec_name(*codec))
            }
            DecompressError::TooLarge { codec } => {
                write!(f, "records compressed with {} expand past {DECOMPRESSED_BYTES_MAX} bytes", codec_name(*codec))
            }
        }
    }
}

impl std::error::Error for DecompressError {}

/// The name Kafka gives a codec (`compression.type`).
pub fn codec_name(codec: u8) -> &'static str {
    match codec {
        CODEC_NONE => "none",
        CODEC_GZIP => "gzip",
        CODEC_SNAPPY => "snappy",
        CODEC_LZ4 => "lz4",
        CODEC_ZSTD => "zstd",
        _ => "an unknown codec",
    }
}

/// Decompresses `input`, compressed with `codec` (not [`CODEC_NONE`]).
pub fn decompress(codec: u8, input: &[u8]) -> Result<Vec<u8>, DecompressError> {
    match codec {
        CODEC_GZIP => read_bounded(codec, flate2::read::MultiGzDecoder::new(input)),
        CODEC_SNAPPY if input.starts_with(&XERIAL_MAGIC) => snappy_xerial(input),
        CODEC_SNAPPY => {
            let mut out = Vec::new();
            snappy_block(input, &mut out)?;
            Ok(out)
        }
        CODEC_LZ4 => read_bounded(codec, lz4_flex::frame::FrameDecoder::new(input)),
        CODEC_ZSTD => {
            let decoder = ruzstd::decoding::StreamingDecoder::new(input).map_err(|e| corrupt(codec, e))?;
            read_bounded(codec, decoder)
        }
        other => Err(DecompressError::UnknownCodec(other)),
    }
}

fn corrupt(codec: u8, error: impl fmt::Display) -> DecompressError {
    DecompressError::Corrupt { codec, reason: error.to_string() }
}

/// Reads `reader` to its end, refusing more than [`DECOMPRESSED_BYTES_MAX`].
fn read_bounded(codec: u8, reader: impl Read) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::new();
    reader.take(DECOMPRESSED_BYTES_MAX as u64 + 1).read_to_end(&mut out).map_err(|e| corrupt(codec, e))?;
    if out.len() > DECOMPRESSED_BYTES_MAX {
        return Err(DecompressError::TooLarge { codec });
    }
    Ok(out)
}

/// Appends one raw snappy block to `out`, within the output limit.
fn snappy_block(block: &[u8], out: &mut Vec<u8>) -> Result<(), DecompressError> {
    let declared = snap::raw::decompress_len(block).map_err(|e| corrupt(CODEC_SNAPPY, e))?;
    if declared > block.len().saturating_mul(SNAPPY_EXPANSION_MAX) {
        return Err(corrupt(CODEC_SNAPPY, "declared length past snappy's densest encoding"));
    }
    if out.len().saturating_add(declared) > DECOMPRESSED_BYTES_MAX {
        return Err(DecompressError::TooLarge { codec: CODEC_SNAPPY });
    }
    let start = out.len();
    out.resize(start + declared, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, out.get_mut(start..).unwrap_or(&mut []))
        .map_err(|e| corrupt(CODEC_SNAPPY, e))?;
    out.truncate(start + written);
    Ok(())
}

fn snappy_xerial(input: &[u8]) -> Result<Vec<u8>, DecompressError> {
    let mut rest = input.get(XERIAL_HEADER_BYTES..).ok_or_else(|| corrupt(CODEC_SNAPPY, "truncated xerial header"))?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (length, after) =
            rest.split_first_chunk::<4>().ok_or_else(|| corrupt(CODEC_SNAPPY, "truncated block length"))?;
        let length = u32::from_be_bytes(*length) as usize;
        let (block, after) =
            after.split_at_checked(length).ok_or_else(|| corrupt(CODEC_SNAPPY, "block length past the input"))?;
        snappy_block(block, &mut out)?;
        rest = after;
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    fn sample() -> Vec<u8> {
        (0..20_000u32).flat_map(|i| format!("record {i} ").into_bytes()).collect()
    }

    #[test]
    fn every_codec_round_trips_through_its_own_encoder() {
        let data = sample();
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(&data).unwrap();
        assert_eq!(decompress(CODEC_GZIP, &gzip.finish().unwrap()).unwrap(), data);

        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(decompress(CODEC_SNAPPY, &raw).unwrap(), data);

        let mut xerial = XERIAL_MAGIC.to_vec();
        xerial.extend_from_slice(&1u32.to_be_bytes());
        xerial.extend_from_slice(&1u32.to_be_bytes());
        for chunk in data.chunks(32 * 1024) {
            let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
            xerial.extend_from_slice(&(block.len() as u32).to_be_bytes());
            xerial.extend_from_slice(&block);
        }
        assert_eq!(decompress(CODEC_SNAPPY, &xerial).unwrap(), data);

        let mut lz4 = lz4_flex::frame::FrameEncoder::new(Vec::new());
        lz4.write_all(&data).unwrap();
        assert_eq!(decompress(CODEC_LZ4, &lz4.finish().unwrap()).unwrap(), data);

        let zstd = ruzstd::encoding::compress_to_vec(&data[..], ruzstd::encoding::CompressionLevel::Fastest);
        assert_eq!(decompress(CODEC_ZSTD, &zstd).unwrap(), data);
    }

    #[test]
    fn garbage_lies_and_bombs_are_errors_not_allocations() {
        for codec in [CODEC_GZIP, CODEC_SNAPPY, CODEC_LZ4, CODEC_ZSTD] {
            assert!(decompress(codec, b"definitely not compressed").is_err(), "codec {codec}");
            // Empty input is an error or nothing (and a batch of nothing fails its record count).
            assert!(decompress(codec, &[]).map_or(true, |out| out.is_empty()), "codec {codec}");
        }
        assert_eq!(decompress(5, b"x"), Err(DecompressError::UnknownCodec(5)));
        // Raw snappy declaring 2^32-1 bytes of output in 5 bytes of input.
        let lie = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(matches!(decompress(CODEC_SNAPPY, &lie), Err(DecompressError::Corrupt { .. })));
        // 65 MiB of zeros compresses to almost nothing and must stop at the limit.
        let zeros = vec![0u8; DECOMPRESSED_BYTES_MAX + 1024 * 1024];
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(&zeros).unwrap();
        let bomb = gzip.finish().unwrap();
        assert!(bomb.len() < 1024 * 1024);
        assert_eq!(decompress(CODEC_GZIP, &bomb), Err(DecompressError::TooLarge { codec: CODEC_GZIP }));
        let mut truncated = XERIAL_MAGIC.to_vec();
        truncated.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0x10, 0]);
        assert!(decompress(CODEC_SNAPPY, &truncated).is_err());
    }
}
