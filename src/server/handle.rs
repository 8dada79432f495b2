//! A shard as the rest of `server/` sees it: its id, what all shards share,
//! the partitions it owns, and the way to start an operation on any shard
//! ([`ShardHandle::submit`]): here, or through the owner's ring, with the
//! reply routed back.
//!
//! The handle does not know what an operation does: a local one is started by
//! the shard's [`Execute`] (the shard runner, above every state module), so the
//! imports of `server/` point one way.

use super::catalog::{Catalog, CatalogView};
use super::message::{ready, Message, Op, Origin, Reply, ReplyFuture};
use super::partitions::{PartitionSlot, Partitions};
use super::shared::Shared;
use crate::io;
use crate::protocol::ErrorCode;
use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

/// How long a sender waits before retrying a full ring.
const RING_RETRY: Duration = Duration::from_millis(1);

/// What runs an operation on the shard it reached.
pub(crate) trait Execute {
    /// Runs the synchronous part of `op` now and returns the rest.
    fn start_local(self: Rc<Self>, op: Op) -> ReplyFuture;
}

pub(crate) struct ShardHandle {
    pub id: u16,
    pub shared: Arc<Shared>,
    pub partitions: Partitions,
    catalog: CatalogView,
    security: crate::security::SecurityView,
    /// Replies awaited from other shards, by request id.
    pending: RefCell<HashMap<u64, oneshot::Sender<Reply>>>,
    next_request_id: Cell<u64>,
    stopping: Cell<bool>,
    stop: Notify,
    executor: OnceCell<Weak<dyn Execute>>,
}

impl ShardHandle {
    pub fn new(id: u16, shared: Arc<Shared>) -> ShardHandle {
        ShardHandle {
            id,
            partitions: Partitions::new(id, shared.clone()),
            catalog: CatalogView::new(&shared.catalog),
            security: crate::security::SecurityView::new(&shared.security),
            shared,
            pending: RefCell::new(HashMap::new()),
            next_request_id: Cell::new(0),
            stopping: Cell::new(false),
            stop: Notify::new(),
            executor: OnceCell::new(),
        }
    }

    /// Sets what runs the operations that reach this shard (once, at start).
    pub fn set_executor(&self, executor: Weak<dyn Execute>) {
        let _ = self.executor.set(executor);
    }

    pub fn shard_count(&self) -> u16 {
        self.shared.mailboxes.len() as u16
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    /// Marks the shard as stopping and wakes [`ShardHandle::stopped`].
    pub fn request_stop(&self) {
        self.stopping.set(true);
        self.stop.notify_one();
    }

    /// Returns once a stop was requested.
    pub async fn stopped(&self) {
        while !self.is_stopping() {
            self.stop.notified().await;
        }
    }

    /// The current catalog: one atomic load, a new snapshot only when it changed.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.current(&self.shared.catalog)
    }

    /// The current users and ACLs: one atomic load, a new snapshot only when they changed.
    pub fn security(&self) -> Arc<crate::security::Security> {
        self.security.current(&self.shared.security)
    }

    /// Runs `f` on the current users and ACLs, without cloning the snapshot.
    pub fn with_security<R>(&self, f: impl FnOnce(&crate::security::Security) -> R) -> R {
        self.security.with(&self.shared.security, f)
    }

    /// The owner of a partition, if it exists.
    pub fn route(&self, topic: &str, partition: u32) -> Result<u16, ErrorCode> {
        self.catalog().route(topic, partition, self.shard_count())
    }

    /// A partition this shard owns.
    pub fn slot(&self, topic: &str, partition: u32) -> Result<Rc<PartitionSlot>, ErrorCode> {
        self.partitions.slot(topic, partition)
    }

    /// Starts `op` on `owner`: here, or through the owner's ring (waiting while
    /// the ring is full). The synchronous part of the operation is ordered with
    /// every other submission from this shard to the same owner.
    pub async fn submit(self: &Rc<Self>, owner: u16, op: Op) -> ReplyFuture {
        if owner == self.id {
            return self.start_here(op);
        }
        let id = self.next_request_id.get();
        self.next_request_id.set(id + 1);
        let (sender, receiver) = oneshot::channel();
        self.pending.borrow_mut().insert(id, sender);
        self.shared.counters.forwarded_requests.fetch_add(1, Ordering::Relaxed);
        self.post(owner, Message::Request { origin: Origin::Shard { shard: self.id, id }, op }).await;
        Box::pin(async move { receiver.await.unwrap_or(Reply::Failed(ErrorCode::ShuttingDown)) })
    }

    /// Starts `op` on this shard.
    pub fn start_here(&self, op: Op) -> ReplyFuture {
        match self.executor.get().and_then(Weak::upgrade) {
            Some(executor) => executor.start_local(op),
            None => ready(Reply::Failed(ErrorCode::ShuttingDown)),
        }
    }

    /// Pushes into another shard's ring; a full ring is backpressure: wait, retry.
    pub async fn post(&self, shard: u16, mut message: Message) {
        let Some(mailbox) = self.shared.mailboxes.get(shard as usize) else { return };
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

    /// Hands a reply from another shard to the request waiting for it.
    pub fn reply_arrived(&self, id: u64, reply: Reply) {
        if let Some(sender) = self.pending.borrow_mut().remove(&id) {
            let _ = sender.send(reply);
        }
    }
}
