//! Guest networking: loopback up, and the configured interface with a static
//! IPv4 address, prefix and default route, through the classic socket ioctls
//! (no `ip` binary, no netlink library). With `mode = "kernel"` the kernel's
//! `ip=` autoconfiguration has done the work and we only check the result.
//!
//! Requests are built as plain data ([`Request`]) and carried out by a
//! [`NetOps`], so tests check exactly what would be sent to the kernel.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::schema::{Section, Validator};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("interface {0:?}: name too long")]
    NameTooLong(String),
    #[error("interface {name} not found (have: {have})")]
    NoSuchInterface { name: String, have: String },
    #[error("interface {name}: {what}: {source}")]
    Ioctl {
        name: String,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("interface {0} is not up after the kernel's ip= autoconfiguration")]
    NotUp(String),
    #[error("socket for interface configuration: {0}")]
    Socket(#[source] std::io::Error),
}

/// One configuration request to the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Set IFF_UP (and keep the other flags).
    Up {
        name: String,
    },
    SetAddress {
        name: String,
        addr: Ipv4Addr,
    },
    SetNetmask {
        name: String,
        mask: Ipv4Addr,
    },
    DefaultRoute {
        gateway: Ipv4Addr,
    },
}

impl Request {
    /// Its name in `cargo xtask bench`'s breakdown.
    fn part_name(&self) -> &'static str {
        match self {
            Request::Up { .. } => "link-up",
            Request::SetAddress { .. } => "set-address",
            Request::SetNetmask { .. } => "set-netmask",
            Request::DefaultRoute { .. } => "default-route",
        }
    }
}

/// The netmask of a prefix length.
pub fn netmask(prefix: u8) -> Ipv4Addr {
    let bits = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix.min(32))) };
    Ipv4Addr::from(bits)
}

/// The requests for a configuration, in the order they must be issued.
pub fn plan(cfg: &NetworkConfig) -> Vec<Request> {
    let mut reqs = vec![loopback()];
    reqs.extend(interface_plan(cfg));
    reqs
}

/// Loopback up: the same in every configuration.
fn loopback() -> Request {
    Request::Up { name: "lo".into() }
}

/// The configured interface's part of [`plan`].
fn interface_plan(cfg: &NetworkConfig) -> Vec<Request> {
    let mut reqs = Vec::new();
    if cfg.mode == NetworkMode::Static
        && let Some((addr, prefix)) = cfg.address()
    {
        let name = cfg.interface.clone();
        reqs.push(Request::SetAddress { name: name.clone(), addr });
        reqs.push(Request::SetNetmask { name: name.clone(), mask: netmask(prefix) });
        reqs.push(Request::Up { name });
        if let Some(gateway) = cfg.gateway() {
            reqs.push(Request::DefaultRoute { gateway });
        }
    }
    reqs
}

/// Carries out requests.
pub trait NetOps {
    fn apply(&mut self, req: &Request) -> Result<(), NetError>;
}

/// The kernel, through ioctls on an AF_INET datagram socket.
pub struct IoctlNet {
    sock: std::os::fd::OwnedFd,
}

impl IoctlNet {
    pub fn new() -> Result<Self, NetError> {
        use rustix::net::{AddressFamily, SocketFlags, SocketType, socket_with};
        let sock = socket_with(AddressFamily::INET, SocketType::DGRAM, SocketFlags::CLOEXEC, None)
            .map_err(|e| NetError::Socket(e.into()))?;
        Ok(Self { sock })
    }

    fn ioctl<T>(&self, name: &str, what: &'static str, req: libc::c_ulong, arg: &mut T) -> Result<(), NetError> {
        use std::os::fd::AsRawFd;
        // SAFETY: `arg` is the structure this ioctl request expects (ifreq or
        // rtentry), fully initialised, and lives across the call.
        let rc = unsafe { libc::ioctl(self.sock.as_raw_fd(), req as _, arg as *mut T) };
        if rc < 0 {
            return Err(NetError::Ioctl { name: name.into(), what, source: std::io::Error::last_os_error() });
        }
        Ok(())
    }
}

/// An `ifreq` with the interface name set.
pub fn ifreq(name: &str) -> Result<libc::ifreq, NetError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ {
        return Err(NetError::NameTooLong(name.into()));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = libc::c_char::from_ne_bytes([*src]);
    }
    Ok(req)
}

// libc's constants are c_int; the structs hold narrower fields. AF_INET
// is 2 and IFF_UP | IFF_RUNNING is 0x41.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
const AF_INET: libc::sa_family_t = libc::AF_INET as libc::sa_family_t;
#[allow(clippy::cast_possible_truncation)]
const IFF_UP_RUNNING: libc::c_short = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;

/// A `sockaddr` holding an AF_INET address, as the ioctls expect: the
/// generic view of a `sockaddr_in`, written field by field (port 0 in
/// `sa_data[0..2]`, the address in network order in `sa_data[2..6]`).
pub fn sockaddr_in(addr: Ipv4Addr) -> libc::sockaddr {
    let mut sa_data = [0 as libc::c_char; 14];
    for (dst, src) in sa_data[2..6].iter_mut().zip(addr.octets()) {
        *dst = libc::c_char::from_ne_bytes([src]);
    }
    libc::sockaddr { sa_family: AF_INET, sa_data }
}

/// The `rtentry` of a default route via `gateway`.
pub fn default_route(gateway: Ipv4Addr) -> libc::rtentry {
    // SAFETY: rtentry is plain old data; all-zero is a valid value (null
    // rt_dev: the kernel picks the interface that reaches the gateway).
    let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
    rt.rt_dst = sockaddr_in(Ipv4Addr::UNSPECIFIED);
    rt.rt_genmask = sockaddr_in(Ipv4Addr::UNSPECIFIED);
    rt.rt_gateway = sockaddr_in(gateway);
    rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
    rt
}

impl NetOps for IoctlNet {
    fn apply(&mut self, req: &Request) -> Result<(), NetError> {
        match req {
            Request::Up { name } => {
                let mut r = ifreq(name)?;
                self.ioctl(name, "get flags", libc::SIOCGIFFLAGS, &mut r)?;
                // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
                unsafe { r.ifr_ifru.ifru_flags |= IFF_UP_RUNNING };
                self.ioctl(name, "set flags up", libc::SIOCSIFFLAGS, &mut r)
            }
            Request::SetAddress { name, addr } => {
                let mut r = ifreq(name)?;
                r.ifr_ifru.ifru_addr = sockaddr_in(*addr);
                self.ioctl(name, "set address", libc::SIOCSIFADDR, &mut r)
            }
            Request::SetNetmask { name, mask } => {
                let mut r = ifreq(name)?;
                r.ifr_ifru.ifru_netmask = sockaddr_in(*mask);
                self.ioctl(name, "set netmask", libc::SIOCSIFNETMASK, &mut r)
            }
            Request::DefaultRoute { gateway } => {
                let mut rt = default_route(*gateway);
                self.ioctl("default route", "add route", libc::SIOCADDRT, &mut rt)
            }
        }
    }
}

/// Waits (bounded) for an interface to appear in sysfs: drivers may still be
/// probing when PID 1 starts.
pub fn wait_for_interface(sys_class_net: &Path, name: &str, timeout: Duration) -> Result<(), NetError> {
    let deadline = Instant::now() + timeout;
    loop {
        if sys_class_net.join(name).exists() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let mut have: Vec<String> = std::fs::read_dir(sys_class_net)
                .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            have.sort();
            return Err(NetError::NoSuchInterface { name: name.into(), have: have.join(", ") });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long to wait for the configured interface to appear.
pub const INTERFACE_WAIT: Duration = Duration::from_secs(5);

/// Brings the network up as configured. `sys_class_net` is
/// `/sys/class/net` on a real system.
pub fn setup(cfg: &NetworkConfig, sys_class_net: &Path, wait: Duration, ops: &mut dyn NetOps) -> Result<(), NetError> {
    loopback_up(ops)?;
    setup_interface(cfg, sys_class_net, wait, ops)
}

/// The first part of [`setup`], which needs no configuration (the boot
/// does it while the configuration is still being validated).
pub fn loopback_up(ops: &mut dyn NetOps) -> Result<(), NetError> {
    let _part = crate::timeline::part("loopback-up");
    ops.apply(&loopback())
}

/// The rest of [`setup`]: the configured interface.
pub fn setup_interface(
    cfg: &NetworkConfig,
    sys_class_net: &Path,
    wait: Duration,
    ops: &mut dyn NetOps,
) -> Result<(), NetError> {
    if !cfg.interface.is_empty() {
        let _part = crate::timeline::part("interface-wait");
        wait_for_interface(sys_class_net, &cfg.interface, wait)?;
    }
    for req in interface_plan(cfg) {
        let _part = crate::timeline::part(req.part_name());
        ops.apply(&req)?;
    }
    if cfg.mode == NetworkMode::Kernel && !cfg.interface.is_empty() {
        let flags = std::fs::read_to_string(sys_class_net.join(&cfg.interface).join("flags")).unwrap_or_default();
        let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap_or(0);
        if flags & libc::IFF_UP as u32 == 0 {
            return Err(NetError::NotUp(cfg.interface.clone()));
        }
    }
    Ok(())
}

// The `[network] section.

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
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

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
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
    let mask = u32::from(netmask(prefix));
    u32::from(a) & mask == u32::from(b) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder(Vec<Request>);
    impl NetOps for Recorder {
        fn apply(&mut self, req: &Request) -> Result<(), NetError> {
            self.0.push(req.clone());
            Ok(())
        }
    }

    fn static_cfg() -> NetworkConfig {
        NetworkConfig {
            mode: NetworkMode::Static,
            interface: "eth0".into(),
            address: "10.0.2.15/24".into(),
            gateway: Some("10.0.2.2".into()),
        }
    }

    fn sysfs(names: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (n, flags) in names {
            std::fs::create_dir_all(dir.path().join(n)).unwrap();
            std::fs::write(dir.path().join(n).join("flags"), flags).unwrap();
        }
        dir
    }

    #[test]
    fn netmasks() {
        assert_eq!(netmask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(netmask(0), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(netmask(32), Ipv4Addr::new(255, 255, 255, 255));
        assert_eq!(netmask(20), Ipv4Addr::new(255, 255, 240, 0));
    }

    #[test]
    fn loopback_only_by_default() {
        assert_eq!(plan(&NetworkConfig::default()), vec![Request::Up { name: "lo".into() }]);
    }

    #[test]
    fn loopback_and_interface_halves_make_the_whole_plan() {
        let dir = sysfs(&[("eth0", "0x1003")]);
        let mut early = Recorder::default();
        loopback_up(&mut early).unwrap();
        assert_eq!(early.0, vec![Request::Up { name: "lo".into() }]);
        let mut later = Recorder::default();
        setup_interface(&static_cfg(), dir.path(), Duration::ZERO, &mut later).unwrap();
        assert!(!later.0.contains(&Request::Up { name: "lo".into() }), "{:?}", later.0);
        early.0.extend(later.0);
        assert_eq!(early.0, plan(&static_cfg()));
        let mut none = Recorder::default();
        setup_interface(&NetworkConfig::default(), dir.path(), Duration::ZERO, &mut none).unwrap();
        assert!(none.0.is_empty());
    }

    #[test]
    fn static_plan_sets_address_mask_up_route_in_order() {
        let p = plan(&static_cfg());
        assert_eq!(
            p,
            vec![
                Request::Up { name: "lo".into() },
                Request::SetAddress { name: "eth0".into(), addr: Ipv4Addr::new(10, 0, 2, 15) },
                Request::SetNetmask { name: "eth0".into(), mask: Ipv4Addr::new(255, 255, 255, 0) },
                Request::Up { name: "eth0".into() },
                Request::DefaultRoute { gateway: Ipv4Addr::new(10, 0, 2, 2) },
            ]
        );
    }

    #[test]
    fn ifreq_encodes_the_name() {
        let r = ifreq("eth0").unwrap();
        let name: Vec<u8> = r.ifr_name.iter().take_while(|&&c| c != 0).map(|&c| c.to_ne_bytes()[0]).collect();
        assert_eq!(name, b"eth0");
        assert!(matches!(ifreq("averyveryverylongname"), Err(NetError::NameTooLong(_))));
        assert!(matches!(ifreq(""), Err(NetError::NameTooLong(_))));
    }

    fn sa_bytes(sa: &libc::sockaddr) -> Vec<u8> {
        sa.sa_data.iter().map(|c| c.to_ne_bytes()[0]).collect()
    }

    #[test]
    fn sockaddr_is_af_inet_in_network_order() {
        let sa = sockaddr_in(Ipv4Addr::new(10, 0, 2, 15));
        // What the kernel reads as a sockaddr_in: the family, then the port
        // and the address in network order in the first six data bytes.
        assert_eq!(sa.sa_family, AF_INET);
        assert_eq!(sa_bytes(&sa)[..6], [0, 0, 10, 0, 2, 15]);
    }

    #[test]
    fn default_route_goes_via_the_gateway() {
        let rt = default_route(Ipv4Addr::new(10, 0, 2, 2));
        assert_eq!(rt.rt_flags, libc::RTF_UP | libc::RTF_GATEWAY);
        assert_eq!(rt.rt_gateway.sa_family, AF_INET);
        assert_eq!(sa_bytes(&rt.rt_gateway)[2..6], [10, 0, 2, 2]);
        assert!(rt.rt_dev.is_null());
    }

    #[test]
    fn setup_waits_for_the_interface_and_names_what_exists() {
        let sys = sysfs(&[("lo", "0x9")]);
        let err = setup(&static_cfg(), sys.path(), Duration::from_millis(50), &mut Recorder::default()).unwrap_err();
        assert_eq!(err.to_string(), "interface eth0 not found (have: lo)");
        let sys = sysfs(&[("lo", "0x9"), ("eth0", "0x1002")]);
        let mut rec = Recorder::default();
        setup(&static_cfg(), sys.path(), Duration::from_millis(50), &mut rec).unwrap();
        assert_eq!(rec.0.len(), 5);
    }

    #[test]
    fn kernel_mode_checks_the_interface_is_up() {
        let cfg = NetworkConfig { mode: NetworkMode::Kernel, interface: "eth0".into(), ..Default::default() };
        let sys = sysfs(&[("eth0", "0x1002")]);
        assert!(matches!(
            setup(&cfg, sys.path(), Duration::from_millis(50), &mut Recorder::default()),
            Err(NetError::NotUp(_))
        ));
        let sys = sysfs(&[("eth0", "0x1003")]);
        setup(&cfg, sys.path(), Duration::from_millis(50), &mut Recorder::default()).unwrap();
    }
}
