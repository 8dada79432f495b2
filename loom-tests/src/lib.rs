//! loom models of ringmq's lock-free parts. The modules below are ringmq's own
//! source files, compiled here with `cfg(ringmq_loom)` (set by build.rs) so their
//! atomics, locks and thread parking come from loom. This crate does not depend
//! on tokio: a global `--cfg loom` would switch tokio into loom mode and break
//! tokio-uring.
//!
//! Models (in tests/):
//! - `mailbox`: the cross-shard ring hand-off and the sleeping/awake wake-up
//!   protocol: no lost wake-up, at most one signal per sleep, nothing dropped when
//!   a tiny ring is full;
//! - `completion`: the hand-off of a reply (a durable acknowledgement from the
//!   group commit, a fetch) from a shard to a waiting non-shard thread;
//! - `tail_ring`: the seqlock ring a shard publishes its newest batches in for
//!   in-process readers: a reader never gets a torn or misplaced batch.

#[path = "../../src/sync.rs"]
pub mod sync;

#[path = "../../src/server/mailbox.rs"]
pub mod mailbox;

#[path = "../../src/server/completion.rs"]
pub mod completion;

#[path = "../../src/server/tail_ring.rs"]
pub mod tail_ring;
