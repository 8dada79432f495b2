//! Guards the checked-in C header: it must be exactly what cbindgen generates
//! from src/ffi.rs now (build.rs writes that into OUT_DIR). After a deliberate
//! change of the C ABI: `RINGMQ_BLESS_HEADER=1 cargo test --test c_header`.

#[test]
fn the_checked_in_header_is_current() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/ringmq.h"));
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("include/ringmq.h");
    if std::env::var_os("RINGMQ_BLESS_HEADER").is_some() {
        std::fs::write(&path, generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "include/ringmq.h is stale: regenerate it with RINGMQ_BLESS_HEADER=1 cargo test --test c_header"
    );
}
