//! Kafka's classic consumer-group protocol (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup), served to Kafka clients beside ringmq's native groups. The
//! difference: here the broker does not assign partitions. It collects the
//! members, picks a protocol (assignor) they all support and a leader, hands
//! the leader every member's opaque subscription metadata, and passes the
//! assignment the leader computed (opaque too) to each member in SyncGroup.
//!
//! States, as Kafka names them:
//!
//! ```text
//! Empty ──join──▶ PreparingRebalance ──all joined / deadline──▶ CompletingRebalance
//!   ▲                 ▲    (members that did not join are removed)       │
//!   │                 │                                                  │ leader's SyncGroup
//!   └──last leaves────┴──join, leave, session expiry──── Stable ◀────────┘
//! ```
//!
//! No I/O and no clock of its own (callers pass `now`), so every transition
//! is unit-tested; the coordinator (`server::coordinator`) does the waiting.

use crate::protocol::ErrorCode;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Members one classic group may have.
pub const CLASSIC_MEMBERS_MAX: usize = crate::protocol::group::GROUP_MEMBERS_MAX;
/// Longest rebalance a member may ask for: clients send 300,000 ms by default
/// (`max.poll.interval.ms`), which is kept; longer ones are clamped.
pub const CLASSIC_REBALANCE_TIMEOUT_MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassicState {
    Empty,
    PreparingRebalance { deadline: Instant },
    CompletingRebalance,
    Stable,
}

impl ClassicState {
    /// The state's name in DescribeGroups and ListGroups.
    pub fn name(&self) -> &'static str {
        match self {
            ClassicState::Empty => "Empty",
            ClassicState::PreparingRebalance { .. } => "PreparingRebalance",
            ClassicState::CompletingRebalance => "CompletingRebalance",
            ClassicState::Stable => "Stable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicMember {
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    /// (protocol name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Vec<u8>)>,
    pub last_seen: Instant,
    /// Has joined the rebalance in progress.
    pub joined: bool,
    /// What the leader assigned this member in the current generation.
    pub assignment: Vec<u8>,
}

/// What a JoinGroup brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicJoin {
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Vec<u8>)>,
}

/// A completed join, as the member is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinAnswer {
    pub generation: i32,
    pub protocol: String,
    pub leader: String,
    /// Every member's metadata for the chosen protocol: for the leader only.
    pub members: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The member's assignment of this generation.
    Assigned(Vec<u8>),
    /// The leader has not synced yet: wait and ask again.
    Waiting,
}

/// A classic-group request, run by the group's coordinator shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassicRequest {
    /// An empty `member_id` joins as a new member (the coordinator names it).
    Join {
        group: String,
        member_id: String,
        join: ClassicJoin,
    },
    Sync {
        group: String,
        member_id: String,
        generation: i32,
        assignments: Vec<(String, Vec<u8>)>,
    },
    Heartbeat {
        group: String,
        member_id: String,
        generation: i32,
    },
    Leave {
        group: String,
        member_ids: Vec<String>,
    },
    /// An OffsetCommit checked against the classic group's generation.
    Commit {
        commit: crate::protocol::group::OffsetCommit,
        generation: i32,
    },
    Describe {
        group: String,
    },
}

impl ClassicRequest {
    pub fn group(&self) -> &str {
        match self {
            ClassicRequest::Join { group, .. }
            | ClassicRequest::Sync { group, .. }
            | ClassicRequest::Heartbeat { group, .. }
            | ClassicRequest::Leave { group, .. }
            | ClassicRequest::Describe { group } => group,
            ClassicRequest::Commit { commit, .. } => &commit.group,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassicResponse {
    Joined {
        member_id: String,
        answer: JoinAnswer,
    },
    Synced(Vec<u8>),
    Done,
    /// Each leaving member's result.
    Left(Vec<Result<(), ErrorCode>>),
    Described(ClassicDescription),
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicDescription {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<DescribedMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedMember {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Vec<u8>,
    pub assignment: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct ClassicGroup {
    pub generation: i32,
    pub state: ClassicState,
    pub protocol_type: String,
    /// The protocol chosen for the current generation.
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, ClassicMember>,
}

impl Default for ClassicGroup {
    fn default() -> Self {
        ClassicGroup {
            generation: 0,
            state: ClassicState::Empty,
            protocol_type: String::new(),
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
        }
    }
}

impl ClassicGroup {
    /// Adds (`is_new`) or refreshes a member and starts or joins a rebalance.
    /// Returns the generation the join waits to be answered after.
    pub fn join(&mut self, member_id: &str, is_new: bool, join: ClassicJoin, now: Instant) -> Result<i32, ErrorCode> {
        if !is_new && !self.members.contains_key(member_id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        if join.protocols.is_empty() || join.protocol_type.is_empty() {
            return Err(ErrorCode::GroupKindMismatch);
        }
        if self.members.keys().any(|id| id != member_id) {
            if join.protocol_type != self.protocol_type {
                return Err(ErrorCode::GroupKindMismatch);
            }
            let shared = |name: &str| self.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == name));
            if !join.protocols.iter().any(|(name, _)| shared(name)) {
                return Err(ErrorCode::GroupKindMismatch);
            }
        }
        if is_new && self.members.len() >= CLASSIC_MEMBERS_MAX {
            return Err(ErrorCode::ResourceLimit);
        }
        // Kafka's rule for a member that joins again with nothing changed: in
        // CompletingRebalance, or in Stable unless it is the leader, it gets
        // the current generation's answer without a rebalance. (Clients rejoin
        // like this after a lost response; a rebalance each time would never
        // settle.) `generation - 1` makes `join_answer` answer it at once.
        let unchanged = self.members.get(member_id).is_some_and(|m| m.protocols == join.protocols);
        let leader = self.leader.as_deref() == Some(member_id);
        let answer_now = match self.state {
            ClassicState::CompletingRebalance => unchanged,
            ClassicState::Stable => unchanged && !leader,
            ClassicState::Empty | ClassicState::PreparingRebalance { .. } => false,
        };
        if answer_now {
            if let Some(member) = self.members.get_mut(member_id) {
                member.last_seen = now;
            }
            return Ok(self.generation.wrapping_sub(1));
        }
        self.protocol_type = join.protocol_type;
        let assignment = self.members.get(member_id).map(|m| m.assignment.clone()).unwrap_or_default();
        self.members.insert(
            member_id.to_owned(),
            ClassicMember {
                client_id: join.client_id,
                client_host: join.client_host,
                session_timeout: join.session_timeout,
                rebalance_timeout: join.rebalance_timeout.min(CLASSIC_REBALANCE_TIMEOUT_MAX),
                protocols: join.protocols,
                last_seen: now,
                joined: true,
                assignment,
            },
        );
        if !matches!(self.state, ClassicState::PreparingRebalance { .. }) {
            self.start_rebalance(now);
            if let Some(member) = self.members.get_mut(member_id) {
                member.joined = true;
            }
        }
        Ok(self.generation)
    }

    fn start_rebalance(&mut self, now: Instant) {
        let timeout = self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or_default();
        self.state = ClassicState::PreparingRebalance { deadline: now + timeout };
        for member in self.members.values_mut() {
            member.joined = false;
            member.assignment.clear();
        }
    }

    /// Completes a rebalance whose members have all joined, or whose deadline
    /// passed (removing those that did not). True when it completed.
    pub fn try_complete(&mut self, now: Instant) -> bool {
        let ClassicState::PreparingRebalance { deadline } = self.state else { return false };
        if !self.members.values().all(|m| m.joined) && now < deadline {
            return false;
        }
        self.members.retain(|_, member| member.joined);
        self.generation = self.generation.wrapping_add(1).max(1);
        for member in self.members.values_mut() {
            member.last_seen = now;
        }
        if self.members.is_empty() {
            self.state = ClassicState::Empty;
            self.protocol = None;
            self.leader = None;
            return true;
        }
        self.protocol = self.choose_protocol();
        if !self.leader.as_ref().is_some_and(|leader| self.members.contains_key(leader)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = ClassicState::CompletingRebalance;
        true
    }

    /// Kafka's vote: among the protocols every member supports, each member
    /// votes for the one it prefers most; the most votes win (ties go to the
    /// earlier name, so every coordinator picks the same).
    fn choose_protocol(&self) -> Option<String> {
        let supported_by_all = |name: &str| self.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == name));
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some((name, _)) = member.protocols.iter().find(|(name, _)| supported_by_all(name)) {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let most = votes.values().copied().max()?;
        votes.into_iter().find(|&(_, count)| count == most).map(|(name, _)| name.to_owned())
    }

    /// The answer of a join waiting after `waiting_after`, once its rebalance
    /// completed: `None` while it has not, `Err` if the member was removed.
    pub fn join_answer(&self, member_id: &str, waiting_after: i32) -> Option<Result<JoinAnswer, ErrorCode>> {
        if self.generation == waiting_after || matches!(self.state, ClassicState::PreparingRebalance { .. }) {
            return None;
        }
        if !self.members.contains_key(member_id) {
            return Some(Err(ErrorCode::UnknownMemberId));
        }
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members
                .iter()
                .map(|(id, member)| {
                    let metadata = member.protocols.iter().find(|(name, _)| *name == protocol).map(|(_, m)| m.clone());
                    (id.clone(), metadata.unwrap_or_default())
                })
                .collect()
        } else {
            Vec::new()
        };
        Some(Ok(JoinAnswer { generation: self.generation, protocol, leader, members }))
    }

    fn member_at(&mut self, member_id: &str, generation: i32, now: Instant) -> Result<&mut ClassicMember, ErrorCode> {
        let current = self.generation;
        let member = self.members.get_mut(member_id).ok_or(ErrorCode::UnknownMemberId)?;
        member.last_seen = now;
        if generation != current {
            return Err(ErrorCode::IllegalGeneration);
        }
        Ok(member)
    }

    /// A SyncGroup. The leader's carries every member's assignment and makes
    /// the group Stable; the others wait for it.
    pub fn sync(
        &mut self,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Vec<u8>)>,
        now: Instant,
    ) -> Result<SyncOutcome, ErrorCode> {
        self.member_at(member_id, generation, now)?;
        match self.state {
            ClassicState::Empty | ClassicState::PreparingRebalance { .. } => Err(ErrorCode::RebalanceInProgress),
            ClassicState::Stable => Ok(SyncOutcome::Assigned(self.assignment_of(member_id))),
            ClassicState::CompletingRebalance if self.leader.as_deref() == Some(member_id) => {
                let mut assignments: BTreeMap<String, Vec<u8>> = assignments.into_iter().collect();
                for (id, member) in self.members.iter_mut() {
                    member.assignment = assignments.remove(id).unwrap_or_default();
                }
                self.state = ClassicState::Stable;
                Ok(SyncOutcome::Assigned(self.assignment_of(member_id)))
            }
            ClassicState::CompletingRebalance => Ok(SyncOutcome::Waiting),
        }
    }

    fn assignment_of(&self, member_id: &str) -> Vec<u8> {
        self.members.get(member_id).map(|m| m.assignment.clone()).unwrap_or_default()
    }

    /// A Heartbeat: RebalanceInProgress tells the member to join again.
    pub fn heartbeat(&mut self, member_id: &str, generation: i32, now: Instant) -> Result<(), ErrorCode> {
        self.member_at(member_id, generation, now)?;
        match self.state {
            ClassicState::PreparingRebalance { .. } | ClassicState::Empty => Err(ErrorCode::RebalanceInProgress),
            ClassicState::CompletingRebalance | ClassicState::Stable => Ok(()),
        }
    }

    /// A LeaveGroup: the member goes and the others rebalance.
    pub fn leave(&mut self, member_id: &str, now: Instant) -> Result<(), ErrorCode> {
        if self.members.remove(member_id).is_none() {
            return Err(ErrorCode::UnknownMemberId);
        }
        self.removed(now);
        Ok(())
    }

    fn removed(&mut self, now: Instant) {
        if self.leader.as_ref().is_some_and(|leader| !self.members.contains_key(leader)) {
            self.leader = None;
        }
        if matches!(self.state, ClassicState::PreparingRebalance { .. }) {
            return;
        }
        // Rebalance even when nobody is left: the generation moves on and the
        // group becomes Empty, as Kafka's does.
        self.start_rebalance(now);
    }

    /// Removes members whose session ran out. A member waiting in a join of
    /// the rebalance in progress is not expired (its request is open).
    pub fn expire(&mut self, now: Instant) -> bool {
        let rebalancing = matches!(self.state, ClassicState::PreparingRebalance { .. });
        let before = self.members.len();
        self.members.retain(|_, m| (rebalancing && m.joined) || now.duration_since(m.last_seen) < m.session_timeout);
        let expired = self.members.len() != before;
        if expired {
            self.removed(now);
        }
        expired
    }

    /// The earliest moment a timer has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let sessions = self.members.values().map(|m| m.last_seen + m.session_timeout).min();
        match self.state {
            ClassicState::PreparingRebalance { deadline } => Some(sessions.map_or(deadline, |s| s.min(deadline))),
            _ => sessions,
        }
    }

    /// The group as DescribeGroups shows it.
    pub fn describe(&self) -> ClassicDescription {
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = self
            .members
            .iter()
            .map(|(id, member)| DescribedMember {
                member_id: id.clone(),
                client_id: member.client_id.clone(),
                client_host: member.client_host.clone(),
                metadata: member
                    .protocols
                    .iter()
                    .find(|(n, _)| *n == protocol)
                    .map(|(_, m)| m.clone())
                    .unwrap_or_default(),
                assignment: member.assignment.clone(),
            })
            .collect();
        ClassicDescription { state: self.state.name(), protocol_type: self.protocol_type.clone(), protocol, members }
    }

    /// An OffsetCommit from `member_id` in `generation`: a member of the
    /// current generation, or (empty member id, negative generation) a
    /// client that assigns itself, which only a group without members takes.
    pub fn may_commit(&mut self, member_id: &str, generation: i32, now: Instant) -> Result<(), ErrorCode> {
        if member_id.is_empty() && generation < 0 {
            return if self.members.is_empty() { Ok(()) } else { Err(ErrorCode::UnknownMemberId) };
        }
        self.member_at(member_id, generation, now)?;
        match self.state {
            ClassicState::CompletingRebalance => Err(ErrorCode::RebalanceInProgress),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn join_of(protocols: &[&str]) -> ClassicJoin {
        ClassicJoin {
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            protocol_type: "consumer".into(),
            protocols: protocols.iter().map(|p| (p.to_string(), format!("meta-{p}").into_bytes())).collect(),
        }
    }

    #[test]
    fn two_members_join_the_leader_assigns_and_both_sync() {
        let now = Instant::now();
        let mut group = ClassicGroup::default();
        let after = group.join("a", true, join_of(&["range", "roundrobin"]), now).unwrap();
        assert!(group.try_complete(now), "the only member joined");
        let answer = group.join_answer("a", after).unwrap().unwrap();
        assert_eq!((answer.generation, answer.protocol.as_str(), answer.leader.as_str()), (1, "range", "a"));
        assert_eq!(answer.members, vec![("a".to_string(), b"meta-range".to_vec())]);
        assert_eq!(
            group.sync("a", 1, vec![("a".into(), b"all".to_vec())], now).unwrap(),
            SyncOutcome::Assigned(b"all".to_vec())
        );
        assert_eq!(group.state, ClassicState::Stable);

        // a joins again unchanged while Stable: as the leader it rebalances;
        // a follower would be answered at once (see the next test).
        // b joins with a different preference: a must join again.
        let after_b = group.join("b", true, join_of(&["roundrobin", "range"]), now).unwrap();
        assert!(!group.try_complete(now));
        assert_eq!(group.heartbeat("a", 1, now), Err(ErrorCode::RebalanceInProgress));
        assert_eq!(group.join_answer("b", after_b), None);
        let after_a = group.join("a", false, join_of(&["range", "roundrobin"]), now).unwrap();
        assert!(group.try_complete(now));
        let a = group.join_answer("a", after_a).unwrap().unwrap();
        let b = group.join_answer("b", after_b).unwrap().unwrap();
        assert_eq!(a.generation, 2);
        // One vote each: the tie goes to the earlier name.
        assert_eq!(a.protocol, "range");
        assert_eq!(a.leader, "a", "the leader stays the leader");
        assert_eq!(a.members.len(), 2);
        assert!(b.members.is_empty(), "only the leader sees the members");
        assert_eq!(group.sync("b", 2, Vec::new(), now).unwrap(), SyncOutcome::Waiting);
        assert_eq!(group.heartbeat("b", 2, now), Ok(()));
        assert_eq!(group.may_commit("b", 2, now), Err(ErrorCode::RebalanceInProgress));
        let assignments = vec![("a".into(), b"p0".to_vec()), ("b".into(), b"p1".to_vec())];
        assert_eq!(group.sync("a", 2, assignments, now).unwrap(), SyncOutcome::Assigned(b"p0".to_vec()));
        assert_eq!(group.sync("b", 2, Vec::new(), now).unwrap(), SyncOutcome::Assigned(b"p1".to_vec()));
        assert_eq!(group.may_commit("b", 2, now), Ok(()));
        assert_eq!(group.may_commit("b", 1, now), Err(ErrorCode::IllegalGeneration));
        assert_eq!(group.may_commit("", -1, now), Err(ErrorCode::UnknownMemberId), "the group has members");
    }

    #[test]
    fn a_follower_joining_again_unchanged_gets_the_current_generation_without_a_rebalance() {
        let now = Instant::now();
        let mut group = ClassicGroup::default();
        group.join("a", true, join_of(&["range"]), now).unwrap();
        group.join("b", true, join_of(&["range"]), now).unwrap();
        assert!(group.try_complete(now));
        // In CompletingRebalance (the leader has not synced yet).
        let after = group.join("b", false, join_of(&["range"]), now).unwrap();
        assert_eq!(group.state, ClassicState::CompletingRebalance);
        assert_eq!(group.join_answer("b", after).unwrap().unwrap().generation, 1);
        group.sync("a", 1, vec![("b".into(), b"x".to_vec())], now).unwrap();
        // In Stable.
        let after = group.join("b", false, join_of(&["range"]), now).unwrap();
        assert_eq!((group.state, group.generation), (ClassicState::Stable, 1));
        assert_eq!(group.join_answer("b", after).unwrap().unwrap().leader, "a");
        assert_eq!(group.sync("b", 1, Vec::new(), now).unwrap(), SyncOutcome::Assigned(b"x".to_vec()));
        // Changed metadata does rebalance.
        group.join("b", false, join_of(&["range", "roundrobin"]), now).unwrap();
        assert!(matches!(group.state, ClassicState::PreparingRebalance { .. }));
    }

    #[test]
    fn leaving_and_expiring_rebalance_the_rest_and_the_last_leaves_it_empty() {
        let now = Instant::now();
        let mut group = ClassicGroup::default();
        group.join("a", true, join_of(&["range"]), now).unwrap();
        group.join("b", true, join_of(&["range"]), now).unwrap();
        assert!(group.try_complete(now));
        group.sync("a", 1, Vec::new(), now).unwrap();
        group.leave("a", now).unwrap();
        assert_eq!(group.heartbeat("b", 1, now), Err(ErrorCode::RebalanceInProgress));
        let after = group.join("b", false, join_of(&["range"]), now).unwrap();
        assert!(group.try_complete(now));
        let answer = group.join_answer("b", after).unwrap().unwrap();
        assert_eq!((answer.generation, answer.leader.as_str()), (2, "b"), "a new leader");

        group.sync("b", 2, Vec::new(), now).unwrap();
        let later = now + Duration::from_secs(11);
        assert!(group.expire(later), "b's session ran out");
        assert!(group.try_complete(later));
        assert_eq!((group.state, group.generation), (ClassicState::Empty, 3));
        assert_eq!(group.may_commit("", -1, later), Ok(()), "an empty group takes commits from outside");
        assert_eq!(group.heartbeat("b", 2, later), Err(ErrorCode::UnknownMemberId));
    }

    #[test]
    fn a_member_that_does_not_rejoin_in_time_is_removed_and_its_join_is_answered_unknown() {
        let now = Instant::now();
        let mut group = ClassicGroup::default();
        group.join("a", true, join_of(&["range"]), now).unwrap();
        let after_b = group.join("b", true, join_of(&["range"]), now).unwrap();
        assert!(group.try_complete(now));
        group.sync("a", 1, Vec::new(), now).unwrap();
        let after_c = group.join("c", true, join_of(&["range"]), now).unwrap();
        let after_b2 = group.join("b", false, join_of(&["range"]), now).unwrap();
        assert_eq!(after_b, 0);
        // a never rejoins; the deadline is the largest rebalance timeout.
        assert!(!group.try_complete(now + Duration::from_secs(29)));
        assert!(group.try_complete(now + Duration::from_secs(30)));
        assert_eq!(group.members.keys().collect::<Vec<_>>(), vec!["b", "c"]);
        assert_eq!(group.join_answer("a", 1), Some(Err(ErrorCode::UnknownMemberId)));
        assert_eq!(group.join_answer("c", after_c).unwrap().unwrap().leader, "b");
        assert_eq!(group.join_answer("b", after_b2).unwrap().unwrap().generation, 2);
    }

    #[test]
    fn protocols_must_be_shared_and_the_type_must_match() {
        let now = Instant::now();
        let mut group = ClassicGroup::default();
        group.join("a", true, join_of(&["range"]), now).unwrap();
        assert_eq!(group.join("b", true, join_of(&["sticky"]), now), Err(ErrorCode::GroupKindMismatch));
        let mut other_type = join_of(&["range"]);
        other_type.protocol_type = "connect".into();
        assert_eq!(group.join("b", true, other_type, now), Err(ErrorCode::GroupKindMismatch));
        assert_eq!(group.join("b", true, join_of(&[]), now), Err(ErrorCode::GroupKindMismatch));
        assert_eq!(group.join("zz", false, join_of(&["range"]), now), Err(ErrorCode::UnknownMemberId));
        assert_eq!(group.members.len(), 1, "refused joins change nothing");
    }
}
