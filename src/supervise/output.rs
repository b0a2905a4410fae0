//! Copying the workload's stdout/stderr to the console, line by line with a
//! prefix, without ever blocking PID 1: the caller polls the non-blocking
//! pipe read ends and calls [`LineForwarder::pump`] when one is readable.
//!
//! A workload controls these bytes, so lines are capped in length, control
//! characters are escaped (no terminal escape sequences, no carriage return
//! overwriting a ztinit line), and a token bucket caps the rate; dropped
//! lines are counted and reported once output is allowed again.

use std::io::Write;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

/// Line-splitting, escaping, rate-limited copier for one stream.
#[derive(Debug)]
pub struct LineForwarder {
    prefix: String,
    max_line: usize,
    pending: Vec<u8>,
    /// The current line was cut at `max_line`; skip until its newline.
    truncating: bool,
    per_second: u32,
    burst: u32,
    tokens: f64,
    last: Option<Instant>,
    dropped: u64,
}

/// What one `pump` call saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pumped {
    /// The pipe has no more data for now.
    Drained,
    /// The write end is closed (the workload and its children are gone or
    /// closed the stream); the last partial line was flushed.
    Eof,
}

impl LineForwarder {
    /// `prefix` e.g. "workload: "; lines longer than `max_line` bytes are
    /// cut with a `[...]` marker; at most `per_second` lines on average with
    /// bursts of `burst`.
    pub fn new(prefix: &str, max_line: usize, per_second: u32, burst: u32) -> Self {
        Self {
            prefix: prefix.to_string(),
            max_line: max_line.max(16),
            pending: Vec::new(),
            truncating: false,
            per_second,
            burst: burst.max(1),
            tokens: f64::from(burst.max(1)),
            last: None,
            dropped: 0,
        }
    }

    /// Defaults for the workload: 4 KiB lines, 200 lines/s, bursts of 1000.
    pub fn for_workload(prefix: &str) -> Self {
        Self::new(prefix, 4096, 200, 1000)
    }

    /// Lines dropped by the rate limit and not yet reported.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Reads everything available from `fd` (non-blocking) and writes the
    /// complete lines to `out`.
    pub fn pump(&mut self, fd: BorrowedFd<'_>, out: &mut dyn Write, now: Instant) -> std::io::Result<Pumped> {
        let mut buf = [0u8; 4096];
        // Bounded: one call forwards at most 64 KiB, so a chatty workload
        // cannot keep PID 1 in this loop.
        for _ in 0..16 {
            match rustix::io::read(fd, &mut buf) {
                Ok(0) => {
                    self.finish(out, now)?;
                    return Ok(Pumped::Eof);
                }
                Ok(n) => self.feed(&buf[..n], out, now)?,
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => return Ok(Pumped::Drained),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Pumped::Drained)
    }

    /// Splits `data` into lines and writes the complete ones.
    pub fn feed(&mut self, data: &[u8], out: &mut dyn Write, now: Instant) -> std::io::Result<()> {
        for &b in data {
            if b == b'\n' {
                if self.truncating {
                    self.truncating = false;
                } else {
                    self.emit(out, now)?;
                }
                continue;
            }
            if self.truncating {
                continue;
            }
            self.pending.push(b);
            if self.pending.len() >= self.max_line {
                self.pending.extend_from_slice(b" [...]");
                self.emit(out, now)?;
                self.truncating = true;
            }
        }
        Ok(())
    }

    /// Flushes a last line without newline (at end of stream).
    pub fn finish(&mut self, out: &mut dyn Write, now: Instant) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            self.emit(out, now)?;
        }
        self.truncating = false;
        if self.dropped > 0 {
            writeln!(out, "{}[{} lines dropped by the rate limit]", self.prefix, self.dropped)?;
            self.dropped = 0;
        }
        Ok(())
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).min(Duration::from_secs(3600));
            self.tokens = (self.tokens + elapsed.as_secs_f64() * f64::from(self.per_second)).min(f64::from(self.burst));
        }
        self.last = Some(now);
    }

    fn emit(&mut self, out: &mut dyn Write, now: Instant) -> std::io::Result<()> {
        self.refill(now);
        if self.tokens < 1.0 {
            self.dropped += 1;
            self.pending.clear();
            return Ok(());
        }
        self.tokens -= 1.0;
        let mut line = Vec::with_capacity(self.prefix.len() + self.pending.len() + 48);
        if self.dropped > 0 {
            line.extend_from_slice(
                format!("{}[{} lines dropped by the rate limit]\n", self.prefix, self.dropped).as_bytes(),
            );
            self.dropped = 0;
        }
        line.extend_from_slice(self.prefix.as_bytes());
        for &b in &self.pending {
            match b {
                b'\t' => line.push(b'\t'),
                0..=0x1f | 0x7f => line.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
                _ => line.push(b),
            }
        }
        line.push(b'\n');
        self.pending.clear();
        out.write_all(&line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: &[u8]) -> String {
        String::from_utf8_lossy(v).into_owned()
    }

    #[test]
    fn splits_prefixes_and_escapes() {
        let mut f = LineForwarder::new("w: ", 64, 100, 100);
        let mut out = Vec::new();
        let t = Instant::now();
        f.feed(b"hello\nwor", &mut out, t).unwrap();
        assert_eq!(text(&out), "w: hello\n");
        f.feed(b"ld\x1b[2J\r\tend\npartial", &mut out, t).unwrap();
        assert_eq!(text(&out), "w: hello\nw: world\\x1b[2J\\x0d\tend\n");
        f.finish(&mut out, t).unwrap();
        assert!(text(&out).ends_with("w: partial\n"));
    }

    #[test]
    fn long_lines_are_cut_once() {
        let mut f = LineForwarder::new("> ", 16, 100, 100);
        let mut out = Vec::new();
        let t = Instant::now();
        f.feed(&[b'a'; 40], &mut out, t).unwrap();
        f.feed(b"aaa\nnext\n", &mut out, t).unwrap();
        assert_eq!(text(&out), format!("> {} [...]\n> next\n", "a".repeat(16)));
    }

    #[test]
    fn rate_limit_drops_and_reports() {
        let mut f = LineForwarder::new("", 64, 10, 3);
        let mut out = Vec::new();
        let t = Instant::now();
        f.feed(b"1\n2\n3\n4\n5\n", &mut out, t).unwrap();
        assert_eq!(text(&out), "1\n2\n3\n");
        assert_eq!(f.dropped(), 2);
        // 100 ms later one token is back.
        f.feed(b"6\n", &mut out, t + Duration::from_millis(100)).unwrap();
        assert_eq!(text(&out), "1\n2\n3\n[2 lines dropped by the rate limit]\n6\n");
    }

    #[test]
    fn pump_reads_nonblocking_pipe_until_eof() {
        let (r, w) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK).unwrap();
        let mut f = LineForwarder::for_workload("workload: ");
        let mut out = Vec::new();
        let t = Instant::now();
        assert_eq!(f.pump(r.as_fd(), &mut out, t).unwrap(), Pumped::Drained);
        rustix::io::write(&w, b"ready\nhalf").unwrap();
        assert_eq!(f.pump(r.as_fd(), &mut out, t).unwrap(), Pumped::Drained);
        drop(w);
        assert_eq!(f.pump(r.as_fd(), &mut out, t).unwrap(), Pumped::Eof);
        assert_eq!(text(&out), "workload: ready\nworkload: half\n");
    }

    use std::os::fd::AsFd;
}
