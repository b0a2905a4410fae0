//! `ztinit-kbs`: the development Key Broker Service (see docs/kbs.md).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use ztinit_kbs::{Fault, Mitm, MitmOptions, NvidiaDeviceVerifier, Options, Policy, Server, TlsFiles, Verifiers};

const USAGE: &str = "\
usage: ztinit-kbs --resources DIR [options]
       ztinit-kbs mitm --upstream URL --replace REPO/TYPE/TAG --with FILE [options]   (TEST ONLY)

A development Key Broker Service speaking the Trustee KBS protocol 0.4.0.
Binds 127.0.0.1 only. Prints `ztinit-kbs: listening on URL` on stdout once ready.

options:
  --listen 127.0.0.1:PORT   address to listen on (port 0 picks a free one; default 127.0.0.1:0)
  --resources DIR           resources are the files DIR/REPO/TYPE/TAG
  --policy FILE             resource policy, SNP/TDX reference values and the [nvidia] GPU verifier
                            (TOML, see docs/kbs.md; default: sample evidence refused, all else
                            allowed, any measurement)
  --tls-cert PEM --tls-key PEM
                            serve HTTPS with this certificate chain and key
  --session-ttl-secs N      session, nonce and token lifetime (default 300)
  --max-request-bytes N     request body limit (default 2097152)
  -h, --help                this text

TEST-ONLY fault injection (never in a real deployment; repeatable):
  --fault wrong-key-jwe     encrypt resources to a fresh key instead of the guest's
  --fault tampered-jwe      flip a bit of each resource's ciphertext
  --fault malformed-json    send resource responses as truncated JSON
  --fault oversized-body    announce and stream a 256 MiB resource response
  --fault wrong-version     require KBS protocol version 0.3.0 at /auth
  --fault forget-sessions   forget attested sessions (resource GETs get 401 TokenNotFound)
  --fault stall             read requests and never answer

TEST-ONLY man-in-the-middle (`ztinit-kbs mitm`), a hostile host's proxy between a guest and the KBS:
forwards every request to the KBS at --upstream (any certificate accepted), learns the guest's
ephemeral key from /attest, and answers GET of resource REPO/TYPE/TAG itself with a JWE of FILE's
content encrypted to that key. Prints `ztinit-kbs mitm: listening on URL` once ready.
  --listen 127.0.0.1:PORT   address to listen on (default 127.0.0.1:0)
  --tls-cert PEM --tls-key PEM
                            serve HTTPS to the guest with the proxy's own certificate
";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ztinit-kbs: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    log::set_boxed_logger(Box::new(StderrLogger)).map_err(|e| e.to_string())?;
    log::set_max_level(log::LevelFilter::Info);
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("mitm") {
        args.next();
        return mitm(args);
    }
    let mut resources = None;
    let mut listen = "127.0.0.1:0".to_string();
    let mut policy = Policy::default();
    let mut policy_dir = std::path::PathBuf::from(".");
    let (mut cert, mut key) = (None, None);
    let mut ttl = 300u64;
    let mut max_request = 2usize << 20;
    let mut faults = Vec::new();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value\n\n{USAGE}"));
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(());
            }
            "--listen" => listen = value("--listen")?,
            "--resources" => resources = Some(value("--resources")?),
            "--policy" => {
                let file = value("--policy")?;
                policy = Policy::load(std::path::Path::new(&file)).map_err(|e| format!("{file}: {e}"))?;
                policy_dir = std::path::Path::new(&file).parent().unwrap_or(std::path::Path::new(".")).to_path_buf();
            }
            "--tls-cert" => cert = Some(value("--tls-cert")?),
            "--tls-key" => key = Some(value("--tls-key")?),
            "--session-ttl-secs" => {
                ttl = value("--session-ttl-secs")?.parse().map_err(|e| format!("--session-ttl-secs: {e}"))?
            }
            "--max-request-bytes" => {
                max_request = value("--max-request-bytes")?.parse().map_err(|e| format!("--max-request-bytes: {e}"))?
            }
            "--fault" => faults.push(value("--fault")?.parse::<Fault>()?),
            other => return Err(format!("unknown argument {other:?}\n\n{USAGE}")),
        }
    }
    let resources = resources.ok_or_else(|| format!("--resources is required\n\n{USAGE}"))?;
    let mut opts = Options::new(resources);
    opts.listen = listen.parse().map_err(|e| format!("--listen {listen}: {e}"))?;
    if policy.tee.snp.measurements.is_empty() {
        log::warn!("SNP: the policy names no measurement: any launch measurement is accepted (development)");
    }
    if policy.tee.tdx.mrtd.is_empty() {
        log::warn!("TDX: the policy names no MRTD: any TD is accepted (development)");
    }
    opts.verifiers = Verifiers::with_tee(policy.tee.clone());
    // `nvidia` additional evidence: NVIDIA's root and no reference values
    // unless the policy has an [nvidia] table.
    let nvidia = match &policy.nvidia {
        Some(section) => NvidiaDeviceVerifier::from_section(section, &policy_dir)?,
        None => NvidiaDeviceVerifier::nvidia_default(),
    };
    opts.verifiers.add_device(Box::new(nvidia));
    opts.policy = policy;
    opts.tls = match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert: cert.into(), key: key.into() }),
        (None, None) => None,
        _ => return Err("--tls-cert and --tls-key go together".into()),
    };
    opts.session_ttl = Duration::from_secs(ttl);
    opts.max_request_bytes = max_request;
    if !faults.is_empty() {
        eprintln!("ztinit-kbs: TEST-ONLY faults enabled: {faults:?}");
    }
    opts.faults = faults;
    let server = Server::bind(opts).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout();
    writeln!(out, "ztinit-kbs: listening on {}", server.url()).and_then(|_| out.flush()).map_err(|e| e.to_string())?;
    server.run();
    Ok(())
}

fn mitm(mut args: impl Iterator<Item = String>) -> Result<(), String> {
    let (mut listen, mut upstream, mut replace, mut with) = ("127.0.0.1:0".to_string(), None, None, None);
    let (mut cert, mut key) = (None, None);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value\n\n{USAGE}"));
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(());
            }
            "--listen" => listen = value("--listen")?,
            "--upstream" => upstream = Some(value("--upstream")?),
            "--replace" => replace = Some(value("--replace")?),
            "--with" => with = Some(value("--with")?),
            "--tls-cert" => cert = Some(value("--tls-cert")?),
            "--tls-key" => key = Some(value("--tls-key")?),
            other => return Err(format!("mitm: unknown argument {other:?}\n\n{USAGE}")),
        }
    }
    let (Some(upstream), Some(replace), Some(with)) = (upstream, replace, with) else {
        return Err(format!("mitm: --upstream, --replace and --with are required\n\n{USAGE}"));
    };
    let opts = MitmOptions {
        listen: listen.parse().map_err(|e| format!("--listen {listen}: {e}"))?,
        upstream,
        tls: match (cert, key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert: cert.into(), key: key.into() }),
            (None, None) => None,
            _ => return Err("--tls-cert and --tls-key go together".into()),
        },
        replace: replace.parse().map_err(|e| format!("--replace {replace}: {e}"))?,
        replacement: std::fs::read(&with).map_err(|e| format!("--with {with}: {e}"))?,
    };
    eprintln!("ztinit-kbs mitm: TEST-ONLY man-in-the-middle");
    let proxy = Mitm::bind(opts).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout();
    writeln!(out, "ztinit-kbs mitm: listening on {}", proxy.url())
        .and_then(|_| out.flush())
        .map_err(|e| e.to_string())?;
    proxy.run();
    Ok(())
}

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Info && !m.target().starts_with("rustls")
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            eprintln!("ztinit-kbs: {}", r.args());
        }
    }
    fn flush(&self) {}
}
