//! Whole-batch produce on any [`Transport`], for callers that hand over a
//! batch's records at once (the C ABI, Python and C++ through it):
//! [`Sender`] picks the partition (Kafka's murmur2 for a keyed first record,
//! a rotation for unkeyed ones), builds one RecordBatch v2 and produces it,
//! idempotently with acks durable; [`AsyncSender`] queues the same work for a
//! worker thread of its own and reports each outcome to a callback, in order.

use super::idempotent::{Idempotence, Unstamped};
use super::{partition_for_key, ClientError, Result, Transport};
use crate::batch::BatchBuilder;
use crate::log::Acks;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

/// One record to produce, owned (a queued produce outlives its caller's buffers).
#[derive(Debug, Clone, Default)]
pub struct OutgoingRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    pub timestamp: i64,
}

/// Produces whole batches through a transport. Thread-safe.
pub struct Sender {
    transport: Arc<dyn Transport>,
    /// The next partition of an unkeyed batch.
    rotation: AtomicU32,
    idempotence: Idempotence,
}

impl Sender {
    pub fn new(transport: Arc<dyn Transport>) -> Sender {
        Sender { transport, rotation: AtomicU32::new(0), idempotence: Idempotence::default() }
    }

    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// Produces `records` as one batch to `partition` (`None`: the partitioner
    /// chooses by the first record's key). Returns the base offset once
    /// acknowledged as `acks` asks (`None` with acks none). With acks durable
    /// the batch is idempotent, so a connection error resends it safely.
    pub fn send(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: &[OutgoingRecord],
        acks: Acks,
    ) -> Result<Option<u64>> {
        if records.is_empty() {
            return Err(ClientError::InvalidArgument("no records to produce".into()));
        }
        let partition = match partition {
            Some(partition) => partition,
            None => {
                let partitions = self.transport.partition_count(topic)?.max(1);
                match records.first().and_then(|record| record.key.as_deref()) {
                    Some(key) => partition_for_key(key, partitions),
                    None => self.rotation.fetch_add(1, Ordering::Relaxed) % partitions,
                }
            }
        };
        let mut builder = BatchBuilder::new();
        for record in records {
            let headers: Vec<(&[u8], Option<&[u8]>)> =
                record.headers.iter().map(|(k, v)| (k.as_slice(), v.as_deref())).collect();
            builder
                .append(record.timestamp, record.key.as_deref(), record.value.as_deref(), &headers)
                .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
        }
        if acks == Acks::Durable {
            let batch = Unstamped { topic: topic.to_owned(), partition, builder };
            let results = self.idempotence.produce(self.transport.as_ref(), vec![batch], acks)?;
            return results.into_iter().next().unwrap_or_else(|| Err(ClientError::Protocol("no answer".into())));
        }
        let batch = builder.finish().map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
        self.transport.produce(topic, partition, &batch, acks)
    }
}

/// Called once with a queued produce's outcome, on the worker thread.
pub type Completion = Box<dyn FnOnce(Result<Option<u64>>) + Send>;

struct Job {
    topic: String,
    partition: Option<u32>,
    records: Vec<OutgoingRecord>,
    acks: Acks,
    done: Completion,
}

/// Why a produce could not be queued.
#[derive(Debug)]
pub enum QueueError {
    /// [`AsyncSender::capacity`] produces are queued already.
    Full,
    /// The sender is closing.
    Closed,
    /// The worker could not be started (its transport, or the thread).
    Start(ClientError),
}

/// Produces queued by callers that must not wait (a trading loop), sent in
/// queue order by one worker thread on a transport of its own. The worker
/// starts with the first produce.
pub struct AsyncSender {
    transport: Arc<dyn Transport>,
    capacity: usize,
    queue: Mutex<Queue>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

enum Queue {
    NotStarted,
    Open(mpsc::SyncSender<Job>),
    Closed,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl AsyncSender {
    /// A queue of at most `capacity` produces on `transport`'s broker.
    pub fn new(transport: Arc<dyn Transport>, capacity: usize) -> AsyncSender {
        AsyncSender { transport, capacity, queue: Mutex::new(Queue::NotStarted), worker: Mutex::new(None) }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Queues a produce (see [`Sender::send`]) and returns at once; `done`
    /// gets its outcome on the worker thread. Produces complete in queue order.
    pub fn submit(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: Vec<OutgoingRecord>,
        acks: Acks,
        done: Completion,
    ) -> std::result::Result<(), QueueError> {
        let mut queue = lock(&self.queue);
        if matches!(*queue, Queue::NotStarted) {
            *queue = Queue::Open(self.start_worker()?);
        }
        let Queue::Open(jobs) = &*queue else { return Err(QueueError::Closed) };
        let job = Job { topic: topic.to_owned(), partition, records, acks, done };
        match jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(mpsc::TrySendError::Full(_)) => Err(QueueError::Full),
            Err(mpsc::TrySendError::Disconnected(_)) => Err(QueueError::Closed),
        }
    }

    fn start_worker(&self) -> std::result::Result<mpsc::SyncSender<Job>, QueueError> {
        let (jobs, receiver) = mpsc::sync_channel(self.capacity);
        let sender = Sender::new(self.transport.independent().map_err(QueueError::Start)?);
        let worker = std::thread::Builder::new()
            .name("ringmq-async".into())
            .spawn(move || work(&sender, receiver))
            .map_err(|error| QueueError::Start(ClientError::Io(error)))?;
        *lock(&self.worker) = Some(worker);
        Ok(jobs)
    }

    /// Sends what is queued, then stops the worker. Later submits are `Closed`.
    pub fn close(&self) {
        *lock(&self.queue) = Queue::Closed;
        if let Some(worker) = lock(&self.worker).take() {
            let _ = worker.join();
        }
    }
}

impl Drop for AsyncSender {
    fn drop(&mut self) {
        self.close();
    }
}

fn work(sender: &Sender, jobs: mpsc::Receiver<Job>) {
    for job in jobs {
        let result = catch_unwind(AssertUnwindSafe(|| sender.send(&job.topic, job.partition, &job.records, job.acks)))
            .unwrap_or_else(|_| Err(ClientError::Protocol("panic inside the client while producing".into())));
        // The completion is the caller's code: its panic must not stop the
        // worker (the produces behind it would never complete).
        let done = job.done;
        let _ = catch_unwind(AssertUnwindSafe(move || done(result)));
    }
}
