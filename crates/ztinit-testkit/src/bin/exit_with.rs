//! Prints a marker and exits with the status given as the first argument
//! (default 3): the smallest workload ztinit can launch and report on.

use ztinit_testkit::say;

fn main() {
    let status: i32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    say(&format!("testkit: exit-with: exiting with status {status}"));
    std::process::exit(status);
}
