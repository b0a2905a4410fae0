//! `cargo xtask`: build, image and test tooling for ztinit.
//!
//! Each subcommand lives in its own module and takes the remaining
//! arguments; add a new one with one line in the match below.

mod model_volume;

use anyhow::Result;

fn usage() -> String {
    format!("usage: cargo xtask <command> [args]\ncommands:\n  {}", model_volume::USAGE)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = dispatch(&args) {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn dispatch(args: &[String]) -> Result<()> {
    let Some((command, rest)) = args.split_first() else {
        println!("{}", usage());
        return Ok(());
    };
    match command.as_str() {
        "model-volume" => model_volume::cmd(rest),
        "-h" | "--help" | "help" => {
            println!("{}", usage());
            Ok(())
        }
        other => anyhow::bail!("unknown command {other:?}\n{}", usage()),
    }
}
