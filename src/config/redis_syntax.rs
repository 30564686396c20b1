//! Sizes and output buffer limits as Redis writes them in its configuration.

use std::time::Duration;

use crate::memory::{OutputLimit, OutputLimits};

/// Parses a size as Redis writes them: `1024`, `32mb`, `1gb` (`k`/`m`/`g` are powers of 1000,
/// `kb`/`mb`/`gb` of 1024).
pub(super) fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim().to_ascii_lowercase();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(digits);
    let n: usize = n.parse().ok()?;
    let mult: usize = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Parses one `client-output-buffer-limit` entry, `<class> <hard> <soft> <soft seconds>`, into
/// `limits`. Errors say what is wrong.
pub(super) fn parse_output_limit(entry: &str, limits: &mut OutputLimits) -> Result<(), String> {
    let f: Vec<&str> = entry.split_whitespace().collect();
    let [class, hard, soft, secs] = f[..] else {
        return Err(format!("`{entry}` is not \"<class> <hard limit> <soft limit> <soft seconds>\""));
    };
    let size = |v: &str| parse_size(v).ok_or_else(|| format!("`{v}` is not a size (like 32mb)"));
    let l = OutputLimit {
        hard: size(hard)?,
        soft: size(soft)?,
        soft_for: Duration::from_secs(secs.parse().map_err(|_| format!("`{secs}` is not a number of seconds"))?),
    };
    match class {
        "normal" => limits.normal = l,
        "pubsub" => limits.pubsub = l,
        "replica" | "slave" => return Err("the replica class has no meaning for a proxy's clients".into()),
        other => return Err(format!("`{other}` is not a client class (normal, pubsub)")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_limits_as_redis_writes_them() {
        assert_eq!(parse_size("32mb"), Some(32 << 20));
        assert_eq!(parse_size("1k"), Some(1000));
        assert_eq!(parse_size("1GB"), Some(1 << 30));
        assert_eq!(parse_size("7"), Some(7));
        assert_eq!(parse_size("7xb"), None);
        let mut l = OutputLimits::default();
        parse_output_limit("normal 10mb 5mb 30", &mut l).unwrap();
        assert_eq!(l.normal, OutputLimit { hard: 10 << 20, soft: 5 << 20, soft_for: Duration::from_secs(30) });
        assert!(parse_output_limit("replica 1 1 1", &mut l).is_err());
        assert!(parse_output_limit("pubsub 1mb", &mut l).is_err());
    }
}
