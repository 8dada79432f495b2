//! Share groups from the client side: [`ShareConsumer`] receives records of a
//! topic as a queue (members of one group get disjoint records), each under a
//! lease, and acknowledges each: accept, release, reject, or renew.

use super::{decode_records, ClientError, ConsumedRecord, Result, Transport};
use crate::groups::share::AckKind;
use crate::protocol::share::{ShareAckRequest, ShareFetchRequest};
use crate::protocol::ErrorCode;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct ShareConsumerConfig {
    /// How long a received record stays this member's before it is redelivered.
    pub lease: Duration,
    /// Deliveries after which a released or expired record is dead-lettered.
    pub max_deliveries: u16,
    /// `None`: `<topic>.dlq`.
    pub dead_letter_topic: Option<String>,
    /// Records one receive acquires at most.
    pub max_records: u32,
    pub max_bytes: u32,
}

impl Default for ShareConsumerConfig {
    fn default() -> Self {
        ShareConsumerConfig {
            lease: crate::groups::share::LEASE_DEFAULT,
            max_deliveries: crate::groups::share::MAX_DELIVERIES_DEFAULT,
            dead_letter_topic: None,
            max_records: 500,
            max_bytes: super::FETCH_MAX_BYTES_DEFAULT,
        }
    }
}

/// A received record: where it is, how often it was delivered, and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRecord {
    pub topic: String,
    pub partition: u32,
    pub delivery_count: u16,
    pub record: ConsumedRecord,
}

/// A member of a share group on one topic.
pub struct ShareConsumer<T: Transport> {
    transport: T,
    group: String,
    topic: String,
    member_id: String,
    config: ShareConsumerConfig,
    partitions: u32,
    next_partition: u32,
}

fn new_member_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("share-{}-{:x}-{}", std::process::id(), nanos as u64, COUNTER.fetch_add(1, Ordering::Relaxed))
}

impl<T: Transport> ShareConsumer<T> {
    pub fn new(transport: T, group: &str, topic: &str, config: ShareConsumerConfig) -> Result<ShareConsumer<T>> {
        let partitions = transport.partition_count(topic)?;
        Ok(ShareConsumer {
            transport,
            group: group.into(),
            topic: topic.into(),
            member_id: new_member_id(),
            config,
            partitions,
            next_partition: 0,
        })
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn transport(&mut self) -> &mut T {
        &mut self.transport
    }

    fn fetch(&mut self, partition: u32, wait: Duration, max_records: u32) -> Result<Vec<ShareRecord>> {
        let request = ShareFetchRequest {
            group: self.group.clone(),
            member_id: self.member_id.clone(),
            topic: self.topic.clone(),
            partition,
            max_records,
            max_bytes: self.config.max_bytes,
            max_wait_ms: wait.as_millis().min(u128::from(crate::protocol::FETCH_WAIT_MS_MAX)) as u32,
            lease_ms: self.config.lease.as_millis().min(u128::from(u32::MAX)) as u32,
            max_deliveries: self.config.max_deliveries,
            dead_letter_topic: self.config.dead_letter_topic.clone().unwrap_or_default(),
        };
        let response = self.transport.share_fetch(&request)?;
        let Some(&(first, _)) = response.acquired.first() else { return Ok(Vec::new()) };
        let counts: HashMap<u64, u16> = response.acquired.iter().copied().collect();
        let records = decode_records(&response.records, first)?;
        Ok(records
            .into_iter()
            .filter_map(|record| {
                let delivery_count = *counts.get(&record.offset)?;
                Some(ShareRecord { topic: self.topic.clone(), partition, delivery_count, record })
            })
            .collect())
    }

    /// Acquires up to `max_records` records, waiting up to `max_wait` when none
    /// are available. Each must then be acknowledged (or its lease expires).
    pub fn receive(&mut self, max_records: u32, max_wait: Duration) -> Result<Vec<ShareRecord>> {
        let deadline = Instant::now() + max_wait;
        loop {
            for step in 0..self.partitions {
                let partition = (self.next_partition + step) % self.partitions.max(1);
                let records = self.fetch(partition, Duration::ZERO, max_records)?;
                if !records.is_empty() {
                    self.next_partition = (partition + 1) % self.partitions.max(1);
                    return Ok(records);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Vec::new());
            }
            // Long-poll one partition in turn, briefly, so every one is visited.
            let partition = self.next_partition;
            self.next_partition = (self.next_partition + 1) % self.partitions.max(1);
            let records = self.fetch(partition, left.min(Duration::from_millis(100)), max_records)?;
            if !records.is_empty() {
                return Ok(records);
            }
        }
    }

    /// Acknowledges records: one (partition, offset, kind) each. Returns the
    /// server's error per record (`ErrorCode::None` when it applied).
    pub fn acknowledge(&mut self, acks: &[(u32, u64, AckKind)]) -> Result<Vec<ErrorCode>> {
        let mut by_partition: BTreeMap<u32, Vec<(usize, u64, AckKind)>> = BTreeMap::new();
        for (index, (partition, offset, kind)) in acks.iter().enumerate() {
            by_partition.entry(*partition).or_default().push((index, *offset, *kind));
        }
        let mut results = vec![ErrorCode::None; acks.len()];
        for (partition, mut entries) in by_partition {
            entries.sort_by_key(|e| e.1);
            // Consecutive offsets with the same kind travel as one range.
            let mut ranges: Vec<(u64, u64, AckKind, Vec<usize>)> = Vec::new();
            for (index, offset, kind) in entries {
                match ranges.last_mut() {
                    Some((_, last, k, members)) if *k == kind && *last + 1 == offset => {
                        *last = offset;
                        members.push(index);
                    }
                    _ => ranges.push((offset, offset, kind, vec![index])),
                }
            }
            let request = ShareAckRequest {
                group: self.group.clone(),
                member_id: self.member_id.clone(),
                topic: self.topic.clone(),
                partition,
                lease_ms: self.config.lease.as_millis().min(u128::from(u32::MAX)) as u32,
                ranges: ranges.iter().map(|(first, last, kind, _)| (*first, *last, *kind as u8)).collect(),
            };
            let errors = self.transport.share_acknowledge(&request)?;
            if errors.len() != ranges.len() {
                return Err(ClientError::Protocol(format!(
                    "{} answers for {} acknowledged ranges",
                    errors.len(),
                    ranges.len()
                )));
            }
            for ((_, _, _, members), error) in ranges.iter().zip(errors) {
                let code = ErrorCode::from_u16(error).unwrap_or(ErrorCode::Internal);
                for index in members {
                    if let Some(slot) = results.get_mut(*index) {
                        *slot = code;
                    }
                }
            }
        }
        Ok(results)
    }

    /// Acknowledges every record of `records` the same way; fails on the first
    /// record the server refused.
    pub fn acknowledge_all(&mut self, records: &[ShareRecord], kind: AckKind) -> Result<()> {
        let acks: Vec<(u32, u64, AckKind)> = records.iter().map(|r| (r.partition, r.record.offset, kind)).collect();
        let results = self.acknowledge(&acks)?;
        match results.iter().zip(records).find(|(code, _)| **code != ErrorCode::None) {
            Some((code, record)) => Err(super::server_error(
                *code as u16,
                format!("acknowledge {}/{}@{}", record.topic, record.partition, record.record.offset),
            )),
            None => Ok(()),
        }
    }
}
