//! A client's socket: plain TCP, or TLS over it (rustls, blocking).
//!
//! The TLS side moves ciphertext in large pieces both ways (see
//! [`TLS_READ_BYTES`], [`TLS_SEAL_BYTES`]): rustls's own stream adapter reads
//! and sends about one 16 KiB record per system call.

use crate::security::tls::ClientTlsConfig;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long connecting and the TLS handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Plaintext sealed into TLS records before they are sent: four records,
/// one `writev`. (Sealing a whole 1 MiB request first allocated, freed and
/// page-faulted a record buffer each time, which cost more than the sends.)
pub const TLS_SEAL_BYTES: usize = 64 * 1024;

/// Ciphertext asked of the socket per read under TLS: a 1 MiB response
/// arrives in a few reads, not one per 16 KiB record.
pub const TLS_READ_BYTES: usize = 256 * 1024;

/// One connection's byte stream.
pub enum Socket {
    Plain(TcpStream),
    Tls(Box<TlsSocket>),
}

/// A TLS session over a socket, with its own ciphertext buffer.
pub struct TlsSocket {
    session: rustls::ClientConnection,
    socket: TcpStream,
    /// Ciphertext read from the socket; `start..end` not yet given to rustls.
    incoming: Vec<u8>,
    start: usize,
    end: usize,
}

impl TlsSocket {
    /// Reads plaintext: what is decrypted already, then what the ciphertext
    /// already read yields, and only when that is nothing, one socket read
    /// (which obeys the socket's read timeout). 0 at the end of the stream.
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        loop {
            loop {
                let Some(rest) = buffer.get_mut(filled..).filter(|rest| !rest.is_empty()) else {
                    return Ok(filled);
                };
                match self.session.reader().read(rest) {
                    // close_notify: the end, after what was delivered.
                    Ok(0) => return Ok(filled),
                    Ok(read) => filled += read,
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                    Err(error) => return Err(error),
                }
            }
            if self.start < self.end {
                let mut unread = self.incoming.get(self.start..self.end).unwrap_or_default();
                let before = unread.len();
                let taken = self.session.read_tls(&mut unread)?;
                if taken == 0 {
                    // rustls takes every record it is given once its
                    // plaintext is drained (just done): not taking any means
                    // the session cannot go on.
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "TLS: the session stopped taking records"));
                }
                self.start += before - unread.len();
                self.session.process_new_packets().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                continue;
            }
            if filled > 0 {
                return Ok(filled);
            }
            let read = self.socket.read(&mut self.incoming)?;
            if read == 0 {
                return Ok(0);
            }
            (self.start, self.end) = (0, read);
        }
    }

    /// Seals `bytes` [`TLS_SEAL_BYTES`] at a time and sends each piece's
    /// records with as few `writev`s as the socket takes.
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        for chunk in bytes.chunks(TLS_SEAL_BYTES) {
            self.session.writer().write_all(chunk)?;
            while self.session.wants_write() {
                match self.session.write_tls(&mut self.socket) {
                    // Sealed records are sent exactly once: an interrupted
                    // send is retried here, never by a caller that would
                    // seal the same plaintext again.
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(error),
                    Ok(_) => {}
                }
            }
        }
        Ok(())
    }
}

impl Socket {
    /// Connects; with `tls`, completes the handshake before returning, so a
    /// certificate the client refuses is an error here.
    pub fn connect(address: SocketAddr, tls: Option<&ClientTlsConfig>) -> io::Result<Socket> {
        let stream = TcpStream::connect_timeout(&address, CONNECT_TIMEOUT)?;
        stream.set_nodelay(true)?;
        let Some(tls) = tls else { return Ok(Socket::Plain(stream)) };
        let session = rustls::ClientConnection::new(tls.config.clone(), tls.server_name.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let mut session = session;
        // `write_all` bounds what is sealed at a time.
        session.set_buffer_limit(None);
        let mut socket = stream;
        socket.set_read_timeout(Some(CONNECT_TIMEOUT))?;
        while session.is_handshaking() {
            session.complete_io(&mut socket)?;
        }
        socket.set_read_timeout(None)?;
        let incoming = vec![0; TLS_READ_BYTES];
        Ok(Socket::Tls(Box::new(TlsSocket { session, socket, incoming, start: 0, end: 0 })))
    }

    /// The TCP socket beneath (for timeouts and tests that speak raw bytes:
    /// under TLS, bytes written to it directly break the session).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Socket::Plain(stream) => stream,
            Socket::Tls(tls) => &tls.socket,
        }
    }

    pub fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            Socket::Plain(stream) => stream,
            Socket::Tls(tls) => &mut tls.socket,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Socket::Tls(_))
    }

    /// Plaintext already decrypted and waiting to be read (TLS only: the
    /// socket may be empty while it is not).
    pub fn buffered(&mut self) -> bool {
        match self {
            Socket::Plain(_) => false,
            Socket::Tls(tls) => {
                let mut reader = tls.session.reader();
                tls.start < tls.end || matches!(io::BufRead::fill_buf(&mut reader), Ok(bytes) if !bytes.is_empty())
            }
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Plain(stream) => stream.read(buffer),
            Socket::Tls(tls) => tls.read(buffer),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Plain(stream) => stream.write(bytes),
            Socket::Tls(tls) => tls.write_all(bytes).map(|()| bytes.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Socket::Plain(stream) => stream.flush(),
            Socket::Tls(tls) => tls.socket.flush(),
        }
    }
}

/// The TLS failure inside an I/O error, if that is what it is.
pub fn tls_failure(error: &io::Error) -> Option<&rustls::Error> {
    error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>())
}
