//! `xtask echo-server 127.0.0.1:PORT` (hidden): a host service for the
//! `network` e2e scenario. Per connection it reads to EOF and answers
//! `echo: <what it read>`, then closes.

use std::io::{Read, Write};
use std::net::TcpListener;

use anyhow::{Context, Result};

use crate::cli;

pub fn cmd(args: &[String]) -> Result<()> {
    const USAGE: &str = "usage: cargo xtask echo-server HOST:PORT   (the `network` scenario's host service)";
    let mut addr = None;
    let mut p = cli::Args::new(args, USAGE);
    while let Some(arg) = p.next()? {
        match arg {
            cli::Value(a) if addr.is_none() => addr = Some(cli::string(a, USAGE)?),
            cli::Short('h') | cli::Long("help") => return p.help(),
            other => {
                let e = other.unexpected();
                return Err(p.error(e));
            }
        }
    }
    let Some(addr) = addr else { return Err(p.error("HOST:PORT is required")) };
    let addr = addr.as_str();
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
