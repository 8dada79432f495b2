//! Cross-shard ring hand-off between two threads: one-way throughput through a
//! mailbox (crossbeam ArrayQueue + sleeping flag), a ping-pong round trip through
//! two mailboxes, and the completion hand-off an embedded client waits on.
//! Receivers spin (busy-poll), so this measures the ring, not the wake-up.
//!
//! Run: `cargo bench --bench ring`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringmq::server::completion::Completion;
use ringmq::server::mailbox::{Mailbox, Wake};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct NoWake;

impl Wake for NoWake {
    fn wake(&self) {}
}

const CAPACITY: usize = 4096;

fn push(mailbox: &Mailbox<u64, NoWake>, mut value: u64) {
    loop {
        match mailbox.try_push(value) {
            Ok(()) => return,
            Err(back) => {
                value = back;
                std::hint::spin_loop();
            }
        }
    }
}

fn pop(mailbox: &Mailbox<u64, NoWake>) -> u64 {
    loop {
        if let Some(value) = mailbox.pop() {
            return value;
        }
        std::hint::spin_loop();
    }
}

fn one_way(iterations: u64) -> Duration {
    let mailbox = Arc::new(Mailbox::new(CAPACITY, NoWake));
    let receiver = {
        let mailbox = mailbox.clone();
        std::thread::spawn(move || {
            for expected in 0..iterations {
                assert_eq!(pop(&mailbox), expected);
            }
        })
    };
    let start = Instant::now();
    for value in 0..iterations {
        push(&mailbox, value);
    }
    receiver.join().unwrap();
    start.elapsed()
}

fn ping_pong(iterations: u64) -> Duration {
    let there = Arc::new(Mailbox::new(CAPACITY, NoWake));
    let back = Arc::new(Mailbox::new(CAPACITY, NoWake));
    let echo = {
        let (there, back) = (there.clone(), back.clone());
        std::thread::spawn(move || {
            for _ in 0..iterations {
                let value = pop(&there);
                push(&back, value);
            }
        })
    };
    let start = Instant::now();
    for value in 0..iterations {
        push(&there, value);
        assert_eq!(pop(&back), value);
    }
    echo.join().unwrap();
    start.elapsed()
}

fn completion_hand_off(iterations: u64) -> Duration {
    let requests = Arc::new(Mailbox::<Arc<Completion<u64>>, NoWake>::new(CAPACITY, NoWake));
    let worker = {
        let requests = requests.clone();
        std::thread::spawn(move || {
            for value in 0..iterations {
                let completion = loop {
                    if let Some(completion) = requests.pop() {
                        break completion;
                    }
                    std::hint::spin_loop();
                };
                completion.complete(value);
            }
        })
    };
    let start = Instant::now();
    for value in 0..iterations {
        let completion = Arc::new(Completion::for_current_thread());
        let mut request = completion.clone();
        while let Err(back) = requests.try_push(request) {
            request = back;
        }
        assert_eq!(completion.wait(true), value);
    }
    worker.join().unwrap();
    start.elapsed()
}

fn ring(c: &mut Criterion) {
    let mut group = c.benchmark_group("mailbox");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("one_way_per_message", |b| b.iter_custom(one_way));
    group.bench_function("ping_pong_round_trip", |b| b.iter_custom(ping_pong));
    group.bench_function("completion_round_trip_busy_poll", |b| b.iter_custom(completion_hand_off));
    group.finish();
}

criterion_group!(benches, ring);
criterion_main!(benches);
