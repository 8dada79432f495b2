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

pub mod group;
mod partitioner;
mod producer;
pub mod share;

pub use partitioner::{murmur2, partition_for_key};
pub use producer::{Producer, ProducerConfig, ProducerReport};

use crate::batch::{self, Batch};
use crate::log::Acks;
use crate::protocol::fetch::{FetchRequest, FetchResponse};
use crate::protocol::hello::{HelloRequest, HelloResponse};
use crate::protocol::metadata::{MetadataRequest, MetadataResponse, TopicMetadata};
use crate::protocol::offsets::{ListOffsetsRequest, ListOffsetsResponse, QUERY_EARLIEST, QUERY_LATEST};
use crate::protocol::produce::{ProduceRequest, ProduceResponse};
use crate::protocol::producer_id::{InitProducerIdRequest, InitProducerIdResponse};
use crate::protocol::topic::{CreateTopicRequest, DeleteTopicRequest, RETENTION_DEFAULT, RETENTION_UNLIMITED};
use crate::protocol::{self, ErrorCode, ResponseHeader};
use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long a client waits to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(error: io::Error) -> Self {
        ClientError::Io(error)
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
    stream: TcpStream,
    next_correlation_id: u32,
    /// Correlation ids sent and not yet answered, oldest first.
    outstanding: std::collections::VecDeque<u32>,
}

impl Connection {
    pub fn connect(address: SocketAddr) -> Result<Connection> {
        let stream = TcpStream::connect_timeout(&address, CONNECT_TIMEOUT)?;
        stream.set_nodelay(true)?;
        Ok(Connection { stream, next_correlation_id: 0, outstanding: Default::default() })
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
        let mut length = [0u8; 4];
        self.stream.read_exact(&mut length)?;
        let declared = u32::from_be_bytes(length) as usize;
        if !(protocol::RESPONSE_HEADER_BYTES..=protocol::RESPONSE_BYTES_MAX).contains(&declared) {
            return Err(ClientError::Protocol(format!("response length {declared} out of range")));
        }
        let mut frame = vec![0u8; protocol::LENGTH_BYTES + declared];
        frame[..4].copy_from_slice(&length);
        self.stream.read_exact(&mut frame[4..])?;
        let (header, body) = protocol::parse_response(&frame)?;
        if let Some(expected) = self.outstanding.pop_front() {
            if expected != header.correlation_id {
                return Err(ClientError::Protocol(format!(
                    "response for request {} arrived where {expected} was expected",
                    header.correlation_id
                )));
            }
        }
        Ok((header, body.to_vec()))
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

    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        self.stream.set_read_timeout(timeout)?;
        Ok(())
    }

    /// The socket, for tests that speak raw bytes.
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// A second handle on the socket (e.g. a writer thread while this one reads).
    pub fn try_clone_stream(&self) -> Result<TcpStream> {
        Ok(self.stream.try_clone()?)
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
    fn to_wire(self) -> i64 {
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

/// A client of one server.
pub struct Client {
    host: IpAddr,
    bootstrap_address: SocketAddr,
    bootstrap: Connection,
    shards: HashMap<u16, Connection>,
    shard_ports: Vec<u16>,
    topics: HashMap<String, TopicMetadata>,
    hello: HelloResponse,
}

impl Client {
    /// Connects to `bootstrap` (`HOST:PORT`), says hello and loads the metadata.
    pub fn connect(bootstrap: &str) -> Result<Client> {
        let address = bootstrap
            .to_socket_addrs()
            .map_err(|e| ClientError::InvalidArgument(format!("cannot resolve {bootstrap}: {e}")))?
            .next()
            .ok_or_else(|| ClientError::InvalidArgument(format!("{bootstrap} resolves to no address")))?;
        let mut connection = Connection::connect(address)?;
        let body = connection.call("hello", |id| HelloRequest { client_name: "ringmq-rust".into() }.encode(id))?;
        let hello = HelloResponse::decode(&body)?;
        let mut client = Client {
            host: address.ip(),
            bootstrap_address: address,
            bootstrap: connection,
            shards: HashMap::new(),
            shard_ports: Vec::new(),
            topics: HashMap::new(),
            hello,
        };
        client.refresh_metadata()?;
        Ok(client)
    }

    pub fn server_info(&self) -> &HelloResponse {
        &self.hello
    }

    /// Reloads the metadata of every topic.
    pub fn refresh_metadata(&mut self) -> Result<MetadataResponse> {
        let body = self.bootstrap.call("metadata", |id| MetadataRequest { topics: Vec::new() }.encode(id))?;
        let metadata = MetadataResponse::decode(&body)?;
        self.shard_ports = metadata.shards.iter().map(|shard| shard.port).collect();
        self.topics = metadata.topics.iter().map(|topic| (topic.name.clone(), topic.clone())).collect();
        Ok(metadata)
    }

    pub fn topics(&self) -> impl Iterator<Item = &TopicMetadata> {
        self.topics.values()
    }

    pub fn topic(&mut self, name: &str) -> Result<&TopicMetadata> {
        if !self.topics.contains_key(name) {
            self.refresh_metadata()?;
        }
        self.topics.get(name).ok_or_else(|| ClientError::UnknownTopic(name.into()))
    }

    pub fn partition_count(&mut self, topic: &str) -> Result<u32> {
        Ok(self.topic(topic)?.partition_shards.len() as u32)
    }

    pub fn create_topic(
        &mut self,
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
        self.bootstrap.call(&format!("create topic {name}"), |id| request.encode(id))?;
        self.refresh_metadata()?;
        Ok(())
    }

    pub fn delete_topic(&mut self, name: &str) -> Result<()> {
        self.bootstrap
            .call(&format!("delete topic {name}"), |id| DeleteTopicRequest { name: name.into() }.encode(id))?;
        self.topics.remove(name);
        Ok(())
    }

    /// A producer id and epoch for idempotent produce: `name` "" gets a new
    /// id; a name gets its id with the epoch raised (fencing older instances).
    pub fn init_producer_id(&mut self, name: &str) -> Result<(i64, i16)> {
        let request = InitProducerIdRequest { name: name.into() };
        let body = self.bootstrap.call("init producer id", |id| request.encode(id))?;
        let response = InitProducerIdResponse::decode(&body)?;
        Ok((response.producer_id, response.epoch))
    }

    /// Drops every connection and connects again (after a connection error;
    /// requests in flight on the old connections are lost, so only idempotent
    /// batches may be resent).
    pub fn reconnect(&mut self) -> Result<()> {
        self.shards.clear();
        self.bootstrap = Connection::connect(self.bootstrap_address)?;
        self.bootstrap.call("hello", |id| HelloRequest { client_name: "ringmq-rust".into() }.encode(id))?;
        self.refresh_metadata().map(drop)
    }

    /// The connection to the shard owning a partition (its own port).
    pub fn connection_for(&mut self, topic: &str, partition: u32) -> Result<&mut Connection> {
        let shard = *self
            .topic(topic)?
            .partition_shards
            .get(partition as usize)
            .ok_or_else(|| ClientError::UnknownTopic(format!("{topic}/{partition}")))?;
        if !self.shards.contains_key(&shard) {
            let port = *self
                .shard_ports
                .get(shard as usize)
                .ok_or_else(|| ClientError::Protocol(format!("no port for shard {shard}")))?;
            let connection = Connection::connect(SocketAddr::new(self.host, port))?;
            self.shards.insert(shard, connection);
        }
        self.shards.get_mut(&shard).ok_or_else(|| ClientError::Protocol("connection vanished".into()))
    }

    pub fn list_offsets(&mut self, topic: &str, partition: u32, query: i64) -> Result<ListOffsetsResponse> {
        let request = ListOffsetsRequest { topic: topic.into(), partition, query };
        let connection = self.connection_for(topic, partition)?;
        let body = connection.call(&format!("list offsets of {topic}/{partition}"), |id| request.encode(id))?;
        Ok(ListOffsetsResponse::decode(&body)?)
    }

    /// Produces one batch; returns its base offset (`None` with acks none).
    pub fn produce(&mut self, topic: &str, partition: u32, batch: &[u8], acks: Acks) -> Result<Option<u64>> {
        let results = self.produce_pipelined(&[(topic, partition, batch)], acks)?;
        results.into_iter().next().unwrap_or(Ok(None))
    }

    /// Produces many batches, pipelined: every request is sent before any
    /// response is read. One result per batch, in order.
    pub fn produce_pipelined(
        &mut self,
        batches: &[(&str, u32, &[u8])],
        acks: Acks,
    ) -> Result<Vec<Result<Option<u64>>>> {
        let mut sent: Vec<(u16, usize)> = Vec::with_capacity(batches.len());
        for (index, (topic, partition, batch)) in batches.iter().enumerate() {
            let shard = *self
                .topic(topic)?
                .partition_shards
                .get(*partition as usize)
                .ok_or_else(|| ClientError::UnknownTopic(format!("{topic}/{partition}")))?;
            let connection = self.connection_for(topic, *partition)?;
            connection.send(|id| ProduceRequest::encode(id, acks, &[(topic, *partition, batch)]))?;
            if acks == Acks::None {
                connection.forget_last();
            }
            sent.push((shard, index));
        }
        let mut results = Vec::with_capacity(batches.len());
        for (shard, index) in sent {
            if acks == Acks::None {
                results.push(Ok(None));
                continue;
            }
            let (topic, partition, _) = batches[index];
            let connection =
                self.shards.get_mut(&shard).ok_or_else(|| ClientError::Protocol("connection vanished".into()))?;
            let (header, body) = connection.receive()?;
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

    pub fn fetch(&mut self, request: &FetchRequest) -> Result<FetchResult> {
        let connection = self.connection_for(&request.topic, request.partition)?;
        let context = format!("fetch {}/{} at {}", request.topic, request.partition, request.offset);
        let body = connection.call(&context, |id| request.encode(id))?;
        let response = FetchResponse::decode(&body)?;
        Ok(FetchResult {
            high_watermark: response.high_watermark as u64,
            earliest: response.earliest as u64,
            records: response.records.to_vec(),
        })
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
        for record in batch.records() {
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
pub struct Fetcher {
    client: Client,
    topic: String,
    partition: u32,
    position: u64,
    max_bytes: u32,
}

impl Fetcher {
    pub fn new(mut client: Client, topic: &str, partition: u32, start: StartAt) -> Result<Fetcher> {
        let position = match start {
            StartAt::Offset(offset) => offset,
            StartAt::Earliest => client.list_offsets(topic, partition, QUERY_EARLIEST)?.offset as u64,
            StartAt::Latest => client.list_offsets(topic, partition, QUERY_LATEST)?.offset as u64,
            StartAt::Timestamp(ms) => {
                let found = client.list_offsets(topic, partition, ms.max(0))?;
                if found.offset < 0 {
                    found.latest as u64
                } else {
                    found.offset as u64
                }
            }
        };
        Ok(Fetcher { client, topic: topic.into(), partition, position, max_bytes: FETCH_MAX_BYTES_DEFAULT })
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
        let result = self.client.fetch(&request)?;
        let records = decode_records(&result.records, self.position)?;
        if let Some(last) = records.last() {
            self.position = last.offset + 1;
        }
        Ok(records)
    }

    pub fn into_client(self) -> Client {
        self.client
    }
}
