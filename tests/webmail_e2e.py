"""End-to-end webmail flow in headless Chromium (Python Playwright, /usr/bin/chromium).

Run by tests/webmail_e2e.rs:
  python3 tests/webmail_e2e.py HTTP_PORT IMAP_PORT ARTIFACT_DIR
Before it runs, the test delivered by SMTP (swaks) to ana@cluster.com.ec a message
from beto@cluster.com.ec, subject "Informe trimestral", with the attachment
informe.txt. Users: ana/clave-ana, beto/clave-beto.

Steps: log in, read that message, open its attachment, send to another local user
(beto sees it over IMAP), reply, forward with an attachment, save and resume a
draft, search, move to a new folder, delete, log out. Screenshots of the inbox,
the reader and the compose page go to ARTIFACT_DIR. Every step prints a line; a
failure exits non-zero naming the step.
"""

import email
import email.policy
import imaplib
import os
import re
import sys
import tempfile
import time

from playwright.sync_api import expect, sync_playwright

HTTP_PORT, IMAP_PORT, ART = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
BASE = "http://127.0.0.1:%d" % HTTP_PORT
ATTACHMENT_TEXT = "cifras del trimestre: 42\n"

step_name = "start"


def step(name):
    global step_name
    step_name = name
    print("STEP", name, flush=True)


def imap_messages(user, pw, mailbox="INBOX"):
    """Raw messages of a mailbox, read over IMAP."""
    m = imaplib.IMAP4("127.0.0.1", IMAP_PORT)
    m.login(user, pw)
    typ, _ = m.select(mailbox, readonly=True)
    assert typ == "OK", (mailbox, typ)
    typ, data = m.uid("SEARCH", None, "ALL")
    out = []
    for uid in data[0].split():
        typ, d = m.uid("FETCH", uid, "(BODY.PEEK[])")
        out.append(flatten(d[0][1]))
    m.logout()
    return out


def flatten(raw):
    """The raw message followed by its decoded header fields, text parts and
    attachment names, so tests can look for text however it was encoded."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    out = [raw.decode("utf-8", "replace")]
    for k, v in msg.items():
        out.append("%s: %s" % (k, v))
    for part in msg.walk():
        if part.get_filename():
            out.append("attachment: " + part.get_filename())
        if part.get_content_maintype() == "text":
            try:
                out.append(part.get_content())
            except Exception:
                pass
    return "\n".join(out)


def wait_for_imap(user, pw, pred, what, mailbox="INBOX", timeout=15):
    deadline = time.time() + timeout
    while True:
        msgs = imap_messages(user, pw, mailbox)
        if any(pred(m) for m in msgs):
            return msgs
        assert time.time() < deadline, "%s: not seen over IMAP in %s: %d messages" % (what, mailbox, len(msgs))
        time.sleep(0.3)


def main():
    os.makedirs(ART, exist_ok=True)
    csp_errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
            ],
        )
        ctx = browser.new_context(accept_downloads=True, locale="es-EC", viewport={"width": 1280, "height": 900})
        page = ctx.new_page()
        page.set_default_timeout(15000)
        page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)

        step("log in")
        page.goto(BASE + "/webmail/")
        expect(page).to_have_url(re.compile(r"/webmail/login$"))
        page.fill("input[name=user]", "ana")
        page.fill("input[name=password]", "clave-ana")
        page.click("form[action='/webmail/login'] button[type=submit]")
        expect(page).to_have_url(re.compile(r"/webmail/mailbox/INBOX"))
        row = page.locator("tr.msg", has_text="Informe trimestral")
        expect(row).to_have_count(1)
        expect(row).to_have_class(re.compile(r"\bunread\b"))
        page.screenshot(path=os.path.join(ART, "inbox.png"), full_page=True)

        step("read the message delivered by SMTP")
        row.locator("td.subject a").click()
        expect(page.locator("h1#subject")).to_have_text("Informe trimestral")
        expect(page.locator("dd.h-from")).to_contain_text("beto@cluster.com.ec")
        expect(page.locator(".body")).to_contain_text("Adjunto el informe")
        page.screenshot(path=os.path.join(ART, "reader.png"), full_page=True)
        reader_url = page.url

        step("open its attachment")
        link = page.locator("a.attachment", has_text="informe.txt")
        expect(link).to_have_count(1)
        with page.expect_download() as dl:
            link.click()
        d = dl.value
        assert d.suggested_filename == "informe.txt", d.suggested_filename
        with open(d.path(), encoding="utf-8") as f:
            got = f.read()
        assert got.replace("\r\n", "\n") == ATTACHMENT_TEXT, repr(got)

        step("back in the list the message is read")
        page.goto(BASE + "/webmail/mailbox/INBOX")
        expect(page.locator("tr.msg", has_text="Informe trimestral")).not_to_have_class(re.compile(r"\bunread\b"))

        step("send to another local user")
        page.goto(BASE + "/webmail/compose")
        page.fill("[name=to]", "beto@cluster.com.ec")
        page.fill("[name=subject]", "Hola desde el webmail")
        page.fill("[name=body]", "Mensaje de prueba e2e.")
        page.screenshot(path=os.path.join(ART, "compose.png"), full_page=True)
        page.click("button[name=action][value=send]")
        expect(page).not_to_have_url(re.compile(r"/compose"))
        wait_for_imap("beto", "clave-beto", lambda m: "Hola desde el webmail" in m and "Mensaje de prueba e2e." in m, "sent message")
        wait_for_imap("ana", "clave-ana", lambda m: "Hola desde el webmail" in m, "copy in Sent", mailbox="Sent")

        step("reply")
        page.goto(reader_url)
        page.click("#reply")
        expect(page.locator("[name=to]")).to_have_value(re.compile(r"beto@cluster\.com\.ec"))
        expect(page.locator("[name=subject]")).to_have_value(re.compile(r"^Re: Informe trimestral"))
        page.locator("[name=body]").press("Control+Home")
        page.locator("[name=body]").type("Gracias, recibido.\n")
        page.click("button[name=action][value=send]")
        expect(page).not_to_have_url(re.compile(r"/compose"))
        wait_for_imap("beto", "clave-beto", lambda m: "Re: Informe trimestral" in m and "Gracias, recibido." in m, "reply")

        step("forward with an attachment")
        page.goto(reader_url)
        page.click("#forward")
        expect(page.locator("[name=subject]")).to_have_value(re.compile(r"Informe trimestral"))
        page.fill("[name=to]", "beto@cluster.com.ec")
        extra = os.path.join(tempfile.mkdtemp(prefix="wm-e2e-"), "anexo-extra.txt")
        with open(extra, "w") as f:
            f.write("anexo adicional\n")
        page.locator("input[type=file][name=attachment]").first.set_input_files(extra)
        page.click("button[name=action][value=send]")
        expect(page).not_to_have_url(re.compile(r"/compose"))
        os.unlink(extra)
        os.rmdir(os.path.dirname(extra))
        wait_for_imap(
            "beto", "clave-beto",
            lambda m: "Informe trimestral" in m and "anexo-extra.txt" in m and "informe.txt" in m and "Fwd" in m,
            "forward with the original and a new attachment",
        )

        step("save a draft")
        page.goto(BASE + "/webmail/compose")
        page.fill("[name=to]", "beto@cluster.com.ec")
        page.fill("[name=subject]", "Borrador e2e")
        page.fill("[name=body]", "primera versión")
        page.click("button[name=action][value=save]")
        wait_for_imap("ana", "clave-ana", lambda m: "Borrador e2e" in m, "draft", mailbox="Drafts")

        step("resume the draft and send it")
        page.goto(BASE + "/webmail/mailbox/Drafts")
        page.locator("tr.msg", has_text="Borrador e2e").locator("td.subject a").click()
        expect(page.locator("[name=subject]")).to_have_value("Borrador e2e")
        expect(page.locator("[name=body]")).to_have_value(re.compile("primera versión"))
        page.fill("[name=body]", "versión final")
        page.click("button[name=action][value=send]")
        expect(page).not_to_have_url(re.compile(r"/compose"))
        wait_for_imap("beto", "clave-beto", lambda m: "Borrador e2e" in m and "versión final" in m, "resumed draft")
        drafts = imap_messages("ana", "clave-ana", "Drafts")
        assert not any("Borrador e2e" in m for m in drafts), "the sent draft is still in Drafts"

        step("search")
        page.goto(BASE + "/webmail/mailbox/INBOX")
        page.fill("#q", "trimestral")
        page.select_option("#field", "subject")
        page.click("form.search button[type=submit]")
        expect(page.locator("tr.msg")).to_have_count(1)
        expect(page.locator("tr.msg")).to_contain_text("Informe trimestral")
        page.fill("#q", "no-existe-esto")
        page.click("form.search button[type=submit]")
        expect(page.locator("tr.msg")).to_have_count(0)

        step("move to a new folder")
        page.goto(BASE + "/webmail/folders")
        page.fill("#new-folder", "Proyectos")
        page.click("form[action='/webmail/folders/create'] button[type=submit]")
        expect(page.locator("nav.folders")).to_contain_text("Proyectos")
        page.goto(BASE + "/webmail/mailbox/INBOX")
        r = page.locator("tr.msg", has_text="Informe trimestral")
        r.locator("input[name=uid]").check()
        page.select_option("#target", "Proyectos")
        page.click("button[name=action][value=move]")
        expect(page.locator("tr.msg", has_text="Informe trimestral")).to_have_count(0)
        page.goto(BASE + "/webmail/mailbox/Proyectos")
        expect(page.locator("tr.msg", has_text="Informe trimestral")).to_have_count(1)
        assert any("Informe trimestral" in m for m in imap_messages("ana", "clave-ana", "Proyectos"))

        step("delete")
        page.locator("tr.msg", has_text="Informe trimestral").locator("input[name=uid]").check()
        page.click("button[name=action][value=delete]")
        expect(page.locator("tr.msg", has_text="Informe trimestral")).to_have_count(0)
        assert not imap_messages("ana", "clave-ana", "Proyectos")
        assert any("Informe trimestral" in m for m in imap_messages("ana", "clave-ana", "Trash"))

        step("log out")
        page.click("#logout")
        expect(page).to_have_url(re.compile(r"/webmail/login$"))
        page.goto(BASE + "/webmail/mailbox/INBOX")
        expect(page).to_have_url(re.compile(r"/webmail/login$"))

        step("phone width")
        phone = browser.new_context(viewport={"width": 375, "height": 740}, locale="en-US")
        pp = phone.new_page()
        pp.goto(BASE + "/webmail/login")
        expect(pp.locator("h1")).to_have_text("Sign in")
        pp.fill("input[name=user]", "beto")
        pp.fill("input[name=password]", "clave-beto")
        pp.click("form[action='/webmail/login'] button[type=submit]")
        expect(pp).to_have_url(re.compile(r"/webmail/mailbox/INBOX"))
        width = pp.evaluate("document.documentElement.scrollWidth")
        assert width <= 380, "horizontal scrolling on a phone: %d px" % width
        pp.screenshot(path=os.path.join(ART, "inbox-phone.png"), full_page=True)
        phone.close()

        browser.close()
    assert not csp_errors, "CSP violations: %r" % csp_errors
    print("OK webmail_e2e; screenshots in", ART)


if __name__ == "__main__":
    try:
        main()
    except Exception:
        print("FAILED at step:", step_name, flush=True)
        raise
