//! The compiled programs against the real kernel: a forked child installs
//! the filter and issues raw system calls; the parent checks the errno the
//! child reports through its exit code, or the signal that killed it. The
//! test process itself never installs a filter.

use super::{Program, builtin, compile, oci};

/// Runs `f` in a forked child under `prog`; returns the wait status.
fn in_child(prog: &Program, f: fn() -> i32) -> i32 {
    // SAFETY: the child only issues raw system calls and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: as above; the program outlives the call.
        unsafe {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            #[repr(C)]
            struct Fprog {
                len: u16,
                filter: *const seccompiler::sock_filter,
            }
            let insns = prog.instructions();
            let fprog = Fprog { len: u16::try_from(insns.len()).unwrap(), filter: insns.as_ptr() };
            if libc::syscall(libc::SYS_seccomp, 1, 0, &fprog as *const Fprog) != 0 {
                libc::_exit(200);
            }
            libc::_exit(f());
        }
    }
    let mut status = 0;
    // SAFETY: our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    status
}

/// The errno of a raw syscall that failed, 0 if it succeeded (as exit code).
fn errno_of(r: libc::c_long) -> i32 {
    // SAFETY: reads errno.
    if r < 0 { unsafe { *libc::__errno_location() } } else { 0 }
}

fn exited_with(status: i32) -> Option<i32> {
    libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status))
}

fn killed_by(status: i32) -> Option<i32> {
    libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status))
}

fn default_program() -> Program {
    compile(&builtin::workload_default(&[])).unwrap()
}

// The closures run in the forked child under the filter (`in_child`):
// each issues one raw system call with integer arguments, NULL, or a
// pointer to a static C string, none of which the test process sees.

#[test]
fn unknown_syscall_gets_enosys() {
    let status = in_child(&default_program(), || {
        // SAFETY: integer arguments only (see the note above).
        errno_of(unsafe {
            libc::syscall(459 /* lsm_get_self_attr */, 0, 0, 0, 0)
        })
    });
    assert_eq!(exited_with(status), Some(libc::ENOSYS));
}

#[test]
fn privileged_syscall_gets_eperm() {
    let status = in_child(&default_program(), || {
        // SAFETY: NULL time and zone: the filter answers before the kernel looks.
        errno_of(unsafe { libc::syscall(libc::SYS_settimeofday, 0, 0) })
    });
    assert_eq!(exited_with(status), Some(libc::EPERM));
}

#[test]
fn vsock_socket_gets_eafnosupport() {
    let status = in_child(&default_program(), || {
        // SAFETY: integer arguments only.
        errno_of(unsafe { libc::syscall(libc::SYS_socket, libc::AF_VSOCK, libc::SOCK_STREAM, 0) })
    });
    assert_eq!(exited_with(status), Some(libc::EAFNOSUPPORT));
}

#[test]
fn allowed_syscalls_work() {
    let status = in_child(&default_program(), || {
        // SAFETY: a static NUL-terminated name.
        let fd = unsafe { libc::syscall(libc::SYS_memfd_create, c"x".as_ptr(), 0) };
        // SAFETY: integer arguments only.
        let sock = unsafe { libc::syscall(libc::SYS_socket, libc::AF_UNIX, libc::SOCK_SEQPACKET, 0) };
        if fd < 0 || sock < 0 { 1 } else { 0 }
    });
    assert_eq!(exited_with(status), Some(0));
}

#[test]
fn kill_listed_syscall_kills_with_sigsys() {
    let status = in_child(&default_program(), || {
        // SAFETY: NULL source and target: the filter kills before the kernel looks.
        errno_of(unsafe { libc::syscall(libc::SYS_mount, 0, 0, 0, 0, 0) })
    });
    assert_eq!(killed_by(status), Some(libc::SIGSYS));
    let status = in_child(&default_program(), || {
        // SAFETY: fd -1 and a static empty string.
        errno_of(unsafe { libc::syscall(libc::SYS_finit_module, -1, c"".as_ptr(), 0) })
    });
    assert_eq!(killed_by(status), Some(libc::SIGSYS));
}

#[test]
fn namespace_unshare_kills_but_plain_unshare_works() {
    let status = in_child(&default_program(), || {
        // SAFETY: integer flags only; the child is thrown away.
        errno_of(unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_FS) })
    });
    assert_eq!(exited_with(status), Some(0));
    let status = in_child(&default_program(), || {
        // SAFETY: integer flags only; the child is thrown away.
        errno_of(unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER) })
    });
    assert_eq!(killed_by(status), Some(libc::SIGSYS));
}

#[test]
fn handoff_program_answers_eperm_instead_of_killing() {
    let tame = default_program().without_fatal_actions();
    let status = in_child(&tame, || {
        // SAFETY: NULL arguments: the filter answers before the kernel looks.
        errno_of(unsafe { libc::syscall(libc::SYS_mount, 0, 0, 0, 0, 0) })
    });
    assert_eq!(exited_with(status), Some(libc::EPERM));
}

#[test]
fn docker_default_profile_in_the_kernel() {
    let json = include_bytes!("../../../tests/data/seccomp/docker-default.json");
    let profile =
        oci::import("docker-default.json", json, oci::ImportContext { capabilities: 0, kernel: Some((6, 1)) }).unwrap();
    let prog = compile(&profile).unwrap();
    let status = in_child(&prog, || {
        // SAFETY: NULL arguments: the filter answers before the kernel looks.
        errno_of(unsafe { libc::syscall(libc::SYS_mount, 0, 0, 0, 0, 0) })
    });
    assert_eq!(exited_with(status), Some(libc::EPERM));
    let status = in_child(&prog, || {
        // SAFETY: NULL arguments: the filter answers before the kernel looks.
        errno_of(unsafe { libc::syscall(libc::SYS_clone3, 0, 0) })
    });
    assert_eq!(exited_with(status), Some(libc::ENOSYS));
    let status = in_child(&prog, || {
        // SAFETY: no arguments.
        errno_of(unsafe { libc::syscall(libc::SYS_getpid) })
    });
    assert_eq!(exited_with(status), Some(0));
}

#[test]
fn strict_profile_kills_unlisted_calls() {
    let prog = compile(&builtin::strict(&[])).unwrap();
    let status = in_child(&prog, || {
        // SAFETY: integer arguments only.
        errno_of(unsafe { libc::syscall(libc::SYS_socket, libc::AF_UNIX, libc::SOCK_STREAM, 0) })
    });
    assert_eq!(killed_by(status), Some(libc::SIGSYS));
}
