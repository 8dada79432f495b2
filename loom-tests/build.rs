// Switches the shared source files of this crate (and only this crate) to loom's
// atomics, locks and threads; see src/sync.rs in the main crate.
fn main() {
    println!("cargo:rustc-cfg=ringmq_loom");
}
