#!/usr/bin/env node
// `make bench`, part (a2): the filter's own wasm work timed in V8 (Node's), the engine Envoy
// embeds, with the host reduced to cheap JavaScript stubs. Envoy's numbers (part b) carry
// ±20% of noise between runs on this machine; these carry ~1–3%, so they show what a change
// to the wasm code did. What they cannot show is what Envoy itself spends on the host calls
// and the callouts: that is part (b).
//
//   node bench/v8_wasm.js request <file.wasm> [config-json]   ns per request, full cycle
//   node bench/v8_wasm.js encode <bench.wasm>                  ns per event, veil batch of 100
//
// `request` drives context create, request headers (one 8-header map), response headers
// (`:status`), a response body chunk, log, done and delete, with a tick every 4,000 requests
// (100 ms at 40k requests/s) and every callout answered 200 at once; it works for any
// proxy-wasm filter (the floor and null filters too: subtract theirs to leave the filter's own
// work). Each prints one JSON line: the median, min and max of 7 timed rounds after a warm-up
// that lets V8 tier the code up.
'use strict';
const fs = require('fs');

const [mode, file, config] = process.argv.slice(2);
if (!file || !['request', 'encode'].includes(mode)) {
  console.error('usage: v8_wasm.js request|encode file.wasm [config-json]');
  process.exit(2);
}
const enc = new TextEncoder();

function serializeMap(pairs) {
  const kv = pairs.map(([k, v]) => [enc.encode(k), enc.encode(v)]);
  let size = 4;
  for (const [k, v] of kv) size += 8 + k.length + v.length + 2;
  const b = new Uint8Array(size);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, kv.length, true);
  let o = 4;
  for (const [k, v] of kv) { dv.setUint32(o, k.length, true); dv.setUint32(o + 4, v.length, true); o += 8; }
  for (const [k, v] of kv) { b.set(k, o); o += k.length + 1; b.set(v, o); o += v.length + 1; }
  return b;
}

// what wrk sends through Envoy in part (b), as Envoy hands it over
const REQUEST = serializeMap([
  [':authority', '127.0.0.1:10000'], [':path', '/direct/v1/things/42?expand=owner'], [':method', 'GET'],
  [':scheme', 'http'], ['user-agent', 'wrk'], ['x-subscription-key', 'bench-key-0123456789'],
  ['x-forwarded-proto', 'http'], ['x-request-id', '0b1a7c0e-5f55-4bb0-9a43-4a4d6f0e0d11']]);
const CALL_RESPONSE = serializeMap([[':status', '200']]);
const EMPTY_MAP = serializeMap([]);
const STATUS = enc.encode('200');
const STATUS_KEY = enc.encode(':status');
const CONFIG = enc.encode(config || '{"enabled":true,"sinks":["http"],"http":{"cluster":"collector"}}');
const MAP = { request: 0, response: 2, callResponse: 6 };
const BUFFER = { pluginConfiguration: 7 };

function timed(rounds, run) {
  const t = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint();
    const n = run();
    t.push(Number(process.hrtime.bigint() - t0) / n);
  }
  t.sort((a, b) => a - b);
  const r1 = (x) => Math.round(x * 10) / 10;
  return { median: r1(t[t.length >> 1]), min: r1(t[0]), max: r1(t[t.length - 1]) };
}

function instantiate(bytes, env, wasi) {
  const stubs = (o) => new Proxy(o, { get: (t, k) => (k in t ? t[k] : () => 0) });
  const inst = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: stubs(env), wasi_snapshot_preview1: stubs(wasi) });
  if (inst.exports._initialize) inst.exports._initialize();
  return inst;
}

function encode() {
  const x = instantiate(fs.readFileSync(file), {}, {}).exports;
  if (!x.bench_prepare) throw new Error(`${file}: no bench exports (build with --features bench)`);
  x.bench_prepare(100);
  for (let i = 0; i < 20000; i++) x.bench_batch_body(0);
  const ns = timed(7, () => { for (let i = 0; i < 20000; i++) x.bench_batch_body(0); return 20000 * 100; });
  return { mode, file: file.split('/').pop(), ns_per_event: ns };
}

function request() {
  let x, mem;
  let now = 1763900000000000000n;
  let token = 1;
  const pending = [];
  const dv = () => new DataView(mem.buffer);
  const give = (bytes, ptrPtr, sizePtr) => {
    const p = x.proxy_on_memory_allocate(bytes.length);
    new Uint8Array(mem.buffer).set(bytes, p);
    dv().setUint32(ptrPtr, p, true);
    dv().setUint32(sizePtr, bytes.length, true);
    return 0;
  };
  let seed = 0x9e3779b9;
  const env = {
    proxy_get_header_map_pairs: (t, pp, sp) =>
      give(t === MAP.request ? REQUEST : t === MAP.callResponse ? CALL_RESPONSE : EMPTY_MAP, pp, sp),
    // `:status` of a response or a callout's answer; anything else is not there (1, NotFound)
    proxy_get_header_map_value: (t, kp, ks, pp, sp) =>
      t !== MAP.request && ks === STATUS_KEY.length &&
      new Uint8Array(mem.buffer, kp, ks).every((b, i) => b === STATUS_KEY[i]) ? give(STATUS, pp, sp) : 1,
    proxy_get_current_time_nanoseconds: (p) => { dv().setBigUint64(p, now, true); return 0; },
    proxy_define_metric: (t, np, ns, rp) => { dv().setUint32(rp, token++, true); return 0; },
    proxy_register_shared_queue: (np, ns, rp) => { dv().setUint32(rp, 1, true); return 0; },
    proxy_resolve_shared_queue: () => 1,
    proxy_dequeue_shared_queue: () => 1,
    proxy_get_buffer_bytes: (t, start, len, pp, sp) => (t === BUFFER.pluginConfiguration ? give(CONFIG, pp, sp) : 1),
    proxy_http_call: (...a) => { const t = token++; dv().setUint32(a[9], t, true); pending.push(t); return 0; },
    proxy_get_property: () => 1,
    proxy_call_foreign_function: () => 1,
  };
  const wasi = {
    random_get: (p, n) => {
      const b = new Uint8Array(mem.buffer, p, n);
      for (let i = 0; i < n; i++) { seed = (seed * 1103515245 + 12345) >>> 0; b[i] = seed >>> 24; }
      return 0;
    },
    environ_sizes_get: (a, b) => { dv().setUint32(a, 0, true); dv().setUint32(b, 0, true); return 0; },
    clock_time_get: (id, precision, p) => { dv().setBigUint64(p, now, true); return 0; },
    proc_exit: () => { throw new Error('proc_exit'); },
  };
  x = instantiate(fs.readFileSync(file), env, wasi).exports;
  mem = x.memory;
  x.proxy_on_context_create(1, 0);
  if (x.proxy_on_vm_start) x.proxy_on_vm_start(1, 0);
  if (!x.proxy_on_configure(1, CONFIG.length)) throw new Error(`${file}: configuration refused`);
  let id = 2;
  let callouts = 0;
  // like Envoy, skip a stream callback the module does not export
  const noop = () => 0;
  const responseHeaders = x.proxy_on_response_headers || noop;
  const onDelete = x.proxy_on_delete || noop;
  const run = (n) => {
    for (let i = 0; i < n; i++, id++) {
      x.proxy_on_context_create(id, 1);
      x.proxy_on_request_headers(id, 8, 1);
      now += 20000n;
      responseHeaders(id, 1, 0);
      x.proxy_on_response_body(id, 2, 1);
      x.proxy_on_log(id);
      x.proxy_on_done(id);
      onDelete(id);
      now += 5000n;
      if (id % 4000 === 0) x.proxy_on_tick(1);
      while (pending.length) { callouts++; x.proxy_on_http_call_response(1, pending.shift(), 1, 0, 0); }
    }
    return n;
  };
  run(200000);
  const before = callouts;
  const ns = timed(7, () => run(100000));
  return { mode, file: file.split('/').pop(), ns_per_request: ns, callouts_per_100: +((callouts - before) / 7000).toFixed(2) };
}

console.log(JSON.stringify(mode === 'encode' ? encode() : request()));
