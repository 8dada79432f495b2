//! Idempotent produce, the one retry loop every producer uses (the batching
//! [`super::producer::Producer`], the C ABI's `rmq_produce` and its
//! asynchronous worker): batches carry a producer id and a per-partition
//! sequence, so a batch resent after a connection error is appended once (the
//! owning shard answers the resend with the original offset).
//!
//! The rules, as Kafka's idempotent producer has them:
//! - a partition's batches go out in sequence order: its sequence is held
//!   (a lock per partition) from stamping until the answer is settled;
//! - a connection error resends the same bytes, up to [`PRODUCER_RETRIES`]
//!   times with a doubling backoff;
//! - an answer that proves the batch was not appended frees its sequence; any
//!   other failure (maybe appended, fenced, out of sequence) drops the producer
//!   id, and the next produce starts every partition over under a new one.

use super::transport::{ProduceBatch, Transport};
use super::{proves_not_appended, ClientError, Result};
use crate::batch::BatchBuilder;
use crate::log::producers::{last_sequence, next_sequence};
use crate::log::Acks;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Times an idempotent batch is resent after a connection error.
pub const PRODUCER_RETRIES: u32 = 5;
/// Wait before the first resend; doubled each time.
pub const PRODUCER_RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// A partition, as sequences are kept per partition.
type Key = (String, u32);

/// A batch to produce: its partition and its records, not yet stamped.
pub struct Unstamped {
    pub topic: String,
    pub partition: u32,
    pub builder: BatchBuilder,
}

/// The producer id and the next sequence of each partition, shared by every
/// thread producing through one transport.
#[derive(Default)]
pub struct Idempotence {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    identity: Option<(i64, i16)>,
    sequences: HashMap<Key, Arc<Mutex<i32>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A produce that found, once its partitions were free, that another thread's
/// failure had dropped the producer id it stamped with: nothing was sent.
fn renewed_elsewhere() -> ClientError {
    ClientError::Io(std::io::Error::other("a concurrent produce failed and renewed the producer id; resend"))
}

impl Idempotence {
    /// The producer id, asked for on first use (and after it was dropped).
    pub fn identity(&self, transport: &dyn Transport) -> Result<(i64, i16)> {
        let mut state = lock(&self.state);
        match state.identity {
            Some(identity) => Ok(identity),
            None => {
                let identity = transport.init_producer_id("")?;
                state.identity = Some(identity);
                Ok(identity)
            }
        }
    }

    fn forget(&self, identity: (i64, i16)) {
        let mut state = lock(&self.state);
        if state.identity == Some(identity) {
            state.identity = None;
            state.sequences.clear();
        }
    }

    /// Stamps `batches` with the producer id and their partitions' sequences,
    /// sends them pipelined with `acks`, resends them after connection errors
    /// and settles each partition's sequence. One result per batch, in order;
    /// the outer error means the call failed as a whole.
    pub fn produce(
        &self,
        transport: &dyn Transport,
        batches: Vec<Unstamped>,
        acks: Acks,
    ) -> Result<Vec<Result<Option<u64>>>> {
        let identity = self.identity(transport)?;
        // Every partition's sequence lock, taken in key order so two callers
        // never wait for each other in a circle.
        let cells: BTreeMap<Key, Arc<Mutex<i32>>> = {
            let mut state = lock(&self.state);
            batches
                .iter()
                .map(|b| {
                    let key = (b.topic.clone(), b.partition);
                    let cell = state.sequences.entry(key.clone()).or_default().clone();
                    (key, cell)
                })
                .collect()
        };
        let mut held: BTreeMap<&Key, MutexGuard<'_, i32>> = cells.iter().map(|(key, cell)| (key, lock(cell))).collect();
        // Another thread's produce may have failed while this one waited, and
        // dropped the producer id: never send under a stale one.
        if lock(&self.state).identity != Some(identity) {
            return Err(renewed_elsewhere());
        }

        let stamped = stamp(identity, batches, &held)?;
        let requests: Vec<ProduceBatch<'_>> = stamped
            .iter()
            .map(|((topic, partition), bytes, _)| (topic.as_str(), *partition, bytes.as_slice()))
            .collect();
        let outcome = send_with_retries(transport, &requests, acks);
        let results = match outcome {
            Ok(results) => results,
            Err(error) => {
                // Some of these batches may have been appended: reusing their
                // sequences could make a different batch look like a resend.
                self.forget(identity);
                return Err(error);
            }
        };
        let renew = settle(&results, &stamped, &mut held);
        drop(held);
        if renew {
            self.forget(identity);
        }
        Ok(results)
    }
}

/// A batch with its producer id and sequence, and the sequence after it.
type Stamped = (Key, Vec<u8>, i32);

/// Stamps each batch with the producer id and its partition's next sequence:
/// consecutive batches of one partition take consecutive ranges.
fn stamp(
    identity: (i64, i16),
    batches: Vec<Unstamped>,
    held: &BTreeMap<&Key, MutexGuard<'_, i32>>,
) -> Result<Vec<Stamped>> {
    let mut cursor: BTreeMap<Key, i32> = held.iter().map(|(key, next)| ((*key).clone(), **next)).collect();
    let mut stamped = Vec::with_capacity(batches.len());
    for Unstamped { topic, partition, mut builder } in batches {
        let key = (topic, partition);
        let first = cursor.get(&key).copied().unwrap_or(0);
        let records = builder.records_count();
        builder.producer(identity.0, identity.1, first);
        let bytes = builder.finish().map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
        let after = next_sequence(last_sequence(first, records.saturating_sub(1) as i32));
        cursor.insert(key.clone(), after);
        stamped.push((key, bytes, after));
    }
    Ok(stamped)
}

/// Advances each partition's sequence past its appended batches. Returns
/// whether the producer id must be dropped: a batch may have been appended,
/// was fenced or out of sequence.
fn settle(
    results: &[Result<Option<u64>>],
    stamped: &[Stamped],
    held: &mut BTreeMap<&Key, MutexGuard<'_, i32>>,
) -> bool {
    let mut renew = false;
    let mut blocked: Vec<&Key> = Vec::new();
    for (result, (key, _, after)) in results.iter().zip(stamped) {
        match result {
            Ok(_) if !blocked.contains(&key) => {
                if let Some(next) = held.get_mut(key) {
                    **next = *after;
                }
            }
            Ok(_) => renew = true,
            // Its sequence is free again; a later batch of the partition
            // in this call would now be out of sequence.
            Err(error) if proves_not_appended(error) => blocked.push(key),
            Err(_) => renew = true,
        }
    }
    renew
}

/// Sends `batches`; after a connection error reconnects and resends them all,
/// up to [`PRODUCER_RETRIES`] times with a doubling backoff. Only for batches a
/// resend cannot duplicate (idempotent ones).
fn send_with_retries(
    transport: &dyn Transport,
    batches: &[ProduceBatch<'_>],
    acks: Acks,
) -> Result<Vec<Result<Option<u64>>>> {
    let mut backoff = PRODUCER_RETRY_BACKOFF;
    let mut attempt = 0;
    loop {
        let outcome = transport.produce_many(batches, acks);
        let connection_failed = match &outcome {
            Err(ClientError::Io(_)) => true,
            Ok(results) => results.len() == 1 && matches!(results.first(), Some(Err(ClientError::Io(_)))),
            Err(_) => false,
        };
        if !connection_failed || attempt >= PRODUCER_RETRIES {
            return outcome;
        }
        attempt += 1;
        std::thread::sleep(backoff);
        backoff *= 2;
        let _ = transport.reconnect();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::batch::BatchHeader;
    use crate::client::group::PendingJoin;
    use crate::client::{FetchResult, Retention};
    use crate::protocol::fetch::FetchRequest;
    use crate::protocol::group::{GroupListing, GroupRequest, GroupResponse, JoinGroup};
    use crate::protocol::offsets::ListOffsetsResponse;
    use crate::protocol::share::{ShareAckRequest, ShareFetchRequest, ShareFetchResponse};
    use crate::protocol::ErrorCode;

    type Answer = Result<Vec<Result<Option<u64>>>>;

    /// A broker that answers produces from a script and records what it saw:
    /// (producer id, first sequence) of every batch sent.
    #[derive(Default)]
    struct Scripted {
        answers: Mutex<Vec<Answer>>,
        sent: Mutex<Vec<(i64, i32)>>,
        ids_given: Mutex<i64>,
        reconnects: Mutex<u32>,
    }

    fn unused<T>() -> Result<T> {
        Err(ClientError::Protocol("not used by these tests".into()))
    }

    impl Transport for Scripted {
        fn produce_many(&self, batches: &[ProduceBatch<'_>], _: Acks) -> Result<Vec<Result<Option<u64>>>> {
            for (_, _, bytes) in batches {
                let header = BatchHeader::parse(bytes).unwrap();
                lock(&self.sent).push((header.producer_id, header.base_sequence));
            }
            let mut answers = lock(&self.answers);
            if answers.is_empty() {
                return Ok(batches.iter().map(|_| Ok(Some(0))).collect());
            }
            answers.remove(0)
        }
        fn fetch(&self, _: &FetchRequest) -> Result<FetchResult> {
            unused()
        }
        fn list_offsets(&self, _: &str, _: u32, _: i64) -> Result<ListOffsetsResponse> {
            unused()
        }
        fn group(&self, _: GroupRequest) -> Result<GroupResponse> {
            unused()
        }
        fn start_join(&self, _: JoinGroup) -> Result<PendingJoin> {
            unused()
        }
        fn list_groups(&self) -> Result<Vec<GroupListing>> {
            unused()
        }
        fn share_fetch(&self, _: &ShareFetchRequest) -> Result<ShareFetchResponse> {
            unused()
        }
        fn share_acknowledge(&self, _: &ShareAckRequest) -> Result<Vec<u16>> {
            unused()
        }
        fn topics(&self) -> Result<Vec<(String, u32)>> {
            unused()
        }
        fn partition_count(&self, _: &str) -> Result<u32> {
            Ok(1)
        }
        fn create_topic(&self, _: &str, _: u32, _: Retention, _: Retention) -> Result<()> {
            unused()
        }
        fn delete_topic(&self, _: &str) -> Result<()> {
            unused()
        }
        fn init_producer_id(&self, _: &str) -> Result<(i64, i16)> {
            let mut given = lock(&self.ids_given);
            *given += 1;
            Ok((*given, 0))
        }
        fn reconnect(&self) -> Result<()> {
            *lock(&self.reconnects) += 1;
            Ok(())
        }
        fn independent(&self) -> Result<Arc<dyn Transport>> {
            unused()
        }
    }

    fn batch(records: usize) -> Unstamped {
        let mut builder = BatchBuilder::new();
        for _ in 0..records {
            builder.append(1, None, Some(b"v"), &[]).unwrap();
        }
        Unstamped { topic: "t".into(), partition: 0, builder }
    }

    fn connection_lost() -> ClientError {
        ClientError::Io(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset"))
    }

    #[test]
    fn a_connection_error_resends_the_same_sequence_and_then_moves_on() {
        let broker = Scripted::default();
        lock(&broker.answers).push(Err(connection_lost()));
        let idempotence = Idempotence::default();
        let results = idempotence.produce(&broker, vec![batch(3)], Acks::Durable).unwrap();
        assert!(results[0].is_ok());
        idempotence.produce(&broker, vec![batch(1)], Acks::Durable).unwrap();
        // Sent twice under sequence 0 (the resend), then 3 follows the 3 records.
        assert_eq!(*lock(&broker.sent), vec![(1, 0), (1, 0), (1, 3)]);
        assert_eq!(*lock(&broker.reconnects), 1);
    }

    #[test]
    fn a_refusal_that_proves_nothing_was_appended_frees_the_sequence() {
        let broker = Scripted::default();
        let refused = ClientError::Server { code: ErrorCode::NoSpace as u16, context: "produce".into() };
        lock(&broker.answers).push(Ok(vec![Err(refused)]));
        let idempotence = Idempotence::default();
        assert!(idempotence.produce(&broker, vec![batch(2)], Acks::Durable).unwrap()[0].is_err());
        idempotence.produce(&broker, vec![batch(2)], Acks::Durable).unwrap();
        assert_eq!(*lock(&broker.sent), vec![(1, 0), (1, 0)]);
    }

    #[test]
    fn a_failure_that_may_have_appended_starts_over_under_a_new_producer_id() {
        let broker = Scripted::default();
        let unknown = ClientError::Server { code: ErrorCode::StorageFailure as u16, context: "produce".into() };
        lock(&broker.answers).push(Ok(vec![Err(unknown)]));
        let idempotence = Idempotence::default();
        assert!(idempotence.produce(&broker, vec![batch(2)], Acks::Durable).unwrap()[0].is_err());
        idempotence.produce(&broker, vec![batch(2)], Acks::Durable).unwrap();
        assert_eq!(*lock(&broker.sent), vec![(1, 0), (2, 0)]);
    }

    #[test]
    fn retries_stop_after_the_limit_and_drop_the_producer_id() {
        let broker = Scripted::default();
        for _ in 0..=PRODUCER_RETRIES {
            lock(&broker.answers).push(Err(connection_lost()));
        }
        let idempotence = Idempotence::default();
        assert!(matches!(idempotence.produce(&broker, vec![batch(1)], Acks::Durable), Err(ClientError::Io(_))));
        assert_eq!(lock(&broker.sent).len(), PRODUCER_RETRIES as usize + 1);
        idempotence.produce(&broker, vec![batch(1)], Acks::Durable).unwrap();
        assert_eq!(lock(&broker.sent).last(), Some(&(2, 0)));
    }

    #[test]
    fn batches_of_one_partition_in_one_call_take_consecutive_sequences() {
        let broker = Scripted::default();
        let idempotence = Idempotence::default();
        idempotence.produce(&broker, vec![batch(2), batch(5)], Acks::Durable).unwrap();
        idempotence.produce(&broker, vec![batch(1)], Acks::Durable).unwrap();
        assert_eq!(*lock(&broker.sent), vec![(1, 0), (1, 2), (1, 7)]);
    }
}
