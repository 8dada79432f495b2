//! Guards consumer groups end to end over TCP and in process: rebalances as
//! members join, leave and time out never give one partition two owners in a
//! generation; every record is consumed once across a hand-over; committed
//! offsets survive a restart; lag is end minus committed; stale generations and
//! bad input get their own errors.

mod common;

use common::{batch_of, start_server, temp_dir};
use ringmq::client::group::{self, describe_group, fetch_offsets, GroupConsumer, GroupConsumerConfig, OffsetReset};
use ringmq::client::{Client, Retention, Transport};
use ringmq::embedded::Broker;
use ringmq::log::Acks;
use ringmq::protocol::group::{CommittedOffset, GroupRequest, JoinGroup, OffsetCommit, STATE_EMPTY, STATE_STABLE};
use ringmq::protocol::ErrorCode;
use ringmq::server::ServerConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn fast_config() -> GroupConsumerConfig {
    GroupConsumerConfig {
        session_timeout: Duration::from_millis(800),
        rebalance_timeout: Duration::from_millis(3000),
        heartbeat_interval: Duration::from_millis(50),
        ..Default::default()
    }
}

fn produce_values(client: &mut Client, topic: &str, partitions: u32, per_partition: usize) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for partition in 0..partitions {
        let values: Vec<Vec<u8>> = (0..per_partition).map(|i| format!("{partition}-{i}").into_bytes()).collect();
        client.produce(topic, partition, &batch_of(&values, 1), Acks::Written).unwrap();
        all.extend(values.into_iter().map(|v| String::from_utf8(v).unwrap()));
    }
    all
}

type Sightings = Arc<Mutex<BTreeMap<u32, BTreeMap<String, Vec<(String, u32)>>>>>;

/// Polls until `stop` (or `die`, which stops without leaving), recording each
/// generation's assignment as this member saw it.
fn run_member(bootstrap: String, stop: Arc<AtomicBool>, die: Arc<AtomicBool>, sightings: Sightings) {
    let client = Client::connect(&bootstrap).unwrap();
    let mut consumer = GroupConsumer::new(client, "g", &["t"], fast_config());
    while !stop.load(Ordering::SeqCst) {
        if die.load(Ordering::SeqCst) {
            return; // no leave: the broker has to expire this member
        }
        consumer.poll(Duration::from_millis(20)).unwrap();
        let mut seen = sightings.lock().unwrap();
        let generation = seen.entry(consumer.generation()).or_default();
        generation.insert(consumer.member_id().to_owned(), consumer.assignment().to_vec());
    }
    consumer.close().unwrap();
}

fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn rebalances_on_join_leave_and_expiry_never_give_a_partition_two_owners() {
    let dir = temp_dir("groups-rebalance");
    let server = start_server(&dir, 2, |_| {});
    let bootstrap = server.address().to_string();
    let mut admin = Client::connect(&bootstrap).unwrap();
    admin.create_topic("t", 6, Retention::Default, Retention::Default).unwrap();
    let sightings: Sightings = Default::default();
    let mut members = Vec::new();
    let describe = |admin: &mut Client| describe_group(admin, "g").unwrap();
    for _ in 0..3 {
        let (stop, die) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let handle = {
            let (bootstrap, stop, die, sightings) = (bootstrap.clone(), stop.clone(), die.clone(), sightings.clone());
            std::thread::spawn(move || run_member(bootstrap, stop, die, sightings))
        };
        members.push((stop, die, handle));
        let expected = members.len();
        wait_for("the group to be stable with every member", Duration::from_secs(20), || {
            // Unknown until the first member's join reaches the coordinator.
            describe_group(&admin, "g").is_ok_and(|d| {
                d.state == STATE_STABLE
                    && d.members.len() == expected
                    && d.members.iter().all(|m| !m.assignment.is_empty())
            })
        });
    }
    let d = describe(&mut admin);
    let counts: Vec<usize> = d.members.iter().map(|m| m.assignment.len()).collect();
    assert_eq!(counts, vec![2, 2, 2], "balanced over three members");
    // One leaves cleanly, one dies (its session expires).
    let (stop, _, handle) = members.remove(1);
    stop.store(true, Ordering::SeqCst);
    handle.join().unwrap();
    let (_, die, handle) = members.remove(1);
    die.store(true, Ordering::SeqCst);
    handle.join().unwrap();
    wait_for("the survivor to own every partition", Duration::from_secs(20), || {
        let d = describe(&mut admin);
        d.state == STATE_STABLE && d.members.len() == 1 && d.members[0].assignment.len() == 6
    });
    let (stop, _, handle) = members.remove(0);
    stop.store(true, Ordering::SeqCst);
    handle.join().unwrap();
    assert_eq!(describe(&mut admin).state, STATE_EMPTY);
    let seen = sightings.lock().unwrap();
    assert!(seen.len() >= 4, "at least one generation per change: {:?}", seen.keys());
    for (generation, members) in seen.iter() {
        let mut owners = BTreeMap::new();
        for (member, partitions) in members {
            for partition in partitions {
                if let Some(other) = owners.insert(partition.clone(), member.clone()) {
                    panic!("generation {generation}: {partition:?} owned by {other} and {member}");
                }
            }
        }
    }
    server.shutdown().unwrap();
}

#[test]
fn a_group_hands_over_without_losing_or_repeating_records_and_offsets_survive_restart() {
    let dir = temp_dir("groups-handover");
    let server = start_server(&dir, 2, |_| {});
    let bootstrap = server.address().to_string();
    let mut admin = Client::connect(&bootstrap).unwrap();
    admin.create_topic("t", 3, Retention::Default, Retention::Default).unwrap();
    let all = produce_values(&mut admin, "t", 3, 40);
    // The first consumer reads exactly 50 records and commits what it read.
    let mut first = GroupConsumer::new(Client::connect(&bootstrap).unwrap(), "g", &["t"], fast_config());
    let mut got = Vec::new();
    let mut next: BTreeMap<(String, u32), u64> = BTreeMap::new();
    while got.len() < 50 {
        for record in first.poll(Duration::from_millis(200)).unwrap() {
            if got.len() == 50 {
                break;
            }
            next.insert((record.topic.clone(), record.partition), record.record.offset + 1);
            got.push(String::from_utf8(record.record.value.unwrap()).unwrap());
        }
    }
    let printed: Vec<(String, u32, u64)> = next.iter().map(|((t, p), o)| (t.clone(), *p, *o)).collect();
    first.commit_offsets(&printed).unwrap();
    drop(first); // no close: what it read beyond the 50 is not committed
                 // Lag as the broker reports it: end minus committed, per partition.
    let description = describe_group(&admin, "g").unwrap();
    for lag in &description.partitions {
        let committed = next.get(&(lag.topic.clone(), lag.partition)).map_or(-1, |o| *o as i64);
        assert_eq!(lag.committed, committed);
        assert_eq!(lag.end, 40);
        assert_eq!(lag.lag, if committed < 0 { 40 } else { 40 - committed });
    }
    assert_eq!(group::total_lag(&description), 70);
    server.shutdown().unwrap();

    // After a restart the committed offsets are still there, and a new member
    // (the old one's session is gone with the restart) reads the other 70.
    let server = start_server(&dir, 2, |_| {});
    let bootstrap = server.address().to_string();
    let admin = Client::connect(&bootstrap).unwrap();
    let offsets = fetch_offsets(&admin, "g", Vec::new()).unwrap();
    let stored: BTreeMap<(String, u32), u64> =
        offsets.into_iter().map(|c| ((c.topic, c.partition), c.offset as u64)).collect();
    assert_eq!(stored, next);
    let mut second = GroupConsumer::new(Client::connect(&bootstrap).unwrap(), "g", &["t"], fast_config());
    while got.len() < 120 {
        for record in second.poll(Duration::from_millis(200)).unwrap() {
            got.push(String::from_utf8(record.record.value.unwrap()).unwrap());
        }
    }
    assert!(second.poll(Duration::from_millis(100)).unwrap().is_empty(), "nothing beyond the 120");
    second.close().unwrap();
    let unique: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(unique.len(), got.len(), "no record consumed twice");
    assert_eq!(unique, all, "every record consumed");
    assert_eq!(group::total_lag(&describe_group(&admin, "g").unwrap()), 0);
    server.shutdown().unwrap();
}

fn join(client: &mut Client, member_id: &str) -> Result<(String, u32), ringmq::client::ClientError> {
    let request = GroupRequest::Join(JoinGroup {
        group: "g".into(),
        member_id: member_id.into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 2_000,
        topics: vec!["t".into()],
    });
    match client.group(request)? {
        ringmq::protocol::group::GroupResponse::Join(join) => Ok((join.member_id, join.generation)),
        other => panic!("unexpected {other:?}"),
    }
}

fn commit(client: &mut Client, member_id: &str, generation: u32, offset: i64) -> Option<ErrorCode> {
    let request = GroupRequest::Commit(OffsetCommit {
        group: "g".into(),
        member_id: member_id.into(),
        generation,
        offsets: vec![CommittedOffset { topic: "t".into(), partition: 0, offset, metadata: "m".into() }],
    });
    client.group(request).err().map(|e| e.code().unwrap())
}

#[test]
fn stale_generations_unknown_members_and_bad_input_get_their_own_errors() {
    let dir = temp_dir("groups-errors");
    let server = start_server(&dir, 2, |_| {});
    let bootstrap = server.address().to_string();
    let mut client = Client::connect(&bootstrap).unwrap();
    client.create_topic("t", 1, Retention::Default, Retention::Default).unwrap();
    let (member, generation) = join(&mut client, "").unwrap();
    assert_eq!(commit(&mut client, &member, generation, 5), None);
    assert_eq!(commit(&mut client, &member, generation + 1, 5), Some(ErrorCode::IllegalGeneration));
    assert_eq!(commit(&mut client, "nobody", generation, 5), Some(ErrorCode::UnknownMemberId));
    assert_eq!(commit(&mut client, "", 0, 5), Some(ErrorCode::UnknownMemberId), "the group has members");
    assert_eq!(commit(&mut client, &member, generation, -3), Some(ErrorCode::InvalidArgument));
    // The only member joining again bumps the generation; the old one is stale.
    let (_, next) = join(&mut client, &member).unwrap();
    assert_eq!(next, generation + 1);
    assert_eq!(commit(&mut client, &member, generation, 6), Some(ErrorCode::IllegalGeneration));
    assert_eq!(join(&mut client, "made-up").unwrap_err().code(), Some(ErrorCode::UnknownMemberId));
    let bad_name = GroupRequest::Describe { group: "no spaces".into() };
    assert_eq!(client.group(bad_name).unwrap_err().code(), Some(ErrorCode::InvalidGroupId));
    let unknown = GroupRequest::Describe { group: "never-used".into() };
    assert_eq!(client.group(unknown).unwrap_err().code(), Some(ErrorCode::UnknownGroup));
    let bad_timeout = GroupRequest::Join(JoinGroup {
        group: "g2".into(),
        member_id: String::new(),
        session_timeout_ms: 1,
        rebalance_timeout_ms: 0,
        topics: vec!["t".into()],
    });
    assert_eq!(client.group(bad_timeout).unwrap_err().code(), Some(ErrorCode::InvalidArgument));
    let unknown_topic = GroupRequest::Commit(OffsetCommit {
        group: "g3".into(),
        member_id: String::new(),
        generation: 0,
        offsets: vec![CommittedOffset { topic: "nope".into(), partition: 0, offset: 1, metadata: String::new() }],
    });
    assert_eq!(client.group(unknown_topic).unwrap_err().code(), Some(ErrorCode::UnknownTopicOrPartition));
    let stored = fetch_offsets(&client, "g", vec![("t".into(), 0)]).unwrap();
    assert_eq!((stored[0].offset, stored[0].metadata.as_str()), (5, "m"), "refused commits changed nothing");
    let listed = client.list_groups().unwrap();
    assert!(listed.iter().any(|g| g.group == "g" && g.members == 1), "{listed:?}");
    server.shutdown().unwrap();
}

#[test]
fn the_embedded_broker_runs_groups_too() {
    let dir = temp_dir("groups-embedded");
    let mut config = ServerConfig::new(&dir);
    config.shards = 2;
    config.pin_threads = false;
    let broker = Broker::open(config).unwrap();
    let client = broker.client();
    client.create_topic("t", 2, Retention::Default, Retention::Default).unwrap();
    for partition in 0..2 {
        let batch = batch_of(&[b"a".to_vec(), b"b".to_vec()], 1);
        client.produce("t", partition, bytes::BytesMut::from(&batch[..]), Acks::Written).unwrap();
    }
    let mut config = fast_config();
    config.offset_reset = OffsetReset::Earliest;
    let mut consumer = GroupConsumer::new(client.clone(), "eg", &["t"], config);
    let mut got = 0;
    while got < 4 {
        got += consumer.poll(Duration::from_millis(200)).unwrap().len();
    }
    let client = consumer.close().unwrap();
    let description = describe_group(&client, "eg").unwrap();
    assert_eq!(description.state, STATE_EMPTY);
    assert_eq!(group::total_lag(&description), 0);
    assert_eq!(client.list_groups().unwrap().len(), 1);
    broker.close().unwrap();
}

#[test]
fn deleting_a_topic_forgets_its_committed_offsets_also_across_a_restart() {
    let dir = temp_dir("groups-delete-topic");
    let server = start_server(&dir, 2, |_| {});
    let mut client = Client::connect(&server.address().to_string()).unwrap();
    for topic in ["gone", "kept"] {
        client.create_topic(topic, 2, Retention::Default, Retention::Default).unwrap();
    }
    let offsets = ["gone", "kept"]
        .iter()
        .flat_map(|topic| {
            (0..2).map(move |p| CommittedOffset {
                topic: topic.to_string(),
                partition: p,
                offset: 7,
                metadata: String::new(),
            })
        })
        .collect();
    group::commit_offsets(&client, "g", offsets).unwrap();
    client.delete_topic("gone").unwrap();
    client.create_topic("gone", 2, Retention::Default, Retention::Default).unwrap();
    let committed = |client: &mut Client| {
        let mut all: Vec<(String, u32, i64)> = fetch_offsets(client, "g", Vec::new())
            .unwrap()
            .into_iter()
            .map(|c| (c.topic, c.partition, c.offset))
            .collect();
        all.sort();
        all
    };
    let expected = vec![("kept".to_string(), 0, 7), ("kept".to_string(), 1, 7)];
    assert_eq!(committed(&mut client), expected, "the re-created topic does not inherit old offsets");
    server.shutdown().unwrap();
    let server = start_server(&dir, 2, |_| {});
    let mut client = Client::connect(&server.address().to_string()).unwrap();
    assert_eq!(committed(&mut client), expected, "the forgetting is durable");
    server.shutdown().unwrap();
}

#[test]
fn a_member_subscribed_before_its_topic_exists_gets_it_once_created() {
    let dir = temp_dir("groups-topic-later");
    let server = start_server(&dir, 2, |_| {});
    let bootstrap = server.address().to_string();
    let mut consumer = GroupConsumer::new(Client::connect(&bootstrap).unwrap(), "g", &["later"], fast_config());
    assert!(consumer.poll(Duration::from_millis(100)).unwrap().is_empty());
    assert!(consumer.assignment().is_empty());
    let mut admin = Client::connect(&bootstrap).unwrap();
    admin.create_topic("later", 2, Retention::Default, Retention::Default).unwrap();
    let all = produce_values(&mut admin, "later", 2, 5).into_iter().collect::<BTreeSet<_>>();
    let mut got = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < all.len() {
        assert!(Instant::now() < deadline, "the new topic was never assigned: {:?}", consumer.assignment());
        for record in consumer.poll(Duration::from_millis(100)).unwrap() {
            got.insert(String::from_utf8(record.record.value.unwrap()).unwrap());
        }
    }
    assert_eq!(got, all);
    assert_eq!(consumer.assignment().len(), 2);
    consumer.close().unwrap();
    server.shutdown().unwrap();
}

#[test]
fn an_empty_group_without_offsets_stays_listed_for_its_retention_then_is_forgotten() {
    // Issue 12, item 6: such a group vanished about 50 ms after its last member
    // left, though ListGroups lists every group (Kafka keeps it Empty until
    // its next offset-expiration pass).
    let dir = temp_dir("groups-forgotten");
    let retention = Duration::from_millis(1500);
    let server = start_server(&dir, 2, |config| config.empty_group_retention_ms = retention.as_millis() as u64);
    let bootstrap = server.address().to_string();
    let admin = Client::connect(&bootstrap).unwrap();
    admin.create_topic("t", 1, Retention::Default, Retention::Default).unwrap();
    let mut config = fast_config();
    config.auto_commit = false;
    let mut consumer = GroupConsumer::new(Client::connect(&bootstrap).unwrap(), "passing", &["t"], config);
    consumer.poll(Duration::from_millis(20)).unwrap();
    assert!(admin.list_groups().unwrap().iter().any(|g| g.group == "passing"));
    consumer.close().unwrap();
    let left = Instant::now();
    std::thread::sleep(retention / 3);
    let listed = admin.list_groups().unwrap().into_iter().find(|g| g.group == "passing");
    let listed = listed.expect("an empty group is still listed within its retention");
    assert_eq!((listed.state, listed.members), (STATE_EMPTY, 0));
    let description = describe_group(&admin, "passing").unwrap();
    assert_eq!((description.state, description.members.len()), (STATE_EMPTY, 0));
    wait_for("the empty group to be forgotten", Duration::from_secs(10), || {
        admin.list_groups().unwrap().iter().all(|g| g.group != "passing")
    });
    assert!(left.elapsed() >= retention, "forgotten after {:?}, before its retention", left.elapsed());
    server.shutdown().unwrap();
}

/// Polls two members of one group alternately from this thread, 50 ms each
/// (issue 12, item 2), until `settled` holds; returns how long that took.
fn alternate<T: Transport>(
    a: &mut GroupConsumer<T>,
    b: &mut GroupConsumer<T>,
    within: Duration,
    mut settled: impl FnMut(&GroupConsumer<T>, &GroupConsumer<T>) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let poll_started = Instant::now();
        a.poll(Duration::from_millis(50)).unwrap();
        assert!(poll_started.elapsed() < Duration::from_millis(1000), "a poll returns by its timeout");
        b.poll(Duration::from_millis(50)).unwrap();
        if settled(a, b) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "not settled after {within:?}: {:?} / {:?}",
            a.assignment(),
            b.assignment()
        );
    }
}

fn two_members_in_one_thread_converge<T: Transport>(admin: &mut T, mut transports: impl FnMut() -> T) {
    let config = GroupConsumerConfig {
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(3),
        heartbeat_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let mut a = GroupConsumer::new(transports(), "one-thread", &["split"], config.clone());
    let mut b = GroupConsumer::new(transports(), "one-thread", &["split"], config);
    // Well inside the 3 s rebalance timeout: a split that needed a member to be
    // dropped at the deadline would take longer.
    let took = alternate(&mut a, &mut b, Duration::from_millis(2500), |a, b| {
        let owned: BTreeSet<u32> = a.assignment().iter().chain(b.assignment()).map(|(_, p)| *p).collect();
        a.generation() == b.generation()
            && !a.assignment().is_empty()
            && !b.assignment().is_empty()
            && a.assignment().len() + b.assignment().len() == 3
            && owned.len() == 3
    });
    eprintln!("two members in one thread settled in {took:?}");
    let description = describe_group(admin, "one-thread").unwrap();
    assert_eq!((description.state, description.members.len()), (STATE_STABLE, 2));
    assert_eq!(description.generation, a.generation());
    // One leaves: the other takes everything, without waiting for a timeout.
    b.close().unwrap();
    let started = Instant::now();
    while a.assignment().len() != 3 {
        a.poll(Duration::from_millis(50)).unwrap();
        assert!(started.elapsed() < Duration::from_millis(2500), "the survivor did not take over");
    }
    assert_eq!(describe_group(admin, "one-thread").unwrap().members.len(), 1);
    a.close().unwrap();
}

#[test]
fn two_members_polled_from_one_thread_converge_over_tcp() {
    let dir = temp_dir("groups-one-thread-tcp");
    let server = start_server(&dir, 2, |_| {});
    let bootstrap = server.address().to_string();
    let mut admin = Client::connect(&bootstrap).unwrap();
    admin.create_topic("split", 3, Retention::Default, Retention::Default).unwrap();
    two_members_in_one_thread_converge(&mut admin, || Client::connect(&bootstrap).unwrap());
    server.shutdown().unwrap();
}

#[test]
fn two_members_polled_from_one_thread_converge_embedded() {
    let dir = temp_dir("groups-one-thread-embedded");
    let mut config = ServerConfig::new(&dir);
    config.shards = 2;
    config.pin_threads = false;
    let broker = Broker::open(config).unwrap();
    let mut admin = broker.client();
    admin.create_topic("split", 3, Retention::Default, Retention::Default).unwrap();
    two_members_in_one_thread_converge(&mut admin, || broker.client());
    broker.close().unwrap();
}
