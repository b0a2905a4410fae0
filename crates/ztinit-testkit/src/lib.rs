//! Helpers shared by the test workloads.

pub mod files;

/// Milliseconds since boot (CLOCK_BOOTTIME), the clock ztinit's stage
/// timeline uses.
pub fn boottime_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 {
        return 0;
    }
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1000 + u64::try_from(ts.tv_nsec).unwrap_or(0) / 1_000_000
}

/// Writes one whole line with a single write(2), so lines from several
/// processes sharing the console do not interleave.
pub fn say(line: &str) {
    let mut buf = line.as_bytes().to_vec();
    buf.push(b'\n');
    // SAFETY: writes `buf.len()` initialised bytes from a live buffer to fd 1.
    unsafe {
        libc::write(1, buf.as_ptr().cast(), buf.len());
    }
}

pub mod kata_proto;
