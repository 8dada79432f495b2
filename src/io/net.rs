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
        Ok((Stream { inner: stream, tls: None }, peer))
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

/// Ciphertext bytes asked of the socket per read on a busy TLS connection
/// (one whose last read filled its buffer).
pub const TLS_READ_BYTES: usize = 256 * 1024;
/// The same for a connection whose reads are small: one TLS record and more.
pub const TLS_READ_IDLE_BYTES: usize = 17 * 1024;
/// Plaintext handed to TLS at a time when writing: the ciphertext of this
/// much is what one socket write carries.
pub const TLS_WRITE_BYTES: usize = 256 * 1024;

/// A connected TCP stream, plain or TLS (server side).
pub struct Stream {
    inner: tokio_uring::net::TcpStream,
    tls: Option<Tls>,
}

/// The TLS state of a server connection. Its reader and its writer are two
/// tasks on one thread: each borrows the session only between awaits, and
/// socket writes of TLS records (handshake and alerts from the reader,
/// responses from the writer) take `sending`, so records leave in the order
/// rustls made them.
struct Tls {
    session: std::cell::RefCell<rustls::ServerConnection>,
    sending: tokio::sync::Mutex<()>,
    /// The ciphertext buffer, kept between reads.
    received: std::cell::Cell<Option<Vec<u8>>>,
}

impl Stream {
    /// Serves TLS on this connection with `config`: the handshake happens on
    /// the first read, and every byte read or written afterwards is
    /// decrypted or encrypted.
    pub fn into_tls(self, config: std::sync::Arc<rustls::ServerConfig>) -> io::Result<Stream> {
        let mut session = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
        // Writes are bounded by TLS_WRITE_BYTES per round instead.
        session.set_buffer_limit(None);
        let tls = Tls {
            session: std::cell::RefCell::new(session),
            sending: tokio::sync::Mutex::new(()),
            received: std::cell::Cell::new(None),
        };
        Ok(Stream { inner: self.inner, tls: Some(tls) })
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Reads into the spare capacity of `buffer` (after its length); returns the
    /// bytes read (0 at end of stream) and the buffer. Under TLS, the bytes
    /// are plaintext, and may be more than `want`.
    pub async fn read(&self, mut buffer: BytesMut, want: usize) -> (io::Result<usize>, BytesMut) {
        if let Some(tls) = &self.tls {
            let result = self.read_tls(tls, &mut buffer, want).await;
            return (result, buffer);
        }
        buffer.reserve(want);
        let start = buffer.len();
        let end = buffer.capacity();
        let (result, slice) = self.inner.read(BoundedBuf::slice(buffer, start..end)).await;
        (result, slice.into_inner())
    }

    async fn read_tls(&self, tls: &Tls, buffer: &mut BytesMut, want: usize) -> io::Result<usize> {
        let start = buffer.len();
        buffer.reserve(want);
        loop {
            // Plaintext already decrypted goes first.
            let closed = take_plaintext(&mut tls.session.borrow_mut(), buffer)?;
            if buffer.len() > start || closed {
                return Ok(buffer.len() - start);
            }
            let mut ciphertext = tls.received.take().unwrap_or_else(|| Vec::with_capacity(TLS_READ_IDLE_BYTES));
            ciphertext.clear();
            let (result, returned) = self.inner.read(ciphertext).await;
            let read = result?;
            if read == 0 {
                // The peer closed without close_notify. Frames carry their
                // own lengths, so nothing can be cut short unnoticed.
                return Ok(0);
            }
            let mut unread = returned.get(..read).unwrap_or_default();
            let failed = {
                let mut session = tls.session.borrow_mut();
                let mut failed = None;
                let mut closed = false;
                while !unread.is_empty() && failed.is_none() && !closed {
                    match session.read_tls(&mut unread) {
                        Err(error) => failed = Some(error),
                        // After a close_notify rustls takes nothing more:
                        // what follows it is ignored (and must not be
                        // offered again, or this loop would never end).
                        Ok(0) => closed = true,
                        Ok(_) => {
                            if let Err(error) = session.process_new_packets() {
                                // rustls has queued the alert that tells the peer why.
                                failed = Some(io::Error::new(io::ErrorKind::InvalidData, error));
                            }
                        }
                    }
                    // Take the plaintext now: rustls buffers little of it.
                    if let Err(error) = take_plaintext(&mut session, buffer) {
                        failed = failed.or(Some(error));
                    }
                }
                failed
            };
            // A connection that fills its buffer keeps a large one; one
            // that reads little keeps a small one (idle TLS connections
            // are many: 10,000 of them must not hold 256 KiB each).
            let keep = if read == returned.capacity() { TLS_READ_BYTES } else { TLS_READ_IDLE_BYTES };
            tls.received.set(Some(if returned.capacity() == keep { returned } else { Vec::with_capacity(keep) }));
            // Handshake messages, session tickets, alerts. When the writer
            // is sending, it sends these too (it drains everything queued
            // before it lets go), so the reader never waits on the writer:
            // a peer that writes without reading stalls only its own answers.
            let sent = if tls.session.borrow().wants_write() {
                match tls.sending.try_lock() {
                    Ok(_sending) => self.send_queued(tls).await,
                    Err(_) => Ok(()),
                }
            } else {
                Ok(())
            };
            // A TLS failure is reported as such even if its alert could not be sent.
            if let Some(error) = failed {
                return Err(error);
            }
            sent?;
        }
    }

    /// Sends whatever TLS records the session has queued; `sending` is held.
    async fn send_queued(&self, tls: &Tls) -> io::Result<()> {
        loop {
            let mut records = Vec::new();
            {
                let mut session = tls.session.borrow_mut();
                while session.wants_write() {
                    session.write_tls(&mut records)?;
                }
            }
            if records.is_empty() {
                return Ok(());
            }
            self.inner.write_all(records).await.0?;
        }
    }

    /// Writes every buffer, in order, with as few `writev`s as the socket
    /// allows (at most [`WRITEV_BUFFERS_MAX`] buffers each). The buffers are
    /// consumed: nothing is copied into one (under TLS they are encrypted,
    /// [`TLS_WRITE_BYTES`] at a time).
    pub async fn write_all_vectored(&self, buffers: Vec<FileBytes>) -> io::Result<()> {
        if let Some(tls) = &self.tls {
            let _sending = tls.sending.lock().await;
            for buffer in &buffers {
                for chunk in buffer.chunks(TLS_WRITE_BYTES) {
                    std::io::Write::write_all(&mut tls.session.borrow_mut().writer(), chunk)?;
                    self.send_queued(tls).await?;
                }
            }
            return Ok(());
        }
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

    pub async fn write_all(&self, bytes: Vec<u8>) -> io::Result<()> {
        if self.tls.is_some() {
            return self.write_all_vectored(vec![FileBytes::Owned(bytes)]).await;
        }
        self.inner.write_all(bytes).await.0
    }

    /// Ends writing: the peer reads the end of the stream after what was
    /// sent (under TLS, after a close_notify).
    pub async fn finish_writing(&self) {
        if let Some(tls) = &self.tls {
            // Under the lock, so it cannot land between a response's records.
            let _sending = tls.sending.lock().await;
            tls.session.borrow_mut().send_close_notify();
            let _ = self.send_queued(tls).await;
        }
        let _ = self.inner.shutdown(std::net::Shutdown::Write);
    }

    /// Ends reading: a pending read returns 0, so the connection drains and closes.
    pub fn stop_reading(&self) {
        let _ = self.inner.shutdown(std::net::Shutdown::Read);
    }
}

/// Moves the plaintext rustls has decrypted to the end of `buffer`; true
/// when the peer has closed the session (close_notify).
fn take_plaintext(session: &mut rustls::ServerConnection, buffer: &mut BytesMut) -> io::Result<bool> {
    let mut reader = session.reader();
    loop {
        match std::io::BufRead::fill_buf(&mut reader) {
            Ok([]) => return Ok(true),
            Ok(bytes) => {
                let length = bytes.len();
                buffer.extend_from_slice(bytes);
                std::io::BufRead::consume(&mut reader, length);
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(error) => return Err(error),
        }
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
