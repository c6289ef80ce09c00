//! What the encoder reads of an event, from either form it has: the `Event` a request just
//! became (the log line), or the `Record` it is held as (batch bodies). Reading a record's
//! fields in place saves building an `Event` from it for every element of a batch, which
//! cost about a quarter of encoding one (`bench/notes.md`).

use crate::event::{AttrValue, Event, Tokens};
use crate::record::Record;
use std::borrow::Cow;

pub trait Fields {
    fn id(&self) -> &[u8; 16];
    fn api_path(&self) -> &str;
    fn subscription_key(&self) -> &str;
    fn method(&self) -> &str;
    fn response_time_ms(&self) -> u64;
    fn status_code(&self) -> u32;
    fn completed_unix_ns(&self) -> u64;
    fn request_size(&self) -> u64;
    fn response_size(&self) -> u64;
    fn request_id(&self) -> Option<&str>;
    fn authority(&self) -> Option<&str>;
    fn api_route(&self) -> Option<&str>;
    /// Each attribute in order, until `f` returns false.
    fn each_attribute(&self, f: &mut dyn FnMut(&str, &AttrValue<'_>) -> bool);
    fn tokens(&self) -> Option<Tokens<'_>>;

    fn success(&self) -> bool {
        (200..=299).contains(&self.status_code())
    }

    fn billable(&self) -> bool {
        (200..=499).contains(&self.status_code())
    }
}

impl Fields for Event<'_> {
    fn id(&self) -> &[u8; 16] {
        &self.id
    }
    fn api_path(&self) -> &str {
        &self.api_path
    }
    fn subscription_key(&self) -> &str {
        &self.subscription_key
    }
    fn method(&self) -> &str {
        &self.method
    }
    fn response_time_ms(&self) -> u64 {
        self.response_time_ms
    }
    fn status_code(&self) -> u32 {
        self.status_code
    }
    fn completed_unix_ns(&self) -> u64 {
        self.completed_unix_ns
    }
    fn request_size(&self) -> u64 {
        self.request_size
    }
    fn response_size(&self) -> u64 {
        self.response_size
    }
    fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
    fn authority(&self) -> Option<&str> {
        self.authority.as_deref()
    }
    fn api_route(&self) -> Option<&str> {
        self.api_route.as_deref()
    }
    fn each_attribute(&self, f: &mut dyn FnMut(&str, &AttrValue<'_>) -> bool) {
        for (name, value) in &self.attributes {
            if !f(name, value) {
                return;
            }
        }
    }
    fn tokens(&self) -> Option<Tokens<'_>> {
        self.tokens.as_ref().map(|t| Tokens {
            model: t.model.as_deref().map(Cow::Borrowed),
            usage: t.usage,
            currency: t.currency.as_deref().map(Cow::Borrowed),
            unpriced: t.unpriced,
        })
    }
}

impl Fields for Record {
    fn id(&self) -> &[u8; 16] {
        &self.id
    }
    fn api_path(&self) -> &str {
        self.path()
    }
    fn subscription_key(&self) -> &str {
        self.key()
    }
    fn method(&self) -> &str {
        Record::method(self)
    }
    fn response_time_ms(&self) -> u64 {
        self.response_time_ms
    }
    fn status_code(&self) -> u32 {
        self.status_code
    }
    fn completed_unix_ns(&self) -> u64 {
        self.completed_unix_ns
    }
    fn request_size(&self) -> u64 {
        self.request_size
    }
    fn response_size(&self) -> u64 {
        self.response_size
    }
    fn request_id(&self) -> Option<&str> {
        Record::request_id(self)
    }
    fn authority(&self) -> Option<&str> {
        Record::authority(self)
    }
    fn api_route(&self) -> Option<&str> {
        self.route()
    }
    fn each_attribute(&self, f: &mut dyn FnMut(&str, &AttrValue<'_>) -> bool) {
        Record::each_attribute(self, &mut |name, value| f(name, value))
    }
    fn tokens(&self) -> Option<Tokens<'_>> {
        Record::tokens(self)
    }
}
