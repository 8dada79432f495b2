//! Guards byte-for-byte compatibility with Kafka's RecordBatch v2 against an
//! independent implementation (kafka-python's pure-Python DefaultRecordBatchBuilder):
//! we decode its batches to exactly the records it encoded, and our builder given
//! the same records produces the very same bytes. Our own batches are checked in
//! under tests/data/ringmq/ and decoded by kafka-python in
//! tests/python/test_kafka_python_decodes_ours.py; the test here keeps them current.
//!
//! Fixture descriptors (`NAME.txt`): see tests/data/kafka_python/make_fixtures.py.

use ringmq::batch::{self, Batch, BatchBuilder};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    offset: i64,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

#[derive(Debug, Default)]
struct Descriptor {
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    partition_leader_epoch: Option<i32>,
    records: Vec<Record>,
}

fn unhex(token: &str) -> Option<Vec<u8>> {
    match token {
        "-" => None,
        "~" => Some(Vec::new()),
        hex => Some((0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()),
    }
}

fn hex(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "-".into(),
        Some([]) => "~".into(),
        Some(bytes) => bytes.iter().fold(String::new(), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        }),
    }
}

fn parse(text: &str) -> Descriptor {
    let mut descriptor = Descriptor::default();
    for line in text.lines().filter(|line| !line.is_empty()) {
        let tokens: Vec<&str> = line.split(' ').collect();
        match tokens[0] {
            "producer_id" => descriptor.producer_id = tokens[1].parse().unwrap(),
            "producer_epoch" => descriptor.producer_epoch = tokens[1].parse().unwrap(),
            "base_sequence" => descriptor.base_sequence = tokens[1].parse().unwrap(),
            "partition_leader_epoch" => descriptor.partition_leader_epoch = Some(tokens[1].parse().unwrap()),
            "record" => {
                let headers = match tokens[5] {
                    "-" => Vec::new(),
                    list => list
                        .split(',')
                        .map(|pair| {
                            let (key, value) = pair.split_once('=').unwrap();
                            (unhex(key).unwrap(), unhex(value))
                        })
                        .collect(),
                };
                descriptor.records.push(Record {
                    offset: tokens[1].parse().unwrap(),
                    timestamp: tokens[2].parse().unwrap(),
                    key: unhex(tokens[3]),
                    value: unhex(tokens[4]),
                    headers,
                });
            }
            other => panic!("unknown descriptor line {other:?}"),
        }
    }
    descriptor
}

fn render(descriptor: &Descriptor) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "producer_id {}", descriptor.producer_id);
    let _ = writeln!(out, "producer_epoch {}", descriptor.producer_epoch);
    let _ = writeln!(out, "base_sequence {}", descriptor.base_sequence);
    if let Some(epoch) = descriptor.partition_leader_epoch {
        let _ = writeln!(out, "partition_leader_epoch {epoch}");
    }
    for record in &descriptor.records {
        let headers = if record.headers.is_empty() {
            "-".to_string()
        } else {
            record
                .headers
                .iter()
                .map(|(key, value)| format!("{}={}", hex(Some(key)), hex(value.as_deref())))
                .collect::<Vec<_>>()
                .join(",")
        };
        let _ = writeln!(
            out,
            "record {} {} {} {} {headers}",
            record.offset,
            record.timestamp,
            hex(record.key.as_deref()),
            hex(record.value.as_deref())
        );
    }
    out
}

fn decode(bytes: &[u8]) -> Vec<Record> {
    let batch = Batch::validate_for_append(bytes).expect("fixture fails validation");
    batch
        .records()
        .map(|record| {
            let record = record.unwrap();
            Record {
                offset: record.offset,
                timestamp: record.timestamp,
                key: record.key.map(<[u8]>::to_vec),
                value: record.value.map(<[u8]>::to_vec),
                headers: record.headers.map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec))).collect(),
            }
        })
        .collect()
}

fn build(descriptor: &Descriptor) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    builder.producer(descriptor.producer_id, descriptor.producer_epoch, descriptor.base_sequence);
    if let Some(epoch) = descriptor.partition_leader_epoch {
        builder.partition_leader_epoch(epoch);
    }
    for record in &descriptor.records {
        let headers: Vec<(&[u8], Option<&[u8]>)> =
            record.headers.iter().map(|(key, value)| (key.as_slice(), value.as_deref())).collect();
        builder.append(record.timestamp, record.key.as_deref(), record.value.as_deref(), &headers).unwrap();
    }
    let mut bytes = builder.finish().unwrap();
    batch::stamp_base_offset(&mut bytes, descriptor.records[0].offset).unwrap();
    bytes
}

fn fixtures(dir: &Path) -> Vec<(PathBuf, Descriptor)> {
    let mut out: Vec<(PathBuf, Descriptor)> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "bin"))
        .map(|path| {
            let descriptor = parse(&fs::read_to_string(path.with_extension("txt")).unwrap());
            (path, descriptor)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn we_decode_kafka_python_batches_exactly() {
    let found = fixtures(&root().join("tests/data/kafka_python"));
    assert!(found.len() >= 5, "kafka-python fixtures are missing");
    for (path, descriptor) in found {
        let bytes = fs::read(&path).unwrap();
        let batch = Batch::validate_for_append(&bytes).unwrap();
        let header = batch.header();
        assert_eq!(header.producer_id, descriptor.producer_id, "{}", path.display());
        assert_eq!(header.producer_epoch, descriptor.producer_epoch);
        assert_eq!(header.base_sequence, descriptor.base_sequence);
        assert_eq!(header.max_timestamp, descriptor.records.iter().map(|r| r.timestamp).max().unwrap());
        assert_eq!(decode(&bytes), descriptor.records, "{}", path.display());
    }
}

#[test]
fn our_builder_writes_the_same_bytes_as_kafka_python() {
    for (path, descriptor) in fixtures(&root().join("tests/data/kafka_python")) {
        let theirs = fs::read(&path).unwrap();
        let ours = build(&descriptor);
        assert_eq!(ours.len(), theirs.len(), "{}: lengths differ", path.display());
        let first_difference = ours.iter().zip(&theirs).position(|(a, b)| a != b);
        assert_eq!(first_difference, None, "{}: first differing byte", path.display());
    }
}

/// Our fixtures: non-zero base offsets, the Java producer's leader epoch (-1),
/// idempotent fields, out-of-order timestamps, null/empty keys, values and header
/// values, UTF-8 header keys (kafka-python requires them), multi-byte varints.
fn our_descriptors() -> Vec<(&'static str, Descriptor)> {
    let header = |key: &str, value: Option<&[u8]>| (key.as_bytes().to_vec(), value.map(<[u8]>::to_vec));
    let mut mixed = Descriptor {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        partition_leader_epoch: Some(-1),
        records: vec![],
    };
    let timestamps = [1_700_000_100_000i64, 1_700_000_099_000, 1_700_000_100_500, 1_700_000_100_001];
    for (index, timestamp) in timestamps.into_iter().enumerate() {
        mixed.records.push(Record {
            offset: 4242 + index as i64,
            timestamp,
            key: match index {
                0 => None,
                1 => Some(Vec::new()),
                _ => Some(format!("key-{index}").into_bytes()),
            },
            value: match index {
                2 => None,
                3 => Some(Vec::new()),
                _ => Some(format!("value number {index}").into_bytes()),
            },
            headers: match index {
                0 => vec![],
                1 => vec![header("trace", Some(b"\x00\x01\xff")), header("null", None)],
                _ => vec![header("ключ", Some("значение".as_bytes())), header("", Some(b""))],
            },
        });
    }
    let mut idempotent = Descriptor {
        producer_id: 987_654_321,
        producer_epoch: 3,
        base_sequence: 1000,
        partition_leader_epoch: Some(-1),
        records: vec![],
    };
    for index in 0..150i64 {
        idempotent.records.push(Record {
            offset: (1 << 33) + index,
            timestamp: 1_700_000_000_000 + index * 37 - (index % 7) * 500,
            key: Some(vec![b'k'; (index as usize * 3) % 200]),
            value: Some((0..(index as usize * 41) % 3000).map(|j| (j * 7 + index as usize) as u8).collect()),
            headers: if index % 10 == 0 { vec![header("n", Some(&[index as u8]))] } else { vec![] },
        });
    }
    vec![("mixed", mixed), ("idempotent_large", idempotent)]
}

#[test]
fn our_checked_in_batches_are_what_the_builder_makes_now() {
    // RINGMQ_WRITE_FIXTURES=1 regenerates the files after a deliberate change.
    let dir = root().join("tests/data/ringmq");
    let write = std::env::var_os("RINGMQ_WRITE_FIXTURES").is_some();
    if write {
        fs::create_dir_all(&dir).unwrap();
    }
    for (name, descriptor) in our_descriptors() {
        let bytes = build(&descriptor);
        let text = render(&descriptor);
        assert_eq!(decode(&bytes), descriptor.records, "{name}: our own round trip");
        let (bin, txt) = (dir.join(format!("{name}.bin")), dir.join(format!("{name}.txt")));
        if write {
            fs::write(&bin, &bytes).unwrap();
            fs::write(&txt, &text).unwrap();
        }
        assert_eq!(fs::read(&bin).unwrap(), bytes, "{name}.bin is stale: rerun with RINGMQ_WRITE_FIXTURES=1");
        assert_eq!(fs::read_to_string(&txt).unwrap(), text, "{name}.txt is stale");
        assert_eq!(parse(&text).records, descriptor.records);
    }
}
