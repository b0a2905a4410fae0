//! `read-bench FILE SERIAL`: times reading FILE (on an encrypted,
//! verity-checked volume) and then the same number of bytes from the plain
//! disk whose virtio serial is SERIAL (holding the same bytes raw), both
//! cold, and prints both throughputs and their ratio for `cargo xtask
//! bench`. Then checks that both reads gave the same bytes. Exits 1 on any
//! failure.

use std::path::Path;

use ztinit_testkit::files::{disk_by_serial, mib_per_s, sha256_prefix, timed_read};
use ztinit_testkit::say;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [file, serial] = args.as_slice() else {
        say("testkit: read-bench: FAILED: usage: read-bench FILE SERIAL");
        std::process::exit(2);
    };
    if let Err(e) = run(Path::new(file), serial) {
        say(&format!("testkit: read-bench: FAILED: {e}"));
        std::process::exit(1);
    }
}

fn run(file: &Path, serial: &str) -> Result<(), String> {
    let plain = disk_by_serial(Path::new("/sys/block"), Path::new("/dev"), serial).map_err(|e| e.to_string())?;
    let (bytes, volume_time) = timed_read(file, u64::MAX).map_err(|e| format!("{}: {e}", file.display()))?;
    let (plain_bytes, plain_time) = timed_read(&plain, bytes).map_err(|e| format!("{}: {e}", plain.display()))?;
    if plain_bytes != bytes {
        return Err(format!("{} holds {plain_bytes} bytes, {} has {bytes}", plain.display(), file.display()));
    }
    let (v, p) = (mib_per_s(bytes, volume_time), mib_per_s(bytes, plain_time));
    say(&format!(
        "testkit: read-bench: volume {} {bytes} bytes in {} us ({v:.1} MiB/s)",
        file.display(),
        volume_time.as_micros()
    ));
    say(&format!(
        "testkit: read-bench: plain {} {bytes} bytes in {} us ({p:.1} MiB/s)",
        plain.display(),
        plain_time.as_micros()
    ));
    say(&format!("testkit: read-bench: volume/plain throughput ratio {:.3}", v / p));
    // After the timing: both are in the page cache now.
    let a = sha256_prefix(file, bytes).map_err(|e| e.to_string())?;
    let b = sha256_prefix(&plain, bytes).map_err(|e| e.to_string())?;
    if a != b {
        return Err(format!("the volume's file and the plain disk differ ({} vs {})", a.0, b.0));
    }
    say(&format!("testkit: read-bench: same bytes, sha256 {}", a.0));
    Ok(())
}
