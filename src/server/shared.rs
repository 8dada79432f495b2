//! What every shard thread shares: the settings, the catalog, the rings and
//! the counters. Read by all; written only through atomics and the catalog.

use super::catalog::SharedCatalog;
use super::config::ServerConfig;
use super::dir_lock;
use super::mailbox::{Mailbox, Wake};
use super::message::{Message, Origin, Reply};
use crate::io::EventFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a thread outside the shards waits before retrying a full ring.
const EXTERNAL_RING_RETRY: Duration = Duration::from_millis(1);

impl Wake for EventFd {
    fn wake(&self) {
        self.signal();
    }
}

/// Counters shared by every shard (read by tests and, later, metrics).
#[derive(Debug, Default)]
pub struct ServerCounters {
    /// Times a sender found a cross-shard ring full and had to wait.
    pub ring_full_waits: AtomicU64,
    /// Requests forwarded to another shard.
    pub forwarded_requests: AtomicU64,
    /// Idempotent batches recognised as retries and not appended again.
    pub duplicate_batches: AtomicU64,
    /// Records a share group moved to its dead-letter topic.
    pub dead_letters: AtomicU64,
    pub produce_records: AtomicU64,
    pub produce_bytes: AtomicU64,
    pub fetch_records: AtomicU64,
    pub fetch_bytes: AtomicU64,
    /// Fetches an in-process reader served from a partition's tail ring,
    /// without a round trip through the shard.
    pub follower_fetches: AtomicU64,
    /// Batch bytes fetches sent from a mapping of the segment (no copy into a
    /// buffer of the broker's).
    pub fetch_mapped_bytes: AtomicU64,
    /// Connections refused because the broker served `max_connections`.
    pub refused_connections: AtomicU64,
    /// TLS connections that ended on a TLS failure (a refused certificate,
    /// a failed handshake, a record that did not decrypt, plain bytes).
    pub tls_failures: AtomicU64,
    /// Duration of every group-commit flush round (its fdatasyncs).
    pub fsync_rounds: Arc<crate::metrics::LatencyHistogram>,
    /// Produce requests from a network front end: start to acknowledgement,
    /// per partition entry (acks none included: start to the append).
    pub produce_latency: crate::metrics::LatencyHistogram,
}

pub(crate) type ShardMailbox = Mailbox<Message, EventFd>;

/// State every shard thread shares.
pub(crate) struct Shared {
    pub config: ServerConfig,
    pub catalog: SharedCatalog,
    pub security: crate::security::SharedSecurity,
    /// TLS on every listener (`None`: plain TCP).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub mailboxes: Vec<ShardMailbox>,
    pub shard_ports: Vec<u16>,
    /// Host and port the Kafka listener's Metadata reports (`None`: no
    /// Kafka listener).
    pub kafka_advertised: Option<(String, u16)>,
    pub counters: ServerCounters,
    pub shutdown_requested: AtomicBool,
    pub drained_shards: AtomicUsize,
    /// Set once the shards are gone: posts from outside the shards are refused.
    pub closed: AtomicBool,
    /// Posts from outside the shards in progress (see [`Shared::post_external`]).
    pub external_posts: AtomicUsize,
    /// Client connections open now, on every shard and both listeners.
    pub open_connections: AtomicUsize,
    /// The data directory's lock, held until every shard thread has ended (so
    /// a handle dropped without shutdown keeps it while its shards still run).
    pub dir_lock: std::sync::Mutex<Option<dir_lock::DataDirLock>>,
}

impl Shared {
    /// Counts a new connection in, unless `max_connections` are open.
    pub(crate) fn open_connection(&self) -> bool {
        let limit = self.config.max_connections;
        self.open_connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| (open < limit).then_some(open + 1))
            .is_ok()
    }

    pub(crate) fn close_connection(&self) {
        self.open_connections.fetch_sub(1, Ordering::AcqRel);
    }

    /// Posts a request from a thread that is not a shard (the embedded client).
    /// Returns false once the broker is closed: nobody would answer. A post is
    /// either refused or lands before the closing drain, which answers it (the
    /// counter and the flag form a handshake; see [`ServerHandle::shutdown`]).
    pub(crate) fn post_external(&self, shard: u16, message: Message) -> bool {
        self.external_posts.fetch_add(1, Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) {
            self.external_posts.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        self.post_blocking(shard, message);
        self.external_posts.fetch_sub(1, Ordering::SeqCst);
        true
    }

    /// Answers whatever is left in the rings once the shards are gone, so no
    /// external caller waits forever.
    pub(crate) fn drain_after_close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        while self.external_posts.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
        for mailbox in &self.mailboxes {
            while let Some(message) = mailbox.pop() {
                if let Message::Request { origin: Origin::External(completion), .. } = message {
                    completion.complete(Reply::Failed(crate::protocol::ErrorCode::ShuttingDown));
                }
            }
        }
    }

    /// Puts a message into a shard's ring from a thread that is not a shard.
    pub(crate) fn post_blocking(&self, shard: u16, mut message: Message) {
        loop {
            match self.mailboxes[shard as usize].try_push(message) {
                Ok(()) => return,
                Err(back) => {
                    message = back;
                    std::thread::sleep(EXTERNAL_RING_RETRY);
                }
            }
        }
    }
}
