//! The shard side of consumer groups: each shard coordinates the groups that
//! [`crate::groups::coordinator`] maps to it, answers their requests, runs their
//! timers (session expiry, rebalance deadlines) and keeps their committed
//! offsets in `DATA_DIR/groups/<group>/offsets.log` (a [`StateLog`], compacted
//! on open and when it has grown to twice its live size).
//!
//! A commit is answered after its records are fdatasync'ed; the offsets become
//! visible to OffsetFetch at the same moment. Membership is not stored (Kafka's
//! classic protocol stores it): after a restart members get UnknownMemberId
//! and join again, as new members.

use super::error::StateError;
use super::handle::ShardHandle;
use super::message::{Op, Reply};
use crate::groups::classic::{
    ClassicDescription, ClassicGroup, ClassicRequest, ClassicResponse, ClassicState, SyncOutcome,
};
use crate::groups::consumer::{ConsumerGroup, JoinArgs, State};
use crate::groups::state_log::{frame_record, STATE_RECORD_HEADER_BYTES};
use crate::groups::store::{AppendError, StateStore};
use crate::groups::{framed_offsets, framed_tombstones, offsets_live_bytes, replay_offsets};
use crate::groups::{group_dir, OffsetRecord, GROUPS_DIR, GROUPS_PER_SHARD_MAX, OFFSETS_FILE};
use crate::io::{FileStorage, Storage};
use crate::log::partition::now_ms;
use crate::protocol::group::{
    CommittedOffset, GroupDescription, GroupListing, GroupRequest, GroupResponse, JoinGroup, JoinResponse,
    MemberDescription, OffsetCommit, PartitionLag, GROUP_MEMBERS_MAX, KIND_CONSUMER, OFFSET_ENTRIES_MAX,
    REBALANCE_TIMEOUT_MS_MAX, SESSION_TIMEOUT_MS_MAX, SESSION_TIMEOUT_MS_MIN,
};
use crate::protocol::offsets::{ListOffsetsRequest, QUERY_LATEST};
use crate::protocol::{valid_topic_name, ErrorCode};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How often a shard checks its groups' sessions and rebalance deadlines.
pub const GROUP_TICK: Duration = Duration::from_millis(50);
/// Directory levels of `groups/<group>/offsets.log` whose entries a first
/// commit makes durable (the file's, the group's, and `groups` in the data
/// directory).
const OFFSETS_FILE_DEPTH: usize = 3;

pub(crate) struct GroupSlot {
    pub group: RefCell<ConsumerGroup>,
    /// The members of Kafka's classic protocol, when Kafka clients use the
    /// group. The committed offsets are `group`'s, whoever commits. A group
    /// has members of one kind at a time (the other kind is refused with
    /// GroupKindMismatch until its last member left).
    pub classic: RefCell<ClassicGroup>,
    /// The offsets file, opened on the first commit. The lock orders writes,
    /// syncs and compaction.
    store: tokio::sync::Mutex<Option<StateStore<FileStorage>>>,
    /// Woken whenever a rebalance completes.
    pub changed: Notify,
    /// Since when the group has had no members and no committed offsets (see
    /// [`crate::server::ServerConfig::empty_group_retention_ms`]).
    empty_since: Cell<Option<Instant>>,
}

impl GroupSlot {
    fn new(group: ConsumerGroup, store: Option<StateStore<FileStorage>>) -> GroupSlot {
        GroupSlot {
            group: RefCell::new(group),
            classic: RefCell::new(ClassicGroup::default()),
            store: tokio::sync::Mutex::new(store),
            changed: Notify::new(),
            empty_since: Cell::new(None),
        }
    }
}

#[derive(Default)]
pub(crate) struct Groups {
    slots: RefCell<BTreeMap<String, Rc<GroupSlot>>>,
    next_member: Cell<u64>,
}

impl Groups {
    pub fn get(&self, name: &str) -> Option<Rc<GroupSlot>> {
        self.slots.borrow().get(name).cloned()
    }

    fn get_or_create(&self, name: &str) -> Result<Rc<GroupSlot>, ErrorCode> {
        if let Some(slot) = self.get(name) {
            return Ok(slot);
        }
        let mut slots = self.slots.borrow_mut();
        if slots.len() >= GROUPS_PER_SHARD_MAX {
            return Err(ErrorCode::ResourceLimit);
        }
        let slot = Rc::new(GroupSlot::new(ConsumerGroup::default(), None));
        slots.insert(name.to_owned(), slot.clone());
        Ok(slot)
    }

    pub fn all(&self) -> Vec<(String, Rc<GroupSlot>)> {
        self.slots.borrow().iter().map(|(name, slot)| (name.clone(), slot.clone())).collect()
    }

    fn new_member_id(&self, shard: u16) -> String {
        let counter = self.next_member.get();
        self.next_member.set(counter + 1);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        format!("member-{shard}-{:x}-{counter}", nanos as u64)
    }
}

/// Partition counts by topic name, from the current catalog.
/// What one look at a group decided: its answer, or how long to wait for
/// the group to change before looking again.
enum Look<T> {
    Answer(Result<T, ErrorCode>),
    Wait(Duration),
}

/// Looks at `slot`'s group until `look` answers, waking when the group
/// changes or the wait it asked for runs out. A stopping shard ends the
/// wait with ShuttingDown. (A join waits here for its rebalance.)
async fn until_answered<T>(
    slot: &GroupSlot,
    handle: &ShardHandle,
    mut look: impl FnMut() -> Look<T>,
) -> Result<T, ErrorCode> {
    loop {
        let changed = slot.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let wait = match look() {
            Look::Answer(answer) => return answer,
            Look::Wait(wait) => wait,
        };
        if handle.is_stopping() {
            return Err(ErrorCode::ShuttingDown);
        }
        let _ = tokio::time::timeout(wait.max(Duration::from_millis(1)), changed).await;
    }
}

/// A classic group's state as the native protocol's state codes name it.
fn classic_state_code(state: ClassicState) -> u8 {
    use crate::protocol::group::{STATE_EMPTY, STATE_REBALANCING, STATE_STABLE};
    match state {
        ClassicState::Empty => STATE_EMPTY,
        ClassicState::PreparingRebalance { .. } | ClassicState::CompletingRebalance => STATE_REBALANCING,
        ClassicState::Stable => STATE_STABLE,
    }
}

fn partitions_of(handle: &ShardHandle) -> impl Fn(&str) -> u32 {
    let catalog = handle.catalog();
    move |topic: &str| catalog.topics.get(topic).map_or(0, |t| t.partitions)
}

impl Groups {
    /// Loads the groups this shard coordinates from `DATA_DIR/groups/`.
    pub(crate) async fn load(&self, handle: &ShardHandle) -> Result<(), StateError> {
        let root = handle.shared.config.data_dir.join(GROUPS_DIR);
        let storage = FileStorage::new();
        let names = match storage.list_dir(&root) {
            Ok(names) => names,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(StateError::new(format!("cannot list {}", root.display()), error)),
        };
        for name in names {
            if !valid_topic_name(&name) || crate::groups::coordinator(&name, handle.shard_count()) != handle.id {
                continue;
            }
            let path = group_dir(&handle.shared.config.data_dir, &name).join(OFFSETS_FILE);
            if !path.exists() {
                continue;
            }
            let (mut store, records) = StateStore::open(storage.clone(), &path, OFFSETS_FILE_DEPTH)
                .await
                .map_err(|error| StateError::new(format!("cannot open the offsets of group {name}"), error))?;
            let mut group = ConsumerGroup { offsets: replay_offsets(&records), ..ConsumerGroup::default() };
            // A topic deleted while this shard was down (a crash during the
            // delete): its offsets must not reach a topic created again later.
            let catalog = handle.catalog();
            let before = group.offsets.len();
            group.offsets.retain(|(topic, _), _| catalog.topics.contains_key(topic));
            if group.offsets.len() != before {
                store
                    .rewrite(&framed_offsets(&group.offsets, now_ms()))
                    .await
                    .map_err(|error| StateError::new(format!("cannot compact the offsets of group {name}"), error))?;
            }
            self.slots.borrow_mut().insert(name, Rc::new(GroupSlot::new(group, Some(store))));
        }
        Ok(())
    }

    /// Expires sessions and completes rebalances whose deadline passed.
    pub(crate) async fn run_timers(self: Rc<Self>, handle: Rc<ShardHandle>) {
        // Topics are compared with the groups' assignments only when the
        // catalog changed (creations and deletions), not on every tick.
        let mut catalog_version = handle.shared.catalog.version();
        let empty_retention = Duration::from_millis(handle.shared.config.empty_group_retention_ms);
        while !handle.is_stopping() {
            crate::io::sleep(GROUP_TICK).await;
            let now = Instant::now();
            let partitions_of = partitions_of(&handle);
            let version = handle.shared.catalog.version();
            let topics_changed = std::mem::replace(&mut catalog_version, version) != version;
            for (name, slot) in self.all() {
                let mut group = slot.group.borrow_mut();
                // A group nobody is in that holds no committed offset is listed
                // (Empty) for `empty_group_retention_ms`, as Kafka keeps one
                // until its next offset-expiration pass, then forgotten: it
                // leaves nothing behind. (Two references: the map's and this
                // loop's; a request in flight would hold a third.)
                let classic_empty = slot.classic.borrow().members.is_empty();
                if group.state == State::Empty && group.offsets.is_empty() && classic_empty {
                    let since = *slot.empty_since.get().get_or_insert(now);
                    slot.empty_since.set(Some(since));
                    if now.duration_since(since) >= empty_retention
                        && Rc::strong_count(&slot) == 2
                        && slot.store.try_lock().is_ok_and(|store| store.is_none())
                    {
                        drop(group);
                        self.slots.borrow_mut().remove(&name);
                        continue;
                    }
                } else {
                    slot.empty_since.set(None);
                }
                if topics_changed {
                    group.check_topics(now, &partitions_of);
                }
                if group.next_deadline().is_some_and(|deadline| deadline <= now) {
                    group.expire(now);
                    if group.try_complete(now, &partitions_of) {
                        slot.changed.notify_waiters();
                    }
                }
                let mut classic = slot.classic.borrow_mut();
                if classic.next_deadline().is_some_and(|deadline| deadline <= now) {
                    classic.expire(now);
                    if classic.try_complete(now) {
                        slot.changed.notify_waiters();
                    }
                }
            }
        }
    }

    pub(crate) fn list(&self) -> Vec<GroupListing> {
        self.all()
            .into_iter()
            .map(|(name, slot)| {
                let group = slot.group.borrow();
                let classic = slot.classic.borrow();
                if !classic.members.is_empty() {
                    return GroupListing {
                        group: name,
                        kind: KIND_CONSUMER,
                        state: classic_state_code(classic.state),
                        members: classic.members.len() as u32,
                    };
                }
                GroupListing {
                    group: name,
                    kind: KIND_CONSUMER,
                    state: group.state_code(),
                    members: group.members.len() as u32,
                }
            })
            .collect()
    }

    /// Answers a group request on the group's coordinator (this shard).
    pub(crate) async fn request(
        &self,
        handle: &Rc<ShardHandle>,
        request: GroupRequest,
    ) -> Result<GroupResponse, ErrorCode> {
        if !valid_topic_name(request.group()) {
            return Err(ErrorCode::InvalidGroupId);
        }
        match request {
            GroupRequest::Join(join) => self.join(handle, join).await.map(GroupResponse::Join),
            GroupRequest::Heartbeat { group, member_id, generation } => {
                let slot = self.get(&group).ok_or(ErrorCode::UnknownMemberId)?;
                let result = slot.group.borrow_mut().heartbeat(&member_id, generation, Instant::now());
                result.map(|()| GroupResponse::Empty)
            }
            GroupRequest::Leave { group, member_id } => {
                let slot = self.get(&group).ok_or(ErrorCode::UnknownMemberId)?;
                let now = Instant::now();
                let mut state = slot.group.borrow_mut();
                state.leave(&member_id, now)?;
                if state.try_complete(now, &partitions_of(handle)) {
                    slot.changed.notify_waiters();
                }
                Ok(GroupResponse::Empty)
            }
            GroupRequest::Commit(commit) => self.commit(handle, commit, None).await.map(|()| GroupResponse::Empty),
            GroupRequest::Fetch { group, partitions } => {
                let Some(slot) = self.get(&group) else {
                    let none = partitions.into_iter().map(|(topic, partition)| CommittedOffset {
                        topic,
                        partition,
                        offset: -1,
                        metadata: String::new(),
                    });
                    return Ok(GroupResponse::Offsets(none.collect()));
                };
                let state = slot.group.borrow();
                let entry = |(topic, partition): (String, u32)| {
                    let (offset, metadata) =
                        state.offsets.get(&(topic.clone(), partition)).cloned().unwrap_or((-1, String::new()));
                    CommittedOffset { topic, partition, offset, metadata }
                };
                let offsets: Vec<CommittedOffset> = if partitions.is_empty() {
                    state.offsets.keys().cloned().map(entry).collect()
                } else {
                    partitions.into_iter().map(entry).collect()
                };
                Ok(GroupResponse::Offsets(offsets))
            }
            GroupRequest::Describe { group } => self.describe(handle, &group).await.map(GroupResponse::Describe),
        }
    }

    async fn join(&self, handle: &Rc<ShardHandle>, join: JoinGroup) -> Result<JoinResponse, ErrorCode> {
        if !(SESSION_TIMEOUT_MS_MIN..=SESSION_TIMEOUT_MS_MAX).contains(&join.session_timeout_ms)
            || join.rebalance_timeout_ms > REBALANCE_TIMEOUT_MS_MAX
            || join.topics.iter().any(|topic| !valid_topic_name(topic))
        {
            return Err(ErrorCode::InvalidArgument);
        }
        let is_new = join.member_id.is_empty();
        if !is_new && self.get(&join.group).is_none() {
            return Err(ErrorCode::UnknownMemberId);
        }
        let slot = self.get_or_create(&join.group)?;
        if !slot.classic.borrow().members.is_empty() {
            return Err(ErrorCode::GroupKindMismatch);
        }
        if is_new && slot.group.borrow().members.len() >= GROUP_MEMBERS_MAX {
            return Err(ErrorCode::ResourceLimit);
        }
        let member_id = if is_new { self.new_member_id(handle.id) } else { join.member_id.clone() };
        let rebalance_timeout = match join.rebalance_timeout_ms {
            0 => join.session_timeout_ms,
            ms => ms,
        };
        let args = JoinArgs {
            topics: join.topics,
            session_timeout: Duration::from_millis(u64::from(join.session_timeout_ms)),
            rebalance_timeout: Duration::from_millis(u64::from(rebalance_timeout)),
        };
        let waiting_after = slot.group.borrow_mut().join(&member_id, is_new, args, Instant::now())?;
        let (generation, partitions) = until_answered(&slot, handle, || {
            let now = Instant::now();
            let mut group = slot.group.borrow_mut();
            if group.try_complete(now, &partitions_of(handle)) {
                slot.changed.notify_waiters();
            }
            if let Some(answer) = group.join_answer(&member_id, waiting_after) {
                return Look::Answer(answer);
            }
            Look::Wait(match group.state {
                State::Rebalancing { deadline } => deadline.saturating_duration_since(now).min(GROUP_TICK),
                _ => GROUP_TICK,
            })
        })
        .await?;
        let mut assignment: Vec<(String, Vec<u32>)> = Vec::new();
        for (topic, partition) in partitions {
            match assignment.last_mut() {
                Some((last, list)) if *last == topic => list.push(partition),
                _ => assignment.push((topic, vec![partition])),
            }
        }
        Ok(JoinResponse { member_id, generation, assignment })
    }

    /// A commit of a native member (`classic_generation` None) or of a
    /// classic one; an empty member id commits from outside the group, which
    /// only a group without members of either kind takes.
    async fn commit(
        &self,
        handle: &ShardHandle,
        commit: OffsetCommit,
        classic_generation: Option<i32>,
    ) -> Result<(), ErrorCode> {
        check_commit_entries(handle, &commit)?;
        // A refused commit leaves no empty group behind.
        let slot = match self.get(&commit.group) {
            Some(slot) => slot,
            None if commit.member_id.is_empty() => self.get_or_create(&commit.group)?,
            None => return Err(ErrorCode::UnknownMemberId),
        };
        let now = Instant::now();
        if commit.member_id.is_empty() {
            slot.group.borrow_mut().may_commit("", 0, now)?;
            slot.classic.borrow_mut().may_commit("", -1, now)?;
        } else if let Some(generation) = classic_generation {
            slot.classic.borrow_mut().may_commit(&commit.member_id, generation, now)?;
        } else {
            slot.group.borrow_mut().may_commit(&commit.member_id, commit.generation, now)?;
        }
        {
            // Every committed partition must fit one OffsetFetch answer.
            let group = slot.group.borrow();
            let new = commit.offsets.iter().filter(|e| !group.offsets.contains_key(&(e.topic.clone(), e.partition)));
            if group.offsets.len() + new.count() > OFFSET_ENTRIES_MAX {
                return Err(ErrorCode::ResourceLimit);
            }
        }
        let committed_at_ms = now_ms();
        let framed = frame_commit(&commit, committed_at_ms)?;
        let mut store = slot.store.lock().await;
        // Checked again under the lock: a topic deleted while this commit
        // waited has had its offsets forgotten, and must not get one back.
        let catalog = handle.catalog();
        if commit.offsets.iter().any(|entry| !catalog.topics.contains_key(&entry.topic)) {
            return Err(ErrorCode::UnknownTopicOrPartition);
        }
        let store = store.get_or_insert_with(|| {
            let path = group_dir(&handle.shared.config.data_dir, &commit.group).join(OFFSETS_FILE);
            StateStore::new(FileStorage::new(), path, OFFSETS_FILE_DEPTH)
        });
        if let Err(error) = store.append(&framed).await {
            eprintln!("ringmq: shard {}: committing offsets of group {}: {error}", handle.id, commit.group);
            return Err(match error {
                AppendError::Write(error) => storage_error(&error),
                AppendError::Sync(_) => ErrorCode::StorageFailure,
            });
        }
        let live_bytes = {
            let mut group = slot.group.borrow_mut();
            for entry in commit.offsets {
                group.offsets.insert((entry.topic, entry.partition), (entry.offset, entry.metadata));
            }
            offsets_live_bytes(&group.offsets)
        };
        let live = || framed_offsets(&slot.group.borrow().offsets, committed_at_ms);
        if let Err(error) = store.compact(live_bytes, live).await {
            eprintln!("ringmq: shard {}: compacting the offsets of group {} failed: {error}", handle.id, commit.group);
        }
        Ok(())
    }

    /// Forgets the committed offsets of a deleted topic, durably (tombstones:
    /// offset -1), so a topic created again under its name starts clean.
    pub(crate) async fn forget_topic(&self, handle: &ShardHandle, topic: &str) {
        for (name, slot) in self.all() {
            // The store's lock first: a commit in flight for this topic (its
            // catalog check passed before the delete) finishes, memory and file,
            // before the tombstones go after it.
            let mut store = slot.store.lock().await;
            let gone: Vec<(String, u32)> = {
                let mut group = slot.group.borrow_mut();
                let gone: Vec<(String, u32)> = group.offsets.keys().filter(|(t, _)| t == topic).cloned().collect();
                for key in &gone {
                    group.offsets.remove(key);
                }
                gone
            };
            let Some(store) = store.as_mut() else { continue };
            if gone.is_empty() {
                continue;
            }
            // A failure here is logged only: on restart `load` drops the
            // offsets of every topic the catalog no longer has.
            if let Err(error) = store.append(&framed_tombstones(&gone, now_ms())).await {
                eprintln!("ringmq: shard {}: forgetting {topic} in group {name} failed: {error}", handle.id);
            }
        }
    }

    /// Answers a request of Kafka's classic group protocol on the group's
    /// coordinator (this shard). Join and Sync wait here for the rebalance.
    pub(crate) async fn classic_request(
        &self,
        handle: &Rc<ShardHandle>,
        request: ClassicRequest,
    ) -> Result<ClassicResponse, ErrorCode> {
        if !valid_topic_name(request.group()) {
            return Err(ErrorCode::InvalidGroupId);
        }
        let now = Instant::now();
        match request {
            ClassicRequest::Join { group, member_id, join } => self.classic_join(handle, &group, member_id, join).await,
            ClassicRequest::Sync { group, member_id, generation, assignments } => {
                self.classic_sync(handle, &group, &member_id, generation, assignments).await
            }
            ClassicRequest::Heartbeat { group, member_id, generation } => {
                let slot = self.get(&group).ok_or(ErrorCode::UnknownMemberId)?;
                let result = slot.classic.borrow_mut().heartbeat(&member_id, generation, now);
                result.map(|()| ClassicResponse::Done)
            }
            ClassicRequest::Leave { group, member_ids } => {
                let slot = self.get(&group).ok_or(ErrorCode::UnknownMemberId)?;
                let mut classic = slot.classic.borrow_mut();
                let results = member_ids.iter().map(|id| classic.leave(id, now)).collect();
                if classic.try_complete(now) {
                    slot.changed.notify_waiters();
                }
                Ok(ClassicResponse::Left(results))
            }
            ClassicRequest::Commit { commit, generation } => {
                self.commit(handle, commit, Some(generation)).await.map(|()| ClassicResponse::Done)
            }
            ClassicRequest::Describe { group } => {
                let description = match self.get(&group) {
                    Some(slot) => slot.classic.borrow().describe(),
                    // Kafka's answer for a group that does not exist.
                    None => ClassicDescription { state: "Dead", ..ClassicGroup::default().describe() },
                };
                Ok(ClassicResponse::Described(description))
            }
        }
    }

    async fn classic_join(
        &self,
        handle: &Rc<ShardHandle>,
        group: &str,
        member_id: String,
        join: crate::groups::classic::ClassicJoin,
    ) -> Result<ClassicResponse, ErrorCode> {
        let is_new = member_id.is_empty();
        if !is_new && self.get(group).is_none() {
            return Err(ErrorCode::UnknownMemberId);
        }
        let slot = self.get_or_create(group)?;
        if !slot.group.borrow().members.is_empty() {
            return Err(ErrorCode::GroupKindMismatch);
        }
        let member_id = if is_new { self.new_member_id(handle.id) } else { member_id };
        let waiting_after = slot.classic.borrow_mut().join(&member_id, is_new, join, Instant::now())?;
        slot.changed.notify_waiters();
        let answer = until_answered(&slot, handle, || {
            let now = Instant::now();
            let mut classic = slot.classic.borrow_mut();
            if classic.try_complete(now) {
                slot.changed.notify_waiters();
            }
            if let Some(answer) = classic.join_answer(&member_id, waiting_after) {
                return Look::Answer(answer);
            }
            Look::Wait(match classic.state {
                ClassicState::PreparingRebalance { deadline } => {
                    deadline.saturating_duration_since(now).min(GROUP_TICK)
                }
                _ => GROUP_TICK,
            })
        })
        .await?;
        Ok(ClassicResponse::Joined { member_id, answer })
    }

    /// A SyncGroup: the leader's answers at once, the others' when the
    /// leader's arrived, or RebalanceInProgress when a new rebalance began
    /// (or the member's session ran out while it waited).
    async fn classic_sync(
        &self,
        handle: &Rc<ShardHandle>,
        group: &str,
        member_id: &str,
        generation: i32,
        mut assignments: Vec<(String, Vec<u8>)>,
    ) -> Result<ClassicResponse, ErrorCode> {
        let slot = self.get(group).ok_or(ErrorCode::UnknownMemberId)?;
        let started = Instant::now();
        loop {
            let changed = slot.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let session = {
                let mut classic = slot.classic.borrow_mut();
                let outcome = classic.sync(member_id, generation, std::mem::take(&mut assignments), Instant::now())?;
                if let SyncOutcome::Assigned(assignment) = outcome {
                    slot.changed.notify_waiters();
                    return Ok(ClassicResponse::Synced(assignment));
                }
                classic.members.get(member_id).map_or(Duration::ZERO, |m| m.session_timeout)
            };
            if handle.is_stopping() {
                return Err(ErrorCode::ShuttingDown);
            }
            if started.elapsed() >= session {
                return Err(ErrorCode::RebalanceInProgress);
            }
            let _ = tokio::time::timeout(GROUP_TICK, changed).await;
        }
    }

    async fn describe(&self, handle: &Rc<ShardHandle>, name: &str) -> Result<GroupDescription, ErrorCode> {
        let Some(slot) = self.get(name) else { return describe_share_group(handle, name).await };
        let (state, generation, members, mut partitions) = {
            let group = slot.group.borrow();
            let members: Vec<MemberDescription> = group
                .members
                .keys()
                .map(|id| MemberDescription {
                    member_id: id.clone(),
                    assignment: group.assignment.get(id).cloned().unwrap_or_default(),
                })
                .collect();
            let mut partitions: BTreeMap<(String, u32), i64> =
                group.offsets.iter().map(|(tp, (offset, _))| (tp.clone(), *offset)).collect();
            for tp in group.assignment.values().flatten() {
                partitions.entry(tp.clone()).or_insert(-1);
            }
            (group.state_code(), group.generation, members, partitions)
        };
        let mut lags = Vec::with_capacity(partitions.len());
        for ((topic, partition), committed) in std::mem::take(&mut partitions) {
            let (end, earliest) = match handle.route(&topic, partition) {
                Ok(owner) => {
                    let request = ListOffsetsRequest { topic: topic.clone(), partition, query: QUERY_LATEST };
                    match handle.submit(owner, Op::ListOffsets(request)).await.await.into_offsets() {
                        Ok(offsets) => (offsets.latest, offsets.earliest),
                        Err(_) => (-1, -1),
                    }
                }
                Err(_) => (-1, -1),
            };
            let lag = match (end, committed) {
                (-1, _) => -1,
                (end, -1) => end - earliest,
                (end, committed) => (end - committed).max(0),
            };
            lags.push(PartitionLag { topic, partition, committed, end, lag });
        }
        Ok(GroupDescription { kind: KIND_CONSUMER, state, generation, members, partitions: lags, share: Vec::new() })
    }
}

/// A share group's state gathered from every shard (its share-partitions
/// live with their partitions).
async fn describe_share_group(handle: &Rc<ShardHandle>, name: &str) -> Result<GroupDescription, ErrorCode> {
    let mut replies = Vec::new();
    for shard in 0..handle.shard_count() {
        replies.push(handle.submit(shard, Op::ShareDescribe(name.to_owned())).await);
    }
    let mut share = Vec::new();
    let mut members = std::collections::BTreeSet::new();
    for reply in replies {
        if let Reply::ShareDescribe(states, seen) = reply.await {
            share.extend(states);
            members.extend(seen);
        }
    }
    if share.is_empty() {
        return Err(ErrorCode::UnknownGroup);
    }
    share.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(GroupDescription {
        kind: crate::protocol::group::KIND_SHARE,
        state: if members.is_empty() {
            crate::protocol::group::STATE_EMPTY
        } else {
            crate::protocol::group::STATE_STABLE
        },
        generation: 0,
        members: members.into_iter().map(|member_id| MemberDescription { member_id, assignment: Vec::new() }).collect(),
        partitions: Vec::new(),
        share,
    })
}

/// A group's committed offsets as the records of a compacted offsets file.
/// Every entry names a partition that exists, with an offset >= 0.
fn check_commit_entries(handle: &ShardHandle, commit: &OffsetCommit) -> Result<(), ErrorCode> {
    let catalog = handle.catalog();
    for entry in &commit.offsets {
        match catalog.topics.get(&entry.topic) {
            Some(topic) if entry.partition < topic.partitions => {}
            _ => return Err(ErrorCode::UnknownTopicOrPartition),
        }
        if entry.offset < 0 {
            return Err(ErrorCode::InvalidArgument);
        }
    }
    Ok(())
}

/// The framed offset records of a commit.
fn frame_commit(commit: &OffsetCommit, committed_at_ms: i64) -> Result<Vec<u8>, ErrorCode> {
    let mut framed = Vec::new();
    for entry in &commit.offsets {
        let record = OffsetRecord {
            topic: entry.topic.clone(),
            partition: entry.partition,
            offset: entry.offset,
            metadata: entry.metadata.clone(),
            committed_at_ms,
        };
        frame_record(&mut framed, &record.encode()).map_err(|_| ErrorCode::TooLarge)?;
    }
    Ok(framed)
}

fn storage_error(error: &std::io::Error) -> ErrorCode {
    if crate::io::is_no_space(error) {
        ErrorCode::NoSpace
    } else {
        ErrorCode::StorageFailure
    }
}

/// Producer ids reserved (durably) at a time; a restart skips the rest of the
/// block, so no id is ever handed out twice.
pub const PRODUCER_ID_BLOCK: i64 = 1000;
/// Named producers one broker remembers.
pub const NAMED_PRODUCERS_MAX: usize = 100_000;
/// The producer-id file under the data directory.
pub const PRODUCER_IDS_FILE: &str = "producer-ids.log";

const RECORD_RESERVED: u8 = 1;
const RECORD_NAMED: u8 = 2;
/// A framed reserved-block record: header, kind u8, end i64.
const RESERVED_RECORD_BYTES: u64 = STATE_RECORD_HEADER_BYTES as u64 + 1 + 8;
/// A framed named-producer record besides the name: header, kind u8, name
/// length u16, id i64, epoch u16.
const NAMED_RECORD_FIXED_BYTES: u64 = STATE_RECORD_HEADER_BYTES as u64 + 1 + 2 + 8 + 2;
/// Directory levels of `producer-ids.log` made durable by its first write.
const PRODUCER_IDS_FILE_DEPTH: usize = 1;

/// Producer ids: the next free one, the end of the reserved block, and the id
/// and epoch of every named producer. Kept on [`super::service::PRODUCER_ID_SHARD`].
pub(crate) struct ProducerIds<S: Storage> {
    store: tokio::sync::Mutex<Option<StateStore<S>>>,
    next: Cell<i64>,
    reserved_to: Cell<i64>,
    named: RefCell<BTreeMap<String, (i64, i16)>>,
}

impl<S: Storage> Default for ProducerIds<S> {
    fn default() -> Self {
        ProducerIds {
            store: tokio::sync::Mutex::new(None),
            next: Cell::new(0),
            reserved_to: Cell::new(0),
            named: RefCell::new(BTreeMap::new()),
        }
    }
}

fn reserved_record(to: i64) -> Vec<u8> {
    let mut writer = crate::protocol::Writer::default();
    writer.u8(RECORD_RESERVED);
    writer.i64(to);
    writer.into_inner()
}

fn named_record(name: &str, id: i64, epoch: i16) -> Vec<u8> {
    let mut writer = crate::protocol::Writer::default();
    writer.u8(RECORD_NAMED);
    writer.string(name);
    writer.i64(id);
    writer.u16(epoch as u16);
    writer.into_inner()
}

impl<S: Storage> ProducerIds<S> {
    /// Reads the producer-ids file at `path` (on [`super::service::PRODUCER_ID_SHARD`]:
    /// `DATA_DIR/producer-ids.log`).
    pub(crate) async fn load(&self, storage: S, path: &std::path::Path) -> Result<(), StateError> {
        let (log, records) = StateStore::open(storage, path, PRODUCER_IDS_FILE_DEPTH)
            .await
            .map_err(|error| StateError::new(format!("cannot open {}", path.display()), error))?;
        let ids = self;
        for payload in &records {
            let mut reader = crate::protocol::Reader::new(payload);
            match reader.u8() {
                Ok(RECORD_RESERVED) => {
                    if let Ok(to) = reader.i64() {
                        ids.reserved_to.set(ids.reserved_to.get().max(to));
                    }
                }
                Ok(RECORD_NAMED) => {
                    let fields = (|| {
                        let name = reader.string(crate::protocol::producer_id::PRODUCER_NAME_WIRE_BYTES_MAX).ok()?;
                        Some((name.to_owned(), reader.i64().ok()?, reader.u16().ok()? as i16))
                    })();
                    if let Some((name, id, epoch)) = fields {
                        ids.named.borrow_mut().insert(name, (id, epoch));
                    }
                }
                _ => {}
            }
        }
        // Whatever was left of the last block may have been handed out.
        ids.next.set(ids.reserved_to.get());
        match ids.store.try_lock() {
            Ok(mut store) => *store = Some(log),
            Err(_) => return Err(StateError::new("producer ids", std::io::Error::other("busy at start-up"))),
        }
        Ok(())
    }

    /// Hands out a producer id and epoch (answered after they are durable).
    pub(crate) async fn init(&self, name: String) -> Result<(i64, i16), ErrorCode> {
        if !name.is_empty() && !valid_topic_name(&name) {
            return Err(ErrorCode::InvalidArgument);
        }
        let ids = self;
        let mut store = ids.store.lock().await;
        let Some(log) = store.as_mut() else { return Err(ErrorCode::Internal) };
        let previous = ids.named.borrow().get(&name).copied();
        if !name.is_empty() && previous.is_none() && ids.named.borrow().len() >= NAMED_PRODUCERS_MAX {
            return Err(ErrorCode::ResourceLimit);
        }
        let mut framed = Vec::new();
        // Nothing changes in memory until the records are durable: a failed
        // write or sync must not leave ids handed out from an unsaved block.
        let (mut next, mut reserved_to) = (ids.next.get(), ids.reserved_to.get());
        let (id, epoch) = match previous {
            Some((id, epoch)) if epoch < i16::MAX => (id, epoch + 1),
            _ => {
                if next >= reserved_to {
                    reserved_to = reserved_to.max(next) + PRODUCER_ID_BLOCK;
                    frame_record(&mut framed, &reserved_record(reserved_to)).map_err(|_| ErrorCode::Internal)?;
                }
                next += 1;
                (next - 1, 0)
            }
        };
        if !name.is_empty() {
            frame_record(&mut framed, &named_record(&name, id, epoch)).map_err(|_| ErrorCode::Internal)?;
        }
        if framed.is_empty() {
            ids.next.set(next);
        } else {
            if let Err(error) = log.append(&framed).await {
                eprintln!("ringmq: saving producer ids failed: {error}");
                return Err(match error {
                    AppendError::Write(error) => storage_error(&error),
                    AppendError::Sync(_) => ErrorCode::StorageFailure,
                });
            }
            ids.next.set(next);
            ids.reserved_to.set(reserved_to);
            if !name.is_empty() {
                ids.named.borrow_mut().insert(name, (id, epoch));
            }
            let live = RESERVED_RECORD_BYTES
                + ids.named.borrow().keys().map(|name| NAMED_RECORD_FIXED_BYTES + name.len() as u64).sum::<u64>();
            let records = || {
                let mut records = Vec::new();
                let _ = frame_record(&mut records, &reserved_record(ids.reserved_to.get()));
                for (name, (id, epoch)) in ids.named.borrow().iter() {
                    let _ = frame_record(&mut records, &named_record(name, *id, *epoch));
                }
                records
            };
            if let Err(error) = log.compact(live, records).await {
                eprintln!("ringmq: compacting producer ids failed: {error}");
            }
        }
        Ok((id, epoch))
    }
}

/// Producer ids on the simulated disk: handed out under fdatasync failures,
/// a full disk, restarts and power losses, an acknowledged id is never handed
/// out again and a named producer's epoch never goes back.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod crash_tests {
    use super::*;
    use crate::groups::store::crash_tests::{inject, restart, Random};
    use crate::io::{SimFaults, SimStorage};
    use std::collections::BTreeSet;

    #[test]
    fn acknowledged_producer_ids_are_never_reused_and_epochs_only_rise() {
        crate::io::block_on(async {
            for seed in 1..=6u64 {
                let storage = SimStorage::new();
                let path = std::path::Path::new("/data/producer-ids.log");
                let mut random = Random(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let mut ids = ProducerIds::default();
                ids.load(storage.clone(), path).await.unwrap();
                let mut anonymous: BTreeSet<i64> = BTreeSet::new();
                let mut named: BTreeMap<String, (i64, i16)> = BTreeMap::new();
                for round in 0..300 {
                    if random.below(20) == 0 {
                        restart(&storage, &mut random);
                        ids = ProducerIds::default();
                        ids.load(storage.clone(), path).await.unwrap();
                        continue;
                    }
                    let name = match random.below(3) {
                        0 => format!("app-{}", random.below(3)),
                        _ => String::new(),
                    };
                    inject(&storage, &mut random);
                    let result = ids.init(name.clone()).await;
                    storage.set_faults(SimFaults::default());
                    let Ok((id, epoch)) = result else { continue };
                    if name.is_empty() {
                        let fresh = anonymous.insert(id) && !named.values().any(|(named_id, _)| *named_id == id);
                        assert!(fresh, "seed {seed} round {round}: id {id} handed out twice");
                    } else if let Some((previous_id, previous_epoch)) = named.insert(name.clone(), (id, epoch)) {
                        assert_eq!(previous_id, id, "seed {seed} round {round}: {name} changed id");
                        assert!(
                            epoch > previous_epoch,
                            "seed {seed} round {round}: {name} epoch {epoch} after {previous_epoch}"
                        );
                    } else {
                        assert!(!anonymous.contains(&id), "seed {seed} round {round}: {name} got a used id {id}");
                    }
                }
                // The faults left most requests standing: the check saw work.
                assert!(anonymous.len() > 50 && named.len() == 3, "seed {seed}: {} ids, {named:?}", anonymous.len());
            }
        })
        .unwrap();
    }
}
