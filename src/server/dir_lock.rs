//! The data directory's lock: one broker per data directory.
//!
//! ```text
//! DATA_DIR/.lock    the holder's pid in decimal and a newline; held with
//!                   flock(LOCK_EX) for the broker's whole life
//! ```
//!
//! Two brokers appending to one directory would hand out the same offsets and
//! lose acknowledged records, so the second one is refused before it reads or
//! writes anything else (Kafka's `.lock`, RocksDB's `LOCK`). The lock belongs to
//! the open file description: the kernel drops it when the process ends, even
//! by kill -9, so a stale file never blocks a restart; the pid in it is only
//! there to name the holder in the error.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = ".lock";

/// Bytes of the lock file read to find the holder's pid (a pid is at most 10
/// digits; the file is ours, but a stranger could have written anything).
const LOCK_FILE_READ_BYTES_MAX: u64 = 32;

/// Why the lock could not be taken.
#[derive(Debug)]
pub enum LockError {
    /// Another broker (this process or another) holds the directory.
    Held {
        data_dir: PathBuf,
        holder_pid: Option<u32>,
    },
    Io {
        path: PathBuf,
        error: io::Error,
    },
}

/// A held lock; dropping it releases the directory.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock of `data_dir` (which must exist) without waiting.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, LockError> {
        let path = data_dir.join(LOCK_FILE);
        let io_error = |error| LockError::Io { path: path.clone(), error };
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io_error)?;
        // SAFETY: flock only reads the descriptor, which `file` keeps open.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(LockError::Held { data_dir: data_dir.to_path_buf(), holder_pid: holder_pid(&mut file) });
            }
            return Err(io_error(error));
        }
        file.set_len(0).map_err(io_error)?;
        file.rewind().map_err(io_error)?;
        writeln!(file, "{}", std::process::id()).map_err(io_error)?;
        Ok(DataDirLock { _file: file })
    }
}

fn holder_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.take(LOCK_FILE_READ_BYTES_MAX).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held { data_dir, holder_pid: Some(pid) } => write!(
                f,
                "the data directory {} is in use by another broker (pid {pid}); stop it or choose another data directory",
                data_dir.display()
            ),
            LockError::Held { data_dir, holder_pid: None } => write!(
                f,
                "the data directory {} is in use by another broker; stop it or choose another data directory",
                data_dir.display()
            ),
            LockError::Io { path, error } => write!(f, "cannot lock {}: {error}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid_until_the_first_is_dropped() {
        let dir = std::env::temp_dir().join(format!("ringmq-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let first = DataDirLock::acquire(&dir).unwrap();
        match DataDirLock::acquire(&dir) {
            Err(LockError::Held { holder_pid, .. }) => assert_eq!(holder_pid, Some(std::process::id())),
            other => panic!("a second lock must be refused, got {other:?}"),
        }
        drop(first);
        DataDirLock::acquire(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
