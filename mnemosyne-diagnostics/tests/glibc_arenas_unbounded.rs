//! The control for `glibc_arenas_bounded`: without the bound, glibc gives
//! threads arenas of their own (so that test can fail).
#![cfg(all(target_os = "linux", target_env = "gnu", not(feature = "jemalloc")))]

mod arenas;

#[test]
fn without_a_bound_threads_get_arenas_of_their_own() {
    let count = arenas::arenas_with_threads_alive(8);
    assert!(
        count >= 5,
        "only {count} arenas for 8 threads without a bound"
    );
}
