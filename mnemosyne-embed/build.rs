//! Refuses to build with model files other than the pinned ones: a clone
//! whose `model/` files are missing, truncated or replaced (a Git LFS pointer,
//! a bad checkout) fails here with one line naming the file and the sha256
//! it must have, instead of shipping a binary with a broken embedder.

#[path = "src/minilm/pinned.rs"]
mod pinned;

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("model");
    for (name, size, sha256) in pinned::PINNED_FILES {
        let path = dir.join(name);
        println!("cargo::rerun-if-changed={}", path.display());
        if let Err(line) = pinned::verify(&path, size, sha256) {
            println!("cargo::error={line}");
            std::process::exit(1);
        }
    }
}
