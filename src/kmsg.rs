//! Logging to the console and to /dev/kmsg.
//!
//! Every line goes to /dev/kmsg with its syslog priority, so `dmesg` shows
//! ztinit's story with severities. The kernel echoes kmsg lines whose level
//! is below `console_loglevel` to the console itself; for those we do not
//! write to the console again, and for the rest (e.g. info lines when booted
//! with `quiet`) we write to the console directly. Either way every line
//! reaches the console exactly once.
//!
//! This is a small in-tree `log::Log` rather than the `kernlog` crate: it
//! writes our exact line format (`ztinit: ...`) to both sinks and knows the
//! console echo rule, which kernlog does not.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Longest message we write in one record; kmsg truncates at ~1 KiB anyway.
const MAX_LINE: usize = 976;

/// Kernel default when /proc/sys/kernel/printk cannot be read.
const DEFAULT_CONSOLE_LOGLEVEL: u8 = 7;

pub struct Logger {
    kmsg: Mutex<Option<File>>,
    console: Mutex<Box<dyn Write + Send>>,
    console_loglevel: AtomicU8,
}

static LOGGER: std::sync::OnceLock<Logger> = std::sync::OnceLock::new();

/// syslog priority for a log level.
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Formats the console/kmsg text of a record.
pub fn format_line(level: Level, msg: &str) -> String {
    let mut line = match level {
        Level::Error => format!("ztinit: error: {msg}"),
        Level::Warn => format!("ztinit: warning: {msg}"),
        _ => format!("ztinit: {msg}"),
    };
    sanitize(&mut line);
    line
}

/// One record = one line: control characters (including newlines a hostile
/// string might carry) are replaced, and overlong lines are cut.
fn sanitize(line: &mut String) {
    if line.len() > MAX_LINE {
        let mut cut = MAX_LINE;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    if line.chars().any(|c| c.is_control()) {
        *line = line.chars().map(|c| if c.is_control() { '?' } else { c }).collect();
    }
}

impl Logger {
    pub fn new(kmsg: Option<File>, console: Box<dyn Write + Send>, console_loglevel: u8) -> Self {
        Self { kmsg: Mutex::new(kmsg), console: Mutex::new(console), console_loglevel: AtomicU8::new(console_loglevel) }
    }

    /// Writes one line at a syslog priority to both sinks (see module docs).
    pub fn write_line(&self, prio: u8, line: &str) {
        let echoed = {
            let mut kmsg = self.kmsg.lock().unwrap_or_else(|e| e.into_inner());
            match kmsg.as_mut() {
                // kmsg takes one record per write(2).
                Some(f) => {
                    f.write_all(format!("<{prio}>{line}\n").as_bytes()).is_ok()
                        && prio < self.console_loglevel.load(Ordering::Relaxed)
                }
                None => false,
            }
        };
        if !echoed {
            let mut console = self.console.lock().unwrap_or_else(|e| e.into_inner());
            let _ = console.write_all(format!("{line}\n").as_bytes());
            let _ = console.flush();
        }
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format_line(record.level(), &record.args().to_string());
        self.write_line(priority(record.level()), &line);
    }

    fn flush(&self) {}
}

/// Reads the first field of /proc/sys/kernel/printk (console_loglevel).
pub fn console_loglevel(proc_root: &Path) -> u8 {
    std::fs::read_to_string(proc_root.join("sys/kernel/printk"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|f| f.parse().ok()))
        .unwrap_or(DEFAULT_CONSOLE_LOGLEVEL)
}

/// Installs the logger: /dev/kmsg (if it can be opened) plus the console on
/// stderr. Also lifts the kernel's rate limit on user writes to kmsg, which
/// would otherwise drop lines of a fast boot.
pub fn init(dev_root: &Path, proc_root: &Path, level: LevelFilter) {
    let _ = std::fs::write(proc_root.join("sys/kernel/printk_devkmsg"), "on\n");
    let kmsg = OpenOptions::new().write(true).custom_flags(libc::O_CLOEXEC).open(dev_root.join("kmsg")).ok();
    let logger = Logger::new(kmsg, Box::new(std::io::stderr()), console_loglevel(proc_root));
    if LOGGER.set(logger).is_ok()
        && let Some(l) = LOGGER.get()
    {
        let _ = log::set_logger(l);
    }
    log::set_max_level(level);
}

/// Changes the level once the configuration is known.
pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}

/// Writes a line regardless of the log level (FATAL lines, the version line,
/// the workload's exit). Falls back to stderr before the logger exists.
pub fn always(prio: u8, line: &str) {
    let mut line = line.to_string();
    sanitize(&mut line);
    match LOGGER.get() {
        Some(l) => l.write_line(prio, &line),
        None => {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    }
}

/// `ztinit: <msg>` at notice priority, whatever the log level.
pub fn notice(msg: &str) {
    always(5, &format!("ztinit: {msg}"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn kmsg_file() -> (tempfile::NamedTempFile, File) {
        let f = tempfile::NamedTempFile::new().unwrap();
        let w = OpenOptions::new().append(true).open(f.path()).unwrap();
        (f, w)
    }

    #[test]
    fn lines_are_prefixed_and_leveled() {
        assert_eq!(format_line(Level::Info, "stage x"), "ztinit: stage x");
        assert_eq!(format_line(Level::Warn, "w"), "ztinit: warning: w");
        assert_eq!(format_line(Level::Error, "e"), "ztinit: error: e");
    }

    #[test]
    fn hostile_strings_stay_on_one_line() {
        let l = format_line(Level::Info, "a\nztinit: FATAL: fake\r");
        assert!(!l.contains('\n') && !l.contains('\r'));
        let long = "x".repeat(5000);
        assert!(format_line(Level::Info, &long).len() <= MAX_LINE + 4);
    }

    #[test]
    fn echoed_levels_are_not_duplicated_on_the_console() {
        let (file, kmsg) = kmsg_file();
        let console = Sink::default();
        let logger = Logger::new(Some(kmsg), Box::new(console.clone()), 7);
        logger.write_line(6, "ztinit: info");
        logger.write_line(7, "ztinit: debug");
        let kmsg_text = std::fs::read_to_string(file.path()).unwrap();
        assert_eq!(kmsg_text, "<6>ztinit: info\n<7>ztinit: debug\n");
        // level 6 < 7 is echoed by the kernel; level 7 is not, so we print it.
        assert_eq!(String::from_utf8(console.0.lock().unwrap().clone()).unwrap(), "ztinit: debug\n");
    }

    #[test]
    fn quiet_consoles_get_direct_writes() {
        let (_file, kmsg) = kmsg_file();
        let console = Sink::default();
        let logger = Logger::new(Some(kmsg), Box::new(console.clone()), 4);
        logger.write_line(6, "ztinit: info");
        logger.write_line(3, "ztinit: error");
        assert_eq!(String::from_utf8(console.0.lock().unwrap().clone()).unwrap(), "ztinit: info\n");
    }

    #[test]
    fn without_kmsg_everything_goes_to_the_console() {
        let console = Sink::default();
        let logger = Logger::new(None, Box::new(console.clone()), 7);
        logger.write_line(3, "ztinit: error: x");
        assert_eq!(String::from_utf8(console.0.lock().unwrap().clone()).unwrap(), "ztinit: error: x\n");
    }

    #[test]
    fn console_loglevel_is_read_from_proc() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(console_loglevel(dir.path()), 7);
        std::fs::create_dir_all(dir.path().join("sys/kernel")).unwrap();
        std::fs::write(dir.path().join("sys/kernel/printk"), "4\t4\t1\t7\n").unwrap();
        assert_eq!(console_loglevel(dir.path()), 4);
    }
}
