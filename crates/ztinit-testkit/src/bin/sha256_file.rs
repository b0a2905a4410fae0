//! Prints the SHA-256 of each file named on the command line, in
//! `sha256sum` format after a marker, so a scenario can compare it with the
//! host's digest. Exits 1 if a file cannot be read.

use std::path::Path;

use ztinit_testkit::files::sha256_file;
use ztinit_testkit::say;

fn main() {
    let mut status = 0;
    for path in std::env::args().skip(1) {
        match sha256_file(Path::new(&path)) {
            Ok((hex, bytes)) => say(&format!("testkit: sha256-file: {hex}  {path} ({bytes} bytes)")),
            Err(e) => {
                say(&format!("testkit: sha256-file: FAILED: {path}: {e}"));
                status = 1;
            }
        }
    }
    std::process::exit(status);
}
