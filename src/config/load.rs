//! Merging the file, the environment and the flags over the defaults, and validating each key.

use std::path::Path;

use super::check::{bad, millis};
use super::file::{self, FileConfig};
use super::redis_syntax::parse_output_limit;
use super::secret::{read_file, Secret};
use super::{Config, ConfigError, Credentials, CrossSlot, ProxyArgs, Source, User};

/// Largest `keyspace.databases` (each database is a key prefix; Redis itself has no hard cap).
const MAX_DATABASES: u32 = 1_000_000;

/// A secret given as a value (`key`) or in a file (`key_file`); an empty value counts as unset.
/// Both at once is an error: which one was meant cannot be known, and using either silently
/// would hide a stale setting.
fn secret_or_file(key: &str, value: Option<Secret>, file: Option<&Path>) -> Result<Option<Secret>, ConfigError> {
    match (value.filter(|v| !v.expose().is_empty()), file) {
        (Some(_), Some(_)) => {
            Err(ConfigError(format!("invalid config: `{key}` and `{key}_file` are both set; set one of them")))
        }
        (Some(v), None) => Ok(Some(v)),
        (None, Some(path)) => read_file(&format!("{key}_file"), path).map(Some),
        (None, None) => Ok(None),
    }
}

impl Config {
    /// Merges file, environment (already folded into `args` by clap) and flags over the defaults.
    pub fn load(args: &ProxyArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => file::read(path)?,
            None => FileConfig::default(),
        };
        let mut c = Config::defaults();

        match args.listen.as_ref().or(file.listen.as_ref()).map(String::as_str) {
            Some("" | "none") => c.listen = None,
            Some(l) => {
                c.listen = Some(l.parse().map_err(|_| bad("listen", format!("`{l}` is not an IP:PORT address")))?)
            }
            None => {}
        }
        c.tls = super::tls::load(args, file.tls)?;
        if c.listen.is_none() && c.tls.is_none() {
            return Err(bad(
                "listen",
                "the plain listener is off and `tls.listen` is not set: no client could connect",
            ));
        }
        c.seeds = if !args.seeds.is_empty() { args.seeds.clone() } else { file.seeds.unwrap_or_default() };
        for s in &c.seeds {
            validate_hostport(s).map_err(|why| bad("seeds", format!("`{s}`: {why}")))?;
        }

        let l = &file.limits;
        c.limits.max_clients = args.max_clients.or(l.max_clients).unwrap_or(c.limits.max_clients);
        c.limits.threads = args.threads.or(l.threads).unwrap_or(c.limits.threads);
        if c.limits.threads > 1024 {
            return Err(bad("limits.threads", "must be between 0 (one per CPU, at most 4) and 1024"));
        }
        c.limits.max_bulk_len = l.max_bulk_len.unwrap_or(c.limits.max_bulk_len);
        c.limits.max_inline_len = l.max_inline_len.unwrap_or(c.limits.max_inline_len);
        c.limits.max_pipeline = l.max_pipeline.unwrap_or(c.limits.max_pipeline);
        for entry in l.client_output_buffer_limit.iter().flatten() {
            parse_output_limit(entry, &mut c.limits.output)
                .map_err(|why| bad("limits.client_output_buffer_limit", why))?;
        }
        c.limits.query_buffer = l.client_query_buffer_limit.map_or(c.limits.query_buffer, |s| s.0);
        c.limits.max_memory = args.max_memory.or(l.max_memory.map(|s| s.0)).unwrap_or(c.limits.max_memory);
        positive("limits.max_clients", c.limits.max_clients as u64)?;
        positive("limits.max_bulk_len", c.limits.max_bulk_len as u64)?;
        positive("limits.max_inline_len", c.limits.max_inline_len as u64)?;
        positive("limits.max_pipeline", c.limits.max_pipeline as u64)?;
        positive("limits.client_query_buffer_limit", c.limits.query_buffer as u64)?;

        let requirepass = args.requirepass.clone().or(file.auth.requirepass.map(Secret::new));
        let requirepass_file = args.requirepass_file.as_deref().or(file.auth.requirepass_file.as_deref());
        c.auth.requirepass = secret_or_file("auth.requirepass", requirepass, requirepass_file)?;
        c.auth.user = args.user.clone().or(file.auth.user).filter(|u| !u.is_empty());
        if c.auth.user.is_some() && c.auth.requirepass.is_none() {
            return Err(bad("auth.user", "set together with auth.requirepass"));
        }
        for (i, u) in file.auth.users.iter().enumerate() {
            let key = format!("auth.users[{i}]");
            if u.name.is_empty() || u.name.contains(char::is_whitespace) {
                return Err(bad("auth.users", format!("`{}` is not a valid user name", u.name)));
            }
            let password = secret_or_file(
                &format!("{key}.password"),
                u.password.clone().map(Secret::new),
                u.password_file.as_deref(),
            )?
            .ok_or_else(|| bad("auth.users", format!("user `{}` needs a password", u.name)))?;
            let backend_password = secret_or_file(
                &format!("{key}.backend_password"),
                u.backend_password.clone().map(Secret::new),
                u.backend_password_file.as_deref(),
            )?;
            let backend = match (u.backend_user.clone().filter(|b| !b.is_empty()), backend_password) {
                (Some(user), Some(password)) => Some(Credentials { user, password }),
                (None, None) => None,
                (Some(_), None) => {
                    return Err(bad(&format!("{key}.backend_user"), "set together with backend_password"))
                }
                (None, Some(_)) => {
                    return Err(bad(&format!("{key}.backend_password"), "set together with backend_user"))
                }
            };
            c.auth.users.push(User { name: u.name.clone(), password, backend });
        }

        c.routing = super::routing::load(args, &file.routing, &file.backend)?;
        let b = file.backend;
        c.backend.user = args.backend_user.clone().or(b.user).filter(|u| !u.is_empty());
        let password = args.backend_password.clone().or(b.password.map(Secret::new));
        let password_file = args.backend_password_file.as_deref().or(b.password_file.as_deref());
        c.backend.password = secret_or_file("backend.password", password, password_file)?;
        if c.backend.user.is_some() && c.backend.password.is_none() {
            return Err(bad("backend.user", "set together with backend.password"));
        }
        c.backend.connections_per_node = b.connections_per_node.unwrap_or(c.backend.connections_per_node);
        if !(1..=64).contains(&c.backend.connections_per_node) {
            return Err(bad("backend.connections_per_node", "must be between 1 and 64"));
        }
        c.backend.connect_timeout =
            millis("backend.connect_timeout_ms", b.connect_timeout_ms, c.backend.connect_timeout)?;
        c.backend.request_timeout =
            millis("backend.request_timeout_ms", b.request_timeout_ms, c.backend.request_timeout)?;
        c.backend.retry_budget = millis("backend.retry_budget_ms", b.retry_budget_ms, c.backend.retry_budget)?;
        c.backend.max_redirects = b.max_redirects.unwrap_or(c.backend.max_redirects);
        if c.backend.max_redirects == 0 || c.backend.max_redirects > 16 {
            return Err(bad("backend.max_redirects", "must be between 1 and 16"));
        }
        c.backend.tls = super::node_tls::TlsSettings::merge(args, b.tls).build()?;
        c.backend.dedicated_per_node = b.dedicated_per_node.unwrap_or(c.backend.dedicated_per_node);
        if !(1..=100_000).contains(&c.backend.dedicated_per_node) {
            return Err(bad("backend.dedicated_per_node", "must be between 1 and 100000"));
        }
        let max_compute = match args.max_compute_bytes.as_deref().or(file.keyspace.max_compute_bytes.as_deref()) {
            None => 64 << 20,
            Some(v) => super::redis_syntax::parse_size(v)
                .filter(|&n| n > 0)
                .ok_or_else(|| bad("keyspace.max_compute_bytes", format!("`{v}` is not a size such as \"64mb\"")))?,
        };
        c.keyspace.compute_cross_slot =
            match args.cross_slot_reads.as_deref().or(file.keyspace.cross_slot_reads.as_deref()) {
                None | Some("refuse") => None,
                Some("compute") => Some(max_compute),
                Some(other) => {
                    return Err(bad("keyspace.cross_slot_reads", format!("`{other}` is not \"refuse\" or \"compute\"")))
                }
            };
        c.keyspace.databases = args.databases.or(file.keyspace.databases).unwrap_or(1);
        if !(1..=MAX_DATABASES).contains(&c.keyspace.databases) {
            return Err(bad("keyspace.databases", format!("must be between 1 and {MAX_DATABASES}")));
        }
        let one_slot = if args.one_slot_dbs.is_empty() {
            file.keyspace.one_slot_databases.unwrap_or_default()
        } else {
            args.one_slot_dbs.clone()
        };
        if let Some(n) = one_slot.iter().find(|&&n| n >= c.keyspace.databases) {
            return Err(bad(
                "keyspace.one_slot_databases",
                format!("{n} is not a database (keyspace.databases = {})", c.keyspace.databases),
            ));
        }
        c.keyspace.one_slot_databases = one_slot;
        c.commands.config_set_all_nodes = match file.commands.config_set.as_deref() {
            None | Some("all-nodes") => true,
            Some("refuse") => false,
            Some(other) => {
                return Err(bad("commands.config_set", format!("`{other}` is not \"all-nodes\" or \"refuse\"")))
            }
        };
        c.transactions.cross_slot = match file.transactions.cross_slot.as_deref() {
            None | Some("refuse") => CrossSlot::Refuse,
            Some("per-shard") => CrossSlot::PerShard,
            Some(other) => {
                return Err(bad("transactions.cross_slot", format!("`{other}` is not \"refuse\" or \"per-shard\"")))
            }
        };

        let t = file.topology;
        c.topology.refresh_interval =
            millis("topology.refresh_interval_ms", t.refresh_interval_ms, c.topology.refresh_interval)?;
        c.topology.min_refresh_gap =
            millis("topology.min_refresh_gap_ms", t.min_refresh_gap_ms, c.topology.min_refresh_gap)?;
        c.topology.bus_ping_interval =
            millis("topology.bus_ping_interval_ms", t.bus_ping_interval_ms, c.topology.bus_ping_interval)?;
        let steady = args.bus_steady_interval_ms.or(t.bus_steady_interval_ms);
        c.topology.bus_steady_interval =
            millis("topology.bus_steady_interval_ms", steady, c.topology.bus_steady_interval)?;
        if c.topology.bus_steady_interval < c.topology.bus_ping_interval {
            if steady.is_some() {
                return Err(bad(
                    "topology.bus_steady_interval_ms",
                    "must be at least topology.bus_ping_interval_ms (the fast beat)",
                ));
            }
            // Only the fast beat was set, above the default steady one: one beat.
            c.topology.bus_steady_interval = c.topology.bus_ping_interval;
        }
        c.topology.reconcile_interval =
            millis("topology.reconcile_interval_ms", t.reconcile_interval_ms, c.topology.reconcile_interval)?;
        c.topology.failover_hold = millis("topology.failover_hold_ms", t.failover_hold_ms, c.topology.failover_hold)?;
        c.topology.observer = args.observer.clone().or(t.observer).filter(|o| !o.is_empty());
        if let Some(o) = &c.topology.observer {
            let hp = o.strip_prefix("http://").or_else(|| o.strip_prefix("https://")).ok_or_else(|| {
                bad("topology.observer", format!("`{o}` is not http://HOST:PORT or https://HOST:PORT"))
            })?;
            validate_hostport(hp.trim_end_matches('/'))
                .map_err(|why| bad("topology.observer", format!("`{o}`: {why}")))?;
        }
        if let Some(path) = args.observer_token_file.as_deref().or(t.observer_token_file.as_deref()) {
            c.topology.observer_token = Some(read_file("topology.observer_token_file", path)?);
        }
        c.topology.observer_ca_file = args.observer_ca_file.clone().or(t.observer_ca_file);
        if let Some(path) = &c.topology.observer_ca_file {
            // Read here so that a wrong path stops the start; the certificates are parsed where
            // the TLS client is built.
            std::fs::metadata(path)
                .map_err(|e| bad("topology.observer_ca_file", format!("cannot read {}: {e}", path.display())))?;
        }
        c.topology.source = match args.topology_source.clone().or(t.source).as_deref() {
            None | Some("bus") => Source::Bus,
            Some("poll") => Source::Poll,
            Some(other) => return Err(bad("topology.source", format!("`{other}` is not bus or poll"))),
        };

        if let Some(level) = args.log_level.clone().or(file.log.level) {
            c.log.level = level;
            c.log.level_given = true;
        }
        let format = args.log_format.clone().or(file.log.format).unwrap_or_else(|| "plain".into());
        c.log.json = match format.as_str() {
            "plain" => false,
            "json" => true,
            other => return Err(bad("log.format", format!("`{other}` is not plain or json"))),
        };
        match args.metrics.as_ref().or(file.admin.listen.as_ref()) {
            Some(a) if a.is_empty() => c.admin_listen = None,
            Some(a) => {
                c.admin_listen =
                    Some(a.parse().map_err(|_| bad("admin.listen", format!("`{a}` is not an IP:PORT address")))?)
            }
            None => {}
        }
        if let Some(path) = args.admin_token_file.as_deref().or(file.admin.token_file.as_deref()) {
            c.admin.token = Some(read_file("admin.token_file", path)?);
        }
        if let Some(paths) = file.admin.open_paths {
            if let Some(p) = paths.iter().find(|p| !p.starts_with('/')) {
                return Err(bad("admin.open_paths", format!("`{p}` is not a path (like /healthz)")));
            }
            c.admin.open_paths = paths;
        }
        c.drain_timeout = millis("lifecycle.drain_timeout_ms", file.lifecycle.drain_timeout_ms, c.drain_timeout)?;
        if tracing_subscriber::EnvFilter::try_new(&c.log.level).is_err() {
            return Err(bad("log.level", format!("`{}` is not a level or filter", c.log.level)));
        }
        Ok(c)
    }
}
fn positive(key: &str, v: u64) -> Result<(), ConfigError> {
    if v == 0 {
        return Err(bad(key, "must be greater than 0"));
    }
    Ok(())
}

/// Checks `host:port` (the host may be a name; it is resolved when used).
fn validate_hostport(s: &str) -> Result<(), &'static str> {
    let (host, port) = s.rsplit_once(':').ok_or("expected HOST:PORT")?;
    if host.is_empty() {
        return Err("empty host");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err("the port is not a number from 1 to 65535"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn with_file(text: &str) -> Result<Config, ConfigError> {
        let dir =
            std::env::temp_dir().join(format!("clusterless-cfg-{}-{}", std::process::id(), rand::random::<u32>()));
        std::fs::write(&dir, text).unwrap();
        let args = ProxyArgs { config: Some(dir.clone()), ..Default::default() };
        let r = Config::load(&args);
        let _ = std::fs::remove_file(dir);
        r
    }

    #[test]
    fn shipped_example_parses_to_defaults() {
        let text = include_str!("../../config/clusterless.toml");
        let c = with_file(text).unwrap();
        let d = Config::defaults();
        assert_eq!(c.listen, d.listen);
        assert_eq!(c.limits.max_clients, d.limits.max_clients);
        assert_eq!(c.backend.request_timeout, d.backend.request_timeout);
        assert_eq!(c.topology.refresh_interval, d.topology.refresh_interval);
        assert_eq!(c.admin_listen, d.admin_listen);
        assert_eq!(c.topology.source, d.topology.source);
        assert_eq!(c.topology.failover_hold, d.topology.failover_hold);
        assert_eq!(c.topology.bus_ping_interval, d.topology.bus_ping_interval);
        assert_eq!(c.drain_timeout, d.drain_timeout);
        assert_eq!(c.admin.open_paths, d.admin.open_paths);
        assert_eq!(c.keyspace.databases, d.keyspace.databases);
        assert_eq!(c.keyspace.one_slot_databases, d.keyspace.one_slot_databases);
        assert_eq!(
            (c.routing.read_from, c.routing.read_your_writes),
            (d.routing.read_from, d.routing.read_your_writes)
        );
    }

    #[test]
    fn errors_name_the_key() {
        let e = with_file("[backend]\nconnect_timeout_ms = 0\n").unwrap_err().0;
        assert!(e.contains("backend.connect_timeout_ms"), "{e}");
        let e = with_file("listen = \"nope\"\n").unwrap_err().0;
        assert!(e.contains("`listen`"), "{e}");
        let e = with_file("[backend]\nbogus = 1\n").unwrap_err().0;
        assert!(e.contains("bogus") && !e.contains('\n'), "{e}");
        let e = with_file("seeds = [\"host-without-port\"]\n").unwrap_err().0;
        assert!(e.contains("seeds"), "{e}");
        let e = with_file("[transactions]\ncross_slot = \"yes\"\n").unwrap_err().0;
        assert!(e.contains("transactions.cross_slot") && e.contains("per-shard"), "{e}");
        let e = with_file("[[auth.users]]\nname = \"app\"\npassword = \"\"\n").unwrap_err().0;
        assert!(e.contains("auth.users"), "{e}");
        let e = with_file("[keyspace]\ndatabases = 0\n").unwrap_err().0;
        assert!(e.contains("keyspace.databases"), "{e}");
        let e = with_file("[keyspace]\ndatabases = 2\none_slot_databases = [0, 2]\n").unwrap_err().0;
        assert!(e.contains("keyspace.one_slot_databases") && e.contains("2 is not a database"), "{e}");
    }

    #[test]
    fn file_errors_name_the_line_and_the_key() {
        let e = with_file("# c\n\n[backend]\nuser = \"\"\nmax_redirects = \"five\"\n").unwrap_err().0;
        assert!(
            e.ends_with(
                ", line 5, `backend.max_redirects`: invalid type: string \"five\", expected an integer from 0 to \
                 4294967295"
            ),
            "{e}"
        );
        // A key that starts its line: the line breaks before it, plus one.
        let e = with_file("[backend]\n\nbogus = 1\n").unwrap_err().0;
        assert!(e.contains(", line 3, `backend.bogus`: unknown field `bogus`"), "{e}");
        let e = with_file("[[auth.users]]\nname = \"a\"\n").unwrap_err().0;
        assert_eq!(e, "invalid config: `auth.users`: user `a` needs a password");
        let e = with_file("backend = { max_redirects = -1 }\n").unwrap_err().0;
        assert!(e.ends_with(", line 1, `backend.max_redirects`: invalid value: integer `-1`, expected an integer from 0 to 4294967295"), "{e}");
    }

    #[test]
    fn a_given_log_level_beats_rust_log() {
        let given = with_file("[log]\nlevel = \"warn\"\n").unwrap().log;
        assert_eq!(given.filter(Some("debug")), ("warn".to_string(), None));
        let args = ProxyArgs { log_level: Some("error".into()), ..Default::default() };
        assert_eq!(Config::load(&args).unwrap().log.filter(Some("debug")), ("error".to_string(), None));
        let unset = Config::defaults().log;
        assert_eq!(unset.filter(Some("clusterless=debug")), ("clusterless=debug".to_string(), None));
        assert_eq!(unset.filter(Some(" ")), ("info".to_string(), None));
        assert_eq!(unset.filter(None), ("info".to_string(), None));
        let (level, why) = unset.filter(Some("foo["));
        assert_eq!(level, "info");
        assert!(why.is_some_and(|w| w.starts_with("RUST_LOG `foo[` ignored: ")));
    }

    #[test]
    fn stateful_settings() {
        let c = with_file("[transactions]\ncross_slot = \"per-shard\"\n[[auth.users]]\nname = \"app\"\npassword = \"pw\"\n[backend]\ndedicated_per_node = 4\n").unwrap();
        assert_eq!(c.transactions.cross_slot, CrossSlot::PerShard);
        assert_eq!(c.auth.users, vec![User { name: "app".into(), password: Secret::new("pw"), backend: None }]);
        assert!(c.auth.required());
        assert_eq!(c.backend.dedicated_per_node, 4);
        assert_eq!(Config::defaults().transactions.cross_slot, CrossSlot::Refuse);
    }

    /// A scratch file holding `text`, removed on drop.
    struct Scratch(std::path::PathBuf);
    impl Scratch {
        fn new(text: &str) -> Scratch {
            let p = std::env::temp_dir().join(format!(
                "clusterless-secret-{}-{}",
                std::process::id(),
                rand::random::<u32>()
            ));
            std::fs::write(&p, text).unwrap();
            Scratch(p)
        }
        fn path(&self) -> String {
            self.0.display().to_string()
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn secrets_from_files() {
        let (pass, node, app, token) =
            (Scratch::new("client-pw\n"), Scratch::new("node-pw\n"), Scratch::new("app-pw"), Scratch::new("tok\n"));
        let text = format!(
            "[auth]\nrequirepass_file = \"{}\"\n[backend]\npassword_file = \"{}\"\n\
             [[auth.users]]\nname = \"app\"\npassword_file = \"{}\"\nbackend_user = \"app-acl\"\n\
             backend_password_file = \"{}\"\n\
             [[auth.users]]\nname = \"ops\"\npassword = \"ops-pw\"\n\
             [admin]\ntoken_file = \"{}\"\nopen_paths = [\"/healthz\"]\n\
             [topology]\nobserver = \"https://obs:9737\"\nobserver_token_file = \"{}\"\n",
            pass.path(),
            node.path(),
            app.path(),
            node.path(),
            token.path(),
            token.path()
        );
        let c = with_file(&text).unwrap();
        assert_eq!(c.auth.requirepass, Some(Secret::new("client-pw")));
        assert_eq!(c.backend.password, Some(Secret::new("node-pw")));
        let backend = Some(Credentials { user: "app-acl".into(), password: Secret::new("node-pw") });
        assert_eq!(
            c.auth.users,
            vec![
                User { name: "app".into(), password: Secret::new("app-pw"), backend },
                User { name: "ops".into(), password: Secret::new("ops-pw"), backend: None },
            ]
        );
        assert_eq!(c.admin.token, Some(Secret::new("tok")));
        assert_eq!(c.admin.open_paths, vec!["/healthz".to_string()]);
        assert_eq!(c.topology.observer_token, Some(Secret::new("tok")));
        // Nothing of it shows when the configuration is printed.
        let printed = format!("{c:?}");
        for s in ["client-pw", "node-pw", "app-pw", "ops-pw", "tok\""] {
            assert!(!printed.contains(s), "{s} in {printed}");
        }
        assert_eq!(Config::defaults().admin.open_paths, vec!["/healthz".to_string(), "/readyz".to_string()]);

        // Flags name their files too.
        let args = ProxyArgs {
            requirepass_file: Some(pass.0.clone()),
            backend_password_file: Some(node.0.clone()),
            admin_token_file: Some(token.0.clone()),
            ..Default::default()
        };
        let c = Config::load(&args).unwrap();
        assert_eq!((c.auth.requirepass, c.backend.password), (Some("client-pw".into()), Some("node-pw".into())));
        assert_eq!(c.admin.token, Some("tok".into()));
    }

    #[test]
    fn a_secret_and_its_file_are_not_both_set() {
        let f = Scratch::new("pw\n");
        let p = f.path();
        let cases = [
            (format!("[auth]\nrequirepass = \"a\"\nrequirepass_file = \"{p}\"\n"), "auth.requirepass"),
            (format!("[backend]\npassword = \"a\"\npassword_file = \"{p}\"\n"), "backend.password"),
            (format!("[[auth.users]]\nname = \"u\"\npassword = \"a\"\npassword_file = \"{p}\"\n"), "auth.users[0].password"),
            (
                format!("[[auth.users]]\nname = \"u\"\npassword = \"a\"\nbackend_user = \"b\"\nbackend_password = \"c\"\nbackend_password_file = \"{p}\"\n"),
                "auth.users[0].backend_password",
            ),
        ];
        for (text, key) in cases {
            assert_eq!(
                with_file(&text).unwrap_err().0,
                format!("invalid config: `{key}` and `{key}_file` are both set; set one of them")
            );
        }
        // The value from a flag and the file from the config file conflict as well.
        let dir = Scratch::new(&format!("[auth]\nrequirepass_file = \"{p}\"\n"));
        let args = ProxyArgs { config: Some(dir.0.clone()), requirepass: Some("flag".into()), ..Default::default() };
        assert_eq!(
            Config::load(&args).unwrap_err().0,
            "invalid config: `auth.requirepass` and `auth.requirepass_file` are both set; set one of them"
        );
    }

    #[test]
    fn the_steady_bus_beat_is_never_faster_than_the_fast_one() {
        let c = with_file("[topology]\nbus_steady_interval_ms = 5000\n").unwrap();
        assert_eq!(c.topology.bus_steady_interval, Duration::from_secs(5));
        let e = with_file("[topology]\nbus_ping_interval_ms = 500\nbus_steady_interval_ms = 400\n").unwrap_err().0;
        assert_eq!(
            e,
            "invalid config: `topology.bus_steady_interval_ms`: must be at least topology.bus_ping_interval_ms (the \
             fast beat)"
        );
        // Only the fast beat set, above the default steady one: one beat for both.
        let c = with_file("[topology]\nbus_ping_interval_ms = 3000\n").unwrap();
        assert_eq!(c.topology.bus_steady_interval, Duration::from_secs(3));
        let args = ProxyArgs { bus_steady_interval_ms: Some(1000), ..Default::default() };
        assert_eq!(Config::load(&args).unwrap().topology.bus_steady_interval, Duration::from_secs(1));
    }

    #[test]
    fn bad_secret_files_and_backend_credentials() {
        let empty = Scratch::new("\n");
        let e = with_file(&format!("[backend]\npassword_file = \"{}\"\n", empty.path())).unwrap_err().0;
        assert_eq!(e, format!("invalid config: `backend.password_file`: {} is empty", empty.path()));
        let e = with_file("[admin]\ntoken_file = \"/nonexistent/clusterless-token\"\n").unwrap_err().0;
        assert_eq!(
            e,
            "invalid config: `admin.token_file`: cannot read /nonexistent/clusterless-token: No such file or \
             directory (os error 2)"
        );
        let e = with_file("[topology]\nobserver_token_file = \"/nonexistent/t\"\n").unwrap_err().0;
        assert!(e.starts_with("invalid config: `topology.observer_token_file`: cannot read /nonexistent/t: "), "{e}");
        let e = with_file("[[auth.users]]\nname = \"u\"\npassword = \"a\"\nbackend_user = \"b\"\n").unwrap_err().0;
        assert_eq!(e, "invalid config: `auth.users[0].backend_user`: set together with backend_password");
        let e = with_file("[[auth.users]]\nname = \"u\"\npassword = \"a\"\nbackend_password = \"b\"\n").unwrap_err().0;
        assert_eq!(e, "invalid config: `auth.users[0].backend_password`: set together with backend_user");
        let e = with_file("[admin]\nopen_paths = [\"healthz\"]\n").unwrap_err().0;
        assert_eq!(e, "invalid config: `admin.open_paths`: `healthz` is not a path (like /healthz)");
        let e = with_file("[topology]\nobserver = \"ftp://o:1\"\n").unwrap_err().0;
        assert_eq!(e, "invalid config: `topology.observer`: `ftp://o:1` is not http://HOST:PORT or https://HOST:PORT");
        let e = with_file("[topology]\nobserver_ca_file = \"/nonexistent/ca.pem\"\n").unwrap_err().0;
        assert!(e.starts_with("invalid config: `topology.observer_ca_file`: cannot read /nonexistent/ca.pem: "), "{e}");
    }

    #[test]
    fn flags_beat_file() {
        let dir = std::env::temp_dir().join(format!("clusterless-cfg2-{}", std::process::id()));
        std::fs::write(&dir, "listen = \"127.0.0.1:7000\"\n[limits]\nmax_clients = 5\n").unwrap();
        let args = ProxyArgs { config: Some(dir.clone()), listen: Some("127.0.0.1:7100".into()), ..Default::default() };
        let c = Config::load(&args).unwrap();
        let _ = std::fs::remove_file(dir);
        assert_eq!(c.listen.map(|l| l.port()), Some(7100));
        assert_eq!(c.limits.max_clients, 5);
    }
}
