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

pub(crate) async fn serve(context: Rc<ShardHandle>, stream: Rc<Stream>) {
    let (sender, receiver) = mpsc::unbounded_channel::<InFlight>();
    let writer = crate::io::spawn_local(write_responses(stream.clone(), receiver));
    read_requests(&context, &stream, sender).await;
    let _ = writer.await;
}

async fn read_requests(context: &Rc<ShardHandle>, stream: &Stream, sender: mpsc::UnboundedSender<InFlight>) {
    let count = Arc::new(Semaphore::new(IN_FLIGHT_REQUESTS_MAX));
    let bytes = Arc::new(Semaphore::new(IN_FLIGHT_UNITS_MAX));
    let mut buffer = BytesMut::with_capacity(READ_CHUNK_BYTES);
    loop {
        let want = loop {
            match protocol::check_request(&buffer) {
                Ok(FrameCheck::Complete { frame_bytes }) => {
                    let frame = buffer.split_to(frame_bytes);
                    let units = (frame_bytes / IN_FLIGHT_UNIT_BYTES + 1) as u32;
                    let (Ok(count), Ok(bytes)) =
                        (count.clone().acquire_owned().await, bytes.clone().acquire_many_owned(units).await)
                    else {
                        return;
                    };
                    let response = dispatch::dispatch(context, frame).await;
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
                    if let Some(header) = refused.header {
                        let answer = dispatch::error_response(header.correlation_id, ErrorCode::TooLarge);
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
fn add_response(buffers: &mut Vec<FileBytes>, response: Option<dispatch::Response>) {
    if let Some(response) = response {
        buffers.push(FileBytes::Owned(response.frame));
        if !response.records.is_empty() {
            buffers.push(response.records);
        }
    }
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
        add_response(&mut buffers, first.response.await);
        // Responses that are already complete go out in the same writev; the
        // first one that is not stays next in line.
        while let Ok(mut next) = receiver.try_recv() {
            match futures_util::FutureExt::now_or_never(&mut next.response) {
                Some(more) => add_response(&mut buffers, more),
                None => {
                    waiting = Some(next);
                    break;
                }
            }
        }
        if buffers.is_empty() {
            continue;
        }
        if stream.write_all_vectored(buffers).await.is_err() {
            return;
        }
    }
}
