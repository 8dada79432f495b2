//! Authentication and ACLs through the native protocol (docs/SECURITY.md):
//! requests before the handshake, wrong passwords and unknown users are
//! refused and the connection closed; a user touching a topic or group its
//! ACLs do not cover is refused and nothing is written; only super users
//! manage users and ACLs; the users survive a restart; pre-auth frames are
//! bounded.

mod common;

use common::{batch_of, start_server, temp_dir};
use ringmq::client::{Client, ClientError, Credentials};
use ringmq::log::Acks;
use ringmq::protocol::fetch::FetchRequest;
use ringmq::protocol::group::CommittedOffset;
use ringmq::protocol::hello::HelloRequest;
use ringmq::protocol::metadata::MetadataRequest;
use ringmq::protocol::ErrorCode;
use ringmq::security::{scram, Acl, Operation, Operations, ResourceKind};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const ADMIN: (&str, &str) = ("admin", "admin-secret");

fn start(dir: &std::path::Path) -> ringmq::server::ServerHandle {
    start_server(dir, 2, |config| {
        config.security.authentication = true;
        config.security.super_users = vec![ADMIN.0.into()];
        config.security.bootstrap_user = Some((ADMIN.0.into(), ADMIN.1.into()));
    })
}

fn connect_as(address: SocketAddr, user: &str, password: &str, mechanism: &str) -> Result<Client, ClientError> {
    let credentials = Credentials { user: user.into(), password: password.into(), mechanism: mechanism.into() };
    Client::connect_as(&address.to_string(), Some(credentials))
}

fn code(error: ClientError) -> Option<ErrorCode> {
    error.code()
}

/// One raw request on a fresh connection: the answer's error code, and
/// whether the server closed the connection after it.
fn raw(address: SocketAddr, frame: &[u8]) -> (Option<u16>, bool) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(frame).unwrap();
    let mut head = [0u8; 10];
    let code = match stream.read_exact(&mut head) {
        Ok(()) => {
            let length = u32::from_be_bytes(head[..4].try_into().unwrap()) as usize;
            let mut rest = vec![0u8; length - 6];
            stream.read_exact(&mut rest).unwrap();
            Some(u16::from_be_bytes(head[8..10].try_into().unwrap()))
        }
        Err(_) => None,
    };
    // An answered request leaves the connection open: nothing to wait for.
    if code == Some(0) {
        return (code, false);
    }
    let mut sink = Vec::new();
    let closed = stream.read_to_end(&mut sink).is_ok();
    (code, closed)
}

fn acl(principal: &str, kind: ResourceKind, pattern: &str, operations: &[Operation]) -> Acl {
    Acl { principal: principal.into(), kind, pattern: pattern.into(), operations: Operations::of(operations) }
}

#[test]
fn unauthenticated_requests_wrong_passwords_and_large_pre_auth_frames_are_refused() {
    let dir = temp_dir("security-refusals");
    let server = start(&dir);
    let address = server.address();

    // Hello is answered before authentication; anything else is refused and closes.
    let (hello, _) = raw(address, &HelloRequest { client_name: "t".into() }.encode(1));
    assert_eq!(hello, Some(0));
    let (metadata, closed) = raw(address, &MetadataRequest { topics: vec![] }.encode(2));
    assert_eq!(metadata, Some(ErrorCode::AuthenticationRequired as u16));
    assert!(closed, "the connection closes after AuthenticationRequired");
    assert_eq!(code(Client::connect(&address.to_string()).err().unwrap()), Some(ErrorCode::AuthenticationRequired));

    // A frame over the pre-auth bound is refused from its header, unread.
    let mut big = ringmq::protocol::produce::ProduceRequest::encode(3, Acks::Written, &[("t", 0, &vec![0u8; 1 << 20])]);
    big.truncate(64);
    let (answer, closed) = raw(address, &big);
    assert_eq!(answer, Some(ErrorCode::AuthenticationRequired as u16));
    assert!(closed);

    // Wrong password, unknown user, unknown mechanism: refused, by both mechanisms.
    for mechanism in [scram::SCRAM_SHA_256, scram::PLAIN] {
        let wrong = connect_as(address, ADMIN.0, "not-it", mechanism).err().unwrap();
        assert_eq!(code(wrong), Some(ErrorCode::AuthenticationFailed), "{mechanism}");
        let unknown = connect_as(address, "nobody", ADMIN.1, mechanism).err().unwrap();
        assert_eq!(code(unknown), Some(ErrorCode::AuthenticationFailed), "{mechanism}");
        connect_as(address, ADMIN.0, ADMIN.1, mechanism).unwrap();
    }
    assert!(connect_as(address, ADMIN.0, ADMIN.1, "GSSAPI").is_err());

    // The server is still serving after all of that.
    let admin = connect_as(address, ADMIN.0, ADMIN.1, scram::SCRAM_SHA_256).unwrap();
    admin.create_topic("still-here", 1, Default::default(), Default::default()).unwrap();
    server.shutdown().unwrap();
}

#[test]
fn acls_decide_what_a_user_may_do_and_a_refusal_changes_nothing() {
    let dir = temp_dir("security-acls");
    let server = start(&dir);
    let address = server.address();
    let admin = connect_as(address, ADMIN.0, ADMIN.1, scram::SCRAM_SHA_256).unwrap();
    admin.create_topic("orders", 1, Default::default(), Default::default()).unwrap();
    admin.create_topic("secret", 1, Default::default(), Default::default()).unwrap();
    admin.upsert_user("alice", "alice-pw").unwrap();
    assert_eq!(admin.list_users().unwrap(), vec!["admin".to_string(), "alice".to_string()]);

    let alice = connect_as(address, "alice", "alice-pw", scram::SCRAM_SHA_256).unwrap();
    // No ACLs: she sees no topics and may do nothing.
    assert!(alice.topics().is_empty(), "topics she may not describe are not listed");
    let batch = batch_of(&[b"x".to_vec()], 1);
    let refused = alice.produce("orders", 0, &batch, Acks::Written).err().unwrap();
    assert_eq!(code(refused), Some(ErrorCode::TopicNotAuthorized));
    assert_eq!(admin.list_offsets("orders", 0, -1).unwrap().latest, 0, "a refused produce writes nothing");
    let refused = alice.create_topic("mine", 1, Default::default(), Default::default()).err().unwrap();
    assert_eq!(code(refused), Some(ErrorCode::TopicNotAuthorized));
    assert!(admin.refresh_metadata().unwrap().topics.iter().all(|t| t.name != "mine"), "no topic was created");
    let refused = alice.delete_topic("orders").err().unwrap();
    assert_eq!(code(refused), Some(ErrorCode::TopicNotAuthorized));
    // Users and ACLs are for super users.
    assert_eq!(code(alice.upsert_user("mallory", "pw").err().unwrap()), Some(ErrorCode::ClusterNotAuthorized));
    assert_eq!(code(alice.list_acls().err().unwrap()), Some(ErrorCode::ClusterNotAuthorized));
    assert_eq!(
        code(alice.add_acl(&acl("alice", ResourceKind::Topic, "*", &[Operation::Write])).err().unwrap()),
        Some(ErrorCode::ClusterNotAuthorized)
    );
    assert_eq!(admin.list_users().unwrap().len(), 2, "no user was added");

    // Write on orders: she produces there, and only there; reading stays refused.
    admin.add_acl(&acl("alice", ResourceKind::Topic, "orders", &[Operation::Write])).unwrap();
    assert_eq!(alice.produce("orders", 0, &batch, Acks::Written).unwrap(), Some(0));
    assert_eq!(
        code(alice.produce("secret", 0, &batch, Acks::Written).err().unwrap()),
        Some(ErrorCode::TopicNotAuthorized)
    );
    assert_eq!(admin.list_offsets("secret", 0, -1).unwrap().latest, 0);
    let fetch = FetchRequest {
        topic: "orders".into(),
        partition: 0,
        offset: 0,
        max_bytes: 1 << 20,
        max_wait_ms: 0,
        min_bytes: 0,
    };
    assert_eq!(code(alice.fetch(&fetch).err().unwrap()), Some(ErrorCode::TopicNotAuthorized));
    let names: Vec<String> = alice.refresh_metadata().unwrap().topics.into_iter().map(|t| t.name).collect();
    assert_eq!(names, vec!["orders".to_string()], "write implies describe; secret stays hidden");

    // Read by prefix, and a group: she consumes and commits.
    admin.add_acl(&acl("alice", ResourceKind::Topic, "ord*", &[Operation::Read])).unwrap();
    assert_eq!(alice.fetch(&fetch).unwrap().high_watermark, 1);
    let commit = |client: &Client| {
        let offsets =
            vec![CommittedOffset { topic: "orders".into(), partition: 0, offset: 1, metadata: Default::default() }];
        ringmq::client::group::commit_offsets(client, "billing", offsets)
    };
    let refused = commit(&alice).err().unwrap();
    assert_eq!(code(refused), Some(ErrorCode::GroupNotAuthorized), "no ACL on the group yet");
    admin.add_acl(&acl("alice", ResourceKind::Group, "billing", &[Operation::Read])).unwrap();
    commit(&alice).unwrap();

    let acls = admin.list_acls().unwrap();
    assert_eq!(acls.len(), 3, "{acls:?}");
    admin.remove_acl(&acl("alice", ResourceKind::Topic, "orders", &[Operation::Write])).unwrap();
    assert_eq!(
        code(alice.produce("orders", 0, &batch, Acks::Written).err().unwrap()),
        Some(ErrorCode::TopicNotAuthorized)
    );

    // Users and ACLs survive a restart; a removed user cannot connect.
    server.shutdown().unwrap();
    let server = start(&dir);
    let address = server.address();
    let alice = connect_as(address, "alice", "alice-pw", scram::PLAIN).unwrap();
    assert_eq!(alice.fetch(&fetch).unwrap().high_watermark, 1, "her read ACL was kept");
    let admin = connect_as(address, ADMIN.0, ADMIN.1, scram::SCRAM_SHA_256).unwrap();
    admin.delete_user("alice").unwrap();
    assert_eq!(
        code(connect_as(address, "alice", "alice-pw", scram::SCRAM_SHA_256).err().unwrap()),
        Some(ErrorCode::AuthenticationFailed)
    );
    server.shutdown().unwrap();
}

#[test]
fn without_authentication_connections_are_trusted_and_credentials_still_checked() {
    let dir = temp_dir("security-off");
    let server = start_server(&dir, 1, |config| {
        config.security.bootstrap_user = Some((ADMIN.0.into(), ADMIN.1.into()));
    });
    let address = server.address();
    let anonymous = Client::connect(&address.to_string()).unwrap();
    anonymous.create_topic("open", 1, Default::default(), Default::default()).unwrap();
    anonymous.upsert_user("bob", "bob-pw").unwrap();
    let bob = connect_as(address, "bob", "bob-pw", scram::SCRAM_SHA_256).unwrap();
    bob.delete_topic("open").unwrap();
    assert_eq!(
        code(connect_as(address, "bob", "wrong", scram::SCRAM_SHA_256).err().unwrap()),
        Some(ErrorCode::AuthenticationFailed)
    );
    server.shutdown().unwrap();
}
