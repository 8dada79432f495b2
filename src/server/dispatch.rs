//! The native protocol's front end: decodes one request frame into an
//! [`Op`], starts it through the [`service`], and encodes the reply. No
//! operation's logic lives here. Awaiting [`dispatch`] performs the ordered
//! part (appends, pushes into rings, waiting while a ring is full); the future
//! it returns completes the response, or `None` when no response is sent
//! (produce with acks 0).

use super::handle::ShardHandle;
use super::message::{Op, Reply, ReplyFuture};
use super::service;
use super::session::Session;
use crate::io::FileBytes;
use crate::log::Acks;
use crate::protocol::fetch::{FetchRequest, FetchResponse};
use crate::protocol::group::{self, GroupRequest};
use crate::protocol::hello::{ApiRange, HelloRequest, HelloResponse};
use crate::protocol::metadata::MetadataRequest;
use crate::protocol::offsets::ListOffsetsRequest;
use crate::protocol::produce::{ProduceRequest, ProduceResponse, ProduceResult, ACKS_NONE};
use crate::protocol::producer_id::{InitProducerIdRequest, InitProducerIdResponse};
use crate::protocol::security::{AuthenticateRequest, AuthenticateResponse};
use crate::protocol::share::{self, ShareAckRequest, ShareFetchRequest};
use crate::protocol::topic::{CreateTopicRequest, DeleteTopicRequest};
use crate::protocol::{self, api, ErrorCode, RequestHeader};
use crate::security::Principal;
use bytes::{Buf, BytesMut};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

pub(crate) type ResponseFuture = Pin<Box<dyn Future<Output = Option<Response>>>>;

/// A response as the connection writes it: its buffers in order (a fetch's
/// records after its frame head, uncopied; the head's size field counts them
/// all), and whether the connection closes after it.
pub(crate) struct Response {
    pub parts: Vec<FileBytes>,
    pub close: bool,
}

impl Response {
    pub fn frame(frame: Vec<u8>) -> Response {
        Response { parts: vec![FileBytes::Owned(frame)], close: false }
    }

    pub fn parts(parts: Vec<FileBytes>) -> Response {
        Response { parts, close: false }
    }

    /// Nothing is sent, and the connection closes.
    pub fn close() -> Response {
        Response { parts: Vec::new(), close: true }
    }
}

impl From<Vec<u8>> for Response {
    fn from(frame: Vec<u8>) -> Response {
        Response::frame(frame)
    }
}

/// How a reply becomes a response.
#[derive(Clone, Copy)]
enum Encode {
    Frame(fn(u32, Reply) -> Vec<u8>),
    Split(fn(u32, Reply) -> Response),
}

impl Encode {
    fn run(self, id: u32, reply: Reply) -> Response {
        match self {
            Encode::Frame(encode) => encode(id, reply).into(),
            Encode::Split(encode) => encode(id, reply),
        }
    }
}

/// A response frame with an error code and an empty body.
pub(crate) fn error_response(correlation_id: u32, code: ErrorCode) -> Vec<u8> {
    protocol::finish_frame(protocol::response_frame(correlation_id, code, 0))
}

fn ready(response: impl Into<Response>) -> ResponseFuture {
    let response = response.into();
    Box::pin(async move { Some(response) })
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
pub(crate) async fn dispatch(context: &Rc<ShardHandle>, session: &Session, mut frame: BytesMut) -> ResponseFuture {
    let header_end = protocol::LENGTH_BYTES + protocol::REQUEST_HEADER_BYTES;
    let Ok(header) = protocol::parse_request_header(frame.get(protocol::LENGTH_BYTES..).unwrap_or(&[])) else {
        return Box::pin(async { None });
    };
    let body = frame.split_off(header_end.min(frame.len()));
    // A produce with acks 0 never gets a response, whatever happens to it, so a
    // client that sent it does not wait for one.
    let silent = header.api_key == api::PRODUCE && body.first() == Some(&ACKS_NONE);
    let response = dispatch_checked(context, session, header, body).await;
    if silent {
        return Box::pin(async move {
            response.await;
            None
        });
    }
    response
}

/// A request decoded into its op, with how its reply is encoded.
enum Decoded {
    /// Answered at once, by this front end (Hello, Metadata) or with an error.
    Answer(Vec<u8>),
    /// Started through the service; control ops finish before the next frame.
    Start { op: Op, encode: Encode, control: bool },
}

fn decoded<T, E>(decoded: Result<T, E>, id: u32, into: impl FnOnce(T) -> Decoded) -> Decoded {
    match decoded {
        Ok(request) => into(request),
        Err(_) => Decoded::Answer(error_response(id, ErrorCode::MalformedRequest)),
    }
}

fn start(op: Op, encode: fn(u32, Reply) -> Vec<u8>) -> Decoded {
    Decoded::Start { op, encode: Encode::Frame(encode), control: false }
}

fn decode(context: &ShardHandle, principal: &Principal, header: &RequestHeader, body: &[u8]) -> Decoded {
    let id = header.correlation_id;
    match header.api_key {
        api::HELLO => decoded(HelloRequest::decode(body), id, |_| Decoded::Answer(hello(context, id))),
        api::METADATA => decoded(MetadataRequest::decode(body), id, |request| {
            let (catalog, security) = (context.catalog(), context.security());
            let metadata = service::metadata_for(&context.shared, &catalog, &request.topics, &security, principal);
            Decoded::Answer(metadata.encode(id))
        }),
        api::USER_UPSERT | api::USER_DELETE | api::USER_LIST | api::ACL_ADD | api::ACL_REMOVE | api::ACL_LIST => {
            Decoded::Answer(administer(context, principal, header, body))
        }
        // Control requests finish before the next request on the connection
        // starts, so a produce pipelined behind a create finds the topic.
        api::CREATE_TOPIC => decoded(CreateTopicRequest::decode(body), id, |request| Decoded::Start {
            op: Op::CreateTopic(request),
            encode: Encode::Frame(encode_done),
            control: true,
        }),
        api::DELETE_TOPIC => decoded(DeleteTopicRequest::decode(body), id, |request| Decoded::Start {
            op: Op::DeleteTopic(request.name),
            encode: Encode::Frame(encode_done),
            control: true,
        }),
        api::LIST_OFFSETS => decoded(ListOffsetsRequest::decode(body), id, |request| {
            start(Op::ListOffsets(request), |id, reply| match reply.into_offsets() {
                Ok(response) => response.encode(id),
                Err(code) => error_response(id, code),
            })
        }),
        api::FETCH => decoded(FetchRequest::decode(body), id, |request| Decoded::Start {
            op: Op::Fetch(request),
            encode: Encode::Split(encode_fetch),
            control: false,
        }),
        api::INIT_PRODUCER_ID => decoded(InitProducerIdRequest::decode(body), id, |request| {
            start(Op::InitProducerId(request.name), |id, reply| match reply.into_producer_id() {
                Ok((producer_id, epoch)) => InitProducerIdResponse { producer_id, epoch }.encode(id),
                Err(code) => error_response(id, code),
            })
        }),
        api::SHARE_FETCH => decoded(ShareFetchRequest::decode(body), id, |request| {
            start(Op::ShareFetch(request), |id, reply| match reply.into_share_fetch() {
                Ok(response) => response.encode(id),
                Err(code) => error_response(id, code),
            })
        }),
        api::SHARE_ACKNOWLEDGE => decoded(ShareAckRequest::decode(body), id, |request| {
            start(Op::ShareAck(request), |id, reply| match reply.into_share_ack() {
                Ok(errors) => share::encode_ack_response(id, &errors),
                Err(code) => error_response(id, code),
            })
        }),
        api::LIST_GROUPS if !body.is_empty() => Decoded::Answer(error_response(id, ErrorCode::MalformedRequest)),
        api::LIST_GROUPS => start(Op::ListGroups, |id, reply| match reply.into_groups() {
            Ok(groups) => group::encode_list_groups_response(id, &groups),
            Err(code) => error_response(id, code),
        }),
        key @ (api::JOIN_GROUP
        | api::HEARTBEAT
        | api::LEAVE_GROUP
        | api::OFFSET_COMMIT
        | api::OFFSET_FETCH
        | api::DESCRIBE_GROUP) => decoded(GroupRequest::decode(key, body), id, |request| {
            start(Op::Group(request), |id, reply| match reply.into_group() {
                Ok(response) => response.encode(id),
                Err(code) => error_response(id, code),
            })
        }),
        _ => Decoded::Answer(error_response(id, ErrorCode::UnknownApi)),
    }
}

fn encode_done(id: u32, reply: Reply) -> Vec<u8> {
    error_response(id, reply.into_done().err().unwrap_or(ErrorCode::None))
}

fn encode_fetch(id: u32, reply: Reply) -> Response {
    match reply.into_fetch() {
        Ok(data) => {
            let response = FetchResponse {
                high_watermark: data.high_watermark as i64,
                earliest: data.earliest as i64,
                records: &data.records,
            };
            Response::parts(vec![FileBytes::Owned(response.encode_head(id)), data.records])
        }
        Err(code) => error_response(id, code).into(),
    }
}

/// An answer after which the connection closes.
fn closing(frame: Vec<u8>) -> ResponseFuture {
    let mut response = Response::frame(frame);
    response.close = true;
    Box::pin(async move { Some(response) })
}

async fn dispatch_checked(
    context: &Rc<ShardHandle>,
    session: &Session,
    header: RequestHeader,
    body: BytesMut,
) -> ResponseFuture {
    let id = header.correlation_id;
    if let Some(code) = supported(&header) {
        return ready(error_response(id, code));
    }
    if header.api_key == api::AUTHENTICATE {
        return authenticate(context, session, id, &body);
    }
    let Some(principal) = session.principal() else {
        // Before authentication only Hello and AUTHENTICATE are answered.
        if header.api_key == api::HELLO {
            return ready(hello(context, id));
        }
        return closing(error_response(id, ErrorCode::AuthenticationRequired));
    };
    if context.is_stopping() {
        return ready(error_response(id, ErrorCode::ShuttingDown));
    }
    if header.api_key == api::PRODUCE {
        return produce(context, &principal, id, body).await;
    }
    match decode(context, &principal, &header, &body) {
        Decoded::Answer(bytes) => ready(bytes),
        Decoded::Start { op, encode, control: true } => {
            let reply = service::start(context, &principal, op).await.await;
            ready(encode.run(id, reply))
        }
        Decoded::Start { op, encode, control: false } => {
            let reply = service::start(context, &principal, op).await;
            Box::pin(async move { Some(encode.run(id, reply.await)) })
        }
    }
}

/// One AUTHENTICATE step; a failure is answered and closes the connection.
fn authenticate(context: &ShardHandle, session: &Session, id: u32, body: &[u8]) -> ResponseFuture {
    let Ok(request) = AuthenticateRequest::decode(body) else {
        return closing(error_response(id, ErrorCode::MalformedRequest));
    };
    let started = match session.mechanism() {
        Some(mechanism) if mechanism == request.mechanism => Ok(()),
        Some(_) => Err(crate::security::scram::SaslError::Malformed("the mechanism changed mid-exchange")),
        None => session.begin(&request.mechanism),
    };
    match started.and_then(|()| session.step(context, &request.message)) {
        Ok((message, done)) => ready(AuthenticateResponse { done, message }.encode(id)),
        Err(error) => {
            eprintln!("ringmq: a connection failed to authenticate: {error}");
            closing(error_response(id, ErrorCode::AuthenticationFailed))
        }
    }
}

/// Users and ACLs (apis 49–54), for super users.
fn administer(context: &ShardHandle, principal: &Principal, header: &RequestHeader, body: &[u8]) -> Vec<u8> {
    use crate::protocol::security as s;
    use crate::security as sec;
    let id = header.correlation_id;
    let done = |result: Result<(), ErrorCode>| error_response(id, result.err().unwrap_or(ErrorCode::None));
    let malformed = || error_response(id, ErrorCode::MalformedRequest);
    match header.api_key {
        api::USER_UPSERT => match s::UserUpsertRequest::decode(body) {
            Ok(request) => done(service::change_security(context, principal, |security| {
                sec::upsert_user(security, &request.name, request.credential)
            })),
            Err(_) => malformed(),
        },
        api::USER_DELETE => match s::decode_name_request(body) {
            Ok(name) => {
                done(service::change_security(context, principal, |security| sec::remove_user(security, &name)))
            }
            Err(_) => malformed(),
        },
        api::ACL_ADD | api::ACL_REMOVE => match s::decode_acl_request(body) {
            Ok(acl) if header.api_key == api::ACL_ADD => {
                done(service::change_security(context, principal, |security| sec::add_acl(security, acl)))
            }
            Ok(acl) => done(service::change_security(context, principal, |security| sec::remove_acl(security, &acl))),
            Err(_) => malformed(),
        },
        api::USER_LIST | api::ACL_LIST if !body.is_empty() => malformed(),
        api::USER_LIST => match service::read_security(context, principal) {
            Ok(security) => s::encode_user_list(id, &security.users.keys().map(String::as_str).collect::<Vec<_>>()),
            Err(code) => error_response(id, code),
        },
        _ => match service::read_security(context, principal) {
            Ok(security) => s::encode_acl_list(id, &security.acls),
            Err(code) => error_response(id, code),
        },
    }
}

fn hello(context: &ShardHandle, id: u32) -> Vec<u8> {
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

async fn produce(context: &Rc<ShardHandle>, principal: &Principal, id: u32, body: BytesMut) -> ResponseFuture {
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
    let mut replies: Vec<ReplyFuture> = Vec::with_capacity(entries.len());
    for (topic, partition, batch_position, length) in entries {
        rest.advance(batch_position - position);
        let batch = rest.split_to(length);
        position = batch_position + length;
        replies.push(service::start(context, principal, Op::Produce { topic, partition, batch, acks }).await);
    }
    Box::pin(async move {
        let waits = replies.into_iter().map(|reply| async move {
            match reply.await.into_produce() {
                Ok(base_offset) => ProduceResult { error: 0, base_offset: base_offset as i64 },
                Err(code) => ProduceResult { error: code as u16, base_offset: -1 },
            }
        });
        let results = futures_util::future::join_all(waits).await;
        (acks != Acks::None).then(|| ProduceResponse { results }.encode(id).into())
    })
}
