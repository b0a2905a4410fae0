//! ztinit: PID 1 of a confidential AI VM. `boot` is the boot sequence
//! (docs/threat-model.md says what each stage trusts); each stage's glue is
//! in `ztinit::stages`, its work in the module of the same name.

use std::process::ExitCode;

use ztinit::stages::{self, GpuHooks, or_fatal};
use ztinit::timeline::{Stage, Timeline};
use ztinit::{kmsg, power};

fn main() -> ExitCode {
    if rustix::process::getpid().is_init() {
        boot()
    }
    ztinit::cli::run(std::env::args().skip(1).collect())
}

/// The boot sequence. Never returns: every path ends in `power::end`.
fn boot() -> ! {
    let mut timeline = Timeline::start();
    power::set_pid1(true);
    power::install_panic_hook();

    // early: signals; the baked config read and validated here while a
    // thread mounts, attaches the console and starts logging; the network
    // and the KBS client start as soon as their sections validate, unless
    // initdata may change them.
    let (early, parsing) = stages::early();
    or_fatal(Stage::Early, early);
    timeline.done(Stage::Early);

    // config: the baked file's and the kernel command line's verdict,
    // initdata.
    let stages::Loaded { config, tee, initdata, kbs, network, baked } = stages::load_config(parsing);
    ztinit::config::log_weakenings(&config);
    timeline.done(Stage::Config);

    // launch, ahead of time: the workload's seccomp program, the one the
    // image compiled from this baked file, or compiled while the guest
    // attests.
    let seccomp = stages::compile_seccomp(&config, &baked);

    // attest, ahead of time: the KBS client (TLS configuration, the key
    // the evidence binds) made during early, or here when initdata may set
    // `[kbs]` keys; it connects as soon as the network is up.
    let kbs_client = kbs.unwrap_or_else(|| stages::prepare_kbs(&config));

    or_fatal(Stage::Network, stages::network(&config, network));
    kbs_client.network_up();
    timeline.done(Stage::Network);

    let loaded_modules = stages::load_modules(&config);
    timeline.stage(Stage::Modules, loaded_modules);

    // volume, under way in a thread: the disks checked against the measured
    // root hashes while the guest attests (no key needed), then each
    // volume's dm-crypt and mount as soon as the secrets stage has its key.
    let mut volumes = stages::prepare_volumes(&config);

    let mut hooks = GpuHooks::default();
    let mut gpus = stages::bring_up_gpus(&config, &mut hooks);
    timeline.stage(Stage::Gpu, gpus.is_some());

    // attest + secrets: the TEE, the KBS handshake, then every resource.
    let mut released = stages::attest_and_fetch(
        &config,
        tee,
        initdata.as_ref(),
        kbs_client,
        gpus.as_mut(),
        &mut volumes,
        &mut timeline,
    );

    let opened = stages::open_volumes(&config, volumes);
    timeline.stage(Stage::Volume, opened);

    // image: pulled, verified and unpacked by the confined helper.
    let image = stages::pull_image(&config, &mut released);
    timeline.stage(Stage::Image, image.is_some());

    stages::lock_down(&config, gpus.take());
    timeline.done(Stage::Lockdown);
    kmsg::notice(&timeline.summary());

    let launched = stages::launch(&config, &released, seccomp, image.as_ref(), &mut timeline);
    let outcome = stages::supervise(&config, launched, hooks.daemons);
    timeline.done(Stage::Supervise);
    power::end(outcome)
}
