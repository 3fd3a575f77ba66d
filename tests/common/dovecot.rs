//! A private Dovecot 2.3 (Debian's dovecot-imapd) for tests and benchmarks: its own
//! configuration, sockets, state, log and Maildirs in a temporary directory, IMAP on a
//! free loopback port, `/` as hierarchy separator (as clusterd), plain-text LOGIN with
//! one password for every account. Dropping it stops the process it started, by PID
//! (then its process group), and removes the directory.

use super::{free_port, require_tool};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Output of a short command, trimmed ("" when it fails).
fn output_of(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// A private Dovecot: its own configuration, sockets, state, log and Maildirs in a
/// temporary directory, IMAP on a free loopback port. Dropping it stops the process
/// it started (by PID, then its process group if it does not stop) and removes the
/// directory.
pub struct Dovecot {
    child: Option<Child>,
    pub port: u16,
    log: PathBuf,
    stderr: PathBuf,
    // Last: removed after the process is stopped.
    dir: tempfile::TempDir,
}

impl Dovecot {
    fn binary() -> String {
        if Path::new("/usr/sbin/dovecot").exists() {
            return "/usr/sbin/dovecot".into();
        }
        require_tool("dovecot"); // panics: dovecot-imapd is not installed
        "dovecot".into()
    }

    /// Starts Dovecot with these accounts, each with password `password`.
    pub fn start(users: &[&str], password: &str) -> Dovecot {
        let bin = Self::binary();
        let version = output_of(&bin, &["--version"]);
        assert!(
            version.starts_with("2.3."),
            "this test writes a Dovecot 2.3 configuration, but `{bin} --version` says {version:?} \
             (install Debian 12's dovecot-imapd)"
        );
        let dir = tempfile::Builder::new()
            .prefix("clusterd-dovecot-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path().to_path_buf();
        let port = free_port();
        let mail = root.join("mail");
        for d in ["run", "state", "mail"] {
            std::fs::create_dir(root.join(d)).expect("create dir");
        }

        // Dovecot refuses to run its login processes and the users' mail processes
        // as root. As root (CI) the unprivileged processes run as `nobody`; otherwise
        // everything runs as the current user.
        let as_root = output_of("id", &["-u"]) == "0";
        let privileges = if as_root {
            let uid = output_of("id", &["-u", "nobody"]);
            let gid = output_of("id", &["-g", "nobody"]);
            assert!(
                !uid.is_empty() && !gid.is_empty(),
                "no `nobody` user to run Dovecot's mail processes as"
            );
            // The mail processes (as nobody) must reach their Maildirs: the temp dir is
            // created 0700.
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))
                .expect("chmod temp dir");
            std::os::unix::fs::chown(
                &mail,
                Some(uid.parse().unwrap()),
                Some(gid.parse().unwrap()),
            )
            .expect("chown mail dir");
            format!(
                "# Dovecot's own services (auth, config, ...) stay root; imap-login must\n\
                 # not be root.\n\
                 default_internal_user = root\n\
                 default_internal_group = root\n\
                 default_login_user = dovenull\n\
                 # Mail processes may never be root: run them as nobody.\n\
                 mail_uid = {uid}\n\
                 mail_gid = {gid}\n\
                 first_valid_uid = 1\n\
                 first_valid_gid = 1\n"
            )
        } else {
            let user = output_of("id", &["-un"]);
            let group = output_of("id", &["-gn"]);
            let uid = output_of("id", &["-u"]);
            let gid = output_of("id", &["-g"]);
            format!(
                "# Not root: every process runs as the current user, without chroots.\n\
                 default_internal_user = {user}\n\
                 default_internal_group = {group}\n\
                 default_login_user = {user}\n\
                 mail_uid = {uid}\n\
                 mail_gid = {gid}\n\
                 first_valid_uid = 1\n\
                 first_valid_gid = 0\n\
                 service imap-login {{\n  chroot =\n}}\n\
                 service anvil {{\n  chroot =\n}}\n\
                 service stats {{\n  chroot =\n}}\n"
            )
        };

        // passwd-file: user:password:uid:gid:gecos:home:shell. UID and GID stay empty
        // (passwd-file rejects UID 0; mail_uid/mail_gid above apply).
        let passwd = root.join("passwd");
        let mut lines = String::new();
        for user in users {
            lines.push_str(&format!(
                "{user}:{{PLAIN}}{password}::::{}::\n",
                mail.join(user).display()
            ));
        }
        std::fs::write(&passwd, lines).expect("write passwd");

        let conf = root.join("dovecot.conf");
        let log = root.join("dovecot.log");
        let stderr = root.join("dovecot.stderr");
        let text = format!(
            "# Private Dovecot for clusterd's differential test (written by the test).\n\
             instance_name = clusterd-test-{port}\n\
             base_dir = {run}\n\
             state_dir = {state}\n\
             log_path = {log}\n\
             protocols = imap\n\
             listen = 127.0.0.1\n\
             ssl = no\n\
             disable_plaintext_auth = no\n\
             auth_mechanisms = plain\n\
             mail_location = maildir:{mail}/%u\n\
             # The hierarchy separator clusterd uses (Maildir++ keeps '.' on disk).\n\
             namespace inbox {{\n  inbox = yes\n  separator = /\n}}\n\
             {privileges}\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {passwd}\n}}\n\
             userdb {{\n  driver = passwd-file\n  args = {passwd}\n}}\n\
             service imap-login {{\n\
             \x20 inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n\
             \x20 inet_listener imaps {{\n    port = 0\n  }}\n\
             }}\n",
            run = root.join("run").display(),
            state = root.join("state").display(),
            log = log.display(),
            mail = mail.display(),
            passwd = passwd.display(),
        );
        std::fs::write(&conf, text).expect("write dovecot.conf");

        let out = std::fs::File::create(&stderr).expect("dovecot stderr file");
        let child = Command::new(&bin)
            .arg("-F")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            // Its own process group, so that a Dovecot that ignores SIGTERM can be
            // killed with all its children (and nothing else).
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let mut dovecot = Dovecot {
            child: Some(child),
            port,
            log,
            stderr,
            dir,
        };
        dovecot.wait_ready();
        dovecot
    }

    /// Waits (at most 10 s) until Dovecot greets on its port with "* OK"; the greeting
    /// comes from imap-login, so this also proves the login processes start.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!(
                    "Dovecot exited during start-up ({status});\n{}",
                    self.logs()
                );
            }
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                let mut line = String::new();
                let _ = BufReader::new(stream).read_line(&mut line);
                if line.starts_with("* OK") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "Dovecot did not greet on 127.0.0.1:{} within 10 s;\n{}",
                self.port,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Dovecot's log and its stderr (start-up errors go there), for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- Dovecot log ({})\n{}--- Dovecot stderr\n{}--- config\n{}",
            self.log.display(),
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            std::fs::read_to_string(&self.stderr).unwrap_or_default(),
            std::fs::read_to_string(self.dir.path().join("dovecot.conf")).unwrap_or_default(),
        )
    }

    /// SIGTERM to the master (it stops its children), at most 10 s to exit; then
    /// SIGKILL to its process group.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The master is not reaped yet, so its PID (= the group's ID) is still ours.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
        let _ = child.wait();
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}
