//! The commented example that `clusterd config example` prints, generated from the
//! configuration types so that it cannot drift from them:
//!
//! - the text above each key is its field's doc comment ([`Documented::KEYS`]);
//! - each value shown is what the loader itself makes of [`SAMPLE`]: the sample's
//!   value where it has one, and everywhere else the real default (the serde default
//!   a file without the key gets);
//! - a key the sample sets to something else than its default says `Default: …`
//!   above it, a key without a default says `Required.`;
//! - the sections and keys in [`COMMENTED`] are shown commented out.
//!
//! A new key with a default needs nothing here. A key without one needs a value in
//! `SAMPLE`; so does an optional key (default "none"), usually also listed in
//! `COMMENTED`. The tests fail when a key has no doc comment or is not shown, and
//! when the printed text does not load back into exactly the sample and the defaults.

use toml::{Table, Value};

use super::{
    AuthConfig, ClusterConfig, Config, DnsConfig, Documented, DomainConfig, HeartbeatConfig,
    HttpConfig, ImapConfig, KeyDoc, MonitorConfig, NodeConfig, OutboundConfig, ReplicationConfig,
    SerialHeartbeat, SmtpConfig, StoreConfig, TlsConfig, UdpHeartbeat, VhostConfig, WebmailConfig,
};

const HEADER: &str = "\
# clusterd configuration (TOML), as `clusterd config example` prints it: every key
# with its documentation and its default. Where this example sets another value, the
# default is noted above the key. Commented-out sections and keys are optional.
";

/// The values of the reference deployment that the example shows instead of the
/// defaults: the keys without a default, optional keys and sections worth showing,
/// and a few site values. Everything else the example shows is a default.
const SAMPLE: &str = r#"
[node]
name = "clusternodo1"
data_dir = "/var/lib/clusterd"

[domain]
local_domains = ["cluster.com.ec", "clusternodo1.cluster.com.ec", "clusternodo2.cluster.com.ec"]
aliases = { postmaster = "sistemas", root = "sistemas", abuse = "sistemas" }

[tls]
cert = "/etc/clusterd/tls/cert.pem"
key = "/etc/clusterd/tls/key.pem"

[smtp]
relay_from = ["127.0.0.1/32", "10.0.0.2/32", "10.0.0.10/32", "192.168.1.0/24"]
hostname = "mail.cluster.com.ec"

[http]
access_log = "/var/log/clusterd/access.log"
publish_dir = "/srv/site"

[[http.vhost]]
name = "intranet.cluster.com.ec"
aliases = ["intranet"]
root = "www-intranet"

[outbound]
relay_host = "smtp.isp.example:587"
relay_user = "cluster"
relay_password_file = "/etc/clusterd/relay-password"

[monitor]
alert_to = "sistemas@cluster.com.ec"
alert_file = "/var/log/clusterd/alerts.log"
ping_hosts = ["192.168.1.10"]

[cluster]
peer = "clusternodo2"
preferred = "clusternodo1"
vip = "10.0.0.100/8"
watchdog = "/dev/watchdog"

[[cluster.heartbeat]]
udp = { bind = "192.168.1.1:694", peer = "192.168.1.2:694" }

[[cluster.heartbeat]]
serial = { device = "/dev/ttyS0", baud = 115200 }

[replication]
listen = "192.168.1.1:7000"
peer = "192.168.1.2:7000"
"#;

/// Sections and keys shown commented out: optional, for the administrator to enable.
const COMMENTED: &[&str] = &[
    "tls",
    "smtp.hostname",
    "http.access_log",
    "http.publish_dir",
    "http.vhost",
    "outbound.relay_host",
    "outbound.relay_user",
    "outbound.relay_password_file",
    "monitor.alert_to",
    "cluster",
    "cluster.watchdog",
    "replication",
];

/// The documented tables by their dotted name ("" is the file itself, whose keys are
/// the sections). A table not listed here has no documented keys.
const TABLES: &[(&str, &[KeyDoc])] = &[
    ("", Config::KEYS),
    ("node", NodeConfig::KEYS),
    ("domain", DomainConfig::KEYS),
    ("tls", TlsConfig::KEYS),
    ("smtp", SmtpConfig::KEYS),
    ("imap", ImapConfig::KEYS),
    ("dns", DnsConfig::KEYS),
    ("http", HttpConfig::KEYS),
    ("http.vhost", VhostConfig::KEYS),
    ("webmail", WebmailConfig::KEYS),
    ("outbound", OutboundConfig::KEYS),
    ("monitor", MonitorConfig::KEYS),
    ("store", StoreConfig::KEYS),
    ("auth", AuthConfig::KEYS),
    ("cluster", ClusterConfig::KEYS),
    ("cluster.heartbeat", HeartbeatConfig::KEYS),
    ("cluster.heartbeat.udp", UdpHeartbeat::KEYS),
    ("cluster.heartbeat.serial", SerialHeartbeat::KEYS),
    ("replication", ReplicationConfig::KEYS),
];

/// Tables whose keys are the administrator's own (local part -> account).
#[cfg_attr(
    not(test),
    allow(dead_code, reason = "only the tests walk every table")
)]
const FREE_FORM: &[&str] = &["domain.aliases"];

/// The example configuration, with every key documented (see the module doc).
pub fn example() -> String {
    let sample: Table = SAMPLE.parse().expect("SAMPLE is TOML");
    let shown = load(&sample).expect("SAMPLE loads");
    let mut example = Example {
        sample,
        shown,
        out: HEADER.to_string(),
    };
    example.sections();
    example.out
}

/// One step of the way to a value: a key, or an element of an array of tables.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

/// The dotted name of the value at `path`, without array indexes: `http.vhost.root`.
fn name(path: &[Step]) -> String {
    let keys: Vec<&str> = path
        .iter()
        .filter_map(|step| match step {
            Step::Key(key) => Some(key.as_str()),
            Step::Index(_) => None,
        })
        .collect();
    keys.join(".")
}

fn child(path: &[Step], step: Step) -> Vec<Step> {
    let mut path = path.to_vec();
    path.push(step);
    path
}

fn get<'a>(table: &'a Table, path: &[Step]) -> Option<&'a Value> {
    let [Step::Key(first), rest @ ..] = path else {
        return None;
    };
    let mut value = table.get(first)?;
    for step in rest {
        value = match (value, step) {
            (Value::Table(t), Step::Key(key)) => t.get(key)?,
            (Value::Array(items), Step::Index(i)) => items.get(*i)?,
            _ => return None,
        };
    }
    Some(value)
}

/// Takes the value at `path` out of `table`.
fn remove(table: &mut Table, path: &[Step]) -> Option<Value> {
    match path {
        [Step::Key(key)] => table.remove(key),
        [Step::Key(key), rest @ ..] => match (table.get_mut(key)?, rest) {
            (Value::Table(t), _) => remove(t, rest),
            (Value::Array(items), [Step::Index(i), rest @ ..]) => match items.get_mut(*i)? {
                Value::Table(t) => remove(t, rest),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

fn docs_of(name: &str) -> Option<&'static [KeyDoc]> {
    TABLES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, keys)| *keys)
}

fn commented(path: &[Step]) -> bool {
    COMMENTED.contains(&name(path).as_str())
}

/// What the loader makes of `table`: the configuration it gives, as a table (the
/// defaults filled in, options that are none left out).
fn load(table: &Table) -> Result<Table, String> {
    let config: Config = table
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| e.to_string())?;
    Table::try_from(&config).map_err(|e| e.to_string())
}

fn is_array_of_tables(value: Option<&Value>) -> bool {
    matches!(value, Some(Value::Array(items))
        if !items.is_empty() && items.iter().all(Value::is_table))
}

/// What a file that does not set a key gets instead.
enum Fallback {
    /// Nothing: the key must be set.
    Required,
    /// No value (an option that is none).
    Nothing,
    Default(Value),
}

struct Example {
    sample: Table,
    shown: Table,
    out: String,
}

impl Example {
    /// Every section, in the order of `Config`'s fields.
    fn sections(&mut self) {
        for section in Config::KEYS {
            let path = [Step::Key(section.key.to_string())];
            let Some(Value::Table(values)) = get(&self.shown, &path).cloned() else {
                continue; // not in the sample: the tests say so
            };
            let level = usize::from(commented(&path));
            self.out.push('\n');
            self.doc(0, section.doc);
            self.line(level, &format!("[{}]", section.key));
            self.keys(&path, &values, level);
        }
    }

    /// The keys of the table at `path`, whose header is commented `level` times:
    /// plain keys first, then arrays of tables (which TOML needs last).
    fn keys(&mut self, path: &[Step], values: &Table, level: usize) {
        let docs = docs_of(&name(path)).unwrap_or_default();
        let (arrays, plain): (Vec<&KeyDoc>, Vec<&KeyDoc>) = docs
            .iter()
            .partition(|key| is_array_of_tables(values.get(key.key)));
        for key in plain {
            let Some(value) = values.get(key.key) else {
                continue; // none, and not in the sample
            };
            let path = child(path, Step::Key(key.key.to_string()));
            self.doc(level, key.doc);
            if let (Value::Table(_), Some(fields)) = (value, docs_of(&name(&path))) {
                for field in fields {
                    let text = field.doc.join(" ");
                    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                    self.comment(level, &format!("   {}: {text}", field.key));
                }
            }
            match self.fallback(&path) {
                Some(Fallback::Required) => self.comment(level, " Required."),
                Some(Fallback::Default(default)) if default != *value => {
                    self.comment(level, &format!(" Default: {}", show(&path, &default)));
                }
                _ => {}
            }
            let key_level = level + usize::from(commented(&path));
            self.line(key_level, &format!("{} = {}", key.key, show(&path, value)));
        }
        for key in arrays {
            let Some(Value::Array(items)) = values.get(key.key) else {
                continue;
            };
            let path = child(path, Step::Key(key.key.to_string()));
            let table_level = level + usize::from(commented(&path));
            self.doc(level, key.doc);
            for (i, item) in items.iter().enumerate() {
                let Value::Table(item) = item else { continue };
                self.line(table_level, &format!("[[{}]]", name(&path)));
                self.keys(&child(&path, Step::Index(i)), item, table_level);
            }
        }
    }

    /// What a file without the sample's value at `path` gets; `None` when the sample
    /// does not set it (so the value shown is the default).
    fn fallback(&self, path: &[Step]) -> Option<Fallback> {
        let mut without = self.sample.clone();
        remove(&mut without, path)?;
        Some(match load(&without) {
            Err(_) => Fallback::Required,
            Ok(loaded) => match get(&loaded, path) {
                Some(value) => Fallback::Default(value.clone()),
                None => Fallback::Nothing,
            },
        })
    }

    /// A doc comment, each line under `level` comment marks.
    fn doc(&mut self, level: usize, lines: &[&str]) {
        for line in lines {
            self.comment(level, line);
        }
    }

    /// `#text` under `level` comment marks.
    fn comment(&mut self, level: usize, text: &str) {
        self.line(level, &format!("#{text}"));
    }

    fn line(&mut self, level: usize, text: &str) {
        self.out.push_str(&"# ".repeat(level));
        self.out.push_str(text);
        self.out.push('\n');
    }
}

/// `value` as TOML; a documented inline table with its keys in declaration order.
fn show(path: &[Step], value: &Value) -> String {
    match (value, docs_of(&name(path))) {
        (Value::Table(table), Some(fields)) => {
            let parts: Vec<String> = fields
                .iter()
                .filter_map(|field| {
                    let value = table.get(field.key)?;
                    let path = child(path, Step::Key(field.key.to_string()));
                    Some(format!("{} = {}", field.key, show(&path, value)))
                })
                .collect();
            format!("{{ {} }}", parts.join(", "))
        }
        _ => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;
    use std::collections::BTreeSet;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, std::path::Path::new("/etc/clusterd/clusterd.toml"))
    }

    fn sample() -> Table {
        SAMPLE.parse().unwrap()
    }

    #[test]
    fn example_parses() {
        let cfg = parse(&example()).expect("example parses");
        assert_eq!(cfg.node.name, "clusternodo1");
        assert_eq!(cfg.domain.resolve_local_part("Postmaster"), "sistemas");
        assert!(cfg.domain.is_local("CLUSTER.com.ec"));
        assert!(cfg.smtp.may_relay("10.0.0.10".parse().unwrap()));
        assert!(!cfg.smtp.may_relay("10.0.0.11".parse().unwrap()));
    }

    /// Walks the tables the loader makes of the sample, noting each table's and each
    /// key's dotted name, and what is not documented.
    fn walk(path: &[Step], table: &Table, seen: &mut BTreeSet<String>, problems: &mut Vec<String>) {
        let table_name = name(path);
        let Some(docs) = docs_of(&table_name) else {
            problems.push(format!("table `{table_name}` is not in TABLES"));
            return;
        };
        seen.insert(table_name);
        for (key, value) in table {
            let path = child(path, Step::Key(key.clone()));
            let key_name = name(&path);
            if !docs.iter().any(|d| d.key == key) {
                problems.push(format!("key `{key_name}` has no documentation"));
            }
            seen.insert(key_name.clone());
            match value {
                Value::Table(t) if !FREE_FORM.contains(&key_name.as_str()) => {
                    walk(&path, t, seen, problems);
                }
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Value::Table(t) = item {
                            walk(&child(&path, Step::Index(i)), t, seen, problems);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    #[test]
    fn every_key_is_documented_and_shown() {
        let loaded = load(&sample()).unwrap();
        let mut seen = BTreeSet::new();
        let mut problems = Vec::new();
        walk(&[], &loaded, &mut seen, &mut problems);
        for (table, keys) in TABLES {
            if !seen.contains(*table) {
                problems.push(format!("table `{table}` is not in the example"));
            }
            for key in *keys {
                let key_name = [*table, key.key].join(".");
                let key_name = key_name.trim_start_matches('.');
                if key.doc.iter().all(|line| line.trim().is_empty()) {
                    problems.push(format!("key `{key_name}` has no doc comment"));
                }
                if !seen.contains(key_name) {
                    problems.push(format!(
                        "key `{key_name}` is not shown: give it a value in SAMPLE"
                    ));
                }
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn commented_parts_are_optional_and_in_the_sample() {
        for name in COMMENTED {
            let path: Vec<Step> = name.split('.').map(|k| Step::Key(k.into())).collect();
            let mut without = sample();
            assert!(
                remove(&mut without, &path).is_some(),
                "{name} not in SAMPLE"
            );
            if let Err(e) = load(&without) {
                panic!("{name} is commented out but the file needs it: {e}");
            }
        }
    }

    /// The example with every commented-out key and header uncommented (lines that
    /// are documentation stay as they are).
    fn uncomment_all(text: &str) -> String {
        let lines: Vec<&str> = text
            .lines()
            .map(|line| {
                let core = line.trim_start_matches(['#', ' ']);
                let key_line = core.split_once(" = ").is_some_and(|(key, _)| {
                    key.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                });
                if core.starts_with('[') || key_line {
                    core
                } else {
                    line
                }
            })
            .collect();
        lines.join("\n")
    }

    #[test]
    fn example_shows_the_sample_and_the_real_defaults() {
        let text = uncomment_all(&example());
        let config: Config = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let printed = Table::try_from(&config).unwrap();
        assert_eq!(printed, load(&sample()).unwrap(), "{text}");
    }

    /// The example with each noted default (`# Default: X` just above an active
    /// key) put in place of the sample's value.
    fn with_noted_defaults(text: &str) -> String {
        let mut out = Vec::new();
        let mut noted = None;
        for line in text.lines() {
            match (noted.take(), line.split_once(" = ")) {
                (Some(default), Some((key, _))) if !line.starts_with('#') => {
                    out.push(format!("{key} = {default}"));
                }
                _ => out.push(line.to_string()),
            }
            noted = line.strip_prefix("# Default: ");
        }
        out.join("\n")
    }

    fn table<T: serde::Serialize>(value: &T) -> Table {
        Table::try_from(value).unwrap()
    }

    #[test]
    fn example_defaults_are_the_real_ones() {
        let text = with_noted_defaults(&example());
        let cfg = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(table(&cfg.domain), table(&DomainConfig::default()));
        assert_eq!(table(&cfg.smtp), table(&SmtpConfig::default()));
        assert_eq!(table(&cfg.imap), table(&ImapConfig::default()));
        assert_eq!(table(&cfg.dns), table(&DnsConfig::default()));
        assert_eq!(table(&cfg.http), table(&HttpConfig::default()));
        assert_eq!(table(&cfg.webmail), table(&WebmailConfig::default()));
        assert_eq!(table(&cfg.outbound), table(&OutboundConfig::default()));
        // The whole file: what a file with only the required keys gets.
        let minimal = parse(&format!(
            "[node]\nname = {:?}\ndata_dir = {:?}\n",
            cfg.node.name, cfg.node.data_dir
        ))
        .unwrap();
        assert_eq!(table(&cfg), table(&minimal));
    }
}
