//! Group commit: one fdatasync per dirty file per round, however many producers
//! wait.
//!
//! Producers append inline (the bytes reach the page cache at once) and, for
//! `acks=durable`, register a waiter for their last offset and wake the flusher.
//! A round takes every queued partition, builds its sync plan, submits all of the
//! plans' fdatasyncs together (io_uring sees them in one submission), and then
//! completes every waiter whose offsets are now durable. Appends that arrive while
//! a round is in flight queue for the next round, which starts as soon as the
//! current one ends. A failed fdatasync poisons its partition (never retried).
//!
//! With `flush_interval` set, `acks=written` appends queue their partition too and
//! a round also runs on that interval, bounding how long acknowledged data stays
//! only in the page cache.

use super::partition::{run_plan, AppendInfo, PartitionLog};
use super::LogError;
use crate::io::Storage;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::Notify;

/// A partition log shared by the tasks of its shard.
pub type SharedLog<S> = Rc<RefCell<PartitionLog<S>>>;

/// When a produce is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// Not answered at all.
    None,
    /// Once the bytes are in the page cache (survives a process crash).
    Written,
    /// Once the bytes are fdatasync'ed (survives power loss).
    Durable,
}

/// Counters of one group commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Rounds that synced at least one partition.
    pub rounds: u64,
    /// fdatasyncs issued (files and directories).
    pub fsyncs: u64,
    /// Partitions poisoned by a failed round.
    pub failures: u64,
}

struct Inner<S: Storage> {
    queued: RefCell<Vec<SharedLog<S>>>,
    wake: Notify,
    stats: Cell<GroupCommitStats>,
    flush_interval: Option<Duration>,
    stopping: Cell<bool>,
    /// Where each round's duration goes (the server's metrics), when set.
    latency: RefCell<Option<std::sync::Arc<crate::metrics::LatencyHistogram>>>,
}

/// The flusher of one shard. Clones share it.
pub struct GroupCommit<S: Storage> {
    inner: Rc<Inner<S>>,
}

impl<S: Storage> Clone for GroupCommit<S> {
    fn clone(&self) -> Self {
        GroupCommit { inner: self.inner.clone() }
    }
}

impl<S: Storage> GroupCommit<S> {
    /// `flush_interval`: also sync data acknowledged as `written` this often.
    pub fn new(flush_interval: Option<Duration>) -> GroupCommit<S> {
        GroupCommit {
            inner: Rc::new(Inner {
                queued: RefCell::new(Vec::new()),
                wake: Notify::new(),
                stats: Cell::new(GroupCommitStats::default()),
                flush_interval,
                stopping: Cell::new(false),
                latency: RefCell::new(None),
            }),
        }
    }

    pub fn stats(&self) -> GroupCommitStats {
        self.inner.stats.get()
    }

    /// Records the duration of every later flush round (its fdatasyncs) into
    /// `histogram`.
    pub fn record_latency_into(&self, histogram: std::sync::Arc<crate::metrics::LatencyHistogram>) {
        *self.inner.latency.borrow_mut() = Some(histogram);
    }

    /// Appends `batch` and answers as `acks` asks. For `Durable`, returns after the
    /// round that synced it; the error of a failed fdatasync is returned as is.
    pub async fn append(&self, log: &SharedLog<S>, batch: &mut [u8], acks: Acks) -> Result<AppendInfo, LogError> {
        let (info, wait) = self.append_now(log, batch, acks)?;
        wait.await?;
        Ok(info)
    }

    /// Appends `batch` now (synchronously, so callers keep their order) and returns
    /// a future that resolves when the append is acknowledged as `acks` asks: at
    /// once for `None` and `Written`, after its flush round for `Durable`.
    pub fn append_now(
        &self,
        log: &SharedLog<S>,
        batch: &mut [u8],
        acks: Acks,
    ) -> Result<(AppendInfo, impl std::future::Future<Output = Result<(), LogError>> + 'static), LogError> {
        let mut partition = log.borrow_mut();
        let info = partition.append(batch)?;
        let waiter = (acks == Acks::Durable).then(|| partition.wait_durable(info.next_offset));
        // Someone waits for durability (this producer, or an earlier waiter for
        // an offset only now written): sync soon.
        let wanted = partition.has_waiters();
        if wanted || self.inner.flush_interval.is_some() {
            self.queue(log, &mut partition);
        }
        if wanted {
            self.inner.wake.notify_one();
        }
        Ok((info, async move {
            match waiter {
                Some(waiter) => waiter.await.map_err(|_| LogError::Closed)?,
                None => Ok(()),
            }
        }))
    }

    /// Waits until every offset below `offset_end` of `log` is durable.
    pub async fn wait_durable(&self, log: &SharedLog<S>, offset_end: u64) -> Result<(), LogError> {
        let waiter = {
            let mut partition = log.borrow_mut();
            let waiter = partition.wait_durable(offset_end);
            if partition.has_waiters() {
                self.queue(log, &mut partition);
            }
            waiter
        };
        self.inner.wake.notify_one();
        waiter.await.map_err(|_| LogError::Closed)?
    }

    /// Queues `log` for the next round and wakes the flusher: how a freshly
    /// opened (recovered) log becomes durable without holding up start-up.
    pub fn sync_soon(&self, log: &SharedLog<S>) {
        self.queue(log, &mut log.borrow_mut());
        self.inner.wake.notify_one();
    }

    fn queue(&self, log: &SharedLog<S>, partition: &mut PartitionLog<S>) {
        if !partition.queued_for_flush {
            partition.queued_for_flush = true;
            self.inner.queued.borrow_mut().push(log.clone());
        }
    }

    /// Runs one round: syncs every queued partition. Partitions sync in parallel
    /// (their first phases submitted together); within one partition the plan's
    /// phases run in order. Returns the fdatasyncs issued.
    pub async fn flush_round(&self) -> u64 {
        let queued = std::mem::take(&mut *self.inner.queued.borrow_mut());
        let mut logs = Vec::new();
        let mut plans = Vec::new();
        for log in queued {
            let plan = {
                let mut partition = log.borrow_mut();
                partition.queued_for_flush = false;
                partition.take_sync_plan()
            };
            if let Some(plan) = plan {
                plans.push(plan);
                logs.push(log);
            }
        }
        if logs.is_empty() {
            return 0;
        }
        let fsyncs: u64 = plans.iter().map(|plan| plan.len() as u64).sum();
        let targets: Vec<u64> = plans.iter().map(|plan| plan.target_offset).collect();
        let started = std::time::Instant::now();
        let results = futures_util::future::join_all(plans.into_iter().map(run_plan)).await;
        if let Some(histogram) = self.inner.latency.borrow().as_ref() {
            histogram.record(started.elapsed());
        }
        let mut stats = self.inner.stats.get();
        for ((log, target), result) in logs.iter().zip(targets).zip(results) {
            if result.is_err() {
                stats.failures += 1;
            }
            let mut partition = log.borrow_mut();
            partition.complete_sync(target, result);
            // Waiters for data written during this round need the next one.
            if partition.has_waiters() && partition.needs_sync() {
                self.queue(log, &mut partition);
                self.inner.wake.notify_one();
            }
        }
        stats.rounds += 1;
        stats.fsyncs += fsyncs;
        self.inner.stats.set(stats);
        fsyncs
    }

    /// The flusher loop: a round whenever a durable waiter arrives (and on the
    /// flush interval, when set), until [`GroupCommit::stop`].
    pub async fn run(self) {
        loop {
            match self.inner.flush_interval {
                Some(interval) => {
                    let _ = tokio::time::timeout(interval, self.inner.wake.notified()).await;
                }
                None => self.inner.wake.notified().await,
            }
            self.flush_round().await;
            if self.inner.stopping.get() {
                return;
            }
        }
    }

    /// Ends [`GroupCommit::run`] after one last round.
    pub fn stop(&self) {
        self.inner.stopping.set(true);
        self.inner.wake.notify_one();
    }
}
