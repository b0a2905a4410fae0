//! `xtask relay HOST:PORT` (hidden): joins stdin/stdout to a TCP
//! connection. QEMU's `guestfwd=...-cmd:` starts one per guest connection
//! with the guest socket as stdin/stdout, so the guest gets a real
//! connection to a host loopback service, EOF included (the chardev form of
//! guestfwd is one persistent stream without EOF).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

use anyhow::{Result, bail};

pub fn cmd(args: &[String]) -> Result<()> {
    let [addr] = args else {
        bail!("usage: xtask relay HOST:PORT");
    };
    // libslirp hands the guest connection to us as stdin, stdout and
    // stderr, so a message would reach the guest: fail silently instead
    // (the guest sees the connection close).
    let Ok(stream) = TcpStream::connect(addr) else {
        std::process::exit(1);
    };
    let mut to_server = stream.try_clone()?;
    let upstream = std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
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
