//! `xtask relay HOST:PORT` (hidden): joins stdin/stdout to a TCP
//! connection. QEMU's `guestfwd=...-cmd:` starts one per guest connection
//! with the guest socket as stdin/stdout, so the guest gets a real
//! connection to a host loopback service, EOF included (the chardev form of
//! guestfwd is one persistent stream without EOF).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

use anyhow::Result;

use crate::cli;

pub fn cmd(args: &[String]) -> Result<()> {
    let mut addr = None;
    let mut p = cli::Args::new(args, "usage: cargo xtask relay HOST:PORT   (started by QEMU's guestfwd)");
    while let Some(arg) = p.next()? {
        match arg {
            cli::Value(a) if addr.is_none() => addr = Some(cli::string(a, "usage: cargo xtask relay HOST:PORT")?),
            cli::Short('h') | cli::Long("help") => return p.help(),
            other => {
                let e = other.unexpected();
                return Err(p.error(e));
            }
        }
    }
    let Some(addr) = addr else { return Err(p.error("HOST:PORT is required")) };
    watch_owner();
    // libslirp hands the guest connection to us as stdin, stdout and
    // stderr, so a message would reach the guest: fail silently instead
    // (the guest sees the connection close).
    let Ok(stream) = TcpStream::connect(addr) else {
        std::process::exit(1);
    };
    // Requests and answers are small writes: Nagle's algorithm would hold
    // each behind the peer's delayed ACK (tens of ms a round trip).
    let _ = stream.set_nodelay(true);
    // libslirp joins the guest connection to us through a loopback TCP
    // socket as stdin/stdout. Its end has Nagle's algorithm on, so it holds
    // the guest's next bytes until we ACK the previous ones, and a delayed
    // ACK costs 40 ms: ACK at once (TCP_QUICKACK, which the kernel clears,
    // so after every read). Our own writes to it go out at once (NODELAY).
    tcp_option(1, libc::TCP_NODELAY);
    let mut to_server = stream.try_clone()?;
    let upstream = std::thread::spawn(move || {
        let mut stdin = QuickAck(std::io::stdin().lock());
        let _ = copy(&mut stdin, &mut to_server);
        // The guest finished sending: pass the half-close on.
        let _ = to_server.shutdown(Shutdown::Write);
    });
    let mut from_server = stream;
    let mut stdout = std::io::stdout().lock();
    let _ = copy(&mut from_server, &mut stdout);
    // The server closed: exiting closes our end, and the guest sees EOF.
    drop(upstream);
    Ok(())
}

/// Sets a TCP option to 1 on `fd`; on a descriptor that is not a TCP
/// socket (a relay started by hand) it only fails.
fn tcp_option(fd: libc::c_int, option: libc::c_int) {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt(2) with a valid pointer to an int and its size.
    let _ = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            option,
            (&raw const one).cast(),
            libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4),
        )
    };
}

/// Standard input that asks for an immediate ACK after every read.
struct QuickAck<R>(R);

impl<R: Read> Read for QuickAck<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        tcp_option(0, libc::TCP_QUICKACK);
        Ok(n)
    }
}

/// The environment variable naming the xtask process the relay belongs to.
pub const OWNER_VAR: &str = "ZTINIT_RELAY_OWNER";

/// Ends the relay when the xtask that started its QEMU is gone. libslirp
/// starts each relay in a session of its own and its intermediate parent
/// exits (the relay's parent is init from the start), so neither QEMU's
/// process group nor `PR_SET_PDEATHSIG` reaches it; and once QEMU is gone
/// the relay would otherwise wait on the server for as long as that lives.
fn watch_owner() {
    let Some(owner) = std::env::var(OWNER_VAR).ok().and_then(|v| v.parse::<libc::pid_t>().ok()) else { return };
    std::thread::spawn(move || {
        loop {
            // SAFETY: signal 0 only checks that the process exists.
            if unsafe { libc::kill(owner, 0) } != 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
            {
                std::process::exit(1);
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    });
}

fn copy(from: &mut impl Read, to: &mut impl Write) -> std::io::Result<()> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n])?;
        to.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// The relay's copy loop over real sockets: request, half-close, reply, EOF.
    #[test]
    fn copy_moves_bytes_until_eof() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            s.read_to_end(&mut req).unwrap();
            s.write_all(b"got:").unwrap();
            s.write_all(&req).unwrap();
        });
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        let mut input: &[u8] = b"ping";
        super::copy(&mut input, &mut client).unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = Vec::new();
        super::copy(&mut client, &mut out).unwrap();
        server.join().unwrap();
        assert_eq!(out, b"got:ping");
    }
}
