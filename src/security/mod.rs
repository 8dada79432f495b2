//! Users, ACLs and the authorization check, beneath both listeners.
//!
//! - **Users** hold SCRAM-SHA-256 credentials ([`scram::Credential`]: salt,
//!   iterations, StoredKey, ServerKey; never a password), kept in
//!   `security.json` in the data directory (checksummed, written atomically).
//! - **ACLs** allow a principal (a user name, or `*` for every authenticated
//!   user) operations on topics or groups named literally, by a prefix
//!   (`orders.*`), or all (`*`). There are no deny rules: what no ACL allows
//!   is refused. Read, write and delete imply describe, as in Kafka.
//! - **Super users** (the server's `super_users` setting) may do everything,
//!   and only they manage users and ACLs.
//!
//! Authentication is a listener setting (`--authentication required`); with
//! it off, connections are trusted and ACLs are not consulted, as in a Kafka
//! broker without an authorizer. The embedded broker is always trusted: it is
//! the process's own code.

// The exchange and the file decode what peers and disks give: no panics.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

pub mod scram;
pub mod tls;

use crate::protocol::ErrorCode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The file under the data directory.
pub const SECURITY_FILE: &str = "security.json";
/// The key the users and ACLs are sealed under in it.
const SECURITY_KEY: &str = "security";
/// Most users and most ACLs kept.
pub const USERS_MAX: usize = 10_000;
pub const ACLS_MAX: usize = 10_000;
/// Longest ACL pattern.
pub const PATTERN_BYTES_MAX: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    Topic,
    Group,
}

impl ResourceKind {
    pub fn parse(text: &str) -> Option<ResourceKind> {
        match text {
            "topic" => Some(ResourceKind::Topic),
            "group" => Some(ResourceKind::Group),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::Topic => "topic",
            ResourceKind::Group => "group",
        }
    }
    pub fn to_u8(self) -> u8 {
        self as u8
    }
    pub fn from_u8(value: u8) -> Option<ResourceKind> {
        [ResourceKind::Topic, ResourceKind::Group].into_iter().find(|k| *k as u8 == value)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Read,
    Write,
    Create,
    Delete,
    Describe,
}

impl Operation {
    pub const ALL: [Operation; 5] =
        [Operation::Read, Operation::Write, Operation::Create, Operation::Delete, Operation::Describe];

    pub fn parse(text: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|op| op.name() == text)
    }
    pub fn name(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Create => "create",
            Operation::Delete => "delete",
            Operation::Describe => "describe",
        }
    }
    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of operations, as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct Operations(pub u8);

impl Operations {
    pub const MASK: u8 = 0b1_1111;

    pub fn of(operations: &[Operation]) -> Operations {
        Operations(operations.iter().fold(0, |bits, op| bits | op.bit()))
    }
    pub fn contains(self, operation: Operation) -> bool {
        self.0 & operation.bit() != 0
    }
    /// What these allow, with Kafka's implications (read, write and delete
    /// each allow describe).
    pub fn allows(self, operation: Operation) -> bool {
        self.contains(operation)
            || (operation == Operation::Describe
                && (self.contains(Operation::Read)
                    || self.contains(Operation::Write)
                    || self.contains(Operation::Delete)))
    }
    pub fn names(self) -> Vec<&'static str> {
        Operation::ALL.into_iter().filter(|op| self.contains(*op)).map(Operation::name).collect()
    }
}

impl Serialize for Operations {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Operations {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Operations, D::Error> {
        let names: Vec<String> = Deserialize::deserialize(deserializer)?;
        let mut operations = Vec::with_capacity(names.len().min(Operation::ALL.len()));
        for name in &names {
            operations.push(
                Operation::parse(name).ok_or_else(|| serde::de::Error::custom(format!("unknown operation {name}")))?,
            );
        }
        Ok(Operations::of(&operations))
    }
}

/// One rule: `principal` may do `operations` on `kind` resources matching `pattern`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Acl {
    /// A user name, or `*` for every authenticated user.
    pub principal: String,
    pub kind: ResourceKind,
    /// A name; a prefix ending in `*` (`orders.*`); or `*` for all.
    pub pattern: String,
    pub operations: Operations,
}

impl Acl {
    fn matches(&self, user: &str, kind: ResourceKind, name: &str) -> bool {
        (self.principal == "*" || self.principal == user)
            && self.kind == kind
            && match self.pattern.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => self.pattern == name,
            }
    }

    /// Checks a rule before it is stored.
    pub fn validate(&self) -> Result<(), String> {
        if self.principal.is_empty() || self.principal.len() > scram::USER_NAME_BYTES_MAX {
            return Err(format!("the principal must be 1 to {} bytes", scram::USER_NAME_BYTES_MAX));
        }
        if self.pattern.is_empty() || self.pattern.len() > PATTERN_BYTES_MAX {
            return Err(format!("the pattern must be 1 to {PATTERN_BYTES_MAX} bytes"));
        }
        if self.pattern.find('*').is_some_and(|at| at != self.pattern.len() - 1) {
            return Err("a pattern may hold one `*`, at its end (a prefix)".into());
        }
        if self.operations.0 == 0 || self.operations.0 & !Operations::MASK != 0 {
            return Err("name at least one operation: read, write, create, delete, describe".into());
        }
        Ok(())
    }
}

/// Users and ACLs: one immutable snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Security {
    pub users: BTreeMap<String, scram::Credential>,
    pub acls: Vec<Acl>,
}

/// Who a request runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Authentication is off on this listener, or the embedded broker: allowed everything.
    Trusted,
    /// An authenticated user.
    User { name: Arc<str>, superuser: bool },
}

impl Security {
    /// Whether `principal` may do `operation` on `kind` `name`.
    pub fn allows(&self, principal: &Principal, operation: Operation, kind: ResourceKind, name: &str) -> bool {
        match principal {
            Principal::Trusted | Principal::User { superuser: true, .. } => true,
            Principal::User { name: user, .. } => {
                self.acls.iter().any(|acl| acl.matches(user, kind, name) && acl.operations.allows(operation))
            }
        }
    }

    /// Whether `principal` may write somewhere (Kafka's IdempotentWrite:
    /// an idempotent producer id goes to whoever may write a topic).
    pub fn allows_some_write(&self, principal: &Principal) -> bool {
        match principal {
            Principal::Trusted | Principal::User { superuser: true, .. } => true,
            Principal::User { name: user, .. } => self.acls.iter().any(|acl| {
                (acl.principal == "*" || acl.principal == **user)
                    && acl.kind == ResourceKind::Topic
                    && acl.operations.contains(Operation::Write)
            }),
        }
    }

    /// A topic refusal or success.
    pub fn check_topic(&self, principal: &Principal, operation: Operation, topic: &str) -> Result<(), ErrorCode> {
        if self.allows(principal, operation, ResourceKind::Topic, topic) {
            Ok(())
        } else {
            Err(ErrorCode::TopicNotAuthorized)
        }
    }

    pub fn check_group(&self, principal: &Principal, operation: Operation, group: &str) -> Result<(), ErrorCode> {
        if self.allows(principal, operation, ResourceKind::Group, group) {
            Ok(())
        } else {
            Err(ErrorCode::GroupNotAuthorized)
        }
    }
}

/// The security state every shard reads: a version counter (one atomic load
/// per look) and the snapshot behind a mutex taken only when it changed.
pub struct SharedSecurity {
    path: PathBuf,
    version: AtomicU64,
    state: Mutex<Arc<Security>>,
}

/// Why a change was not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateError {
    /// The change itself is invalid (the message says why).
    Refused(String),
    /// `security.json` could not be written.
    Storage(String),
}

impl std::fmt::Display for UpdateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpdateError::Refused(message) | UpdateError::Storage(message) => f.write_str(message),
        }
    }
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    Yes,
    /// Nothing to change (the user or ACL was already so).
    No,
}

impl SharedSecurity {
    /// Reads `security.json` (none yet: no users, no ACLs).
    pub fn load(data_dir: &Path) -> Result<SharedSecurity, String> {
        let path = data_dir.join(SECURITY_FILE);
        let security = match std::fs::read(&path) {
            Ok(bytes) => {
                crate::snapshot::unseal(&bytes, SECURITY_KEY).map_err(|e| format!("{}: {e}", path.display()))?
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Security::default(),
            Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
        };
        Ok(SharedSecurity { path, version: AtomicU64::new(1), state: Mutex::new(Arc::new(security)) })
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn snapshot(&self) -> Arc<Security> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Applies `change` to a copy, writes it durably, then publishes it. A
    /// refused change or a failed write changes nothing.
    pub fn update(
        &self,
        change: impl FnOnce(&mut Security) -> Result<Changed, String>,
    ) -> Result<Changed, UpdateError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = Security::clone(&state);
        if change(&mut next).map_err(UpdateError::Refused)? == Changed::No {
            return Ok(Changed::No);
        }
        let bytes = crate::snapshot::seal(SECURITY_KEY, &next)
            .map_err(|e| UpdateError::Storage(format!("cannot encode the security state: {e}")))?;
        crate::io::write_durably(&self.path, &bytes)
            .map_err(|e| UpdateError::Storage(format!("cannot write {}: {e}", self.path.display())))?;
        *state = Arc::new(next);
        self.version.fetch_add(1, Ordering::AcqRel);
        Ok(Changed::Yes)
    }
}

/// One thread's cached snapshot of a [`SharedSecurity`].
pub type SecurityView = crate::snapshot::SnapshotView<Security>;

impl crate::snapshot::Published<Security> for SharedSecurity {
    fn version(&self) -> u64 {
        SharedSecurity::version(self)
    }
    fn snapshot(&self) -> Arc<Security> {
        SharedSecurity::snapshot(self)
    }
}

/// Adds or replaces a user.
pub fn upsert_user(security: &mut Security, name: &str, credential: scram::Credential) -> Result<Changed, String> {
    if name.is_empty() || name.len() > scram::USER_NAME_BYTES_MAX || name.contains('\0') {
        return Err(format!("a user name is 1 to {} bytes, without NUL", scram::USER_NAME_BYTES_MAX));
    }
    if !security.users.contains_key(name) && security.users.len() >= USERS_MAX {
        return Err(format!("at most {USERS_MAX} users"));
    }
    security.users.insert(name.to_owned(), credential);
    Ok(Changed::Yes)
}

pub fn remove_user(security: &mut Security, name: &str) -> Result<Changed, String> {
    Ok(if security.users.remove(name).is_some() { Changed::Yes } else { Changed::No })
}

pub fn add_acl(security: &mut Security, acl: Acl) -> Result<Changed, String> {
    acl.validate()?;
    if security.acls.contains(&acl) {
        return Ok(Changed::No);
    }
    if security.acls.len() >= ACLS_MAX {
        return Err(format!("at most {ACLS_MAX} ACLs"));
    }
    security.acls.push(acl);
    security.acls.sort();
    Ok(Changed::Yes)
}

pub fn remove_acl(security: &mut Security, acl: &Acl) -> Result<Changed, String> {
    let before = security.acls.len();
    security.acls.retain(|a| a != acl);
    Ok(if security.acls.len() != before { Changed::Yes } else { Changed::No })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Principal {
        Principal::User { name: name.into(), superuser: false }
    }

    #[test]
    fn acls_allow_by_literal_prefix_and_wildcard_and_nothing_else() {
        let mut security = Security::default();
        let acl = |principal: &str, kind, pattern: &str, operations: &[Operation]| Acl {
            principal: principal.into(),
            kind,
            pattern: pattern.into(),
            operations: Operations::of(operations),
        };
        add_acl(&mut security, acl("alice", ResourceKind::Topic, "orders", &[Operation::Write])).unwrap();
        add_acl(&mut security, acl("alice", ResourceKind::Topic, "logs.*", &[Operation::Read])).unwrap();
        add_acl(&mut security, acl("*", ResourceKind::Group, "*", &[Operation::Read])).unwrap();
        let alice = user("alice");
        assert!(security.allows(&alice, Operation::Write, ResourceKind::Topic, "orders"));
        assert!(security.allows(&alice, Operation::Describe, ResourceKind::Topic, "orders"), "write implies describe");
        assert!(!security.allows(&alice, Operation::Read, ResourceKind::Topic, "orders"));
        assert!(!security.allows(&alice, Operation::Write, ResourceKind::Topic, "orders2"));
        assert!(security.allows(&alice, Operation::Read, ResourceKind::Topic, "logs.app"));
        assert!(!security.allows(&alice, Operation::Read, ResourceKind::Topic, "logs"));
        assert!(!security.allows(&alice, Operation::Create, ResourceKind::Topic, "logs.new"));
        assert!(security.allows(&user("bob"), Operation::Read, ResourceKind::Group, "anything"));
        assert!(!security.allows(&user("bob"), Operation::Read, ResourceKind::Topic, "logs.app"));
        assert!(security.allows(&Principal::Trusted, Operation::Delete, ResourceKind::Topic, "orders"));
        let root = Principal::User { name: "root".into(), superuser: true };
        assert!(security.allows(&root, Operation::Delete, ResourceKind::Topic, "orders"));
        assert!(security.allows_some_write(&alice));
        assert!(!security.allows_some_write(&user("bob")));
    }

    #[test]
    fn bad_acls_are_refused() {
        let mut security = Security::default();
        let base = Acl {
            principal: "a".into(),
            kind: ResourceKind::Topic,
            pattern: "t".into(),
            operations: Operations::of(&[Operation::Read]),
        };
        for bad in [
            Acl { pattern: "a*b".into(), ..base.clone() },
            Acl { pattern: String::new(), ..base.clone() },
            Acl { principal: String::new(), ..base.clone() },
            Acl { operations: Operations(0), ..base.clone() },
            Acl { operations: Operations(0x80), ..base.clone() },
        ] {
            assert!(add_acl(&mut security, bad).is_err());
        }
        assert_eq!(add_acl(&mut security, base.clone()), Ok(Changed::Yes));
        assert_eq!(add_acl(&mut security, base.clone()), Ok(Changed::No));
        assert_eq!(remove_acl(&mut security, &base), Ok(Changed::Yes));
        assert_eq!(remove_acl(&mut security, &base), Ok(Changed::No));
    }

    #[test]
    fn the_file_round_trips_and_a_damaged_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("ringmq-security-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let shared = SharedSecurity::load(&dir).unwrap();
        assert!(shared.snapshot().users.is_empty());
        let credential = scram::Credential::new("pw", scram::ITERATIONS_DEFAULT).unwrap();
        let version = shared.version();
        shared.update(|s| upsert_user(s, "alice", credential.clone())).unwrap();
        assert!(shared.version() > version);
        let again = SharedSecurity::load(&dir).unwrap();
        assert_eq!(again.snapshot().users.get("alice"), Some(&credential));
        let path = dir.join(SECURITY_FILE);
        let text = std::fs::read_to_string(&path).unwrap().replace("alice", "alicf");
        std::fs::write(&path, text).unwrap();
        assert!(SharedSecurity::load(&dir).err().unwrap().contains("checksum mismatch"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
