//! An in-memory [`Storage`] for crash-consistency and fault tests.
//!
//! Each file keeps two images: what a reader sees now, and what survived the last
//! successful fdatasync. [`SimStorage::power_loss`] throws the first away (every
//! byte not yet fdatasync'ed is lost), or with `torn` keeps a random prefix of the
//! un-synced tail, as a disk that wrote some sectors before power went. Directory
//! entries (create, remove) are durable at once; the real backend makes that true
//! by syncing directories before it relies on them.
//!
//! Faults on demand: fdatasync fails with EIO ([`SimFaults::fail_syncs`]), and
//! writes stop with ENOSPC once the files hold [`SimFaults::capacity_bytes`],
//! after writing the part that still fits, as a real file system may.

use super::{OpenMode, Storage, StorageFile, SyncFuture, EIO, ENOSPC};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Faults the simulated disk injects.
#[derive(Debug, Clone, Default)]
pub struct SimFaults {
    /// Every fdatasync fails with EIO while set.
    pub fail_syncs: bool,
    /// Total bytes all files may hold; writes past it fail with ENOSPC.
    pub capacity_bytes: Option<u64>,
}

#[derive(Debug, Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    files: BTreeMap<PathBuf, Rc<RefCell<Inode>>>,
    directories: std::collections::BTreeSet<PathBuf>,
    faults: SimFaults,
    syncs: u64,
    sync_failures: u64,
}

impl State {
    fn used_bytes(&self) -> u64 {
        self.files.values().map(|inode| inode.borrow().data.len() as u64).sum()
    }
}

/// The simulated disk. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct SimStorage {
    state: Rc<RefCell<State>>,
}

impl SimStorage {
    pub fn new() -> SimStorage {
        SimStorage::default()
    }

    pub fn set_faults(&self, faults: SimFaults) {
        self.state.borrow_mut().faults = faults;
    }

    pub fn faults(&self) -> SimFaults {
        self.state.borrow().faults.clone()
    }

    /// Successful fdatasyncs so far (files and directories).
    pub fn sync_count(&self) -> u64 {
        self.state.borrow().syncs
    }

    pub fn sync_failure_count(&self) -> u64 {
        self.state.borrow().sync_failures
    }

    /// Bytes held by all files now.
    pub fn used_bytes(&self) -> u64 {
        self.state.borrow().used_bytes()
    }

    /// Simulates power loss: every file falls back to its last synced image. With
    /// `torn`, a file whose current image extends the synced one keeps a prefix of
    /// the extension chosen by `random(extension_len + 1)`, followed by up to 64
    /// garbage bytes when `random(2) == 1`: a write that half reached the disk.
    /// Handles opened before the loss must not be used afterwards.
    pub fn power_loss(&self, torn: Option<&mut dyn FnMut(usize) -> usize>) {
        let state = self.state.borrow();
        let mut random = torn;
        for inode in state.files.values() {
            let mut inode = inode.borrow_mut();
            let extends = inode.data.len() > inode.durable.len() && inode.data.starts_with(&inode.durable);
            let mut survivor = inode.durable.clone();
            if let (true, Some(random)) = (extends, random.as_mut()) {
                let extension = &inode.data[inode.durable.len()..];
                let keep = random(extension.len() + 1);
                survivor.extend_from_slice(&extension[..keep]);
                if random(2) == 1 {
                    let garbage = random(65);
                    survivor.extend((0..garbage).map(|i| (random(256) as u8) ^ (i as u8)));
                }
            }
            inode.data = survivor.clone();
            inode.durable = survivor;
        }
    }

    /// Overwrites bytes of a file directly, bypassing the log: for corruption tests.
    pub fn corrupt(&self, path: &Path, position: usize, bytes: &[u8]) -> io::Result<()> {
        let state = self.state.borrow();
        let inode = state.files.get(path).ok_or_else(|| not_found(path))?;
        let mut inode = inode.borrow_mut();
        let end = position + bytes.len();
        if inode.data.len() < end {
            inode.data.resize(end, 0);
        }
        inode.data[position..end].copy_from_slice(bytes);
        inode.durable = inode.data.clone();
        Ok(())
    }

    /// A copy of a file's current bytes.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        self.state.borrow().files.get(path).map(|inode| inode.borrow().data.clone())
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} does not exist", path.display()))
}

impl Storage for SimStorage {
    type File = SimFile;

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        for ancestor in path.ancestors() {
            state.directories.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let state = self.state.borrow();
        if !state.directories.contains(path) {
            return Err(not_found(path));
        }
        let files = state.files.keys();
        let directories = state.directories.iter();
        let mut names: Vec<String> = files
            .chain(directories)
            .filter(|entry| entry.parent() == Some(path))
            .filter_map(|entry| entry.file_name()?.to_str().map(str::to_owned))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<SimFile> {
        let mut state = self.state.borrow_mut();
        if let Some(inode) = state.files.get(path) {
            return Ok(SimFile { inode: inode.clone(), state: self.state.clone() });
        }
        let parent = path.parent().unwrap_or(Path::new(""));
        if mode == OpenMode::Existing || !state.directories.contains(parent) {
            return Err(not_found(path));
        }
        let inode = Rc::new(RefCell::new(Inode::default()));
        state.files.insert(path.to_path_buf(), inode.clone());
        Ok(SimFile { inode, state: self.state.clone() })
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.state.borrow_mut().files.remove(path).map(drop).ok_or_else(|| not_found(path))
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        state.files.retain(|file, _| !file.starts_with(path));
        state.directories.retain(|directory| !directory.starts_with(path));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        let inode = state.files.remove(from).ok_or_else(|| not_found(from))?;
        state.files.insert(to.to_path_buf(), inode);
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> SyncFuture {
        let state = self.state.clone();
        let exists = state.borrow().directories.contains(path);
        let path = path.to_path_buf();
        Box::pin(async move {
            if !exists {
                return Err(not_found(&path));
            }
            let mut state = state.borrow_mut();
            if state.faults.fail_syncs {
                state.sync_failures += 1;
                return Err(io::Error::from_raw_os_error(EIO));
            }
            state.syncs += 1;
            Ok(())
        })
    }
}

/// An open file of [`SimStorage`].
#[derive(Debug, Clone)]
pub struct SimFile {
    inode: Rc<RefCell<Inode>>,
    state: Rc<RefCell<State>>,
}

impl StorageFile for SimFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.inode.borrow().data.len() as u64)
    }

    fn read_at(&self, buffer: &mut [u8], position: u64) -> io::Result<usize> {
        let inode = self.inode.borrow();
        let start = (position as usize).min(inode.data.len());
        let end = (start + buffer.len()).min(inode.data.len());
        buffer[..end - start].copy_from_slice(&inode.data[start..end]);
        Ok(end - start)
    }

    fn write_all_at(&self, bytes: &[u8], position: u64) -> io::Result<()> {
        let state = self.state.borrow();
        let used = state.used_bytes();
        let mut inode = self.inode.borrow_mut();
        let position = position as usize;
        let end = position + bytes.len();
        let growth = end.saturating_sub(inode.data.len()) as u64;
        let fits = match state.faults.capacity_bytes {
            Some(capacity) if used + growth > capacity => {
                let room = capacity.saturating_sub(used) as usize;
                (inode.data.len() + room).saturating_sub(position).min(bytes.len())
            }
            _ => bytes.len(),
        };
        if inode.data.len() < position + fits {
            inode.data.resize(position + fits, 0);
        }
        inode.data[position..position + fits].copy_from_slice(&bytes[..fits]);
        if fits < bytes.len() {
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        Ok(())
    }

    fn truncate(&self, length: u64) -> io::Result<()> {
        self.inode.borrow_mut().data.resize(length as usize, 0);
        Ok(())
    }

    fn sync_data(&self) -> SyncFuture {
        let inode = self.inode.clone();
        let state = self.state.clone();
        Box::pin(async move {
            let mut state = state.borrow_mut();
            if state.faults.fail_syncs {
                state.sync_failures += 1;
                return Err(io::Error::from_raw_os_error(EIO));
            }
            state.syncs += 1;
            let mut inode = inode.borrow_mut();
            inode.durable = inode.data.clone();
            Ok(())
        })
    }
}
