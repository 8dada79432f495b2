//! The consumer-group state machine: membership, generations, rebalances and
//! broker-side sticky assignment. No I/O and no clock of its own (callers pass
//! `now`), so every transition is unit-tested.
//!
//! A rebalance starts when a member joins, leaves or expires. Every member then
//! has to join again (a heartbeat answers RebalanceInProgress); the rebalance
//! completes when all have, or at its deadline (the largest rebalance timeout of
//! the members), when those that did not are removed. Completing bumps the
//! generation and computes the assignment of the new generation: partitions are
//! handed out per topic among the members subscribed to it, balanced (counts
//! differ by at most one) and sticky (a member keeps what it owned while that
//! fits its share). One generation has one assignment, so no partition has two
//! owners in it; commits from an older generation are refused.

use crate::protocol::ErrorCode;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

pub type TopicPartition = (String, u32);

#[derive(Debug, Clone)]
pub struct Member {
    pub topics: Vec<String>,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub last_seen: Instant,
    /// Has joined the rebalance in progress (or the last one).
    pub joined: bool,
    /// The generation whose join answer this member was last given.
    pub answered_generation: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Empty,
    Rebalancing { deadline: Instant },
    Stable,
}

#[derive(Debug, Clone)]
pub struct ConsumerGroup {
    pub generation: u32,
    pub state: State,
    pub members: BTreeMap<String, Member>,
    /// The assignment of the current generation.
    pub assignment: BTreeMap<String, Vec<TopicPartition>>,
    /// Committed offsets: offset and metadata.
    pub offsets: BTreeMap<TopicPartition, (i64, String)>,
    /// Partition counts of the subscribed topics when the assignment was made
    /// (0: no such topic): a change starts a rebalance.
    pub assigned_with: BTreeMap<String, u32>,
}

impl Default for ConsumerGroup {
    fn default() -> Self {
        ConsumerGroup {
            generation: 0,
            state: State::Empty,
            members: BTreeMap::new(),
            assignment: BTreeMap::new(),
            offsets: BTreeMap::new(),
            assigned_with: BTreeMap::new(),
        }
    }
}

/// What a join asks for.
#[derive(Debug, Clone)]
pub struct JoinArgs {
    pub topics: Vec<String>,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
}

impl ConsumerGroup {
    /// Adds or refreshes a member and starts (or joins) a rebalance. `member_id`
    /// is the id to use: a fresh one for a new member, which the caller makes.
    /// Returns the generation the join waits to be answered after.
    pub fn join(&mut self, member_id: &str, is_new: bool, args: JoinArgs, now: Instant) -> Result<u32, ErrorCode> {
        if !is_new && !self.members.contains_key(member_id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        let previous = self.members.get(member_id).and_then(|m| m.answered_generation);
        self.members.insert(
            member_id.to_owned(),
            Member {
                topics: args.topics,
                session_timeout: args.session_timeout,
                rebalance_timeout: args.rebalance_timeout,
                last_seen: now,
                joined: true,
                answered_generation: previous,
            },
        );
        let waiting_after = self.generation;
        if !matches!(self.state, State::Rebalancing { .. }) {
            self.start_rebalance(now);
        }
        if let Some(member) = self.members.get_mut(member_id) {
            member.joined = true;
        }
        Ok(waiting_after)
    }

    fn start_rebalance(&mut self, now: Instant) {
        let timeout = self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or_default();
        self.state = State::Rebalancing { deadline: now + timeout };
        for member in self.members.values_mut() {
            // A member whose join is still waiting counts as joined.
            member.joined = member.joined && member.answered_generation.is_none_or(|g| g < self.generation);
        }
    }

    /// Completes a rebalance whose members have all joined, or whose deadline
    /// passed (removing the members that did not join). True when it completed.
    pub fn try_complete(&mut self, now: Instant, partitions_of: &dyn Fn(&str) -> u32) -> bool {
        let State::Rebalancing { deadline } = self.state else { return false };
        let all_joined = self.members.values().all(|m| m.joined);
        if !all_joined && now < deadline {
            return false;
        }
        self.members.retain(|_, member| member.joined);
        self.generation = self.generation.wrapping_add(1);
        self.assignment = assign(&self.members, &self.assignment, partitions_of);
        self.assigned_with = self.subscribed_partitions(partitions_of);
        let generation = self.generation;
        for member in self.members.values_mut() {
            member.answered_generation = Some(generation);
            member.last_seen = now;
        }
        self.state = if self.members.is_empty() { State::Empty } else { State::Stable };
        true
    }

    /// The answer for a waiting join, once its rebalance has completed: the
    /// generation and the member's assignment. `Err` when the member was removed.
    pub fn join_answer(
        &self,
        member_id: &str,
        waiting_after: u32,
    ) -> Option<Result<(u32, Vec<TopicPartition>), ErrorCode>> {
        let Some(member) = self.members.get(member_id) else { return Some(Err(ErrorCode::UnknownMemberId)) };
        match member.answered_generation {
            Some(generation) if generation != waiting_after && generation == self.generation => {
                Some(Ok((generation, self.assignment.get(member_id).cloned().unwrap_or_default())))
            }
            _ => None,
        }
    }

    pub fn heartbeat(&mut self, member_id: &str, generation: u32, now: Instant) -> Result<(), ErrorCode> {
        let Some(member) = self.members.get_mut(member_id) else { return Err(ErrorCode::UnknownMemberId) };
        member.last_seen = now;
        if matches!(self.state, State::Rebalancing { .. }) && !member.joined {
            return Err(ErrorCode::RebalanceInProgress);
        }
        if generation != self.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        Ok(())
    }

    pub fn leave(&mut self, member_id: &str, now: Instant) -> Result<(), ErrorCode> {
        if self.members.remove(member_id).is_none() {
            return Err(ErrorCode::UnknownMemberId);
        }
        self.assignment.remove(member_id);
        self.membership_changed(now);
        Ok(())
    }

    fn membership_changed(&mut self, now: Instant) {
        if self.members.is_empty() {
            self.generation = self.generation.wrapping_add(1);
            self.assignment.clear();
            self.state = State::Empty;
        } else if !matches!(self.state, State::Rebalancing { .. }) {
            self.start_rebalance(now);
        }
    }

    /// Removes members whose session expired (a member waiting in a join is
    /// not expired: its rebalance's deadline bounds it). True when any was.
    pub fn expire(&mut self, now: Instant) -> bool {
        let rebalancing = matches!(self.state, State::Rebalancing { .. });
        let before = self.members.len();
        self.members
            .retain(|_, member| (rebalancing && member.joined) || now < member.last_seen + member.session_timeout);
        if self.members.len() == before {
            return false;
        }
        let members = &self.members;
        self.assignment.retain(|id, _| members.contains_key(id));
        self.membership_changed(now);
        true
    }

    /// Checks that `member_id` (empty: a client outside the group) may commit.
    pub fn may_commit(&mut self, member_id: &str, generation: u32, now: Instant) -> Result<(), ErrorCode> {
        if member_id.is_empty() {
            // Manual commits are for groups nobody is a member of (Kafka's rule).
            return if self.members.is_empty() { Ok(()) } else { Err(ErrorCode::UnknownMemberId) };
        }
        let Some(member) = self.members.get_mut(member_id) else { return Err(ErrorCode::UnknownMemberId) };
        member.last_seen = now;
        if generation != self.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        Ok(())
    }

    fn subscribed_partitions(&self, partitions_of: &dyn Fn(&str) -> u32) -> BTreeMap<String, u32> {
        let topics: BTreeSet<&String> = self.members.values().flat_map(|m| m.topics.iter()).collect();
        topics.into_iter().map(|topic| (topic.clone(), partitions_of(topic))).collect()
    }

    /// Starts a rebalance when a subscribed topic was created, deleted or
    /// given another partition count since the assignment. True when it did.
    pub fn check_topics(&mut self, now: Instant, partitions_of: &dyn Fn(&str) -> u32) -> bool {
        if self.state != State::Stable || self.subscribed_partitions(partitions_of) == self.assigned_with {
            return false;
        }
        self.start_rebalance(now);
        true
    }

    pub fn state_code(&self) -> u8 {
        use crate::protocol::group::{STATE_EMPTY, STATE_REBALANCING, STATE_STABLE};
        match self.state {
            State::Empty => STATE_EMPTY,
            State::Rebalancing { .. } => STATE_REBALANCING,
            State::Stable => STATE_STABLE,
        }
    }

    /// The earliest instant something time-driven happens (a deadline, an expiry).
    pub fn next_deadline(&self) -> Option<Instant> {
        let expiries = self.members.values().map(|m| m.last_seen + m.session_timeout);
        let rebalance = match self.state {
            State::Rebalancing { deadline } => Some(deadline),
            _ => None,
        };
        expiries.chain(rebalance).min()
    }
}

/// One subscriber of a topic while its partitions are assigned.
struct Slot<'a> {
    id: &'a String,
    /// Partitions of the topic it owned before, ascending.
    kept: Vec<u32>,
    rotated: usize,
    quota: usize,
    owned: Vec<u32>,
}

/// Balanced, sticky assignment per topic (see the module comment).
pub fn assign(
    members: &BTreeMap<String, Member>,
    previous: &BTreeMap<String, Vec<TopicPartition>>,
    partitions_of: &dyn Fn(&str) -> u32,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut result: BTreeMap<String, Vec<TopicPartition>> = members.keys().map(|id| (id.clone(), Vec::new())).collect();
    let topics: BTreeSet<&String> = members.values().flat_map(|m| m.topics.iter()).collect();
    for (topic_index, topic) in topics.into_iter().enumerate() {
        let count = partitions_of(topic);
        let subscribers: Vec<&String> =
            members.iter().filter(|(_, m)| m.topics.contains(topic)).map(|(id, _)| id).collect();
        if count == 0 || subscribers.is_empty() {
            continue;
        }
        let kept_before = |id: &String| -> Vec<u32> {
            let mut owned: Vec<u32> = previous
                .get(id)
                .into_iter()
                .flatten()
                .filter(|(t, p)| t == topic && *p < count)
                .map(|(_, p)| *p)
                .collect();
            owned.sort_unstable();
            owned
        };
        let share = count as usize / subscribers.len();
        let extra = count as usize % subscribers.len();
        let mut slots: Vec<Slot> = subscribers
            .iter()
            .enumerate()
            .map(|(i, id)| Slot {
                id,
                kept: kept_before(id),
                // A rotation, so that fresh groups spread single partitions over members.
                rotated: (i + subscribers.len() - topic_index % subscribers.len()) % subscribers.len(),
                quota: share,
                owned: Vec::new(),
            })
            .collect();
        // Extra slots go first to those who owned the most, then by the rotation.
        let mut order: Vec<&mut Slot> = slots.iter_mut().collect();
        order.sort_by_key(|slot| (std::cmp::Reverse(slot.kept.len()), slot.rotated));
        for slot in order.iter_mut().take(extra) {
            slot.quota += 1;
        }
        let mut taken = BTreeSet::new();
        // Sticky first, in member order; then the free partitions in quota order.
        let mut by_member: Vec<&mut &mut Slot> = order.iter_mut().collect();
        by_member.sort_by(|a, b| a.id.cmp(b.id));
        for slot in by_member {
            for &partition in &slot.kept {
                if slot.owned.len() < slot.quota && taken.insert(partition) {
                    slot.owned.push(partition);
                }
            }
        }
        let mut free = (0..count).filter(|p| !taken.contains(p));
        for slot in order {
            while slot.owned.len() < slot.quota {
                match free.next() {
                    Some(partition) => slot.owned.push(partition),
                    None => break,
                }
            }
        }
        for mut slot in slots {
            slot.owned.sort_unstable();
            let entry = result.entry(slot.id.clone()).or_default();
            entry.extend(slot.owned.into_iter().map(|p| (topic.clone(), p)));
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn args(topics: &[&str]) -> JoinArgs {
        JoinArgs {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            session_timeout: 10 * SECOND,
            rebalance_timeout: 5 * SECOND,
        }
    }

    fn partitions(topic: &str) -> u32 {
        match topic {
            "a" => 6,
            "b" => 1,
            _ => 0,
        }
    }

    fn owners_are_unique(group: &ConsumerGroup) {
        let mut seen = BTreeSet::new();
        for partitions in group.assignment.values() {
            for tp in partitions {
                assert!(seen.insert(tp.clone()), "{tp:?} has two owners in generation {}", group.generation);
            }
        }
    }

    #[test]
    fn a_single_member_gets_everything_at_once() {
        let now = Instant::now();
        let mut group = ConsumerGroup::default();
        let after = group.join("m1", true, args(&["a", "b"]), now).unwrap();
        assert!(group.try_complete(now, &partitions));
        let (generation, assignment) = group.join_answer("m1", after).unwrap().unwrap();
        assert_eq!(generation, 1);
        assert_eq!(assignment.len(), 7);
        assert_eq!(group.state, State::Stable);
    }

    #[test]
    fn a_second_member_waits_for_the_first_to_rejoin_then_both_are_balanced() {
        let now = Instant::now();
        let mut group = ConsumerGroup::default();
        group.join("m1", true, args(&["a"]), now).unwrap();
        group.try_complete(now, &partitions);
        let before: Vec<_> = group.assignment["m1"].clone();
        let after = group.join("m2", true, args(&["a"]), now).unwrap();
        assert!(!group.try_complete(now, &partitions), "m1 has not joined again");
        assert!(group.join_answer("m2", after).is_none());
        assert_eq!(group.heartbeat("m1", 1, now), Err(ErrorCode::RebalanceInProgress));
        // m1 commits its positions of generation 1 before rejoining: allowed.
        assert_eq!(group.may_commit("m1", 1, now), Ok(()));
        group.join("m1", false, args(&["a"]), now).unwrap();
        assert!(group.try_complete(now, &partitions));
        owners_are_unique(&group);
        assert_eq!(group.assignment["m1"].len(), 3);
        assert_eq!(group.assignment["m2"].len(), 3);
        // Sticky: what m1 keeps it owned before.
        assert!(group.assignment["m1"].iter().all(|tp| before.contains(tp)));
        assert_eq!(group.may_commit("m1", 1, now), Err(ErrorCode::IllegalGeneration));
        assert_eq!(group.heartbeat("m2", 2, now), Ok(()));
    }

    #[test]
    fn a_stable_member_joining_again_is_answered_with_a_new_generation() {
        let now = Instant::now();
        let mut group = ConsumerGroup::default();
        group.join("m1", true, args(&["a"]), now).unwrap();
        group.try_complete(now, &partitions);
        let after = group.join("m1", false, args(&["a"]), now).unwrap();
        assert!(group.try_complete(now, &partitions), "the only member has joined");
        assert_eq!(group.join_answer("m1", after).unwrap().unwrap().0, 2);
    }

    #[test]
    fn a_subscribed_topic_appearing_starts_a_rebalance() {
        let now = Instant::now();
        let mut group = ConsumerGroup::default();
        group.join("m1", true, args(&["c"]), now).unwrap();
        assert!(group.try_complete(now, &partitions));
        assert!(group.assignment["m1"].is_empty(), "no topic c yet");
        assert!(!group.check_topics(now, &partitions), "nothing changed");
        let with_c = |topic: &str| if topic == "c" { 3 } else { 0 };
        assert!(group.check_topics(now, &with_c));
        assert_eq!(group.heartbeat("m1", 1, now), Err(ErrorCode::RebalanceInProgress));
        group.join("m1", false, args(&["c"]), now).unwrap();
        assert!(group.try_complete(now, &with_c));
        assert_eq!(group.assignment["m1"].len(), 3);
    }

    #[test]
    fn members_that_miss_the_deadline_are_removed() {
        let now = Instant::now();
        let mut group = ConsumerGroup::default();
        group.join("m1", true, args(&["a"]), now).unwrap();
        group.try_complete(now, &partitions);
        group.join("m2", true, args(&["a"]), now).unwrap();
        assert!(!group.try_complete(now + SECOND, &partitions));
        assert!(group.try_complete(now + 6 * SECOND, &partitions));
        assert!(!group.members.contains_key("m1"));
        assert_eq!(group.assignment["m2"].len(), 6);
        assert_eq!(group.heartbeat("m1", 2, now), Err(ErrorCode::UnknownMemberId));
    }

    #[test]
    fn an_expired_session_triggers_a_rebalance_and_leave_does_too() {
        let now = Instant::now();
        let mut group = ConsumerGroup::default();
        for id in ["m1", "m2", "m3"] {
            group.join(id, true, args(&["a"]), now).unwrap();
        }
        assert!(group.try_complete(now, &partitions));
        assert_eq!(group.generation, 1);
        group.heartbeat("m1", 1, now + 8 * SECOND).unwrap();
        group.heartbeat("m2", 1, now + 8 * SECOND).unwrap();
        assert!(group.expire(now + 11 * SECOND));
        assert!(!group.members.contains_key("m3"));
        assert!(matches!(group.state, State::Rebalancing { .. }));
        group.join("m1", false, args(&["a"]), now + 11 * SECOND).unwrap();
        group.join("m2", false, args(&["a"]), now + 11 * SECOND).unwrap();
        assert!(group.try_complete(now + 11 * SECOND, &partitions));
        owners_are_unique(&group);
        assert_eq!(group.assignment.values().map(Vec::len).sum::<usize>(), 6);
        group.leave("m1", now + 12 * SECOND).unwrap();
        group.join("m2", false, args(&["a"]), now + 12 * SECOND).unwrap();
        assert!(group.try_complete(now + 12 * SECOND, &partitions));
        assert_eq!(group.assignment["m2"].len(), 6);
        group.leave("m2", now).unwrap();
        assert_eq!(group.state, State::Empty);
        assert_eq!(group.may_commit("", 0, now), Ok(()));
    }

    #[test]
    fn random_membership_changes_never_give_a_partition_two_owners() {
        let mut seed = 42u64;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for _ in 0..200 {
            let start = Instant::now();
            let mut now = start;
            let mut group = ConsumerGroup::default();
            let mut counter = 0;
            for _ in 0..60 {
                now += Duration::from_millis(next(3000));
                let ids: Vec<String> = group.members.keys().cloned().collect();
                match next(5) {
                    0 => {
                        counter += 1;
                        let topics: &[&str] = if next(2) == 0 { &["a"] } else { &["a", "b"] };
                        group.join(&format!("m{counter}"), true, args(topics), now).unwrap();
                    }
                    1 if !ids.is_empty() => {
                        let id = &ids[next(ids.len() as u64) as usize];
                        let topics = group.members[id].topics.clone();
                        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                        group.join(id, false, args(&topics), now).unwrap();
                    }
                    2 if !ids.is_empty() => {
                        let id = &ids[next(ids.len() as u64) as usize];
                        group.leave(id, now).unwrap();
                    }
                    3 => {
                        group.expire(now);
                    }
                    _ => {
                        for id in &ids {
                            let _ = group.heartbeat(id, group.generation, now);
                        }
                    }
                }
                group.try_complete(now, &partitions);
                owners_are_unique(&group);
                if group.state == State::Stable {
                    let counts: Vec<usize> = group
                        .members
                        .iter()
                        .filter(|(_, m)| m.topics == ["a"])
                        .map(|(id, _)| group.assignment[id].len())
                        .collect();
                    if let (Some(max), Some(min)) = (counts.iter().max(), counts.iter().min()) {
                        let only_a = group.members.values().all(|m| m.topics == ["a"]);
                        if only_a {
                            assert!(max - min <= 1, "unbalanced: {counts:?}");
                        }
                    }
                }
            }
        }
    }
}
