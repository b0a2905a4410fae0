//! Argument parsing shared by every command (lexopt): `-h`/`--help` prints
//! the command's usage on stdout and succeeds; anything else that does not
//! fit names the argument and shows the usage, and makes xtask exit 2
//! ([`UsageError`]).

use std::ffi::OsString;
use std::str::FromStr;

pub use lexopt::Arg;
pub use lexopt::prelude::{Long, Short, Value};

/// Bad command-line arguments: xtask exits 2 (other failures exit 1).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A usage error with the usage text appended.
pub fn usage_error(message: impl std::fmt::Display, usage: &str) -> anyhow::Error {
    anyhow::Error::new(UsageError(format!("{message}\n{usage}")))
}

/// The arguments of one command.
pub struct Args {
    parser: lexopt::Parser,
    usage: &'static str,
}

impl Args {
    pub fn new(args: &[String], usage: &'static str) -> Self {
        Args { parser: lexopt::Parser::from_args(args.iter().cloned()), usage }
    }

    fn wrap(&self, e: lexopt::Error) -> anyhow::Error {
        usage_error(e, self.usage)
    }

    pub fn next(&mut self) -> anyhow::Result<Option<Arg<'_>>> {
        match self.parser.next() {
            Ok(a) => Ok(a),
            Err(e) => Err(usage_error(e, self.usage)),
        }
    }

    /// The value of the option just returned by [`Args::next`].
    pub fn value(&mut self) -> anyhow::Result<OsString> {
        self.parser.value().map_err(|e| self.wrap(e))
    }

    pub fn string(&mut self) -> anyhow::Result<String> {
        let v = self.value()?;
        v.into_string().map_err(|v| usage_error(format!("{v:?} is not valid UTF-8"), self.usage))
    }

    /// The value parsed as `T`; the error names the option.
    pub fn parse<T: FromStr>(&mut self, option: &str) -> anyhow::Result<T>
    where
        T::Err: std::fmt::Display,
    {
        let v = self.string()?;
        v.parse().map_err(|e| usage_error(format!("{option} {v:?}: {e}"), self.usage))
    }

    /// `-h`/`--help`: prints the usage; the command then returns `Ok`.
    pub fn help(&self) -> anyhow::Result<()> {
        println!("{}", self.usage);
        Ok(())
    }

    /// A usage error about a value or a missing option.
    pub fn error(&self, message: impl std::fmt::Display) -> anyhow::Error {
        usage_error(message, self.usage)
    }
}

/// Into a `String`, or a usage error naming the non-UTF-8 value.
pub fn string(v: OsString, usage: &str) -> anyhow::Result<String> {
    v.into_string().map_err(|v| usage_error(format!("{v:?} is not valid UTF-8"), usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn unknown_options_and_missing_values_name_the_option_and_show_the_usage() {
        let a = args(&["--bogus"]);
        let mut p = Args::new(&a, "usage: x [--n N]");
        let arg = p.next().unwrap().unwrap();
        let e = arg.unexpected();
        let e = p.error(e);
        assert!(e.to_string().contains("--bogus") && e.to_string().contains("usage: x"), "{e}");
        assert!(e.downcast_ref::<UsageError>().is_some());
        let a = args(&["--n"]);
        let mut p = Args::new(&a, "usage: x [--n N]");
        assert_eq!(p.next().unwrap(), Some(Long("n")));
        let e = p.parse::<u32>("--n").unwrap_err().to_string();
        assert!(e.contains("--n") && e.contains("usage: x"), "{e}");
        let a = args(&["--n=x"]);
        let mut p = Args::new(&a, "usage: x [--n N]");
        p.next().unwrap();
        let e = p.parse::<u32>("--n").unwrap_err().to_string();
        assert!(e.contains("--n \"x\""), "{e}");
    }
}
