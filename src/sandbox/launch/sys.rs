//! The system calls of the launch steps, behind a trait so that a test
//! double can record them: the order of the privileged steps (groups, gid,
//! uid, capabilities, no_new_privs, Landlock, seccomp, exec) is checked by a
//! unit test that needs no root and changes nothing. The launch path is
//! generic over it, so the real implementation is a direct, inlined
//! `libc::syscall`; the recorder exists only in tests.

use std::ffi::{c_int, c_long};

/// What the child's steps need from the kernel.
pub(super) trait Sys {
    /// A raw system call (unused arguments are 0; x86_64 passes all six in
    /// registers and the kernel ignores the ones a call does not take).
    ///
    /// # Safety
    /// As `libc::syscall`: every pointer argument is valid for the call,
    /// and the call may change the credentials of the process.
    unsafe fn syscall(&mut self, nr: c_long, args: [usize; 6]) -> c_long;

    /// errno of the last failed call.
    fn errno(&self) -> i32;
}

/// The kernel itself.
pub(super) struct Kernel;

impl Sys for Kernel {
    #[inline(always)]
    unsafe fn syscall(&mut self, nr: c_long, a: [usize; 6]) -> c_long {
        // SAFETY: the caller upholds `libc::syscall`'s contract.
        unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) }
    }

    #[inline(always)]
    fn errno(&self) -> i32 {
        // SAFETY: reads this thread's errno, which libc keeps valid.
        unsafe { *libc::__errno_location() }
    }
}

/// An int argument as the register holds it (sign-extended, so that
/// `AT_FDCWD` stays -100).
pub(super) fn int(v: c_int) -> usize {
    // c_int is 32 bits and isize 64 on every target this builds for.
    (v as isize).cast_unsigned()
}

/// The test double: records each call by name and fails the one named in
/// `fail` with its errno. Nothing reaches the kernel.
#[cfg(test)]
#[derive(Default)]
pub(super) struct Recorder {
    pub calls: Vec<&'static str>,
    pub fail: Option<(&'static str, i32)>,
    errno: i32,
}

#[cfg(test)]
impl Recorder {
    pub fn failing(fail: Option<(&'static str, i32)>) -> Self {
        Self { fail, ..Self::default() }
    }
}

#[cfg(test)]
impl Sys for Recorder {
    unsafe fn syscall(&mut self, nr: c_long, args: [usize; 6]) -> c_long {
        let name = match nr {
            libc::SYS_prctl => match c_int::try_from(args[0]) {
                Ok(libc::PR_CAPBSET_DROP) => "PR_CAPBSET_DROP",
                Ok(libc::PR_SET_KEEPCAPS) => "PR_SET_KEEPCAPS",
                Ok(libc::PR_CAP_AMBIENT) => "PR_CAP_AMBIENT",
                Ok(libc::PR_SET_NO_NEW_PRIVS) => "PR_SET_NO_NEW_PRIVS",
                _ => "prctl",
            },
            libc::SYS_rt_sigaction => "rt_sigaction",
            libc::SYS_rt_sigprocmask => "rt_sigprocmask",
            libc::SYS_setsid => "setsid",
            libc::SYS_dup2 => "dup2",
            libc::SYS_fcntl => "fcntl",
            libc::SYS_prlimit64 => "prlimit64",
            libc::SYS_openat => "openat",
            libc::SYS_write => "write",
            libc::SYS_close => "close",
            libc::SYS_setgroups => "setgroups",
            libc::SYS_setresgid => "setresgid",
            libc::SYS_setresuid => "setresuid",
            libc::SYS_capset => "capset",
            libc::SYS_chdir => "chdir",
            libc::SYS_landlock_restrict_self => "landlock_restrict_self",
            libc::SYS_close_range => "close_range",
            libc::SYS_seccomp => "seccomp",
            libc::SYS_execveat => "execveat",
            libc::SYS_execve => "execve",
            libc::SYS_unshare => "unshare",
            libc::SYS_mount => "mount",
            libc::SYS_chroot => "chroot",
            libc::SYS_pivot_root => "pivot_root",
            libc::SYS_umount2 => "umount2",
            _ => "unknown",
        };
        self.calls.push(name);
        match self.fail {
            Some((failing, errno)) if failing == name => {
                self.errno = errno;
                -1
            }
            // openat returns an fd; everything else 0.
            _ if nr == libc::SYS_openat => 100,
            _ => 0,
        }
    }

    fn errno(&self) -> i32 {
        self.errno
    }
}
