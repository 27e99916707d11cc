//! Gives freed heap memory back to the system after load. The allocator (glibc)
//! keeps the blocks a burst of calls freed in its arenas, so without this the RSS of
//! the busiest minute stays for good. Every `limits::HEAP_TRIM_INTERVAL_S` this
//! thread (at nice 10, never the engine loop) looks at the arenas: once the memory in
//! use has fallen to half the most it was since the last trim (the load went down)
//! and more than `limits::HEAP_TRIM_MIN_FREE` is free, it calls `malloc_trim(0)`,
//! which hands every whole free page back (madvise). Under a steady load nothing is
//! trimmed: pages handed back would only be faulted in again, and RSS would saw up
//! and down. The engine's tables shrink themselves in its
//! housekeeping (`TxnLayer::shrink`, `B2bua::shrink`), so their emptied buckets are
//! free blocks here. On other C libraries it does nothing.

/// Sets the allocator up for a long-running server, before anything big is allocated:
/// blocks of `limits::HEAP_MMAP_THRESHOLD` or more get pages of their own (mmap) and go
/// back to the system the moment they are freed. glibc raises that threshold by itself
/// each time such a block is freed (up to 32 MiB), after which the big tables of a
/// burst of calls (the completed transactions' table is tens of MiB at 4000 calls/s)
/// are carved from the heap and, once freed, leave holes between the blocks still in
/// use that no trim can give back. A fixed threshold turns that off. On other C
/// libraries it does nothing.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn configure_allocator() {
    let threshold = i32::try_from(crate::limits::HEAP_MMAP_THRESHOLD).unwrap_or(i32::MAX);
    // SAFETY: mallopt takes two integers; glibc locks its arenas.
    if unsafe { nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, threshold) } == 0 {
        log::warn!("heap: the allocator refused a fixed mmap threshold");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn configure_allocator() {}

/// The thread's body (never returns).
pub fn trim_thread() -> Result<(), String> {
    super::supervisor::lower_thread_priority("heap-trim");
    let interval = std::time::Duration::from_secs(crate::limits::HEAP_TRIM_INTERVAL_S);
    let mut peak = 0;
    loop {
        std::thread::sleep(interval);
        trim_if_worth_it(&mut peak);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_if_worth_it(peak: &mut usize) {
    // SAFETY: mallinfo2 and malloc_trim take no pointers; glibc locks its arenas.
    let info = unsafe { nix::libc::mallinfo2() };
    let (free, in_use) = (info.fordblks, info.uordblks);
    *peak = (*peak).max(in_use);
    if free < crate::limits::HEAP_TRIM_MIN_FREE || in_use.saturating_mul(2) > *peak {
        return;
    }
    *peak = in_use;
    let started = std::time::Instant::now();
    // SAFETY: as above.
    let released = unsafe { nix::libc::malloc_trim(0) };
    log::debug!("heap: {} KiB free in the arenas, trimmed (released: {}) in {} µs", free / 1024, released != 0, started.elapsed().as_micros());
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_if_worth_it(_peak: &mut usize) {}
