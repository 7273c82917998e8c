//! The pages' assets are built into the binary (rust-embed): a file added
//! to or removed from `assets/` must rebuild it too, not only a changed one.
fn main() {
    println!("cargo:rerun-if-changed=assets");
}
