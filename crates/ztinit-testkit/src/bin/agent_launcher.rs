//! agent-launcher: the workload of the kata-agent scenarios. It starts the
//! test client and then becomes the agent, so the agent runs exactly where
//! ztinit put the workload: as PID 1 (handoff) or as ztinit's child
//! (supervise), with the test client as its child.
//!
//! Usage: agent-launcher CLIENT [ARG...] -- AGENT [ARG...]
//!
//! 1. Reports the state it inherited: pid, parent, session and process
//!    group. As PID 1 (handoff) it checks that it does not lead a session or
//!    a process group (the kernel starts init in session 0 and group 0;
//!    kata-agent's PID-1 init calls setsid() and gives up on EPERM).
//! 2. Forks; the child execs CLIENT (which waits for the agent's socket).
//! 3. Execs AGENT in place: same pid, same environment, same descriptors.
//!
//! Nothing here ends the VM: the client does, after its checks.

use std::ffi::CString;

use ztinit_testkit::say;

fn cstrings(args: &[String]) -> Vec<CString> {
    args.iter().map(|a| CString::new(a.as_str()).unwrap_or_else(|_| fail(&format!("NUL in argument {a:?}")))).collect()
}

fn fail(why: &str) -> ! {
    say(&format!("testkit: agent-launcher: FAIL {why}"));
    std::process::exit(1);
}

/// execv; returns only on failure.
fn exec(argv: &[CString]) -> std::io::Error {
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: a NULL-terminated array of pointers into live CStrings; the
    // environment is the process's own.
    unsafe { libc::execv(ptrs[0], ptrs.as_ptr()) };
    std::io::Error::last_os_error()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(split) = args.iter().position(|a| a == "--") else {
        fail("usage: agent-launcher CLIENT [ARG...] -- AGENT [ARG...]");
    };
    let (client, agent) = (&args[..split], &args[split + 1..]);
    if client.is_empty() || agent.is_empty() {
        fail("usage: agent-launcher CLIENT [ARG...] -- AGENT [ARG...]");
    }
    let (client, agent) = (cstrings(client), cstrings(agent));

    // SAFETY: plain queries of this process's ids.
    let (pid, ppid, sid, pgid) = unsafe { (libc::getpid(), libc::getppid(), libc::getsid(0), libc::getpgrp()) };
    say(&format!("testkit: agent-launcher: pid {pid}, parent {ppid}, session {sid}, process group {pgid}"));
    if pid == 1 {
        if sid == 1 || pgid == 1 {
            say(
                "testkit: agent-launcher: FAIL PID 1 leads a session or process group: kata-agent's setsid() will fail",
            );
        } else {
            say(&format!(
                "testkit: agent-launcher: PASS PID 1 leads no session or process group (session {sid}, group {pgid})"
            ));
        }
    }

    // SAFETY: this program has no threads; the child only execs or exits.
    let child = unsafe { libc::fork() };
    if child < 0 {
        fail(&format!("fork: {}", std::io::Error::last_os_error()));
    }
    if child == 0 {
        let e = exec(&client);
        say(&format!("testkit: agent-launcher: FAIL exec {:?}: {e}", client[0]));
        // SAFETY: ends the forked child without running the parent's exit handlers.
        unsafe { libc::_exit(127) };
    }
    say(&format!("testkit: agent-launcher: client is pid {child}; exec {:?} as pid {pid}", agent[0]));
    let e = exec(&agent);
    fail(&format!("exec {:?}: {e}", agent[0]));
}
