//! Work started ahead of the stage that needs it (the seccomp program, the
//! key the evidence binds) runs at a lower priority, so that while the boot
//! has more runnable threads than vCPUs, the stage the boot waits on now
//! (the network, the KBS handshake) is served first.

/// The nice value of such a thread: it still runs whenever a vCPU would
/// otherwise idle, which under emulation is most of a network round trip.
pub const NICE: i32 = 10;

/// Lowers the calling thread's priority to [`NICE`] (Linux keeps the nice
/// value per thread, so the rest of the process keeps its own). A failure
/// only costs time, so it is ignored.
pub fn lower_this_thread() {
    let _ = rustix::process::setpriority_process(None, NICE);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_calling_thread_is_lowered() {
        let before = rustix::process::getpriority_process(None).unwrap();
        let in_thread = std::thread::spawn(|| {
            lower_this_thread();
            rustix::process::getpriority_process(None).unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(in_thread, NICE.max(before));
        assert_eq!(rustix::process::getpriority_process(None).unwrap(), before);
    }
}
