//! What topics exist, shared by every shard; and the data directory's metadata.
//!
//! ```text
//! DATA_DIR/meta.json                  {"crc32": C, "meta": {"format_version": 1,
//!                                      "broker_id": "...", "shard_count": N}}
//! DATA_DIR/topics/<topic>/topic.json  {"crc32": C, "topic": {"name": ..., "partitions": P,
//!                                      "retention_ms": .., "retention_bytes": .., "created_at_ms": ..}}
//! DATA_DIR/deleted/<ms>-<n>/          topics being deleted (renamed here first, removed after)
//! ```
//!
//! `crc32` is CRC-32 (crc32fast) of the exact bytes of the inner object. Files are
//! written to a temporary name, fsynced, renamed, and the directory fsynced.
//!
//! Shards read the catalog through a version number (one atomic load per request)
//! and re-take the snapshot only when it changed; the mutex is on the control path
//! (create/delete topic), never on the data path.

use crate::protocol::ErrorCode;
use crate::sync::{AtomicU64, Ordering};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Topics a broker holds (a metadata response lists them all).
pub const TOPICS_MAX: usize = crate::protocol::METADATA_TOPICS_MAX;
/// Partitions a broker holds, over all topics (each costs three files and memory).
pub const PARTITIONS_MAX: u64 = 100_000;

/// The on-disk format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerMeta {
    pub format_version: u32,
    pub broker_id: String,
    pub shard_count: u16,
    /// The partition placement function ([`owner`]); a directory written with
    /// another one is refused.
    pub placement: String,
}

/// Names [`owner`]'s algorithm in `meta.json`.
pub const PLACEMENT: &str = "crc32(topic)+partition mod shards";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    pub name: String,
    pub partitions: u32,
    /// `None`: kept forever.
    pub retention_ms: Option<u64>,
    /// `None`: no size limit.
    pub retention_bytes: Option<u64>,
    pub created_at_ms: i64,
}

/// Reads a file [`seal`] wrote, naming the file in any error.
fn unseal<T: for<'de> Deserialize<'de>>(path: &Path, key: &str) -> io::Result<T> {
    let bytes = fs::read(path)?;
    crate::snapshot::unseal(&bytes, key)
        .map_err(|what| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {what}", path.display())))
}

fn seal<T: Serialize>(key: &str, value: &T) -> io::Result<Vec<u8>> {
    crate::snapshot::seal(key, value).map_err(io::Error::other)
}

use crate::io::{sync_dir_now as sync_dir, write_durably};

/// Opens (or initialises) the data directory's `meta.json`. A directory created
/// with another shard count is refused: partitions are placed by it.
pub fn open_meta(data_dir: &Path, shard_count: u16) -> Result<BrokerMeta, String> {
    fs::create_dir_all(data_dir.join("topics"))
        .map_err(|e| format!("cannot create the data directory {}: {e}", data_dir.display()))?;
    let path = data_dir.join("meta.json");
    if !path.exists() {
        let meta = BrokerMeta {
            format_version: FORMAT_VERSION,
            broker_id: format!("{:016x}", crate::log::partition::now_ms() as u64 ^ (std::process::id() as u64) << 40),
            shard_count,
            placement: PLACEMENT.into(),
        };
        let bytes = seal("meta", &meta).map_err(|e| e.to_string())?;
        write_durably(&path, &bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        return Ok(meta);
    }
    let meta: BrokerMeta =
        unseal(&path, "meta").map_err(|e| format!("cannot read the data directory's metadata: {e}"))?;
    if meta.format_version != FORMAT_VERSION {
        return Err(format!(
            "{} was written in format {}; this build reads format {FORMAT_VERSION}",
            path.display(),
            meta.format_version
        ));
    }
    if meta.placement != PLACEMENT {
        return Err(format!(
            "{} places partitions with \"{}\"; this build uses \"{PLACEMENT}\"",
            path.display(),
            meta.placement
        ));
    }
    if meta.shard_count != shard_count {
        return Err(format!(
            "the data directory {} was created with {} shards and partitions are placed by that count; \
             start with --shards {} (rebalancing to another count is not supported)",
            data_dir.display(),
            meta.shard_count,
            meta.shard_count
        ));
    }
    Ok(meta)
}

/// The shard that owns a partition: a stable function of the topic name, the
/// partition and the shard count. A topic's partitions go round-robin over the
/// shards from a starting shard picked by the name's CRC-32.
pub fn owner(topic: &str, partition: u32, shard_count: u16) -> u16 {
    let start = u64::from(crc32fast::hash(topic.as_bytes()));
    ((start + u64::from(partition)) % u64::from(shard_count.max(1))) as u16
}

/// An immutable view of the topics.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    pub topics: BTreeMap<String, Arc<TopicConfig>>,
}

impl Catalog {
    /// The owner of a partition, if it exists: the one routing rule of every
    /// front end.
    pub fn route(&self, topic: &str, partition: u32, shard_count: u16) -> Result<u16, ErrorCode> {
        match self.topics.get(topic) {
            Some(config) if partition < config.partitions => Ok(owner(topic, partition, shard_count)),
            _ => Err(ErrorCode::UnknownTopicOrPartition),
        }
    }
}

/// One thread's cached snapshot of a [`SharedCatalog`].
pub(crate) type CatalogView = crate::snapshot::SnapshotView<Catalog>;

impl crate::snapshot::Published<Catalog> for SharedCatalog {
    fn version(&self) -> u64 {
        SharedCatalog::version(self)
    }
    fn snapshot(&self) -> Arc<Catalog> {
        SharedCatalog::snapshot(self)
    }
}

/// The catalog shared by all shards.
pub struct SharedCatalog {
    data_dir: PathBuf,
    version: AtomicU64,
    state: Mutex<CatalogState>,
    /// Deletions since start (names the directories under `deleted/`).
    deletions: AtomicU64,
}

/// What the mutex guards: the published topics, and the names a create or a
/// delete is working on (taken, but not yet or no longer usable).
struct CatalogState {
    current: Arc<Catalog>,
    /// Topics whose files exist and whose partitions are being opened: not
    /// published until every owner has opened them, so nobody can route a
    /// request to a partition that is not there yet.
    creating: BTreeMap<String, u32>,
    /// Published topics whose partitions are being closed: still routable, so
    /// requests forwarded before the delete reach their partitions first.
    deleting: std::collections::BTreeSet<String>,
}

impl SharedCatalog {
    /// Loads every `topics/*/topic.json`, and finishes deletions a crash
    /// interrupted.
    pub fn load(data_dir: &Path) -> Result<SharedCatalog, String> {
        let deleted = data_dir.join("deleted");
        if deleted.exists() {
            fs::remove_dir_all(&deleted).map_err(|e| format!("cannot finish deleting {}: {e}", deleted.display()))?;
        }
        let mut catalog = Catalog::default();
        let topics_dir = data_dir.join("topics");
        let entries = fs::read_dir(&topics_dir).map_err(|e| format!("cannot list {}: {e}", topics_dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| e.to_string())?;
            let path = entry.path().join("topic.json");
            if !path.exists() {
                continue;
            }
            let topic: TopicConfig = unseal(&path, "topic").map_err(|e| format!("cannot read a topic: {e}"))?;
            catalog.topics.insert(topic.name.clone(), Arc::new(topic));
        }
        let state =
            CatalogState { current: Arc::new(catalog), creating: BTreeMap::new(), deleting: Default::default() };
        Ok(SharedCatalog {
            data_dir: data_dir.to_path_buf(),
            version: AtomicU64::new(1),
            state: Mutex::new(state),
            deletions: AtomicU64::new(0),
        })
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn snapshot(&self) -> Arc<Catalog> {
        self.lock().current.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CatalogState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces the published topics (under the lock) and bumps the version.
    fn publish(&self, state: &mut CatalogState, change: impl FnOnce(&mut Catalog)) {
        let mut next = (*state.current).clone();
        change(&mut next);
        state.current = Arc::new(next);
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// First half of a create: takes the name and writes the topic's
    /// directories and `topic.json`. The topic is not published yet: open its
    /// partitions on their owners, then [`SharedCatalog::publish_created`] (or
    /// [`SharedCatalog::abandon_created`] when an owner could not).
    pub fn begin_create(&self, topic: TopicConfig) -> Result<Arc<TopicConfig>, ErrorCode> {
        if !crate::protocol::valid_topic_name(&topic.name) {
            return Err(ErrorCode::InvalidTopicName);
        }
        if topic.partitions == 0 || topic.partitions > crate::protocol::PARTITIONS_PER_TOPIC_MAX {
            return Err(ErrorCode::InvalidPartitionCount);
        }
        {
            let mut state = self.lock();
            if state.current.topics.contains_key(&topic.name) || state.creating.contains_key(&topic.name) {
                return Err(ErrorCode::TopicAlreadyExists);
            }
            let published: u64 = state.current.topics.values().map(|t| u64::from(t.partitions)).sum();
            let creating: u64 = state.creating.values().map(|&p| u64::from(p)).sum();
            let topics = state.current.topics.len() + state.creating.len();
            if topics >= TOPICS_MAX || published + creating + u64::from(topic.partitions) > PARTITIONS_MAX {
                return Err(ErrorCode::ResourceLimit);
            }
            state.creating.insert(topic.name.clone(), topic.partitions);
        }
        // The name is ours: the files are written outside the lock.
        let dir = self.data_dir.join("topics").join(&topic.name);
        let written = (|| -> io::Result<()> {
            fs::create_dir_all(&dir)?;
            for partition in 0..topic.partitions {
                fs::create_dir_all(dir.join(partition.to_string()))?;
            }
            sync_dir(&dir)?;
            write_durably(&dir.join("topic.json"), &seal("topic", &topic)?)?;
            sync_dir(&self.data_dir.join("topics"))
        })();
        if let Err(error) = written {
            eprintln!("ringmq: cannot create topic {}: {error}", topic.name);
            let _ = fs::remove_dir_all(&dir);
            self.lock().creating.remove(&topic.name);
            return Err(if crate::io::is_no_space(&error) { ErrorCode::NoSpace } else { ErrorCode::StorageFailure });
        }
        Ok(Arc::new(topic))
    }

    /// Second half of a create: every owner has opened its partitions.
    pub fn publish_created(&self, topic: &Arc<TopicConfig>) {
        let mut state = self.lock();
        state.creating.remove(&topic.name);
        self.publish(&mut state, |catalog| {
            catalog.topics.insert(topic.name.clone(), topic.clone());
        });
    }

    /// A create that failed after [`SharedCatalog::begin_create`]: its files are
    /// moved away and the name is free again. The caller closes whatever
    /// partitions were opened; returns the directory to remove afterwards.
    pub fn abandon_created(&self, name: &str) -> Result<PathBuf, ErrorCode> {
        let moved = self.move_to_deleted(name);
        self.lock().creating.remove(name);
        moved
    }

    /// First half of a delete: marks the topic as being deleted. It stays
    /// published (so requests forwarded before the delete still reach their
    /// partitions, in order) while its owners close the partitions; then
    /// [`SharedCatalog::finish_delete`].
    pub fn begin_delete(&self, name: &str) -> Result<Arc<TopicConfig>, ErrorCode> {
        let mut state = self.lock();
        let topic = state.current.topics.get(name).cloned().ok_or(ErrorCode::UnknownTopicOrPartition)?;
        if !state.deleting.insert(name.to_owned()) {
            // Another delete of it is under way: to this one it is gone.
            return Err(ErrorCode::UnknownTopicOrPartition);
        }
        Ok(topic)
    }

    /// Second half of a delete: unpublishes the topic and moves its directory
    /// under `deleted/` (atomic). Returns that directory, for the caller to
    /// remove. A failed move leaves the topic published (and usable again).
    pub fn finish_delete(&self, name: &str) -> Result<PathBuf, ErrorCode> {
        let mut state = self.lock();
        state.deleting.remove(name);
        let target = self.move_to_deleted(name)?;
        self.publish(&mut state, |catalog| {
            catalog.topics.remove(name);
        });
        Ok(target)
    }

    /// Renames `topics/<name>` to a name of its own under `deleted/`: not
    /// derived from the topic's (which may already be as long as a file name
    /// may be), but the time and a counter.
    fn move_to_deleted(&self, name: &str) -> Result<PathBuf, ErrorCode> {
        let deleted = self.data_dir.join("deleted");
        let sequence = self.deletions.fetch_add(1, Ordering::Relaxed);
        let target = deleted.join(format!("{}-{sequence}", crate::log::partition::now_ms()));
        let moved = fs::create_dir_all(&deleted)
            .and_then(|()| fs::rename(self.data_dir.join("topics").join(name), &target))
            .and_then(|()| sync_dir(&self.data_dir.join("topics")));
        match moved {
            Ok(()) => Ok(target),
            Err(error) => {
                eprintln!("ringmq: cannot delete topic {name}: {error}");
                Err(ErrorCode::StorageFailure)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_stable_and_spread_a_topics_partitions() {
        let owners: Vec<u16> = (0..8).map(|p| owner("orders", p, 4)).collect();
        assert_eq!(owners, (0..8).map(|p| owner("orders", p, 4)).collect::<Vec<_>>());
        for shard in 0..4 {
            assert_eq!(owners.iter().filter(|&&o| o == shard).count(), 2);
        }
        assert_eq!(owner("x", 0, 1), 0);
    }

    #[test]
    fn metadata_files_are_checked() {
        let dir = std::env::temp_dir().join(format!("ringmq-meta-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let meta = open_meta(&dir, 2).unwrap();
        assert_eq!(open_meta(&dir, 2).unwrap(), meta);
        let refused = open_meta(&dir, 3).unwrap_err();
        assert!(refused.contains("created with 2 shards"), "{refused}");
        let path = dir.join("meta.json");
        let text = fs::read_to_string(&path).unwrap().replace("\"shard_count\":2", "\"shard_count\":3");
        fs::write(&path, text).unwrap();
        let damaged = open_meta(&dir, 3).unwrap_err();
        assert!(damaged.contains("checksum mismatch"), "{damaged}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
