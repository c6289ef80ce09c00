//! The root context with a fake host: reconfiguration, refusals, shutdown, host-call budgets.
use super::*;
use crate::fake_host::FakeHost;

pub(super) fn configure(root: &mut Root, host: &FakeHost, json: &str) -> bool {
    host.set_config(json);
    root.on_configure(host, host.config_len())
}

/// One keyed GET through a new stream, as the host would drive it.
fn request(root: &Root, host: &FakeHost, path: &str) {
    let mut s = root.new_stream();
    host.set_header(Map::RequestHeaders, ":path", path.as_bytes());
    host.set_header(Map::RequestHeaders, ":method", b"GET");
    host.set_header(Map::RequestHeaders, "x-subscription-key", b"k");
    s.on_request_headers(host, false);
    host.advance_ms(3);
    host.set_header(Map::ResponseHeaders, ":status", b"200");
    s.on_response_headers(host);
    s.on_response_body(host, 10, true);
    s.finish(host);
}

fn answer(root: &mut Root, host: &FakeHost, token: u32, status: &[u8]) {
    host.set_header(Map::CallResponseHeaders, ":status", status);
    root.on_http_call_response(host, token, 1, 0);
    host.clear_headers(Map::CallResponseHeaders);
}

fn books(host: &FakeHost) {
    let m = |n: &str| host.metric(&format!("usage_filter.{n}"));
    assert_eq!(
        m("events_captured"),
        m("events_delivered")
            + m("events_dropped_buffer_full")
            + m("events_dropped_send_failed")
            + m("events_dropped_rejected")
            + m("buffer_events"),
        "{:?}",
        host.metrics.borrow()
    );
}

const HTTP: &str = r#"{"enabled":true,"sinks":["http"],"http":{"cluster":"c","batch_size":100,"flush_interval_ms":1000}}"#;

#[test]
fn a_reconfiguration_loses_nothing_the_old_configuration_held() {
    let host = FakeHost::default();
    let mut root = Root::default();
    assert!(configure(&mut root, &host, HTTP));
    for i in 0..5 {
        request(&root, &host, &format!("/v1/{i}"));
    }
    root.on_tick(&host);
    assert!(host.take_callouts().is_empty(), "not due yet");
    // A stream that began before the change finishes after it.
    let mut late = root.new_stream();
    host.set_header(Map::RequestHeaders, ":path", b"/late");
    late.on_request_headers(&host, false);
    let other = HTTP.replace("\"c\"", "\"d\"");
    assert!(configure(&mut root, &host, &other));
    late.finish(&host);
    drop(late);
    request(&root, &host, "/v1/new");
    root.on_tick(&host);
    let calls = host.take_callouts();
    let to_c: Vec<_> = calls.iter().filter(|(_, c)| c.upstream == "c").collect();
    assert_eq!(
        to_c.len(),
        1,
        "the old events go out at once, with the old cluster"
    );
    let body = String::from_utf8_lossy(&to_c[0].1.body).into_owned();
    assert_eq!(body.matches("\"api_path\"").count(), 6, "{body}");
    for (t, _) in &calls {
        answer(&mut root, &host, *t, b"200");
    }
    host.advance_ms(2000);
    root.on_tick(&host);
    let calls = host.take_callouts();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].1.upstream, "d");
    answer(&mut root, &host, calls[0].0, b"200");
    root.on_tick(&host);
    assert_eq!(host.metric("usage_filter.events_captured"), 7);
    assert_eq!(host.metric("usage_filter.events_delivered"), 7);
    assert!(
        root.retired.is_empty(),
        "the old delivery is gone once drained"
    );
    books(&host);
}

#[test]
fn configurations_replaced_again_and_again_hold_bounded_memory_and_keep_the_books() {
    let host = FakeHost::default();
    let mut root = Root::default();
    // a queue worker whose service never answers: its events cannot leave
    *host.refuse_enqueue.borrow_mut() = true;
    let worker = r#"{"enabled":true,"sinks":["http"],"http":{"cluster":"c","batch_size":2,"buffer_size":10},
                     "dispatcher":{"mode":"shared_queue"}}"#;
    for _ in 0..20 {
        assert!(configure(&mut root, &host, worker));
        for i in 0..3 {
            request(&root, &host, &format!("/{i}"));
        }
        root.on_tick(&host);
    }
    assert!(root.retired.len() <= MAX_RETIRED);
    assert!(root.held() <= (MAX_RETIRED + 1) * 10);
    assert_eq!(host.metric("usage_filter.events_captured"), 60);
    books(&host);
}

#[test]
fn a_configuration_given_up_still_books_its_batches_in_flight_as_their_answers_say() {
    let host = FakeHost::default();
    let mut root = Root::default();
    let one = r#"{"enabled":true,"sinks":["http"],"http":{"cluster":"c","batch_size":1}}"#;
    let mut tokens = Vec::new();
    // Each configuration sends one event and is replaced before its callout is answered.
    for i in 0..MAX_RETIRED + 2 {
        let cfg = one.replace("\"c\"", &format!("\"c{i}\""));
        assert!(configure(&mut root, &host, &cfg));
        request(&root, &host, &format!("/{i}"));
        root.on_tick(&host);
        tokens.extend(host.take_callouts().into_iter().map(|(t, _)| t));
    }
    assert_eq!(tokens.len(), MAX_RETIRED + 2);
    // The oldest was given up, yet its callout in flight is still its own to book.
    assert!(root.retired.len() > MAX_RETIRED);
    for t in tokens {
        answer(&mut root, &host, t, b"200");
    }
    root.on_tick(&host);
    assert_eq!(
        host.metric("usage_filter.events_delivered"),
        MAX_RETIRED as i64 + 2
    );
    assert_eq!(host.metric("usage_filter.events_dropped_send_failed"), 0);
    assert!(root.retired.is_empty());
    books(&host);
}

#[test]
fn a_callout_the_host_refuses_with_any_status_is_a_failed_attempt_not_a_panic() {
    for status in [1, 2, 10, 12, 99, u32::MAX] {
        let host = FakeHost::default();
        let mut root = Root::default();
        assert!(configure(&mut root, &host, HTTP));
        request(&root, &host, "/a");
        *host.refuse_calls.borrow_mut() = Some(status);
        host.advance_ms(1000);
        root.on_tick(&host);
        assert_eq!(host.metric("usage_filter.batch_retries"), 1, "{status}");
        assert_eq!(host.metric("usage_filter.callouts_refused"), 1, "{status}");
        // Later refusals of the same cluster are not said again at error level.
        host.advance_ms(20_000);
        root.on_tick(&host);
        assert_eq!(host.metric("usage_filter.callouts_refused"), 2, "{status}");
        let loud = host
            .logs
            .borrow()
            .iter()
            .filter(|(level, l)| {
                *level == Level::Error && l.contains("refused to start a callout to cluster \"c\"")
            })
            .count();
        assert_eq!(loud, 1, "{status}: {:?}", host.logs.borrow());
        books(&host);
    }
}

#[test]
fn shutdown_flushes_and_reports_done_when_the_last_answer_arrives() {
    let host = FakeHost::default();
    let mut root = Root::default();
    assert!(configure(&mut root, &host, HTTP));
    request(&root, &host, "/a");
    assert!(!root.on_done(&host), "must wait for the flush");
    let calls = host.take_callouts();
    assert_eq!(calls.len(), 1);
    answer(&mut root, &host, calls[0].0, b"200");
    assert_eq!(*host.done_calls.borrow(), 1);
    assert_eq!(host.metric("usage_filter.events_delivered"), 1);
    books(&host);
}

#[test]
fn the_vm_configuration_can_ask_for_one_draw_per_event_id_and_unlimited_retries() {
    let p = VmConfig::parse;
    assert!(p(br#"{"event_ids":"per_stream"}"#).per_event_ids);
    assert_eq!(p(b""), VmConfig::default());
    assert_eq!(p(b"not json"), VmConfig::default());
    assert!(!p(br#"{"event_ids":"pooled"}"#).per_event_ids);
    let both = p(br#"{"event_ids":"per_stream","retries":"unlimited"}"#);
    assert!(both.per_event_ids && both.unlimited_retries);
    assert!(!p(br#"{"retries":"3"}"#).unlimited_retries);
}

#[test]
fn streams_of_a_disabled_plugin_make_no_host_calls() {
    let host = FakeHost::default();
    let mut root = Root::default();
    assert!(configure(&mut root, &host, "{}"));
    let before = *host.host_calls.borrow();
    let mut s = root.new_stream();
    s.on_request_headers(&host, false);
    s.on_response_headers(&host);
    s.finish(&host);
    assert_eq!(*host.host_calls.borrow(), before);
}

#[test]
fn a_keyed_get_costs_four_host_calls_with_veil_over_http() {
    let host = FakeHost::default();
    let mut root = Root::default();
    assert!(configure(&mut root, &host, HTTP));
    let before = *host.host_calls.borrow();
    request(&root, &host, "/a");
    // the request map and the clock at the start; :status; the clock at the end
    assert_eq!(*host.host_calls.borrow() - before, 4);
}

#[test]
fn the_log_sink_adds_only_the_line_it_writes() {
    let host = FakeHost::default();
    let mut root = Root::default();
    assert!(configure(&mut root, &host, r#"{"enabled":true}"#));
    let before = *host.host_calls.borrow();
    request(&root, &host, "/a");
    assert_eq!(*host.host_calls.borrow() - before, 5);
    let logs = host.logs.borrow();
    let line = &logs.last().unwrap().1;
    assert!(line.contains(r#""api_path":"/a""#) && line.contains(r#""subscription_key":"k""#));
}

#[test]
fn only_a_batch_to_be_retried_reads_retry_after() {
    let host = FakeHost::default();
    let mut root = Root::default();
    let cfg = HTTP.replace("\"batch_size\":100", "\"batch_size\":1");
    assert!(configure(&mut root, &host, &cfg));
    let mut reads = |status: &[u8]| {
        request(&root, &host, "/a");
        root.on_tick(&host);
        let calls = host.take_callouts();
        assert_eq!(calls.len(), 1);
        host.header_reads.borrow_mut().clear();
        answer(&mut root, &host, calls[0].0, status);
        host.header_reads.take()
    };
    assert_eq!(reads(b"200"), [":status"]);
    // `retry-after` matters only to a retry
    assert_eq!(reads(b"503"), [":status", "retry-after"]);
    assert_eq!(reads(b"400"), [":status"], "a refused batch is not retried");
    books(&host);
}

#[test]
fn with_unlimited_retries_a_failing_batch_is_retried_past_max_attempts_until_delivered() {
    let host = FakeHost::default();
    let mut root = Root {
        vm: VmConfig::parse(br#"{"retries":"unlimited"}"#),
        ..Root::default()
    };
    let cfg = r#"{"enabled":true,"sinks":["http"],"http":{"cluster":"c","batch_size":1,"flush_interval_ms":10,"retry":{"max_attempts":2,"initial_backoff_ms":10,"max_backoff_ms":20}}}"#;
    assert!(configure(&mut root, &host, cfg));
    request(&root, &host, "/v1/a");
    let mut attempts = 0;
    for _ in 0..200 {
        host.advance_ms(25);
        root.on_tick(&host);
        for (token, _) in host.take_callouts() {
            attempts += 1;
            let status: &[u8] = if attempts < 12 { b"503" } else { b"200" };
            answer(&mut root, &host, token, status);
        }
        if host.metric("usage_filter.events_delivered") == 1 {
            break;
        }
    }
    assert_eq!(
        attempts, 12,
        "every failure was retried, well past max_attempts 2"
    );
    assert_eq!(host.metric("usage_filter.events_delivered"), 1);
    assert_eq!(host.metric("usage_filter.events_dropped_send_failed"), 0);
    books(&host);
}

#[test]
fn the_vm_says_its_version_and_build_once_at_start_and_never_per_request() {
    let host = FakeHost::default();
    let mut root = Root::default();
    assert!(root.on_vm_start(&host, 0));
    let said = host.logs.borrow().clone();
    assert_eq!(said.len(), 1, "{said:?}");
    let (level, line) = &said[0];
    assert_eq!(*level, Level::Info);
    let rest = line
        .strip_prefix("usage-filter ")
        .unwrap_or_else(|| panic!("{line}"));
    let (version, build) = rest.split_once(' ').unwrap();
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    let sha = build
        .strip_prefix('(')
        .and_then(|b| b.strip_suffix(')'))
        .unwrap();
    assert!(
        sha == "unknown" || (sha.len() >= 7 && sha.bytes().all(|b| b.is_ascii_hexdigit())),
        "{line}"
    );
    // The commit checked out now, where git can say (not inside wasm): build.rs reruns when
    // HEAD or its branch moves, so a stale sha would show here.
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success());
    if let Some(out) = head {
        assert_eq!(sha, String::from_utf8_lossy(&out.stdout).trim(), "{line}");
    }
    assert!(configure(&mut root, &host, HTTP));
    request(&root, &host, "/v1/a");
    let versions = host
        .logs
        .borrow()
        .iter()
        .filter(|(_, l)| l.contains(rest))
        .count();
    assert_eq!(versions, 1, "{:?}", host.logs.borrow());
}

#[test]
fn a_reconfiguration_from_one_destination_to_several_keeps_every_count_cumulative() {
    let host = FakeHost::default();
    let mut root = Root::default();
    let one = r#"{"enabled":true,"sinks":["http"],"http":{"cluster":"c","batch_size":1}}"#;
    let two = r#"{"enabled":true,"sinks":["http"],"http":[
        {"name":"a","cluster":"a","batch_size":1},{"name":"b","cluster":"b","batch_size":1}]}"#;
    let deliver_all = |root: &mut Root| {
        root.on_tick(&host);
        for (t, _) in host.take_callouts() {
            answer(root, &host, t, b"200");
        }
        root.on_tick(&host);
    };
    assert!(configure(&mut root, &host, one));
    for i in 0..3 {
        request(&root, &host, &format!("/{i}"));
    }
    deliver_all(&mut root);
    assert!(configure(&mut root, &host, two));
    for i in 0..2 {
        request(&root, &host, &format!("/n{i}"));
    }
    deliver_all(&mut root);
    assert!(configure(&mut root, &host, one));
    request(&root, &host, "/last");
    deliver_all(&mut root);
    let m = |n: &str| host.metric(n);
    assert_eq!(m("usage_filter.events_captured"), 6);
    assert_eq!(
        m("usage_filter.events_delivered"),
        4,
        "the single object's, before and after"
    );
    assert_eq!(m("usage_filter.a.events_delivered"), 2);
    assert_eq!(m("usage_filter.b.events_delivered"), 2);
    assert_eq!(m("usage_filter.a.buffer_events"), 0);
    assert_eq!(m("usage_filter.buffer_events"), 0);
}

#[test]
fn an_answer_reads_the_clock_once() {
    let host = FakeHost::default();
    let mut root = Root::default();
    let cfg = HTTP.replace("\"batch_size\":100", "\"batch_size\":1");
    assert!(configure(&mut root, &host, &cfg));
    for _ in 0..3 {
        request(&root, &host, "/a");
    }
    root.on_tick(&host);
    let calls = host.take_callouts();
    assert_eq!(calls.len(), 2, "max_in_flight");
    let before = *host.host_calls.borrow();
    answer(&mut root, &host, calls[0].0, b"200");
    // `:status`, one clock read (the pump after it uses the same time), the next callout
    assert_eq!(*host.host_calls.borrow() - before, 3);
    assert_eq!(host.take_callouts().len(), 1);
    books(&host);
}
