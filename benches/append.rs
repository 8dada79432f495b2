//! Append throughput of the partition log on real files, 1 KiB records x 1000 per
//! batch: into the page cache (`acks=written`), and durable with group commit
//! under 1 and 8 concurrent appenders. Next to them, the reference the issue asks
//! for measured in the same run: a plain `std::fs` 1 MiB write + fdatasync loop.
//! Each durable case prints the fdatasyncs it issued per durable append.
//!
//! Run: `cargo bench --bench append` (data goes to `$RINGMQ_BENCH_DIR`, default
//! `target/bench-data`, and is deleted after every sample).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringmq::batch::BatchBuilder;
use ringmq::io::{spawn_local, FileStorage, Runtime};
use ringmq::log::{Acks, GroupCommit, LogConfig, PartitionLog, SharedLog};
use std::cell::RefCell;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

const RECORDS: usize = 1000;
const VALUE_BYTES: usize = 1024;

fn bench_dir(name: &str) -> PathBuf {
    let root = std::env::var_os("RINGMQ_BENCH_DIR").map_or_else(|| PathBuf::from("target/bench-data"), PathBuf::from);
    let dir = root.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn batch() -> Vec<u8> {
    let value = vec![0x42u8; VALUE_BYTES];
    let mut builder = BatchBuilder::with_capacity(RECORDS * (VALUE_BYTES + 16));
    for i in 0..RECORDS {
        builder.append(1_700_000_000_000 + i as i64, None, Some(&value), &[]).unwrap();
    }
    builder.finish().unwrap()
}

fn config() -> LogConfig {
    LogConfig { segment_bytes: 256 << 20, ..LogConfig::default() }
}

/// Appends `iterations` batches split among `appenders` partitions' producers
/// sharing one partition log, returning the elapsed time and fsync count.
fn run(runtime: &Runtime, iterations: u64, appenders: u64, acks: Acks) -> (Duration, u64) {
    let dir = bench_dir(&format!("append-{appenders}-{acks:?}"));
    let template = batch();
    let result = runtime.block_on(async {
        let log: SharedLog<FileStorage> =
            Rc::new(RefCell::new(PartitionLog::open(FileStorage::new(), &dir, config()).await.unwrap()));
        let commit = GroupCommit::new(None);
        let flusher = spawn_local(commit.clone().run());
        let start = Instant::now();
        let mut tasks = Vec::new();
        for appender in 0..appenders {
            let count = iterations / appenders + u64::from(appender < iterations % appenders);
            let (log, commit, mut batch) = (log.clone(), commit.clone(), template.clone());
            tasks.push(spawn_local(async move {
                for _ in 0..count {
                    commit.append(&log, &mut batch, acks).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let elapsed = start.elapsed();
        commit.stop();
        flusher.await.unwrap();
        (elapsed, commit.stats().fsyncs)
    });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn std_fdatasync_loop(iterations: u64) -> Duration {
    let dir = bench_dir("std-fdatasync");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("file");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = batch();
    let start = Instant::now();
    for _ in 0..iterations {
        file.write_all(&block).unwrap();
        file.sync_data().unwrap();
    }
    let elapsed = start.elapsed();
    drop(file);
    let _ = std::fs::remove_dir_all(&dir);
    elapsed
}

fn std_pwrite_loop(iterations: u64) -> Duration {
    let dir = bench_dir("std-pwrite");
    std::fs::create_dir_all(&dir).unwrap();
    let file = std::fs::File::create(dir.join("file")).unwrap();
    let block = batch();
    let start = Instant::now();
    for i in 0..iterations {
        file.write_all_at(&block, i * block.len() as u64).unwrap();
    }
    let elapsed = start.elapsed();
    drop(file);
    let _ = std::fs::remove_dir_all(&dir);
    elapsed
}

fn append(c: &mut Criterion) {
    let runtime = Runtime::new().expect("io_uring is needed for this benchmark");
    let bytes = batch().len() as u64;
    let mut group = c.benchmark_group("append_1000x1KiB");
    group.throughput(Throughput::Bytes(bytes));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("reference_std_pwrite", |b| b.iter_custom(std_pwrite_loop));
    group.bench_function("page_cache", |b| b.iter_custom(|n| run(&runtime, n, 1, Acks::Written).0));
    group.bench_function("reference_std_write_fdatasync", |b| b.iter_custom(std_fdatasync_loop));
    for appenders in [1u64, 8] {
        let mut totals = (0u64, 0u64);
        group.bench_function(format!("durable_{appenders}_appenders"), |b| {
            b.iter_custom(|n| {
                let (elapsed, fsyncs) = run(&runtime, n, appenders, Acks::Durable);
                totals.0 += n;
                totals.1 += fsyncs;
                elapsed
            })
        });
        eprintln!(
            "durable, {appenders} appender(s): {} appends, {} fdatasyncs, {:.3} fdatasyncs per durable append",
            totals.0,
            totals.1,
            totals.1 as f64 / totals.0.max(1) as f64
        );
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
