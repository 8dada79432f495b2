//! Guards the mailbox protocol of src/server/mailbox.rs: a receiver that decides
//! to sleep is always woken when a message arrives (a lost wake-up shows up here
//! as a loom deadlock), a sender signals only a receiver that announced sleep (no
//! wake-up storm), and with a ring smaller than the burst every message still
//! arrives once, in order.

use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use ringmq_loom_tests::mailbox::{Mailbox, Ring, SleepCheck, Wake};
use std::collections::VecDeque;

/// A bounded ring loom can see into (the broker uses crossbeam's ArrayQueue).
struct LoomRing<T> {
    items: Mutex<VecDeque<T>>,
    capacity: usize,
}

impl<T> LoomRing<T> {
    fn new(capacity: usize) -> Self {
        LoomRing { items: Mutex::new(VecDeque::new()), capacity }
    }
}

impl<T> Ring<T> for LoomRing<T> {
    fn push(&self, value: T) -> Result<(), T> {
        let mut items = self.items.lock().unwrap();
        if items.len() == self.capacity {
            return Err(value);
        }
        items.push_back(value);
        Ok(())
    }
    fn pop(&self) -> Option<T> {
        self.items.lock().unwrap().pop_front()
    }
    fn is_empty(&self) -> bool {
        self.items.lock().unwrap().is_empty()
    }
    fn len(&self) -> usize {
        self.items.lock().unwrap().len()
    }
}

/// The eventfd, modelled: a counter and a condition variable.
#[derive(Default)]
struct EventFd {
    count: Mutex<u64>,
    signalled: Condvar,
    signals: Mutex<u64>,
}

impl EventFd {
    fn wait(&self) {
        let mut count = self.count.lock().unwrap();
        while *count == 0 {
            count = self.signalled.wait(count).unwrap();
        }
        *count = 0;
    }
}

/// The mailbox's waker: signals the modelled eventfd.
struct Signal(Arc<EventFd>);

impl Wake for Signal {
    fn wake(&self) {
        *self.0.signals.lock().unwrap() += 1;
        *self.0.count.lock().unwrap() += 1;
        self.0.signalled.notify_one();
    }
}

type TestMailbox = Mailbox<u32, Signal, LoomRing<u32>>;

/// The receiver side of a shard's drain loop: returns the messages and how many
/// times it announced sleep.
fn receive(mailbox: &TestMailbox, eventfd: &EventFd, expected: usize) -> (Vec<u32>, u64) {
    let mut received = Vec::new();
    let mut sleeps = 0;
    loop {
        while let Some(message) = mailbox.pop() {
            received.push(message);
        }
        if received.len() == expected {
            return (received, sleeps);
        }
        sleeps += 1;
        if mailbox.prepare_sleep() == SleepCheck::MaySleep {
            eventfd.wait();
        }
        mailbox.woke();
    }
}

/// A sender: pushes, and on a full ring yields and retries (backpressure).
fn send(mailbox: &TestMailbox, messages: impl Iterator<Item = u32>) {
    for mut message in messages {
        loop {
            match mailbox.try_push(message) {
                Ok(()) => break,
                Err(back) => {
                    message = back;
                    thread::yield_now();
                }
            }
        }
    }
}

/// Bounded exploration: every interleaving with up to three preemptions.
fn model(body: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(body);
}

#[test]
fn one_sender_no_lost_wake_up_no_storm() {
    model(|| {
        let eventfd = Arc::new(EventFd::default());
        let mailbox = Arc::new(TestMailbox::with_ring(LoomRing::new(4), Signal(eventfd.clone())));
        let sender = {
            let mailbox = mailbox.clone();
            thread::spawn(move || send(&mailbox, 0..2))
        };
        let (received, sleeps) = receive(&mailbox, &eventfd, 2);
        sender.join().unwrap();
        assert_eq!(received, vec![0, 1]);
        let signals = *eventfd.signals.lock().unwrap();
        assert!(signals <= sleeps, "{signals} signals for {sleeps} announced sleeps: a storm");
    });
}

#[test]
fn a_full_tiny_ring_wraps_and_loses_nothing() {
    model(|| {
        let eventfd = Arc::new(EventFd::default());
        // Capacity 1 and three messages: every push after the first meets a full
        // ring until the receiver drains it, and the ring wraps around.
        let mailbox = Arc::new(TestMailbox::with_ring(LoomRing::new(1), Signal(eventfd.clone())));
        let sender = {
            let mailbox = mailbox.clone();
            thread::spawn(move || send(&mailbox, 0..3))
        };
        let (received, _) = receive(&mailbox, &eventfd, 3);
        sender.join().unwrap();
        assert_eq!(received, vec![0, 1, 2]);
    });
}

#[test]
fn two_senders_each_message_once() {
    model(|| {
        let eventfd = Arc::new(EventFd::default());
        let mailbox = Arc::new(TestMailbox::with_ring(LoomRing::new(2), Signal(eventfd.clone())));
        let senders: Vec<_> = [10u32, 20]
            .into_iter()
            .map(|first| {
                let mailbox = mailbox.clone();
                thread::spawn(move || send(&mailbox, first..first + 1))
            })
            .collect();
        let (mut received, sleeps) = receive(&mailbox, &eventfd, 2);
        for sender in senders {
            sender.join().unwrap();
        }
        received.sort_unstable();
        assert_eq!(received, vec![10, 20]);
        assert!(*eventfd.signals.lock().unwrap() <= sleeps);
    });
}
