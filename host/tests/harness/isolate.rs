//! A batch refused for one bad event (400, 413, 422): split in halves down to that event, which
//! alone is dropped, counted and logged; every sound event is delivered once.
use crate::common::*;
use proxy_wasm_host::metrics::*;
use proxy_wasm_host::Vm;
use serde_json::json;
use std::collections::HashMap;

/// Answers every callout until nothing is held: `status` for a batch holding a path with
/// "poison", 200 otherwise. Returns (acknowledged event ids with their count, callouts).
fn serve(vm: &mut Vm, status: u32) -> (HashMap<String, usize>, usize) {
    let mut acked: HashMap<String, usize> = HashMap::new();
    let mut callouts = 0;
    for _ in 0..200 {
        vm.advance_ms(100).unwrap();
        for c in vm.pending() {
            callouts += 1;
            let events = veil_events(&c);
            let bad = events
                .iter()
                .any(|e| e["api_path"].as_str().unwrap().contains("poison"));
            if bad {
                vm.reply(c.token, status, &[], br#"{"error":"bad event"}"#)
                    .unwrap();
            } else {
                vm.reply(c.token, 200, &[], b"{}").unwrap();
                for e in events {
                    *acked.entry(e["id"].as_str().unwrap().into()).or_default() += 1;
                }
            }
        }
        if vm.metric(BUFFER_EVENTS) == 0 && vm.pending().is_empty() {
            break;
        }
    }
    (acked, callouts)
}

fn send_with_poison(vm: &mut Vm, n: usize, poisoned: &[usize]) {
    for i in 0..n {
        let path = if poisoned.contains(&i) {
            format!("/r/{i}/poison")
        } else {
            format!("/r/{i}")
        };
        vm.request().path(&path).key("k").respond(200).unwrap();
    }
}

#[test]
fn one_poisoned_event_costs_itself_alone_for_each_content_status() {
    for status in [400, 413, 422] {
        let mut vm = http_vm(json!({"batch_size": 100, "buffer_size": 1000}));
        send_with_poison(&mut vm, 100, &[41]);
        let (acked, callouts) = serve(&mut vm, status);
        assert_eq!(acked.len(), 99, "{status}");
        assert!(acked.values().all(|&n| n == 1), "{status}: delivered once");
        // one batch of 100 with one bad event: at most 2·⌈log2 100⌉ = 14 more callouts
        assert!(callouts <= 15, "{status}: {callouts} callouts");
        settle_and_check(&mut vm);
        assert_eq!(vm.metric(EVENTS_DROPPED_REJECTED), 1, "{status}");
        assert_eq!(vm.metric(EVENTS_DROPPED_SEND_FAILED), 0, "{status}");
        assert_eq!(vm.metric(EVENTS_DELIVERED), 99, "{status}");
        let warns: Vec<_> = vm.logs().iter().filter(|l| l.level == 3).collect();
        assert_eq!(warns.len(), 1, "{warns:?}");
        let m = &warns[0].message;
        assert!(
            m.contains(&format!("status {status}"))
                && m.contains("bad event")
                && m.contains("refused event "),
            "{m}"
        );
    }
}

#[test]
fn each_half_has_its_own_batch_id_and_a_retry_keeps_it() {
    let mut vm = http_vm(json!({"batch_size": 4}));
    send_with_poison(&mut vm, 4, &[0]);
    vm.advance_ms(100).unwrap();
    let first = vm.pending()[0].clone();
    vm.reply(first.token, 400, &[], b"no").unwrap();
    vm.advance_ms(100).unwrap();
    let halves = vm.pending();
    assert_eq!(halves.len(), 2);
    let id = |c: &proxy_wasm_host::Callout| c.header("x-usage-batch-id").unwrap();
    assert!(id(&halves[0]) != id(&first) && id(&halves[1]) != id(&first));
    assert!(id(&halves[0]) != id(&halves[1]));
    let sound = halves
        .iter()
        .find(|c| {
            veil_events(c)
                .iter()
                .all(|e| !e["api_path"].as_str().unwrap().contains("poison"))
        })
        .unwrap()
        .clone();
    vm.reply(sound.token, 503, &[], b"").unwrap();
    vm.advance_ms(1000).unwrap();
    let again = vm
        .callouts()
        .into_iter()
        .filter(|c| id(c) == id(&sound))
        .count();
    assert_eq!(again, 2, "the retry of a half keeps its id");
    serve(&mut vm, 400);
    settle_and_check(&mut vm);
    assert_eq!(vm.metric(EVENTS_DELIVERED), 3);
    assert_eq!(vm.metric(EVENTS_DROPPED_REJECTED), 1);
}

#[test]
fn a_refusal_that_is_not_about_content_drops_the_batch_as_before() {
    let mut vm = http_vm(json!({"batch_size": 3}));
    send(&mut vm, 3);
    vm.advance_ms(100).unwrap();
    vm.reply(vm.pending()[0].token, 401, &[], b"bad token")
        .unwrap();
    vm.advance_ms(30_000).unwrap();
    assert_eq!(vm.callouts().len(), 1, "never sent again");
    settle_and_check(&mut vm);
    assert_eq!(vm.metric(EVENTS_DROPPED_SEND_FAILED), 3);
    assert_eq!(vm.metric(EVENTS_DROPPED_REJECTED), 0);
    assert_eq!(vm.metric(BATCHES_FAILED), 1);
    let warns: Vec<_> = vm.logs().iter().filter(|l| l.level == 3).collect();
    assert_eq!(warns.len(), 1, "{warns:?}");
    assert!(warns[0].message.contains("401") && warns[0].message.contains("bad token"));
}

#[test]
fn a_receiver_refusing_more_than_10_events_with_413_gets_everything() {
    let mut vm = http_vm(json!({"batch_size": 100, "buffer_size": 1000}));
    send(&mut vm, 500);
    let mut acked: HashMap<String, usize> = HashMap::new();
    let mut callouts = 0;
    for _ in 0..400 {
        vm.advance_ms(100).unwrap();
        for c in vm.pending() {
            callouts += 1;
            let events = veil_events(&c);
            if events.len() > 10 {
                vm.reply(c.token, 413, &[], b"too large").unwrap();
            } else {
                vm.reply(c.token, 200, &[], b"{}").unwrap();
                for e in events {
                    *acked.entry(e["id"].as_str().unwrap().into()).or_default() += 1;
                }
            }
        }
        if vm.metric(BUFFER_EVENTS) == 0 {
            break;
        }
    }
    assert_eq!(acked.len(), 500);
    assert!(acked.values().all(|&n| n == 1));
    // the batch size was lowered to 6 after the first batch: not a split per batch
    assert!(callouts < 500 / 6 + 30, "{callouts} callouts");
    settle_and_check(&mut vm);
    assert_eq!(vm.metric(EVENTS_DELIVERED), 500);
    assert_eq!(vm.metric(EVENTS_DROPPED_REJECTED), 0);
}
