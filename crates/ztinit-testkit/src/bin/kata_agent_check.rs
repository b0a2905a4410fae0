//! kata-agent-check: a ttrpc client of the real kata-agent, started inside
//! the guest by agent-launcher right before the launcher becomes the agent.
//! It waits for the agent's unix socket, calls `grpc.Health/Check`,
//! `grpc.Health/Version` and `grpc.AgentService/GetGuestDetails`, prints
//! every answer and one PASS/FAIL line per check, then ends the run:
//!
//! - `--end debug-exit` (handoff: the agent is PID 1 and ztinit is gone):
//!   writes 42 to QEMU's isa-debug-exit when every check passed, 43 when
//!   one failed (needs CAP_SYS_RAWIO and ioperm allowed by the seccomp
//!   profile). If ioperm fails it says so and exits; the VM then runs into
//!   the harness's timeout, never a pass.
//! - `--end destroy-sandbox` (supervise: the agent is ztinit's child):
//!   after passing checks it asks the agent to shut down
//!   (`grpc.AgentService/DestroySandbox`), so the agent exits 0 and ztinit
//!   powers off with value 0; after a failed check it kills the agent with
//!   SIGKILL, which ztinit reports as signal 9 (value 73).
//!
//! With `--secret NAME` it first checks that ztinit delivered that secret
//! before the agent started (`$CREDENTIALS_DIRECTORY/NAME`, inherited
//! through the launcher) and prints its SHA-256, never its bytes.
//!
//! Usage: kata-agent-check --socket PATH --expect-pid1 yes|no
//!        --end debug-exit|destroy-sandbox [--secret NAME] [--timeout-s N]

use std::path::Path;
use std::time::{Duration, Instant};

use prost::Message;
use ztinit_testkit::kata_proto::*;
use ztinit_testkit::say;

const DEBUG_EXIT_PORT: u16 = 0xf4;
const PASS_VALUE: u8 = 42;
const FAIL_VALUE: u8 = 43;
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
const AGENT_COMM: &str = "kata-agent";

#[derive(Clone, Copy, PartialEq)]
enum End {
    DebugExit,
    DestroySandbox,
}

struct Args {
    socket: String,
    secret: Option<String>,
    expect_pid1: bool,
    end: End,
    timeout: Duration,
}

fn usage() -> ! {
    say("testkit: agent-check: FAIL usage: kata-agent-check --socket PATH --expect-pid1 yes|no \
         --end debug-exit|destroy-sandbox [--secret NAME] [--timeout-s N]");
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut args = Args {
        socket: String::new(),
        secret: None,
        expect_pid1: false,
        end: End::DebugExit,
        timeout: Duration::from_secs(90),
    };
    let mut it = std::env::args().skip(1);
    let mut end = None;
    let mut pid1 = None;
    while let Some(a) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--socket" => args.socket = value(),
            "--secret" => args.secret = Some(value()),
            "--expect-pid1" => pid1 = Some(value() == "yes"),
            "--end" => {
                end = Some(match value().as_str() {
                    "debug-exit" => End::DebugExit,
                    "destroy-sandbox" => End::DestroySandbox,
                    _ => usage(),
                })
            }
            "--timeout-s" => args.timeout = Duration::from_secs(value().parse().unwrap_or_else(|_| usage())),
            _ => usage(),
        }
    }
    match (args.socket.is_empty(), end, pid1) {
        (false, Some(end), Some(pid1)) => Args { end, expect_pid1: pid1, ..args },
        _ => usage(),
    }
}

struct Checks {
    failed: u32,
}

impl Checks {
    fn check(&mut self, name: &str, result: Result<String, String>) {
        match result {
            Ok(detail) => say(&format!("testkit: agent-check: PASS {name}: {detail}")),
            Err(why) => {
                self.failed += 1;
                say(&format!("testkit: agent-check: FAIL {name}: {why}"));
            }
        }
    }
}

/// One ttrpc call: the message as the request payload, the answer decoded.
fn call<Req: Message, Resp: Message + Default>(
    client: &ttrpc::Client,
    service: &str,
    method: &str,
    req: &Req,
) -> Result<Resp, String> {
    let request = ttrpc::Request {
        service: service.to_string(),
        method: method.to_string(),
        timeout_nano: i64::try_from(CALL_TIMEOUT.as_nanos()).unwrap_or(i64::MAX),
        payload: req.encode_to_vec(),
        ..Default::default()
    };
    let response = client.request(request).map_err(|e| format!("{service}/{method}: {e}"))?;
    Resp::decode(response.payload.as_slice()).map_err(|e| format!("{service}/{method}: undecodable answer: {e}"))
}

/// Waits for the socket to appear and accept a connection.
fn connect(socket: &str, timeout: Duration) -> Result<ttrpc::Client, String> {
    let start = Instant::now();
    let mut last = String::from("the socket never appeared");
    while start.elapsed() < timeout {
        if Path::new(socket).exists() {
            match ttrpc::Client::connect(&format!("unix://{socket}")) {
                Ok(c) => {
                    say(&format!(
                        "testkit: agent-check: connected to unix://{socket} after {} ms",
                        start.elapsed().as_millis()
                    ));
                    return Ok(c);
                }
                Err(e) => last = format!("connect: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("{socket}: {last} (waited {} s)", timeout.as_secs()))
}

/// "N bytes, sha256=HEX" of a delivered secret.
fn secret_digest(name: &str) -> Result<String, String> {
    let dir = std::env::var("CREDENTIALS_DIRECTORY").map_err(|_| "CREDENTIALS_DIRECTORY is not set".to_string())?;
    let path = Path::new(&dir).join(name);
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(format!("{} bytes, sha256={}", bytes.len(), ztinit_testkit::files::sha256_hex(&bytes)))
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|s| s.trim().to_string()).unwrap_or_default()
}

fn main() {
    let args = parse_args();
    let mut checks = Checks { failed: 0 };
    // SAFETY: a plain query.
    let agent_pid = unsafe { libc::getppid() };

    if let Some(name) = &args.secret {
        checks.check(&format!("secret {name}"), secret_digest(name));
    }

    match connect(&args.socket, args.timeout) {
        Err(e) => checks.check("connect", Err(e)),
        Ok(client) => {
            let parent = comm(agent_pid);
            checks.check(
                "agent process",
                match (parent == AGENT_COMM, agent_pid == 1, args.expect_pid1) {
                    (true, is1, want) if is1 == want => Ok(format!("pid {agent_pid} is {AGENT_COMM}")),
                    (true, _, want) => Err(format!("{AGENT_COMM} is pid {agent_pid}, expected PID 1: {want}")),
                    (false, _, _) => Err(format!("the parent, pid {agent_pid}, is {parent:?}, not {AGENT_COMM}")),
                },
            );

            let health: Result<HealthCheckResponse, String> =
                call(&client, HEALTH_SERVICE, "Check", &CheckRequest { service: String::new() });
            checks.check(
                "grpc.Health/Check",
                health.and_then(|h| match ServingStatus::try_from(h.status) {
                    Ok(ServingStatus::Serving) => Ok("SERVING".to_string()),
                    Ok(other) => Err(format!("status {}", other.proto_name())),
                    Err(_) => Err(format!("unknown status {}", h.status)),
                }),
            );

            let version: Result<VersionCheckResponse, String> =
                call(&client, HEALTH_SERVICE, "Version", &CheckRequest { service: String::new() });
            checks.check(
                "grpc.Health/Version",
                version.and_then(|v| {
                    if v.agent_version.is_empty() {
                        Err("empty agent_version".to_string())
                    } else {
                        Ok(format!("agent_version {} grpc_version {}", v.agent_version, v.grpc_version))
                    }
                }),
            );

            let details: Result<GuestDetailsResponse, String> = call(
                &client,
                AGENT_SERVICE,
                "GetGuestDetails",
                &GuestDetailsRequest { mem_block_size: false, mem_hotplug_probe: false },
            );
            checks.check(
                "grpc.AgentService/GetGuestDetails",
                details.and_then(|d| {
                    let a = d.agent_details.ok_or("no agent_details")?;
                    let line = format!(
                        "version {} init_daemon {} storage_handlers [{}] extra_features [{}] supports_seccomp {}",
                        a.version,
                        a.init_daemon,
                        a.storage_handlers.join(","),
                        a.extra_features.join(","),
                        a.supports_seccomp
                    );
                    if a.init_daemon == args.expect_pid1 {
                        Ok(line)
                    } else {
                        Err(format!("{line}; expected init_daemon {}", args.expect_pid1))
                    }
                }),
            );

            if args.end == End::DestroySandbox && checks.failed == 0 {
                let r: Result<Empty, String> =
                    call(&client, AGENT_SERVICE, "DestroySandbox", &DestroySandboxRequest {});
                checks.check("grpc.AgentService/DestroySandbox", r.map(|_| "the agent shuts down".to_string()));
            }
        }
    }

    say(&format!("testkit: agent-check: {} checks failed", checks.failed));
    match args.end {
        End::DebugExit => debug_exit(if checks.failed == 0 { PASS_VALUE } else { FAIL_VALUE }),
        End::DestroySandbox if checks.failed == 0 => {}
        End::DestroySandbox => {
            say(&format!("testkit: agent-check: killing the agent (pid {agent_pid}) with SIGKILL"));
            // SAFETY: signals our parent, the agent.
            unsafe { libc::kill(agent_pid, libc::SIGKILL) };
        }
    }
}

fn debug_exit(value: u8) -> ! {
    // SAFETY: ioperm only changes this process's I/O permission bitmap.
    if unsafe { libc::ioperm(libc::c_ulong::from(DEBUG_EXIT_PORT), 1, 1) } != 0 {
        say(&format!("testkit: agent-check: FAIL ioperm(0xf4): {}", std::io::Error::last_os_error()));
        std::process::exit(1);
    }
    say(&format!("testkit: agent-check: writing {value} to isa-debug-exit"));
    // SAFETY: TCSBRK with a non-zero argument is tcdrain on fd 1, so the
    // console has sent everything before the VM ends.
    unsafe { libc::ioctl(1, libc::TCSBRK, 1) };
    // SAFETY: the port was granted above; QEMU's isa-debug-exit device at
    // this port ends the VM.
    unsafe {
        std::arch::asm!("out dx, al", in("dx") DEBUG_EXIT_PORT, in("al") value, options(nomem, nostack, preserves_flags));
    }
    // QEMU 10 ends the VM from its main loop after the write, not in it:
    // this vCPU runs on meanwhile, so wait before calling it a failure.
    std::thread::sleep(std::time::Duration::from_secs(10));
    say("testkit: agent-check: FAIL isa-debug-exit did not end the VM");
    std::process::exit(1);
}
