//! Every way a configuration confines the workload less than the default
//! (`profile = "workload"`: an unprivileged user, no capabilities,
//! `workload-default` seccomp, Landlock, no_new_privs, supervised, modules
//! locked). ztinit logs each once at boot and `check-config` prints them
//! after `ok`, so a reviewer of the baked file sees what was given up.

use super::Config;
use crate::sandbox::seccomp::builtin;
use crate::sandbox::{LandlockMode, LaunchMode, SandboxProfile, SeccompChoice};

/// One line per weakening, `weakening: KEY = VALUE: what it gives up`, in a
/// fixed order. Empty for a configuration at the defaults.
pub fn weakenings(config: &Config) -> Vec<String> {
    let (sandbox, workload) = (&config.sandbox, &config.workload);
    let mut out = Vec::new();
    let mut add = |key: &str, what: String| out.push(format!("weakening: {key}: {what}"));
    if sandbox.profile == SandboxProfile::Agent {
        add(
            "sandbox.profile = \"agent\"",
            "the workload is a container agent: root, the agent capabilities, no Landlock, the agent seccomp \
             profile"
                .into(),
        );
    }
    if workload.mode == LaunchMode::Handoff {
        add(
            "workload.mode = \"handoff\"",
            "the workload becomes PID 1: seccomp kill and trap actions answer EPERM instead, and ztinit no \
             longer reaps, supervises, or ends the VM"
                .into(),
        );
    }
    if workload.user == 0 {
        add("workload.user = 0", "the workload runs as root".into());
    }
    if workload.group == 0 {
        add("workload.group = 0", "the workload runs with group root".into());
    }
    let kept = sandbox.kept_capabilities();
    if !kept.is_empty() {
        add("sandbox.capabilities", format!("keeps {} (default: none)", kept.join(", ")));
    }
    match &sandbox.seccomp {
        SeccompChoice::WorkloadDefault | SeccompChoice::Strict => {}
        SeccompChoice::Agent => {
            let kills = builtin::agent_kill_list(sandbox.keeps_sys_module());
            let modules = if sandbox.keeps_sys_module() { "; module loading allowed" } else { "" };
            add(
                "sandbox.seccomp = \"agent\"",
                format!(
                    "allows mount, umount2, pivot_root, chroot, setns, namespace flags of clone and unshare, the \
                     new mount API, sethostname, swapon, reboot and every socket family (vsock, netlink){modules}; \
                     still kills {}",
                    kills.join(", ")
                ),
            );
        }
        SeccompChoice::None => add("sandbox.seccomp = \"none\"", "no seccomp filter".into()),
        SeccompChoice::File(path) => {
            add(&format!("sandbox.seccomp = {path:?}"), "a user profile replaces workload-default".into())
        }
    }
    if !sandbox.seccomp_allow.is_empty() {
        add(
            &format!("sandbox.seccomp_allow = {:?}", sandbox.seccomp_allow),
            "allowed beyond the built-in profile".into(),
        );
    }
    match sandbox.landlock {
        LandlockMode::Required => {}
        LandlockMode::BestEffort => {
            add("sandbox.landlock = \"best-effort\"", "no Landlock ruleset on a kernel without Landlock".into())
        }
        LandlockMode::Off => {
            add("sandbox.landlock = \"off\"", "no Landlock ruleset: file access is limited by permissions only".into())
        }
    }
    if !sandbox.no_new_privs {
        add(
            "sandbox.no_new_privs = false",
            "setuid programs and file capabilities can raise privileges at exec".into(),
        );
    }
    if !config.lockdown.modules_disabled {
        add(
            "lockdown.modules_disabled = false",
            "kernel modules can be loaded after boot by a process with CAP_SYS_MODULE".into(),
        );
    }
    out
}

/// Logs every weakening once (at boot, before the first stage that acts on
/// the configuration).
pub fn log_weakenings(config: &Config) {
    for line in weakenings(config) {
        log::warn!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{NoFiles, Sources};

    fn load(text: &str) -> Config {
        let text = format!("[workload]\npath = \"/bin/w\"\n{text}");
        Config::load(Sources { origin: "c.toml", text: &text, cmdline: None, files: &NoFiles })
            .unwrap_or_else(|e| panic!("{:#?}", e.issues()))
    }

    #[test]
    fn the_default_gives_nothing_up() {
        assert_eq!(weakenings(&load("")), Vec::<String>::new());
        assert_eq!(weakenings(&load("[sandbox]\nseccomp = \"strict\"\nseccomp_log = false\n")), Vec::<String>::new());
    }

    #[test]
    fn the_agent_profile_lists_every_weakening() {
        let c = load(
            "user = 0\ngroup = 0\nmode = \"handoff\"\n[sandbox]\nprofile = \"agent\"\nno_new_privs = false\n\
             seccomp_allow = [\"ioperm\"]\ncapabilities = [\"CAP_SYS_RAWIO\"]\n",
        );
        let w = weakenings(&c);
        let keys: Vec<&str> = w.iter().map(|l| l.split(": ").nth(1).unwrap()).collect();
        assert_eq!(
            keys,
            [
                "sandbox.profile = \"agent\"",
                "workload.mode = \"handoff\"",
                "workload.user = 0",
                "workload.group = 0",
                "sandbox.capabilities",
                "sandbox.seccomp = \"agent\"",
                "sandbox.seccomp_allow = [\"ioperm\"]",
                "sandbox.landlock = \"off\"",
                "sandbox.no_new_privs = false",
            ]
        );
        assert!(
            w[4].ends_with("CAP_SYS_RESOURCE, CAP_MKNOD, CAP_AUDIT_WRITE, CAP_SYS_RAWIO (default: none)"),
            "{}",
            w[4]
        );
        assert!(w[5].contains("still kills kexec_load, kexec_file_load, bpf,"), "{}", w[5]);
        assert!(w[5].ends_with("open_by_handle_at, init_module, finit_module, delete_module"), "{}", w[5]);
    }

    #[test]
    fn module_loading_for_an_agent() {
        let c = load(
            "user = 0\ngroup = 0\n[sandbox]\nprofile = \"agent\"\ncapabilities = [\"CAP_SYS_MODULE\"]\n\
             [lockdown]\nmodules_disabled = false\n",
        );
        let w = weakenings(&c);
        let seccomp = w.iter().find(|l| l.contains("sandbox.seccomp = ")).unwrap();
        assert!(seccomp.contains("; module loading allowed; still kills"), "{seccomp}");
        assert!(!seccomp.contains("init_module"), "{seccomp}");
        assert_eq!(
            w.last().unwrap(),
            "weakening: lockdown.modules_disabled = false: kernel modules can be loaded after boot by a process \
             with CAP_SYS_MODULE"
        );
        // Other weakenings of the workload profile.
        let w = weakenings(&load("[sandbox]\nseccomp = \"none\"\nlandlock = \"best-effort\"\n"));
        assert_eq!(
            w,
            [
                "weakening: sandbox.seccomp = \"none\": no seccomp filter",
                "weakening: sandbox.landlock = \"best-effort\": no Landlock ruleset on a kernel without Landlock",
            ]
        );
    }
}
