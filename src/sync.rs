//! The one place lock-free code takes its atomics, locks and thread parking
//! from. Under `--cfg ringmq_loom` they come from loom, so `loom-tests/` can
//! model-check the same source files; a namespaced cfg (not `loom`) keeps tokio
//! out of loom mode.

#[cfg(ringmq_loom)]
pub use loom::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, Ordering};
#[cfg(ringmq_loom)]
pub use loom::sync::{Arc, Mutex};
#[cfg(ringmq_loom)]
pub use loom::thread::Thread;

#[cfg(not(ringmq_loom))]
pub use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, Ordering};
#[cfg(not(ringmq_loom))]
pub use std::sync::{Arc, Mutex};
#[cfg(not(ringmq_loom))]
pub use std::thread::Thread;

/// Locks, ignoring poisoning (a panicking holder cannot leave these values torn).
pub fn lock<T>(mutex: &Mutex<T>) -> impl std::ops::DerefMut<Target = T> + '_ {
    #[cfg(ringmq_loom)]
    return mutex.lock().unwrap();
    #[cfg(not(ringmq_loom))]
    return mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
}

pub fn current_thread() -> Thread {
    #[cfg(ringmq_loom)]
    return loom::thread::current();
    #[cfg(not(ringmq_loom))]
    return std::thread::current();
}

pub fn park() {
    #[cfg(ringmq_loom)]
    loom::thread::park();
    #[cfg(not(ringmq_loom))]
    std::thread::park();
}

/// Lets another runnable thread have this core (a no-op when none is).
pub fn yield_now() {
    #[cfg(ringmq_loom)]
    loom::thread::yield_now();
    #[cfg(not(ringmq_loom))]
    std::thread::yield_now();
}

pub fn spin_loop() {
    #[cfg(ringmq_loom)]
    loom::thread::yield_now();
    #[cfg(not(ringmq_loom))]
    std::hint::spin_loop();
}
