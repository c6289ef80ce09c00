//! End-to-end tests: real servers on ephemeral loopback ports, spoken to with
//! hand-written HTTP/1.1 over `std::net::TcpStream`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use usage_collector::store::Store;

// ---------------------------------------------------------------- helpers

/// A server running on its own runtime thread; stops when dropped.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn collector(out: &PathBuf) -> Server {
        let store = Store::open(out).unwrap();
        Server::start(move |listener, stop| {
            Box::pin(usage_collector::run_collector(listener, store, stop))
        })
    }

    fn upstream() -> Server {
        Server::start(|listener, stop| Box::pin(usage_collector::run_upstream(listener, stop)))
    }

    fn start<F>(run: F) -> Server
    where
        F: FnOnce(
                tokio::net::TcpListener,
                std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
            ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
            + Send
            + 'static,
    {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let stop = Box::pin(async move {
                    let _ = stop_rx.await;
                });
                run(listener, stop).await;
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Server {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[derive(Debug)]
struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Conn {
            reader: BufReader::new(stream),
        }
    }

    fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: collector\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let stream = self.reader.get_mut();
        stream.write_all(request.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
    }

    /// Reads one response (Content-Length framed; `head` for HEAD requests).
    /// `None` if the server closed the connection without answering.
    fn read(&mut self, head: bool) -> Option<HttpResponse> {
        let mut status_line = String::new();
        match self.reader.read_line(&mut status_line) {
            Ok(0) => return None,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
            Err(e) => panic!("reading status line: {e}"),
            Ok(_) => {}
        }
        let status = status_line
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        let mut response = HttpResponse {
            status,
            headers,
            body: Vec::new(),
        };
        let length: usize = response
            .header("content-length")
            .map(|v| v.parse().unwrap())
            .unwrap_or(0);
        if !head {
            response.body.resize(length, 0);
            self.reader.read_exact(&mut response.body).unwrap();
        }
        Some(response)
    }

    fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        self.send(method, path, headers, body);
        self.read(method == "HEAD").expect("a response")
    }
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    Conn::open(addr).request(method, path, headers, body)
}

fn post_batch(addr: SocketAddr, content_type: &str, batch_id: &str, body: &[u8]) -> HttpResponse {
    request(
        addr,
        "POST",
        "/api/v1/usage/events",
        &[
            ("Content-Type", content_type),
            ("x-usage-batch-id", batch_id),
        ],
        body,
    )
}

/// A deterministic UUID that carries a short test name in its last group.
fn uid(name: &str) -> String {
    let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
    format!("00000000-0000-7000-8000-{hex:0>12}")
}

fn event(name: &str) -> Value {
    json!({
        "id": uid(name), "api_path": "/v1/things", "subscription_key": "sk_live_1", "method": "GET",
        "response_time_ms": 12, "status_code": 200, "success": true,
        "timestamp": "2024-01-01T00:00:00Z", "request_size": 0, "response_size": 16,
        "extra": {"kept": true}
    })
}

fn out_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("usage-collector-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

fn file_events(path: &PathBuf) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

// ------------------------------------------------------------------ tests

#[test]
fn collector_accepts_every_format_and_deduplicates() {
    let out = out_file("formats.ndjson");
    let server = Server::collector(&out);
    let addr = server.addr;

    assert_eq!(request(addr, "GET", "/healthz", &[], b"").body, b"ok");

    // Veil JSON: two valid events and one invalid.
    let body = json!({"events": [event("a"), event("b"), {"id": uid("broken")}]}).to_string();
    let res = post_batch(
        addr,
        "application/json; charset=utf-8",
        "batch-1",
        body.as_bytes(),
    );
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert_eq!(
        String::from_utf8(res.body).unwrap(),
        r#"{"success":true,"processed":2,"errors":1}"#
    );
    // Written byte-for-byte, readable right after the 200.
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text, format!("{}\n{}\n", event("a"), event("b")));

    // Gzipped NDJSON, with a blank line.
    let ndjson = format!("{}\n\n{}\n", event("c"), event("d"));
    let res = request(
        addr,
        "POST",
        "/api/v1/usage/events",
        &[
            ("Content-Type", "application/x-ndjson"),
            ("Content-Encoding", "gzip"),
            ("x-usage-batch-id", "batch-2"),
        ],
        &gzip(ndjson.as_bytes()),
    );
    assert_eq!(
        res.json(),
        json!({"success": true, "processed": 2, "errors": 0})
    );

    // CloudEvents: the `data` is stored, an invalid CE counts as an error.
    let body = json!([
        {"specversion": "1.0", "id": "ce-1", "source": "usage-filter", "type": "usage", "data": event("e")},
        {"specversion": "1.0", "id": "ce-2", "source": "usage-filter", "type": "", "data": event("f")}
    ])
    .to_string();
    let res = post_batch(
        addr,
        "application/cloudevents-batch+json",
        "batch-3",
        body.as_bytes(),
    );
    assert_eq!(
        res.json(),
        json!({"success": true, "processed": 1, "errors": 1})
    );

    // Kafka REST: the `value` is stored.
    let body = json!({"records": [{"key": "sk_live_1", "value": event("g")}]}).to_string();
    let res = post_batch(
        addr,
        "application/vnd.kafka.json.v2+json",
        "batch-4",
        body.as_bytes(),
    );
    assert_eq!(
        res.json(),
        json!({"success": true, "processed": 1, "errors": 0})
    );

    // A retry of batch-1 (lost response): processed again, nothing new written.
    let body = json!({"events": [event("a"), event("b")]}).to_string();
    let res = post_batch(addr, "application/json", "batch-1", body.as_bytes());
    assert_eq!(
        res.json(),
        json!({"success": true, "processed": 2, "errors": 0})
    );

    // Empty and undecodable batches.
    let res = post_batch(addr, "application/json", "batch-5", br#"{"events":[]}"#);
    assert_eq!(res.status, 400);
    assert_eq!(res.json(), json!({"success": false, "error": "no events"}));
    let res = post_batch(addr, "application/json", "batch-6", b"{oops");
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["success"], json!(false));
    assert!(res.json()["error"]
        .as_str()
        .unwrap()
        .contains("invalid JSON"));
    let res = post_batch(addr, "text/plain", "batch-7", b"[]");
    assert_eq!(res.status, 400);

    let ids: Vec<_> = file_events(&out)
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let names: Vec<_> = ["a", "b", "c", "d", "e", "g"].map(uid).to_vec();
    assert_eq!(ids, names);
    assert_eq!(
        request(addr, "GET", "/stats", &[], b"").json(),
        json!({"batches": 5, "events": 6, "invalid_events": 2, "rejected_batches": 3,
               "duplicate_batches": 1, "duplicate_events": 2, "faulted_batches": 0,
               "batches_without_id": 0})
    );

    // Reset empties everything; the same events are new again.
    assert_eq!(request(addr, "POST", "/reset", &[], b"").status, 200);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "");
    let res = post_batch(addr, "application/json", "batch-1", body.as_bytes());
    assert_eq!(
        res.json(),
        json!({"success": true, "processed": 2, "errors": 0})
    );
    assert_eq!(file_events(&out).len(), 2);
    let stats = request(addr, "GET", "/stats", &[], b"").json();
    assert_eq!(
        (stats["batches"].clone(), stats["duplicate_batches"].clone()),
        (json!(1), json!(0))
    );

    // Wrong methods.
    assert_eq!(
        request(addr, "GET", "/api/v1/usage/events", &[], b"").status,
        405
    );
    assert_eq!(request(addr, "POST", "/stats", &[], b"").status, 405);
}

#[test]
fn collector_faults() {
    let out = out_file("faults.ndjson");
    let server = Server::collector(&out);
    let addr = server.addr;
    let batch = json!([event("x")]).to_string();

    // Status fault with Retry-After, for two batches, then normal service.
    let res = request(
        addr,
        "POST",
        "/faults",
        &[],
        br#"{"status": 503, "count": 2, "retry_after": 2}"#,
    );
    assert_eq!(
        res.json(),
        json!({"faults": [{"status": 503, "retry_after": 2, "count": 2}]})
    );
    for _ in 0..2 {
        let res = post_batch(addr, "application/json", "f-1", batch.as_bytes());
        assert_eq!(res.status, 503);
        assert_eq!(res.header("retry-after"), Some("2"));
    }
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "",
        "faulted batches are not processed"
    );
    assert_eq!(
        post_batch(addr, "application/json", "f-1", batch.as_bytes()).status,
        200
    );

    // Close: the connection ends without a status line; the next batch works.
    request(addr, "POST", "/faults", &[], br#"{"close": true}"#);
    let mut conn = Conn::open(addr);
    conn.send(
        "POST",
        "/api/v1/usage/events",
        &[("Content-Type", "application/json")],
        batch.as_bytes(),
    );
    assert!(
        conn.read(false).is_none(),
        "expected the connection to be closed without a response"
    );
    assert_eq!(
        post_batch(addr, "application/json", "f-2", batch.as_bytes()).status,
        200
    );

    // Delay: answered normally, but late.
    request(addr, "POST", "/faults", &[], br#"{"delay_ms": 300}"#);
    let started = Instant::now();
    assert_eq!(
        post_batch(addr, "application/json", "f-3", batch.as_bytes()).status,
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    // count -1 lasts until DELETE; control endpoints are never faulted.
    request(
        addr,
        "POST",
        "/faults",
        &[],
        br#"{"status": 500, "count": -1}"#,
    );
    for _ in 0..3 {
        assert_eq!(
            post_batch(addr, "application/json", "f-4", batch.as_bytes()).status,
            500
        );
    }
    assert_eq!(
        request(addr, "GET", "/faults", &[], b"").json(),
        json!({"faults": [{"status": 500, "count": -1}]})
    );
    assert_eq!(
        request(addr, "DELETE", "/faults", &[], b"").json(),
        json!({"faults": []})
    );
    assert_eq!(
        post_batch(addr, "application/json", "f-4", batch.as_bytes()).status,
        200
    );

    // Nonsense faults are refused.
    assert_eq!(
        request(addr, "POST", "/faults", &[], br#"{"count": 2}"#).status,
        400
    );
    assert_eq!(request(addr, "POST", "/faults", &[], b"nope").status, 400);

    let stats = request(addr, "GET", "/stats", &[], b"").json();
    assert_eq!(stats["faulted_batches"], json!(7));
    assert_eq!(stats["events"], json!(1));
    assert_eq!(stats["duplicate_events"], json!(3));
    assert_eq!(stats["duplicate_batches"], json!(0));
}

#[test]
fn upstream_answers_as_asked_with_keep_alive() {
    let server = Server::upstream();
    let mut conn = Conn::open(server.addr);

    let res = conn.request("GET", "/anything", &[], b"");
    assert_eq!(
        (res.status, res.body.as_slice()),
        (200, b"xxxxxxxxxxxxxxxx".as_slice())
    );
    assert_eq!(res.header("content-type"), Some("text/plain"));

    // Same connection: a body is drained, status and size follow the query.
    let res = conn.request(
        "POST",
        "/v1/items?status=201&bytes=100000",
        &[],
        &vec![b'y'; 200_000],
    );
    assert_eq!(res.status, 201);
    assert_eq!(res.body.len(), 100_000);

    let res = conn.request("DELETE", "/v1/items/1?status=204&bytes=50", &[], b"");
    assert_eq!(res.status, 204);
    assert!(res.body.is_empty() && res.header("content-length").is_none());

    let res = conn.request("GET", "/x?status=304", &[], b"");
    assert_eq!(res.status, 304);
    let res = conn.request("GET", "/x?status=404&bytes=0", &[], b"");
    assert_eq!((res.status, res.body.len()), (404, 0));
    let res = conn.request("HEAD", "/x?bytes=5", &[], b"");
    assert_eq!((res.status, res.header("content-length")), (200, Some("5")));

    let started = Instant::now();
    assert_eq!(
        conn.request("GET", "/slow?delay_ms=200", &[], b"").status,
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(200));

    assert_eq!(conn.request("GET", "/x?status=abc", &[], b"").status, 400);

    // Many requests on one connection stay quick.
    let started = Instant::now();
    for _ in 0..500 {
        assert_eq!(conn.request("GET", "/fast", &[], b"").status, 200);
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

// ------------------------------------------------ the binaries themselves

/// Starts a binary with `--listen 127.0.0.1:0` and reads the bound address
/// from its startup line.
/// A child process that is killed if the test panics before `terminate` takes it.
struct Spawned(Option<Child>);

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(bin: &str, args: &[&str], prefix: &str) -> (Spawned, SocketAddr, String) {
    let mut child = Command::new(bin)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    stderr.read_line(&mut line).unwrap();
    // Keep reading what it logs later, or its next line would hit a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let rest = line
        .trim_end()
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("unexpected startup line {line:?}"));
    let addr = rest.split(',').next().unwrap().parse().unwrap();
    (Spawned(Some(child)), addr, line)
}

fn terminate(mut spawned: Spawned) {
    let mut child = spawned.0.take().expect("a running child");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("no exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20)); // poll: until exit or the deadline
    }
}

#[test]
fn collector_binary_serves_and_exits_on_sigterm() {
    let out = out_file("binary.ndjson");
    let out_arg = out.to_str().unwrap();
    let (child, addr, line) = spawn(
        env!("CARGO_BIN_EXE_collector"),
        &["--out", out_arg],
        "collector listening on ",
    );
    assert!(
        line.trim_end()
            .ends_with(&format!(", appending to {out_arg}")),
        "{line:?}"
    );

    let body = json!({"events": [event("bin-1")]}).to_string();
    let res = post_batch(addr, "application/json", "bin-batch", body.as_bytes());
    assert_eq!(
        res.json(),
        json!({"success": true, "processed": 1, "errors": 0})
    );
    assert_eq!(file_events(&out), vec![event("bin-1")]);

    // An idle keep-alive connection must not hold up shutdown.
    let _idle = Conn::open(addr);
    terminate(child);
}

#[test]
fn upstream_binary_serves_and_exits_on_sigterm() {
    let (child, addr, _) = spawn(
        env!("CARGO_BIN_EXE_demo-upstream"),
        &[],
        "demo-upstream listening on ",
    );
    let res = request(addr, "GET", "/?bytes=3&status=202", &[], b"");
    assert_eq!((res.status, res.body.as_slice()), (202, b"xxx".as_slice()));
    terminate(child);
}

// ------------------------- what docs/delivery.md (Guarantees) promises the collector does

#[test]
fn concurrent_retries_of_one_batch_write_it_once() {
    let out = out_file("concurrent.ndjson");
    let server = Server::collector(&out);
    let addr = server.addr;
    let names: Vec<String> = (0..50).map(|i| format!("c{i}")).collect();
    let body = json!({"events": names.iter().map(|n| event(n)).collect::<Vec<_>>()}).to_string();
    // 16 copies of the same batch at once, as retries racing a slow first answer would be.
    let answers: Vec<HttpResponse> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| {
                s.spawn(|| post_batch(addr, "application/json", "same-batch", body.as_bytes()))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for res in &answers {
        assert_eq!(
            res.json(),
            json!({"success": true, "processed": 50, "errors": 0}),
            "every copy is acknowledged, so none is retried again"
        );
    }
    assert_eq!(file_events(&out).len(), 50, "the events are written once");
    let stats = request(addr, "GET", "/stats", &[], b"").json();
    assert_eq!(stats["events"], json!(50));
    assert_eq!(stats["duplicate_batches"], json!(15));
    assert_eq!(stats["duplicate_events"], json!(15 * 50));
    let attempts = request(addr, "GET", "/attempts", &[], b"").json();
    let attempts = attempts.as_array().unwrap();
    assert_eq!(attempts.len(), 16);
    let written: u64 = attempts
        .iter()
        .map(|a| a["new_events"].as_u64().unwrap())
        .sum();
    assert_eq!(written, 50);
    assert!(attempts
        .iter()
        .all(|a| a["batch_id"] == json!("same-batch") && a["status"] == json!(200)));
}

#[test]
fn a_replayed_batch_id_is_dropped_even_with_new_event_ids() {
    let out = out_file("replay.ndjson");
    let server = Server::collector(&out);
    let addr = server.addr;
    let first = json!({"events": [event("r1")]}).to_string();
    assert_eq!(
        post_batch(addr, "application/json", "b-r", first.as_bytes()).status,
        200
    );
    let changed = json!({"events": [event("r2")]}).to_string();
    let res = post_batch(addr, "application/json", "b-r", changed.as_bytes());
    assert_eq!(
        res.json(),
        json!({"success": true, "processed": 1, "errors": 0})
    );
    assert_eq!(file_events(&out), vec![event("r1")]);
}

#[test]
fn batches_without_an_id_are_deduplicated_by_event_id() {
    let out = out_file("noid.ndjson");
    let server = Server::collector(&out);
    let addr = server.addr;
    let body = json!({"events": [event("n1"), event("n2")]}).to_string();
    let headers = [("Content-Type", "application/json")];
    for _ in 0..3 {
        let res = request(
            addr,
            "POST",
            "/api/v1/usage/events",
            &headers,
            body.as_bytes(),
        );
        assert_eq!(
            res.json(),
            json!({"success": true, "processed": 2, "errors": 0})
        );
    }
    assert_eq!(file_events(&out), vec![event("n1"), event("n2")]);
    let stats = request(addr, "GET", "/stats", &[], b"").json();
    assert_eq!(stats["batches_without_id"], json!(3));
    assert_eq!(stats["duplicate_batches"], json!(0));
    assert_eq!(stats["duplicate_events"], json!(4));
    assert_eq!(
        request(addr, "GET", "/attempts", &[], b"").json()[0],
        json!({"batch_id": null, "status": 200, "events": 2, "new_events": 2})
    );
}

#[test]
fn size_limit_missing_content_type_and_bad_values_are_refused() {
    let out = out_file("limits.ndjson");
    let server = Server::collector(&out);
    let addr = server.addr;

    // One byte over MAX_BODY: 413, nothing stored, the batch id not remembered.
    let max = usage_collector::collector::MAX_BODY;
    let mut big = json!({"events": [event("big")]}).to_string().into_bytes();
    big.resize(max + 1, b' ');
    let res = post_batch(addr, "application/json", "b-big", &big);
    assert_eq!(res.status, 413);
    // Exactly MAX_BODY (the same event padded with JSON whitespace) is accepted.
    big.truncate(max);
    let res = post_batch(addr, "application/json", "b-big", &big);
    assert_eq!(
        res.json(),
        json!({"success": true, "processed": 1, "errors": 0})
    );

    // No Content-Type: refused, not guessed.
    let body = json!({"events": [event("ct")]}).to_string();
    let res = request(
        addr,
        "POST",
        "/api/v1/usage/events",
        &[("x-usage-batch-id", "b-ct")],
        body.as_bytes(),
    );
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["error"], json!("missing content-type"));

    // Values, not only types: each of these is an invalid event (counted, not stored).
    let mut bad = Vec::new();
    for (field, value) in [
        ("timestamp", json!("t")),
        ("id", json!("")),
        ("success", json!(false)),
    ] {
        let mut e = event("v");
        e[field] = value;
        bad.push(e);
    }
    let body = json!({ "events": bad }).to_string();
    let res = post_batch(addr, "application/json", "b-values", body.as_bytes());
    assert_eq!(
        res.json(),
        json!({"success": true, "processed": 0, "errors": 3})
    );

    assert_eq!(file_events(&out), vec![event("big")]);
    let attempts: Vec<(Value, Value)> = request(addr, "GET", "/attempts", &[], b"")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["batch_id"].clone(), a["status"].clone()))
        .collect();
    assert_eq!(
        attempts,
        [
            (json!("b-big"), json!(413)),
            (json!("b-big"), json!(200)),
            (json!("b-ct"), json!(400)),
            (json!("b-values"), json!(200)),
        ]
    );
}

#[test]
fn collector_binary_requires_the_authorization_it_was_given() {
    let out = out_file("auth.ndjson");
    let out_arg = out.to_str().unwrap();
    let (child, addr, _) = spawn(
        env!("CARGO_BIN_EXE_collector"),
        &["--out", out_arg, "--require-auth", "Bearer s3cret"],
        "collector listening on ",
    );
    let body = json!({"events": [event("au")]}).to_string();
    for auth in [None, Some("Bearer wrong"), Some("bearer s3cret")] {
        let mut headers = vec![
            ("Content-Type", "application/json"),
            ("x-usage-batch-id", "b-auth"),
        ];
        headers.extend(auth.map(|a| ("Authorization", a)));
        let res = request(
            addr,
            "POST",
            "/api/v1/usage/events",
            &headers,
            body.as_bytes(),
        );
        assert_eq!(res.status, 401, "{auth:?}");
    }
    let res = request(
        addr,
        "POST",
        "/api/v1/usage/events",
        &[
            ("Content-Type", "application/json"),
            ("x-usage-batch-id", "b-auth"),
            ("Authorization", "Bearer s3cret"),
        ],
        body.as_bytes(),
    );
    assert_eq!(
        res.json(),
        json!({"success": true, "processed": 1, "errors": 0})
    );
    assert_eq!(file_events(&out), vec![event("au")]);
    terminate(child);
}

#[test]
fn a_batch_holding_a_poisoned_path_is_refused_whole_until_cleared() {
    let out = out_file("poison.ndjson");
    let server = Server::collector(&out);
    let addr = server.addr;
    let res = request(
        addr,
        "POST",
        "/faults",
        &[],
        br#"{"reject_when_path_contains": "/poison"}"#,
    );
    assert_eq!(
        res.json(),
        json!({"faults": [], "reject_when_path_contains": "/poison"})
    );
    let mut bad = event("p");
    bad["api_path"] = json!("/v1/poison/1");
    let mixed = json!([event("a"), bad]).to_string();
    let res = post_batch(addr, "application/json", "p-1", mixed.as_bytes());
    assert_eq!(res.status, 400);
    assert!(
        std::fs::read_to_string(&out).unwrap().is_empty(),
        "nothing of a refused batch is stored"
    );
    let sound = json!([event("a")]).to_string();
    assert_eq!(
        post_batch(addr, "application/json", "p-2", sound.as_bytes()).status,
        200
    );
    request(addr, "DELETE", "/faults", &[], b"");
    assert_eq!(
        post_batch(
            addr,
            "application/json",
            "p-3",
            json!([bad]).to_string().as_bytes()
        )
        .status,
        200
    );
}
