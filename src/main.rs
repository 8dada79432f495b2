//! The `ringmq` command: the server (`serve`) and the client commands.

use clap::{Args, Parser, Subcommand, ValueEnum};
use ringmq::client::format::{Format, StartFrom};
use ringmq::client::{Client, Fetcher, Producer, ProducerConfig, Retention, StartAt};
use ringmq::log::Acks;
use ringmq::protocol::offsets::{QUERY_EARLIEST, QUERY_LATEST};
use ringmq::server::{self, ConfigFile, ServerConfig};
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "ringmq", version, about = "A durable, ordered, thread-per-core message broker")]
struct Cli {
    /// The server client commands talk to.
    #[arg(long, global = true, env = "RINGMQ_BOOTSTRAP", default_value = "127.0.0.1:9400")]
    bootstrap: String,
    /// Authenticate as this user (SASL); the password comes from RINGMQ_PASSWORD.
    #[arg(long, global = true, env = "RINGMQ_USER")]
    user: Option<String>,
    /// SCRAM-SHA-256 (default; the password never crosses the wire) or PLAIN.
    #[arg(long, global = true, env = "RINGMQ_SASL_MECHANISM", default_value = "SCRAM-SHA-256")]
    sasl_mechanism: String,
    /// Connect with TLS, checking the server's certificate against the
    /// system's CAs (or --tls-ca) and the bootstrap host (or --tls-server-name).
    #[arg(long, global = true, env = "RINGMQ_TLS")]
    tls: bool,
    /// PEM CA certificates the server's certificate must chain to (implies --tls).
    #[arg(long, global = true, env = "RINGMQ_TLS_CA", value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// PEM certificate to present to a server that requires client certificates (implies --tls).
    #[arg(long, global = true, env = "RINGMQ_TLS_CLIENT_CERT", value_name = "FILE")]
    tls_client_cert: Option<PathBuf>,
    /// PEM private key of --tls-client-cert.
    #[arg(long, global = true, env = "RINGMQ_TLS_CLIENT_KEY", value_name = "FILE")]
    tls_client_key: Option<PathBuf>,
    /// The name the server's certificate must carry, when not the bootstrap host.
    #[arg(long, global = true, env = "RINGMQ_TLS_SERVER_NAME", value_name = "NAME")]
    tls_server_name: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// How client commands connect: TLS (--tls…) and credentials (--user, RINGMQ_PASSWORD).
static CONNECT: std::sync::OnceLock<ringmq::client::ConnectOptions> = std::sync::OnceLock::new();

fn connect_options() -> ringmq::client::ConnectOptions {
    CONNECT.get().cloned().unwrap_or_default()
}

fn set_connect_options(cli: &Cli) -> Result<(), String> {
    let credentials = match &cli.user {
        None => None,
        Some(user) => {
            let password = std::env::var("RINGMQ_PASSWORD")
                .map_err(|_| format!("--user {user} needs its password in the RINGMQ_PASSWORD environment variable"))?;
            Some(ringmq::client::Credentials { user: user.clone(), password, mechanism: cli.sasl_mechanism.clone() })
        }
    };
    let wants_tls = cli.tls
        || cli.tls_ca.is_some()
        || cli.tls_client_cert.is_some()
        || cli.tls_client_key.is_some()
        || cli.tls_server_name.is_some();
    let tls = wants_tls.then(|| ringmq::client::ClientTls {
        ca_file: cli.tls_ca.clone(),
        cert_file: cli.tls_client_cert.clone(),
        key_file: cli.tls_client_key.clone(),
        server_name: cli.tls_server_name.clone(),
    });
    let _ = CONNECT.set(ringmq::client::ConnectOptions { credentials, tls });
    Ok(())
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker (loopback only and ./ringmq-data unless told otherwise).
    Serve(Box<ServeArgs>),
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Produce one record per line of standard input.
    Produce(ProduceArgs),
    /// Print record values, one per line, in offset order (per partition).
    Consume(ConsumeArgs),
    /// List and describe consumer groups (members, committed offsets, lag).
    #[command(subcommand)]
    Group(GroupCommand),
    /// Share groups: a topic read as a queue, record by record under a lease.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Measure throughput and latency percentiles (HdrHistogram).
    Bench(BenchArgs),
    /// Add, remove and list users (SCRAM-SHA-256; super users only).
    #[command(subcommand)]
    User(UserCommand),
    /// Add, remove and list ACLs (super users only).
    #[command(subcommand)]
    Acl(AclCommand),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user, or set its password: read from RINGMQ_NEW_PASSWORD, else
    /// the first line of standard input.
    Add {
        name: String,
    },
    Remove {
        name: String,
    },
    List,
}

#[derive(Args)]
struct AclArgs {
    /// The user it is for, or `*` for every authenticated user.
    #[arg(long)]
    principal: String,
    /// A topic name, a prefix ending in `*`, or `*` for all topics.
    #[arg(long, conflicts_with = "group", required_unless_present = "group")]
    topic: Option<String>,
    /// A group name, a prefix ending in `*`, or `*` for all groups.
    #[arg(long)]
    group: Option<String>,
    /// Comma-separated: read, write, create, delete, describe.
    #[arg(long, value_delimiter = ',', required = true)]
    operation: Vec<String>,
}

#[derive(Subcommand)]
enum AclCommand {
    Add(AclArgs),
    Remove(AclArgs),
    List,
}

#[derive(Clone, Copy, ValueEnum)]
enum WorkloadArg {
    Produce,
    Consume,
    E2e,
}

#[derive(Args)]
struct BenchArgs {
    #[arg(value_enum)]
    workload: WorkloadArg,
    /// Run an embedded broker in this process instead of using --bootstrap.
    #[arg(long)]
    embedded: bool,
    #[arg(long, default_value_t = 1)]
    producers: usize,
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    #[arg(long, default_value_t = 1024)]
    message_size: usize,
    #[arg(long, default_value_t = 1000)]
    batch_records: usize,
    #[arg(long, value_enum, default_value = "written")]
    acks: AcksArg,
    /// Records to send in total.
    #[arg(long)]
    count: Option<u64>,
    /// Seconds to run (after the warm-up).
    #[arg(long)]
    duration: Option<f64>,
    /// Records per second over all producers (paced; latency corrected for
    /// coordinated omission).
    #[arg(long)]
    rate: Option<u64>,
    /// Seconds at the start whose samples are discarded.
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Embedded: shards and waiting clients spin instead of sleeping.
    #[arg(long)]
    busy_poll: bool,
    /// Embedded e2e with 1 producer, 1 consumer, 1 partition: both on one
    /// client thread (the consumer's long poll waits at the shard while the
    /// thread produces), so a 2-core machine has a core for the shard and one
    /// for the client.
    #[arg(long)]
    same_thread: bool,
    /// Embedded: data directory (default: a temporary one, deleted after).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Embedded: shard count (default: one per core).
    #[arg(long)]
    shards: Option<u16>,
    /// Topic to create and use (default: a fresh name per run).
    #[arg(long)]
    topic: Option<String>,
    /// Produce requests a TCP producer keeps in flight (unpaced runs; 1 gives
    /// the latency of one request at a time).
    #[arg(long, default_value_t = ringmq::bench::PIPELINE_DEPTH)]
    in_flight: usize,
    /// Also measure, before the run, a loopback TCP stream and 4 KiB append +
    /// fdatasync latency on the file system of DIR (default: the current
    /// directory; give the data directory's), and print the figures as ratios.
    #[arg(long, num_args = 0..=1, default_missing_value = ".")]
    reference: Option<PathBuf>,
    /// Produce through the server's Kafka listener at HOST:PORT (Kafka's
    /// Produce v8, the same batches and pipeline depth), to compare the two
    /// protocol paths with one client; the topic is created over --bootstrap.
    #[arg(long, value_name = "HOST:PORT")]
    kafka: Option<String>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Write the latency percentile distribution (HdrHistogram .hgrm format).
    #[arg(long)]
    hgrm: Option<PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    /// A TOML file with any of the settings below (flags and RINGMQ_* win over it).
    #[arg(long, env = "RINGMQ_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long, env = "RINGMQ_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// HOST:PORT of the main listener; shard N also listens on PORT+1+N.
    #[arg(long, env = "RINGMQ_LISTEN")]
    listen: Option<SocketAddr>,
    /// Shard threads (default: one per available core). Fixed for a data directory.
    #[arg(long, env = "RINGMQ_SHARDS")]
    shards: Option<u16>,
    /// Also fdatasync data acknowledged as `written` this often.
    #[arg(long, env = "RINGMQ_FLUSH_INTERVAL_MS")]
    flush_interval_ms: Option<u64>,
    #[arg(long, env = "RINGMQ_SEGMENT_BYTES")]
    segment_bytes: Option<u64>,
    /// Zeros written ahead of each active segment so small durable appends
    /// overwrite instead of growing the file (default 262144; 0: off).
    #[arg(long, env = "RINGMQ_ZERO_AHEAD_BYTES")]
    zero_ahead_bytes: Option<u64>,
    /// Default retention of new topics by age (ms).
    #[arg(long, env = "RINGMQ_RETENTION_MS")]
    retention_ms: Option<u64>,
    /// Default retention of new topics by size (bytes per partition).
    #[arg(long, env = "RINGMQ_RETENTION_BYTES")]
    retention_bytes: Option<u64>,
    #[arg(long, env = "RINGMQ_RETENTION_CHECK_INTERVAL_MS")]
    retention_check_interval_ms: Option<u64>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (off by default).
    #[arg(long, env = "RINGMQ_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// How long a consumer group with no members and no committed offsets
    /// stays listed before it is forgotten (default 600000, as Kafka).
    #[arg(long, env = "RINGMQ_EMPTY_GROUP_RETENTION_MS")]
    empty_group_retention_ms: Option<u64>,
    /// Client connections served at once, both listeners and every shard
    /// (default 16384); past it a native client's first request is answered
    /// ResourceLimit and a Kafka connection is closed.
    #[arg(long, env = "RINGMQ_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// `required`: both listeners want SASL (SCRAM-SHA-256 or PLAIN) before
    /// any other request, and ACLs decide what each user may do; `off`
    /// (default): every connection is trusted. docs/SECURITY.md.
    #[arg(long, env = "RINGMQ_AUTHENTICATION")]
    authentication: Option<String>,
    /// Users allowed everything, who alone manage users and ACLs (comma-separated).
    #[arg(long, env = "RINGMQ_SUPER_USERS", value_delimiter = ',')]
    super_users: Option<Vec<String>>,
    /// PEM certificate chain (leaf first): both listeners speak TLS
    /// (with --tls-key; off by default). docs/SECURITY.md.
    #[arg(long, env = "RINGMQ_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "RINGMQ_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificates: every client must present a certificate issued
    /// by one of them (mutual TLS).
    #[arg(long, env = "RINGMQ_TLS_CLIENT_CA", value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,
    /// HOST:PORT of the Kafka wire protocol listener (default 127.0.0.1:9092;
    /// `off`: none). Every shard accepts on it.
    #[arg(long, env = "RINGMQ_KAFKA_LISTEN")]
    kafka_listen: Option<String>,
    /// HOST[:PORT] that Kafka clients are told to connect to (default: the
    /// Kafka listener's address).
    #[arg(long, env = "RINGMQ_KAFKA_ADVERTISE")]
    kafka_advertise: Option<String>,
    /// What Kafka's acks=all waits for: `durable` (fdatasync, default) or
    /// `written` (page cache, as a single Kafka broker with default flush
    /// settings).
    #[arg(long, env = "RINGMQ_KAFKA_ACKS_ALL")]
    kafka_acks_all: Option<String>,
    /// Kafka Metadata and Produce create unknown topics (default true, as Kafka).
    #[arg(long, env = "RINGMQ_KAFKA_AUTO_CREATE_TOPICS")]
    kafka_auto_create_topics: Option<bool>,
    /// Partitions of a topic the Kafka listener creates (default 1).
    #[arg(long, env = "RINGMQ_KAFKA_DEFAULT_PARTITIONS")]
    kafka_default_partitions: Option<u32>,
}

#[derive(Subcommand)]
enum TopicCommand {
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// Keep records this long (default: the broker's setting; 0 or more ms).
        #[arg(long)]
        retention_ms: Option<u64>,
        /// Keep at most this many bytes per partition (default: the broker's setting).
        #[arg(long)]
        retention_bytes: Option<u64>,
    },
    List,
    Describe {
        name: String,
    },
    Delete {
        name: String,
    },
}

#[derive(Subcommand)]
enum GroupCommand {
    /// Every group: kind, state, members.
    List,
    /// One group: members and their partitions; per partition the committed
    /// offset, the end offset and the lag.
    Describe { group: String },
}

#[derive(Subcommand)]
enum QueueCommand {
    /// Receive records as a member of a share group, print their values and
    /// acknowledge each as --ack says, after printing it.
    Receive {
        topic: String,
        #[arg(long)]
        group: String,
        #[arg(long)]
        max_messages: Option<u64>,
        /// Exit after this long without records (default: wait forever).
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// How long a received record stays this member's (default 30000).
        #[arg(long, default_value_t = 30_000)]
        lease_ms: u64,
        #[arg(long, value_enum, default_value = "accept")]
        ack: AckArg,
        /// Deliveries after which a released or expired record is dead-lettered.
        #[arg(long, default_value_t = 5)]
        max_deliveries: u16,
        /// Dead-letter topic (default: TOPIC.dlq).
        #[arg(long)]
        dead_letter_topic: Option<String>,
    },
    /// A share group's partitions: start, end, available, acquired, archived.
    Describe { group: String },
}

#[derive(Clone, Copy, ValueEnum)]
enum AckArg {
    Accept,
    Release,
    Reject,
}

#[derive(Clone, Copy, ValueEnum)]
enum AcksArg {
    None,
    Written,
    Durable,
}

impl From<AcksArg> for Acks {
    fn from(value: AcksArg) -> Acks {
        match value {
            AcksArg::None => Acks::None,
            AcksArg::Written => Acks::Written,
            AcksArg::Durable => Acks::Durable,
        }
    }
}

#[derive(Args)]
struct ProduceArgs {
    topic: String,
    #[arg(long)]
    partition: Option<u32>,
    /// Key of every record (placed by Kafka's murmur2 partitioner).
    #[arg(long)]
    key: Option<String>,
    #[arg(long, value_enum, default_value = "durable")]
    acks: AcksArg,
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    #[arg(long, default_value_t = 256 * 1024)]
    batch_bytes: usize,
    /// A progress line on standard error: auto (when it is a terminal), always, never.
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressArg,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProgressArg {
    Auto,
    Always,
    Never,
}

/// How often a progress line is rewritten.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(500);

/// A progress line on standard error for long commands: records so far and
/// the rate, rewritten in place at most every [`PROGRESS_INTERVAL`].
struct Progress {
    what: &'static str,
    enabled: bool,
    started: Instant,
    shown: Instant,
    shown_any: bool,
}

impl Progress {
    /// `records_on_terminal`: the command prints records to a terminal,
    /// where a progress line would mix with them (auto leaves it off).
    fn new(what: &'static str, setting: ProgressArg, records_on_terminal: bool) -> Progress {
        use std::io::IsTerminal;
        let enabled = match setting {
            ProgressArg::Auto => std::io::stderr().is_terminal() && !records_on_terminal,
            ProgressArg::Always => true,
            ProgressArg::Never => false,
        };
        let now = Instant::now();
        Progress { what, enabled, started: now, shown: now, shown_any: false }
    }

    fn tick(&mut self, count: u64) {
        if self.enabled && self.shown.elapsed() >= PROGRESS_INTERVAL {
            self.show(count);
        }
    }

    fn show(&mut self, count: u64) {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-9);
        eprint!("\r{} {count} records ({:.0}/s, {seconds:.1} s)   ", self.what, count as f64 / seconds);
        let _ = std::io::stderr().flush();
        self.shown = Instant::now();
        self.shown_any = true;
    }

    /// The last figures, and the end of the line.
    fn finish(&mut self, count: u64) {
        if self.enabled && (self.shown_any || count > 0) {
            self.show(count);
            eprintln!();
        }
    }
}

#[derive(Args)]
struct ConsumeArgs {
    topic: String,
    /// One partition (default: all of them).
    #[arg(long)]
    partition: Option<u32>,
    /// Where to start: `beginning`, `end`, an offset (with --partition), `-N`
    /// (the last N records of each partition), `@MS` (epoch milliseconds) or an
    /// RFC 3339 time (`2026-12-07T10:00:00Z`): the first record at or after it.
    #[arg(long, default_value = "beginning", allow_hyphen_values = true)]
    from: String,
    /// How to print each record: kcat's fields (`%t` topic, `%p` partition,
    /// `%o` offset, `%T` timestamp, `%k` key, `%K` key length, `%s` value, `%S`
    /// value length, `%h` headers, `%%`; `\n` `\t` escapes), or `json` for
    /// one JSON object per line. Default: the value, then a newline.
    #[arg(long)]
    format: Option<String>,
    #[arg(long)]
    max_messages: Option<u64>,
    /// Exit after this long without new records (default: wait forever).
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Consume as a member of this consumer group: only the partitions the
    /// broker assigns, starting at the group's committed offsets (else where
    /// --from says: beginning or end), committing what was printed.
    #[arg(long, conflicts_with = "partition")]
    group: Option<String>,
    /// A progress line on standard error: auto (when standard error is a
    /// terminal and the records go elsewhere), always, never.
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressArg,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(message) = set_connect_options(&cli) {
        eprintln!("ringmq: {message}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Topic(command) => topic(&cli.bootstrap, command),
        Command::Produce(args) => produce(&cli.bootstrap, args),
        Command::Consume(args) if args.group.is_some() => consume_group(&cli.bootstrap, args),
        Command::Consume(args) => consume(&cli.bootstrap, args),
        Command::Group(command) => group(&cli.bootstrap, command),
        Command::Queue(command) => queue(&cli.bootstrap, command),
        Command::Bench(args) => bench(&cli.bootstrap, args),
        Command::User(command) => user(&cli.bootstrap, command),
        Command::Acl(command) => acl(&cli.bootstrap, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ringmq: {message}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let file: ConfigFile = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            ConfigFile::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => ConfigFile::default(),
    };
    let mut config =
        ServerConfig::new(args.data_dir.or(file.data_dir).unwrap_or_else(|| server::DATA_DIR_DEFAULT.into()));
    if let Some(listen) = args.listen.or(file.listen) {
        config.listen = Some(listen);
    }
    if let Some(shards) = args.shards.or(file.shards) {
        config.shards = shards;
    }
    config.flush_interval_ms = args.flush_interval_ms.or(file.flush_interval_ms);
    if let Some(bytes) = args.segment_bytes.or(file.segment_bytes) {
        config.segment_bytes = bytes;
    }
    if let Some(bytes) = args.zero_ahead_bytes.or(file.zero_ahead_bytes) {
        config.zero_ahead_bytes = bytes;
    }
    if let Some(ms) = file.segment_ms {
        config.segment_ms = Some(ms);
    }
    if let Some(bytes) = file.index_interval_bytes {
        config.index_interval_bytes = bytes;
    }
    if let Some(ms) = args.retention_ms.or(file.retention_ms) {
        config.retention_ms = Some(ms);
    }
    config.retention_bytes = args.retention_bytes.or(file.retention_bytes);
    if let Some(ms) = args.retention_check_interval_ms.or(file.retention_check_interval_ms) {
        config.retention_check_interval_ms = ms;
    }
    config.metrics_listen = args.metrics_listen.or(file.metrics_listen);
    if let Some(ms) = args.empty_group_retention_ms.or(file.empty_group_retention_ms) {
        config.empty_group_retention_ms = ms;
    }
    if let Some(max) = args.max_connections.or(file.max_connections) {
        if max == 0 {
            return Err("--max-connections must be at least 1".into());
        }
        config.max_connections = max;
    }
    config.security.authentication = match args.authentication.or(file.authentication).as_deref() {
        None | Some("off") => false,
        Some("required") => true,
        Some(other) => return Err(format!("--authentication {other}: expected required or off")),
    };
    config.security.super_users = args.super_users.or(file.super_users).unwrap_or_default();
    let client_ca_file = args.tls_client_ca.or(file.tls_client_ca);
    config.security.tls = match (args.tls_cert.or(file.tls_cert), args.tls_key.or(file.tls_key)) {
        (Some(cert_file), Some(key_file)) => {
            Some(ringmq::security::tls::ServerTls { cert_file, key_file, client_ca_file })
        }
        (None, None) if client_ca_file.is_some() => return Err("--tls-client-ca needs --tls-cert and --tls-key".into()),
        (None, None) => None,
        _ => return Err("TLS needs both --tls-cert and --tls-key".into()),
    };
    // From the environment only, so the password is not in the process list.
    if let Ok(user) = std::env::var("RINGMQ_BOOTSTRAP_USER") {
        let (name, password) = user
            .split_once(':')
            .filter(|(name, password)| !name.is_empty() && !password.is_empty())
            .ok_or("RINGMQ_BOOTSTRAP_USER must be NAME:PASSWORD")?;
        config.security.bootstrap_user = Some((name.to_owned(), password.to_owned()));
    }
    let kafka_listen = args.kafka_listen.or(file.kafka_listen);
    config.kafka.listen = match kafka_listen.as_deref().unwrap_or(server::KAFKA_LISTEN_DEFAULT) {
        "off" => None,
        address => Some(address.parse().map_err(|_| format!("--kafka-listen {address}: expected HOST:PORT or off"))?),
    };
    config.kafka.advertise = args.kafka_advertise.or(file.kafka_advertise);
    config.kafka.acks_all = match args.kafka_acks_all.or(file.kafka_acks_all).as_deref() {
        None | Some("durable") => ringmq::log::Acks::Durable,
        Some("written") => ringmq::log::Acks::Written,
        Some(other) => return Err(format!("--kafka-acks-all {other}: expected durable or written")),
    };
    if let Some(create) = args.kafka_auto_create_topics.or(file.kafka_auto_create_topics) {
        config.kafka.auto_create_topics = create;
    }
    if let Some(partitions) = args.kafka_default_partitions.or(file.kafka_default_partitions) {
        if partitions == 0 {
            return Err("--kafka-default-partitions must be at least 1".into());
        }
        config.kafka.default_partitions = partitions;
    }
    server::block_shutdown_signals();
    let shards = config.shards;
    let data_dir = config.data_dir.clone();
    let exposed = config.listen.iter().chain(config.kafka.listen.iter()).find(|a| !a.ip().is_loopback()).copied();
    if let (Some(address), false) = (exposed, config.security.authentication) {
        eprintln!(
            "ringmq: warning: listening on {address}, beyond loopback, without authentication: anyone who reaches \
             it may read, write and delete every topic. Start with --authentication required (docs/SECURITY.md)."
        );
    }
    let handle = server::start(config).map_err(|e| e.to_string())?;
    println!(
        "ringmq listening on {} ({} shard(s), shard ports {:?}, data in {})",
        handle.address(),
        shards,
        handle.shard_ports(),
        data_dir.display()
    );
    if let Some(address) = handle.kafka_address() {
        println!("ringmq kafka listening on {address}");
    }
    if let Some(address) = handle.metrics_address() {
        println!("ringmq metrics on http://{address}/metrics");
    }
    let _ = std::io::stdout().flush();
    let signal = server::wait_for_signal();
    eprintln!("ringmq: signal {signal}: shutting down");
    handle.shutdown().map_err(|error| error.to_string())?;
    eprintln!("ringmq: stopped cleanly");
    Ok(())
}

fn connect(bootstrap: &str) -> Result<Client, String> {
    Client::connect_with(bootstrap, &connect_options()).map_err(|e| connect_error(bootstrap, e))
}

/// A connection failure, saying what to do about it.
fn connect_error(bootstrap: &str, error: ringmq::client::ClientError) -> String {
    use ringmq::protocol::ErrorCode;
    match error.code() {
        Some(ErrorCode::AuthenticationFailed) => format!(
            "the server at {bootstrap} refused the credentials: check --user and RINGMQ_PASSWORD (and that the user \
             exists: ringmq user list, as a super user)"
        ),
        Some(ErrorCode::AuthenticationRequired) => {
            format!("the server at {bootstrap} requires authentication: give --user NAME with RINGMQ_PASSWORD set")
        }
        _ if matches!(error, ringmq::client::ClientError::Tls(_)) => format!(
            "TLS with the server at {bootstrap} failed: {error} (check --tls-ca and --tls-server-name against the \
             server's certificate, and --tls-client-cert if it requires one)"
        ),
        _ if matches!(&error, ringmq::client::ClientError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof) => {
            format!(
                "the server at {bootstrap} closed the connection: {error} (if it speaks TLS, connect with --tls; \
                 if it wants a client certificate, give --tls-client-cert and --tls-client-key)"
            )
        }
        _ => format!("cannot reach the server at {bootstrap}: {error} (is `ringmq serve` running there?)"),
    }
}

fn retention(value: Option<u64>) -> Retention {
    value.map_or(Retention::Default, Retention::Limit)
}

fn show_retention(value: i64, unit: &str) -> String {
    if value < 0 {
        "unlimited".into()
    } else {
        format!("{value} {unit}")
    }
}

fn topic(bootstrap: &str, command: TopicCommand) -> Result<(), String> {
    let client = connect(bootstrap)?;
    match command {
        TopicCommand::Create { name, partitions, retention_ms, retention_bytes } => {
            client
                .create_topic(&name, partitions, retention(retention_ms), retention(retention_bytes))
                .map_err(|e| e.to_string())?;
            println!("created topic {name} with {partitions} partition(s)");
        }
        TopicCommand::List => {
            let mut names: Vec<String> = client.topics().into_iter().map(|t| t.name).collect();
            names.sort();
            for name in names {
                println!("{name}");
            }
        }
        TopicCommand::Describe { name } => {
            let topic = client.topic(&name).map_err(|e| e.to_string())?.clone();
            println!(
                "topic {} partitions {} retention {} / {}",
                topic.name,
                topic.partition_shards.len(),
                show_retention(topic.retention_ms, "ms"),
                show_retention(topic.retention_bytes, "bytes")
            );
            println!("{:>9} {:>6} {:>20} {:>20} {:>20}", "partition", "shard", "earliest", "latest", "durable");
            for (partition, shard) in topic.partition_shards.iter().enumerate() {
                let offsets = client.list_offsets(&name, partition as u32, QUERY_LATEST).map_err(|e| e.to_string())?;
                println!(
                    "{partition:>9} {shard:>6} {:>20} {:>20} {:>20}",
                    offsets.earliest, offsets.latest, offsets.durable
                );
            }
        }
        TopicCommand::Delete { name } => {
            client.delete_topic(&name).map_err(|e| e.to_string())?;
            println!("deleted topic {name}");
        }
    }
    Ok(())
}

fn produce(bootstrap: &str, args: ProduceArgs) -> Result<(), String> {
    let config = ProducerConfig {
        acks: args.acks.into(),
        batch_bytes: args.batch_bytes,
        linger: Duration::from_millis(args.linger_ms),
        idempotent: None,
    };
    let client = std::sync::Arc::new(connect(bootstrap)?);
    let producer = Producer::on(client, config).map_err(|e| format!("cannot start producing: {e}"))?;
    let key = args.key.as_deref().map(str::as_bytes);
    let mut lines = 0u64;
    let mut progress = Progress::new("produced", args.progress, false);
    for line in std::io::stdin().lock().split(b'\n') {
        let mut line = line.map_err(|e| format!("reading standard input: {e}"))?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        producer.send(&args.topic, args.partition, key, &line, &[]).map_err(|e| e.to_string())?;
        lines += 1;
        progress.tick(lines);
    }
    let report = producer.flush().map_err(|e| e.to_string())?;
    progress.finish(report.records_acknowledged);
    if report.records_failed > 0 || report.records_acknowledged != lines {
        return Err(format!(
            "{} of {lines} record(s) acknowledged, {} failed: {}",
            report.records_acknowledged,
            report.records_failed,
            report.first_error.unwrap_or_else(|| "no error reported".into())
        ));
    }
    Ok(())
}

fn output_format(args: &ConsumeArgs) -> Result<Format, String> {
    args.format.as_deref().map_or(Ok(Format::values()), Format::parse)
}

fn consume(bootstrap: &str, args: ConsumeArgs) -> Result<(), String> {
    let from = StartFrom::parse(&args.from)?;
    let format = output_format(&args)?;
    let client = connect(bootstrap)?;
    let partitions: Vec<u32> = match args.partition {
        Some(partition) => vec![partition],
        None => (0..client.partition_count(&args.topic).map_err(|e| e.to_string())?).collect(),
    };
    if let (StartFrom::Offset(_), true) = (from, partitions.len() > 1) {
        return Err("--from OFFSET needs --partition (or use -N, a time, beginning or end)".into());
    }
    let mut fetchers = Vec::with_capacity(partitions.len());
    for partition in &partitions {
        let start = match from {
            StartFrom::Earliest => StartAt::Earliest,
            StartFrom::Latest => StartAt::Latest,
            StartFrom::Offset(offset) => StartAt::Offset(offset),
            StartFrom::Timestamp(ms) => StartAt::Timestamp(ms),
            StartFrom::Last(count) => {
                let offsets = |query| client.list_offsets(&args.topic, *partition, query).map_err(|e| e.to_string());
                let (earliest, latest) = (offsets(QUERY_EARLIEST)?.offset, offsets(QUERY_LATEST)?.offset);
                StartAt::Offset(latest.saturating_sub(count.min(i64::MAX as u64) as i64).max(earliest).max(0) as u64)
            }
        };
        let client = connect(bootstrap)?;
        fetchers.push((*partition, Fetcher::new(client, &args.topic, *partition, start).map_err(|e| e.to_string())?));
    }
    // Probe that the partition exists before waiting on it.
    let _ = client.list_offsets(&args.topic, partitions[0], QUERY_EARLIEST).map_err(|e| e.to_string())?;
    let timeout = args.timeout_ms.map(Duration::from_millis);
    let poll_wait = if fetchers.len() == 1 {
        timeout.unwrap_or(Duration::from_secs(1)).min(Duration::from_secs(1))
    } else {
        Duration::from_millis(50)
    };
    let mut printed = 0u64;
    let mut last_data = Instant::now();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut line = Vec::new();
    let mut progress = Progress::new("consumed", args.progress, std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let result = (|| loop {
        let mut got_any = false;
        for (partition, fetcher) in &mut fetchers {
            let records = fetcher.poll(poll_wait).map_err(|e| e.to_string())?;
            got_any |= !records.is_empty();
            for record in records {
                line.clear();
                format.write(&mut line, &args.topic, *partition, &record);
                out.write_all(&line).map_err(|e| e.to_string())?;
                printed += 1;
                progress.tick(printed);
                if args.max_messages.is_some_and(|max| printed >= max) {
                    return out.flush().map_err(|e| e.to_string());
                }
            }
        }
        out.flush().map_err(|e| e.to_string())?;
        if got_any {
            last_data = Instant::now();
        } else if timeout.is_some_and(|t| last_data.elapsed() >= t) {
            return Ok(());
        }
    })();
    progress.finish(printed);
    result
}

fn consume_group(bootstrap: &str, args: ConsumeArgs) -> Result<(), String> {
    use ringmq::client::group::{GroupConsumer, GroupConsumerConfig, OffsetReset};
    let offset_reset = match args.from.as_str() {
        "beginning" | "earliest" => OffsetReset::Earliest,
        "end" | "latest" => OffsetReset::Latest,
        other => {
            return Err(format!(
                "with --group, --from takes beginning or end (where the group starts without commits), not {other:?}"
            ))
        }
    };
    let format = output_format(&args)?;
    let group = args.group.as_deref().unwrap_or_default();
    let client = connect(bootstrap)?;
    client.partition_count(&args.topic).map_err(|e| e.to_string())?;
    let config = GroupConsumerConfig { offset_reset, auto_commit: false, ..Default::default() };
    let mut consumer = GroupConsumer::new(client, group, &[&args.topic], config);
    let timeout = args.timeout_ms.map(Duration::from_millis);
    let poll_wait = timeout.unwrap_or(Duration::from_secs(1)).min(Duration::from_millis(500));
    let mut printed = 0u64;
    let mut last_data = Instant::now();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut progress = Progress::new("consumed", args.progress, std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let result = (|| loop {
        let records = consumer.poll(poll_wait).map_err(|e| e.to_string())?;
        let mut next = std::collections::BTreeMap::new();
        let done = 'print: {
            for record in &records {
                let mut line = Vec::new();
                format.write(&mut line, &record.topic, record.partition, &record.record);
                out.write_all(&line).map_err(|e| e.to_string())?;
                next.insert((record.topic.clone(), record.partition), record.record.offset + 1);
                printed += 1;
                progress.tick(printed);
                if args.max_messages.is_some_and(|max| printed >= max) {
                    break 'print true;
                }
            }
            false
        };
        out.flush().map_err(|e| e.to_string())?;
        // Commit exactly what was printed, after printing it (at least once).
        let offsets: Vec<(String, u32, u64)> = next.into_iter().map(|((t, p), o)| (t, p, o)).collect();
        consumer.commit_offsets(&offsets).map_err(|e| format!("commit failed: {e}"))?;
        if done {
            return Ok(());
        }
        if !records.is_empty() {
            last_data = Instant::now();
        } else if timeout.is_some_and(|t| last_data.elapsed() >= t) {
            return Ok(());
        }
    })();
    progress.finish(printed);
    // Leave, so the rest of the group takes the partitions over at once.
    consumer.close().map_err(|e| e.to_string())?;
    result
}

fn group(bootstrap: &str, command: GroupCommand) -> Result<(), String> {
    use ringmq::client::group::describe_group;
    use ringmq::client::Transport;
    use ringmq::protocol::group::{kind_name, state_name};
    let client = connect(bootstrap)?;
    match command {
        GroupCommand::List => {
            let groups = client.list_groups().map_err(|e| e.to_string())?;
            println!("{:<30} {:<9} {:<12} {:>7}", "group", "kind", "state", "members");
            for group in groups {
                println!(
                    "{:<30} {:<9} {:<12} {:>7}",
                    group.group,
                    kind_name(group.kind),
                    state_name(group.state),
                    group.members
                );
            }
        }
        GroupCommand::Describe { group } => {
            let description = describe_group(&client, &group).map_err(|e| e.to_string())?;
            println!(
                "group {group} kind {} state {} generation {} members {}",
                kind_name(description.kind),
                state_name(description.state),
                description.generation,
                description.members.len()
            );
            for member in &description.members {
                let owned: Vec<String> = member.assignment.iter().map(|(t, p)| format!("{t}/{p}")).collect();
                println!("member {} owns {}", member.member_id, owned.join(" "));
            }
            if description.kind == ringmq::protocol::group::KIND_SHARE {
                print_share_partitions(&description);
                return Ok(());
            }
            println!("{:<30} {:>9} {:>20} {:>20} {:>12}", "topic", "partition", "committed", "end", "lag");
            let show = |value: i64| if value < 0 { "-".to_string() } else { value.to_string() };
            for partition in &description.partitions {
                println!(
                    "{:<30} {:>9} {:>20} {:>20} {:>12}",
                    partition.topic,
                    partition.partition,
                    show(partition.committed),
                    show(partition.end),
                    show(partition.lag)
                );
            }
        }
    }
    Ok(())
}

fn queue(bootstrap: &str, command: QueueCommand) -> Result<(), String> {
    use ringmq::client::group::describe_group;
    use ringmq::client::share::{ShareConsumer, ShareConsumerConfig};
    use ringmq::groups::share::AckKind;
    let client = connect(bootstrap)?;
    match command {
        QueueCommand::Receive {
            topic,
            group,
            max_messages,
            timeout_ms,
            lease_ms,
            ack,
            max_deliveries,
            dead_letter_topic,
        } => {
            let config = ShareConsumerConfig {
                lease: Duration::from_millis(lease_ms),
                max_deliveries,
                dead_letter_topic,
                ..Default::default()
            };
            let kind = match ack {
                AckArg::Accept => AckKind::Accept,
                AckArg::Release => AckKind::Release,
                AckArg::Reject => AckKind::Reject,
            };
            let mut consumer = ShareConsumer::new(client, &group, &topic, config).map_err(|e| e.to_string())?;
            let timeout = timeout_ms.map(Duration::from_millis);
            let poll_wait = timeout.unwrap_or(Duration::from_secs(1)).min(Duration::from_millis(500));
            let mut printed = 0u64;
            let mut last_data = Instant::now();
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            loop {
                // Never acquire more than will be printed: the rest would sit
                // leased until their leases expire.
                let want = max_messages.map_or(500, |max| max.saturating_sub(printed).min(500)) as u32;
                if want == 0 {
                    return Ok(());
                }
                let records = consumer.receive(want, poll_wait).map_err(|e| e.to_string())?;
                for record in &records {
                    out.write_all(record.record.value.as_deref().unwrap_or(&[])).map_err(|e| e.to_string())?;
                    out.write_all(b"\n").map_err(|e| e.to_string())?;
                }
                out.flush().map_err(|e| e.to_string())?;
                consumer.acknowledge_all(&records, kind).map_err(|e| format!("acknowledging failed: {e}"))?;
                printed += records.len() as u64;
                if !records.is_empty() {
                    last_data = Instant::now();
                } else if timeout.is_some_and(|t| last_data.elapsed() >= t) {
                    return Ok(());
                }
            }
        }
        QueueCommand::Describe { group } => {
            let description = describe_group(&client, &group).map_err(|e| e.to_string())?;
            if description.kind != ringmq::protocol::group::KIND_SHARE {
                return Err(format!("{group} is a consumer group: use `ringmq group describe {group}`"));
            }
            println!("share group {group} members {}", description.members.len());
            print_share_partitions(&description);
        }
    }
    Ok(())
}

fn print_share_partitions(description: &ringmq::protocol::group::GroupDescription) {
    println!(
        "{:<30} {:>9} {:>14} {:>14} {:>10} {:>10} {:>10}",
        "topic", "partition", "start", "end", "available", "acquired", "archived"
    );
    for share in &description.share {
        println!(
            "{:<30} {:>9} {:>14} {:>14} {:>10} {:>10} {:>10}",
            share.topic, share.partition, share.start, share.end, share.available, share.acquired, share.archived
        );
    }
}

fn bench(bootstrap: &str, args: BenchArgs) -> Result<(), String> {
    use ringmq::bench::{self, BenchConfig, Workload};
    let seconds =
        |value: f64| Duration::try_from_secs_f64(value).map_err(|_| format!("{value} is not a duration in seconds"));
    let config = BenchConfig {
        workload: match args.workload {
            WorkloadArg::Produce => Workload::Produce,
            WorkloadArg::Consume => Workload::Consume,
            WorkloadArg::E2e => Workload::EndToEnd,
        },
        bootstrap: (!args.embedded).then(|| bootstrap.to_string()),
        producers: args.producers,
        consumers: args.consumers,
        partitions: args.partitions,
        message_bytes: args.message_size,
        batch_records: args.batch_records,
        acks: args.acks.into(),
        count: args.count,
        duration: args.duration.map(seconds).transpose()?,
        rate: args.rate,
        warmup: seconds(args.warmup)?,
        busy_poll: args.busy_poll,
        same_thread: args.same_thread,
        data_dir: args.data_dir,
        shards: args.shards,
        topic: args.topic.unwrap_or_else(|| format!("bench-{}", ringmq::log::partition::now_ms())),
        in_flight: args.in_flight,
        reference: args.reference,
        kafka: args.kafka,
        connect: connect_options(),
    };
    let report = bench::run(config.clone())?;
    if args.json {
        println!("{}", report.to_json(&config));
    } else {
        print!("{}", report.table(&config));
    }
    if let Some(path) = args.hgrm {
        std::fs::write(&path, report.hgrm()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

fn user(bootstrap: &str, command: UserCommand) -> Result<(), String> {
    let client = connect(bootstrap)?;
    match command {
        UserCommand::Add { name } => {
            let password = match std::env::var("RINGMQ_NEW_PASSWORD") {
                Ok(password) => password,
                Err(_) => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line).map_err(|e| format!("reading the password: {e}"))?;
                    line.trim_end_matches(['\n', '\r']).to_owned()
                }
            };
            if password.is_empty() {
                return Err("no password: set RINGMQ_NEW_PASSWORD or give it on standard input".into());
            }
            client.upsert_user(&name, &password).map_err(|e| admin_error(&format!("setting user {name}"), e))?;
            eprintln!("user {name} set");
        }
        UserCommand::Remove { name } => {
            client.delete_user(&name).map_err(|e| admin_error(&format!("removing user {name}"), e))?;
            eprintln!("user {name} removed (its ACLs stay until removed: ringmq acl list)");
        }
        UserCommand::List => {
            for name in client.list_users().map_err(|e| admin_error("listing users", e))? {
                println!("{name}");
            }
        }
    }
    Ok(())
}

fn acl_of(args: AclArgs) -> Result<ringmq::security::Acl, String> {
    use ringmq::security::{Acl, Operation, Operations, ResourceKind};
    let (kind, pattern) = match (args.topic, args.group) {
        (Some(topic), None) => (ResourceKind::Topic, topic),
        (None, Some(group)) => (ResourceKind::Group, group),
        _ => return Err("give one of --topic or --group".into()),
    };
    let mut operations = Vec::with_capacity(args.operation.len());
    for name in &args.operation {
        operations.push(
            Operation::parse(name)
                .ok_or_else(|| format!("unknown operation {name}: use read, write, create, delete or describe"))?,
        );
    }
    let acl = Acl { principal: args.principal, kind, pattern, operations: Operations::of(&operations) };
    acl.validate()?;
    Ok(acl)
}

fn acl(bootstrap: &str, command: AclCommand) -> Result<(), String> {
    let client = connect(bootstrap)?;
    match command {
        AclCommand::Add(args) => {
            let acl = acl_of(args)?;
            client.add_acl(&acl).map_err(|e| admin_error("adding the ACL", e))?;
        }
        AclCommand::Remove(args) => {
            let acl = acl_of(args)?;
            client.remove_acl(&acl).map_err(|e| admin_error("removing the ACL", e))?;
        }
        AclCommand::List => {
            println!("{:<20} {:<6} {:<30} operations", "principal", "kind", "pattern");
            for acl in client.list_acls().map_err(|e| admin_error("listing ACLs", e))? {
                println!(
                    "{:<20} {:<6} {:<30} {}",
                    acl.principal,
                    acl.kind.name(),
                    acl.pattern,
                    acl.operations.names().join(",")
                );
            }
        }
    }
    Ok(())
}

/// A refused administrative request, saying what to do about it.
fn admin_error(what: &str, error: ringmq::client::ClientError) -> String {
    match error.code() {
        Some(ringmq::protocol::ErrorCode::ClusterNotAuthorized) => format!(
            "{what}: only a super user may (run as one with --user, or add this user to the server's --super-users)"
        ),
        _ => format!("{what}: {error}"),
    }
}
