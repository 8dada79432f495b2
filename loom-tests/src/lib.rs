//! loom models of ringmq's lock-free parts (the cross-shard rings, the wake-up
//! protocol, the group-commit completion hand-off across threads). This crate
//! must not depend on tokio: a global `--cfg loom` switches tokio into loom mode
//! and breaks tokio-uring. The models arrive with the cross-shard rings (#3/#4);
//! the partition log of #2 is single-threaded per shard and has nothing to model.
