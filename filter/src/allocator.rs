//! The filter's allocator: small blocks recycled through per-size free lists over the system
//! allocator (wasi-libc's dlmalloc).
//!
//! A metered request allocates three small blocks (the header map the host hands over, its
//! `:status`, the held record) and frees as many; dlmalloc spent about a hundred instructions on
//! each. Here a small allocation is a pop from its size's list and a free a push, and larger
//! ones go to dlmalloc as before. Freed small blocks stay on their list for the next request,
//! never returned or merged: each size keeps what it held at its peak (a full buffer's records,
//! at most `buffer_size` blocks of a few dozen bytes), which the next burst reuses; dlmalloc
//! never gave linear memory back to the host either.
//! (Measured against the `talc` crate: more fuel per request than dlmalloc, and a larger .wasm.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;

/// Blocks up to this size (and alignment up to `CLASS`) are recycled.
const SMALL: usize = 1024;
/// Size classes are multiples of this.
const CLASS: usize = 16;
const CLASSES: usize = SMALL / CLASS;

pub struct Recycling {
    /// The head of each class's free list: a freed block holds the next block's address.
    free: UnsafeCell<[*mut u8; CLASSES]>,
}

// SAFETY: the filter runs on one thread (wasm32 without atomics); there is no concurrent access.
// (Natively it is only the tests' own instance, used from one thread.)
unsafe impl Sync for Recycling {}

impl Recycling {
    pub const fn new() -> Self {
        Recycling {
            free: UnsafeCell::new([std::ptr::null_mut(); CLASSES]),
        }
    }
}

/// The class of a small layout, or None for one that goes straight to the system allocator.
fn class(l: &Layout) -> Option<usize> {
    if l.size() == 0 || l.size() > SMALL || l.align() > CLASS {
        return None;
    }
    Some((l.size() - 1) / CLASS)
}

unsafe impl GlobalAlloc for Recycling {
    #[inline(never)]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let Some(c) = class(&l) else {
            return System.alloc(l);
        };
        let free = &mut *self.free.get();
        let head = free[c];
        if head.is_null() {
            // the class's full size, so any layout of the class can reuse it
            return System.alloc(Layout::from_size_align_unchecked((c + 1) * CLASS, CLASS));
        }
        free[c] = *(head as *mut *mut u8);
        head
    }

    #[inline(never)]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        let Some(c) = class(&l) else {
            return System.dealloc(p, l);
        };
        let free = &mut *self.free.get();
        *(p as *mut *mut u8) = free[c];
        free[c] = p;
    }

    #[inline(never)]
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        let new = Layout::from_size_align_unchecked(new_size, l.align());
        match (class(&l), class(&new)) {
            (None, None) => System.realloc(p, l, new_size),
            (Some(a), Some(b)) if a == b => p,
            _ => {
                let q = self.alloc(new);
                if !q.is_null() {
                    std::ptr::copy_nonoverlapping(p, q, l.size().min(new_size));
                    self.dealloc(p, l);
                }
                q
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn a_freed_small_block_serves_the_next_request_of_its_class() {
        let a = Recycling::new();
        unsafe {
            let p = a.alloc(layout(40, 1));
            p.write_bytes(7, 40);
            a.dealloc(p, layout(40, 1));
            // 33..=48 bytes share a class: the same block, whatever the exact size
            let q = a.alloc(layout(48, 8));
            assert_eq!(p, q);
            let r = a.alloc(layout(40, 1));
            assert_ne!(r, q, "a block in use is not handed out twice");
            // another class does not get it
            a.dealloc(q, layout(48, 8));
            let s = a.alloc(layout(64, 1));
            assert_ne!(s, q);
            for (p, l) in [(r, layout(40, 1)), (s, layout(64, 1))] {
                a.dealloc(p, l);
            }
        }
    }

    #[test]
    fn large_and_overaligned_blocks_and_empty_ones_go_to_the_system() {
        assert_eq!(class(&layout(SMALL, 1)), Some(CLASSES - 1));
        assert_eq!(class(&layout(SMALL + 1, 1)), None);
        assert_eq!(class(&layout(8, 32)), None);
        assert_eq!(class(&layout(0, 1)), None);
        assert_eq!(class(&layout(1, 1)), Some(0));
        assert_eq!(class(&layout(16, 16)), Some(0));
        assert_eq!(class(&layout(17, 1)), Some(1));
    }

    #[test]
    fn realloc_keeps_the_bytes_across_classes_and_into_the_system() {
        let a = Recycling::new();
        unsafe {
            let mut l = layout(10, 1);
            let mut p = a.alloc(l);
            for i in 0..10 {
                *p.add(i) = i as u8;
            }
            // within the class: the block itself; then a bigger class; then past SMALL and back
            for size in [16, 100, 5000, 20, 3] {
                let q = a.realloc(p, l, size);
                if size == 16 {
                    assert_eq!(q, p);
                }
                let kept = l.size().min(size).min(10);
                for i in 0..kept {
                    assert_eq!(*q.add(i), i as u8, "size {size} byte {i}");
                }
                p = q;
                l = layout(size, 1);
            }
            a.dealloc(p, l);
        }
    }
}
