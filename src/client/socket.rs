//! A client's socket: plain TCP, or TLS over it (rustls, blocking).

use crate::security::tls::ClientTlsConfig;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long connecting and the TLS handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One connection's byte stream.
pub enum Socket {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
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
        let mut stream = rustls::StreamOwned::new(session, stream);
        stream.sock.set_read_timeout(Some(CONNECT_TIMEOUT))?;
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        stream.sock.set_read_timeout(None)?;
        Ok(Socket::Tls(Box::new(stream)))
    }

    /// The TCP socket beneath (for timeouts and tests that speak raw bytes:
    /// under TLS, bytes written to it directly break the session).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Socket::Plain(stream) => stream,
            Socket::Tls(stream) => &stream.sock,
        }
    }

    pub fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            Socket::Plain(stream) => stream,
            Socket::Tls(stream) => &mut stream.sock,
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
            Socket::Tls(stream) => {
                let mut reader = stream.conn.reader();
                matches!(io::BufRead::fill_buf(&mut reader), Ok(bytes) if !bytes.is_empty())
            }
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Plain(stream) => stream.read(buffer),
            Socket::Tls(stream) => stream.read(buffer),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Plain(stream) => stream.write(bytes),
            Socket::Tls(stream) => stream.write(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Socket::Plain(stream) => stream.flush(),
            Socket::Tls(stream) => stream.flush(),
        }
    }
}

/// The TLS failure inside an I/O error, if that is what it is.
pub fn tls_failure(error: &io::Error) -> Option<&rustls::Error> {
    error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>())
}
