//! The `[routing]` keys: where reads go and for how long a client's own writes keep its reads on
//! the master; and `backend.read_from`, the older key they replace.

use std::time::Duration;

use super::file::{FileBackend, FileRouting};
use super::{ConfigError, ProxyArgs, ReadFrom, RoutingConfig};

fn bad(key: &str, why: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("invalid config: `{key}`: {why}"))
}

/// `routing.read_from` (flag, variable or file), or the deprecated `backend.read_from`
/// ("replicas" meant what "replica-preferred" means: a live replica, else the master).
pub(super) fn load(args: &ProxyArgs, file: &FileRouting, backend: &FileBackend) -> Result<RoutingConfig, ConfigError> {
    let mut r = RoutingConfig::default();
    let given = args.read_from.as_deref().or(file.read_from.as_deref());
    r.read_from = match (given, backend.read_from.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(bad("backend.read_from", "replaced by routing.read_from, which is also set; remove it"))
        }
        (Some(v), None) => ReadFrom::parse(v).ok_or_else(|| bad("routing.read_from", not_a_mode(v)))?,
        (None, Some("master")) => {
            r.deprecated_key = true;
            ReadFrom::Master
        }
        (None, Some("replicas")) => {
            r.deprecated_key = true;
            ReadFrom::ReplicaPreferred
        }
        (None, Some(other)) => {
            return Err(bad(
                "backend.read_from",
                format!("`{other}` is not \"master\" or \"replicas\" (deprecated: use routing.read_from)"),
            ))
        }
        (None, None) => ReadFrom::Master,
    };
    let ms = args.read_your_writes_ms.or(file.read_your_writes_ms).unwrap_or(0);
    if ms > 60_000 {
        return Err(bad("routing.read_your_writes_ms", "must be at most 60000 (0 turns it off)"));
    }
    r.read_your_writes = Duration::from_millis(ms);
    Ok(r)
}

fn not_a_mode(v: &str) -> String {
    let names: Vec<String> = ReadFrom::NAMES.iter().map(|n| format!("\"{n}\"")).collect();
    format!("`{v}` is not one of {}", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(read_from: Option<&str>, backend: Option<&str>, ms: Option<u64>) -> Result<RoutingConfig, String> {
        let args = ProxyArgs { read_from: read_from.map(str::to_string), ..Default::default() };
        let file = FileRouting { read_from: None, read_your_writes_ms: ms };
        let b = FileBackend { read_from: backend.map(str::to_string), ..Default::default() };
        load(&args, &file, &b).map_err(|e| e.0)
    }

    #[test]
    fn modes_and_the_deprecated_key() {
        for (i, name) in ReadFrom::NAMES.iter().enumerate() {
            let r = with(Some(name), None, None).unwrap();
            assert_eq!((r.read_from as usize, r.read_from.name()), (i, *name));
        }
        assert_eq!(with(None, None, None).unwrap().read_from, ReadFrom::Master);
        let old = with(None, Some("replicas"), None).unwrap();
        assert_eq!((old.read_from, old.deprecated_key), (ReadFrom::ReplicaPreferred, true));
        assert!(!with(Some("replica"), None, None).unwrap().deprecated_key);
        assert_eq!(with(None, Some("master"), None).unwrap().read_from, ReadFrom::Master);
        assert_eq!(
            with(Some("slave"), None, None).unwrap_err(),
            "invalid config: `routing.read_from`: `slave` is not one of \"master\", \"master-preferred\", \
             \"replica-preferred\", \"replica\", \"nearest\""
        );
        assert_eq!(
            with(Some("replica"), Some("replicas"), None).unwrap_err(),
            "invalid config: `backend.read_from`: replaced by routing.read_from, which is also set; remove it"
        );
        assert_eq!(
            with(None, Some("any"), None).unwrap_err(),
            "invalid config: `backend.read_from`: `any` is not \"master\" or \"replicas\" (deprecated: use \
             routing.read_from)"
        );
        assert_eq!(with(None, None, Some(250)).unwrap().read_your_writes, Duration::from_millis(250));
        assert_eq!(
            with(None, None, Some(60_001)).unwrap_err(),
            "invalid config: `routing.read_your_writes_ms`: must be at most 60000 (0 turns it off)"
        );
    }
}
