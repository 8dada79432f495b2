//! The newest batches of one partition, published by its shard for readers in
//! the same process to follow without a round trip through the shard: the
//! embedded client's fetch reads them here, as a Chronicle or Aeron reader
//! follows its writer's buffer.
//!
//! One writer (the owning shard, after each append) and any number of readers
//! on other threads. No locks: a ring of fixed slots, each guarded by a
//! sequence number (a seqlock), and a count of the batches published.
//!
//! ```text
//! batch k goes to slot k % slots:
//!   writer: slot.seq = 2k+1; fence(Release); words, offsets, length; slot.seq = 2k+2 (Release);
//!           published = k+1 (Release)
//!   reader: p = published (Acquire); for a batch k < p: s1 = slot.seq (Acquire);
//!           read; fence(Acquire); s2 = slot.seq; valid only if s1 == s2 == 2k+2
//! ```
//!
//! A reader that loses the race (the writer lapped the slot) sees another
//! sequence and reports a miss: it then asks the shard, which reads the log.
//! Bytes are kept in `AtomicU64` words so a racing read is a stale value, never
//! undefined behaviour. A batch larger than a slot is published as a gap
//! (offsets without bytes): readers stop there and ask the shard. Atomics come
//! from `crate::sync`, so loom checks this file as it is.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

use crate::sync::{fence, AtomicBool, AtomicU64, Ordering};

/// Slots of a ring: the batches a follower can be behind and still be served
/// from memory.
pub const TAIL_RING_SLOTS: usize = 64;
/// Largest batch a slot holds (a ring is `TAIL_RING_SLOTS` × this: 256 KiB,
/// allocated only for a partition an in-process reader follows).
pub const TAIL_RING_SLOT_BYTES: usize = 4 * 1024;

const WORD: usize = 8;
/// The length of a gap: a batch that was too large for a slot.
const GAP: u64 = u64::MAX;

struct Slot {
    seq: AtomicU64,
    base_offset: AtomicU64,
    next_offset: AtomicU64,
    len: AtomicU64,
    words: Box<[AtomicU64]>,
}

/// What a reader found at the offset it asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Follow {
    /// Whole batches from the one holding the offset, up to `next_offset`;
    /// the partition ended at `end_offset` when they were read.
    Batches { records: Vec<u8>, next_offset: u64, end_offset: u64, earliest: u64 },
    /// Nothing published at or after the offset yet (it is the end).
    AtEnd,
    /// Not here (too old, lapped, past a gap, or the ring is closed): ask the shard.
    Miss,
}

pub struct TailRing {
    slots: Box<[Slot]>,
    slot_bytes: usize,
    /// Batches published so far.
    published: AtomicU64,
    /// The partition's next offset after the newest published batch.
    end_offset: AtomicU64,
    /// The partition's earliest offset (it moves only by retention).
    earliest: AtomicU64,
    closed: AtomicBool,
}

impl TailRing {
    /// A ring of `slots` slots of `slot_bytes` bytes (rounded up to a word).
    pub fn new(slots: usize, slot_bytes: usize, end_offset: u64, earliest: u64) -> TailRing {
        let words = slot_bytes.div_ceil(WORD);
        let slots = (0..slots.max(1))
            .map(|_| Slot {
                seq: AtomicU64::new(0),
                base_offset: AtomicU64::new(0),
                next_offset: AtomicU64::new(0),
                len: AtomicU64::new(0),
                words: (0..words).map(|_| AtomicU64::new(0)).collect(),
            })
            .collect();
        TailRing {
            slots,
            slot_bytes: words * WORD,
            published: AtomicU64::new(0),
            end_offset: AtomicU64::new(end_offset),
            earliest: AtomicU64::new(earliest),
            closed: AtomicBool::new(false),
        }
    }

    /// The ring a shard makes for a partition a reader wants to follow.
    pub fn for_partition(end_offset: u64, earliest: u64) -> TailRing {
        TailRing::new(TAIL_RING_SLOTS, TAIL_RING_SLOT_BYTES, end_offset, earliest)
    }

    /// The slot batch `batch` goes to (always `Some`: `slots` is never empty).
    fn slot(&self, batch: u64) -> Option<&Slot> {
        self.slots.get((batch % self.slots.len() as u64) as usize)
    }

    /// Publishes the batch just appended at `base_offset..next_offset`.
    /// Only the owning shard calls this, one batch at a time.
    pub fn publish(&self, base_offset: u64, next_offset: u64, batch: &[u8]) {
        let k = self.published.load(Ordering::Relaxed);
        let Some(slot) = self.slot(k) else { return };
        slot.seq.store(2 * k + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        slot.base_offset.store(base_offset, Ordering::Relaxed);
        slot.next_offset.store(next_offset, Ordering::Relaxed);
        if batch.len() <= self.slot_bytes {
            for (word, chunk) in slot.words.iter().zip(batch.chunks(WORD)) {
                let mut bytes = [0u8; WORD];
                bytes.iter_mut().zip(chunk).for_each(|(byte, value)| *byte = *value);
                word.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
            }
            slot.len.store(batch.len() as u64, Ordering::Relaxed);
        } else {
            slot.len.store(GAP, Ordering::Relaxed);
        }
        slot.seq.store(2 * k + 2, Ordering::Release);
        self.end_offset.store(next_offset, Ordering::Relaxed);
        self.published.store(k + 1, Ordering::Release);
    }

    /// The partition's earliest offset moved (retention).
    pub fn set_earliest(&self, earliest: u64) {
        self.earliest.store(earliest, Ordering::Relaxed);
    }

    /// The partition is gone (deleted, or its shard stopped): readers ask the
    /// shard from now on.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Batches published so far (a reader waiting for more watches this).
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    /// Whole batches from the one holding `offset`, as many as fit in
    /// `max_bytes` (at least one), stopping at a gap or a lapped slot.
    pub fn read(&self, offset: u64, max_bytes: usize) -> Follow {
        if self.is_closed() {
            return Follow::Miss;
        }
        let published = self.published.load(Ordering::Acquire);
        let end_offset = self.end_offset.load(Ordering::Relaxed);
        let earliest = self.earliest.load(Ordering::Relaxed);
        if offset < earliest {
            // Deleted by retention: the shard answers out of range.
            return Follow::Miss;
        }
        let oldest = published.saturating_sub(self.slots.len() as u64);
        // Find the batch holding `offset`, from the newest back (a follower
        // usually wants the newest).
        let mut first = None;
        let mut batch = published;
        while batch > oldest {
            batch -= 1;
            let Some((base, next)) = self.offsets(batch) else { return Follow::Miss };
            if offset >= next {
                if batch + 1 == published {
                    return if offset == next { Follow::AtEnd } else { Follow::Miss };
                }
                return Follow::Miss;
            }
            if offset >= base {
                first = Some(batch);
                break;
            }
        }
        let Some(first) = first else {
            return if published == 0 && offset == end_offset { Follow::AtEnd } else { Follow::Miss };
        };
        let mut records = Vec::new();
        let mut copied_to = None;
        for batch in first..published {
            let Some(next) = self.copy(batch, copied_to, &mut records, max_bytes) else { break };
            copied_to = Some(next);
        }
        match copied_to {
            Some(next) => Follow::Batches { records, next_offset: next, end_offset: end_offset.max(next), earliest },
            None => Follow::Miss,
        }
    }

    /// The offsets of published batch `batch`, if its slot still holds it.
    fn offsets(&self, batch: u64) -> Option<(u64, u64)> {
        let slot = self.slot(batch)?;
        let seq = slot.seq.load(Ordering::Acquire);
        let base = slot.base_offset.load(Ordering::Relaxed);
        let next = slot.next_offset.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        (seq == 2 * batch + 2 && slot.seq.load(Ordering::Relaxed) == seq).then_some((base, next))
    }

    /// Appends batch `batch` to `records` if its slot still holds it, it
    /// starts where the copied ones end (`expected_base`) and it fits in `max_bytes` (the first always
    /// fits); returns its next offset.
    fn copy(&self, batch: u64, expected_base: Option<u64>, records: &mut Vec<u8>, max_bytes: usize) -> Option<u64> {
        let slot = self.slot(batch)?;
        let seq = slot.seq.load(Ordering::Acquire);
        if seq != 2 * batch + 2 {
            return None;
        }
        let base = slot.base_offset.load(Ordering::Relaxed);
        let next = slot.next_offset.load(Ordering::Relaxed);
        let len = slot.len.load(Ordering::Relaxed);
        let len = usize::try_from(len).ok().filter(|&len| len <= self.slot_bytes)?;
        if expected_base.is_some_and(|expected| expected != base)
            || (!records.is_empty() && records.len() + len > max_bytes)
        {
            return None;
        }
        let start = records.len();
        for word in slot.words.iter().take(len.div_ceil(WORD)) {
            records.extend_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        records.truncate(start + len);
        fence(Ordering::Acquire);
        if slot.seq.load(Ordering::Relaxed) != seq {
            // Lapped while copying: drop the torn copy.
            records.truncate(start);
            return None;
        }
        Some(next)
    }
}

#[cfg(all(test, not(ringmq_loom)))]
mod tests {
    use super::*;

    fn batch(tag: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| tag.wrapping_add(i as u8)).collect()
    }

    #[test]
    fn a_follower_reads_what_was_published_and_waits_at_the_end() {
        let ring = TailRing::new(4, 64, 10, 0);
        assert_eq!(ring.read(10, 1024), Follow::AtEnd);
        assert_eq!(ring.read(9, 1024), Follow::Miss);
        ring.publish(10, 13, &batch(1, 21));
        ring.publish(13, 14, &batch(2, 5));
        let mut both = batch(1, 21);
        both.extend(batch(2, 5));
        assert_eq!(
            ring.read(10, 1024),
            Follow::Batches { records: both, next_offset: 14, end_offset: 14, earliest: 0 }
        );
        // An offset inside a batch gets the whole batch.
        assert_eq!(ring.read(12, 1024), ring.read(10, 1024));
        assert_eq!(
            ring.read(13, 1024),
            Follow::Batches { records: batch(2, 5), next_offset: 14, end_offset: 14, earliest: 0 }
        );
        assert_eq!(ring.read(14, 1024), Follow::AtEnd);
        assert_eq!(ring.read(15, 1024), Follow::Miss);
    }

    #[test]
    fn max_bytes_stops_before_a_batch_that_does_not_fit_but_never_before_the_first() {
        let ring = TailRing::new(4, 64, 0, 0);
        ring.publish(0, 1, &batch(1, 40));
        ring.publish(1, 2, &batch(2, 40));
        assert_eq!(
            ring.read(0, 10),
            Follow::Batches { records: batch(1, 40), next_offset: 1, end_offset: 2, earliest: 0 }
        );
        let Follow::Batches { records, .. } = ring.read(0, 80) else { panic!("expected batches") };
        assert_eq!(records.len(), 80);
    }

    #[test]
    fn lapped_batches_and_gaps_are_misses_and_a_closed_ring_serves_nothing() {
        let ring = TailRing::new(2, 16, 0, 0);
        for offset in 0..3 {
            ring.publish(offset, offset + 1, &batch(offset as u8, 16));
        }
        assert_eq!(ring.read(0, 1024), Follow::Miss, "slot 0 was overwritten by batch 2");
        assert_eq!(
            ring.read(1, 1024),
            Follow::Batches {
                records: [batch(1, 16), batch(2, 16)].concat(),
                next_offset: 3,
                end_offset: 3,
                earliest: 0
            }
        );
        ring.publish(3, 4, &batch(9, 17));
        assert_eq!(ring.read(3, 1024), Follow::Miss, "a batch larger than a slot is a gap");
        assert_eq!(
            ring.read(2, 1024),
            Follow::Batches { records: batch(2, 16), next_offset: 3, end_offset: 4, earliest: 0 }
        );
        assert_eq!(ring.read(4, 1024), Follow::AtEnd);
        ring.set_earliest(3);
        assert_eq!(ring.read(2, 1024), Follow::Miss, "deleted by retention: the shard answers");
        ring.close();
        assert_eq!(ring.read(4, 1024), Follow::Miss);
    }
}
