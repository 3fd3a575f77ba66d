//! Reading a configuration file: parsing, then validation, with every error phrased
//! for the administrator as `FILE: line N: key K: problem`.

use std::net::IpAddr;
use std::path::Path;

use super::{ClusterConfig, Config, ConfigError};

/// Keys that were moved, with the key that replaces each: an old configuration gets
/// an error naming the new key rather than "unknown field".
const MOVED: &[(&str, &str, &str)] = &[
    (
        "webmail",
        "login_max_failures",
        "auth.account_ip_max_failures",
    ),
    (
        "webmail",
        "login_max_failures_per_ip",
        "auth.ip_max_failures",
    ),
    ("webmail", "login_window_seconds", "auth.window_s"),
];

impl Config {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!(
                "{}: cannot read the configuration: {e}",
                path.display()
            ))
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates configuration text; `path` is used in messages only.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        for (section, key, now) in MOVED {
            if let Some(line) = find_key_line(text, section, key) {
                return Err(ConfigError(format!(
                    "{}: line {line}: key `{section}.{key}`: moved: set `{now}` instead (one limiter now covers SMTP, IMAP and the webmail)",
                    path.display()
                )));
            }
        }
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let (line, key) = match e.span() {
                Some(span) => locate_span(text, span.start),
                None => (0, String::new()),
            };
            let msg = e.message().trim().to_string();
            ConfigError(match (line, key.is_empty()) {
                (0, _) => format!("{}: {msg}", path.display()),
                (l, true) => format!("{}: line {l}: {msg}", path.display()),
                (l, false) => format!("{}: line {l}: key `{key}`: {msg}", path.display()),
            })
        })?;
        cfg.validate(text, path)?;
        Ok(cfg)
    }

    fn validate(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let err = |section: &str, key: &str, problem: String| {
            let line = find_key_line(text, section, key);
            let full = if section.is_empty() {
                key.to_string()
            } else {
                format!("{section}.{key}")
            };
            ConfigError(match line {
                Some(l) => format!("{}: line {l}: key `{full}`: {problem}", path.display()),
                None => format!("{}: key `{full}`: {problem}", path.display()),
            })
        };
        if crate::store::normalize_account(&self.node.name).is_err() || self.node.name.contains('.')
        {
            return Err(err(
                "node",
                "name",
                format!(
                    "{:?} is not a valid node name (letters, digits, '-', '_')",
                    self.node.name
                ),
            ));
        }
        if self.node.data_dir.as_os_str().is_empty() {
            return Err(err("node", "data_dir", "must not be empty".into()));
        }
        if !valid_domain(&self.domain.name) {
            return Err(err(
                "domain",
                "name",
                format!("{:?} is not a domain name", self.domain.name),
            ));
        }
        if let Some(bad) = self.domain.local_domains.iter().find(|d| !valid_domain(d)) {
            return Err(err(
                "domain",
                "local_domains",
                format!("{bad:?} is not a domain name"),
            ));
        }
        for (alias, target) in &self.domain.aliases {
            if crate::store::normalize_account(alias).is_err()
                || crate::store::normalize_account(target).is_err()
            {
                return Err(err(
                    "domain",
                    "aliases",
                    format!("alias {alias:?} = {target:?}: names must be valid account names"),
                ));
            }
        }
        if let Some(tls) = &self.tls {
            for (key, file) in [("cert", &tls.cert), ("key", &tls.key)] {
                if !file.is_file() {
                    return Err(err(
                        "tls",
                        key,
                        format!("file {} does not exist or is not a file", file.display()),
                    ));
                }
            }
        }
        if self.smtp.max_message_bytes < 1024 {
            return Err(err(
                "smtp",
                "max_message_bytes",
                "must be at least 1024".into(),
            ));
        }
        if let Some(c) = &self.cluster {
            self.validate_cluster(c, &err)?;
        }
        if let Some(r) = &self.replication {
            if self.cluster.is_none() {
                return Err(err(
                    "replication",
                    "peer",
                    "[replication] needs [cluster] (its roles and auth_key_file)".into(),
                ));
            }
            if r.peer == r.listen {
                return Err(err(
                    "replication",
                    "peer",
                    format!("{} is this node's own listen address", r.peer),
                ));
            }
            if r.ack_timeout_ms == 0 {
                return Err(err(
                    "replication",
                    "ack_timeout_ms",
                    "must be greater than 0".into(),
                ));
            }
            if r.log_keep_ops == 0 {
                return Err(err(
                    "replication",
                    "log_keep_ops",
                    "must be at least 1".into(),
                ));
            }
        }
        self.validate_http(text, path)?;
        self.validate_outbound(&err)?;
        self.validate_monitor(&err)?;
        if self.auth.max_fail_delay_ms < self.auth.fail_delay_ms {
            return Err(err(
                "auth",
                "max_fail_delay_ms",
                format!(
                    "must be at least fail_delay_ms ({})",
                    self.auth.fail_delay_ms
                ),
            ));
        }
        for (section, key, v) in [
            ("smtp", "timeout_s", self.smtp.timeout_s),
            ("imap", "timeout_s", self.imap.timeout_s),
            ("imap", "login_timeout_s", self.imap.login_timeout_s),
            ("smtp", "max_sessions", self.smtp.max_sessions as u64),
            ("imap", "max_sessions", self.imap.max_sessions as u64),
            ("auth", "window_s", self.auth.window_s),
            ("auth", "ip_max_failures", self.auth.ip_max_failures.into()),
            (
                "auth",
                "account_ip_max_failures",
                self.auth.account_ip_max_failures.into(),
            ),
            ("auth", "ip_parallel", self.auth.ip_parallel.into()),
            (
                "auth",
                "strangers_parallel",
                self.auth.strangers_parallel.into(),
            ),
            (
                "auth",
                "session_max_failures",
                self.auth.session_max_failures.into(),
            ),
            ("auth", "max_entries", self.auth.max_entries as u64),
            // A body is written before the op naming it commits: with no grace the
            // sweep could delete it in between.
            ("store", "gc_grace_s", self.store.gc_grace_s),
            (
                "smtp",
                "max_submission_sessions",
                self.smtp.max_submission_sessions as u64,
            ),
            (
                "smtp",
                "max_sessions_per_ip",
                self.smtp.max_sessions_per_ip as u64,
            ),
            ("smtp", "data_timeout_s", self.smtp.data_timeout_s),
            ("smtp", "max_inflight_mb", self.smtp.max_inflight_mb),
            (
                "imap",
                "max_sessions_per_ip",
                self.imap.max_sessions_per_ip as u64,
            ),
            ("dns", "max_forwards", self.dns.max_forwards as u64),
            ("dns", "max_tcp_per_ip", self.dns.max_tcp_per_ip as u64),
        ] {
            if v == 0 {
                return Err(err(section, key, "must be greater than 0".into()));
            }
        }
        Ok(())
    }

    fn validate_outbound(
        &self,
        err: &impl Fn(&str, &str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let o = &self.outbound;
        if let Some(h) = &o.relay_host {
            let ok = h.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !ok {
                return Err(err(
                    "outbound",
                    "relay_host",
                    format!("{h:?} is not HOST:PORT"),
                ));
            }
        }
        if o.relay_user.is_some() != o.relay_password_file.is_some() {
            return Err(err(
                "outbound",
                "relay_user",
                "relay_user and relay_password_file go together".into(),
            ));
        }
        if o.relay_user.is_some() && o.relay_host.is_none() {
            return Err(err("outbound", "relay_user", "needs relay_host".into()));
        }
        for (key, v) in [
            ("max_connections", o.max_connections as u64),
            ("max_per_domain", o.max_per_domain as u64),
            ("connect_timeout_s", o.connect_timeout_s),
            ("command_timeout_s", o.command_timeout_s),
            ("mx_port", o.mx_port as u64),
        ] {
            if v == 0 {
                return Err(err("outbound", key, "must be greater than 0".into()));
            }
        }
        if o.retry_schedule_s.is_empty() || o.retry_schedule_s.contains(&0) {
            return Err(err(
                "outbound",
                "retry_schedule_s",
                "needs at least one value, each greater than 0".into(),
            ));
        }
        if !(o.queue_lifetime_h > 0.0 && o.queue_lifetime_h.is_finite()) {
            return Err(err(
                "outbound",
                "queue_lifetime_h",
                "must be greater than 0".into(),
            ));
        }
        if !(o.delay_warning_h >= 0.0 && o.delay_warning_h.is_finite()) {
            return Err(err(
                "outbound",
                "delay_warning_h",
                "must be 0 or more".into(),
            ));
        }
        let sel_ok = !o.dkim_selector.is_empty()
            && o.dkim_selector.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !sel_ok {
            return Err(err(
                "outbound",
                "dkim_selector",
                format!(
                    "{:?} is not a DNS label (letters, digits, '-')",
                    o.dkim_selector
                ),
            ));
        }
        Ok(())
    }

    fn validate_monitor(
        &self,
        err: &impl Fn(&str, &str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let m = &self.monitor;
        for (key, v) in [
            ("interval_s", m.interval_s),
            ("probe_timeout_s", m.probe_timeout_s),
            ("failures_before_restart", m.failures_before_restart as u64),
            (
                "restarts_before_failover",
                m.restarts_before_failover as u64,
            ),
            ("alert_every_s", m.alert_every_s),
        ] {
            if v == 0 {
                return Err(err("monitor", key, "must be greater than 0".into()));
            }
        }
        if m.probe_timeout_s > m.interval_s {
            return Err(err(
                "monitor",
                "probe_timeout_s",
                format!("must not exceed interval_s ({})", m.interval_s),
            ));
        }
        if !(0.0..100.0).contains(&m.min_free_percent) {
            return Err(err(
                "monitor",
                "min_free_percent",
                "must be at least 0 and below 100".into(),
            ));
        }
        if let Some(to) = &m.alert_to
            && !crate::mail::address::valid_address(to)
        {
            return Err(err(
                "monitor",
                "alert_to",
                format!("{to:?} is not a mail address"),
            ));
        }
        Ok(())
    }

    fn validate_http(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let h = &self.http;
        let err = |key: &str, line: Option<usize>, problem: String| {
            ConfigError(match line {
                Some(l) => format!("{}: line {l}: key `http.{key}`: {problem}", path.display()),
                None => format!("{}: key `http.{key}`: {problem}", path.display()),
            })
        };
        let line = |key: &str| find_key_line(text, "http", key);
        for (key, v) in [
            ("header_timeout_s", h.header_timeout_s),
            ("idle_timeout_s", h.idle_timeout_s),
            ("max_connections", h.max_connections as u64),
            ("max_connections_per_ip", h.max_connections_per_ip as u64),
            ("request_timeout_s", h.request_timeout_s),
        ] {
            if v == 0 {
                return Err(err(key, line(key), "must be greater than 0".into()));
            }
        }
        if !(8192..=1 << 20).contains(&h.max_header_bytes) {
            return Err(err(
                "max_header_bytes",
                line("max_header_bytes"),
                "must be between 8192 and 1048576".into(),
            ));
        }
        if let Some(log) = &h.access_log
            && (log.as_os_str().is_empty() || log.is_dir())
        {
            return Err(err(
                "access_log",
                line("access_log"),
                format!("{} is not a file path", log.display()),
            ));
        }
        if crate::store::normalize_content_path(&h.publish_root).is_err()
            || h.publish_root.trim_matches('/').is_empty()
        {
            return Err(err(
                "publish_root",
                line("publish_root"),
                format!(
                    "{:?} is not a directory of the content area",
                    h.publish_root
                ),
            ));
        }
        if let Some(dir) = &h.publish_dir
            && dir.as_os_str().is_empty()
        {
            return Err(err(
                "publish_dir",
                line("publish_dir"),
                "must be a directory path".into(),
            ));
        }
        if h.redirect_to_https && h.https_listen.is_empty() {
            return Err(err(
                "redirect_to_https",
                line("redirect_to_https"),
                "needs at least one https_listen address".into(),
            ));
        }
        // The n-th `[[http.vhost]]` table and the line of `key` inside it.
        let vhost_line = |n: usize, key: &str| -> Option<usize> {
            let mut seen = 0;
            let mut inside = false;
            for (i, l) in text.lines().enumerate() {
                let t = l.trim();
                if t.starts_with('[') {
                    inside = t.replace(' ', "") == "[[http.vhost]]" && {
                        seen += 1;
                        seen == n + 1
                    };
                    if inside && key.is_empty() {
                        return Some(i + 1);
                    }
                } else if inside
                    && let Some((k, _)) = t.split_once('=')
                    && k.trim().trim_matches('"') == key
                {
                    return Some(i + 1);
                }
            }
            None
        };
        let mut names: Vec<String> = Vec::new();
        for (n, v) in h.vhost.iter().enumerate() {
            for (key, host) in
                std::iter::once(("name", &v.name)).chain(v.aliases.iter().map(|a| ("aliases", a)))
            {
                let host = host.to_ascii_lowercase();
                if !valid_domain(&host) && host.parse::<IpAddr>().is_err() {
                    return Err(err(
                        &format!("vhost.{key}"),
                        vhost_line(n, key),
                        format!("{host:?} is not a host name"),
                    ));
                }
                if names.contains(&host) {
                    return Err(err(
                        &format!("vhost.{key}"),
                        vhost_line(n, key),
                        format!("host {host:?} is named by two virtual hosts"),
                    ));
                }
                names.push(host);
            }
            let root = crate::store::normalize_content_path(&v.root)
                .ok()
                .filter(|r| r != "zones" && !r.starts_with("zones/"));
            if root.is_none() {
                return Err(err(
                    "vhost.root",
                    vhost_line(n, "root"),
                    format!(
                        "{:?} must be a directory of the content area (like \"www-intranet\") outside \"zones\"",
                        v.root
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_cluster(
        &self,
        c: &ClusterConfig,
        err: &dyn Fn(&str, &str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if crate::store::normalize_account(&c.peer).is_err() || c.peer == self.node.name {
            return Err(err(
                "cluster",
                "peer",
                format!(
                    "{:?} must be the other node's name (not {:?})",
                    c.peer, self.node.name
                ),
            ));
        }
        if let Some(p) = &c.preferred
            && *p != c.peer
            && *p != self.node.name
        {
            return Err(err(
                "cluster",
                "preferred",
                format!(
                    "{p:?} is neither this node ({:?}) nor the peer ({:?})",
                    self.node.name, c.peer
                ),
            ));
        }
        if !c.auth_key_file.is_file() {
            return Err(err(
                "cluster",
                "auth_key_file",
                format!(
                    "file {} does not exist or is not a file",
                    c.auth_key_file.display()
                ),
            ));
        }
        if let Some(problem) = super::key_file_mode_problem(&c.auth_key_file) {
            return Err(err("cluster", "auth_key_file", problem));
        }
        if c.keepalive_ms == 0 || c.deadtime_ms < 2 * c.keepalive_ms {
            return Err(err(
                "cluster",
                "deadtime_ms",
                format!(
                    "must be at least twice keepalive_ms ({} ms)",
                    c.keepalive_ms
                ),
            ));
        }
        if c.warntime_ms >= c.deadtime_ms {
            return Err(err(
                "cluster",
                "warntime_ms",
                "must be shorter than deadtime_ms".into(),
            ));
        }
        if c.heartbeat.is_empty() {
            return Err(err(
                "cluster",
                "heartbeat",
                "at least one [[cluster.heartbeat]] medium is needed".into(),
            ));
        }
        if let Some(i) = c
            .heartbeat
            .iter()
            .position(|h| h.udp.is_some() == h.serial.is_some())
        {
            return Err(err(
                "cluster",
                "heartbeat",
                format!(
                    "medium {}: give exactly one of `udp = {{ bind, peer }}` or `serial = {{ device, baud }}`",
                    i + 1
                ),
            ));
        }
        Ok(())
    }
}

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// 1-based line of byte offset `pos`, and the dotted key written on that line (with
/// its table), if the line is a `key = value` line.
fn locate_span(text: &str, pos: usize) -> (usize, String) {
    let pos = pos.min(text.len());
    let line_no = text[..pos].matches('\n').count() + 1;
    let mut section = String::new();
    let mut key = String::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if i + 1 > line_no {
            break;
        }
        if t.starts_with('[') {
            section = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            if i + 1 == line_no {
                key.clear();
            }
        } else if i + 1 == line_no
            && let Some((k, _)) = t.split_once('=')
        {
            key = k.trim().trim_matches('"').to_string();
        }
    }
    let full = if key.is_empty() || section.is_empty() {
        section + &key
    } else {
        format!("{section}.{key}")
    };
    (line_no, full)
}

/// The 1-based line where `key` is set inside `[section]`.
fn find_key_line(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            current = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        } else if current == section
            && let Some((k, _)) = t.split_once('=')
            && k.trim().trim_matches('"') == key
        {
            return Some(i + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/clusterd/clusterd.toml"))
    }

    #[test]
    fn a_moved_key_names_its_replacement() {
        let e = parse(
            "[node]\nname = \"n1\"\ndata_dir = \"/tmp/x\"\n[webmail]\nlogin_max_failures_per_ip = 6\n",
        )
        .unwrap_err()
        .0;
        assert!(
            e.contains("line 5")
                && e.contains("webmail.login_max_failures_per_ip")
                && e.contains("auth.ip_max_failures"),
            "{e}"
        );
    }

    #[test]
    fn misspelled_key_names_line_and_key() {
        let e = parse(
            "[node]\nname = \"n1\"\ndata_dir = \"/tmp/x\"\n[smtp]\nlisen = [\"127.0.0.1:25\"]\n",
        )
        .unwrap_err()
        .0;
        assert!(e.contains("clusterd.toml"), "{e}");
        assert!(e.contains("line 5"), "{e}");
        assert!(e.contains("lisen"), "{e}");
    }

    #[test]
    fn bad_address_names_line_and_key() {
        let e = parse("[node]\nname = \"n1\"\ndata_dir = \"/tmp/x\"\n\n[imap]\nlisten = [\"127.0.0.1:99999\"]\n")
            .unwrap_err()
            .0;
        assert!(e.contains("line 6"), "{e}");
        assert!(e.contains("imap.listen"), "{e}");
    }

    #[test]
    fn missing_tls_file_names_key() {
        let e = parse("[node]\nname = \"n1\"\ndata_dir = \"/tmp/x\"\n[tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\n")
            .unwrap_err()
            .0;
        assert!(e.contains("line 5"), "{e}");
        assert!(e.contains("tls.cert"), "{e}");
    }

    const BASE: &str = "[node]\nname = \"n1\"\ndata_dir = \"/tmp/x\"\n";

    #[test]
    fn a_cluster_key_others_can_read_is_a_config_error() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("authkey");
        std::fs::write(&key, "0123456789abcdef0123\n").unwrap();
        let text = format!(
            "[node]\nname = \"clusternodo1\"\ndata_dir = \"/tmp/x\"\n[cluster]\npeer = \"clusternodo2\"\n\
             vip = \"10.0.0.100/8\"\nauth_key_file = \"{}\"\n[[cluster.heartbeat]]\n\
             udp = {{ bind = \"127.0.0.1:40694\", peer = \"127.0.0.2:40694\" }}\n",
            key.display()
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = parse(&text).unwrap_err().0;
        assert!(
            e.contains("line 7") && e.contains("cluster.auth_key_file") && e.contains("chmod 600"),
            "{e}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        parse(&text).unwrap();
    }

    #[test]
    fn http_defaults_and_vhosts() {
        let cfg = parse(&format!(
            "{BASE}[http]\nredirect_to_https = true\naccess_log = \"/tmp/a.log\"\n\
             [[http.vhost]]\nname = \"Intranet.cluster.com.ec\"\naliases = [\"intranet\"]\nroot = \"www-intranet\"\n"
        ))
        .unwrap();
        assert!(cfg.http.redirect_to_https);
        assert_eq!(cfg.http.header_timeout_s, 10);
        assert_eq!(cfg.http.vhost.len(), 1);
        assert_eq!(cfg.http.vhost[0].root, "www-intranet");
        let cfg = parse(BASE).unwrap();
        assert!(!cfg.http.redirect_to_https);
        assert!(cfg.http.access_log.is_none());
    }

    #[test]
    fn http_vhost_errors_name_line_and_key() {
        // line 4 [http], 5 [[http.vhost]], 6 name, 7 root
        let e = parse(&format!(
            "{BASE}[http]\n[[http.vhost]]\nname = \"a.example\"\nroot = \"../etc\"\n"
        ))
        .unwrap_err()
        .0;
        assert!(e.contains("line 7"), "{e}");
        assert!(e.contains("http.vhost.root"), "{e}");
        let e = parse(&format!(
            "{BASE}[[http.vhost]]\nname = \"a.example\"\nroot = \"zones\"\n"
        ))
        .unwrap_err()
        .0;
        assert!(e.contains("line 6") && e.contains("http.vhost.root"), "{e}");
        let e = parse(&format!(
            "{BASE}[[http.vhost]]\nname = \"a.example\"\nroot = \"w1\"\n\
             [[http.vhost]]\nname = \"bad host!\"\nroot = \"w2\"\n"
        ))
        .unwrap_err()
        .0;
        assert!(e.contains("line 8") && e.contains("http.vhost.name"), "{e}");
        let e = parse(&format!(
            "{BASE}[[http.vhost]]\nname = \"a.example\"\naliases = [\"A.example\"]\nroot = \"w1\"\n"
        ))
        .unwrap_err()
        .0;
        assert!(
            e.contains("line 6") && e.contains("two virtual hosts"),
            "{e}"
        );
        let e = parse(&format!("{BASE}[[http.vhost]]\nname = \"a.example\"\n"))
            .unwrap_err()
            .0;
        assert!(e.contains("root"), "{e}");
    }

    #[test]
    fn monitor_keys_are_checked() {
        let cfg = parse(BASE).unwrap();
        assert_eq!(cfg.monitor.interval_s, 10);
        assert_eq!(
            cfg.monitor.alert_path(&cfg.node.data_dir),
            std::path::Path::new("/tmp/x/alerts.log")
        );
        assert_eq!(
            cfg.monitor.alert_recipient("a.example"),
            "sistemas@a.example"
        );
        for (body, key) in [
            ("interval_s = 0", "monitor.interval_s"),
            (
                "interval_s = 3\nprobe_timeout_s = 5",
                "monitor.probe_timeout_s",
            ),
            ("min_free_percent = 100", "monitor.min_free_percent"),
            ("alert_to = \"nobody\"", "monitor.alert_to"),
            ("status_from = [\"10.0.0.0/33\"]", "monitor.status_from"),
        ] {
            let e = parse(&format!("{BASE}[monitor]\n{body}\n")).unwrap_err().0;
            assert!(e.contains(key), "{body}: {e}");
        }
    }

    #[test]
    fn a_sweep_without_grace_is_refused() {
        let e = parse(&format!("{BASE}[store]\ngc_grace_s = 0\n"))
            .unwrap_err()
            .0;
        assert!(e.contains("store.gc_grace_s"), "{e}");
        assert!(parse(&format!("{BASE}[store]\ngc_grace_s = 1\n")).is_ok());
    }

    #[test]
    fn http_limits_name_line_and_key() {
        let e = parse(&format!("{BASE}\n[http]\nmax_header_bytes = 100\n"))
            .unwrap_err()
            .0;
        assert!(
            e.contains("line 6") && e.contains("http.max_header_bytes"),
            "{e}"
        );
        let e = parse(&format!("{BASE}[http]\nidle_timeout_s = 0\n"))
            .unwrap_err()
            .0;
        assert!(
            e.contains("line 5") && e.contains("http.idle_timeout_s"),
            "{e}"
        );
        let e = parse(&format!(
            "{BASE}[http]\nhttps_listen = []\nredirect_to_https = true\n"
        ))
        .unwrap_err()
        .0;
        assert!(
            e.contains("line 6") && e.contains("http.redirect_to_https"),
            "{e}"
        );
        let e = parse(&format!("{BASE}[http]\nredirect_to_https = \"yes\"\n"))
            .unwrap_err()
            .0;
        assert!(
            e.contains("line 5") && e.contains("http.redirect_to_https"),
            "{e}"
        );
    }

    #[test]
    fn missing_required_key_is_named() {
        let e = parse("[node]\nname = \"n1\"\n").unwrap_err().0;
        assert!(e.contains("data_dir"), "{e}");
    }
}
