//! The boot timeline: one line per stage, measured on CLOCK_BOOTTIME (time
//! since the kernel started), so a console log alone tells where a boot spent
//! its time. Tests and `cargo xtask bench` parse these lines: the format is
//! stable.
//!
//! `ztinit: stage NAME done at T ms (took D ms)`
//! `ztinit: stage NAME skipped at T ms (took 0 ms)`
//! `ztinit: summary: init started at S ms, ready at T ms; early=D config=D ...`

use std::time::Duration;

use crate::kmsg;

/// Stage names, in boot order (DESIGN.md).
pub const STAGES: &[&str] =
    &["early", "config", "network", "modules", "gpu", "attest", "secrets", "volume", "lockdown", "launch"];

/// Milliseconds since boot.
pub fn boottime_ms() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let d = Duration::new(ts.tv_sec.max(0) as u64, ts.tv_nsec.clamp(0, 999_999_999) as u32);
    d.as_millis() as u64
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageRecord {
    pub name: &'static str,
    pub done_at_ms: u64,
    pub took_ms: u64,
    pub skipped: bool,
}

pub struct Timeline {
    clock: fn() -> u64,
    started_ms: u64,
    last_ms: u64,
    records: Vec<StageRecord>,
}

impl Timeline {
    /// Starts the timeline now (the first thing PID 1 does).
    pub fn start() -> Self {
        Self::with_clock(boottime_ms)
    }

    pub fn with_clock(clock: fn() -> u64) -> Self {
        let now = clock();
        Self { clock, started_ms: now, last_ms: now, records: Vec::new() }
    }

    /// Records the end of a stage that began when the previous one ended.
    pub fn done(&mut self, name: &'static str) {
        self.record(name, false);
    }

    /// Records a stage as done when it `ran`, as skipped otherwise.
    pub fn stage(&mut self, name: &'static str, ran: bool) {
        self.record(name, !ran);
    }

    /// Records a stage that had nothing to do.
    pub fn skipped(&mut self, name: &'static str) {
        self.record(name, true);
    }

    fn record(&mut self, name: &'static str, skipped: bool) {
        let now = (self.clock)();
        let took = if skipped { 0 } else { now.saturating_sub(self.last_ms) };
        self.last_ms = now;
        let rec = StageRecord { name, done_at_ms: now, took_ms: took, skipped };
        kmsg::notice(&rec.line());
        self.records.push(rec);
    }

    pub fn records(&self) -> &[StageRecord] {
        &self.records
    }

    /// The summary line printed just before the workload is launched.
    pub fn summary(&self) -> String {
        let stages: Vec<String> = self.records.iter().map(|r| format!("{}={}", r.name, r.took_ms)).collect();
        format!(
            "summary: init started at {} ms, ready at {} ms ({} ms in ztinit); {}",
            self.started_ms,
            self.last_ms,
            self.last_ms.saturating_sub(self.started_ms),
            stages.join(" ")
        )
    }
}

impl StageRecord {
    /// The line without the `ztinit: ` prefix.
    pub fn line(&self) -> String {
        let verb = if self.skipped { "skipped" } else { "done" };
        format!("stage {} {verb} at {} ms (took {} ms)", self.name, self.done_at_ms, self.took_ms)
    }
}

/// Parses a console line back into a record (used by tests and the bench).
pub fn parse_line(line: &str) -> Option<(String, bool, u64, u64)> {
    let rest = &line[line.find("ztinit: stage ")? + "ztinit: stage ".len()..];
    let mut it = rest.split_whitespace();
    let name = it.next()?.to_string();
    let skipped = match it.next()? {
        "done" => false,
        "skipped" => true,
        _ => return None,
    };
    (it.next()? == "at").then_some(())?;
    let at = it.next()?.parse().ok()?;
    (it.next()? == "ms").then_some(())?;
    (it.next()? == "(took").then_some(())?;
    let took = it.next()?.parse().ok()?;
    Some((name, skipped, at, took))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    static NOW: AtomicU64 = AtomicU64::new(0);
    fn fake_clock() -> u64 {
        NOW.load(Ordering::SeqCst)
    }

    #[test]
    fn stages_measure_from_the_previous_stage() {
        NOW.store(800, Ordering::SeqCst);
        let mut t = Timeline::with_clock(fake_clock);
        NOW.store(812, Ordering::SeqCst);
        t.done("early");
        NOW.store(815, Ordering::SeqCst);
        t.skipped("gpu");
        NOW.store(900, Ordering::SeqCst);
        t.done("attest");
        let r = t.records();
        assert_eq!(r[0].line(), "stage early done at 812 ms (took 12 ms)");
        assert_eq!(r[1].line(), "stage gpu skipped at 815 ms (took 0 ms)");
        assert_eq!(r[2].line(), "stage attest done at 900 ms (took 85 ms)");
        assert_eq!(
            t.summary(),
            "summary: init started at 800 ms, ready at 900 ms (100 ms in ztinit); early=12 gpu=0 attest=85"
        );
    }

    #[test]
    fn lines_round_trip_through_the_parser() {
        let rec = StageRecord { name: "config", done_at_ms: 1234, took_ms: 5, skipped: false };
        let console = format!("[    1.234567] ztinit: {}", rec.line());
        assert_eq!(parse_line(&console), Some(("config".into(), false, 1234, 5)));
        assert_eq!(parse_line("ztinit: stage gpu skipped at 9 ms (took 0 ms)"), Some(("gpu".into(), true, 9, 0)));
        assert_eq!(parse_line("ztinit: stage x maybe at 1 ms (took 0 ms)"), None);
        assert_eq!(parse_line("something else"), None);
    }

    #[test]
    fn boottime_advances() {
        let a = boottime_ms();
        assert!(a > 0);
        assert!(boottime_ms() >= a);
    }
}
