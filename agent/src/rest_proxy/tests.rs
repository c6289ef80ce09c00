use super::*;

fn head(text: &str) -> Head {
    parse_head(text.replace('\n', "\r\n").as_bytes()).unwrap()
}

const GOOD: &str = "POST /topics/usage HTTP/1.1\nhost: kafka\n\
    content-type: application/vnd.kafka.json.v2+json\ncontent-length: 10\n\
    x-usage-batch-id: 0190ab12-cd34-7ef0-8123-456789abcdef";

#[test]
fn a_kafka_rest_post_is_routed_to_its_topic() {
    let h = head(GOOD);
    assert_eq!(h.header("host"), Some("kafka"));
    let p = route(&h, &["usage", "other"], 100).unwrap();
    assert_eq!(
        p,
        Produce {
            topic: "usage".into(),
            length: Length::Fixed(10),
            gzip: false,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            keep_alive: true,
            expect_continue: false,
        }
    );
    let h = head(
        "POST /topics/usage?x=1 HTTP/1.1\nContent-Type: Application/VND.kafka.json.v2+json; charset=utf-8\n\
         Transfer-Encoding: chunked\nContent-Encoding: gzip\nConnection: close\n\
         x-envoy-expected-rq-timeout-ms: 2000",
    );
    let p = route(&h, &["usage"], 100).unwrap();
    assert_eq!(p.length, Length::Chunked);
    assert!(p.gzip && !p.keep_alive);
    assert_eq!(p.timeout_ms, 2000);
}

#[test]
fn everything_else_is_refused_with_a_status_that_says_why() {
    let good = GOOD.to_string();
    for (text, status, says) in [
        (good.replace("/topics/usage", "/topics/nope"), 404, "usage"),
        (
            good.replace("/topics/usage", "/api/v1/usage/events"),
            404,
            "/topics/TOPIC",
        ),
        (good.replace("/topics/usage", "/topics/"), 404, "TOPIC"),
        (good.replace("POST", "GET"), 405, "only POST"),
        (
            good.replace("vnd.kafka.json.v2+json", "json"),
            415,
            "kafka-rest",
        ),
        (
            good.replace("content-type: application/vnd.kafka.json.v2+json\n", ""),
            415,
            "content-type",
        ),
        (
            good.replace("content-length: 10", "content-length: 101"),
            413,
            "at most 100",
        ),
        (
            good.replace("content-length: 10", "content-length: ten"),
            400,
            "content-length",
        ),
        (
            good.replace("content-length: 10", "x: y"),
            411,
            "content-length",
        ),
        (
            good.replace("content-length: 10", "transfer-encoding: gzip"),
            501,
            "gzip",
        ),
        (
            good.replace(
                "content-length: 10",
                "content-length: 10\ncontent-encoding: br",
            ),
            415,
            "br",
        ),
    ] {
        let e = route(&head(&text), &["usage"], 100).unwrap_err();
        assert_eq!(e.status, status, "{text}: {e:?}");
        assert!(e.why.contains(says), "{text}: {e:?}");
    }
    for (text, status) in [
        ("POST /topics/usage HTTP/2", 505),
        ("POST /topics/usage", 400),
        ("POST  /topics/usage HTTP/1.1", 400),
        ("POST /topics/usage HTTP/1.1\r\nno colon", 400),
        ("POST /topics/usage HTTP/1.1\r\nbad name: x", 400),
    ] {
        assert_eq!(
            parse_head(text.as_bytes()).unwrap_err().status,
            status,
            "{text}"
        );
    }
    assert_eq!(parse_head(b"\xff\xfe").unwrap_err().status, 400);
}

#[test]
fn only_loopback_unless_allowed() {
    let a = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert!(check_bind("x", &[a("127.0.0.1:1"), a("[::1]:1")], false).is_ok());
    let e = check_bind("0.0.0.0:8080", &[a("0.0.0.0:8080")], false).unwrap_err();
    assert!(
        e.starts_with("--listen-http 0.0.0.0:8080: 0.0.0.0 is not a loopback"),
        "{e}"
    );
    assert!(e.contains("--listen-http-remote"), "{e}");
    assert!(check_bind("h:1", &[a("127.0.0.1:1"), a("10.0.0.1:1")], false).is_err());
    assert!(check_bind("0.0.0.0:8080", &[a("0.0.0.0:8080")], true).is_ok());
    assert!(check_bind("h:1", &[], true).is_err());
}

#[test]
fn chunked_bodies() {
    let mut r = &b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT"[..];
    assert_eq!(read_chunked(&mut r, 100).unwrap(), b"hello world");
    assert_eq!(r, b"NEXT");
    let mut r = &b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"[..];
    assert_eq!(read_chunked(&mut r, 10).unwrap_err().status, 413);
    for broken in [
        &b"5\r\nhel"[..],
        b"zz\r\nhello\r\n",
        b"5\r\nhelloXX0\r\n\r\n",
        b"5",
    ] {
        let mut r = broken;
        assert_eq!(read_chunked(&mut r, 100).unwrap_err().status, 400);
    }
}

#[test]
fn gzip_is_inflated_within_the_limit() {
    use flate2::{write::GzEncoder, Compression};
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(&[b'x'; 1000]).unwrap();
    let z = e.finish().unwrap();
    assert_eq!(decode(z.clone(), true, 1000).unwrap(), vec![b'x'; 1000]);
    // A small body that inflates past the limit (a gzip bomb) is refused.
    assert_eq!(decode(z, true, 999).unwrap_err().status, 413);
    assert_eq!(
        decode(b"not gzip".to_vec(), true, 99).unwrap_err().status,
        400
    );
    assert_eq!(decode(b"plain".to_vec(), false, 99).unwrap(), b"plain");
}

#[test]
fn heads_are_read_to_their_empty_line_and_bounded() {
    let mut r = &b"\r\nPOST / HTTP/1.1\r\na: b\r\n\r\nbody"[..];
    assert_eq!(
        read_head(&mut r).unwrap().unwrap(),
        b"POST / HTTP/1.1\r\na: b\r\n"
    );
    assert_eq!(r, b"body");
    let mut r = &b""[..];
    assert_eq!(read_head(&mut r).unwrap(), None);
    let mut r = &b"POST / HTTP/1.1\r\na: b"[..];
    assert_eq!(read_head(&mut r).unwrap_err().status, 400);
    let long = format!("POST / HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(MAX_HEAD));
    let mut r = long.as_bytes();
    assert_eq!(read_head(&mut r).unwrap_err().status, 431);
}

/// A request over TCP to a listener whose only topic `usage` goes to a broker that is not
/// there: (status line, body).
fn post(addr: SocketAddr, req: &[u8]) -> (String, String) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(req).unwrap();
    let mut got = String::new();
    c.read_to_string(&mut got).unwrap();
    let (head, body) = got.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

fn listener() -> SocketAddr {
    let t = crate::kafka::parse_url("kafka://127.0.0.1:1/usage")
        .unwrap()
        .unwrap();
    let sinks = HashMap::from([("usage".to_string(), Arc::new(Sink::new("k", t)))]);
    start("127.0.0.1:0", false, sinks, 4096).unwrap().0
}

fn request(extra: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /topics/usage HTTP/1.1\r\ncontent-type: {CONTENT_TYPE}\r\n{extra}\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn over_tcp_a_body_that_is_not_kafka_rest_is_refused_with_400() {
    let addr = listener();
    let (status, body) = post(addr, &request("", r#"{"events":[{"id":"x"}]}"#));
    assert_eq!(status, "HTTP/1.1 400 Bad Request");
    assert!(body.contains("not kafka-rest"), "{body}");
    let (status, body) = post(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    assert!(body.contains("/topics/TOPIC"), "{body}");
    let big = "x".repeat(5000);
    let (status, _) = post(addr, &request("", &big));
    assert_eq!(status, "HTTP/1.1 413 Content Too Large");
}

#[test]
fn over_tcp_records_no_broker_acknowledged_get_a_retryable_status_by_the_deadline() {
    let addr = listener();
    let t0 = std::time::Instant::now();
    let (status, body) = post(
        addr,
        &request(
            "x-envoy-expected-rq-timeout-ms: 1000\r\n",
            r#"{"records":[{"key":"org-1","value":{"id":"x"}}]}"#,
        ),
    );
    let took = t0.elapsed();
    assert!(
        status == "HTTP/1.1 503 Service Unavailable" || status == "HTTP/1.1 504 Gateway Timeout",
        "{status} {body}"
    );
    assert!(body.contains("kafka"), "{body}");
    assert!(took < Duration::from_millis(3000), "{took:?}");
}
