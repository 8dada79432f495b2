//! Helpers shared by the integration tests.
#![allow(dead_code)]

use ringmq::batch::{Batch, BatchBuilder};

/// A small deterministic generator (xorshift64*), so a failing seed reproduces.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..bound` (bound > 0).
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }
}

/// One record as the tests track it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub offset: u64,
    pub timestamp: i64,
    pub value: Vec<u8>,
}

/// Builds a batch of `values`, all with `timestamp`.
pub fn batch_of(values: &[Vec<u8>], timestamp: i64) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    for value in values {
        builder.append(timestamp, Some(b"k"), Some(value), &[]).unwrap();
    }
    builder.finish().unwrap()
}

/// Decodes every record of `bytes` (whole batches back to back).
pub fn decode_all(mut bytes: &[u8]) -> Vec<Stored> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let size = ringmq::batch::batch_size(bytes).unwrap().unwrap();
        let (one, rest) = bytes.split_at(size);
        let batch = Batch::validate(one).expect("a read returned a batch that fails validation");
        for record in batch.records() {
            let record = record.unwrap();
            out.push(Stored {
                offset: record.offset as u64,
                timestamp: record.timestamp,
                value: record.value.unwrap().to_vec(),
            });
        }
        bytes = rest;
    }
    out
}

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ringmq-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A server on an ephemeral loopback port with `shards` shards.
pub fn start_server(
    data_dir: &std::path::Path,
    shards: u16,
    tweak: impl FnOnce(&mut ringmq::server::ServerConfig),
) -> ringmq::server::ServerHandle {
    let mut config = ringmq::server::ServerConfig::new(data_dir);
    config.listen = Some("127.0.0.1:0".parse().unwrap());
    config.shards = shards;
    config.pin_threads = false;
    tweak(&mut config);
    ringmq::server::start(config).expect("the server starts")
}

/// Values of every record in `bytes` (whole batches), as strings.
pub fn values_of(bytes: &[u8]) -> Vec<String> {
    decode_all(bytes).into_iter().map(|r| String::from_utf8(r.value).unwrap()).collect()
}

/// A Kafka request frame written byte by byte (not with ringmq's codec):
/// size, api_key, api_version, correlation_id, client_id "t", then (flexible
/// headers) an empty tag section, then `body`.
pub fn kafka_request(api_key: i16, version: i16, correlation_id: i32, flexible: bool, body: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8; 4];
    frame.extend_from_slice(&api_key.to_be_bytes());
    frame.extend_from_slice(&version.to_be_bytes());
    frame.extend_from_slice(&correlation_id.to_be_bytes());
    frame.extend_from_slice(&1i16.to_be_bytes());
    frame.push(b't');
    if flexible {
        frame.push(0);
    }
    frame.extend_from_slice(body);
    let size = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    frame
}
