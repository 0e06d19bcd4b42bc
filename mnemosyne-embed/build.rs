//! Refuses to build with model files other than the pinned ones: a clone
//! whose `model/` files are missing, truncated or replaced (a Git LFS pointer,
//! a bad checkout) fails here with one line naming the file and the sha256
//! it must have, instead of shipping a binary with a broken embedder.

use std::path::Path;

use sha2::{Digest, Sha256};

/// `(file under model/, bytes, sha256)`, as in `model/NOTICE`.
const PINNED: [(&str, u64, &str); 2] = [
    (
        "model.onnx",
        22_928_619,
        "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
    ),
    (
        "tokenizer.json",
        466_247,
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    ),
];

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("model");
    for (name, size, sha256) in PINNED {
        let path = dir.join(name);
        println!("cargo:rerun-if-changed={}", path.display());
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) => fail(&path, sha256, &format!("cannot read it ({error})")),
        };
        if bytes.len() as u64 != size {
            fail(
                &path,
                sha256,
                &format!("it is {} bytes, not {size}", bytes.len()),
            );
        }
        let found: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if found != sha256 {
            fail(&path, sha256, &format!("its sha256 is {found}"));
        }
    }
}

fn fail(path: &Path, sha256: &str, why: &str) -> ! {
    // One line, so that cargo's output shows it whole.
    println!(
        "cargo::error=model file {} is unusable: {why}; expected sha256 {sha256} (see model/NOTICE for where it comes from)",
        path.display()
    );
    std::process::exit(1);
}
