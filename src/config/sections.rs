//! The sections owned by the PID 1 core: boot, workload, network.
//! Feature sections live beside their feature (`kbs`, `tee`, ...).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::Deserialize;

use super::{Section, Validator};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Off => log::LevelFilter::Off,
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnExit {
    #[default]
    Poweroff,
    Reboot,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct BootConfig {
    /// Console and kmsg log level (`ztinit.log=` may override it).
    pub log_level: LogLevel,
    /// What the VM does once the workload has ended.
    pub on_exit: OnExit,
    /// Grace period between SIGTERM and SIGKILL for what is left at shutdown.
    pub shutdown_timeout_ms: u64,
    /// Hostname set early in boot.
    pub hostname: Option<String>,
    /// Test images only: report the outcome through QEMU's isa-debug-exit
    /// device (port 0xf4) instead of powering off.
    pub isa_debug_exit: bool,
}

impl Default for BootConfig {
    fn default() -> Self {
        Self {
            log_level: LogLevel::Info,
            on_exit: OnExit::Poweroff,
            shutdown_timeout_ms: 5_000,
            hostname: None,
            isa_debug_exit: false,
        }
    }
}

impl Section for BootConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        v.range("shutdown_timeout_ms", self.shutdown_timeout_ms, 0, 600_000);
        if let Some(h) = &self.hostname {
            let ok = !h.is_empty()
                && h.len() <= 64
                && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !ok {
                v.error("hostname", format!("{h:?} is not a valid hostname (1-64 of a-z, 0-9, '-', '.')"));
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LaunchMode {
    /// ztinit stays PID 1, supervises the workload and powers off after it.
    #[default]
    Supervise,
    /// ztinit execs the workload as PID 1 after the same setup.
    Handoff,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WorkloadConfig {
    /// Absolute path of the program.
    pub path: String,
    /// Arguments after argv[0].
    pub args: Vec<String>,
    /// The complete environment; nothing of PID 1's (host-controlled)
    /// environment is passed on.
    pub env: BTreeMap<String, String>,
    /// Numeric user and group the workload runs as.
    pub user: u32,
    pub group: u32,
    pub supplementary_groups: Vec<u32>,
    /// Working directory.
    pub workdir: String,
    pub mode: LaunchMode,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        Self {
            path: String::new(),
            args: Vec::new(),
            env: BTreeMap::new(),
            user: 65534,
            group: 65534,
            supplementary_groups: Vec::new(),
            workdir: "/".into(),
            mode: LaunchMode::Supervise,
        }
    }
}

impl Section for WorkloadConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        if !self.path.is_empty()
            && v.absolute_path("path", &self.path)
            && let Some(bytes) = v.file_head("path", &self.path, 4)
            && !bytes.starts_with(b"\x7fELF")
        {
            v.error("path", format!("{} is not an ELF executable", self.path));
        }
        v.absolute_path("workdir", &self.workdir);
        for (i, arg) in self.args.iter().enumerate() {
            if arg.contains('\0') {
                v.error(&format!("args[{i}]"), "contains a NUL byte");
            }
        }
        for (k, val) in &self.env {
            let key_ok = !k.is_empty() && !k.contains('=') && !k.contains('\0');
            if !key_ok || val.contains('\0') {
                v.error(
                    &format!("env.{k}"),
                    "environment names must be non-empty without '=' or NUL; values without NUL",
                );
            }
            if k == crate::secrets::CREDENTIALS_ENV {
                v.error(&format!("env.{k}"), "is set by ztinit when secrets are delivered");
            }
        }
        if self.supplementary_groups.len() > 64 {
            v.error("supplementary_groups", "at most 64 groups");
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Loopback only.
    #[default]
    None,
    /// A static IPv4 address, prefix and optional default route.
    Static,
    /// The kernel's `ip=` autoconfiguration already configured the interface.
    Kernel,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NetworkConfig {
    pub mode: NetworkMode,
    /// Interface name, e.g. `eth0`.
    pub interface: String,
    /// IPv4 address with prefix, e.g. `10.0.2.15/24`.
    pub address: String,
    /// Default gateway.
    pub gateway: Option<String>,
}

impl NetworkConfig {
    /// The parsed address and prefix length (validated at load time).
    pub fn address(&self) -> Option<(Ipv4Addr, u8)> {
        parse_cidr(&self.address)
    }

    pub fn gateway(&self) -> Option<Ipv4Addr> {
        self.gateway.as_deref().and_then(|g| g.parse().ok())
    }
}

pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, prefix) = s.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    (prefix <= 32).then_some((addr, prefix))
}

impl Section for NetworkConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        let valid_ifname = |n: &str| {
            !n.is_empty() && n.len() < 16 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        match self.mode {
            NetworkMode::None => {
                for (key, set) in [
                    ("interface", !self.interface.is_empty()),
                    ("address", !self.address.is_empty()),
                    ("gateway", self.gateway.is_some()),
                ] {
                    if set {
                        v.error(key, "has no effect with mode = \"none\"");
                    }
                }
            }
            NetworkMode::Static => {
                if !valid_ifname(&self.interface) {
                    v.error("interface", format!("{:?} is not a valid interface name", self.interface));
                }
                match parse_cidr(&self.address) {
                    Some((addr, _)) if addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast() => {
                        v.error("address", format!("{addr} cannot be an interface address"))
                    }
                    Some(_) => {}
                    None => v.error(
                        "address",
                        format!("{:?} is not an IPv4 address with prefix, e.g. \"10.0.2.15/24\"", self.address),
                    ),
                }
                if let Some(g) = &self.gateway {
                    match (g.parse::<Ipv4Addr>(), parse_cidr(&self.address)) {
                        (Err(_), _) => v.error("gateway", format!("{g:?} is not an IPv4 address")),
                        (Ok(gw), Some((addr, prefix))) if !same_subnet(gw, addr, prefix) => {
                            v.error("gateway", format!("{gw} is not on the subnet of {}", self.address))
                        }
                        _ => {}
                    }
                }
            }
            NetworkMode::Kernel => {
                if !self.interface.is_empty() && !valid_ifname(&self.interface) {
                    v.error("interface", format!("{:?} is not a valid interface name", self.interface));
                }
                for (key, set) in [("address", !self.address.is_empty()), ("gateway", self.gateway.is_some())] {
                    if set {
                        v.error(key, "is set by the kernel's ip= autoconfiguration with mode = \"kernel\"");
                    }
                }
            }
        }
    }
}

fn same_subnet(a: Ipv4Addr, b: Ipv4Addr, prefix: u8) -> bool {
    let mask = u32::from(crate::net::netmask(prefix));
    u32::from(a) & mask == u32::from(b) & mask
}
