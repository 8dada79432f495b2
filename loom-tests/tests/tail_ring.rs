//! Guards src/server/tail_ring.rs, the ring of a partition's newest batches that
//! the owning shard writes while in-process readers copy from it: whatever the
//! interleaving, a reader gets whole batches exactly as published, starting at
//! the batch holding the offset it asked for, or a miss, never a torn copy of
//! a slot the writer is overwriting (the ring below has two slots: batch 2
//! laps batch 0 while a reader may be reading it).

use loom::sync::Arc;
use loom::thread;
use ringmq_loom_tests::tail_ring::{Follow, TailRing};

const BATCHES: u64 = 3;
const BATCH_BYTES: usize = 12;

/// Batch `k` covers offset `k` alone; its bytes say which batch it is.
fn batch(k: u64) -> Vec<u8> {
    (0..BATCH_BYTES).map(|i| (k as u8) * 16 + i as u8).collect()
}

fn check(ring: &TailRing, offset: u64) {
    match ring.read(offset, 1024) {
        Follow::Batches { records, next_offset, end_offset, .. } => {
            assert!(next_offset > offset && next_offset <= BATCHES && end_offset >= next_offset);
            let expected: Vec<u8> = (offset..next_offset).flat_map(batch).collect();
            assert_eq!(records, expected, "batches {offset}..{next_offset} as published");
        }
        Follow::AtEnd | Follow::Miss => {}
    }
}

#[test]
fn a_reader_never_sees_a_torn_or_misplaced_batch() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model.check(|| {
        let ring = Arc::new(TailRing::new(2, 16, 0, 0));
        ring.publish(0, 1, &batch(0));
        ring.publish(1, 2, &batch(1));
        // Batch 2 overwrites the slot of batch 0 while it may be read.
        let writer = {
            let ring = ring.clone();
            thread::spawn(move || {
                for k in 2..BATCHES {
                    ring.publish(k, k + 1, &batch(k));
                }
            })
        };
        check(&ring, 0);
        check(&ring, 1);
        writer.join().unwrap();
        assert_eq!(ring.read(0, 1024), Follow::Miss, "lapped");
        assert_eq!(
            ring.read(1, 1024),
            Follow::Batches { records: [batch(1), batch(2)].concat(), next_offset: 3, end_offset: 3, earliest: 0 }
        );
        assert_eq!(ring.read(3, 1024), Follow::AtEnd);
    });
}
