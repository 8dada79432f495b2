//! The shard side of share groups. A share-partition (one share group reading
//! one partition) lives on the shard that owns the partition, next to its data,
//! as in Kafka's KIP-932. Its state is kept in
//! `DATA_DIR/groups/<group>/share/<topic>/<partition>.log` (a [`StateStore`]); its records are in `groups::share`:
//!
//! ```text
//! record: kind u8 = 1 delivered: offset i64, delivery_count u16
//!                 = 2 archived:  first i64, last i64
//!                 = 3 start:     offset i64 (written by compaction)
//! ```
//!
//! A receive is answered after its delivery counts are fdatasync'ed; an accept
//! after its archive record is. Leases are not stored: after a restart every
//! leased record is available again, with its delivery count.
//!
//! Dead letters: the record (key, value, headers, timestamp) is produced with
//! acks durable to the group's dead-letter topic (created with one partition
//! when missing), with headers naming its origin; only then is it archived.

use super::catalog::TopicConfig;
use super::coordinator::GROUP_TICK;
use super::error::StateError;
use super::handle::ShardHandle;
use super::message::Op;
use super::partitions::{last_offset_after, log_error_code, PartitionSlot};
use crate::batch::{Batch, BatchBuilder, BatchHeader};
use crate::groups::share::default_dead_letter_topic;
use crate::groups::share::{
    archived_record, delivered_record, live_records, replay, AckKind, DeadLetter, SharePartition, LEASE_DEFAULT,
    LEASE_MAX,
};
use crate::groups::state_log::frame_record;
use crate::groups::store::{AppendError, StateStore};
use crate::groups::{group_dir, GROUPS_DIR};
use crate::io::{FileStorage, Storage};
use crate::log::partition::now_ms;
use crate::log::Acks;
use crate::protocol::group::{GroupListing, SharePartitionState, KIND_SHARE, STATE_EMPTY, STATE_STABLE};
use crate::protocol::share::{ShareAckRequest, ShareFetchRequest, ShareFetchResponse, SHARE_FETCH_RECORDS_MAX};
use crate::protocol::{valid_topic_name, ErrorCode, FETCH_BYTES_MAX, FETCH_WAIT_MS_MAX};
use bytes::BytesMut;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Directory levels of `groups/<group>/share/<topic>/<partition>.log` a first
/// write may create (the data directory's entry for `groups` included).
const SHARE_FILE_DEPTH: usize = 5;
/// Share-partitions one shard keeps.
pub const SHARE_PARTITIONS_PER_SHARD_MAX: usize = 100_000;
/// A member not heard from for this long is no longer listed.
pub const SHARE_MEMBER_IDLE: Duration = Duration::from_secs(60);
/// Dead letters are produced in batches of about this many bytes.
pub const DEAD_LETTER_BATCH_BYTES: usize = 1024 * 1024;
/// How long a dead-letter write waits for its topic while another request
/// creates it, and how often it looks.
const DEAD_LETTER_TOPIC_WAIT: Duration = Duration::from_secs(1);
const DEAD_LETTER_TOPIC_POLL: Duration = Duration::from_millis(10);
/// Header names a dead letter carries.
pub const DLQ_HEADER_TOPIC: &str = "ringmq.dlq.topic";
pub const DLQ_HEADER_PARTITION: &str = "ringmq.dlq.partition";
pub const DLQ_HEADER_OFFSET: &str = "ringmq.dlq.offset";
pub const DLQ_HEADER_GROUP: &str = "ringmq.dlq.group";
pub const DLQ_HEADER_REASON: &str = "ringmq.dlq.reason";
pub const DLQ_HEADER_DELIVERIES: &str = "ringmq.dlq.delivery.count";

type ShareKey = (String, String, u32);
/// Acquired (offset, delivery count) pairs and the batches read for them.
type Acquired = (Vec<(u64, u16)>, Vec<u8>);

pub(crate) struct ShareSlot {
    state: RefCell<SharePartition>,
    /// The state file, created by the first state write (a receive that
    /// acquires nothing leaves no file behind).
    store: tokio::sync::Mutex<StateStore<FileStorage>>,
    dead_letter_topic: RefCell<String>,
    members: RefCell<BTreeMap<String, Instant>>,
}

impl ShareSlot {
    /// Adds the members heard from within [`SHARE_MEMBER_IDLE`] to `into`.
    fn add_recent_members(&self, now: Instant, into: &mut BTreeSet<String>) {
        let members = self.members.borrow();
        into.extend(
            members.iter().filter(|(_, seen)| now.duration_since(**seen) < SHARE_MEMBER_IDLE).map(|(m, _)| m.clone()),
        );
    }
}

#[derive(Default)]
pub(crate) struct Shares {
    slots: RefCell<BTreeMap<ShareKey, Rc<ShareSlot>>>,
}

fn share_path(data_dir: &std::path::Path, group: &str, topic: &str, partition: u32) -> PathBuf {
    group_dir(data_dir, group).join("share").join(topic).join(format!("{partition}.log"))
}

/// Keeps the whole batches of `bytes` from the first holding `first` to the
/// last holding `last`.
fn trim_batches(bytes: Vec<u8>, first: u64, last: u64) -> Vec<u8> {
    let (mut position, mut keep_from, mut keep_to) = (0usize, None, 0usize);
    while let Some(header) = bytes.get(position..).and_then(|rest| BatchHeader::parse(rest).ok()) {
        let end = position + header.size_bytes().max(1);
        let (base, batch_last) = (header.base_offset.max(0) as u64, header.last_offset().max(0) as u64);
        if batch_last >= first && base <= last {
            keep_from.get_or_insert(position);
            keep_to = end.min(bytes.len());
        }
        position = end;
    }
    match keep_from {
        Some(from) => bytes.get(from..keep_to).map(<[u8]>::to_vec).unwrap_or_default(),
        None => Vec::new(),
    }
}

impl Shares {
    async fn share_slot(
        &self,
        handle: &ShardHandle,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Rc<ShareSlot>, ErrorCode> {
        let key = (group.to_owned(), topic.to_owned(), partition);
        if let Some(slot) = self.slots.borrow().get(&key) {
            return Ok(slot.clone());
        }
        if self.slots.borrow().len() >= SHARE_PARTITIONS_PER_SHARD_MAX {
            return Err(ErrorCode::ResourceLimit);
        }
        let path = share_path(&handle.shared.config.data_dir, group, topic, partition);
        let slot = self.open_share_slot(&path, topic).await.map_err(|error| {
            eprintln!("ringmq: shard {}: cannot open {}: {error}", handle.id, path.display());
            ErrorCode::StorageFailure
        })?;
        // Another request may have opened it while this one waited.
        if let Some(slot) = self.slots.borrow().get(&key) {
            return Ok(slot.clone());
        }
        self.slots.borrow_mut().insert(key, slot.clone());
        Ok(slot)
    }

    /// A share-partition's slot; its state file is read when it exists.
    async fn open_share_slot(&self, path: &std::path::Path, topic: &str) -> std::io::Result<Rc<ShareSlot>> {
        // A share group reads a topic as a queue: from its earliest record.
        let mut state = SharePartition::new(0);
        let store = if path.exists() {
            let (store, records) = StateStore::open(FileStorage::new(), path, SHARE_FILE_DEPTH).await?;
            for payload in &records {
                replay(&mut state, payload);
            }
            store
        } else {
            StateStore::new(FileStorage::new(), path, SHARE_FILE_DEPTH)
        };
        Ok(Rc::new(ShareSlot {
            state: RefCell::new(state),
            store: tokio::sync::Mutex::new(store),
            dead_letter_topic: RefCell::new(default_dead_letter_topic(topic)),
            members: RefCell::new(BTreeMap::new()),
        }))
    }

    /// Loads the share-partitions of the partitions this shard owns.
    pub(crate) async fn load(&self, handle: &ShardHandle) -> Result<(), StateError> {
        let root = handle.shared.config.data_dir.join(GROUPS_DIR);
        let storage = FileStorage::new();
        let Ok(groups) = storage.list_dir(&root) else { return Ok(()) };
        let catalog = handle.catalog();
        for group in groups.into_iter().filter(|g| valid_topic_name(g)) {
            let share_dir = group_dir(&handle.shared.config.data_dir, &group).join("share");
            let Ok(topics) = storage.list_dir(&share_dir) else { continue };
            for topic in topics {
                if !catalog.topics.contains_key(&topic) {
                    // Deleted while this shard was down: a topic created again
                    // under the name must not inherit this state.
                    let _ = std::fs::remove_dir_all(share_dir.join(&topic));
                    continue;
                }
                let Ok(files) = storage.list_dir(&share_dir.join(&topic)) else { continue };
                for file in files {
                    let Some(partition) = file.strip_suffix(".log").and_then(|p| p.parse::<u32>().ok()) else {
                        continue;
                    };
                    if handle.route(&topic, partition) != Ok(handle.id) {
                        continue;
                    }
                    let path = share_path(&handle.shared.config.data_dir, &group, &topic, partition);
                    let slot = self
                        .open_share_slot(&path, &topic)
                        .await
                        .map_err(|error| StateError::new(format!("cannot open {}", path.display()), error))?;
                    // After a power loss the log may end below what the group saw:
                    // forget that part, durably, before new records take its offsets.
                    let end = handle.partitions.end_offset(&topic, partition);
                    if slot.state.borrow_mut().clamp_to(end) {
                        let live = live_records(&slot.state.borrow());
                        let mut store = slot.store.lock().await;
                        store
                            .rewrite(&live)
                            .await
                            .map_err(|error| StateError::new(format!("cannot rewrite {}", path.display()), error))?;
                    }
                    self.slots.borrow_mut().insert((group.clone(), topic.clone(), partition), slot);
                }
            }
        }
        Ok(())
    }

    /// Writes state records and fdatasyncs them; compacts a grown file.
    async fn persist_share(&self, handle: &ShardHandle, slot: &ShareSlot, framed: &[u8]) -> Result<(), ErrorCode> {
        let mut store = slot.store.lock().await;
        if let Err(error) = store.append(framed).await {
            eprintln!("ringmq: shard {}: {} ({})", handle.id, error, store.path().display());
            return Err(match error {
                AppendError::Write(error) if crate::io::is_no_space(&error) => ErrorCode::NoSpace,
                _ => ErrorCode::StorageFailure,
            });
        }
        let live = live_records(&slot.state.borrow());
        if let Err(error) = store.compact(live.len() as u64, || live).await {
            eprintln!("ringmq: shard {}: compacting share-group state failed: {error}", handle.id);
        }
        Ok(())
    }

    pub(crate) async fn fetch(
        &self,
        handle: &Rc<ShardHandle>,
        request: ShareFetchRequest,
    ) -> Result<ShareFetchResponse, ErrorCode> {
        let lease = match request.lease_ms {
            0 => LEASE_DEFAULT,
            ms => Duration::from_millis(u64::from(ms)),
        };
        if !valid_topic_name(&request.group) {
            return Err(ErrorCode::InvalidGroupId);
        }
        if request.member_id.is_empty()
            || request.max_records == 0
            || request.max_records > SHARE_FETCH_RECORDS_MAX
            || lease > LEASE_MAX
            || !(request.dead_letter_topic.is_empty() || valid_topic_name(&request.dead_letter_topic))
        {
            return Err(ErrorCode::InvalidArgument);
        }
        // A dead letter must have somewhere to go, and not back into the queue.
        let dead_letter_topic = match request.dead_letter_topic.as_str() {
            "" => default_dead_letter_topic(&request.topic),
            name => name.to_owned(),
        };
        if !valid_topic_name(&dead_letter_topic) || dead_letter_topic == request.topic {
            return Err(ErrorCode::InvalidArgument);
        }
        let partition_slot = handle.slot(&request.topic, request.partition)?;
        let slot = self.share_slot(handle, &request.group, &request.topic, request.partition).await?;
        slot.members.borrow_mut().insert(request.member_id.clone(), Instant::now());
        // 0: keep the share-partition's setting (5 until a member sets one).
        if request.max_deliveries != 0 {
            slot.state.borrow_mut().max_deliveries = request.max_deliveries;
        }
        if !request.dead_letter_topic.is_empty() {
            *slot.dead_letter_topic.borrow_mut() = request.dead_letter_topic.clone();
        }
        let max_bytes = (request.max_bytes as usize).clamp(1, FETCH_BYTES_MAX);
        let wait = Duration::from_millis(u64::from(request.max_wait_ms.min(FETCH_WAIT_MS_MAX)));
        let deadline = Instant::now() + wait;
        loop {
            let appended = partition_slot.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            let now = Instant::now();
            let (acquired, bytes) = self.acquire(&partition_slot, &slot, &request, max_bytes, lease, now)?;
            if !acquired.is_empty() {
                let mut framed = Vec::new();
                for (offset, deliveries) in &acquired {
                    let _ = frame_record(&mut framed, &delivered_record(*offset, *deliveries));
                }
                self.persist_share(handle, &slot, &framed).await?;
                // The lease runs from the answer, not from before the fdatasync.
                slot.state.borrow_mut().start_leases(&request.member_id, &acquired, Instant::now() + lease);
                let first = acquired.first().map_or(0, |a| a.0);
                let last = acquired.last().map_or(0, |a| a.0);
                let records = trim_batches(bytes, first, last);
                let counters = &handle.shared.counters;
                counters.fetch_records.fetch_add(acquired.len() as u64, std::sync::atomic::Ordering::Relaxed);
                counters.fetch_bytes.fetch_add(records.len() as u64, std::sync::atomic::Ordering::Relaxed);
                return Ok(ShareFetchResponse { acquired, records });
            }
            if now >= deadline || handle.is_stopping() {
                return Ok(ShareFetchResponse::default());
            }
            // Appends wake the wait; releases and expiries are seen on the tick.
            let _ = tokio::time::timeout((deadline - now).min(GROUP_TICK), appended).await;
        }
    }

    fn acquire(
        &self,
        partition_slot: &PartitionSlot,
        slot: &ShareSlot,
        request: &ShareFetchRequest,
        max_bytes: usize,
        lease: Duration,
        now: Instant,
    ) -> Result<Acquired, ErrorCode> {
        let mut log = partition_slot.log.borrow_mut();
        let mut state = slot.state.borrow_mut();
        state.truncate_below(log.earliest_offset());
        let candidate = state.first_candidate();
        if candidate >= log.next_offset() {
            return Ok((Vec::new(), Vec::new()));
        }
        let bytes = log.read(candidate, max_bytes).map_err(|e| log_error_code(&e))?;
        let end = last_offset_after(&bytes);
        let acquired = state.acquire(&request.member_id, candidate..end, request.max_records as usize, lease, now);
        Ok((acquired, bytes))
    }

    pub(crate) async fn acknowledge(
        &self,
        handle: &Rc<ShardHandle>,
        request: ShareAckRequest,
    ) -> Result<Vec<ErrorCode>, ErrorCode> {
        let lease = match request.lease_ms {
            0 => LEASE_DEFAULT,
            ms => Duration::from_millis(u64::from(ms)).min(LEASE_MAX),
        };
        if !valid_topic_name(&request.group) {
            return Err(ErrorCode::InvalidGroupId);
        }
        handle.slot(&request.topic, request.partition)?;
        let key = (request.group.clone(), request.topic.clone(), request.partition);
        let slot = self.slots.borrow().get(&key).cloned().ok_or(ErrorCode::InvalidRecordState)?;
        let now = Instant::now();
        let mut errors = Vec::with_capacity(request.ranges.len());
        let mut framed = Vec::new();
        let mut dead = Vec::new();
        for &(first, last, kind) in &request.ranges {
            let Some(kind) = AckKind::from_u8(kind) else {
                errors.push(ErrorCode::InvalidArgument);
                continue;
            };
            let result = slot.state.borrow_mut().acknowledge(&request.member_id, first, last, kind, lease, now);
            match result {
                Ok(letters) => {
                    if kind == AckKind::Accept {
                        let _ = frame_record(&mut framed, &archived_record(first, last));
                    }
                    dead.push((errors.len(), letters));
                    errors.push(ErrorCode::None);
                }
                Err(crate::groups::share::NotHeld) => errors.push(ErrorCode::InvalidRecordState),
            }
        }
        if errors.contains(&ErrorCode::None) {
            slot.members.borrow_mut().insert(request.member_id.clone(), now);
        }
        // Every dead letter of the request in as few durable produces as fit.
        let letters: Vec<DeadLetter> = dead.iter().flat_map(|(_, letters)| letters.iter().copied()).collect();
        let failed = self.dead_letter(handle, &slot, &request.group, &request.topic, request.partition, &letters).await;
        for (index, letters) in dead {
            if let Some(code) = letters.iter().find_map(|letter| failed.get(&letter.offset)) {
                if let Some(error) = errors.get_mut(index) {
                    *error = *code;
                }
            }
        }
        if !framed.is_empty() {
            self.persist_share(handle, &slot, &framed).await?;
        }
        Ok(errors)
    }

    /// Writes records to the group's dead-letter topic (batches of up to
    /// [`DEAD_LETTER_BATCH_BYTES`], acks durable), then archives those written,
    /// in one state write. A record whose dead letter failed becomes available
    /// again; the failures are returned by offset.
    async fn dead_letter(
        &self,
        handle: &Rc<ShardHandle>,
        slot: &ShareSlot,
        group: &str,
        topic: &str,
        partition: u32,
        letters: &[DeadLetter],
    ) -> BTreeMap<u64, ErrorCode> {
        let mut failed = BTreeMap::new();
        let mut written = Vec::new();
        let mut pending: Vec<DeadLetter> = Vec::new();
        let mut builder = BatchBuilder::new();
        for (index, letter) in letters.iter().enumerate() {
            if let Err(code) = self.append_dead_letter(handle, &mut builder, group, topic, partition, letter) {
                failed.insert(letter.offset, code);
            } else {
                pending.push(*letter);
            }
            let last = index + 1 == letters.len();
            if !pending.is_empty() && (last || builder.size_bytes() >= DEAD_LETTER_BATCH_BYTES) {
                let batch = std::mem::take(&mut builder);
                match self.produce_dead_letters(handle, slot, partition, batch).await {
                    Ok(()) => written.append(&mut pending),
                    Err(code) => failed.extend(pending.drain(..).map(|letter| (letter.offset, code))),
                }
            }
        }
        for letter in letters.iter().filter(|letter| failed.contains_key(&letter.offset)) {
            eprintln!(
                "ringmq: shard {}: dead-lettering {topic}/{partition}@{} for group {group} failed: {}",
                handle.id, letter.offset, failed[&letter.offset]
            );
            slot.state.borrow_mut().unarchive(letter);
        }
        if !written.is_empty() {
            handle.shared.counters.dead_letters.fetch_add(written.len() as u64, std::sync::atomic::Ordering::Relaxed);
            let mut framed = Vec::new();
            for letter in &written {
                slot.state.borrow_mut().archive(letter.offset, letter.offset);
                let _ = frame_record(&mut framed, &archived_record(letter.offset, letter.offset));
            }
            if let Err(code) = self.persist_share(handle, slot, &framed).await {
                // Written to the dead-letter topic but not archived durably: after a
                // restart they may be dead-lettered again (the headers tell).
                for letter in &written {
                    failed.insert(letter.offset, code);
                }
            }
        }
        failed
    }

    /// Appends one dead letter (the record and its origin headers) to `builder`.
    fn append_dead_letter(
        &self,
        handle: &ShardHandle,
        builder: &mut BatchBuilder,
        group: &str,
        topic: &str,
        partition: u32,
        letter: &DeadLetter,
    ) -> Result<(), ErrorCode> {
        let bytes = {
            let partition_slot = handle.slot(topic, partition)?;
            let mut log = partition_slot.log.borrow_mut();
            log.read(letter.offset, 1).map_err(|e| log_error_code(&e))?
        };
        let offset_text = letter.offset.to_string();
        let partition_text = partition.to_string();
        let deliveries_text = letter.deliveries.to_string();
        let origin: [(&[u8], Option<&[u8]>); 6] = [
            (DLQ_HEADER_TOPIC.as_bytes(), Some(topic.as_bytes())),
            (DLQ_HEADER_PARTITION.as_bytes(), Some(partition_text.as_bytes())),
            (DLQ_HEADER_OFFSET.as_bytes(), Some(offset_text.as_bytes())),
            (DLQ_HEADER_GROUP.as_bytes(), Some(group.as_bytes())),
            (DLQ_HEADER_REASON.as_bytes(), Some(letter.reason.name().as_bytes())),
            (DLQ_HEADER_DELIVERIES.as_bytes(), Some(deliveries_text.as_bytes())),
        ];
        let batch = Batch::validate(&bytes).map_err(|_| ErrorCode::CorruptBatch)?;
        let section = batch.records_section().map_err(|_| ErrorCode::CorruptBatch)?;
        let record = batch.records_in(&section).flatten().find(|r| r.offset == letter.offset as i64);
        let mut headers: Vec<(&[u8], Option<&[u8]>)> = record.map(|r| r.headers.collect()).unwrap_or_default();
        headers.extend(origin);
        let (timestamp, key, value) = record.map_or((now_ms(), None, None), |r| (r.timestamp, r.key, r.value));
        builder.append(timestamp, key, value, &headers).map_err(|_| ErrorCode::TooLarge)
    }

    /// Produces a batch of dead letters, acks durable, to the group's
    /// dead-letter topic (created when missing).
    async fn produce_dead_letters(
        &self,
        handle: &Rc<ShardHandle>,
        slot: &ShareSlot,
        partition: u32,
        builder: BatchBuilder,
    ) -> Result<(), ErrorCode> {
        let batch = builder.finish().map_err(|_| ErrorCode::TooLarge)?;
        let dead_letter_topic = slot.dead_letter_topic.borrow().clone();
        let partitions = self.ensure_topic(handle, &dead_letter_topic).await?;
        let target = partition % partitions.max(1);
        let owner = handle.route(&dead_letter_topic, target)?;
        let op = Op::Produce {
            topic: dead_letter_topic,
            partition: target,
            batch: BytesMut::from(&batch[..]),
            acks: Acks::Durable,
        };
        handle.submit(owner, op).await.await.into_produce().map(|_| ())
    }

    /// Creates a one-partition topic when missing; returns its partition count.
    async fn ensure_topic(&self, handle: &Rc<ShardHandle>, name: &str) -> Result<u32, ErrorCode> {
        if let Some(topic) = handle.catalog().topics.get(name) {
            return Ok(topic.partitions);
        }
        let config = &handle.shared.config;
        let topic = TopicConfig {
            name: name.to_owned(),
            partitions: 1,
            retention_ms: config.retention_ms,
            retention_bytes: config.retention_bytes,
            created_at_ms: now_ms(),
        };
        match super::service::add_topic(handle, topic).await {
            Ok(topic) => Ok(topic.partitions),
            Err(ErrorCode::TopicAlreadyExists) => {
                // Being created by someone else: it is published once its
                // partitions are open. (A failed write goes back to the queue.)
                let deadline = Instant::now() + DEAD_LETTER_TOPIC_WAIT;
                while Instant::now() < deadline {
                    if let Some(topic) = handle.catalog().topics.get(name) {
                        return Ok(topic.partitions);
                    }
                    crate::io::sleep(DEAD_LETTER_TOPIC_POLL).await;
                }
                Err(ErrorCode::UnknownTopicOrPartition)
            }
            Err(code) => Err(code),
        }
    }

    /// Returns expired leases to the queue (or the dead-letter topic).
    pub(crate) async fn run_timers(self: Rc<Self>, handle: Rc<ShardHandle>) {
        while !handle.is_stopping() {
            crate::io::sleep(GROUP_TICK).await;
            let now = Instant::now();
            let slots: Vec<(ShareKey, Rc<ShareSlot>)> =
                self.slots.borrow().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            for ((group, topic, partition), slot) in slots {
                slot.members.borrow_mut().retain(|_, seen| now.duration_since(*seen) < SHARE_MEMBER_IDLE);
                // Nothing delivered, nobody around, no file: forget the slot.
                // (Two references: the map's and this loop's; a request in flight
                // would hold a third.)
                let idle = Rc::strong_count(&slot) == 2
                    && slot.members.borrow().is_empty()
                    && slot.state.borrow().records.is_empty();
                if idle && slot.store.try_lock().is_ok_and(|store| !store.is_created()) {
                    self.slots.borrow_mut().remove(&(group, topic, partition));
                    continue;
                }
                if slot.state.borrow().next_deadline().is_none_or(|deadline| deadline > now) {
                    continue;
                }
                let (_, dead) = slot.state.borrow_mut().expire(now);
                if !dead.is_empty() {
                    let _ = self.dead_letter(&handle, &slot, &group, &topic, partition, &dead).await;
                }
            }
        }
    }

    /// The share groups with state on this shard.
    pub(crate) fn list(&self) -> Vec<GroupListing> {
        let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let now = Instant::now();
        for ((group, _, _), slot) in self.slots.borrow().iter() {
            slot.add_recent_members(now, groups.entry(group.clone()).or_default());
        }
        groups
            .into_iter()
            .map(|(group, members)| GroupListing {
                group,
                kind: KIND_SHARE,
                state: if members.is_empty() { STATE_EMPTY } else { STATE_STABLE },
                members: members.len() as u32,
            })
            .collect()
    }

    /// This shard's share-partitions of `group`, and the members seen lately.
    pub(crate) fn describe(&self, handle: &ShardHandle, group: &str) -> (Vec<SharePartitionState>, Vec<String>) {
        let mut states = Vec::new();
        let mut members = BTreeSet::new();
        let now = Instant::now();
        for ((name, topic, partition), slot) in self.slots.borrow().iter() {
            if name != group {
                continue;
            }
            let end = handle.partitions.end_offset(topic, *partition);
            let state = slot.state.borrow();
            let counts = state.counts(end);
            states.push(SharePartitionState {
                topic: topic.clone(),
                partition: *partition,
                start: state.start as i64,
                end: end as i64,
                available: counts.available,
                acquired: counts.acquired,
                archived: counts.archived,
            });
            slot.add_recent_members(now, &mut members);
        }
        (states, members.into_iter().collect())
    }

    /// (group, topic, partition, available, acquired) of every share-partition here.
    pub(crate) fn metrics(&self, handle: &ShardHandle) -> Vec<(String, String, u32, u64, u64)> {
        self.slots
            .borrow()
            .iter()
            .map(|((group, topic, partition), slot)| {
                let end = handle.partitions.end_offset(topic, *partition);
                let counts = slot.state.borrow().counts(end);
                (group.clone(), topic.clone(), *partition, counts.available, counts.acquired)
            })
            .collect()
    }

    /// Drops the share-group state of a deleted topic, files included.
    pub(crate) fn forget_topic(&self, handle: &ShardHandle, topic: &str) {
        let mut groups = BTreeSet::new();
        self.slots.borrow_mut().retain(|(group, name, _), _| {
            if name == topic {
                groups.insert(group.clone());
            }
            name != topic
        });
        for group in groups {
            let directory = group_dir(&handle.shared.config.data_dir, &group).join("share").join(topic);
            if let Err(error) = std::fs::remove_dir_all(&directory) {
                if error.kind() != std::io::ErrorKind::NotFound {
                    eprintln!("ringmq: shard {}: cannot remove {}: {error}", handle.id, directory.display());
                }
            }
        }
    }
}
