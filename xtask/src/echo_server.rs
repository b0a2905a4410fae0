//! `xtask echo-server 127.0.0.1:PORT` (hidden): a host service for the
//! `network` e2e scenario. Per connection it reads to EOF and answers
//! `echo: <what it read>`, then closes.

use std::io::{Read, Write};
use std::net::TcpListener;

use anyhow::{Context, Result, bail};

pub fn cmd(args: &[String]) -> Result<()> {
    let [addr] = args else {
        bail!("usage: xtask echo-server HOST:PORT");
    };
    let listener = TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    println!("echo-server: listening on {addr}");
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let mut buf = Vec::new();
        if (&conn).take(64 << 10).read_to_end(&mut buf).is_ok() {
            let text = String::from_utf8_lossy(&buf);
            println!("echo-server: got {:?}", text.trim());
            let _ = (&conn).write_all(format!("echo: {text}").as_bytes());
        }
    }
    Ok(())
}
