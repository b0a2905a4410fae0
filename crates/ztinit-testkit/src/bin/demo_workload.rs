//! The demo image's workload: shows who and where it runs, then exits 0.
//! Later issues extend the demo (secret file, model volume).

use ztinit_testkit::{boottime_ms, say};

fn main() {
    // SAFETY: these getters cannot fail.
    let (pid, uid, gid) = unsafe { (libc::getpid(), libc::getuid(), libc::getgid()) };
    say(&format!("demo: workload started at {} ms: pid={pid} uid={uid} gid={gid}", boottime_ms()));
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.is_empty() {
        say(&format!("demo: args: {}", args.join(" ")));
    }
    say("demo: workload done");
}
