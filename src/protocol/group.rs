//! Consumer-group APIs (16..=22): membership with broker-side assignment, and
//! committed offsets. Specified in `docs/PROTOCOL.md`; semantics in
//! `docs/SEMANTICS.md`.
//!
//! ```text
//! JoinGroup (16)     request:  group string, member_id string ("" = new member),
//!                              session_timeout_ms u32, rebalance_timeout_ms u32,
//!                              topics count u32 + [string]
//!                    response: member_id string, generation u32,
//!                              assignment count u32 + [topic string, count u32 + [partition u32]]
//! Heartbeat (17)     request:  group string, member_id string, generation u32
//!                    response: empty (RebalanceInProgress: join again)
//! LeaveGroup (18)    request:  group string, member_id string; response: empty
//! OffsetCommit (19)  request:  group string, member_id string ("" = not a member),
//!                              generation u32 (ignored without member),
//!                              count u32 + [topic string, partition u32, offset i64, metadata string]
//!                    response: empty (all or nothing)
//! OffsetFetch (20)   request:  group string, count u32 + [topic string, partition u32] (0 = all)
//!                    response: count u32 + [topic string, partition u32, offset i64 (-1 = none), metadata string]
//! ListGroups (21)    request:  empty
//!                    response: count u32 + [group string, kind u8, state u8, members u32]
//! DescribeGroup (22) request:  group string
//!                    response: kind u8, state u8, generation u32,
//!                              members count u32 + [member_id string, count u32 + [topic string, partition u32]],
//!                              partitions count u32 + [topic string, partition u32, committed i64,
//!                                                      end i64, lag i64],
//!                              share count u32 + [topic string, partition u32, start i64, end i64,
//!                                                 available u64, acquired u64, archived u64]
//! ```

use super::{
    api, finish_frame, request_frame, response_frame, DecodeError, ErrorCode, Reader, Writer, TOPIC_NAME_WIRE_BYTES_MAX,
};

/// Group names follow the topic-name rules (they become directory names).
pub const GROUP_NAME_WIRE_BYTES_MAX: usize = TOPIC_NAME_WIRE_BYTES_MAX;
/// Longest member id a decoder accepts (the broker issues ids of under 64 bytes).
pub const MEMBER_ID_BYTES_MAX: usize = 128;
/// Longest commit metadata string.
pub const COMMIT_METADATA_BYTES_MAX: usize = 4096;
/// Topics one member may subscribe to.
pub const SUBSCRIBED_TOPICS_MAX: usize = 1024;
/// Partition entries in one commit or offset fetch.
pub const OFFSET_ENTRIES_MAX: usize = 65_536;
/// Session timeout bounds (ms).
pub const SESSION_TIMEOUT_MS_MIN: u32 = 100;
pub const SESSION_TIMEOUT_MS_MAX: u32 = 300_000;
/// Rebalance timeout upper bound (ms).
pub const REBALANCE_TIMEOUT_MS_MAX: u32 = 300_000;

/// What a group is.
pub const KIND_CONSUMER: u8 = 0;
pub const KIND_SHARE: u8 = 1;
/// The states a group reports.
pub const STATE_EMPTY: u8 = 0;
pub const STATE_REBALANCING: u8 = 1;
pub const STATE_STABLE: u8 = 2;

pub fn state_name(state: u8) -> &'static str {
    match state {
        STATE_EMPTY => "Empty",
        STATE_REBALANCING => "Rebalancing",
        STATE_STABLE => "Stable",
        _ => "Unknown",
    }
}

pub fn kind_name(kind: u8) -> &'static str {
    match kind {
        KIND_CONSUMER => "consumer",
        KIND_SHARE => "share",
        _ => "unknown",
    }
}

/// A request to a group's coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRequest {
    Join(JoinGroup),
    Heartbeat { group: String, member_id: String, generation: u32 },
    Leave { group: String, member_id: String },
    Commit(OffsetCommit),
    Fetch { group: String, partitions: Vec<(String, u32)> },
    Describe { group: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroup {
    pub group: String,
    pub member_id: String,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
    pub topics: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommit {
    pub group: String,
    pub member_id: String,
    pub generation: u32,
    pub offsets: Vec<CommittedOffset>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub metadata: String,
}

fn topic_partitions(reader: &mut Reader<'_>) -> Result<Vec<(String, u32)>, DecodeError> {
    let count = reader.count(OFFSET_ENTRIES_MAX, 6)?;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        entries.push((reader.string(TOPIC_NAME_WIRE_BYTES_MAX)?.to_owned(), reader.u32()?));
    }
    Ok(entries)
}

fn read_committed_offsets(reader: &mut Reader<'_>) -> Result<Vec<CommittedOffset>, DecodeError> {
    let count = reader.count(OFFSET_ENTRIES_MAX, 16)?;
    let mut offsets = Vec::with_capacity(count);
    for _ in 0..count {
        offsets.push(CommittedOffset {
            topic: reader.string(TOPIC_NAME_WIRE_BYTES_MAX)?.to_owned(),
            partition: reader.u32()?,
            offset: reader.i64()?,
            metadata: reader.string(COMMIT_METADATA_BYTES_MAX)?.to_owned(),
        });
    }
    Ok(offsets)
}

fn write_committed_offsets(writer: &mut Writer, offsets: &[CommittedOffset]) {
    writer.count(offsets.len());
    for entry in offsets {
        writer.string(&entry.topic);
        writer.u32(entry.partition);
        writer.i64(entry.offset);
        writer.string(&entry.metadata);
    }
}

fn write_topic_partitions(writer: &mut Writer, entries: &[(String, u32)]) {
    writer.count(entries.len());
    for (topic, partition) in entries {
        writer.string(topic);
        writer.u32(*partition);
    }
}

impl GroupRequest {
    pub fn api_key(&self) -> u16 {
        match self {
            GroupRequest::Join(_) => api::JOIN_GROUP,
            GroupRequest::Heartbeat { .. } => api::HEARTBEAT,
            GroupRequest::Leave { .. } => api::LEAVE_GROUP,
            GroupRequest::Commit(_) => api::OFFSET_COMMIT,
            GroupRequest::Fetch { .. } => api::OFFSET_FETCH,
            GroupRequest::Describe { .. } => api::DESCRIBE_GROUP,
        }
    }

    /// The group the request is for (it picks the coordinating shard).
    pub fn group(&self) -> &str {
        match self {
            GroupRequest::Join(join) => &join.group,
            GroupRequest::Commit(commit) => &commit.group,
            GroupRequest::Heartbeat { group, .. }
            | GroupRequest::Leave { group, .. }
            | GroupRequest::Fetch { group, .. }
            | GroupRequest::Describe { group } => group,
        }
    }

    pub fn encode(&self, correlation_id: u32) -> Vec<u8> {
        let mut writer = request_frame(self.api_key(), 0, correlation_id);
        writer.string(self.group());
        match self {
            GroupRequest::Join(join) => {
                writer.string(&join.member_id);
                writer.u32(join.session_timeout_ms);
                writer.u32(join.rebalance_timeout_ms);
                writer.count(join.topics.len());
                for topic in &join.topics {
                    writer.string(topic);
                }
            }
            GroupRequest::Heartbeat { member_id, generation, .. } => {
                writer.string(member_id);
                writer.u32(*generation);
            }
            GroupRequest::Leave { member_id, .. } => writer.string(member_id),
            GroupRequest::Commit(commit) => {
                writer.string(&commit.member_id);
                writer.u32(commit.generation);
                write_committed_offsets(&mut writer, &commit.offsets);
            }
            GroupRequest::Fetch { partitions, .. } => write_topic_partitions(&mut writer, partitions),
            GroupRequest::Describe { .. } => {}
        }
        finish_frame(writer)
    }

    pub fn decode(api_key: u16, body: &[u8]) -> Result<GroupRequest, DecodeError> {
        let mut reader = Reader::new(body);
        let group = reader.string(GROUP_NAME_WIRE_BYTES_MAX)?.to_owned();
        let request = match api_key {
            api::JOIN_GROUP => {
                let member_id = reader.string(MEMBER_ID_BYTES_MAX)?.to_owned();
                let session_timeout_ms = reader.u32()?;
                let rebalance_timeout_ms = reader.u32()?;
                let count = reader.count(SUBSCRIBED_TOPICS_MAX, 2)?;
                let mut topics = Vec::with_capacity(count);
                for _ in 0..count {
                    topics.push(reader.string(TOPIC_NAME_WIRE_BYTES_MAX)?.to_owned());
                }
                GroupRequest::Join(JoinGroup { group, member_id, session_timeout_ms, rebalance_timeout_ms, topics })
            }
            api::HEARTBEAT => GroupRequest::Heartbeat {
                group,
                member_id: reader.string(MEMBER_ID_BYTES_MAX)?.to_owned(),
                generation: reader.u32()?,
            },
            api::LEAVE_GROUP => {
                GroupRequest::Leave { group, member_id: reader.string(MEMBER_ID_BYTES_MAX)?.to_owned() }
            }
            api::OFFSET_COMMIT => {
                let member_id = reader.string(MEMBER_ID_BYTES_MAX)?.to_owned();
                let generation = reader.u32()?;
                let offsets = read_committed_offsets(&mut reader)?;
                GroupRequest::Commit(OffsetCommit { group, member_id, generation, offsets })
            }
            api::OFFSET_FETCH => GroupRequest::Fetch { group, partitions: topic_partitions(&mut reader)? },
            api::DESCRIBE_GROUP => GroupRequest::Describe { group },
            _ => return Err(DecodeError { reason: "not a group api" }),
        };
        reader.finish()?;
        Ok(request)
    }
}

/// A group response body, without the frame header (the embedded client and
/// the server share it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupResponse {
    Empty,
    Join(JoinResponse),
    Offsets(Vec<CommittedOffset>),
    Describe(GroupDescription),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    pub member_id: String,
    pub generation: u32,
    pub assignment: Vec<(String, Vec<u32>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub assignment: Vec<(String, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: u32,
    /// -1 when nothing is committed.
    pub committed: i64,
    /// One past the last record; -1 when the partition is gone.
    pub end: i64,
    /// end - committed (end - earliest when nothing is committed); -1 when unknown.
    pub lag: i64,
}

/// A share group's view of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharePartitionState {
    pub topic: String,
    pub partition: u32,
    /// Offsets below it are archived (acknowledged or dead-lettered).
    pub start: i64,
    /// One past the partition's last record.
    pub end: i64,
    pub available: u64,
    pub acquired: u64,
    pub archived: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub kind: u8,
    pub state: u8,
    pub generation: u32,
    pub members: Vec<MemberDescription>,
    pub partitions: Vec<PartitionLag>,
    /// Share groups only.
    pub share: Vec<SharePartitionState>,
}

impl GroupResponse {
    pub fn encode_body(&self, writer: &mut Writer) {
        match self {
            GroupResponse::Empty => {}
            GroupResponse::Join(join) => {
                writer.string(&join.member_id);
                writer.u32(join.generation);
                writer.count(join.assignment.len());
                for (topic, partitions) in &join.assignment {
                    writer.string(topic);
                    writer.count(partitions.len());
                    for partition in partitions {
                        writer.u32(*partition);
                    }
                }
            }
            GroupResponse::Offsets(offsets) => write_committed_offsets(writer, offsets),
            GroupResponse::Describe(description) => {
                writer.u8(description.kind);
                writer.u8(description.state);
                writer.u32(description.generation);
                writer.count(description.members.len());
                for member in &description.members {
                    writer.string(&member.member_id);
                    write_topic_partitions(writer, &member.assignment);
                }
                writer.count(description.partitions.len());
                for partition in &description.partitions {
                    writer.string(&partition.topic);
                    writer.u32(partition.partition);
                    writer.i64(partition.committed);
                    writer.i64(partition.end);
                    writer.i64(partition.lag);
                }
                writer.count(description.share.len());
                for share in &description.share {
                    writer.string(&share.topic);
                    writer.u32(share.partition);
                    writer.i64(share.start);
                    writer.i64(share.end);
                    writer.u64(share.available);
                    writer.u64(share.acquired);
                    writer.u64(share.archived);
                }
            }
        }
    }

    pub fn encode(&self, correlation_id: u32) -> Vec<u8> {
        let mut writer = response_frame(correlation_id, ErrorCode::None, 64);
        self.encode_body(&mut writer);
        finish_frame(writer)
    }

    pub fn decode_join(body: &[u8]) -> Result<JoinResponse, DecodeError> {
        let mut reader = Reader::new(body);
        let member_id = reader.string(MEMBER_ID_BYTES_MAX)?.to_owned();
        let generation = reader.u32()?;
        let count = reader.count(SUBSCRIBED_TOPICS_MAX, 6)?;
        let mut assignment = Vec::with_capacity(count);
        for _ in 0..count {
            let topic = reader.string(TOPIC_NAME_WIRE_BYTES_MAX)?.to_owned();
            let partitions_count = reader.count(super::PARTITIONS_PER_TOPIC_MAX as usize, 4)?;
            let mut partitions = Vec::with_capacity(partitions_count);
            for _ in 0..partitions_count {
                partitions.push(reader.u32()?);
            }
            assignment.push((topic, partitions));
        }
        reader.finish()?;
        Ok(JoinResponse { member_id, generation, assignment })
    }

    pub fn decode_offsets(body: &[u8]) -> Result<Vec<CommittedOffset>, DecodeError> {
        let mut reader = Reader::new(body);
        let offsets = read_committed_offsets(&mut reader)?;
        reader.finish()?;
        Ok(offsets)
    }

    pub fn decode_describe(body: &[u8]) -> Result<GroupDescription, DecodeError> {
        let mut reader = Reader::new(body);
        let kind = reader.u8()?;
        let state = reader.u8()?;
        let generation = reader.u32()?;
        let count = reader.count(GROUP_MEMBERS_MAX, 6)?;
        let mut members = Vec::with_capacity(count);
        for _ in 0..count {
            let member_id = reader.string(MEMBER_ID_BYTES_MAX)?.to_owned();
            members.push(MemberDescription { member_id, assignment: topic_partitions(&mut reader)? });
        }
        let count = reader.count(OFFSET_ENTRIES_MAX, 30)?;
        let mut partitions = Vec::with_capacity(count);
        for _ in 0..count {
            partitions.push(PartitionLag {
                topic: reader.string(TOPIC_NAME_WIRE_BYTES_MAX)?.to_owned(),
                partition: reader.u32()?,
                committed: reader.i64()?,
                end: reader.i64()?,
                lag: reader.i64()?,
            });
        }
        let count = reader.count(OFFSET_ENTRIES_MAX, 46)?;
        let mut share = Vec::with_capacity(count);
        for _ in 0..count {
            share.push(SharePartitionState {
                topic: reader.string(TOPIC_NAME_WIRE_BYTES_MAX)?.to_owned(),
                partition: reader.u32()?,
                start: reader.i64()?,
                end: reader.i64()?,
                available: reader.u64()?,
                acquired: reader.u64()?,
                archived: reader.u64()?,
            });
        }
        reader.finish()?;
        Ok(GroupDescription { kind, state, generation, members, partitions, share })
    }
}

/// Members one group may have.
pub const GROUP_MEMBERS_MAX: usize = 4096;
/// Groups one ListGroups answer may carry when a client decodes it.
pub const GROUPS_MAX: usize = 100_000;

/// ListGroups (api 21).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group: String,
    pub kind: u8,
    pub state: u8,
    pub members: u32,
}

pub fn encode_list_groups_request(correlation_id: u32) -> Vec<u8> {
    finish_frame(request_frame(api::LIST_GROUPS, 0, correlation_id))
}

pub fn encode_list_groups_response(correlation_id: u32, groups: &[GroupListing]) -> Vec<u8> {
    let mut writer = response_frame(correlation_id, ErrorCode::None, 64);
    writer.count(groups.len());
    for group in groups {
        writer.string(&group.group);
        writer.u8(group.kind);
        writer.u8(group.state);
        writer.u32(group.members);
    }
    finish_frame(writer)
}

pub fn decode_list_groups_response(body: &[u8]) -> Result<Vec<GroupListing>, DecodeError> {
    let mut reader = Reader::new(body);
    let count = reader.count(GROUPS_MAX, 8)?;
    let mut groups = Vec::with_capacity(count);
    for _ in 0..count {
        groups.push(GroupListing {
            group: reader.string(GROUP_NAME_WIRE_BYTES_MAX)?.to_owned(),
            kind: reader.u8()?,
            state: reader.u8()?,
            members: reader.u32()?,
        });
    }
    reader.finish()?;
    Ok(groups)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::protocol::{parse_request_header, LENGTH_BYTES, REQUEST_HEADER_BYTES};

    fn round_trip(request: GroupRequest) {
        let frame = request.encode(7);
        let header = parse_request_header(&frame[LENGTH_BYTES..]).unwrap();
        let body = &frame[LENGTH_BYTES + REQUEST_HEADER_BYTES..];
        assert_eq!(GroupRequest::decode(header.api_key, body).unwrap(), request);
        // Every strict prefix is refused, never a panic.
        for cut in 0..body.len() {
            assert!(GroupRequest::decode(header.api_key, &body[..cut]).is_err());
        }
    }

    #[test]
    fn group_requests_round_trip_and_truncations_are_refused() {
        round_trip(GroupRequest::Join(JoinGroup {
            group: "g".into(),
            member_id: "".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 5_000,
            topics: vec!["a".into(), "b".into()],
        }));
        round_trip(GroupRequest::Heartbeat { group: "g".into(), member_id: "m".into(), generation: 3 });
        round_trip(GroupRequest::Leave { group: "g".into(), member_id: "m".into() });
        round_trip(GroupRequest::Commit(OffsetCommit {
            group: "g".into(),
            member_id: "m".into(),
            generation: 2,
            offsets: vec![CommittedOffset { topic: "t".into(), partition: 1, offset: 42, metadata: "x".into() }],
        }));
        round_trip(GroupRequest::Fetch { group: "g".into(), partitions: vec![("t".into(), 0)] });
        round_trip(GroupRequest::Describe { group: "g".into() });
    }

    #[test]
    fn group_responses_round_trip() {
        let join = JoinResponse { member_id: "m".into(), generation: 4, assignment: vec![("t".into(), vec![0, 2])] };
        let mut writer = Writer::default();
        GroupResponse::Join(join.clone()).encode_body(&mut writer);
        assert_eq!(GroupResponse::decode_join(&writer.into_inner()).unwrap(), join);
        let description = GroupDescription {
            kind: KIND_CONSUMER,
            state: STATE_STABLE,
            generation: 1,
            members: vec![MemberDescription { member_id: "m".into(), assignment: vec![("t".into(), 0)] }],
            partitions: vec![PartitionLag { topic: "t".into(), partition: 0, committed: 5, end: 9, lag: 4 }],
            share: vec![SharePartitionState {
                topic: "t".into(),
                partition: 1,
                start: 3,
                end: 9,
                available: 2,
                acquired: 4,
                archived: 3,
            }],
        };
        let mut writer = Writer::default();
        GroupResponse::Describe(description.clone()).encode_body(&mut writer);
        let body = writer.into_inner();
        assert_eq!(GroupResponse::decode_describe(&body).unwrap(), description);
        for cut in 0..body.len() {
            assert!(GroupResponse::decode_describe(&body[..cut]).is_err());
        }
    }

    #[test]
    fn a_count_larger_than_the_body_is_refused_before_allocating() {
        let mut writer = Writer::default();
        writer.string("g");
        writer.u32(u32::MAX);
        assert!(GroupRequest::decode(api::OFFSET_FETCH, &writer.into_inner()).is_err());
    }
}
