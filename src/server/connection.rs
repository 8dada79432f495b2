//! One client connection: the reader takes frames off the socket in order and
//! dispatches each (its synchronous part runs before the next frame is read, so
//! appends keep the connection's order); the writer sends responses in request
//! order as they complete. Pipelined requests overlap: a durable produce waiting
//! for its fsync round does not stop the next request from being appended.

use super::dispatch::{self, ResponseFuture};
use super::handle::ShardHandle;
use crate::io::{FileBytes, Stream};
use crate::protocol::{self, ErrorCode, FrameCheck};
use bytes::BytesMut;
use std::rc::Rc;
use std::sync::Arc;
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
    read_requests(&context, &stream, sender, protocol).await;
    let _ = writer.await;
}

/// The frame at the start of `buffer`; on a refusal, the correlation id to
/// answer (native only) before the connection closes.
fn check_frame(buffer: &[u8], protocol: Protocol) -> Result<FrameCheck, Option<u32>> {
    match protocol {
        Protocol::Native => protocol::check_request(buffer).map_err(|refused| refused.header.map(|h| h.correlation_id)),
        Protocol::Kafka => crate::kafka::check_frame(buffer).map_err(|_| None),
    }
}

async fn read_requests(
    context: &Rc<ShardHandle>,
    stream: &Stream,
    sender: mpsc::UnboundedSender<InFlight>,
    protocol: Protocol,
) {
    let count = Arc::new(Semaphore::new(IN_FLIGHT_REQUESTS_MAX));
    let bytes = Arc::new(Semaphore::new(IN_FLIGHT_UNITS_MAX));
    let mut buffer = BytesMut::with_capacity(READ_CHUNK_BYTES);
    loop {
        let want = loop {
            match check_frame(&buffer, protocol) {
                Ok(FrameCheck::Complete { frame_bytes }) => {
                    let frame = buffer.split_to(frame_bytes);
                    let units = (frame_bytes / IN_FLIGHT_UNIT_BYTES + 1) as u32;
                    let (Ok(count), Ok(bytes)) =
                        (count.clone().acquire_owned().await, bytes.clone().acquire_many_owned(units).await)
                    else {
                        return;
                    };
                    let response = match protocol {
                        Protocol::Native => dispatch::dispatch(context, frame).await,
                        Protocol::Kafka => match super::kafka::dispatch(context, frame).await {
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
                        let answer = dispatch::error_response(correlation_id, ErrorCode::TooLarge);
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
            Ok(0) | Err(_) => return,
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
