//! Minimal flag parsing for the two binaries (`--name value` or
//! `--name=value`, each with an environment variable fallback). A
//! hand-written parser keeps this example free of a CLI dependency.

use std::collections::HashMap;

/// A flag the binary accepts.
pub struct Flag {
    pub name: &'static str,
    pub env: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

/// Why parsing stopped without values.
#[derive(Debug, PartialEq, Eq)]
pub enum CliError {
    /// `-h` / `--help`: print usage, exit 0.
    Help,
    /// Bad input: print the message and usage, exit 2.
    Invalid(String),
}

/// Resolves every flag: command line first, then its environment variable,
/// then its default. `env` is a parameter so that tests need not touch the
/// process environment.
pub fn parse(
    args: impl IntoIterator<Item = String>,
    flags: &[Flag],
    env: impl Fn(&str) -> Option<String>,
) -> Result<HashMap<&'static str, String>, CliError> {
    let mut given: HashMap<&'static str, String> = HashMap::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Err(CliError::Help);
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (arg.clone(), None),
        };
        let flag = flags
            .iter()
            .find(|f| name.strip_prefix("--") == Some(f.name))
            .ok_or_else(|| CliError::Invalid(format!("unknown argument: {arg}")))?;
        let value = match inline {
            Some(value) => value,
            None => args
                .next()
                .ok_or_else(|| CliError::Invalid(format!("--{} needs a value", flag.name)))?,
        };
        given.insert(flag.name, value);
    }
    Ok(flags
        .iter()
        .map(|f| {
            let value = given
                .remove(f.name)
                .or_else(|| env(f.env).filter(|v| !v.is_empty()))
                .unwrap_or_else(|| f.default.to_string());
            (f.name, value)
        })
        .collect())
}

/// The usage text for `--help` and errors.
/// Parses the process's arguments and environment for a binary: on `--help` prints the
/// usage and asks to exit 0, on a bad flag prints the error and the usage and asks to exit 2.
pub fn parse_process(
    program: &str,
    about: &str,
    flags: &'static [Flag],
) -> Result<HashMap<&'static str, String>, std::process::ExitCode> {
    match parse(std::env::args().skip(1), flags, |name| {
        std::env::var(name).ok()
    }) {
        Ok(values) => Ok(values),
        Err(CliError::Help) => {
            print!("{}", usage(program, about, flags));
            Err(std::process::ExitCode::SUCCESS)
        }
        Err(CliError::Invalid(message)) => {
            eprintln!("{program}: {message}\n\n{}", usage(program, about, flags));
            Err(std::process::ExitCode::from(2))
        }
    }
}

pub fn usage(program: &str, about: &str, flags: &[Flag]) -> String {
    let mut text = format!("{about}\n\nUsage: {program}");
    for f in flags {
        text.push_str(&format!(" [--{} <{}>]", f.name, f.name.to_uppercase()));
    }
    text.push_str("\n\nOptions:\n");
    for f in flags {
        text.push_str(&format!(
            "  --{:<8} {} (env {}, default {})\n",
            f.name, f.help, f.env, f.default
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: &[Flag] = &[
        Flag {
            name: "listen",
            env: "T_LISTEN",
            default: "127.0.0.1:1",
            help: "",
        },
        Flag {
            name: "out",
            env: "T_OUT",
            default: "x.ndjson",
            help: "",
        },
    ];

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_then_env_then_default() {
        let env = |name: &str| (name == "T_OUT").then(|| "env.ndjson".to_string());
        let got = parse(args(&["--listen", "127.0.0.1:9"]), FLAGS, env).unwrap();
        assert_eq!(got["listen"], "127.0.0.1:9");
        assert_eq!(got["out"], "env.ndjson");
        let got = parse(args(&["--out=/tmp/a"]), FLAGS, |_| None).unwrap();
        assert_eq!(got["out"], "/tmp/a");
        assert_eq!(got["listen"], "127.0.0.1:1");
    }

    #[test]
    fn errors_and_help() {
        assert_eq!(
            parse(args(&["--help"]), FLAGS, |_| None),
            Err(CliError::Help)
        );
        assert!(matches!(
            parse(args(&["--nope", "1"]), FLAGS, |_| None),
            Err(CliError::Invalid(_))
        ));
        assert!(matches!(
            parse(args(&["--out"]), FLAGS, |_| None),
            Err(CliError::Invalid(_))
        ));
        assert!(usage("p", "about", FLAGS).contains("--listen"));
    }
}
