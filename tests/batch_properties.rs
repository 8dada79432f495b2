//! Guards the RecordBatch v2 codec: whatever records go in come out unchanged,
//! and no byte string, however hostile, makes the decoder panic.

use proptest::prelude::*;
use ringmq::batch::{self, Batch, BatchBuilder, BatchHeader};

type Header = (Vec<u8>, Option<Vec<u8>>);

#[derive(Debug, Clone)]
struct InputRecord {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<Header>,
}

fn bytes_strategy(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn record_strategy() -> impl Strategy<Value = InputRecord> {
    (
        -1_000_000i64..4_000_000_000_000,
        prop::option::of(bytes_strategy(40)),
        prop::option::of(bytes_strategy(300)),
        prop::collection::vec((bytes_strategy(12), prop::option::of(bytes_strategy(20))), 0..4),
    )
        .prop_map(|(timestamp, key, value, headers)| InputRecord { timestamp, key, value, headers })
}

fn build(records: &[InputRecord], producer: (i64, i16, i32)) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    builder.producer(producer.0, producer.1, producer.2);
    for record in records {
        let headers: Vec<(&[u8], Option<&[u8]>)> =
            record.headers.iter().map(|(key, value)| (key.as_slice(), value.as_deref())).collect();
        builder.append(record.timestamp, record.key.as_deref(), record.value.as_deref(), &headers).unwrap();
    }
    builder.finish().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn encode_then_decode_returns_the_same_records(
        records in prop::collection::vec(record_strategy(), 1..20),
        producer in (any::<i64>(), any::<i16>(), any::<i32>()),
        base_offset in 0i64..i64::MAX / 2,
    ) {
        let mut bytes = build(&records, producer);
        batch::stamp_base_offset(&mut bytes, base_offset).unwrap();
        let batch = Batch::validate_for_append(&bytes).unwrap();
        let header = *batch.header();
        prop_assert_eq!(header.base_offset, base_offset);
        prop_assert_eq!(header.records_count as usize, records.len());
        prop_assert_eq!(header.producer_id, producer.0);
        prop_assert_eq!(header.producer_epoch, producer.1);
        prop_assert_eq!(header.base_sequence, producer.2);
        prop_assert_eq!(header.base_timestamp, records[0].timestamp);
        prop_assert_eq!(header.max_timestamp, records.iter().map(|r| r.timestamp).max().unwrap());
        let decoded: Vec<_> = batch.records().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(decoded.len(), records.len());
        for (index, (got, want)) in decoded.iter().zip(&records).enumerate() {
            prop_assert_eq!(got.offset, base_offset + index as i64);
            prop_assert_eq!(got.timestamp, want.timestamp);
            prop_assert_eq!(got.key, want.key.as_deref());
            prop_assert_eq!(got.value, want.value.as_deref());
            let headers: Vec<Header> = got.headers.map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec))).collect();
            prop_assert_eq!(&headers, &want.headers);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        decode_everything(&bytes);
    }

    #[test]
    fn corrupted_valid_batches_never_panic_and_fail_the_crc(
        records in prop::collection::vec(record_strategy(), 1..5),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
    ) {
        let mut bytes = build(&records, (-1, -1, -1));
        for (index, mask) in &flips {
            let at = index.index(bytes.len());
            bytes[at] ^= mask;
        }
        decode_everything(&bytes);
        // A flip inside the CRC-covered region must be caught.
        let covered = flips.iter().any(|(index, _)| index.index(bytes.len()) >= 21);
        if covered && BatchHeader::parse(&bytes).map(|h| h.magic == 2).unwrap_or(false)
            && batch::batch_size(&bytes).ok().flatten() == Some(bytes.len()) {
            prop_assert!(Batch::validate(&bytes).is_err());
        }
    }

    #[test]
    fn records_inside_a_valid_crc_never_panic(body in prop::collection::vec(any::<u8>(), 0..400), count in -3i32..50) {
        // Forge a batch whose CRC is right but whose records are garbage: the CRC
        // proves only that the producer's bytes arrived, not that they are sane.
        let mut bytes = build(&[InputRecord { timestamp: 1, key: None, value: None, headers: vec![] }], (-1, -1, -1));
        bytes.truncate(61);
        bytes.extend_from_slice(&body);
        let length = (bytes.len() - 12) as i32;
        bytes[8..12].copy_from_slice(&length.to_be_bytes());
        bytes[57..61].copy_from_slice(&count.to_be_bytes());
        let crc = batch::compute_crc(&bytes);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        decode_everything(&bytes);
    }
}

/// Every batch decoder on `bytes` (the body of the batch fuzz target).
fn decode_everything(bytes: &[u8]) {
    ringmq::fuzzing::batch_decode(bytes);
}

#[test]
fn a_builder_refuses_an_empty_batch() {
    assert!(BatchBuilder::new().finish().is_err());
}
