use super::*;
use crate::config::{self, Config};
use crate::dispatch::tests::Seq;

fn config(json: &str) -> Config {
    config::parse(json.as_bytes(), &|_| None).unwrap()
}

fn local(extra: &str) -> Config {
    config(&format!(
        r#"{{"enabled":true,"sinks":["http"],"http":{{"cluster":"c","batch_size":2,"buffer_size":3{extra}}}}}"#
    ))
}

fn event() -> Event<'static> {
    Event {
        api_path: "/v1/x".into(),
        method: "GET".into(),
        status_code: 200,
        ..Default::default()
    }
}

/// captured = delivered + dropped + held, for every destination (log only: for the
/// delivery's own books).
pub(crate) fn books(d: &Delivery) {
    let captured = d.counters().captured;
    let own = d.counters();
    let sum = |c: &Counters| {
        c.delivered + c.dropped_buffer_full + c.dropped_send_failed + c.dropped_rejected
    };
    if d.dests.is_empty() {
        assert_eq!(captured, sum(&own), "{own:?}");
    }
    for (i, dest) in d.dests.iter().enumerate() {
        let c = dest.counters;
        let held = d.dest_held(i) as u64;
        assert_eq!(
            captured,
            sum(&c) + held,
            "{:?}: {c:?} held {held}",
            dest.label
        );
    }
}

#[test]
fn the_role_is_decided_by_the_configuration() {
    assert_eq!(
        Delivery::new(&config(r#"{"enabled":true}"#)).role(),
        Role::LogOnly
    );
    assert_eq!(Delivery::new(&local("")).role(), Role::Local);
}

#[test]
fn log_only_counts_written_as_delivered() {
    let mut d = Delivery::new(&config(r#"{"enabled":true}"#));
    let line = d.finish(&event(), 0).unwrap();
    assert!(line.to_host_log && !line.to_filter_state);
    assert!(line.line.starts_with(b"{\"time\":"));
    assert_eq!(d.counters().delivered, 1);
    books(&d);
}

#[test]
fn the_http_sink_writes_no_log_line_and_counts_every_outcome() {
    let mut d = Delivery::new(&local(r#","retry":{"max_attempts":2}"#));
    let mut r = Seq(0);
    for _ in 0..5 {
        assert_eq!(d.finish(&event(), 0), None);
    }
    assert_eq!(d.dest_counters(0).dropped_buffer_full, 2);
    books(&d);
    let (i, b, c) = d.next_callout(0, false, &mut r).unwrap();
    assert_eq!((i, c.upstream.as_str()), (0, "c"));
    d.sent(i, 1, b);
    assert!(matches!(
        d.on_response(1, Some(503), None, 0, &mut r),
        (0, Outcome::Retrying { .. })
    ));
    books(&d);
    let (_, b, _) = d.next_callout(100_000, false, &mut r).unwrap();
    d.sent(0, 2, b);
    assert!(matches!(
        d.on_response(2, Some(503), None, 0, &mut r),
        (0, Outcome::Exhausted { .. })
    ));
    let (_, b, _) = d.next_callout(200_000, false, &mut r).unwrap();
    assert!(matches!(
        d.not_sent(0, b, 200_000, &mut r),
        Outcome::Retrying { .. }
    ));
    let (_, b, _) = d.next_callout(300_000, false, &mut r).unwrap();
    d.sent(0, 3, b);
    d.on_response(3, Some(200), None, 0, &mut r);
    let c = d.dest_counters(0);
    assert_eq!(d.counters().captured, 5);
    assert_eq!(
        (c.delivered, c.dropped_send_failed, c.batch_retries),
        (1, 2, 2)
    );
    assert_eq!((c.batches_sent, c.batches_failed), (1, 1));
    books(&d);
}

fn queue(service: bool) -> Config {
    config(&format!(
        r#"{{"enabled":true,"sinks":["http"],"http":{{"cluster":"c","buffer_size":4,"batch_size":2}},
            "dispatcher":{{"mode":"shared_queue","service":{service}}}}}"#
    ))
}

#[test]
fn a_worker_hands_over_what_it_holds_and_the_books_balance_across_vms() {
    let mut worker = Delivery::new(&queue(false));
    let mut service = Delivery::new(&queue(true));
    assert_eq!(worker.role(), Role::QueueWorker);
    assert_eq!(service.role(), Role::QueueService);
    for _ in 0..6 {
        worker.finish(&event(), 0);
    }
    assert_eq!(worker.dest_counters(0).dropped_buffer_full, 2);
    let (msg, n) = worker.handoff_message().unwrap();
    assert_eq!(n, 4);
    worker.handed_over(n);
    assert_eq!(worker.held(), 0);
    assert!(worker.handoff_message().is_none());
    service.receive(&msg, 0);
    assert_eq!(service.held(), 4);
    let (w, s) = (worker.dest_counters(0), service.dest_counters(0));
    assert_eq!(
        worker.counters().captured + service.counters().captured,
        w.dropped_buffer_full + s.dropped_buffer_full + (worker.held() + service.held()) as u64
    );
}

#[test]
fn records_lost_from_a_damaged_message_are_counted() {
    let mut worker = Delivery::new(&queue(false));
    let mut service = Delivery::new(&queue(true));
    for _ in 0..3 {
        worker.finish(&event(), 0);
    }
    let (msg, n) = worker.handoff_message().unwrap();
    worker.handed_over(n);
    service.receive(&msg[..msg.len() - 5], 0);
    assert_eq!(service.held(), 2);
    assert_eq!(service.dest_counters(0).dropped_send_failed, 1);
    assert_eq!(
        worker.counters().captured,
        service.dest_counters(0).dropped_send_failed + service.held() as u64,
        "the books balance across the two VMs"
    );
    // A corrupt count cannot claim more than the buffer could ever have held.
    service.receive(&[0xff; 40], 0);
    assert_eq!(service.dest_counters(0).dropped_send_failed, 1 + 4);
}

fn two(extra: &str) -> Config {
    config(&format!(
        r#"{{"enabled":true,"sinks":["http"],"http":[
            {{"name":"billing","cluster":"veil","batch_size":2,"buffer_size":4}},
            {{"name":"analytics","cluster":"ch","format":"ndjson","batch_size":3,"buffer_size":3}}]
            {extra}}}"#
    ))
}

/// Every callout the delivery wants now, sent, with the token given for each.
fn send_all(d: &mut Delivery, now: u64, r: &mut Seq, next: &mut u32) -> Vec<(usize, u32, Callout)> {
    let mut out = Vec::new();
    while let Some((i, b, c)) = d.next_callout(now, false, r) {
        *next += 1;
        d.sent(i, *next, b);
        out.push((i, *next, c));
    }
    out
}

#[test]
fn each_destination_gets_every_event_and_keeps_its_own_books() {
    let mut d = Delivery::new(&two(""));
    let (mut r, mut token) = (Seq(0), 0);
    for _ in 0..5 {
        d.finish(&event(), 0);
    }
    // billing holds 4 of 5, analytics 3: each drops what its own buffer cannot hold.
    assert_eq!(d.counters().captured, 5);
    assert_eq!(d.dest_counters(0).dropped_buffer_full, 1);
    assert_eq!(d.dest_counters(1).dropped_buffer_full, 2);
    books(&d);
    let sent = send_all(&mut d, 0, &mut r, &mut token);
    let to: Vec<(usize, &str)> = sent
        .iter()
        .map(|(i, _, c)| (*i, c.upstream.as_str()))
        .collect();
    assert_eq!(to, [(0, "veil"), (0, "veil"), (1, "ch")]);
    // Each in its own format: veil's envelope, ndjson's lines.
    assert!(sent[0].2.body.starts_with(b"{\"events\":["));
    assert_eq!(sent[2].2.body.iter().filter(|b| **b == b'\n').count(), 3);
    // billing's first batch refused (a 503 retried), analytics delivered: books apart.
    let (_, t0, _) = sent[0];
    let (_, t2, _) = sent[2];
    assert!(matches!(
        d.on_response(t0, Some(503), None, 0, &mut r),
        (0, Outcome::Retrying { .. })
    ));
    assert_eq!(
        d.on_response(t2, Some(200), None, 0, &mut r),
        (1, Outcome::Delivered { events: 3 })
    );
    assert_eq!(
        d.on_response(999, Some(200), None, 0, &mut r).1,
        Outcome::Unknown
    );
    assert_eq!(d.dest_counters(1).delivered, 3);
    assert_eq!(d.dest_counters(0).delivered, 0);
    assert_eq!(d.dest_counters(0).batch_retries, 1);
    books(&d);
    let (_, t1, _) = sent[1];
    d.on_response(t1, Some(200), None, 0, &mut r);
    let retry = send_all(&mut d, 1_000_000, &mut r, &mut token);
    assert_eq!(retry.len(), 1);
    d.on_response(retry[0].1, Some(200), None, 0, &mut r);
    assert_eq!(d.dest_counters(0).delivered, 4);
    assert_eq!(d.held(), 0);
    books(&d);
    assert_eq!(
        (d.label(0), d.label(1)),
        (Some("billing"), Some("analytics"))
    );
}

#[test]
fn an_array_names_each_destinations_metrics_and_counts_captured_once() {
    let mut d = Delivery::new(&two(""));
    d.finish(&event(), 0);
    let books = d.books();
    let get = |n: &str| books.iter().find(|(m, _)| m == n).map(|(_, v)| *v);
    assert_eq!(get("usage_filter.events_captured"), Some(1));
    assert_eq!(get("usage_filter.billing.buffer_events"), Some(1));
    assert_eq!(get("usage_filter.analytics.buffer_events"), Some(1));
    assert_eq!(get("usage_filter.billing.events_captured"), None);
    assert_eq!(get("usage_filter.events_delivered"), None);
    let names: Vec<&str> = d.metric_names().map(|(n, _)| n).collect();
    assert_eq!(names.len(), 3 + 2 * 9);
    // A single object: today's twelve names, each once.
    let single = Delivery::new(&local(""));
    let mut names: Vec<&str> = single.metric_names().map(|(n, _)| n).collect();
    names.sort();
    let mut want = metrics::NAMES.to_vec();
    want.sort();
    assert_eq!(names, want);
}

#[test]
fn a_worker_hands_each_event_over_once_and_the_service_gives_it_to_every_destination() {
    let q = r#","dispatcher":{"mode":"shared_queue"}"#;
    let mut worker = Delivery::new(&two(q));
    let mut service = Delivery::new(&two(
        r#","dispatcher":{"mode":"shared_queue","service":true}"#,
    ));
    assert_eq!(service.role(), Role::QueueService);
    for _ in 0..6 {
        worker.finish(&event(), 0);
    }
    // The hand-over holds as many as the largest buffer; what it cannot is dropped for each.
    assert_eq!(worker.dest_counters(0).dropped_buffer_full, 2);
    assert_eq!(worker.dest_counters(1).dropped_buffer_full, 2);
    let (msg, n) = worker.handoff_message().unwrap();
    assert_eq!(n, 4);
    worker.handed_over(n);
    service.receive(&msg, 0);
    assert_eq!((service.dest_held(0), service.dest_held(1)), (4, 3));
    for i in 0..2 {
        let (w, s) = (worker.dest_counters(i), service.dest_counters(i));
        assert_eq!(
            worker.counters().captured,
            w.dropped_buffer_full + s.dropped_buffer_full + service.dest_held(i) as u64,
            "destination {i}: the books balance across the two VMs"
        );
    }
    // A damaged message: what it lost is lost to every destination.
    service.receive(&msg[..msg.len() - 5], 0);
    assert_eq!(service.dest_counters(0).dropped_send_failed, 1);
    assert_eq!(service.dest_counters(1).dropped_send_failed, 1);
}

#[test]
fn destinations_sharing_a_format_get_the_event_written_once_and_the_same_bytes() {
    let cfg = config(
        r#"{"enabled":true,"sinks":["http"],"http":[
            {"name":"a","cluster":"a","format":"ndjson","batch_size":1},
            {"name":"b","cluster":"b","format":"veil","batch_size":1},
            {"name":"c","cluster":"c","format":"ndjson","batch_size":1,"compression":"gzip"},
            {"name":"d","cluster":"d","format":"cloudevents","batch_size":1},
            {"name":"e","cluster":"e","format":"cloudevents","batch_size":1,
             "cloudevents":{"type":"other"}}]}"#,
    );
    let mut d = Delivery::new(&cfg);
    // Only a and c share a shape: same format, same kafka key and CloudEvents attributes.
    let shares: Vec<Option<usize>> = d.dests.iter().map(|x| x.share).collect();
    assert_eq!(shares, [Some(0), None, Some(0), None, None]);
    d.finish(&event(), 0);
    let mut r = Seq(0);
    let mut bodies = std::collections::HashMap::new();
    while let Some((i, b, c)) = d.next_callout(0, false, &mut r) {
        let shared = b.events[0].element().map(|e| e.get().unwrap().as_ptr());
        bodies.insert(i, (c, shared));
    }
    assert_eq!(bodies.len(), 5);
    // a and c hold one element, written once (by whichever cut its batch first: the same
    // allocation), and send its bytes.
    let (a, c) = (&bodies[&0], &bodies[&2]);
    assert!(a.1.is_some() && a.1 == c.1, "one element for both");
    assert!(bodies[&1].1.is_none() && bodies[&3].1.is_none());
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&c.0.body[..]), &mut plain)
        .unwrap();
    assert_eq!(a.0.body, plain);
    // and those bytes are what the destination would have written itself.
    let mut own = Vec::new();
    let rec = Record::from_event(&event());
    encode::write_batch_body(
        &mut own,
        &encode::Shape::of(&cfg.http[0]),
        [&rec].into_iter(),
        &mut Default::default(),
    );
    let strip_id = |b: &[u8]| {
        let v: serde_json::Value = serde_json::from_slice(b).unwrap();
        let mut v = v.as_object().unwrap().clone();
        v.remove("id");
        v.remove("timestamp");
        v
    };
    assert_eq!(strip_id(&a.0.body), strip_id(&own));
}

/// `backlog_batch_size` is each destination's own, in a worker (`local`) and in the
/// `shared_queue` service alike: the same backlog gives "big" batches of 8 and "small" ones
/// of `batch_size`.
#[test]
fn each_destination_and_the_queue_service_drain_a_backlog_by_its_own_backlog_batch_size() {
    let http = r#""http":[
        {"name":"big","cluster":"a","batch_size":2,"backlog_batch_size":8,"buffer_size":40},
        {"name":"small","cluster":"b","batch_size":2,"buffer_size":40}]"#;
    for dispatcher in [r#""local""#, r#""shared_queue","service":true"#] {
        let mut d = Delivery::new(&config(&format!(
            r#"{{"enabled":true,"sinks":["http"],{http},"dispatcher":{{"mode":{dispatcher}}}}}"#
        )));
        let mut worker = Delivery::new(&config(&format!(
            r#"{{"enabled":true,"sinks":["http"],{http},"dispatcher":{{"mode":"shared_queue"}}}}"#
        )));
        for _ in 0..30 {
            if d.role() == Role::QueueService {
                worker.finish(&event(), 0);
            } else {
                d.finish(&event(), 0);
            }
        }
        if let Some((msg, n)) = worker
            .handoff_message()
            .filter(|_| d.role() == Role::QueueService)
        {
            worker.handed_over(n);
            d.receive(&msg, 0);
        }
        let (mut r, mut next) = (Seq(0), 0);
        let mut sizes: Vec<(usize, usize)> = send_all(&mut d, 0, &mut r, &mut next)
            .iter()
            .map(|(i, _, c)| {
                let v: serde_json::Value = serde_json::from_slice(&c.body).unwrap();
                (*i, v["events"].as_array().map_or(0, |a| a.len()))
            })
            .collect();
        sizes.sort();
        assert_eq!(sizes, [(0, 8), (0, 8), (1, 2), (1, 2)], "{dispatcher}");
        for tok in 1..=next {
            d.on_response(tok, Some(200), None, 1, &mut r);
        }
        assert_eq!(d.dest_counters(0).delivered, 16, "{dispatcher}");
        assert_eq!(d.dest_counters(1).delivered, 4, "{dispatcher}");
    }
}
