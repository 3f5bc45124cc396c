//! A counting allocator that attributes allocations to the server thread
//! that made them: each server thread claims a slot, and only allocations
//! made on a thread with a slot are counted (in that slot). The load client
//! (the main thread) has no slot, so its own allocations never show.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};

/// How many server threads can be counted.
pub(crate) const SLOTS: usize = 32;

pub(crate) struct Counting;

#[allow(clippy::declare_interior_mutable_const)]
const ZERO_I: AtomicIsize = AtomicIsize::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const ZERO_U: AtomicU64 = AtomicU64::new(0);
static LIVE: [AtomicIsize; SLOTS] = [ZERO_I; SLOTS];
static ALLOCS: [AtomicU64; SLOTS] = [ZERO_U; SLOTS];

thread_local! {
    /// This thread's slot + 1; 0 for "not counted". `const` so reading it
    /// never allocates (the allocator must not recurse).
    static SLOT: Cell<usize> = const { Cell::new(0) };
}

/// Counts this thread's allocations in `slot` from now on.
pub(crate) fn claim(slot: usize) {
    assert!(slot < SLOTS, "more server threads than counting slots");
    SLOT.with(|s| s.set(slot + 1));
}

/// Stops counting this thread's allocations.
pub(crate) fn unclaim() {
    SLOT.with(|s| s.set(0));
}

/// Bytes currently allocated by `slot`'s thread (and not yet freed by it).
pub(crate) fn live(slot: usize) -> isize {
    LIVE[slot].load(Ordering::Relaxed)
}

/// Allocations (alloc, alloc_zeroed, realloc) made by `slot`'s thread.
pub(crate) fn allocs(slot: usize) -> u64 {
    ALLOCS[slot].load(Ordering::Relaxed)
}

fn slot() -> Option<usize> {
    // `try_with`: during thread teardown the key may be gone.
    SLOT.try_with(Cell::get).ok().and_then(|s| s.checked_sub(1))
}

fn add(bytes: isize, count: bool) {
    if let Some(s) = slot() {
        LIVE[s].fetch_add(bytes, Ordering::Relaxed);
        if count {
            ALLOCS[s].fetch_add(1, Ordering::Relaxed);
        }
    }
}

// `GlobalAlloc` is an unsafe trait. Every call is forwarded unchanged to
// `System`; only counters are added.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees about `layout`.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            add(layout.size() as isize, true);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            add(layout.size() as isize, true);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (so from `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        add(-(layout.size() as isize), false);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`; the caller
        // guarantees `new_size` is valid for it.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            add(new_size as isize - layout.size() as isize, true);
        }
        new
    }
}

/// Pins the calling thread to one CPU core.
pub(crate) fn pin(core: usize) -> bool {
    #[allow(unsafe_code)]
    // SAFETY: `cpu_set_t` is plain data; zeroed is an empty set, and
    // `sched_setaffinity(0, …)` only reads the set we pass for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}
