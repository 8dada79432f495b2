//! A partition's segments, oldest first, as a list that is never empty: the
//! sealed segments and the one active segment are separate fields, so "the
//! active segment" is a field access rather than an `unwrap` of `last()`, and a
//! position past the end is an `Option`, never an index panic.

use super::index::IndexEntry;

/// The one descriptor a segment keeps open. Index files are opened only to load,
/// flush or sync them, so a broker with many partitions holds one descriptor per
/// segment in use, not three.
pub(super) struct SegmentFiles<F> {
    pub(super) log: F,
}

pub(super) struct Segment<F> {
    pub(super) base_offset: u64,
    /// One past the last offset: for a sealed segment not yet loaded, the next
    /// segment's base offset.
    pub(super) next_offset: u64,
    /// Bytes in the .log; valid once loaded.
    pub(super) size: u64,
    pub(super) files: Option<SegmentFiles<F>>,
    /// Index entries; `None` until loaded (sealed segments load on first use).
    pub(super) entries: Option<Vec<IndexEntry>>,
    pub(super) max_timestamp: i64,
    pub(super) bytes_since_index: u64,
    pub(super) created_at_ms: i64,
    /// Leading entries of `entries` already written to the index files.
    pub(super) index_flushed: usize,
    /// The `.log`'s length in the file system: past `size`, the zeros written
    /// ahead of appends (see `partition::ZERO_AHEAD_BYTES`).
    pub(super) file_length: u64,
}

impl<F> Segment<F> {
    pub(super) fn unloaded(base_offset: u64) -> Segment<F> {
        Segment {
            base_offset,
            next_offset: base_offset,
            size: 0,
            files: None,
            entries: None,
            max_timestamp: -1,
            bytes_since_index: 0,
            created_at_ms: 0,
            index_flushed: 0,
            file_length: 0,
        }
    }

    /// The open `.log`, or an error when it is not open (the active segment's
    /// always is; a sealed one's after `ensure_loaded`).
    pub(super) fn log(&self) -> std::io::Result<&F> {
        self.files
            .as_ref()
            .map(|files| &files.log)
            .ok_or_else(|| std::io::Error::other(format!("segment {} is not open", self.base_offset)))
    }

    pub(super) fn entries(&self) -> &[IndexEntry] {
        self.entries.as_deref().unwrap_or(&[])
    }
}

/// Sealed segments (oldest first) and the active one.
pub(super) struct Segments<F> {
    sealed: Vec<Segment<F>>,
    active: Segment<F>,
}

impl<F> Segments<F> {
    /// Unloaded segments at `bases` (sorted ascending), each ending where the
    /// next begins; one empty segment at offset 0 when `bases` is empty.
    pub(super) fn from_bases(bases: &[u64]) -> Segments<F> {
        let mut sealed: Vec<Segment<F>> = bases.iter().map(|&base| Segment::unloaded(base)).collect();
        let active = sealed.pop().unwrap_or_else(|| Segment::unloaded(0));
        let mut next_base = active.base_offset;
        for segment in sealed.iter_mut().rev() {
            segment.next_offset = next_base;
            next_base = segment.base_offset;
        }
        Segments { sealed, active }
    }

    /// Segments in all, the active one included (at least 1).
    pub(super) fn len(&self) -> usize {
        self.sealed.len() + 1
    }

    /// The position of the active segment (= the number of sealed ones).
    pub(super) fn active_at(&self) -> usize {
        self.sealed.len()
    }

    pub(super) fn active(&self) -> &Segment<F> {
        &self.active
    }

    pub(super) fn active_mut(&mut self) -> &mut Segment<F> {
        &mut self.active
    }

    pub(super) fn first(&self) -> &Segment<F> {
        self.sealed.first().unwrap_or(&self.active)
    }

    pub(super) fn sealed(&self) -> &[Segment<F>] {
        &self.sealed
    }

    pub(super) fn sealed_mut(&mut self) -> &mut [Segment<F>] {
        &mut self.sealed
    }

    pub(super) fn get(&self, at: usize) -> Option<&Segment<F>> {
        if at == self.sealed.len() {
            Some(&self.active)
        } else {
            self.sealed.get(at)
        }
    }

    pub(super) fn get_mut(&mut self, at: usize) -> Option<&mut Segment<F>> {
        if at == self.sealed.len() {
            Some(&mut self.active)
        } else {
            self.sealed.get_mut(at)
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Segment<F>> {
        self.sealed.iter().chain(std::iter::once(&self.active))
    }

    /// The position of the segment that would hold `offset`: the last whose
    /// base offset is at or below it (the first segment for an offset below all).
    pub(super) fn locate(&self, offset: u64) -> usize {
        self.iter().take_while(|segment| segment.base_offset <= offset).count().saturating_sub(1)
    }

    pub(super) fn position_of(&self, base_offset: u64) -> Option<usize> {
        self.iter().position(|segment| segment.base_offset == base_offset)
    }

    /// Seals the active segment and makes `new` the active one.
    pub(super) fn push_active(&mut self, new: Segment<F>) {
        let sealed = std::mem::replace(&mut self.active, new);
        self.sealed.push(sealed);
    }

    /// Removes the active segment and makes the newest sealed one active;
    /// `None` (and nothing changes) when the active segment is the only one.
    pub(super) fn pop_active(&mut self) -> Option<Segment<F>> {
        let previous = self.sealed.pop()?;
        Some(std::mem::replace(&mut self.active, previous))
    }

    /// Removes the oldest sealed segment; `None` when there is none (the active
    /// segment is never removed this way).
    pub(super) fn remove_oldest_sealed(&mut self) -> Option<Segment<F>> {
        if self.sealed.is_empty() {
            return None;
        }
        Some(self.sealed.remove(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bases(segments: &Segments<()>) -> Vec<(u64, u64)> {
        segments.iter().map(|segment| (segment.base_offset, segment.next_offset)).collect()
    }

    #[test]
    fn from_bases_chains_next_offsets_and_is_never_empty() {
        let empty: Segments<()> = Segments::from_bases(&[]);
        assert_eq!(bases(&empty), vec![(0, 0)]);
        let three: Segments<()> = Segments::from_bases(&[0, 10, 25]);
        assert_eq!(bases(&three), vec![(0, 10), (10, 25), (25, 25)]);
        assert_eq!((three.len(), three.active_at()), (3, 2));
    }

    #[test]
    fn locate_finds_the_holding_segment() {
        let segments: Segments<()> = Segments::from_bases(&[5, 10, 25]);
        assert_eq!(segments.locate(0), 0);
        assert_eq!(segments.locate(9), 0);
        assert_eq!(segments.locate(10), 1);
        assert_eq!(segments.locate(100), 2);
        assert!(segments.get(3).is_none());
    }

    #[test]
    fn pop_and_remove_keep_one_segment() {
        let mut segments: Segments<()> = Segments::from_bases(&[0, 10]);
        assert_eq!(segments.pop_active().map(|s| s.base_offset), Some(10));
        assert!(segments.pop_active().is_none());
        assert!(segments.remove_oldest_sealed().is_none());
        segments.push_active(Segment::unloaded(10));
        assert_eq!(segments.remove_oldest_sealed().map(|s| s.base_offset), Some(0));
        assert_eq!(bases(&segments), vec![(10, 10)]);
    }
}
