//! Guards one `Client` shared by threads (issue 12, item 3): a long-polling
//! fetch in one thread does not hold up a produce, an admin request or another
//! fetch from other threads, and the fetch returns the record produced while it
//! waited. Before, the C ABI kept one client behind a lock and the produce
//! waited until the fetch's timeout, which then returned nothing.

mod common;

use common::{batch_of, start_server, temp_dir, values_of};
use ringmq::client::{Client, Retention};
use ringmq::log::Acks;
use ringmq::protocol::fetch::FetchRequest;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn long_poll(topic: &str, partition: u32) -> FetchRequest {
    FetchRequest { topic: topic.into(), partition, offset: 0, max_bytes: 1 << 20, max_wait_ms: 10_000, min_bytes: 1 }
}

#[test]
fn a_long_poll_in_one_thread_does_not_hold_up_the_others() {
    let dir = temp_dir("client-threads");
    let server = start_server(&dir, 2, |_| {});
    let client = Arc::new(Client::connect(&server.address().to_string()).unwrap());
    client.create_topic("t", 2, Retention::Default, Retention::Default).unwrap();
    let pollers: Vec<_> = (0..2)
        .map(|partition| {
            let client = client.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let result = client.fetch(&long_poll("t", partition)).unwrap();
                (values_of(&result.records), started.elapsed())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    client.create_topic("other", 1, Retention::Default, Retention::Default).unwrap();
    for partition in 0..2 {
        let batch = batch_of(&[format!("to {partition}").into_bytes()], 1);
        assert_eq!(client.produce("t", partition, &batch, Acks::Durable).unwrap(), Some(0));
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "admin and produces took {took:?} behind the long polls");
    for (partition, poller) in pollers.into_iter().enumerate() {
        let (values, waited) = poller.join().unwrap();
        assert_eq!(values, [format!("to {partition}")]);
        assert!(waited < Duration::from_secs(5), "the long poll on {partition} waited {waited:?}");
    }
    server.shutdown().unwrap();
}
