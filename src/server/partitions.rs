//! The partitions one shard owns: their logs, their group commit, and the
//! operations that run on a partition's owner (append, read, list offsets,
//! open, close, retention, the final sync).
//!
//! Every method here runs on the owning shard's thread; the append itself is
//! synchronous, so appends keep the order in which they were started.

use super::catalog::{owner, Catalog, CatalogView, TopicConfig};
use super::message::{ready, FetchData, Reply, ReplyFuture};
use super::shared::Shared;
use super::tail_ring::TailRing;
use crate::batch::BatchHeader;
use crate::io::{FileBytes, FileStorage};
use crate::log::producers::{ProducerTable, SequenceCheck};
use crate::log::{partition::now_ms, Acks, GroupCommit, LogError, PartitionLog, SharedLog};
use crate::protocol::fetch::FetchRequest;
use crate::protocol::offsets::{ListOffsetsRequest, ListOffsetsResponse, QUERY_EARLIEST, QUERY_LATEST};
use crate::protocol::ErrorCode;
use bytes::BytesMut;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How much of a partition's log (from its end) the first idempotent produce
/// after a restart reads the batch headers of, to rebuild the producer table.
/// A producer whose last batch lies further back is unknown afterwards: its
/// next batch is refused as out of sequence and the client takes a new id (a
/// resend of a batch that old is not recognised). Bounds the scan's cost.
pub const PRODUCER_SCAN_BYTES: u64 = 256 * 1024 * 1024;

/// Largest batch kept as a partition's [`TailBatch`] (small: one per partition
/// that took an append, 40 MB for 10,000 partitions at worst).
pub const TAIL_BATCH_BYTES_MAX: usize = 4 * 1024;

/// Most partitions of one shard with a [`TailRing`] (in-process readers
/// following them): 64 MiB of rings at most. Readers of the others ask the shard.
pub const TAIL_RINGS_PER_SHARD_MAX: usize = 256;

/// A partition this shard owns.
pub(crate) struct PartitionSlot {
    pub log: SharedLog<FileStorage>,
    /// Woken on every append, for long-polling fetches.
    pub appended: Notify,
    /// Idempotent-producer state, rebuilt from the log on first use.
    pub producers: RefCell<Option<ProducerTable>>,
    /// The last batch appended, when small: a consumer following the tail gets
    /// it from memory instead of reading it back from the file.
    pub tail: RefCell<Option<TailBatch>>,
    /// The newest batches for in-process readers, once one follows.
    pub follower: RefCell<Option<Arc<TailRing>>>,
}

impl PartitionSlot {
    /// Readers of the tail ring ask the shard from now on.
    fn close_follower(&self) {
        if let Some(ring) = self.follower.borrow_mut().take() {
            ring.close();
        }
    }
}

impl Drop for PartitionSlot {
    fn drop(&mut self) {
        self.close_follower();
    }
}

/// A copy of the batch at the end of a partition's log.
pub(crate) struct TailBatch {
    pub base_offset: u64,
    pub next_offset: u64,
    pub bytes: Vec<u8>,
}

/// The error code a log error is answered with.
pub(crate) fn log_error_code(error: &LogError) -> ErrorCode {
    match error {
        LogError::InvalidBatch(crate::batch::BatchError::TooLarge { .. }) => ErrorCode::TooLarge,
        LogError::InvalidBatch(_) => ErrorCode::CorruptBatch,
        // A stored batch damaged at rest: a fetch at its offsets is refused
        // (the server log names the file); later offsets are served.
        LogError::Corrupt(_) => ErrorCode::CorruptBatch,
        LogError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        LogError::NoSpace { .. } => ErrorCode::NoSpace,
        LogError::Closed => ErrorCode::ShuttingDown,
        LogError::Config(_) => ErrorCode::InvalidArgument,
        _ => ErrorCode::StorageFailure,
    }
}

/// One shard's partitions.
pub(crate) struct Partitions {
    shard: u16,
    shared: Arc<Shared>,
    catalog: CatalogView,
    slots: RefCell<HashMap<(String, u32), Rc<PartitionSlot>>>,
    commit: GroupCommit<FileStorage>,
}

impl Partitions {
    pub fn new(shard: u16, shared: Arc<Shared>) -> Partitions {
        let flush_interval = shared.config.flush_interval_ms.map(Duration::from_millis);
        let commit = GroupCommit::new(flush_interval);
        commit.record_latency_into(shared.counters.fsync_rounds.clone());
        Partitions {
            shard,
            catalog: CatalogView::new(&shared.catalog),
            shared,
            slots: RefCell::new(HashMap::new()),
            commit,
        }
    }

    /// The group commit, for the shard to run its flush rounds.
    pub fn commit(&self) -> &GroupCommit<FileStorage> {
        &self.commit
    }

    fn catalog(&self) -> Arc<Catalog> {
        self.catalog.current(&self.shared.catalog)
    }

    /// A partition this shard owns. A slot is only used while its topic is
    /// still in the catalog.
    pub fn slot(&self, topic: &str, partition: u32) -> Result<Rc<PartitionSlot>, ErrorCode> {
        self.catalog().route(topic, partition, self.shard_count())?;
        self.slots.borrow().get(&(topic.to_owned(), partition)).cloned().ok_or(ErrorCode::UnknownTopicOrPartition)
    }

    /// The end offset of a partition this shard owns (0 when it has none).
    pub fn end_offset(&self, topic: &str, partition: u32) -> u64 {
        self.slot(topic, partition).map_or(0, |slot| slot.log.borrow().next_offset())
    }

    fn shard_count(&self) -> u16 {
        self.shared.mailboxes.len() as u16
    }

    /// Appends `batch`: checks an idempotent batch's sequence, appends now,
    /// and returns the wait for the acknowledgement `acks` asks for.
    pub fn produce(&self, topic: &str, partition: u32, mut batch: BytesMut, acks: Acks) -> ReplyFuture {
        let slot = match self.slot(topic, partition) {
            Ok(slot) => slot,
            Err(code) => return ready(Reply::Produce(Err(code))),
        };
        let idempotent = BatchHeader::parse(&batch).ok().filter(|header| header.producer_id >= 0);
        if let Some(header) = &idempotent {
            if let Some(answer) = self.answer_out_of_sequence(&slot, header, &batch, acks) {
                return answer;
            }
        }
        match self.commit.append_now(&slot.log, &mut batch, acks) {
            Ok((info, wait)) => {
                if let Some(mut header) = idempotent {
                    header.base_offset = info.base_offset as i64;
                    if let Some(table) = slot.producers.borrow_mut().as_mut() {
                        table.record(&header);
                    }
                }
                *slot.tail.borrow_mut() = (batch.len() <= TAIL_BATCH_BYTES_MAX).then(|| TailBatch {
                    base_offset: info.base_offset,
                    next_offset: info.next_offset,
                    bytes: batch.to_vec(),
                });
                if let Some(ring) = slot.follower.borrow().as_ref() {
                    ring.publish(info.base_offset, info.next_offset, &batch);
                }
                slot.appended.notify_waiters();
                let counters = &self.shared.counters;
                let records = BatchHeader::parse(&batch).map_or(0, |h| h.records_count.max(0) as u64);
                counters.produce_records.fetch_add(records, Ordering::Relaxed);
                counters.produce_bytes.fetch_add(batch.len() as u64, Ordering::Relaxed);
                Box::pin(async move {
                    Reply::Produce(wait.await.map(|()| info.base_offset).map_err(|e| log_error_code(&e)))
                })
            }
            Err(error) => ready(Reply::Produce(Err(log_error_code(&error)))),
        }
    }

    /// The answer to an idempotent batch that is not appended (a resend, a
    /// fenced or out-of-order producer); `None` when it is to be appended.
    fn answer_out_of_sequence(
        &self,
        slot: &PartitionSlot,
        header: &BatchHeader,
        batch: &[u8],
        acks: Acks,
    ) -> Option<ReplyFuture> {
        let refused = |code| Some(ready(Reply::Produce(Err(code))));
        match self.check_sequence(slot, header) {
            Ok(SequenceCheck::Append) => None,
            // A damaged resend is not answered as the original.
            Ok(SequenceCheck::Duplicate { .. }) if crate::batch::Batch::validate(batch).is_err() => {
                refused(ErrorCode::CorruptBatch)
            }
            Ok(SequenceCheck::Duplicate { base_offset, last_offset }) => {
                self.shared.counters.duplicate_batches.fetch_add(1, Ordering::Relaxed);
                let commit = self.commit.clone();
                let log = slot.log.clone();
                Some(Box::pin(async move {
                    if acks == Acks::Durable {
                        if let Err(error) = commit.wait_durable(&log, last_offset + 1).await {
                            return Reply::Produce(Err(log_error_code(&error)));
                        }
                    }
                    Reply::Produce(Ok(base_offset))
                }))
            }
            Ok(SequenceCheck::Fenced) => refused(ErrorCode::ProducerFenced),
            Ok(SequenceCheck::OutOfOrder) => refused(ErrorCode::OutOfOrderSequence),
            Ok(SequenceCheck::UnknownProducer) => refused(ErrorCode::UnknownProducerId),
            Ok(SequenceCheck::Invalid) => refused(ErrorCode::InvalidArgument),
            Err(code) => refused(code),
        }
    }

    /// Checks an idempotent batch against its partition's producer table,
    /// building the table from the log's batch headers on first use.
    fn check_sequence(&self, slot: &PartitionSlot, header: &BatchHeader) -> Result<SequenceCheck, ErrorCode> {
        let mut producers = slot.producers.borrow_mut();
        if producers.is_none() {
            let mut table = ProducerTable::default();
            let scan = slot.log.borrow_mut().scan_batch_headers(PRODUCER_SCAN_BYTES, |h| table.record(h));
            scan.map_err(|e| log_error_code(&e))?;
            *producers = Some(table);
        }
        Ok(producers.as_ref().map_or(SequenceCheck::Append, |table| table.check(header)))
    }

    /// Whole batches from the request's offset; waits (up to `max_wait_ms`)
    /// for `min_bytes`. `stopping` ends the wait early.
    pub async fn fetch(&self, request: FetchRequest, stopping: impl Fn() -> bool) -> Result<FetchData, ErrorCode> {
        let slot = self.slot(&request.topic, request.partition)?;
        let deadline = Instant::now() + Duration::from_millis(u64::from(request.max_wait_ms));
        loop {
            let appended = slot.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            let data = {
                let mut log = slot.log.borrow_mut();
                let tail = slot.tail.borrow();
                let records = match tail.as_ref() {
                    // The newest batch, still the last one: no read needed.
                    Some(tail) if tail.base_offset == request.offset && tail.next_offset == log.next_offset() => {
                        FileBytes::Owned(tail.bytes.clone())
                    }
                    _ => log
                        .read_bytes(request.offset, request.max_bytes as usize, true)
                        .map_err(|e| log_error_code(&e))?,
                };
                FetchData { high_watermark: log.high_watermark(), earliest: log.earliest_offset(), records }
            };
            let now = Instant::now();
            // A read stops at max_bytes and at a segment's end: ask no more than
            // max_bytes, and answer when more data exists past what was read.
            let wanted = request.min_bytes.min(request.max_bytes) as usize;
            let more_beyond = !data.records.is_empty() && data.high_watermark > last_offset_after(&data.records);
            if data.records.len() >= wanted || more_beyond || now >= deadline || stopping() {
                let counters = &self.shared.counters;
                counters.fetch_records.fetch_add(records_in(&data.records), Ordering::Relaxed);
                counters.fetch_bytes.fetch_add(data.records.len() as u64, Ordering::Relaxed);
                if let FileBytes::Mapped(_) = &data.records {
                    counters.fetch_mapped_bytes.fetch_add(data.records.len() as u64, Ordering::Relaxed);
                }
                return Ok(data);
            }
            let _ = tokio::time::timeout(deadline - now, appended).await;
        }
    }

    pub fn list_offsets(&self, request: &ListOffsetsRequest) -> Result<ListOffsetsResponse, ErrorCode> {
        let slot = self.slot(&request.topic, request.partition)?;
        let mut log = slot.log.borrow_mut();
        let (earliest, latest) = (log.earliest_offset() as i64, log.next_offset() as i64);
        let offset = match request.query {
            QUERY_EARLIEST => earliest,
            QUERY_LATEST => latest,
            timestamp => log.offset_for_timestamp(timestamp).map_err(|e| log_error_code(&e))?.map_or(-1, |o| o as i64),
        };
        Ok(ListOffsetsResponse { offset, earliest, latest, durable: log.durable_offset() as i64 })
    }

    /// Opens (recovering) the partitions of `topic` this shard owns.
    pub async fn open_topic(&self, topic: &TopicConfig) -> Result<(), ErrorCode> {
        for partition in 0..topic.partitions {
            if owner(&topic.name, partition, self.shard_count()) != self.shard {
                continue;
            }
            let key = (topic.name.clone(), partition);
            if self.slots.borrow().contains_key(&key) {
                continue;
            }
            let dir = crate::log::partition_dir(&self.shared.config.data_dir, &topic.name, partition);
            let log = PartitionLog::open(FileStorage::new(), dir, self.shared.config.log_config(topic)).await.map_err(
                |error| {
                    eprintln!("ringmq: shard {}: cannot open {}/{partition}: {error}", self.shard, topic.name);
                    log_error_code(&error)
                },
            )?;
            let slot = Rc::new(PartitionSlot {
                log: Rc::new(RefCell::new(log)),
                appended: Notify::new(),
                producers: RefCell::new(None),
                tail: RefCell::new(None),
                follower: RefCell::new(None),
            });
            self.commit.sync_soon(&slot.log);
            self.slots.borrow_mut().insert(key, slot);
        }
        Ok(())
    }

    /// Drops the partitions of a topic being deleted. The future answers the
    /// durable produces that reached them first (while the files are where
    /// they were: the delete moves them next) and wakes their long polls.
    pub fn close_topic(&self, name: &str) -> ReplyFuture {
        let closed: Vec<Rc<PartitionSlot>> = {
            let mut slots = self.slots.borrow_mut();
            let keys: Vec<(String, u32)> = slots.keys().filter(|(topic, _)| *topic == name).cloned().collect();
            keys.iter().filter_map(|key| slots.remove(key)).collect()
        };
        for slot in &closed {
            slot.close_follower();
        }
        let commit = self.commit.clone();
        Box::pin(async move {
            for slot in closed {
                let waiting = {
                    let log = slot.log.borrow();
                    log.has_waiters().then(|| log.next_offset())
                };
                if let Some(offset_end) = waiting {
                    let _ = commit.wait_durable(&slot.log, offset_end).await;
                }
                slot.appended.notify_waiters();
            }
            Reply::Done(Ok(()))
        })
    }

    /// Deletes what retention no longer keeps, in every partition.
    pub fn apply_retention(&self) {
        let slots: Vec<Rc<PartitionSlot>> = self.slots.borrow().values().cloned().collect();
        for slot in slots {
            let result = slot.log.borrow_mut().apply_retention(now_ms());
            if let Err(error) = result {
                eprintln!("ringmq: shard {}: retention failed: {error}", self.shard);
            }
            if let Some(ring) = slot.follower.borrow().as_ref() {
                ring.set_earliest(slot.log.borrow().earliest_offset());
            }
        }
    }

    /// The tail ring of a partition this shard owns, made on first use.
    pub fn follow(&self, topic: &str, partition: u32) -> Result<Arc<TailRing>, ErrorCode> {
        let slot = self.slot(topic, partition)?;
        let mut follower = slot.follower.borrow_mut();
        if let Some(ring) = follower.as_ref() {
            return Ok(ring.clone());
        }
        // (This slot's own cell is borrowed above, and it has no ring.)
        let rings =
            self.slots.borrow().values().filter(|slot| slot.follower.try_borrow().is_ok_and(|f| f.is_some())).count();
        if rings >= TAIL_RINGS_PER_SHARD_MAX {
            return Err(ErrorCode::ResourceLimit);
        }
        let ring = {
            let log = slot.log.borrow();
            Arc::new(TailRing::for_partition(log.next_offset(), log.earliest_offset()))
        };
        *follower = Some(ring.clone());
        Ok(ring)
    }

    /// Wakes every long poll (the shard is stopping).
    pub fn wake_all(&self) {
        for slot in self.slots.borrow().values() {
            slot.close_follower();
            slot.appended.notify_waiters();
        }
    }

    /// (topic, partition, end offset, poisoned) of every partition, for `/metrics`.
    pub fn metrics(&self) -> Vec<(String, u32, u64, bool)> {
        self.slots
            .borrow()
            .iter()
            .map(|((topic, partition), slot)| {
                let log = slot.log.borrow();
                (topic.clone(), *partition, log.next_offset(), log.is_poisoned())
            })
            .collect()
    }

    /// Syncs and closes every partition (the group commit stopped first).
    /// Returns the first failure.
    pub async fn close_all(&self) -> std::io::Result<()> {
        self.commit.stop();
        let slots: Vec<((String, u32), Rc<PartitionSlot>)> = self.slots.borrow_mut().drain().collect();
        let mut first_error = Ok(());
        for ((topic, partition), slot) in slots {
            let (target, sync) = {
                let mut log = slot.log.borrow_mut();
                (log.next_offset(), log.sync_everything())
            };
            let result = sync.await;
            let failed = result
                .as_ref()
                .err()
                .map(|e| std::io::Error::new(e.kind(), format!("final sync of {topic}/{partition} failed: {e}")));
            slot.log.borrow_mut().complete_sync(target, result);
            if let (Some(error), Ok(())) = (failed, &first_error) {
                first_error = Err(error);
            }
        }
        first_error
    }
}

/// Records in `records` (whole batches), by their headers.
fn records_in(mut records: &[u8]) -> u64 {
    let mut count = 0;
    while let Ok(header) = BatchHeader::parse(records) {
        count += header.records_count.max(0) as u64;
        match records.get(header.size_bytes().max(1)..) {
            Some(rest) => records = rest,
            None => break,
        }
    }
    count
}

/// One past the last offset in `records` (whole batches).
pub(crate) fn last_offset_after(mut records: &[u8]) -> u64 {
    let mut next = 0;
    while let Ok(header) = BatchHeader::parse(records) {
        next = header.last_offset().saturating_add(1).max(0) as u64;
        match records.get(header.size_bytes().max(1)..) {
            Some(rest) => records = rest,
            None => break,
        }
    }
    next
}
