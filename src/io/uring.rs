//! The real backend: positioned std I/O for reads and writes (inline on the shard
//! thread), io_uring for fdatasync.

use super::{OpenMode, Storage, StorageFile, SyncFuture};
use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::rc::Rc;

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
    Box::pin(async move {
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
        self.file.write_all_at(bytes, position)
    }

    fn truncate(&self, length: u64) -> io::Result<()> {
        self.file.set_len(length)
    }

    fn sync_data(&self) -> SyncFuture {
        sync_file(&self.file)
    }
}
