//! The memory behind an AF_XDP UMEM: a page-aligned, pre-faulted anonymous mapping, unmapped on drop.
//! Its users (the UMEM registration and the rings built on it) must be dropped before it.

use std::io;
use std::ptr::NonNull;

/// A page-aligned anonymous private mapping of `len` bytes (`MAP_POPULATE`).
pub struct Area {
    ptr: NonNull<u8>,
    len: usize,
}

impl Area {
    /// Maps `len` bytes.
    pub fn new(len: usize) -> io::Result<Self> {
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(Self { ptr, len })
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length area (mmap refuses one, so never for an `Area` that exists).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole mapping, for the UMEM registration.
    pub fn slice(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.ptr, self.len)
    }

    /// The `len` bytes at `offset` (a frame user space owns: taken from the free list or handed back by
    /// the kernel on a ring, not on any ring now). Panics when the range is not inside the area.
    pub fn bytes_mut(&mut self, offset: usize, len: usize) -> &mut [u8] {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len),
            "{offset}+{len} is outside the UMEM area of {} bytes",
            self.len
        );
        // SAFETY: the range lies inside the mapping (asserted); the caller owns that frame (not on any ring,
        // so the kernel does not touch it) and `&mut self` prevents aliasing through this area.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(offset), len) }
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping created in `Area::new`; its users are dropped before
        // it (the module's contract).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_page_aligned_zeroed_memory_and_bounds_frames() {
        let mut a = Area::new(4 * 4096).expect("mmap");
        assert_eq!(a.len(), 4 * 4096);
        assert_eq!(a.slice().cast::<u8>().as_ptr() as usize % 4096, 0);
        let f = a.bytes_mut(4096, 2048);
        assert!(f.iter().all(|b| *b == 0));
        f[0] = 7;
        assert_eq!(a.bytes_mut(4096, 1)[0], 7);
        assert_eq!(a.bytes_mut(3 * 4096, 4096).len(), 4096);
        let outside = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            a.bytes_mut(3 * 4096 + 1, 4096).len()
        }));
        assert!(outside.is_err(), "a frame past the end is refused");
        assert!(Area::new(0).is_err(), "mmap refuses a zero-length area");
    }
}
