//! [`Transport`]: the one interface every client-side piece (the batching
//! producer, group and share consumers, the C ABI) uses to reach a broker.
//! [`super::Client`] implements it over TCP; the embedded client implements it
//! in process (in `crate::embedded`, so the arrow points from embedded to here).
//! Both are thread-safe, so every method takes `&self`.

use super::group::PendingJoin;
use super::{Client, FetchResult, Result, Retention};
use crate::log::Acks;
use crate::protocol::api;
use crate::protocol::fetch::FetchRequest;
use crate::protocol::group::{self, GroupListing, GroupRequest, GroupResponse, JoinGroup};
use crate::protocol::offsets::ListOffsetsResponse;
use crate::protocol::share::{decode_ack_response, ShareAckRequest, ShareFetchRequest, ShareFetchResponse};
use std::sync::Arc;

/// One produce of a pipelined call: topic, partition, RecordBatch v2 bytes.
pub type ProduceBatch<'a> = (&'a str, u32, &'a [u8]);

/// What a client needs from the broker, whichever way it is reached.
pub trait Transport: Send + Sync {
    /// Produces batches, every one sent before any answer is awaited; one
    /// result per batch, in order: the base offset, `None` with acks none. The
    /// outer error means the call failed as a whole (a connection error):
    /// any of the batches may or may not have been appended.
    fn produce_many(&self, batches: &[ProduceBatch<'_>], acks: Acks) -> Result<Vec<Result<Option<u64>>>>;

    /// Produces one batch (see [`Transport::produce_many`]).
    fn produce(&self, topic: &str, partition: u32, batch: &[u8], acks: Acks) -> Result<Option<u64>> {
        self.produce_many(&[(topic, partition, batch)], acks)?.into_iter().next().unwrap_or(Ok(None))
    }

    /// Whole stored batches from the request's offset; waits up to its
    /// `max_wait_ms` for at least `min_bytes`.
    fn fetch(&self, request: &FetchRequest) -> Result<FetchResult>;

    /// Earliest (-2), latest (-1) or the first offset at or after a timestamp.
    fn list_offsets(&self, topic: &str, partition: u32, query: i64) -> Result<ListOffsetsResponse>;

    /// A consumer-group request, answered by the group's coordinator.
    fn group(&self, request: GroupRequest) -> Result<GroupResponse>;

    /// Sends a JoinGroup and returns without waiting: the coordinator answers
    /// it only when the rebalance completes, and a poll must not wait that long.
    fn start_join(&self, join: JoinGroup) -> Result<PendingJoin>;

    /// Every group, sorted by name.
    fn list_groups(&self) -> Result<Vec<GroupListing>>;

    fn share_fetch(&self, request: &ShareFetchRequest) -> Result<ShareFetchResponse>;

    /// One error code per acknowledged range.
    fn share_acknowledge(&self, request: &ShareAckRequest) -> Result<Vec<u16>>;

    /// (name, partitions) of every topic, sorted by name.
    fn topics(&self) -> Result<Vec<(String, u32)>>;

    fn partition_count(&self, topic: &str) -> Result<u32>;

    fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        retention_ms: Retention,
        retention_bytes: Retention,
    ) -> Result<()>;

    fn delete_topic(&self, name: &str) -> Result<()>;

    /// A producer id and epoch: `name` "" gets a new id; a name gets its id
    /// with the epoch raised (fencing older instances).
    fn init_producer_id(&self, name: &str) -> Result<(i64, i16)>;

    /// Drops connections after a connection error and loads what they knew
    /// again; in process there is nothing to do.
    fn reconnect(&self) -> Result<()> {
        Ok(())
    }

    /// A transport reaching the same broker with connections of its own, so a
    /// long poll on it holds up no other user of this one.
    fn independent(&self) -> Result<Arc<dyn Transport>>;
}

impl Transport for Client {
    fn produce_many(&self, batches: &[ProduceBatch<'_>], acks: Acks) -> Result<Vec<Result<Option<u64>>>> {
        self.produce_pipelined(batches, acks)
    }

    fn fetch(&self, request: &FetchRequest) -> Result<FetchResult> {
        Client::fetch(self, request)
    }

    fn list_offsets(&self, topic: &str, partition: u32, query: i64) -> Result<ListOffsetsResponse> {
        Client::list_offsets(self, topic, partition, query)
    }

    fn group(&self, request: GroupRequest) -> Result<GroupResponse> {
        let context = format!("group request for {}", request.group());
        let api_key = request.api_key();
        let body = self.call_bootstrap(&context, |id| request.encode(id))?;
        Ok(match api_key {
            api::JOIN_GROUP => GroupResponse::Join(GroupResponse::decode_join(&body)?),
            api::OFFSET_FETCH => GroupResponse::Offsets(GroupResponse::decode_offsets(&body)?),
            api::DESCRIBE_GROUP => GroupResponse::Describe(GroupResponse::decode_describe(&body)?),
            _ => GroupResponse::Empty,
        })
    }

    fn start_join(&self, join: JoinGroup) -> Result<PendingJoin> {
        let context = format!("join group {}", join.group);
        let request = GroupRequest::Join(join);
        let call = self.start(&context, |id| request.encode(id))?;
        Ok(PendingJoin::tcp(call))
    }

    fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let body = self.call_bootstrap("list groups", group::encode_list_groups_request)?;
        Ok(group::decode_list_groups_response(&body)?)
    }

    fn share_fetch(&self, request: &ShareFetchRequest) -> Result<ShareFetchResponse> {
        let context = format!("share fetch {}/{} for {}", request.topic, request.partition, request.group);
        let body = self.call_owner(&request.topic, request.partition, &context, |id| request.encode(id))?;
        Ok(ShareFetchResponse::decode(&body)?)
    }

    fn share_acknowledge(&self, request: &ShareAckRequest) -> Result<Vec<u16>> {
        let context = format!("share acknowledge {}/{} for {}", request.topic, request.partition, request.group);
        let body = self.call_owner(&request.topic, request.partition, &context, |id| request.encode(id))?;
        Ok(decode_ack_response(&body)?)
    }

    fn topics(&self) -> Result<Vec<(String, u32)>> {
        let metadata = self.refresh_metadata()?;
        let mut topics: Vec<(String, u32)> =
            metadata.topics.iter().map(|t| (t.name.clone(), t.partition_shards.len() as u32)).collect();
        topics.sort();
        Ok(topics)
    }

    fn partition_count(&self, topic: &str) -> Result<u32> {
        Client::partition_count(self, topic)
    }

    fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        retention_ms: Retention,
        retention_bytes: Retention,
    ) -> Result<()> {
        Client::create_topic(self, name, partitions, retention_ms, retention_bytes)
    }

    fn delete_topic(&self, name: &str) -> Result<()> {
        Client::delete_topic(self, name)
    }

    fn init_producer_id(&self, name: &str) -> Result<(i64, i16)> {
        Client::init_producer_id(self, name)
    }

    fn reconnect(&self) -> Result<()> {
        Client::reconnect(self)
    }

    fn independent(&self) -> Result<Arc<dyn Transport>> {
        Ok(Arc::new(Client::connect_with(self.bootstrap(), self.options())?))
    }
}

/// Forwards every method, so `Box<dyn Transport>` and `Arc<dyn Transport>`
/// serve wherever a transport is taken by value.
macro_rules! forward_transport {
    ($pointer:ident) => {
        impl<T: Transport + ?Sized> Transport for $pointer<T> {
            fn produce_many(&self, batches: &[ProduceBatch<'_>], acks: Acks) -> Result<Vec<Result<Option<u64>>>> {
                (**self).produce_many(batches, acks)
            }
            fn produce(&self, topic: &str, partition: u32, batch: &[u8], acks: Acks) -> Result<Option<u64>> {
                (**self).produce(topic, partition, batch, acks)
            }
            fn fetch(&self, request: &FetchRequest) -> Result<FetchResult> {
                (**self).fetch(request)
            }
            fn list_offsets(&self, topic: &str, partition: u32, query: i64) -> Result<ListOffsetsResponse> {
                (**self).list_offsets(topic, partition, query)
            }
            fn group(&self, request: GroupRequest) -> Result<GroupResponse> {
                (**self).group(request)
            }
            fn start_join(&self, join: JoinGroup) -> Result<PendingJoin> {
                (**self).start_join(join)
            }
            fn list_groups(&self) -> Result<Vec<GroupListing>> {
                (**self).list_groups()
            }
            fn share_fetch(&self, request: &ShareFetchRequest) -> Result<ShareFetchResponse> {
                (**self).share_fetch(request)
            }
            fn share_acknowledge(&self, request: &ShareAckRequest) -> Result<Vec<u16>> {
                (**self).share_acknowledge(request)
            }
            fn topics(&self) -> Result<Vec<(String, u32)>> {
                (**self).topics()
            }
            fn partition_count(&self, topic: &str) -> Result<u32> {
                (**self).partition_count(topic)
            }
            fn create_topic(
                &self,
                name: &str,
                partitions: u32,
                retention_ms: Retention,
                retention_bytes: Retention,
            ) -> Result<()> {
                (**self).create_topic(name, partitions, retention_ms, retention_bytes)
            }
            fn delete_topic(&self, name: &str) -> Result<()> {
                (**self).delete_topic(name)
            }
            fn init_producer_id(&self, name: &str) -> Result<(i64, i16)> {
                (**self).init_producer_id(name)
            }
            fn reconnect(&self) -> Result<()> {
                (**self).reconnect()
            }
            fn independent(&self) -> Result<Arc<dyn Transport>> {
                (**self).independent()
            }
        }
    };
}

forward_transport!(Box);
forward_transport!(Arc);
