//! Allocator figures from jemalloc (feature `jemalloc`). They mean something
//! only when the binary made jemalloc its global allocator. Without it, the
//! allocator is glibc's malloc, whose arena count is bounded here.

use serde::{Deserialize, Serialize};

/// jemalloc's own account of the heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocatorStats {
    /// Bytes allocated by the application.
    pub allocated_bytes: u64,
    /// Bytes in physically resident pages mapped by the allocator.
    pub resident_bytes: u64,
}

impl AllocatorStats {
    /// Fresh figures, or `None` without the `jemalloc` feature.
    pub fn sample() -> Option<Self> {
        imp::sample()
    }

    /// Tells jemalloc how long a freed page may stay resident before it goes
    /// back to the OS (`dirty_decay_ms`, every arena, now and later ones), and
    /// to return it outright rather than keep it as lazily freed ("muzzy")
    /// pages, which the kernel still counts in RSS. Without this, resident
    /// memory follows jemalloc's defaults rather than a named limit. Returns
    /// `Ok(false)` without the `jemalloc` feature (nothing to configure).
    pub fn configure_decay(dirty_decay_ms: u64) -> Result<bool, AllocatorError> {
        imp::configure_decay(dirty_decay_ms)
    }

    /// Bounds glibc malloc's arenas (`M_ARENA_MAX`). glibc gives each new
    /// thread an arena of its own when it first allocates, up to 8 per
    /// core, and every arena keeps memory freed into it: without a bound,
    /// resident memory grows with each new blocking thread. Call it before
    /// the threads exist. `Ok(false)` where the allocator is not glibc's
    /// (jemalloc's arenas are fixed when it starts).
    pub fn configure_arenas(arenas_max: u32) -> Result<bool, AllocatorError> {
        glibc::configure_arenas(arenas_max)
    }
}

/// The allocator refused a setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the allocator refused {key}: {message}")]
pub struct AllocatorError {
    /// The setting: a jemalloc `mallctl` key, or glibc's `M_ARENA_MAX`.
    pub key: String,
    /// What the allocator said.
    pub message: String,
}

#[cfg(feature = "jemalloc")]
mod imp {
    use tikv_jemalloc_ctl::{epoch, stats};

    use tikv_jemalloc_ctl::{arenas, raw};

    use super::{AllocatorError, AllocatorStats};

    pub fn configure_decay(dirty_decay_ms: u64) -> Result<bool, AllocatorError> {
        let dirty_ms = isize::try_from(dirty_decay_ms).unwrap_or(isize::MAX);
        let refused = |key: &str, e: tikv_jemalloc_ctl::Error| AllocatorError {
            key: key.trim_end_matches('\0').to_owned(),
            message: e.to_string(),
        };
        // Arenas made from now on take the defaults; the existing ones are
        // set one by one (an index whose arena does not exist yet refuses).
        for (key, value) in [
            ("arenas.dirty_decay_ms\0", dirty_ms),
            ("arenas.muzzy_decay_ms\0", 0),
        ] {
            write_ssize(key, value).map_err(|e| refused(key, e))?;
        }
        let count = arenas::narenas::read().map_err(|e| refused("arenas.narenas", e))?;
        for index in 0..count {
            for (suffix, value) in [("dirty_decay_ms", dirty_ms), ("muzzy_decay_ms", 0)] {
                let key = format!("arena.{index}.{suffix}\0");
                match write_ssize(&key, value) {
                    Ok(()) => {}
                    Err(_) if index > 0 => {}
                    Err(e) => return Err(refused(&key, e)),
                }
            }
        }
        Ok(true)
    }

    #[allow(unsafe_code)]
    fn write_ssize(key: &str, value: isize) -> Result<(), tikv_jemalloc_ctl::Error> {
        // SAFETY: `key` is NUL-terminated and names a jemalloc setting of
        // type `ssize_t`, which is `isize` on every platform jemalloc supports.
        unsafe { raw::write(key.as_bytes(), value) }
    }

    pub fn sample() -> Option<AllocatorStats> {
        // The statistics are cached until the epoch advances.
        epoch::advance().ok()?;
        Some(AllocatorStats {
            allocated_bytes: stats::allocated::read().ok()? as u64,
            resident_bytes: stats::resident::read().ok()? as u64,
        })
    }
}

#[cfg(not(feature = "jemalloc"))]
mod imp {
    use super::{AllocatorError, AllocatorStats};

    pub fn configure_decay(_dirty_decay_ms: u64) -> Result<bool, AllocatorError> {
        Ok(false)
    }

    pub fn sample() -> Option<AllocatorStats> {
        None
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "jemalloc")))]
mod glibc {
    use super::AllocatorError;

    pub fn configure_arenas(arenas_max: u32) -> Result<bool, AllocatorError> {
        let refused = |message: String| AllocatorError {
            key: "M_ARENA_MAX".into(),
            message,
        };
        let value = libc::c_int::try_from(arenas_max)
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| refused(format!("{arenas_max} is not a count from 1")))?;
        #[allow(unsafe_code)]
        // SAFETY: mallopt only sets a parameter of glibc's allocator; any
        // value is accepted or refused by its return code.
        let accepted = unsafe { libc::mallopt(libc::M_ARENA_MAX, value) };
        if accepted == 1 {
            Ok(true)
        } else {
            Err(refused(format!("mallopt returned {accepted}")))
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu", not(feature = "jemalloc"))))]
mod glibc {
    use super::AllocatorError;

    pub fn configure_arenas(_arenas_max: u32) -> Result<bool, AllocatorError> {
        Ok(false)
    }
}

#[cfg(all(test, feature = "jemalloc"))]
mod tests {
    use super::*;

    #[global_allocator]
    static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

    #[test]
    fn sees_a_large_allocation() {
        // Process-wide figures and tests run in parallel: another test may
        // free a few MiB between two samples, so the block is large and the
        // bounds leave room for that.
        let before = AllocatorStats::sample().unwrap();
        let block = vec![7u8; 64 << 20];
        let during = AllocatorStats::sample().unwrap();
        assert!(
            during.allocated_bytes >= before.allocated_bytes + (56 << 20),
            "{before:?} -> {during:?}"
        );
        assert!(during.resident_bytes >= during.allocated_bytes / 2);
        drop(block);
        let after = AllocatorStats::sample().unwrap();
        assert!(
            after.allocated_bytes + (56 << 20) < during.allocated_bytes,
            "{during:?} -> {after:?}"
        );
    }

    #[allow(unsafe_code)]
    fn read_ssize(key: &[u8]) -> isize {
        // SAFETY: NUL-terminated key of a `ssize_t` setting.
        unsafe { tikv_jemalloc_ctl::raw::read(key).unwrap() }
    }

    #[test]
    fn decay_is_set_on_existing_and_later_arenas() {
        assert!(AllocatorStats::configure_decay(250).unwrap());
        assert_eq!(read_ssize(b"arenas.dirty_decay_ms\0"), 250);
        assert_eq!(read_ssize(b"arena.0.dirty_decay_ms\0"), 250);
        assert_eq!(read_ssize(b"arena.0.muzzy_decay_ms\0"), 0);
        // A thread started afterwards allocates from an arena with the setting.
        let arena = std::thread::spawn(|| {
            let block = vec![1u8; 1 << 20];
            assert_eq!(block.len(), 1 << 20);
            #[allow(unsafe_code)]
            // SAFETY: NUL-terminated key of an `unsigned` setting.
            unsafe {
                tikv_jemalloc_ctl::raw::read::<u32>(b"thread.arena\0").unwrap()
            }
        })
        .join()
        .unwrap();
        let key = format!("arena.{arena}.dirty_decay_ms\0");
        assert_eq!(read_ssize(key.as_bytes()), 250);
        assert_eq!(read_ssize(b"arenas.muzzy_decay_ms\0"), 0);
    }
}
