//! The Kafka listener's front end: decodes one Kafka request into the
//! broker service's [`Op`]s (one per partition where Kafka batches many),
//! starts them through the [`service`], and encodes their replies as the
//! Kafka response of the request's version. No operation's logic lives here;
//! what is Kafka-specific is the mapping (acks, error codes, a fetch over many
//! partitions, auto-created topics). docs/KAFKA.md describes what is served.
//!
//! A request that cannot be decoded, or of an API or version that is not
//! advertised, closes the connection (as Kafka does); ApiVersions of a newer
//! version is answered in the v0 form so the client retries lower.

use super::dispatch::{Response, ResponseFuture};
use super::handle::ShardHandle;
use super::message::{Op, Reply, ReplyFuture};
use super::service;
use super::session::Session;
use crate::batch::{self, Batch, BatchHeader};
use crate::groups::classic::{ClassicJoin, ClassicRequest, ClassicResponse};
use crate::io::FileBytes;
use crate::kafka::messages::{self as m, Broker};
use crate::kafka::{self, api, error, RequestHeader, Writer};
use crate::log::Acks;
use crate::protocol::fetch::FetchRequest;
use crate::protocol::group::{CommittedOffset, GroupRequest, GroupResponse, OffsetCommit};
use crate::protocol::group::{KIND_SHARE, SESSION_TIMEOUT_MS_MAX, SESSION_TIMEOUT_MS_MIN};
use crate::protocol::offsets::{ListOffsetsRequest, QUERY_EARLIEST, QUERY_LATEST};
use crate::protocol::topic::{CreateTopicRequest, RETENTION_DEFAULT};
use crate::protocol::{valid_topic_name, ErrorCode, FETCH_BYTES_MAX, FETCH_WAIT_MS_MAX};
use crate::security::{scram, Operation, Principal, ResourceKind};
use bytes::{Buf, BytesMut};
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::rc::Rc;
use std::time::Duration;

/// The connection closes instead of answering.
pub(crate) struct Close;

/// The shard and who the request runs as: every op starts through
/// [`start`], which checks the principal's ACLs.
pub(crate) struct Caller {
    handle: Rc<ShardHandle>,
    principal: Principal,
}

impl std::ops::Deref for Caller {
    type Target = Rc<ShardHandle>;
    fn deref(&self) -> &Rc<ShardHandle> {
        &self.handle
    }
}

async fn start(caller: &Caller, op: Op) -> ReplyFuture {
    service::start(&caller.handle, &caller.principal, op).await
}

/// The mechanisms SaslHandshake offers.
const SASL_MECHANISMS: [&str; 2] = [scram::SCRAM_SHA_256, scram::PLAIN];

/// SaslHandshake and SaslAuthenticate (Kafka's order: ApiVersions, then
/// these, then everything else). A failed exchange is answered with
/// SASL_AUTHENTICATION_FAILED and the connection closes.
fn sasl(
    context: &ShardHandle,
    session: &Session,
    header: &RequestHeader,
    body: &[u8],
) -> Result<ResponseFuture, Close> {
    let v = header.api_version;
    if header.api_key == api::SASL_HANDSHAKE {
        let mechanism = m::decode_sasl_handshake(body, v).map_err(|_| Close)?;
        let error = match session.begin(&mechanism) {
            Ok(()) => error::NONE,
            Err(scram::SaslError::UnsupportedMechanism) => error::UNSUPPORTED_SASL_MECHANISM,
            Err(_) => error::ILLEGAL_SASL_STATE,
        };
        return Ok(ready(respond(header, |w| m::encode_sasl_handshake(w, error, &SASL_MECHANISMS))));
    }
    let message = m::decode_sasl_authenticate(body, v).map_err(|_| Close)?;
    match session.step(context, &message) {
        Ok((reply, _)) => Ok(ready(respond(header, |w| m::encode_sasl_authenticate(w, v, error::NONE, None, &reply)))),
        Err(failure) => {
            eprintln!("ringmq: a Kafka connection failed to authenticate: {failure}");
            let text = failure.to_string();
            let mut response = respond(header, |w| {
                m::encode_sasl_authenticate(w, v, error::SASL_AUTHENTICATION_FAILED, Some(&text), &[])
            });
            response.close = true;
            Ok(ready(response))
        }
    }
}

/// Topic configs of log compaction, accepted (and without effect, as in
/// Kafka) because topics only have `cleanup.policy=delete`.
const COMPACTION_CONFIGS: [&str; 4] =
    ["delete.retention.ms", "min.compaction.lag.ms", "max.compaction.lag.ms", "min.cleanable.dirty.ratio"];

/// The one broker ringmq reports: node 0.
pub const NODE_ID: i32 = 0;
/// Records below this size are copied into the response frame; larger ones
/// go to the socket from their own buffer (or mapping).
const INLINE_RECORDS_BYTES_MAX: usize = 16 * 1024;
/// Batch attribute bits of transactions (bit 4) and control batches (bit 5).
const ATTRIBUTES_TRANSACTIONAL_OR_CONTROL: i16 = 0x30;

fn ready(response: Response) -> ResponseFuture {
    Box::pin(async move { Some(response) })
}

fn respond(header: &RequestHeader, encode: impl FnOnce(&mut Writer)) -> Response {
    let mut writer = kafka::response_writer(header);
    encode(&mut writer);
    writer.tags();
    Response::frame(kafka::finish_frame(writer))
}

fn code(result: Result<(), ErrorCode>) -> i16 {
    result.err().map_or(error::NONE, kafka::error_code)
}

fn broker(context: &ShardHandle) -> Broker<'_> {
    let (host, port) = context.shared.kafka_advertised.as_ref().map_or(("127.0.0.1", 0), |(h, p)| (h.as_str(), *p));
    Broker { node_id: NODE_ID, host, port: i32::from(port) }
}

/// `frame` is one whole request frame, size field included.
pub(crate) async fn dispatch(
    context: &Rc<ShardHandle>,
    session: &Session,
    mut frame: BytesMut,
) -> Result<ResponseFuture, Close> {
    let (header, header_bytes) =
        kafka::parse_header(frame.get(kafka::SIZE_BYTES..).unwrap_or(&[])).map_err(|_| Close)?;
    let body = frame.split_off((kafka::SIZE_BYTES + header_bytes).min(frame.len()));
    let support = kafka::support_of(header.api_key).ok_or(Close)?;
    if header.api_version < support.min || header.api_version > support.max {
        if header.api_key == api::API_VERSIONS {
            return Ok(ready(api_versions_fallback(&header)));
        }
        return Err(Close);
    }
    if header.api_key == api::SASL_HANDSHAKE || header.api_key == api::SASL_AUTHENTICATE {
        return sasl(context, session, &header, &body);
    }
    let principal = match session.principal() {
        Some(principal) => principal,
        // Before authentication: ApiVersions only (Kafka closes too).
        None if header.api_key == api::API_VERSIONS => Principal::Trusted,
        None => return Err(Close),
    };
    if context.is_stopping() {
        return Err(Close);
    }
    let v = header.api_version;
    let context = Rc::new(Caller { handle: context.clone(), principal });
    Ok(match header.api_key {
        api::API_VERSIONS => {
            m::decode_api_versions(&body, v, header.flexible).map_err(|_| Close)?;
            ready(api_versions(&header))
        }
        api::PRODUCE => return produce(&context, header, body).await,
        api::METADATA => {
            let request = m::decode_metadata(&body, v).map_err(|_| Close)?;
            Box::pin(async move { Some(metadata(&context, &header, request).await) })
        }
        api::FETCH => {
            let request = m::decode_fetch(&body, v).map_err(|_| Close)?;
            Box::pin(async move { Some(fetch(&context, &header, request).await) })
        }
        api::LIST_OFFSETS => {
            let request = m::decode_list_offsets(&body, v).map_err(|_| Close)?;
            Box::pin(async move { Some(list_offsets(&context, &header, request).await) })
        }
        api::FIND_COORDINATOR => {
            let (keys, key_type) = m::decode_find_coordinator(&body, v).map_err(|_| Close)?;
            let (error, message) = if key_type == m::KEY_TYPE_TRANSACTION {
                (error::INVALID_REQUEST, Some("ringmq does not support transactions"))
            } else {
                (error::NONE, None)
            };
            ready(respond(&header, |w| m::encode_find_coordinator(w, v, &keys, error, message, &broker(&context))))
        }
        api::INIT_PRODUCER_ID => {
            let transactional_id = m::decode_init_producer_id(&body, v).map_err(|_| Close)?;
            if transactional_id.is_some() {
                ready(respond(&header, |w| m::encode_init_producer_id(w, error::INVALID_REQUEST, -1, -1)))
            } else {
                let reply = start(&context, Op::InitProducerId(String::new())).await;
                Box::pin(async move {
                    let (error, id, epoch) = match reply.await.into_producer_id() {
                        Ok((id, epoch)) => (error::NONE, id, epoch),
                        Err(code) => (kafka::error_code(code), -1, -1),
                    };
                    Some(respond(&header, |w| m::encode_init_producer_id(w, error, id, epoch)))
                })
            }
        }
        api::OFFSET_COMMIT => {
            let request = m::decode_offset_commit(&body, v).map_err(|_| Close)?;
            Box::pin(async move { Some(offset_commit(&context, &header, request).await) })
        }
        api::OFFSET_FETCH => {
            let request = m::decode_offset_fetch(&body, v).map_err(|_| Close)?;
            Box::pin(async move { Some(offset_fetch(&context, &header, request).await) })
        }
        // Control requests finish before the next request on the connection
        // is read, so a produce pipelined behind a create finds the topic.
        api::CREATE_TOPICS => {
            let request = m::decode_create_topics(&body, v).map_err(|_| Close)?;
            ready(create_topics(&context, &header, request).await)
        }
        api::DELETE_TOPICS => {
            let names = m::decode_delete_topics(&body, v).map_err(|_| Close)?;
            ready(delete_topics(&context, &header, names).await)
        }
        api::DESCRIBE_CONFIGS => {
            let resources = m::decode_describe_configs(&body, v).map_err(|_| Close)?;
            ready(describe_configs(&context, &header, &resources))
        }
        api::JOIN_GROUP => {
            let request = m::decode_join_group(&body, v).map_err(|_| Close)?;
            Box::pin(async move { Some(join_group(&context, &header, request).await) })
        }
        api::SYNC_GROUP => {
            let request = m::decode_sync_group(&body, v).map_err(|_| Close)?;
            Box::pin(async move {
                let m::SyncGroupRequest { group, generation, member_id, assignments } = request;
                let op = Op::Classic(ClassicRequest::Sync { group, member_id, generation, assignments });
                let (error, assignment) = match start(&context, op).await.await.into_classic() {
                    Ok(ClassicResponse::Synced(assignment)) => (error::NONE, assignment),
                    Ok(_) => (error::UNKNOWN_SERVER_ERROR, Vec::new()),
                    Err(code) => (kafka::error_code(code), Vec::new()),
                };
                Some(respond(&header, |w| m::encode_sync_group(w, v, error, &assignment)))
            })
        }
        api::HEARTBEAT => {
            let (group, generation, member_id) = m::decode_heartbeat(&body, v).map_err(|_| Close)?;
            Box::pin(async move {
                let op = Op::Classic(ClassicRequest::Heartbeat { group, member_id, generation });
                let error = code(start(&context, op).await.await.into_classic().map(|_| ()));
                Some(respond(&header, |w| m::encode_error_only(w, v, error)))
            })
        }
        api::LEAVE_GROUP => {
            let (group, member_ids) = m::decode_leave_group(&body, v).map_err(|_| Close)?;
            Box::pin(async move {
                let op = Op::Classic(ClassicRequest::Leave { group, member_ids: member_ids.clone() });
                let (error, members) = match start(&context, op).await.await.into_classic() {
                    Ok(ClassicResponse::Left(results)) => {
                        let members: Vec<(String, i16)> =
                            member_ids.into_iter().zip(results).map(|(id, result)| (id, code(result))).collect();
                        // Before v3 one member leaves and its error is the answer's.
                        let error = if v < 3 { members.first().map_or(error::NONE, |m| m.1) } else { error::NONE };
                        (error, members)
                    }
                    Ok(_) => (error::UNKNOWN_SERVER_ERROR, Vec::new()),
                    Err(code) => (kafka::error_code(code), Vec::new()),
                };
                Some(respond(&header, |w| m::encode_leave_group(w, v, error, &members)))
            })
        }
        api::DESCRIBE_GROUPS => {
            let groups = m::decode_describe_groups(&body, v).map_err(|_| Close)?;
            Box::pin(async move { Some(describe_groups(&context, &header, groups).await) })
        }
        api::LIST_GROUPS => {
            m::decode_list_groups(&body, v).map_err(|_| Close)?;
            Box::pin(async move {
                let (error, groups) = match start(&context, Op::ListGroups).await.await.into_groups() {
                    Ok(listings) => {
                        let groups = listings
                            .into_iter()
                            .map(|listing| {
                                let kind = if listing.kind == KIND_SHARE { "share" } else { PROTOCOL_TYPE_CONSUMER };
                                (listing.group, kind.to_string())
                            })
                            .collect();
                        (error::NONE, groups)
                    }
                    Err(code) => (kafka::error_code(code), Vec::new()),
                };
                Some(respond(&header, |w| m::encode_list_groups(w, v, error, &groups)))
            })
        }
        _ => return Err(Close),
    })
}

// ------------------------------------------------------ classic groups

/// The protocol type of consumer groups (the one ListGroups reports for
/// ringmq's native consumer groups too).
const PROTOCOL_TYPE_CONSUMER: &str = "consumer";

async fn join_group(context: &Caller, header: &RequestHeader, request: m::JoinGroupRequest) -> Response {
    let v = header.api_version;
    let refuse = |error: i16, member_id: &str| {
        respond(header, |w| {
            let answer = m::JoinGroupAnswer {
                error,
                generation: -1,
                protocol_type: None,
                protocol_name: "",
                leader: "",
                member_id,
                members: &[],
            };
            m::encode_join_group(w, v, &answer)
        })
    };
    let session_ok = u32::try_from(request.session_timeout_ms)
        .is_ok_and(|ms| (SESSION_TIMEOUT_MS_MIN..=SESSION_TIMEOUT_MS_MAX).contains(&ms));
    if !session_ok {
        return refuse(error::INVALID_SESSION_TIMEOUT, &request.member_id);
    }
    let rebalance_ms = u64::try_from(request.rebalance_timeout_ms).unwrap_or(0).max(1);
    let join = ClassicJoin {
        client_id: header.client_id.clone().unwrap_or_default(),
        client_host: String::new(),
        session_timeout: Duration::from_millis(request.session_timeout_ms as u64),
        rebalance_timeout: Duration::from_millis(rebalance_ms),
        protocol_type: request.protocol_type.clone(),
        protocols: request.protocols,
    };
    let op = Op::Classic(ClassicRequest::Join { group: request.group, member_id: request.member_id.clone(), join });
    match start(context, op).await.await.into_classic() {
        Ok(ClassicResponse::Joined { member_id, answer }) => respond(header, |w| {
            let answer = m::JoinGroupAnswer {
                error: error::NONE,
                generation: answer.generation,
                protocol_type: Some(&request.protocol_type),
                protocol_name: &answer.protocol,
                leader: &answer.leader,
                member_id: &member_id,
                members: &answer.members,
            };
            m::encode_join_group(w, v, &answer)
        }),
        Ok(_) => refuse(error::UNKNOWN_SERVER_ERROR, &request.member_id),
        Err(code) => refuse(kafka::error_code(code), &request.member_id),
    }
}

async fn describe_groups(context: &Caller, header: &RequestHeader, groups: Vec<String>) -> Response {
    let mut described = Vec::with_capacity(groups.len());
    for group in groups {
        let op = Op::Classic(ClassicRequest::Describe { group: group.clone() });
        let entry = match start(context, op).await.await.into_classic() {
            Ok(ClassicResponse::Described(description)) => m::DescribedGroup {
                error: error::NONE,
                group,
                state: description.state.to_string(),
                protocol_type: description.protocol_type,
                protocol: description.protocol,
                members: description.members,
            },
            other => m::DescribedGroup {
                error: other.err().map_or(error::UNKNOWN_SERVER_ERROR, kafka::error_code),
                group,
                state: String::new(),
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            },
        };
        described.push(entry);
    }
    respond(header, |w| m::encode_describe_groups(w, header.api_version, &described))
}

fn api_versions(header: &RequestHeader) -> Response {
    let apis: Vec<(i16, i16, i16)> = kafka::SUPPORTED.iter().map(|api| (api.key, api.min, api.max)).collect();
    respond(header, |w| m::encode_api_versions(w, header.api_version, error::NONE, &apis))
}

/// The answer to an ApiVersions of a version not served: the v0 form, with
/// UNSUPPORTED_VERSION and ApiVersions' own range, so the client retries.
fn api_versions_fallback(header: &RequestHeader) -> Response {
    let header = RequestHeader { flexible: false, ..header.clone() };
    let support = kafka::support_of(api::API_VERSIONS).map_or((0, 0), |s| (s.min, s.max));
    let mut writer = kafka::response_writer(&header);
    m::encode_api_versions(&mut writer, 0, error::UNSUPPORTED_VERSION, &[(api::API_VERSIONS, support.0, support.1)]);
    Response::frame(kafka::finish_frame(writer))
}

// ---------------------------------------------------------------- Produce

/// The batches of one partition's records, or the Kafka error refusing them.
fn split_batches(mut records: BytesMut) -> Result<Vec<BytesMut>, i16> {
    if records.is_empty() {
        return Err(error::CORRUPT_MESSAGE);
    }
    let mut batches = Vec::new();
    while !records.is_empty() {
        let size = match batch::batch_size(&records) {
            Ok(Some(size)) if size <= records.len() => size,
            Err(batch::BatchError::TooLarge { .. }) => return Err(error::MESSAGE_TOO_LARGE),
            _ => return Err(error::CORRUPT_MESSAGE),
        };
        let header = BatchHeader::parse(records.get(..size).unwrap_or(&[])).map_err(|_| error::CORRUPT_MESSAGE)?;
        if header.attributes & ATTRIBUTES_TRANSACTIONAL_OR_CONTROL != 0 {
            return Err(error::INVALID_RECORD);
        }
        batches.push(records.split_to(size));
    }
    Ok(batches)
}

enum PartitionProduce {
    Refused(i16),
    Started(Vec<ReplyFuture>),
}

async fn produce(context: &Caller, header: RequestHeader, body: BytesMut) -> Result<ResponseFuture, Close> {
    let v = header.api_version;
    let request = m::decode_produce(&body, v).map_err(|_| Close)?;
    let acks = match request.acks {
        0 => Some(Acks::None),
        1 => Some(Acks::Written),
        -1 => Some(context.shared.config.kafka.acks_all),
        _ => None,
    };
    let refused = if v < kafka::PRODUCE_VERSION_MIN_SERVED {
        Some(error::UNSUPPORTED_VERSION)
    } else if request.transactional_id.is_some() {
        Some(error::INVALID_REQUEST)
    } else if acks.is_none() {
        Some(error::INVALID_REQUIRED_ACKS)
    } else {
        None
    };
    let acks = acks.unwrap_or(Acks::Written);
    // Carve each partition's records out of the owned body (no copy); the
    // owner stamps base offsets in place.
    let mut rest = body;
    let mut cursor = 0;
    let mut topics: Vec<(String, Vec<(i32, PartitionProduce)>)> = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for partition in topic.partitions {
            rest.advance(partition.position.saturating_sub(cursor).min(rest.len()));
            let records = rest.split_to(partition.length.min(rest.len()));
            cursor = partition.position + partition.length;
            let started = match (refused, u32::try_from(partition.index), split_batches(records)) {
                (Some(code), _, _) | (None, _, Err(code)) => PartitionProduce::Refused(code),
                (None, Err(_), _) => PartitionProduce::Refused(error::UNKNOWN_TOPIC_OR_PARTITION),
                (None, Ok(index), Ok(batches)) => {
                    let mut replies = Vec::with_capacity(batches.len());
                    for batch in batches {
                        let op = Op::Produce { topic: topic.name.clone(), partition: index, batch, acks };
                        replies.push(start(context, op).await);
                    }
                    PartitionProduce::Started(replies)
                }
            };
            partitions.push((partition.index, started));
        }
        topics.push((topic.name, partitions));
    }
    Ok(Box::pin(async move {
        let mut results = Vec::with_capacity(topics.len());
        let mut failed = false;
        for (name, partitions) in topics {
            let mut answers = Vec::with_capacity(partitions.len());
            for (index, started) in partitions {
                let (error, base_offset) = match started {
                    PartitionProduce::Refused(code) => (code, -1),
                    PartitionProduce::Started(replies) => {
                        let mut base = None;
                        let mut error = error::NONE;
                        for reply in futures_util::future::join_all(replies).await {
                            match reply.into_produce() {
                                Ok(offset) => {
                                    base.get_or_insert(offset as i64);
                                }
                                Err(code) if error == error::NONE => error = kafka::error_code(code),
                                Err(_) => {}
                            }
                        }
                        if error == error::NONE {
                            (error, base.unwrap_or(-1))
                        } else {
                            (error, -1)
                        }
                    }
                };
                failed |= error != error::NONE;
                answers.push(m::ProducePartitionResult { index, error, base_offset, log_start_offset: -1 });
            }
            results.push((name, answers));
        }
        if acks == Acks::None {
            // No response at all; an error closes the connection, which is how
            // Kafka tells an acks=0 producer something went wrong.
            return failed.then(Response::close);
        }
        Some(respond(&header, |w| m::encode_produce(w, v, &results)))
    }))
}

// --------------------------------------------------------------- Metadata

async fn metadata(context: &Caller, header: &RequestHeader, request: m::MetadataRequest) -> Response {
    let config = &context.shared.config.kafka;
    let security = context.security();
    let visible = |name: &str| security.allows(&context.principal, Operation::Describe, ResourceKind::Topic, name);
    let names: Vec<String> = match request.topics {
        // All topics: those the principal may describe.
        None => context.catalog().topics.keys().filter(|name| visible(name)).cloned().collect(),
        Some(mut names) => {
            // Each name answered once, so a request repeating a name cannot ask
            // for a response many times its own size.
            names.sort_unstable();
            names.dedup();
            names
        }
    };
    let mut topics = Vec::with_capacity(names.len());
    for name in names {
        if !visible(&name) {
            topics.push(m::TopicMetadata { error: error::TOPIC_AUTHORIZATION_FAILED, name, leaders: Vec::new() });
            continue;
        }
        let mut known = context.catalog().topics.get(&name).map(|t| t.partitions);
        let mut error = error::NONE;
        if known.is_none() {
            error = error::UNKNOWN_TOPIC_OR_PARTITION;
            if !valid_topic_name(&name) {
                error = error::INVALID_TOPIC_EXCEPTION;
            } else if config.auto_create_topics && request.allow_auto_topic_creation {
                let create = CreateTopicRequest {
                    name: name.clone(),
                    partitions: config.default_partitions,
                    retention_ms: RETENTION_DEFAULT,
                    retention_bytes: RETENTION_DEFAULT,
                };
                let result = start(context, Op::CreateTopic(create)).await.await.into_done();
                known = context.catalog().topics.get(&name).map(|t| t.partitions);
                if known.is_some() {
                    error = error::NONE;
                } else if let Err(code) = result {
                    error = kafka::error_code(code);
                }
            }
        }
        let leaders = vec![NODE_ID; known.unwrap_or(0) as usize];
        topics.push(m::TopicMetadata { error, name, leaders });
    }
    let brokers = [broker(context)];
    respond(header, |w| m::encode_metadata(w, header.api_version, &brokers, NODE_ID, &topics))
}

// ------------------------------------------------------------------ Fetch

/// One partition of a fetch: where it is in the request, and its reply.
struct Fetched {
    topic: usize,
    index: i32,
    result: Result<crate::server::message::FetchData, ErrorCode>,
}

async fn fetch_round(
    context: &Caller,
    request: &m::FetchRequest,
    wait_ms: u32,
    min_bytes: u32,
) -> Vec<(usize, i32, ReplyFuture)> {
    let mut started = Vec::new();
    for (topic_index, (topic, partitions)) in request.topics.iter().enumerate() {
        for partition in partitions {
            let reply = match (u32::try_from(partition.partition), u64::try_from(partition.fetch_offset)) {
                (Err(_), _) => super::message::ready(Reply::Failed(ErrorCode::UnknownTopicOrPartition)),
                (_, Err(_)) => super::message::ready(Reply::Failed(ErrorCode::OffsetOutOfRange)),
                (Ok(index), Ok(offset)) => {
                    let op = Op::Fetch(FetchRequest {
                        topic: topic.clone(),
                        partition: index,
                        offset,
                        max_bytes: (partition.partition_max_bytes.max(0) as u32).min(FETCH_BYTES_MAX as u32),
                        max_wait_ms: wait_ms,
                        min_bytes,
                    });
                    start(context, op).await
                }
            };
            started.push((topic_index, partition.partition, reply));
        }
    }
    started
}

fn fetched_bytes(fetched: &[Fetched]) -> usize {
    fetched.iter().map(|f| f.result.as_ref().map_or(0, |data| data.records.len())).sum()
}

/// A fetch over many partitions: each is read at once; when together they
/// hold less than `min_bytes` and the client allows a wait, each waits (up to
/// `max_wait_ms`) for new records, and the response goes out as soon as one
/// of them has some (Kafka's `fetch.min.bytes` of 1, the clients' default;
/// larger values are met across partitions only by the first read).
async fn fetch(context: &Caller, header: &RequestHeader, request: m::FetchRequest) -> Response {
    let first = fetch_round(context, &request, 0, 0).await;
    let mut fetched = Vec::with_capacity(first.len());
    for (topic, index, reply) in first {
        fetched.push(Fetched { topic, index, result: reply.await.into_fetch() });
    }
    let wait_ms = request.max_wait_ms.clamp(0, FETCH_WAIT_MS_MAX as i32) as u32;
    let enough = fetched_bytes(&fetched) >= request.min_bytes.max(0) as usize;
    let failed = fetched.iter().any(|f| f.result.is_err());
    if !enough && !failed && wait_ms > 0 && !fetched.is_empty() {
        let waits: FuturesUnordered<_> = fetch_round(context, &request, wait_ms, 1)
            .await
            .into_iter()
            .enumerate()
            .map(|(slot, (_, _, reply))| async move { (slot, reply.await.into_fetch()) })
            .collect();
        let mut waits = waits;
        while let Some((slot, result)) = waits.next().await {
            let has_records = result.as_ref().map_or(true, |data| !data.records.is_empty());
            if let Some(entry) = fetched.get_mut(slot) {
                entry.result = result;
            }
            if has_records {
                // Whatever else is ready goes too; the rest keep the first read.
                while let Some(Some((slot, result))) = futures_util::FutureExt::now_or_never(waits.next()) {
                    if let Some(entry) = fetched.get_mut(slot) {
                        entry.result = result;
                    }
                }
                break;
            }
        }
    }
    encode_fetch(header, &request, fetched)
}

fn encode_fetch(header: &RequestHeader, request: &m::FetchRequest, fetched: Vec<Fetched>) -> Response {
    let v = header.api_version;
    let mut parts: Vec<FileBytes> = Vec::new();
    let mut writer = kafka::response_writer(header);
    m::encode_fetch_start(&mut writer, v, request.topics.len());
    let mut budget = request.max_bytes.max(0) as usize;
    let mut sent_any = false;
    let mut fetched = fetched.into_iter().peekable();
    for (topic_index, (name, partitions)) in request.topics.iter().enumerate() {
        m::encode_fetch_topic(&mut writer, name, partitions.len());
        while let Some(entry) = fetched.next_if(|f| f.topic == topic_index) {
            let (error, high_watermark, log_start_offset, records) = match entry.result {
                Ok(data) => (error::NONE, data.high_watermark as i64, data.earliest as i64, data.records),
                Err(code) => (kafka::error_code(code), -1, -1, FileBytes::default()),
            };
            // The response's max_bytes: the first records always go (so a
            // batch larger than the limit is not stuck), later ones only
            // while they fit; the client fetches the rest next time.
            let records = if records.len() <= budget || !sent_any { records } else { FileBytes::default() };
            budget = budget.saturating_sub(records.len());
            sent_any |= !records.is_empty();
            let head = m::FetchPartitionHead {
                index: entry.index,
                error,
                high_watermark,
                log_start_offset,
                records_bytes: records.len(),
            };
            m::encode_fetch_partition(&mut writer, v, &head);
            if records.len() <= INLINE_RECORDS_BYTES_MAX {
                writer.raw(&records);
            } else {
                let flexible = header.flexible;
                let done = std::mem::replace(&mut writer, Writer::new(flexible));
                parts.push(FileBytes::Owned(done.into_inner()));
                parts.push(records);
            }
            m::encode_fetch_struct_end(&mut writer);
        }
        m::encode_fetch_struct_end(&mut writer);
    }
    writer.tags();
    parts.push(FileBytes::Owned(writer.into_inner()));
    Response::parts(finish_parts(parts))
}

/// Sets the size field at the start of the first part to the size of all.
fn finish_parts(mut parts: Vec<FileBytes>) -> Vec<FileBytes> {
    let total: usize = parts.iter().map(|part| part.len()).sum();
    let size = (total - kafka::SIZE_BYTES) as i32;
    if let Some(FileBytes::Owned(first)) = parts.first_mut() {
        if let Some(field) = first.get_mut(..kafka::SIZE_BYTES) {
            field.copy_from_slice(&size.to_be_bytes());
        }
    }
    parts
}

// ------------------------------------------------------------ ListOffsets

/// Kafka's ListOffsets query for the newest and the oldest offset.
const KAFKA_LATEST: i64 = -1;
const KAFKA_EARLIEST: i64 = -2;

/// The timestamp of the record at `offset` (Kafka answers a time query with
/// the found record's timestamp).
async fn timestamp_at(context: &Caller, topic: &str, partition: u32, offset: u64) -> i64 {
    let op = Op::Fetch(FetchRequest {
        topic: topic.to_owned(),
        partition,
        offset,
        max_bytes: 1,
        max_wait_ms: 0,
        min_bytes: 0,
    });
    let Ok(data) = start(context, op).await.await.into_fetch() else { return -1 };
    let Ok(batch) = Batch::validate_stored(&data.records) else { return -1 };
    let Ok(section) = batch.records_section() else { return -1 };
    let from_records = batch.records_in(&section).flatten().find(|r| r.offset as u64 == offset).map(|r| r.timestamp);
    from_records.unwrap_or(batch.header().max_timestamp)
}

async fn list_offsets(context: &Caller, header: &RequestHeader, request: m::ListOffsetsRequest) -> Response {
    let mut topics = Vec::with_capacity(request.topics.len());
    for (name, partitions) in request.topics {
        let mut answers = Vec::with_capacity(partitions.len());
        for (index, query) in partitions {
            let Ok(partition) = u32::try_from(index) else {
                answers.push(m::ListedOffset {
                    index,
                    error: error::UNKNOWN_TOPIC_OR_PARTITION,
                    timestamp: -1,
                    offset: -1,
                });
                continue;
            };
            let native = match query {
                KAFKA_LATEST => QUERY_LATEST,
                KAFKA_EARLIEST => QUERY_EARLIEST,
                timestamp if timestamp >= 0 => timestamp,
                _ => {
                    answers.push(m::ListedOffset { index, error: error::INVALID_REQUEST, timestamp: -1, offset: -1 });
                    continue;
                }
            };
            let op = Op::ListOffsets(ListOffsetsRequest { topic: name.clone(), partition, query: native });
            let answer = match start(context, op).await.await.into_offsets() {
                Err(code) => m::ListedOffset { index, error: kafka::error_code(code), timestamp: -1, offset: -1 },
                Ok(found) if native < 0 => {
                    m::ListedOffset { index, error: error::NONE, timestamp: -1, offset: found.offset }
                }
                Ok(found) if found.offset < 0 => {
                    m::ListedOffset { index, error: error::NONE, timestamp: -1, offset: -1 }
                }
                Ok(found) => {
                    let timestamp = timestamp_at(context, &name, partition, found.offset as u64).await;
                    m::ListedOffset { index, error: error::NONE, timestamp, offset: found.offset }
                }
            };
            answers.push(answer);
        }
        topics.push((name, answers));
    }
    respond(header, |w| m::encode_list_offsets(w, header.api_version, &topics))
}

// ---------------------------------------------- OffsetCommit, OffsetFetch

async fn offset_commit(context: &Caller, header: &RequestHeader, request: m::OffsetCommitRequest) -> Response {
    let mut offsets = Vec::new();
    let mut refused: Vec<(String, i32)> = Vec::new();
    for (topic, partitions) in &request.topics {
        for (index, offset, metadata) in partitions {
            match u32::try_from(*index) {
                Ok(partition) => offsets.push(CommittedOffset {
                    topic: topic.clone(),
                    partition,
                    offset: *offset,
                    metadata: metadata.clone(),
                }),
                Err(_) => refused.push((topic.clone(), *index)),
            }
        }
    }
    let result: Result<(), ErrorCode> = if request.member_id.is_empty() && request.generation < 0 {
        // A client that assigns its partitions itself commits outside any
        // generation (Kafka's generation -1 and empty member id).
        let commit = OffsetCommit { group: request.group.clone(), member_id: String::new(), generation: 0, offsets };
        start(context, Op::Group(GroupRequest::Commit(commit))).await.await.into_group().map(|_| ())
    } else {
        // Members of a classic group commit within its generation.
        let commit =
            OffsetCommit { group: request.group.clone(), member_id: request.member_id.clone(), generation: 0, offsets };
        let op = Op::Classic(ClassicRequest::Commit { commit, generation: request.generation });
        start(context, op).await.await.into_classic().map(|_| ())
    };
    let error = code(result);
    let topics: Vec<(String, Vec<(i32, i16)>)> = request
        .topics
        .iter()
        .map(|(topic, partitions)| {
            let answers = partitions
                .iter()
                .map(|(index, _, _)| {
                    let bad = refused.iter().any(|(t, i)| t == topic && i == index);
                    (*index, if bad { error::UNKNOWN_TOPIC_OR_PARTITION } else { error })
                })
                .collect();
            (topic.clone(), answers)
        })
        .collect();
    respond(header, |w| m::encode_offset_commit(w, header.api_version, &topics))
}

async fn offset_fetch(context: &Caller, header: &RequestHeader, request: m::OffsetFetchRequest) -> Response {
    let asked: Vec<(String, u32)> = request
        .topics
        .iter()
        .flatten()
        .flat_map(|(topic, indexes)| {
            indexes.iter().filter_map(|&index| u32::try_from(index).ok().map(|index| (topic.clone(), index)))
        })
        .collect();
    // An explicit list that names nothing valid asks for nothing (not "all").
    let answer = if request.topics.is_some() && asked.is_empty() {
        Ok(Vec::new())
    } else {
        let op = Op::Group(GroupRequest::Fetch { group: request.group.clone(), partitions: asked });
        match start(context, op).await.await.into_group() {
            Ok(GroupResponse::Offsets(offsets)) => Ok(offsets),
            Ok(_) => Err(ErrorCode::Internal),
            Err(code) => Err(code),
        }
    };
    let (offsets, group_error) = match answer {
        Ok(offsets) => (offsets, error::NONE),
        Err(code) => (Vec::new(), kafka::error_code(code)),
    };
    let mut topics: Vec<(String, Vec<m::FetchedOffset>)> = Vec::new();
    for entry in offsets {
        let fetched = m::FetchedOffset {
            index: entry.partition as i32,
            offset: entry.offset,
            metadata: entry.metadata,
            error: error::NONE,
        };
        match topics.iter_mut().find(|(topic, _)| *topic == entry.topic) {
            Some((_, partitions)) => partitions.push(fetched),
            None => topics.push((entry.topic, vec![fetched])),
        }
    }
    // Partitions with a negative index were asked for too: answered unknown.
    for (topic, indexes) in request.topics.iter().flatten() {
        for &index in indexes.iter().filter(|&&index| index < 0) {
            let fetched = m::FetchedOffset {
                index,
                offset: -1,
                metadata: String::new(),
                error: error::UNKNOWN_TOPIC_OR_PARTITION,
            };
            match topics.iter_mut().find(|(name, _)| name == topic) {
                Some((_, partitions)) => partitions.push(fetched),
                None => topics.push((topic.clone(), vec![fetched])),
            }
        }
    }
    respond(header, |w| m::encode_offset_fetch(w, header.api_version, &topics, group_error))
}

// ---------------------------------------------- CreateTopics, DeleteTopics

/// A topic config's ringmq retention value (-2: the broker's default).
fn retention_config(value: Option<&str>) -> Result<i64, String> {
    match value {
        None => Ok(RETENTION_DEFAULT),
        Some(text) => match text.trim().parse::<i64>() {
            Ok(-1) => Ok(-1),
            Ok(n) if n >= 0 => Ok(n),
            _ => Err(format!("not a retention value: {text:?}")),
        },
    }
}

fn creatable(context: &ShardHandle, topic: &m::CreatableTopic) -> Result<CreateTopicRequest, (i16, String)> {
    if !valid_topic_name(&topic.name) {
        return Err((error::INVALID_TOPIC_EXCEPTION, "topic names are 1-249 characters of [a-zA-Z0-9._-]".into()));
    }
    let partitions = if topic.assignments.is_empty() {
        if topic.replication_factor != -1 && topic.replication_factor != 1 {
            return Err((error::INVALID_REPLICATION_FACTOR, "ringmq is one broker: replication factor 1".into()));
        }
        match topic.partitions {
            -1 => context.shared.config.kafka.default_partitions,
            n if n > 0 => n as u32,
            _ => return Err((error::INVALID_PARTITIONS, "the partition count must be positive".into())),
        }
    } else {
        // Explicit assignments are fine when they are what ringmq does
        // anyway: partitions 0..n, each on this broker alone.
        let mut indexes: Vec<i32> = topic.assignments.iter().map(|(partition, _)| *partition).collect();
        indexes.sort_unstable();
        let dense = indexes.iter().enumerate().all(|(at, &partition)| usize::try_from(partition) == Ok(at));
        let here = topic.assignments.iter().all(|(_, replicas)| replicas.as_slice() == [NODE_ID]);
        if topic.partitions != -1 && usize::try_from(topic.partitions) != Ok(indexes.len()) {
            return Err((error::INVALID_REQUEST, "give either a partition count or assignments".into()));
        }
        if !dense || !here {
            return Err((
                error::INVALID_REPLICA_ASSIGNMENT,
                format!("ringmq is one broker: assign partitions 0..n to broker {NODE_ID} alone"),
            ));
        }
        indexes.len() as u32
    };
    let mut request = CreateTopicRequest {
        name: topic.name.clone(),
        partitions,
        retention_ms: RETENTION_DEFAULT,
        retention_bytes: RETENTION_DEFAULT,
    };
    for (name, value) in &topic.configs {
        let invalid = |message: String| (error::INVALID_CONFIG, message);
        match name.as_str() {
            "retention.ms" => request.retention_ms = retention_config(value.as_deref()).map_err(invalid)?,
            "retention.bytes" => request.retention_bytes = retention_config(value.as_deref()).map_err(invalid)?,
            "cleanup.policy" if value.as_deref().is_none_or(|v| v == "delete") => {}
            // Batches are stored as the producer sent them: Kafka's `producer`.
            "compression.type" if value.as_deref().is_none_or(|v| v == "producer") => {}
            "compression.type" => {
                return Err(invalid("compression.type: ringmq stores batches as sent (only \"producer\")".into()))
            }
            // Compaction settings: without compaction they do nothing, in Kafka too.
            name if COMPACTION_CONFIGS.contains(&name) => {}
            other => return Err(invalid(format!("config {other} is not supported by ringmq"))),
        }
    }
    Ok(request)
}

async fn create_topics(context: &Caller, header: &RequestHeader, request: m::CreateTopicsRequest) -> Response {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let refused = |error: i16, message: Option<String>| m::CreatedTopic {
            name: topic.name.clone(),
            error,
            message,
            partitions: -1,
        };
        let result = match creatable(context, topic) {
            Err((error, message)) => refused(error, Some(message)),
            Ok(_) if request.validate_only && context.catalog().topics.contains_key(&topic.name) => {
                refused(error::TOPIC_ALREADY_EXISTS, None)
            }
            Ok(create) => {
                let partitions = i32::try_from(create.partitions).unwrap_or(-1);
                let created = if request.validate_only {
                    Ok(())
                } else {
                    start(context, Op::CreateTopic(create)).await.await.into_done()
                };
                match created {
                    Ok(()) => {
                        m::CreatedTopic { name: topic.name.clone(), error: error::NONE, message: None, partitions }
                    }
                    Err(code) => refused(kafka::error_code(code), None),
                }
            }
        };
        results.push(result);
    }
    respond(header, |w| m::encode_create_topics(w, header.api_version, &results))
}

async fn delete_topics(context: &Caller, header: &RequestHeader, names: Vec<String>) -> Response {
    let mut results = Vec::with_capacity(names.len());
    for name in names {
        let result = start(context, Op::DeleteTopic(name.clone())).await.await.into_done();
        results.push((name, code(result)));
    }
    respond(header, |w| m::encode_delete_topics(w, header.api_version, &results))
}

// --------------------------------------------------------- DescribeConfigs

fn retention_value(value: Option<u64>) -> String {
    value.map_or_else(|| "-1".to_owned(), |v| v.to_string())
}

fn topic_configs(context: &ShardHandle, name: &str) -> Option<Vec<m::ConfigEntry>> {
    let catalog = context.catalog();
    let topic = catalog.topics.get(name)?;
    let config = &context.shared.config;
    let entry = |name, value: String, source, config_type| m::ConfigEntry { name, value, source, config_type };
    Some(vec![
        entry("cleanup.policy", "delete".into(), m::SOURCE_DEFAULT, m::CONFIG_TYPE_STRING),
        entry("retention.ms", retention_value(topic.retention_ms), m::SOURCE_DYNAMIC_TOPIC, m::CONFIG_TYPE_LONG),
        entry("retention.bytes", retention_value(topic.retention_bytes), m::SOURCE_DYNAMIC_TOPIC, m::CONFIG_TYPE_LONG),
        entry("segment.bytes", config.segment_bytes.to_string(), m::SOURCE_STATIC_BROKER, m::CONFIG_TYPE_INT),
        entry("max.message.bytes", batch::BATCH_BYTES_MAX.to_string(), m::SOURCE_STATIC_BROKER, m::CONFIG_TYPE_INT),
        entry("message.timestamp.type", "CreateTime".into(), m::SOURCE_DEFAULT, m::CONFIG_TYPE_STRING),
    ])
}

fn broker_configs(context: &ShardHandle) -> Vec<m::ConfigEntry> {
    let config = &context.shared.config;
    let entry =
        |name, value: String, config_type| m::ConfigEntry { name, value, source: m::SOURCE_STATIC_BROKER, config_type };
    vec![
        entry("num.partitions", config.kafka.default_partitions.to_string(), m::CONFIG_TYPE_INT),
        entry("auto.create.topics.enable", config.kafka.auto_create_topics.to_string(), m::CONFIG_TYPE_STRING),
        entry("log.retention.ms", retention_value(config.retention_ms), m::CONFIG_TYPE_LONG),
        entry("log.retention.bytes", retention_value(config.retention_bytes), m::CONFIG_TYPE_LONG),
        entry("log.segment.bytes", config.segment_bytes.to_string(), m::CONFIG_TYPE_INT),
        entry("message.max.bytes", batch::BATCH_BYTES_MAX.to_string(), m::CONFIG_TYPE_INT),
    ]
}

fn describe_configs(context: &Caller, header: &RequestHeader, resources: &[m::ConfigResource]) -> Response {
    let security = context.security();
    let results: Vec<m::DescribedResource<'_>> = resources
        .iter()
        .map(|resource| {
            let found = match resource.resource_type {
                m::RESOURCE_TOPIC
                    if !security.allows(
                        &context.principal,
                        Operation::Describe,
                        ResourceKind::Topic,
                        &resource.name,
                    ) =>
                {
                    Err(error::TOPIC_AUTHORIZATION_FAILED)
                }
                m::RESOURCE_TOPIC => topic_configs(context, &resource.name).ok_or(error::UNKNOWN_TOPIC_OR_PARTITION),
                m::RESOURCE_BROKER if resource.name.is_empty() || resource.name == NODE_ID.to_string() => {
                    Ok(broker_configs(context))
                }
                m::RESOURCE_BROKER => Err(error::INVALID_REQUEST),
                _ => Err(error::INVALID_REQUEST),
            };
            let (error, configs) = match found {
                Ok(mut configs) => {
                    if let Some(keys) = &resource.keys {
                        configs.retain(|config| keys.iter().any(|key| key == config.name));
                    }
                    (error::NONE, configs)
                }
                Err(error) => (error, Vec::new()),
            };
            m::DescribedResource {
                error,
                message: None,
                resource_type: resource.resource_type,
                name: &resource.name,
                configs,
            }
        })
        .collect();
    respond(header, |w| m::encode_describe_configs(w, header.api_version, &results))
}
