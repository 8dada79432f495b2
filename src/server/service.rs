//! The broker service: the one place that knows where each [`Op`] runs and
//! how the compound ones (create and delete a topic, list every group) are
//! carried out. Every front end goes through it: the native protocol's
//! dispatch calls [`start`] on the shard that read the request; the embedded
//! client asks [`destination`] which shard to post to and that shard's runner
//! calls [`run_here`] for the ops that run wherever they arrive.
//!
//! ```text
//!   front end ──Op──▶ destination ──▶ owner shard's runner ──▶ partitions / coordinator / share
//!                        │ Any
//!                        └──▶ run_here: CreateTopic, DeleteTopic, ListGroups (fan out to the shards)
//! ```

use super::catalog::{owner, Catalog, TopicConfig};
use super::handle::ShardHandle;
use super::message::{ready, Op, Reply, ReplyFuture};
use super::shared::Shared;
use crate::groups::classic::ClassicRequest;
use crate::protocol::group::{GroupListing, GroupRequest};
use crate::protocol::metadata::{MetadataResponse, ShardInfo, TopicMetadata};
use crate::protocol::offsets::QUERY_EARLIEST;
use crate::protocol::topic::{CreateTopicRequest, RETENTION_DEFAULT, RETENTION_UNLIMITED};
use crate::protocol::ErrorCode;
use crate::security::{Operation, Principal, ResourceKind, Security};
use std::rc::Rc;
use std::sync::Arc;

/// The shard that hands out producer ids.
pub const PRODUCER_ID_SHARD: u16 = 0;

/// Where an op runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Destination {
    /// On this shard (the partition's owner, the group's coordinator, the
    /// producer-id shard).
    Shard(u16),
    /// On whichever shard it reached (the compound ops).
    Any,
}

/// Where `op` runs, or why it is refused before it runs.
pub(crate) fn destination(catalog: &Catalog, shard_count: u16, op: &Op) -> Result<Destination, ErrorCode> {
    let route = |topic: &str, partition: u32| catalog.route(topic, partition, shard_count).map(Destination::Shard);
    match op {
        Op::Produce { topic, partition, .. } => route(topic, *partition),
        Op::Fetch(request) => route(&request.topic, request.partition),
        Op::ListOffsets(request) if request.query < QUERY_EARLIEST => Err(ErrorCode::InvalidArgument),
        Op::ListOffsets(request) => route(&request.topic, request.partition),
        Op::ShareFetch(request) => route(&request.topic, request.partition),
        Op::ShareAck(request) => route(&request.topic, request.partition),
        Op::Follow { topic, partition } => route(topic, *partition),
        Op::Group(request) => Ok(Destination::Shard(crate::groups::coordinator(request.group(), shard_count))),
        Op::Classic(request) => Ok(Destination::Shard(crate::groups::coordinator(request.group(), shard_count))),
        Op::InitProducerId(_) => Ok(Destination::Shard(PRODUCER_ID_SHARD)),
        Op::CreateTopic(_) | Op::DeleteTopic(_) | Op::ListGroups => Ok(Destination::Any),
        // Internal steps are addressed by the service itself, never routed.
        Op::OpenTopic(_)
        | Op::ClosePartitions(_)
        | Op::ForgetTopic(_)
        | Op::ShardGroups
        | Op::ShareDescribe(_)
        | Op::Metrics => Err(ErrorCode::Internal),
    }
}

/// Whether `principal` may run `op` (docs/SECURITY.md lists what each
/// operation needs). Checked before anything runs, so a refused request
/// changes nothing.
pub(crate) fn authorize(security: &Security, principal: &Principal, op: &Op) -> Result<(), ErrorCode> {
    if matches!(principal, Principal::Trusted | Principal::User { superuser: true, .. }) {
        return Ok(());
    }
    let topic = |operation, name: &str| security.check_topic(principal, operation, name);
    let group = |operation, name: &str| security.check_group(principal, operation, name);
    let committed = |offsets: &[crate::protocol::group::CommittedOffset]| {
        offsets.iter().try_for_each(|offset| topic(Operation::Read, &offset.topic))
    };
    match op {
        Op::Produce { topic: name, .. } => topic(Operation::Write, name),
        Op::Fetch(request) => topic(Operation::Read, &request.topic),
        Op::Follow { topic: name, .. } => topic(Operation::Read, name),
        Op::ListOffsets(request) => topic(Operation::Describe, &request.topic),
        Op::ShareFetch(request) => {
            topic(Operation::Read, &request.topic).and_then(|()| group(Operation::Read, &request.group))
        }
        Op::ShareAck(request) => {
            topic(Operation::Read, &request.topic).and_then(|()| group(Operation::Read, &request.group))
        }
        Op::Group(request) => match request {
            GroupRequest::Commit(commit) => {
                group(Operation::Read, &commit.group).and_then(|()| committed(&commit.offsets))
            }
            GroupRequest::Fetch { group: name, partitions } => group(Operation::Describe, name)
                .and_then(|()| partitions.iter().try_for_each(|(name, _)| topic(Operation::Describe, name))),
            GroupRequest::Describe { group: name } => group(Operation::Describe, name),
            GroupRequest::Join(_) | GroupRequest::Heartbeat { .. } | GroupRequest::Leave { .. } => {
                group(Operation::Read, request.group())
            }
        },
        Op::Classic(request) => match request {
            ClassicRequest::Commit { commit, .. } => {
                group(Operation::Read, &commit.group).and_then(|()| committed(&commit.offsets))
            }
            ClassicRequest::Describe { group: name } => group(Operation::Describe, name),
            _ => group(Operation::Read, request.group()),
        },
        // Filtered by describe on each group when it answers.
        Op::ListGroups => Ok(()),
        Op::InitProducerId(_) if security.allows_some_write(principal) => Ok(()),
        Op::InitProducerId(_) => Err(ErrorCode::ClusterNotAuthorized),
        Op::CreateTopic(request) => topic(Operation::Create, &request.name),
        Op::DeleteTopic(name) => topic(Operation::Delete, name),
        Op::OpenTopic(_)
        | Op::ClosePartitions(_)
        | Op::ForgetTopic(_)
        | Op::ShardGroups
        | Op::ShareDescribe(_)
        | Op::Metrics => Err(ErrorCode::Internal),
    }
}

/// Starts `op`, which reached this shard from a front end on behalf of
/// `principal`: checks it may, routes it and performs its ordered part (the
/// append, the push into a ring); the future completes the reply.
pub(crate) async fn start(handle: &Rc<ShardHandle>, principal: &Principal, op: Op) -> ReplyFuture {
    let trusted = matches!(principal, Principal::Trusted | Principal::User { superuser: true, .. });
    if !trusted {
        if let Err(code) = handle.with_security(|security| authorize(security, principal, &op)) {
            return ready(Reply::Failed(code));
        }
    }
    if matches!(op, Op::ListGroups) && !trusted {
        let security = handle.security();
        let principal = principal.clone();
        let reply = start_authorized(handle, op).await;
        return Box::pin(async move {
            match reply.await {
                Reply::Groups(Ok(groups)) => Reply::Groups(Ok(groups
                    .into_iter()
                    .filter(|g| security.allows(&principal, Operation::Describe, ResourceKind::Group, &g.group))
                    .collect())),
                other => other,
            }
        });
    }
    if matches!(op, Op::Produce { .. }) {
        let started = std::time::Instant::now();
        let handle = handle.clone();
        let reply = start_authorized(&handle, op).await;
        return Box::pin(async move {
            let reply = reply.await;
            handle.shared.counters.produce_latency.record(started.elapsed());
            reply
        });
    }
    start_authorized(handle, op).await
}

async fn start_authorized(handle: &Rc<ShardHandle>, op: Op) -> ReplyFuture {
    match destination(&handle.catalog(), handle.shard_count(), &op) {
        Ok(Destination::Shard(shard)) => handle.submit(shard, op).await,
        Ok(Destination::Any) => run_here(handle, op),
        Err(code) => ready(Reply::Failed(code)),
    }
}

/// Runs an op whose destination is [`Destination::Any`] on this shard.
pub(crate) fn run_here(handle: &Rc<ShardHandle>, op: Op) -> ReplyFuture {
    let handle = handle.clone();
    match op {
        Op::CreateTopic(request) => Box::pin(async move { Reply::Done(create_topic(&handle, request).await) }),
        Op::DeleteTopic(name) => Box::pin(async move { Reply::Done(delete_topic(&handle, &name).await) }),
        Op::ListGroups => Box::pin(async move { Reply::Groups(list_groups(&handle).await) }),
        _ => ready(Reply::Failed(ErrorCode::Internal)),
    }
}

/// A retention value from the wire: -2 the broker's default, -1 unlimited.
fn retention_from_wire(value: i64, default: Option<u64>) -> Result<Option<u64>, ErrorCode> {
    match value {
        RETENTION_DEFAULT => Ok(default),
        RETENTION_UNLIMITED => Ok(None),
        v if v >= 0 => Ok(Some(v as u64)),
        _ => Err(ErrorCode::InvalidArgument),
    }
}

/// A retention value for the wire.
pub(crate) fn retention_to_wire(value: Option<u64>) -> i64 {
    value.map_or(RETENTION_UNLIMITED, |v| v.min(i64::MAX as u64) as i64)
}

async fn create_topic(handle: &Rc<ShardHandle>, request: CreateTopicRequest) -> Result<(), ErrorCode> {
    let config = &handle.shared.config;
    let topic = TopicConfig {
        name: request.name,
        partitions: request.partitions,
        retention_ms: retention_from_wire(request.retention_ms, config.retention_ms)?,
        retention_bytes: retention_from_wire(request.retention_bytes, config.retention_bytes)?,
        created_at_ms: crate::log::partition::now_ms(),
    };
    add_topic(handle, topic).await.map(|_| ())
}

/// Runs `op` on every shard that owns a partition of `topic`, and waits.
async fn on_owners(handle: &Rc<ShardHandle>, topic: &TopicConfig, op: impl Fn() -> Op) -> Result<(), ErrorCode> {
    let mut owners: Vec<u16> = (0..topic.partitions).map(|p| owner(&topic.name, p, handle.shard_count())).collect();
    owners.sort_unstable();
    owners.dedup();
    on_shards(handle, owners, op).await
}

/// Runs `op` on each of `shards`, and waits for all; the last failure wins.
async fn on_shards(handle: &Rc<ShardHandle>, shards: Vec<u16>, op: impl Fn() -> Op) -> Result<(), ErrorCode> {
    let mut replies: Vec<ReplyFuture> = Vec::with_capacity(shards.len());
    for shard in shards {
        replies.push(handle.submit(shard, op()).await);
    }
    let mut result = Ok(());
    for reply in futures_util::future::join_all(replies).await {
        if let Err(code) = reply.into_done() {
            result = Err(code);
        }
    }
    result
}

/// Creates a topic: its files, then its partitions on their owners, and only
/// then publishes it, so no request is ever routed to a partition that is not
/// open yet. A topic some of whose partitions could not be opened is removed.
pub(crate) async fn add_topic(handle: &Rc<ShardHandle>, topic: TopicConfig) -> Result<Arc<TopicConfig>, ErrorCode> {
    let catalog = &handle.shared.catalog;
    let topic = catalog.begin_create(topic)?;
    if let Err(code) = on_owners(handle, &topic, || Op::OpenTopic(topic.clone())).await {
        eprintln!("ringmq: creating topic {} failed ({code}); removing it", topic.name);
        let moved = catalog.abandon_created(&topic.name);
        let _ = on_owners(handle, &topic, || Op::ClosePartitions(topic.name.clone())).await;
        if let Ok(dir) = moved {
            remove_deleted(&dir);
        }
        return Err(code);
    }
    catalog.publish_created(&topic);
    Ok(topic)
}

/// Deletes a topic. Its owners close its partitions first, through the rings
/// that carried whatever this shard forwarded to them before (so a Produce
/// pipelined ahead of the delete on one connection is appended, not refused);
/// then the topic is unpublished and its directory moved away (the commit
/// point); then every shard forgets its committed offsets and share state.
async fn delete_topic(handle: &Rc<ShardHandle>, name: &str) -> Result<(), ErrorCode> {
    let catalog = &handle.shared.catalog;
    let topic = catalog.begin_delete(name)?;
    let closed = on_owners(handle, &topic, || Op::ClosePartitions(topic.name.clone())).await;
    let moved_to = catalog.finish_delete(name)?;
    let forgotten =
        on_shards(handle, (0..handle.shard_count()).collect(), || Op::ForgetTopic(topic.name.clone())).await;
    remove_deleted(&moved_to);
    closed.and(forgotten)
}

/// Removes a directory moved under `deleted/` (what is left is removed at the
/// next start).
fn remove_deleted(dir: &std::path::Path) {
    if let Err(error) = std::fs::remove_dir_all(dir) {
        eprintln!("ringmq: cannot remove {}: {error}; it is removed at the next start", dir.display());
    }
}

/// Every group of every shard, sorted by name.
async fn list_groups(handle: &Rc<ShardHandle>) -> Result<Vec<GroupListing>, ErrorCode> {
    let mut replies = Vec::new();
    for shard in 0..handle.shard_count() {
        replies.push(handle.submit(shard, Op::ShardGroups).await);
    }
    let mut groups = Vec::new();
    for reply in futures_util::future::join_all(replies).await {
        groups.extend(reply.into_groups()?);
    }
    Ok(merge_listings(groups))
}

/// Merges the listings of every shard: a share group has state on each shard
/// owning one of its partitions.
fn merge_listings(mut groups: Vec<GroupListing>) -> Vec<GroupListing> {
    groups.sort_by(|a, b| (&a.group, a.kind).cmp(&(&b.group, b.kind)));
    let mut merged: Vec<GroupListing> = Vec::with_capacity(groups.len());
    for group in groups {
        match merged.last_mut() {
            Some(last) if last.group == group.group && last.kind == group.kind => {
                last.members = last.members.max(group.members);
                last.state = last.state.max(group.state);
            }
            _ => merged.push(group),
        }
    }
    merged
}

/// [`metadata`] as `principal` may see it: a named topic it may not
/// describe answers TopicNotAuthorized (whether or not it exists), and the
/// list of all topics leaves such topics out.
pub(crate) fn metadata_for(
    shared: &Shared,
    catalog: &Catalog,
    names: &[String],
    security: &Security,
    principal: &Principal,
) -> MetadataResponse {
    let mut response = metadata(shared, catalog, names);
    let visible = |name: &str| security.allows(principal, Operation::Describe, ResourceKind::Topic, name);
    if names.is_empty() {
        response.topics.retain(|topic| visible(&topic.name));
    } else {
        for topic in response.topics.iter_mut().filter(|topic| !visible(&topic.name)) {
            topic.error = ErrorCode::TopicNotAuthorized as u16;
            topic.partition_shards.clear();
        }
    }
    response
}

/// The topics named (each once; all of them when `names` is empty) and the
/// shards' ports. Answered from the catalog by whoever asks, on any thread.
pub(crate) fn metadata(shared: &Shared, catalog: &Catalog, names: &[String]) -> MetadataResponse {
    let shard_count = shared.mailboxes.len() as u16;
    let describe = |topic: &TopicConfig| TopicMetadata {
        name: topic.name.clone(),
        error: 0,
        retention_ms: retention_to_wire(topic.retention_ms),
        retention_bytes: retention_to_wire(topic.retention_bytes),
        partition_shards: (0..topic.partitions).map(|p| owner(&topic.name, p, shard_count)).collect(),
    };
    let topics = if names.is_empty() {
        catalog.topics.values().map(|topic| describe(topic)).collect()
    } else {
        // Each name answered once, so a request repeating a name cannot ask for
        // a response many times its own size.
        let mut names: Vec<&String> = names.iter().collect();
        names.sort_unstable();
        names.dedup();
        names
            .into_iter()
            .map(|name| match catalog.topics.get(name) {
                Some(topic) => describe(topic),
                None => TopicMetadata {
                    name: name.clone(),
                    error: ErrorCode::UnknownTopicOrPartition as u16,
                    retention_ms: RETENTION_UNLIMITED,
                    retention_bytes: RETENTION_UNLIMITED,
                    partition_shards: Vec::new(),
                },
            })
            .collect()
    };
    let shards =
        shared.shard_ports.iter().enumerate().map(|(shard, &port)| ShardInfo { shard: shard as u16, port }).collect();
    MetadataResponse { shards, topics }
}

/// Only a super user (or a trusted connection) manages users and ACLs.
fn may_administer(principal: &Principal) -> Result<(), ErrorCode> {
    match principal {
        Principal::Trusted | Principal::User { superuser: true, .. } => Ok(()),
        Principal::User { .. } => Err(ErrorCode::ClusterNotAuthorized),
    }
}

/// Changes the users or ACLs, written durably before it answers (on this
/// shard's thread: an administrative request, rare and small). Every
/// shard sees the change at its next request.
pub(crate) fn change_security(
    handle: &ShardHandle,
    principal: &Principal,
    change: impl FnOnce(&mut Security) -> Result<crate::security::Changed, String>,
) -> Result<(), ErrorCode> {
    may_administer(principal)?;
    match handle.shared.security.update(change) {
        Ok(_) => Ok(()),
        Err(crate::security::UpdateError::Refused(message)) => {
            eprintln!("ringmq: a users or ACLs change was refused: {message}");
            Err(ErrorCode::InvalidArgument)
        }
        Err(crate::security::UpdateError::Storage(message)) => {
            eprintln!("ringmq: a users or ACLs change was not made: {message}");
            Err(ErrorCode::StorageFailure)
        }
    }
}

/// The users and ACLs, for a super user.
pub(crate) fn read_security(handle: &ShardHandle, principal: &Principal) -> Result<Arc<Security>, ErrorCode> {
    may_administer(principal)?;
    Ok(handle.security())
}
