//! TLS on the native listener (docs/SECURITY.md "TLS"): a client that trusts
//! the server's CA reaches every shard and moves large batches both ways; a
//! plain client, an unknown CA, a wrong name and an expired certificate are
//! refused; with client certificates required, a client without one, with
//! an expired one or with one from an unknown CA is refused and nothing it
//! sent is applied; TLS and SASL together. (The Kafka listener's TLS is
//! tested with confluent-kafka and kafka-python in tests/python.)

mod common;

use common::{start_server, temp_dir};
use ringmq::client::{Client, ClientError, ClientTls, ConnectOptions, Credentials};
use ringmq::log::Acks;
use ringmq::protocol::fetch::FetchRequest;
use ringmq::protocol::topic::CreateTopicRequest;
use ringmq::security::tls::ServerTls;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The certificates of one test, as PEM files in its directory.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// A CA, and signed by it: the server's certificate (localhost, 127.0.0.1),
/// an expired server certificate, a client certificate and an expired one;
/// and a second CA nobody trusts, with a client certificate of its own.
fn pki(dir: &Path) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    std::fs::create_dir_all(dir).unwrap();
    let authority = |name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    };
    let ca = authority("ringmq test CA");
    let rogue = authority("someone else's CA");
    write(dir, "ca.pem", &ca.pem());
    write(dir, "rogue-ca.pem", &rogue.pem());
    let leaf = |file: &str, names: &[&str], expired: bool, issuer: &CertifiedIssuer<'_, KeyPair>| {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, file);
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 2, 1);
        }
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, issuer).unwrap();
        write(dir, &format!("{file}.pem"), &certificate.pem());
        write(dir, &format!("{file}.key"), &key.serialize_pem());
    };
    leaf("server", &["localhost", "127.0.0.1"], false, &ca);
    leaf("server-expired", &["localhost", "127.0.0.1"], true, &ca);
    leaf("client", &["client.example"], false, &ca);
    leaf("client-expired", &["client.example"], true, &ca);
    leaf("client-rogue", &["client.example"], false, &rogue);
    Pki { dir: dir.to_owned() }
}

fn server_tls(pki: &Pki, cert: &str, client_ca: bool) -> ServerTls {
    ServerTls {
        cert_file: pki.path(&format!("{cert}.pem")),
        key_file: pki.path(&format!("{cert}.key")),
        client_ca_file: client_ca.then(|| pki.path("ca.pem")),
    }
}

fn client_tls(pki: &Pki, ca: &str, client_cert: Option<&str>) -> ClientTls {
    ClientTls {
        ca_file: Some(pki.path(ca)),
        cert_file: client_cert.map(|c| pki.path(&format!("{c}.pem"))),
        key_file: client_cert.map(|c| pki.path(&format!("{c}.key"))),
        server_name: None,
    }
}

fn connect(address: &str, tls: ClientTls) -> Result<Client, ClientError> {
    Client::connect_with(address, &ConnectOptions { credentials: None, tls: Some(tls) })
}

fn tls_message(result: Result<Client, ClientError>) -> String {
    match result {
        Err(ClientError::Tls(message)) => message,
        Err(other) => panic!("expected a TLS error, got {other}"),
        Ok(_) => panic!("expected a TLS error, the connection succeeded"),
    }
}

/// A batch of `count` records of `size` bytes each.
fn batch(count: usize, size: usize, seed: u8) -> Vec<u8> {
    let values: Vec<Vec<u8>> = (0..count).map(|i| vec![seed.wrapping_add(i as u8); size]).collect();
    common::batch_of(&values, 1_700_000_000_000)
}

#[test]
fn a_client_trusting_the_ca_reaches_every_shard_and_plain_clients_get_nothing_done() {
    let dir = temp_dir("tls-round-trip");
    let pki = pki(&dir.join("pki"));
    let server =
        start_server(&dir.join("data"), 2, |config| config.security.tls = Some(server_tls(&pki, "server", false)));
    let address = format!("localhost:{}", server.address().port());

    let client = connect(&address, client_tls(&pki, "ca.pem", None)).expect("TLS connect");
    client.create_topic("secure", 2, Default::default(), Default::default()).unwrap();
    // Large batches (records of 64 KiB, about 1.3 MB per batch): many TLS
    // records per request and per response, on both shards' own ports.
    let batches = [batch(20, 64 * 1024, 1), batch(20, 64 * 1024, 2)];
    for (partition, bytes) in batches.iter().enumerate() {
        assert_eq!(client.produce("secure", partition as u32, bytes, Acks::Durable).unwrap(), Some(0));
    }
    for (partition, bytes) in batches.iter().enumerate() {
        let request = FetchRequest {
            topic: "secure".into(),
            partition: partition as u32,
            offset: 0,
            max_bytes: 4 * 1024 * 1024,
            max_wait_ms: 0,
            min_bytes: 0,
        };
        let fetched = client.fetch(&request).unwrap();
        assert_eq!(fetched.high_watermark, 20);
        assert_eq!(&fetched.records[..], &bytes[..], "partition {partition} reads back byte for byte");
    }

    // A plain client: told the server speaks TLS.
    let message = tls_message(Client::connect(&server.address().to_string()));
    assert!(message.contains("speaks TLS"), "{message}");
    // Plain bytes of a valid CreateTopic frame are not a ClientHello: the
    // connection ends, and nothing is created.
    let mut raw = std::net::TcpStream::connect(server.address()).unwrap();
    let frame = CreateTopicRequest {
        name: "plaintext".into(),
        partitions: 1,
        retention_ms: ringmq::protocol::topic::RETENTION_DEFAULT,
        retention_bytes: ringmq::protocol::topic::RETENTION_DEFAULT,
    }
    .encode(7);
    raw.write_all(&frame).unwrap();
    raw.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut raw, &mut answer);
    assert!(answer.is_empty() || answer[0] == 0x15, "a TLS alert or nothing, got {answer:?}");
    let topics: Vec<String> = client.topics_listing();
    assert_eq!(topics, vec!["secure".to_string()]);
    server.shutdown().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

trait Listing {
    fn topics_listing(&self) -> Vec<String>;
}

impl Listing for Client {
    fn topics_listing(&self) -> Vec<String> {
        ringmq::client::Transport::topics(self).unwrap().into_iter().map(|(name, _)| name).collect()
    }
}

#[test]
fn unknown_ca_wrong_name_and_expired_server_certificates_are_refused() {
    let dir = temp_dir("tls-server-refused");
    let pki = pki(&dir.join("pki"));
    let server =
        start_server(&dir.join("data"), 1, |config| config.security.tls = Some(server_tls(&pki, "server", false)));
    let port = server.address().port();

    let message = tls_message(connect(&format!("localhost:{port}"), client_tls(&pki, "rogue-ca.pem", None)));
    assert!(message.contains("UnknownIssuer"), "{message}");
    let mut wrong_name = client_tls(&pki, "ca.pem", None);
    wrong_name.server_name = Some("other.example".into());
    let message = tls_message(connect(&format!("localhost:{port}"), wrong_name));
    assert!(message.contains("not valid for name \"other.example\""), "{message}");
    // The same CA, the right name, by IP address too.
    connect(&format!("127.0.0.1:{port}"), client_tls(&pki, "ca.pem", None)).expect("the IP is in the certificate");
    server.shutdown().unwrap();

    let expired = start_server(&dir.join("data2"), 1, |config| {
        config.security.tls = Some(server_tls(&pki, "server-expired", false))
    });
    let message =
        tls_message(connect(&format!("localhost:{}", expired.address().port()), client_tls(&pki, "ca.pem", None)));
    assert!(message.contains("expired"), "{message}");
    expired.shutdown().unwrap();

    // A missing file is an error at start, naming it.
    let mut config = ringmq::server::ServerConfig::new(dir.join("data3"));
    config.listen = Some("127.0.0.1:0".parse().unwrap());
    config.shards = 1;
    config.pin_threads = false;
    config.security.tls =
        Some(ServerTls { cert_file: pki.path("absent.pem"), key_file: pki.path("server.key"), client_ca_file: None });
    let error = ringmq::server::start(config).err().expect("no certificate, no server").to_string();
    assert!(error.contains("absent.pem"), "{error}");
    // A key that is not the certificate's.
    let mut mismatched = server_tls(&pki, "server", false);
    mismatched.key_file = pki.path("client.key");
    assert!(mismatched.load().is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn required_client_certificates_refuse_missing_expired_and_unknown_ones_and_apply_nothing() {
    let dir = temp_dir("tls-mutual");
    let pki = pki(&dir.join("pki"));
    let server =
        start_server(&dir.join("data"), 2, |config| config.security.tls = Some(server_tls(&pki, "server", true)));
    let address = format!("localhost:{}", server.address().port());

    for (certificate, expected) in
        [(None, "CertificateRequired"), (Some("client-expired"), "Expired"), (Some("client-rogue"), "UnknownCA")]
    {
        let tls = client_tls(&pki, "ca.pem", certificate);
        match connect(&address, tls) {
            Ok(_) => panic!("{certificate:?}: connected without an acceptable client certificate"),
            // In TLS 1.3 the client has finished its half of the handshake
            // when the server refuses its certificate: the refusal arrives as
            // an alert on the first read (the Hello).
            Err(ClientError::Tls(message)) => {
                assert!(message.contains(expected), "{certificate:?}: {message}")
            }
            Err(ClientError::Io(error)) => {
                assert!(
                    matches!(error.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset),
                    "{certificate:?}: {error}"
                )
            }
            Err(other) => panic!("{certificate:?}: {other}"),
        }
    }

    let client = connect(&address, client_tls(&pki, "ca.pem", Some("client"))).expect("a valid client certificate");
    assert!(client.topics_listing().is_empty(), "nothing the refused clients sent was applied");
    // Each refusal is counted for the operator (ringmq_tls_failures_total),
    // once its connection has ended.
    let counted = || server.counters().tls_failures.load(std::sync::atomic::Ordering::Relaxed);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while counted() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(counted(), 3);
    client.create_topic("mutual", 2, Default::default(), Default::default()).unwrap();
    for partition in 0..2 {
        assert_eq!(client.produce("mutual", partition, &batch(3, 100, 9), Acks::Written).unwrap(), Some(0));
    }
    server.shutdown().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tls_and_sasl_together() {
    let dir = temp_dir("tls-sasl");
    let pki = pki(&dir.join("pki"));
    let server = start_server(&dir.join("data"), 1, |config| {
        config.security.tls = Some(server_tls(&pki, "server", false));
        config.security.authentication = true;
        config.security.super_users = vec!["admin".into()];
        config.security.bootstrap_user = Some(("admin".into(), "admin-pw".into()));
    });
    let address = format!("localhost:{}", server.address().port());
    let options = |password: &str| ConnectOptions {
        credentials: Some(Credentials::scram("admin", password)),
        tls: Some(client_tls(&pki, "ca.pem", None)),
    };
    let refused = Client::connect_with(&address, &options("wrong")).err().expect("a wrong password is refused");
    assert_eq!(refused.code(), Some(ringmq::protocol::ErrorCode::AuthenticationFailed), "{refused}");
    let without = connect(&address, client_tls(&pki, "ca.pem", None)).err().expect("TLS alone is not authentication");
    assert_eq!(without.code(), Some(ringmq::protocol::ErrorCode::AuthenticationRequired), "{without}");
    let client = Client::connect_with(&address, &options("admin-pw")).unwrap();
    client.create_topic("both", 1, Default::default(), Default::default()).unwrap();
    assert_eq!(client.produce("both", 0, &batch(2, 10, 1), Acks::Durable).unwrap(), Some(0));
    server.shutdown().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_cli_and_both_bench_producers_connect_over_tls() {
    let dir = temp_dir("tls-cli");
    let pki = pki(&dir.join("pki"));
    let server = start_server(&dir.join("data"), 2, |config| {
        config.security.tls = Some(server_tls(&pki, "server", false));
        config.kafka.listen = Some("127.0.0.1:0".parse().unwrap());
    });
    let native = format!("localhost:{}", server.address().port());
    let kafka = format!("localhost:{}", server.kafka_address().unwrap().port());
    let ca = pki.path("ca.pem");
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ringmq"))
            .args(["--bootstrap", &native, "--tls-ca", ca.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap()
    };
    let bench = ["--count", "3000", "--batch-records", "100", "--message-size", "64", "--json"];
    for (topic, kafka_flag) in [("bench-native", None), ("bench-kafka", Some(kafka.as_str()))] {
        let mut args = vec!["bench", "produce", "--topic", topic, "--partitions", "2"];
        args.extend(bench);
        if let Some(address) = kafka_flag {
            args.extend(["--kafka", address]);
        }
        let output = cli(&args);
        assert!(output.status.success(), "{topic}: {}", String::from_utf8_lossy(&output.stderr));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(report["records"], 3000, "{report}");
    }
    let client = connect(&native, client_tls(&pki, "ca.pem", None)).unwrap();
    for topic in ["bench-native", "bench-kafka"] {
        let landed: i64 = (0..2).map(|partition| client.list_offsets(topic, partition, -1).unwrap().latest).sum();
        assert_eq!(landed, 3000, "records in {topic}");
    }
    let listed = cli(&["topic", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("bench-kafka"));
    // The CLI without TLS is told what to do.
    let plain = std::process::Command::new(env!("CARGO_BIN_EXE_ringmq"))
        .args(["--bootstrap", &native, "topic", "list"])
        .output()
        .unwrap();
    assert!(!plain.status.success());
    assert!(String::from_utf8_lossy(&plain.stderr).contains("speaks TLS"), "{plain:?}");
    server.shutdown().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bytes_after_a_close_notify_do_not_stall_the_shard() {
    let dir = temp_dir("tls-close-notify");
    let pki = pki(&dir.join("pki"));
    // One shard: a stuck connection would stall every other one.
    let server =
        start_server(&dir.join("data"), 1, |config| config.security.tls = Some(server_tls(&pki, "server", false)));
    // A real session: handshake, then close_notify with more bytes after it
    // than rustls takes in one read_tls, all in one write.
    let tls = client_tls(&pki, "ca.pem", None).load("localhost").unwrap();
    let mut session = rustls::ClientConnection::new(tls.config.clone(), tls.server_name.clone()).unwrap();
    let mut raw = std::net::TcpStream::connect(server.address()).unwrap();
    raw.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    while session.is_handshaking() {
        session.complete_io(&mut raw).unwrap();
    }
    session.send_close_notify();
    let mut bytes = Vec::new();
    while session.wants_write() {
        session.write_tls(&mut bytes).unwrap();
    }
    bytes.resize(bytes.len() + 60 * 1024, 0);
    let _ = raw.write_all(&bytes);
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut raw, &mut answer);
    let client = connect(&format!("localhost:{}", server.address().port()), client_tls(&pki, "ca.pem", None))
        .expect("the shard still serves");
    client.create_topic("after", 1, Default::default(), Default::default()).unwrap();
    server.shutdown().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
