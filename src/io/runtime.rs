//! The shard runtime: one tokio-uring runtime per thread.

use std::fmt;
use std::future::Future;
use std::time::Duration;

/// Submission queue entries per shard ring. Flush rounds submit one fdatasync per
/// dirty file in a single batch; 256 entries cover that and the socket operations
/// of a busy shard (the completion queue is twice this).
pub const RING_ENTRIES: u32 = 256;

/// Why a runtime could not start.
#[derive(Debug)]
pub struct RuntimeError {
    source: std::io::Error,
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cause = match self.source.raw_os_error() {
            Some(libc::ENOSYS) => "the kernel does not implement io_uring (ENOSYS: Linux 5.11 or newer is needed)",
            Some(libc::EPERM) | Some(libc::EACCES) => {
                "io_uring is refused (EPERM/EACCES: kernel.io_uring_disabled is set, or a seccomp profile blocks it)"
            }
            Some(libc::ENOMEM) => "io_uring could not lock memory for its rings (ENOMEM: raise RLIMIT_MEMLOCK)",
            _ => "io_uring could not be set up",
        };
        write!(
            f,
            "cannot start: {cause} ({}); run it on Linux 5.11+ with `sysctl kernel.io_uring_disabled=0` \
             and, in a container, a seccomp profile that allows io_uring_setup/io_uring_enter/io_uring_register \
             (docs/CONTAINERS.md)",
            self.source
        )
    }
}

impl std::error::Error for RuntimeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// A single-threaded runtime driving one io_uring.
pub struct Runtime {
    inner: tokio_uring::Runtime,
}

impl Runtime {
    /// Builds the runtime; fails (never panics) when io_uring is unavailable.
    pub fn new() -> Result<Runtime, RuntimeError> {
        let mut builder = tokio_uring::builder();
        builder.entries(RING_ENTRIES);
        let inner = tokio_uring::Runtime::new(&builder).map_err(|source| RuntimeError { source })?;
        Ok(Runtime { inner })
    }

    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.inner.block_on(future)
    }
}

/// Checks that io_uring can be used here, so start-up can fail with one sentence.
pub fn probe_io_uring() -> Result<(), RuntimeError> {
    Runtime::new().map(drop)
}

/// Runs `future` on a fresh runtime on this thread.
pub fn block_on<F: Future>(future: F) -> Result<F::Output, RuntimeError> {
    Ok(Runtime::new()?.block_on(future))
}

/// Spawns a task on the current shard's runtime.
pub fn spawn_local<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + 'static,
{
    tokio_uring::spawn(future)
}

/// Sleeps on the current shard's runtime.
pub async fn sleep(duration: Duration) {
    tokio::time::sleep(duration).await
}

/// Lets every other ready task of this shard run once, then resumes, without
/// asking the runtime to poll its I/O driver first (which `tokio::task::yield_now`
/// does: a syscall per call). For the busy-polling mailbox loop, which calls it
/// once per drained batch of messages; the runtime still polls its driver every
/// few dozen task polls.
pub fn yield_to_tasks() -> impl Future<Output = ()> {
    let mut yielded = false;
    std::future::poll_fn(move |context| {
        if yielded {
            return std::task::Poll::Ready(());
        }
        yielded = true;
        context.waker().wake_by_ref();
        std::task::Poll::Pending
    })
}
