//! Two pieces the broker's shared state files and tables use alike (the
//! catalog, the users and ACLs):
//!
//! - [`seal`] / [`unseal`]: a JSON file holding one value under a key, with a
//!   CRC-32 of the value's exact bytes, so a torn or edited file is refused.
//! - [`SnapshotView`]: one thread's cached `Arc` of a published snapshot,
//!   refreshed only when the publisher's version counter moved (one atomic
//!   load per look, no lock).

use serde::{de::DeserializeOwned, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Serializes `value` under `key` with a CRC-32 of its exact bytes.
pub fn seal<T: Serialize>(key: &str, value: &T) -> serde_json::Result<Vec<u8>> {
    let inner = serde_json::to_string(value)?;
    let crc32 = crc32fast::hash(inner.as_bytes());
    Ok(format!("{{\n  \"crc32\": {crc32},\n  \"{key}\": {inner}\n}}\n").into_bytes())
}

/// Reads what [`seal`] wrote under `key`, checking the CRC.
pub fn unseal<T: DeserializeOwned>(bytes: &[u8], key: &str) -> Result<T, String> {
    let envelope: BTreeMap<String, &serde_json::value::RawValue> =
        serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let expected: u32 = match envelope.get("crc32") {
        Some(raw) => serde_json::from_str(raw.get()).map_err(|e| format!("crc32: {e}"))?,
        None => return Err("missing field `crc32`".into()),
    };
    let raw = envelope.get(key).ok_or_else(|| format!("no \"{key}\" object"))?;
    let found = crc32fast::hash(raw.get().as_bytes());
    if found != expected {
        return Err(format!("checksum mismatch: file says {expected:#010x}, contents give {found:#010x}"));
    }
    serde_json::from_str(raw.get()).map_err(|e| e.to_string())
}

/// Where a [`SnapshotView`] reads from.
pub trait Published<T> {
    /// Moves on every change.
    fn version(&self) -> u64;
    fn snapshot(&self) -> Arc<T>;
}

/// One thread's cached snapshot of a [`Published`] value.
pub struct SnapshotView<T> {
    cached: RefCell<(u64, Arc<T>)>,
}

impl<T> SnapshotView<T> {
    pub fn new(source: &impl Published<T>) -> SnapshotView<T> {
        SnapshotView { cached: RefCell::new((source.version(), source.snapshot())) }
    }

    fn refresh(&self, source: &impl Published<T>) {
        let version = source.version();
        if self.cached.borrow().0 != version {
            *self.cached.borrow_mut() = (version, source.snapshot());
        }
    }

    /// The current snapshot.
    pub fn current(&self, source: &impl Published<T>) -> Arc<T> {
        self.refresh(source);
        self.cached.borrow().1.clone()
    }

    /// Runs `f` on the current snapshot without taking a reference to it (no
    /// shared reference count touched).
    pub fn with<R>(&self, source: &impl Published<T>, f: impl FnOnce(&T) -> R) -> R {
        self.refresh(source);
        f(&self.cached.borrow().1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_round_trips_and_damage_is_refused() {
        let bytes = seal("thing", &vec![1u32, 2, 3]).unwrap();
        assert_eq!(unseal::<Vec<u32>>(&bytes, "thing").unwrap(), vec![1, 2, 3]);
        assert_eq!(unseal::<Vec<u32>>(&bytes, "other").unwrap_err(), "no \"other\" object");
        let damaged = String::from_utf8(bytes).unwrap().replace("[1,2,3]", "[1,2,4]");
        assert!(unseal::<Vec<u32>>(damaged.as_bytes(), "thing").unwrap_err().starts_with("checksum mismatch"));
        assert!(unseal::<Vec<u32>>(b"not json", "thing").is_err());
    }
}
