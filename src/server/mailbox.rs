//! A shard's mailbox: the bounded lock-free ring other shards push requests and
//! answers into, and the sleeping/awake protocol that wakes the owner only when it
//! is actually waiting.
//!
//! Protocol (a Dekker-style handshake; every change of `sleeping` is a
//! read-modify-write, see [`Mailbox::prepare_sleep`]):
//!
//! ```text
//! sender                               receiver (the owning shard's drain task)
//! push(message) into the ring          loop: drain the ring
//! if sleeping.swap(false): signal()    sleeping.swap(true)
//!                                      if ring not empty: sleeping.swap(false); continue
//!                                      wait for a signal; sleeping.swap(false)
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

/// The bounded multi-producer ring under a mailbox: crossbeam's `ArrayQueue` in
/// the broker; loom models substitute a ring loom can see into.
pub trait Ring<T> {
    fn push(&self, value: T) -> Result<(), T>;
    fn pop(&self) -> Option<T>;
    fn is_empty(&self) -> bool;
    fn len(&self) -> usize;
}

impl<T> Ring<T> for ArrayQueue<T> {
    fn push(&self, value: T) -> Result<(), T> {
        ArrayQueue::push(self, value)
    }
    fn pop(&self) -> Option<T> {
        ArrayQueue::pop(self)
    }
    fn is_empty(&self) -> bool {
        ArrayQueue::is_empty(self)
    }
    fn len(&self) -> usize {
        ArrayQueue::len(self)
    }
}

pub struct Mailbox<T, W, R = ArrayQueue<T>> {
    ring: R,
    sleeping: AtomicBool,
    waker: W,
    _messages: std::marker::PhantomData<fn(T) -> T>,
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
        Mailbox::with_ring(ArrayQueue::new(capacity), waker)
    }
}

impl<T, W: Wake, R: Ring<T>> Mailbox<T, W, R> {
    pub fn with_ring(ring: R, waker: W) -> Mailbox<T, W, R> {
        Mailbox { ring, sleeping: AtomicBool::new(false), waker, _messages: std::marker::PhantomData }
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
    ///
    /// `sleeping` is only ever changed by read-modify-writes. A plain store here
    /// lets a sender's swap be ordered before it and read a stale `false` while
    /// the receiver's re-check misses the sender's push: a lost wake-up that loom
    /// found under acquire/release semantics (loom-tests/tests/mailbox.rs). With
    /// a swap, either the sender's swap comes later in the flag's modification
    /// order and reads `true`, or it comes earlier and the receiver's swap
    /// acquires it, so the re-check sees the message.
    pub fn prepare_sleep(&self) -> SleepCheck {
        self.sleeping.swap(true, Ordering::SeqCst);
        if self.ring.is_empty() {
            return SleepCheck::MaySleep;
        }
        self.sleeping.swap(false, Ordering::SeqCst);
        SleepCheck::Busy
    }

    /// The receiver woke up (signalled or spuriously).
    pub fn woke(&self) {
        self.sleeping.swap(false, Ordering::SeqCst);
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
