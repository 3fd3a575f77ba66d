// Address autocomplete for the compose form (progressive: without this script the
// To/Cc/Bcc fields are plain comma-separated text inputs and everything works).
// Every input with a data-suggest="URL" attribute asks URL?q=WORD for the word being
// typed (the text after the last comma) and shows the answers ({name, email} JSON) in
// a small list under the field: click, or arrows + Enter/Tab, completes the word.
// Served from /webmail/static/contacts.js (the page CSP forbids inline scripts);
// styles are set through the CSSOM, which the page policy allows.
(function () {
  "use strict";

  function formatAddress(s) {
    var name = (s.name || "").trim();
    if (!name || name === s.email) return s.email;
    if (/[,;<>"@()\[\]:\\]/.test(name)) {
      name = '"' + name.replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"';
    }
    return name + " <" + s.email + ">";
  }

  // The text before the word being typed (up to and including the last separator
  // outside quotes and angle brackets) and the word itself.
  function splitLast(value) {
    var quoted = false, angle = false, cut = -1;
    for (var i = 0; i < value.length; i++) {
      var c = value[i];
      if (c === '"') quoted = !quoted;
      else if (c === "<" && !quoted) angle = true;
      else if (c === ">" && !quoted) angle = false;
      else if ((c === "," || c === ";") && !quoted && !angle) cut = i;
    }
    return { head: value.slice(0, cut + 1), word: value.slice(cut + 1).trim() };
  }

  function attach(input) {
    var url = input.getAttribute("data-suggest");
    var list = document.createElement("ul");
    list.className = "suggest";
    list.setAttribute("role", "listbox");
    list.id = input.id + "-suggest";
    var st = list.style;
    st.position = "absolute";
    st.zIndex = "20";
    st.margin = "0";
    st.padding = "0";
    st.listStyle = "none";
    st.background = "#fff";
    st.color = "#111";
    st.border = "1px solid #999";
    st.borderRadius = "4px";
    st.boxShadow = "0 2px 8px rgba(0,0,0,.2)";
    st.maxHeight = "16em";
    st.overflowY = "auto";
    st.display = "none";
    var parent = input.parentNode;
    if (window.getComputedStyle(parent).position === "static") parent.style.position = "relative";
    parent.appendChild(list);
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-controls", list.id);

    var items = [], active = -1, timer = null, seq = 0;

    function hide() {
      st.display = "none";
      items = [];
      active = -1;
      input.setAttribute("aria-expanded", "false");
    }

    function highlight(i) {
      active = i;
      var lis = list.children;
      for (var k = 0; k < lis.length; k++) {
        var on = k === i;
        lis[k].style.background = on ? "#dde8ff" : "";
        lis[k].setAttribute("aria-selected", on ? "true" : "false");
      }
      if (i >= 0 && lis[i]) lis[i].scrollIntoView({ block: "nearest" });
    }

    function choose(i) {
      if (i < 0 || i >= items.length) return;
      var parts = splitLast(input.value);
      var head = parts.head ? parts.head.replace(/\s*$/, "") + " " : "";
      input.value = head + formatAddress(items[i]) + ", ";
      hide();
      input.focus();
    }

    function show(data) {
      list.textContent = "";
      items = data;
      if (!data.length) return hide();
      data.forEach(function (s, i) {
        var li = document.createElement("li");
        li.setAttribute("role", "option");
        li.textContent = formatAddress(s);
        li.style.padding = "0.3em 0.6em";
        li.style.cursor = "pointer";
        // mousedown, not click: it runs before the input loses focus.
        li.addEventListener("mousedown", function (ev) {
          ev.preventDefault();
          choose(i);
        });
        li.addEventListener("mouseenter", function () { highlight(i); });
        list.appendChild(li);
      });
      st.left = input.offsetLeft + "px";
      st.top = input.offsetTop + input.offsetHeight + "px";
      st.minWidth = input.offsetWidth + "px";
      st.display = "block";
      input.setAttribute("aria-expanded", "true");
      highlight(-1);
    }

    function lookup() {
      var word = splitLast(input.value).word;
      if (word.length < 1) return hide();
      var mine = ++seq;
      fetch(url + "?q=" + encodeURIComponent(word), {
        credentials: "same-origin",
        headers: { Accept: "application/json" }
      })
        .then(function (r) { return r.ok ? r.json() : []; })
        .then(function (data) {
          // Only the answer to the latest keystroke counts.
          if (mine === seq && document.activeElement === input) show(Array.isArray(data) ? data : []);
        })
        .catch(function () { hide(); });
    }

    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(lookup, 150);
    });
    input.addEventListener("keydown", function (ev) {
      if (st.display === "none") return;
      if (ev.key === "ArrowDown") {
        ev.preventDefault();
        highlight(Math.min(active + 1, items.length - 1));
      } else if (ev.key === "ArrowUp") {
        ev.preventDefault();
        highlight(Math.max(active - 1, 0));
      } else if (ev.key === "Enter" || ev.key === "Tab") {
        if (active >= 0) {
          ev.preventDefault();
          choose(active);
        } else if (ev.key === "Enter") {
          // Enter in an address field completes, it never sends the message.
          ev.preventDefault();
          if (items.length) choose(0);
        }
      } else if (ev.key === "Escape") {
        hide();
      }
    });
    input.addEventListener("blur", function () { setTimeout(hide, 100); });
  }

  function init() {
    var inputs = document.querySelectorAll("input[data-suggest]");
    for (var i = 0; i < inputs.length; i++) attach(inputs[i]);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
