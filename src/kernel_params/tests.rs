use std::path::PathBuf;

use super::*;

fn p(name: &str, value: Option<&str>) -> Param {
    Param { name: name.into(), value: value.map(str::to_string) }
}

fn no_resolve(_: &str) -> Option<PathBuf> {
    None
}

fn run(cmdline: &str, extension: &[&str]) -> Result<usize, KernelParamError> {
    let extension: Vec<String> = extension.iter().map(|s| s.to_string()).collect();
    let me = Path::new("/init");
    check(cmdline, &Context { extension: &extension, self_exe: Some(me), resolve: &no_resolve, kernel_ip: true })
}

fn refused(cmdline: &str) -> Vec<Refusal> {
    run(cmdline, &[]).unwrap_err().0
}

#[test]
fn words_are_split_as_the_kernel_does() {
    let c = parse("  a=1 b \"c=d e\" f=\"g h\" i=\"j\"k \"l m\" --   x y=\"z\"  ");
    assert_eq!(
        c.params,
        vec![
            p("a", Some("1")),
            p("b", None),
            p("c", Some("d e")),
            p("f", Some("g h")),
            // Only a quote at the very end is stripped: as lib/cmdline.c.
            p("i", Some("j\"k")),
            p("l m", None),
        ]
    );
    assert_eq!(c.init_args, vec!["x", "y=z"]);
    // `--` with a value is an ordinary (unknown) parameter, `=x` a name.
    let c = parse("--=1 =x");
    assert_eq!(c.params, vec![p("--", Some("1")), p("=x", None)]);
    assert!(c.init_args.is_empty());
    assert_eq!(parse("a==b").params, vec![p("a", Some("=b"))]);
    assert_eq!(parse("").params, vec![]);
}

#[test]
fn the_harness_and_kata_command_lines_pass() {
    // xtask/src/qemu.rs BASE_APPEND and what scenarios add.
    assert!(run("console=ttyS0 panic=-1 quiet loglevel=4 loglevel=7 ztinit.log=debug ztinit.anything=1", &[]).is_ok());
    // Kata's fixed QEMU parameters (virtcontainers qemu_amd64.go and the
    // console/quiet groups), OVMF's initrd= and a dm-verity root.
    let kata = "tsc=reliable no_timer_check rcupdate.rcu_expedited=1 i8042.direct=1 i8042.dumbkbd=1 \
                i8042.nopnp=1 i8042.noaux=1 noreplace-smp reboot=k cryptomgr.notests net.ifnames=0 \
                pci=lastbus=0 console=hvc0 console=hvc1 quiet panic=1 nr_cpus=4 selinux=0 \
                scsi_mod.scan=none cgroup_no_v1=all initrd=initrd root=/dev/dm-0 rootfstype=erofs rootflags=ro ro \
                \"dm-mod.create=root,,,ro,0 8 verity 1 /dev/vda1 /dev/vda2 4096 4096 1 1 sha256 00 11\" \
                dm-mod.waitfor=/dev/vda1 maxcpus=4 earlyprintk=ttyS0 debug ip=dhcp";
    assert_eq!(run(kata, &[]).unwrap(), 31);
}

#[test]
fn every_hostile_parameter_is_refused_by_name() {
    for word in [
        "sysctl.kernel.core_pattern=|/x",
        "sysctl.kernel.randomize_va_space=0",
        "sysctl/kernel/yama/ptrace_scope=0",
        "lsm=landlock",
        "security=none",
        "lockdown=none",
        "lockdown=confidentiality",
        "module.sig_enforce=0",
        "module.sig-enforce=0",
        "init=/bin/sh",
        "rdinit=/bin/sh",
        "nokaslr",
        "norandmaps",
        "mitigations=off",
        "nopti",
        "spectre_v2=off",
        "iommu=off",
        "iommu=pt",
        "intel_iommu=off",
        "iommu.passthrough=1",
        "no_hash_pointers",
        "kgdboc=ttyS0",
        "init_on_alloc=0",
        "vsyscall=emulate",
        "debugfs=on",
        "mem_encrypt=off",
    ] {
        let r = refused(&format!("console=ttyS0 {word} quiet"));
        assert_eq!(r.len(), 1, "{word}: {r:?}");
        assert_eq!(r[0].param, word);
        assert!(r[0].reason.contains("not accepted on any image") || r[0].reason.contains("another program"), "{r:?}");
    }
}

#[test]
fn an_unknown_parameter_is_refused() {
    let r = refused("console=ttyS0 nvidia.NVreg_RestrictProfilingToAdminUsers=0 foo");
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].param, "nvidia.NVreg_RestrictProfilingToAdminUsers=0");
    assert!(r[0].reason.starts_with("not on the allowlist"), "{}", r[0].reason);
    assert_eq!(r[1].param, "foo");
}

#[test]
fn values_outside_the_rule_are_refused() {
    for (word, why) in [
        ("quiet=1", "value not accepted (quiet without a value)"),
        ("pci=noats", "value not accepted (pci only lastbus=N)"),
        ("selinux=1", "value not accepted (selinux only =0)"),
        ("initrd=/other", "value not accepted (initrd only =initrd)"),
        ("earlyprintk=dbgp", "value not accepted (earlyprintk only a serial port (serial..., ttyS...))"),
        ("i8042", "not on the allowlist"),
        // xtask's disk format mounts the root with rootflags=ro; nothing else.
        ("rootflags=rw", "value not accepted (rootflags only =ro)"),
    ] {
        let r = refused(word);
        assert!(r[0].reason.starts_with(why), "{word}: {}", r[0].reason);
    }
}

#[test]
fn the_hostile_cmdline_scenario_names_both() {
    let err =
        run("console=ttyS0 panic=-1 quiet loglevel=4 sysctl.kernel.core_pattern=|/x lockdown=none", &[]).unwrap_err();
    let line = err.to_string();
    assert!(line.starts_with("kernel command line: sysctl.kernel.core_pattern=|/x: sets kernel tunables"), "{line}");
    assert!(line.contains("; lockdown=none: sets the kernel lockdown level"), "{line}");
}

#[test]
fn init_and_rdinit_only_name_ztinit() {
    assert!(run("rdinit=/init init=/init", &[]).is_ok());
    let r = refused("rdinit=/sbin/init init");
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].reason, "names another program than ztinit (/init): it would run as PID 1 instead");
    // A symlink to ztinit names ztinit.
    let dir = tempfile::tempdir().unwrap();
    let me = dir.path().join("init");
    std::fs::write(&me, b"").unwrap();
    let link = dir.path().join("linked");
    std::os::unix::fs::symlink(&me, &link).unwrap();
    let me = std::fs::canonicalize(&me).unwrap();
    let resolve = |p: &str| std::fs::canonicalize(p).ok();
    let ctx = Context { extension: &[], self_exe: Some(&me), resolve: &resolve, kernel_ip: false };
    assert!(check(&format!("rdinit={}", link.display()), &ctx).is_ok());
    // Unknown own path: nothing names it.
    let ctx = Context { extension: &[], self_exe: None, resolve: &resolve, kernel_ip: false };
    assert!(check("rdinit=/init", &ctx).is_err());
}

#[test]
fn ip_only_with_kernel_networking() {
    let ctx = |kernel_ip| Context { extension: &[], self_exe: None, resolve: &no_resolve, kernel_ip };
    assert!(check("ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off", &ctx(true)).is_ok());
    let err = check("ip=dhcp", &ctx(false)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "kernel command line: ip=dhcp: configures a network interface before ztinit runs; accepted only with \
         [network] mode = \"kernel\""
    );
}

#[test]
fn names_compare_with_dash_and_underscore_alike() {
    assert!(run("noreplace_smp no-timer-check dm_mod.waitfor=/dev/vda", &[]).is_ok());
    let r = refused("mitigations=off no-hash-pointers");
    assert_eq!(r.len(), 2, "{r:?}");
}

#[test]
fn anything_after_dashes_is_refused() {
    assert!(run("quiet --", &[]).is_ok());
    let r = refused("quiet -- ztinit.log=debug single");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].param, "-- ztinit.log=debug single");
    assert!(r[0].reason.contains("ztinit takes none"));
}

#[test]
fn the_extension_allows_names_or_exact_values() {
    let ext = ["agent.server_addr", "systemd.unified_cgroup_hierarchy=1", "agent-log=debug"];
    assert_eq!(
        run("agent.server_addr=vsock://-1:1024 systemd.unified_cgroup_hierarchy=1 agent_log=debug", &ext).unwrap(),
        3
    );
    let r = run("systemd.unified_cgroup_hierarchy=0 agent.log=info", &ext).unwrap_err().0;
    assert_eq!(r.len(), 2);
    assert!(r[0].reason.starts_with("not on the allowlist"));
}

#[test]
fn the_extension_cannot_allow_what_weakens() {
    for (entry, want) in [
        ("sysctl.kernel.core_pattern", "sysctl.kernel.core_pattern (any value) can weaken the guest: sets kernel"),
        ("lsm=yama", "lsm=yama can weaken the guest"),
        ("lockdown", "lockdown (any value) can weaken"),
        ("module.sig_enforce=1", "module.sig_enforce=1 can weaken"),
        ("nvidia.sig_enforce", "nvidia.sig_enforce (any value) can weaken"),
        ("nokaslr", "nokaslr (any value) can weaken"),
        ("mitigations", "mitigations (any value) can weaken"),
        ("mitigations=off", "mitigations=off can weaken"),
        ("iommu=off", "iommu=off can weaken"),
        ("iommu", "iommu (any value) can weaken"),
        ("init=/init", "init: accepted only when it names ztinit itself"),
        ("rdinit", "rdinit: accepted only when"),
        ("ztinit.log", "ztinit.log: ztinit.* parameters"),
        ("--", "--: what follows it goes to init"),
        ("", "\"\" is not NAME"),
        ("a b", "\"a b\" is not NAME"),
        ("a=\"b\"", "\"a=\\\"b\\\"\" is not NAME"),
    ] {
        let err = Extension::parse(entry).unwrap_err().to_string();
        assert!(err.starts_with(want), "{entry}: {err}");
    }
    // Values that do not weaken are fine.
    for entry in ["mitigations=auto,nosmt", "iommu=force", "init_on_free=1", "agent.log"] {
        assert!(Extension::parse(entry).is_ok(), "{entry}");
    }
    // An invalid entry never widens the boot check either.
    assert!(run("nokaslr", &["nokaslr"]).is_err());
}

#[test]
fn no_default_entry_weakens() {
    for a in DEFAULT {
        assert!(weakens(a.name, None).is_none(), "{}", a.name);
        assert_eq!(a.name, canonical(a.name), "names are canonical");
    }
}

#[test]
fn the_fatal_line_escapes_host_text() {
    let r = refused("a=\u{1b}[2Jx");
    assert_eq!(r[0].param, "a=?[2Jx");
    let long = "x".repeat(500);
    let r = refused(&long);
    assert_eq!(r[0].param.chars().count(), 121);
}

#[test]
fn the_config_key_is_validated() {
    use crate::config::{Config, NoFiles, Sources};
    let text = "[boot]\nallowed_kernel_params = [\"agent.log\", \"lsm=yama\", \"init\"]\n[workload]\npath = \"/w\"\n";
    let err = Config::load(Sources { origin: "c.toml", text, cmdline: None, files: &NoFiles }).unwrap_err();
    let issues = err.issues();
    assert_eq!(issues.len(), 2, "{issues:?}");
    assert!(issues[0].starts_with("c.toml:2: boot.allowed_kernel_params[1]: lsm=yama can weaken"), "{issues:?}");
    assert!(issues[1].contains("boot.allowed_kernel_params[2]: init: accepted only"), "{issues:?}");
    let text = "[boot]\nallowed_kernel_params = [\"agent.log\"]\n[workload]\npath = \"/w\"\n";
    let c = Config::load(Sources { origin: "c.toml", text, cmdline: None, files: &NoFiles }).unwrap();
    assert_eq!(c.boot.allowed_kernel_params, ["agent.log"]);
}
