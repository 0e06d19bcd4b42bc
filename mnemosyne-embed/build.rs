//! Refuses to build with model files other than the pinned ones: a clone
//! whose `model/` files are missing, truncated or replaced (a Git LFS pointer,
//! a bad checkout) fails here with one line naming the file and the sha256
//! it must have, instead of shipping a binary with a broken embedder.

#[path = "src/minilm/pinned.rs"]
mod pinned;

fn main() {
    // Read when the script runs, not when it was compiled: a build script
    // compiled in another checkout sharing the target dir would otherwise
    // check that checkout's files.
    let manifest_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = std::path::Path::new(&manifest_dir).join("model");
    for (name, size, sha256) in pinned::PINNED_FILES {
        let path = dir.join(name);
        println!("cargo::rerun-if-changed={}", path.display());
        if let Err(line) = pinned::verify(&path, size, sha256) {
            println!("cargo::error={line}");
            std::process::exit(1);
        }
    }
}
