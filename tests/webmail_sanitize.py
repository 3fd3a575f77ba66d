"""Hostile-mail rendering check, driven by tests/webmail_sanitize.rs.

Delivers every tests/corpus-hostile/*.eml over SMTP (the placeholder hook address
127.0.0.1:9 replaced by a real loopback hook server), logs into the webmail in
headless Chromium and opens each message's reader page. Every payload in the corpus
that would run calls the hook (`/exec/NAME`); every remote image points at it
(`/img/NAME`). The check fails when:
  - a dialog opens, a popup opens, the page or the body frame navigates away;
  - the hook server sees any connection (or Chromium makes any request to the hook
    port or to the placeholder port 9) before remote images are allowed;
  - the body document lacks the CSP, the iframe lacks `sandbox` or allows scripts;
  - the sanitised body (fetched directly) still holds a script-capable element, an
    `on*` attribute, a javascript:/vbscript:/data:text URL or a hook URL;
then, for the remote-image message, the "show remote images" link must make the
`/img/` requests arrive (so the test can see requests at all), still with no `/exec/`.

Usage: webmail_sanitize.py BASE_URL SMTP_PORT USER PASSWORD CORPUS_DIR
"""

import base64
import email
import email.generator
import email.policy
import glob
import html.parser
import io
import os
import quopri
import re
import smtplib
import socketserver
import sys
import threading
import time
import http.server
from urllib.parse import urljoin

from playwright.sync_api import sync_playwright

BASE, SMTP_PORT, USER, PASSWORD, CORPUS = sys.argv[1:6]
SMTP_PORT = int(SMTP_PORT)
DOMAIN = "cluster.com.ec"
PLACEHOLDER = b"127.0.0.1:9/"
REMOTE_MESSAGE = "17-remote-images"
CID_MESSAGE = "25-cid-inline-image"
SVG_MESSAGE = "11-svg-attachment"

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL " + msg, flush=True)


# ---------------------------------------------------------------- hook server
class Hook:
    def __init__(self):
        self.lock = threading.Lock()
        self.paths = []
        self.connections = 0
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _record(self):
                with hook.lock:
                    hook.paths.append(self.path)
                body = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
                self.send_response(200)
                self.send_header("Content-Type", "image/gif")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_HEAD = do_OPTIONS = _record

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def process_request(self, request, client_address):
                with hook.lock:
                    hook.connections += 1
                super().process_request(request, client_address)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def snapshot(self):
        with self.lock:
            return list(self.paths), self.connections

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------- corpus delivery
def substitute(raw, port):
    """Points the corpus at the hook: literal occurrences (7bit/8bit parts) are
    replaced in the bytes, encoded parts (base64, quoted-printable) are decoded,
    replaced and encoded again."""
    new = PLACEHOLDER.replace(b":9/", f":{port}/".encode())
    raw = re.sub(rb"\r?\n", b"\r\n", raw)
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    changed = False
    for part in msg.walk():
        if part.is_multipart():
            continue
        cte = (part.get("Content-Transfer-Encoding") or "").strip().lower()
        if cte not in ("base64", "quoted-printable"):
            continue
        data = part.get_payload(decode=True) or b""
        charset = (part.get_content_charset() or "").lower()
        if PLACEHOLDER in data:
            data = data.replace(PLACEHOLDER, new)
        elif charset.startswith("utf-16") or charset.startswith("utf-32"):
            text = data.decode(charset, errors="replace")
            if PLACEHOLDER.decode() not in text:
                continue
            data = text.replace(PLACEHOLDER.decode(), new.decode()).encode(charset)
        else:
            continue
        if cte == "base64":
            enc = base64.encodebytes(data).decode("ascii")
        else:
            enc = quopri.encodestring(data).decode("ascii")
        part.set_payload(enc)  # the generator writes CRLF
        changed = True
    if changed:
        out = io.BytesIO()
        email.generator.BytesGenerator(
            out, mangle_from_=False, policy=email.policy.compat32.clone(linesep="\r\n")
        ).flatten(msg)
        raw = out.getvalue()
    raw = raw.replace(PLACEHOLDER, new)
    return raw


def hooked(data, port):
    """Whether some decoded part of the message holds the hook address (so the
    message can prove something) and none still holds the placeholder."""
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    found = False
    for part in msg.walk():
        if part.is_multipart():
            continue
        body = part.get_payload(decode=True) or b""
        charset = (part.get_content_charset() or "").lower()
        if charset.startswith("utf-16") or charset.startswith("utf-32"):
            body = body.decode(charset, errors="replace").encode()
        if PLACEHOLDER in body:
            return False
        found = found or f"127.0.0.1:{port}/".encode() in body
    return found


def deliver(files, port):
    smtp = smtplib.SMTP("127.0.0.1", SMTP_PORT, timeout=30)
    for path in files:
        with open(path, "rb") as f:
            raw = f.read()
        data = substitute(raw, port)
        if not hooked(data, port):
            fail(f"{os.path.basename(path)}: no hook URL after substitution")
        smtp.sendmail("attacker@example.net", [f"{USER}@{DOMAIN}"], data)
    smtp.quit()


# ------------------------------------------------- static check of the body HTML
DANGEROUS_TAGS = {
    "script", "iframe", "frame", "frameset", "object", "embed", "applet", "form",
    "input", "button", "textarea", "select", "meta", "link", "base", "svg", "math",
    "style", "portal", "fencedframe", "template", "noscript", "isindex", "video",
    "audio", "source", "picture",
}
# The sanitiser's own placeholder for a blocked image (an inline SVG picture).
PLACEHOLDER_IMG = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='24' height='24'"
URL_ATTRS = {"href", "src", "srcset", "background", "action", "formaction", "data",
             "poster", "ping", "xlink:href", "lowsrc", "dynsrc", "cite", "longdesc"}


class BodyCheck(html.parser.HTMLParser):
    def __init__(self, hook_port, images_allowed):
        super().__init__(convert_charrefs=True)
        self.problems = []
        self.hook = f"127.0.0.1:{hook_port}"
        self.images_allowed = images_allowed
        self.depth_body = False

    def handle_starttag(self, tag, attrs):
        if tag in ("html", "head", "body"):
            return
        if tag == "meta" and attrs == [("charset", "utf-8")]:
            return  # the reader's own document head
        if tag == "base" and attrs == [("target", "_blank")]:
            return  # the reader's own document head
        if tag in DANGEROUS_TAGS:
            self.problems.append(f"<{tag}> element")
        for name, value in attrs:
            value = value or ""
            low = re.sub(r"[\x00-\x20]", "", value).lower()
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}=...> event attribute")
            if name == "src" and value.startswith(PLACEHOLDER_IMG) and "script" not in low:
                continue
            if name in URL_ATTRS or name == "style":
                for bad in ("javascript:", "vbscript:", "livescript:", "data:text",
                            "data:application", "data:image/svg"):
                    if bad in low:
                        self.problems.append(f"<{tag} {name}={value[:60]!r}>")
                if "/exec/" in value or ":9/" in value:
                    self.problems.append(f"<{tag} {name}={value[:60]!r}> exec hook URL")
                # A plain link to the hook is fine (only fetched if clicked); nothing
                # that loads by itself may point there before images are allowed.
                plain_link = tag == "a" and name == "href" and "/ok/" in value
                if self.hook in value and not plain_link \
                        and not (self.images_allowed and "/img/" in value):
                    self.problems.append(f"<{tag} {name}={value[:60]!r}> hook URL")
            if name == "style" and ("url(" in low or "expression" in low
                                    or "position" in low or "\\" in low):
                self.problems.append(f"<{tag} style={value[:60]!r}>")
        if tag == "a":
            d = dict(attrs)
            if "href" in d and (d.get("target") != "_blank"
                                or "noopener" not in (d.get("rel") or "")):
                self.problems.append(f"<a href={d['href'][:40]!r}> without target/rel")


# -------------------------------------------------------------------- browser
def main():
    hook = Hook()
    files = sorted(glob.glob(os.path.join(CORPUS, "*.eml")))
    if not 15 <= len(files) <= 30:
        fail(f"corpus holds {len(files)} files, expected 15-30")
    deliver(files, hook.port)
    names = [os.path.basename(f)[:-4] for f in files]
    print(f"delivered {len(files)} corpus messages; hook on 127.0.0.1:{hook.port}", flush=True)

    events = {"dialogs": [], "popups": [], "requests": [], "responses": [], "console": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )
        ctx = browser.new_context(viewport={"width": 1200, "height": 900})

        def on_dialog(d):
            events["dialogs"].append(f"{d.type}: {d.message}")
            try:
                d.dismiss()
            except Exception:
                pass

        def on_page(p):
            events["popups"].append(p.url)
            p.on("dialog", on_dialog)

        ctx.on("page", on_page)
        ctx.on("request", lambda r: events["requests"].append(r.url))
        ctx.on("response", lambda r: events["responses"].append(
            (r.url, r.status, r.headers.get("content-type", ""))))
        page = ctx.new_page()
        page.on("dialog", on_dialog)
        page.on("console", lambda m: events["console"].append(
            f"{m.type}: {m.text} [{(m.location or {}).get('url', '')}]"))

        # Log in through the form (it carries a pre-login CSRF token).
        page.goto(f"{BASE}/webmail/login")
        page.fill("input[name=user]", USER)
        page.fill("input[name=password]", PASSWORD)
        page.click("form[action='/webmail/login'] [type=submit]")
        page.wait_for_load_state("load")
        if "/webmail/mailbox/INBOX" not in page.url:
            fail(f"login did not reach the inbox (at {page.url})")
            raise SystemExit(finish(hook))
        popups_before = len(ctx.pages)

        # Map subjects to UIDs from the message list.
        uids = {}
        for row in page.locator(".msg").all():
            uid = row.get_attribute("data-uid")
            text = row.inner_text()
            for n in names:
                if n in text:
                    uids[n] = uid
        missing = [n for n in names if n not in uids]
        if missing:
            fail(f"not in the message list: {missing}")

        hook_port = hook.port

        def hook_requests(since):
            return [u for u in events["requests"][since:]
                    if f"127.0.0.1:{hook_port}" in u or "127.0.0.1:9/" in u
                    or u.startswith("http://127.0.0.1:9")]

        for n in names:
            if n not in uids:
                continue
            req_mark = len(events["requests"])
            dlg_mark = len(events["dialogs"])
            pop_mark = len(events["popups"])
            paths_before, conns_before = hook.snapshot()
            url = f"{BASE}/webmail/mailbox/INBOX/{uids[n]}"
            page.goto(url)
            page.wait_for_load_state("load")
            notes = []
            frame_el = page.locator("iframe").first
            body_url = None
            if frame_el.count() == 0:
                fail(f"{n}: no body iframe on the reader page")
            else:
                sandbox = frame_el.get_attribute("sandbox")
                src = frame_el.get_attribute("src") or ""
                if sandbox is None:
                    fail(f"{n}: iframe without sandbox attribute")
                elif "allow-scripts" in sandbox.split():
                    fail(f"{n}: iframe sandbox allows scripts: {sandbox!r}")
                body_url = urljoin(page.url, src)
                # Interact: hover across the body, click every CLICK-ME element.
                box = frame_el.bounding_box()
                if box:
                    for fx in (0.1, 0.5, 0.9):
                        for fy in (0.1, 0.5, 0.9):
                            page.mouse.move(box["x"] + box["width"] * fx,
                                            box["y"] + box["height"] * fy)
                handle = frame_el.element_handle()
                frame = handle.content_frame() if handle else None
                if frame is not None:
                    clickables = frame.locator("text=CLICK-ME")
                    for i in range(min(clickables.count(), 20)):
                        try:
                            clickables.nth(i).click(timeout=1000, no_wait_after=True)
                        except Exception:
                            pass
                    for sel in ("input[type=submit]", "button"):
                        loc = frame.locator(sel)
                        for i in range(min(loc.count(), 5)):
                            try:
                                loc.nth(i).click(timeout=1000, no_wait_after=True)
                            except Exception:
                                pass
            page.wait_for_timeout(1000)

            # Static check of the body document, as served.
            blocked_note = ""
            if body_url:
                resp = page.request.get(body_url)
                csp = resp.headers.get("content-security-policy", "")
                if resp.status != 200:
                    fail(f"{n}: body {resp.status}")
                if "default-src 'none'" not in csp or "script-src" in csp:
                    fail(f"{n}: body CSP missing or allowing script: {csp!r}")
                if " http:" in csp or "https:" in csp:
                    fail(f"{n}: body CSP allows remote images before the user asked: {csp!r}")
                if not resp.headers.get("content-type", "").startswith("text/html"):
                    fail(f"{n}: body content-type {resp.headers.get('content-type')}")
                check = BodyCheck(hook_port, images_allowed=False)
                check.feed(resp.text())
                for p in check.problems:
                    fail(f"{n}: sanitised body has {p}")
                blocked_note = " placeholder" if "data:image/svg+xml" in resp.text() else ""

            # Dynamic checks.
            if len(events["dialogs"]) > dlg_mark:
                fail(f"{n}: dialog opened: {events['dialogs'][dlg_mark:]}")
            if len(events["popups"]) > pop_mark:
                fail(f"{n}: popup opened: {events['popups'][pop_mark:]}")
            if not page.url.startswith(url):
                fail(f"{n}: page navigated to {page.url}")
            handle = frame_el.element_handle() if frame_el.count() else None
            frame = handle.content_frame() if handle else None
            if frame is not None and body_url:
                furl = frame.url
                if not furl.startswith(body_url.split("#")[0]):
                    fail(f"{n}: body frame navigated to {furl}")
            paths_after, conns_after = hook.snapshot()
            new_paths = paths_after[len(paths_before):]
            if new_paths or conns_after != conns_before:
                fail(f"{n}: hook was contacted ({conns_after - conns_before} connections): {new_paths}")
            hits = hook_requests(req_mark)
            if hits:
                fail(f"{n}: browser requested the hook: {hits}")
            requests = len(events["requests"]) - req_mark
            status = "ok  " if not any(f.startswith(n + ":") for f in failures) else "FAIL"
            print(f"{status} {n}: {requests} requests, none to the hook, no dialog/popup{blocked_note}"
                  + ("; " + "; ".join(notes) if notes else ""), flush=True)

        # cid: the inline PNG must load from the webmail itself.
        if CID_MESSAGE in uids:
            mark = len(events["responses"])
            page.goto(f"{BASE}/webmail/mailbox/INBOX/{uids[CID_MESSAGE]}")
            page.wait_for_timeout(1000)
            parts = [r for r in events["responses"][mark:] if "/part/" in r[0]]
            good = [r for r in parts if r[1] == 200 and r[2].startswith("image/png")]
            if not good:
                fail(f"{CID_MESSAGE}: the cid: image did not load from the webmail "
                     f"(part responses: {parts})")
            else:
                print(f"ok   {CID_MESSAGE}: cid: image loaded from {good[0][0]}", flush=True)

        # The SVG part opened directly must not run either.
        if SVG_MESSAGE in uids:
            paths_before, conns_before = hook.snapshot()
            dlg_mark = len(events["dialogs"])
            for idx in range(0, 4):
                purl = f"{BASE}/webmail/mailbox/INBOX/{uids[SVG_MESSAGE]}/part/{idx}?inline=1"
                try:
                    resp = page.goto(purl)
                    page.wait_for_timeout(300)
                    ctype = resp.headers.get("content-type", "") if resp else ""
                    if "svg" in ctype and "sandbox" not in (resp.headers.get("content-security-policy") or ""):
                        fail(f"{SVG_MESSAGE}: part {idx} served as {ctype} without a sandbox CSP")
                except Exception:
                    pass  # a download, not a document
            paths_after, conns_after = hook.snapshot()
            if paths_after[len(paths_before):] or conns_after != conns_before \
                    or len(events["dialogs"]) > dlg_mark:
                fail(f"{SVG_MESSAGE}: opening its parts ran code: {paths_after[len(paths_before):]}")
            else:
                print(f"ok   {SVG_MESSAGE}: its parts opened directly run nothing", flush=True)

        # Before any permission: the hook saw nothing at all.
        paths, conns = hook.snapshot()
        if paths or conns:
            fail(f"hook contacted before remote images were allowed: {conns} connections {paths}")

        # Allow remote images on the remote-image message: /img/ must now arrive.
        if REMOTE_MESSAGE in uids:
            page.goto(f"{BASE}/webmail/mailbox/INBOX/{uids[REMOTE_MESSAGE]}")
            link = page.locator("a[href*='images=1']")
            if link.count() == 0:
                fail(f"{REMOTE_MESSAGE}: no 'show remote images' link on the reader page")
            else:
                link.first.click()
                page.wait_for_load_state("load")
                deadline = time.time() + 10
                while time.time() < deadline:
                    paths, _ = hook.snapshot()
                    if any(p.startswith("/img/") for p in paths):
                        break
                    page.wait_for_timeout(200)
                paths, _ = hook.snapshot()
                imgs = sorted(set(p for p in paths if p.startswith("/img/")))
                execs = [p for p in paths if p.startswith("/exec/")]
                fr = page.locator("iframe").first
                src = fr.get_attribute("src") if fr.count() else ""
                if "images=1" not in (src or ""):
                    fail(f"{REMOTE_MESSAGE}: after allowing, the iframe src is {src!r}")
                else:
                    resp = page.request.get(urljoin(page.url, src))
                    csp = resp.headers.get("content-security-policy", "")
                    if "http:" not in csp or "script-src" in csp:
                        fail(f"{REMOTE_MESSAGE}: CSP with images allowed is {csp!r}")
                if not imgs:
                    fail(f"{REMOTE_MESSAGE}: no /img/ request arrived after allowing remote images")
                if execs:
                    fail(f"{REMOTE_MESSAGE}: /exec/ hit: {execs}")
                if imgs and not execs:
                    print(f"ok   {REMOTE_MESSAGE}: after 'show remote images' the hook saw {imgs}",
                          flush=True)

        if events["dialogs"]:
            fail(f"dialogs: {events['dialogs']}")
        csp_reports = [c for c in events["console"] if "Content Security Policy" in c]
        # The CSP is the second line of defence: it should never have had to act on a
        # body document, since the sanitiser removes whatever it would refuse.
        for c in csp_reports:
            if "/body" in c:
                fail(f"the body CSP refused something the sanitiser let through: {c[:300]}")
        print(f"console messages: {len(events['console'])} "
              f"({len(csp_reports)} CSP refusals: the sanitiser already removed what CSP would stop)",
              flush=True)
        for c in events["console"][:10]:
            print("  console: " + c[:200], flush=True)
        browser.close()
    return finish(hook)


def finish(hook):
    hook.stop()
    if failures:
        print(f"{len(failures)} failure(s)", flush=True)
        return 1
    print("all hostile messages rendered without executing or fetching anything", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
