//! A host for native tests of the contexts: scripted headers and clock, recorded logs,
//! metrics, callouts and queue traffic.

use crate::callout::Callout;
use crate::host::{BufferKind, Host, Level, Map};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};

#[derive(Default)]
pub struct FakeHost {
    pub now_ns: RefCell<u64>,
    pub headers: RefCell<HashMap<(u32, String), Vec<u8>>>,
    pub buffers: RefCell<HashMap<u32, Vec<u8>>>,
    pub logs: RefCell<Vec<(Level, String)>>,
    pub properties: RefCell<Vec<(Vec<u8>, Vec<u8>)>>,
    /// What `property` answers, by NUL-joined path.
    pub readable: RefCell<HashMap<Vec<u8>, Vec<u8>>>,
    /// Every property read, by path.
    pub property_reads: RefCell<Vec<Vec<u8>>>,
    pub metrics: RefCell<Vec<(String, i64)>>,
    pub callouts: RefCell<Vec<(u32, Callout)>>,
    /// When set, `http_call` refuses with this status.
    pub refuse_calls: RefCell<Option<u32>>,
    pub queue: RefCell<VecDeque<Vec<u8>>>,
    /// When set, `enqueue` refuses (no service reads the queue).
    pub refuse_enqueue: RefCell<bool>,
    pub env: RefCell<HashMap<String, String>>,
    pub done_calls: RefCell<u32>,
    pub host_calls: RefCell<u32>,
    /// Every single-header read, by name.
    pub header_reads: RefCell<Vec<String>>,
    next_token: RefCell<u32>,
}

impl FakeHost {
    pub fn set_header(&self, map: Map, name: &str, value: &[u8]) {
        self.headers
            .borrow_mut()
            .insert((map as u32, name.to_string()), value.to_vec());
    }

    pub fn clear_headers(&self, map: Map) {
        self.headers
            .borrow_mut()
            .retain(|(m, _), _| *m != map as u32);
    }

    pub fn set_config(&self, json: &str) {
        self.buffers.borrow_mut().insert(
            BufferKind::PluginConfiguration as u32,
            json.as_bytes().to_vec(),
        );
    }

    pub fn config_len(&self) -> usize {
        self.buffers
            .borrow()
            .get(&(BufferKind::PluginConfiguration as u32))
            .map_or(0, Vec::len)
    }

    pub fn advance_ms(&self, ms: u64) {
        *self.now_ns.borrow_mut() += ms * 1_000_000;
    }

    pub fn metric(&self, name: &str) -> i64 {
        self.metrics
            .borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }

    /// Takes the callouts started so far.
    pub fn take_callouts(&self) -> Vec<(u32, Callout)> {
        std::mem::take(&mut *self.callouts.borrow_mut())
    }

    fn call(&self) {
        *self.host_calls.borrow_mut() += 1;
    }
}

impl Host for FakeHost {
    fn log(&self, level: Level, msg: &[u8]) {
        self.call();
        self.logs
            .borrow_mut()
            .push((level, String::from_utf8_lossy(msg).into_owned()));
    }

    fn header(&self, map: Map, name: &str) -> Option<Vec<u8>> {
        self.call();
        self.header_reads.borrow_mut().push(name.to_string());
        self.headers
            .borrow()
            .get(&(map as u32, name.to_string()))
            .cloned()
    }

    fn header_map(&self, map: Map) -> Option<Vec<u8>> {
        self.call();
        let mut pairs: Vec<(String, String)> = self
            .headers
            .borrow()
            .iter()
            .filter(|((m, _), _)| *m == map as u32)
            .map(|((_, k), v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        pairs.sort();
        Some(crate::callout::serialize_map(&pairs))
    }

    fn now_ns(&self) -> u64 {
        self.call();
        *self.now_ns.borrow()
    }

    fn property(&self, path: &[u8]) -> Option<Vec<u8>> {
        self.call();
        self.property_reads.borrow_mut().push(path.to_vec());
        self.readable.borrow().get(path).cloned()
    }

    fn set_property(&self, path: &[u8], value: &[u8]) -> bool {
        self.call();
        self.properties
            .borrow_mut()
            .push((path.to_vec(), value.to_vec()));
        true
    }

    fn buffer(&self, kind: BufferKind, start: usize, max: usize) -> Option<Vec<u8>> {
        self.call();
        let b = self.buffers.borrow();
        let v = b.get(&(kind as u32))?;
        let end = start.saturating_add(max).min(v.len());
        Some(v.get(start..end).unwrap_or_default().to_vec())
    }

    fn set_buffer(&self, kind: BufferKind, start: usize, size: usize, value: &[u8]) -> bool {
        self.call();
        let mut b = self.buffers.borrow_mut();
        let Some(buf) = b.get_mut(&(kind as u32)) else {
            return false;
        };
        let start = start.min(buf.len());
        let end = start.saturating_add(size).min(buf.len());
        buf.splice(start..end, value.iter().copied());
        true
    }

    fn remove_header(&self, map: Map, name: &str) -> bool {
        self.call();
        self.headers
            .borrow_mut()
            .remove(&(map as u32, name.to_string()));
        true
    }

    fn define_metric(&self, _gauge: bool, name: &str) -> Option<u32> {
        self.call();
        let mut m = self.metrics.borrow_mut();
        m.push((name.to_string(), 0));
        Some(m.len() as u32 - 1)
    }

    fn increment_metric(&self, id: u32, by: i64) {
        self.call();
        if let Some(m) = self.metrics.borrow_mut().get_mut(id as usize) {
            m.1 += by;
        }
    }

    fn set_tick_period_ms(&self, _ms: u32) -> bool {
        self.call();
        true
    }

    fn register_queue(&self, _name: &str) -> Option<u32> {
        self.call();
        Some(1)
    }

    fn resolve_queue(&self, _vm_id: &str, _name: &str) -> Option<u32> {
        self.call();
        Some(1)
    }

    fn enqueue(&self, _queue: u32, value: &[u8]) -> bool {
        self.call();
        if *self.refuse_enqueue.borrow() {
            return false;
        }
        self.queue.borrow_mut().push_back(value.to_vec());
        true
    }

    fn dequeue(&self, _queue: u32) -> Option<Vec<u8>> {
        self.call();
        self.queue.borrow_mut().pop_front()
    }

    fn http_call(&self, c: &Callout) -> Result<u32, u32> {
        self.call();
        if let Some(st) = *self.refuse_calls.borrow() {
            return Err(st);
        }
        let mut t = self.next_token.borrow_mut();
        *t += 1;
        self.callouts.borrow_mut().push((*t, c.clone()));
        Ok(*t)
    }

    fn env_var(&self, name: &str) -> Option<String> {
        self.env.borrow().get(name).cloned()
    }

    fn done(&self) {
        self.call();
        *self.done_calls.borrow_mut() += 1;
    }
}
