//! Guards the data directory's lock (issue 12, item 1): a second broker on a
//! directory that a running broker holds is refused, naming the directory and
//! the holder's pid: `ringmq serve` exits 1, an embedded open fails with
//! `StartError::Locked`. Before the lock, both started and appended at the same
//! offsets, losing acknowledged records.

mod common;

use ringmq::embedded::Broker;
use ringmq::server::{ServerConfig, StartError};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BINARY: &str = env!("CARGO_BIN_EXE_ringmq");

fn serve_command(data_dir: &std::path::Path) -> Command {
    let mut command = Command::new(BINARY);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--kafka-listen", "off", "--shards", "1"])
        .arg("--data-dir")
        .arg(data_dir);
    command
}

#[test]
fn a_second_serve_on_a_held_data_directory_exits_1_naming_the_holder() {
    let dir = common::temp_dir("lock-cli");
    let mut first = serve_command(&dir).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(first.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("ringmq listening on "), "{line:?}");

    let second = serve_command(&dir).stdout(Stdio::null()).stderr(Stdio::piped()).output().unwrap();
    let message = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{message}");
    assert!(message.contains(&dir.display().to_string()), "{message}");
    assert!(message.contains(&format!("pid {}", first.id())), "{message}");

    // SAFETY: SIGTERM to our own child.
    unsafe { libc::kill(first.id() as i32, libc::SIGTERM) };
    assert!(first.wait().unwrap().success());
    // Released with the process: the directory opens again.
    let broker = Broker::open(embedded_config(&dir)).expect("the lock is released when its holder exits");
    broker.close().unwrap();
}

fn embedded_config(dir: &std::path::Path) -> ServerConfig {
    let mut config = ServerConfig::new(dir);
    config.shards = 1;
    config.pin_threads = false;
    config
}

#[test]
fn a_second_embedded_open_in_one_process_is_refused_until_the_first_closes() {
    let dir = common::temp_dir("lock-embedded");
    let broker = Broker::open(embedded_config(&dir)).unwrap();
    match Broker::open(embedded_config(&dir)) {
        Err(StartError::Locked { data_dir, holder_pid }) => {
            assert_eq!(data_dir, dir);
            assert_eq!(holder_pid, Some(std::process::id()));
        }
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("a second broker opened a held data directory"),
    }
    // A refused open changed nothing: the first broker still works.
    let client = broker.client();
    client.create_topic("t", 1, Default::default(), Default::default()).unwrap();
    broker.close().unwrap();
    let again = Broker::open(embedded_config(&dir)).expect("closing releases the lock");
    assert_eq!(again.client().partition_count("t").unwrap(), 1);
    again.close().unwrap();
}
