//! Read-only mappings of segment files, so a fetch's records go from the page
//! cache to the socket without a copy into a buffer of ours: the response's
//! `writev` points into the mapping, and the kernel copies from the cached
//! pages into the socket once.
//!
//! A mapping covers only bytes of the file that are part of its log (below the
//! segment's size when it was read). The log never shortens a file below that
//! size while the segment is in use: it truncates only a failed append's
//! prefix and, at a roll, the zeros written ahead, both past every batch a read
//! can see. Deleting a file (retention, a deleted topic) leaves the mapping
//! valid until it is dropped. Only shortening a segment from outside the broker
//! could turn an access into SIGBUS, as for any program that maps its files.

use std::fs::File;
use std::io;
use std::ops::{Deref, Range};
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

/// A read-only, shared mapping of part of a file, narrowed to `range`.
pub struct Mapping {
    base: NonNull<u8>,
    mapped_len: usize,
    range: Range<usize>,
}

impl Mapping {
    /// Maps `len` bytes of `file` at `position` (populated: the pages are
    /// looked up once here, not faulted in one by one later).
    pub fn map(file: &File, position: u64, len: usize) -> io::Result<Mapping> {
        let page = page_size();
        let skip = (position % page as u64) as usize;
        let aligned = position - skip as u64;
        let mapped_len = skip.checked_add(len).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "an empty mapping"));
        }
        let offset = libc::off_t::try_from(aligned).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a fresh read-only mapping chosen by the kernel (no address
        // hint), of a descriptor we hold open for the call; the result is
        // checked for MAP_FAILED before use.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped_len,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                file.as_raw_fd(),
                offset,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(address.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mapping { base, mapped_len, range: skip..skip + len })
    }

    /// The same mapping, narrowed to `range` of what it shows now (clamped).
    pub fn narrow(mut self, range: Range<usize>) -> Mapping {
        let len = self.range.len();
        let (start, end) = (range.start.min(len), range.end.min(len));
        let base = self.range.start;
        self.range = base + start..base + end.max(start);
        self
    }
}

impl Deref for Mapping {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `range` lies inside the `mapped_len` bytes mapped at `base`
        // (set by `map`, only shrunk by `narrow`), the mapping is readable and
        // lives until `self` is dropped; nothing writes through it.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(self.range.start), self.range.len()) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base` and `mapped_len` are exactly what mmap returned and
        // was asked for; no slice of it outlives `self` (they borrow it).
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.mapped_len);
        }
    }
}

// SAFETY: the mapping is read-only and owned by this value; moving it to
// another thread moves the only handle to it.
unsafe impl Send for Mapping {}

// SAFETY: tokio-uring reads `bytes_init` bytes from `stable_ptr` while a write
// is in flight and holds the value until it completes; the pointer stays valid
// and unchanged for as long as the Mapping lives (moving the struct does not
// move the mapped pages).
unsafe impl tokio_uring::buf::IoBuf for Mapping {
    fn stable_ptr(&self) -> *const u8 {
        self.deref().as_ptr()
    }

    fn bytes_init(&self) -> usize {
        self.range.len()
    }

    fn bytes_total(&self) -> usize {
        self.range.len()
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).ok().filter(|&size| size > 0).unwrap_or(4096)
}

/// Bytes read from a file: a buffer of ours, or a mapping of the file.
pub enum FileBytes {
    Owned(Vec<u8>),
    Mapped(Mapping),
}

impl FileBytes {
    /// An owned copy (none for `Owned`).
    pub fn into_vec(self) -> Vec<u8> {
        match self {
            FileBytes::Owned(bytes) => bytes,
            FileBytes::Mapped(mapping) => mapping.to_vec(),
        }
    }

    /// Narrowed to `range` of what it holds now (clamped).
    pub fn narrow(self, range: Range<usize>) -> FileBytes {
        match self {
            FileBytes::Owned(mut bytes) => {
                let end = range.end.min(bytes.len());
                bytes.truncate(end);
                bytes.drain(..range.start.min(end));
                FileBytes::Owned(bytes)
            }
            FileBytes::Mapped(mapping) => FileBytes::Mapped(mapping.narrow(range)),
        }
    }
}

impl Default for FileBytes {
    fn default() -> FileBytes {
        FileBytes::Owned(Vec::new())
    }
}

impl From<Vec<u8>> for FileBytes {
    fn from(bytes: Vec<u8>) -> FileBytes {
        FileBytes::Owned(bytes)
    }
}

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Owned(bytes) => bytes,
            FileBytes::Mapped(mapping) => mapping,
        }
    }
}

// SAFETY: delegates to Vec<u8>'s and Mapping's own IoBuf, whose pointers stay
// put while the value lives (a Vec is not resized while a write holds it).
unsafe impl tokio_uring::buf::IoBuf for FileBytes {
    fn stable_ptr(&self) -> *const u8 {
        match self {
            FileBytes::Owned(bytes) => bytes.stable_ptr(),
            FileBytes::Mapped(mapping) => mapping.stable_ptr(),
        }
    }

    fn bytes_init(&self) -> usize {
        match self {
            FileBytes::Owned(bytes) => bytes.bytes_init(),
            FileBytes::Mapped(mapping) => mapping.bytes_init(),
        }
    }

    fn bytes_total(&self) -> usize {
        match self {
            FileBytes::Owned(bytes) => bytes.bytes_total(),
            FileBytes::Mapped(mapping) => mapping.bytes_total(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_mapping_shows_the_bytes_at_an_unaligned_position_and_narrows() {
        let path = std::env::temp_dir().join(format!("ringmq-mapping-{}", std::process::id()));
        let mut file = File::create(&path).unwrap();
        let bytes: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        file.write_all(&bytes).unwrap();
        let file = File::open(&path).unwrap();
        let mapping = Mapping::map(&file, 5000, 9000).unwrap();
        assert_eq!(&mapping[..], &bytes[5000..14_000]);
        let narrowed = mapping.narrow(100..200);
        assert_eq!(&narrowed[..], &bytes[5100..5200]);
        assert_eq!(&narrowed.narrow(50..1000)[..], &bytes[5150..5200], "clamped to what it shows");
        assert!(Mapping::map(&file, 0, 0).is_err());
        std::fs::remove_file(&path).unwrap();
    }
}
