//! One shard: its partitions, its group commit, its connections, its mailbox.
//!
//! Every operation on a partition runs on the partition's owner. [`ShardContext::submit`]
//! starts it locally, or pushes it into the owner's ring; either way the
//! synchronous part (the append itself) happens in submission order, and the
//! returned future resolves with the reply.

use super::catalog::{owner, Catalog, TopicConfig};
use super::completion::Completion;
use super::{connection, Shared, SHUTDOWN_DRAIN_MS};
use crate::batch::BatchHeader;
use crate::io::{self, FileStorage, Listener};
use crate::log::producers::{ProducerTable, SequenceCheck};
use crate::log::{partition::now_ms, Acks, GroupCommit, LogError, PartitionLog, SharedLog};
use crate::protocol::fetch::FetchRequest;
use crate::protocol::offsets::{ListOffsetsRequest, ListOffsetsResponse, QUERY_EARLIEST, QUERY_LATEST};
use crate::protocol::ErrorCode;
use bytes::BytesMut;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::net::TcpListener;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Notify};

/// Messages a mailbox drain handles before yielding to the shard's other tasks.
const DRAIN_BUDGET: usize = 256;
/// How long a sender waits before retrying a full ring.
const RING_RETRY: Duration = Duration::from_millis(1);
/// How long a busy-polling shard spins on its empty ring before it sleeps.
pub const BUSY_POLL_SPIN: Duration = Duration::from_micros(1000);
/// Most connections one shard serves; more are accepted and closed at once.
pub const CONNECTIONS_PER_SHARD_MAX: usize = 4096;

/// Who waits for a request's reply.
pub(crate) enum Origin {
    /// Another shard: the reply goes back through its ring, tagged with the id.
    Shard { shard: u16, id: u64 },
    /// A thread outside the shards (the embedded client): the reply completes it.
    External(Arc<Completion<Reply>>),
}

/// What travels through the rings.
pub(crate) enum Message {
    Request { origin: Origin, op: Op },
    Reply { id: u64, reply: Reply },
    Shutdown,
}

/// An operation on partitions, run by their owner.
pub(crate) enum Op {
    Produce {
        topic: String,
        partition: u32,
        batch: BytesMut,
        acks: Acks,
    },
    Fetch(FetchRequest),
    ListOffsets(ListOffsetsRequest),
    /// Open the partitions of a new topic that this shard owns.
    OpenTopic(Arc<TopicConfig>),
    /// A topic being deleted (or whose creation failed): drop its partitions
    /// on their owner. Sent through the same rings as the requests forwarded
    /// before the delete, so those reach the partitions first.
    ClosePartitions(String),
    /// A deleted topic: forget its committed offsets and share-group state (on
    /// every shard).
    ForgetTopic(String),
    /// A consumer-group request, run by the group's coordinator.
    Group(crate::protocol::group::GroupRequest),
    /// The groups this shard coordinates.
    ListGroups,
    /// A producer id (run on the producer-id shard).
    InitProducerId(String),
    /// Share-group receive and acknowledge, run by the partition's owner.
    ShareFetch(crate::protocol::share::ShareFetchRequest),
    ShareAck(crate::protocol::share::ShareAckRequest),
    /// This shard's share-partitions of a group.
    ShareDescribe(String),
    /// A snapshot for `/metrics`.
    Metrics,
}

/// Records read by a fetch.
pub(crate) struct FetchData {
    pub high_watermark: u64,
    pub earliest: u64,
    pub records: Vec<u8>,
}

pub(crate) enum Reply {
    Produce(Result<u64, ErrorCode>),
    Fetch(Result<FetchData, ErrorCode>),
    Offsets(Result<ListOffsetsResponse, ErrorCode>),
    Done(Result<(), ErrorCode>),
    Group(Result<crate::protocol::group::GroupResponse, ErrorCode>),
    Groups(Vec<crate::protocol::group::GroupListing>),
    ProducerId(Result<(i64, i16), ErrorCode>),
    ShareFetch(Result<crate::protocol::share::ShareFetchResponse, ErrorCode>),
    ShareAck(Result<Vec<ErrorCode>, ErrorCode>),
    ShareDescribe(Vec<crate::protocol::group::SharePartitionState>, Vec<String>),
    Metrics(Box<super::stats::ShardMetrics>),
}

pub(crate) type ReplyFuture = Pin<Box<dyn Future<Output = Reply>>>;

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
}

/// A copy of the batch at the end of a partition's log.
pub(crate) struct TailBatch {
    pub base_offset: u64,
    pub next_offset: u64,
    pub bytes: Vec<u8>,
}

/// How much of a partition's log (from its end) the first idempotent produce
/// after a restart reads the batch headers of, to rebuild the producer table.
/// A producer whose last batch lies further back is unknown afterwards: its
/// next batch is refused as out of sequence and the client takes a new id (a
/// resend of a batch that old is not recognised). Bounds the scan's cost.
pub const PRODUCER_SCAN_BYTES: u64 = 256 * 1024 * 1024;

/// Largest batch kept as a partition's [`TailBatch`] (small: one per partition
/// that took an append, 40 MB for 10,000 partitions at worst).
pub const TAIL_BATCH_BYTES_MAX: usize = 4 * 1024;

pub(crate) struct ShardContext {
    pub id: u16,
    pub shared: Arc<Shared>,
    catalog: RefCell<(u64, Arc<Catalog>)>,
    partitions: RefCell<HashMap<(String, u32), Rc<PartitionSlot>>>,
    commit: GroupCommit<FileStorage>,
    pending: RefCell<HashMap<u64, oneshot::Sender<Reply>>>,
    next_request_id: Cell<u64>,
    stopping: Cell<bool>,
    stop: Notify,
    listeners: RefCell<Vec<Rc<Listener>>>,
    connections: RefCell<HashMap<u64, Rc<io::Stream>>>,
    next_connection_id: Cell<u64>,
    connections_closed: Notify,
    pub(crate) groups: super::coordinator::Groups,
    pub(crate) producer_ids: super::coordinator::ProducerIds,
    pub(crate) shares: super::share::Shares,
}

pub(crate) fn log_error_code(error: &LogError) -> ErrorCode {
    match error {
        LogError::InvalidBatch(crate::batch::BatchError::TooLarge { .. }) => ErrorCode::TooLarge,
        LogError::InvalidBatch(_) => ErrorCode::CorruptBatch,
        LogError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        LogError::NoSpace { .. } => ErrorCode::NoSpace,
        LogError::Closed => ErrorCode::ShuttingDown,
        LogError::Config(_) => ErrorCode::InvalidArgument,
        _ => ErrorCode::StorageFailure,
    }
}

impl ShardContext {
    fn new(id: u16, shared: Arc<Shared>) -> ShardContext {
        let catalog = (shared.catalog.version(), shared.catalog.snapshot());
        let flush_interval = shared.config.flush_interval_ms.map(Duration::from_millis);
        let commit = GroupCommit::new(flush_interval);
        commit.record_latency_into(shared.counters.fsync_rounds.clone());
        ShardContext {
            id,
            shared,
            catalog: RefCell::new(catalog),
            partitions: RefCell::new(HashMap::new()),
            commit,
            pending: RefCell::new(HashMap::new()),
            next_request_id: Cell::new(0),
            stopping: Cell::new(false),
            stop: Notify::new(),
            listeners: RefCell::new(Vec::new()),
            connections: RefCell::new(HashMap::new()),
            next_connection_id: Cell::new(0),
            connections_closed: Notify::new(),
            groups: Default::default(),
            producer_ids: Default::default(),
            shares: Default::default(),
        }
    }

    pub fn shard_count(&self) -> u16 {
        self.shared.mailboxes.len() as u16
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    /// The current catalog: one atomic load, a new snapshot only when it changed.
    pub fn catalog(&self) -> Arc<Catalog> {
        let version = self.shared.catalog.version();
        let mut cached = self.catalog.borrow_mut();
        if cached.0 != version {
            *cached = (version, self.shared.catalog.snapshot());
        }
        cached.1.clone()
    }

    /// The owner of a partition, if it exists.
    pub fn route(&self, topic: &str, partition: u32) -> Result<u16, ErrorCode> {
        let catalog = self.catalog();
        match catalog.topics.get(topic) {
            Some(config) if partition < config.partitions => Ok(owner(topic, partition, self.shard_count())),
            _ => Err(ErrorCode::UnknownTopicOrPartition),
        }
    }

    /// Starts `op` on `owner`: here, or through the owner's ring (waiting while
    /// the ring is full). The synchronous part of the operation is ordered with
    /// every other submission from this shard to the same owner.
    pub async fn submit(self: &Rc<Self>, owner: u16, op: Op) -> ReplyFuture {
        if owner == self.id {
            return self.start_local(op);
        }
        let id = self.next_request_id.get();
        self.next_request_id.set(id + 1);
        let (sender, receiver) = oneshot::channel();
        self.pending.borrow_mut().insert(id, sender);
        self.shared.counters.forwarded_requests.fetch_add(1, Ordering::Relaxed);
        self.post(owner, Message::Request { origin: Origin::Shard { shard: self.id, id }, op }).await;
        Box::pin(async move { receiver.await.unwrap_or(Reply::Done(Err(ErrorCode::ShuttingDown))) })
    }

    /// Pushes into another shard's ring; a full ring is backpressure: wait, retry.
    async fn post(&self, shard: u16, mut message: Message) {
        let mailbox = &self.shared.mailboxes[shard as usize];
        loop {
            match mailbox.try_push(message) {
                Ok(()) => return,
                Err(back) => {
                    message = back;
                    self.shared.counters.ring_full_waits.fetch_add(1, Ordering::Relaxed);
                    io::sleep(RING_RETRY).await;
                }
            }
        }
    }

    pub(crate) fn slot(&self, topic: &str, partition: u32) -> Result<Rc<PartitionSlot>, ErrorCode> {
        // A slot is only used while its topic is still in the catalog.
        self.route(topic, partition)?;
        self.partitions.borrow().get(&(topic.to_owned(), partition)).cloned().ok_or(ErrorCode::UnknownTopicOrPartition)
    }

    /// Runs the synchronous part of `op` now and returns the rest.
    pub fn start_local(self: &Rc<Self>, op: Op) -> ReplyFuture {
        match op {
            Op::Produce { topic, partition, mut batch, acks } => {
                let slot = match self.slot(&topic, partition) {
                    Ok(slot) => slot,
                    Err(code) => return ready(Reply::Produce(Err(code))),
                };
                let idempotent = BatchHeader::parse(&batch).ok().filter(|header| header.producer_id >= 0);
                if let Some(header) = &idempotent {
                    match self.check_sequence(&slot, header) {
                        Ok(SequenceCheck::Append) => {}
                        Ok(SequenceCheck::Duplicate { .. }) if crate::batch::Batch::validate(&batch).is_err() => {
                            // A damaged resend is not answered as the original.
                            return ready(Reply::Produce(Err(ErrorCode::CorruptBatch)));
                        }
                        Ok(SequenceCheck::Duplicate { base_offset, last_offset }) => {
                            self.shared.counters.duplicate_batches.fetch_add(1, Ordering::Relaxed);
                            let commit = self.commit.clone();
                            let log = slot.log.clone();
                            return Box::pin(async move {
                                if acks == Acks::Durable {
                                    if let Err(error) = commit.wait_durable(&log, last_offset + 1).await {
                                        return Reply::Produce(Err(log_error_code(&error)));
                                    }
                                }
                                Reply::Produce(Ok(base_offset))
                            });
                        }
                        Ok(SequenceCheck::Fenced) => return ready(Reply::Produce(Err(ErrorCode::ProducerFenced))),
                        Ok(SequenceCheck::OutOfOrder) => {
                            return ready(Reply::Produce(Err(ErrorCode::OutOfOrderSequence)))
                        }
                        Ok(SequenceCheck::Invalid) => return ready(Reply::Produce(Err(ErrorCode::InvalidArgument))),
                        Err(code) => return ready(Reply::Produce(Err(code))),
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
            Op::Fetch(request) => {
                let context = self.clone();
                Box::pin(async move { Reply::Fetch(context.fetch(request).await) })
            }
            Op::ListOffsets(request) => ready(Reply::Offsets(self.list_offsets(&request))),
            Op::OpenTopic(topic) => {
                let context = self.clone();
                Box::pin(async move { Reply::Done(context.open_topic(&topic).await) })
            }
            Op::ClosePartitions(name) => {
                let closed: Vec<Rc<PartitionSlot>> = {
                    let mut partitions = self.partitions.borrow_mut();
                    let keys: Vec<(String, u32)> =
                        partitions.keys().filter(|(topic, _)| *topic == name).cloned().collect();
                    keys.iter().filter_map(|key| partitions.remove(key)).collect()
                };
                let commit = self.commit.clone();
                Box::pin(async move {
                    for slot in closed {
                        // Durable produces that reached the partition before the
                        // close are answered first, while the files are where
                        // they were (the delete moves them next).
                        let waiting = {
                            let log = slot.log.borrow();
                            log.has_waiters().then(|| log.next_offset())
                        };
                        if let Some(offset_end) = waiting {
                            let _ = commit.wait_durable(&slot.log, offset_end).await;
                        }
                        // Long polls waiting on it answer now, not at their deadline.
                        slot.appended.notify_waiters();
                    }
                    Reply::Done(Ok(()))
                })
            }
            Op::ForgetTopic(name) => {
                let context = self.clone();
                Box::pin(async move {
                    context.forget_topic_groups(&name).await;
                    context.forget_topic_shares(&name);
                    Reply::Done(Ok(()))
                })
            }
            Op::Group(request) => {
                let context = self.clone();
                Box::pin(async move { Reply::Group(context.group_request(request).await) })
            }
            Op::ListGroups => {
                let mut groups = self.list_groups();
                groups.extend(self.list_share_groups());
                ready(Reply::Groups(groups))
            }
            Op::ShareFetch(request) => {
                let context = self.clone();
                Box::pin(async move { Reply::ShareFetch(context.share_fetch(request).await) })
            }
            Op::ShareAck(request) => {
                let context = self.clone();
                Box::pin(async move { Reply::ShareAck(context.share_acknowledge(request).await) })
            }
            Op::Metrics => ready(Reply::Metrics(Box::new(self.metrics_snapshot()))),
            Op::ShareDescribe(group) => {
                let (states, members) = self.describe_share(&group);
                ready(Reply::ShareDescribe(states, members))
            }
            Op::InitProducerId(name) => {
                let context = self.clone();
                Box::pin(async move { Reply::ProducerId(context.init_producer_id(name).await) })
            }
        }
    }

    /// What `/metrics` shows of this shard.
    fn metrics_snapshot(&self) -> super::stats::ShardMetrics {
        let partitions = self
            .partitions
            .borrow()
            .iter()
            .map(|((topic, partition), slot)| {
                let log = slot.log.borrow();
                (topic.clone(), *partition, log.next_offset(), log.is_poisoned())
            })
            .collect();
        let mut committed = Vec::new();
        for (group, slot) in self.groups.all() {
            for ((topic, partition), (offset, _)) in &slot.group.borrow().offsets {
                committed.push((group.clone(), topic.clone(), *partition, *offset));
            }
        }
        super::stats::ShardMetrics {
            shard: self.id,
            connections: self.connections.borrow().len(),
            partitions,
            committed,
            share: self.share_metrics(),
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

    async fn fetch(&self, request: FetchRequest) -> Result<FetchData, ErrorCode> {
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
                        tail.bytes.clone()
                    }
                    _ => log.read(request.offset, request.max_bytes as usize).map_err(|e| log_error_code(&e))?,
                };
                FetchData { high_watermark: log.high_watermark(), earliest: log.earliest_offset(), records }
            };
            let now = Instant::now();
            // A read stops at max_bytes and at a segment's end: ask no more than
            // max_bytes, and answer when more data exists past what was read.
            let wanted = request.min_bytes.min(request.max_bytes) as usize;
            let more_beyond = !data.records.is_empty() && data.high_watermark > last_offset_after(&data.records);
            if data.records.len() >= wanted || more_beyond || now >= deadline || self.is_stopping() {
                let counters = &self.shared.counters;
                counters.fetch_records.fetch_add(records_in(&data.records), Ordering::Relaxed);
                counters.fetch_bytes.fetch_add(data.records.len() as u64, Ordering::Relaxed);
                return Ok(data);
            }
            let _ = tokio::time::timeout(deadline - now, appended).await;
        }
    }

    fn list_offsets(&self, request: &ListOffsetsRequest) -> Result<ListOffsetsResponse, ErrorCode> {
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
    async fn open_topic(&self, topic: &TopicConfig) -> Result<(), ErrorCode> {
        for partition in 0..topic.partitions {
            if owner(&topic.name, partition, self.shard_count()) != self.id {
                continue;
            }
            let key = (topic.name.clone(), partition);
            if self.partitions.borrow().contains_key(&key) {
                continue;
            }
            let dir = crate::log::partition_dir(&self.shared.config.data_dir, &topic.name, partition);
            let log = PartitionLog::open(FileStorage::new(), dir, self.shared.config.log_config(topic)).await.map_err(
                |error| {
                    eprintln!("ringmq: shard {}: cannot open {}/{partition}: {error}", self.id, topic.name);
                    log_error_code(&error)
                },
            )?;
            let slot = Rc::new(PartitionSlot {
                log: Rc::new(RefCell::new(log)),
                appended: Notify::new(),
                producers: RefCell::new(None),
                tail: RefCell::new(None),
            });
            self.commit.sync_soon(&slot.log);
            self.partitions.borrow_mut().insert(key, slot);
        }
        Ok(())
    }

    /// Handles whatever is in this shard's ring, then sleeps on its eventfd.
    async fn drain_mailbox(self: Rc<Self>) {
        let mailbox = &self.shared.mailboxes[self.id as usize];
        let reader = match mailbox.waker().reader() {
            Ok(reader) => reader,
            Err(error) => {
                eprintln!("ringmq: shard {}: cannot read its eventfd: {error}", self.id);
                return;
            }
        };
        loop {
            let mut handled = 0;
            while let Some(message) = mailbox.pop() {
                if self.handle_message(message) {
                    return;
                }
                handled += 1;
                if handled == DRAIN_BUDGET {
                    handled = 0;
                    tokio::task::yield_now().await;
                }
            }
            // Let the tasks this drain woke (replies, long polls) run first.
            if self.shared.config.busy_poll {
                io::yield_to_tasks().await;
                if self.spin_for_mail(mailbox) {
                    continue;
                }
            } else {
                tokio::task::yield_now().await;
            }
            if mailbox.prepare_sleep() == super::mailbox::SleepCheck::MaySleep {
                if let Err(error) = reader.wait().await {
                    eprintln!("ringmq: shard {}: eventfd read failed: {error}", self.id);
                    io::sleep(RING_RETRY).await;
                }
                mailbox.woke();
            }
        }
    }

    /// Busy-poll mode: spins on the ring for up to [`BUSY_POLL_SPIN`] before the
    /// shard may sleep. Returns true when mail arrived. (The runtime submits
    /// io_uring operations only when it parks, so the spin is bounded.)
    fn spin_for_mail(&self, mailbox: &super::ShardMailbox) -> bool {
        let deadline = Instant::now() + BUSY_POLL_SPIN;
        loop {
            for _ in 0..64 {
                if !mailbox.is_empty() {
                    return true;
                }
                std::hint::spin_loop();
            }
            if Instant::now() >= deadline {
                return false;
            }
        }
    }

    /// Returns true when the drain loop should end.
    fn handle_message(self: &Rc<Self>, message: Message) -> bool {
        match message {
            Message::Request { origin, op } => {
                let reply = self.start_local(op);
                let context = self.clone();
                io::spawn_local(async move {
                    let reply = reply.await;
                    match origin {
                        Origin::Shard { shard, id } => context.post(shard, Message::Reply { id, reply }).await,
                        Origin::External(completion) => completion.complete(reply),
                    }
                });
            }
            Message::Reply { id, reply } => {
                if let Some(sender) = self.pending.borrow_mut().remove(&id) {
                    let _ = sender.send(reply);
                }
            }
            Message::Shutdown => {
                self.stopping.set(true);
                self.stop.notify_one();
            }
        }
        false
    }

    async fn accept_loop(self: Rc<Self>, listener: Rc<Listener>) {
        loop {
            let accepted = listener.accept().await;
            if self.is_stopping() {
                return;
            }
            match accepted {
                Ok((stream, _peer)) => {
                    if self.connections.borrow().len() >= CONNECTIONS_PER_SHARD_MAX {
                        drop(stream);
                        continue;
                    }
                    let id = self.next_connection_id.get();
                    self.next_connection_id.set(id + 1);
                    let stream = Rc::new(stream);
                    self.connections.borrow_mut().insert(id, stream.clone());
                    let context = self.clone();
                    io::spawn_local(async move {
                        connection::serve(context.clone(), stream).await;
                        context.connections.borrow_mut().remove(&id);
                        context.connections_closed.notify_waiters();
                    });
                }
                Err(error) => {
                    eprintln!("ringmq: shard {}: accept failed: {error}", self.id);
                    io::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    async fn apply_retention_forever(self: Rc<Self>) {
        let interval = Duration::from_millis(self.shared.config.retention_check_interval_ms.max(1));
        while !self.is_stopping() {
            io::sleep(interval).await;
            let slots: Vec<Rc<PartitionSlot>> = self.partitions.borrow().values().cloned().collect();
            for slot in slots {
                let result = slot.log.borrow_mut().apply_retention(now_ms());
                if let Err(error) = result {
                    eprintln!("ringmq: shard {}: retention failed: {error}", self.id);
                }
            }
        }
    }

    /// Graceful shutdown: stop accepting, let connections finish what they read,
    /// wait for every shard to get there (forwarded requests still need their
    /// owners), then sync and close every partition.
    async fn shut_down(self: &Rc<Self>) -> Result<(), String> {
        for listener in self.listeners.borrow().iter() {
            listener.stop();
        }
        for stream in self.connections.borrow().values() {
            stream.stop_reading();
        }
        for slot in self.partitions.borrow().values() {
            slot.appended.notify_waiters();
        }
        let deadline = Instant::now() + Duration::from_millis(SHUTDOWN_DRAIN_MS);
        while !self.connections.borrow().is_empty() && Instant::now() < deadline {
            let closed = self.connections_closed.notified();
            let _ = tokio::time::timeout(Duration::from_millis(10), closed).await;
        }
        let shards = self.shared.mailboxes.len();
        self.shared.drained_shards.fetch_add(1, Ordering::SeqCst);
        while self.shared.drained_shards.load(Ordering::SeqCst) < shards && Instant::now() < deadline {
            io::sleep(Duration::from_millis(1)).await;
        }
        self.commit.stop();
        let slots: Vec<Rc<PartitionSlot>> = self.partitions.borrow_mut().drain().map(|(_, slot)| slot).collect();
        let mut first_error = Ok(());
        for slot in slots {
            let (target, sync) = {
                let mut log = slot.log.borrow_mut();
                (log.next_offset(), log.sync_everything())
            };
            let result = sync.await;
            let failed = result.as_ref().err().map(|e| e.to_string());
            slot.log.borrow_mut().complete_sync(target, result);
            if let (Some(error), Ok(())) = (failed, &first_error) {
                first_error = Err(format!("shard {}: final sync failed: {error}", self.id));
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
    while let Ok(header) = crate::batch::BatchHeader::parse(records) {
        next = header.last_offset().saturating_add(1).max(0) as u64;
        match records.get(header.size_bytes().max(1)..) {
            Some(rest) => records = rest,
            None => break,
        }
    }
    next
}

fn ready(reply: Reply) -> ReplyFuture {
    Box::pin(async move { reply })
}

/// A shard thread's life: runtime, recovery, serving, shutdown.
pub(crate) fn run(
    id: u16,
    shared: Arc<Shared>,
    listeners: Option<(TcpListener, TcpListener)>,
    ready_sender: mpsc::Sender<Result<(), String>>,
) -> Result<(), String> {
    let runtime = match io::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = ready_sender.send(Err(error.to_string()));
            return Err(error.to_string());
        }
    };
    runtime.block_on(async move {
        let context = Rc::new(ShardContext::new(id, shared));
        let topics: Vec<Arc<TopicConfig>> = context.catalog().topics.values().cloned().collect();
        for topic in topics {
            if let Err(code) = context.open_topic(&topic).await {
                let message = format!("shard {id}: cannot open the partitions of topic {}: {code}", topic.name);
                let _ = ready_sender.send(Err(message.clone()));
                return Err(message);
            }
        }
        let loaded = match context.load_groups().await {
            Ok(()) => match context.load_producer_ids() {
                Ok(()) => context.load_shares().await,
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        };
        if let Err(error) = loaded {
            let message = format!("shard {id}: {error}");
            let _ = ready_sender.send(Err(message.clone()));
            return Err(message);
        }
        let mut started = Vec::new();
        let listeners = listeners.into_iter().flat_map(|(main, own)| [main, own]);
        for listener in listeners.map(|listener| Listener::from_std(listener).map(Rc::new)) {
            match listener {
                Ok(listener) => started.push(listener),
                Err(error) => {
                    let message = format!("shard {id}: cannot register its listener: {error}");
                    let _ = ready_sender.send(Err(message.clone()));
                    return Err(message);
                }
            }
        }
        *context.listeners.borrow_mut() = started.clone();
        let flusher = io::spawn_local(context.commit.clone().run());
        io::spawn_local(context.clone().drain_mailbox());
        io::spawn_local(context.clone().apply_retention_forever());
        io::spawn_local(context.clone().run_group_timers());
        io::spawn_local(context.clone().run_share_timers());
        for listener in started {
            io::spawn_local(context.clone().accept_loop(listener));
        }
        let _ = ready_sender.send(Ok(()));
        while !context.is_stopping() {
            context.stop.notified().await;
        }
        let result = context.shut_down().await;
        let _ = flusher.await;
        result
    })
}
