// clusterd webmail: progressive enhancement only; every page works without it.
//
// Section 1 (webmail core): the new-mail check. On a message list, polls
// GET <data-poll>?uidnext=N every 30 s; when mail has arrived it shows a banner
// with a reload link (and reloads by itself when nothing is selected and the
// search box is empty).
//
// Section 2 is reserved for address autocomplete (helper "compose"): put it below
// the marked line, or in a second file /webmail/static/contacts.js.
(function () {
  "use strict";
  var list = document.getElementById("msglist");
  if (!list || !window.fetch) return;
  var url = list.getAttribute("data-poll");
  var uidnext = list.getAttribute("data-uidnext");
  var banner = document.getElementById("newmail");
  function busy() {
    var q = document.getElementById("q");
    if (q && (q.value || document.activeElement === q)) return true;
    return document.querySelector('input[name="uid"]:checked') !== null;
  }
  function check() {
    fetch(url + "?uidnext=" + encodeURIComponent(uidnext), {
      credentials: "same-origin", headers: { "Accept": "application/json" }
    }).then(function (r) {
      return r.ok ? r.json() : null;
    }).then(function (st) {
      if (!st || !st["new"]) return;
      if (!busy()) { window.location.reload(); return; }
      if (banner) {
        banner.textContent = list.getAttribute("data-newmail") + " ";
        var a = document.createElement("a");
        a.href = window.location.href;
        a.textContent = list.getAttribute("data-reload");
        banner.appendChild(a);
        banner.hidden = false;
      }
    }).catch(function () {});
  }
  window.setInterval(check, 30000);
})();

// ---- Section 2: address autocomplete (helper "compose") ----
