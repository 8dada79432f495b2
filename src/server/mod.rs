//! The broker: `N` shard threads, each pinned to a core and running one io_uring
//! runtime that owns its partitions, their files, its group commit and its
//! connections (DESIGN.md §2).
//!
//! - [`catalog`]: topics and the data directory's metadata, shared by all shards.
//! - [`mailbox`]: the lock-free cross-shard ring with its sleeping/awake wake-up.
//! - `shard`: one shard's state and the operations it runs for its partitions.
//! - `dispatch`: decodes a request frame and routes it (locally or through a ring).
//! - `connection`: reads frames, keeps requests in order, writes responses.

pub mod catalog;
pub mod completion;
mod connection;
pub mod coordinator;
pub mod dir_lock;
mod dispatch;
pub mod mailbox;
pub(crate) mod shard;
pub(crate) mod share;
mod stats;

use crate::io::{self, EventFd};
use crate::log::{LogConfig, INDEX_INTERVAL_BYTES_DEFAULT, SEGMENT_BYTES_DEFAULT};
use catalog::SharedCatalog;
use mailbox::{Mailbox, Wake, MAILBOX_CAPACITY};
use shard::Message;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

/// Address the server listens on when none is given: loopback only.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:9400";
/// Data directory when none is given.
pub const DATA_DIR_DEFAULT: &str = "./ringmq-data";
/// Most shards a server runs (shard ids are u16 on the wire; 256 is plenty).
pub const SHARDS_MAX: u16 = 256;
/// How often each shard applies retention (Kafka's log.retention.check.interval.ms).
pub const RETENTION_CHECK_INTERVAL_MS_DEFAULT: u64 = 300_000;
/// How long an empty consumer group without committed offsets stays listed:
/// Kafka's `offsets.retention.check.interval.ms`, the pass that removes such a
/// group there.
pub const EMPTY_GROUP_RETENTION_MS_DEFAULT: u64 = 600_000;
/// Longest a graceful shutdown waits for connections to finish their requests.
pub const SHUTDOWN_DRAIN_MS: u64 = 10_000;

/// Why a server (or an embedded broker) did not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// Another broker holds the data directory's lock (see [`dir_lock`]).
    Locked { data_dir: PathBuf, holder_pid: Option<u32> },
    /// Anything else: io_uring missing, a refused configuration or data
    /// directory, a port in use; the message says which and what to do.
    Refused(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Locked { data_dir, holder_pid } => {
                let held = dir_lock::LockError::Held { data_dir: data_dir.clone(), holder_pid: *holder_pid };
                held.fmt(f)
            }
            StartError::Refused(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for StartError {}

impl From<String> for StartError {
    fn from(message: String) -> Self {
        StartError::Refused(message)
    }
}

impl From<&str> for StartError {
    fn from(message: &str) -> Self {
        StartError::Refused(message.to_owned())
    }
}

impl From<dir_lock::LockError> for StartError {
    fn from(error: dir_lock::LockError) -> Self {
        match error {
            dir_lock::LockError::Held { data_dir, holder_pid } => StartError::Locked { data_dir, holder_pid },
            other => StartError::Refused(other.to_string()),
        }
    }
}

/// Settings of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    /// `None`: no TCP at all (the embedded broker).
    pub listen: Option<SocketAddr>,
    pub shards: u16,
    /// Also sync `acks=written` data this often (off by default).
    pub flush_interval_ms: Option<u64>,
    pub segment_bytes: u64,
    pub segment_ms: Option<u64>,
    pub index_interval_bytes: u64,
    /// Defaults for topics created without their own retention.
    pub retention_ms: Option<u64>,
    pub retention_bytes: Option<u64>,
    pub retention_check_interval_ms: u64,
    /// Capacity of each cross-shard ring (tests shrink it to exercise backpressure).
    pub mailbox_capacity: usize,
    /// Pin shard threads to cores.
    pub pin_threads: bool,
    /// Shards spin on their rings (up to `BUSY_POLL_SPIN` at a time) and embedded
    /// clients spin on their completions instead of sleeping: lower latency for
    /// pinned deployments, at the price of burning the cores.
    pub busy_poll: bool,
    /// Serve Prometheus metrics at `http://ADDRESS/metrics` (off by default).
    pub metrics_listen: Option<SocketAddr>,
    /// How long a consumer group with no members and no committed offsets
    /// stays listed (Empty) before it is forgotten. A group with committed
    /// offsets is kept until they are gone.
    pub empty_group_retention_ms: u64,
}

impl ServerConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            data_dir: data_dir.into(),
            listen: Some(LISTEN_DEFAULT.parse().expect("the default address parses")),
            shards: available_cores(),
            flush_interval_ms: None,
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            segment_ms: Some(crate::log::SEGMENT_MS_DEFAULT),
            index_interval_bytes: INDEX_INTERVAL_BYTES_DEFAULT,
            retention_ms: Some(crate::log::RETENTION_MS_DEFAULT),
            retention_bytes: None,
            retention_check_interval_ms: RETENTION_CHECK_INTERVAL_MS_DEFAULT,
            mailbox_capacity: MAILBOX_CAPACITY,
            pin_threads: true,
            busy_poll: false,
            metrics_listen: None,
            empty_group_retention_ms: EMPTY_GROUP_RETENTION_MS_DEFAULT,
        }
    }

    pub(crate) fn log_config(&self, topic: &catalog::TopicConfig) -> LogConfig {
        LogConfig {
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            index_interval_bytes: self.index_interval_bytes,
            retention_ms: topic.retention_ms,
            retention_bytes: topic.retention_bytes,
        }
    }
}

/// The cores this process may run on.
pub fn available_cores() -> u16 {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(SHARDS_MAX as usize) as u16)
}

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
    pub produce_records: AtomicU64,
    pub produce_bytes: AtomicU64,
    pub fetch_records: AtomicU64,
    pub fetch_bytes: AtomicU64,
    /// Duration of every group-commit flush round (its fdatasyncs).
    pub fsync_rounds: Arc<crate::metrics::LatencyHistogram>,
}

pub(crate) type ShardMailbox = Mailbox<Message, EventFd>;

/// State every shard thread shares.
pub(crate) struct Shared {
    pub config: ServerConfig,
    pub catalog: SharedCatalog,
    pub mailboxes: Vec<ShardMailbox>,
    pub shard_ports: Vec<u16>,
    pub counters: ServerCounters,
    pub shutdown_requested: AtomicBool,
    pub drained_shards: AtomicUsize,
    /// Set once the shards are gone: posts from outside the shards are refused.
    pub closed: AtomicBool,
    /// Posts from outside the shards in progress (see [`Shared::post_external`]).
    pub external_posts: AtomicUsize,
    /// The data directory's lock, held until every shard thread has ended (so
    /// a handle dropped without shutdown keeps it while its shards still run).
    pub dir_lock: std::sync::Mutex<Option<dir_lock::DataDirLock>>,
}

impl Shared {
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
    fn drain_after_close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        while self.external_posts.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
        for mailbox in &self.mailboxes {
            while let Some(message) = mailbox.pop() {
                if let Message::Request { origin: shard::Origin::External(completion), .. } = message {
                    completion.complete(shard::Reply::Done(Err(crate::protocol::ErrorCode::ShuttingDown)));
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
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
}

/// A running server.
pub struct ServerHandle {
    address: Option<SocketAddr>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<Result<(), String>>>,
    metrics: Option<crate::metrics::MetricsServer>,
}

impl ServerHandle {
    /// The main address (every shard accepts on it).
    ///
    /// # Panics
    /// When the server was started without TCP (`listen: None`).
    pub fn address(&self) -> SocketAddr {
        self.address.expect("this server listens on TCP")
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Where `/metrics` is served, when `metrics_listen` was set.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|m| m.address())
    }

    /// Each shard's own port, by shard id.
    pub fn shard_ports(&self) -> &[u16] {
        &self.shared.shard_ports
    }

    pub fn counters(&self) -> &ServerCounters {
        &self.shared.counters
    }

    /// Stops accepting, finishes in-flight requests, syncs and closes every
    /// partition, and joins the shard threads.
    pub fn shutdown(self) -> Result<(), String> {
        if !self.shared.shutdown_requested.swap(true, Ordering::SeqCst) {
            for shard in 0..self.shared.mailboxes.len() {
                self.shared.post_blocking(shard as u16, Message::Shutdown);
            }
        }
        self.join()
    }

    /// Waits for the shard threads to end (after a shutdown), then answers any
    /// request still in their rings.
    fn join(mut self) -> Result<(), String> {
        if let Some(metrics) = self.metrics.take() {
            metrics.stop();
        }
        let mut first_error = Ok(());
        for thread in self.threads {
            let result = thread.join().unwrap_or_else(|_| Err("a shard thread panicked".into()));
            if first_error.is_ok() {
                first_error = result;
            }
        }
        self.shared.drain_after_close();
        // Every shard thread has ended: nothing writes to the directory any more.
        self.shared.dir_lock.lock().unwrap_or_else(|p| p.into_inner()).take();
        first_error
    }
}

/// How long start-up keeps retrying a port that is still in use. A killed
/// broker's sockets are released only when the kernel tears its io_uring down
/// (a pending accept holds the listener), a moment after the process is gone.
pub const BIND_RETRY_MS: u64 = 3000;

fn bind_retrying(address: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let deadline = std::time::Instant::now() + Duration::from_millis(BIND_RETRY_MS);
    loop {
        match io::bind_std(address, reuse_port) {
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Binds the listeners: the main address once per shard (SO_REUSEPORT) and one
/// port of its own per shard (main port + 1 + shard id, or ephemeral when the
/// main port is 0).
fn bind_listeners(
    config: &ServerConfig,
    listen: SocketAddr,
) -> Result<(SocketAddr, Vec<(TcpListener, TcpListener)>), String> {
    let bind_error = |address: SocketAddr, error: std::io::Error| format!("cannot listen on {address}: {error}");
    let first = bind_retrying(listen, true).map_err(|e| bind_error(listen, e))?;
    let main = first.local_addr().map_err(|e| e.to_string())?;
    let mut listeners = Vec::with_capacity(config.shards as usize);
    let mut first = Some(first);
    for shard in 0..config.shards {
        let shared = match first.take() {
            Some(listener) => listener,
            None => bind_retrying(main, true).map_err(|e| bind_error(main, e))?,
        };
        let own_port = if listen.port() == 0 {
            0
        } else {
            main.port().checked_add(1 + shard).ok_or("shard ports overflow 65535")?
        };
        let own_address = SocketAddr::new(main.ip(), own_port);
        let own = bind_retrying(own_address, false).map_err(|e| bind_error(own_address, e))?;
        listeners.push((shared, own));
    }
    Ok((main, listeners))
}

/// Pins the calling thread to `core` (modulo the cores available).
fn pin_to_core(core: usize) {
    // SAFETY: cpu_set_t is plain data, zeroed is a valid empty set; CPU_SET and
    // sched_setaffinity only touch that set and the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core % libc::CPU_SETSIZE as usize, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Starts the server: checks io_uring, opens the data directory, binds, starts
/// the shards (each recovers its partitions) and returns once all are serving.
pub fn start(config: ServerConfig) -> Result<ServerHandle, StartError> {
    if config.shards == 0 || config.shards > SHARDS_MAX {
        return Err(format!("--shards must be between 1 and {SHARDS_MAX}, got {}", config.shards).into());
    }
    io::probe_io_uring().map_err(|e| e.to_string())?;
    raise_descriptor_limit();
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("cannot create the data directory {}: {e}", config.data_dir.display()))?;
    // Before anything in the directory is read or written.
    let dir_lock = dir_lock::DataDirLock::acquire(&config.data_dir)?;
    catalog::open_meta(&config.data_dir, config.shards)?;
    let catalog = SharedCatalog::load(&config.data_dir)?;
    let (address, listeners): (Option<SocketAddr>, Vec<Option<(TcpListener, TcpListener)>>) = match config.listen {
        Some(listen) => {
            let (address, listeners) = bind_listeners(&config, listen)?;
            (Some(address), listeners.into_iter().map(Some).collect())
        }
        None => (None, (0..config.shards).map(|_| None).collect()),
    };
    let shard_ports = listeners
        .iter()
        .map(|pair| pair.as_ref().and_then(|(_, own)| own.local_addr().ok()).map_or(0, |a| a.port()))
        .collect();
    let mut mailboxes = Vec::with_capacity(config.shards as usize);
    for _ in 0..config.shards {
        let eventfd = EventFd::new().map_err(|e| format!("cannot create an eventfd: {e}"))?;
        mailboxes.push(Mailbox::new(config.mailbox_capacity.max(1), eventfd));
    }
    let shared = Arc::new(Shared {
        config,
        catalog,
        mailboxes,
        shard_ports,
        counters: ServerCounters::default(),
        shutdown_requested: AtomicBool::new(false),
        drained_shards: AtomicUsize::new(0),
        closed: AtomicBool::new(false),
        external_posts: AtomicUsize::new(0),
        dir_lock: std::sync::Mutex::new(Some(dir_lock)),
    });
    let (ready_sender, ready) = mpsc::channel();
    let mut threads = Vec::new();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (shard, listeners) in listeners.into_iter().enumerate() {
        let (shared, ready) = (shared.clone(), ready_sender.clone());
        let thread = std::thread::Builder::new()
            .name(format!("ringmq-shard-{shard}"))
            .spawn(move || {
                if shared.config.pin_threads {
                    pin_to_core(shard % cores);
                }
                shard::run(shard as u16, shared, listeners, ready)
            })
            .map_err(|e| format!("cannot start a shard thread: {e}"))?;
        threads.push(thread);
    }
    drop(ready_sender);
    let mut handle = ServerHandle { address, shared, threads, metrics: None };
    for _ in 0..handle.threads.len() {
        match ready.recv() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                let _ = handle.shutdown();
                return Err(error.into());
            }
            Err(_) => {
                let error = handle.shutdown().err().unwrap_or_else(|| "a shard stopped during start-up".into());
                return Err(error.into());
            }
        }
    }
    if let Some(listen) = handle.shared.config.metrics_listen {
        let shared = handle.shared.clone();
        match crate::metrics::MetricsServer::start(listen, Box::new(move || stats::render(&shared))) {
            Ok(metrics) => handle.metrics = Some(metrics),
            Err(error) => {
                let _ = handle.shutdown();
                return Err(format!("cannot serve metrics on {listen}: {error}").into());
            }
        }
    }
    Ok(handle)
}

/// Raises the soft limit on open descriptors to the hard limit: each partition
/// keeps its active segment open and each connection is a descriptor.
fn raise_descriptor_limit() {
    // SAFETY: getrlimit/setrlimit read and write a plain struct we own.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Blocks SIGINT and SIGTERM in the calling thread (and the threads it starts
/// later), so [`wait_for_signal`] can take them synchronously. Call before
/// [`start`].
pub fn block_shutdown_signals() {
    // SAFETY: sigset_t is plain data initialised by sigemptyset; the calls only
    // change this thread's signal mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Waits for SIGINT or SIGTERM (blocked by [`block_shutdown_signals`]) and
/// returns its number.
pub fn wait_for_signal() -> i32 {
    // SAFETY: as above; sigwait writes the received signal into `signal`.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let mut signal: libc::c_int = 0;
        libc::sigwait(&set, &mut signal);
        signal
    }
}
