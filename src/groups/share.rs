//! The state of one share-partition: one share group reading one partition as
//! a queue (modelled on Kafka's KIP-932). No I/O and no clock of its own.
//!
//! Offsets below `start` are archived (accepted, or dead-lettered). At or above
//! it, each record delivered so far has an entry: acquired by a member under a
//! lease, available again (released, or its lease expired), or archived. Records
//! at or above `next_new` were never delivered. Every delivery counts; a record
//! released or expiring after `max_deliveries` deliveries, or rejected, is to be
//! dead-lettered (the caller writes it to the dead-letter topic, then archives
//! it). `start` moves past archived records as they form a prefix.

use super::state_log::frame_record;
use crate::protocol::{Reader, Writer, TOPIC_NAME_BYTES_MAX};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Suffix of the default dead-letter topic.
pub const DEAD_LETTER_SUFFIX: &str = ".dlq";

/// The dead-letter topic a share-partition of `topic` uses until a ShareFetch
/// names another: `<topic>.dlq`, or, when that would be longer than a topic
/// name may be, the topic's first bytes, `-`, the CRC-32 of the whole name in
/// 8 hex digits, and `.dlq` (exactly [`TOPIC_NAME_BYTES_MAX`] bytes). So every
/// valid topic has a valid default dead-letter topic, and two long topics that
/// share a prefix get different ones.
pub fn default_dead_letter_topic(topic: &str) -> String {
    if topic.len() + DEAD_LETTER_SUFFIX.len() <= TOPIC_NAME_BYTES_MAX {
        return format!("{topic}{DEAD_LETTER_SUFFIX}");
    }
    const HASH_BYTES: usize = 1 + 8;
    let keep = TOPIC_NAME_BYTES_MAX - DEAD_LETTER_SUFFIX.len() - HASH_BYTES;
    // Valid topic names are ASCII, so any byte index is a character boundary;
    // anything else falls back to hashing alone.
    let prefix = topic.get(..keep).unwrap_or("");
    format!("{prefix}-{:08x}{DEAD_LETTER_SUFFIX}", crc32fast::hash(topic.as_bytes()))
}

/// Default lease of an acquired record.
pub const LEASE_DEFAULT: Duration = Duration::from_secs(30);
/// Longest lease a receive may ask for.
pub const LEASE_MAX: Duration = Duration::from_secs(3600);
/// Default number of deliveries before a record is dead-lettered.
pub const MAX_DELIVERIES_DEFAULT: u16 = 5;
/// Records one share-partition may have delivered and not yet archived
/// (Kafka's `group.share.partition.max.record.locks` is 200 by default).
pub const IN_FLIGHT_MAX: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordState {
    Acquired {
        member: String,
        deadline: Instant,
        deliveries: u16,
    },
    Available {
        deliveries: u16,
    },
    /// Being written to the dead-letter topic: not deliverable, not archived
    /// (it stays below `start`'s reach until the write succeeds).
    DeadLettering {
        deliveries: u16,
    },
    Archived,
}

/// Why a record goes to the dead-letter topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    Rejected,
    MaxDeliveries,
}

impl DeadLetterReason {
    pub fn name(self) -> &'static str {
        match self {
            DeadLetterReason::Rejected => "rejected",
            DeadLetterReason::MaxDeliveries => "max-deliveries",
        }
    }
}

/// A record to dead-letter: its offset, why, and how often it was delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetter {
    pub offset: u64,
    pub reason: DeadLetterReason,
    pub deliveries: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    Accept = 1,
    Release = 2,
    Reject = 3,
    Renew = 4,
}

impl AckKind {
    pub fn from_u8(value: u8) -> Option<AckKind> {
        Some(match value {
            1 => AckKind::Accept,
            2 => AckKind::Release,
            3 => AckKind::Reject,
            4 => AckKind::Renew,
            _ => return None,
        })
    }
}

/// An acknowledgement for records this member does not hold (not acquired,
/// acquired by another member, or its lease expired).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotHeld;

/// Counts for DescribeGroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShareCounts {
    pub available: u64,
    pub acquired: u64,
    pub archived: u64,
}

#[derive(Debug, Clone)]
pub struct SharePartition {
    pub start: u64,
    pub next_new: u64,
    pub records: BTreeMap<u64, RecordState>,
    pub max_deliveries: u16,
    /// Records archived since the share-partition was created (for describe).
    pub archived_total: u64,
}

impl SharePartition {
    pub fn new(start: u64) -> SharePartition {
        SharePartition {
            start,
            next_new: start,
            records: BTreeMap::new(),
            max_deliveries: MAX_DELIVERIES_DEFAULT,
            archived_total: 0,
        }
    }

    /// Forgets records the log no longer has (retention).
    pub fn truncate_below(&mut self, earliest: u64) {
        if earliest > self.start {
            let kept = self.records.split_off(&earliest);
            let dropped = std::mem::replace(&mut self.records, kept);
            // What retention took without anyone acknowledging it is archived too.
            self.archived_total +=
                (earliest - self.start) - dropped.values().filter(|s| **s != RecordState::Archived).count() as u64;
            self.start = earliest;
            self.next_new = self.next_new.max(earliest);
        }
    }

    /// Acquires up to `max` records for `member` among offsets
    /// `from..end` (the records a read returned): available ones first in
    /// offset order, then never-delivered ones. Returns (offset, deliveries).
    pub fn acquire(
        &mut self,
        member: &str,
        candidates: std::ops::Range<u64>,
        max: usize,
        lease: Duration,
        now: Instant,
    ) -> Vec<(u64, u16)> {
        let deadline = now + lease;
        let mut acquired = Vec::new();
        let in_flight = self.records.values().filter(|s| !matches!(s, RecordState::Archived)).count();
        let mut room = IN_FLIGHT_MAX.saturating_sub(in_flight);
        for offset in candidates.start.max(self.start)..candidates.end {
            if acquired.len() == max {
                break;
            }
            let deliveries = match self.records.get(&offset) {
                Some(RecordState::Available { deliveries }) => *deliveries,
                Some(_) => continue,
                // Never delivered, or delivered under a state write that failed
                // (a gap below `next_new` after a restart): deliverable.
                None if room > 0 => {
                    room -= 1;
                    self.next_new = self.next_new.max(offset + 1);
                    0
                }
                None => continue,
            };
            let deliveries = deliveries.saturating_add(1);
            self.records.insert(offset, RecordState::Acquired { member: member.to_owned(), deadline, deliveries });
            acquired.push((offset, deliveries));
        }
        acquired
    }

    /// The lowest offset a receive should read from: the first available
    /// record, else the first never delivered.
    pub fn first_candidate(&self) -> u64 {
        // The first available record, or the first offset without an entry
        // (entries are dense from `start` except where a failed state write
        // left a gap), whichever comes first.
        let mut expected = self.start;
        for (offset, state) in &self.records {
            if *offset > expected {
                return expected;
            }
            if matches!(state, RecordState::Available { .. }) {
                return *offset;
            }
            expected = offset + 1;
        }
        expected
    }

    /// Forgets state at and beyond `end`, the log's end after recovery: records
    /// past it were lost with the page cache (a power loss), and offsets there
    /// will hold new records. True when anything changed.
    pub fn clamp_to(&mut self, end: u64) -> bool {
        let beyond = self.records.split_off(&end);
        let changed = !beyond.is_empty() || self.start > end || self.next_new > end;
        self.start = self.start.min(end);
        self.next_new = self.next_new.min(end);
        changed
    }

    /// Starts the leases of records just acquired at `deadline` (once the
    /// acquisition is durable, so no lease runs out before its member heard).
    pub fn start_leases(&mut self, member: &str, acquired: &[(u64, u16)], deadline: Instant) {
        for (offset, _) in acquired {
            if let Some(RecordState::Acquired { member: owner, deadline: lease, .. }) = self.records.get_mut(offset) {
                if owner == member {
                    *lease = deadline;
                }
            }
        }
    }

    /// Applies one acknowledgement to `first..=last`. Every record in the
    /// range must be acquired by `member`, else nothing changes and `Err`.
    /// Returns the records to dead-letter (not yet archived: the caller
    /// archives each once it is written).
    pub fn acknowledge(
        &mut self,
        member: &str,
        first: u64,
        last: u64,
        kind: AckKind,
        lease: Duration,
        now: Instant,
    ) -> Result<Vec<DeadLetter>, NotHeld> {
        if last < first || last - first >= IN_FLIGHT_MAX as u64 {
            return Err(NotHeld);
        }
        for offset in first..=last {
            match self.records.get(&offset) {
                Some(RecordState::Acquired { member: owner, .. }) if owner == member => {}
                _ => return Err(NotHeld),
            }
        }
        let mut dead = Vec::new();
        for offset in first..=last {
            let Some(state) = self.records.get_mut(&offset) else { continue };
            let RecordState::Acquired { deliveries, deadline, .. } = state else { continue };
            let deliveries = *deliveries;
            match kind {
                AckKind::Accept => *state = RecordState::Archived,
                AckKind::Renew => *deadline = now + lease,
                AckKind::Release if deliveries < self.max_deliveries => *state = RecordState::Available { deliveries },
                AckKind::Release => {
                    dead.push(DeadLetter { offset, reason: DeadLetterReason::MaxDeliveries, deliveries });
                }
                AckKind::Reject => dead.push(DeadLetter { offset, reason: DeadLetterReason::Rejected, deliveries }),
            }
        }
        // Dead letters are held (not deliverable) until archived.
        for letter in &dead {
            self.records.insert(letter.offset, RecordState::DeadLettering { deliveries: letter.deliveries });
        }
        self.advance();
        Ok(dead)
    }

    /// Expired leases make records available again, or dead letters once they
    /// have been delivered `max_deliveries` times.
    pub fn expire(&mut self, now: Instant) -> (bool, Vec<DeadLetter>) {
        let mut changed = false;
        let mut dead = Vec::new();
        for (offset, state) in self.records.iter_mut() {
            if let RecordState::Acquired { deadline, deliveries, .. } = state {
                if *deadline <= now {
                    changed = true;
                    let deliveries = *deliveries;
                    if deliveries >= self.max_deliveries {
                        dead.push(DeadLetter { offset: *offset, reason: DeadLetterReason::MaxDeliveries, deliveries });
                        *state = RecordState::DeadLettering { deliveries };
                    } else {
                        *state = RecordState::Available { deliveries };
                    }
                }
            }
        }
        self.advance();
        (changed, dead)
    }

    /// A dead letter that could not be written becomes available again.
    pub fn unarchive(&mut self, letter: &DeadLetter) {
        if let Some(state @ RecordState::DeadLettering { .. }) = self.records.get_mut(&letter.offset) {
            *state = RecordState::Available { deliveries: letter.deliveries };
        }
    }

    /// Archives `first..=last` (replaying the state file).
    pub fn archive(&mut self, first: u64, last: u64) {
        for offset in first.max(self.start)..=last {
            self.records.insert(offset, RecordState::Archived);
            self.next_new = self.next_new.max(offset + 1);
        }
        self.advance();
    }

    /// Records a delivery count (replaying the state file): available again.
    pub fn delivered(&mut self, offset: u64, deliveries: u16) {
        if offset < self.start {
            return;
        }
        match self.records.get(&offset) {
            Some(RecordState::Archived) => {}
            _ => {
                self.records.insert(offset, RecordState::Available { deliveries });
            }
        }
        self.next_new = self.next_new.max(offset + 1);
    }

    fn advance(&mut self) {
        while let Some(entry) = self.records.first_entry() {
            if *entry.key() != self.start || *entry.get() != RecordState::Archived {
                break;
            }
            entry.remove();
            self.start += 1;
            self.archived_total += 1;
        }
        self.next_new = self.next_new.max(self.start);
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.records
            .values()
            .filter_map(|s| match s {
                RecordState::Acquired { deadline, .. } => Some(*deadline),
                _ => None,
            })
            .min()
    }

    /// Counts against the partition's end offset.
    pub fn counts(&self, end: u64) -> ShareCounts {
        let mut counts = ShareCounts { archived: self.archived_total, ..Default::default() };
        for state in self.records.values() {
            match state {
                RecordState::Acquired { .. } | RecordState::DeadLettering { .. } => counts.acquired += 1,
                RecordState::Available { .. } => counts.available += 1,
                RecordState::Archived => counts.archived += 1,
            }
        }
        counts.available += end.saturating_sub(self.next_new);
        counts
    }
}

// The state file of a share-partition (`server::share` keeps one per
// share group and partition):
//
//   record: kind u8 = 1 delivered: offset i64, delivery_count u16
//                   = 2 archived:  first i64, last i64
//                   = 3 start:     offset i64 (written by compaction)

const RECORD_DELIVERED: u8 = 1;
const RECORD_ARCHIVED: u8 = 2;
const RECORD_START: u8 = 3;

pub fn delivered_record(offset: u64, deliveries: u16) -> Vec<u8> {
    let mut writer = Writer::with_capacity(11);
    writer.u8(RECORD_DELIVERED);
    writer.i64(offset as i64);
    writer.u16(deliveries);
    writer.into_inner()
}

pub fn archived_record(first: u64, last: u64) -> Vec<u8> {
    let mut writer = Writer::with_capacity(17);
    writer.u8(RECORD_ARCHIVED);
    writer.i64(first as i64);
    writer.i64(last as i64);
    writer.into_inner()
}

pub fn start_record(offset: u64) -> Vec<u8> {
    let mut writer = Writer::with_capacity(9);
    writer.u8(RECORD_START);
    writer.i64(offset as i64);
    writer.into_inner()
}

pub fn replay(state: &mut SharePartition, payload: &[u8]) {
    let mut reader = Reader::new(payload);
    let offset = |value: i64| u64::try_from(value).ok();
    match reader.u8() {
        Ok(RECORD_DELIVERED) => {
            if let (Ok(Some(offset)), Ok(deliveries)) = (reader.i64().map(offset), reader.u16()) {
                state.delivered(offset, deliveries);
            }
        }
        Ok(RECORD_ARCHIVED) => {
            if let (Ok(Some(first)), Ok(Some(last))) = (reader.i64().map(offset), reader.i64().map(offset)) {
                if last >= first && last - first < IN_FLIGHT_MAX as u64 {
                    state.archive(first, last);
                }
            }
        }
        Ok(RECORD_START) => {
            if let Ok(Some(start)) = reader.i64().map(offset) {
                state.truncate_below(start);
            }
        }
        _ => {}
    }
}

/// The state file's content for `state`: its start, then an entry per record.
pub fn live_records(state: &SharePartition) -> Vec<u8> {
    let mut live = Vec::new();
    let _ = frame_record(&mut live, &start_record(state.start));
    for (offset, record) in &state.records {
        let payload = match record {
            RecordState::Archived => archived_record(*offset, *offset),
            // Leases and dead letters in flight are not kept: available again.
            RecordState::Available { deliveries }
            | RecordState::DeadLettering { deliveries }
            | RecordState::Acquired { deliveries, .. } => delivered_record(*offset, *deliveries),
        };
        let _ = frame_record(&mut live, &payload);
    }
    live
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(30);

    #[test]
    fn members_get_disjoint_records_and_accepting_moves_the_start() {
        let now = Instant::now();
        let mut share = SharePartition::new(0);
        let a = share.acquire("a", 0..10, 4, LEASE, now);
        let b = share.acquire("b", 0..10, 4, LEASE, now);
        assert_eq!(a, vec![(0, 1), (1, 1), (2, 1), (3, 1)]);
        assert_eq!(b, vec![(4, 1), (5, 1), (6, 1), (7, 1)]);
        assert_eq!(share.acknowledge("a", 4, 4, AckKind::Accept, LEASE, now), Err(NotHeld), "b's record");
        assert_eq!(share.acknowledge("a", 0, 3, AckKind::Accept, LEASE, now), Ok(vec![]));
        assert_eq!(share.start, 4);
        assert_eq!(share.counts(10), ShareCounts { available: 2, acquired: 4, archived: 4 });
    }

    #[test]
    fn release_and_expiry_redeliver_with_a_higher_count_and_the_limit_dead_letters() {
        let now = Instant::now();
        let mut share = SharePartition::new(0);
        share.max_deliveries = 3;
        share.acquire("a", 0..1, 1, LEASE, now);
        assert_eq!(share.acknowledge("a", 0, 0, AckKind::Release, LEASE, now), Ok(vec![]));
        assert_eq!(share.acquire("b", 0..1, 1, LEASE, now), vec![(0, 2)]);
        let (changed, dead) = share.expire(now + LEASE);
        assert!(changed && dead.is_empty());
        assert_eq!(share.acquire("a", 0..1, 1, LEASE, now), vec![(0, 3)]);
        let dead = share.acknowledge("a", 0, 0, AckKind::Release, LEASE, now).unwrap();
        assert_eq!(dead, vec![DeadLetter { offset: 0, reason: DeadLetterReason::MaxDeliveries, deliveries: 3 }]);
        assert!(share.acquire("a", 0..1, 1, LEASE, now).is_empty(), "not delivered while being dead-lettered");
        share.unarchive(&dead[0]);
        assert_eq!(share.acquire("a", 0..1, 1, LEASE, now), vec![(0, 4)], "a failed dead-letter write gives it back");
        let dead = share.acknowledge("a", 0, 0, AckKind::Release, LEASE, now).unwrap();
        share.archive(dead[0].offset, dead[0].offset);
        assert!(share.acquire("a", 0..1, 1, LEASE, now).is_empty(), "never delivered again");
        share.acquire("a", 1..2, 1, LEASE, now);
        let dead = share.acknowledge("a", 1, 1, AckKind::Reject, LEASE, now).unwrap();
        assert_eq!(dead[0].reason, DeadLetterReason::Rejected);
        assert_eq!(share.start, 1, "not archived before the dead letter is written");
        share.archive(1, 1);
        assert_eq!(share.start, 2);
    }

    #[test]
    fn a_gap_left_by_a_failed_state_write_is_delivered_after_a_restart() {
        let now = Instant::now();
        // Replayed: 0..2 delivered and 5 delivered, 2..5 acquired under a write
        // that failed (no entries), then the broker restarted.
        let mut share = SharePartition::new(0);
        share.delivered(0, 1);
        share.delivered(1, 1);
        share.delivered(5, 1);
        share.archive(0, 1);
        assert_eq!(share.first_candidate(), 2);
        let got = share.acquire("a", 2..6, 10, LEASE, now);
        assert_eq!(got, vec![(2, 1), (3, 1), (4, 1), (5, 2)]);
    }

    #[test]
    fn clamping_to_a_shorter_log_forgets_lost_offsets() {
        let now = Instant::now();
        let mut share = SharePartition::new(0);
        share.acquire("a", 0..10, 10, LEASE, now);
        share.acknowledge("a", 0, 9, AckKind::Accept, LEASE, now).unwrap();
        assert_eq!(share.start, 10);
        assert!(share.clamp_to(6), "the log recovered to 6 records");
        assert_eq!((share.start, share.first_candidate()), (6, 6));
        assert_eq!(share.acquire("a", 6..8, 10, LEASE, now), vec![(6, 1), (7, 1)], "new records there are delivered");
        assert!(!share.clamp_to(100));
    }

    #[test]
    fn renew_extends_a_lease_and_replay_restores_counts_and_archives() {
        let now = Instant::now();
        let mut share = SharePartition::new(0);
        share.acquire("a", 0..2, 2, LEASE, now);
        share.acknowledge("a", 0, 1, AckKind::Renew, LEASE, now + LEASE / 2).unwrap();
        let (changed, _) = share.expire(now + LEASE);
        assert!(!changed, "renewed leases have not expired");
        let mut replayed = SharePartition::new(0);
        replayed.delivered(0, 1);
        replayed.delivered(1, 2);
        replayed.archive(0, 0);
        assert_eq!(replayed.start, 1);
        assert_eq!(replayed.acquire("z", 0..5, 5, LEASE, now), vec![(1, 3), (2, 1), (3, 1), (4, 1)]);
    }
}
