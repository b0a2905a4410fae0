//! The benchmark's baseline: an init that does nothing but print the time
//! since boot and power off. ztinit's overhead is measured against it.

use ztinit_testkit::{boottime_ms, say};

fn main() {
    say(&format!("baseline: init running at {} ms", boottime_ms()));
    // SAFETY: sync and reboot take no pointers; as PID 1 we may power off.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    say("baseline: power off failed");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
