//! What a callout came back with, as Envoy gives it to the filter: whoever made the callout
//! (HTTP or Kafka) answers in these terms.

#[derive(Debug)]
pub enum Outcome {
    Answered {
        status: u32,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Could not connect (or the name did not resolve).
    ConnectFailed,
    /// The connection broke after the request was sent, before a whole answer.
    Reset,
}

#[derive(Debug)]
pub struct Answer {
    pub token: u32,
    pub outcome: Outcome,
}
