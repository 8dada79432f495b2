//! The Rust client: blocking, thread-per-connection, no runtime needed, so the
//! CLI, the benchmark, the C ABI and tests can all use it.
//!
//! - [`Connection`]: one TCP connection speaking the native protocol, with
//!   pipelining (send many frames, then read their responses in order).
//! - [`Client`]: learns the metadata, and sends each partition's requests straight
//!   to its owning shard's own port.
//! - [`Producer`]: a batching producer: records are gathered per partition into
//!   RecordBatch v2 batches by size and linger time (like Kafka's producer) on a
//!   background thread; keyed records are placed with Kafka's murmur2 partitioner.
//! - [`Fetcher`]: follows one partition from an offset.
//! - [`Transport`]: what every piece above the connection (producer, group and
//!   share consumers, the C ABI) needs from a broker; `Client` implements it
//!   over TCP, the embedded client in process.
//! - [`idempotent`]: the one retry loop of idempotent produce.
//! - [`sender`]: whole-batch produce (partitioner, idempotence), and a queue of
//!   them for callers that must not wait (the C ABI's asynchronous produce).

pub mod format;
pub mod group;
pub mod idempotent;
mod partitioner;
mod producer;
pub mod sender;
pub mod share;
pub mod socket;
pub mod transport;

pub use crate::security::tls::ClientTls;
pub use partitioner::{murmur2, partition_for_key};
pub use producer::{Producer, ProducerConfig, ProducerReport};
pub use socket::Socket;
pub use transport::Transport;

use crate::batch::{self, Batch};
use crate::log::Acks;
use crate::protocol::fetch::{FetchRequest, FetchResponse};
use crate::protocol::hello::{HelloRequest, HelloResponse};
use crate::protocol::metadata::{MetadataRequest, MetadataResponse, TopicMetadata};
use crate::protocol::offsets::{ListOffsetsRequest, ListOffsetsResponse, QUERY_EARLIEST, QUERY_LATEST};
use crate::protocol::produce::{ProduceRequest, ProduceResponse};
use crate::protocol::producer_id::{InitProducerIdRequest, InitProducerIdResponse};
use crate::protocol::topic::{CreateTopicRequest, DeleteTopicRequest, RETENTION_DEFAULT, RETENTION_UNLIMITED};
use crate::protocol::{self, api, ErrorCode, ResponseHeader};
use crate::security::tls::ClientTlsConfig;
use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

pub use socket::CONNECT_TIMEOUT;

/// Errors of the client.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    Io(io::Error),
    /// The server answered with an error code.
    Server {
        code: u16,
        context: String,
    },
    /// The server's bytes could not be decoded.
    Protocol(String),
    /// A topic or partition the metadata does not know.
    UnknownTopic(String),
    InvalidArgument(String),
    /// TLS failed: a certificate one side refused, a handshake that could not
    /// agree, or the TLS settings themselves (a file that does not load).
    Tls(String),
}

impl ClientError {
    /// The server's error code, if this is a server error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => ErrorCode::from_u16(*code),
            _ => None,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(error) => write!(f, "connection error: {error}"),
            ClientError::Server { code, context } => match ErrorCode::from_u16(*code) {
                Some(known) => write!(f, "{context}: server error {known}"),
                None => write!(f, "{context}: server error code {code}"),
            },
            ClientError::Protocol(message) => write!(f, "protocol error: {message}"),
            ClientError::UnknownTopic(message) => write!(f, "unknown topic or partition: {message}"),
            ClientError::InvalidArgument(message) => write!(f, "invalid argument: {message}"),
            ClientError::Tls(message) => write!(f, "TLS: {message}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(error: io::Error) -> Self {
        match socket::tls_failure(&error) {
            Some(failure) => ClientError::Tls(failure.to_string()),
            None => ClientError::Io(error),
        }
    }
}

impl From<protocol::DecodeError> for ClientError {
    fn from(error: protocol::DecodeError) -> Self {
        ClientError::Protocol(error.to_string())
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

fn server_error(code: u16, context: impl Into<String>) -> ClientError {
    ClientError::Server { code, context: context.into() }
}

/// Whether an error answering a produce proves the batch was not appended, so
/// an idempotent producer may use its sequence numbers again. After any other
/// error (a failed fsync, a shutdown, a lost connection) the batch may be in
/// the log: the producer takes a new producer id instead. (CorruptBatch is not
/// proof: it also answers a damaged resend of a batch that was appended.)
pub fn proves_not_appended(error: &ClientError) -> bool {
    matches!(
        error.code(),
        Some(
            ErrorCode::NoSpace | ErrorCode::TooLarge | ErrorCode::UnknownTopicOrPartition | ErrorCode::InvalidArgument
        )
    ) || matches!(error, ClientError::UnknownTopic(_) | ClientError::InvalidArgument(_))
}

/// One connection to one shard.
pub struct Connection {
    stream: Socket,
    next_correlation_id: u32,
    /// Correlation ids sent and not yet answered, oldest first.
    outstanding: std::collections::VecDeque<u32>,
    /// Bytes of the next response frame read so far: a read with a deadline
    /// ([`Connection::receive_within`]) may stop in the middle of a frame.
    partial: Vec<u8>,
    /// Bytes of `partial` read so far (the rest of it is zeroed space).
    filled: usize,
    /// The read timeout the owner set ([`Connection::set_read_timeout`]).
    read_timeout: Option<Duration>,
}

/// A user's name and password, and how to prove them (docs/SECURITY.md).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    /// `SCRAM-SHA-256` (default: the password never crosses the wire) or `PLAIN`.
    pub mechanism: String,
}

impl Credentials {
    pub fn scram(user: &str, password: &str) -> Credentials {
        Credentials {
            user: user.to_owned(),
            password: password.to_owned(),
            mechanism: crate::security::scram::SCRAM_SHA_256.to_owned(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).field("mechanism", &self.mechanism).finish()
    }
}

/// How a client reaches a server beyond its address: TLS and credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Every connection authenticates with these, when given.
    pub credentials: Option<Credentials>,
    /// Every connection speaks TLS, when given.
    pub tls: Option<ClientTls>,
}

impl Connection {
    /// Connects and, with credentials, authenticates before anything else.
    pub fn connect_as(address: SocketAddr, credentials: Option<&Credentials>) -> Result<Connection> {
        Connection::open(address, None, credentials)
    }

    /// Connects (with TLS when `tls` is given: the handshake completes
    /// here) and, with credentials, authenticates before anything else.
    pub fn open(
        address: SocketAddr,
        tls: Option<&ClientTlsConfig>,
        credentials: Option<&Credentials>,
    ) -> Result<Connection> {
        let mut connection = Connection::from_socket(Socket::connect(address, tls)?);
        if let Some(credentials) = credentials {
            connection.authenticate(credentials)?;
        }
        Ok(connection)
    }

    /// Runs the SASL exchange (AUTHENTICATE) on this connection. A refused
    /// one is `Server { code: AuthenticationFailed }`; the server then closes it.
    pub fn authenticate(&mut self, credentials: &Credentials) -> Result<()> {
        use crate::protocol::security::{AuthenticateRequest, AuthenticateResponse};
        use crate::security::scram;
        let context = format!("authenticating as {}", credentials.user);
        let mechanism = credentials.mechanism.clone();
        let mut step = |message: Vec<u8>| -> Result<AuthenticateResponse> {
            let request = AuthenticateRequest { mechanism: mechanism.clone(), message };
            let body = self.call(&context, |id| request.encode(id))?;
            Ok(AuthenticateResponse::decode(&body)?)
        };
        let protocol = |message: String| ClientError::Protocol(message);
        match credentials.mechanism.as_str() {
            scram::PLAIN => match step(scram::plain_message(&credentials.user, &credentials.password))? {
                AuthenticateResponse { done: true, .. } => Ok(()),
                _ => Err(protocol("the server did not finish a PLAIN exchange in one step".into())),
            },
            scram::SCRAM_SHA_256 => {
                let mut client = scram::ScramClient::new(&credentials.user, &credentials.password).map_err(protocol)?;
                let first = step(client.client_first())?;
                if first.done {
                    return Err(protocol("the server ended the SCRAM exchange after one step".into()));
                }
                let last = client.client_final(&first.message).map_err(protocol)?;
                let answer = step(last)?;
                if !answer.done {
                    return Err(protocol("the server did not finish the SCRAM exchange".into()));
                }
                client.verify_server_final(&answer.message).map_err(protocol)
            }
            other => Err(ClientError::InvalidArgument(format!(
                "unknown mechanism {other}: use {} or {}",
                scram::SCRAM_SHA_256,
                scram::PLAIN
            ))),
        }
    }

    pub fn connect(address: SocketAddr) -> Result<Connection> {
        Ok(Connection::from_socket(Socket::connect(address, None)?))
    }

    fn from_socket(stream: Socket) -> Connection {
        Connection {
            stream,
            next_correlation_id: 0,
            outstanding: Default::default(),
            partial: Vec::new(),
            filled: 0,
            read_timeout: None,
        }
    }

    /// Sends a frame built by `encode(correlation_id)`; returns the id.
    pub fn send(&mut self, encode: impl FnOnce(u32) -> Vec<u8>) -> Result<u32> {
        let id = self.next_correlation_id;
        self.next_correlation_id = id.wrapping_add(1);
        self.send_raw(&encode(id))?;
        self.outstanding.push_back(id);
        Ok(id)
    }

    /// Sends bytes as they are (tests use it for malformed frames).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// Reads the next response frame: header and body.
    pub fn receive(&mut self) -> Result<(ResponseHeader, Vec<u8>)> {
        match self.read_frame(None)? {
            Some(frame) => self.parse_frame(frame),
            None => Err(ClientError::Io(io::Error::new(io::ErrorKind::TimedOut, "no response in time"))),
        }
    }

    /// Reads the next response frame if it arrives within `timeout`; `None`
    /// when it has not (what arrived of it is kept for the next read).
    pub fn receive_within(&mut self, timeout: Duration) -> Result<Option<(ResponseHeader, Vec<u8>)>> {
        let deadline = std::time::Instant::now() + timeout;
        let frame = self.read_frame(Some(deadline));
        self.stream.tcp().set_read_timeout(self.read_timeout)?;
        match frame? {
            Some(frame) => self.parse_frame(frame).map(Some),
            None => Ok(None),
        }
    }

    /// Reads until a whole frame (length field included) is buffered, or the
    /// deadline passes. The length is checked before anything is allocated.
    fn read_frame(&mut self, deadline: Option<std::time::Instant>) -> Result<Option<Vec<u8>>> {
        loop {
            let want =
                match self.partial.get(..protocol::LENGTH_BYTES).filter(|_| self.filled >= protocol::LENGTH_BYTES) {
                    None => protocol::LENGTH_BYTES - self.filled,
                    Some(length) => {
                        let declared = u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize;
                        if !(protocol::RESPONSE_HEADER_BYTES..=protocol::RESPONSE_BYTES_MAX).contains(&declared) {
                            // A TLS record header (alert or handshake, version 3.x).
                            if !self.stream.is_tls() && matches!(length, [0x15 | 0x16, 0x03, ..]) {
                                return Err(ClientError::Tls(
                                    "the server speaks TLS and this connection does not: connect with TLS".into(),
                                ));
                            }
                            return Err(ClientError::Protocol(format!("response length {declared} out of range")));
                        }
                        let total = protocol::LENGTH_BYTES + declared;
                        if self.filled >= total {
                            let mut frame = std::mem::take(&mut self.partial);
                            self.partial = frame.get(total..self.filled).unwrap_or_default().to_vec();
                            self.filled = self.partial.len();
                            frame.truncate(total);
                            return Ok(Some(frame));
                        }
                        total - self.filled
                    }
                };
            match deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    self.stream.tcp().set_read_timeout(Some(left))?;
                }
                None => self.stream.tcp().set_read_timeout(self.read_timeout)?,
            }
            // Zeroed once: reads that return less than asked (a TLS record
            // at a time) do not clear the rest again.
            let start = self.filled;
            if self.partial.len() < start + want {
                self.partial.resize(start + want, 0);
            }
            let read = self.stream.read(self.partial.get_mut(start..start + want).unwrap_or_default());
            self.filled = start + *read.as_ref().unwrap_or(&0);
            match read {
                Ok(0) => {
                    let error = io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection");
                    return Err(ClientError::Io(error));
                }
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error)
                    if deadline.is_some()
                        && matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// The header, and the body in the frame's own buffer (no copy into a
    /// second one: a fetch answer is up to a megabyte or more).
    fn parse_frame(&mut self, mut frame: Vec<u8>) -> Result<(ResponseHeader, Vec<u8>)> {
        let (header, body) = protocol::parse_response(&frame)?;
        let header_bytes = frame.len() - body.len();
        if let Some(expected) = self.outstanding.pop_front() {
            if expected != header.correlation_id {
                return Err(ClientError::Protocol(format!(
                    "response for request {} arrived where {expected} was expected",
                    header.correlation_id
                )));
            }
        }
        frame.drain(..header_bytes);
        Ok((header, frame))
    }

    /// Sends one request and returns its body, or the server's error.
    pub fn call(&mut self, context: &str, encode: impl FnOnce(u32) -> Vec<u8>) -> Result<Vec<u8>> {
        self.send(encode)?;
        let (header, body) = self.receive()?;
        if header.error_code != 0 {
            return Err(server_error(header.error_code, context));
        }
        Ok(body)
    }

    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.stream.tcp().set_read_timeout(timeout)?;
        self.read_timeout = timeout;
        Ok(())
    }

    /// The TCP socket, for tests that speak raw bytes (under TLS, bytes
    /// written to it directly break the session).
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        self.stream.tcp_mut()
    }

    /// A second handle on the TCP socket (e.g. a writer thread while this one
    /// reads); plain connections only, since TLS state cannot be shared.
    pub fn try_clone_stream(&self) -> Result<TcpStream> {
        if self.stream.is_tls() {
            return Err(ClientError::InvalidArgument("a TLS connection's socket cannot be cloned".into()));
        }
        Ok(self.stream.tcp().try_clone()?)
    }

    /// Whether a response has (at least partly) arrived: a zero-timeout
    /// look at the socket and at what TLS has decrypted already.
    pub fn readable(&mut self) -> bool {
        if self.filled > 0 || self.stream.buffered() {
            return true;
        }
        let stream = self.stream.tcp();
        let _ = stream.set_nonblocking(true);
        let mut byte = [0u8; 1];
        let readable = matches!(stream.peek(&mut byte), Ok(n) if n > 0);
        let _ = stream.set_nonblocking(false);
        readable
    }

    /// Reads the next response without matching it to a request sent through
    /// [`Connection::send`] (for requests written through another handle).
    pub fn receive_any(&mut self) -> Result<(ResponseHeader, Vec<u8>)> {
        let outstanding = std::mem::take(&mut self.outstanding);
        let result = self.receive();
        self.outstanding = outstanding;
        result
    }

    /// Forgets a request sent with acks 0 (it gets no response).
    fn forget_last(&mut self) {
        self.outstanding.pop_back();
    }
}

/// Retention of a new topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retention {
    /// The broker's configured default.
    #[default]
    Default,
    Unlimited,
    Limit(u64),
}

impl Retention {
    pub(crate) fn to_wire(self) -> i64 {
        match self {
            Retention::Default => RETENTION_DEFAULT,
            Retention::Unlimited => RETENTION_UNLIMITED,
            Retention::Limit(value) => value.min(i64::MAX as u64) as i64,
        }
    }
}

/// Where a [`Fetcher`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Earliest,
    Latest,
    Offset(u64),
    /// The first record at or after this timestamp (ms).
    Timestamp(i64),
}

/// Records of one fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResult {
    pub high_watermark: u64,
    pub earliest: u64,
    /// Whole batches as stored.
    pub records: Vec<u8>,
}

/// Most connections a [`Client`] keeps to one shard (and to the bootstrap
/// address). Responses come back in request order on a connection, so callers
/// in different threads each get a connection of their own, up to this many:
/// a long poll never holds up another thread's produce. Callers beyond it
/// wait for a connection to be free.
pub const CONNECTIONS_PER_SHARD_MAX: usize = 16;

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Endpoint {
    /// The address the client was given (admin and group requests).
    Bootstrap,
    /// A shard's own port (requests for the partitions it owns).
    Shard(u16),
}

/// The connections of a client: idle ones by endpoint, and how many are open.
#[derive(Default)]
struct Pool {
    idle: HashMap<Endpoint, Vec<Connection>>,
    open: HashMap<Endpoint, usize>,
    /// Raised by [`Client::reconnect`]: connections lent out before it are
    /// closed when they come back instead of being used again.
    generation: u64,
}

/// What the client knows of the server's topics and shards.
#[derive(Default)]
struct Metadata {
    shard_ports: Vec<u16>,
    topics: HashMap<String, TopicMetadata>,
}

/// A client of one server. Thread-safe: share it (`&Client`, `Arc<Client>`)
/// between threads, whose requests proceed side by side on connections of
/// their own (see [`CONNECTIONS_PER_SHARD_MAX`]).
pub struct Client {
    host: IpAddr,
    bootstrap_address: SocketAddr,
    hello: HelloResponse,
    metadata: Mutex<Metadata>,
    pool: Mutex<Pool>,
    /// Signalled when a connection is returned or closed.
    freed: Condvar,
    /// Every connection authenticates with these, when given.
    credentials: Option<Credentials>,
    /// What the client was connected with (for [`Client::options`]).
    options: ConnectOptions,
    /// The bootstrap address as given (its host is the TLS server name).
    bootstrap: String,
    /// Every connection speaks TLS with this, when given.
    tls: Option<ClientTlsConfig>,
}

/// A connection lent out by the pool; returned when dropped, or closed when
/// a call on it failed (its stream may be out of step).
struct Lease<'a> {
    client: &'a Client,
    endpoint: Endpoint,
    generation: u64,
    connection: Option<Connection>,
}

impl Lease<'_> {
    fn connection(&mut self) -> &mut Connection {
        self.connection.as_mut().expect("a lease holds its connection until dropped")
    }

    /// Closes the connection instead of returning it.
    fn discard(&mut self) {
        self.connection = None;
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut pool = lock(&self.client.pool);
        match self.connection.take() {
            Some(connection) if pool.generation == self.generation => {
                pool.idle.entry(self.endpoint).or_default().push(connection);
            }
            _ => {
                if let Some(open) = pool.open.get_mut(&self.endpoint) {
                    *open = open.saturating_sub(1);
                }
            }
        }
        drop(pool);
        self.client.freed.notify_all();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether a connection that returned `error` can still be used: a server
/// error code answered a whole frame; anything else may have left the stream
/// out of step.
fn connection_survives(error: &ClientError) -> bool {
    matches!(error, ClientError::Server { .. } | ClientError::UnknownTopic(_) | ClientError::InvalidArgument(_))
}

impl Client {
    /// Connects to `bootstrap` (`HOST:PORT`), says hello and loads the metadata.
    pub fn connect(bootstrap: &str) -> Result<Client> {
        Client::connect_as(bootstrap, None)
    }

    /// [`Client::connect`], every connection authenticating with `credentials`.
    pub fn connect_as(bootstrap: &str, credentials: Option<Credentials>) -> Result<Client> {
        Client::connect_with(bootstrap, &ConnectOptions { credentials, tls: None })
    }

    /// [`Client::connect`] with TLS and credentials as `options` say. The
    /// server's certificate must carry the bootstrap address's host (or
    /// [`ClientTls::server_name`]).
    pub fn connect_with(bootstrap: &str, options: &ConnectOptions) -> Result<Client> {
        let address = bootstrap
            .to_socket_addrs()
            .map_err(|e| ClientError::InvalidArgument(format!("cannot resolve {bootstrap}: {e}")))?
            .next()
            .ok_or_else(|| ClientError::InvalidArgument(format!("{bootstrap} resolves to no address")))?;
        let tls = match &options.tls {
            Some(tls) => {
                let host = bootstrap.rsplit_once(':').map_or(bootstrap, |(host, _)| host);
                Some(tls.load(host).map_err(ClientError::Tls)?)
            }
            None => None,
        };
        let credentials = options.credentials.clone();
        let mut connection = Connection::open(address, tls.as_ref(), credentials.as_ref())?;
        let body = connection.call("hello", |id| HelloRequest { client_name: "ringmq-rust".into() }.encode(id))?;
        let hello = HelloResponse::decode(&body)?;
        let client = Client {
            host: address.ip(),
            bootstrap_address: address,
            hello,
            metadata: Mutex::new(Metadata::default()),
            pool: Mutex::new(Pool::default()),
            freed: Condvar::new(),
            credentials,
            options: options.clone(),
            bootstrap: bootstrap.to_owned(),
            tls,
        };
        {
            let mut pool = lock(&client.pool);
            pool.open.insert(Endpoint::Bootstrap, 1);
            pool.idle.insert(Endpoint::Bootstrap, vec![connection]);
        }
        client.refresh_metadata()?;
        Ok(client)
    }

    /// The address the client was connected to.
    pub fn bootstrap_address(&self) -> SocketAddr {
        self.bootstrap_address
    }

    pub fn server_info(&self) -> &HelloResponse {
        &self.hello
    }

    /// The credentials every connection authenticates with.
    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// The bootstrap address as it was given.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// What the client was connected with (a second client made with them
    /// reaches the server the same way).
    pub fn options(&self) -> &ConnectOptions {
        &self.options
    }

    /// A new connection to `address` (one of the server's), with this
    /// client's TLS and credentials.
    pub fn connect_to(&self, address: SocketAddr) -> Result<Connection> {
        Connection::open(address, self.tls.as_ref(), self.credentials.as_ref())
    }

    /// Lends a connection to `endpoint`: an idle one, a new one while fewer
    /// than [`CONNECTIONS_PER_SHARD_MAX`] are open, or the next one returned.
    fn lease(&self, endpoint: Endpoint) -> Result<Lease<'_>> {
        let mut pool = lock(&self.pool);
        loop {
            let generation = pool.generation;
            if let Some(connection) = pool.idle.get_mut(&endpoint).and_then(Vec::pop) {
                return Ok(Lease { client: self, endpoint, generation, connection: Some(connection) });
            }
            let open = pool.open.entry(endpoint).or_default();
            if *open < CONNECTIONS_PER_SHARD_MAX {
                *open += 1;
                drop(pool);
                // From here the lease owns the slot: its drop gives it back,
                // also when connecting fails.
                let mut lease = Lease { client: self, endpoint, generation, connection: None };
                lease.connection = Some(self.connect_to(self.address_of(endpoint)?)?);
                return Ok(lease);
            }
            pool = self.freed.wait(pool).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    fn address_of(&self, endpoint: Endpoint) -> Result<SocketAddr> {
        match endpoint {
            Endpoint::Bootstrap => Ok(self.bootstrap_address),
            Endpoint::Shard(shard) => {
                let port = lock(&self.metadata).shard_ports.get(shard as usize).copied();
                let port = port.ok_or_else(|| ClientError::Protocol(format!("no port for shard {shard}")))?;
                Ok(SocketAddr::new(self.host, port))
            }
        }
    }

    /// Runs `work` on a connection to `endpoint`, which goes back to the pool
    /// unless the work failed in a way that may have broken it.
    fn on<T>(&self, endpoint: Endpoint, work: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut lease = self.lease(endpoint)?;
        let result = work(lease.connection());
        if let Err(error) = &result {
            if !connection_survives(error) {
                lease.discard();
            }
        }
        result
    }

    /// Sends one request to the bootstrap address and returns its body.
    pub(crate) fn call_bootstrap(&self, context: &str, encode: impl FnOnce(u32) -> Vec<u8>) -> Result<Vec<u8>> {
        self.on(Endpoint::Bootstrap, |connection| connection.call(context, encode))
    }

    /// Sends one request to the shard owning a partition and returns its body.
    pub(crate) fn call_owner(
        &self,
        topic: &str,
        partition: u32,
        context: &str,
        encode: impl FnOnce(u32) -> Vec<u8>,
    ) -> Result<Vec<u8>> {
        let shard = self.owner(topic, partition)?;
        self.on(Endpoint::Shard(shard), |connection| connection.call(context, encode))
    }

    /// Reloads the metadata of every topic.
    pub fn refresh_metadata(&self) -> Result<MetadataResponse> {
        let body = self.call_bootstrap("metadata", |id| MetadataRequest { topics: Vec::new() }.encode(id))?;
        let metadata = MetadataResponse::decode(&body)?;
        let mut known = lock(&self.metadata);
        known.shard_ports = metadata.shards.iter().map(|shard| shard.port).collect();
        known.topics = metadata.topics.iter().map(|topic| (topic.name.clone(), topic.clone())).collect();
        Ok(metadata)
    }

    /// The topics as last loaded.
    pub fn topics(&self) -> Vec<TopicMetadata> {
        lock(&self.metadata).topics.values().cloned().collect()
    }

    /// A topic's metadata (loaded again when the topic is not known yet).
    pub fn topic(&self, name: &str) -> Result<TopicMetadata> {
        if let Some(topic) = lock(&self.metadata).topics.get(name) {
            return Ok(topic.clone());
        }
        self.refresh_metadata()?;
        if let Some(topic) = lock(&self.metadata).topics.get(name) {
            return Ok(topic.clone());
        }
        // Not listed: unknown, or hidden by the ACLs. Asking for it by name says which.
        let asked = MetadataRequest { topics: vec![name.to_owned()] };
        let body = self.call_bootstrap("metadata", |id| asked.encode(id))?;
        match MetadataResponse::decode(&body)?.topics.into_iter().find(|t| t.name == name) {
            Some(topic) if topic.error == ErrorCode::TopicNotAuthorized as u16 => {
                Err(server_error(topic.error, format!("topic {name}")))
            }
            _ => Err(ClientError::UnknownTopic(name.into())),
        }
    }

    pub fn partition_count(&self, topic: &str) -> Result<u32> {
        Ok(self.topic(topic)?.partition_shards.len() as u32)
    }

    /// The shard owning a partition.
    fn owner(&self, topic: &str, partition: u32) -> Result<u16> {
        self.topic(topic)?
            .partition_shards
            .get(partition as usize)
            .copied()
            .ok_or_else(|| ClientError::UnknownTopic(format!("{topic}/{partition}")))
    }

    pub fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        retention_ms: Retention,
        retention_bytes: Retention,
    ) -> Result<()> {
        let request = CreateTopicRequest {
            name: name.into(),
            partitions,
            retention_ms: retention_ms.to_wire(),
            retention_bytes: retention_bytes.to_wire(),
        };
        self.call_bootstrap(&format!("create topic {name}"), |id| request.encode(id))?;
        self.refresh_metadata()?;
        Ok(())
    }

    /// Adds a user, or sets a user's password (super users only). The
    /// SCRAM credential is derived here: the password is not sent.
    pub fn upsert_user(&self, name: &str, password: &str) -> Result<()> {
        use crate::protocol::security::UserUpsertRequest;
        use crate::security::scram;
        if password.is_empty() || password.len() > scram::PASSWORD_BYTES_MAX {
            return Err(ClientError::InvalidArgument(format!(
                "a password is 1 to {} bytes",
                scram::PASSWORD_BYTES_MAX
            )));
        }
        let credential = scram::Credential::new(password, scram::ITERATIONS_DEFAULT).map_err(ClientError::Protocol)?;
        let request = UserUpsertRequest { name: name.to_owned(), credential };
        self.call_bootstrap(&format!("set user {name}"), |id| request.encode(id)).map(drop)
    }

    pub fn delete_user(&self, name: &str) -> Result<()> {
        use crate::protocol::security::encode_name_request;
        self.call_bootstrap(&format!("remove user {name}"), |id| encode_name_request(api::USER_DELETE, id, name))
            .map(drop)
    }

    pub fn list_users(&self) -> Result<Vec<String>> {
        use crate::protocol::security::{decode_user_list, encode_empty_request};
        let body = self.call_bootstrap("list users", |id| encode_empty_request(api::USER_LIST, id))?;
        Ok(decode_user_list(&body)?)
    }

    /// Adds an ACL (super users only); checked here first, so a bad one is
    /// refused with the reason.
    pub fn add_acl(&self, acl: &crate::security::Acl) -> Result<()> {
        use crate::protocol::security::encode_acl_request;
        acl.validate().map_err(ClientError::InvalidArgument)?;
        self.call_bootstrap("add ACL", |id| encode_acl_request(api::ACL_ADD, id, acl)).map(drop)
    }

    pub fn remove_acl(&self, acl: &crate::security::Acl) -> Result<()> {
        use crate::protocol::security::encode_acl_request;
        self.call_bootstrap("remove ACL", |id| encode_acl_request(api::ACL_REMOVE, id, acl)).map(drop)
    }

    pub fn list_acls(&self) -> Result<Vec<crate::security::Acl>> {
        use crate::protocol::security::{decode_acl_list, encode_empty_request};
        let body = self.call_bootstrap("list ACLs", |id| encode_empty_request(api::ACL_LIST, id))?;
        Ok(decode_acl_list(&body)?)
    }

    pub fn delete_topic(&self, name: &str) -> Result<()> {
        self.call_bootstrap(&format!("delete topic {name}"), |id| DeleteTopicRequest { name: name.into() }.encode(id))?;
        lock(&self.metadata).topics.remove(name);
        Ok(())
    }

    /// A producer id and epoch for idempotent produce: `name` "" gets a new
    /// id; a name gets its id with the epoch raised (fencing older instances).
    pub fn init_producer_id(&self, name: &str) -> Result<(i64, i16)> {
        let request = InitProducerIdRequest { name: name.into() };
        let body = self.call_bootstrap("init producer id", |id| request.encode(id))?;
        let response = InitProducerIdResponse::decode(&body)?;
        Ok((response.producer_id, response.epoch))
    }

    /// Closes every idle connection, and every lent one when it comes back,
    /// then loads the metadata again (after a connection error; requests in
    /// flight on the old connections are lost, so only idempotent batches may
    /// be resent).
    pub fn reconnect(&self) -> Result<()> {
        {
            let mut pool = lock(&self.pool);
            pool.generation += 1;
            let idle = std::mem::take(&mut pool.idle);
            for (endpoint, connections) in idle {
                if let Some(open) = pool.open.get_mut(&endpoint) {
                    *open = open.saturating_sub(connections.len());
                }
            }
        }
        self.freed.notify_all();
        self.refresh_metadata().map(drop)
    }

    pub fn list_offsets(&self, topic: &str, partition: u32, query: i64) -> Result<ListOffsetsResponse> {
        let request = ListOffsetsRequest { topic: topic.into(), partition, query };
        let context = format!("list offsets of {topic}/{partition}");
        let body = self.call_owner(topic, partition, &context, |id| request.encode(id))?;
        Ok(ListOffsetsResponse::decode(&body)?)
    }

    /// Produces one batch; returns its base offset (`None` with acks none).
    pub fn produce(&self, topic: &str, partition: u32, batch: &[u8], acks: Acks) -> Result<Option<u64>> {
        let results = self.produce_pipelined(&[(topic, partition, batch)], acks)?;
        results.into_iter().next().unwrap_or(Ok(None))
    }

    /// Produces many batches, pipelined: every request is sent before any
    /// response is read (one connection per shard involved). One result per
    /// batch, in order.
    pub fn produce_pipelined(&self, batches: &[(&str, u32, &[u8])], acks: Acks) -> Result<Vec<Result<Option<u64>>>> {
        let mut leases: HashMap<u16, Lease<'_>> = HashMap::new();
        let sent = self.send_batches(&mut leases, batches, acks);
        let results = sent.and_then(|sent| self.receive_batches(&mut leases, batches, acks, sent));
        if results.is_err() {
            // Some response may be unread: none of these connections is reused.
            leases.values_mut().for_each(Lease::discard);
        }
        results
    }

    fn send_batches<'a>(
        &'a self,
        leases: &mut HashMap<u16, Lease<'a>>,
        batches: &[(&str, u32, &[u8])],
        acks: Acks,
    ) -> Result<Vec<u16>> {
        let mut sent = Vec::with_capacity(batches.len());
        for (topic, partition, batch) in batches {
            let shard = self.owner(topic, *partition)?;
            let lease = match leases.entry(shard) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => entry.insert(self.lease(Endpoint::Shard(shard))?),
            };
            let connection = lease.connection();
            connection.send(|id| ProduceRequest::encode(id, acks, &[(topic, *partition, batch)]))?;
            if acks == Acks::None {
                connection.forget_last();
            }
            sent.push(shard);
        }
        Ok(sent)
    }

    fn receive_batches(
        &self,
        leases: &mut HashMap<u16, Lease<'_>>,
        batches: &[(&str, u32, &[u8])],
        acks: Acks,
        sent: Vec<u16>,
    ) -> Result<Vec<Result<Option<u64>>>> {
        let mut results = Vec::with_capacity(batches.len());
        for (&(topic, partition, _), shard) in batches.iter().zip(sent) {
            if acks == Acks::None {
                results.push(Ok(None));
                continue;
            }
            let lease = leases.get_mut(&shard).ok_or_else(|| ClientError::Protocol("connection vanished".into()))?;
            let (header, body) = lease.connection().receive()?;
            let context = format!("produce to {topic}/{partition}");
            if header.error_code != 0 {
                results.push(Err(server_error(header.error_code, context)));
                continue;
            }
            let response = ProduceResponse::decode(&body)?;
            results.push(match response.results.first() {
                Some(result) if result.error == 0 => Ok(Some(result.base_offset as u64)),
                Some(result) => Err(server_error(result.error, context)),
                None => Err(ClientError::Protocol("empty produce response".into())),
            });
        }
        Ok(results)
    }

    /// Fetches from a partition, waiting up to the request's `max_wait_ms`
    /// without holding up the client's other callers.
    pub fn fetch(&self, request: &FetchRequest) -> Result<FetchResult> {
        let context = format!("fetch {}/{} at {}", request.topic, request.partition, request.offset);
        let mut body = self.call_owner(&request.topic, request.partition, &context, |id| request.encode(id))?;
        let response = FetchResponse::decode(&body)?;
        let (high_watermark, earliest) = (response.high_watermark as u64, response.earliest as u64);
        // The records stay in the answer's buffer: the fields before them go.
        let records = response.records.len();
        let start = response.records.as_ptr() as usize - body.as_ptr() as usize;
        body.truncate(start + records);
        body.drain(..start);
        Ok(FetchResult { high_watermark, earliest, records: body })
    }

    /// Sends one request on a connection of its own (not the pool's) and
    /// returns without waiting for the answer: for requests the server holds
    /// for a long time (a JoinGroup until its rebalance completes).
    pub fn start(&self, context: &str, encode: impl FnOnce(u32) -> Vec<u8>) -> Result<PendingCall> {
        let mut connection = self.connect_to(self.bootstrap_address)?;
        connection.send(encode)?;
        Ok(PendingCall { connection, context: context.to_owned() })
    }
}

/// A request sent by [`Client::start`], waiting for its answer.
pub struct PendingCall {
    connection: Connection,
    context: String,
}

impl PendingCall {
    /// The answer's body if it arrives within `timeout`; `None` when it has not.
    pub fn wait(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>> {
        match self.connection.receive_within(timeout)? {
            Some((header, _)) if header.error_code != 0 => Err(server_error(header.error_code, self.context.clone())),
            Some((_, body)) => Ok(Some(body)),
            None => Ok(None),
        }
    }
}

/// One record as a consumer receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Decodes whole batches, keeping records at or after `from`.
pub fn decode_records(mut bytes: &[u8], from: u64) -> Result<Vec<ConsumedRecord>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let size = batch::batch_size(bytes)
            .map_err(|e| ClientError::Protocol(e.to_string()))?
            .ok_or_else(|| ClientError::Protocol("truncated batch".into()))?;
        let (one, rest) =
            bytes.split_at_checked(size).ok_or_else(|| ClientError::Protocol("truncated batch".into()))?;
        let batch = Batch::validate(one).map_err(|e| ClientError::Protocol(e.to_string()))?;
        // Batches Kafka producers compressed are decompressed here, for every
        // native consumer (Rust, C ABI, C++, Python, CLI).
        let section = batch.records_section().map_err(|e| ClientError::Protocol(e.to_string()))?;
        for record in batch.records_in(&section) {
            let record = record.map_err(|e| ClientError::Protocol(e.to_string()))?;
            if (record.offset as u64) < from {
                continue;
            }
            out.push(ConsumedRecord {
                offset: record.offset as u64,
                timestamp: record.timestamp,
                key: record.key.map(<[u8]>::to_vec),
                value: record.value.map(<[u8]>::to_vec),
                headers: record.headers.map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec))).collect(),
            });
        }
        bytes = rest;
    }
    Ok(out)
}

/// Most bytes one fetcher poll asks for.
pub const FETCH_MAX_BYTES_DEFAULT: u32 = 4 * 1024 * 1024;

/// Follows one partition from an offset.
pub struct Fetcher<T: Transport = Client> {
    transport: T,
    topic: String,
    partition: u32,
    position: u64,
    max_bytes: u32,
}

impl<T: Transport> Fetcher<T> {
    pub fn new(transport: T, topic: &str, partition: u32, start: StartAt) -> Result<Fetcher<T>> {
        let position = match start {
            StartAt::Offset(offset) => offset,
            StartAt::Earliest => transport.list_offsets(topic, partition, QUERY_EARLIEST)?.offset as u64,
            StartAt::Latest => transport.list_offsets(topic, partition, QUERY_LATEST)?.offset as u64,
            StartAt::Timestamp(ms) => {
                let found = transport.list_offsets(topic, partition, ms.max(0))?;
                if found.offset < 0 {
                    found.latest as u64
                } else {
                    found.offset as u64
                }
            }
        };
        Ok(Fetcher { transport, topic: topic.into(), partition, position, max_bytes: FETCH_MAX_BYTES_DEFAULT })
    }

    /// Asks for at most `max_bytes` per poll (at least one whole batch comes).
    pub fn with_max_bytes(mut self, max_bytes: u32) -> Fetcher<T> {
        self.max_bytes = max_bytes;
        self
    }

    /// The next offset this fetcher will return.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Waits up to `max_wait` for records at the current position and returns
    /// them (empty when none arrived), advancing the position past them.
    pub fn poll(&mut self, max_wait: Duration) -> Result<Vec<ConsumedRecord>> {
        let request = FetchRequest {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.position,
            max_bytes: self.max_bytes,
            max_wait_ms: max_wait.as_millis().min(u128::from(protocol::FETCH_WAIT_MS_MAX)) as u32,
            min_bytes: 1,
        };
        let result = self.transport.fetch(&request)?;
        let records = decode_records(&result.records, self.position)?;
        if let Some(last) = records.last() {
            self.position = last.offset + 1;
        }
        Ok(records)
    }

    pub fn into_transport(self) -> T {
        self.transport
    }
}
