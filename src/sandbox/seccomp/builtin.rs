//! The built-in profiles.
//!
//! `workload-default`: default deny with ENOSYS (so libc fallbacks keep
//! working on calls the profile does not know), an allowlist derived from
//! Docker's default profile (moby `profiles/seccomp/default.json`, the
//! unconditional rule plus what a process without capabilities may do) and
//! what GPU inference needs, a kill list of calls that only an attacker makes
//! from inside an inference server, and EPERM for the privileged calls that a
//! program without capabilities may legitimately probe.
//!
//! `strict`: for ztinit's own helper processes; default KILL_PROCESS and only
//! what a program speaking over pipes and device ioctls needs.
//!
//! `agent`: for a container agent and the containers it starts (they inherit
//! the filter): `workload-default`'s allowlist plus mounts, namespaces,
//! pivot_root and every socket family, a shorter kill list of what no agent
//! needs.

use super::{Action, Condition, Op, Profile, Width, errno16};

/// Docker's unconditional allowlist (x86_64 names), less `io_uring_*` (kill
/// list; also disabled by sysctl) and `modify_ldt`, plus `arch_prctl`
/// (Docker allows it for amd64).
#[rustfmt::skip]
const DOCKER_BASE: &[&str] = &[
    "accept", "accept4", "access", "adjtimex", "alarm", "arch_prctl", "bind", "brk", "capget",
    "capset", "chdir", "chmod", "chown", "clock_adjtime", "clock_getres", "clock_gettime",
    "clock_nanosleep", "close", "close_range", "connect", "copy_file_range", "creat", "dup", "dup2",
    "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
    "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat",
    "exit", "exit_group", "faccessat", "faccessat2", "fadvise64", "fallocate", "fanotify_mark",
    "fchdir", "fchmod", "fchmodat", "fchown", "fchownat", "fcntl", "fdatasync", "fgetxattr",
    "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat", "fstatfs", "fsync",
    "ftruncate", "futex", "futex_waitv", "futimesat", "getcpu", "getcwd", "getdents", "getdents64",
    "getegid", "geteuid", "getgid", "getgroups", "getitimer", "getpeername", "getpgid", "getpgrp",
    "getpid", "getppid", "getpriority", "getrandom", "getresgid", "getresuid", "getrlimit",
    "get_robust_list", "getrusage", "getsid", "getsockname", "getsockopt", "get_thread_area",
    "gettid", "gettimeofday", "getuid", "getxattr", "inotify_add_watch", "inotify_init",
    "inotify_init1", "inotify_rm_watch", "io_cancel", "ioctl", "io_destroy", "io_getevents",
    "io_pgetevents", "ioprio_get", "ioprio_set", "io_setup", "io_submit", "kill",
    "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "lchown", "lgetxattr",
    "link", "linkat", "listen", "listxattr", "llistxattr", "lremovexattr", "lseek", "lsetxattr",
    "lstat", "madvise", "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat",
    "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mprotect", "mq_getsetattr",
    "mq_notify", "mq_open", "mq_timedreceive", "mq_timedsend", "mq_unlink", "mremap", "msgctl",
    "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap", "nanosleep",
    "newfstatat", "open", "openat", "openat2", "pause", "pidfd_open", "pidfd_send_signal", "pipe",
    "pipe2", "poll", "ppoll", "prctl", "pread64", "preadv", "preadv2", "prlimit64",
    "process_mrelease", "pselect6", "pwrite64", "pwritev", "pwritev2", "read", "readahead",
    "readlink", "readlinkat", "readv", "recvfrom", "recvmmsg", "recvmsg", "remap_file_pages",
    "removexattr", "rename", "renameat", "renameat2", "restart_syscall", "rmdir", "rseq",
    "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn",
    "rt_sigsuspend", "rt_sigtimedwait", "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr",
    "sched_getparam", "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler",
    "sched_rr_get_interval", "sched_setaffinity", "sched_setattr", "sched_setparam",
    "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget", "semop",
    "semtimedop", "sendfile", "sendmmsg", "sendmsg", "sendto", "setfsgid", "setfsuid", "setgid",
    "setgroups", "setitimer", "setpgid", "setpriority", "setregid", "setresgid", "setresuid",
    "setreuid", "setrlimit", "set_robust_list", "setsid", "setsockopt", "set_thread_area",
    "set_tid_address", "setuid", "setxattr", "shmat", "shmctl", "shmdt", "shmget", "shutdown",
    "sigaltstack", "signalfd", "signalfd4", "socket", "socketpair", "splice", "stat", "statfs",
    "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo", "tee",
    "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
    "timer_settime", "timerfd_create", "timerfd_gettime", "timerfd_settime", "times", "tkill",
    "truncate", "umask", "uname", "unlink", "unlinkat", "utime", "utimensat", "utimes", "vfork",
    "vmsplice", "wait4", "waitid", "write", "writev",
];

/// What GPU inference and current C libraries need beyond Docker's list
/// (research §3.6): the NUMA memory-policy calls (Docker gates them on
/// CAP_SYS_NICE, which the kernel needs only for MPOL_MF_MOVE_ALL), and
/// system calls newer than Docker's list that glibc and the Rust standard
/// library use with an ENOSYS fallback.
#[rustfmt::skip]
const INFERENCE_EXTRA: &[&str] = &[
    "get_mempolicy", "set_mempolicy", "set_mempolicy_home_node", "mbind", "migrate_pages",
    "move_pages", "fchmodat2", "futex_wake", "futex_wait", "futex_requeue", "cachestat",
    "map_shadow_stack", "mseal", "getxattrat", "setxattrat", "listxattrat", "removexattrat",
    "file_getattr", "file_setattr",
];

/// Calls that only an attacker makes from inside an inference server: the
/// process is killed (KILL_PROCESS, always audited by the kernel).
#[rustfmt::skip]
pub const KILL_LIST: &[&str] = &[
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "bpf",
    "perf_event_open", "ptrace", "process_vm_readv", "process_vm_writev", "userfaultfd", "keyctl",
    "add_key", "request_key", "mount", "umount2", "pivot_root", "swapon", "swapoff", "reboot",
    "open_by_handle_at", "setns", "io_uring_setup", "io_uring_enter", "io_uring_register", "fsopen",
    "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "open_tree_attr", "mount_setattr",
];

/// Privileged calls a program without capabilities may probe: EPERM, as the
/// kernel itself would answer.
#[rustfmt::skip]
const EPERM_LIST: &[&str] = &[
    "acct", "chroot", "clock_settime", "fanotify_init", "iopl", "ioperm", "kcmp", "lookup_dcookie",
    "name_to_handle_at", "pidfd_getfd", "process_madvise", "quotactl", "quotactl_fd",
    "setdomainname", "sethostname", "settimeofday", "syslog", "vhangup", "modify_ldt",
];

/// CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
/// CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET, as in Docker's clone rule.
pub const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;
/// unshare(2) also takes CLONE_NEWTIME.
pub const UNSHARE_NAMESPACE_FLAGS: u64 = CLONE_NAMESPACE_FLAGS | 0x80;

/// Socket families the workload may create: unix, inet, inet6, netlink (for
/// getifaddrs). Others (vsock to the host, AF_ALG, AF_PACKET...) fail with
/// EAFNOSUPPORT, so libraries fall back as on a kernel without them.
pub const SOCKET_FAMILIES: &[u64] = &[1, 2, 10, 16];

/// Docker's personality(2) values: PER_LINUX, UNAME26, ADDR_NO_RANDOMIZE
/// variants and the query value.
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

fn flag_kills(p: &mut Profile, name: &str, mask: u64) {
    // One rule per flag bit: seccompiler has no "masked not equal".
    for bit in (0..64).map(|b| 1u64 << b).filter(|b| mask & b != 0) {
        p.add(name, Action::KillProcess, vec![Condition::new(0, Width::Qword, Op::MaskedEq(bit), bit)]);
    }
}

fn common_rules(p: &mut Profile) {
    p.add_names(&["clone"], Action::Allow);
    flag_kills(p, "clone", CLONE_NAMESPACE_FLAGS);
    p.add_names(&["unshare"], Action::Allow);
    flag_kills(p, "unshare", UNSHARE_NAMESPACE_FLAGS);
}

/// The default workload profile. `extra` names are allowed as well (the
/// config refuses kill-listed names there).
pub fn workload_default(extra: &[String]) -> Profile {
    let mut p = Profile::new("workload-default", Action::Errno(errno16(libc::ENOSYS)));
    p.add_names(DOCKER_BASE, Action::Allow);
    p.add_names(INFERENCE_EXTRA, Action::Allow);
    let eperm: Vec<&str> = EPERM_LIST.iter().copied().filter(|n| !extra.iter().any(|e| e == n)).collect();
    p.add_names(&eperm, Action::Errno(errno16(libc::EPERM)));
    p.add_names(KILL_LIST, Action::KillProcess);
    common_rules(&mut p);
    // clone3 passes its flags in memory that seccomp cannot read: ENOSYS (the
    // default) makes glibc fall back to clone, whose flags are checked.
    let not_allowed_family =
        SOCKET_FAMILIES.iter().map(|f| Condition::new(0, Width::Dword, Op::Ne, *f)).collect::<Vec<_>>();
    p.add("socket", Action::Errno(errno16(libc::EAFNOSUPPORT)), not_allowed_family);
    for value in PERSONALITIES {
        p.add("personality", Action::Allow, vec![Condition::new(0, Width::Dword, Op::Eq, *value)]);
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    p.add_names(&extra, Action::Allow);
    p
}

/// What a container agent needs beyond Docker's list: mounts (classic and
/// the new API), pivot_root, chroot, joining namespaces, the host and domain
/// name of a sandbox, swap the runtime hands over, and powering the VM off.
/// Namespace flags of `clone`/`unshare` and every socket family (vsock to
/// the host, netlink for interfaces and routes) are allowed by omission of
/// the workload profile's conditional rules.
#[rustfmt::skip]
const AGENT_EXTRA: &[&str] = &[
    "mount", "umount2", "pivot_root", "chroot", "setns", "sethostname", "setdomainname", "reboot",
    "swapon", "swapoff", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
    "open_tree_attr", "mount_setattr", "clone", "unshare",
];

/// What no agent needs, killed (`EPERM` in handoff mode, where a kill would
/// be PID 1's): code into the kernel, kernel tracing, another process's
/// memory, and the interfaces most kernel exploits start from.
#[rustfmt::skip]
pub const AGENT_KILL_LIST: &[&str] = &[
    "kexec_load", "kexec_file_load", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup",
    "io_uring_enter", "io_uring_register", "ptrace", "process_vm_readv", "process_vm_writev",
    "open_by_handle_at",
];

/// Module loading, killed unless the agent keeps CAP_SYS_MODULE (which
/// needs `[lockdown] modules_disabled = false`).
pub const MODULE_CALLS: &[&str] = &["init_module", "finit_module", "delete_module"];

/// The agent profile's kill list.
pub fn agent_kill_list(modules: bool) -> Vec<&'static str> {
    let mut list = AGENT_KILL_LIST.to_vec();
    if !modules {
        list.extend_from_slice(MODULE_CALLS);
    }
    list
}

/// The container agent profile (`[sandbox] profile = "agent"`): default
/// deny with ENOSYS as `workload-default`, Docker's list, the inference
/// extras and [`AGENT_EXTRA`] allowed, [`AGENT_KILL_LIST`] killed (and the
/// module calls unless `modules`), the rest of the workload profile's
/// privileged calls answered EPERM. Containers inherit it.
pub fn agent(extra: &[String], modules: bool) -> Profile {
    let mut p = Profile::new("agent", Action::Errno(errno16(libc::ENOSYS)));
    p.add_names(DOCKER_BASE, Action::Allow);
    p.add_names(INFERENCE_EXTRA, Action::Allow);
    p.add_names(AGENT_EXTRA, Action::Allow);
    let eperm: Vec<&str> = EPERM_LIST
        .iter()
        .chain(KILL_LIST)
        .copied()
        .filter(|n| !AGENT_EXTRA.contains(n) && !AGENT_KILL_LIST.contains(n) && !MODULE_CALLS.contains(n))
        .filter(|n| !extra.iter().any(|e| e == n))
        .collect();
    p.add_names(&eperm, Action::Errno(errno16(libc::EPERM)));
    p.add_names(&agent_kill_list(modules), Action::KillProcess);
    if modules {
        p.add_names(MODULE_CALLS, Action::Allow);
    }
    for value in PERSONALITIES {
        p.add("personality", Action::Allow, vec![Condition::new(0, Width::Dword, Op::Eq, *value)]);
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    p.add_names(&extra, Action::Allow);
    p
}

/// The minimal set for ztinit's helpers (a program talking over pipes,
/// opening device nodes and issuing ioctls, possibly multi-threaded).
#[rustfmt::skip]
const STRICT_ALLOW: &[&str] = &[
    "read", "write", "readv", "writev", "pread64", "pwrite64", "close", "close_range", "fstat",
    "newfstatat", "statx", "lseek", "openat", "fcntl", "ioctl", "mmap", "munmap", "mprotect",
    "mremap", "madvise", "brk", "futex", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
    "sigaltstack", "exit", "exit_group", "getpid", "gettid", "getuid", "geteuid", "getgid",
    "getegid", "clock_gettime", "clock_nanosleep", "nanosleep", "getrandom", "poll", "ppoll",
    "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "pipe2", "dup", "dup3",
    "set_robust_list", "set_tid_address", "rseq", "sched_yield", "sched_getaffinity", "prlimit64",
    "uname", "getcwd", "readlink", "readlinkat", "access", "faccessat", "faccessat2", "getdents64",
    "execve", "execveat", "arch_prctl", "tgkill", "mlock", "munlock", "membarrier",
];

pub fn strict(extra: &[String]) -> Profile {
    let mut p = Profile::new("strict", Action::KillProcess);
    p.add_names(STRICT_ALLOW, Action::Allow);
    // Threads only: no namespace flags.
    p.add("clone", Action::Allow, vec![Condition::new(0, Width::Qword, Op::MaskedEq(CLONE_NAMESPACE_FLAGS), 0)]);
    // clone3 passes its flags in memory seccomp cannot read; glibc >= 2.34
    // tries it first for every thread and falls back to clone on ENOSYS
    // (killing here would kill any helper that starts a thread).
    if !extra.iter().any(|e| e == "clone3") {
        p.add_names(&["clone3"], Action::Errno(errno16(libc::ENOSYS)));
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    p.add_names(&extra, Action::Allow);
    p
}

#[cfg(test)]
mod tests {
    use super::super::compile::tests::{ret_of, run};
    use super::super::{compile, syscalls};
    use super::*;

    const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;

    fn nr(name: &str) -> i64 {
        syscalls::number(name).unwrap_or_else(|| panic!("{name} is not an x86_64 system call"))
    }

    #[test]
    fn every_builtin_name_is_an_x86_64_syscall() {
        for list in [DOCKER_BASE, INFERENCE_EXTRA, KILL_LIST, EPERM_LIST, STRICT_ALLOW] {
            for name in list {
                nr(name);
            }
        }
        for name in ["clone", "unshare", "socket", "personality"] {
            nr(name);
        }
    }

    #[test]
    fn lists_do_not_overlap() {
        for k in KILL_LIST.iter().chain(EPERM_LIST) {
            assert!(!DOCKER_BASE.contains(k) && !INFERENCE_EXTRA.contains(k), "{k} is both allowed and denied");
        }
        for k in KILL_LIST {
            assert!(!EPERM_LIST.contains(k), "{k} in two deny lists");
        }
    }

    fn check(p: &Profile, name: &str, args: [u64; 6], want: Action) {
        assert_eq!(p.evaluate(nr(name), args), want, "model: {name} {args:x?}");
        let prog = compile(p).unwrap();
        assert_eq!(
            run(prog.instructions(), AUDIT_ARCH_X86_64, u32::try_from(nr(name)).unwrap(), args),
            ret_of(want),
            "bpf: {name}"
        );
    }

    #[test]
    fn workload_default_decisions() {
        let p = workload_default(&[]);
        let a = [0u64; 6];
        let with = |x: u64| [x, 0, 0, 0, 0, 0];
        check(&p, "read", a, Action::Allow);
        check(&p, "memfd_create", a, Action::Allow);
        check(&p, "get_mempolicy", a, Action::Allow);
        check(&p, "mbind", a, Action::Allow);
        check(&p, "ioctl", a, Action::Allow);
        check(&p, "socket", [1, 5 /* SOCK_SEQPACKET */, 0, 0, 0, 0], Action::Allow);
        check(&p, "socket", with(10), Action::Allow);
        check(&p, "socket", with(40 /* AF_VSOCK */), Action::Errno(errno16(libc::EAFNOSUPPORT)));
        check(&p, "socket", with(38 /* AF_ALG */), Action::Errno(errno16(libc::EAFNOSUPPORT)));
        check(&p, "clone", with(0x003d_0f00 /* pthread_create */), Action::Allow);
        check(&p, "clone", with(0x1000_0000 | 17 /* CLONE_NEWUSER */), Action::KillProcess);
        check(&p, "clone", with(0x4000_0000 /* CLONE_NEWNET */), Action::KillProcess);
        check(&p, "unshare", with(0x200 /* CLONE_FS */), Action::Allow);
        check(&p, "unshare", with(0x80 /* CLONE_NEWTIME */), Action::KillProcess);
        check(&p, "unshare", with(0x2_0000 /* CLONE_NEWNS */), Action::KillProcess);
        check(&p, "clone3", a, Action::Errno(errno16(libc::ENOSYS)));
        check(&p, "personality", with(0xffff_ffff), Action::Allow);
        check(&p, "personality", with(0x0040_0000 /* READ_IMPLIES_EXEC */), Action::Errno(errno16(libc::ENOSYS)));
        check(&p, "settimeofday", a, Action::Errno(errno16(libc::EPERM)));
        check(&p, "lsm_get_self_attr", a, Action::Errno(errno16(libc::ENOSYS)));
        for name in KILL_LIST {
            check(&p, name, a, Action::KillProcess);
        }
    }

    #[test]
    fn extra_names_are_allowed() {
        let p = workload_default(&["pidfd_getfd".to_string()]);
        check(&p, "pidfd_getfd", [0; 6], Action::Allow);
    }

    #[test]
    fn strict_kills_everything_else() {
        let p = strict(&[]);
        check(&p, "read", [0; 6], Action::Allow);
        check(&p, "socket", [1, 1, 0, 0, 0, 0], Action::KillProcess);
        check(&p, "clone", [0x003d_0f00, 0, 0, 0, 0, 0], Action::Allow);
        check(&p, "clone", [0x2_0000, 0, 0, 0, 0, 0], Action::KillProcess);
        check(&p, "clone3", [0; 6], Action::Errno(errno16(libc::ENOSYS)));
    }

    #[test]
    fn agent_decisions() {
        let p = agent(&[], false);
        let a = [0u64; 6];
        let with = |x: u64| [x, 0, 0, 0, 0, 0];
        for name in ["read", "mount", "umount2", "pivot_root", "setns", "sethostname", "reboot", "move_mount"] {
            check(&p, name, a, Action::Allow);
        }
        // Namespaces (runc-style container creation) and every socket family.
        check(&p, "clone", with(0x7E02_0000 | 17), Action::Allow);
        check(&p, "unshare", with(0x2_0000 /* CLONE_NEWNS */), Action::Allow);
        check(&p, "unshare", with(0x80 /* CLONE_NEWTIME */), Action::Allow);
        check(&p, "socket", with(40 /* AF_VSOCK */), Action::Allow);
        check(&p, "socket", with(16 /* AF_NETLINK */), Action::Allow);
        // What no agent needs is killed, modules included while locked.
        for name in AGENT_KILL_LIST.iter().chain(MODULE_CALLS) {
            check(&p, name, a, Action::KillProcess);
        }
        // The rest of the workload profile's kill list is EPERM, as the
        // kernel would answer without the capability.
        for name in ["keyctl", "add_key", "request_key", "acct", "ioperm", "settimeofday"] {
            check(&p, name, a, Action::Errno(errno16(libc::EPERM)));
        }
        check(&p, "clone3", a, Action::Errno(errno16(libc::ENOSYS)));
        check(&p, "lsm_get_self_attr", a, Action::Errno(errno16(libc::ENOSYS)));
        // CAP_SYS_MODULE kept (modules_disabled = false): loading goes through.
        let open = agent(&[], true);
        for name in MODULE_CALLS {
            check(&open, name, a, Action::Allow);
        }
        check(&open, "kexec_load", a, Action::KillProcess);
        // seccomp_allow lifts an EPERM.
        check(&agent(&["ioperm".to_string()], false), "ioperm", a, Action::Allow);
        assert_eq!(agent_kill_list(true), AGENT_KILL_LIST);
        check_launchable_profile(&p);
    }

    fn check_launchable_profile(p: &Profile) {
        super::super::check_launchable(p).unwrap();
    }

    #[test]
    fn agent_lists_are_consistent() {
        for name in AGENT_EXTRA.iter().chain(AGENT_KILL_LIST).chain(MODULE_CALLS) {
            nr(name);
        }
        for k in AGENT_KILL_LIST.iter().chain(MODULE_CALLS) {
            assert!(!AGENT_EXTRA.contains(k) && !DOCKER_BASE.contains(k), "{k} is both allowed and killed");
            assert!(KILL_LIST.contains(k), "{k}: the agent kills only what the workload profile kills");
        }
    }

    #[test]
    fn builtin_programs_fit() {
        assert!(compile(&workload_default(&[])).unwrap().len() < 2500);
        assert!(compile(&strict(&[])).unwrap().len() < 1000);
        assert!(compile(&agent(&[], false)).unwrap().len() < 2500);
    }
}
