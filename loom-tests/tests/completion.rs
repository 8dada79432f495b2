//! Guards src/server/completion.rs, the hand-off of a reply (for example a
//! durable acknowledgement from the group commit) from a shard thread to a thread
//! outside the shards: the waiter always gets the value exactly once, whether the
//! shard completes before, during or after the waiter parks (a lost unpark shows
//! up as a loom deadlock), and in busy-poll mode too.

use loom::sync::Arc;
use loom::thread;
use ringmq_loom_tests::completion::Completion;

fn hand_off(busy_poll: bool) {
    loom::model(move || {
        let completion = Arc::new(Completion::for_current_thread());
        let shard = {
            let completion = completion.clone();
            thread::spawn(move || completion.complete(vec![7u8, 8, 9]))
        };
        assert_eq!(completion.wait(busy_poll), vec![7, 8, 9]);
        assert!(completion.is_ready());
        shard.join().unwrap();
    });
}

#[test]
fn a_parked_waiter_is_always_woken() {
    hand_off(false);
}

#[test]
fn a_spinning_waiter_sees_the_value() {
    hand_off(true);
}
