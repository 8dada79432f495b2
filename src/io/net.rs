//! Sockets and eventfds on the shard's io_uring.

use super::FileBytes;
use bytes::BytesMut;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use tokio_uring::buf::{BoundedBuf, Slice};

/// Buffers one `writev` takes at most (Linux's IOV_MAX is 1024).
pub const WRITEV_BUFFERS_MAX: usize = 512;

/// Pending connections the kernel queues per listener (listen(2) backlog).
pub const LISTEN_BACKLOG: i32 = 1024;

/// A listening TCP socket. With `reuse_port`, several shards bind the same
/// address and the kernel spreads connections among them.
pub struct Listener {
    inner: tokio_uring::net::TcpListener,
    local: SocketAddr,
    fd: i32,
}

impl Listener {
    /// Takes over a socket bound with [`bind_std`] (possibly on another thread).
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<Listener> {
        let local = listener.local_addr()?;
        let fd = listener.as_raw_fd();
        Ok(Listener { inner: tokio_uring::net::TcpListener::from_std(listener), local, fd })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub async fn accept(&self) -> io::Result<(Stream, SocketAddr)> {
        let (stream, peer) = self.inner.accept().await?;
        stream.set_nodelay(true)?;
        Ok((Stream { inner: stream }, peer))
    }

    /// Stops the listener: a pending `accept` completes with an error, so the
    /// accept loop can end without cancelling an in-flight operation.
    pub fn stop(&self) {
        // SAFETY: `fd` is the listener's descriptor, open for as long as `self`;
        // shutdown(2) does not close it, it only wakes pending accepts.
        unsafe {
            libc::shutdown(self.fd, libc::SHUT_RDWR);
        }
    }
}

/// Binds a TCP listener with SO_REUSEADDR (and SO_REUSEPORT when asked).
pub fn bind_std(address: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let domain = if address.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// A connected TCP stream.
pub struct Stream {
    inner: tokio_uring::net::TcpStream,
}

impl Stream {
    /// Reads into the spare capacity of `buffer` (after its length); returns the
    /// bytes read (0 at end of stream) and the buffer.
    pub async fn read(&self, mut buffer: BytesMut, want: usize) -> (io::Result<usize>, BytesMut) {
        buffer.reserve(want);
        let start = buffer.len();
        let end = buffer.capacity();
        let (result, slice) = self.inner.read(BoundedBuf::slice(buffer, start..end)).await;
        (result, slice.into_inner())
    }

    /// Writes every buffer, in order, with as few `writev`s as the socket
    /// allows (at most [`WRITEV_BUFFERS_MAX`] buffers each). The buffers are
    /// consumed: nothing is copied into one.
    pub async fn write_all_vectored(&self, buffers: Vec<FileBytes>) -> io::Result<()> {
        let mut pending: std::collections::VecDeque<Slice<FileBytes>> =
            buffers.into_iter().filter(|b| !b.is_empty()).map(|b| BoundedBuf::slice(b, ..)).collect();
        while !pending.is_empty() {
            let take = pending.len().min(WRITEV_BUFFERS_MAX);
            let batch: Vec<Slice<FileBytes>> = pending.drain(..take).collect();
            let (result, batch) = self.inner.writev(batch).await;
            let mut written = result?;
            if written == 0 {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "the peer stopped reading"));
            }
            // Put back what is left, the partly written buffer first.
            let mut rest = Vec::new();
            for slice in batch {
                let length = slice.bytes_init();
                if written >= length {
                    written -= length;
                    continue;
                }
                let (begin, end) = (slice.begin() + written, slice.end());
                written = 0;
                rest.push(BoundedBuf::slice(slice.into_inner(), begin..end));
            }
            for slice in rest.into_iter().rev() {
                pending.push_front(slice);
            }
        }
        Ok(())
    }

    pub async fn write_all(&self, bytes: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let (result, slice) = self.inner.write_all(bytes).await;
        (result, slice)
    }

    /// Ends writing: the peer reads the end of the stream after what was sent.
    pub fn finish_writing(&self) {
        let _ = self.inner.shutdown(std::net::Shutdown::Write);
    }

    /// Ends reading: a pending read returns 0, so the connection drains and closes.
    pub fn stop_reading(&self) {
        let _ = self.inner.shutdown(std::net::Shutdown::Read);
    }
}

/// An eventfd whose reads go through io_uring: how a sleeping shard is woken.
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd(2) with valid flags; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Ok(EventFd { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Adds one to the counter (any thread).
    pub fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd; an eventfd
        // write can only fail on counter overflow, which leaves it signalled anyway.
        unsafe {
            libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8);
        }
    }

    /// A reader for the owning shard's runtime.
    pub fn reader(&self) -> io::Result<EventFdReader> {
        let duplicate = self.fd.try_clone()?;
        Ok(EventFdReader { file: tokio_uring::fs::File::from_std(std::fs::File::from(duplicate)) })
    }
}

/// Waits for [`EventFd::signal`] through io_uring.
pub struct EventFdReader {
    file: tokio_uring::fs::File,
}

impl EventFdReader {
    /// Waits until the counter is non-zero and resets it.
    pub async fn wait(&self) -> io::Result<()> {
        let (result, _) = self.file.read_at(vec![0u8; 8], 0).await;
        result.map(drop)
    }
}
