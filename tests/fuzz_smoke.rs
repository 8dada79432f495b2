//! The short version of the fuzzing campaign, on the stable toolchain of the
//! test command: the bodies of the cargo-fuzz targets (`ringmq::fuzzing`) fed
//! valid inputs built here and seeded mutations of them (bit flips,
//! truncations, splices of huge counts, random tails), plus every input saved
//! under `fuzz/regressions/TARGET/` (what a long run found, kept as a
//! regression test). Coverage-guided runs: `cd fuzz && cargo +nightly fuzz run
//! TARGET -- -malloc_limit_mb=64` (docs/RELIABILITY.md).

mod common;

use common::{batch_of, Rng};
use ringmq::fuzzing;
use ringmq::groups::state_log;
use ringmq::log::Acks;
use ringmq::protocol::fetch::FetchRequest;
use ringmq::protocol::hello::HelloRequest;
use ringmq::protocol::produce::ProduceRequest;
use std::path::Path;

/// Mutations tried per seed.
const MUTATIONS_PER_SEED: usize = 2_000;

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    if bytes.is_empty() {
        return (0..rng.below(64)).map(|_| rng.next_u64() as u8).collect();
    }
    for _ in 0..1 + rng.below(3) {
        match rng.below(5) {
            0 => {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
            1 => bytes.truncate(rng.below(bytes.len() + 1)),
            2 if bytes.len() >= 4 => {
                let at = rng.below(bytes.len() - 3);
                let huge: [u8; 4] = [[0x7f, 0xff, 0xff, 0xff], [0xff, 0xff, 0xff, 0xff], [0x80, 0, 0, 0]][rng.below(3)];
                bytes[at..at + 4].copy_from_slice(&huge);
            }
            3 => {
                let at = rng.below(bytes.len());
                for byte in &mut bytes[at..] {
                    *byte = rng.next_u64() as u8;
                }
            }
            _ => {
                let at = rng.below(bytes.len());
                bytes.insert(at, rng.next_u64() as u8);
            }
        }
        if bytes.is_empty() {
            break;
        }
    }
    bytes
}

/// Runs `body` on every saved regression input of `target`, every seed, and
/// seeded mutations of the seeds.
fn run(target: &str, seeds: &[Vec<u8>], body: fn(&[u8])) {
    let regressions = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions").join(target);
    if let Ok(entries) = std::fs::read_dir(&regressions) {
        for entry in entries.flatten() {
            body(&std::fs::read(entry.path()).unwrap());
        }
    }
    let mut rng = Rng::new(0x5eed ^ target.len() as u64);
    for seed in seeds {
        body(seed);
        for _ in 0..MUTATIONS_PER_SEED {
            body(&mutate(&mut rng, seed));
        }
    }
}

#[test]
fn native_messages() {
    let batch = batch_of(&[b"a".to_vec(), b"b".to_vec()], 1);
    let seeds = vec![
        HelloRequest { client_name: "smoke".into() }.encode(1),
        ProduceRequest::encode(2, Acks::Durable, &[("t", 0, &batch)]),
        FetchRequest { topic: "t".into(), partition: 0, offset: 0, max_bytes: 1 << 20, max_wait_ms: 0, min_bytes: 0 }
            .encode(3),
    ];
    // The decoders take bodies: the frames and their bodies are both seeds.
    let mut all = seeds.clone();
    all.extend(seeds.iter().map(|frame| frame[12..].to_vec()));
    run("message_decode", &all, fuzzing::message_decode);
}

#[test]
fn record_batches() {
    let seeds = vec![
        batch_of(&[b"one".to_vec()], 1),
        batch_of(&[b"x".repeat(300), Vec::new(), b"z".to_vec()], 1_700_000_000_000),
    ];
    run("batch_decode", &seeds, fuzzing::batch_decode);
}

#[test]
fn kafka_requests() {
    // ApiVersions v3 and Metadata v11 bodies, a Produce v3 body, and a
    // compressed blob (first byte: codec 1, gzip).
    let mut produce = vec![0xff, 0xff, 0, 1, 0, 0, 0x13, 0x88, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 0];
    let batch = batch_of(&[b"k".to_vec()], 1);
    produce.extend_from_slice(&(batch.len() as i32).to_be_bytes());
    produce.extend_from_slice(&batch);
    let seeds = vec![
        vec![3, b'a', b'b', 2, b'1', 0],
        vec![2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, b't', 0, 1, 0, 0],
        produce,
        vec![1, 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        vec![0, 0, 0, 20, 0, 18, 0, 3, 0, 0, 0, 1, 0, 1, b'c', 0, 2, b'a', 2, b'1', 0, 0],
    ];
    run("kafka_decode", &seeds, fuzzing::kafka_decode);
}

#[test]
fn storage_files() {
    // A segment of three batches (offsets 0..6), with empty indexes.
    let mut segment = Vec::new();
    let mut base = 0;
    for values in [vec![b"a".to_vec()], vec![b"b".to_vec(), b"c".to_vec()], vec![b"d".to_vec(); 3]] {
        let mut batch = batch_of(&values, 1_700_000_000_000 + base);
        ringmq::batch::stamp_base_offset(&mut batch, base).unwrap();
        base += values.len() as i64;
        segment.extend_from_slice(&batch);
    }
    let mut directory = vec![0u8, 0, 0, 0, 0];
    directory.extend_from_slice(&segment);
    let mut state = vec![1u8];
    for payload in [&b"\x01offsets"[..], b"\x02share", b"\x03more"] {
        state_log::frame_record(&mut state, payload).unwrap();
    }
    let config = b"\x02listen = \"127.0.0.1:9400\"\nshards = 2\nretention_ms = 1000\n".to_vec();
    run("storage_decode", &[directory, state, config], fuzzing::storage_decode);
}
