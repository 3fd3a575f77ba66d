"""A password-guessing flood against a real node: SMTP AUTH (implicit TLS), IMAP LOGIN
and the webmail login, all from 127.0.0.2, while the owner logs in from 127.0.0.1.

Run by tests/auth_limits.rs:
    python3 tests/auth_limits.py SMTPS_PORT IMAP_PORT HTTP_PORT USER PASSWORD NODE_PID \
        OTHER_USER OTHER_PASSWORD

Asserts: the owner logs in on each protocol within OWNER_MAX_S during the flood; the
attacking address is slowed (its late attempts are refused without a hash and almost
none of its attempts is checked against a hash); SMTP and IMAP sessions are closed
after SESSION_MAX wrong passwords; at most 4 hashes ran at once (/metrics); the node's
peak RSS stays under RSS_MAX_MB. Prints the figures as one JSON line, then `OK`.
"""

import base64
import http.client
import json
import multiprocessing
import random
import re
import smtplib
import socket
import ssl
import string
import subprocess
import sys
import threading
import time
import urllib.parse

HOST = "127.0.0.1"
ATTACKER = "127.0.0.2"
OWNER = "127.0.0.1"
# The attack stops after this many answered attempts, or after FLOOD_S seconds.
ATTEMPTS = 1000
FLOOD_S = 25.0
THREADS_PER_PROTOCOL = 6
OWNER_MAX_S = 2.0
RSS_MAX_MB = 200
# The node's defaults ([auth] is not set in this test's config).
IP_MAX_FAILURES = 20
IP_PARALLEL = 2
SESSION_MAX = 3


def tls():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def b64(s):
    return base64.b64encode(s.encode()).decode()


def plain(user, pw):
    return b64("\0%s\0%s" % (user, pw))


class Stats:
    def __init__(self, counter):
        self.lock = threading.Lock()
        self.start = time.monotonic()
        # Answered attempts, shared with the parent process.
        self.counter = counter
        # protocol -> list of (t since start, outcome, seconds to answer)
        self.log = {"smtp": [], "imap": [], "webmail": []}
        self.session_closes = {"smtp": 0, "imap": 0}
        self.errors = []

    def record(self, proto, outcome, took):
        with self.lock:
            self.log[proto].append((time.monotonic() - self.start, outcome, took))
        with self.counter.get_lock():
            self.counter.value += 1

    def closed_after_failures(self, proto):
        with self.lock:
            self.session_closes[proto] += 1

    def error(self, what):
        with self.lock:
            if len(self.errors) < 20:
                self.errors.append(what)


def guess_user(i):
    # The target account most of the time; also junk names, some very long, which the
    # limiter must not keep raw.
    r = i % 4
    if r == 3:
        return "".join(random.choice(string.ascii_lowercase) for _ in range(random.choice([8, 300])))
    return USER


# ------------------------------------------------------------------ attackers


def smtp_attacker(stop, stats):
    i = 0
    while not stop.is_set():
        s = None
        try:
            s = smtplib.SMTP_SSL(HOST, SMTPS_PORT, source_address=(ATTACKER, 0), timeout=30, context=tls())
            s.ehlo("attacker.example")
            failures = 0
            while not stop.is_set():
                i += 1
                t = time.monotonic()
                code, text = s.docmd("AUTH", "PLAIN " + plain(guess_user(i), "wrong-%d" % i))
                took = time.monotonic() - t
                text = text.decode(errors="replace")
                if code == 535:
                    failures += 1
                    stats.record("smtp", "wrong", took)
                elif code == 421 and "from your address" in text:
                    stats.record("smtp", "refused", took)
                    break
                elif code == 421:
                    # The session's last failure: closed.
                    failures += 1
                    stats.record("smtp", "wrong", took)
                    if failures != SESSION_MAX:
                        stats.error("smtp closed after %d failures, not %d" % (failures, SESSION_MAX))
                    stats.closed_after_failures("smtp")
                    break
                else:
                    stats.error("smtp: unexpected %d %s" % (code, text))
                    stats.record("smtp", "other", took)
                    break
                if failures > SESSION_MAX:
                    stats.error("smtp: %d failures in one session" % failures)
                    break
        except (smtplib.SMTPException, OSError) as e:
            stats.error("smtp: %r" % e)
            time.sleep(0.05)
        finally:
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass


class RawImap:
    def __init__(self, src):
        self.sock = socket.create_connection((HOST, IMAP_PORT), timeout=30, source_address=(src, 0))
        self.f = self.sock.makefile("rb")
        self.n = 0
        greeting = self.f.readline()
        assert greeting.startswith(b"* OK"), greeting

    def cmd(self, text):
        """Sends one command; returns (tagged line, untagged lines)."""
        self.n += 1
        tag = b"a%d" % self.n
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        untagged = []
        while True:
            line = self.f.readline()
            if not line:
                return None, untagged
            if line.startswith(tag + b" "):
                return line.decode(errors="replace").strip(), untagged
            untagged.append(line.decode(errors="replace").strip())

    def bye(self):
        """Whether the next thing the server sends is BYE and then the end of the stream
        (within 5 s: a server that keeps the session open fails this)."""
        self.sock.settimeout(5)
        try:
            line = self.f.readline()
            return line.startswith(b"* BYE") and self.f.readline() == b""
        except OSError:
            return False

    def close(self):
        try:
            self.f.close()
            self.sock.close()
        except OSError:
            pass


def imap_quote(s):
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"')


def imap_attacker(stop, stats):
    i = 0
    while not stop.is_set():
        c = None
        try:
            c = RawImap(ATTACKER)
            failures = 0
            while not stop.is_set():
                i += 1
                t = time.monotonic()
                tagged, untagged = c.cmd("LOGIN %s %s" % (imap_quote(guess_user(i)), imap_quote("wrong-%d" % i)))
                took = time.monotonic() - t
                if tagged is None:
                    stats.error("imap: closed without an answer")
                    break
                if "[UNAVAILABLE]" in tagged:
                    stats.record("imap", "refused", took)
                    if not c.bye():
                        stats.error("imap: refused without BYE")
                    break
                if "[AUTHENTICATIONFAILED]" in tagged:
                    failures += 1
                    stats.record("imap", "wrong", took)
                    if failures == SESSION_MAX:
                        # The session's last failure: BYE, then the server closes.
                        if c.bye():
                            stats.closed_after_failures("imap")
                        else:
                            stats.error("imap: not closed after %d failures" % failures)
                        break
                    if failures > SESSION_MAX:
                        stats.error("imap: %d failures in one session" % failures)
                        break
                    continue
                stats.error("imap: unexpected %s %s" % (tagged, untagged))
                stats.record("imap", "other", took)
                break
        except OSError as e:
            stats.error("imap: %r" % e)
            time.sleep(0.05)
        finally:
            if c is not None:
                c.close()


class Browser:
    def __init__(self, src):
        self.src = src
        self.cookies = {}
        self.conn = None

    def request(self, method, path, fields=None):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(HOST, HTTP_PORT, timeout=30, source_address=(self.src, 0))
        h = {}
        if self.cookies:
            h["Cookie"] = "; ".join("%s=%s" % kv for kv in self.cookies.items())
        body = None
        if fields is not None:
            body = urllib.parse.urlencode(fields)
            h["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            self.conn.request(method, path, body=body, headers=h)
            r = self.conn.getresponse()
            data = r.read()
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn = None
            raise
        for k, v in r.getheaders():
            if k.lower() == "set-cookie":
                name, _, rest = v.partition("=")
                value = rest.split(";", 1)[0]
                if "Max-Age=0" in v:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = value
        return r.status, data.decode("utf-8", "replace")

    def login_form(self):
        status, page = self.request("GET", "/webmail/login")
        assert status == 200, status
        m = re.search(r'name="csrf" value="([^"]*)"', page)
        assert m, "no csrf field"
        return m.group(1)

    def close(self):
        if self.conn is not None:
            self.conn.close()


def webmail_attacker(stop, stats):
    i = 0
    while not stop.is_set():
        b = Browser(ATTACKER)
        try:
            token = b.login_form()
            while not stop.is_set():
                i += 1
                t = time.monotonic()
                status, _ = b.request("POST", "/webmail/login", {"user": guess_user(i), "password": "wrong-%d" % i, "csrf": token})
                took = time.monotonic() - t
                if status == 401:
                    stats.record("webmail", "wrong", took)
                elif status == 429:
                    stats.record("webmail", "refused", took)
                else:
                    stats.error("webmail: unexpected status %d" % status)
                    stats.record("webmail", "other", took)
                    break
        except (http.client.HTTPException, OSError, AssertionError) as e:
            stats.error("webmail: %r" % e)
            time.sleep(0.05)
        finally:
            b.close()


# ------------------------------------------------------------------ the owner


def owner_smtp(user=None, password=None):
    with smtplib.SMTP_SSL(HOST, SMTPS_PORT, source_address=(OWNER, 0), timeout=30, context=tls()) as s:
        s.ehlo("owner.example")
        code, text = s.docmd("AUTH", "PLAIN " + plain(user or USER, password or PASSWORD))
        assert code == 235, (code, text)


def owner_imap():
    c = RawImap(OWNER)
    tagged, untagged = c.cmd("LOGIN %s %s" % (imap_quote(USER), imap_quote(PASSWORD)))
    c.close()
    assert tagged is not None and " OK " in tagged, (tagged, untagged)


def owner_webmail():
    b = Browser(OWNER)
    token = b.login_form()
    status, page = b.request("POST", "/webmail/login", {"user": USER, "password": PASSWORD, "csrf": token})
    b.close()
    assert status == 303, (status, page[:300])
    assert "clusterd_session" in b.cookies, b.cookies


def timed(fn):
    """Seconds `fn` took, from connecting to the answer to the login."""
    t = time.monotonic()
    fn()
    return time.monotonic() - t


# ------------------------------------------------------------------ sessions close


def smtp_session_closes(src, user):
    """SESSION_MAX wrong passwords in one SMTP session: the last is answered 421 and
    the session ends."""
    s = smtplib.SMTP_SSL(HOST, SMTPS_PORT, source_address=(src, 0), timeout=30, context=tls())
    try:
        s.ehlo("typo.example")
        for i in range(1, SESSION_MAX + 1):
            code, text = s.docmd("AUTH", "PLAIN " + plain(user, "wrong-%d" % i))
            if i < SESSION_MAX:
                assert code == 535, (i, code, text)
        assert code == 421 and b"4.7.0" in text, "after %d failures: %d %s" % (SESSION_MAX, code, text)
        try:
            code, text = s.docmd("AUTH", "PLAIN " + plain(user, "again"))
            raise AssertionError("the SMTP session went on after 421: %d %s" % (code, text))
        except (smtplib.SMTPServerDisconnected, OSError):
            pass
    finally:
        s.close()


def imap_session_closes(src, user):
    """SESSION_MAX wrong passwords in one IMAP session: the last NO is followed by BYE
    and the end of the stream."""
    c = RawImap(src)
    try:
        for i in range(1, SESSION_MAX + 1):
            tagged, _ = c.cmd("LOGIN %s %s" % (imap_quote(user), imap_quote("wrong-%d" % i)))
            assert tagged is not None and "[AUTHENTICATIONFAILED]" in tagged, (i, tagged)
        assert c.bye(), "no BYE and close after %d failed LOGINs" % SESSION_MAX
    finally:
        c.close()


def sessions_close_after_failures():
    """Both at once, each from its own address and for its own unknown user, so neither
    waits for the other's delays."""
    errors = []

    def run(fn, src, user):
        try:
            fn(src, user)
        except Exception as e:  # reported below
            errors.append("%s: %r" % (fn.__name__, e))

    ths = [
        threading.Thread(target=run, args=(smtp_session_closes, "127.0.0.3", "nadie-smtp")),
        threading.Thread(target=run, args=(imap_session_closes, "127.0.0.4", "nadie-imap")),
    ]
    for th in ths:
        th.start()
    for th in ths:
        th.join(timeout=60)
    assert not errors, errors


# ------------------------------------------------------------------ the node


def metrics():
    c = http.client.HTTPConnection(HOST, HTTP_PORT, timeout=30)
    c.request("GET", "/metrics")
    r = c.getresponse()
    text = r.read().decode()
    c.close()
    assert r.status == 200, r.status
    values = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        values[name] = float(value)
    # The new families are well-formed for Prometheus (.ci/run installs promtool).
    lint = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    return values


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    kb = lambda k: int(fields[k].split()[0])
    return kb("VmHWM") // 1024, kb("VmRSS") // 1024


def attack(stop_flood, counter, out):
    """The attackers' process (its own, so the owner's clients in the parent do not
    wait for Python's GIL behind 18 attacking threads): runs until `stop_flood`, then
    sends its log to `out`."""
    stats = Stats(counter)
    stop = threading.Event()
    threads = []
    for fn in (smtp_attacker, imap_attacker, webmail_attacker):
        for _ in range(THREADS_PER_PROTOCOL):
            th = threading.Thread(target=fn, args=(stop, stats), daemon=True)
            th.start()
            threads.append(th)
    stop_flood.wait(FLOOD_S + 30)
    stop.set()
    for th in threads:
        th.join(timeout=40)
    with stats.lock:
        out.send((stats.log, stats.session_closes, stats.errors))


def main():
    # Checked first, asserted with the rest at the end (so a failing run shows all).
    try:
        sessions_close_after_failures()
        session_problem = None
    except AssertionError as e:
        session_problem = str(e)
    # What a first login (TLS, EHLO, AUTH with its hash) costs on this machine without
    # a flood, with another account (the owner's password must not be cached yet).
    baseline = round(timed(lambda: owner_smtp(OTHER, OTHER_PASSWORD)), 3)
    mp = multiprocessing.get_context("fork")
    stop = mp.Event()
    counter = mp.Value("i", 0)
    receive, send = mp.Pipe(duplex=False)
    attacker = mp.Process(target=attack, args=(stop, counter, send), daemon=True)
    start = time.monotonic()
    attacker.start()

    owner = {"smtp": [], "imap": [], "webmail": []}
    owner_failures = []
    rss_peak = 0
    # The owner logs in three times on each protocol during the flood: early (when
    # the attacker's hashes are running), in the middle, and late.
    rounds = [1.5, 6.0, 12.0]
    while True:
        elapsed = time.monotonic() - start
        if rounds and elapsed >= rounds[0]:
            rounds.pop(0)
            for proto, fn in (("smtp", owner_smtp), ("imap", owner_imap), ("webmail", owner_webmail)):
                try:
                    owner[proto].append(round(timed(fn), 3))
                except (AssertionError, OSError, smtplib.SMTPException, http.client.HTTPException) as e:
                    owner_failures.append("%s at %.1f s: %r" % (proto, elapsed, e))
        rss_peak = max(rss_peak, rss_mb(NODE_PID)[1])
        if not rounds and (counter.value >= ATTEMPTS or elapsed >= FLOOD_S):
            break
        time.sleep(0.2)
    stop.set()
    assert receive.poll(60), "the attackers did not stop"
    log, session_closes, errors = receive.recv()
    attacker.join(timeout=10)
    flood_s = time.monotonic() - start
    m = metrics()
    hwm, rss = rss_mb(NODE_PID)

    counts = {}
    for proto, entries in log.items():
        counts[proto] = {k: sum(1 for e in entries if e[1] == k) for k in ("wrong", "refused", "other")}
    every = sorted(e for entries in log.values() for e in entries)
    late = every[len(every) // 2 :]
    late_refused = sum(1 for e in late if e[1] == "refused")
    wrong_answers = [e[2] for e in every if e[1] == "wrong"]
    report = {
        "attempts": len(every),
        "flood_s": round(flood_s, 1),
        "per_protocol": counts,
        "late_half_refused": late_refused,
        "late_half": len(late),
        "slowest_wrong_answer_s": round(max(wrong_answers, default=0), 2),
        "sessions_closed_after_failures": session_closes,
        "owner_login_s": owner,
        "first_smtp_login_without_flood_s": baseline,
        "hashes_running_max": m.get("clusterd_auth_hashes_running_max"),
        "hashes_running_now": m.get("clusterd_auth_hashes_running"),
        "failures_total": {p: m.get('clusterd_auth_failures_total{protocol="%s"}' % p) for p in ("smtp", "imap", "webmail")},
        "refused_total": {p: m.get('clusterd_auth_refused_total{protocol="%s"}' % p) for p in ("smtp", "imap", "webmail")},
        "tracked_entries": m.get("clusterd_auth_tracked_entries"),
        "rss_mb": rss,
        "rss_peak_mb": max(hwm, rss_peak),
        "client_errors": errors,
        "session_close_problem": session_problem,
        "owner_failures": owner_failures,
    }
    print(json.dumps(report))
    sys.stdout.flush()

    assert session_problem is None, session_problem
    print("sessions close after %d failures" % SESSION_MAX)
    assert not owner_failures, "the owner could not log in during the flood: %s" % owner_failures
    for proto, times in owner.items():
        assert len(times) == 3 and max(times) <= OWNER_MAX_S, "owner's %s logins took %s s" % (proto, times)
    assert not [e for e in errors if "unexpected" in e or "not %d" % SESSION_MAX in e or "failures in one" in e or "BYE" in e or "not closed" in e], errors
    assert len(every) >= 300, "the flood made only %d attempts" % len(every)
    # Slowed: a refusal (no hash) for almost every late attempt, on every protocol.
    assert late_refused >= 0.95 * len(late), "late attempts not refused: %d of %d" % (late_refused, len(late))
    for proto in counts:
        assert counts[proto]["refused"] > 0, "%s never refused the attacker: %s" % (proto, counts)
    # What was checked against a hash from the attacking address: the failures allowed
    # per address, plus what was already in flight when the limit was reached (the
    # 2 * SESSION_MAX failures of sessions_close_after_failures are in the counters too).
    hashed = sum(v or 0 for v in report["failures_total"].values()) - 2 * SESSION_MAX
    assert hashed <= IP_MAX_FAILURES + IP_PARALLEL, "the attacker had %d passwords checked" % hashed
    refused = sum(v or 0 for v in report["refused_total"].values())
    assert refused >= late_refused, (refused, late_refused)
    hm = report["hashes_running_max"]
    assert hm is not None and 1 <= hm <= 4, "hashes running at once: %s" % hm
    assert report["rss_peak_mb"] < RSS_MAX_MB, "node RSS peaked at %d MB" % report["rss_peak_mb"]
    print("OK")


if __name__ == "__main__":
    SMTPS_PORT, IMAP_PORT, HTTP_PORT = (int(a) for a in sys.argv[1:4])
    USER, PASSWORD = sys.argv[4], sys.argv[5]
    NODE_PID = int(sys.argv[6])
    OTHER, OTHER_PASSWORD = sys.argv[7], sys.argv[8]
    main()
