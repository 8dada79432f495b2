//! The embedded broker: the same shards as the server, inside the calling
//! process, with no TCP. An [`EmbeddedClient`] puts each request on the owning
//! shard's lock-free ring and waits on a completion (parked, or spinning in
//! busy-poll mode); only the batch itself crosses, no serialisation.
//!
//! A fetch does not cross at all when it can be served from the partition's
//! [`TailRing`]: the owner publishes its newest small batches there, and the
//! client reads them from its own thread (and, in busy-poll mode, spins there
//! for the next one) instead of asking the shard.
//!
//! ```no_run
//! use ringmq::embedded::Broker;
//! use ringmq::server::ServerConfig;
//! let broker = Broker::open(ServerConfig::new("/tmp/ringmq-embedded")).unwrap();
//! let client = broker.client();
//! client.create_topic("t", 1, Default::default(), Default::default()).unwrap();
//! broker.close().unwrap();
//! ```

use crate::client::group::{JoinWait, PendingJoin};
use crate::client::transport::ProduceBatch;
use crate::client::{ClientError, FetchResult, Result, Retention, Transport};
use crate::log::Acks;
use crate::protocol::fetch::FetchRequest;
use crate::protocol::group::{GroupListing, GroupRequest, GroupResponse, JoinGroup, JoinResponse};
use crate::protocol::offsets::{ListOffsetsRequest, ListOffsetsResponse};
use crate::protocol::share::{ShareAckRequest, ShareFetchRequest, ShareFetchResponse};
use crate::protocol::topic::CreateTopicRequest;
use crate::protocol::ErrorCode;
use crate::server::completion::Completion;
use crate::server::message::{FetchData, Message, Op, Origin, Reply};
use crate::server::service::{self, Destination};
use crate::server::tail_ring::{Follow, TailRing};
use crate::server::{self, ServerConfig, ServerHandle, ShardError, Shared};
use bytes::BytesMut;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where an op that runs on any shard is posted.
const ANY_SHARD: u16 = 0;
/// Spins of a busy-polling follower between two yields of the core.
const FOLLOW_SPINS_PER_YIELD: u32 = 256;
/// Partitions one client follows through their tail rings; its fetches of
/// others ask the shard.
pub const FOLLOWED_PARTITIONS_MAX: usize = 1024;

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
        EmbeddedClient::new(self.handle.shared().clone())
    }

    pub fn counters(&self) -> &server::ServerCounters {
        self.handle.counters()
    }

    /// Shuts down as gracefully as the server: finishes in-flight requests,
    /// syncs and closes every partition.
    pub fn close(self) -> std::result::Result<(), ShardError> {
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
        fetch_result(self.completion.wait(self.busy_poll), &self.context)
    }
}

fn fetch_result(reply: Reply, context: &str) -> Result<FetchResult> {
    match reply.into_fetch() {
        Ok(FetchData { high_watermark, earliest, records }) => {
            Ok(FetchResult { high_watermark, earliest, records: records.into_vec() })
        }
        Err(code) => Err(server_error(code, context)),
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
        Some(reply.into_group().map_err(|code| server_error(code, &self.context)))
    }
}

/// An in-process client of a [`Broker`].
pub struct EmbeddedClient {
    shared: Arc<Shared>,
    /// The tail rings this client reads, by topic and partition; `None` for a
    /// partition whose shard has no ring to spare.
    followed: Mutex<HashMap<String, FollowedPartitions>>,
}

/// A topic's followed partitions: its ring, or `None` when the shard had none to spare.
type FollowedPartitions = HashMap<u32, Option<Arc<TailRing>>>;

/// A clone follows partitions on its own (each thread's client has its map).
impl Clone for EmbeddedClient {
    fn clone(&self) -> EmbeddedClient {
        EmbeddedClient::new(self.shared.clone())
    }
}

/// What a fetch from the tail ring came to.
enum Followed {
    Served(FetchResult),
    /// Ask the shard (with what is left of the wait).
    AskShard(FetchRequest),
}

fn server_error(code: ErrorCode, context: impl Into<String>) -> ClientError {
    ClientError::Server { code: code as u16, context: context.into() }
}

/// A refusal before the op ran: an unknown partition is the client's
/// `UnknownTopic`, as the TCP client reports it from its metadata.
fn refused(code: ErrorCode, context: impl Into<String>) -> ClientError {
    match code {
        ErrorCode::UnknownTopicOrPartition => ClientError::UnknownTopic(context.into()),
        code => server_error(code, context),
    }
}

impl EmbeddedClient {
    fn new(shared: Arc<Shared>) -> EmbeddedClient {
        EmbeddedClient { shared, followed: Mutex::new(HashMap::new()) }
    }

    /// Posts `op` to the shard the service says it runs on; the completion
    /// gets its reply.
    fn post(&self, op: Op, context: &str) -> Result<Arc<Completion<Reply>>> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(server_error(ErrorCode::ShuttingDown, context));
        }
        let catalog = self.shared.catalog.snapshot();
        let shard = match service::destination(&catalog, self.shard_count(), &op) {
            Ok(Destination::Shard(shard)) => shard,
            Ok(Destination::Any) => ANY_SHARD,
            Err(code) => return Err(refused(code, context)),
        };
        let completion = Arc::new(Completion::for_current_thread());
        let message = Message::Request { origin: Origin::External(completion.clone()), op };
        if !self.shared.post_external(shard, message) {
            return Err(server_error(ErrorCode::ShuttingDown, context));
        }
        Ok(completion)
    }

    /// Runs `op` and waits for its reply (spinning in busy-poll mode).
    fn call(&self, op: Op, context: &str) -> Result<Reply> {
        Ok(self.post(op, context)?.wait(self.shared.config.busy_poll))
    }

    fn check_open(&self, context: &str) -> Result<()> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(server_error(ErrorCode::ShuttingDown, context));
        }
        Ok(())
    }

    fn shard_count(&self) -> u16 {
        self.shared.mailboxes.len() as u16
    }

    pub fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        retention_ms: Retention,
        retention_bytes: Retention,
    ) -> Result<()> {
        let context = format!("create topic {name}");
        let request = CreateTopicRequest {
            name: name.into(),
            partitions,
            retention_ms: retention_ms.to_wire(),
            retention_bytes: retention_bytes.to_wire(),
        };
        self.call(Op::CreateTopic(request), &context)?.into_done().map_err(|code| server_error(code, context))
    }

    pub fn delete_topic(&self, name: &str) -> Result<()> {
        let context = format!("delete topic {name}");
        self.call(Op::DeleteTopic(name.into()), &context)?.into_done().map_err(|code| server_error(code, context))
    }

    /// Topic names with their partition counts and retention (`RETENTION_UNLIMITED`
    /// for none), sorted by name.
    /// A closed broker answers `ShuttingDown`, as every other call does.
    pub fn topics(&self) -> Result<Vec<(String, u32, i64, i64)>> {
        self.check_open("list topics")?;
        let catalog = self.shared.catalog.snapshot();
        let metadata = service::metadata(&self.shared, &catalog, &[]);
        Ok(metadata
            .topics
            .into_iter()
            .map(|t| (t.name, t.partition_shards.len() as u32, t.retention_ms, t.retention_bytes))
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
        let context = format!("produce to {topic}/{partition}");
        let completion = self.post(Op::Produce { topic: topic.into(), partition, batch, acks }, &context)?;
        if acks == Acks::None {
            return Ok(None);
        }
        let reply = completion.wait(self.shared.config.busy_poll);
        reply.into_produce().map(Some).map_err(|code| server_error(code, context))
    }

    /// Whole stored batches from `offset`; waits up to `max_wait_ms` for at least
    /// `min_bytes`.
    /// Served from the partition's tail ring when it holds the offset
    /// (in busy-poll mode the wait for new batches spins there too);
    /// otherwise by the shard.
    pub fn fetch(&self, request: FetchRequest) -> Result<FetchResult> {
        let request = match self.fetch_followed(request) {
            Followed::Served(result) => return Ok(result),
            Followed::AskShard(request) => request,
        };
        let context = format!("fetch {}/{} at {}", request.topic, request.partition, request.offset);
        fetch_result(self.call(Op::Fetch(request), &context)?, &context)
    }

    /// A fetch from the tail ring, answered as the shard would: at least
    /// `min_bytes` (or whatever there is once `max_wait_ms` has passed, or
    /// when more exists than the ring holds).
    fn fetch_followed(&self, mut request: FetchRequest) -> Followed {
        let Some(ring) = self.ring(&request.topic, request.partition) else { return Followed::AskShard(request) };
        let busy_poll = self.shared.config.busy_poll;
        let wanted = request.min_bytes.min(request.max_bytes) as usize;
        let deadline = Instant::now() + Duration::from_millis(u64::from(request.max_wait_ms));
        let mut spins = 0u32;
        loop {
            let seen = ring.published();
            match ring.read(request.offset, request.max_bytes as usize) {
                Follow::Batches { records, next_offset, end_offset, earliest }
                    if records.len() >= wanted || end_offset > next_offset =>
                {
                    let counters = &self.shared.counters;
                    counters.follower_fetches.fetch_add(1, Ordering::Relaxed);
                    counters.fetch_records.fetch_add(next_offset.saturating_sub(request.offset), Ordering::Relaxed);
                    counters.fetch_bytes.fetch_add(records.len() as u64, Ordering::Relaxed);
                    return Followed::Served(FetchResult { high_watermark: end_offset, earliest, records });
                }
                Follow::Miss => return Followed::AskShard(request),
                // Nothing wanted: the shard answers at once, so ask it now.
                Follow::AtEnd if wanted == 0 => return Followed::AskShard(request),
                Follow::Batches { .. } | Follow::AtEnd => {}
            }
            // Too little yet: spin for the next batch (busy poll), or let the
            // shard's long poll wait.
            let now = Instant::now();
            if !busy_poll || now >= deadline {
                request.max_wait_ms = deadline.saturating_duration_since(now).as_millis() as u32;
                return Followed::AskShard(request);
            }
            while ring.published() == seen && Instant::now() < deadline {
                if ring.is_closed() || self.shared.closed.load(Ordering::Relaxed) {
                    return Followed::AskShard(request);
                }
                std::hint::spin_loop();
                spins += 1;
                if spins % FOLLOW_SPINS_PER_YIELD == 0 {
                    // The shard that publishes may share this core.
                    std::thread::yield_now();
                }
            }
        }
    }

    /// The tail ring of a partition, asked of its shard on first use.
    fn ring(&self, topic: &str, partition: u32) -> Option<Arc<TailRing>> {
        let mut followed = self.followed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(partitions) = followed.get_mut(topic) {
            match partitions.get(&partition) {
                Some(Some(ring)) if !ring.is_closed() => return Some(ring.clone()),
                // Its partition is gone (deleted, recreated): ask again.
                Some(Some(_)) => drop(partitions.remove(&partition)),
                Some(None) => return None,
                None => {}
            }
        }
        let count: usize = followed.values().map(HashMap::len).sum();
        if count >= FOLLOWED_PARTITIONS_MAX {
            return None;
        }
        let op = Op::Follow { topic: topic.into(), partition };
        let reply = self.call(op, "follow").ok()?;
        let ring = match reply.into_follow() {
            Ok(ring) => Some(ring),
            // The shard has no ring to spare: don't ask again.
            Err(ErrorCode::ResourceLimit) => None,
            // Unknown partition, shutting down: the shard's fetch answers.
            Err(_) => return None,
        };
        followed.entry(topic.to_owned()).or_default().insert(partition, ring.clone());
        ring
    }

    /// Starts a fetch and returns at once; [`PendingFetch::wait`] gets its
    /// answer. A consumer thread can keep its long poll waiting at the shard
    /// while it does other work (the single-thread end-to-end benchmark).
    pub fn fetch_async(&self, request: FetchRequest) -> Result<PendingFetch> {
        let context = format!("fetch {}/{} at {}", request.topic, request.partition, request.offset);
        let completion = self.post(Op::Fetch(request), &context)?;
        Ok(PendingFetch { completion, busy_poll: self.shared.config.busy_poll, context })
    }

    /// Earliest (-2), latest (-1) or the first offset at or after a timestamp.
    pub fn list_offsets(&self, topic: &str, partition: u32, query: i64) -> Result<ListOffsetsResponse> {
        let context = format!("list offsets of {topic}/{partition}");
        let op = Op::ListOffsets(ListOffsetsRequest { topic: topic.into(), partition, query });
        self.call(op, &context)?.into_offsets().map_err(|code| server_error(code, context))
    }

    /// A consumer-group request, answered by the group's coordinating shard.
    pub fn group(&self, request: GroupRequest) -> Result<GroupResponse> {
        let context = format!("group request for {}", request.group());
        self.call(Op::Group(request), &context)?.into_group().map_err(|code| server_error(code, context))
    }

    /// Starts a group request on the group's coordinator and returns without
    /// waiting for its answer.
    pub fn start_group(&self, request: GroupRequest) -> Result<PendingGroup> {
        let context = format!("group request for {}", request.group());
        let completion = self.post(Op::Group(request), &context)?;
        Ok(PendingGroup { completion: Some(completion), context })
    }

    /// Every group, of every shard, sorted by name.
    pub fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let context = "list groups";
        self.call(Op::ListGroups, context)?.into_groups().map_err(|code| server_error(code, context))
    }

    /// A producer id and epoch for idempotent produce (see
    /// [`crate::client::Client::init_producer_id`]).
    pub fn init_producer_id(&self, name: &str) -> Result<(i64, i16)> {
        let context = "init producer id";
        self.call(Op::InitProducerId(name.into()), context)?
            .into_producer_id()
            .map_err(|code| server_error(code, context))
    }

    /// Receives records from a share group under a lease (see [`crate::client::share`]).
    pub fn share_fetch(&self, request: ShareFetchRequest) -> Result<ShareFetchResponse> {
        let context = format!("share fetch {}/{} for {}", request.topic, request.partition, request.group);
        self.call(Op::ShareFetch(request), &context)?.into_share_fetch().map_err(|code| server_error(code, context))
    }

    /// Acknowledges share-group records; one error code per range.
    pub fn share_acknowledge(&self, request: ShareAckRequest) -> Result<Vec<u16>> {
        let context = format!("share acknowledge {}/{} for {}", request.topic, request.partition, request.group);
        let errors = self.call(Op::ShareAck(request), &context)?.into_share_ack();
        errors.map(|errors| errors.into_iter().map(|e| e as u16).collect()).map_err(|code| server_error(code, context))
    }
}

// The client side's transports, implemented here so the client names no
// embedded type: the arrows go from embedded to client only.

impl Transport for EmbeddedClient {
    fn produce_many(&self, batches: &[ProduceBatch<'_>], acks: Acks) -> Result<Vec<Result<Option<u64>>>> {
        // Every batch is posted before any answer is awaited, as TCP pipelines them.
        let posted: Vec<Result<(Arc<Completion<Reply>>, String)>> = batches
            .iter()
            .map(|&(topic, partition, batch)| {
                let context = format!("produce to {topic}/{partition}");
                let op = Op::Produce { topic: topic.into(), partition, batch: BytesMut::from(batch), acks };
                self.post(op, &context).map(|completion| (completion, context))
            })
            .collect();
        let busy_poll = self.shared.config.busy_poll;
        Ok(posted
            .into_iter()
            .map(|posted| {
                let (completion, context) = posted?;
                if acks == Acks::None {
                    return Ok(None);
                }
                completion.wait(busy_poll).into_produce().map(Some).map_err(|code| server_error(code, context))
            })
            .collect())
    }

    fn fetch(&self, request: &FetchRequest) -> Result<FetchResult> {
        EmbeddedClient::fetch(self, request.clone())
    }

    fn list_offsets(&self, topic: &str, partition: u32, query: i64) -> Result<ListOffsetsResponse> {
        EmbeddedClient::list_offsets(self, topic, partition, query)
    }

    fn group(&self, request: GroupRequest) -> Result<GroupResponse> {
        EmbeddedClient::group(self, request)
    }

    fn start_join(&self, join: JoinGroup) -> Result<PendingJoin> {
        Ok(PendingJoin::new(Box::new(self.start_group(GroupRequest::Join(join))?)))
    }

    fn list_groups(&self) -> Result<Vec<GroupListing>> {
        EmbeddedClient::list_groups(self)
    }

    fn share_fetch(&self, request: &ShareFetchRequest) -> Result<ShareFetchResponse> {
        EmbeddedClient::share_fetch(self, request.clone())
    }

    fn share_acknowledge(&self, request: &ShareAckRequest) -> Result<Vec<u16>> {
        EmbeddedClient::share_acknowledge(self, request.clone())
    }

    fn topics(&self) -> Result<Vec<(String, u32)>> {
        Ok(EmbeddedClient::topics(self)?.into_iter().map(|(name, partitions, _, _)| (name, partitions)).collect())
    }

    fn partition_count(&self, topic: &str) -> Result<u32> {
        EmbeddedClient::partition_count(self, topic)
    }

    fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        retention_ms: Retention,
        retention_bytes: Retention,
    ) -> Result<()> {
        EmbeddedClient::create_topic(self, name, partitions, retention_ms, retention_bytes)
    }

    fn delete_topic(&self, name: &str) -> Result<()> {
        EmbeddedClient::delete_topic(self, name)
    }

    fn init_producer_id(&self, name: &str) -> Result<(i64, i16)> {
        EmbeddedClient::init_producer_id(self, name)
    }

    fn independent(&self) -> Result<Arc<dyn Transport>> {
        Ok(Arc::new(self.clone()))
    }
}

/// How often a wait for an in-process join looks for its answer.
const JOIN_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(1);

impl JoinWait for PendingGroup {
    fn wait(&mut self, timeout: std::time::Duration) -> Result<Option<JoinResponse>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match self.try_take() {
                Some(Ok(GroupResponse::Join(response))) => return Ok(Some(response)),
                Some(Ok(_)) => return Err(ClientError::Protocol("unexpected answer to join".into())),
                Some(Err(error)) => return Err(error),
                None if std::time::Instant::now() >= deadline => return Ok(None),
                None => std::thread::sleep(JOIN_POLL_INTERVAL),
            }
        }
    }
}
