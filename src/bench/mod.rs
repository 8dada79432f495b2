//! `ringmq bench`: produce, consume and end-to-end workloads against a server
//! (TCP) or an embedded broker in this process, with HdrHistogram percentiles.
//!
//! - `produce`: producers send batches of `batch_records` records to their
//!   partitions; latency is request to acknowledgement per batch.
//! - `consume`: the records are produced first (not measured), then consumers
//!   read them all; latency is per fetch.
//! - `e2e`: every record carries the time it was (meant to be) sent; consumers
//!   following the partitions record receive time minus that.
//!
//! With `--rate`, sends are paced on a schedule and latency is measured from the
//! scheduled time, not the actual send, so a stall counts against every send it
//! delayed (correcting coordinated omission).

mod kafka;
pub mod reference;

use crate::batch::BatchBuilder;
use crate::client::{decode_records, Client, Connection, Retention};
use crate::embedded::{Broker, EmbeddedClient};
use crate::log::Acks;
use crate::protocol::fetch::FetchRequest;
use crate::protocol::produce::{ProduceRequest, ProduceResponse};
use crate::server::ServerConfig;
use bytes::BytesMut;
use hdrhistogram::Histogram;
use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Requests a TCP producer keeps in flight per connection when not rate-paced.
pub const PIPELINE_DEPTH: usize = 4;
/// Largest latency the histograms record (60 s, in µs).
const LATENCY_US_MAX: u64 = 60_000_000;
/// Smallest record value: the 8-byte send timestamp.
pub const MESSAGE_BYTES_MIN: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Produce,
    Consume,
    EndToEnd,
}

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub workload: Workload,
    /// `None`: embedded broker in this process.
    pub bootstrap: Option<String>,
    pub producers: usize,
    pub consumers: usize,
    pub partitions: u32,
    pub message_bytes: usize,
    pub batch_records: usize,
    pub acks: Acks,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    /// Records per second over all producers.
    pub rate: Option<u64>,
    pub warmup: Duration,
    pub busy_poll: bool,
    /// Embedded e2e only: the producer and the consumer share one thread.
    pub same_thread: bool,
    pub data_dir: Option<PathBuf>,
    pub shards: Option<u16>,
    pub topic: String,
    /// Produce requests a TCP producer keeps in flight (unpaced runs).
    pub in_flight: usize,
    /// Measure the references ([`reference`]) before the run, the fdatasync
    /// test in this directory (put it on the data directory's file system).
    pub reference: Option<PathBuf>,
    /// Produce over the Kafka listener at this address (the topic is still
    /// created through `bootstrap`).
    pub kafka: Option<String>,
    /// TCP: TLS and credentials of every connection.
    pub connect: crate::client::ConnectOptions,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub records: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub latency: Histogram<u64>,
    /// CPU seconds of this process from the start of the measured workload
    /// (warm-up included, a consume run's load phase not); embedded, the
    /// broker's shards are in it.
    pub client_cpu_seconds: f64,
    /// CPU seconds of the server over the same span (TCP to a local server).
    pub server_cpu_seconds: Option<f64>,
    /// Record bytes the workload counted over the same span, for CPU per GB.
    pub bytes_moved: u64,
    pub references: Option<reference::References>,
}

impl BenchReport {
    pub fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.seconds.max(1e-9)
    }
    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / self.seconds.max(1e-9) / 1e6
    }

    /// CPU seconds per GB moved: (client, server).
    pub fn cpu_per_gb(&self) -> (f64, Option<f64>) {
        let gigabytes = (self.bytes_moved as f64 / 1e9).max(1e-9);
        (self.client_cpu_seconds / gigabytes, self.server_cpu_seconds.map(|s| s / gigabytes))
    }

    /// Throughput ÷ loopback TCP, and p50 latency − fdatasync p50 (µs).
    fn against_references(&self) -> Option<(f64, i64)> {
        let references = self.references.as_ref()?;
        let throughput = self.bytes as f64 / self.seconds.max(1e-9) / references.loopback_bytes_per_sec.max(1.0);
        let over_sync = self.latency.value_at_quantile(0.5) as i64 - references.fdatasync_p50_us as i64;
        Some((throughput, over_sync))
    }

    pub fn to_json(&self, config: &BenchConfig) -> String {
        let q = |quantile: f64| self.latency.value_at_quantile(quantile);
        serde_json::json!({
            "workload": format!("{:?}", config.workload).to_lowercase(),
            "transport": if config.bootstrap.is_some() { "tcp" } else { "embedded" },
            "protocol": if config.kafka.is_some() { "kafka" } else { "native" },
            "producers": config.producers,
            "consumers": config.consumers,
            "partitions": config.partitions,
            "message_size": config.message_bytes,
            "batch_records": config.batch_records,
            "acks": format!("{:?}", config.acks).to_lowercase(),
            "rate": config.rate,
            "records": self.records,
            "bytes": self.bytes,
            "seconds": self.seconds,
            "records_per_sec": self.records_per_sec(),
            "mb_per_sec": self.mb_per_sec(),
            "latency_us": {
                "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999), "p9999": q(0.9999),
                "max": self.latency.max(), "samples": self.latency.len(),
            },
            "in_flight": config.in_flight,
            "cpu_seconds_per_gb": { "client": self.cpu_per_gb().0, "server": self.cpu_per_gb().1 },
            "reference": self.references.as_ref().map(|references| serde_json::json!({
                "loopback_mb_per_sec": references.loopback_bytes_per_sec / 1e6,
                "fdatasync_p50_us": references.fdatasync_p50_us,
                "fdatasync_p99_us": references.fdatasync_p99_us,
                "throughput_ratio": self.against_references().map(|(ratio, _)| ratio),
                "p50_minus_fdatasync_p50_us": self.against_references().map(|(_, over)| over),
            })),
        })
        .to_string()
    }

    pub fn table(&self, config: &BenchConfig) -> String {
        let q = |quantile: f64| self.latency.value_at_quantile(quantile);
        let latency_of = match config.workload {
            Workload::Produce => "batch ack",
            Workload::Consume => "fetch",
            Workload::EndToEnd => "produce->consume",
        };
        format!(
            "{:?} over {}: {} producer(s), {} consumer(s), {} partition(s), {} B x {} per batch, acks {:?}\n\
             {:>12} {:>14} {:>8} {:>12} {:>9} | latency ({latency_of}, us) {:>7} {:>7} {:>7} {:>7} {:>7} {:>8}\n\
             {:>12} {:>14} {:>8.2} {:>12.0} {:>9.1} | {:>31} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8}\n",
            config.workload,
            if config.bootstrap.is_some() { "TCP" } else { "embedded" },
            config.producers,
            config.consumers,
            config.partitions,
            config.message_bytes,
            config.batch_records,
            config.acks,
            "records",
            "bytes",
            "seconds",
            "records/s",
            "MB/s",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "p99.99",
            "max",
            self.records,
            self.bytes,
            self.seconds,
            self.records_per_sec(),
            self.mb_per_sec(),
            "",
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            q(0.9999),
            self.latency.max(),
        ) + &self.table_footer()
    }

    /// CPU per GB, and the references with the ratios to them.
    fn table_footer(&self) -> String {
        let (client, server) = self.cpu_per_gb();
        let server = server.map_or("n/a (not a local server)".to_owned(), |s| format!("{s:.2}"));
        let mut out = format!("CPU seconds per GB moved: client {client:.2}, server {server}\n");
        if let (Some(references), Some((ratio, over))) = (&self.references, self.against_references()) {
            out += &format!(
                "reference, same run: loopback TCP {:.0} MB/s (throughput ratio {ratio:.3}); \
                 4 KiB append + fdatasync p50 {} us, p99 {} us (p50 latency {over:+} us over it)\n",
                references.loopback_bytes_per_sec / 1e6,
                references.fdatasync_p50_us,
                references.fdatasync_p99_us,
            );
        }
        out
    }

    /// The percentile distribution in HdrHistogram's `.hgrm` text format.
    pub fn hgrm(&self) -> String {
        let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
        for step in self.latency.iter_quantiles(5) {
            let percentile = step.quantile_iterated_to();
            let inverse = if percentile < 1.0 { format!("{:.2}", 1.0 / (1.0 - percentile)) } else { "inf".into() };
            out.push_str(&format!(
                "{:12.3} {:14.12} {:10} {:>14}\n",
                step.value_iterated_to() as f64,
                percentile,
                step.count_since_last_iteration(),
                inverse
            ));
        }
        out.push_str(&format!(
            "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]\n#[Max     = {:12.3}, Total count    = {:12}]\n",
            self.latency.mean(),
            self.latency.stdev(),
            self.latency.max() as f64,
            self.latency.len()
        ));
        out
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

fn record_us(histogram: &mut Histogram<u64>, micros: u64) {
    let _ = histogram.record(micros.clamp(1, LATENCY_US_MAX));
}

/// Nanoseconds since the first call, shared by every thread of this process:
/// the clock e2e records carry.
fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Where the workload runs.
enum Target {
    Tcp(String),
    Embedded(EmbeddedClient),
}

/// Shared state of a run.
struct Run {
    config: BenchConfig,
    /// Producers stop (duration over).
    stop: AtomicBool,
    /// Consumers stop (they caught up, or gave up waiting).
    stop_consuming: AtomicBool,
    produced: AtomicU64,
    consumed: AtomicU64,
    /// Samples before this instant are warm-up and not recorded.
    measure_from: Mutex<Option<Instant>>,
    latencies: Mutex<Histogram<u64>>,
}

impl Run {
    fn measuring(&self) -> bool {
        self.measure_from.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|t| Instant::now() >= t)
    }

    fn merge(&self, local: &Histogram<u64>) {
        let _ = self.latencies.lock().unwrap_or_else(|p| p.into_inner()).add(local);
    }

    /// Records this producer sends: its share of `count`, or unbounded.
    fn share(&self, index: usize, total: usize) -> u64 {
        match self.config.count {
            Some(count) => count / total as u64 + u64::from((index as u64) < count % total as u64),
            None => u64::MAX,
        }
    }
}

fn build_batch(records: usize, message_bytes: usize, scheduled_ns: u64) -> Vec<u8> {
    build_batch_in(Vec::new(), records, message_bytes, scheduled_ns)
}

/// [`build_batch`] into `buffer`'s allocation.
fn build_batch_in(buffer: Vec<u8>, records: usize, message_bytes: usize, scheduled_ns: u64) -> Vec<u8> {
    let mut value = vec![0x5au8; message_bytes.max(MESSAGE_BYTES_MIN)];
    value[..8].copy_from_slice(&scheduled_ns.to_be_bytes());
    let mut buffer = buffer;
    buffer.reserve(records * (message_bytes + 16));
    let mut builder = BatchBuilder::reusing(buffer);
    let timestamp = crate::log::partition::now_ms();
    for _ in 0..records {
        let _ = builder.append(timestamp, None, Some(&value), &[]);
    }
    builder.finish().unwrap_or_default()
}

/// Paces sends at `rate` records/s for one producer: the scheduled time of the
/// next batch, and sleeps until it.
/// The last stretch before a scheduled send, spun without giving the core
/// away (a `sched_yield` can return later than the slot).
const PACER_SPIN_WITHOUT_YIELD: Duration = Duration::from_micros(20);

struct Pacer {
    start: Instant,
    interval: Option<Duration>,
    sent: u64,
}

impl Pacer {
    fn new(rate_per_producer: Option<f64>, batch_records: usize) -> Pacer {
        let interval = rate_per_producer.map(|rate| Duration::from_secs_f64(batch_records as f64 / rate.max(1e-9)));
        Pacer { start: Instant::now(), interval, sent: 0 }
    }

    /// Waits for the next slot; returns its scheduled instant.
    fn next(&mut self) -> Instant {
        let scheduled = match self.interval {
            Some(interval) => self.start + interval * self.sent as u32,
            None => Instant::now(),
        };
        self.sent += 1;
        while Instant::now() < scheduled {
            let left = scheduled - Instant::now();
            if left > Duration::from_micros(200) {
                std::thread::sleep(left - Duration::from_micros(100));
            } else if left > PACER_SPIN_WITHOUT_YIELD {
                // Another spinner (a shard, a busy-polling consumer) may
                // share this core: let it run while there is time.
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        scheduled
    }
}

/// The scheduled send time a benchmark record carries in its first 8 bytes
/// (0 when it carries none).
fn sent_ns(record: &crate::client::ConsumedRecord) -> u64 {
    record.value.as_deref().and_then(|v| v.get(..8)).map_or(0, |b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
}

fn instant_ns(instant: Instant) -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let _ = now_ns();
    let base = *START.get_or_init(|| Instant::now() - Duration::from_nanos(now_ns()));
    instant.saturating_duration_since(base).as_nanos() as u64
}

fn produce_embedded(run: &Run, client: EmbeddedClient, partitions: Vec<u32>, quota: u64) -> Result<(), String> {
    let config = &run.config;
    let rate = config.rate.map(|r| r as f64 / config.producers as f64);
    let mut pacer = Pacer::new(rate, config.batch_records);
    let mut local = histogram();
    let mut sent = 0u64;
    let mut next_partition = 0;
    while sent < quota && !run.stop.load(Ordering::Relaxed) {
        let scheduled = pacer.next();
        let batch = build_batch(config.batch_records, config.message_bytes, instant_ns(scheduled));
        let partition = partitions[next_partition % partitions.len()];
        next_partition += 1;
        client.produce(&config.topic, partition, BytesMut::from(&batch[..]), config.acks).map_err(|e| e.to_string())?;
        if run.measuring() && run.config.workload == Workload::Produce {
            record_us(&mut local, scheduled.elapsed().as_micros() as u64);
        }
        sent += config.batch_records as u64;
        run.produced.fetch_add(config.batch_records as u64, Ordering::Relaxed);
    }
    run.merge(&local);
    Ok(())
}

/// `--same-thread`: one thread is both the producer and the consumer of
/// partition 0. The consumer's long poll for the next offset is posted before
/// each produce, so it waits at the shard as a separate consumer's would, and
/// the latency is from the scheduled send to the record's arrival.
fn produce_and_consume_embedded(run: &Run, client: EmbeddedClient, quota: u64) -> Result<(), String> {
    let config = &run.config;
    let mut pacer = Pacer::new(config.rate.map(|r| r as f64), config.batch_records);
    let mut local = histogram();
    let fetch = |offset: u64| FetchRequest {
        topic: config.topic.clone(),
        partition: 0,
        offset,
        max_bytes: 4 << 20,
        max_wait_ms: 100,
        min_bytes: 1,
    };
    let mut next = 0u64;
    let mut pending = client.fetch_async(fetch(next)).map_err(|e| e.to_string())?;
    let mut sent = 0u64;
    while sent < quota && !run.stop.load(Ordering::Relaxed) {
        let scheduled = pacer.next();
        let batch = build_batch(config.batch_records, config.message_bytes, instant_ns(scheduled));
        client.produce(&config.topic, 0, BytesMut::from(&batch[..]), config.acks).map_err(|e| e.to_string())?;
        sent += config.batch_records as u64;
        run.produced.fetch_add(config.batch_records as u64, Ordering::Relaxed);
        while next < sent {
            let result = pending.wait().map_err(|e| e.to_string())?;
            let arrived_ns = now_ns();
            let records = decode_records(&result.records, next).map_err(|e| e.to_string())?;
            if let Some(last) = records.last() {
                next = last.offset + 1;
            }
            pending = client.fetch_async(fetch(next)).map_err(|e| e.to_string())?;
            run.consumed.fetch_add(records.len() as u64, Ordering::Relaxed);
            if run.measuring() {
                for record in &records {
                    record_us(&mut local, arrived_ns.saturating_sub(sent_ns(record)) / 1000);
                }
            }
        }
    }
    // The last long poll is answered at its timeout (or by the shutdown).
    let _ = pending.wait();
    run.merge(&local);
    Ok(())
}

fn produce_tcp(run: &Run, bootstrap: &str, partitions: Vec<u32>, quota: u64) -> Result<(), String> {
    let config = &run.config;
    let client = Client::connect_with(bootstrap, &config.connect).map_err(|e| e.to_string())?;
    let metadata = client.refresh_metadata().map_err(|e| e.to_string())?;
    let host = bootstrap.parse::<SocketAddr>().map(|a| a.ip()).unwrap_or([127, 0, 0, 1].into());
    let owners = client.topic(&config.topic).map_err(|e| e.to_string())?.partition_shards.clone();
    let mut connections: Vec<(u16, Connection, VecDeque<Instant>)> = Vec::new();
    let rate = config.rate.map(|r| r as f64 / config.producers as f64);
    let depth = if rate.is_some() { usize::MAX } else { config.in_flight.max(1) };
    let mut pacer = Pacer::new(rate, config.batch_records);
    let mut local = histogram();
    let mut sent = 0u64;
    let mut next_partition = 0;
    let acknowledged = config.acks != Acks::None;
    let (mut spare_batch, mut frame) = (Vec::new(), Vec::new());
    let receive_one = |connection: &mut Connection, pending: &mut VecDeque<Instant>, local: &mut Histogram<u64>| {
        let (header, body) = connection.receive_any().map_err(|e| e.to_string())?;
        let scheduled = pending.pop_front().unwrap_or_else(Instant::now);
        if header.error_code != 0 {
            return Err(format!("produce failed with error code {}", header.error_code));
        }
        let response = ProduceResponse::decode(&body).map_err(|e| e.to_string())?;
        if let Some(result) = response.results.iter().find(|r| r.error != 0) {
            return Err(format!("produce failed with error code {}", result.error));
        }
        if run.measuring() && run.config.workload == Workload::Produce {
            record_us(local, scheduled.elapsed().as_micros() as u64);
        }
        Ok::<(), String>(())
    };
    while sent < quota && !run.stop.load(Ordering::Relaxed) {
        let partition = partitions[next_partition % partitions.len()];
        next_partition += 1;
        let shard = owners[partition as usize];
        let index = match connections.iter().position(|(s, _, _)| *s == shard) {
            Some(index) => index,
            None => {
                let port = metadata.shards[shard as usize].port;
                let connection = client.connect_to(SocketAddr::new(host, port)).map_err(|e| e.to_string())?;
                connections.push((shard, connection, VecDeque::new()));
                connections.len() - 1
            }
        };
        let (_, connection, pending) = &mut connections[index];
        if acknowledged && pending.len() >= depth {
            receive_one(connection, pending, &mut local)?;
        }
        let scheduled = pacer.next();
        // Both buffers are reused: a fresh megabyte per request costs the
        // client page faults that would show in its CPU per GB.
        let batch = build_batch_in(
            std::mem::take(&mut spare_batch),
            config.batch_records,
            config.message_bytes,
            instant_ns(scheduled),
        );
        frame = ProduceRequest::encode_in(
            std::mem::take(&mut frame),
            0,
            config.acks,
            &[(&config.topic, partition, &batch)],
        );
        spare_batch = batch;
        connection.send_raw(&frame).map_err(|e| e.to_string())?;
        if acknowledged {
            pending.push_back(scheduled);
            // Paced runs read acknowledgements as they come, without waiting.
            if rate.is_some() {
                while !pending.is_empty() && connection.readable() {
                    receive_one(connection, pending, &mut local)?;
                }
            }
        } else if run.measuring() && run.config.workload == Workload::Produce {
            record_us(&mut local, scheduled.elapsed().as_micros() as u64);
        }
        sent += config.batch_records as u64;
        run.produced.fetch_add(config.batch_records as u64, Ordering::Relaxed);
    }
    for (_, connection, pending) in &mut connections {
        while !pending.is_empty() {
            receive_one(connection, pending, &mut local)?;
        }
    }
    run.merge(&local);
    Ok(())
}

/// Reads partitions from offset 0 until told to stop.
fn consume(run: &Run, target: &Target, partitions: Vec<u32>) -> Result<(), String> {
    let config = &run.config;
    let mut client = match target {
        Target::Tcp(bootstrap) => Some(Client::connect_with(bootstrap, &config.connect).map_err(|e| e.to_string())?),
        Target::Embedded(_) => None,
    };
    let mut offsets = vec![0u64; partitions.len()];
    let mut local = histogram();
    let wait_ms = if partitions.len() == 1 { 100 } else { 5 };
    loop {
        if run.stop_consuming.load(Ordering::Relaxed) {
            break;
        }
        for (index, partition) in partitions.iter().enumerate() {
            let request = FetchRequest {
                topic: config.topic.clone(),
                partition: *partition,
                offset: offsets[index],
                max_bytes: 4 << 20,
                max_wait_ms: wait_ms,
                min_bytes: 1,
            };
            let started = Instant::now();
            let result = match (&mut client, target) {
                (Some(client), _) => client.fetch(&request).map_err(|e| e.to_string())?,
                (None, Target::Embedded(embedded)) => embedded.fetch(request).map_err(|e| e.to_string())?,
                (None, Target::Tcp(_)) => return Err("no client".into()),
            };
            let arrived_ns = now_ns();
            if result.records.is_empty() {
                continue;
            }
            let records = decode_records(&result.records, offsets[index]).map_err(|e| e.to_string())?;
            if let Some(last) = records.last() {
                offsets[index] = last.offset + 1;
            }
            let count = records.len() as u64;
            run.consumed.fetch_add(count, Ordering::Relaxed);
            if !run.measuring() {
                continue;
            }
            match config.workload {
                Workload::Consume => record_us(&mut local, started.elapsed().as_micros() as u64),
                Workload::EndToEnd => {
                    for record in &records {
                        record_us(&mut local, arrived_ns.saturating_sub(sent_ns(record)) / 1000);
                    }
                }
                Workload::Produce => {}
            }
        }
    }
    run.merge(&local);
    Ok(())
}

fn progress(run: &Run, start: Instant) {
    let elapsed = start.elapsed().as_secs_f64();
    let produced = run.produced.load(Ordering::Relaxed);
    let consumed = run.consumed.load(Ordering::Relaxed);
    eprint!(
        "\r{elapsed:6.1}s  produced {produced:>12} ({:>10.0}/s)  consumed {consumed:>12}   ",
        produced as f64 / elapsed.max(1e-9)
    );
    let _ = std::io::stderr().flush();
}

/// Runs a benchmark and returns what it measured.
pub fn run(config: BenchConfig) -> Result<BenchReport, String> {
    if config.producers == 0 || config.partitions == 0 || config.batch_records == 0 {
        return Err("--producers, --partitions and --batch-records must be at least 1".into());
    }
    if config.kafka.is_some() && (config.bootstrap.is_none() || config.workload != Workload::Produce) {
        return Err("--kafka is for produce runs against a server (not --embedded)".into());
    }
    if config.kafka.is_some() && config.connect.credentials.is_some() {
        return Err("--kafka does not authenticate: run it against a listener without --authentication".into());
    }
    if config.count.is_none() && config.duration.is_none() {
        return Err("give --count N or --duration S".into());
    }
    if config.workload != Workload::Produce && config.consumers == 0 {
        return Err("consume and e2e need --consumers of at least 1".into());
    }
    if config.same_thread
        && (config.bootstrap.is_some()
            || config.workload != Workload::EndToEnd
            || config.producers != 1
            || config.consumers != 1
            || config.partitions != 1)
    {
        return Err("--same-thread is for e2e --embedded with one producer, one consumer and one partition".into());
    }
    let mut temporary = None;
    let (target, broker) = match &config.bootstrap {
        Some(bootstrap) => (Target::Tcp(bootstrap.clone()), None),
        None => {
            let dir = match &config.data_dir {
                Some(dir) => dir.clone(),
                None => {
                    let dir = std::env::temp_dir().join(format!("ringmq-bench-{}", std::process::id()));
                    temporary = Some(dir.clone());
                    dir
                }
            };
            let mut server_config = ServerConfig::new(&dir);
            server_config.busy_poll = config.busy_poll;
            if let Some(shards) = config.shards {
                server_config.shards = shards;
            }
            server_config.retention_ms = None;
            let broker = Broker::open(server_config).map_err(|e| e.to_string())?;
            (Target::Embedded(broker.client()), Some(broker))
        }
    };
    let references = match &config.reference {
        Some(dir) => Some(
            reference::measure(dir).map_err(|e| format!("cannot measure the references in {}: {e}", dir.display()))?,
        ),
        None => None,
    };
    let result = run_on(&config, &target).map(|mut report| {
        report.references = references;
        report
    });
    if let Some(broker) = broker {
        broker.close().map_err(|error| error.to_string())?;
    }
    if let Some(dir) = temporary {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

fn create_topic(config: &BenchConfig, target: &Target) -> Result<(), String> {
    let created = match target {
        Target::Tcp(bootstrap) => {
            let client = Client::connect_with(bootstrap, &config.connect).map_err(|e| e.to_string())?;
            client.create_topic(&config.topic, config.partitions, Retention::Unlimited, Retention::Unlimited)
        }
        Target::Embedded(client) => {
            client.create_topic(&config.topic, config.partitions, Retention::Unlimited, Retention::Unlimited)
        }
    };
    created.map_err(|e| format!("cannot create the benchmark topic {}: {e}", config.topic))
}

/// How often the supervising thread looks at the counters (and the progress line).
const SUPERVISE_INTERVAL: Duration = Duration::from_millis(50);
/// How long consumers may take to catch up once producers are done.
const CATCH_UP_MAX: Duration = Duration::from_secs(10);
const CATCH_UP_POLL: Duration = Duration::from_millis(10);

type Worker = std::thread::JoinHandle<Result<(), String>>;

impl Target {
    fn duplicate(&self) -> Target {
        match self {
            Target::Tcp(bootstrap) => Target::Tcp(bootstrap.clone()),
            Target::Embedded(client) => Target::Embedded(client.clone()),
        }
    }
}

/// The partitions worker `index` of `workers` takes: every `workers`-th.
fn assigned(config: &BenchConfig, index: usize, workers: usize) -> Vec<u32> {
    (0..config.partitions).filter(|p| *p as usize % workers == index % workers).collect()
}

fn spawn_producers(run: &Arc<Run>, target: &Target) -> Vec<Worker> {
    let config = &run.config;
    (0..config.producers)
        .map(|index| {
            let run = run.clone();
            let partitions = assigned(config, index, config.producers.min(config.partitions as usize));
            let quota = run.share(index, config.producers);
            let target = target.duplicate();
            std::thread::spawn(move || match target {
                Target::Tcp(_) if run.config.kafka.is_some() => {
                    kafka::produce(&run, run.config.kafka.as_deref().unwrap_or_default(), partitions, quota)
                }
                Target::Tcp(bootstrap) => produce_tcp(&run, &bootstrap, partitions, quota),
                Target::Embedded(client) => produce_embedded(&run, client, partitions, quota),
            })
        })
        .collect()
}

fn spawn_consumers(run: &Arc<Run>, target: &Target) -> Vec<Worker> {
    let config = &run.config;
    if config.workload == Workload::Produce || config.same_thread {
        return Vec::new();
    }
    let workers = config.consumers.min(config.partitions as usize);
    (0..workers)
        .map(|index| {
            let run = run.clone();
            let partitions = assigned(config, index, workers);
            let target = target.duplicate();
            std::thread::spawn(move || consume(&run, &target, partitions))
        })
        .collect()
}

/// Waits for every worker; the first error, if any.
fn join_all(threads: Vec<Worker>) -> Result<(), String> {
    let mut first = Ok(());
    for thread in threads {
        let result = thread.join().unwrap_or_else(|_| Err("a benchmark thread panicked".into()));
        if first.is_ok() {
            first = result;
        }
    }
    first
}

/// The records the workload counts (produced, or consumed).
fn counted(run: &Run) -> u64 {
    match run.config.workload {
        Workload::Produce => run.produced.load(Ordering::Relaxed),
        _ => run.consumed.load(Ordering::Relaxed),
    }
}

/// Watches the run until the producers are done (or time is up) and the
/// consumers caught up, then stops them. Returns the count at the end of
/// the warm-up.
fn supervise(run: &Run, producers: &[Worker], start: Instant) -> u64 {
    let config = &run.config;
    let terminal = std::io::stderr().is_terminal();
    let deadline = config.duration.map(|d| start + config.warmup + d);
    let mut at_warmup: Option<u64> = if config.warmup.is_zero() { Some(0) } else { None };
    loop {
        if at_warmup.is_none() && Instant::now() >= start + config.warmup {
            at_warmup = Some(counted(run));
        }
        std::thread::sleep(SUPERVISE_INTERVAL);
        if terminal && start.elapsed().as_millis() % 1000 < SUPERVISE_INTERVAL.as_millis() {
            progress(run, start);
        }
        let produced_all = producers.iter().all(|p| p.is_finished());
        let target_records = match config.workload {
            Workload::Consume => config.count.unwrap_or(0),
            _ => run.produced.load(Ordering::Relaxed),
        };
        let consumed_all =
            config.workload == Workload::Produce || run.consumed.load(Ordering::Relaxed) >= target_records;
        let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
        if timed_out {
            run.stop.store(true, Ordering::Relaxed);
        }
        if produced_all && (consumed_all || timed_out) {
            // Consumers stop once they caught up with everything produced.
            let catch_up = Instant::now() + CATCH_UP_MAX;
            while config.workload != Workload::Produce
                && run.consumed.load(Ordering::Relaxed) < run.produced.load(Ordering::Relaxed)
                && Instant::now() < catch_up
            {
                std::thread::sleep(CATCH_UP_POLL);
            }
            run.stop_consuming.store(true, Ordering::Relaxed);
            return at_warmup.unwrap_or(0);
        }
    }
}

fn run_on(config: &BenchConfig, target: &Target) -> Result<BenchReport, String> {
    create_topic(config, target)?;
    let run = Arc::new(Run {
        config: config.clone(),
        stop: AtomicBool::new(false),
        stop_consuming: AtomicBool::new(false),
        produced: AtomicU64::new(0),
        consumed: AtomicU64::new(0),
        measure_from: Mutex::new(None),
        latencies: Mutex::new(histogram()),
    });
    if config.workload == Workload::Consume {
        // Load the data first, unmeasured.
        if config.count.is_none() {
            return Err("consume needs --count (the records it loads first, then reads)".into());
        }
        join_all(spawn_producers(&run, target))?;
    }
    // CPU from here: a consume run's load phase is not counted.
    let server_port = config
        .bootstrap
        .as_deref()
        .and_then(|b| b.parse::<SocketAddr>().ok())
        .filter(|address| address.ip().is_loopback())
        .map(|address| address.port());
    let server_cpu = || server_port.and_then(reference::cpu_seconds_of_listener);
    let (client_before, server_before) = (reference::cpu_seconds_self(), server_cpu());
    let start = Instant::now();
    *run.measure_from.lock().unwrap_or_else(|p| p.into_inner()) = Some(start + config.warmup);
    let consumers = spawn_consumers(&run, target);
    let producers = match (config.workload, target) {
        (Workload::Consume, _) => Vec::new(),
        (_, Target::Embedded(client)) if config.same_thread => {
            let (run, client) = (run.clone(), client.clone());
            let quota = run.share(0, 1);
            vec![std::thread::spawn(move || produce_and_consume_embedded(&run, client, quota))]
        }
        _ => spawn_producers(&run, target),
    };
    let at_warmup = supervise(&run, &producers, start);
    join_all(producers)?;
    join_all(consumers)?;
    if std::io::stderr().is_terminal() {
        progress(&run, start);
        eprintln!();
    }
    let measured_from = start + config.warmup;
    let seconds = measured_from.elapsed().as_secs_f64().max(1e-9);
    let records = counted(&run).saturating_sub(at_warmup);
    let latency = run.latencies.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let record_bytes = config.message_bytes.max(MESSAGE_BYTES_MIN) as u64;
    let moved = counted(&run) * record_bytes;
    let client_cpu_seconds = reference::cpu_seconds_self() - client_before;
    let server_cpu_seconds = server_before.zip(server_cpu()).map(|(before, after)| after - before);
    Ok(BenchReport {
        records,
        bytes: records * record_bytes,
        seconds,
        latency,
        client_cpu_seconds,
        server_cpu_seconds,
        bytes_moved: moved,
        references: None,
    })
}
