//! The real `ztinit-gpu` helper against the test-only fake libnvidia-ml.so.1,
//! driven by ztinit's own client and verified by ztinit's library.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha384};
use ztinit::gpu::evidence::{NvidiaPolicy, verify_nvidia_evidence};
use ztinit::gpu::helper::{Confinement, Helper, HelperError};
use ztinit::gpu::verify::{self, Evidence, Expected, Trust};
use ztinit::gpu::{AttesterEnv, GpuAttester, GpuConfig, GpuError, GpuMode, certs};

use fake_nvml_harness::{Fake, built, fake_measurement, is_root, test_root_pem};

/// What only these tests need on top of the shared harness.
trait FakeExt {
    /// As at boot when the tests run as root (the sandbox needs it): the
    /// fake's record and ready files are the helper's only writable paths.
    fn confinement(&self) -> Confinement;
    fn helper(&self) -> Helper;
    fn attester_env(&self, guest: PathBuf) -> AttesterEnv;
    /// A guest tree with `gpus` NVIDIA GPUs on the PCI bus and the test root.
    fn guest(&self, gpus: usize) -> PathBuf;
}

impl FakeExt for Fake {
    fn confinement(&self) -> Confinement {
        if is_root() {
            Confinement::Sandboxed { read_write: self.writable(), seccomp_allow: Vec::new() }
        } else {
            Confinement::Unconfined
        }
    }

    fn helper(&self) -> Helper {
        self.helper_with(self.confinement())
    }

    fn attester_env(&self, guest: PathBuf) -> AttesterEnv {
        AttesterEnv { files_root: guest, helper_env: self.env(), now: std::time::SystemTime::now(), confine: is_root() }
    }

    /// A guest tree with one NVIDIA GPU on the PCI bus and the test root.
    fn guest(&self, gpus: usize) -> PathBuf {
        let root = self.dir.path().join("guest");
        for i in 0..gpus {
            let d = root.join(format!("sys/bus/pci/devices/0000:0{}:00.0", i + 1));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("vendor"), "0x10de\n").unwrap();
            std::fs::write(d.join("device"), "0x2331\n").unwrap();
            std::fs::write(d.join("class"), "0x030200\n").unwrap();
        }
        std::fs::create_dir_all(root.join("etc/ztinit")).unwrap();
        std::fs::write(root.join("etc/ztinit/gpu-test-root.pem"), test_root_pem()).unwrap();
        root
    }
}

fn config() -> GpuConfig {
    let mut c = GpuConfig {
        mode: GpuMode::Gpu,
        helper: built().0.to_str().unwrap().into(),
        nvml_library: built().1.to_str().unwrap().into(),
        device_root: Some("/etc/ztinit/gpu-test-root.pem".into()),
        ..GpuConfig::default()
    };
    c.measurements.insert("2".into(), vec![fake_measurement(2)]);
    c.measurements.insert("36".into(), vec![fake_measurement(36)]);
    c
}

fn start(fake: &Fake, cfg: &GpuConfig, gpus: usize) -> Result<GpuAttester, GpuError> {
    let guest = fake.guest(gpus);
    let plan = ztinit::gpu::plan(cfg, &guest).unwrap().unwrap();
    let cfg = GpuConfig { helper_read_write: fake.writable(), ..cfg.clone() };
    GpuAttester::start(&cfg, &plan, &fake.attester_env(guest))
}

fn test_trust() -> Trust {
    Trust { root: certs::parse_pem_cert(&test_root_pem()).unwrap(), now: std::time::SystemTime::now() }
}

#[test]
fn helper_answers_every_request_against_the_fake_library() {
    let fake = Fake::new(serde_json::json!({}));
    let mut h = fake.helper();
    let inv = h.inventory().unwrap();
    assert_eq!(inv.driver_version, "550.90.07");
    assert_eq!(inv.gpus.len(), 1);
    assert_eq!(inv.gpus[0].arch, 9);
    assert_eq!(inv.gpus[0].pci_bus_id, "00000000:01:00.0");
    let cc = h.cc_settings().unwrap();
    assert_eq!((cc.environment, cc.cc_feature, cc.devtools_mode, cc.cpu_caps), (2, 1, 0, 3));
    assert!(!h.get_ready().unwrap());

    let nonce = [0x5au8; 32];
    let (report, chain) = h.evidence(0, &nonce).unwrap();
    let exp = Expected {
        nonce: Some(&nonce),
        driver_versions: &["550.90.07".into()],
        vbios_versions: &["96.00.9F.00.01".into()],
        reference: None,
    };
    let v = verify::verify_device(&Evidence { report: &report, chain_pem: &chain, arch: None }, &exp, &test_trust());
    assert!(v.passed(), "{:?}", v.checks);
    // The pinned NVIDIA root does not accept the test CA.
    let real =
        verify::verify_device(&Evidence { report: &report, chain_pem: &chain, arch: None }, &exp, &Trust::nvidia_now());
    assert_eq!(real.first_failure().unwrap().name, "chain");

    // One attempt per GPU, enforced by the helper too.
    match h.evidence(0, &nonce) {
        Err(HelperError::Refused { op: "evidence", message }) => {
            assert!(message.contains("already requested"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(h.set_ready().unwrap());
    assert!(h.get_ready().unwrap());
    h.close();
    let calls = fake.calls();
    assert!(
        calls.contains(&format!("nvmlDeviceGetConfComputeGpuAttestationReport(gpu=0, nonce={})", hex::encode(nonce))),
        "{calls}"
    );
    assert!(calls.contains("nvmlSystemSetConfComputeGpusReadyState(1)"), "{calls}");
}

#[test]
fn attester_happy_path_sets_ready_only_after_acceptance() {
    let fake = Fake::new(serde_json::json!({}));
    let mut a = start(&fake, &config(), 1).unwrap();
    assert_eq!(a.name(), "nvidia");
    assert!(matches!(a.set_ready(), Err(GpuError::NotAttested)));
    let digest: Vec<u8> = Sha384::digest(b"{\"nonce\":\"n\",\"tee-pubkey\":{}}").to_vec();
    let evidence = a.collect(&digest).unwrap();
    assert!(!fake.calls().contains("SetConfComputeGpusReadyState"));
    // What the KBS does with it.
    let policy = NvidiaPolicy { refuse_switches: true, ..NvidiaPolicy::default() };
    let verdict = verify_nvidia_evidence(&evidence, Some(&digest), &policy, &test_trust()).unwrap();
    assert!(verdict.passed(), "{:?}", verdict.first_failure());
    assert!(matches!(a.collect(&digest), Err(GpuError::AlreadyCollected)));
    a.set_ready().unwrap();
    a.finish();
    let calls = fake.calls();
    assert_eq!(calls.matches("nvmlSystemSetConfComputeGpusReadyState(1)").count(), 1, "{calls}");
    assert!(!calls.contains("GpusReadyState(0)"), "{calls}");
}

#[test]
fn two_gpus_are_each_attested_once() {
    let fake = Fake::new(serde_json::json!({"gpus": [
        {"uuid": "GPU-a", "vbios_version": "96.00.9F.00.01", "arch": 9, "pci_bus_id": "00000000:01:00.0"},
        {"uuid": "GPU-b", "vbios_version": "96.00.9F.00.01", "arch": 9, "pci_bus_id": "00000000:02:00.0"}
    ]}));
    let mut a = start(&fake, &config(), 2).unwrap();
    let v = a.collect(&[9u8; 48]).unwrap();
    assert_eq!(v["device_evidence_list"].as_array().unwrap().len(), 2);
    assert_eq!(v["device_evidence_list"][1]["uuid"], "GPU-b");
    assert_eq!(fake.calls().matches("AttestationReport(gpu=").count(), 2);
}

#[test]
fn devtools_mode_is_fatal_before_any_evidence() {
    let fake = Fake::new(serde_json::json!({"devtools_mode": 1, "environment": 1}));
    match start(&fake, &config(), 1) {
        Err(GpuError::Policy(m)) => assert!(m.contains("devtools"), "{m}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("devtools accepted"),
    }
    let calls = fake.calls();
    assert!(!calls.contains("AttestationReport") && !calls.contains("ReadyState"), "{calls}");
}

#[test]
fn tampered_measurement_is_fatal_and_ready_is_never_set() {
    let fake = Fake::new(serde_json::json!({"measurement_overrides": {"36": "00".repeat(48)}}));
    let mut a = start(&fake, &config(), 1).unwrap();
    let err = a.collect(&[1u8; 48]).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "GPU 0 (GPU-00000000-0000-0000-0000-000000000000) evidence rejected: measurements: FAIL: block 36"
        ),
        "{err}"
    );
    assert!(matches!(a.set_ready(), Err(GpuError::NotAttested)));
    a.finish();
    assert!(!fake.calls().contains("ReadyState"), "{}", fake.calls());
}

#[test]
fn gpu_count_mismatch_between_pci_and_driver_is_fatal() {
    let fake = Fake::new(serde_json::json!({}));
    let err = start(&fake, &config(), 2).err().unwrap().to_string();
    assert_eq!(err, "inventory: the driver sees 1 GPUs but 2 are on the PCI bus");
}

#[test]
fn failed_report_is_fatal() {
    let fake = Fake::new(serde_json::json!({"fail_report": true}));
    let mut a = start(&fake, &config(), 1).unwrap();
    let err = a.collect(&[1u8; 48]).unwrap_err().to_string();
    assert!(err.contains("nvmlDeviceGetConfComputeGpuAttestationReport failed"), "{err}");
}

/// The whole stage as main runs it, with stand-ins for the module loader and
/// the supervisor.
#[test]
fn bring_up_loads_modules_waits_for_the_daemon_then_starts_the_attester() {
    struct Hooks {
        root: PathBuf,
        modules: Vec<String>,
        daemon: Vec<String>,
    }
    impl ztinit::gpu::DriverHooks for Hooks {
        fn load_modules(
            &mut self,
            modules: &[ztinit::gpu::bringup::ModuleLoad],
        ) -> Result<(), ztinit::modules::ModulesError> {
            self.modules = modules.iter().map(|m| format!("{} {}", m.name, m.params.join(" "))).collect();
            Ok(())
        }
        fn start_persistenced(&mut self, cmd: Command) -> std::io::Result<Box<dyn FnMut() -> bool>> {
            self.daemon = std::iter::once(cmd.get_program())
                .chain(cmd.get_args())
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let sock = self.root.join("run/nvidia-persistenced/socket");
            std::fs::create_dir_all(sock.parent().unwrap()).unwrap();
            std::fs::write(sock, b"").unwrap();
            Ok(Box::new(|| true))
        }
    }
    let fake = Fake::new(serde_json::json!({}));
    let guest = fake.guest(1);
    let mut hooks = Hooks { root: guest.clone(), modules: Vec::new(), daemon: Vec::new() };
    let env = fake.attester_env(guest.clone());
    let cfg = GpuConfig { helper_read_write: fake.writable(), ..config() };
    let mut a = ztinit::gpu::bring_up(&cfg, &guest, &mut hooks, &env).unwrap().unwrap();
    assert_eq!(hooks.modules, ["nvidia NVreg_NvLinkDisable=1", "nvidia-uvm "]);
    assert_eq!(hooks.daemon, ["/usr/bin/nvidia-persistenced", "--verbose", "--uvm-persistence-mode"]);
    a.collect(&[3u8; 48]).unwrap();
    a.set_ready().unwrap();

    // A daemon that dies is fatal before the helper ever runs.
    struct Dying;
    impl ztinit::gpu::DriverHooks for Dying {
        fn load_modules(
            &mut self,
            _: &[ztinit::gpu::bringup::ModuleLoad],
        ) -> Result<(), ztinit::modules::ModulesError> {
            Ok(())
        }
        fn start_persistenced(&mut self, _: Command) -> std::io::Result<Box<dyn FnMut() -> bool>> {
            Ok(Box::new(|| false))
        }
    }
    let fake2 = Fake::new(serde_json::json!({}));
    let guest2 = fake2.guest(1);
    let env2 = fake2.attester_env(guest2.clone());
    let err = ztinit::gpu::bring_up(&config(), &guest2, &mut Dying, &env2).err().unwrap().to_string();
    assert_eq!(err, "nvidia-persistenced exited before it was ready");
    assert!(!fake2.calls().contains("nvmlInit"));
}

/// The helper as ztinit starts it at boot (root only: the sandbox needs it).
#[test]
#[ignore = "needs root: the helper's sandbox changes uid, gid and capabilities"]
fn the_helper_runs_confined_and_is_reaped_by_pid() {
    assert!(is_root(), "this test needs root: run it as root or leave out --ignored");
    let fake = Fake::new(serde_json::json!({}));
    let mut h = fake.helper();
    let pid = h.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field =
        |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).unwrap_or_default().to_string();
    // CAP_SYS_ADMIN (21) only, everywhere it could come back from.
    assert_eq!(field("CapEff:"), "0000000000200000", "{status}");
    assert_eq!(field("CapBnd:"), "0000000000200000", "{status}");
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("Seccomp:"), "2");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert_eq!(environ, format!("FAKE_NVML_CONFIG={}\0", fake.dir.path().join("fake.json").display()).into_bytes());
    // Every request works under the strict profile and Landlock.
    h.inventory().unwrap();
    h.cc_settings().unwrap();
    h.evidence(0, &[7u8; 32]).unwrap();
    assert!(h.set_ready().unwrap());
    h.close();
    assert!(fake.calls().contains("nvmlSystemSetConfComputeGpusReadyState(1)"), "{}", fake.calls());
    // Reaped by close(): nothing left for PID 1's reaper.
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "pid {pid} still exists (zombie?)");
}

#[test]
#[ignore = "needs root: the helper's sandbox changes uid, gid and capabilities"]
fn the_confined_helper_cannot_write_outside_its_paths() {
    assert!(is_root(), "this test needs root: run it as root or leave out --ignored");
    // The fake records into a directory Landlock does not open for writing:
    // the calls are lost, the answers still come.
    let elsewhere = tempfile::tempdir().unwrap();
    let record = elsewhere.path().join("calls");
    let fake = Fake::new(serde_json::json!({"record": record.to_str().unwrap()}));
    let mut h = fake.helper();
    h.inventory().unwrap();
    h.close();
    assert!(!record.exists(), "Landlock let the helper write {}", record.display());
}
