//! `demo-upstream`: an API stand-in whose answers are chosen by the query
//! string (`status`, `bytes`, `delay_ms`).
//!
//! ```text
//! demo-upstream --listen 127.0.0.1:18081
//! curl -i 'http://127.0.0.1:18081/v1/anything?status=201&bytes=100&delay_ms=20'
//! ```

use std::process::ExitCode;

use tokio::net::TcpListener;
use usage_collector::cli::{self, Flag};

const FLAGS: &[Flag] = &[Flag {
    name: "listen",
    env: "UPSTREAM_LISTEN",
    default: "127.0.0.1:18081",
    help: "address to listen on",
}];

const ABOUT: &str = "Demo upstream API: ?status=200&bytes=16&delay_ms=0 choose the answer.";

#[tokio::main]
async fn main() -> ExitCode {
    let values = match cli::parse_process("demo-upstream", ABOUT, FLAGS) {
        Ok(values) => values,
        Err(code) => return code,
    };
    let listen = &values["listen"];
    let listener = match TcpListener::bind(listen.as_str()).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("demo-upstream: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| listen.clone());
    eprintln!("demo-upstream listening on {addr}");

    usage_collector::run_upstream(listener, usage_collector::http::shutdown_signal()).await;
    ExitCode::SUCCESS
}
