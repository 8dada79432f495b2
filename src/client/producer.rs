//! The batching producer. `send` hands a record to a background thread that
//! gathers records per partition into one RecordBatch v2 each; a batch goes out
//! when it reaches `batch_bytes`, when its oldest record has waited `linger`, or
//! on `flush`. Ready batches are sent pipelined, each straight to its partition's
//! owning shard. Keyed records go where Kafka's default partitioner would put them
//! (murmur2); unkeyed records stick to one partition per topic until its batch is
//! sent, then move to the next (Kafka's sticky partitioner).

use super::idempotent::{Idempotence, Unstamped};
use super::transport::ProduceBatch;
use super::{partition_for_key, Client, ClientError, Result, Transport};
use crate::batch::BatchBuilder;
use crate::log::partition::now_ms;
use crate::log::Acks;
use std::collections::HashMap;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Records a producer queues before `send` blocks (backpressure to the caller).
pub const PRODUCER_QUEUE_RECORDS: usize = 65_536;

#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub acks: Acks,
    /// Send a partition's batch once it holds this many bytes.
    pub batch_bytes: usize,
    /// Send a partition's batch once its oldest record waited this long.
    pub linger: Duration,
    /// Idempotent produce (a producer id and per-partition sequences, so a
    /// batch resent after a connection error is appended once). `None`: on
    /// for acks durable, off otherwise.
    pub idempotent: Option<bool>,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::Durable,
            batch_bytes: 256 * 1024,
            linger: Duration::from_millis(5),
            idempotent: None,
        }
    }
}

/// What a producer achieved so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerReport {
    /// Records acknowledged as the producer's acks asked (with acks none: sent).
    pub records_acknowledged: u64,
    pub records_failed: u64,
    /// The first error, if any.
    pub first_error: Option<String>,
}

struct Record {
    topic: String,
    partition: Option<u32>,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    timestamp: i64,
}

enum Command {
    Send(Record),
    Flush(mpsc::Sender<ProducerReport>),
}

/// A batching producer. Dropping it flushes and stops its thread.
pub struct Producer {
    commands: Option<mpsc::SyncSender<Command>>,
    thread: Option<JoinHandle<()>>,
}

impl Producer {
    /// Connects to `bootstrap` and starts the producer's thread.
    pub fn new(bootstrap: &str, config: ProducerConfig) -> Result<Producer> {
        Producer::on(Arc::new(Client::connect(bootstrap)?), config)
    }

    /// A producer on any transport (an embedded broker's client, say). An
    /// idempotent producer gets its producer id here, so a broker that cannot
    /// give one fails this call rather than the first send.
    pub fn on(transport: Arc<dyn Transport>, config: ProducerConfig) -> Result<Producer> {
        let idempotence = if config.idempotent.unwrap_or(config.acks == Acks::Durable) {
            let idempotence = Idempotence::default();
            idempotence.identity(transport.as_ref())?;
            Some(idempotence)
        } else {
            None
        };
        let (commands, receiver) = mpsc::sync_channel(PRODUCER_QUEUE_RECORDS);
        let thread = std::thread::Builder::new()
            .name("ringmq-producer".into())
            .spawn(move || Accumulator::new(transport, config, idempotence).run(receiver))?;
        Ok(Producer { commands: Some(commands), thread: Some(thread) })
    }

    /// Queues one record. `partition: None` lets the partitioner choose.
    pub fn send(
        &self,
        topic: &str,
        partition: Option<u32>,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(&[u8], Option<&[u8]>)],
    ) -> Result<()> {
        let record = Record {
            topic: topic.into(),
            partition,
            key: key.map(<[u8]>::to_vec),
            value: value.to_vec(),
            headers: headers.iter().map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec))).collect(),
            timestamp: now_ms(),
        };
        self.commands().send(Command::Send(record)).map_err(|_| stopped())
    }

    /// Sends everything queued and waits for its acknowledgements. The report
    /// counts every record since the producer started.
    pub fn flush(&self) -> Result<ProducerReport> {
        let (sender, receiver) = mpsc::channel();
        self.commands().send(Command::Flush(sender)).map_err(|_| stopped())?;
        receiver.recv().map_err(|_| stopped())
    }

    fn commands(&self) -> &mpsc::SyncSender<Command> {
        self.commands.as_ref().expect("present until drop")
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        let _ = self.flush();
        self.commands.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn stopped() -> ClientError {
    ClientError::Io(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the producer's thread stopped"))
}

struct Pending {
    builder: BatchBuilder,
    since: Instant,
}

struct Accumulator {
    transport: Arc<dyn Transport>,
    config: ProducerConfig,
    pending: HashMap<(String, u32), Pending>,
    sticky: HashMap<String, u32>,
    report: ProducerReport,
    /// Producer id and sequences when idempotent.
    idempotence: Option<Idempotence>,
}

impl Accumulator {
    fn new(transport: Arc<dyn Transport>, config: ProducerConfig, idempotence: Option<Idempotence>) -> Accumulator {
        Accumulator {
            transport,
            config,
            pending: HashMap::new(),
            sticky: HashMap::new(),
            report: ProducerReport::default(),
            idempotence,
        }
    }

    fn run(mut self, commands: mpsc::Receiver<Command>) {
        loop {
            let wait = self
                .next_deadline()
                .map_or(Duration::from_secs(3600), |deadline| deadline.saturating_duration_since(Instant::now()));
            match commands.recv_timeout(wait) {
                Ok(Command::Send(record)) => self.add(record),
                Ok(Command::Flush(reply)) => {
                    self.send_ready(true);
                    let _ = reply.send(self.report.clone());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.send_ready(true);
                    return;
                }
            }
            self.send_ready(false);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|pending| pending.since + self.config.linger).min()
    }

    fn fail(&mut self, records: u64, error: &ClientError) {
        self.report.records_failed += records;
        self.report.first_error.get_or_insert_with(|| error.to_string());
    }

    fn add(&mut self, record: Record) {
        let partitions = match self.transport.partition_count(&record.topic) {
            Ok(count) => count,
            Err(error) => return self.fail(1, &error),
        };
        let partition = match (record.partition, &record.key) {
            (Some(partition), _) if partition < partitions => partition,
            (Some(partition), _) => {
                let error = ClientError::UnknownTopic(format!("{}/{partition}", record.topic));
                return self.fail(1, &error);
            }
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => *self.sticky.entry(record.topic.clone()).or_insert(0) % partitions,
        };
        let key = (record.topic.clone(), partition);
        let headers: Vec<(&[u8], Option<&[u8]>)> =
            record.headers.iter().map(|(k, v)| (k.as_slice(), v.as_deref())).collect();
        let size = BatchBuilder::record_size_bytes(0, 0, record.key.as_deref(), Some(&record.value), &headers);
        if self
            .pending
            .get(&key)
            .is_some_and(|p| p.builder.size_bytes() + size > self.config.batch_bytes && p.builder.records_count() > 0)
        {
            self.send_batches(vec![key.clone()]);
        }
        let pending =
            self.pending.entry(key).or_insert_with(|| Pending { builder: BatchBuilder::new(), since: Instant::now() });
        if let Err(error) =
            pending.builder.append(record.timestamp, record.key.as_deref(), Some(&record.value), &headers)
        {
            let error = ClientError::InvalidArgument(error.to_string());
            self.fail(1, &error);
        }
    }

    /// Sends batches that are full or have lingered (all of them when `everything`).
    fn send_ready(&mut self, everything: bool) {
        let now = Instant::now();
        let ready: Vec<(String, u32)> = self
            .pending
            .iter()
            .filter(|(_, p)| {
                everything || p.builder.size_bytes() >= self.config.batch_bytes || now >= p.since + self.config.linger
            })
            .map(|(key, _)| key.clone())
            .collect();
        if !ready.is_empty() {
            self.send_batches(ready);
        }
    }

    /// Sends the pending batches of `keys`, pipelined; idempotent batches
    /// through the one retry loop of [`super::idempotent`].
    fn send_batches(&mut self, keys: Vec<(String, u32)>) {
        let mut batches: Vec<Unstamped> = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(pending) = self.pending.remove(&key) else { continue };
            if pending.builder.records_count() == 0 {
                continue;
            }
            // Unkeyed records move on to the next partition once a batch leaves.
            if let Some(sticky) = self.sticky.get_mut(&key.0) {
                if *sticky == key.1 {
                    *sticky = sticky.wrapping_add(1);
                }
            }
            batches.push(Unstamped { topic: key.0, partition: key.1, builder: pending.builder });
        }
        let counts: Vec<u64> = batches.iter().map(|batch| batch.builder.records_count() as u64).collect();
        let outcome = match &self.idempotence {
            Some(idempotence) => idempotence.produce(self.transport.as_ref(), batches, self.config.acks),
            None => self.send_plain(batches),
        };
        match outcome {
            Ok(results) => {
                for (result, records) in results.iter().zip(&counts) {
                    match result {
                        Ok(_) => self.report.records_acknowledged += records,
                        Err(error) => self.fail(*records, error),
                    }
                }
            }
            Err(error) => self.fail(counts.iter().sum(), &error),
        }
    }

    /// Sends batches without producer ids: no resend (it could duplicate).
    /// One result per batch, in order (a batch that cannot be built is an
    /// error of its own).
    fn send_plain(&self, batches: Vec<Unstamped>) -> Result<Vec<Result<Option<u64>>>> {
        let built: Vec<Result<(String, u32, Vec<u8>)>> = batches
            .into_iter()
            .map(|batch| {
                let bytes = batch.builder.finish().map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
                Ok((batch.topic, batch.partition, bytes))
            })
            .collect();
        let requests: Vec<ProduceBatch<'_>> =
            built.iter().flatten().map(|(t, p, b)| (t.as_str(), *p, b.as_slice())).collect();
        let mut sent = self.transport.produce_many(&requests, self.config.acks)?.into_iter();
        Ok(built
            .into_iter()
            .map(|built| match built {
                Ok(_) => sent.next().unwrap_or_else(|| Err(ClientError::Protocol("no answer to a produce".into()))),
                Err(error) => Err(error),
            })
            .collect())
    }
}
