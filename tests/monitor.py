"""Scenarios of tests/monitor.rs that need Python: reading the alert mail over IMAP
(imaplib) and rendering /status in headless Chromium (Playwright, /usr/bin/chromium).

  python3 tests/monitor.py alert_mail IMAP_PORT USER PASSWORD SUBJECT...
      waits (at most 30 s) until the user's INBOX holds a message for every SUBJECT
      (a substring of its Subject:), retrying when the server refuses the session.
  python3 tests/monitor.py browser HTTP_PORT ARTIFACT_DIR
      loads /status at desktop and phone widths, saves screenshots, checks the
      colours of the cells, the filter form, that the page fits a phone's width, and
      that the console shows no errors.
Prints "OK <scenario>" at the end; a failure exits non-zero naming what failed.
"""

import email
import email.header
import imaplib
import os
import sys
import time


def fail(msg):
    print("FAIL", msg, flush=True)
    sys.exit(1)


def subjects(port, user, password):
    m = imaplib.IMAP4("127.0.0.1", port)
    try:
        m.login(user, password)
        typ, _ = m.select("INBOX", readonly=True)
        if typ != "OK":
            raise imaplib.IMAP4.error("select")
        typ, data = m.search(None, "ALL")
        out = []
        for num in data[0].split():
            typ, d = m.fetch(num, "(BODY.PEEK[HEADER.FIELDS (SUBJECT AUTO-SUBMITTED)])")
            msg = email.message_from_bytes(d[0][1])
            subj = str(email.header.make_header(email.header.decode_header(msg["Subject"] or "")))
            out.append((subj, msg["Auto-Submitted"]))
        return out
    finally:
        try:
            m.logout()
        except Exception:
            pass


def alert_mail(port, user, password, wanted):
    deadline = time.time() + 30
    got = []
    while time.time() < deadline:
        try:
            got = subjects(port, user, password)
        except (imaplib.IMAP4.error, OSError, EOFError) as e:
            # The test holds sessions to make IMAP fail; the probe takes one too.
            got = ["(session refused: %s)" % e]
            time.sleep(0.3)
            continue
        missing = [w for w in wanted if not any(w in s for s, _ in got if isinstance(s, str))]
        if not missing:
            for s, auto in got:
                if auto != "auto-generated":
                    fail("alert %r lacks Auto-Submitted: auto-generated" % s)
            print("subjects:", [s for s, _ in got])
            print("OK alert_mail")
            return
        time.sleep(0.3)
    fail("INBOX lacks %r; it holds %r" % (wanted, got))


def browser(http_port, art):
    from playwright.sync_api import sync_playwright

    os.makedirs(art, exist_ok=True)
    base = "http://127.0.0.1:%d" % http_port
    errors = []
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        for name, size in [("desktop", (1280, 900)), ("phone", (390, 844))]:
            ctx = b.new_context(viewport={"width": size[0], "height": size[1]},
                                is_mobile=(name == "phone"), device_scale_factor=2 if name == "phone" else 1)
            pg = ctx.new_page()
            pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            pg.on("pageerror", lambda e: errors.append(str(e)))
            pg.on("response", lambda r: errors.append("%s %s" % (r.status, r.url))
                  if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
            pg.goto(base + "/status")
            if pg.locator("#checks").count() != 1:
                fail("no checks table: " + pg.content()[:2000])
            ok = pg.locator('#checks td.ok[data-service="smtp"]').count()
            bad = pg.locator('#checks td.failing[data-service="imap"]').count()
            if ok != 1 or bad != 1:
                fail("%s: smtp ok cells %d, imap failing cells %d: %s" % (name, ok, bad, pg.content()[:3000]))
            green = pg.eval_on_selector('#checks td.ok[data-service="smtp"]', "e => getComputedStyle(e).backgroundColor")
            red = pg.eval_on_selector('#checks td.failing[data-service="imap"]', "e => getComputedStyle(e).backgroundColor")
            if green != "rgb(127, 214, 127)" or red != "rgb(240, 112, 112)":
                fail("colours: ok %s, failing %s" % (green, red))
            if pg.locator("#history tbody tr").count() < 1:
                fail("no history rows")
            if pg.locator('form.filter select[name="node"]').count() != 1 or pg.locator('form.filter input[name="from"]').count() != 1:
                fail("no filter form")
            # The page itself never scrolls sideways (tables scroll in their box).
            width = pg.evaluate("document.documentElement.scrollWidth")
            if width > size[0] + 1:
                fail("%s: the page is %d px wide in a %d px viewport" % (name, width, size[0]))
            pg.screenshot(path=os.path.join(art, "status-%s.png" % name), full_page=True)
            # The filter narrows the history to one service.
            pg.select_option('form.filter select[name="service"]', "imap")
            pg.click('form.filter button[type="submit"]')
            pg.wait_for_url("**/status?*service=imap*")
            services = pg.locator("#history tbody tr td:nth-child(3)").all_text_contents()
            if not services or any(s != "imap" for s in services):
                fail("filtered history: %r" % services)
            ctx.close()
        b.close()
    if errors:
        fail("console or resource errors: %r" % errors)
    print("OK browser")


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "alert_mail":
        alert_mail(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:])
    elif what == "browser":
        browser(int(sys.argv[2]), sys.argv[3])
    else:
        fail("unknown scenario " + what)
