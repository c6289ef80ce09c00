//! The agent's fixed numbers: what it asks of the filter's VM, and how the main loop
//! (`agent`) paces reading, groups and saving.

use std::time::Duration;

/// Asks the filter for one `random_get` of 10 bytes per event id, made in the stream's
/// `on_log`: the agent answers it from the entry, so an entry read again after a restart
/// gets the same event id.
pub(crate) const VM_CONFIG_LISTEN: &[u8] = br#"{"event_ids":"per_stream"}"#;
/// Following a file, also: a retryable failure is retried until it succeeds. The file holds
/// every entry, and reading pauses while the filter is full, so giving up would only lose.
pub(crate) const VM_CONFIG_FOLLOW: &[u8] = br#"{"event_ids":"per_stream","retries":"unlimited"}"#;
/// How often the saved offset may be rewritten.
pub(crate) const SAVE_EVERY: Duration = Duration::from_millis(200);
/// Entries between two looks at the clock.
pub(crate) const BATCH: usize = 256;
/// Longest idle wait (new lines in the file are noticed this fast).
pub(crate) const IDLE: Duration = Duration::from_millis(5);
/// Longest group while callouts are in flight: their answers wait for the group's end (an
/// extra tick), so this bounds how long a finished callout holds its `max_in_flight` slot.
/// With groups as long as the filter's timer period (100 ms), delivery was capped at
/// `max_in_flight × batch_size` per period while reading a backlog.
pub(crate) const GROUP: Duration = Duration::from_millis(5);
