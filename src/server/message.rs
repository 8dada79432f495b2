//! The broker's operations and their replies, and what travels through the
//! cross-shard rings. The bottom of `server/`: it names no other part of it
//! but the catalog's topic type and the completion an outside caller waits on.
//!
//! An [`Op`] is one typed request of the broker service (see
//! [`super::service`]); every front end (the native protocol's dispatch, the
//! embedded client, a later Kafka listener) translates its requests into
//! these and the service's [`Reply`] back. A few ops are internal: the steps
//! of a compound operation that the service sends to other shards.

use super::catalog::TopicConfig;
use super::completion::Completion;
use super::tail_ring::TailRing;
use crate::groups::classic::{ClassicRequest, ClassicResponse};
use crate::io::FileBytes;
use crate::log::Acks;
use crate::protocol::fetch::FetchRequest;
use crate::protocol::group::{GroupListing, GroupRequest, GroupResponse, SharePartitionState};
use crate::protocol::offsets::{ListOffsetsRequest, ListOffsetsResponse};
use crate::protocol::share::{ShareAckRequest, ShareFetchRequest, ShareFetchResponse};
use crate::protocol::topic::CreateTopicRequest;
use crate::protocol::ErrorCode;
use bytes::BytesMut;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// One operation of the broker service.
pub(crate) enum Op {
    // What a front end asks for.
    /// Create a topic (retention as on the wire: -2 default, -1 unlimited).
    CreateTopic(CreateTopicRequest),
    DeleteTopic(String),
    /// Append one batch to one partition.
    Produce {
        topic: String,
        partition: u32,
        batch: BytesMut,
        acks: Acks,
    },
    Fetch(FetchRequest),
    ListOffsets(ListOffsetsRequest),
    /// A consumer-group request, run by the group's coordinator.
    Group(GroupRequest),
    /// A request of Kafka's classic group protocol, run by the group's coordinator.
    Classic(ClassicRequest),
    /// Every group of every shard.
    ListGroups,
    /// A producer id (run on the producer-id shard).
    InitProducerId(String),
    /// Share-group receive and acknowledge, run by the partition's owner.
    ShareFetch(ShareFetchRequest),
    ShareAck(ShareAckRequest),
    /// The ring of a partition's newest batches, for an in-process reader to
    /// follow (made on first use; see [`super::tail_ring`]).
    Follow {
        topic: String,
        partition: u32,
    },

    // Steps of compound operations, sent by the service to other shards.
    /// Open the partitions of a new topic that this shard owns.
    OpenTopic(Arc<TopicConfig>),
    /// A topic being deleted (or whose creation failed): drop its partitions
    /// on their owner. Sent through the same rings as the requests forwarded
    /// before the delete, so those reach the partitions first.
    ClosePartitions(String),
    /// A deleted topic: forget its committed offsets and share-group state (on
    /// every shard).
    ForgetTopic(String),
    /// The groups this shard coordinates, and its share groups.
    ShardGroups,
    /// This shard's share-partitions of a group.
    ShareDescribe(String),
    /// A snapshot for `/metrics`.
    Metrics,
}

/// Records read by a fetch.
pub(crate) struct FetchData {
    pub high_watermark: u64,
    pub earliest: u64,
    /// Whole batches: a copy, or a mapping of the segment for a large read.
    pub records: FileBytes,
}

/// One shard's part of a `/metrics` scrape.
pub(crate) struct ShardMetrics {
    pub shard: u16,
    pub connections: usize,
    /// topic, partition, end offset, poisoned
    pub partitions: Vec<(String, u32, u64, bool)>,
    /// group, topic, partition, committed offset
    pub committed: Vec<(String, String, u32, i64)>,
    /// group, topic, partition, available, acquired
    pub share: Vec<(String, String, u32, u64, u64)>,
}

/// The reply to an [`Op`]: one variant per kind of answer, and `Failed` for
/// an op that did not run (refused before it started, or the broker stopped).
pub(crate) enum Reply {
    Produce(Result<u64, ErrorCode>),
    Fetch(Result<FetchData, ErrorCode>),
    Offsets(Result<ListOffsetsResponse, ErrorCode>),
    /// CreateTopic, DeleteTopic, OpenTopic, ClosePartitions, ForgetTopic.
    Done(Result<(), ErrorCode>),
    Group(Result<GroupResponse, ErrorCode>),
    Classic(Result<ClassicResponse, ErrorCode>),
    Groups(Result<Vec<GroupListing>, ErrorCode>),
    ProducerId(Result<(i64, i16), ErrorCode>),
    ShareFetch(Result<ShareFetchResponse, ErrorCode>),
    ShareAck(Result<Vec<ErrorCode>, ErrorCode>),
    ShareDescribe(Vec<SharePartitionState>, Vec<String>),
    Metrics(Box<ShardMetrics>),
    Follow(Result<Arc<TailRing>, ErrorCode>),
    Failed(ErrorCode),
}

/// A reply of another kind than the op asked for: a bug, answered as
/// `Internal` rather than a panic.
const MISMATCH: ErrorCode = ErrorCode::Internal;

impl Reply {
    pub fn into_produce(self) -> Result<u64, ErrorCode> {
        match self {
            Reply::Produce(result) => result,
            other => Err(other.failure()),
        }
    }

    pub fn into_fetch(self) -> Result<FetchData, ErrorCode> {
        match self {
            Reply::Fetch(result) => result,
            other => Err(other.failure()),
        }
    }

    pub fn into_offsets(self) -> Result<ListOffsetsResponse, ErrorCode> {
        match self {
            Reply::Offsets(result) => result,
            other => Err(other.failure()),
        }
    }

    pub fn into_done(self) -> Result<(), ErrorCode> {
        match self {
            Reply::Done(result) => result,
            other => Err(other.failure()),
        }
    }

    pub fn into_group(self) -> Result<GroupResponse, ErrorCode> {
        match self {
            Reply::Group(result) => result,
            other => Err(other.failure()),
        }
    }

    pub fn into_classic(self) -> Result<ClassicResponse, ErrorCode> {
        match self {
            Reply::Classic(result) => result,
            other => Err(other.failure()),
        }
    }

    pub fn into_groups(self) -> Result<Vec<GroupListing>, ErrorCode> {
        match self {
            Reply::Groups(result) => result,
            other => Err(other.failure()),
        }
    }

    pub fn into_producer_id(self) -> Result<(i64, i16), ErrorCode> {
        match self {
            Reply::ProducerId(result) => result,
            other => Err(other.failure()),
        }
    }

    pub fn into_share_fetch(self) -> Result<ShareFetchResponse, ErrorCode> {
        match self {
            Reply::ShareFetch(result) => result,
            other => Err(other.failure()),
        }
    }

    pub fn into_share_ack(self) -> Result<Vec<ErrorCode>, ErrorCode> {
        match self {
            Reply::ShareAck(result) => result,
            other => Err(other.failure()),
        }
    }

    pub fn into_follow(self) -> Result<Arc<TailRing>, ErrorCode> {
        match self {
            Reply::Follow(result) => result,
            other => Err(other.failure()),
        }
    }

    /// The code of a `Failed` reply; `Internal` for a reply of another kind.
    fn failure(self) -> ErrorCode {
        match self {
            Reply::Failed(code) => code,
            _ => MISMATCH,
        }
    }
}

/// The rest of an operation after its synchronous part.
pub(crate) type ReplyFuture = Pin<Box<dyn Future<Output = Reply>>>;

/// A reply that is already known.
pub(crate) fn ready(reply: Reply) -> ReplyFuture {
    Box::pin(async move { reply })
}

/// Who waits for a request's reply.
pub(crate) enum Origin {
    /// Another shard: the reply goes back through its ring, tagged with the id.
    Shard { shard: u16, id: u64 },
    /// A thread outside the shards (the embedded client): the reply completes it.
    External(Arc<Completion<Reply>>),
}

/// What travels through the rings.
pub(crate) enum Message {
    Request { origin: Origin, op: Op },
    Reply { id: u64, reply: Reply },
    Shutdown,
}
