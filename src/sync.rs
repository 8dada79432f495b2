//! The one place lock-free code takes its atomics from. Under `--cfg ringmq_loom`
//! they come from loom, so `loom-tests/` can model-check the same source; a
//! namespaced cfg (not `loom`) keeps tokio out of loom mode.

#[cfg(ringmq_loom)]
pub use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(ringmq_loom)]
pub use loom::sync::Arc;

#[cfg(not(ringmq_loom))]
pub use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(not(ringmq_loom))]
pub use std::sync::Arc;
