"""Webmail over real HTTP (http.client), SMTP (smtplib) and IMAP (imaplib).

Run by tests/webmail_http.rs: `python3 tests/webmail_http.py SCENARIO ARGS...`.
Each scenario asserts what the webmail contract (/webmail) promises and prints
`OK <scenario>` at the end; any failed assertion exits non-zero with a traceback.
"""

import html
import http.client
import imaplib
import re
import smtplib
import ssl
import sys
import time
import urllib.parse
from email.message import EmailMessage

HOST = "127.0.0.1"


class Resp:
    def __init__(self, r):
        self.status = r.status
        self.headers = r.getheaders()
        self.body = r.read()
        self.text = self.body.decode("utf-8", "replace")

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]


class Browser:
    """A minimal cookie-keeping HTTP client that does not follow redirects."""

    def __init__(self, port, https=False, lang=None):
        self.port = port
        self.https = https
        self.cookies = {}
        self.lang = lang

    def request(self, method, path, fields=None, headers=None, raw_body=None):
        if self.https:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            c = http.client.HTTPSConnection(HOST, self.port, timeout=30, context=ctx)
        else:
            c = http.client.HTTPConnection(HOST, self.port, timeout=30)
        h = dict(headers or {})
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if self.lang:
            h["Accept-Language"] = self.lang
        body = raw_body
        if fields is not None:
            body = urllib.parse.urlencode(fields, doseq=True)
            h["Content-Type"] = "application/x-www-form-urlencoded"
        c.request(method, path, body=body, headers=h)
        r = Resp(c.getresponse())
        c.close()
        for sc in r.all("Set-Cookie"):
            kv = sc.split(";")[0]
            k, _, v = kv.partition("=")
            if "Max-Age=0" in sc or v == "":
                self.cookies.pop(k.strip(), None)
            else:
                self.cookies[k.strip()] = v.strip()
        return r

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, fields, **kw):
        return self.request("POST", path, fields=fields, **kw)

    def login(self, user, password, expect=303):
        form = self.get("/webmail/login")
        assert form.status == 200, form.status
        r = self.post("/webmail/login", {"user": user, "password": password, "csrf": csrf(form.text)})
        assert r.status == expect, (r.status, r.text[:500])
        if expect == 303:
            assert r.header("Location") == "/webmail/", r.header("Location")
        return r

    def csrf(self, path="/webmail/mailbox/INBOX"):
        r = self.get(path)
        assert r.status == 200, (path, r.status)
        return csrf(r.text)


def csrf(page):
    m = re.search(r'name="csrf" value="([^"]*)"', page)
    assert m, "no csrf field in page"
    return html.unescape(m.group(1))


def rows(page):
    """(uid, classes) of every message row of a list page."""
    out = []
    for m in re.finditer(r'<tr class="(msg[^"]*)" data-uid="(\d+)"', page):
        out.append((int(m.group(2)), m.group(1).split()))
    return out


def uids(page):
    return [u for u, _ in rows(page)]


def send_mail(port, to, subject, body="hola", attachment=None, sender="ana@example.org"):
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(body)
    if attachment:
        name, data, maintype, subtype = attachment
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    with smtplib.SMTP(HOST, port, timeout=30) as s:
        s.send_message(msg)


def imap(port, user, pw):
    m = imaplib.IMAP4(HOST, port)
    m.login(user, pw)
    return m


def imap_flags(m, mailbox, uid):
    typ, _ = m.select(mailbox)
    assert typ == "OK", typ
    typ, data = m.uid("FETCH", str(uid), "(FLAGS)")
    assert typ == "OK", (typ, data)
    if not data or data[0] is None:
        return None
    return data[0].decode()


def imap_uids(m, mailbox):
    typ, _ = m.select(mailbox)
    assert typ == "OK", (mailbox, typ)
    typ, data = m.uid("SEARCH", None, "ALL")
    return [int(x) for x in data[0].split()]


# ------------------------------------------------------------------ scenarios


def csrf_required(http_port, user, pw):
    anon = Browser(http_port)
    # Unauthenticated: GET redirects to the login page, POST is refused.
    r = anon.get("/webmail/")
    assert r.status == 303 and r.header("Location") == "/webmail/login", (r.status, r.headers)
    r = anon.get("/webmail/mailbox/INBOX")
    assert r.status == 303 and r.header("Location") == "/webmail/login", r.status
    r = anon.post("/webmail/folders/create", {"name": "x", "csrf": "x"})
    assert r.status == 403, r.status
    # The login form needs its token too.
    anon.get("/webmail/login")
    r = anon.post("/webmail/login", {"user": user, "password": pw})
    assert r.status == 403, r.status
    r = anon.post("/webmail/login", {"user": user, "password": pw, "csrf": "wrong"})
    assert r.status == 403, r.status
    # A token from another browser's pre-login cookie does not work either.
    other = Browser(http_port)
    token = csrf(other.get("/webmail/login").text)
    r = anon.post("/webmail/login", {"user": user, "password": pw, "csrf": token})
    assert r.status == 403, r.status

    b = Browser(http_port)
    b.login(user, pw)
    r = b.get("/webmail/")
    assert r.status == 303 and r.header("Location") == "/webmail/mailbox/INBOX", r.status
    good = b.csrf()
    for path, fields in [
        ("/webmail/folders/create", {"name": "Zanahoria"}),
        ("/webmail/folders/rename", {"from": "Zanahoria", "to": "Otra"}),
        ("/webmail/folders/delete", {"name": "Junk"}),
        ("/webmail/mailbox/INBOX/bulk", {"uid": "1", "action": "delete"}),
        ("/webmail/settings", {"lang": "en"}),
        ("/webmail/logout", {}),
    ]:
        r = b.post(path, fields)
        assert r.status == 403, (path, "no token", r.status)
        r = b.post(path, dict(fields, csrf=good + "x"))
        assert r.status == 403, (path, "wrong token", r.status)
        r = b.post(path, dict(fields, csrf=""))
        assert r.status == 403, (path, "empty token", r.status)
    # Nothing happened: the folder was not created, the session still works.
    r = b.get("/webmail/folders")
    assert r.status == 200 and "Zanahoria" not in r.text
    # With the token it works.
    r = b.post("/webmail/folders/create", {"name": "Zanahoria", "csrf": good})
    assert r.status == 303, r.status
    assert "Zanahoria" in b.get("/webmail/folders").text
    print("OK csrf_required")


def rate_limit(http_port, user, pw, other, other_pw, third, third_pw):
    # Configured ([auth]): 3 failures per account and address, 6 per address, in 300 s.
    b = Browser(http_port)
    for i in range(3):
        r = b.login(user, "wrong%d" % i, expect=401)
        assert "error" in r.text
    r = b.login(user, "wrong-again", expect=429)
    ra = r.header("Retry-After")
    assert ra and 1 <= int(ra) <= 300, ra
    # Even the right password is refused from here while limited (the hash is not
    # checked).
    r = b.login(user, pw, expect=429)
    # Another user from the same address is not affected yet.
    Browser(http_port).login(other, other_pw)
    # Failures for other names fill the address's budget: then whoever has not logged
    # in from here waits...
    for n in range(3):
        Browser(http_port).login("nobody%d" % n, "x", expect=401)
    r = Browser(http_port).login(third, third_pw, expect=429)
    assert r.header("Retry-After"), r.headers
    # ...but an account that logged in from this address recently is not locked out
    # by what others did from it.
    Browser(http_port).login(other, other_pw)
    print("OK rate_limit")


def logout_ends_session(http_port, https_port, user, pw):
    b = Browser(http_port)
    b.get("/webmail/login")
    pre = dict(b.cookies)
    b.login(user, pw)
    sid = b.cookies["clusterd_session"]
    assert len(sid) >= 43, sid
    r = b.get("/webmail/mailbox/INBOX")
    assert r.status == 200, r.status
    token = csrf(r.text)
    # A second login gets a different session id.
    b2 = Browser(http_port)
    b2.login(user, pw)
    assert b2.cookies["clusterd_session"] != sid
    # Logout: redirect to the login page and the cookie is cleared...
    r = b.post("/webmail/logout", {"csrf": token})
    assert r.status == 303 and r.header("Location") == "/webmail/login", r.status
    sc = " ".join(r.all("Set-Cookie"))
    assert "clusterd_session=;" in sc and "Max-Age=0" in sc, sc
    # ...and the old cookie no longer works anywhere (server-side removal).
    stale = Browser(http_port)
    stale.cookies = {"clusterd_session": sid}
    r = stale.get("/webmail/mailbox/INBOX")
    assert r.status == 303 and r.header("Location") == "/webmail/login", r.status
    r = stale.post("/webmail/folders/create", {"name": "X", "csrf": token})
    assert r.status == 403, r.status
    # The other session is unaffected.
    assert b2.get("/webmail/mailbox/INBOX").status == 200
    print("OK logout_ends_session")


def cookie_attributes(http_port, https_port, user, pw):
    for port, https in [(http_port, False), (https_port, True)]:
        b = Browser(port, https=https)
        form = b.get("/webmail/login")
        assert form.status == 200, form.status
        r = b.post("/webmail/login", {"user": user, "password": pw, "csrf": csrf(form.text)})
        assert r.status == 303, r.status
        sc = [c for c in r.all("Set-Cookie") if c.startswith("clusterd_session=")]
        assert len(sc) == 1, r.all("Set-Cookie")
        attrs = [a.strip() for a in sc[0].split(";")]
        assert "HttpOnly" in attrs, attrs
        assert "SameSite=Lax" in attrs, attrs
        assert "Path=/webmail" in attrs, attrs
        assert ("Secure" in attrs) == https, (https, attrs)
        page = b.get("/webmail/mailbox/INBOX")
        assert page.status == 200
        csp = page.header("Content-Security-Policy")
        assert csp and "default-src 'self'" in csp and "frame-ancestors 'self'" in csp, csp
    print("OK cookie_attributes")


def imap_and_webmail_agree(http_port, smtp_port, imap_port, user, pw):
    addr = user + "@cluster.com.ec"
    for i in range(1, 9):
        send_mail(smtp_port, addr, "mensaje %d" % i, body="cuerpo %d" % i)
    b = Browser(http_port)
    b.login(user, pw)
    page = b.get("/webmail/mailbox/INBOX").text
    assert sorted(uids(page)) == list(range(1, 9)), uids(page)
    assert all("unread" in c for _, c in rows(page)), rows(page)

    # --- IMAP changes show in the webmail on reload.
    m = imap(imap_port, user, pw)
    m.select("INBOX")
    assert m.uid("STORE", "1", "+FLAGS", r"(\Flagged)")[0] == "OK"
    assert m.uid("STORE", "4", "+FLAGS", r"(\Seen)")[0] == "OK"
    assert m.create("Archivo")[0] == "OK"
    typ, data = m.uid("MOVE", "2", "Archivo")
    assert typ == "OK", (typ, data)
    assert m.uid("STORE", "3", "+FLAGS", r"(\Deleted)")[0] == "OK"
    assert m.expunge()[0] == "OK"
    page = b.get("/webmail/mailbox/INBOX").text
    r = dict(rows(page))
    assert sorted(r) == [1, 4, 5, 6, 7, 8], sorted(r)
    assert "flagged" in r[1], r[1]
    assert "unread" not in r[4], r[4]
    assert "unread" in r[5], r[5]
    arch = b.get("/webmail/mailbox/Archivo")
    assert arch.status == 200 and uids(arch.text) == [1], uids(arch.text)
    assert "mensaje 2" in arch.text
    # The nav shows the new folder with its unread count.
    assert 'data-mailbox="Archivo"' in page, "folder nav"

    # --- Webmail changes show over IMAP.
    token = csrf(page)
    bulk = "/webmail/mailbox/INBOX/bulk"
    r = b.post(bulk, {"csrf": token, "uid": ["5", "6"], "action": "read"})
    assert r.status == 303, r.status
    assert r"\Seen" in imap_flags(m, "INBOX", 5) and r"\Seen" in imap_flags(m, "INBOX", 6)
    r = b.post(bulk, {"csrf": token, "uid": "6", "action": "unread"})
    assert r"\Seen" not in imap_flags(m, "INBOX", 6)
    r = b.post(bulk, {"csrf": token, "uid": "6", "action": "flag"})
    assert r"\Flagged" in imap_flags(m, "INBOX", 6)
    r = b.post(bulk, {"csrf": token, "uid": "1", "action": "unflag"})
    assert r"\Flagged" not in imap_flags(m, "INBOX", 1)
    r = b.post("/webmail/folders/create", {"csrf": token, "name": "Proyectos"})
    assert r.status == 303, r.status
    r = b.post(bulk, {"csrf": token, "uid": "5", "action": "move", "target": "Proyectos"})
    assert r.status == 303, (r.status, r.text[:300])
    assert imap_uids(m, "Proyectos") == [1]
    assert 5 not in imap_uids(m, "INBOX")
    typ, data = m.uid("FETCH", "1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    m.select("Proyectos")
    typ, data = m.uid("FETCH", "1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"mensaje 5" in data[0][1], data
    # Delete moves to Trash; deleting in Trash expunges.
    r = b.post(bulk, {"csrf": token, "uid": "7", "action": "delete"})
    assert r.status == 303, r.status
    assert 7 not in imap_uids(m, "INBOX")
    trash = imap_uids(m, "Trash")
    assert len(trash) == 1, trash
    r = b.post("/webmail/mailbox/Trash/bulk", {"csrf": token, "uid": str(trash[0]), "action": "delete"})
    assert r.status == 303, r.status
    assert imap_uids(m, "Trash") == []
    # Opening a message marks it \Seen.
    assert r"\Seen" not in imap_flags(m, "INBOX", 8)
    r = b.get("/webmail/mailbox/INBOX/8")
    assert r.status == 200 and "mensaje 8" in r.text and "cuerpo 8" in r.text
    assert r"\Seen" in imap_flags(m, "INBOX", 8)
    # Folder rename and delete show over IMAP.
    r = b.post("/webmail/folders/rename", {"csrf": token, "from": "Proyectos", "to": "Proyectos 2025"})
    assert r.status == 303, r.status
    typ, boxes = m.list()
    names = b" ".join(boxes)
    assert b"Proyectos 2025" in names and b'"Proyectos"' not in names, names
    r = b.post("/webmail/folders/delete", {"csrf": token, "name": "Archivo"})
    assert r.status == 303, r.status
    typ, boxes = m.list()
    assert b"Archivo" not in b" ".join(boxes), boxes
    # The IMAP session sees the webmail's move of its selected mailbox.
    m.logout()
    print("OK imap_and_webmail_agree")


def reading(http_port, smtp_port, user, pw):
    addr = user + "@cluster.com.ec"
    pdf = b"%PDF-1.4 fake pdf \x00\x01\x02 bytes" * 20
    send_mail(smtp_port, addr, "Informe <mensual> & más", body="Vea https://example.org/x?a=1&b=2 por favor.\n<script>alert(1)</script>",
              attachment=("informe año.pdf", pdf, "application", "pdf"))
    b = Browser(http_port)
    b.login(user, pw)
    page = b.get("/webmail/mailbox/INBOX").text
    assert uids(page) == [1]
    i = page.find("mensual")
    assert "<mensual>" not in page and "Informe <mensual> & más" in html.unescape(page), page[i - 300:i + 300]
    assert 'class="att"' in page, "attachment mark"
    r = b.get("/webmail/mailbox/INBOX/1")
    assert r.status == 200
    t = r.text
    assert "ana@example.org" in t
    assert '<a href="https://example.org/x?a=1&amp;b=2" target="_blank" rel="noopener noreferrer">' in t, t
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in t and "<script>alert" not in t
    m = re.search(r'href="(/webmail/mailbox/INBOX/1/part/\d+)"', t)
    assert m, "attachment link"
    assert "informe año.pdf" in t
    part = b.get(m.group(1))
    assert part.status == 200, part.status
    assert part.body == pdf, len(part.body)
    cd = part.header("Content-Disposition")
    assert cd.startswith("attachment;") and "filename*=UTF-8''informe%20a%C3%B1o.pdf" in cd, cd
    assert part.header("X-Content-Type-Options") == "nosniff"
    raw = b.get("/webmail/mailbox/INBOX/1/raw")
    assert raw.status == 200 and raw.header("Content-Type").startswith("text/plain")
    assert "Subject: " in raw.text and "From: ana@example.org" in raw.text
    body = b.get("/webmail/mailbox/INBOX/1/body")
    assert body.status == 200
    assert "default-src 'none'" in (body.header("Content-Security-Policy") or ""), body.headers
    # Unknown message and part: 404, not a crash.
    assert b.get("/webmail/mailbox/INBOX/99").status == 404
    assert b.get("/webmail/mailbox/INBOX/abc").status == 404
    assert b.get("/webmail/mailbox/INBOX/1/part/999").status == 404
    assert b.get("/webmail/mailbox/NoSuch").status == 404
    # The poll endpoint.
    st = b.get("/webmail/mailbox/INBOX/poll?uidnext=1")
    assert st.status == 200 and '"new":true' in st.text.replace(" ", ""), st.text
    st = b.get("/webmail/mailbox/INBOX/poll?uidnext=2")
    assert '"new":false' in st.text.replace(" ", ""), st.text
    assert '"exists":1' in st.text.replace(" ", ""), st.text
    print("OK reading")


def list_pages_sort_search(http_port, smtp_port, user, pw):
    addr = user + "@cluster.com.ec"
    for i in range(1, 61):
        send_mail(smtp_port, addr, "asunto %02d %s" % (i, "especial" if i % 20 == 0 else "normal"),
                  body="texto %d %s" % (i, "aguacate" if i == 7 else ""), sender="remitente%02d@example.org" % (61 - i))
    b = Browser(http_port)
    b.login(user, pw)
    p1 = b.get("/webmail/mailbox/INBOX").text
    assert len(uids(p1)) == 50, len(uids(p1))
    # Default: newest first (same Date second: UID breaks ties, descending).
    assert uids(p1)[0] == 60 and uids(p1)[-1] == 11, uids(p1)
    p2 = b.get("/webmail/mailbox/INBOX?page=2").text
    assert uids(p2) == list(range(10, 0, -1)), uids(p2)
    assert b.get("/webmail/mailbox/INBOX?page=999").status == 200
    assert b.get("/webmail/mailbox/INBOX?page=abc&sort=zzz&order=x").status == 200
    s = b.get("/webmail/mailbox/INBOX?sort=subject&order=asc").text
    assert uids(s)[:3] == [1, 2, 3], uids(s)[:3]
    s = b.get("/webmail/mailbox/INBOX?sort=from&order=asc").text
    assert uids(s)[:2] == [60, 59], uids(s)[:2]
    # Search within the folder.
    q = b.get("/webmail/mailbox/INBOX?q=especial&field=subject").text
    assert sorted(uids(q)) == [20, 40, 60], uids(q)
    q = b.get("/webmail/mailbox/INBOX?q=aguacate&field=body").text
    assert uids(q) == [7], uids(q)
    q = b.get("/webmail/mailbox/INBOX?q=remitente03&field=from").text
    assert uids(q) == [58], uids(q)
    q = b.get("/webmail/mailbox/INBOX?q=aguacate&field=subject").text
    assert uids(q) == [], uids(q)
    q = b.get("/webmail/mailbox/INBOX?q=" + urllib.parse.quote(user) + "&field=to").text
    assert len(uids(q)) == 50, len(uids(q))
    print("OK list_pages_sort_search")


def languages(http_port, user, pw):
    es = Browser(http_port)
    assert "Iniciar sesión" in es.get("/webmail/login").text
    en = Browser(http_port, lang="en-US,en;q=0.9")
    t = en.get("/webmail/login").text
    assert "Sign in" in t and '<html lang="en">' in t
    fr = Browser(http_port, lang="fr")
    assert '<html lang="es">' in fr.get("/webmail/login").text
    # A stored preference overrides Accept-Language, and survives a new login.
    b = Browser(http_port, lang="en")
    b.login(user, pw)
    assert "Inbox" in b.get("/webmail/mailbox/INBOX").text
    token = b.csrf()
    r = b.post("/webmail/settings", {"csrf": token, "lang": "es"})
    assert r.status == 303, r.status
    assert "Bandeja de entrada" in b.get("/webmail/mailbox/INBOX").text
    b2 = Browser(http_port, lang="en")
    b2.login(user, pw)
    assert "Bandeja de entrada" in b2.get("/webmail/mailbox/INBOX").text
    r = b2.post("/webmail/settings", {"csrf": b2.csrf(), "lang": "xx"})
    assert r.status == 400, r.status
    print("OK languages")


def static_assets(http_port):
    b = Browser(http_port)
    r = b.get("/webmail/static/style.css")
    assert r.status == 200 and r.header("Content-Type").startswith("text/css") and "@media" in r.text
    r = b.get("/webmail/static/app.js")
    assert r.status == 200 and "javascript" in r.header("Content-Type") and "poll" in r.text
    print("OK static_assets")


if __name__ == "__main__":
    name = sys.argv[1]
    args = [int(a) if a.isdigit() else a for a in sys.argv[2:]]
    globals()[name](*args)
