//! Gives freed heap memory back to the system after load. The allocator (glibc)
//! keeps the blocks a burst of calls freed in its arenas, so without this the RSS of
//! the busiest minute stays for good. Every `limits::HEAP_TRIM_INTERVAL_S` this
//! thread (at nice 10, never the engine loop) looks at how much the arenas hold free
//! and, past `limits::HEAP_TRIM_MIN_FREE`, calls `malloc_trim(0)`, which hands every
//! whole free page back (madvise). The engine's tables shrink themselves in its
//! housekeeping (`TxnLayer::shrink`, `B2bua::shrink`), so their emptied buckets are
//! free blocks here. On other C libraries it does nothing.

/// The thread's body (never returns).
pub fn trim_thread() -> Result<(), String> {
    super::supervisor::lower_thread_priority("heap-trim");
    let interval = std::time::Duration::from_secs(crate::limits::HEAP_TRIM_INTERVAL_S);
    loop {
        std::thread::sleep(interval);
        trim_if_worth_it();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_if_worth_it() {
    // SAFETY: mallinfo2 and malloc_trim take no pointers; glibc locks its arenas.
    let free = unsafe { nix::libc::mallinfo2() }.fordblks;
    if free < crate::limits::HEAP_TRIM_MIN_FREE {
        return;
    }
    let started = std::time::Instant::now();
    // SAFETY: as above.
    let released = unsafe { nix::libc::malloc_trim(0) };
    log::debug!("heap: {} KiB free in the arenas, trimmed (released: {}) in {} µs", free / 1024, released != 0, started.elapsed().as_micros());
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_if_worth_it() {}
