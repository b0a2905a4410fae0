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

/// The stages of a boot, in order (docs/threat-model.md walks through what
/// each trusts). The one list of their names: the timeline, the FATAL line
/// (`ztinit: FATAL: STAGE: ...`) and `cargo xtask bench` all use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    Early,
    Config,
    Network,
    Modules,
    Gpu,
    Attest,
    Secrets,
    Volume,
    /// A container image pulled, verified and unpacked (`[image]`).
    Image,
    Lockdown,
    Launch,
    /// From the workload's start to its end: the timeline records it when
    /// the workload exits, after the summary line.
    Supervise,
}

impl Stage {
    pub const ALL: [Stage; 12] = [
        Stage::Early,
        Stage::Config,
        Stage::Network,
        Stage::Modules,
        Stage::Gpu,
        Stage::Attest,
        Stage::Secrets,
        Stage::Volume,
        Stage::Image,
        Stage::Lockdown,
        Stage::Launch,
        Stage::Supervise,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Early => "early",
            Stage::Config => "config",
            Stage::Network => "network",
            Stage::Modules => "modules",
            Stage::Gpu => "gpu",
            Stage::Attest => "attest",
            Stage::Secrets => "secrets",
            Stage::Volume => "volume",
            Stage::Image => "image",
            Stage::Lockdown => "lockdown",
            Stage::Launch => "launch",
            Stage::Supervise => "supervise",
        }
    }

    pub fn from_name(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// PID 1's peak resident memory, KiB: logged in the summary and when the
/// workload exits, so `cargo xtask bench` can report what ztinit costs in
/// memory as well as in time. `ru_maxrss` of `getrusage(RUSAGE_SELF)` is
/// the address space's high-water RSS, the figure `/proc/self/status`
/// shows as `VmHWM` (PID 1 was exec'd by a kernel thread, so no earlier
/// image's RSS is folded in); one system call, where generating and
/// parsing the status file cost several ms under emulation.
pub fn peak_rss_kib() -> Option<u64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a valid, writable rusage the kernel fills in;
    // nothing else is passed.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: zeroed is a valid rusage (plain integers), filled in on success.
    let usage = unsafe { usage.assume_init() };
    u64::try_from(usage.ru_maxrss).ok().filter(|&k| k > 0)
}

/// ` VmHWM N KiB` (empty when /proc cannot tell).
pub fn peak_rss_note() -> String {
    peak_rss_kib().map(|k| format!(", VmHWM {k} KiB")).unwrap_or_default()
}

/// Milliseconds since boot.
pub fn boottime_ms() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let d =
        Duration::new(u64::try_from(ts.tv_sec).unwrap_or(0), u32::try_from(ts.tv_nsec).unwrap_or(0).min(999_999_999));
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Times one part of a stage (a round trip, a key generation, a profile
/// compile) for `cargo xtask bench`'s breakdown. When dropped it logs, at
/// debug level only, `part NAME took N.NNN ms`; the bench attributes the
/// line to the stage whose `stage ... done` line follows it. Costs one
/// clock read when debug logging is off.
#[must_use = "a part is timed until it is dropped"]
pub struct Part {
    name: &'static str,
    detail: Option<String>,
    started: Option<std::time::Instant>,
}

/// Starts timing `name` (a fixed word: `keygen`, `evidence`, `request`).
pub fn part(name: &'static str) -> Part {
    let started = log::log_enabled!(log::Level::Debug).then(std::time::Instant::now);
    Part { name, detail: None, started }
}

/// The same, with a detail (`request POST /kbs/v0/auth`) built only when
/// debug logging is on.
pub fn part_with(name: &'static str, detail: impl FnOnce() -> String) -> Part {
    let mut p = part(name);
    if p.started.is_some() {
        p.detail = Some(detail());
    }
    p
}

impl Drop for Part {
    fn drop(&mut self) {
        if let Some(started) = self.started {
            let us = started.elapsed().as_micros();
            let (ms, frac) = (us / 1000, us % 1000);
            match &self.detail {
                Some(d) => log::debug!("part {} {d} took {ms}.{frac:03} ms", self.name),
                None => log::debug!("part {} took {ms}.{frac:03} ms", self.name),
            }
        }
    }
}

/// Logs a part timed elsewhere (in a thread that could not log yet), as
/// [`Part`] does.
pub fn log_part(name: &'static str, took: Duration) {
    let us = took.as_micros();
    log::debug!("part {name} took {}.{:03} ms", us / 1000, us % 1000);
}

/// A `part ...` line: (name with its detail, milliseconds).
pub fn parse_part(line: &str) -> Option<(&str, f64)> {
    let rest = &line[line.find("part ")? + 5..];
    let (name, took) = rest.rsplit_once(" took ")?;
    let ms = took.strip_suffix(" ms")?.parse().ok()?;
    Some((name, ms))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageRecord {
    pub stage: Stage,
    pub done_at_ms: u64,
    pub took_ms: u64,
    pub skipped: bool,
}

pub struct Timeline {
    clock: fn() -> u64,
    rss: fn() -> String,
    started_ms: u64,
    last_ms: u64,
    records: Vec<StageRecord>,
}

impl Timeline {
    /// Starts the timeline now (the first thing PID 1 does).
    pub fn start() -> Self {
        Self { rss: peak_rss_note, ..Self::with_clock(boottime_ms) }
    }

    pub fn with_clock(clock: fn() -> u64) -> Self {
        let now = clock();
        Self { clock, rss: String::new, started_ms: now, last_ms: now, records: Vec::new() }
    }

    /// Records the end of a stage that began when the previous one ended.
    pub fn done(&mut self, stage: Stage) {
        self.record(stage, false);
    }

    /// Records a stage as done when it `ran`, as skipped otherwise.
    pub fn stage(&mut self, stage: Stage, ran: bool) {
        self.record(stage, !ran);
    }

    /// Records a stage that had nothing to do.
    pub fn skipped(&mut self, stage: Stage) {
        self.record(stage, true);
    }

    fn record(&mut self, stage: Stage, skipped: bool) {
        let now = (self.clock)();
        let took = if skipped { 0 } else { now.saturating_sub(self.last_ms) };
        self.last_ms = now;
        let rec = StageRecord { stage, done_at_ms: now, took_ms: took, skipped };
        kmsg::notice(&rec.line());
        self.records.push(rec);
    }

    pub fn records(&self) -> &[StageRecord] {
        &self.records
    }

    /// The summary line printed just before the workload is launched.
    pub fn summary(&self) -> String {
        let stages: Vec<String> = self.records.iter().map(|r| format!("{}={}", r.stage, r.took_ms)).collect();
        format!(
            "summary: init started at {} ms, ready at {} ms ({} ms in ztinit{}); {}",
            self.started_ms,
            self.last_ms,
            self.last_ms.saturating_sub(self.started_ms),
            (self.rss)(),
            stages.join(" ")
        )
    }
}

impl StageRecord {
    /// The line without the `ztinit: ` prefix.
    pub fn line(&self) -> String {
        let verb = if self.skipped { "skipped" } else { "done" };
        format!("stage {} {verb} at {} ms (took {} ms)", self.stage, self.done_at_ms, self.took_ms)
    }
}

/// Parses a console line back into a record (used by tests and the bench):
/// (stage, skipped, done at, took).
pub fn parse_line(line: &str) -> Option<(Stage, bool, u64, u64)> {
    let rest = &line[line.find("ztinit: stage ")? + "ztinit: stage ".len()..];
    let mut it = rest.split_whitespace();
    let name = Stage::from_name(it.next()?)?;
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

    #[test]
    fn part_lines_parse_back() {
        assert_eq!(parse_part("ztinit: part keygen took 12.345 ms"), Some(("keygen", 12.345)));
        let line = "[    1.2] ztinit: part request POST /kbs/v0/auth took 3.000 ms";
        assert_eq!(parse_part(line), Some(("request POST /kbs/v0/auth", 3.0)));
        assert_eq!(parse_part("ztinit: stage early done at 5 ms (took 1 ms)"), None);
        assert_eq!(parse_part("ztinit: part x took soon"), None);
    }

    static NOW: AtomicU64 = AtomicU64::new(0);
    fn fake_clock() -> u64 {
        NOW.load(Ordering::SeqCst)
    }

    #[test]
    fn stages_measure_from_the_previous_stage() {
        NOW.store(800, Ordering::SeqCst);
        let mut t = Timeline::with_clock(fake_clock);
        NOW.store(812, Ordering::SeqCst);
        t.done(Stage::Early);
        NOW.store(815, Ordering::SeqCst);
        t.skipped(Stage::Gpu);
        NOW.store(900, Ordering::SeqCst);
        t.done(Stage::Attest);
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
        let rec = StageRecord { stage: Stage::Config, done_at_ms: 1234, took_ms: 5, skipped: false };
        let console = format!("[    1.234567] ztinit: {}", rec.line());
        assert_eq!(parse_line(&console), Some((Stage::Config, false, 1234, 5)));
        assert_eq!(parse_line("ztinit: stage gpu skipped at 9 ms (took 0 ms)"), Some((Stage::Gpu, true, 9, 0)));
        assert_eq!(parse_line("ztinit: stage nonesuch done at 9 ms (took 0 ms)"), None);
        assert_eq!(parse_line("ztinit: stage x maybe at 1 ms (took 0 ms)"), None);
        assert_eq!(parse_line("something else"), None);
    }

    /// `FIELD:    1234 kB` out of /proc/self/status.
    fn status_kib(field: &str) -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        let line = status.lines().find_map(|l| l.strip_prefix(field)).expect("the field");
        line.trim().strip_suffix(" kB").expect("in kB").trim().parse().expect("a number")
    }

    #[test]
    fn peak_rss_is_the_status_files_vm_hwm() {
        // A process exec'd by another (this test, unlike PID 1) starts
        // with the RSS of the image it replaced as its getrusage peak: grow
        // well past that, then free it all again, so that the high-water
        // mark is this address space's and differs from the current RSS.
        let start = peak_rss_kib().expect("getrusage").max(status_kib("VmHWM:"));
        let bytes = usize::try_from(start + 16 * 1024).unwrap() * 1024;
        let mut grown = vec![0u8; bytes];
        for page in grown.chunks_mut(4096) {
            page[0] = 1;
        }
        std::hint::black_box(&grown);
        drop(grown);
        let hwm_before = status_kib("VmHWM:");
        let peak = peak_rss_kib().expect("getrusage");
        let hwm_after = status_kib("VmHWM:");
        let rss = status_kib("VmRSS:");
        assert!(hwm_before > start, "the high-water mark moved: {start} -> {hwm_before} KiB");
        assert!(hwm_before <= peak && peak <= hwm_after, "VmHWM {hwm_before}..{hwm_after} KiB, getrusage {peak} KiB");
        assert!(rss + 8 * 1024 < peak, "the peak, not the current RSS ({rss} KiB)");
        assert!(peak_rss_note().starts_with(", VmHWM "));
    }

    #[test]
    fn every_stage_name_maps_back() {
        for s in Stage::ALL {
            assert_eq!(Stage::from_name(s.name()), Some(s));
        }
        assert!(Stage::ALL.windows(2).all(|w| w[0] < w[1]), "ALL is in boot order");
    }

    #[test]
    fn boottime_advances() {
        let a = boottime_ms();
        assert!(a > 0);
        assert!(boottime_ms() >= a);
    }
}
