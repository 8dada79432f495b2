//! The shard runner: one shard thread's runtime, its tasks (mailbox drain,
//! accept loops, timers, group commit) and the [`Execute`] that runs every
//! operation reaching the shard on the state module it belongs to. The top of
//! `server/` below `mod.rs`: it names the state modules, nothing names it but
//! the broker's start.

use super::catalog::TopicConfig;
use super::config::SHUTDOWN_DRAIN_MS;
use super::connection::{self, Protocol};
use super::coordinator::{Groups, ProducerIds, PRODUCER_IDS_FILE};
use super::error::{ShardError, StateError};
use super::handle::{Execute, ShardHandle};
use super::message::{ready, Message, Op, Origin, Reply, ReplyFuture, ShardMetrics};
use super::service::{self, PRODUCER_ID_SHARD};
use super::share::Shares;
use super::shared::{ShardMailbox, Shared};
use super::ShardListeners;
use crate::io::{self, FileStorage, Listener};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Messages a mailbox drain handles before yielding to the shard's other tasks.
const DRAIN_BUDGET: usize = 256;
/// How long a shard waits after a failed eventfd read before it looks again.
const EVENTFD_RETRY: Duration = Duration::from_millis(1);
/// How long an accept loop waits after a failed accept.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);
/// How often a stopping shard looks whether its connections have closed, and
/// whether every other shard has drained.
const DRAIN_POLL: Duration = Duration::from_millis(10);
const DRAINED_SHARDS_POLL: Duration = Duration::from_millis(1);
/// How long a busy-polling shard spins on its empty ring before it sleeps.
pub const BUSY_POLL_SPIN: Duration = Duration::from_micros(1000);
/// Ring checks between two looks at the clock while spinning.
const SPIN_CHECKS: usize = 64;
/// Refused connections one shard holds at once while it answers them; past
/// it, a refused connection is closed without an answer.
const REFUSALS_IN_FLIGHT_MAX: usize = 64;

/// One shard: its handle (identity, partitions, routing), the groups it
/// coordinates, its share-partitions and its connections.
pub(crate) struct ShardContext {
    handle: Rc<ShardHandle>,
    groups: Rc<Groups>,
    producer_ids: Rc<ProducerIds<FileStorage>>,
    shares: Rc<Shares>,
    listeners: RefCell<Vec<Rc<Listener>>>,
    connections: RefCell<HashMap<u64, Rc<io::Stream>>>,
    next_connection_id: Cell<u64>,
    /// Refused connections being answered now (see [`ShardContext::refuse`]).
    refusals: Cell<usize>,
    connections_closed: Notify,
}

impl Execute for ShardContext {
    fn start_local(self: Rc<Self>, op: Op) -> ReplyFuture {
        let handle = self.handle.clone();
        match op {
            Op::Produce { topic, partition, batch, acks } => handle.partitions.produce(&topic, partition, batch, acks),
            Op::Fetch(request) => Box::pin(async move {
                let stopping = || handle.is_stopping();
                Reply::Fetch(handle.partitions.fetch(request, stopping).await)
            }),
            Op::ListOffsets(request) => ready(Reply::Offsets(handle.partitions.list_offsets(&request))),
            Op::OpenTopic(topic) => Box::pin(async move { Reply::Done(handle.partitions.open_topic(&topic).await) }),
            Op::ClosePartitions(name) => handle.partitions.close_topic(&name),
            Op::ForgetTopic(name) => Box::pin(async move {
                self.groups.forget_topic(&handle, &name).await;
                self.shares.forget_topic(&handle, &name);
                Reply::Done(Ok(()))
            }),
            Op::Group(request) => Box::pin(async move { Reply::Group(self.groups.request(&handle, request).await) }),
            Op::Classic(request) => {
                Box::pin(async move { Reply::Classic(self.groups.classic_request(&handle, request).await) })
            }
            Op::ShardGroups => {
                let mut groups = self.groups.list();
                groups.extend(self.shares.list());
                ready(Reply::Groups(Ok(groups)))
            }
            Op::ShareFetch(request) => {
                Box::pin(async move { Reply::ShareFetch(self.shares.fetch(&handle, request).await) })
            }
            Op::ShareAck(request) => {
                Box::pin(async move { Reply::ShareAck(self.shares.acknowledge(&handle, request).await) })
            }
            Op::ShareDescribe(group) => {
                let (states, members) = self.shares.describe(&handle, &group);
                ready(Reply::ShareDescribe(states, members))
            }
            Op::Follow { topic, partition } => ready(Reply::Follow(handle.partitions.follow(&topic, partition))),
            Op::Metrics => ready(Reply::Metrics(Box::new(self.metrics_snapshot()))),
            Op::InitProducerId(name) => Box::pin(async move { Reply::ProducerId(self.producer_ids.init(name).await) }),
            op @ (Op::CreateTopic(_) | Op::DeleteTopic(_) | Op::ListGroups) => service::run_here(&handle, op),
        }
    }
}

impl ShardContext {
    fn new(id: u16, shared: Arc<Shared>) -> Rc<ShardContext> {
        let context = Rc::new(ShardContext {
            handle: Rc::new(ShardHandle::new(id, shared)),
            groups: Default::default(),
            producer_ids: Default::default(),
            shares: Default::default(),
            listeners: RefCell::new(Vec::new()),
            connections: RefCell::new(HashMap::new()),
            next_connection_id: Cell::new(0),
            refusals: Cell::new(0),
            connections_closed: Notify::new(),
        });
        let executor: Rc<dyn Execute> = context.clone();
        context.handle.set_executor(Rc::downgrade(&executor));
        context
    }

    fn id(&self) -> u16 {
        self.handle.id
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// What `/metrics` shows of this shard.
    fn metrics_snapshot(&self) -> ShardMetrics {
        let mut committed = Vec::new();
        for (group, slot) in self.groups.all() {
            for ((topic, partition), (offset, _)) in &slot.group.borrow().offsets {
                committed.push((group.clone(), topic.clone(), *partition, *offset));
            }
        }
        ShardMetrics {
            shard: self.id(),
            connections: self.connections.borrow().len(),
            partitions: self.handle.partitions.metrics(),
            committed,
            share: self.shares.metrics(&self.handle),
        }
    }

    /// Handles whatever is in this shard's ring, then sleeps on its eventfd.
    async fn drain_mailbox(self: Rc<Self>) {
        let Some(mailbox) = self.shared().mailboxes.get(self.id() as usize) else { return };
        let reader = match mailbox.waker().reader() {
            Ok(reader) => reader,
            Err(error) => {
                eprintln!("ringmq: shard {}: cannot read its eventfd: {error}", self.id());
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
            if self.shared().config.busy_poll {
                io::yield_to_tasks().await;
                if self.spin_for_mail(mailbox) {
                    continue;
                }
            } else {
                tokio::task::yield_now().await;
            }
            if mailbox.prepare_sleep() == super::mailbox::SleepCheck::MaySleep {
                if let Err(error) = reader.wait().await {
                    eprintln!("ringmq: shard {}: eventfd read failed: {error}", self.id());
                    io::sleep(EVENTFD_RETRY).await;
                }
                mailbox.woke();
            }
        }
    }

    /// Busy-poll mode: spins on the ring for up to [`BUSY_POLL_SPIN`] before the
    /// shard may sleep. Returns true when mail arrived. (The runtime submits
    /// io_uring operations only when it parks, so the spin is bounded.)
    fn spin_for_mail(&self, mailbox: &ShardMailbox) -> bool {
        let deadline = Instant::now() + BUSY_POLL_SPIN;
        loop {
            for _ in 0..SPIN_CHECKS {
                if !mailbox.is_empty() {
                    return true;
                }
                std::hint::spin_loop();
            }
            if Instant::now() >= deadline {
                return false;
            }
            // A client thread spinning on this core gets its turn.
            std::thread::yield_now();
        }
    }

    /// Returns true when the drain loop should end.
    fn handle_message(self: &Rc<Self>, message: Message) -> bool {
        match message {
            Message::Request { origin, op } => {
                let mut reply = self.clone().start_local(op);
                // A reply known at once (an acks-written produce, a fetch that
                // found data) completes its outside waiter now, not in a task
                // of its own a runtime tick later.
                if let Origin::External(completion) = &origin {
                    if let Some(reply) = futures_util::FutureExt::now_or_never(&mut reply) {
                        completion.complete(reply);
                        return false;
                    }
                }
                let handle = self.handle.clone();
                io::spawn_local(async move {
                    let reply = reply.await;
                    match origin {
                        Origin::Shard { shard, id } => handle.post(shard, Message::Reply { id, reply }).await,
                        Origin::External(completion) => completion.complete(reply),
                    }
                });
            }
            Message::Reply { id, reply } => self.handle.reply_arrived(id, reply),
            Message::Shutdown => self.handle.request_stop(),
        }
        false
    }

    async fn accept_loop(self: Rc<Self>, listener: Rc<Listener>, protocol: Protocol) {
        loop {
            let accepted = listener.accept().await;
            if self.handle.is_stopping() {
                return;
            }
            match accepted {
                Ok((stream, _peer)) => {
                    let stream = match &self.shared().tls {
                        Some(config) => match stream.into_tls(config.clone()) {
                            Ok(stream) => stream,
                            Err(error) => {
                                eprintln!("ringmq: shard {}: cannot start TLS: {error}", self.id());
                                continue;
                            }
                        },
                        None => stream,
                    };
                    if !self.shared().open_connection() {
                        self.refuse(stream, protocol);
                        continue;
                    }
                    let id = self.next_connection_id.get();
                    self.next_connection_id.set(id + 1);
                    let stream = Rc::new(stream);
                    self.connections.borrow_mut().insert(id, stream.clone());
                    let context = self.clone();
                    io::spawn_local(async move {
                        connection::serve(context.handle.clone(), stream, protocol).await;
                        context.connections.borrow_mut().remove(&id);
                        context.shared().close_connection();
                        context.connections_closed.notify_waiters();
                    });
                }
                Err(error) => {
                    eprintln!("ringmq: shard {}: accept failed: {error}", self.id());
                    io::sleep(ACCEPT_RETRY).await;
                }
            }
        }
    }

    /// A connection past `max_connections`: answered with `ResourceLimit`
    /// and closed (see [`connection::refuse`]), or closed at once while this
    /// shard is already answering [`REFUSALS_IN_FLIGHT_MAX`] of them.
    fn refuse(self: &Rc<Self>, stream: io::Stream, protocol: Protocol) {
        let counters = &self.shared().counters;
        if counters.refused_connections.fetch_add(1, Ordering::Relaxed) == 0 {
            eprintln!(
                "ringmq: refusing connections past max_connections = {} (raise --max-connections; \
                 ringmq_refused_connections_total counts them)",
                self.shared().config.max_connections
            );
        }
        if self.refusals.get() >= REFUSALS_IN_FLIGHT_MAX {
            return;
        }
        self.refusals.set(self.refusals.get() + 1);
        let context = self.clone();
        io::spawn_local(async move {
            connection::refuse(stream, protocol).await;
            context.refusals.set(context.refusals.get() - 1);
        });
    }

    async fn apply_retention_forever(self: Rc<Self>) {
        let interval = Duration::from_millis(self.shared().config.retention_check_interval_ms.max(1));
        while !self.handle.is_stopping() {
            io::sleep(interval).await;
            self.handle.partitions.apply_retention();
        }
    }

    /// Graceful shutdown: stop accepting, let connections finish what they read,
    /// wait for every shard to get there (forwarded requests still need their
    /// owners), then sync and close every partition.
    async fn shut_down(self: &Rc<Self>) -> Result<(), ShardError> {
        for listener in self.listeners.borrow().iter() {
            listener.stop();
        }
        for stream in self.connections.borrow().values() {
            stream.stop_reading();
        }
        self.handle.partitions.wake_all();
        let deadline = Instant::now() + Duration::from_millis(SHUTDOWN_DRAIN_MS);
        while !self.connections.borrow().is_empty() && Instant::now() < deadline {
            let closed = self.connections_closed.notified();
            let _ = tokio::time::timeout(DRAIN_POLL, closed).await;
        }
        let shared = self.shared();
        let shards = shared.mailboxes.len();
        shared.drained_shards.fetch_add(1, Ordering::SeqCst);
        while shared.drained_shards.load(Ordering::SeqCst) < shards && Instant::now() < deadline {
            io::sleep(DRAINED_SHARDS_POLL).await;
        }
        let shard = self.id();
        self.handle.partitions.close_all().await.map_err(|source| ShardError::FinalSync { shard, source })
    }
}

/// A shard thread's life: runtime, recovery, serving, shutdown.
pub(crate) fn run(
    id: u16,
    shared: Arc<Shared>,
    listeners: ShardListeners,
    ready_sender: mpsc::Sender<Result<(), ShardError>>,
) -> Result<(), ShardError> {
    let runtime = match io::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            // The probe at start succeeded: tell the starter this one's cause.
            let _ = ready_sender.send(Err(ShardError::Runtime(error)));
            return Ok(());
        }
    };
    runtime.block_on(async move {
        let context = ShardContext::new(id, shared);
        let started = match context.start(listeners).await {
            Ok(started) => started,
            Err(error) => {
                let _ = ready_sender.send(Err(error));
                return Ok(());
            }
        };
        let flusher = io::spawn_local(context.handle.partitions.commit().clone().run());
        io::spawn_local(context.clone().drain_mailbox());
        io::spawn_local(context.clone().apply_retention_forever());
        io::spawn_local(context.groups.clone().run_timers(context.handle.clone()));
        io::spawn_local(context.shares.clone().run_timers(context.handle.clone()));
        for (listener, protocol) in started {
            io::spawn_local(context.clone().accept_loop(listener, protocol));
        }
        let _ = ready_sender.send(Ok(()));
        context.handle.stopped().await;
        let result = context.shut_down().await;
        let _ = flusher.await;
        result
    })
}

impl ShardContext {
    /// Recovery: opens the partitions this shard owns, loads its groups,
    /// producer ids and share-partitions, and registers its listeners.
    async fn start(&self, listeners: ShardListeners) -> Result<Vec<(Rc<Listener>, Protocol)>, ShardError> {
        let (handle, shard) = (&self.handle, self.id());
        let topics: Vec<Arc<TopicConfig>> = handle.catalog().topics.values().cloned().collect();
        for topic in topics {
            if let Err(code) = handle.partitions.open_topic(&topic).await {
                return Err(ShardError::Partition { shard, topic: topic.name.clone(), code });
            }
        }
        let storage = |error| ShardError::Storage { shard, error };
        self.groups.load(handle).await.map_err(storage)?;
        if handle.id == PRODUCER_ID_SHARD {
            let path = handle.shared.config.data_dir.join(PRODUCER_IDS_FILE);
            self.producer_ids.load(FileStorage::new(), &path).await.map_err(storage)?;
        }
        self.shares.load(handle).await.map_err(storage)?;
        let mut started = Vec::new();
        for (listener, protocol) in listeners {
            let listener = Listener::from_std(listener)
                .map_err(|source| storage(StateError::new("cannot register its listener", source)))?;
            started.push((Rc::new(listener), protocol));
        }
        *self.listeners.borrow_mut() = started.iter().map(|(listener, _)| listener.clone()).collect();
        Ok(started)
    }
}
