#!/usr/bin/env python3
"""Client load for benches/imap.rs and benches/memory.rs: Python's imaplib, as a mail
client or a migration script would use it (no TCP_NODELAY, synchronising literals),
and urllib as a browser on the web site and the webmail.

    load.py append PORT USER PASSWORD COUNT
        appends COUNT generated messages to INBOX one by one from one client;
        prints {"messages": n, "seconds": s}
    load.py read PORT USER PASSWORD CLIENTS SECONDS
        CLIENTS processes loop: SELECT INBOX, FETCH 1:* (FLAGS RFC822.SIZE ENVELOPE),
        20 random BODY.PEEK[]; prints commands, seconds, cycles, cycle p50/p99 (ms)
    load.py mixed PORT USER PASSWORD CLIENTS SECONDS
        CLIENTS processes loop over a session: LOGIN, SELECT, FETCH of the last 20
        (FLAGS ENVELOPE), 3 random BODY.PEEK[], STORE +FLAGS \\Seen on one, APPEND one,
        STORE +FLAGS \\Deleted on it, EXPUNGE, LOGOUT; prints commands and sessions
    load.py logins PORT USER PASSWORD CLIENTS TOTAL
        TOTAL LOGIN/LOGOUT sessions from CLIENTS processes; prints their count
    load.py webmail HTTP_PORT USER PASSWORD CLIENTS SECONDS
        CLIENTS processes loop: GET / (the site), webmail login form, POST login,
        the inbox page, POST logout; prints requests and sessions

Every mode checks the servers' answers (a NO or BAD is an error, not a data point)
and exits non-zero with the reason on stderr. Messages are generated from a fixed
seed: the same bytes for every server.
"""

import http.cookiejar
import imaplib
import json
import multiprocessing
import random
import re
import sys
import time
import urllib.parse
import urllib.request

WORDS = (
    "the cluster mail node replica store message folder network server backup "
    "report invoice meeting quarter budget schedule office printer project draft "
    "review customer update reply thanks regards monday friday please attached"
).split()


def message(i):
    """Message number i: headers like a real client's, a text body of 1-12 KB, every
    fifth a multipart/mixed with a small base64 attachment."""
    rnd = random.Random(i)
    words = lambda n: " ".join(rnd.choice(WORDS) for _ in range(n))
    body_lines = []
    size = rnd.randint(1000, 12000)
    while sum(len(l) + 2 for l in body_lines) < size:
        body_lines.append(words(12))
    body = "\r\n".join(body_lines)
    head = (
        f"From: Sender {i % 37} <sender{i % 37}@example.org>\r\n"
        f"To: Bench User <bench@example.com>\r\n"
        f"Subject: {words(5)} #{i}\r\n"
        f"Date: Mon, 7 Dec 2026 09:{i % 60:02d}:00 +0000\r\n"
        f"Message-ID: <bench.{i}@example.org>\r\n"
        "MIME-Version: 1.0\r\n"
    )
    if i % 5 == 0:
        attachment = "\r\n".join(
            "".join(rnd.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") for _ in range(76))
            for _ in range(40)
        )
        text = (
            head
            + 'Content-Type: multipart/mixed; boundary="b-{0}"\r\n\r\n'
            "--b-{0}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{1}\r\n"
            "--b-{0}\r\nContent-Type: application/octet-stream; name=\"data{0}.bin\"\r\n"
            "Content-Transfer-Encoding: base64\r\n"
            "Content-Disposition: attachment; filename=\"data{0}.bin\"\r\n\r\n{2}\r\n"
            "--b-{0}--\r\n"
        ).format(i, body, attachment)
    else:
        text = head + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body + "\r\n"
    return text.encode()


def fail(what, typ, data):
    raise RuntimeError(f"{what}: {typ} {data!r}"[:500])


def ok(what, result):
    typ, data = result
    if typ != "OK":
        fail(what, typ, data)
    return data


def connect(port, user, password):
    m = imaplib.IMAP4("127.0.0.1", port)
    ok("LOGIN", m.login(user, password))
    return m


def exists(data):
    return int(data[0])


def run_append(port, user, password, count):
    m = connect(port, user, password)
    msgs = [message(i) for i in range(count)]
    start = time.monotonic()
    for i, msg in enumerate(msgs):
        ok("APPEND", m.append("INBOX", None, None, msg))
    seconds = time.monotonic() - start
    m.logout()
    return {"messages": count, "seconds": seconds}


def read_worker(args):
    port, user, password, seconds, seed = args
    rnd = random.Random(seed)
    m = connect(port, user, password)
    commands, cycles = 0, []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        t = time.monotonic()
        n = exists(ok("SELECT", m.select("INBOX", readonly=False)))
        data = ok("FETCH", m.fetch("1:*", "(FLAGS RFC822.SIZE ENVELOPE)"))
        if sum(1 for d in data if d) < n:
            raise RuntimeError(f"FETCH 1:* returned {len(data)} items for {n} messages")
        commands += 2
        for _ in range(20):
            data = ok("FETCH", m.fetch(str(rnd.randint(1, n)), "(BODY.PEEK[])"))
            if not isinstance(data[0], tuple) or len(data[0][1]) < 500:
                raise RuntimeError(f"BODY.PEEK[] answer too short: {data!r}"[:300])
            commands += 1
        cycles.append(time.monotonic() - t)
    m.logout()
    return commands, cycles


def mixed_worker(args):
    port, user, password, seconds, seed = args
    rnd = random.Random(seed)
    commands = sessions = 0
    deadline = time.monotonic() + seconds
    extra = message(100000 + seed)
    uid_re = re.compile(rb"APPENDUID \d+ (\d+)")
    while time.monotonic() < deadline:
        m = imaplib.IMAP4("127.0.0.1", port)
        ok("LOGIN", m.login(user, password))
        n = exists(ok("SELECT", m.select("INBOX")))
        # Other clients' expunges may be reported right after the EXISTS (RFC 3501
        # allows EXPUNGE responses at the end of SELECT).
        n -= len(m.untagged_responses.pop("EXPUNGE", []))
        ok("FETCH", m.fetch(f"{max(1, n - 19)}:*", "(FLAGS ENVELOPE)"))
        for _ in range(3):
            ok("FETCH", m.fetch(str(rnd.randint(1, n)), "(BODY.PEEK[])"))
        ok("STORE", m.store(str(rnd.randint(1, n)), "+FLAGS", "(\\Seen)"))
        typ, data = m.append("INBOX", None, None, extra)
        ok("APPEND", (typ, data))
        found = uid_re.search(data[0] or b"")
        if not found:
            raise RuntimeError(f"APPEND without APPENDUID: {data!r}")
        ok("UID STORE", m.uid("STORE", found.group(1).decode(), "+FLAGS", "(\\Deleted)"))
        ok("EXPUNGE", m.expunge())
        m.logout()
        commands += 10
        sessions += 1
    return commands, sessions


def logins_worker(args):
    port, user, password, count = args
    for _ in range(count):
        m = imaplib.IMAP4("127.0.0.1", port)
        ok("LOGIN", m.login(user, password))
        m.logout()
    return count


def webmail_worker(args):
    port, user, password, seconds, _ = args
    base = f"http://127.0.0.1:{port}"
    csrf_re = re.compile(r'name="csrf" value="([^"]+)"')
    requests = sessions = 0
    deadline = time.monotonic() + seconds

    def get(opener, path):
        with opener.open(base + path, timeout=30) as r:
            if r.status != 200:
                raise RuntimeError(f"GET {path}: HTTP {r.status}")
            return r.read().decode("utf-8", "replace")

    def post(opener, path, form):
        data = urllib.parse.urlencode(form).encode()
        with opener.open(base + path, data=data, timeout=30) as r:
            if r.status != 200:
                raise RuntimeError(f"POST {path}: HTTP {r.status}")
            return r.read().decode("utf-8", "replace")

    while time.monotonic() < deadline:
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        get(opener, "/")
        page = get(opener, "/webmail/login")
        token = csrf_re.search(page)
        if not token:
            raise RuntimeError("no csrf token on the login form")
        inbox = post(opener, "/webmail/login", {"user": user, "password": password, "csrf": token.group(1)})
        token = csrf_re.search(inbox)
        if not token:
            raise RuntimeError("login did not lead to a page with a csrf token: " + inbox[:200])
        get(opener, "/webmail/")
        post(opener, "/webmail/logout", {"csrf": token.group(1)})
        requests += 5
        sessions += 1
    return requests, sessions


def pct(values, p):
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def main():
    mode, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    if mode == "append":
        out = run_append(port, user, password, int(sys.argv[5]))
    elif mode in ("read", "mixed", "webmail"):
        clients, seconds = int(sys.argv[5]), float(sys.argv[6])
        worker = {"read": read_worker, "mixed": mixed_worker, "webmail": webmail_worker}[mode]
        start = time.monotonic()
        with multiprocessing.Pool(clients) as pool:
            results = pool.map(worker, [(port, user, password, seconds, s) for s in range(clients)])
        elapsed = time.monotonic() - start
        commands = sum(r[0] for r in results)
        out = {"commands": commands, "seconds": elapsed}
        if mode == "read":
            cycles = [c for r in results for c in r[1]]
            out.update(cycles=len(cycles), p50_ms=pct(cycles, 0.5) * 1000, p99_ms=pct(cycles, 0.99) * 1000)
        else:
            out["sessions"] = sum(r[1] for r in results)
    elif mode == "logins":
        clients, total = int(sys.argv[5]), int(sys.argv[6])
        with multiprocessing.Pool(clients) as pool:
            done = pool.map(logins_worker, [(port, user, password, total // clients)] * clients)
        out = {"logins": sum(done)}
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(out))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the reason, not a traceback from a pool worker
        print(f"imap_load: {e}", file=sys.stderr)
        sys.exit(1)
