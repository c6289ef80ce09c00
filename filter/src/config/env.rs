//! What the configuration reads from the VM's environment.

/// `ENABLE_EVENT_STREAMING=true` (or `1`) turns streaming on, as it does in Veil.
pub(super) fn streaming_on(env: &dyn Fn(&str) -> Option<String>) -> bool {
    env("ENABLE_EVENT_STREAMING").is_some_and(|v| {
        let v = v.trim().to_ascii_lowercase();
        v == "true" || v == "1"
    })
}

/// A value that is exactly `${NAME}` becomes NAME's value, so secrets stay out of the YAML;
/// any other value is kept as written. `Err` carries the rule an unset NAME broke.
pub(super) fn substitute(
    value: String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    match value.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        Some(var) => env(var).ok_or(format!("environment variable {var} is not set in the VM")),
        None => Ok(value),
    }
}
