//! Talks to the host service the harness forwards to 10.0.2.100:8080:
//! sends one line, half-closes, prints the reply up to EOF. Exits 0 only if
//! the reply echoes the line (checks networking, the forward and EOF).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use ztinit_testkit::say;

const SERVER: &str = "10.0.2.100:8080";
const LINE: &str = "hello from the guest";

fn main() {
    match exchange() {
        Ok(reply) if reply.contains(LINE) => {
            say(&format!("testkit: net-echo: reply: {}", reply.trim()));
            std::process::exit(0);
        }
        Ok(reply) => {
            say(&format!("testkit: net-echo: FAILED: unexpected reply {reply:?}"));
            std::process::exit(1);
        }
        Err(e) => {
            say(&format!("testkit: net-echo: FAILED: {e}"));
            std::process::exit(2);
        }
    }
}

fn exchange() -> std::io::Result<String> {
    let addr = SERVER.parse().map_err(std::io::Error::other)?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("{LINE}\n").as_bytes())?;
    s.shutdown(Shutdown::Write)?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    Ok(reply)
}
