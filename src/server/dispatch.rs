//! Decodes one request frame and starts it. Awaiting [`dispatch`] performs the
//! ordered part (appends, pushes into rings, waiting while a ring is full); the
//! future it returns completes the response, or `None` when no response is sent
//! (produce with acks 0).

use super::catalog::{owner, TopicConfig};
use super::shard::{FetchData, Op, Reply, ReplyFuture, ShardContext};
use crate::log::Acks;
use crate::protocol::fetch::{FetchRequest, FetchResponse};
use crate::protocol::group::{self, GroupRequest};
use crate::protocol::hello::{ApiRange, HelloRequest, HelloResponse};
use crate::protocol::metadata::{MetadataRequest, MetadataResponse, ShardInfo, TopicMetadata};
use crate::protocol::offsets::{ListOffsetsRequest, QUERY_EARLIEST};
use crate::protocol::produce::{ProduceRequest, ProduceResponse, ProduceResult, ACKS_NONE};
use crate::protocol::producer_id::{InitProducerIdRequest, InitProducerIdResponse};
use crate::protocol::share::{self, ShareAckRequest, ShareFetchRequest};
use crate::protocol::topic::{CreateTopicRequest, DeleteTopicRequest, RETENTION_DEFAULT, RETENTION_UNLIMITED};
use crate::protocol::{self, api, ErrorCode, RequestHeader};
use bytes::{Buf, BytesMut};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

pub(crate) type ResponseFuture = Pin<Box<dyn Future<Output = Option<Vec<u8>>>>>;

/// A response frame with an error code and an empty body.
pub(crate) fn error_response(correlation_id: u32, code: ErrorCode) -> Vec<u8> {
    protocol::finish_frame(protocol::response_frame(correlation_id, code, 0))
}

fn ready(bytes: Vec<u8>) -> ResponseFuture {
    Box::pin(async move { Some(bytes) })
}

fn supported(header: &RequestHeader) -> Option<ErrorCode> {
    match api::SUPPORTED.iter().find(|(key, _, _)| *key == header.api_key) {
        None => Some(ErrorCode::UnknownApi),
        Some((_, min, max)) if header.api_version < *min || header.api_version > *max => {
            Some(ErrorCode::UnsupportedVersion)
        }
        Some(_) => None,
    }
}

/// `frame` is one whole request frame, length field included.
pub(crate) async fn dispatch(context: &Rc<ShardContext>, mut frame: BytesMut) -> ResponseFuture {
    let header_end = protocol::LENGTH_BYTES + protocol::REQUEST_HEADER_BYTES;
    let Ok(header) = protocol::parse_request_header(frame.get(protocol::LENGTH_BYTES..).unwrap_or(&[])) else {
        return Box::pin(async { None });
    };
    let body = frame.split_off(header_end.min(frame.len()));
    // A produce with acks 0 never gets a response, whatever happens to it, so a
    // client that sent it does not wait for one.
    let silent = header.api_key == api::PRODUCE && body.first() == Some(&ACKS_NONE);
    let response = dispatch_checked(context, header, body).await;
    if silent {
        return Box::pin(async move {
            response.await;
            None
        });
    }
    response
}

async fn dispatch_checked(context: &Rc<ShardContext>, header: RequestHeader, body: BytesMut) -> ResponseFuture {
    let id = header.correlation_id;
    if let Some(code) = supported(&header) {
        return ready(error_response(id, code));
    }
    if context.is_stopping() {
        return ready(error_response(id, ErrorCode::ShuttingDown));
    }
    let malformed = |_| ready(error_response(id, ErrorCode::MalformedRequest));
    match header.api_key {
        api::HELLO => match HelloRequest::decode(&body) {
            Ok(_) => ready(hello(context, id)),
            Err(error) => malformed(error),
        },
        api::METADATA => match MetadataRequest::decode(&body) {
            Ok(request) => ready(metadata(context, id, &request)),
            Err(error) => malformed(error),
        },
        api::CREATE_TOPIC => match CreateTopicRequest::decode(&body) {
            // Control requests finish before the next request on the connection
            // starts, so a produce pipelined behind a create finds the topic.
            Ok(request) => ready(create_topic(context.clone(), id, request).await),
            Err(error) => malformed(error),
        },
        api::DELETE_TOPIC => match DeleteTopicRequest::decode(&body) {
            Ok(request) => ready(delete_topic(context.clone(), id, request).await),
            Err(error) => malformed(error),
        },
        api::LIST_OFFSETS => match ListOffsetsRequest::decode(&body) {
            Ok(request) if request.query < QUERY_EARLIEST => ready(error_response(id, ErrorCode::InvalidArgument)),
            Ok(request) => match context.route(&request.topic, request.partition) {
                Ok(owner) => {
                    let reply = context.submit(owner, Op::ListOffsets(request)).await;
                    Box::pin(async move {
                        Some(match reply.await {
                            Reply::Offsets(Ok(response)) => response.encode(id),
                            Reply::Offsets(Err(code)) | Reply::Done(Err(code)) => error_response(id, code),
                            _ => error_response(id, ErrorCode::Internal),
                        })
                    })
                }
                Err(code) => ready(error_response(id, code)),
            },
            Err(error) => malformed(error),
        },
        api::PRODUCE => produce(context, id, body).await,
        api::FETCH => match FetchRequest::decode(&body) {
            Ok(request) => match context.route(&request.topic, request.partition) {
                Ok(owner) => {
                    let reply = context.submit(owner, Op::Fetch(request)).await;
                    Box::pin(async move { Some(fetch_response(id, reply.await)) })
                }
                Err(code) => ready(error_response(id, code)),
            },
            Err(error) => malformed(error),
        },
        api::INIT_PRODUCER_ID => match InitProducerIdRequest::decode(&body) {
            Ok(request) => {
                let shard = super::coordinator::PRODUCER_ID_SHARD;
                let reply = context.submit(shard, Op::InitProducerId(request.name)).await;
                Box::pin(async move {
                    Some(match reply.await {
                        Reply::ProducerId(Ok((producer_id, epoch))) => {
                            InitProducerIdResponse { producer_id, epoch }.encode(id)
                        }
                        Reply::ProducerId(Err(code)) | Reply::Done(Err(code)) => error_response(id, code),
                        _ => error_response(id, ErrorCode::Internal),
                    })
                })
            }
            Err(error) => malformed(error),
        },
        api::SHARE_FETCH => match ShareFetchRequest::decode(&body) {
            Ok(request) => match context.route(&request.topic, request.partition) {
                Ok(owner) => {
                    let reply = context.submit(owner, Op::ShareFetch(request)).await;
                    Box::pin(async move {
                        Some(match reply.await {
                            Reply::ShareFetch(Ok(response)) => response.encode(id),
                            Reply::ShareFetch(Err(code)) | Reply::Done(Err(code)) => error_response(id, code),
                            _ => error_response(id, ErrorCode::Internal),
                        })
                    })
                }
                Err(code) => ready(error_response(id, code)),
            },
            Err(error) => malformed(error),
        },
        api::SHARE_ACKNOWLEDGE => match ShareAckRequest::decode(&body) {
            Ok(request) => match context.route(&request.topic, request.partition) {
                Ok(owner) => {
                    let reply = context.submit(owner, Op::ShareAck(request)).await;
                    Box::pin(async move {
                        Some(match reply.await {
                            Reply::ShareAck(Ok(errors)) => share::encode_ack_response(id, &errors),
                            Reply::ShareAck(Err(code)) | Reply::Done(Err(code)) => error_response(id, code),
                            _ => error_response(id, ErrorCode::Internal),
                        })
                    })
                }
                Err(code) => ready(error_response(id, code)),
            },
            Err(error) => malformed(error),
        },
        api::LIST_GROUPS => {
            if !body.is_empty() {
                return ready(error_response(id, ErrorCode::MalformedRequest));
            }
            let mut replies = Vec::new();
            for shard in 0..context.shard_count() {
                replies.push(context.submit(shard, Op::ListGroups).await);
            }
            Box::pin(async move {
                let mut groups = Vec::new();
                for reply in futures_util::future::join_all(replies).await {
                    match reply {
                        Reply::Groups(listed) => groups.extend(listed),
                        Reply::Done(Err(code)) => return Some(error_response(id, code)),
                        _ => return Some(error_response(id, ErrorCode::Internal)),
                    }
                }
                let groups = super::coordinator::merge_listings(groups);
                Some(group::encode_list_groups_response(id, &groups))
            })
        }
        key @ (api::JOIN_GROUP
        | api::HEARTBEAT
        | api::LEAVE_GROUP
        | api::OFFSET_COMMIT
        | api::OFFSET_FETCH
        | api::DESCRIBE_GROUP) => match GroupRequest::decode(key, &body) {
            Ok(request) => {
                let coordinator = crate::groups::coordinator(request.group(), context.shard_count());
                let reply = context.submit(coordinator, Op::Group(request)).await;
                Box::pin(async move {
                    Some(match reply.await {
                        Reply::Group(Ok(response)) => response.encode(id),
                        Reply::Group(Err(code)) | Reply::Done(Err(code)) => error_response(id, code),
                        _ => error_response(id, ErrorCode::Internal),
                    })
                })
            }
            Err(error) => malformed(error),
        },
        _ => ready(error_response(id, ErrorCode::UnknownApi)),
    }
}

fn hello(context: &ShardContext, id: u32) -> Vec<u8> {
    HelloResponse {
        server_version: concat!("ringmq ", env!("CARGO_PKG_VERSION")).into(),
        shard_count: context.shard_count(),
        request_bytes_max: protocol::REQUEST_BYTES_MAX as u32,
        apis: api::SUPPORTED
            .iter()
            .map(|&(api_key, version_min, version_max)| ApiRange { api_key, version_min, version_max })
            .collect(),
    }
    .encode(id)
}

fn retention_to_wire(value: Option<u64>) -> i64 {
    value.map_or(RETENTION_UNLIMITED, |v| v.min(i64::MAX as u64) as i64)
}

fn metadata(context: &ShardContext, id: u32, request: &MetadataRequest) -> Vec<u8> {
    let catalog = context.catalog();
    let shard_count = context.shard_count();
    let describe = |topic: &TopicConfig| TopicMetadata {
        name: topic.name.clone(),
        error: 0,
        retention_ms: retention_to_wire(topic.retention_ms),
        retention_bytes: retention_to_wire(topic.retention_bytes),
        partition_shards: (0..topic.partitions).map(|p| owner(&topic.name, p, shard_count)).collect(),
    };
    let topics = if request.topics.is_empty() {
        catalog.topics.values().map(|topic| describe(topic)).collect()
    } else {
        // Each name answered once, so a request repeating a name cannot ask for
        // a response many times its own size.
        let mut names: Vec<&String> = request.topics.iter().collect();
        names.sort_unstable();
        names.dedup();
        names
            .into_iter()
            .map(|name| match catalog.topics.get(name) {
                Some(topic) => describe(topic),
                None => TopicMetadata {
                    name: name.clone(),
                    error: ErrorCode::UnknownTopicOrPartition as u16,
                    retention_ms: RETENTION_UNLIMITED,
                    retention_bytes: RETENTION_UNLIMITED,
                    partition_shards: Vec::new(),
                },
            })
            .collect()
    };
    let shards = context
        .shared
        .shard_ports
        .iter()
        .enumerate()
        .map(|(shard, &port)| ShardInfo { shard: shard as u16, port })
        .collect();
    MetadataResponse { shards, topics }.encode(id)
}

fn retention_from_wire(value: i64, default: Option<u64>) -> Result<Option<u64>, ErrorCode> {
    match value {
        RETENTION_DEFAULT => Ok(default),
        RETENTION_UNLIMITED => Ok(None),
        v if v >= 0 => Ok(Some(v as u64)),
        _ => Err(ErrorCode::InvalidArgument),
    }
}

/// Runs `op` on every shard that owns a partition of `topic`, and waits.
pub(crate) async fn on_owners(
    context: &Rc<ShardContext>,
    topic: &TopicConfig,
    op: impl Fn() -> Op,
) -> Result<(), ErrorCode> {
    let mut owners: Vec<u16> = (0..topic.partitions).map(|p| owner(&topic.name, p, context.shard_count())).collect();
    owners.sort_unstable();
    owners.dedup();
    let mut replies: Vec<ReplyFuture> = Vec::with_capacity(owners.len());
    for shard in owners {
        replies.push(context.submit(shard, op()).await);
    }
    for reply in futures_util::future::join_all(replies).await {
        match reply {
            Reply::Done(Ok(())) => {}
            Reply::Done(Err(code)) => return Err(code),
            _ => return Err(ErrorCode::Internal),
        }
    }
    Ok(())
}

async fn create_topic(context: Rc<ShardContext>, id: u32, request: CreateTopicRequest) -> Vec<u8> {
    let config = &context.shared.config;
    let retention = retention_from_wire(request.retention_ms, config.retention_ms)
        .and_then(|ms| Ok((ms, retention_from_wire(request.retention_bytes, config.retention_bytes)?)));
    let (retention_ms, retention_bytes) = match retention {
        Ok(values) => values,
        Err(code) => return error_response(id, code),
    };
    let topic = TopicConfig {
        name: request.name,
        partitions: request.partitions,
        retention_ms,
        retention_bytes,
        created_at_ms: crate::log::partition::now_ms(),
    };
    error_response(id, add_topic(&context, topic).await.err().unwrap_or(ErrorCode::None))
}

/// Creates a topic: its files, then its partitions on their owners, and only
/// then publishes it, so no request is ever routed to a partition that is not
/// open yet. A topic some of whose partitions could not be opened is removed.
pub(crate) async fn add_topic(context: &Rc<ShardContext>, topic: TopicConfig) -> Result<Arc<TopicConfig>, ErrorCode> {
    let topic = context.shared.catalog.begin_create(topic)?;
    if let Err(code) = on_owners(context, &topic, || Op::OpenTopic(topic.clone())).await {
        eprintln!("ringmq: creating topic {} failed ({code}); removing it", topic.name);
        let moved = context.shared.catalog.abandon_created(&topic.name);
        let _ = on_owners(context, &topic, || Op::ClosePartitions(topic.name.clone())).await;
        if let Ok(dir) = moved {
            remove_deleted(&dir);
        }
        return Err(code);
    }
    context.shared.catalog.publish_created(&topic);
    Ok(topic)
}

/// Deletes a topic. Its owners close its partitions first, through the rings
/// that carried whatever this shard forwarded to them before (so a Produce
/// pipelined ahead of the delete on one connection is appended, not refused);
/// then the topic is unpublished and its directory moved away (the commit
/// point); then every shard forgets its committed offsets and share state.
async fn remove_topic(context: &Rc<ShardContext>, name: &str) -> Result<(), ErrorCode> {
    let topic = context.shared.catalog.begin_delete(name)?;
    let closed = on_owners(context, &topic, || Op::ClosePartitions(topic.name.clone())).await;
    let moved_to = context.shared.catalog.finish_delete(name)?;
    let mut replies = Vec::new();
    for shard in 0..context.shard_count() {
        replies.push(context.submit(shard, Op::ForgetTopic(topic.name.clone())).await);
    }
    let mut result = closed;
    for reply in futures_util::future::join_all(replies).await {
        match reply {
            Reply::Done(Ok(())) => {}
            Reply::Done(Err(code)) => result = Err(code),
            _ => result = Err(ErrorCode::Internal),
        }
    }
    remove_deleted(&moved_to);
    result
}

/// Removes a directory moved under `deleted/` (what is left is removed at the
/// next start).
pub(crate) fn remove_deleted(dir: &std::path::Path) {
    if let Err(error) = std::fs::remove_dir_all(dir) {
        eprintln!("ringmq: cannot remove {}: {error}; it is removed at the next start", dir.display());
    }
}

async fn delete_topic(context: Rc<ShardContext>, id: u32, request: DeleteTopicRequest) -> Vec<u8> {
    let result = remove_topic(&context, &request.name).await;
    error_response(id, result.err().unwrap_or(ErrorCode::None))
}

async fn produce(context: &Rc<ShardContext>, id: u32, body: BytesMut) -> ResponseFuture {
    // Decode against the borrowed body, then carve each batch out of the owned
    // buffer (no copy): the owner stamps the base offset in place.
    let (acks, entries) = match ProduceRequest::decode(&body) {
        Ok(request) => (
            request.acks,
            request
                .entries
                .iter()
                .map(|e| (e.topic.to_owned(), e.partition, e.batch_position, e.batch.len()))
                .collect::<Vec<_>>(),
        ),
        Err(_) => return ready(error_response(id, ErrorCode::MalformedRequest)),
    };
    let mut rest = body;
    let mut position = 0;
    let mut replies: Vec<Result<ReplyFuture, ErrorCode>> = Vec::with_capacity(entries.len());
    for (topic, partition, batch_position, length) in entries {
        rest.advance(batch_position - position);
        let batch = rest.split_to(length);
        position = batch_position + length;
        match context.route(&topic, partition) {
            Ok(owner) => replies.push(Ok(context.submit(owner, Op::Produce { topic, partition, batch, acks }).await)),
            Err(code) => replies.push(Err(code)),
        }
    }
    Box::pin(async move {
        let mut results = Vec::with_capacity(replies.len());
        let waits = replies.into_iter().map(|reply| async move {
            match reply {
                Ok(future) => match future.await {
                    Reply::Produce(Ok(base_offset)) => ProduceResult { error: 0, base_offset: base_offset as i64 },
                    Reply::Produce(Err(code)) | Reply::Done(Err(code)) => {
                        ProduceResult { error: code as u16, base_offset: -1 }
                    }
                    _ => ProduceResult { error: ErrorCode::Internal as u16, base_offset: -1 },
                },
                Err(code) => ProduceResult { error: code as u16, base_offset: -1 },
            }
        });
        results.extend(futures_util::future::join_all(waits).await);
        (acks != Acks::None).then(|| ProduceResponse { results }.encode(id))
    })
}

fn fetch_response(id: u32, reply: Reply) -> Vec<u8> {
    match reply {
        Reply::Fetch(Ok(FetchData { high_watermark, earliest, records })) => {
            FetchResponse { high_watermark: high_watermark as i64, earliest: earliest as i64, records: &records }
                .encode(id)
        }
        Reply::Fetch(Err(code)) | Reply::Done(Err(code)) => error_response(id, code),
        _ => error_response(id, ErrorCode::Internal),
    }
}
