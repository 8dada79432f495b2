//! Idempotent producers: per partition, the state that lets the owner append a
//! retried batch once and answer the retry with the original offsets.
//!
//! A batch with `producer_id >= 0` carries the producer's epoch and the sequence
//! number of its first record (RecordBatch v2 header fields); its records take
//! `base_sequence ..= base_sequence + last_offset_delta` (wrapping after
//! `i32::MAX` to 0, as Kafka's do). For each producer the table keeps its epoch
//! and its last [`PRODUCER_RECENT_BATCHES`] batches:
//!
//! - an older epoch is fenced;
//! - a newer epoch starts over and must begin at sequence 0;
//! - a batch equal to a recent one is a duplicate: not appended, answered with
//!   the original offsets;
//! - otherwise it must start right after the last sequence; anything else is a
//!   gap (or a too-old retry) and is refused as out of order.
//!
//! The table is rebuilt from the batch headers of the log (nothing else is
//! stored), so it survives restarts exactly as far as the log does.

use crate::batch::BatchHeader;
use std::collections::{HashMap, VecDeque};

/// Batches per producer remembered for duplicate detection (Kafka keeps 5: a
/// producer has at most 5 requests in flight per partition).
pub const PRODUCER_RECENT_BATCHES: usize = 5;
/// Producers one partition remembers; past it the one that wrote least
/// recently is forgotten (its next batch is refused as out of order, and an
/// idempotent client then takes a new producer id).
pub const PRODUCERS_PER_PARTITION_MAX: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRange {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: u64,
    pub last_offset: u64,
}

#[derive(Debug, Clone, Default)]
struct ProducerEntry {
    epoch: i16,
    recent: VecDeque<BatchRange>,
}

/// What to do with an idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    Append,
    /// Already appended: answer with these offsets.
    Duplicate {
        base_offset: u64,
        last_offset: u64,
    },
    /// The epoch is older than the producer's current one.
    Fenced,
    /// Not the next sequence (a gap, or a retry older than the recent batches).
    OutOfOrder,
    /// A producer id this partition does not know (never seen, forgotten, or
    /// its batches deleted before a restart), starting above sequence 0.
    UnknownProducer,
    /// A negative sequence, or a producer id with no sequence.
    Invalid,
}

/// The sequence after `sequence` (wrapping as Kafka's do).
pub fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

/// The sequence of the last record of a batch starting at `first` with `delta`.
pub fn last_sequence(first: i32, delta: i32) -> i32 {
    ((i64::from(first) + i64::from(delta)) % (i64::from(i32::MAX) + 1)) as i32
}

#[derive(Debug, Default)]
pub struct ProducerTable {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerTable {
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Checks a batch whose header says `producer_id >= 0`.
    pub fn check(&self, header: &BatchHeader) -> SequenceCheck {
        if header.base_sequence < 0 || header.last_offset_delta < 0 || header.producer_epoch < 0 {
            return SequenceCheck::Invalid;
        }
        let first = header.base_sequence;
        let last = last_sequence(first, header.last_offset_delta);
        let Some(entry) = self.producers.get(&header.producer_id) else {
            // A producer this partition has not seen starts at 0.
            return if first == 0 { SequenceCheck::Append } else { SequenceCheck::UnknownProducer };
        };
        if header.producer_epoch < entry.epoch {
            return SequenceCheck::Fenced;
        }
        if header.producer_epoch > entry.epoch {
            return if first == 0 { SequenceCheck::Append } else { SequenceCheck::OutOfOrder };
        }
        if let Some(range) = entry.recent.iter().find(|r| r.first_sequence == first && r.last_sequence == last) {
            return SequenceCheck::Duplicate { base_offset: range.base_offset, last_offset: range.last_offset };
        }
        match entry.recent.back() {
            Some(latest) if first == next_sequence(latest.last_sequence) => SequenceCheck::Append,
            None => SequenceCheck::Append,
            Some(_) => SequenceCheck::OutOfOrder,
        }
    }

    /// Remembers an appended batch (its header with the base offset stamped).
    pub fn record(&mut self, header: &BatchHeader) {
        if header.producer_id < 0 || header.base_sequence < 0 || header.base_offset < 0 {
            return;
        }
        if !self.producers.contains_key(&header.producer_id) && self.producers.len() >= PRODUCERS_PER_PARTITION_MAX {
            let oldest = self
                .producers
                .iter()
                .min_by_key(|(_, entry)| entry.recent.back().map_or(0, |range| range.last_offset))
                .map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                self.producers.remove(&oldest);
            }
        }
        let entry = self.producers.entry(header.producer_id).or_default();
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.recent.clear();
        }
        if entry.recent.len() == PRODUCER_RECENT_BATCHES {
            entry.recent.pop_front();
        }
        entry.recent.push_back(BatchRange {
            first_sequence: header.base_sequence,
            last_sequence: last_sequence(header.base_sequence, header.last_offset_delta.max(0)),
            base_offset: header.base_offset as u64,
            last_offset: header.last_offset().max(0) as u64,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchBuilder;

    fn header(producer: i64, epoch: i16, sequence: i32, records: usize, base_offset: i64) -> BatchHeader {
        let mut builder = BatchBuilder::new();
        builder.producer(producer, epoch, sequence);
        for _ in 0..records {
            builder.append(1, None, Some(b"v"), &[]).unwrap();
        }
        let mut bytes = builder.finish().unwrap();
        crate::batch::stamp_base_offset(&mut bytes, base_offset).unwrap();
        BatchHeader::parse(&bytes).unwrap()
    }

    #[test]
    fn in_order_batches_append_and_a_retry_is_a_duplicate_with_its_offsets() {
        let mut table = ProducerTable::default();
        let first = header(7, 0, 0, 3, 100);
        assert_eq!(table.check(&first), SequenceCheck::Append);
        table.record(&first);
        let second = header(7, 0, 3, 2, 103);
        assert_eq!(table.check(&second), SequenceCheck::Append);
        table.record(&second);
        assert_eq!(
            table.check(&header(7, 0, 0, 3, -1)),
            SequenceCheck::Duplicate { base_offset: 100, last_offset: 102 }
        );
        assert_eq!(
            table.check(&header(7, 0, 3, 2, -1)),
            SequenceCheck::Duplicate { base_offset: 103, last_offset: 104 }
        );
        assert_eq!(table.check(&header(7, 0, 6, 1, -1)), SequenceCheck::OutOfOrder, "sequence 5 is missing");
        assert_eq!(table.check(&header(7, 0, 5, 1, -1)), SequenceCheck::Append);
        assert_eq!(table.check(&header(8, 0, 4, 1, -1)), SequenceCheck::UnknownProducer, "a new producer starts at 0");
    }

    #[test]
    fn the_table_forgets_the_least_recent_producer_past_its_limit() {
        let mut table = ProducerTable::default();
        for producer in 0..PRODUCERS_PER_PARTITION_MAX as i64 + 1 {
            table.record(&header(producer, 0, 0, 1, producer));
        }
        assert_eq!(table.len(), PRODUCERS_PER_PARTITION_MAX);
        assert_eq!(table.check(&header(0, 0, 1, 1, -1)), SequenceCheck::UnknownProducer, "producer 0 was forgotten");
        let last = PRODUCERS_PER_PARTITION_MAX as i64;
        assert_eq!(table.check(&header(last, 0, 1, 1, -1)), SequenceCheck::Append);
    }

    #[test]
    fn epochs_fence_older_producers_and_restart_sequences() {
        let mut table = ProducerTable::default();
        table.record(&header(7, 1, 0, 1, 0));
        assert_eq!(table.check(&header(7, 0, 1, 1, -1)), SequenceCheck::Fenced);
        assert_eq!(table.check(&header(7, 2, 1, 1, -1)), SequenceCheck::OutOfOrder);
        assert_eq!(table.check(&header(7, 2, 0, 1, -1)), SequenceCheck::Append);
        table.record(&header(7, 2, 0, 1, 1));
        assert_eq!(table.check(&header(7, 1, 1, 1, -1)), SequenceCheck::Fenced);
    }

    #[test]
    fn only_the_recent_batches_are_remembered_and_sequences_wrap() {
        let mut table = ProducerTable::default();
        for i in 0..7 {
            table.record(&header(1, 0, i, 1, i64::from(i)));
        }
        assert_eq!(table.check(&header(1, 0, 0, 1, -1)), SequenceCheck::OutOfOrder, "too old to be recognised");
        assert_eq!(table.check(&header(1, 0, 2, 1, -1)), SequenceCheck::Duplicate { base_offset: 2, last_offset: 2 });
        assert_eq!(last_sequence(i32::MAX, 1), 0);
        assert_eq!(next_sequence(i32::MAX), 0);
        let mut table = ProducerTable::default();
        table.record(&header(2, 0, i32::MAX - 1, 3, 0));
        assert_eq!(table.check(&header(2, 0, 1, 1, -1)), SequenceCheck::Append);
        assert_eq!(table.check(&header(2, 0, -5, 1, -1)), SequenceCheck::Invalid);
    }
}
