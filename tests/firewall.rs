//! The image's packet filter (`image/rootfs/usr/share/clusterd/nftables.conf.in`,
//! issue 16): loaded with the real `nft` into node 1's namespace of the two-node lab,
//! with real packets from the peer, from another LAN host and from a LAN host that
//! forges the peer's private address. The heartbeat (694/udp) and replication
//! (7000/tcp) ports answer only the peer on the private link; the services answer
//! everyone. The same traffic is sent once before the ruleset is loaded, so every
//! "dropped" below is the filter's doing and not the lab's.

mod cluster_lab;
mod common;

use std::path::PathBuf;
use std::time::Duration;

use cluster_lab::*;

/// Listens on node 1 for `SECONDS` on UDP 694 and 53 (on each address given) and TCP
/// 7000, 25 and 143 (all addresses) and prints one line per datagram or accepted
/// connection: `udp|tcp PORT DST SRC`.
const LISTEN_PY: &str = r#"
import selectors, socket, sys, time
sel = selectors.DefaultSelector()
for addr in sys.argv[2:]:
    for port in (694, 53):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port)); s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, ("udp", port))
for port in (7000, 25, 143):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(16); s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, ("tcp", port))
print("ready", flush=True)
end = time.monotonic() + float(sys.argv[1])
while (left := end - time.monotonic()) > 0:
    for key, _ in sel.select(left):
        kind, port = key.data
        if kind == "udp":
            _, (src, _) = key.fileobj.recvfrom(2048)
            dst = key.fileobj.getsockname()[0]
        else:
            conn, (src, _) = key.fileobj.accept()
            dst = conn.getsockname()[0]; conn.close()
        print(kind, port, dst, src, flush=True)
"#;

/// Sends to `DST:PORT` over `udp` (three datagrams) or `tcp` (one connect, 1 s
/// timeout) from source address `SRC` ("-": the kernel's choice); prints `sent` or
/// `refused`.
const SEND_PY: &str = r#"
import socket, sys
kind, dst, port, src = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
if src != "-":
    s.bind((src, 0))
if kind == "udp":
    for _ in range(3):
        s.sendto(b"probe", (dst, port))
    print("sent")
else:
    s.settimeout(1.0)
    try:
        s.connect((dst, port)); print("sent")
    except OSError:
        print("refused")
"#;

/// One packet (or connection) of the matrix: from which namespace, protocol,
/// destination, source address, and whether the filter lets it in.
struct Case {
    what: &'static str,
    from: String,
    kind: &'static str,
    dst: &'static str,
    port: u16,
    src: &'static str,
    allowed: bool,
}

fn ruleset(peer_private_ip: &str) -> String {
    let template = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("image/rootfs/usr/share/clusterd/nftables.conf.in");
    let text = std::fs::read_to_string(&template).expect("read the ruleset template");
    // clusterd-setup renders it with exactly this substitution (sed s/@THEM@/…/).
    let setup = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("image/rootfs/usr/libexec/clusterd/setup"),
    )
    .expect("read clusterd-setup");
    assert!(
        setup.contains(r#"sed -e "s/@THEM@/$them/g" "$SHARE/nftables.conf.in""#),
        "clusterd-setup no longer renders the ruleset the way this test does"
    );
    let out = text.replace("@THEM@", peer_private_ip);
    assert!(!out.contains('@'), "a placeholder is left:\n{out}");
    out
}

/// Which cases node 1 saw: the listener's lines matched against each case's port
/// and source.
fn run_matrix(lab: &Lab, cases: &[Case]) -> Vec<bool> {
    let n1 = lab.ns(N1);
    let listener = python_spawn_in(&n1, LISTEN_PY, &["8", N1.lan_ip(), N1.private_ip()]);
    // The listener prints "ready" first; the cases go once it listens.
    std::thread::sleep(Duration::from_millis(600));
    for c in cases {
        let out = python_in(
            &c.from,
            SEND_PY,
            &[c.kind, c.dst, &c.port.to_string(), c.src],
        );
        assert!(
            out.status.success(),
            "sender for {:?} failed: {}",
            c.what,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = listener.wait_with_output().expect("listener output");
    let heard = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        heard.starts_with("ready"),
        "the listener did not start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    cases
        .iter()
        .map(|c| {
            let src = match c.src {
                "-" => c.sender_addr(lab),
                s => s.to_string(),
            };
            heard
                .lines()
                .any(|l| l == format!("{} {} {} {}", c.kind, c.port, c.dst, src))
        })
        .collect()
}

impl Case {
    /// The address the kernel picks in the sender's namespace for this destination.
    fn sender_addr(&self, lab: &Lab) -> String {
        if self.from == lab.ns(N2) {
            if self.dst.starts_with("192.168.1.") {
                N2.private_ip().to_string()
            } else {
                N2.lan_ip().to_string()
            }
        } else {
            CLIENT_IP.to_string()
        }
    }
}

#[test]
fn only_the_peer_on_the_private_link_reaches_heartbeats_and_replication() {
    require_tool("nft");
    let lab = Lab::builder().no_cluster().build();
    let (n1, n2, cli) = (lab.ns(N1), lab.ns(N2), lab.client_ns());
    // A LAN host that forges the peer's private address (on the LAN side).
    ip(&cli, &format!("addr add {}/32 dev eth0", N2.private_ip()));

    let me_lan = N1.lan_ip();
    let me_private = N1.private_ip();
    let case = |what, from: &str, kind, dst, port, src, allowed| Case {
        what,
        from: from.to_string(),
        kind,
        dst,
        port,
        src,
        allowed,
    };
    let cases = vec![
        case(
            "peer heartbeat on the private link",
            &n2,
            "udp",
            me_private,
            694,
            "-",
            true,
        ),
        case(
            "peer replication on the private link",
            &n2,
            "tcp",
            me_private,
            7000,
            "-",
            true,
        ),
        case(
            "peer heartbeat over the LAN",
            &n2,
            "udp",
            me_lan,
            694,
            "-",
            false,
        ),
        case(
            "peer replication over the LAN",
            &n2,
            "tcp",
            me_lan,
            7000,
            "-",
            false,
        ),
        case("LAN host heartbeat", &cli, "udp", me_lan, 694, "-", false),
        case(
            "LAN host replication",
            &cli,
            "tcp",
            me_lan,
            7000,
            "-",
            false,
        ),
        case(
            "LAN host forging the peer's address",
            &cli,
            "udp",
            me_lan,
            694,
            N2.private_ip(),
            false,
        ),
        case("LAN host DNS", &cli, "udp", me_lan, 53, "-", true),
        case("LAN host SMTP", &cli, "tcp", me_lan, 25, "-", true),
        case("LAN host IMAP", &cli, "tcp", me_lan, 143, "-", true),
    ];

    // Without the filter every packet arrives: the lab itself drops nothing.
    let before = run_matrix(&lab, &cases);
    for (c, seen) in cases.iter().zip(&before) {
        assert!(seen, "without the filter, {:?} did not arrive", c.what);
    }

    let rules = lab.dir.join("nftables.conf");
    std::fs::write(&rules, ruleset(N2.private_ip())).unwrap();
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &n1, "nft", "-f"])
        .arg(&rules)
        .output()
        .expect("run nft");
    common::assert_ok(&out, "nft -f nftables.conf");

    let after = run_matrix(&lab, &cases);
    let mut wrong = Vec::new();
    for (c, seen) in cases.iter().zip(&after) {
        println!(
            "{:<40} {}",
            c.what,
            if *seen { "arrives" } else { "dropped" }
        );
        if *seen != c.allowed {
            wrong.push(c.what);
        }
    }
    assert!(wrong.is_empty(), "the filter is wrong for {wrong:?}");
    // Established traffic and ICMP still flow: node 1 pings out and is pinged.
    assert!(lab.ping_from_client(me_lan), "node 1 does not answer ping");
    assert!(lab.ping_from_node(N1, CLIENT_IP), "node 1 cannot ping out");
}
