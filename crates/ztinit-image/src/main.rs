//! `ztinit-image`: started by PID 1, confined (docs/image.md). Reads one
//! JSON request on stdin, pulls, verifies, decrypts and unpacks the image
//! into the request's root, and writes one JSON answer on stdout. Its log
//! goes to stderr, which PID 1 relays; the last line says why it failed.

use std::io::{Read, Write};
use std::process::ExitCode;

use zeroize::Zeroizing;
use ztinit::image::protocol::{self, Request};

struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            let _ = writeln!(std::io::stderr(), "{}", r.args());
        }
    }
    fn flush(&self) {}
}

static LOGGER: StderrLog = StderrLog;

fn main() -> ExitCode {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
    let mut raw = Zeroizing::new(Vec::new());
    let read = std::io::stdin().take(protocol::MAX_REQUEST_BYTES as u64 + 1).read_to_end(&mut raw);
    if let Err(e) = read {
        return fail(&format!("request: cannot read stdin: {e}"));
    }
    if raw.len() > protocol::MAX_REQUEST_BYTES {
        return fail(&format!("request: larger than {} bytes", protocol::MAX_REQUEST_BYTES));
    }
    let request: Request = match serde_json::from_slice(&raw) {
        Ok(r) => r,
        Err(e) => return fail(&format!("request: not valid JSON: {e}")),
    };
    drop(raw);
    match ztinit_image::pull::run(&request) {
        Ok(answer) => match serde_json::to_vec(&answer) {
            Ok(bytes) => {
                let mut out = std::io::stdout().lock();
                if out.write_all(&bytes).and_then(|()| out.flush()).is_err() {
                    return ExitCode::FAILURE;
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&format!("answer: {e}")),
        },
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(why: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "{why}");
    ExitCode::FAILURE
}
