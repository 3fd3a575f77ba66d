"""Drives the webmail's sending side over real HTTP (urllib) and checks the result
over real IMAP (imaplib). Run by tests/webmail_compose.rs:

    python3 webmail_compose.py SCENARIO HTTP_PORT IMAP_PORT

Each scenario raises (non-zero exit) on the first failed check and prints what it
saw. Users ana/pw-ana, luis/pw-luis and pepe/pw-pepe exist."""

import email
import email.policy
import html
import imaplib
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.cookiejar import CookieJar

SCENARIO, HTTP_PORT, IMAP_PORT = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
# Where screenshots go (test artifacts).
ARTIFACTS = sys.argv[4] if len(sys.argv) > 4 else None
BASE = "http://127.0.0.1:%d" % HTTP_PORT


def check(cond, what, extra=""):
    if not cond:
        raise AssertionError("%s\n%s" % (what, extra))


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


class Web:
    """A browser-like client: cookies, no automatic redirects."""

    def __init__(self):
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), NoRedirect
        )

    def request(self, method, path, body=None, ctype=None):
        req = urllib.request.Request(BASE + path, data=body, method=method)
        if ctype:
            req.add_header("Content-Type", ctype)
        try:
            r = self.opener.open(req, timeout=30)
            return r.status, r.headers, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode("utf-8", "replace")

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, fields):
        body = urllib.parse.urlencode(fields).encode()
        return self.request("POST", path, body, "application/x-www-form-urlencoded")

    def post_multipart(self, path, fields, files=()):
        boundary = "----b" + uuid.uuid4().hex
        out = []
        for k, v in fields:
            out.append(("--%s\r\n" % boundary).encode())
            out.append(('Content-Disposition: form-data; name="%s"\r\n\r\n' % k).encode())
            out.append(v.encode("utf-8") + b"\r\n")
        for k, name, ctype, data in files:
            out.append(("--%s\r\n" % boundary).encode())
            out.append(
                ('Content-Disposition: form-data; name="%s"; filename="%s"\r\n' % (k, name)).encode("utf-8")
            )
            out.append(("Content-Type: %s\r\n\r\n" % ctype).encode())
            out.append(data + b"\r\n")
        out.append(("--%s--\r\n" % boundary).encode())
        return self.request(
            "POST", path, b"".join(out), "multipart/form-data; boundary=%s" % boundary
        )

    def login(self, user, pw):
        st, _, body = self.get("/webmail/login")
        check(st == 200, "login form", body)
        token = csrf_of(body)
        st, h, body = self.post(
            "/webmail/login", [("user", user), ("password", pw), ("csrf", token)]
        )
        check(st == 303, "login %s -> %s" % (user, st), body)
        return self


def csrf_of(page):
    m = re.search(r'name="csrf" value="([^"]*)"', page)
    check(m is not None, "no csrf field", page[:2000])
    return html.unescape(m.group(1))


def form_fields(page):
    """The compose form's values: inputs (text/hidden), the textarea, checked keeps."""
    f = {}
    for m in re.finditer(r"<input([^>]*)>", page):
        attrs = dict(
            (k, html.unescape(v)) for k, v in re.findall(r'(\w[\w-]*)="([^"]*)"', m.group(1))
        )
        if attrs.get("type") in ("text", "hidden", "email") and "name" in attrs:
            f[attrs["name"]] = attrs.get("value", "")
    m = re.search(r'<textarea id="body" name="body"[^>]*>(.*?)</textarea>', page, re.S)
    check(m is not None, "no body textarea", page[:3000])
    f["body"] = html.unescape(m.group(1))
    f["keep"] = re.findall(r'name="keep" value="(\d+)" checked', page)
    return f


def compose_post(web, fields, files=(), action="send"):
    """Posts the compose form with `fields` (dict; `keep` a list) as a browser would."""
    items = []
    for k in ("csrf", "draft", "origin", "in_reply_to", "references", "attsrc",
              "to", "cc", "bcc", "subject", "body"):
        if k in fields:
            items.append((k, fields[k]))
    for k in fields.get("keep", []):
        items.append(("keep", k))
    items.append(("action", action))
    return web.post_multipart("/webmail/compose", items, files)


def new_form(web, query=""):
    st, _, page = web.get("/webmail/compose" + query)
    check(st == 200, "compose page %s -> %s" % (query, st), page[:3000])
    return form_fields(page), page


# ------------------------------------------------------------------ IMAP


def imap(user, pw):
    m = imaplib.IMAP4("127.0.0.1", IMAP_PORT)
    m.login(user, pw)
    return m


def fetch_all(user, pw, box="INBOX"):
    """[(uid, flags, email.message.EmailMessage)] of a mailbox."""
    m = imap(user, pw)
    typ, _ = m.select('"%s"' % box)
    check(typ == "OK", "select %s" % box)
    typ, data = m.uid("SEARCH", None, "ALL")
    out = []
    for uid in data[0].split():
        typ, d = m.uid("FETCH", uid, "(FLAGS BODY.PEEK[])")
        raw = None
        meta = b""
        for part in d:
            if isinstance(part, tuple):
                meta, raw = part[0], part[1]
        flags = re.search(rb"FLAGS \(([^)]*)\)", meta or b"")
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        out.append((int(uid), flags.group(1).decode() if flags else "", msg, raw))
    m.logout()
    return out


def flags_of(user, pw, box, uid):
    m = imap(user, pw)
    m.select('"%s"' % box)
    typ, d = m.uid("FETCH", str(uid), "(FLAGS)")
    m.logout()
    return d[0].decode() if d and d[0] else ""


def attachments(msg):
    return [
        (p.get_filename(), p.get_payload(decode=True))
        for p in msg.walk()
        if p.get_content_disposition() == "attachment"
    ]


def by_subject(msgs, subject):
    found = [x for x in msgs if str(x[2]["Subject"]) == subject]
    check(found, "no message with subject %r" % subject, [str(x[2]["Subject"]) for x in msgs])
    return found[-1]


# ------------------------------------------------------------------ scenarios


def scenario_mail():
    ana = Web().login("ana", "pw-ana")
    f, page = new_form(ana)
    check('enctype="multipart/form-data"' in page, "multipart form", page[:2000])
    check('src="/webmail/static/contacts.js"' in page, "autocomplete script linked")
    st, h, js = ana.get("/webmail/static/contacts.js")
    check(st == 200 and "javascript" in h["Content-Type"] and "data-suggest" in js, "script served")

    blob = os.urandom(150_000)
    text_att = "línea ñ\r\n".encode("utf-8") * 100
    subject = "Hola ñandú ✓ prueba"
    f.update(
        to="Luis <luis@cluster.com.ec>",
        cc="amigo@example.org",
        bcc="pepe@cluster.com.ec",
        subject=subject,
        body="Hola Luis,\nte envío los datos.\n\nAna",
    )
    st, h, body = compose_post(
        ana,
        f,
        [
            ("attachment", "datos.bin", "application/octet-stream", blob),
            ("attachment", "notas ñ.txt", "text/plain", text_att),
        ],
    )
    check(st == 303 and h["Location"] == "/webmail/mailbox/INBOX?msg=sent_ok", "send -> %s %s" % (st, h.get("Location")), body[:3000])

    # Luis (To) and Pepe (Bcc) got it; nobody sees the Bcc.
    for user, pw in (("luis", "pw-luis"), ("pepe", "pw-pepe")):
        uid, flags, msg, raw = by_subject(fetch_all(user, pw), subject)
        check(b"Bcc" not in raw.split(b"\r\n\r\n")[0], "no Bcc header for %s" % user, raw[:2000])
        check(raw.startswith(b"Received: from ["), "trace header first", raw[:500])
        check("ana@cluster.com.ec" in str(msg["From"]), "From", msg["From"])
        check(str(msg["Message-ID"]).endswith("@clusternodo1.cluster.com.ec>"), "Message-ID host", msg["Message-ID"])
        check(msg["Date"] is not None, "Date header")
        # Exactly one of each: the submission completion adds nothing to what the
        # builder wrote.
        check(len(msg.get_all("Message-ID")) == 1 and len(msg.get_all("Date")) == 1, "one Message-ID and one Date", raw[:1500])
        check("te envío los datos." in msg.get_body(("plain",)).get_content(), "body text")
        att = attachments(msg)
        check(att == [("datos.bin", blob), ("notas ñ.txt", text_att)], "attachments intact for %s" % user, [(n, len(d)) for n, d in att])
    # The Sent copy: seen, no Bcc, no trace header.
    uid, flags, msg, raw = by_subject(fetch_all("ana", "pw-ana", "Sent"), subject)
    check("\\Seen" in flags, "Sent copy is \\Seen", flags)
    head = raw.split(b"\r\n\r\n")[0]
    check(b"Bcc" not in head and b"Received:" not in head, "Sent copy headers", head)
    check(len(attachments(msg)) == 2, "Sent copy keeps attachments")
    orig_id = str(msg["Message-ID"]).strip("<>")

    # Reply (Luis): To = Ana, Re: once, quoted text, threading headers.
    luis = Web().login("luis", "pw-luis")
    luid = by_subject(fetch_all("luis", "pw-luis"), subject)[0]
    f, page = new_form(luis, "?reply=INBOX/%d" % luid)
    check("ana@cluster.com.ec" in f["to"] and f["cc"] == "", "reply To", f)
    check(f["subject"] == "Re: " + subject, "reply subject", f["subject"])
    check(f["in_reply_to"] == orig_id and orig_id in f["references"], "reply ids", f)
    check("escribió:" in f["body"] and "> Hola Luis," in f["body"], "quoted body", f["body"])
    f["body"] = "Gracias Ana.\n" + f["body"]
    st, h, body = compose_post(luis, f)
    check(st == 303, "reply send -> %s" % st, body[:3000])
    uid, flags, msg, raw = by_subject(fetch_all("ana", "pw-ana"), "Re: " + subject)
    check(str(msg["In-Reply-To"]) == "<%s>" % orig_id, "In-Reply-To", msg["In-Reply-To"])
    check("<%s>" % orig_id in str(msg["References"]), "References", msg["References"])
    check("> Hola Luis," in msg.get_body(("plain",)).get_content(), "quote arrives")
    check("\\Answered" in flags_of("luis", "pw-luis", "INBOX", luid), "original \\Answered")
    # Replying to the reply does not double the prefix.
    auid = uid
    f, _ = new_form(ana, "?reply=INBOX/%d" % auid)
    check(f["subject"] == "Re: " + subject, "no Re: Re:", f["subject"])

    # Reply-all: Ana in To, the Cc kept, Luis himself and the Bcc left out.
    f, _ = new_form(luis, "?replyall=INBOX/%d" % luid)
    check("ana@cluster.com.ec" in f["to"] and "amigo@example.org" in f["cc"], "reply-all", f)
    check("luis@" not in f["to"] + f["cc"] and "pepe@" not in f["to"] + f["cc"], "reply-all without self/bcc", f)

    # Forward with the original attachments and one more.
    f, page = new_form(luis, "?forward=INBOX/%d" % luid)
    check(f["subject"] == "Fwd: " + subject, "forward subject", f["subject"])
    check(f["keep"] == ["0", "1"] and "datos.bin" in page, "original attachments offered", f["keep"])
    check("Mensaje reenviado" in f["body"] and "te envío los datos." in f["body"], "forwarded block", f["body"])
    extra = os.urandom(5000)
    f["to"] = "pepe@cluster.com.ec"
    st, h, body = compose_post(luis, f, [("attachment", "extra.dat", "application/x-thing", extra)])
    check(st == 303, "forward send -> %s" % st, body[:3000])
    uid, flags, msg, raw = by_subject(fetch_all("pepe", "pw-pepe"), "Fwd: " + subject)
    att = attachments(msg)
    check(att == [("datos.bin", blob), ("notas ñ.txt", text_att), ("extra.dat", extra)], "forwarded attachments", [(n, len(d)) for n, d in att])
    check("$Forwarded" in flags_of("luis", "pw-luis", "INBOX", luid), "original $Forwarded")

    # Drafts: save, resume (fields and attachment kept), save again (replaces), send.
    f, _ = new_form(ana)
    dblob = os.urandom(3000)
    f.update(to="luis@cluster.com.ec", bcc="pepe@cluster.com.ec", subject="Borrador ñ", body="primera versión")
    st, h, body = compose_post(ana, f, [("attachment", "borrador.bin", "application/octet-stream", dblob)], action="save")
    loc = h.get("Location", "")
    check(st == 303 and re.match(r"^/webmail/compose\?draft=\d+&msg=draft_saved$", loc), "save -> %s %s" % (st, loc), body[:3000])
    drafts = fetch_all("ana", "pw-ana", "Drafts")
    check(len(drafts) == 1 and "\\Draft" in drafts[0][1], "one draft", [(d[0], d[1]) for d in drafts])
    f, page = new_form(ana, loc[len("/webmail/compose"):])
    check("Borrador guardado" in page, "saved notice")
    check(f["subject"] == "Borrador ñ" and f["body"].strip() == "primera versión", "draft resumed", f)
    check(f["to"] == "luis@cluster.com.ec" and f["bcc"] == "pepe@cluster.com.ec", "draft recipients", f)
    check(f["keep"] == ["0"] and "borrador.bin" in page, "draft attachment kept", f["keep"])
    # A half-typed address survives a save as typed.
    f["body"] = "segunda versión"
    f["cc"] = "pep"
    st, h, body = compose_post(ana, f, action="save")
    check(st == 303, "save with a half-typed address -> %s" % st, body[:3000])
    f, _ = new_form(ana, h["Location"][len("/webmail/compose"):])
    check(f["cc"] == "pep" and f["to"] == "luis@cluster.com.ec", "half-typed field kept", f)
    f["cc"] = ""
    st, h, body = compose_post(ana, f, action="save")
    loc2 = h.get("Location", "")
    check(st == 303 and loc2 != loc, "second save -> %s" % loc2)
    drafts = fetch_all("ana", "pw-ana", "Drafts")
    check(len(drafts) == 1 and drafts[0][0] == int(re.search(r"draft=(\d+)", loc2).group(1)), "draft replaced", [(d[0], d[1]) for d in drafts])
    f, _ = new_form(ana, loc2[len("/webmail/compose"):])
    check(f["body"].strip() == "segunda versión", "second version resumed", f["body"])
    st, h, body = compose_post(ana, f)
    check(st == 303 and "sent_ok" in h.get("Location", ""), "draft send -> %s" % st, body[:3000])
    check(fetch_all("ana", "pw-ana", "Drafts") == [], "draft removed after send")
    uid, flags, msg, raw = by_subject(fetch_all("luis", "pw-luis"), "Borrador ñ")
    check(attachments(msg) == [("borrador.bin", dblob)], "draft attachment delivered")
    check("segunda versión" in msg.get_body(("plain",)).get_content(), "latest text delivered")
    check(b"X-Clusterd-Origin" not in raw, "private header not sent")
    by_subject(fetch_all("pepe", "pw-pepe"), "Borrador ñ")  # the draft's Bcc
    print("mail scenario ok")


def scenario_errors():
    ana = Web().login("ana", "pw-ana")
    f, _ = new_form(ana)
    before = len(fetch_all("luis", "pw-luis"))
    # An unknown local recipient: error on the form, nothing delivered or queued.
    f.update(to="luis@cluster.com.ec, nadie@cluster.com.ec", cc="amigo@example.invalid", subject="no debe llegar", body="x")
    st, _, page = compose_post(ana, f)
    check(st == 400 and "nadie@cluster.com.ec" in page and 'id="compose-error"' in page, "unknown recipient -> %s" % st, page[:3000])
    g = form_fields(page)
    check(g["subject"] == "no debe llegar" and "nadie@" in g["to"], "form keeps what was typed", g)
    # Bad syntax.
    f.update(to="esto no es una dirección")
    st, _, page = compose_post(ana, f)
    check(st == 400 and "Dirección no válida" in page, "invalid address -> %s" % st, page[:3000])
    # No recipient at all.
    f.update(to="", cc="", bcc="")
    st, _, page = compose_post(ana, f)
    check(st == 400 and "destinatario" in page, "no recipients -> %s" % st, page[:3000])
    # CSRF: missing, wrong, and a non-multipart body: 403, nothing sent.
    f.update(to="luis@cluster.com.ec", subject="no debe llegar")
    g = dict(f)
    del g["csrf"]
    st, _, _ = compose_post(ana, g)
    check(st == 403, "missing csrf -> %s" % st)
    g["csrf"] = "wrong" + f["csrf"]
    st, _, _ = compose_post(ana, g)
    check(st == 403, "wrong csrf -> %s" % st)
    st, _, _ = ana.post("/webmail/compose", [("to", "luis@cluster.com.ec"), ("action", "send")])
    check(st == 403, "urlencoded without csrf -> %s" % st)
    # Not signed in: GET redirects to the login page, POST is refused.
    anon = Web()
    st, h, _ = anon.get("/webmail/compose")
    check(st == 303 and h["Location"].endswith("/webmail/login"), "anonymous GET -> %s" % st)
    st, _, _ = compose_post(anon, {"csrf": f["csrf"], "to": "luis@cluster.com.ec"})
    check(st == 403, "anonymous POST -> %s" % st)
    # Over the size limit (smtp.max_message_bytes = 200000 in this test).
    st, _, page = compose_post(ana, f, [("attachment", "big.bin", "application/octet-stream", os.urandom(300_000))])
    check(st == 413 and "demasiado grande" in page, "oversize upload -> %s" % st, page[:3000])
    # Under the upload budget but over the limit once encoded (base64 grows by 4/3).
    st, _, page = compose_post(ana, f, [("attachment", "big.bin", "application/octet-stream", os.urandom(180_000))])
    check(st == 413 and "demasiado grande" in page, "oversize message -> %s" % st, page[:3000])
    # A message of someone else's is not reachable (no such UID for ana).
    st, _, _ = ana.get("/webmail/compose?reply=INBOX/999")
    check(st == 404, "reply to a missing message -> %s" % st)
    check(len(fetch_all("luis", "pw-luis")) == before, "nothing was delivered")
    check(fetch_all("ana", "pw-ana", "Sent") == [], "nothing in Sent")
    # The language follows the session's preference: English strings on the form.
    st, _, page = ana.post("/webmail/settings", [("csrf", f["csrf"]), ("lang", "en")])
    check(st in (200, 303), "settings -> %s" % st, page[:2000])
    f.update(to="nadie@cluster.com.ec")
    st, _, page = compose_post(ana, f)
    check(st == 400 and "Unknown recipient" in page, "English error", page[:3000])
    print("errors scenario ok")


def suggest(web, q):
    st, h, body = web.get("/webmail/contacts/suggest?q=" + urllib.parse.quote(q))
    check(st == 200 and h["Content-Type"].startswith("application/json"), "suggest -> %s" % st, body)
    return json.loads(body)


def scenario_contacts():
    ana = Web().login("ana", "pw-ana")
    st, _, page = ana.get("/webmail/contacts")
    check(st == 200 and "vacía" in page, "empty book", page[:3000])
    token = csrf_of(page)
    st, h, _ = ana.post("/webmail/contacts/add", [("csrf", token), ("name", "Zoe Quintana"), ("email", "zoe@example.invalid"), ("note", "amiga")])
    check(st == 303 and h["Location"] == "/webmail/contacts?msg=contact_added", "add -> %s" % st)
    st, _, page = ana.get("/webmail/contacts?msg=contact_added")
    check("Zoe Quintana" in page and "zoe@example.invalid" in page and "Contacto añadido" in page, "listed", page[:4000])
    ids = re.findall(r'class="contact" data-id="([0-9a-f]+)"', page)
    check(len(ids) == 1, "one contact row", page[:4000])
    # Bad input and a missing token.
    st, _, page = ana.post("/webmail/contacts/add", [("csrf", token), ("name", "x"), ("email", "no es correo")])
    check(st == 400 and "no válida" in page, "invalid email -> %s" % st, page[:3000])
    st, _, _ = ana.post("/webmail/contacts/add", [("name", "x"), ("email", "x@example.invalid")])
    check(st == 403, "add without csrf -> %s" % st)
    # Edit.
    st, _, page = ana.get("/webmail/contacts?edit=" + ids[0])
    check(st == 200 and 'action="/webmail/contacts/edit"' in page and "Zoe Quintana" in page, "edit form", page[:3000])
    st, h, _ = ana.post("/webmail/contacts/edit", [("csrf", token), ("id", ids[0]), ("name", "Zoe Q."), ("email", "zoe2@example.invalid"), ("note", "")])
    check(st == 303, "edit -> %s" % st)
    st, _, page = ana.get("/webmail/contacts")
    check("Zoe Q." in page and "zoe2@example.invalid" in page and "zoe@example.invalid" not in page, "edited", page[:3000])
    # Suggestions: the book first, then sent-to, then local accounts; at most 10.
    check(suggest(ana, "zoe") == [{"name": "Zoe Q.", "email": "zoe2@example.invalid"}], "suggest zoe")
    ana.post("/webmail/contacts/add", [("csrf", token), ("name", "Luisa Mora"), ("email", "luisa@example.invalid")])
    f, _ = new_form(ana)
    f.update(to="lucas@example.invalid", subject="hola", body="x")
    st, _, _ = compose_post(ana, f)
    check(st == 303, "send to lucas")
    got = [s["email"] for s in suggest(ana, "lu")]
    check(got[:3] == ["luisa@example.invalid", "lucas@example.invalid", "luis@cluster.com.ec"], "suggest order", got)
    check(suggest(ana, "") == [], "empty query")
    for i in range(12):
        ana.post("/webmail/contacts/add", [("csrf", token), ("name", "Prueba %02d" % i), ("email", "p%02d@example.invalid" % i)])
    check(len(suggest(ana, "prueba")) == 10, "at most 10")
    # Another user sees none of it and cannot touch it.
    luis = Web().login("luis", "pw-luis")
    check(suggest(luis, "zoe") == [], "books are private")
    st, _, lpage = luis.get("/webmail/contacts")
    ltoken = csrf_of(lpage)
    st, _, _ = luis.post("/webmail/contacts/delete", [("csrf", ltoken), ("id", ids[0])])
    check(st == 404, "foreign delete -> %s" % st)
    st, _, _ = luis.get("/webmail/contacts?edit=" + ids[0])
    check(st == 404, "foreign edit form -> %s" % st)
    # Delete.
    st, h, _ = ana.post("/webmail/contacts/delete", [("csrf", token), ("id", ids[0])])
    check(st == 303 and "contact_deleted" in h["Location"], "delete -> %s" % st)
    st, _, page = ana.get("/webmail/contacts")
    check("zoe2@example.invalid" not in page, "deleted", page[:3000])
    check(suggest(ana, "zoe") == [], "deleted contact no longer suggested")
    # The compose link of a contact fills the To field.
    m = re.search(r'href="(/webmail/compose\?to=[^"]+)"', page)
    check(m is not None, "compose link", page[:3000])
    f, _ = new_form(ana, html.unescape(m.group(1))[len("/webmail/compose"):])
    check("@example.invalid" in f["to"], "to prefilled", f)
    print("contacts scenario ok")


def scenario_autocomplete():
    """The progressive script in headless Chromium: typing in To shows suggestions
    from the address book; a click completes the address; Enter never sends."""
    from playwright.sync_api import sync_playwright

    ana = Web().login("ana", "pw-ana")
    st, _, page = ana.get("/webmail/contacts")
    token = csrf_of(page)
    ana.post("/webmail/contacts/add", [("csrf", token), ("name", "Zoe, Quintana"), ("email", "zoe@example.invalid")])
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        pg = browser.new_page()
        # Resource failures are judged by URL below (the browser's own favicon probe
        # is not the page's business); other console errors (CSP, script) count.
        pg.on("console", lambda m: errors.append(m.text) if m.type == "error" and "Failed to load resource" not in m.text else None)
        pg.on("response", lambda r: errors.append("%s %s" % (r.status, r.url)) if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(BASE + "/webmail/login")
        pg.fill('input[name="user"]', "ana")
        pg.fill('input[name="password"]', "pw-ana")
        pg.click('form[action="/webmail/login"] [type="submit"]')
        pg.wait_for_url("**/webmail/mailbox/**")
        pg.goto(BASE + "/webmail/compose")
        pg.fill("#to", "luis@cluster.com.ec, ")
        pg.type("#to", "zo", delay=50)
        pg.wait_for_selector("#to-suggest li", state="visible", timeout=10000)
        items = pg.locator("#to-suggest li").all_text_contents()
        if ARTIFACTS:
            pg.screenshot(path=os.path.join(ARTIFACTS, "webmail-compose-autocomplete.png"), full_page=True)
        check(items == ['"Zoe, Quintana" <zoe@example.invalid>'], "suggestions shown", items)
        pg.click("#to-suggest li")
        value = pg.input_value("#to")
        check(value == 'luis@cluster.com.ec, "Zoe, Quintana" <zoe@example.invalid>, ', "completed", value)
        # Keyboard: Enter picks the first suggestion and does not submit the form.
        pg.type("#cc", "lui", delay=50)
        pg.wait_for_selector("#cc-suggest li", state="visible", timeout=10000)
        pg.keyboard.press("Enter")
        check(pg.url.endswith("/webmail/compose"), "Enter did not send", pg.url)
        check(pg.input_value("#cc").startswith("luis <luis@cluster.com.ec>") or pg.input_value("#cc").startswith("luis@cluster.com.ec"), "cc completed", pg.input_value("#cc"))
        pg.fill("#subject", "desde Chromium")
        pg.fill("#body", "hola")
        pg.click("#send")
        pg.wait_for_url("**/webmail/mailbox/INBOX?msg=sent_ok")
        # Chromium asks for English (Accept-Language), so the notice is in English.
        check(re.search(r'class="flash"[^>]*>(Message sent|Mensaje enviado)', pg.content()), "sent notice shown", pg.content()[:3000])
        pg.goto(BASE + "/webmail/contacts")
        check(pg.locator("tr.contact").count() == 1, "contacts page lists the contact")
        if ARTIFACTS:
            pg.screenshot(path=os.path.join(ARTIFACTS, "webmail-contacts.png"), full_page=True)
        browser.close()
    check(not errors, "no script or CSP errors in the console", errors)
    uid, flags, msg, raw = by_subject(fetch_all("luis", "pw-luis"), "desde Chromium")
    check("zoe@example.invalid" in str(msg["To"]), "To as completed", msg["To"])
    print("autocomplete scenario ok")


{"mail": scenario_mail, "errors": scenario_errors, "contacts": scenario_contacts,
 "autocomplete": scenario_autocomplete}[SCENARIO]()
