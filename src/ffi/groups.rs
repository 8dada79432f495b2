//! The C ABI of consumer groups, share groups (queues) and group descriptions.
//! Same conventions as the rest of the C ABI (see `src/ffi.rs`).

use super::{client_and_topic, client_error, fail, free_box, handle, rmq_client, rmq_fetch, rmq_result, text};
use crate::client::group::{describe_group, GroupConsumer, GroupConsumerConfig, GroupRecord, OffsetReset};
use crate::client::share::{ShareConsumer, ShareConsumerConfig, ShareRecord};
use crate::client::{ClientError, Transport};
use crate::groups::share::AckKind;
use crate::protocol::group::GroupDescription;
use crate::protocol::ErrorCode;
use std::ffi::c_char;
use std::sync::Arc;
use std::time::Duration;

/// How a share-group member acknowledges a record. Functions take it as a
/// `uint32_t` (an out-of-range value is RMQ_ERROR_INVALID_ARGUMENT).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum rmq_ack {
    /// Done: never delivered again.
    RMQ_ACK_ACCEPT = 1,
    /// Give it back: delivered again (or dead-lettered after max deliveries).
    RMQ_ACK_RELEASE = 2,
    /// Poison: straight to the dead-letter topic.
    RMQ_ACK_REJECT = 3,
    /// Keep it: the lease starts over.
    RMQ_ACK_RENEW = 4,
}

fn ack_of(kind: u32) -> Result<AckKind, rmq_result> {
    u8::try_from(kind).ok().and_then(AckKind::from_u8).ok_or_else(|| {
        fail(
            rmq_result::RMQ_ERROR_INVALID_ARGUMENT,
            format!("ack {kind}: use RMQ_ACK_ACCEPT, _RELEASE, _REJECT or _RENEW"),
        )
    })
}

/// A transport of a group or share consumer: connections of its own (TCP) or
/// a clone of the embedded client, so a long poll holds up nobody else.
fn own(client: &rmq_client) -> Result<Arc<dyn Transport>, rmq_result> {
    client.transport.independent().map_err(client_error)
}

/// # Safety
/// As `handle` and `text`.
unsafe fn client_and_group<'a>(
    client: *const rmq_client,
    group: *const c_char,
) -> Result<(&'a rmq_client, &'a str), rmq_result> {
    // SAFETY: forwarded from the caller's contract.
    let client = unsafe { handle(client, "client") }?;
    // SAFETY: forwarded from the caller's contract.
    let group = unsafe { text(group, "group") }?;
    Ok((client, group))
}

/// Settings of a group consumer. Zero fields take the defaults.
#[repr(C)]
pub struct rmq_group_options {
    /// The broker removes a member silent this long (default 10000).
    pub session_timeout_ms: u32,
    /// How long a rebalance waits for members to join again (default 10000).
    pub rebalance_timeout_ms: u32,
    /// How often polls heartbeat (default 300).
    pub heartbeat_interval_ms: u32,
    /// Where partitions without a committed offset start: 0 earliest, 1 latest.
    pub offset_reset_latest: u32,
    /// 0: commit positions before a rebalance and on close; 1: only when told.
    pub manual_commit: u32,
}

/// A member of a consumer group.
pub struct rmq_group_consumer {
    consumer: GroupConsumer<Arc<dyn Transport>>,
}

/// Writes `value` through an optional out-pointer.
///
/// # Safety
/// `out` is NULL or writable.
unsafe fn put<T>(out: *mut T, value: T) {
    // SAFETY: NULL or writable, by the caller's contract.
    if let Some(slot) = unsafe { out.as_mut() } {
        *slot = value;
    }
}

fn ms_or(value: u32, default: Duration) -> Duration {
    if value == 0 {
        default
    } else {
        Duration::from_millis(u64::from(value))
    }
}

/// Joins `group` (on the first poll) for `topics_len` topics. `options` may be
/// NULL (defaults). Close with `rmq_group_consumer_close`.
///
/// # Safety
/// `client` is live (the consumer may outlive it); `group` NUL-terminated;
/// `topics` points to `topics_len` NUL-terminated strings; `options` NULL or
/// readable; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn rmq_group_consumer_open(
    client: *const rmq_client,
    group: *const c_char,
    topics: *const *const c_char,
    topics_len: usize,
    options: *const rmq_group_options,
    out: *mut *mut rmq_group_consumer,
) -> rmq_result {
    super::guard(|| {
        // SAFETY: per contract.
        let (client, group) = try_ffi!(unsafe { client_and_group(client, group) });
        if out.is_null() || topics.is_null() {
            return fail(rmq_result::RMQ_ERROR_NULL, "topics or out is NULL");
        }
        // SAFETY: `topics_len` pointers at `topics` by contract.
        let pointers = unsafe { std::slice::from_raw_parts(topics, topics_len) };
        let mut names = Vec::with_capacity(topics_len);
        for pointer in pointers {
            // SAFETY: each is NUL-terminated by contract.
            names.push(try_ffi!(unsafe { text(*pointer, "topic") }));
        }
        let defaults = GroupConsumerConfig::default();
        // SAFETY: NULL or readable.
        let config = match unsafe { options.as_ref() } {
            None => defaults,
            Some(options) => GroupConsumerConfig {
                session_timeout: ms_or(options.session_timeout_ms, defaults.session_timeout),
                rebalance_timeout: ms_or(options.rebalance_timeout_ms, defaults.rebalance_timeout),
                heartbeat_interval: ms_or(options.heartbeat_interval_ms, defaults.heartbeat_interval),
                offset_reset: if options.offset_reset_latest != 0 {
                    OffsetReset::Latest
                } else {
                    OffsetReset::Earliest
                },
                auto_commit: options.manual_commit == 0,
                max_bytes: defaults.max_bytes,
            },
        };
        let transport = try_ffi!(own(client));
        let consumer = GroupConsumer::new(transport, group, &names, config);
        // SAFETY: non-NULL and writable.
        unsafe { *out = Box::into_raw(Box::new(rmq_group_consumer { consumer })) };
        rmq_result::RMQ_OK
    })
}

fn give_records(records: Vec<(String, u32, u16, crate::client::ConsumedRecord)>, out: *mut *mut rmq_fetch) {
    let mut fetch =
        rmq_fetch { records: Vec::with_capacity(records.len()), origins: Vec::with_capacity(records.len()) };
    for (topic, partition, deliveries, record) in records {
        fetch.records.push(record);
        fetch.origins.push((topic, partition, deliveries));
    }
    // SAFETY: callers checked `out` is non-NULL and writable.
    unsafe { *out = Box::into_raw(Box::new(fetch)) };
}

/// Heartbeats, follows rebalances, and returns records of the partitions this
/// member owns, waiting up to `timeout_ms` when there are none. `*out` (free
/// with `rmq_fetch_free`) may be empty; `rmq_fetch_record_origin` tells each
/// record's topic and partition.
///
/// # Safety
/// `consumer` is live and used by one thread at a time; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn rmq_group_consumer_poll(
    consumer: *mut rmq_group_consumer,
    timeout_ms: u32,
    out: *mut *mut rmq_fetch,
) -> rmq_result {
    super::guard(|| {
        if consumer.is_null() || out.is_null() {
            return fail(rmq_result::RMQ_ERROR_NULL, "consumer or out is NULL");
        }
        // SAFETY: live and not shared concurrently, by contract.
        let consumer = unsafe { &mut *consumer };
        let records = match consumer.consumer.poll(Duration::from_millis(u64::from(timeout_ms))) {
            Ok(records) => records,
            Err(error) => return client_error(error),
        };
        let records =
            records.into_iter().map(|GroupRecord { topic, partition, record }| (topic, partition, 0, record)).collect();
        give_records(records, out);
        rmq_result::RMQ_OK
    })
}

/// Commits the position of every partition the member owns (what its polls
/// returned so far).
///
/// # Safety
/// `consumer` is live and used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rmq_group_consumer_commit(consumer: *mut rmq_group_consumer) -> rmq_result {
    super::guard(|| {
        if consumer.is_null() {
            return fail(rmq_result::RMQ_ERROR_NULL, "consumer is NULL");
        }
        // SAFETY: live and not shared concurrently, by contract.
        match unsafe { &mut *consumer }.consumer.commit() {
            Ok(()) => rmq_result::RMQ_OK,
            Err(error) => client_error(error),
        }
    })
}

/// Commits `next_offset` (the next record to read) for one partition.
///
/// # Safety
/// `consumer` is live and used by one thread at a time; `topic` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn rmq_group_consumer_commit_offset(
    consumer: *mut rmq_group_consumer,
    topic: *const c_char,
    partition: u32,
    next_offset: u64,
) -> rmq_result {
    super::guard(|| {
        if consumer.is_null() {
            return fail(rmq_result::RMQ_ERROR_NULL, "consumer is NULL");
        }
        // SAFETY: per contract.
        let topic = try_ffi!(unsafe { text(topic, "topic") });
        // SAFETY: live and not shared concurrently, by contract.
        match unsafe { &mut *consumer }.consumer.commit_offsets(&[(topic.to_owned(), partition, next_offset)]) {
            Ok(()) => rmq_result::RMQ_OK,
            Err(error) => client_error(error),
        }
    })
}

/// The member's generation (0 before it joined; 0 for NULL).
///
/// # Safety
/// `consumer` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn rmq_group_consumer_generation(consumer: *const rmq_group_consumer) -> u32 {
    // SAFETY: NULL or live.
    super::guard_value(0, || unsafe { consumer.as_ref() }.map_or(0, |c| c.consumer.generation()))
}

/// Partitions the member owns in its generation (0 for NULL).
///
/// # Safety
/// `consumer` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn rmq_group_consumer_assignment_len(consumer: *const rmq_group_consumer) -> usize {
    // SAFETY: NULL or live.
    super::guard_value(0, || unsafe { consumer.as_ref() }.map_or(0, |c| c.consumer.assignment().len()))
}

/// Commits (unless manual_commit) and leaves the group, so the other members
/// take its partitions over at once; then frees the consumer (also when the
/// commit or leave failed, which the result reports). NULL is a no-op.
///
/// # Safety
/// `consumer` is NULL or from `rmq_group_consumer_open`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn rmq_group_consumer_close(consumer: *mut rmq_group_consumer) -> rmq_result {
    super::guard(|| {
        if consumer.is_null() {
            return rmq_result::RMQ_OK;
        }
        // SAFETY: ownership returns here, once.
        let consumer = unsafe { Box::from_raw(consumer) };
        match consumer.consumer.close() {
            Ok(_) => rmq_result::RMQ_OK,
            Err(error) => client_error(error),
        }
    })
}

/// Topic, partition and delivery count of record `index` of a fetch from a
/// group or share consumer (delivery count 0 for group consumers). `*topic`
/// borrows from the fetch and is not NUL-terminated. Any out-pointer may be NULL.
///
/// # Safety
/// `fetch` is live; each out-pointer NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rmq_fetch_record_origin(
    fetch: *const rmq_fetch,
    index: usize,
    topic: *mut *const u8,
    topic_len: *mut usize,
    partition: *mut u32,
    delivery_count: *mut u16,
) -> rmq_result {
    super::guard(|| {
        // SAFETY: per contract.
        let fetch = try_ffi!(unsafe { handle(fetch, "fetch") });
        let Some((name, number, deliveries)) = fetch.origins.get(index) else {
            return fail(
                rmq_result::RMQ_ERROR_INVALID_ARGUMENT,
                format!("record {index}: out of range, or the fetch is of one partition"),
            );
        };
        // SAFETY: each is NULL or writable.
        unsafe {
            put(topic, name.as_ptr());
            put(topic_len, name.len());
            put(partition, *number);
            put(delivery_count, *deliveries);
        }
        rmq_result::RMQ_OK
    })
}

/// Settings of a share consumer. Zero/NULL fields take the defaults.
#[repr(C)]
pub struct rmq_share_options {
    /// How long a received record stays this member's (default 30000).
    pub lease_ms: u32,
    /// Deliveries before a released or expired record is dead-lettered (default 5).
    pub max_deliveries: u16,
    /// The dead-letter topic (default "<topic>.dlq"); NULL for the default.
    pub dead_letter_topic: *const c_char,
}

/// A member of a share group reading one topic as a queue.
pub struct rmq_share_consumer {
    consumer: ShareConsumer<Arc<dyn Transport>>,
}

/// Opens a share-group member on `topic`. `options` may be NULL. Close with
/// `rmq_share_consumer_close`.
///
/// # Safety
/// `client` is live (the consumer may outlive it); `group` and `topic`
/// NUL-terminated; `options` NULL or readable; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn rmq_share_consumer_open(
    client: *const rmq_client,
    group: *const c_char,
    topic: *const c_char,
    options: *const rmq_share_options,
    out: *mut *mut rmq_share_consumer,
) -> rmq_result {
    super::guard(|| {
        // SAFETY: per contract.
        let (client, topic) = try_ffi!(unsafe { client_and_topic(client, topic) });
        // SAFETY: per contract.
        let group = try_ffi!(unsafe { text(group, "group") });
        if out.is_null() {
            return fail(rmq_result::RMQ_ERROR_NULL, "out is NULL");
        }
        let defaults = ShareConsumerConfig::default();
        // SAFETY: NULL or readable.
        let config = match unsafe { options.as_ref() } {
            None => defaults,
            Some(options) => ShareConsumerConfig {
                lease: ms_or(options.lease_ms, defaults.lease),
                max_deliveries: if options.max_deliveries == 0 {
                    defaults.max_deliveries
                } else {
                    options.max_deliveries
                },
                dead_letter_topic: if options.dead_letter_topic.is_null() {
                    None
                } else {
                    // SAFETY: non-NULL and NUL-terminated by contract.
                    Some(try_ffi!(unsafe { text(options.dead_letter_topic, "dead_letter_topic") }).to_owned())
                },
                ..defaults
            },
        };
        let transport = try_ffi!(own(client));
        let consumer = try_ffi!(ShareConsumer::new(transport, group, topic, config).map_err(client_error));
        // SAFETY: non-NULL and writable.
        unsafe { *out = Box::into_raw(Box::new(rmq_share_consumer { consumer })) };
        rmq_result::RMQ_OK
    })
}

/// Acquires up to `max_records` records under this member's lease, waiting up
/// to `timeout_ms` when none are available. `*out` (free with
/// `rmq_fetch_free`) may be empty; acknowledge each record with
/// `rmq_share_acknowledge` (by its index in the fetch).
///
/// # Safety
/// `consumer` is live and used by one thread at a time; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn rmq_share_receive(
    consumer: *mut rmq_share_consumer,
    max_records: u32,
    timeout_ms: u32,
    out: *mut *mut rmq_fetch,
) -> rmq_result {
    super::guard(|| {
        if consumer.is_null() || out.is_null() {
            return fail(rmq_result::RMQ_ERROR_NULL, "consumer or out is NULL");
        }
        // SAFETY: live and not shared concurrently, by contract.
        let consumer = unsafe { &mut *consumer };
        let wait = Duration::from_millis(u64::from(timeout_ms));
        let records = match consumer.consumer.receive(max_records.max(1), wait) {
            Ok(records) => records,
            Err(error) => return client_error(error),
        };
        let records = records
            .into_iter()
            .map(|ShareRecord { topic, partition, delivery_count, record }| (topic, partition, delivery_count, record))
            .collect();
        give_records(records, out);
        rmq_result::RMQ_OK
    })
}

/// Acknowledges records of `fetch` (by index) as `kind` in one request; the
/// result of each, in order. Both exported acknowledge functions use it.
fn acknowledge_records(
    consumer: &mut rmq_share_consumer,
    fetch: &rmq_fetch,
    indexes: &[usize],
    kind: u32,
) -> Result<Vec<rmq_result>, rmq_result> {
    let kind = ack_of(kind)?;
    let mut acks = Vec::with_capacity(indexes.len());
    for &index in indexes {
        let (Some(record), Some((topic, partition, _))) = (fetch.records.get(index), fetch.origins.get(index)) else {
            return Err(fail(
                rmq_result::RMQ_ERROR_INVALID_ARGUMENT,
                format!("record {index} is not a received record"),
            ));
        };
        if topic != consumer.consumer.topic() {
            return Err(fail(
                rmq_result::RMQ_ERROR_INVALID_ARGUMENT,
                format!("record {index} is from topic {topic}, not this consumer's {}", consumer.consumer.topic()),
            ));
        }
        acks.push((*partition, record.offset, kind));
    }
    let codes = consumer.consumer.acknowledge(&acks).map_err(client_error)?;
    Ok(codes
        .iter()
        .zip(&acks)
        .map(|(code, (_, offset, _))| match code {
            ErrorCode::None => rmq_result::RMQ_OK,
            code => client_error(ClientError::Server {
                code: *code as u16,
                context: format!("acknowledge offset {offset}"),
            }),
        })
        .collect())
}

/// Acknowledges record `index` of `fetch` (from `rmq_share_receive` on this
/// consumer) as `kind` (an `rmq_ack`). RMQ_ERROR_INVALID_STATE when this
/// member does not hold it (its lease expired, or it was acknowledged).
///
/// # Safety
/// `consumer` and `fetch` are live; `consumer` used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rmq_share_acknowledge(
    consumer: *mut rmq_share_consumer,
    fetch: *const rmq_fetch,
    index: usize,
    kind: u32,
) -> rmq_result {
    super::guard(|| {
        if consumer.is_null() {
            return fail(rmq_result::RMQ_ERROR_NULL, "consumer is NULL");
        }
        // SAFETY: per contract.
        let fetch = try_ffi!(unsafe { handle(fetch, "fetch") });
        // SAFETY: live and not shared concurrently, by contract.
        let consumer = unsafe { &mut *consumer };
        let results = try_ffi!(acknowledge_records(consumer, fetch, &[index], kind));
        results
            .first()
            .copied()
            .unwrap_or_else(|| fail(rmq_result::RMQ_ERROR_BROKER, "no answer for the acknowledgement"))
    })
}

/// Acknowledges `count` records of `fetch` (their indexes in `indexes`) as
/// `kind`, in one request (consecutive offsets travel as one range). RMQ_OK
/// when every one applied; otherwise the result of the first that did not.
/// `results` (NULL, or room for `count`) gets each record's result.
///
/// # Safety
/// `consumer` and `fetch` are live; `consumer` used by one thread at a time;
/// `indexes` points to `count` values; `results` is NULL or writable for `count`.
#[no_mangle]
pub unsafe extern "C" fn rmq_share_acknowledge_many(
    consumer: *mut rmq_share_consumer,
    fetch: *const rmq_fetch,
    indexes: *const usize,
    count: usize,
    kind: u32,
    results: *mut rmq_result,
) -> rmq_result {
    super::guard(|| {
        if consumer.is_null() || (indexes.is_null() && count > 0) {
            return fail(rmq_result::RMQ_ERROR_NULL, "consumer or indexes is NULL");
        }
        // SAFETY: per contract.
        let fetch = try_ffi!(unsafe { handle(fetch, "fetch") });
        // SAFETY: `count` values at `indexes` by contract (checked non-NULL above when count > 0).
        let indexes = if count == 0 { &[][..] } else { unsafe { std::slice::from_raw_parts(indexes, count) } };
        // SAFETY: live and not shared concurrently, by contract.
        let consumer = unsafe { &mut *consumer };
        let each = try_ffi!(acknowledge_records(consumer, fetch, indexes, kind));
        if !results.is_null() {
            for (position, result) in each.iter().enumerate() {
                // SAFETY: room for `count` results by contract; position < count.
                unsafe { *results.add(position) = *result };
            }
        }
        each.into_iter().find(|result| *result != rmq_result::RMQ_OK).unwrap_or(rmq_result::RMQ_OK)
    })
}

/// Frees a share consumer; records it holds stay leased until their leases
/// expire. NULL is a no-op.
///
/// # Safety
/// `consumer` is NULL or from `rmq_share_consumer_open`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn rmq_share_consumer_close(consumer: *mut rmq_share_consumer) {
    // SAFETY: per this function's contract.
    super::guard_value((), || unsafe { free_box(consumer) })
}

/// One partition of a group description.
#[repr(C)]
pub struct rmq_group_partition {
    /// Borrowed from the description; not NUL-terminated.
    pub topic: *const u8,
    pub topic_len: usize,
    pub partition: u32,
    /// Consumer groups: committed offset (-1 none), end offset, lag (-1 unknown).
    pub committed: i64,
    pub end: i64,
    pub lag: i64,
    /// Share groups: records available, acquired (leased), archived.
    pub available: u64,
    pub acquired: u64,
    pub archived: u64,
}

/// A group as the broker describes it.
pub struct rmq_group_info {
    description: GroupDescription,
}

/// Describes `group`: kind (0 consumer, 1 share), state (0 empty, 1
/// rebalancing, 2 stable), members, and per partition its offsets and lag, or
/// its share-group counts. Free with `rmq_group_info_free`.
///
/// # Safety
/// `client` is live; `group` NUL-terminated; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn rmq_group_describe(
    client: *const rmq_client,
    group: *const c_char,
    out: *mut *mut rmq_group_info,
) -> rmq_result {
    super::guard(|| {
        // SAFETY: per contract.
        let (client, group) = try_ffi!(unsafe { client_and_group(client, group) });
        if out.is_null() {
            return fail(rmq_result::RMQ_ERROR_NULL, "out is NULL");
        }
        let transport = try_ffi!(own(client));
        let description = try_ffi!(describe_group(&transport, group).map_err(client_error));
        // SAFETY: non-NULL and writable.
        unsafe { *out = Box::into_raw(Box::new(rmq_group_info { description })) };
        rmq_result::RMQ_OK
    })
}

/// Kind, state, generation and member count of a description; any out-pointer
/// may be NULL.
///
/// # Safety
/// `info` is live; each out-pointer NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rmq_group_info_summary(
    info: *const rmq_group_info,
    kind: *mut u32,
    state: *mut u32,
    generation: *mut u32,
    members: *mut usize,
) -> rmq_result {
    super::guard(|| {
        // SAFETY: per contract.
        let info = try_ffi!(unsafe { handle(info, "info") });
        let description = &info.description;
        // SAFETY: each is NULL or writable.
        unsafe {
            put(kind, u32::from(description.kind));
            put(state, u32::from(description.state));
            put(generation, description.generation);
            put(members, description.members.len());
        }
        rmq_result::RMQ_OK
    })
}

/// Partitions in a description (0 for NULL).
///
/// # Safety
/// `info` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn rmq_group_info_partitions(info: *const rmq_group_info) -> usize {
    // SAFETY: NULL or live.
    super::guard_value(0, || {
        unsafe { info.as_ref() }.map_or(0, |info| info.description.partitions.len() + info.description.share.len())
    })
}

/// Partition `index` of a description, borrowing its topic name.
///
/// # Safety
/// `info` is live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn rmq_group_info_partition(
    info: *const rmq_group_info,
    index: usize,
    out: *mut rmq_group_partition,
) -> rmq_result {
    super::guard(|| {
        // SAFETY: per contract.
        let info = try_ffi!(unsafe { handle(info, "info") });
        if out.is_null() {
            return fail(rmq_result::RMQ_ERROR_NULL, "out is NULL");
        }
        let description = &info.description;
        let entry = if let Some(lag) = description.partitions.get(index) {
            rmq_group_partition {
                topic: lag.topic.as_ptr(),
                topic_len: lag.topic.len(),
                partition: lag.partition,
                committed: lag.committed,
                end: lag.end,
                lag: lag.lag,
                available: 0,
                acquired: 0,
                archived: 0,
            }
        } else if let Some(share) =
            index.checked_sub(description.partitions.len()).and_then(|i| description.share.get(i))
        {
            rmq_group_partition {
                topic: share.topic.as_ptr(),
                topic_len: share.topic.len(),
                partition: share.partition,
                committed: share.start,
                end: share.end,
                lag: share.end - share.start,
                available: share.available,
                acquired: share.acquired,
                archived: share.archived,
            }
        } else {
            return fail(rmq_result::RMQ_ERROR_INVALID_ARGUMENT, format!("partition index {index} out of range"));
        };
        // SAFETY: non-NULL and writable.
        unsafe { *out = entry };
        rmq_result::RMQ_OK
    })
}

/// Frees a description. NULL is a no-op.
///
/// # Safety
/// `info` is NULL or from `rmq_group_describe`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn rmq_group_info_free(info: *mut rmq_group_info) {
    // SAFETY: per this function's contract.
    super::guard_value((), || unsafe { free_box(info) })
}
