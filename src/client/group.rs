//! Consumer groups from the client side: [`GroupConsumer`] joins a group,
//! consumes the partitions the broker assigns to it, heartbeats from `poll`,
//! joins again when the group rebalances, and commits its positions.
//!
//! It works over any [`Transport`]: TCP ([`super::Client`]) or in process
//! (the embedded client).

use super::{decode_records, ClientError, ConsumedRecord, Result, Transport};
use crate::protocol::fetch::FetchRequest;
use crate::protocol::group::{
    CommittedOffset, GroupDescription, GroupRequest, GroupResponse, JoinGroup, JoinResponse, OffsetCommit,
};
use crate::protocol::offsets::{QUERY_EARLIEST, QUERY_LATEST};
use crate::protocol::ErrorCode;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A JoinGroup sent and not answered yet ([`Transport::start_join`]).
pub struct PendingJoin(Pending);

enum Pending {
    /// On a connection of its own, which only this join uses.
    Tcp(super::PendingCall),
    /// Any other transport: a wait for the answer up to a timeout.
    Other(Box<dyn JoinWait>),
}

/// Waits up to a timeout for a join's answer (`None`: not there yet).
pub trait JoinWait: Send {
    fn wait(&mut self, timeout: Duration) -> Result<Option<JoinResponse>>;
}

impl PendingJoin {
    /// A join on a connection of its own.
    pub(crate) fn tcp(call: super::PendingCall) -> PendingJoin {
        PendingJoin(Pending::Tcp(call))
    }

    /// A join waited for by `wait` (a transport other than TCP).
    pub fn new(wait: Box<dyn JoinWait>) -> PendingJoin {
        PendingJoin(Pending::Other(wait))
    }

    /// The join's answer if it arrives within `timeout`; `None` when it has not.
    pub fn wait(&mut self, timeout: Duration) -> Result<Option<JoinResponse>> {
        match &mut self.0 {
            Pending::Tcp(call) => match call.wait(timeout)? {
                Some(body) => Ok(Some(GroupResponse::decode_join(&body)?)),
                None => Ok(None),
            },
            Pending::Other(wait) => wait.wait(timeout),
        }
    }
}

pub(crate) fn unexpected(what: &str) -> ClientError {
    ClientError::Protocol(format!("unexpected answer to {what}"))
}

/// Describes a group: members, assignment, committed offsets, end offsets, lag.
pub fn describe_group(transport: &(impl Transport + ?Sized), group: &str) -> Result<GroupDescription> {
    match transport.group(GroupRequest::Describe { group: group.into() })? {
        GroupResponse::Describe(description) => Ok(description),
        _ => Err(unexpected("describe group")),
    }
}

/// The committed offsets of a group (all of them when `partitions` is empty).
pub fn fetch_offsets(
    transport: &(impl Transport + ?Sized),
    group: &str,
    partitions: Vec<(String, u32)>,
) -> Result<Vec<CommittedOffset>> {
    match transport.group(GroupRequest::Fetch { group: group.into(), partitions })? {
        GroupResponse::Offsets(offsets) => Ok(offsets),
        _ => Err(unexpected("offset fetch")),
    }
}

/// Commits offsets for a group from outside it (only while it has no members).
pub fn commit_offsets(transport: &(impl Transport + ?Sized), group: &str, offsets: Vec<CommittedOffset>) -> Result<()> {
    transport
        .group(GroupRequest::Commit(OffsetCommit {
            group: group.into(),
            member_id: String::new(),
            generation: 0,
            offsets,
        }))
        .map(drop)
}

/// Where a partition without a committed offset starts (Kafka's `auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    Latest,
}

#[derive(Debug, Clone)]
pub struct GroupConsumerConfig {
    /// The broker removes a member it has not heard from for this long.
    pub session_timeout: Duration,
    /// How long a rebalance waits for members to join again.
    pub rebalance_timeout: Duration,
    /// How often `poll` heartbeats (and so how fast it notices a rebalance).
    pub heartbeat_interval: Duration,
    pub offset_reset: OffsetReset,
    /// Commit positions before joining again and on close.
    pub auto_commit: bool,
    pub max_bytes: u32,
}

impl Default for GroupConsumerConfig {
    fn default() -> Self {
        GroupConsumerConfig {
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_millis(300),
            offset_reset: OffsetReset::Earliest,
            auto_commit: true,
            max_bytes: super::FETCH_MAX_BYTES_DEFAULT,
        }
    }
}

/// A record with the partition it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    pub topic: String,
    pub partition: u32,
    pub record: ConsumedRecord,
}

/// A member of a consumer group.
pub struct GroupConsumer<T: Transport> {
    transport: T,
    group: String,
    topics: Vec<String>,
    config: GroupConsumerConfig,
    member_id: String,
    generation: u32,
    /// Has a member id and a generation (its first join completed).
    joined: bool,
    /// A join sent and not answered yet: the member owns nothing meanwhile.
    joining: Option<PendingJoin>,
    assignment: Vec<(String, u32)>,
    positions: BTreeMap<(String, u32), u64>,
    next_partition: usize,
    last_heartbeat: Instant,
}

impl<T: Transport> GroupConsumer<T> {
    /// A consumer that joins `group` for `topics` on its first `poll`.
    pub fn new(transport: T, group: &str, topics: &[&str], config: GroupConsumerConfig) -> GroupConsumer<T> {
        GroupConsumer {
            transport,
            group: group.into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            config,
            member_id: String::new(),
            generation: 0,
            joined: false,
            joining: None,
            assignment: Vec::new(),
            positions: BTreeMap::new(),
            next_partition: 0,
            last_heartbeat: Instant::now(),
        }
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The partitions this member owns in its generation.
    pub fn assignment(&self) -> &[(String, u32)] {
        &self.assignment
    }

    /// The next offset `poll` returns from a partition this member owns.
    pub fn position(&self, topic: &str, partition: u32) -> Option<u64> {
        self.positions.get(&(topic.to_owned(), partition)).copied()
    }

    pub fn transport(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Joins (or joins again) and positions every assigned partition at its
    /// committed offset, or where `offset_reset` says. Waits for the
    /// rebalance to complete (up to the rebalance timeout); `poll` instead
    /// joins in the background, a little at each call.
    pub fn join(&mut self) -> Result<()> {
        if self.joining.is_none() {
            self.begin_join()?;
        }
        while !self.finish_join(self.config.rebalance_timeout)? {}
        Ok(())
    }

    /// Sends a JoinGroup without waiting for it. Until it is answered the
    /// member owns no partition (the broker may give them to others).
    fn begin_join(&mut self) -> Result<()> {
        self.assignment.clear();
        self.positions.clear();
        self.next_partition = 0;
        let request = JoinGroup {
            group: self.group.clone(),
            member_id: self.member_id.clone(),
            session_timeout_ms: self.config.session_timeout.as_millis().min(u128::from(u32::MAX)) as u32,
            rebalance_timeout_ms: self.config.rebalance_timeout.as_millis().min(u128::from(u32::MAX)) as u32,
            topics: self.topics.clone(),
        };
        self.joining = Some(self.transport.start_join(request)?);
        Ok(())
    }

    /// Waits up to `timeout` for the join in progress; true once it completed
    /// and the member holds its new assignment.
    fn finish_join(&mut self, timeout: Duration) -> Result<bool> {
        let Some(pending) = self.joining.as_mut() else { return Ok(self.joined) };
        let response = match pending.wait(timeout) {
            Ok(Some(response)) => response,
            Ok(None) => return Ok(false),
            // Removed by the broker (expired, or it restarted): join as new.
            Err(error) if error.code() == Some(ErrorCode::UnknownMemberId) && !self.member_id.is_empty() => {
                self.member_id.clear();
                self.joined = false;
                self.begin_join()?;
                return Ok(false);
            }
            Err(error) => {
                self.joining = None;
                return Err(error);
            }
        };
        self.joining = None;
        self.member_id = response.member_id;
        self.generation = response.generation;
        self.assignment = response
            .assignment
            .into_iter()
            .flat_map(|(topic, partitions)| partitions.into_iter().map(move |p| (topic.clone(), p)))
            .collect();
        self.joined = true;
        self.last_heartbeat = Instant::now();
        let committed = fetch_offsets(&self.transport, &self.group, self.assignment.clone())?;
        let committed: BTreeMap<(String, u32), i64> =
            committed.into_iter().map(|c| ((c.topic, c.partition), c.offset)).collect();
        let mut positions = BTreeMap::new();
        for (topic, partition) in self.assignment.clone() {
            let position = match committed.get(&(topic.clone(), partition)) {
                Some(&offset) if offset >= 0 => offset as u64,
                _ => self.reset_position(&topic, partition)?,
            };
            positions.insert((topic, partition), position);
        }
        self.positions = positions;
        self.next_partition = 0;
        Ok(true)
    }

    fn reset_position(&mut self, topic: &str, partition: u32) -> Result<u64> {
        let query = match self.config.offset_reset {
            OffsetReset::Earliest => QUERY_EARLIEST,
            OffsetReset::Latest => QUERY_LATEST,
        };
        Ok(self.transport.list_offsets(topic, partition, query)?.offset.max(0) as u64)
    }

    /// Heartbeats when one is due; joins again when the group rebalances.
    /// Waits for a join in progress until `deadline` at most, so a poll
    /// returns by its timeout even in the middle of a rebalance.
    fn keep_membership(&mut self, deadline: Instant) -> Result<()> {
        let left = || deadline.saturating_duration_since(Instant::now());
        if self.joining.is_some() {
            return self.finish_join(left()).map(drop);
        }
        if !self.joined {
            self.begin_join()?;
            return self.finish_join(left()).map(drop);
        }
        if self.last_heartbeat.elapsed() < self.config.heartbeat_interval {
            return Ok(());
        }
        let request = GroupRequest::Heartbeat {
            group: self.group.clone(),
            member_id: self.member_id.clone(),
            generation: self.generation,
        };
        match self.transport.group(request) {
            Ok(_) => {
                self.last_heartbeat = Instant::now();
                return Ok(());
            }
            Err(error) => match error.code() {
                Some(ErrorCode::RebalanceInProgress) => {
                    if self.config.auto_commit {
                        // Still this generation's owner: its commit is accepted.
                        let _ = self.commit();
                    }
                }
                // Dropped by the group: it owns nothing from now on.
                Some(ErrorCode::UnknownMemberId) => {
                    self.member_id.clear();
                    self.joined = false;
                }
                Some(ErrorCode::IllegalGeneration) => {}
                _ => return Err(error),
            },
        }
        self.begin_join()?;
        self.finish_join(left()).map(drop)
    }

    /// Returns records from the assigned partitions, waiting up to `max_wait`
    /// when none are there. Heartbeats and follows rebalances on the way; it
    /// returns by `max_wait` even while a rebalance is in progress (with no
    /// records: the member owns nothing until it has joined again).
    pub fn poll(&mut self, max_wait: Duration) -> Result<Vec<GroupRecord>> {
        let deadline = Instant::now() + max_wait;
        loop {
            self.keep_membership(deadline)?;
            let left = deadline.saturating_duration_since(Instant::now());
            if self.joining.is_some() {
                // The join waited until the deadline and is not answered yet.
            } else if self.assignment.is_empty() {
                std::thread::sleep(left.min(self.config.heartbeat_interval));
            } else {
                // One pass without waiting over every partition, starting where the
                // last poll stopped; then one long poll on the next partition.
                let count = self.assignment.len();
                for step in 0..=count {
                    let index = (self.next_partition + step) % count;
                    let wait = if step == count { left.min(self.config.heartbeat_interval) } else { Duration::ZERO };
                    let records = self.fetch_partition(index, wait)?;
                    if !records.is_empty() {
                        self.next_partition = (index + 1) % count;
                        return Ok(records);
                    }
                }
            }
            if Instant::now() >= deadline {
                return Ok(Vec::new());
            }
        }
    }

    fn fetch_partition(&mut self, index: usize, wait: Duration) -> Result<Vec<GroupRecord>> {
        let Some((topic, partition)) = self.assignment.get(index).cloned() else { return Ok(Vec::new()) };
        let position = self.positions.get(&(topic.clone(), partition)).copied().unwrap_or(0);
        let request = FetchRequest {
            topic: topic.clone(),
            partition,
            offset: position,
            max_bytes: self.config.max_bytes,
            max_wait_ms: wait.as_millis().min(u128::from(crate::protocol::FETCH_WAIT_MS_MAX)) as u32,
            min_bytes: 1,
        };
        let result = match self.transport.fetch(&request) {
            Ok(result) => result,
            Err(error) if error.code() == Some(ErrorCode::OffsetOutOfRange) => {
                // The committed offset was removed by retention (or is past the end).
                let reset = self.reset_position(&topic, partition)?;
                self.positions.insert((topic, partition), reset);
                return Ok(Vec::new());
            }
            Err(error) => return Err(error),
        };
        let records = decode_records(&result.records, position)?;
        if let Some(last) = records.last() {
            self.positions.insert((topic.clone(), partition), last.offset + 1);
        }
        Ok(records.into_iter().map(|record| GroupRecord { topic: topic.clone(), partition, record }).collect())
    }

    /// Commits the current position of every assigned partition.
    pub fn commit(&mut self) -> Result<()> {
        let offsets: Vec<(String, u32, u64)> =
            self.positions.iter().map(|((topic, partition), offset)| (topic.clone(), *partition, *offset)).collect();
        self.commit_offsets(&offsets)
    }

    /// Commits the given next-to-read offsets.
    /// Fails before the member has joined (its first `poll` or `join`): a
    /// commit needs a member id and a generation.
    pub fn commit_offsets(&mut self, offsets: &[(String, u32, u64)]) -> Result<()> {
        if !self.joined {
            return Err(ClientError::InvalidArgument("not a member yet: poll (or join) before committing".into()));
        }
        if offsets.is_empty() {
            return Ok(());
        }
        let offsets = offsets
            .iter()
            .map(|(topic, partition, offset)| CommittedOffset {
                topic: topic.clone(),
                partition: *partition,
                offset: (*offset).min(i64::MAX as u64) as i64,
                metadata: String::new(),
            })
            .collect();
        let request = GroupRequest::Commit(OffsetCommit {
            group: self.group.clone(),
            member_id: self.member_id.clone(),
            generation: self.generation,
            offsets,
        });
        self.transport.group(request).map(drop)
    }

    /// Commits (with `auto_commit`) and leaves the group, so the others take
    /// over its partitions at once instead of after the session timeout.
    pub fn close(mut self) -> Result<T> {
        if self.joining.is_some() {
            // Learn the member id the broker gave (or keeps), so leaving frees
            // its partitions now rather than after its session expires.
            let _ = self.finish_join(self.config.rebalance_timeout);
            self.joining = None;
        }
        if self.joined {
            // Leave even when the commit failed, so the others do not wait for
            // this member's session to expire; report the commit's error first.
            let committed = if self.config.auto_commit { self.commit() } else { Ok(()) };
            let request = GroupRequest::Leave { group: self.group.clone(), member_id: self.member_id.clone() };
            let left = match self.transport.group(request) {
                Ok(_) => Ok(()),
                Err(error) if error.code() == Some(ErrorCode::UnknownMemberId) => Ok(()),
                Err(error) => Err(error),
            };
            committed?;
            left?;
        }
        Ok(self.transport)
    }
}

/// Lag of a group per partition, as the broker computes it.
pub fn total_lag(description: &GroupDescription) -> i64 {
    description.partitions.iter().filter(|p| p.lag >= 0).map(|p| p.lag).sum()
}
