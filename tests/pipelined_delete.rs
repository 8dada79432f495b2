//! Guards the order of one connection's requests across shards (issue 12,
//! item 5): a Produce for a partition another shard owns, pipelined right ahead
//! of a DeleteTopic of its topic on one connection, takes effect first — it is
//! appended and acknowledged — and the deletion never poisons the partition or
//! answers StorageFailure. Before, the delete unpublished the topic and moved
//! its directory before the forwarded produce reached the owner: the produce
//! was answered UnknownTopicOrPartition, or StorageFailure with the partition
//! poisoned by "No such file".

mod common;

use common::{batch_of, start_server, temp_dir};
use ringmq::client::{Client, Connection, Retention};
use ringmq::log::Acks;
use ringmq::protocol::produce::{ProduceRequest, ProduceResponse};
use ringmq::protocol::topic::{CreateTopicRequest, DeleteTopicRequest, RETENTION_DEFAULT};
use ringmq::protocol::ErrorCode;
use std::net::SocketAddr;

const TRIES: usize = 60;

fn produce_then_delete_on_a_non_owner(acks: Acks) {
    let dir = temp_dir(&format!("pipelined-delete-{acks:?}"));
    let server = start_server(&dir, 2, |_| {});
    let client = Client::connect(&server.address().to_string()).unwrap();
    let batch = batch_of(&[b"kept in order".to_vec()], 1);
    for attempt in 0..TRIES {
        let topic = format!("t{attempt}");
        client.create_topic(&topic, 1, Retention::Default, Retention::Default).unwrap();
        let owner = client.topic(&topic).unwrap().partition_shards[0];
        let other = client.server_info().shard_count - 1 - owner;
        let port = server.shard_ports()[other as usize];
        let mut connection = Connection::connect(SocketAddr::new(server.address().ip(), port)).unwrap();
        connection.send(|id| ProduceRequest::encode(id, acks, &[(&topic, 0, &batch)])).unwrap();
        connection.send(|id| DeleteTopicRequest { name: topic.clone() }.encode(id)).unwrap();
        let (header, body) = connection.receive().unwrap();
        assert_eq!(header.error_code, 0);
        let response = ProduceResponse::decode(&body).unwrap();
        let result = &response.results[0];
        assert_eq!(
            (ErrorCode::from_u16(result.error), result.base_offset),
            (Some(ErrorCode::None), 0),
            "attempt {attempt}: the produce pipelined ahead of the delete must be appended"
        );
        let (header, _) = connection.receive().unwrap();
        assert_eq!(ErrorCode::from_u16(header.error_code), Some(ErrorCode::None), "attempt {attempt}: delete");
        // The name is free and a new topic of that name works.
        connection
            .send(|id| {
                CreateTopicRequest {
                    name: topic.clone(),
                    partitions: 1,
                    retention_ms: RETENTION_DEFAULT,
                    retention_bytes: RETENTION_DEFAULT,
                }
                .encode(id)
            })
            .unwrap();
        assert_eq!(connection.receive().unwrap().0.error_code, 0);
        client.refresh_metadata().unwrap();
        assert_eq!(client.produce(&topic, 0, &batch, Acks::Written).unwrap(), Some(0), "attempt {attempt}");
    }
    let appended = server.counters().produce_records.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(appended, 2 * TRIES as u64, "every produce was appended");
    server.shutdown().unwrap();
}

#[test]
fn a_produce_pipelined_ahead_of_a_delete_is_appended_first_with_acks_written() {
    produce_then_delete_on_a_non_owner(Acks::Written);
}

#[test]
fn a_produce_pipelined_ahead_of_a_delete_is_appended_first_with_acks_durable() {
    produce_then_delete_on_a_non_owner(Acks::Durable);
}
