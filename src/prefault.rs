//! Maps ztinit's own code and read-only data in one system call at start.
//!
//! PID 1 comes from the initramfs, whose pages are already in memory, but
//! each page of code ztinit first touches still takes a page fault. A boot
//! touches most of the binary once, and a fault is a trap into the kernel
//! each time (under emulation, as in the test harness, an expensive one).
//! `MADV_POPULATE_READ` (Linux 5.14) maps every page of the read-only
//! segments at once. A kernel without it refuses with EINVAL and the pages
//! fault in as before: nothing depends on it.

use std::ffi::{c_int, c_void};

/// Populates the read-only `PT_LOAD` segments of the running executable;
/// returns how many bytes were populated (0 when the kernel declined).
pub fn own_code() -> usize {
    let mut populated = 0usize;
    // SAFETY: the callback only reads the program headers the C library
    // passes it and writes to the `usize` behind `data`, which outlives the
    // call; dl_iterate_phdr calls it synchronously.
    unsafe {
        libc::dl_iterate_phdr(Some(populate_segments), (&raw mut populated).cast::<c_void>());
    }
    populated
}

/// dl_iterate_phdr's callback: the first object is the executable; stop
/// after it (returning non-zero).
unsafe extern "C" fn populate_segments(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
    // SAFETY: the C library passes a valid `dl_phdr_info` for the duration
    // of the call, and `data` is the `usize` given to dl_iterate_phdr.
    let (info, populated) = unsafe { (&*info, &mut *data.cast::<usize>()) };
    if info.dlpi_phdr.is_null() {
        return 1;
    }
    // SAFETY: `dlpi_phdr` points to `dlpi_phnum` program headers of the
    // loaded object, valid while it stays loaded (for the program's life).
    let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
    let page = 4096usize;
    for h in headers.iter().filter(|h| h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_W == 0) {
        let (Ok(vaddr), Ok(len)) = (usize::try_from(h.p_vaddr), usize::try_from(h.p_memsz)) else { continue };
        let Some(start) = usize::try_from(info.dlpi_addr).ok().and_then(|base| base.checked_add(vaddr)) else {
            continue;
        };
        let aligned = start & !(page - 1);
        let len = len + (start - aligned);
        // SAFETY: the range is a mapped segment of this executable;
        // MADV_POPULATE_READ only faults its pages in, changing no content.
        if unsafe { libc::madvise(aligned as *mut c_void, len, libc::MADV_POPULATE_READ) } == 0 {
            *populated += len;
        }
    }
    1
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_test_binary_populates_its_code() {
        // Test hosts run kernels newer than 5.14; the code segment is
        // never empty.
        assert!(super::own_code() > 4096);
    }
}
