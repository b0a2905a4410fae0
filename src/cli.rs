//! The operator's command line: what `ztinit` does when it is not PID 1.
//! Touches nothing on the system.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{self, Config, RootFiles};
use crate::tee::initdata::Initdata;
use crate::version;

/// Not PID 1: a tool for operators. Touches nothing on the system.
///
/// Exit status: 0 `ok`, version or help; 1 the configuration has problems
/// or cannot be read; 2 bad arguments (the message names the argument and
/// the usage follows). Parsed by hand: two options do not pay for a parser
/// crate in the PID 1 binary.
pub fn run(args: Vec<String>) -> ExitCode {
    let Some((first, rest)) = args.split_first() else {
        println!("{}", version::line());
        return ExitCode::SUCCESS;
    };
    if let (Some(extra), "--version" | "-V" | "--help" | "-h") = (rest.first(), first.as_str()) {
        return usage_error(&format!("unexpected argument {extra:?} after {first}"), USAGE);
    }
    match first.as_str() {
        "--version" | "-V" => {
            println!("{}", version::line());
            ExitCode::SUCCESS
        }
        "--help" | "-h" => {
            println!("{}\n\n{USAGE}", version::line());
            ExitCode::SUCCESS
        }
        "check-config" => match CheckArgs::parse(rest) {
            Ok(Some(a)) => check_config(&a),
            Ok(None) => {
                println!("{CHECK_CONFIG_USAGE}");
                ExitCode::SUCCESS
            }
            Err(e) => usage_error(&e.to_string(), CHECK_CONFIG_USAGE),
        },
        other if other.starts_with('-') => usage_error(&format!("unknown option {other:?}"), USAGE),
        other => usage_error(&format!("unknown subcommand {other:?}"), USAGE),
    }
}

fn usage_error(message: &str, usage: &str) -> ExitCode {
    eprintln!("ztinit: {message}\n{usage}");
    ExitCode::from(2)
}

const USAGE: &str = "usage: ztinit [--version | --help]
       ztinit check-config FILE [--root DIR] [--initdata DOCUMENT]   (check-config --help)

As PID 1, ztinit boots the guest from /etc/ztinit.toml. Run by hand it only
prints its version, or validates a configuration.
Exit status: 0 ok, 1 problems found (check-config), 2 bad arguments.";

const CHECK_CONFIG_USAGE: &str = "usage: ztinit check-config FILE [--root DIR] [--initdata DOCUMENT]

Prints `ok`, or every problem as FILE:LINE: KEY: MESSAGE and exits 1. With
--root, files the configuration references are checked inside DIR (the
image's staging tree); without it they are checked for form only. With
--initdata, the document's \"ztinit.toml\" entry is applied as at boot: a
key initdata may not set is refused. After `ok` it lists each way the
configuration confines the workload less than the default (`weakening:
KEY: ...`) and the keys initdata may set. Exit status: 0 ok, 1 problems found, 2 bad arguments.";

struct CheckArgs<'a> {
    file: &'a str,
    root: Option<&'a str>,
    initdata: Option<&'a str>,
}

impl<'a> CheckArgs<'a> {
    /// `Ok(None)`: `--help`. The error names the argument at fault.
    fn parse(args: &'a [String]) -> Result<Option<Self>, UsageError> {
        let (mut file, mut root, mut initdata) = (None, None, None);
        let mut it = args.iter().map(String::as_str);
        let mut options = true;
        while let Some(arg) = it.next() {
            if options && arg.starts_with('-') && arg.len() > 1 {
                // `--root DIR` or `--root=DIR`
                let (name, inline) = match arg.split_once('=') {
                    Some((n, v)) => (n, Some(v)),
                    None => (arg, None),
                };
                let slot = match name {
                    "--help" | "-h" if inline.is_none() => return Ok(None),
                    "--" if inline.is_none() => {
                        options = false;
                        continue;
                    }
                    "--root" => &mut root,
                    "--initdata" => &mut initdata,
                    _ => return Err(UsageError::UnknownOption(arg.to_string())),
                };
                let value = inline.or_else(|| it.next()).ok_or_else(|| UsageError::NeedsValue(name.to_string()))?;
                if slot.replace(value).is_some() {
                    return Err(UsageError::Twice(name.to_string()));
                }
            } else if file.replace(arg).is_some() {
                return Err(UsageError::ExtraFile(arg.to_string()));
            }
        }
        let file = file.ok_or(UsageError::NoFile)?;
        Ok(Some(CheckArgs { file, root, initdata }))
    }
}

/// What is wrong with `check-config`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum UsageError {
    #[error("unknown option {0:?}")]
    UnknownOption(String),
    #[error("{0} needs a value")]
    NeedsValue(String),
    #[error("{0} given twice")]
    Twice(String),
    #[error("unexpected argument {0:?} (one FILE only)")]
    ExtraFile(String),
    #[error("FILE is missing")]
    NoFile,
}

/// A file given on the command line that cannot be read as text.
#[derive(Debug, thiserror::Error)]
enum ReadTextError {
    #[error("{file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: not valid UTF-8")]
    Utf8 {
        file: String,
        #[source]
        source: std::string::FromUtf8Error,
    },
}

fn read_text(file: &str) -> Result<String, ReadTextError> {
    let bytes = config::read_capped(Path::new(file), config::MAX_CONFIG_BYTES)
        .map_err(|source| ReadTextError::Read { file: file.to_string(), source })?;
    String::from_utf8(bytes).map_err(|source| ReadTextError::Utf8 { file: file.to_string(), source })
}

fn check_config(args: &CheckArgs<'_>) -> ExitCode {
    let file = args.file;
    let text = match read_text(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let root_files;
    let files: &dyn config::Files = match args.root {
        Some(r) => {
            root_files = RootFiles::new(r);
            &root_files
        }
        None => &config::NoFiles,
    };
    let sources = || config::Sources { origin: file, text: &text, cmdline: None, files };
    let loaded = Config::load(sources()).and_then(|baked| match args.initdata {
        None => Ok(baked),
        Some(doc) => with_initdata(sources(), &baked, doc),
    });
    match loaded {
        Ok(c) => {
            println!("ok");
            for line in config::weakenings(&c) {
                println!("{line}");
            }
            let opened = c.tee.as_ref().map(|t| t.initdata_keys.join(", ")).unwrap_or_default();
            if opened.is_empty() {
                println!("initdata may set: nothing (tee.initdata_keys is empty)");
            } else {
                println!("initdata may set: {opened}");
            }
            println!("keys tee.initdata_keys may open: {}", config::overlay::settable_list());
            ExitCode::SUCCESS
        }
        Err(e) => {
            for line in e.issues() {
                println!("{line}");
            }
            ExitCode::FAILURE
        }
    }
}

/// The baked configuration with an initdata document applied, as at boot
/// (without the binding to the launch, which needs the TEE).
fn with_initdata(src: config::Sources<'_>, baked: &Config, doc: &str) -> Result<Config, config::ConfigError> {
    let invalid = |message: String| {
        config::ConfigError::Invalid(vec![config::Issue {
            origin: config::Origin::Initdata,
            line: None,
            key: String::new(),
            message,
        }])
    };
    let text = read_text(doc).map_err(|e| invalid(e.to_string()))?;
    let doc = Initdata::parse(text.into_bytes()).map_err(|e| invalid(format!("{doc}: {e}")))?;
    let Some(overlay) = doc.overlay().map_err(|e| invalid(e.to_string()))? else {
        return Ok(baked.clone());
    };
    let mut table = config::parse_table(src.origin, src.text)?;
    let keys = config::overlay::apply(&mut table, overlay, baked).map_err(config::ConfigError::Invalid)?;
    println!("initdata sets: {}", if keys.is_empty() { "nothing".to_string() } else { keys.join(", ") });
    Config::from_table_with_initdata(src, table, &keys)
}
