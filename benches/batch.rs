//! Batch codec throughput: building a RecordBatch v2, validating it (CRC-32C
//! included) and iterating its records, and raw CRC-32C.
//!
//! Run: `cargo bench --bench batch`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ringmq::batch::{self, Batch, BatchBuilder};
use std::hint::black_box;

const RECORDS: usize = 1000;
const VALUE_BYTES: usize = 1024;

fn build(value: &[u8]) -> Vec<u8> {
    let mut builder = BatchBuilder::with_capacity(RECORDS * (VALUE_BYTES + 16));
    for i in 0..RECORDS {
        builder.append(1_700_000_000_000 + i as i64, None, Some(value), &[]).unwrap();
    }
    builder.finish().unwrap()
}

fn codec(c: &mut Criterion) {
    let value = vec![0x42u8; VALUE_BYTES];
    let bytes = build(&value);
    let mut group = c.benchmark_group("batch_1000x1KiB");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("encode", |b| b.iter(|| black_box(build(black_box(&value)))));
    group.bench_function("validate", |b| b.iter(|| black_box(Batch::validate(black_box(&bytes)).unwrap())));
    group.bench_function("validate_and_decode", |b| {
        b.iter(|| {
            let batch = Batch::validate(black_box(&bytes)).unwrap();
            let mut total = 0usize;
            for record in batch.records() {
                total += record.unwrap().value.map_or(0, <[u8]>::len);
            }
            black_box(total)
        })
    });
    group.bench_function("stamp_base_offset", |b| {
        b.iter_batched_ref(
            || bytes.clone(),
            |bytes| batch::stamp_base_offset(bytes, 42).unwrap(),
            BatchSize::LargeInput,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("crc32c");
    for size in [4096usize, 1 << 20] {
        let data = vec![0x5Au8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("{size}B"), |b| b.iter(|| black_box(crc32c::crc32c(black_box(&data)))));
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
