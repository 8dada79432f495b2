//! A shard's mailbox: the bounded lock-free ring other shards push requests and
//! answers into, and the sleeping/awake protocol that wakes the owner only when it
//! is actually waiting.
//!
//! Protocol (a Dekker-style handshake on two SeqCst operations each side):
//!
//! ```text
//! sender                               receiver (the owning shard's drain task)
//! push(message) into the ring          loop: drain the ring
//! if sleeping.swap(false): signal()    sleeping.store(true)
//!                                      if ring not empty: sleeping.store(false); continue
//!                                      wait for a signal; sleeping.store(false)
//! ```
//!
//! Either the receiver sees the message when it re-checks the ring, or the sender
//! sees `sleeping` and signals: no wake-up is lost. Only the sender whose swap
//! turned `sleeping` from true to false signals, so a burst of messages to a
//! sleeping shard costs one signal, and a busy shard (not sleeping) is never
//! signalled. A spurious signal (both sides saw each other) costs one extra loop.
//!
//! A full ring is backpressure: `try_push` hands the message back and the sender
//! waits and retries; nothing is dropped.

use crate::sync::{AtomicBool, Ordering};
use crossbeam_queue::ArrayQueue;

/// Messages a mailbox holds before senders must wait. Bounds the memory a slow
/// shard can make others spend on it; consumed by [`Mailbox::new`].
pub const MAILBOX_CAPACITY: usize = 4096;

/// How a mailbox wakes its sleeping owner. The server uses an eventfd read
/// through io_uring; tests and loom use other signals.
pub trait Wake {
    fn wake(&self);
}

pub struct Mailbox<T, W> {
    ring: ArrayQueue<T>,
    sleeping: AtomicBool,
    waker: W,
}

/// Whether the receiver may sleep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SleepCheck {
    /// Messages arrived after all: drain again.
    Busy,
    /// Nothing to do: wait for a signal, then call [`Mailbox::woke`].
    MaySleep,
}

impl<T, W: Wake> Mailbox<T, W> {
    pub fn new(capacity: usize, waker: W) -> Mailbox<T, W> {
        Mailbox { ring: ArrayQueue::new(capacity), sleeping: AtomicBool::new(false), waker }
    }

    /// Pushes `message`, signalling the owner if it sleeps. A full ring returns the
    /// message to the caller, who must wait and retry (backpressure).
    pub fn try_push(&self, message: T) -> Result<(), T> {
        self.ring.push(message)?;
        if self.sleeping.swap(false, Ordering::SeqCst) {
            self.waker.wake();
        }
        Ok(())
    }

    /// Takes one message (receiver side).
    pub fn pop(&self) -> Option<T> {
        self.ring.pop()
    }

    /// Announces that the receiver is about to sleep, and re-checks the ring.
    pub fn prepare_sleep(&self) -> SleepCheck {
        self.sleeping.store(true, Ordering::SeqCst);
        if self.ring.is_empty() {
            return SleepCheck::MaySleep;
        }
        self.sleeping.store(false, Ordering::SeqCst);
        SleepCheck::Busy
    }

    /// The receiver woke up (signalled or spuriously).
    pub fn woke(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
    }

    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    pub fn waker(&self) -> &W {
        &self.waker
    }
}
