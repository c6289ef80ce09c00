//! `--cluster NAME=kafka://HOST:PORT[,HOST:PORT…]/TOPIC[?compression=lz4]`: each callout the
//! filter makes to NAME (a `kafka-rest` body, `{"records":[{"key":…,"value":{…}}…]}`) becomes
//! one produce of its records, through librdkafka. The key is the record's key as raw UTF-8
//! (a JSON string unquoted; `null` stays no key), the value the event's JSON; partitions as
//! Java's client (murmur2), `acks=all`, idempotent. The callout is answered 200 once the
//! broker acknowledged every record, 503 when any failed (the filter retries the batch), 400
//! or 413 when no retry can succeed (a body that is not `kafka-rest`, a record too large).

use crate::answer::{Answer, Outcome};
use proxy_wasm_host::Callout;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

pub const COMPRESSIONS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

/// What a `kafka://` cluster names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port,host:port`, librdkafka's `bootstrap.servers`.
    pub brokers: String,
    pub topic: String,
    pub compression: String,
    /// librdkafka's `enable.idempotence` (`?idempotence=false` turns it off).
    pub idempotence: bool,
}

/// `kafka://HOST:PORT[,HOST:PORT…]/TOPIC[?compression=C][&idempotence=false]`; `None` when not
/// `kafka://`.
pub fn parse_url(url: &str) -> Option<Result<Target, String>> {
    let rest = url.strip_prefix("kafka://")?;
    Some(parse_rest(rest))
}

fn parse_rest(rest: &str) -> Result<Target, String> {
    let expected = "expected kafka://HOST:PORT[,HOST:PORT…]/TOPIC[?compression=lz4]";
    let (brokers, path) = rest.split_once('/').ok_or(expected)?;
    let (topic, query) = match path.split_once('?') {
        Some((t, q)) => (t, Some(q)),
        None => (path, None),
    };
    let port_ok = |b: &str| match b.rsplit_once(':') {
        Some((h, p)) => !h.is_empty() && p.parse::<u16>().is_ok(),
        None => false,
    };
    if brokers.is_empty() || !brokers.split(',').all(port_ok) {
        return Err(format!("{brokers}: {expected}"));
    }
    let topic_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if topic.is_empty() || topic.len() > 249 || !topic.chars().all(topic_ok) {
        return Err(format!("topic {topic:?}: {expected}"));
    }
    let mut compression = "lz4".to_string();
    let mut idempotence = true;
    for kv in query.into_iter().flat_map(|q| q.split('&')) {
        match kv.split_once('=') {
            Some(("compression", c)) if COMPRESSIONS.contains(&c) => compression = c.into(),
            Some(("idempotence", "true")) => idempotence = true,
            Some(("idempotence", "false")) => idempotence = false,
            Some(("idempotence", v)) => {
                return Err(format!("idempotence={v}: true or false"));
            }
            Some(("compression", c)) => {
                return Err(format!(
                    "compression={c}: one of {}",
                    COMPRESSIONS.join(", ")
                ))
            }
            _ => {
                return Err(format!(
                    "?{kv}: only compression= and idempotence= are known"
                ))
            }
        }
    }
    Ok(Target {
        brokers: brokers.into(),
        topic: topic.into(),
        compression,
        idempotence,
    })
}

/// One callout's records on their way: answered when the last one is acknowledged or failed.
pub struct Pending {
    token: u32,
    left: AtomicUsize,
    failed: Mutex<Option<(u32, String)>>,
    tx: Sender<Answer>,
}

impl Pending {
    fn fail(&self, status: u32, why: String) {
        let mut f = self.failed.lock().unwrap();
        // A permanent refusal (4xx) wins over a retryable failure.
        if f.as_ref().is_none_or(|(s, _)| *s >= 500 && status < 500) {
            *f = Some((status, why));
        }
    }

    /// One record done; the last answers the callout.
    fn done(&self) {
        if self.left.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let (status, body) = match self.failed.lock().unwrap().take() {
            None => (200, r#"{"ok":true}"#.to_string()),
            Some((s, why)) => (s, serde_json::json!({ "error": why }).to_string()),
        };
        let _ = self.tx.send(Answer {
            token: self.token,
            outcome: Outcome::Answered {
                status,
                headers: vec![("content-type".into(), "application/json".into())],
                body: body.into_bytes(),
            },
        });
    }
}

/// What no retry can fix: the callout is refused (and goes to `--dead-letter`).
fn status_of(e: &KafkaError) -> u32 {
    use RDKafkaErrorCode as C;
    match e.rdkafka_error_code() {
        Some(C::MessageSizeTooLarge | C::MessageBatchTooLarge) => 413,
        Some(C::InvalidMessage | C::InvalidMessageSize) => 400,
        _ => 503,
    }
}

pub struct Context {
    /// The producer hit a fatal error (an idempotence guarantee broken): make a new one.
    fatal: AtomicBool,
    last_error: Mutex<String>,
    name: String,
}

impl ClientContext for Context {
    /// librdkafka's own log: `USAGE_AGENT_KAFKA_DEBUG=broker,protocol` (its `debug` contexts)
    /// prints everything; otherwise its warnings and errors.
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        if (level as i32) <= 4 || std::env::var_os("USAGE_AGENT_KAFKA_DEBUG").is_some() {
            eprintln!(
                "usage-agent: kafka cluster {}: librdkafka {fac}: {message}",
                self.name
            );
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::Fatal)) {
            self.fatal.store(true, Ordering::Release);
        }
        // Said once per kind (a broker down repeats its error every few seconds).
        let line = format!("{error}: {reason}");
        let mut last = self.last_error.lock().unwrap();
        if *last != line {
            eprintln!("usage-agent: kafka cluster {}: {line}", self.name);
            *last = line;
        }
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = Arc<Pending>;

    fn delivery(&self, r: &DeliveryResult<'_>, p: Arc<Pending>) {
        if let Err((e, _)) = r {
            p.fail(status_of(e), format!("kafka: {e}"));
        } else {
            self.last_error.lock().unwrap().clear();
        }
        p.done();
    }
}

/// One `kafka://` cluster's producer, made at the first callout (its timeout bounds
/// librdkafka's `message.timeout.ms`, so a record fails before the callout's deadline).
pub struct Sink {
    name: String,
    target: Target,
    producer: Mutex<Option<ThreadedProducer<Context>>>,
}

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    records: Vec<Record<'a>>,
}

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    key: Option<&'a RawValue>,
    #[serde(borrow)]
    value: &'a RawValue,
}

/// A record's key as bytes: a JSON string unquoted, `null` no key, anything else its JSON.
pub fn key_bytes(key: Option<&RawValue>) -> Result<Option<Vec<u8>>, String> {
    let Some(k) = key else { return Ok(None) };
    let text = k.get();
    if text == "null" {
        return Ok(None);
    }
    if text.starts_with('"') {
        let s: String = serde_json::from_str(text).map_err(|e| format!("key {text}: {e}"))?;
        return Ok(Some(s.into_bytes()));
    }
    Ok(Some(text.as_bytes().to_vec()))
}

/// A record's key (`None`: no key) and its value, the event's JSON.
pub type KeyValue<'a> = (Option<Vec<u8>>, &'a [u8]);

/// The records of a `kafka-rest` body.
pub fn records(body: &[u8]) -> Result<Vec<KeyValue<'_>>, String> {
    let b: Body = serde_json::from_slice(body).map_err(|e| format!("not kafka-rest: {e}"))?;
    b.records
        .into_iter()
        .map(|r| Ok((key_bytes(r.key)?, r.value.get().as_bytes())))
        .collect()
}

impl Sink {
    pub fn new(name: &str, target: Target) -> Sink {
        Sink {
            name: name.into(),
            target,
            producer: Mutex::new(None),
        }
    }

    fn config(&self, timeout_ms: u32) -> ClientConfig {
        let t = &self.target;
        // Fail a record a little before the callout's deadline (the main loop's 504).
        let message_timeout = (timeout_ms as u64).saturating_sub(500).max(1000);
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &t.brokers)
            .set("client.id", "usage-agent")
            .set("acks", "all")
            .set("enable.idempotence", t.idempotence.to_string())
            .set("partitioner", "murmur2_random")
            .set("compression.codec", &t.compression)
            .set("linger.ms", "5")
            .set("message.timeout.ms", message_timeout.to_string())
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576");
        if let Ok(d) = std::env::var("USAGE_AGENT_KAFKA_DEBUG") {
            c.set("debug", d);
        }
        c
    }

    fn producer(&self, timeout_ms: u32) -> Result<ThreadedProducer<Context>, KafkaError> {
        let context = Context {
            fatal: AtomicBool::new(false),
            last_error: Mutex::new(String::new()),
            name: self.name.clone(),
        };
        self.config(timeout_ms).create_with_context(context)
    }

    /// Produces the callout's records; the answer comes on `tx` (at once when none can go).
    pub fn send(&self, c: &Callout, tx: &Sender<Answer>) {
        self.produce(&c.plain_body(), c.token, c.timeout_ms, tx);
    }

    /// Produces the records of a `kafka-rest` body; the answer, for `token`, comes on `tx`
    /// (at once when none can go). `timeout_ms` is the caller's deadline: a producer made now
    /// fails a record a little before it. Returns how many records the body holds.
    pub fn produce(&self, body: &[u8], token: u32, timeout_ms: u32, tx: &Sender<Answer>) -> usize {
        let answer = |status: u32, why: String| {
            let _ = tx.send(Answer {
                token,
                outcome: Outcome::Answered {
                    status,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: serde_json::json!({ "error": why }).to_string().into_bytes(),
                },
            });
        };
        let recs = match records(body) {
            Ok(r) => r,
            Err(e) => {
                answer(400, e);
                return 0;
            }
        };
        if recs.is_empty() {
            let _ = tx.send(Answer {
                token,
                outcome: Outcome::Answered {
                    status: 200,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: br#"{"ok":true}"#.to_vec(),
                },
            });
            return 0;
        }
        let mut slot = self.producer.lock().unwrap();
        if let Some(p) = slot.as_ref() {
            if p.context().fatal.load(Ordering::Acquire) {
                eprintln!(
                    "usage-agent: kafka cluster {}: a fatal producer error; starting a new producer",
                    self.name
                );
                if let Some(old) = slot.take() {
                    // Its records fail (503) and the filter sends them again.
                    std::thread::spawn(move || drop(old));
                }
            }
        }
        if slot.is_none() {
            match self.producer(timeout_ms) {
                Ok(p) => *slot = Some(p),
                Err(e) => {
                    answer(503, format!("kafka: {e}"));
                    return recs.len();
                }
            }
        }
        let producer = slot.as_ref().expect("made above");
        let pending = Arc::new(Pending {
            token,
            left: AtomicUsize::new(recs.len()),
            failed: Mutex::new(None),
            tx: tx.clone(),
        });
        for (key, value) in &recs {
            let mut r =
                BaseRecord::with_opaque_to(&self.target.topic, pending.clone()).payload(*value);
            if let Some(k) = key {
                r = r.key(k.as_slice());
            }
            if let Err((e, r)) = producer.send(r) {
                // Not queued (its queue full, say): the callout fails and is sent again.
                pending.fail(status_of(&e).max(503), format!("kafka: {e}"));
                drop(r);
                pending.done();
            }
        }
        recs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("kafka://a:9092,b:9093/usage.events?compression=zstd")
            .unwrap()
            .unwrap();
        assert_eq!(t.brokers, "a:9092,b:9093");
        assert_eq!(t.topic, "usage.events");
        assert_eq!(t.compression, "zstd");
        assert!(t.idempotence);
        let t = parse_url("kafka://127.0.0.1:9092/usage").unwrap().unwrap();
        assert_eq!(t.compression, "lz4");
        assert!(t.idempotence);
        let t = parse_url("kafka://h:1/t?idempotence=false&compression=gzip")
            .unwrap()
            .unwrap();
        assert!(!t.idempotence);
        assert_eq!(t.compression, "gzip");
        assert!(parse_url("127.0.0.1:9092").is_none());
        for bad in [
            "kafka://127.0.0.1:9092",
            "kafka://127.0.0.1/usage",
            "kafka:///usage",
            "kafka://h:1/",
            "kafka://h:1/a b",
            "kafka://h:1/t?compression=brotli",
            "kafka://h:1/t?acks=1",
            "kafka://h:1/t?idempotence=no",
        ] {
            assert!(parse_url(bad).unwrap().is_err(), "{bad}");
        }
    }

    #[test]
    fn records_and_keys() {
        let body = br#"{"records":[{"key":"org-\u00e9","value":{"id":"x","n":1}},
            {"key":null,"value":{"id":"y"}},{"key":42,"value":{}},{"value":{"id":"z"}}]}"#;
        let r = records(body).unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].0.as_deref(), Some("org-é".as_bytes()));
        assert_eq!(r[0].1, br#"{"id":"x","n":1}"#);
        assert_eq!(r[1].0, None);
        assert_eq!(r[2].0.as_deref(), Some(&b"42"[..]));
        assert_eq!(r[3].0, None);
        assert!(records(br#"{"events":[]}"#).is_err());
        assert!(records(b"[]").is_err());
    }
}
