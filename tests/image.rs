//! The appliance image (issue 7): builds it with the README's command
//! (`./image/build.sh`) and boots it under QEMU, as the nodes would run it.
//!
//! - QEMU runs under TCG only (`-accel tcg`; this machine's /dev/kvm is a software KVM
//!   that stops a Debian kernel with a KVM internal error). The guests have no real
//!   network: eth0 is QEMU user networking with `restrict=on` whose only openings
//!   are host forwards on 127.0.0.1 to the VIP (HTTP, DNS, SMTP, IMAP); eth1 is the private link, a
//!   `-netdev dgram` pair on 127.0.0.1; ttyS0 (the serial heartbeat cable) is a UDP
//!   chardev pair on 127.0.0.1; ttyS1 is the console, a Unix socket the test logs in
//!   on (root password from a credential) to run commands inside the guest.
//! - One image, two identities, three ways of giving them: node 1 boots through UEFI
//!   (OVMF → systemd-boot → UKI) with SMBIOS type 11 credentials; node 2 boots its
//!   kernel directly from a raw copy on whose EFI partition the test wrote
//!   `clusterd/clusterd.node` and `clusterd/clusterd.key` as an administrator would
//!   after `dd` (the key must be gone from the ESP once the node runs), and gets the
//!   root password from `systemd.set_credential=` on the kernel command line. The
//!   account `sistemas` comes from a credential of node 1 only. Node 2's packet
//!   filter is checked loaded.
//! - Node 1 alone: the site, DNS for cluster.com.ec, a message in over SMTP and back
//!   over IMAP, `systemd-analyze security` and `ss -lntup`. Then node 2 joins:
//!   exactly one holds 10.0.0.100; a second message (sync replication); both stores
//!   agree (`clusterd digest`); node 1's QEMU is killed; node 2 takes the VIP and
//!   serves both messages.
//!
//! Every QEMU is a child of this test, killed by PID when its guard drops (also on
//! panic) and with PR_SET_PDEATHSIG; the temporary directory goes with the test.
//! Only one pair of VMs runs at a time (this is the only test here). The test prints
//! the image sizes, the build time and the boot-to-serving times.

mod common;

use common::{assert_ok, require_tool};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const USER: &str = "sistemas";
const PASSWORD: &str = "imagen-prueba-1";
const ROOT_PASSWORD: &str = "consola-prueba";
const VIP: &str = "10.0.0.100";
/// Targets from issue 7.
const RAW_TARGET: u64 = 600_000_000;
const COMPRESSED_TARGET: u64 = 150_000_000;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A free port on 127.0.0.1 for both TCP and UDP (bind and release).
fn free_port() -> u16 {
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1");
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out: Output = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_ok(&out, what)
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The ports a VM's user network forwards from 127.0.0.1 to the VIP. DNS is asked
/// over TCP: with `restrict=on` QEMU's user network passed no UDP answer back
/// through a forward (measured), and TCP takes the same path through clusterd.
#[derive(Clone, Copy, Debug)]
struct Forwards {
    http: u16,
    dns: u16,
    smtp: u16,
    imap: u16,
}

impl Forwards {
    fn new() -> Forwards {
        Forwards {
            http: free_port(),
            dns: free_port(),
            smtp: free_port(),
            imap: free_port(),
        }
    }
    fn netdev(&self) -> String {
        // The LAN is 10.0.0.0/8 as in ARCHITECTURE.md; QEMU's side of it is 10.0.0.254.
        format!(
            "user,id=lan,restrict=on,net=10.0.0.0/8,host=10.0.0.254,dhcpstart=10.0.0.200,\
             hostfwd=tcp:127.0.0.1:{}-{VIP}:80,hostfwd=tcp:127.0.0.1:{}-{VIP}:53,\
             hostfwd=tcp:127.0.0.1:{}-{VIP}:25,hostfwd=tcp:127.0.0.1:{}-{VIP}:143",
            self.http, self.dns, self.smtp, self.imap
        )
    }
}

/// The null-modem cable between the two ttyS0: each VM's UDP chardev talks to its
/// own end of a relay on 127.0.0.1 that passes the bytes on to the other VM. The
/// relay's sockets are unconnected, so a VM that dies (power lost) leaves the other
/// one's line silent, as a real cable does, instead of making its socket fail.
struct SerialCable {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl SerialCable {
    /// `vm_ports`: the VMs' own chardev ports; returns the cable and the relay port
    /// each VM sends to.
    fn new(vm_ports: (u16, u16)) -> (SerialCable, (u16, u16)) {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind relay");
        let b = UdpSocket::bind("127.0.0.1:0").expect("bind relay");
        let ends = (
            a.local_addr().unwrap().port(),
            b.local_addr().unwrap().port(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (from, to, dest) in [
            (a.try_clone().unwrap(), b.try_clone().unwrap(), vm_ports.1),
            (b, a, vm_ports.0),
        ] {
            let stop = stop.clone();
            from.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, _)) = from.recv_from(&mut buf) {
                        let _ = to.send_to(&buf[..n], ("127.0.0.1", dest));
                    }
                }
            }));
        }
        (SerialCable { stop, threads }, ends)
    }
}

impl Drop for SerialCable {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A guest's serial console (ttyS1): everything it prints is kept (and logged to a
/// file); commands are typed into a root shell and delimited by markers.
struct Console {
    name: String,
    stream: UnixStream,
    buf: Arc<Mutex<Vec<u8>>>,
    seen: usize,
    seq: u32,
}

impl Console {
    /// Connects to QEMU's console socket (bounded wait for QEMU to create it); on
    /// failure the panic shows QEMU's own output (`qemu_log`), e.g. a refused
    /// port forward.
    fn connect(name: &str, path: &Path, log: &Path, qemu_log: &Path) -> Console {
        let deadline = Instant::now() + Duration::from_secs(30);
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!(
                    "{name}: console socket {}: {e}; QEMU's output:\n{}",
                    path.display(),
                    std::fs::read_to_string(qemu_log).unwrap_or_default()
                ),
            }
        };
        let buf = Arc::new(Mutex::new(Vec::new()));
        let mut reader = stream.try_clone().unwrap();
        let sink = buf.clone();
        let mut log = std::fs::File::create(log).expect("console log");
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = reader.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let _ = log.write_all(&chunk[..n]);
                sink.lock()
                    .unwrap()
                    .extend(chunk[..n].iter().filter(|&&b| b != b'\r'));
            }
        });
        Console {
            name: name.to_string(),
            stream,
            buf,
            seen: 0,
            seq: 0,
        }
    }

    fn text_since(&self, from: usize) -> String {
        let b = self.buf.lock().unwrap();
        String::from_utf8_lossy(&b[from.min(b.len())..]).into_owned()
    }

    fn tail(&self) -> String {
        let b = self.buf.lock().unwrap();
        let start = b.len().saturating_sub(3000);
        String::from_utf8_lossy(&b[start..]).into_owned()
    }

    fn send(&mut self, text: &str) {
        self.stream
            .write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("{}: writing to the console: {e}", self.name));
    }

    /// Waits (bounded) until `needle` appears after what was already consumed;
    /// consumes up to its end.
    fn expect(&mut self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let text = {
                let b = self.buf.lock().unwrap();
                String::from_utf8_lossy(&b[self.seen.min(b.len())..]).into_owned()
            };
            if let Some(i) = text.find(needle) {
                self.seen += text[..i + needle.len()].len();
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Logs in as root on the console (the prompt swallows early input: wait for
    /// it, send a blank line, retry a few times).
    fn login(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        assert!(
            self.expect("login: ", limit),
            "{}: no login prompt within {limit:?}; console:\n{}",
            self.name,
            self.tail()
        );
        for _ in 0..5 {
            self.send("\n");
            if !self.expect("login: ", Duration::from_secs(20)) {
                continue;
            }
            self.send("root\n");
            if !self.expect("Password: ", Duration::from_secs(20)) {
                continue;
            }
            self.send(&format!("{ROOT_PASSWORD}\n"));
            if self.expect("root@", Duration::from_secs(30)) {
                // A plain, quiet shell: no echo, no prompt, no bracketed paste, only
                // kernel warnings and worse.
                self.send(
                    "stty -echo; bind 'set enable-bracketed-paste off' 2>/dev/null; \
                     dmesg -n 4; export SYSTEMD_PAGER= SYSTEMD_COLORS=0 TERM=dumb; PS1=''\n",
                );
                let (_, code) = self.sh("true", Duration::from_secs(30));
                assert_eq!(code, 0, "{}: shell after login", self.name);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: could not log in on the console; console:\n{}",
                self.name,
                self.tail()
            );
        }
        panic!(
            "{}: could not log in on the console; console:\n{}",
            self.name,
            self.tail()
        );
    }

    /// Runs a shell command in the guest; its output and exit status.
    fn sh(&mut self, cmd: &str, limit: Duration) -> (String, i32) {
        self.seq += 1;
        let n = self.seq;
        // The markers are split in the typed text, so only the output contains them.
        self.send(&format!(
            "echo '@@BE''GIN {n}@@'; {cmd}; echo \"@@E\"\"ND {n} $?@@\"\n"
        ));
        let begin = format!("@@BEGIN {n}@@\n");
        assert!(
            self.expect(&begin, limit),
            "{}: `{cmd}` did not start within {limit:?}; console:\n{}",
            self.name,
            self.tail()
        );
        let start = self.seen;
        let end = format!("@@END {n} ");
        assert!(
            self.expect(&end, limit),
            "{}: `{cmd}` did not finish within {limit:?}; console:\n{}",
            self.name,
            self.tail()
        );
        let text = self.text_since(start);
        let out = text[..text.find(&end).unwrap()].to_string();
        assert!(self.expect("@@", Duration::from_secs(10)));
        let code = {
            let rest = self.text_since(start);
            let after = &rest[rest.find(&end).unwrap() + end.len()..];
            after
                .split("@@")
                .next()
                .and_then(|c| c.trim().parse().ok())
                .unwrap_or(-1)
        };
        (out, code)
    }

    /// Runs a command that must succeed.
    fn ok(&mut self, cmd: &str, limit: Duration) -> String {
        let (out, code) = self.sh(cmd, limit);
        assert_eq!(code, 0, "{}: `{cmd}` exited {code}:\n{out}", self.name);
        out
    }
}

/// One QEMU we started: killed by PID when dropped.
struct Vm {
    name: &'static str,
    child: Option<Child>,
    console: Console,
    fwd: Forwards,
    started: Instant,
    /// The console and QEMU logs, copied to target/test-artifacts/image/ on drop.
    logs: Vec<PathBuf>,
}

impl Vm {
    fn pid(&self) -> u32 {
        self.child.as_ref().expect("vm running").id()
    }

    /// SIGKILL to this VM's QEMU (the machine "loses power").
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn assert_running(&mut self) {
        let status = self.child.as_mut().map(|c| c.try_wait());
        if let Some(Ok(Some(status))) = status {
            panic!(
                "{}: QEMU exited ({status}); console:\n{}\nQEMU: {}",
                self.name,
                self.console.tail(),
                self.logs
                    .get(1)
                    .and_then(|p| std::fs::read_to_string(p).ok())
                    .unwrap_or_default()
            );
        }
    }

    fn holds_vip(&mut self) -> bool {
        self.assert_running();
        let out = self
            .console
            .ok("ip -4 -o addr show dev eth0", Duration::from_secs(60));
        out.contains(&format!(" {VIP}/"))
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
        let keep = repo().join("target/test-artifacts/image");
        if std::fs::create_dir_all(&keep).is_ok() {
            for log in &self.logs {
                if let Some(name) = log.file_name() {
                    let _ = std::fs::copy(log, keep.join(name));
                }
            }
        }
    }
}

struct VmSpec<'a> {
    name: &'static str,
    dir: &'a Path,
    disk: &'a Path,
    disk_format: &'a str,
    uefi: bool,
    kernel_args: String,
    smbios_credentials: Vec<(String, String)>,
    eth0_mac: &'a str,
    eth1_mac: &'a str,
    /// eth1 (dgram): (local port, the other VM's port); ttyS0 (udp chardev): (local
    /// port, the serial cable's relay port).
    link_ports: (u16, u16),
    serial_ports: (u16, u16),
}

fn start_vm(spec: VmSpec) -> Vm {
    let image_dir = repo().join("target/image");
    let fwd = Forwards::new();
    let sock = spec.dir.join(format!("{}-console.sock", spec.name));
    let log = spec.dir.join(format!("{}-console.log", spec.name));
    let qlog = spec.dir.join(format!("{}-qemu.log", spec.name));
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "1024"])
        .args(["-nodefaults", "-display", "none", "-no-reboot"])
        .arg("-drive")
        .arg(format!(
            "if=virtio,file={},format={}",
            spec.disk.display(),
            spec.disk_format
        ))
        .arg("-netdev")
        .arg(fwd.netdev())
        .arg("-device")
        .arg(format!("virtio-net-pci,netdev=lan,mac={}", spec.eth0_mac))
        .arg("-netdev")
        .arg(format!(
            "dgram,id=priv,local.type=inet,local.host=127.0.0.1,local.port={},\
             remote.type=inet,remote.host=127.0.0.1,remote.port={}",
            spec.link_ports.0, spec.link_ports.1
        ))
        .arg("-device")
        .arg(format!("virtio-net-pci,netdev=priv,mac={}", spec.eth1_mac))
        // ttyS0: the serial heartbeat cable; ttyS1: the console.
        .arg("-chardev")
        .arg(format!(
            "udp,id=hb,host=127.0.0.1,port={},localaddr=127.0.0.1,localport={}",
            spec.serial_ports.1, spec.serial_ports.0
        ))
        .args(["-serial", "chardev:hb"])
        .arg("-chardev")
        .arg(format!(
            "socket,id=con,path={},server=on,wait=off",
            sock.display()
        ))
        .args(["-serial", "chardev:con"]);
    if spec.uefi {
        cmd.args(["-bios", "/usr/share/ovmf/OVMF.fd"]);
    } else {
        cmd.arg("-kernel")
            .arg(image_dir.join("clusterd.vmlinuz"))
            .arg("-initrd")
            .arg(image_dir.join("clusterd.initrd"))
            .arg("-append")
            .arg(&spec.kernel_args);
    }
    for (name, value) in &spec.smbios_credentials {
        cmd.arg("-smbios").arg(format!(
            "type=11,value=io.systemd.credential:{name}={value}"
        ));
    }
    let logs = vec![log.clone(), qlog.clone()];
    let qlog = std::fs::File::create(&qlog).expect("qemu log");
    cmd.stdin(Stdio::null())
        .stdout(qlog.try_clone().unwrap())
        .stderr(qlog);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let started = Instant::now();
    let child = cmd.spawn().expect("start qemu-system-x86_64");
    let console = Console::connect(spec.name, &sock, &log, &logs[1]);
    let mut vm = Vm {
        name: spec.name,
        child: Some(child),
        console,
        fwd,
        started,
        logs,
    };
    vm.assert_running();
    println!(
        "{}: QEMU pid {} ({}), forwards {:?}",
        vm.name,
        vm.pid(),
        if spec.uefi {
            "UEFI: OVMF → systemd-boot → UKI"
        } else {
            "direct kernel boot"
        },
        vm.fwd
    );
    vm
}

/// GET / with a Host header over the forward; the status line and body.
fn http_get(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: www.cluster.com.ec\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text)
}

/// Polls until the site answers 200 through the forward (bounded).
fn wait_serving(vm: &mut Vm, limit: Duration) -> Duration {
    let deadline = Instant::now() + limit;
    loop {
        vm.assert_running();
        if let Some(text) = http_get(vm.fwd.http)
            && text.starts_with("HTTP/1.")
            && text.lines().next().unwrap_or("").contains(" 200")
        {
            return vm.started.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{}: the site did not answer on the VIP within {limit:?}; console:\n{}",
            vm.name,
            vm.console.tail()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn send_mail(port: u16, subject: &str) {
    run(
        Command::new("swaks")
            .args(["--server", &format!("127.0.0.1:{port}")])
            // A null sender: the host is outside relay_from, so an address of ours
            // would be refused, and another domain would have to resolve.
            .args(["--from", "<>"])
            .args(["--to", &format!("{USER}@cluster.com.ec")])
            .args(["--header", &format!("Subject: {subject}")])
            .args(["--body", "Mensaje de prueba de la imagen."])
            .args(["--timeout", "60"]),
        &format!("swaks to 127.0.0.1:{port} ({subject})"),
    );
}

/// The subjects in the user's INBOX over IMAP (STARTTLS: the forward's clients are
/// not on loopback inside the guest, so plaintext login needs TLS).
fn imap_subjects(port: u16) -> Result<Vec<String>, String> {
    let script = r#"
import imaplib, ssl, sys
m = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]), timeout=60)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
m.starttls(ssl_context=ctx)
m.login(sys.argv[2], sys.argv[3])
typ, data = m.select("INBOX")
assert typ == "OK", (typ, data)
typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
for part in data:
    if isinstance(part, tuple):
        print(part[1].decode().strip())
m.logout()
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args([&port.to_string(), USER, PASSWORD])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
        .collect())
}

/// Waits (bounded) until IMAP on `port` shows every subject.
fn wait_imap(vm: &mut Vm, subjects: &[&str], limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut last;
    loop {
        vm.assert_running();
        last = imap_subjects(vm.fwd.imap);
        if let Ok(have) = &last
            && subjects.iter().all(|s| have.iter().any(|h| h == s))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: IMAP did not show {subjects:?} within {limit:?}: {last:?}",
            vm.name
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn dig(port: u16, name: &str, rtype: &str) -> String {
    run(
        Command::new("dig")
            .args(["@127.0.0.1", "-p", &port.to_string(), name, rtype])
            .args(["+tcp", "+short", "+time=10", "+tries=3"]),
        &format!("dig {name} {rtype}"),
    )
}

/// Writes `files` into the FAT EFI partition (the image's first) of a raw disk, as
/// an administrator does after flashing (here with mtools, no mount).
fn write_to_esp(disk: &Path, files: &[(&str, &str)], dir: &Path) {
    let table = run(Command::new("sfdisk").args(["-J"]).arg(disk), "sfdisk -J");
    let start: u64 = table
        .split("\"start\":")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit() && c != ' ').next())
        .and_then(|s| s.trim().parse().ok())
        .expect("the first partition's start");
    let target = format!("{}@@{}", disk.display(), start * 512);
    // mtools' first write to the freshly made FAT exits 1 although it succeeds
    // (measured); what counts is that the directory is there afterwards.
    let _ = Command::new("mmd")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-i", &target, "::clusterd"])
        .stdin(Stdio::null())
        .output();
    run(
        Command::new("mdir")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-i", &target, "::clusterd"]),
        "mdir ::clusterd",
    );
    for (name, value) in files {
        let local = dir.join(name);
        std::fs::write(&local, value).unwrap();
        run(
            Command::new("mcopy")
                .env("MTOOLS_SKIP_CHECK", "1")
                .args(["-o", "-i", &target])
                .arg(&local)
                .arg(format!("::clusterd/{name}")),
            &format!("mcopy {name}"),
        );
    }
}

#[test]
fn image_builds_boots_both_nodes_and_fails_over() {
    for tool in ["swaks", "dig", "python3", "qemu-img", "sfdisk"] {
        require_tool(tool);
    }

    // ---- build ------------------------------------------------------------------
    let t0 = Instant::now();
    let out = Command::new(repo().join("image/build.sh"))
        .current_dir(repo())
        .stdin(Stdio::null())
        .output()
        .expect("run ./image/build.sh");
    let build_time = t0.elapsed();
    assert!(
        out.status.success(),
        "./image/build.sh failed ({}):\n--- stdout (tail)\n{}\n--- stderr (tail)\n{}",
        out.status,
        tail(&String::from_utf8_lossy(&out.stdout), 60),
        tail(&String::from_utf8_lossy(&out.stderr), 60)
    );
    for tool in ["qemu-system-x86_64", "mcopy"] {
        require_tool(tool);
    }
    let image_dir = repo().join("target/image");
    let raw = image_dir.join("clusterd.raw");
    let raw_size = std::fs::metadata(&raw).expect("clusterd.raw").len();
    let zst_size = std::fs::metadata(image_dir.join("clusterd.raw.zst"))
        .expect("clusterd.raw.zst")
        .len();
    println!(
        "image: raw {} MB, zstd {} MB, build {:.0} s (./image/build.sh, incl. the release build)",
        raw_size / 1_000_000,
        zst_size / 1_000_000,
        build_time.as_secs_f64()
    );
    assert!(
        raw_size < RAW_TARGET,
        "raw image is {raw_size} bytes (target < {RAW_TARGET})"
    );
    assert!(
        zst_size < COMPRESSED_TARGET,
        "compressed image is {zst_size} bytes (target < {COMPRESSED_TARGET})"
    );

    let dir = tempfile::Builder::new()
        .prefix("clusterd-image-test-")
        .tempdir()
        .expect("temp dir");
    let key = random_hex(32);

    // Node 1's disk: a 2 GB copy-on-write overlay on the image (grown at first boot).
    let disk1 = dir.path().join("node1.qcow2");
    run(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&raw)
            .arg(&disk1)
            .arg("2G"),
        "qemu-img create",
    );
    // Node 2's disk: the raw image "flashed" (a sparse copy on a 2 GB disk) with its
    // identity written to the EFI partition.
    let disk2 = dir.path().join("node2.raw");
    run(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(&raw)
            .arg(&disk2),
        "copy the image",
    );
    // Its identity and the cluster key as files on the EFI partition; the key is a
    // secret, and clusterd-setup removes it from there once installed.
    write_to_esp(
        &disk2,
        &[
            ("clusterd.node", "clusternodo2\n"),
            ("clusterd.key", &format!("{key}\n")),
        ],
        dir.path(),
    );
    run(
        Command::new("truncate").args(["-s", "2G"]).arg(&disk2),
        "grow node 2's disk",
    );

    let (link1, link2, hb1, hb2) = (free_port(), free_port(), free_port(), free_port());
    let (_cable, (relay1, relay2)) = SerialCable::new((hb1, hb2));

    // ---- node 1 alone -----------------------------------------------------------
    let mut n1 = start_vm(VmSpec {
        name: "clusternodo1",
        dir: dir.path(),
        disk: &disk1,
        disk_format: "qcow2",
        uefi: true,
        kernel_args: String::new(),
        smbios_credentials: vec![
            ("clusterd.node".into(), "clusternodo1".into()),
            ("clusterd.key".into(), key.clone()),
            (format!("clusterd.user.{USER}"), PASSWORD.into()),
            (
                "passwd.plaintext-password.root".into(),
                ROOT_PASSWORD.into(),
            ),
        ],
        eth0_mac: "02:00:0a:00:00:01",
        eth1_mac: "02:00:c0:a8:01:01",
        link_ports: (link1, link2),
        serial_ports: (hb1, relay1),
    });
    let serving1 = wait_serving(&mut n1, Duration::from_secs(300));
    println!(
        "clusternodo1: boot to serving the site on the VIP: {:.1} s (TCG, UEFI)",
        serving1.as_secs_f64()
    );

    let page = http_get(n1.fwd.http).expect("GET /");
    assert!(
        page.contains("<title>Cluster · cluster.com.ec"),
        "the site's index:\n{page}"
    );
    let a = dig(n1.fwd.dns, "www.cluster.com.ec", "A");
    assert_eq!(a.trim(), VIP, "www.cluster.com.ec A");
    let mx = dig(n1.fwd.dns, "cluster.com.ec", "MX");
    assert_eq!(mx.trim(), "10 mail.cluster.com.ec.", "cluster.com.ec MX");
    let ns = dig(n1.fwd.dns, "cluster.com.ec", "NS");
    assert_eq!(ns.trim(), "ns.cluster.com.ec.", "cluster.com.ec NS");
    send_mail(n1.fwd.smtp, "imagen 1");
    wait_imap(&mut n1, &["imagen 1"], Duration::from_secs(60));
    println!("clusternodo1: site, DNS, SMTP in and IMAP out on the VIP: ok");

    n1.console.login(Duration::from_secs(120));
    let security = n1.console.ok(
        "systemd-analyze security clusterd.service --no-pager",
        Duration::from_secs(120),
    );
    let overall = security
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("systemd-analyze security said:\n{security}"))
        .trim()
        .to_string();
    println!("clusternodo1: {overall}");
    assert!(
        ["PERFECT", "SAFE", "OK", "MEDIUM"]
            .iter()
            .any(|w| overall.contains(w)),
        "clusterd.service must score no worse than MEDIUM: {overall}"
    );
    let ss = n1.console.ok("ss -lntupH", Duration::from_secs(60));
    println!("clusternodo1: ss -lntup:\n{ss}");
    let listeners: Vec<&str> = ss.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!listeners.is_empty(), "ss shows no listener at all");
    for l in &listeners {
        // systemd-timesyncd's client socket (an unconnected UDP socket on an
        // ephemeral port, shown by `ss -l`) listens for nothing.
        if l.starts_with("udp") && l.contains("((\"systemd-timesyn\",") {
            continue;
        }
        assert!(
            l.contains("((\"clusterd\","),
            "a listener that is not clusterd's: {l}\n(all:\n{ss})"
        );
    }
    let unit = n1.console.ok(
        "systemctl show clusterd.service -p User -p CapabilityBoundingSet -p AmbientCapabilities -p Restart -p ActiveState -p Type -p NotifyAccess -p WatchdogUSec -p StatusText; stat -c %U /proc/$(systemctl show -p MainPID --value clusterd.service)",
        Duration::from_secs(60),
    );
    println!("clusternodo1: clusterd.service:\n{unit}");
    assert!(unit.contains("User=clusterd"), "{unit}");
    assert!(unit.contains("Restart=on-failure"), "{unit}");
    assert!(unit.contains("ActiveState=active"), "{unit}");
    let caps = unit
        .lines()
        .find(|l| l.starts_with("CapabilityBoundingSet="))
        .unwrap_or("");
    let mut caps: Vec<&str> = caps
        .trim_start_matches("CapabilityBoundingSet=")
        .split_whitespace()
        .collect();
    caps.sort();
    assert_eq!(
        caps,
        ["cap_net_admin", "cap_net_bind_service", "cap_net_raw"],
        "clusterd's capability bounding set"
    );
    assert_eq!(
        unit.lines().last().map(str::trim),
        Some("clusterd"),
        "clusterd runs as the user clusterd: {unit}"
    );
    n1.console.ok(
        "test -c /dev/watchdog && grep -q '^softdog ' /proc/modules",
        Duration::from_secs(30),
    );
    let journal = n1.console.ok(
        "journalctl -u clusterd.service -b --no-pager -o cat | grep -c 'clusterd is serving'",
        Duration::from_secs(60),
    );
    assert!(
        journal.trim() != "0",
        "clusterd's log is in the journal: {journal}"
    );
    assert!(n1.holds_vip(), "clusternodo1 (alone) holds the VIP");

    // ---- systemd: notify, status, watchdog; the clock ---------------------------
    for want in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogUSec=30s",
        "ActiveState=active",
    ] {
        assert!(unit.lines().any(|l| l.trim() == want), "{want}: {unit}");
    }
    assert!(
        unit.contains("StatusText=role active"),
        "STATUS= names the role: {unit}"
    );
    // Active only once serving: clusterd logs that it serves, then says READY=1, and
    // only then does systemd log the unit as started.
    let order = n1.console.ok(
        "journalctl -u clusterd.service -b --no-pager -o cat | grep -E 'clusterd is serving|Started clusterd' | head -n 2",
        Duration::from_secs(60),
    );
    let order: Vec<&str> = order.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        order.len() == 2
            && order[0].contains("clusterd is serving")
            && order[1].contains("Started clusterd"),
        "systemd reports clusterd started only after it serves: {order:?}"
    );
    let timesyncd = n1.console.ok(
        "systemctl is-enabled systemd-timesyncd.service; systemctl is-active systemd-timesyncd.service; clusterd status | grep '^clock:'",
        Duration::from_secs(60),
    );
    println!("clusternodo1: time synchronisation:\n{timesyncd}");
    let lines: Vec<&str> = timesyncd.lines().map(str::trim).collect();
    assert!(
        lines.len() >= 3 && lines[0] == "enabled" && lines[1] == "active",
        "systemd-timesyncd runs: {timesyncd}"
    );
    // clusterd reads the kernel's state (adjtimex) under its sandbox.
    assert!(
        lines[2].starts_with("clock:") && lines[2].contains("synchronised"),
        "clusterd status shows the clock's state: {timesyncd}"
    );
    // A wedged supervisor stops the watchdog pings and systemd restarts clusterd. A
    // 6 s watchdog (a runtime drop-in) keeps the test short; fault injection is
    // enabled in the config's [monitor] section for it.
    n1.console.ok(
        "mkdir -p /run/systemd/system/clusterd.service.d \
         && printf '[Service]\\nWatchdogSec=6s\\n' > /run/systemd/system/clusterd.service.d/50-test.conf \
         && sed -i 's/^\\[monitor\\]$/[monitor]\\nallow_fault_injection = true/' /etc/clusterd/clusterd.toml \
         && grep -q '^allow_fault_injection = true$' /etc/clusterd/clusterd.toml \
         && systemctl daemon-reload && systemctl restart clusterd.service",
        Duration::from_secs(180),
    );
    let restarts = |vm: &mut Vm| -> u64 {
        vm.console
            .ok(
                "systemctl show -p NRestarts --value clusterd.service",
                Duration::from_secs(60),
            )
            .trim()
            .parse()
            .expect("NRestarts")
    };
    let before = restarts(&mut n1);
    let wedged_at = Instant::now();
    n1.console
        .ok("clusterd debug wedge supervisor", Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(120);
    while restarts(&mut n1) <= before {
        assert!(
            Instant::now() < deadline,
            "systemd's watchdog did not restart clusterd after `debug wedge supervisor`; journal:\n{}",
            n1.console.ok(
                "journalctl -u clusterd.service -b --no-pager -o cat | tail -n 30",
                Duration::from_secs(60)
            )
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let journal = n1.console.ok(
        "journalctl -u clusterd.service -b --no-pager -o cat | grep -c 'Watchdog timeout'",
        Duration::from_secs(60),
    );
    assert!(journal.trim() != "0", "systemd logged the watchdog timeout");
    println!(
        "clusternodo1: wedged supervisor restarted by systemd's watchdog after {:.1} s",
        wedged_at.elapsed().as_secs_f64()
    );
    n1.console.ok(
        "rm /run/systemd/system/clusterd.service.d/50-test.conf && systemctl daemon-reload \
         && systemctl restart clusterd.service && systemctl is-active clusterd.service",
        Duration::from_secs(180),
    );
    wait_serving(&mut n1, Duration::from_secs(120));
    assert!(n1.holds_vip(), "clusternodo1 holds the VIP again");

    // ---- node 2 joins -----------------------------------------------------------
    let mut n2 = start_vm(VmSpec {
        name: "clusternodo2",
        dir: dir.path(),
        disk: &disk2,
        disk_format: "raw",
        uefi: false,
        kernel_args: format!(
            "console=ttyS1,115200n8 root=PARTLABEL=root-x86-64 rw net.ifnames=0 \
             systemd.firstboot=off sysctl.kernel.hung_task_timeout_secs=15 \
             systemd.set_credential=passwd.plaintext-password.root:{ROOT_PASSWORD}"
        ),
        smbios_credentials: vec![],
        eth0_mac: "02:00:0a:00:00:02",
        eth1_mac: "02:00:c0:a8:01:02",
        link_ports: (link2, link1),
        serial_ports: (hb2, relay2),
    });
    n2.console.login(Duration::from_secs(300));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (st, _) = n2
            .console
            .sh("clusterd status 2>&1", Duration::from_secs(60));
        let standby = st
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["role:", "standby"]);
        // Heartbeats arrive over both media: the private link and the serial cable.
        let media_heard = ["medium:      udp ", "medium:      serial "]
            .iter()
            .all(|m| {
                st.lines()
                    .any(|l| l.starts_with(m) && l.contains("last heartbeat"))
            });
        if standby && media_heard {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "clusternodo2 did not become standby hearing node 1 on both media; status:\n{st}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    println!(
        "clusternodo2: boot to standby: {:.1} s (TCG, direct kernel boot)",
        n2.started.elapsed().as_secs_f64()
    );
    // The key given on the EFI partition is installed (owner-only) and gone from the
    // ESP; the node identity stays there.
    let (esp, code) = n2.console.sh(
        "if mountpoint -q /efi; then d=/efi; else mkdir -p /run/esp-check \
         && mount -o ro /dev/disk/by-partlabel/esp /run/esp-check && d=/run/esp-check; fi; \
         ls -1 \"$d/clusterd\"; stat -c '%a %U' /etc/clusterd/authkey",
        Duration::from_secs(60),
    );
    assert!(
        code == 0
            && esp.lines().any(|l| l.trim() == "clusterd.node")
            && !esp.contains("clusterd.key")
            && esp.lines().any(|l| l.trim() == "600 clusterd"),
        "the cluster key is still on the EFI partition, or authkey is not 0600 clusterd:\n{esp}"
    );
    // The packet filter is loaded: heartbeats only from the peer on the private link.
    let (rules, code) = n2
        .console
        .sh("nft list table inet clusterd", Duration::from_secs(60));
    assert!(
        code == 0 && rules.contains("iifname \"eth1\" ip saddr 192.168.1.1 udp dport 694 accept"),
        "the packet filter is not loaded on clusternodo2:\n{rules}"
    );
    for _ in 0..3 {
        let (h1, h2) = (n1.holds_vip(), n2.holds_vip());
        assert!(
            h1 && !h2,
            "exactly one node (clusternodo1, the preferred) holds {VIP}: node 1 {h1}, node 2 {h2}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    send_mail(n1.fwd.smtp, "imagen 2");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let d1 = n1.console.ok("clusterd digest", Duration::from_secs(60));
        let d2 = n2.console.ok("clusterd digest", Duration::from_secs(60));
        if d1.trim() == d2.trim() {
            println!("both stores agree: {}", d1.trim());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stores did not converge:\nclusternodo1: {d1}\nclusternodo2: {d2}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }

    // ---- node 1 dies --------------------------------------------------------------
    println!("killing clusternodo1's QEMU (pid {})", n1.pid());
    n1.kill();
    let killed = Instant::now();
    // Through node 2's forward, which reaches the VIP only once node 2 holds it.
    wait_serving(&mut n2, Duration::from_secs(60));
    println!(
        "clusternodo2 serves the site on {VIP} {:.1} s after node 1 died",
        killed.elapsed().as_secs_f64()
    );
    wait_imap(&mut n2, &["imagen 1", "imagen 2"], Duration::from_secs(60));
    assert_eq!(
        dig(n2.fwd.dns, "www.cluster.com.ec", "A").trim(),
        VIP,
        "clusternodo2 answers DNS"
    );
    println!(
        "clusternodo2 serves the site, DNS and both messages after the failover \
         ({:.1} s after the kill)",
        killed.elapsed().as_secs_f64()
    );
    assert!(
        n2.holds_vip(),
        "clusternodo2 holds {VIP} on eth0 after the failover"
    );
    drop(n2);
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
