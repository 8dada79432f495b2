//! The embedded broker: the same shards as the server, inside the calling
//! process, with no TCP. An [`EmbeddedClient`] puts each request on the owning
//! shard's lock-free ring and waits on a completion (parked, or spinning in
//! busy-poll mode); only the batch itself crosses, no serialisation.
//!
//! ```no_run
//! use ringmq::embedded::Broker;
//! use ringmq::server::ServerConfig;
//! let broker = Broker::open(ServerConfig::new("/tmp/ringmq-embedded")).unwrap();
//! let client = broker.client();
//! client.create_topic("t", 1, Default::default(), Default::default()).unwrap();
//! broker.close().unwrap();
//! ```

use crate::client::{ClientError, FetchResult, Result, Retention};
use crate::log::Acks;
use crate::protocol::fetch::FetchRequest;
use crate::protocol::group::{GroupListing, GroupRequest, GroupResponse};
use crate::protocol::offsets::{ListOffsetsRequest, ListOffsetsResponse};
use crate::protocol::share::{ShareAckRequest, ShareFetchRequest, ShareFetchResponse};
use crate::protocol::topic::{RETENTION_DEFAULT, RETENTION_UNLIMITED};
use crate::protocol::ErrorCode;
use crate::server::catalog::{owner, TopicConfig};
use crate::server::completion::Completion;
use crate::server::shard::{FetchData, Message, Op, Origin, Reply};
use crate::server::{self, ServerConfig, ServerHandle, Shared};
use bytes::BytesMut;
use std::sync::Arc;

/// A broker running inside this process.
pub struct Broker {
    handle: ServerHandle,
}

impl Broker {
    /// Starts the shards (recovering their partitions) without any listener.
    pub fn open(mut config: ServerConfig) -> std::result::Result<Broker, server::StartError> {
        config.listen = None;
        Ok(Broker { handle: server::start(config)? })
    }

    /// A client talking to the shards through their rings. Clients are cheap and
    /// may be cloned and used from any thread.
    pub fn client(&self) -> EmbeddedClient {
        EmbeddedClient { shared: self.handle.shared().clone() }
    }

    pub fn counters(&self) -> &server::ServerCounters {
        self.handle.counters()
    }

    /// Shuts down as gracefully as the server: finishes in-flight requests,
    /// syncs and closes every partition.
    pub fn close(self) -> std::result::Result<(), String> {
        self.handle.shutdown()
    }
}

/// A fetch started by [`EmbeddedClient::fetch_async`]. Wait on it from the
/// thread that started it.
pub struct PendingFetch {
    completion: Arc<Completion<Reply>>,
    busy_poll: bool,
    context: String,
}

impl PendingFetch {
    /// Whether the answer is there (never blocks).
    pub fn is_ready(&self) -> bool {
        self.completion.is_ready()
    }

    /// Waits for the answer (spinning in busy-poll mode).
    pub fn wait(self) -> Result<FetchResult> {
        match self.completion.wait(self.busy_poll) {
            Reply::Fetch(Ok(FetchData { high_watermark, earliest, records })) => {
                Ok(FetchResult { high_watermark, earliest, records })
            }
            Reply::Fetch(Err(code)) | Reply::Done(Err(code)) => Err(server_error(code, self.context)),
            _ => Err(server_error(ErrorCode::Internal, self.context)),
        }
    }
}

/// A group request started by [`EmbeddedClient::start_group`]: the
/// coordinator answers it when it is done (a JoinGroup when its rebalance
/// completes). Polled, never waited on, so it may move between threads.
pub struct PendingGroup {
    completion: Option<Arc<Completion<Reply>>>,
    context: String,
}

impl PendingGroup {
    /// The answer, once it is there (never blocks); `None` before that and
    /// after the answer was taken.
    pub fn try_take(&mut self) -> Option<Result<GroupResponse>> {
        if !self.completion.as_ref()?.is_ready() {
            return None;
        }
        // READY: `wait` returns at once, without parking.
        let reply = self.completion.take()?.wait(false);
        Some(match reply {
            Reply::Group(Ok(response)) => Ok(response),
            Reply::Group(Err(code)) | Reply::Done(Err(code)) => Err(server_error(code, &self.context)),
            _ => Err(server_error(ErrorCode::Internal, &self.context)),
        })
    }
}

/// An in-process client of a [`Broker`].
#[derive(Clone)]
pub struct EmbeddedClient {
    shared: Arc<Shared>,
}

fn server_error(code: ErrorCode, context: impl Into<String>) -> ClientError {
    ClientError::Server { code: code as u16, context: context.into() }
}

impl EmbeddedClient {
    /// Runs `op` on `shard` and waits for its reply (ShuttingDown once the
    /// broker is closed).
    fn call(&self, shard: u16, op: Op) -> Reply {
        let completion = Arc::new(Completion::for_current_thread());
        let message = Message::Request { origin: Origin::External(completion.clone()), op };
        if !self.shared.post_external(shard, message) {
            return Reply::Done(Err(ErrorCode::ShuttingDown));
        }
        completion.wait(self.shared.config.busy_poll)
    }

    fn check_open(&self, context: &str) -> Result<()> {
        if self.shared.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(server_error(ErrorCode::ShuttingDown, context));
        }
        Ok(())
    }

    fn shard_count(&self) -> u16 {
        self.shared.mailboxes.len() as u16
    }

    fn route(&self, topic: &str, partition: u32) -> Result<u16> {
        let catalog = self.shared.catalog.snapshot();
        match catalog.topics.get(topic) {
            Some(config) if partition < config.partitions => Ok(owner(topic, partition, self.shard_count())),
            _ => Err(ClientError::UnknownTopic(format!("{topic}/{partition}"))),
        }
    }

    fn on_owners(&self, topic: &TopicConfig, op: impl Fn() -> Op) -> std::result::Result<(), ErrorCode> {
        let mut owners: Vec<u16> = (0..topic.partitions).map(|p| owner(&topic.name, p, self.shard_count())).collect();
        owners.sort_unstable();
        owners.dedup();
        for shard in owners {
            match self.call(shard, op()) {
                Reply::Done(Ok(())) => {}
                Reply::Done(Err(code)) => return Err(code),
                _ => return Err(ErrorCode::Internal),
            }
        }
        Ok(())
    }

    pub fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        retention_ms: Retention,
        retention_bytes: Retention,
    ) -> Result<()> {
        let resolve = |value: Retention, default: Option<u64>| match value {
            Retention::Default => default,
            Retention::Unlimited => None,
            Retention::Limit(limit) => Some(limit),
        };
        let config = &self.shared.config;
        let topic = TopicConfig {
            name: name.into(),
            partitions,
            retention_ms: resolve(retention_ms, config.retention_ms),
            retention_bytes: resolve(retention_bytes, config.retention_bytes),
            created_at_ms: crate::log::partition::now_ms(),
        };
        let context = format!("create topic {name}");
        self.check_open(&context)?;
        // As the server's create: files, partitions on their owners, then publish.
        let catalog = &self.shared.catalog;
        let topic = catalog.begin_create(topic).map_err(|code| server_error(code, &context))?;
        if let Err(code) = self.on_owners(&topic, || Op::OpenTopic(topic.clone())) {
            let moved = catalog.abandon_created(&topic.name);
            let _ = self.on_owners(&topic, || Op::ClosePartitions(topic.name.clone()));
            if let Ok(dir) = moved {
                let _ = std::fs::remove_dir_all(dir);
            }
            return Err(server_error(code, context));
        }
        catalog.publish_created(&topic);
        Ok(())
    }

    pub fn delete_topic(&self, name: &str) -> Result<()> {
        let context = format!("delete topic {name}");
        self.check_open(&context)?;
        // As the server's delete: close the partitions, unpublish and move the
        // directory, then forget offsets and share state on every shard.
        let catalog = &self.shared.catalog;
        let topic = catalog.begin_delete(name).map_err(|code| server_error(code, &context))?;
        let mut result = self.on_owners(&topic, || Op::ClosePartitions(topic.name.clone()));
        let moved_to = catalog.finish_delete(name).map_err(|code| server_error(code, &context))?;
        for shard in 0..self.shard_count() {
            match self.call(shard, Op::ForgetTopic(topic.name.clone())) {
                Reply::Done(Ok(())) => {}
                Reply::Done(Err(code)) => result = Err(code),
                _ => result = Err(ErrorCode::Internal),
            }
        }
        let _ = std::fs::remove_dir_all(moved_to);
        result.map_err(|code| server_error(code, context))
    }

    /// Topic names with their partition counts and retention (`RETENTION_UNLIMITED`
    /// for none), sorted by name.
    /// A closed broker answers `ShuttingDown`, as every other call does.
    pub fn topics(&self) -> Result<Vec<(String, u32, i64, i64)>> {
        self.check_open("list topics")?;
        let wire = |value: Option<u64>| value.map_or(RETENTION_UNLIMITED, |v| v.min(i64::MAX as u64) as i64);
        let catalog = self.shared.catalog.snapshot();
        Ok(catalog
            .topics
            .values()
            .map(|t| (t.name.clone(), t.partitions, wire(t.retention_ms), wire(t.retention_bytes)))
            .collect())
    }

    pub fn partition_count(&self, topic: &str) -> Result<u32> {
        self.check_open(&format!("partitions of {topic}"))?;
        let catalog = self.shared.catalog.snapshot();
        catalog.topics.get(topic).map(|t| t.partitions).ok_or_else(|| ClientError::UnknownTopic(topic.into()))
    }

    /// Appends one batch; returns its base offset once acknowledged as `acks`
    /// asks (`None` with acks none, which returns as soon as the batch is queued).
    pub fn produce(&self, topic: &str, partition: u32, batch: BytesMut, acks: Acks) -> Result<Option<u64>> {
        let shard = self.route(topic, partition)?;
        let op = Op::Produce { topic: topic.into(), partition, batch, acks };
        if acks == Acks::None {
            let completion = Arc::new(Completion::for_current_thread());
            if !self.shared.post_external(shard, Message::Request { origin: Origin::External(completion), op }) {
                return Err(server_error(ErrorCode::ShuttingDown, format!("produce to {topic}/{partition}")));
            }
            return Ok(None);
        }
        match self.call(shard, op) {
            Reply::Produce(Ok(base_offset)) => Ok(Some(base_offset)),
            Reply::Produce(Err(code)) | Reply::Done(Err(code)) => {
                Err(server_error(code, format!("produce to {topic}/{partition}")))
            }
            _ => Err(server_error(ErrorCode::Internal, "produce")),
        }
    }

    /// Whole stored batches from `offset`; waits up to `max_wait_ms` for at least
    /// `min_bytes`.
    pub fn fetch(&self, request: FetchRequest) -> Result<FetchResult> {
        let shard = self.route(&request.topic, request.partition)?;
        let context = format!("fetch {}/{} at {}", request.topic, request.partition, request.offset);
        match self.call(shard, Op::Fetch(request)) {
            Reply::Fetch(Ok(FetchData { high_watermark, earliest, records })) => {
                Ok(FetchResult { high_watermark, earliest, records })
            }
            Reply::Fetch(Err(code)) | Reply::Done(Err(code)) => Err(server_error(code, context)),
            _ => Err(server_error(ErrorCode::Internal, context)),
        }
    }

    /// Starts a fetch and returns at once; [`PendingFetch::wait`] gets its
    /// answer. A consumer thread can keep its long poll waiting at the shard
    /// while it does other work (the single-thread end-to-end benchmark).
    pub fn fetch_async(&self, request: FetchRequest) -> Result<PendingFetch> {
        let shard = self.route(&request.topic, request.partition)?;
        let context = format!("fetch {}/{} at {}", request.topic, request.partition, request.offset);
        let completion = Arc::new(Completion::for_current_thread());
        let message = Message::Request { origin: Origin::External(completion.clone()), op: Op::Fetch(request) };
        if !self.shared.post_external(shard, message) {
            return Err(server_error(ErrorCode::ShuttingDown, context));
        }
        Ok(PendingFetch { completion, busy_poll: self.shared.config.busy_poll, context })
    }

    /// Earliest (-2), latest (-1) or the first offset at or after a timestamp.
    pub fn list_offsets(&self, topic: &str, partition: u32, query: i64) -> Result<ListOffsetsResponse> {
        let shard = self.route(topic, partition)?;
        let context = format!("list offsets of {topic}/{partition}");
        if query < RETENTION_DEFAULT {
            return Err(ClientError::InvalidArgument(format!("offset query {query}")));
        }
        match self.call(shard, Op::ListOffsets(ListOffsetsRequest { topic: topic.into(), partition, query })) {
            Reply::Offsets(Ok(response)) => Ok(response),
            Reply::Offsets(Err(code)) | Reply::Done(Err(code)) => Err(server_error(code, context)),
            _ => Err(server_error(ErrorCode::Internal, context)),
        }
    }

    /// A consumer-group request, answered by the group's coordinating shard.
    pub fn group(&self, request: GroupRequest) -> Result<GroupResponse> {
        self.check_open("group request")?;
        let context = format!("group request for {}", request.group());
        let shard = crate::groups::coordinator(request.group(), self.shard_count());
        match self.call(shard, Op::Group(request)) {
            Reply::Group(Ok(response)) => Ok(response),
            Reply::Group(Err(code)) | Reply::Done(Err(code)) => Err(server_error(code, context)),
            _ => Err(server_error(ErrorCode::Internal, context)),
        }
    }

    /// Starts a group request on the group's coordinator and returns without
    /// waiting for its answer.
    pub fn start_group(&self, request: GroupRequest) -> Result<PendingGroup> {
        self.check_open("group request")?;
        let context = format!("group request for {}", request.group());
        let shard = crate::groups::coordinator(request.group(), self.shard_count());
        let completion = Arc::new(Completion::for_current_thread());
        let message = Message::Request { origin: Origin::External(completion.clone()), op: Op::Group(request) };
        if !self.shared.post_external(shard, message) {
            return Err(server_error(ErrorCode::ShuttingDown, context));
        }
        Ok(PendingGroup { completion: Some(completion), context })
    }

    /// Every group, of every shard, sorted by name.
    pub fn list_groups(&self) -> Result<Vec<GroupListing>> {
        self.check_open("list groups")?;
        let mut groups = Vec::new();
        for shard in 0..self.shard_count() {
            match self.call(shard, Op::ListGroups) {
                Reply::Groups(listed) => groups.extend(listed),
                Reply::Done(Err(code)) => return Err(server_error(code, "list groups")),
                _ => return Err(server_error(ErrorCode::Internal, "list groups")),
            }
        }
        Ok(crate::server::coordinator::merge_listings(groups))
    }

    /// A producer id and epoch for idempotent produce (see
    /// [`crate::client::Client::init_producer_id`]).
    pub fn init_producer_id(&self, name: &str) -> Result<(i64, i16)> {
        self.check_open("init producer id")?;
        match self.call(crate::server::coordinator::PRODUCER_ID_SHARD, Op::InitProducerId(name.into())) {
            Reply::ProducerId(Ok(id)) => Ok(id),
            Reply::ProducerId(Err(code)) | Reply::Done(Err(code)) => Err(server_error(code, "init producer id")),
            _ => Err(server_error(ErrorCode::Internal, "init producer id")),
        }
    }

    /// Receives records from a share group under a lease (see [`crate::client::share`]).
    pub fn share_fetch(&self, request: ShareFetchRequest) -> Result<ShareFetchResponse> {
        self.check_open("share fetch")?;
        let shard = self.route(&request.topic, request.partition)?;
        let context = format!("share fetch {}/{} for {}", request.topic, request.partition, request.group);
        match self.call(shard, Op::ShareFetch(request)) {
            Reply::ShareFetch(Ok(response)) => Ok(response),
            Reply::ShareFetch(Err(code)) | Reply::Done(Err(code)) => Err(server_error(code, context)),
            _ => Err(server_error(ErrorCode::Internal, context)),
        }
    }

    /// Acknowledges share-group records; one error code per range.
    pub fn share_acknowledge(&self, request: ShareAckRequest) -> Result<Vec<u16>> {
        self.check_open("share acknowledge")?;
        let shard = self.route(&request.topic, request.partition)?;
        let context = format!("share acknowledge {}/{} for {}", request.topic, request.partition, request.group);
        match self.call(shard, Op::ShareAck(request)) {
            Reply::ShareAck(Ok(errors)) => Ok(errors.into_iter().map(|e| e as u16).collect()),
            Reply::ShareAck(Err(code)) | Reply::Done(Err(code)) => Err(server_error(code, context)),
            _ => Err(server_error(ErrorCode::Internal, context)),
        }
    }
}
