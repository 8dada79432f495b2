//! The narrow I/O layer. Nothing outside this module names tokio-uring: a later
//! swap (compio, raw io-uring) touches only this directory.
//!
//! - [`Storage`] / [`StorageFile`]: what the partition log needs from a file system.
//!   Writes and reads are plain positioned calls made inline on the shard thread
//!   (measured fastest into the page cache on ext4, see DESIGN.md); `sync_data`
//!   returns a future so a flush round can submit every fdatasync together
//!   through io_uring while the shard keeps working.
//! - [`FileStorage`]: the real backend (std positioned I/O + io_uring fdatasync).
//! - [`SimStorage`]: an in-memory backend that loses un-synced bytes on a simulated
//!   power loss and fails fsync or runs out of space on demand, for tests.
//! - [`Runtime`]: the per-shard runtime, with a start-up probe that turns a missing
//!   io_uring into one actionable sentence instead of a panic.

mod mapping;
mod net;
mod runtime;
mod sim;
mod uring;

pub use mapping::{FileBytes, Mapping};
pub use net::{bind_std, EventFd, EventFdReader, Listener, Stream};
pub use runtime::{block_on, probe_io_uring, sleep, spawn_local, yield_to_tasks, Runtime, RuntimeError};
pub use sim::{SimFaults, SimStorage};
pub use uring::FileStorage;

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;

/// A pending fdatasync. `'static` so a flush round can hold many at once.
pub type SyncFuture = Pin<Box<dyn Future<Output = io::Result<()>>>>;

/// How [`Storage::open`] treats a missing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Fail with `NotFound` when the file does not exist.
    Existing,
    /// Create the file when it does not exist; keep its bytes when it does.
    CreateOrOpen,
}

/// The file-system operations storage needs. Implementations are used from one
/// shard thread; they need not be `Send`.
pub trait Storage: Clone + 'static {
    type File: StorageFile;

    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names of the entries directly inside `path`.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Self::File>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Atomically replaces `to` with `from` (durable once the directory is synced).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the directory's entries (created and removed files) durable.
    fn sync_dir(&self, path: &Path) -> SyncFuture;
}

/// One open file: positioned reads and writes, truncation, fdatasync.
#[allow(clippy::len_without_is_empty)]
pub trait StorageFile: 'static {
    fn len(&self) -> io::Result<u64>;
    /// Reads up to `buffer.len()` bytes at `position`; fewer only at end of file.
    fn read_at(&self, buffer: &mut [u8], position: u64) -> io::Result<usize>;
    /// Writes all of `bytes` at `position` or fails. On failure an unknown prefix
    /// may have been written: callers truncate back.
    fn write_all_at(&self, bytes: &[u8], position: u64) -> io::Result<()>;
    fn truncate(&self, length: u64) -> io::Result<()>;
    /// fdatasync: on `Ok`, every byte written before the call is durable.
    fn sync_data(&self) -> SyncFuture;
    /// A read-only mapping of `len` bytes at `position`, all below the file's
    /// end; `None` where this storage does not map (the caller reads instead).
    fn map(&self, _position: u64, _len: usize) -> io::Result<Option<Mapping>> {
        Ok(None)
    }

    /// Reads exactly `buffer.len()` bytes or fails with `UnexpectedEof`.
    fn read_exact_at(&self, buffer: &mut [u8], position: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buffer.len() {
            let rest = &mut buffer[done..];
            let read = self.read_at(rest, position + done as u64)?;
            if read == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past end of file"));
            }
            done += read;
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically and durably, blocking: a temporary
/// file, fsync, rename over `path`, fsync of the directory. For small
/// metadata files (topic.json, meta.json, security.json).
pub fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let temporary = path.with_extension("json.tmp");
    {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path)?;
    sync_dir_now(path.parent().unwrap_or(Path::new(".")))
}

/// Makes a directory's entries durable, blocking.
pub fn sync_dir_now(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// True when `error` is the file system running out of space.
pub fn is_no_space(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::StorageFull || error.raw_os_error() == Some(ENOSPC)
}

/// errno for "no space left on device" on Linux.
pub const ENOSPC: i32 = libc::ENOSPC;
/// errno for an I/O error on Linux.
pub const EIO: i32 = libc::EIO;
