//! The vendored model files and the sha256 each must have (as in
//! `model/NOTICE`). Shared by `build.rs`, which refuses to build with other
//! bytes, and by this crate's tests.

use sha2::{Digest, Sha256};

/// `(file under model/, bytes, sha256)`.
pub const PINNED_FILES: [(&str, u64, &str); 2] = [
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

/// Checks one model file: `Err` is one line naming the file, what is wrong
/// and the sha256 it must have.
pub fn verify(path: &std::path::Path, size: u64, sha256: &str) -> Result<(), String> {
    let fail = |why: String| {
        format!(
            "model file {} is unusable: {why}; expected sha256 {sha256} (see model/NOTICE for where it comes from)",
            path.display()
        )
    };
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read it ({e})")))?;
    if bytes.len() as u64 != size {
        return Err(fail(format!("it is {} bytes, not {size}", bytes.len())));
    }
    let found: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if found != sha256 {
        return Err(fail(format!("its sha256 is {found}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_vendored_files_are_the_pinned_ones() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("model");
        for (name, size, sha256) in PINNED_FILES {
            verify(&dir.join(name), size, sha256).unwrap();
        }
    }

    #[test]
    fn a_missing_truncated_or_changed_file_is_one_line_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let (name, size, sha256) = PINNED_FILES[1];
        let path = dir.path().join(name);
        let err = verify(&path, size, sha256).unwrap_err();
        assert!(
            err.starts_with(&format!(
                "model file {} is unusable: cannot read it",
                path.display()
            )),
            "{err}"
        );
        assert!(
            err.ends_with(&format!(
                "expected sha256 {sha256} (see model/NOTICE for where it comes from)"
            )),
            "{err}"
        );

        let real = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("model")
                .join(name),
        )
        .unwrap();
        std::fs::write(&path, &real[..1000]).unwrap();
        let err = verify(&path, size, sha256).unwrap_err();
        assert!(err.contains("it is 1000 bytes, not 466247"), "{err}");

        let mut changed = real.clone();
        changed[500] ^= 1;
        std::fs::write(&path, &changed).unwrap();
        let err = verify(&path, size, sha256).unwrap_err();
        assert!(err.contains("its sha256 is "), "{err}");
        assert!(!err.contains('\n'));
    }
}
