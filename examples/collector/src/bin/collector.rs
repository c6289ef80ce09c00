//! `collector`: receives usage batches and appends the events to a file.
//!
//! ```text
//! collector --listen 127.0.0.1:18080 --out ./events.ndjson
//! ```

use std::process::ExitCode;

use tokio::net::TcpListener;
use usage_collector::cli::{self, Flag};
use usage_collector::store::Store;

const FLAGS: &[Flag] = &[
    Flag {
        name: "listen",
        env: "COLLECTOR_LISTEN",
        default: "127.0.0.1:18080",
        help: "address to listen on",
    },
    Flag {
        name: "out",
        env: "COLLECTOR_OUT",
        default: "./events.ndjson",
        help: "NDJSON file new events are appended to",
    },
    Flag {
        name: "require-auth",
        env: "COLLECTOR_REQUIRE_AUTH",
        default: "",
        help: "answer 401 unless a batch's Authorization header is exactly this",
    },
];

const ABOUT: &str = "Reference receiver for usage-filter batches.";

#[tokio::main]
async fn main() -> ExitCode {
    let values = match cli::parse_process("collector", ABOUT, FLAGS) {
        Ok(values) => values,
        Err(code) => return code,
    };
    let (listen, out) = (&values["listen"], &values["out"]);
    let require_auth = Some(values["require-auth"].clone()).filter(|v| !v.is_empty());

    let store = match Store::open(out) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("collector: cannot open {out}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind(listen.as_str()).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("collector: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Print the bound address, so `--listen 127.0.0.1:0` tells the real port.
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| listen.clone());
    eprintln!("collector listening on {addr}, appending to {out}");

    usage_collector::run_collector_with(
        listener,
        store,
        require_auth,
        usage_collector::http::shutdown_signal(),
    )
    .await;
    ExitCode::SUCCESS
}
