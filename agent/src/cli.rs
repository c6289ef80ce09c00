//! The command line. Every mistake is one line that names the flag.

use std::path::PathBuf;

pub const USAGE: &str = "\
usage: usage-agent [--wasm PATH] [--config FILE] (--follow FILE [--state FILE] | --listen ADDR)
                   [--cluster NAME=HOST:PORT|NAME=kafka://HOST:PORT[,…]/TOPIC[?compression=C]]... [--metrics ADDR] [--env NAME[=VALUE]]...
                   [--dead-letter FILE]
                   [--listen-http ADDR [--listen-http-remote] [--listen-http-max-bytes N]]
       (--listen-http alone: a Kafka REST endpoint for Envoy's filter, no log read, no filter run)";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub wasm: PathBuf,
    pub config: Option<PathBuf>,
    pub follow: Option<PathBuf>,
    pub state: Option<PathBuf>,
    pub listen: Option<String>,
    /// `http.cluster` names and the `host:port` each stands for.
    pub clusters: Vec<(String, String)>,
    pub metrics: Option<String>,
    /// The VM's environment.
    pub env: Vec<(String, String)>,
    /// Where refused batches are kept.
    pub dead_letter: Option<PathBuf>,
    /// `kafka-rest` POSTs are taken here and produced to the `kafka://` clusters.
    pub listen_http: Option<String>,
    /// `--listen-http` may bind an address that is not loopback.
    pub listen_http_remote: bool,
    /// The largest body `--listen-http` takes (decompressed).
    pub listen_http_max_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            wasm: PathBuf::from("dist/usage_filter.wasm"),
            config: None,
            follow: None,
            state: None,
            listen: None,
            clusters: Vec::new(),
            metrics: None,
            env: Vec::new(),
            dead_letter: None,
            listen_http: None,
            listen_http_remote: false,
            listen_http_max_bytes: crate::rest_proxy::DEFAULT_MAX_BODY,
        }
    }
}

/// What the command line asked for: run, or print the usage.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Run(Box<Options>),
    Help,
}

fn once(flag: &str, given: bool) -> Result<(), String> {
    if given {
        return Err(format!("{flag}: given twice"));
    }
    Ok(())
}

fn host_port(v: &str) -> bool {
    match v.rsplit_once(':') {
        Some((h, p)) => !h.is_empty() && p.parse::<u16>().is_ok(),
        None => false,
    }
}

/// Parses the arguments (without the program name). `getenv` answers `--env NAME`.
pub fn parse(args: &[String], getenv: &dyn Fn(&str) -> Option<String>) -> Result<Parsed, String> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        if flag == "--help" || flag == "-h" {
            return Ok(Parsed::Help);
        }
        if flag == "--listen-http-remote" {
            if inline.is_some() {
                return Err(format!("{flag}: takes no value"));
            }
            o.listen_http_remote = true;
            continue;
        }
        let known = [
            "--wasm",
            "--config",
            "--follow",
            "--state",
            "--listen",
            "--cluster",
            "--metrics",
            "--env",
            "--dead-letter",
            "--listen-http",
            "--listen-http-max-bytes",
        ];
        if !known.contains(&flag) {
            return Err(format!("{flag}: unknown flag"));
        }
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .filter(|v| !v.starts_with("--"))
                .cloned()
                .ok_or_else(|| format!("{flag}: needs a value"))?,
        };
        if value.is_empty() {
            return Err(format!("{flag}: needs a value"));
        }
        match flag {
            "--wasm" => o.wasm = PathBuf::from(value),
            "--config" => {
                once(flag, o.config.is_some())?;
                o.config = Some(PathBuf::from(value));
            }
            "--follow" => {
                once(flag, o.follow.is_some())?;
                o.follow = Some(PathBuf::from(value));
            }
            "--state" => {
                once(flag, o.state.is_some())?;
                o.state = Some(PathBuf::from(value));
            }
            "--listen" => {
                once(flag, o.listen.is_some())?;
                if !host_port(&value) {
                    return Err(format!("--listen {value}: expected HOST:PORT"));
                }
                o.listen = Some(value);
            }
            "--listen-http" => {
                once(flag, o.listen_http.is_some())?;
                if !host_port(&value) {
                    return Err(format!("--listen-http {value}: expected HOST:PORT"));
                }
                o.listen_http = Some(value);
            }
            "--listen-http-max-bytes" => match value.parse::<usize>() {
                Ok(n) if (1024..=1 << 30).contains(&n) => o.listen_http_max_bytes = n,
                _ => {
                    return Err(format!(
                        "--listen-http-max-bytes {value}: a number of bytes from 1024 to 1073741824"
                    ))
                }
            },
            "--metrics" => {
                once(flag, o.metrics.is_some())?;
                if !host_port(&value) {
                    return Err(format!("--metrics {value}: expected HOST:PORT"));
                }
                o.metrics = Some(value);
            }
            "--dead-letter" => {
                once(flag, o.dead_letter.is_some())?;
                o.dead_letter = Some(PathBuf::from(value));
            }
            "--cluster" => {
                let Some((name, addr)) = value.split_once('=') else {
                    return Err(format!("--cluster {value}: expected NAME=HOST:PORT"));
                };
                match crate::kafka::parse_url(addr) {
                    Some(Err(e)) => return Err(format!("--cluster {value}: {e}")),
                    Some(Ok(_)) if !name.is_empty() => {}
                    _ if name.is_empty() || !host_port(addr) => {
                        return Err(format!("--cluster {value}: expected NAME=HOST:PORT"));
                    }
                    _ => {}
                }
                if o.clusters.iter().any(|(n, _)| n == name) {
                    return Err(format!("--cluster {name}: given twice"));
                }
                o.clusters.push((name.to_string(), addr.to_string()));
            }
            "--env" => {
                let (name, v) = match value.split_once('=') {
                    Some((n, v)) => (n.to_string(), v.to_string()),
                    None => {
                        let v = getenv(&value).ok_or_else(|| {
                            format!("--env {value}: not set in the agent's environment")
                        })?;
                        (value.clone(), v)
                    }
                };
                if name.is_empty() {
                    return Err(format!("--env {value}: expected NAME or NAME=VALUE"));
                }
                o.env.retain(|(n, _)| *n != name);
                o.env.push((name, v));
            }
            _ => unreachable!(),
        }
    }
    if o.follow.is_none() && o.listen.is_none() && o.listen_http.is_none() {
        return Err(
            "--follow, --listen or --listen-http: one is needed (where the entries or the \
             records come from)"
                .into(),
        );
    }
    if o.listen_http.is_some() && !o.clusters.iter().any(|(_, a)| a.starts_with("kafka://")) {
        return Err(
            "--listen-http: needs a --cluster NAME=kafka://… (where the records go)".into(),
        );
    }
    if o.listen_http.is_none()
        && (o.listen_http_remote || o.listen_http_max_bytes != crate::rest_proxy::DEFAULT_MAX_BODY)
    {
        return Err(
            "--listen-http-remote, --listen-http-max-bytes: only with --listen-http".into(),
        );
    }
    if o.follow.is_none() && o.listen.is_none() {
        // --listen-http alone: what only the filter uses would be ignored.
        let unused = [
            ("--config", o.config.is_some()),
            ("--dead-letter", o.dead_letter.is_some()),
            ("--env", !o.env.is_empty()),
        ];
        if let Some((flag, _)) = unused.iter().find(|(_, given)| *given) {
            return Err(format!(
                "{flag}: only with --follow or --listen (--listen-http alone runs no filter)"
            ));
        }
    }
    if o.state.is_some() && o.follow.is_none() {
        return Err("--state: only with --follow".into());
    }
    Ok(Parsed::Run(Box::new(o)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn run(s: &str) -> Result<Options, String> {
        let env = |n: &str| (n == "TOKEN").then(|| "Bearer t".to_string());
        match parse(&args(s), &env)? {
            Parsed::Run(o) => Ok(*o),
            Parsed::Help => Err("help".into()),
        }
    }

    #[test]
    fn every_flag() {
        let o = run(
            "--wasm f.wasm --config c.json --follow /var/log/a.log --state s.json \
                     --cluster collector=127.0.0.1:18080 --cluster=other=localhost:1 \
                     --cluster k=kafka://a:9092,b:9092/usage?compression=zstd \
                     --metrics 127.0.0.1:9100 --env TOKEN --env ENABLE_EVENT_STREAMING=true \
                     --dead-letter refused.jsonl",
        )
        .unwrap();
        assert_eq!(o.wasm, PathBuf::from("f.wasm"));
        assert_eq!(o.config, Some(PathBuf::from("c.json")));
        assert_eq!(o.state, Some(PathBuf::from("s.json")));
        assert_eq!(
            o.clusters,
            vec![
                ("collector".into(), "127.0.0.1:18080".into()),
                ("other".into(), "localhost:1".into()),
                (
                    "k".into(),
                    "kafka://a:9092,b:9092/usage?compression=zstd".into()
                )
            ]
        );
        assert_eq!(o.metrics.as_deref(), Some("127.0.0.1:9100"));
        assert_eq!(o.dead_letter, Some(PathBuf::from("refused.jsonl")));
        assert_eq!(
            o.env,
            vec![
                ("TOKEN".into(), "Bearer t".into()),
                ("ENABLE_EVENT_STREAMING".into(), "true".into())
            ]
        );
    }

    #[test]
    fn listen_http() {
        let o = run("--listen-http 127.0.0.1:8082 --cluster k=kafka://h:1/usage").unwrap();
        assert_eq!(o.listen_http.as_deref(), Some("127.0.0.1:8082"));
        assert!(!o.listen_http_remote);
        assert_eq!(o.listen_http_max_bytes, crate::rest_proxy::DEFAULT_MAX_BODY);
        assert!(o.follow.is_none() && o.listen.is_none());
        let o = run(
            "--listen-http-remote --listen-http 0.0.0.0:8082 --cluster k=kafka://h:1/usage \
             --listen-http-max-bytes 1048576",
        )
        .unwrap();
        assert!(o.listen_http_remote);
        assert_eq!(o.listen_http_max_bytes, 1 << 20);
    }

    #[test]
    fn defaults() {
        let o = run("--listen 127.0.0.1:5140").unwrap();
        assert_eq!(o.wasm, PathBuf::from("dist/usage_filter.wasm"));
        assert_eq!(o.listen.as_deref(), Some("127.0.0.1:5140"));
        assert!(o.config.is_none() && o.clusters.is_empty());
    }

    #[test]
    fn each_mistake_names_its_flag() {
        for (line, flag) in [
            ("--follow a --bogus 1", "--bogus"),
            ("--follow a --cluster collector", "--cluster"),
            ("--follow a --cluster =1.2.3.4:5", "--cluster"),
            ("--follow a --cluster c=host:notaport", "--cluster"),
            (
                "--follow a --cluster k=kafka://h:1/t?compression=x",
                "--cluster",
            ),
            ("--follow a --cluster =kafka://h:1/t", "--cluster"),
            ("--follow a --listen nowhere", "--listen"),
            ("--follow a --metrics", "--metrics"),
            ("--follow a --env MISSING", "--env"),
            ("--follow a --follow b", "--follow"),
            (
                "--follow a --dead-letter x --dead-letter y",
                "--dead-letter",
            ),
            ("--config c.json", "--follow, --listen or --listen-http"),
            ("--listen-http 127.0.0.1:1", "--listen-http"),
            (
                "--listen-http nowhere --cluster k=kafka://h:1/t",
                "--listen-http",
            ),
            (
                "--listen-http 127.0.0.1:1 --cluster c=h:1",
                "--listen-http: needs a --cluster NAME=kafka",
            ),
            ("--follow a --listen-http-remote", "--listen-http-remote"),
            (
                "--listen-http 127.0.0.1:1 --cluster k=kafka://h:1/t --config c.json",
                "--config: only with --follow or --listen",
            ),
            (
                "--listen-http 127.0.0.1:1 --cluster k=kafka://h:1/t --env A=1",
                "--env: only with --follow or --listen",
            ),
            (
                "--listen-http 127.0.0.1:1 --cluster k=kafka://h:1/t --listen-http-max-bytes 1k",
                "--listen-http-max-bytes",
            ),
            (
                "--listen-http 127.0.0.1:1 --cluster k=kafka://h:1/t --listen-http-remote=yes",
                "--listen-http-remote",
            ),
            ("--listen 1.2.3.4:5 --state s", "--state"),
            ("--follow a --wasm --state s", "--wasm"),
        ] {
            let e = run(line).unwrap_err();
            assert!(e.starts_with(flag), "{line}: {e}");
            assert!(!e.contains('\n'));
        }
    }
}
