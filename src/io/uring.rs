//! The real backend: positioned std I/O for reads and writes (inline on the shard
//! thread), io_uring for fdatasync.

use super::{OpenMode, Storage, StorageFile, SyncFuture};
use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// EIO: what a failing device answers.
const EIO: i32 = 5;

/// The environment variable that injects I/O faults into the real backend.
pub const INJECT_FAULTS_ENV: &str = "RINGMQ_INJECT_FAULTS";

/// Faults injected into the real backend, to test the server's failure paths
/// end to end where the kernel has no device mapper (dm-error, dm-flakey).
/// Read once from [`INJECT_FAULTS_ENV`]: `fdatasync-eio-after=N` fails every
/// fdatasync (files and directories) after the first N with EIO, `write-eio-after=N` every write
/// after the first N (comma-separated, both allowed). Unset, it costs one
/// load per write or fdatasync. For tests only: docs/RELIABILITY.md.
#[derive(Debug, Default)]
struct InjectedFaults {
    syncs_before_failing: Option<u64>,
    writes_before_failing: Option<u64>,
    syncs: AtomicU64,
    writes: AtomicU64,
}

fn injected_faults() -> &'static InjectedFaults {
    static FAULTS: OnceLock<InjectedFaults> = OnceLock::new();
    FAULTS.get_or_init(|| {
        let mut faults = InjectedFaults::default();
        let spec = std::env::var(INJECT_FAULTS_ENV).unwrap_or_default();
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            match part.split_once('=').map(|(k, v)| (k, v.parse::<u64>())) {
                Some(("fdatasync-eio-after", Ok(n))) => faults.syncs_before_failing = Some(n),
                Some(("write-eio-after", Ok(n))) => faults.writes_before_failing = Some(n),
                _ => eprintln!("ringmq: {INJECT_FAULTS_ENV}: ignoring {part:?}"),
            }
        }
        if faults.syncs_before_failing.is_some() || faults.writes_before_failing.is_some() {
            eprintln!("ringmq: injecting I/O faults ({INJECT_FAULTS_ENV}={spec}): for tests only");
        }
        faults
    })
}

/// Whether this operation is one the injected faults fail.
fn injected(limit: Option<u64>, count: &AtomicU64) -> io::Result<()> {
    match limit {
        Some(limit) if count.fetch_add(1, Ordering::Relaxed) >= limit => Err(io::Error::from_raw_os_error(EIO)),
        _ => Ok(()),
    }
}

/// Files on a real file system.
#[derive(Debug, Clone, Default)]
pub struct FileStorage;

impl FileStorage {
    pub fn new() -> FileStorage {
        FileStorage
    }
}

/// fdatasync through the shard's io_uring. The descriptor is duplicated so the
/// future owns what it syncs; a dup shares the open file description, so the
/// kernel reports a write-back error to it exactly as to the original.
fn sync_file(file: &fs::File) -> SyncFuture {
    let duplicate = file.try_clone();
    let faults = injected_faults();
    let injected = injected(faults.syncs_before_failing, &faults.syncs);
    Box::pin(async move {
        injected?;
        let file = tokio_uring::fs::File::from_std(duplicate?);
        let result = file.sync_data().await;
        // Dropping closes the duplicate synchronously (a cheap close(2)); an
        // io_uring close would add a whole submission round to every fsync.
        drop(file);
        result
    })
}

impl Storage for FileStorage {
    type File = RealFile;

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<RealFile> {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(mode == OpenMode::CreateOrOpen)
            .truncate(false)
            .open(path)?;
        Ok(RealFile { file: Rc::new(file) })
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> SyncFuture {
        match fs::File::open(path) {
            Ok(directory) => sync_file(&directory),
            Err(error) => Box::pin(async move { Err(error) }),
        }
    }
}

/// An open file of [`FileStorage`].
#[derive(Debug, Clone)]
pub struct RealFile {
    file: Rc<fs::File>,
}

impl StorageFile for RealFile {
    fn map(&self, position: u64, len: usize) -> io::Result<Option<super::Mapping>> {
        super::Mapping::map(&self.file, position, len).map(Some)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read_at(&self, buffer: &mut [u8], position: u64) -> io::Result<usize> {
        loop {
            match self.file.read_at(buffer, position) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    fn write_all_at(&self, bytes: &[u8], position: u64) -> io::Result<()> {
        let faults = injected_faults();
        injected(faults.writes_before_failing, &faults.writes)?;
        self.file.write_all_at(bytes, position)
    }

    fn truncate(&self, length: u64) -> io::Result<()> {
        self.file.set_len(length)
    }

    fn sync_data(&self) -> SyncFuture {
        sync_file(&self.file)
    }
}
