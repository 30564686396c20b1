//! Secrets (passwords, bearer tokens): a newtype that cannot be logged by accident, reading one
//! from a file (`*_file` keys, Kubernetes Secrets mounted as files), and the constant-time
//! comparisons that check what a client presents against one.

use std::path::Path;

use super::ConfigError;

/// A password or token. `Debug` and `Display` print `<redacted>`, so a secret inside a config
/// struct, an error or a `tracing` field never reaches a log; the value is read only through
/// [`Secret::expose`], where it is sent or compared.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the places that must send it (AUTH to a node, a bearer header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` equals the secret. The time taken depends only on the secret's length,
    /// not on where the first difference is, so that a client cannot find the secret a byte at a
    /// time by timing its guesses.
    pub fn matches(&self, given: &[u8]) -> bool {
        let want = self.0.as_bytes();
        // Every byte of the secret is compared whatever the length of the guess.
        let mut diff = u8::from(want.len() != given.len());
        for (i, w) in want.iter().enumerate() {
            diff |= w ^ given.get(i).copied().unwrap_or(!w);
        }
        diff == 0
    }

    /// Whether an HTTP `Authorization` header value carries this secret as a bearer token
    /// (`Bearer <token>`; the scheme is case-insensitive, as RFC 9110 says).
    pub fn authorizes(&self, authorization: Option<&[u8]>) -> bool {
        let Some(h) = authorization else {
            return false;
        };
        match h.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => self.matches(h[7..].trim_ascii()),
            _ => false,
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_string())
    }
}

/// Reads the secret in the file at `path` for the key `key`: the file's text less its trailing
/// line break (`echo secret > file` and most editors add one; Kubernetes keeps what was stored).
/// An unreadable or empty file is an error naming the key and the path, never the content.
pub fn read_file(key: &str, path: &Path) -> Result<Secret, ConfigError> {
    let bad = |why: String| ConfigError(format!("invalid config: `{key}`: {why}"));
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
    let value = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
    if value.is_empty() {
        return Err(bad(format!("{} is empty", path.display())));
    }
    Ok(Secret(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?} {:?}", Some(&s)), "<redacted> <redacted> Some(<redacted>)");
    }

    #[test]
    fn compares_whole_values() {
        let s = Secret::new("hunter2");
        assert!(s.matches(b"hunter2"));
        for wrong in [&b""[..], b"hunter", b"hunter22", b"Hunter2", b"hunter3"] {
            assert!(!s.matches(wrong), "{:?}", String::from_utf8_lossy(wrong));
        }
        assert!(s.authorizes(Some(b"Bearer hunter2")));
        assert!(s.authorizes(Some(b"bearer hunter2")));
        assert!(!s.authorizes(Some(b"Basic hunter2")));
        assert!(!s.authorizes(Some(b"Bearer hunter")));
        assert!(!s.authorizes(Some(b"Bearer")));
        assert!(!s.authorizes(Some(b"hunter2")));
        assert!(!s.authorizes(None));
    }

    #[test]
    fn files_lose_one_trailing_line_break() {
        let dir = std::env::temp_dir().join(format!("clusterless-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("s");
        for (text, want) in [("pw\n", "pw"), ("pw\r\n", "pw"), ("pw", "pw"), (" pw \n\n", " pw \n")] {
            std::fs::write(&f, text).unwrap();
            assert_eq!(read_file("k", &f).unwrap().expose(), want, "{text:?}");
        }
        std::fs::write(&f, "\n").unwrap();
        let e = read_file("auth.requirepass_file", &f).unwrap_err().0;
        assert_eq!(e, format!("invalid config: `auth.requirepass_file`: {} is empty", f.display()));
        let missing = dir.join("missing");
        let e = read_file("admin.token_file", &missing).unwrap_err().0;
        assert_eq!(
            e,
            format!(
                "invalid config: `admin.token_file`: cannot read {}: No such file or directory (os error 2)",
                missing.display()
            )
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
