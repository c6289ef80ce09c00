//! `usage-agent`: runs the unchanged usage-filter `.wasm` beside Caddy. Each entry of
//! Caddy's JSON access log (followed from a file, or received over TCP from `output net`)
//! becomes one HTTP stream through the filter, on the same proxy-wasm host as the test
//! harness (`proxy-wasm-host`), with a real clock, real timers and real HTTP callouts.
//!
//! The main loop owns the VM (one thread, like an Envoy worker). It alternates
//! - a tick (real time), then the callout answers and timeouts that came in meanwhile,
//! - a group of log entries, until the next tick is due.
//!
//! No answer is fed to the VM inside a group, which is what lets `books` tell which
//! entries the filter dropped for a full buffer (see there).

mod agent;
mod answer;
mod books;
mod caddy_log;
mod callout;
mod cli;
mod clock;
mod dead_letter;
mod fingerprint;
mod follow;
mod ids;
mod kafka;
mod listen;
mod metrics;
mod rest_proxy;
mod rolled;
mod state;
mod tuning;

use agent::{level_name, Agent};
use books::Books;
use callout::Client;
use follow::Follower;
use ids::os_random_u64;
use proxy_wasm_host::{Profile, Vm};
use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tuning::{VM_CONFIG_FOLLOW, VM_CONFIG_LISTEN};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match cli::parse(&args, &|n| std::env::var(n).ok()) {
        Ok(cli::Parsed::Run(o)) => *o,
        Ok(cli::Parsed::Help) => {
            println!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("usage-agent: {e}");
            return ExitCode::from(2);
        }
    };
    match run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("usage-agent: {}", e.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// What the agent needs to know of the plugin configuration.
struct Settings {
    timeout_ms: u64,
    buffer_size: usize,
    batch_size: usize,
}

fn settings(config: &str) -> Settings {
    let v: serde_json::Value = serde_json::from_str(config).unwrap_or_default();
    let http = &v["http"];
    Settings {
        timeout_ms: http["timeout_ms"].as_u64().unwrap_or(5000),
        buffer_size: http["buffer_size"].as_u64().unwrap_or(10_000) as usize,
        batch_size: http["batch_size"].as_u64().unwrap_or(100) as usize,
    }
}

/// `--listen-http`: the `kafka://` clusters by topic, and the listener started on them.
fn start_rest_proxy(o: &cli::Options) -> Result<Option<Arc<rest_proxy::Counts>>, String> {
    let Some(addr) = &o.listen_http else {
        return Ok(None);
    };
    let mut sinks: HashMap<String, Arc<kafka::Sink>> = HashMap::new();
    for (name, url) in &o.clusters {
        let Some(Ok(t)) = kafka::parse_url(url) else {
            continue;
        };
        let topic = t.topic.clone();
        if sinks.contains_key(&topic) {
            return Err(format!(
                "--listen-http: topic {topic} is named by two --cluster kafka:// (POST /topics/{topic} must name one)"
            ));
        }
        sinks.insert(topic, Arc::new(kafka::Sink::new(name, t)));
    }
    let mut topics: Vec<&String> = sinks.keys().collect();
    topics.sort();
    let topics = topics
        .iter()
        .map(|t| format!("/topics/{t}"))
        .collect::<Vec<_>>()
        .join(", ");
    let (local, counts) =
        rest_proxy::start(addr, o.listen_http_remote, sinks, o.listen_http_max_bytes)?;
    eprintln!("usage-agent: kafka-rest on http://{local} ({topics})");
    Ok(Some(counts))
}

/// `--listen-http` alone: no filter runs; the listener serves until SIGTERM/SIGINT, then
/// the requests being answered are waited for (up to their deadline).
fn run_rest_proxy_only(o: &cli::Options, counts: Arc<rest_proxy::Counts>) -> Result<(), String> {
    let page = Arc::new(Mutex::new(rest_proxy::render(&counts)));
    if let Some(addr) = &o.metrics {
        let local =
            metrics::serve(addr, page.clone()).map_err(|e| format!("--metrics {addr}: {e}"))?;
        eprintln!("usage-agent: metrics at http://{local}/metrics");
    }
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, term.clone()).map_err(|e| format!("signals: {e}"))?;
    }
    while !term.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(mut p) = page.lock() {
            *p = rest_proxy::render(&counts);
        }
    }
    let limit = Duration::from_millis(rest_proxy::DEFAULT_TIMEOUT_MS as u64 + 1000);
    let until = Instant::now() + limit;
    eprintln!("usage-agent: stopping: waiting for the requests being answered");
    while counts.active.load(Ordering::Acquire) > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn run(o: cli::Options) -> Result<(), String> {
    let rest = start_rest_proxy(&o)?;
    if o.follow.is_none() && o.listen.is_none() {
        if let Some(counts) = rest {
            return run_rest_proxy_only(&o, counts);
        }
    }
    let config = match &o.config {
        Some(p) => {
            std::fs::read_to_string(p).map_err(|e| format!("--config {}: {e}", p.display()))?
        }
        None => "{}".to_string(),
    };
    if let Err(e) = std::fs::metadata(&o.wasm) {
        return Err(format!("--wasm {}: {e}", o.wasm.display()));
    }
    let names: Vec<String> = o.clusters.iter().map(|(n, _)| n.clone()).collect();
    let mut b = Vm::with_profile(Profile::Envoy)
        .wasm(&o.wasm)
        .fuel(false)
        .config_str(&config)
        .vm_config(if o.follow.is_some() {
            VM_CONFIG_FOLLOW.to_vec()
        } else {
            VM_CONFIG_LISTEN.to_vec()
        })
        .random_seed(os_random_u64())
        .log_level(2)
        .clusters_only(&names);
    for (k, v) in &o.env {
        b = b.env(k, v);
    }
    let mut vm = match b.start() {
        Ok(vm) => vm,
        Err(e) => {
            for l in e.logs.iter().filter(|l| l.level < 4) {
                eprintln!("[{}] {}", level_name(l.level), l.message);
            }
            // The filter names the refused key in an error line.
            let refused = e.logs.iter().rev().find(|l| l.level >= 4).map(|l| {
                l.message
                    .strip_prefix("usage-filter: ")
                    .unwrap_or(&l.message)
                    .to_string()
            });
            return Err(match refused {
                Some(m) => match &o.config {
                    Some(p) => format!("--config {}: {m}", p.display()),
                    None => format!("plugin configuration: {m}"),
                },
                None => format!("--wasm {}: {}", o.wasm.display(), e.message),
            });
        }
    };
    // The harness keeps every finished callout (and its body) for its tests; the agent
    // keeps none, or memory grows by a batch body per callout.
    vm.limit_history(0);
    let s = settings(&config);
    let saved = match &o.state {
        Some(p) => state::load(p).map_err(|e| format!("--state {}: {e}", p.display()))?,
        None => None,
    };
    let page = Arc::new(Mutex::new(String::new()));
    if let Some(addr) = &o.metrics {
        let local =
            metrics::serve(addr, page.clone()).map_err(|e| format!("--metrics {addr}: {e}"))?;
        eprintln!("usage-agent: metrics at http://{local}/metrics");
    }
    let listen = match &o.listen {
        Some(addr) => {
            let (tx, rx) = mpsc::sync_channel(listen::CHANNEL);
            let local = listen::start(addr, tx).map_err(|e| format!("--listen {addr}: {e}"))?;
            eprintln!("usage-agent: listening for log lines on {local}");
            Some(rx)
        }
        None => None,
    };
    let dead_letter = match &o.dead_letter {
        Some(p) => Some(
            dead_letter::DeadLetter::open(p)
                .map_err(|e| format!("--dead-letter {}: {e}", p.display()))?,
        ),
        None => None,
    };
    // Never taken for a log, whatever they are named.
    let exclude: Vec<_> = o
        .state
        .iter()
        .chain(o.dead_letter.iter())
        .cloned()
        .collect();
    let follower = o.follow.as_ref().map(|p| {
        eprintln!(
            "usage-agent: following {} and its rolled files",
            p.display()
        );
        Follower::new(p, saved, &exclude)
    });
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, term.clone()).map_err(|e| format!("signals: {e}"))?;
    }
    let (tx, answers) = mpsc::channel();
    let period_ms = vm.tick_period_ms() as u64;
    let mut a = Agent {
        vm,
        client: Client::new(&o.clusters, tx),
        answers,
        in_flight: HashMap::new(),
        // Beyond the filter's buffer (all it can hold) plus what is in the pipe.
        books: Books::new(s.buffer_size.saturating_mul(2) + 10_000),
        follower,
        listen,
        period: Duration::from_millis(if period_ms > 0 { period_ms } else { 100 }),
        timer: period_ms > 0,
        next_tick: Instant::now(),
        dropped_seen: 0,
        group_open: false,
        group_start: Instant::now(),
        counts: metrics::Agent::default(),
        malformed: BTreeMap::new(),
        state: o.state.clone(),
        saved: None,
        saved_at: Instant::now(),
        save_failed: false,
        page,
        salt: os_random_u64(),
        listen_seq: 0,
        saw_per_stream: false,
        warned_pooled: false,
        dead_letter,
        pause_at: s.buffer_size.saturating_sub(s.batch_size).max(1) as u64,
        held_at_tick: 0,
        made_since_tick: 0,
        answered_since_tick: false,
        paused: false,
        lost_entries: BTreeMap::new(),
        rest,
    };
    a.drain_logs();
    a.next_tick = Instant::now() + a.period;
    a.render();
    while !term.load(Ordering::Relaxed) {
        a.step()?;
    }
    eprintln!("usage-agent: stopping: flushing what the filter holds");
    a.shutdown(Duration::from_millis(s.timeout_ms + 1000))
}
