//! The filter's callouts as the host sees them: the ones made, a collector's answers (by
//! hand, or by a scripted collector), resets, refusals and Envoy's own timeouts.

use super::instance::Vm;
use super::reply::Reply;
use crate::abi::Headers;
use crate::state::{CallResponse, Callout, CalloutState};
use anyhow::{bail, Result};

impl Vm {
    /// Every callout made (finished ones up to the history limit), in the order made.
    pub fn callouts(&self) -> Vec<Callout> {
        let st = self.store.data();
        let mut all: Vec<Callout> = st
            .callouts
            .iter()
            .chain(st.pending.iter())
            .cloned()
            .collect();
        all.sort_by_key(|c| c.token);
        all
    }

    pub fn pending(&self) -> Vec<Callout> {
        self.store.data().pending.clone()
    }

    /// Callouts made since the last call, each handed out once (a host that sends them).
    pub fn take_new_callouts(&mut self) -> Vec<Callout> {
        let after = self.taken_token;
        let new: Vec<Callout> = self
            .store
            .data()
            .pending
            .iter()
            .filter(|c| c.token > after)
            .cloned()
            .collect();
        if let Some(last) = new.iter().map(|c| c.token).max() {
            self.taken_token = last;
        }
        new
    }

    /// Keeps at most `n` finished callouts (long runs would otherwise hold every body).
    pub fn limit_history(&mut self, n: usize) {
        self.store.data_mut().history_limit = n;
    }

    pub(crate) fn finish_callout(
        &mut self,
        token: u32,
        state: CalloutState,
        headers: Headers,
        body: Vec<u8>,
    ) -> Result<()> {
        let ctx = {
            let st = self.store.data_mut();
            let Some(i) = st.pending.iter().position(|c| c.token == token) else {
                bail!("no pending callout {token}");
            };
            let mut c = st.pending.remove(i);
            c.state = state.clone();
            let ctx = c.context_id;
            if st.history_limit > 0 {
                if st.callouts.len() >= st.history_limit {
                    st.callouts.remove(0);
                }
                st.callouts.push(c);
            }
            ctx
        };
        let (nh, nb) = if state == CalloutState::Failed {
            (0, 0)
        } else {
            (headers.len(), body.len())
        };
        self.store.data_mut().call_response = Some(CallResponse { headers, body });
        let f = self.f.clone();
        let r = self.call(
            "on_http_call_response",
            &f.http_call_response,
            ctx,
            (ctx as i32, token as i32, nh as i32, nb as i32, 0),
        );
        self.store.data_mut().call_response = None;
        r
    }

    /// The collector answers a callout.
    pub fn reply(
        &mut self,
        token: u32,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<()> {
        let owned = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.answer(token, status, owned, body.to_vec())?;
        self.settle()
    }

    /// Delivers a collector's answer as Envoy does: `:status`, the headers (lowercased),
    /// `content-length`, and the body.
    fn answer(
        &mut self,
        token: u32,
        status: u32,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<()> {
        let mut h: Headers = vec![(":status".into(), status.to_string().into_bytes())];
        h.extend(
            headers
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.into_bytes())),
        );
        h.push(("content-length".into(), body.len().to_string().into_bytes()));
        self.finish_callout(token, CalloutState::Answered(status), h, body)
    }

    /// The connection was reset after the request was sent: no headers at all.
    pub fn reset(&mut self, token: u32) -> Result<()> {
        self.finish_callout(token, CalloutState::Failed, vec![], vec![])?;
        self.settle()
    }

    /// The collector could not be reached: Envoy answers 503 itself.
    pub fn refuse(&mut self, token: u32) -> Result<()> {
        let body = b"upstream connect error or disconnect/reset before headers. reset reason: connection failure";
        self.reply(token, 503, &[("content-type", "text/plain")], body)
    }

    /// Envoy gave up waiting after the callout's `timeout_ms`: a 504 of its own.
    pub fn time_out(&mut self, token: u32) -> Result<()> {
        let body = b"upstream request timeout".to_vec();
        let h: Headers = vec![
            (":status".into(), b"504".to_vec()),
            ("content-length".into(), body.len().to_string().into_bytes()),
            ("content-type".into(), b"text/plain".to_vec()),
        ];
        self.finish_callout(token, CalloutState::TimedOut, h, body)?;
        self.settle()
    }

    /// Answers every new callout with `f` from now on (a scripted collector).
    pub fn auto_reply(&mut self, f: impl FnMut(&Callout) -> Reply + 'static) {
        self.auto = Some(Box::new(f));
    }

    pub fn manual_reply(&mut self) {
        self.auto = None;
    }

    /// Lets the scripted collector answer what is pending.
    pub(crate) fn settle(&mut self) -> Result<()> {
        let Some(mut auto) = self.auto.take() else {
            return Ok(());
        };
        let mut answered = std::collections::HashSet::new();
        let r = (|| -> Result<()> {
            loop {
                let next = self
                    .pending()
                    .into_iter()
                    .find(|c| !answered.contains(&c.token));
                let Some(c) = next else { return Ok(()) };
                answered.insert(c.token);
                match auto(&c) {
                    Reply::Status(s) => self.reply_inner(c.token, s, vec![])?,
                    Reply::WithHeaders(s, h) => self.reply_inner(c.token, s, h)?,
                    Reply::Reset => {
                        self.finish_callout(c.token, CalloutState::Failed, vec![], vec![])?
                    }
                    Reply::Hang => {}
                }
            }
        })();
        self.auto = Some(auto);
        r
    }

    fn reply_inner(
        &mut self,
        token: u32,
        status: u32,
        headers: Vec<(String, String)>,
    ) -> Result<()> {
        let body = if (200..300).contains(&status) {
            br#"{"success":true}"#.to_vec()
        } else {
            b"error".to_vec()
        };
        self.answer(token, status, headers, body)
    }
}
