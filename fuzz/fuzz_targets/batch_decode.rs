//! Any bytes through every batch decoder entry point: must never panic.
//! Run: `cargo +nightly fuzz run batch_decode` from the repository root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmq::batch::{self, Batch, BatchHeader};

fuzz_target!(|data: &[u8]| {
    let _ = batch::batch_size(data);
    let _ = BatchHeader::parse(data);
    let _ = Batch::validate_for_append(data);
    // Also reach the record decoder behind a valid CRC: fix the CRC up first.
    let mut forged = data.to_vec();
    if forged.len() >= 61 {
        let length = (forged.len() - 12) as i32;
        forged[8..12].copy_from_slice(&length.to_be_bytes());
        forged[16] = 2;
        let crc = batch::compute_crc(&forged);
        forged[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    for bytes in [data, &forged[..]] {
        if let Ok(batch) = Batch::validate(bytes) {
            for record in batch.records() {
                match record {
                    Ok(record) => {
                        let _ = record.headers.count();
                    }
                    Err(_) => break,
                }
            }
        }
    }
});
