//! The command line as an administrator uses it: check-config, config example, user
//! management offline and through a running node, status.

mod common;

use std::process::Command;

use common::{Node, assert_ok, bin, run_with_stdin};

#[test]
fn check_config_names_file_line_and_key_of_a_misspelled_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[node]\nname = \"clusternodo1\"\ndata_dir = \"/tmp/x\"\n\n[smtp]\nrelay_form = [\"127.0.0.1/32\"]\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(path.to_str().unwrap()), "{err}");
    assert!(err.contains("line 6"), "{err}");
    assert!(err.contains("relay_form"), "{err}");
}

#[test]
fn check_config_rejects_bad_cidr_and_missing_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[node]\nname = \"n1\"\ndata_dir = \"/tmp/x\"\n[imap]\nallow_plaintext_auth_from = [\"10.0.0.0/33\"]\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 5") && err.contains("imap.allow_plaintext_auth_from"),
        "{err}"
    );

    let out = Command::new(bin())
        .args(["check-config", "--config", "/nonexistent/clusterd.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/clusterd.toml"));
}

#[test]
fn config_example_passes_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["config", "example"])
        .output()
        .unwrap();
    let text = assert_ok(&out, "config example");
    assert_eq!(
        text,
        clusterd::config::example(),
        "the binary prints the generated example"
    );
    let path = dir.path().join("example.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(bin())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_ok(&out, "check-config on the example");
}

#[test]
fn users_are_managed_offline_and_through_the_running_node() {
    let mut node = Node::start();
    node.add_user("sistemas", "s3cret");
    let list = assert_ok(&node.cli(&["user", "list"], None), "user list");
    assert!(list.contains("sistemas"), "{list}");
    let dup = node.cli(
        &["user", "add", "sistemas", "--password-stdin"],
        Some("x\n"),
    );
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));

    let status = assert_ok(&node.cli(&["status"], None), "status");
    assert!(
        status.contains("clusternodo1") && status.contains("active"),
        "{status}"
    );
    assert!(status.contains("accounts:    1"), "{status}");
    assert!(
        status.contains("imap:") && status.contains("ok (127.0.0.1"),
        "{status}"
    );

    // A second process on the same data_dir (here a command whose config names
    // another control socket, so it opens the store itself) is refused, naming why.
    let text = std::fs::read_to_string(&node.config).unwrap();
    let other = node.config.with_file_name("other.toml");
    std::fs::write(
        &other,
        text.replace(
            &node.control_socket.display().to_string(),
            &node
                .control_socket
                .with_file_name("other.sock")
                .display()
                .to_string(),
        ),
    )
    .unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(["user", "list", "--config"]).arg(&other);
    let out = run_with_stdin(cmd, None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("in use by another clusterd process")
            && err.contains(&format!("pid {}", node.pid().expect("running"))),
        "{err}"
    );

    // Offline: the CLI opens the store itself.
    node.stop();
    let out = node.cli(&["status"], None);
    assert!(
        !out.status.success(),
        "status without a running node must fail"
    );
    let mut cmd = Command::new(bin());
    cmd.args(["user", "add", "ana", "--password-stdin", "--config"])
        .arg(&node.config);
    assert_ok(&run_with_stdin(cmd, Some("pw\n")), "offline user add");
    assert_ok(
        &node.cli(
            &["user", "passwd", "ana", "--password-stdin"],
            Some("pw2\n"),
        ),
        "offline passwd",
    );
    assert_ok(
        &node.cli(&["user", "del", "sistemas"], None),
        "offline user del",
    );
    let list = assert_ok(&node.cli(&["user", "list"], None), "user list");
    assert!(list.contains("ana") && !list.contains("sistemas"), "{list}");
}
