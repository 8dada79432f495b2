//! One client connection: the reader takes frames off the socket in order and
//! dispatches each (its synchronous part runs before the next frame is read, so
//! appends keep the connection's order); the writer sends responses in request
//! order as they complete. Pipelined requests overlap: a durable produce waiting
//! for its fsync round does not stop the next request from being appended.

use super::dispatch::{self, ResponseFuture};
use super::handle::ShardHandle;
use super::session::{Session, PRE_AUTH_REQUEST_BYTES_MAX};
use crate::io::{FileBytes, Stream};
use crate::protocol::{self, ErrorCode, FrameCheck};
use bytes::BytesMut;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Requests one connection may have in flight (read, not yet answered); the
/// reader stops reading the socket at this limit.
pub const IN_FLIGHT_REQUESTS_MAX: usize = 1024;
/// Bytes of requests one connection may have in flight, in units of
/// [`IN_FLIGHT_UNIT_BYTES`].
pub const IN_FLIGHT_BYTES_MAX: usize = 128 * 1024 * 1024;
const IN_FLIGHT_UNIT_BYTES: usize = 64 * 1024;
const IN_FLIGHT_UNITS_MAX: usize = IN_FLIGHT_BYTES_MAX / IN_FLIGHT_UNIT_BYTES;
/// Bytes asked of the socket per read when no frame is pending.
pub const READ_CHUNK_BYTES: usize = 256 * 1024;

const _: () = assert!(protocol::REQUEST_BYTES_MAX / IN_FLIGHT_UNIT_BYTES < IN_FLIGHT_UNITS_MAX);

struct InFlight {
    response: ResponseFuture,
    _count: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

/// The protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Native,
    Kafka,
}

pub(crate) async fn serve(context: Rc<ShardHandle>, stream: Rc<Stream>, protocol: Protocol) {
    let (sender, receiver) = mpsc::unbounded_channel::<InFlight>();
    let writer = crate::io::spawn_local(write_responses(stream.clone(), receiver));
    let session = Session::new(&context);
    read_requests(&context, &session, &stream, sender, protocol).await;
    let _ = writer.await;
    if stream.is_tls() {
        // A close_notify, so a TLS client tells this end from a cut.
        stream.finish_writing().await;
    }
}

/// The most bytes the answer to `frame` can hold: a fetch's `max_bytes`
/// (as the server clamps it), 0 for requests with small answers. It counts
/// against the connection's in-flight budget ([`IN_FLIGHT_BYTES_MAX`]) with
/// the request itself, so a peer that pipelines fetches and stops reading
/// makes the server hold (and map) at most that much for it, and stops being
/// read, instead of holding an answer for every request it sent.
fn answer_bytes_max(frame: &[u8], protocol: Protocol) -> usize {
    match protocol {
        Protocol::Native => {
            let body = frame.get(protocol::LENGTH_BYTES + protocol::REQUEST_HEADER_BYTES..).unwrap_or_default();
            match frame.get(protocol::LENGTH_BYTES..).map(protocol::parse_request_header) {
                Some(Ok(header)) if header.api_key == protocol::api::FETCH => {
                    protocol::fetch::FetchRequest::decode(body).map_or(0, |r| r.max_bytes as usize)
                }
                Some(Ok(header)) if header.api_key == protocol::api::SHARE_FETCH => {
                    protocol::share::ShareFetchRequest::decode(body)
                        .map_or(0, |r| (r.max_bytes as usize).min(protocol::FETCH_BYTES_MAX))
                }
                _ => 0,
            }
        }
        Protocol::Kafka => {
            let request = frame.get(crate::kafka::SIZE_BYTES..).unwrap_or_default();
            match crate::kafka::parse_header(request) {
                // Fetch 3+: max_bytes follows replica_id, max_wait_ms and min_bytes.
                Ok((header, header_bytes)) if header.api_key == crate::kafka::api::FETCH && header.api_version >= 3 => {
                    let field = request.get(header_bytes + 12..header_bytes + 16).unwrap_or_default();
                    <[u8; 4]>::try_from(field).map_or(0, |b| i32::from_be_bytes(b).max(0) as usize)
                }
                Ok((header, _)) if header.api_key == crate::kafka::api::FETCH => protocol::FETCH_BYTES_MAX,
                _ => 0,
            }
        }
    }
}

/// How long a refused connection may take to send its first request header,
/// and then to close its end after the answer.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);
/// Bytes of a refused connection read (and dropped) after its answer, so that
/// it closes with a FIN (unread bytes would make the close a reset).
const REFUSAL_DRAIN_BYTES_MAX: usize = 64 * 1024;
const REFUSAL_DRAIN_CHUNK_BYTES: usize = 4 * 1024;

/// A connection past the broker's `max_connections`. Native: once the
/// first request's header arrives (within [`REFUSAL_WAIT`]), it is answered
/// with `ResourceLimit`, the write side is shut, and what the client still
/// sends is read and dropped until it closes, so it reads the answer and then
/// the end of the stream. Kafka has no such answer (Kafka's broker delays the
/// accept instead): the connection closes at once and clients retry.
pub(crate) async fn refuse(stream: Stream, protocol: Protocol) {
    if protocol == Protocol::Kafka {
        return;
    }
    let deadline = crate::io::sleep(REFUSAL_WAIT);
    futures_util::pin_mut!(deadline);
    let wanted = protocol::LENGTH_BYTES + protocol::REQUEST_HEADER_BYTES;
    let mut buffer = BytesMut::with_capacity(wanted);
    while buffer.len() < wanted {
        let want = wanted - buffer.len();
        match read_before(&stream, buffer, want, &mut deadline).await {
            Some(returned) => buffer = returned,
            None => return,
        }
    }
    let Some(header) = buffer.get(protocol::LENGTH_BYTES..wanted).and_then(|h| protocol::parse_request_header(h).ok())
    else {
        return;
    };
    let answer = dispatch::error_response(header.correlation_id, ErrorCode::ResourceLimit);
    if stream.write_all(answer).await.is_err() {
        return;
    }
    stream.finish_writing().await;
    let deadline = crate::io::sleep(REFUSAL_WAIT);
    futures_util::pin_mut!(deadline);
    let mut drained = 0;
    let mut buffer = BytesMut::with_capacity(REFUSAL_DRAIN_CHUNK_BYTES);
    while drained < REFUSAL_DRAIN_BYTES_MAX {
        buffer.clear();
        match read_before(&stream, buffer, REFUSAL_DRAIN_CHUNK_BYTES, &mut deadline).await {
            Some(returned) => {
                drained += returned.len();
                buffer = returned;
            }
            None => return,
        }
    }
}

/// One read into `buffer`, unless `deadline` comes first; `None` at the end
/// of the stream, on an error or at the deadline.
async fn read_before(
    stream: &Stream,
    buffer: BytesMut,
    want: usize,
    deadline: &mut (impl std::future::Future<Output = ()> + Unpin),
) -> Option<BytesMut> {
    let read = stream.read(buffer, want);
    futures_util::pin_mut!(read);
    match futures_util::future::select(read, deadline).await {
        futures_util::future::Either::Left(((Ok(read), returned), _)) if read > 0 => Some(returned),
        futures_util::future::Either::Left(_) => None,
        futures_util::future::Either::Right(((), read)) => {
            // The read is still in the ring and holds the socket open: shutting
            // the read side completes it (with 0), so the socket can close.
            stream.stop_reading();
            let _ = read.await;
            None
        }
    }
}

/// The frame at the start of `buffer`; on a refusal, the correlation id to
/// answer (native only) before the connection closes.
fn check_frame(buffer: &[u8], protocol: Protocol) -> Result<FrameCheck, Option<u32>> {
    match protocol {
        Protocol::Native => protocol::check_request(buffer).map_err(|refused| refused.header.map(|h| h.correlation_id)),
        Protocol::Kafka => crate::kafka::check_frame(buffer).map_err(|_| None),
    }
}

/// The correlation id of the native request header at the start of
/// `buffer`, if it has arrived.
fn native_correlation_id(buffer: &[u8]) -> Option<u32> {
    let header = buffer.get(protocol::LENGTH_BYTES..protocol::LENGTH_BYTES + protocol::REQUEST_HEADER_BYTES)?;
    protocol::parse_request_header(header).ok().map(|h| h.correlation_id)
}

async fn read_requests(
    context: &Rc<ShardHandle>,
    session: &Session,
    stream: &Stream,
    sender: mpsc::UnboundedSender<InFlight>,
    protocol: Protocol,
) {
    let count = Arc::new(Semaphore::new(IN_FLIGHT_REQUESTS_MAX));
    let bytes = Arc::new(Semaphore::new(IN_FLIGHT_UNITS_MAX));
    let mut buffer = BytesMut::with_capacity(READ_CHUNK_BYTES);
    loop {
        let want = loop {
            let mut checked = check_frame(&buffer, protocol);
            // Before authentication only small frames are read; a larger one
            // is refused as a bad length is (answered when native, then closed).
            let size = match &checked {
                Ok(FrameCheck::Complete { frame_bytes }) => *frame_bytes,
                Ok(FrameCheck::Incomplete { needed }) => *needed,
                Err(_) => 0,
            };
            let before_authentication = size > PRE_AUTH_REQUEST_BYTES_MAX && !session.is_authenticated();
            if before_authentication {
                checked = Err(match protocol {
                    Protocol::Native => native_correlation_id(&buffer),
                    Protocol::Kafka => None,
                });
            }
            match checked {
                Ok(FrameCheck::Complete { frame_bytes }) => {
                    let frame = buffer.split_to(frame_bytes);
                    // The request's bytes and the most its answer can hold.
                    let cost = frame_bytes.saturating_add(answer_bytes_max(&frame, protocol));
                    let units = (cost / IN_FLIGHT_UNIT_BYTES + 1).min(IN_FLIGHT_UNITS_MAX) as u32;
                    let (Ok(count), Ok(bytes)) =
                        (count.clone().acquire_owned().await, bytes.clone().acquire_many_owned(units).await)
                    else {
                        return;
                    };
                    let response = match protocol {
                        Protocol::Native => dispatch::dispatch(context, session, frame).await,
                        Protocol::Kafka => match super::kafka::dispatch(context, session, frame).await {
                            Ok(response) => response,
                            // Unreadable: what was read before is still answered.
                            Err(super::kafka::Close) => return,
                        },
                    };
                    // Run it as its own task, so it makes progress (a long poll's
                    // clock starts now) while earlier responses are still pending.
                    let task = crate::io::spawn_local(response);
                    let response: ResponseFuture = Box::pin(async move { task.await.unwrap_or(None) });
                    if sender.send(InFlight { response, _count: count, _bytes: bytes }).is_err() {
                        return;
                    }
                }
                Ok(FrameCheck::Incomplete { needed }) => {
                    break (needed - buffer.len()).max(READ_CHUNK_BYTES.min(needed))
                }
                Err(refused) => {
                    // The stream cannot be re-synchronised after a bad length:
                    // answer if the header arrived, then close.
                    if let Some(correlation_id) = refused {
                        let code =
                            if before_authentication { ErrorCode::AuthenticationRequired } else { ErrorCode::TooLarge };
                        let answer = dispatch::error_response(correlation_id, code);
                        let _ = sender.send(InFlight {
                            response: Box::pin(async move { Some(answer.into()) }),
                            _count: match count.clone().acquire_owned().await {
                                Ok(permit) => permit,
                                Err(_) => return,
                            },
                            _bytes: match bytes.clone().acquire_owned().await {
                                Ok(permit) => permit,
                                Err(_) => return,
                            },
                        });
                    }
                    return;
                }
            }
        };
        let (result, returned) = stream.read(buffer, want).await;
        buffer = returned;
        match result {
            Ok(0) => return,
            Err(error) => {
                if stream.is_tls() && error.kind() == std::io::ErrorKind::InvalidData {
                    context.shared.counters.tls_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                return;
            }
            Ok(_) => {}
        }
    }
}

/// A response's buffers, in the order they go out (a fetch's records after
/// its frame, uncopied).
/// True when the connection closes after it.
fn add_response(buffers: &mut Vec<FileBytes>, response: Option<dispatch::Response>) -> bool {
    let Some(response) = response else { return false };
    buffers.extend(response.parts.into_iter().filter(|part| !part.is_empty()));
    response.close
}

async fn write_responses(stream: Rc<Stream>, mut receiver: mpsc::UnboundedReceiver<InFlight>) {
    let mut waiting: Option<InFlight> = None;
    loop {
        let first = match waiting.take() {
            Some(in_flight) => in_flight,
            None => match receiver.recv().await {
                Some(in_flight) => in_flight,
                None => return,
            },
        };
        let mut buffers = Vec::new();
        let mut close = add_response(&mut buffers, first.response.await);
        // Responses that are already complete go out in the same writev; the
        // first one that is not stays next in line.
        while let (false, Ok(mut next)) = (close, receiver.try_recv()) {
            match futures_util::FutureExt::now_or_never(&mut next.response) {
                Some(more) => close |= add_response(&mut buffers, more),
                None => {
                    waiting = Some(next);
                    break;
                }
            }
        }
        if !buffers.is_empty() && stream.write_all_vectored(buffers).await.is_err() {
            return;
        }
        if close {
            stream.stop_reading();
            return;
        }
    }
}
