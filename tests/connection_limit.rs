//! The broker-wide connection limit (`max_connections`): connections past it
//! are refused with a clear answer (native: the first request gets
//! `ResourceLimit`; Kafka: closed), the connections within it keep being
//! served, and a slot freed by a closing connection is taken by the next one.
//! Many more connections (1,000 and 10,000) are the harness's:
//! tests/python/connections.py.

mod common;

use common::{start_server, temp_dir};
use ringmq::protocol::hello::HelloRequest;
use ringmq::protocol::{self, ErrorCode};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const LIMIT: usize = 6;

/// `read_exact`, read again after a signal interrupts it.
fn read_exact(stream: &mut TcpStream, mut buffer: &mut [u8]) -> std::io::Result<()> {
    while !buffer.is_empty() {
        match stream.read(buffer) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buffer = &mut buffer[n..],
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

fn hello(stream: &mut TcpStream, correlation_id: u32) -> std::io::Result<(u32, Option<ErrorCode>)> {
    stream.write_all(&HelloRequest { client_name: "limit-test".into() }.encode(correlation_id))?;
    let mut length = [0u8; 4];
    read_exact(stream, &mut length)?;
    let mut frame = length.to_vec();
    frame.resize(4 + u32::from_be_bytes(length) as usize, 0);
    read_exact(stream, &mut frame[4..])?;
    let (header, _) = protocol::parse_response(&frame).expect("a response frame");
    Ok((header.correlation_id, ErrorCode::from_u16(header.error_code)))
}

fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

/// Whether the peer closed `stream` without sending anything more.
fn closed_without_a_byte(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            // A signal to this process (the in-process server's threads get
            // some) interrupted the read: read again.
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            result => return matches!(result, Ok(0)),
        }
    }
}

#[test]
fn connections_past_the_limit_are_refused_clearly_and_the_others_keep_working() {
    let dir = temp_dir("connection-limit");
    let server = start_server(&dir, 2, |config| {
        config.max_connections = LIMIT;
        config.kafka.listen = Some("127.0.0.1:0".parse().unwrap());
    });
    let address = server.address();
    // LIMIT connections, each served (so each is counted by its shard).
    let mut served: Vec<TcpStream> = (0..LIMIT).map(|_| connect(address)).collect();
    for (i, stream) in served.iter_mut().enumerate() {
        assert_eq!(hello(stream, i as u32).unwrap(), (i as u32, Some(ErrorCode::None)));
    }

    // One more: its first request is answered ResourceLimit, then it closes.
    let mut refused = connect(address);
    assert_eq!(hello(&mut refused, 77).unwrap(), (77, Some(ErrorCode::ResourceLimit)));
    assert!(closed_without_a_byte(&mut refused));
    // A Kafka client gets a closed connection (Kafka has no refusal to send).
    let mut kafka = connect(server.kafka_address().unwrap());
    assert!(closed_without_a_byte(&mut kafka));
    // A peer that connects and never sends is closed too.
    let mut silent = connect(address);
    assert!(closed_without_a_byte(&mut silent));
    assert!(server.counters().refused_connections.load(Ordering::Relaxed) >= 3);

    // The connections within the limit were not disturbed.
    for (i, stream) in served.iter_mut().enumerate() {
        assert_eq!(hello(stream, 100 + i as u32).unwrap(), (100 + i as u32, Some(ErrorCode::None)));
    }
    // A closed connection frees its slot (once its shard has seen it close).
    drop(served.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut next = connect(address);
        match hello(&mut next, 200) {
            Ok((200, Some(ErrorCode::None))) => break,
            Ok((200, Some(ErrorCode::ResourceLimit))) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            other => panic!("the freed slot was not given to a new connection: {other:?}"),
        }
    }
    server.shutdown().unwrap();
}
