//! Counting glibc malloc's arenas, for the two arena tests (each its own
//! process: `M_ARENA_MAX` is process-wide and cannot be undone).

use std::ffi::CString;
use std::sync::Barrier;

/// Arenas glibc has made so far, from `malloc_info`'s `<heap nr=..>` elements.
#[allow(unsafe_code)]
pub fn arenas() -> usize {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("malloc_info.xml");
    let c_path = CString::new(path.to_str().expect("utf-8 path")).expect("no NUL");
    // SAFETY: both strings are NUL-terminated; the stream is checked for
    // NULL, used once and closed.
    unsafe {
        let stream = libc::fopen(c_path.as_ptr(), c"w".as_ptr());
        assert!(!stream.is_null(), "cannot open {}", path.display());
        assert_eq!(libc::malloc_info(0, stream), 0, "malloc_info failed");
        libc::fclose(stream);
    }
    let xml = std::fs::read_to_string(&path).expect("read malloc_info");
    xml.matches("<heap nr=").count()
}

/// Starts `threads` threads that all allocate at once, counts the arenas
/// while every one of them is alive, then lets them end.
pub fn arenas_with_threads_alive(threads: usize) -> usize {
    let allocated = Barrier::new(threads + 1);
    let counted = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let blocks: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 4096]).collect();
                allocated.wait();
                counted.wait();
                drop(blocks);
            });
        }
        allocated.wait();
        let count = arenas();
        counted.wait();
        count
    })
}
