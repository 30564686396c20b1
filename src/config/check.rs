//! The checks every loader of a key uses: the one-line error naming the key, and durations.

use std::time::Duration;

use super::ConfigError;

pub(super) fn bad(key: &str, why: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("invalid config: `{key}`: {why}"))
}

pub(super) fn millis(key: &str, v: Option<u64>, default: Duration) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(0) => Err(bad(key, "must be greater than 0")),
        Some(ms) if ms > 86_400_000 => Err(bad(key, "must be at most one day")),
        Some(ms) => Ok(Duration::from_millis(ms)),
    }
}
