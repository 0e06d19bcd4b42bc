//! A walk over the chunks of saved Automerge bytes, before Automerge parses
//! them: only the kinds this crate writes are let through.
//!
//! automerge 0.12 also reads "bundle" chunks, and its parser of those
//! panics on some malformed ones (found by `fuzz/fuzz_targets/crdt_load.rs`)
//! instead of returning an error. Documents here are only ever saved whole
//! (a document chunk) or incrementally (change chunks), so any other kind is
//! refused as damage before it reaches that parser.

use crate::load_error::LoadError;

/// Every chunk starts with these bytes.
const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// Bytes of the checksum after the magic bytes.
const CHECKSUM_BYTES: usize = 4;
/// Chunk kinds written by `save` (a document) and `save_incremental`
/// (changes, compressed or not).
const KINDS_ACCEPTED: [u8; 3] = [0, 1, 2];
/// Longest unsigned LEB128 length (a u64).
const LEB128_BYTES_MAX: usize = 10;

/// Checks that `bytes` is a run of whole chunks of the accepted kinds.
pub fn check(mut bytes: &[u8]) -> Result<(), LoadError> {
    while !bytes.is_empty() {
        let Some(rest) = bytes.strip_prefix(&MAGIC) else {
            return Err(LoadError(
                "a chunk does not start with Automerge's magic bytes".into(),
            ));
        };
        let Some((&kind, rest)) = rest.get(CHECKSUM_BYTES..).and_then(<[u8]>::split_first) else {
            return Err(LoadError("a chunk header is cut short".into()));
        };
        if !KINDS_ACCEPTED.contains(&kind) {
            return Err(LoadError(format!(
                "a chunk of kind {kind} (only documents and changes are stored)"
            )));
        }
        let (length, rest) = leb128(rest)?;
        let length = usize::try_from(length)
            .ok()
            .filter(|&length| length <= rest.len())
            .ok_or_else(|| LoadError("a chunk is longer than the bytes left".into()))?;
        bytes = &rest[length..];
    }
    Ok(())
}

/// An unsigned LEB128 number and the bytes after it.
fn leb128(bytes: &[u8]) -> Result<(u64, &[u8]), LoadError> {
    let mut value: u64 = 0;
    for (i, &byte) in bytes.iter().take(LEB128_BYTES_MAX).enumerate() {
        let bits = u64::from(byte & 0x7f);
        let shift = 7 * i as u32;
        if shift == 63 && bits > 1 {
            return Err(LoadError("a chunk length overflows".into()));
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            return Ok((value, &bytes[i + 1..]));
        }
    }
    Err(LoadError("a chunk length is cut short or too long".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CrdtText;

    #[test]
    fn what_this_crate_saves_passes() {
        let mut doc = CrdtText::new("hello");
        let whole = doc.save();
        check(&whole).unwrap();
        doc.apply(
            "a",
            &[crate::Splice {
                pos: 5,
                delete: 0,
                insert: " world".into(),
            }],
        )
        .unwrap();
        let increment = doc.save_incremental();
        check(&increment).unwrap();
        check(&[whole, increment].concat()).unwrap();
        check(&[]).unwrap();
    }

    #[test]
    fn other_kinds_and_broken_framing_are_refused() {
        let chunk = |kind: u8, length: &[u8], body: &[u8]| {
            [&MAGIC[..], &[0; 4], &[kind], length, body].concat()
        };
        check(&chunk(1, &[2], b"ab")).unwrap();
        let err = check(&chunk(3, &[2], b"ab")).unwrap_err();
        assert!(err.0.contains("kind 3"), "{}", err.0);
        assert!(
            check(&chunk(1, &[3], b"ab"))
                .unwrap_err()
                .0
                .contains("longer")
        );
        assert!(
            check(&chunk(1, &[0x80], b""))
                .unwrap_err()
                .0
                .contains("cut short")
        );
        assert!(check(&chunk(1, &[0xff; 11], b"")).is_err());
        assert!(
            check(&chunk(
                1,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
                b""
            ))
            .is_err()
        );
        assert!(check(b"not a chunk").unwrap_err().0.contains("magic"));
        assert!(check(&MAGIC).unwrap_err().0.contains("header"));
        let two = [chunk(0, &[1], b"x"), chunk(3, &[0], b"")].concat();
        assert!(check(&two).is_err(), "every chunk is checked");
    }
}
