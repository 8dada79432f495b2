//! A one-shot completion handed from a shard to a thread that is not a shard
//! (an embedded client, a C caller): the shard stores the answer and wakes the
//! waiter; the waiter parks, or spins in busy-poll mode.
//!
//! ```text
//! state: EMPTY -> (waiter) WAITING -> (shard) READY        waiter parked: unpark
//!        EMPTY -> (shard) READY                           waiter never parks
//! ```
//!
//! The shard writes the value before publishing READY (Release); the waiter reads
//! it after seeing READY (Acquire). The shard unparks only if it replaced WAITING,
//! so a waiter that has not parked yet is not signalled, and one that has is never
//! missed. Atomics come from `crate::sync`, so loom checks this file as it is.

use crate::sync::{AtomicU8, Ordering};
use crate::sync::{Mutex, Thread};

const EMPTY: u8 = 0;
const WAITING: u8 = 1;
const READY: u8 = 2;
/// Spins of a busy-polling wait between two yields of the core (a few
/// microseconds of spinning, then one `sched_yield`).
const SPINS_PER_YIELD: usize = 256;

pub struct Completion<T> {
    state: AtomicU8,
    value: Mutex<Option<T>>,
    waiter: Thread,
}

impl<T> Completion<T> {
    /// A completion that the calling thread will wait on.
    pub fn for_current_thread() -> Completion<T> {
        Completion { state: AtomicU8::new(EMPTY), value: Mutex::new(None), waiter: crate::sync::current_thread() }
    }

    /// Stores the answer and wakes the waiter if it sleeps. Called once.
    pub fn complete(&self, value: T) {
        *crate::sync::lock(&self.value) = Some(value);
        if self.state.swap(READY, Ordering::AcqRel) == WAITING {
            self.waiter.unpark();
        }
    }

    /// Whether the answer is there.
    pub fn is_ready(&self) -> bool {
        self.state.load(Ordering::Acquire) == READY
    }

    /// Waits for the answer: parks the thread, or spins when `busy_poll`.
    /// Must be called from the thread that created the completion.
    pub fn wait(&self, busy_poll: bool) -> T {
        let mut spins_left = SPINS_PER_YIELD;
        loop {
            if self.state.load(Ordering::Acquire) == READY {
                break;
            }
            if busy_poll {
                crate::sync::spin_loop();
                spins_left -= 1;
                if spins_left == 0 {
                    spins_left = SPINS_PER_YIELD;
                    // Give the core away now and then: when the shard (or
                    // another spinner) shares it, spinning on would hold up
                    // the very thread that completes this.
                    crate::sync::yield_now();
                }
                continue;
            }
            match self.state.compare_exchange(EMPTY, WAITING, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) | Err(WAITING) => crate::sync::park(),
                Err(_) => break,
            }
        }
        crate::sync::lock(&self.value).take().expect("a READY completion holds its value")
    }
}
