//! The settings of a broker and their defaults.

use super::catalog;
use super::mailbox::MAILBOX_CAPACITY;
use crate::log::{LogConfig, INDEX_INTERVAL_BYTES_DEFAULT, SEGMENT_BYTES_DEFAULT};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Address the server listens on when none is given: loopback only.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:9400";
/// Open client connections the broker serves at once, both listeners and
/// every shard together, when none is configured. Set so that 10,000 idle
/// clients fit (docs/RELIABILITY.md measures what one costs).
pub const CONNECTIONS_MAX_DEFAULT: usize = 16_384;
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
/// Address of the Kafka listener when none is given (the CLI's default; the
/// library's default is no Kafka listener).
pub const KAFKA_LISTEN_DEFAULT: &str = "127.0.0.1:9092";
/// Partitions of a topic the Kafka listener creates on first use (Kafka's
/// `num.partitions`).
pub const KAFKA_DEFAULT_PARTITIONS: u32 = 1;
/// Longest a graceful shutdown waits for connections to finish their requests.
pub const SHUTDOWN_DRAIN_MS: u64 = 10_000;

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
    /// Zeros kept written ahead of each active segment for small appends
    /// (0: off); see `log::partition::ZERO_AHEAD_BYTES`.
    pub zero_ahead_bytes: u64,
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
    /// The Kafka wire protocol listener.
    pub kafka: KafkaConfig,
    /// Open client connections served at once (both listeners, every
    /// shard); a connection past it is refused (docs/PROTOCOL.md).
    pub max_connections: usize,
    /// Authentication, users and ACLs (docs/SECURITY.md).
    pub security: SecurityConfig,
}

/// Settings of authentication and authorization (docs/SECURITY.md).
#[derive(Debug, Clone, Default)]
pub struct SecurityConfig {
    /// Both listeners require SASL (SCRAM-SHA-256 or PLAIN) before any
    /// other request, and ACLs decide what each user may do. Off: every
    /// connection is trusted and ACLs are not consulted.
    pub authentication: bool,
    /// Users allowed everything, and the only ones who manage users and ACLs.
    pub super_users: Vec<String>,
    /// A user (name, password) created at start if it does not exist yet:
    /// how the first super user comes to be.
    pub bootstrap_user: Option<(String, String)>,
    /// TLS on both listeners (off by default).
    pub tls: Option<crate::security::tls::ServerTls>,
}

/// Settings of the Kafka wire protocol listener (docs/KAFKA.md).
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `None`: no Kafka listener.
    pub listen: Option<SocketAddr>,
    /// `HOST[:PORT]` that Metadata reports to clients; the listen address
    /// when not set.
    pub advertise: Option<String>,
    /// What `acks=all` means here: durable (fdatasync, the default) or
    /// written (in the page cache, as Kafka's own single broker defaults to).
    pub acks_all: crate::log::Acks,
    /// Metadata and Produce for an unknown topic create it (Kafka's
    /// `auto.create.topics.enable`, on by default there too).
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic.
    pub default_partitions: u32,
}

impl Default for KafkaConfig {
    fn default() -> KafkaConfig {
        KafkaConfig {
            listen: None,
            advertise: None,
            acks_all: crate::log::Acks::Durable,
            auto_create_topics: true,
            default_partitions: KAFKA_DEFAULT_PARTITIONS,
        }
    }
}

impl ServerConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            data_dir: data_dir.into(),
            listen: Some(LISTEN_DEFAULT.parse().expect("the default address parses")),
            shards: available_cores(),
            flush_interval_ms: None,
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            zero_ahead_bytes: crate::log::partition::ZERO_AHEAD_BYTES,
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
            kafka: KafkaConfig::default(),
            max_connections: CONNECTIONS_MAX_DEFAULT,
            security: SecurityConfig::default(),
        }
    }

    pub(crate) fn log_config(&self, topic: &catalog::TopicConfig) -> LogConfig {
        LogConfig {
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            index_interval_bytes: self.index_interval_bytes,
            retention_ms: topic.retention_ms,
            retention_bytes: topic.retention_bytes,
            zero_ahead_bytes: self.zero_ahead_bytes,
        }
    }
}

/// The cores this process may run on.
pub fn available_cores() -> u16 {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(SHARDS_MAX as usize) as u16)
}

/// The TOML config file: the same settings as the flags.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub shards: Option<u16>,
    pub flush_interval_ms: Option<u64>,
    pub segment_bytes: Option<u64>,
    pub zero_ahead_bytes: Option<u64>,
    pub segment_ms: Option<u64>,
    pub index_interval_bytes: Option<u64>,
    pub retention_ms: Option<u64>,
    pub retention_bytes: Option<u64>,
    pub retention_check_interval_ms: Option<u64>,
    pub metrics_listen: Option<SocketAddr>,
    pub empty_group_retention_ms: Option<u64>,
    pub kafka_listen: Option<String>,
    pub kafka_advertise: Option<String>,
    pub kafka_acks_all: Option<String>,
    pub kafka_auto_create_topics: Option<bool>,
    pub kafka_default_partitions: Option<u32>,
    pub max_connections: Option<usize>,
    pub authentication: Option<String>,
    pub super_users: Option<Vec<String>>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
}

impl ConfigFile {
    /// Parses the TOML text of a config file; an unknown key or a value of
    /// the wrong type is an error naming it (the text comes from an operator,
    /// so its size is theirs; nothing is allocated by a length inside it).
    pub fn parse(text: &str) -> Result<ConfigFile, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}
