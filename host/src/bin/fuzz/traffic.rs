//! Traffic in a scenario: a generated request on one of its VMs, and the collector's answer
//! to a pending callout (an answer, a reset, or none until Envoy's timeout).

use crate::check::{log_line, trap, R};
use crate::gen;
use crate::rng::Rng;
use crate::sim::{Kind, Sim};
use proxy_wasm_host::abi::Headers;
use proxy_wasm_host::Callout;

impl Sim {
    pub(crate) fn request(&mut self, r: &mut Rng) -> R {
        let i = if self.kind == Kind::Queue {
            r.below(self.vms.len() as u64 - 1) as usize
        } else {
            0
        };
        let big = r.chance(2);
        let text = |r: &mut Rng| r.text_upto(if big { 64 * 1024 } else { 64 });
        let path: Vec<u8> = match r.below(10) {
            0 => text(r),
            1 => b"/health".to_vec(),
            _ => {
                let mut p = format!("/v1/{}", r.string_upto(20)).into_bytes();
                if r.chance(30) {
                    p.extend_from_slice(format!("?q={}", r.below(100)).as_bytes());
                }
                p
            }
        };
        let method = r
            .pick(&[
                "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "",
            ])
            .as_bytes()
            .to_vec();
        let key_name = if r.chance(80) {
            "x-subscription-key"
        } else {
            "x-api-key"
        };
        let mut headers: Headers = vec![
            (":method".into(), method),
            (":path".into(), path),
            (":authority".into(), b"api.example.com".to_vec()),
        ];
        if r.chance(85) {
            let k = if r.chance(70) {
                format!("k{}", r.below(50)).into_bytes()
            } else {
                text(r)
            };
            headers.push((key_name.into(), k));
        }
        if r.chance(20) {
            headers.push(("x-org".into(), text(r)));
        }
        if r.chance(50) {
            headers.push(("x-request-id".into(), r.text_upto(40)));
        }
        for _ in 0..r.size(6) {
            let name = String::from_utf8_lossy(&r.text_in(1, 20)).to_ascii_lowercase();
            headers.push((name, text(r)));
        }
        if r.chance(5) {
            // Pseudo-headers missing or repeated.
            let j = r.below(headers.len() as u64) as usize;
            if r.chance(50) {
                headers.remove(j);
            } else {
                let dup = headers[j].clone();
                headers.push(dup);
            }
        }
        let body = r.size(if big { 1 << 20 } else { 40_000 });
        let llm_body = r.chance(25).then(|| gen::llm_body(r));
        let response = match &llm_body {
            Some(b) => b.len() as u64,
            None => r.size(if big { 1 << 20 } else { 40_000 }),
        };
        let chunk = r.range(((body.max(response)) / 64).max(1), 64 * 1024);
        let upstream = if r.chance(70) {
            r.size(50)
        } else {
            r.size(3000)
        };
        let ending = r.below(100);
        self.log.push(format!(
            "request on vm {i}: {} headers, body {body}, response {response}, chunk {chunk}, upstream {upstream} ms, ending {ending}",
            headers.len()
        ));
        let vm = &mut self.vms[i];
        let mut req = vm
            .request()
            .headers_exact(headers)
            .body(body as usize)
            .response_body(response as usize)
            .chunk_size(chunk)
            .upstream_ms(upstream);
        if let Some(b) = llm_body {
            let ct = *r.pick(&[
                "text/event-stream",
                "application/json",
                "Application/JSON; charset=utf-8",
                "text/plain",
            ]);
            req = req
                .response_header("content-type", ct)
                .response_body_bytes(b);
            if r.chance(10) {
                let enc = *r.pick(&["gzip", "br", "identity"]);
                req = req.response_header("content-encoding", enc);
            }
        } else if r.chance(20) {
            req = req.response_header("content-type", "application/json");
        }
        let out = match ending {
            0..=69 => req.respond(gen::answer_status(r)),
            70..=79 => req.respond_raw_status(&r.text_upto(8)),
            80..=89 => req.local_reply(*r.pick(&[503, 404, 429, 500, 200])),
            _ => req.abort(),
        };
        let out = trap("request", out)?;
        if let Some(line) = out.filter_state.get("usage_event") {
            log_line(line)?;
        }
        Ok(())
    }

    pub(crate) fn answer(&mut self, r: &mut Rng, pending: &[Callout]) -> R {
        let s = self.sender();
        let c = r.pick(pending).clone();
        let vm = &mut self.vms[s];
        let what = r.below(100);
        self.log
            .push(format!("answer callout {} with {what}", c.token));
        match what {
            0..=79 => {
                let status = gen::answer_status(r);
                let headers = gen::answer_headers(r);
                let h: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let body = if r.chance(2) {
                    r.bytes_upto(1 << 20)
                } else {
                    r.text_upto(300)
                };
                trap("answer", vm.reply(c.token, status, &h, &body))?;
                if let Some((d, batch, ids)) = self.sent[s].remove(&c.token) {
                    if (200..300).contains(&status) {
                        self.acks[d].ack(&batch, &ids)?;
                    } else {
                        self.acks[d].refuse(status, &ids)?;
                    }
                }
            }
            80..=89 => {
                trap("reset", vm.reset(c.token))?;
                self.sent[s].remove(&c.token);
            }
            _ => {
                // No answer: Envoy times it out at its deadline.
                let ms = c.timeout_ms as u64 + r.below(50);
                trap("timeout", vm.advance_ms(ms))?;
            }
        }
        Ok(())
    }
}
