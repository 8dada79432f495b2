//! ringmq: a single-node, durable, ordered message broker.
//!
//! Map of the crate:
//! - [`batch`]: Kafka RecordBatch v2 — builder, validation, record iterator, base
//!   offset stamping. The one format on disk and on the wire.
//! - [`io`]: the narrow I/O layer (the only place that names tokio-uring): storage
//!   backends (real files, and a fault-injecting simulation) and the shard runtime.
//! - [`log`]: the partition log — segments, sparse indexes, recovery, retention —
//!   and the per-shard group commit.
//! - [`protocol`]: the native wire protocol's frames and messages (docs/PROTOCOL.md).
//! - [`server`]: the broker — shards, cross-shard mailboxes, connections, catalog.
//! - [`client`]: the blocking Rust client, batching producer and fetcher.
//! - [`embedded`]: the broker inside the calling process, and its in-process client.
//! - [`groups`]: consumer groups — membership, assignment, committed offsets.
//! - [`ffi`]: the C ABI of `libringmq` (`include/ringmq.h`).
//! - [`metrics`]: Prometheus text exposition at `/metrics`.
//! - [`bench`]: `ringmq bench`, the produce / consume / end-to-end workloads.
//! - [`sync`]: the atomics shim that loom swaps out.

pub mod batch;
pub mod bench;
pub mod client;
pub mod compression;
pub mod embedded;
pub mod ffi;
#[doc(hidden)]
pub mod fuzzing;
pub mod groups;
pub mod io;
pub mod kafka;
pub mod log;
pub mod metrics;
pub mod protocol;
pub mod security;
pub mod server;
pub mod snapshot;
pub mod sync;
