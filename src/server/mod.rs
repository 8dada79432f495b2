//! The broker: `N` shard threads, each pinned to a core and running one io_uring
//! runtime that owns its partitions, their files, its group commit and its
//! connections (DESIGN.md §2).
//!
//! The files form layers with no cycle (docs/ARCHITECTURE.md): `message`
//! (the service's `Op` and `Reply`) at the bottom; `partitions`, `handle`
//! (a shard's routing and submit), `service` (where each op runs, the compound
//! ops), `coordinator` and `share` (group state) above it; `dispatch` and
//! `connection` (the native protocol's front end); `shard` (the runner that
//! executes every op on its room) at the top, started from here.
//!
//! - [`catalog`]: topics and the data directory's metadata, shared by all shards.
//! - [`mailbox`]: the lock-free cross-shard ring with its sleeping/awake wake-up.

pub mod catalog;
pub mod completion;
pub mod config;
mod connection;
pub mod coordinator;
pub mod dir_lock;
mod dispatch;
pub mod error;
pub(crate) mod handle;
mod kafka;
pub mod mailbox;
pub(crate) mod message;
pub(crate) mod partitions;
pub(crate) mod service;
pub(crate) mod session;
pub(crate) mod shard;
pub(crate) mod share;
pub(crate) mod shared;
mod stats;
pub mod tail_ring;

pub use config::{
    available_cores, ConfigFile, KafkaConfig, ServerConfig, CONNECTIONS_MAX_DEFAULT, DATA_DIR_DEFAULT,
    EMPTY_GROUP_RETENTION_MS_DEFAULT, KAFKA_DEFAULT_PARTITIONS, KAFKA_LISTEN_DEFAULT, LISTEN_DEFAULT,
    RETENTION_CHECK_INTERVAL_MS_DEFAULT, SHARDS_MAX, SHUTDOWN_DRAIN_MS,
};
pub use error::{ShardError, StartError, StateError};
pub use shared::ServerCounters;
pub(crate) use shared::Shared;

use crate::io::{self, EventFd};
use catalog::SharedCatalog;
pub(crate) use connection::Protocol;
use mailbox::Mailbox;
use message::Message;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

/// A running server.
pub struct ServerHandle {
    address: Option<SocketAddr>,
    kafka_address: Option<SocketAddr>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<Result<(), ShardError>>>,
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

    /// Where the Kafka listener accepts, when `kafka.listen` was set.
    pub fn kafka_address(&self) -> Option<SocketAddr> {
        self.kafka_address
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
    pub fn shutdown(self) -> Result<(), ShardError> {
        if !self.shared.shutdown_requested.swap(true, Ordering::SeqCst) {
            for shard in 0..self.shared.mailboxes.len() {
                self.shared.post_blocking(shard as u16, Message::Shutdown);
            }
        }
        self.join()
    }

    /// Waits for the shard threads to end (after a shutdown), then answers any
    /// request still in their rings.
    fn join(mut self) -> Result<(), ShardError> {
        if let Some(metrics) = self.metrics.take() {
            metrics.stop();
        }
        let mut first_error = Ok(());
        for (shard, thread) in self.threads.into_iter().enumerate() {
            let result = thread.join().unwrap_or(Err(ShardError::Panicked { shard: shard as u16 }));
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
/// How often start-up retries a port still in use.
const BIND_RETRY_POLL: Duration = Duration::from_millis(20);

/// Waits until no other socket listens on `address`, then binds it as a
/// group of SO_REUSEPORT listeners may. A killed broker's listener outlives
/// it for a moment (above), and with SO_REUSEPORT a new bind would join it:
/// connections the kernel hands to the dying socket are then refused after
/// this broker said it listens (seen as "connection refused" right after a
/// restart in the kill -9 loop). A plain bind is refused while that socket
/// lives, so it is the wait; it is closed again before the group binds.
fn bind_reuse_port_group_member(address: SocketAddr) -> std::io::Result<TcpListener> {
    if address.port() != 0 {
        drop(bind_retrying(address, false)?);
    }
    bind_retrying(address, true)
}

fn bind_retrying(address: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let deadline = std::time::Instant::now() + Duration::from_millis(BIND_RETRY_MS);
    loop {
        match io::bind_std(address, reuse_port) {
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse && std::time::Instant::now() < deadline => {
                std::thread::sleep(BIND_RETRY_POLL);
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
) -> Result<(SocketAddr, Vec<(TcpListener, TcpListener)>), StartError> {
    let bind_error = |address: SocketAddr, error| StartError::io(format!("cannot listen on {address}"), error);
    let first = bind_reuse_port_group_member(listen).map_err(|e| bind_error(listen, e))?;
    let main = first.local_addr().map_err(|e| bind_error(listen, e))?;
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

/// A shard's listeners and the protocol each speaks.
pub(crate) type ShardListeners = Vec<(TcpListener, Protocol)>;

/// Binds `address` once per shard (SO_REUSEPORT): the Kafka listener.
fn bind_shared(shards: u16, listen: SocketAddr) -> Result<(SocketAddr, Vec<TcpListener>), StartError> {
    let bind_error = |address: SocketAddr, error| StartError::io(format!("cannot listen on {address}"), error);
    let first = bind_reuse_port_group_member(listen).map_err(|e| bind_error(listen, e))?;
    let address = first.local_addr().map_err(|e| bind_error(listen, e))?;
    let mut listeners = vec![first];
    for _ in 1..shards {
        listeners.push(bind_retrying(address, true).map_err(|e| bind_error(address, e))?);
    }
    Ok((address, listeners))
}

/// The host and port Kafka clients are told to connect to: `advertise`
/// (`HOST` or `HOST:PORT`, the port defaulting to the listener's) or the
/// listener's own address. An unspecified address (0.0.0.0) can't be
/// advertised: clients would connect to themselves.
fn kafka_advertised(advertise: Option<&str>, bound: SocketAddr) -> Result<(String, u16), StartError> {
    let Some(advertise) = advertise else {
        if bound.ip().is_unspecified() {
            return Err(format!(
                "the Kafka listener {bound} binds every address: give --kafka-advertise HOST[:PORT] for clients"
            )
            .into());
        }
        return Ok((bound.ip().to_string(), bound.port()));
    };
    match advertise.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.ends_with(':') => {
            let port = port.parse::<u16>().map_err(|_| format!("--kafka-advertise {advertise}: bad port"))?;
            Ok((host.trim_start_matches('[').trim_end_matches(']').to_string(), port))
        }
        _ if !advertise.is_empty() => Ok((advertise.to_string(), bound.port())),
        _ => Err("--kafka-advertise is empty".to_string().into()),
    }
}

/// The CPUs this process may run on, in order: its affinity mask, which is
/// a container's cpuset or a `taskset` (empty if it cannot be read).
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data, zeroed is a valid empty set;
    // sched_getaffinity writes at most its size into it, and CPU_ISSET only
    // reads it, for indices below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&cpu| libc::CPU_ISSET(cpu, &set)).collect()
    }
}

/// Pins the calling thread to `cpu`.
fn pin_to_cpu(cpu: usize) {
    // SAFETY: cpu_set_t is plain data, zeroed is a valid empty set; CPU_SET and
    // sched_setaffinity only touch that set and the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu % libc::CPU_SETSIZE as usize, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Starts the server: checks io_uring, opens the data directory, binds, starts
/// the shards (each recovers its partitions) and returns once all are serving.
/// Loads the users and ACLs, and creates the bootstrap user if it is new.
fn open_security(config: &ServerConfig) -> Result<crate::security::SharedSecurity, StartError> {
    use crate::security::{self, scram};
    let shared = security::SharedSecurity::load(&config.data_dir).map_err(StartError::Refused)?;
    if let Some((name, password)) = &config.security.bootstrap_user {
        if !shared.snapshot().users.contains_key(name) {
            let credential =
                scram::Credential::new(password, scram::ITERATIONS_DEFAULT).map_err(StartError::Refused)?;
            shared
                .update(|s| security::upsert_user(s, name, credential))
                .map_err(|e| StartError::Refused(format!("cannot create the bootstrap user {name}: {e}")))?;
        }
    }
    Ok(shared)
}

pub fn start(config: ServerConfig) -> Result<ServerHandle, StartError> {
    if config.shards == 0 || config.shards > SHARDS_MAX {
        return Err(format!("--shards must be between 1 and {SHARDS_MAX}, got {}", config.shards).into());
    }
    io::probe_io_uring().map_err(StartError::NoIoUring)?;
    raise_descriptor_limit();
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| StartError::io(format!("cannot create the data directory {}", config.data_dir.display()), e))?;
    // Before anything in the directory is read or written.
    let dir_lock = dir_lock::DataDirLock::acquire(&config.data_dir)?;
    catalog::open_meta(&config.data_dir, config.shards)?;
    let catalog = SharedCatalog::load(&config.data_dir)?;
    let security = open_security(&config)?;
    let tls = match &config.security.tls {
        Some(tls) => Some(tls.load().map_err(StartError::Refused)?),
        None => None,
    };
    let (address, native): (Option<SocketAddr>, Vec<Option<(TcpListener, TcpListener)>>) = match config.listen {
        Some(listen) => {
            let (address, listeners) = bind_listeners(&config, listen)?;
            (Some(address), listeners.into_iter().map(Some).collect())
        }
        None => (None, (0..config.shards).map(|_| None).collect()),
    };
    let shard_ports = native
        .iter()
        .map(|pair| pair.as_ref().and_then(|(_, own)| own.local_addr().ok()).map_or(0, |a| a.port()))
        .collect();
    let (kafka_address, kafka_advertised, kafka) = match config.kafka.listen {
        Some(listen) => {
            let (address, listeners) = bind_shared(config.shards, listen)?;
            (Some(address), Some(kafka_advertised(config.kafka.advertise.as_deref(), address)?), listeners)
        }
        None => (None, None, Vec::new()),
    };
    let mut kafka = kafka.into_iter();
    let listeners: Vec<ShardListeners> = native
        .into_iter()
        .map(|pair| {
            let mut listeners: ShardListeners = Vec::new();
            if let Some((main, own)) = pair {
                listeners.push((main, Protocol::Native));
                listeners.push((own, Protocol::Native));
            }
            if let Some(listener) = kafka.next() {
                listeners.push((listener, Protocol::Kafka));
            }
            listeners
        })
        .collect();
    let shared = Arc::new(Shared {
        mailboxes: mailboxes(&config)?,
        config,
        catalog,
        security,
        tls,
        shard_ports,
        kafka_advertised,
        counters: ServerCounters::default(),
        shutdown_requested: AtomicBool::new(false),
        drained_shards: AtomicUsize::new(0),
        closed: AtomicBool::new(false),
        external_posts: AtomicUsize::new(0),
        open_connections: AtomicUsize::new(0),
        dir_lock: std::sync::Mutex::new(Some(dir_lock)),
    });
    let (ready_sender, ready) = mpsc::channel();
    let threads = spawn_shards(&shared, listeners, ready_sender)?;
    let mut handle = wait_until_ready(ServerHandle { address, kafka_address, shared, threads, metrics: None }, &ready)?;
    if let Some(listen) = handle.shared.config.metrics_listen {
        let shared = handle.shared.clone();
        match crate::metrics::MetricsServer::start(listen, Box::new(move || stats::render(&shared))) {
            Ok(metrics) => handle.metrics = Some(metrics),
            Err(error) => {
                let _ = handle.shutdown();
                return Err(StartError::io(format!("cannot serve metrics on {listen}"), error));
            }
        }
    }
    Ok(handle)
}

/// One mailbox (ring and eventfd) per shard.
fn mailboxes(config: &ServerConfig) -> Result<Vec<shared::ShardMailbox>, StartError> {
    (0..config.shards)
        .map(|_| {
            let eventfd = EventFd::new().map_err(|e| StartError::io("cannot create an eventfd", e))?;
            Ok(Mailbox::new(config.mailbox_capacity.max(1), eventfd))
        })
        .collect()
}

/// Starts one thread per shard (pinned to a core when configured), each
/// reporting on `ready` once it has recovered its state, or why it could not.
fn spawn_shards(
    shared: &Arc<Shared>,
    listeners: Vec<ShardListeners>,
    ready: mpsc::Sender<Result<(), ShardError>>,
) -> Result<Vec<std::thread::JoinHandle<Result<(), ShardError>>>, StartError> {
    // Shard i takes the i-th CPU the process may use (so in a container
    // limited to CPUs 4-5, shards go to 4 and 5, not to 0 and 1).
    let cpus = allowed_cpus();
    let mut threads = Vec::with_capacity(listeners.len());
    for (shard, listeners) in listeners.into_iter().enumerate() {
        let (shared, ready) = (shared.clone(), ready.clone());
        let cpu = cpus.get(shard % cpus.len().max(1)).copied();
        let thread = std::thread::Builder::new()
            .name(format!("ringmq-shard-{shard}"))
            .spawn(move || {
                if let (true, Some(cpu)) = (shared.config.pin_threads, cpu) {
                    pin_to_cpu(cpu);
                }
                shard::run(shard as u16, shared, listeners, ready)
            })
            .map_err(|e| StartError::io("cannot start a shard thread", e))?;
        threads.push(thread);
    }
    Ok(threads)
}

/// Waits for every shard's recovery; on the first failure stops the others
/// and returns it.
fn wait_until_ready(
    handle: ServerHandle,
    ready: &mpsc::Receiver<Result<(), ShardError>>,
) -> Result<ServerHandle, StartError> {
    for _ in 0..handle.threads.len() {
        match ready.recv() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                let _ = handle.shutdown();
                return Err(error.into());
            }
            Err(_) => {
                return Err(match handle.shutdown() {
                    Err(error) => error.into(),
                    Ok(()) => StartError::Refused("a shard stopped during start-up".into()),
                });
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
