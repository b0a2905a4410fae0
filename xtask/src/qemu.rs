//! `cargo xtask qemu`: boot a kernel + initramfs under QEMU the way the
//! tests do, and the runner the harness, demo and bench share.
//!
//! TCG unless `ZTINIT_QEMU_ACCEL=kvm`; serial console on stdio;
//! `-no-reboot` + `panic=-1` so a kernel panic ends QEMU instead of hanging
//! (with rc 0, which is why rc 0 alone never counts as success);
//! isa-debug-exit at 0xf4; user networking with `restrict=on` and guest
//! forwards (10.0.2.100:8080 by default, others such as a registry's
//! 10.0.2.101:5000) -> host loopback ports through `xtask relay`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cli;
use crate::kernel;
use crate::procs;
use crate::util;

/// Where the guest reaches the forwarded host service.
pub const GUEST_FORWARD: std::net::SocketAddrV4 =
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(10, 0, 2, 100), 8080);
/// Base kernel command line of every boot.
pub const BASE_APPEND: &[&str] = &["console=ttyS0", "panic=-1", "quiet", "loglevel=4"];
const QEMU: &str = "qemu-system-x86_64";

/// The guest CPU under TCG. `max` is every feature TCG emulates (SSSE3,
/// AVX2, PCLMULQDQ among them); AES-NI and SHA-NI are named and `enforce`d
/// because the EPYC (Milan, Genoa) and Xeon (Sapphire Rapids and later)
/// hosts of SNP and TDX guests have both, and the guest kernel picks its
/// dm-crypt and dm-verity drivers by them. Without SHA-NI (QEMU 7.2's TCG,
/// Debian 12's own QEMU) the kernel hashed verity blocks with sha256-avx2
/// and the 256 MiB model volume read at 0.28x the plain disk; with
/// sha256-ni (QEMU 10.0) at 0.42x (`cargo xtask bench --runs 5`).
/// `enforce` makes a QEMU that cannot emulate them refuse to start rather
/// than boot a different CPU.
pub const TCG_CPU: &str = "max,+aes,+sha-ni,enforce";

/// Every disk's device: one request queue. QEMU 10.0 gives virtio-blk a
/// queue per vCPU by default, and with two the guest kernel reached its
/// init about 100 ms later than without the disk (a trivial init, 3 + 3
/// boots: 1471-1513 against 1382-1431 ms); with one queue as early as
/// without it (1338-1389 ms). QEMU 7.2's two queues had cost about 30 ms.
const VIRTIO_BLK: &str = "virtio-blk-pci,num-queues=1";

/// Why this host's QEMU cannot boot [`TCG_CPU`] (`None`: it can). Starts
/// QEMU paused with the model and quits it from its monitor.
pub fn tcg_cpu_missing() -> Result<Option<String>> {
    let mut child = Command::new(QEMU)
        .args(["-accel", "tcg", "-cpu", TCG_CPU, "-machine", "q35", "-nodefaults", "-no-user-config"])
        .args(["-display", "none", "-S", "-monitor", "stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {QEMU} (apt-get install qemu-system-x86)"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A QEMU that refused the model has exited already: no error here.
        let _ = stdin.write_all(b"quit\n");
    }
    let until = Instant::now() + Duration::from_secs(30);
    while child.try_wait()?.is_none() {
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{QEMU} -cpu {TCG_CPU} did not quit within 30 s when asked");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        return Ok(None);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let why = stderr.lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join("; ");
    Ok(Some(format!("{QEMU} cannot emulate the harness CPU `-cpu {TCG_CPU}` under TCG: {why}")))
}

#[derive(Debug, Clone)]
pub struct Disk {
    pub path: PathBuf,
    pub readonly: bool,
    /// virtio-blk serial (`/sys/block/vdX/serial` in the guest).
    pub serial: Option<String>,
}

/// virtio-blk serials are at most 20 bytes (`VIRTIO_BLK_ID_BYTES`); QEMU's
/// option syntax cannot carry a comma.
pub fn check_serial(serial: &str) -> Result<()> {
    if serial.is_empty() || serial.len() > 20 || !serial.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
        bail!("disk serial {serial:?}: 1-20 printable ASCII characters, no comma");
    }
    Ok(())
}

/// One guest address (`IP:PORT` the guest connects to) relayed to a host
/// loopback port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub guest: std::net::SocketAddrV4,
    pub port: u16,
}

impl Forward {
    /// The default forward: the guest's 10.0.2.100:8080 to `port`.
    pub fn default_to(port: u16) -> Self {
        Forward { guest: GUEST_FORWARD, port }
    }
}

/// The guest address of a forward: `IP:PORT` inside slirp's 10.0.2.0/24,
/// not one of the addresses slirp itself answers on (network, gateway
/// 10.0.2.2, DNS 10.0.2.3, the guest's own 10.0.2.15, broadcast), port not 0.
pub fn parse_guest_addr(v: &str) -> Result<std::net::SocketAddrV4> {
    let addr: std::net::SocketAddrV4 =
        v.parse().with_context(|| format!("guest address {v:?}: expected IPv4:PORT such as 10.0.2.101:5000"))?;
    let o = addr.ip().octets();
    if o[..3] != [10, 0, 2] || matches!(o[3], 0 | 2 | 3 | 15 | 255) || addr.port() == 0 {
        bail!(
            "guest address {v:?}: use a free address of the guest network 10.0.2.0/24 (not .0, .2, .3, .15 or .255) and a port"
        );
    }
    Ok(addr)
}

/// No guest address forwarded twice.
pub fn check_forwards(forwards: &[Forward]) -> Result<()> {
    for (i, f) in forwards.iter().enumerate() {
        if forwards[..i].iter().any(|g| g.guest == f.guest) {
            bail!("guest address {} is forwarded twice", f.guest);
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub kernel: PathBuf,
    /// Not used when `root_disk` is set.
    pub initrd: PathBuf,
    /// Boot from this read-only root disk instead of the initramfs: it is
    /// the first virtio-blk device (`/dev/vda`), before `disks`, and the
    /// kernel parameters that set it up are in `append`.
    pub root_disk: Option<PathBuf>,
    /// Added after [`BASE_APPEND`].
    pub append: Vec<String>,
    pub disks: Vec<Disk>,
    /// Guest addresses relayed to host loopback ports.
    pub forwards: Vec<Forward>,
    pub memory_mib: u32,
    pub cpus: u32,
    /// QEMU logs every block it translates here (`-d in_asm,nochain`):
    /// [`crate::translation`]. Slows the boot 2-3 times.
    pub translation_log: Option<PathBuf>,
}

impl Spec {
    pub fn new(kernel: PathBuf, initrd: PathBuf) -> Self {
        Spec {
            kernel,
            initrd,
            root_disk: None,
            append: Vec::new(),
            disks: Vec::new(),
            forwards: Vec::new(),
            memory_mib: 512,
            cpus: 2,
            translation_log: None,
        }
    }

    pub fn command(&self) -> Result<Command> {
        let mut c = Command::new(QEMU);
        let accel = std::env::var("ZTINIT_QEMU_ACCEL").unwrap_or_else(|_| "tcg".into());
        match accel.as_str() {
            "tcg" => c.args(["-accel", "tcg", "-cpu", TCG_CPU]),
            "kvm" => c.args(["-accel", "kvm", "-cpu", "host"]),
            other => bail!("ZTINIT_QEMU_ACCEL={other:?}: use tcg (default) or kvm"),
        };
        let mut append: Vec<String> = BASE_APPEND.iter().map(|s| s.to_string()).collect();
        append.extend(self.append.iter().cloned());
        c.args(["-machine", "q35", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"])
            .args(["-m", &format!("{}M", self.memory_mib), "-smp", &self.cpus.to_string()])
            .args(["-serial", "stdio"])
            .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
            .arg("-kernel")
            .arg(&self.kernel);
        if self.root_disk.is_none() {
            c.arg("-initrd").arg(&self.initrd);
        }
        c.arg("-append").arg(append.join(" "));
        let mut netdev = "user,id=net0,restrict=on".to_string();
        check_forwards(&self.forwards)?;
        for f in &self.forwards {
            let exe = crate::util::self_exe().display().to_string();
            if exe.contains(['\'', ',']) {
                bail!("the xtask binary path {exe:?} cannot be used in a QEMU guestfwd command");
            }
            // QEMU runs the command through /bin/sh once per guest connection.
            netdev.push_str(&format!(",guestfwd=tcp:{}-cmd:'{exe}' relay 127.0.0.1:{}", f.guest, f.port));
        }
        if !self.forwards.is_empty() {
            // The relays end when this xtask does (relay::watch_owner).
            c.env(crate::relay::OWNER_VAR, std::process::id().to_string());
        }
        c.args(["-netdev", &netdev, "-device", "virtio-net-pci,netdev=net0"]);
        c.args(["-device", "virtio-rng-pci"]);
        if let Some(log) = &self.translation_log {
            c.args(["-d", "in_asm,nochain", "-D"]).arg(log);
        }
        if let Some(root) = &self.root_disk {
            let p = root.display().to_string();
            if p.contains(',') {
                bail!("root disk path {p:?} contains a comma, which QEMU's -drive cannot take");
            }
            c.arg("-drive").arg(format!("file={p},if=none,format=raw,id=root,readonly=on"));
            c.args(["-device", &format!("{VIRTIO_BLK},drive=root")]);
        }
        for (i, d) in self.disks.iter().enumerate() {
            let p = d.path.display().to_string();
            if p.contains(',') {
                bail!("disk path {p:?} contains a comma, which QEMU's -drive cannot take");
            }
            // QEMU 7.2+ takes `serial=` only on the device, not on -drive.
            c.arg("-drive")
                .arg(format!("file={p},if=none,format=raw,id=disk{i}{}", if d.readonly { ",readonly=on" } else { "" }));
            let mut device = format!("{VIRTIO_BLK},drive=disk{i}");
            if let Some(serial) = &d.serial {
                check_serial(serial)?;
                device.push_str(&format!(",serial={serial}"));
            }
            c.arg("-device").arg(device);
        }
        Ok(c)
    }
}

/// How a boot ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest wrote `value` to isa-debug-exit (QEMU rc = value*2+1).
    DebugExit(u8),
    /// rc 0 after the kernel powered off (ACPI S5).
    PoweredOff,
    /// rc 0 after a kernel panic (panic=-1 + -no-reboot).
    Panicked,
    /// rc 0 after a reboot request.
    Rebooted,
    /// QEMU ended some other way (bad arguments, crash...).
    QemuFailed(String),
    TimedOut(Duration),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::DebugExit(v) => write!(f, "isa-debug-exit value {v}{}", describe_exit_value(*v)),
            Outcome::PoweredOff => f.write_str("VM powered off"),
            Outcome::Panicked => f.write_str("kernel panic"),
            Outcome::Rebooted => f.write_str("VM rebooted (QEMU -no-reboot exit)"),
            Outcome::QemuFailed(why) => write!(f, "QEMU failed: {why}"),
            Outcome::TimedOut(d) => write!(f, "timed out after {}", kernel::fmt_duration(*d)),
        }
    }
}

/// The meaning of a value under ztinit's convention (COMMON.md).
pub fn describe_exit_value(v: u8) -> String {
    match v {
        0..=63 => format!(" (workload exit status {v})"),
        64..=125 => format!(" (workload killed by signal {})", v - 64),
        126 => " (ztinit FATAL)".into(),
        127 => " (ztinit panic)".into(),
        _ => String::new(),
    }
}

/// Decodes QEMU's exit status plus what the console said.
pub fn decode(status: ExitStatus, console: &str, stderr: &str) -> Outcome {
    use std::os::unix::process::ExitStatusExt;
    match status.code() {
        Some(0) if console.contains("Kernel panic") => Outcome::Panicked,
        Some(0) if console.contains("reboot: Power down") => Outcome::PoweredOff,
        Some(0) if console.contains("reboot: Restarting system") => Outcome::Rebooted,
        Some(0) => Outcome::QemuFailed("rc 0 without a power-off, reboot or panic message on the console".into()),
        // rc 1 is also QEMU's own failure code; its stderr tells them apart.
        Some(1) if stderr.lines().any(is_qemu_error) => Outcome::QemuFailed(first_error(stderr)),
        Some(rc) if rc % 2 == 1 && rc <= 255 => Outcome::DebugExit(u8::try_from(rc >> 1).unwrap_or(u8::MAX)),
        Some(rc) => Outcome::QemuFailed(format!("rc {rc}: {}", first_error(stderr))),
        None => Outcome::QemuFailed(format!("killed by signal {}", status.signal().unwrap_or(0))),
    }
}

/// QEMU's own error lines: most start with the program's name, some (a
/// missing firmware: "qemu: could not load PC BIOS") with `qemu:`.
fn is_qemu_error(line: &str) -> bool {
    (line.starts_with("qemu-system-x86_64:") || line.starts_with("qemu:")) && !line.contains("warning:")
}

fn first_error(stderr: &str) -> String {
    let line = stderr.lines().find(|l| is_qemu_error(l)).unwrap_or_else(|| stderr.lines().last().unwrap_or(""));
    if line.contains("support requested feature") {
        // `enforce` refused TCG_CPU: say what to do about it.
        return format!(
            "{line} (the harness CPU is `-cpu {TCG_CPU}`; `cargo xtask test` installs a QEMU that emulates it)"
        );
    }
    line.to_string()
}

/// The result of one captured boot.
pub struct Run {
    pub outcome: Outcome,
    pub console: String,
    pub wall: Duration,
    /// Each complete console line with the time since QEMU started at
    /// which its end arrived on the host.
    pub timed_lines: Vec<(Duration, String)>,
}

/// Boots `spec`, keeping the console in `log` (and echoing it when `echo`),
/// killing QEMU after `timeout`.
pub fn run_captured(spec: &Spec, timeout: Duration, log: &Path, echo: bool) -> Result<Run> {
    let mut cmd = spec.command()?;
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut log_file = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    writeln!(log_file, "# {}", util::show(&cmd))?;
    let started = Instant::now();
    // Its own process group (killed on a timeout or an interrupt), and
    // SIGKILL should xtask die.
    let mut child = procs::own(&mut cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {QEMU} (apt-get install qemu-system-x86)"))?;
    procs::register(child.id());
    let console = Arc::new(Mutex::new(Vec::<u8>::new()));
    // (console length after a read, when it arrived)
    let arrivals = Arc::new(Mutex::new(Vec::<(usize, Duration)>::new()));
    let log_file = Arc::new(Mutex::new(log_file));
    let out_reader = {
        let mut stdout = child.stdout.take().context("no QEMU stdout")?;
        let console = Arc::clone(&console);
        let arrivals = Arc::clone(&arrivals);
        let log_file = Arc::clone(&log_file);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut c) = console.lock() {
                    c.extend_from_slice(&buf[..n]);
                    if let Ok(mut a) = arrivals.lock() {
                        a.push((c.len(), started.elapsed()));
                    }
                }
                if let Ok(mut f) = log_file.lock() {
                    let _ = f.write_all(&buf[..n]);
                }
                if echo {
                    let mut so = std::io::stdout().lock();
                    let _ = so.write_all(&buf[..n]);
                    let _ = so.flush();
                }
            }
        })
    };
    let err_reader = {
        let mut stderr = child.stderr.take().context("no QEMU stderr")?;
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        })
    };
    let status = wait_with_deadline(&mut child, timeout);
    // QEMU is reaped; whatever is left in its group goes with it.
    // SAFETY: signals the group this function created; its id cannot be
    // reused while a member is alive, and nothing happens when none is.
    unsafe { libc::kill(-child.id().cast_signed(), libc::SIGKILL) };
    procs::release(child.id());
    let status = status?;
    let _ = out_reader.join();
    let stderr = err_reader.join().unwrap_or_default();
    let wall = started.elapsed();
    let raw = console.lock().map(|c| c.clone()).unwrap_or_default();
    let timed_lines = timed_lines(&raw, &arrivals.lock().map(|a| a.clone()).unwrap_or_default());
    let console = String::from_utf8_lossy(&raw).into_owned();
    let outcome = match status {
        Some(s) => decode(s, &console, &stderr),
        None => Outcome::TimedOut(timeout),
    };
    if let Ok(mut f) = log_file.lock() {
        if !stderr.trim().is_empty() {
            let _ = writeln!(f, "\n# QEMU stderr:\n{}", stderr.trim_end());
        }
        let _ = writeln!(f, "\n# outcome: {outcome} (wall {})", kernel::fmt_duration(wall));
    }
    Ok(Run { outcome, console, wall, timed_lines })
}

/// Splits the raw console into lines, each with the arrival time of the
/// read that brought its newline (or its last byte).
pub fn timed_lines(raw: &[u8], arrivals: &[(usize, Duration)]) -> Vec<(Duration, String)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chunk = 0;
    for (i, _) in raw.iter().enumerate().filter(|(_, b)| **b == b'\n') {
        while chunk + 1 < arrivals.len() && arrivals[chunk].0 <= i {
            chunk += 1;
        }
        let at = arrivals.get(chunk).map_or(Duration::ZERO, |a| a.1);
        out.push((at, String::from_utf8_lossy(&raw[start..i]).trim_end_matches('\r').to_string()));
        start = i + 1;
    }
    if start < raw.len() {
        out.push((
            arrivals.last().map_or(Duration::ZERO, |a| a.1),
            String::from_utf8_lossy(&raw[start..]).into_owned(),
        ));
    }
    out
}

/// Waits for the child; after the deadline kills its process group and
/// returns `None`.
fn wait_with_deadline(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let pgid = child.id().cast_signed();
            // SAFETY: signals the process group we created for this QEMU.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn cmd(args: &[String]) -> Result<()> {
    let mut image = None;
    let mut kernel_path = None;
    let mut spec_append = Vec::new();
    let mut disks = Vec::new();
    let mut forward = None;
    let mut extra_forwards = Vec::new();
    let mut root_disk = None;
    const USAGE: &str = "usage: cargo xtask qemu (--image PATH | --root-disk IMG) [--kernel PATH] [--append 'ARGS'] [--disk PATH[:ro][:serial=S]]... [--forward PORT] [--guest-forward IP:PORT=HOSTPORT]...
--root-disk: boot a disk of `xtask image --format disk` with the parameters of IMG.cmdline.
Boots under QEMU (TCG; ZTINIT_QEMU_ACCEL=kvm for KVM) with the console on stdio.
Default kernel: the cached test kernel. --forward relays guest 10.0.2.100:8080 to 127.0.0.1:PORT; --guest-forward another guest address
(e.g. a registry's 10.0.2.101:5000) to 127.0.0.1:HOSTPORT.";
    let mut p = cli::Args::new(args, USAGE);
    while let Some(arg) = p.next()? {
        match arg {
            cli::Long("image") => image = Some(PathBuf::from(p.value()?)),
            cli::Long("root-disk") => root_disk = Some(PathBuf::from(p.value()?)),
            cli::Long("kernel") => kernel_path = Some(PathBuf::from(p.value()?)),
            cli::Long("append") => spec_append.extend(p.string()?.split_whitespace().map(str::to_string)),
            cli::Long("disk") => disks.push(parse_disk(&p.string()?)?),
            cli::Long("forward") => forward = Some(p.parse::<u16>("--forward")?),
            cli::Long("guest-forward") => extra_forwards.push(parse_guest_forward(&p.string()?)?),
            cli::Short('h') | cli::Long("help") => return p.help(),
            other => {
                let e = other.unexpected();
                return Err(p.error(e));
            }
        }
    }
    let mut root_append = Vec::new();
    if let Some(root) = &root_disk {
        let cmdline = crate::disk_image::sidecar(root, "cmdline");
        let text = std::fs::read_to_string(&cmdline)
            .with_context(|| format!("cannot read {} (written with the disk)", cmdline.display()))?;
        root_append.push(text.trim().to_string());
    }
    let image = match (image, &root_disk) {
        (Some(i), None) => i,
        (None, Some(_)) => PathBuf::new(),
        _ => bail!("qemu: give --image or --root-disk"),
    };
    let kernel_path = match kernel_path {
        Some(k) => k,
        None => kernel::ensure(kernel::DEFAULT_PROFILE)?.bzimage(),
    };
    let mut spec = Spec::new(kernel_path, image);
    spec.root_disk = root_disk;
    root_append.extend(spec_append);
    spec.append = root_append;
    spec.disks = disks;
    spec.forwards = forward.map(Forward::default_to).into_iter().chain(extra_forwards).collect();
    let mut cmd = spec.command()?;
    eprintln!("qemu: {}", util::show(&cmd));
    // Interactive: the console is this terminal (stdin included).
    // In xtask's group (it needs the terminal), but SIGKILL should xtask die.
    let status = procs::tie_hard(&mut cmd).status().with_context(|| format!("cannot start {QEMU}"))?;
    // The console went to the terminal, so rc 0 cannot be told apart here.
    match (status.code(), decode(status, "", "")) {
        (Some(0), _) => eprintln!("qemu: exited with status 0: power-off, reboot or kernel panic (see the console)"),
        (_, outcome) => eprintln!("qemu: exited with {status} -> {outcome}"),
    }
    match status.code() {
        Some(0) => Ok(()),
        Some(rc) => std::process::exit(rc),
        None => bail!("QEMU was killed"),
    }
}

/// `IP:PORT=HOSTPORT`.
fn parse_guest_forward(v: &str) -> Result<Forward> {
    let (guest, port) =
        v.split_once('=').with_context(|| format!("--guest-forward {v:?}: expected IP:PORT=HOSTPORT"))?;
    let port = port.parse().with_context(|| format!("--guest-forward {v:?}: bad host port"))?;
    Ok(Forward { guest: parse_guest_addr(guest)?, port })
}

/// `PATH[:ro][:serial=S]` (the suffixes in any order).
fn parse_disk(v: &str) -> Result<Disk> {
    let mut path = v;
    let mut disk = Disk { path: PathBuf::new(), readonly: false, serial: None };
    loop {
        if let Some(p) = path.strip_suffix(":ro") {
            disk.readonly = true;
            path = p;
        } else if let Some((p, serial)) = path.rsplit_once(":serial=") {
            check_serial(serial)?;
            disk.serial = Some(serial.to_string());
            path = p;
        } else {
            break;
        }
    }
    if path.is_empty() {
        bail!("--disk {v:?}: no path");
    }
    disk.path = PathBuf::from(path);
    Ok(disk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn rc(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn decodes_debug_exit_values() {
        assert_eq!(decode(rc(7), "", ""), Outcome::DebugExit(3));
        assert_eq!(decode(rc(253), "", ""), Outcome::DebugExit(126));
        assert_eq!(decode(rc(1), "", "qemu-system-x86_64: warning: x\n"), Outcome::DebugExit(0));
    }

    #[test]
    fn rc_zero_is_never_a_debug_exit() {
        assert_eq!(decode(rc(0), "Kernel panic - not syncing: Attempted to kill init!", ""), Outcome::Panicked);
        assert_eq!(decode(rc(0), "reboot: Power down\n", ""), Outcome::PoweredOff);
        assert!(matches!(decode(rc(0), "", ""), Outcome::QemuFailed(_)));
    }

    #[test]
    fn qemu_errors_are_not_exit_value_zero() {
        let o = decode(rc(1), "", "qemu-system-x86_64: -drive x: Could not open\n");
        assert!(matches!(o, Outcome::QemuFailed(ref s) if s.contains("Could not open")), "{o:?}");
        assert!(matches!(decode(rc(2), "", ""), Outcome::QemuFailed(_)));
        let o = decode(rc(1), "", "qemu: could not load PC BIOS 'bios-256k.bin'\n");
        assert!(matches!(o, Outcome::QemuFailed(ref s) if s.contains("could not load PC BIOS")), "{o:?}");
    }

    #[test]
    fn a_refused_cpu_model_says_what_to_install() {
        let stderr = "qemu-system-x86_64: warning: TCG doesn't support requested feature: CPUID.07H:EBX.sha-ni [bit 29]\n\
                      qemu-system-x86_64: TCG doesn't support requested features\n";
        let Outcome::QemuFailed(why) = decode(rc(1), "", stderr) else { panic!("not a QEMU failure") };
        assert!(
            why.starts_with("qemu-system-x86_64: TCG doesn't support requested features (the harness CPU"),
            "{why}"
        );
        assert!(why.contains("cargo xtask test"), "{why}");
    }

    #[test]
    fn command_has_the_safety_switches() {
        let mut s = Spec::new("/k".into(), "/i".into());
        s.forwards = vec![Forward::default_to(4242)];
        let shown = util::show(&s.command().unwrap());
        for want in [
            "-cpu max,+aes,+sha-ni,enforce",
            "-no-reboot",
            "panic=-1",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "restrict=on",
            "guestfwd=tcp:10.0.2.100:8080-cmd:",
            "relay 127.0.0.1:4242",
        ] {
            assert!(shown.contains(want), "{want} missing from {shown}");
        }
        assert!(!shown.contains("in_asm"), "no translation log unless asked: {shown}");
        s.translation_log = Some("/t/in_asm.log".into());
        let shown = util::show(&s.command().unwrap());
        assert!(shown.contains("-d in_asm,nochain -D /t/in_asm.log"), "{shown}");
    }

    #[test]
    fn several_guest_addresses_are_forwarded_each_to_its_port() {
        let mut s = Spec::new("/k".into(), "/i".into());
        s.forwards = vec![
            Forward::default_to(4242),
            Forward { guest: parse_guest_addr("10.0.2.101:5000").unwrap(), port: 4343 },
        ];
        let shown = util::show(&s.command().unwrap());
        for want in [
            "guestfwd=tcp:10.0.2.100:8080-cmd:",
            "relay 127.0.0.1:4242,guestfwd=tcp:10.0.2.101:5000-cmd:",
            "relay 127.0.0.1:4343' -device",
        ] {
            assert!(shown.contains(want), "{want} missing from {shown}");
        }
        s.forwards.push(Forward { guest: parse_guest_addr("10.0.2.101:5000").unwrap(), port: 1 });
        assert!(s.command().unwrap_err().to_string().contains("forwarded twice"));
        let none = util::show(&Spec::new("/k".into(), "/i".into()).command().unwrap());
        assert!(!none.contains("guestfwd"), "{none}");
    }

    #[test]
    fn guest_addresses_stay_inside_the_guest_network() {
        assert_eq!(parse_guest_addr("10.0.2.101:5000").unwrap().to_string(), "10.0.2.101:5000");
        assert_eq!(Forward::default_to(1).guest.to_string(), "10.0.2.100:8080");
        let f = parse_guest_forward("10.0.2.101:5000=4343").unwrap();
        assert_eq!((f.guest.to_string(), f.port), ("10.0.2.101:5000".to_string(), 4343));
        assert!(parse_guest_forward("10.0.2.101:5000").is_err());
        for bad in ["10.0.3.1:80", "10.0.2.2:80", "10.0.2.3:53", "10.0.2.15:1", "10.0.2.101:0", "10.0.2.101", "x:1"] {
            assert!(parse_guest_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn disks_are_virtio_blk_devices_with_their_serial() {
        let mut s = Spec::new("/k".into(), "/i".into());
        s.disks.push(Disk { path: "/m.img".into(), readonly: true, serial: Some("ztmodel".into()) });
        s.disks.push(Disk { path: "/d.img".into(), readonly: false, serial: None });
        let shown = util::show(&s.command().unwrap());
        for want in [
            "-drive file=/m.img,if=none,format=raw,id=disk0,readonly=on \
             -device virtio-blk-pci,num-queues=1,drive=disk0,serial=ztmodel",
            "-drive file=/d.img,if=none,format=raw,id=disk1 -device virtio-blk-pci,num-queues=1,drive=disk1",
        ] {
            assert!(shown.contains(want), "{want} missing from {shown}");
        }
        s.disks[1].serial = Some("a,b".into());
        assert!(s.command().unwrap_err().to_string().contains("no comma"));
    }

    #[test]
    fn disk_arguments() {
        let d = parse_disk("/x/m.img:serial=ztmodel:ro").unwrap();
        assert_eq!((d.path, d.readonly, d.serial.as_deref()), (PathBuf::from("/x/m.img"), true, Some("ztmodel")));
        let d = parse_disk("m.img:ro:serial=s1").unwrap();
        assert_eq!((d.path, d.readonly, d.serial.as_deref()), (PathBuf::from("m.img"), true, Some("s1")));
        let d = parse_disk("m.img").unwrap();
        assert_eq!((d.readonly, d.serial), (false, None));
        assert!(parse_disk(":ro").is_err());
        assert!(parse_disk("m.img:serial=").is_err());
    }

    #[test]
    fn console_lines_get_the_arrival_time_of_their_newline() {
        let ms = Duration::from_millis;
        // "a\nb" arrives at 1 ms, "c\nd\n" at 5 ms, "tail" at 9 ms.
        let raw = b"a\nbc\nd\ntail";
        let arrivals = [(3, ms(1)), (8, ms(5)), (12, ms(9))];
        let lines = timed_lines(raw, &arrivals);
        let want: Vec<(Duration, String)> =
            vec![(ms(1), "a".into()), (ms(5), "bc".into()), (ms(5), "d".into()), (ms(9), "tail".into())];
        assert_eq!(lines, want);
        assert!(timed_lines(b"", &[]).is_empty());
    }
}
