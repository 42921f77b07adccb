"""The page's style and its few lines of script, inlined and pinned by hash in the CSP.

No build step and no external resources: system fonts, one stylesheet, one script. Both are
constants, so the Content-Security-Policy allows exactly them (``'sha256-…'``) and nothing
else inline. Without JavaScript every view still works: links, and forms that POST and
redirect back.
"""

from __future__ import annotations

import base64
import hashlib

CSS = """
:root {
  --bg: #f5f6f8; --card: #fff; --ink: #1f2328; --muted: #59636e; --line: #d1d9e0;
  --soft: #eef1f4; --accent: #0969da;
  --ok: #1a7f37; --ok-bg: #dcf5e3; --info: #0860c4; --info-bg: #ddeeff;
  --warn: #8a5a00; --warn-bg: #fff1c2; --bad: #c5221f; --bad-bg: #ffe4e1;
  --idle: #59636e; --idle-bg: #e9edf1;
  --code-bg: #f6f8fa; --bad-ink: #82071e; --top: #1f2937;
  color-scheme: light dark;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0d1117; --card: #161b22; --ink: #e6edf3; --muted: #9198a1; --line: #30363d;
    --soft: #21262d; --accent: #4493f8;
    --ok: #3fb950; --ok-bg: #12361f; --info: #58a6ff; --info-bg: #0c2d6b;
    --warn: #d29922; --warn-bg: #3b2e0a; --bad: #f85149; --bad-bg: #4a1416;
    --idle: #9198a1; --idle-bg: #262c36;
    --code-bg: #0d1117; --bad-ink: #ffb1ad; --top: #010409;
  }
  .card { box-shadow: none; }
}
* { box-sizing: border-box; }
html { background: var(--bg); }
body {
  margin: 0; color: var(--ink); background: var(--bg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
    "DejaVu Sans", sans-serif;
}
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
code, .mono {
  font: 0.85em/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace;
}
header.top {
  display: flex; align-items: center; gap: 1.25rem; padding: 0.7rem 1.5rem;
  background: var(--top); color: #e5e7eb; flex-wrap: wrap; row-gap: 0.4rem;
}
header.top a { color: #fff; }
.brand { font-weight: 700; font-size: 1.05rem; letter-spacing: 0.01em; }
.brand .mark { color: #7dd3fc; margin-right: 0.35rem; }
.crumbs { display: flex; gap: 0.5rem; align-items: center; color: #9ca3af; }
.crumbs a { color: #e5e7eb; }
.crumbs span.sep { color: #6b7280; }
.who {
  margin-left: auto; display: flex; align-items: center; gap: 0.75rem; font-size: 0.85rem;
  min-width: 0;
}
.who > span { min-width: 0; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.who b { color: #fff; font-weight: 600; }
.who form { flex: none; }
.who button {
  background: transparent; color: #d1d5db; border: 1px solid #4b5563; border-radius: 6px;
  padding: 0.15rem 0.6rem; font: inherit; cursor: pointer;
}
.who button:hover { color: #fff; border-color: #9ca3af; }
nav.tabs {
  display: flex; gap: 0.25rem; padding: 0 1.5rem; background: var(--card);
  border-bottom: 1px solid var(--line); overflow-x: auto; white-space: nowrap;
}
nav.tabs a {
  padding: 0.7rem 0.9rem 0.6rem; color: var(--muted); border-bottom: 2px solid transparent;
}
nav.tabs a:hover { color: var(--ink); text-decoration: none; }
nav.tabs a[aria-current="page"] { color: var(--ink); font-weight: 600; border-color: #f97316; }
.badge {
  display: inline-block; min-width: 1.35rem; padding: 0 0.4rem; margin-left: 0.3rem;
  border-radius: 999px; background: var(--warn-bg); color: var(--warn); font-size: 0.75rem;
  font-weight: 700; text-align: center;
}
main { max-width: 1120px; margin: 1.5rem auto 2rem; padding: 0 1.5rem; }
h1 { font-size: 1.45rem; margin: 0 0 0.25rem; font-weight: 650; }
h1 + p.lead { margin-top: 0; }
h2 { font-size: 1.05rem; margin: 1.75rem 0 0.6rem; font-weight: 650; }
h3 { font-size: 1rem; margin: 0; font-weight: 650; }
p.lead { color: var(--muted); margin: 0 0 1.25rem; }
.muted { color: var(--muted); }
.small { font-size: 0.85rem; }
.card {
  background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 1rem 1.25rem; margin-bottom: 1rem; box-shadow: 0 1px 2px rgba(31, 35, 40, 0.04);
}
.card > header { display: flex; align-items: center; gap: 0.6rem; flex-wrap: wrap; }
.card > header .desc { color: var(--muted); }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr)); gap: 1rem; }
.grid .card { margin: 0; }
.grid .card h3 a { color: var(--ink); }
.counts { color: var(--muted); font-size: 0.88rem; margin-top: 0.3rem; }
.chip {
  display: inline-block; padding: 0.05rem 0.6rem; border-radius: 999px; font-size: 0.76rem;
  font-weight: 650; white-space: nowrap; background: var(--idle-bg); color: var(--idle);
  letter-spacing: 0.01em;
}
.chip.ok { background: var(--ok-bg); color: var(--ok); }
.chip.info { background: var(--info-bg); color: var(--info); }
.chip.warn { background: var(--warn-bg); color: var(--warn); }
.chip.bad { background: var(--bad-bg); color: var(--bad); }
table { width: 100%; border-collapse: collapse; font-size: 0.92rem; }
.card table { margin-top: 0.6rem; }
th {
  text-align: left; font-weight: 600; color: var(--muted); font-size: 0.74rem;
  text-transform: uppercase; letter-spacing: 0.05em; padding: 0.45rem 0.6rem;
  border-bottom: 1px solid var(--line);
}
td { padding: 0.55rem 0.6rem; border-bottom: 1px solid var(--soft); vertical-align: top; }
tr:last-child td { border-bottom: 0; }
table.middle td { vertical-align: middle; }
.title { margin-bottom: 1rem; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.signals { display: flex; flex-wrap: wrap; gap: 0.35rem; margin-top: 0.55rem; }
.signal {
  font: 12px/1.5 ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace;
  background: var(--code-bg); border: 1px solid var(--line); border-radius: 6px;
  padding: 0.05rem 0.45rem;
}
.signal b { font-weight: 600; color: var(--muted); }
.prompts { display: flex; flex-wrap: wrap; gap: 0.5rem; margin-top: 0.75rem; align-items: center; }
.prompt-note { font-size: 0.85rem; color: var(--muted); }
form.inline { display: inline; margin: 0; }
.actions { display: flex; gap: 0.4rem; flex-wrap: wrap; }
.button, button.approve, button.reject, button.primary, button.secondary, button.danger {
  display: inline-flex; align-items: center; justify-content: center; border-radius: 7px;
  padding: 0.4rem 0.95rem; font: inherit; font-size: 0.88rem; font-weight: 600;
  line-height: 1.2; cursor: pointer; border: 1px solid transparent;
}
.button.prompt { background: var(--accent); color: #fff; }
.button.prompt:hover { background: #0550ae; text-decoration: none; }
button.approve { background: var(--ok); color: #fff; }
button.approve:hover { background: #116329; }
button.reject { background: var(--card); color: var(--bad); border-color: var(--bad); }
button.reject:hover { background: var(--bad-bg); }
button.primary { background: var(--accent); color: #fff; }
.button.secondary, button.secondary {
  background: var(--card); color: var(--ink); border: 1px solid var(--line);
}
.button.secondary:hover, button.secondary:hover { background: var(--soft); text-decoration: none; }
button.danger { background: var(--card); color: var(--bad); border: 1px solid var(--bad); }
button.danger:hover { background: var(--bad-bg); }
button.small-button { padding: 0.2rem 0.6rem; font-size: 0.8rem; }
.card > header .entity-actions { margin-left: auto; }
.entity-actions { display: inline-flex; gap: 0.5rem; align-items: baseline; flex-wrap: wrap; }
details.drain { margin: 0; }
details.drain summary { font-size: 0.8rem; }
details.drain[open] summary { margin-bottom: 0.3rem; }
.confirm { display: inline-flex; align-items: center; gap: 0.3rem; margin-right: 0.4rem; }
form.action { display: inline-flex; align-items: center; }
button:disabled { opacity: 0.55; cursor: progress; }
.bar { vertical-align: middle; margin-right: 0.4rem; }
.timeline {
  list-style: none; margin: 0.5rem 0 0 0.55rem; padding: 0; border-left: 2px solid var(--line);
}
.timeline li { position: relative; padding: 0 0 1.1rem 1.4rem; }
.timeline li:last-child { padding-bottom: 0.2rem; }
.timeline li::before {
  content: ""; position: absolute; left: -8px; top: 0.3rem; width: 14px; height: 14px;
  border-radius: 50%; background: var(--idle-bg); border: 2px solid var(--idle);
}
.timeline li.ok::before { background: var(--ok); border-color: var(--ok); }
.timeline li.info::before { background: var(--info); border-color: var(--info); }
.timeline li.warn::before { background: var(--warn-bg); border-color: var(--warn); }
.timeline li.bad::before { background: var(--bad); border-color: var(--bad); }
.step-head { display: flex; align-items: center; gap: 0.55rem; flex-wrap: wrap; }
.step-head .uses { color: var(--muted); font-size: 0.85rem; }
.step-meta { color: var(--muted); font-size: 0.85rem; margin-top: 0.15rem; }
.step-error {
  margin-top: 0.4rem; padding: 0.4rem 0.6rem; border-radius: 6px; background: var(--bad-bg);
  color: var(--bad-ink); font-size: 0.88rem; overflow-wrap: anywhere;
}
.alert {
  margin: 0 0 1rem; padding: 0.75rem 1rem; border-radius: 8px; border: 1px solid var(--bad);
  background: var(--bad-bg); color: var(--bad-ink); overflow-wrap: anywhere;
}
.alert.notice {
  margin: 0.75rem 1rem 0; border-color: var(--warn); background: var(--warn-bg); color: var(--warn);
}
.refusal { color: var(--bad); margin-top: 0.25rem; max-width: 36rem; }
.run-reason { color: var(--bad); margin-top: 0.2rem; max-width: 28rem; overflow-wrap: anywhere; }
.approval-message {
  margin: 0.4rem 0; padding: 0.45rem 0.75rem; border-left: 3px solid var(--warn);
  background: var(--warn-bg); color: var(--ink); border-radius: 0 6px 6px 0;
  font-weight: 500; overflow-wrap: anywhere;
}
.step-actions.approval { display: flex; flex-wrap: wrap; gap: 0.5rem; align-items: center; }
.step-actions.approval .approval-message { flex: 1 1 16rem; margin: 0; }
details.data { margin-top: 0.35rem; }
details.data summary { cursor: pointer; color: var(--muted); font-size: 0.85rem; }
details.data pre, pre {
  margin: 0.35rem 0 0; padding: 0.6rem 0.75rem; background: var(--code-bg);
  border: 1px solid var(--line); border-radius: 6px; overflow-x: auto; max-height: 28rem;
  font: 12px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace;
}
.card.data > summary { font-weight: 600; color: var(--ink); font-size: 0.95rem; }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; }
.scroll table { min-width: 36rem; }
.section-head { display: flex; align-items: baseline; gap: 1rem; flex-wrap: wrap; }
.section-head h2 { margin-bottom: 0.6rem; }
.two { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
.two > .card { margin-bottom: 1rem; }
.card h3 { margin-bottom: 0.5rem; }
.state-actions { margin-bottom: 0.9rem; }
.state-actions:empty { display: none; }
details.archive { margin-top: 0.9rem; }
details.archive p { margin: 0.4rem 0; }
textarea {
  width: 100%; padding: 0.5rem 0.65rem; border: 1px solid var(--line); border-radius: 7px;
  background: var(--card); color: var(--ink); margin: 0.35rem 0 0.6rem; resize: vertical;
}
form label { font-size: 0.85rem; color: var(--muted); }
.filters { display: flex; flex-wrap: wrap; gap: 0.6rem 0.9rem; align-items: flex-end; }
.filters label { display: flex; flex-direction: column; gap: 0.2rem; }
.filters .grow { flex: 1 1 14rem; }
.filters input, .filters select {
  font: inherit; font-size: 0.9rem; padding: 0.35rem 0.5rem; border: 1px solid var(--line);
  border-radius: 7px; background: var(--card); color: var(--ink);
}
.filters .clear { align-self: center; font-size: 0.9rem; }
.pager {
  display: flex; justify-content: space-between; align-items: center; flex-wrap: wrap;
  gap: 0.5rem; margin: 0 0 0.75rem;
}
.pager .pages { display: flex; gap: 0.4rem; flex-wrap: wrap; }
.related { margin: 0; padding-left: 1.1rem; }
.related li { margin: 0.25rem 0; }
.title-actions { margin-left: auto; }
.break { overflow-wrap: anywhere; }
.decision { margin-top: 0.35rem; font-size: 0.9rem; }
.step-actions { margin-top: 0.5rem; }
dl.facts {
  display: grid; grid-template-columns: max-content 1fr; gap: 0.3rem 1.25rem;
  margin: 0.75rem 0 0;
}
dl.facts dt { color: var(--muted); font-size: 0.85rem; }
dl.facts dd { margin: 0; }
.empty { color: var(--muted); padding: 1.25rem; text-align: center; }
.flash {
  max-width: 1072px; margin: 1rem auto 0; padding: 0.6rem 1rem; border-radius: 8px;
  font-weight: 500;
}
.flash.ok { background: var(--ok-bg); color: var(--ok); }
.flash.bad { background: var(--bad-bg); color: var(--bad); }
.login { max-width: 520px; margin: 4rem auto; }
.login input[type="password"] {
  width: 100%; padding: 0.5rem 0.65rem; font: inherit; border: 1px solid var(--line);
  border-radius: 7px; margin: 0.4rem 0 0.9rem; background: var(--card); color: var(--ink);
}
.error-box { max-width: 620px; margin: 4rem auto; }
footer {
  max-width: 1120px; margin: 0 auto 2rem; padding: 0 1.5rem; color: var(--muted);
  font-size: 0.8rem; display: flex; gap: 0.5rem; align-items: center;
}
.live::before {
  content: ""; display: inline-block; width: 8px; height: 8px; border-radius: 50%;
  background: #9ca3af; margin-right: 0.35rem; vertical-align: middle;
}
.live.on::before { background: #22c55e; }
.live.off::before { background: #f59e0b; }
@media (max-width: 720px) {
  header.top { padding: 0.6rem 1rem; gap: 0.4rem 0.9rem; }
  .crumbs {
    order: 3; flex-basis: 100%; overflow-x: auto; white-space: nowrap; font-size: 0.88rem;
  }
  .who .wide { display: none; }
  nav.tabs { padding: 0 0.5rem; }
  nav.tabs a { padding: 0.6rem 0.6rem 0.5rem; }
  main { padding: 0 0.75rem; margin-top: 1rem; }
  .card { padding: 0.8rem 0.85rem; }
  .two { grid-template-columns: 1fr; gap: 0; }
  /* Tables become one block per row: the first cell on its own line, the rest labelled. */
  .scroll table.stack { min-width: 0; }
  table.stack thead { display: none; }
  table.stack, table.stack tbody, table.stack tr { display: block; width: 100%; }
  table.stack tr { border-bottom: 1px solid var(--line); padding: 0.55rem 0; }
  table.stack tr:last-child { border-bottom: 0; }
  table.stack td {
    display: inline-block; border: 0; padding: 0.1rem 1rem 0.1rem 0; vertical-align: top;
    max-width: 100%;
  }
  table.stack td:first-child, table.stack td.wide { display: block; padding-right: 0; }
  table.stack td:empty { display: none; }
  table.stack td[data-label]::before {
    content: attr(data-label); display: block; color: var(--muted); font-size: 0.7rem;
    text-transform: uppercase; letter-spacing: 0.05em;
  }
  table.stack td.num { text-align: left; }
  dl.facts { grid-template-columns: 1fr; gap: 0.1rem; }
  dl.facts dd { margin-bottom: 0.4rem; }
  .title-actions { margin-left: 0; }
  footer { padding: 0 0.75rem; }
}
"""

JS = """
(function () {
  "use strict";
  var view = document.getElementById("view");
  var live = document.getElementById("live");
  var flashBox = document.getElementById("flash");
  var busy = false, again = false;
  function mark(state, text) {
    if (live) { live.className = "live " + state; live.textContent = text; }
  }
  function flash(kind, text) {
    if (!flashBox) { return; }
    flashBox.className = "flash " + kind;
    flashBox.textContent = text;
    flashBox.hidden = false;
  }
  var held = false;
  function editing() {
    var field = document.activeElement;
    return !!field && view.contains(field) && /^(INPUT|TEXTAREA|SELECT)$/.test(field.tagName);
  }
  // What was typed or chosen in the view's fields (by id): kept across a refresh.
  function typed() {
    var kept = {};
    view.querySelectorAll("input[id], textarea[id], select[id]").forEach(function (field) {
      var initial = field.defaultValue;
      if (field.tagName === "SELECT") {
        var chosen = field.querySelector("option[selected]") || field.options[0];
        initial = chosen ? chosen.value : "";
      }
      if (field.type === "checkbox") {
        if (field.checked !== field.defaultChecked) { kept[field.id] = field.checked; }
      } else if (field.value !== initial) {
        kept[field.id] = field.value;
      }
    });
    return kept;
  }
  // A <details> by where it is: the id of the element around it, and its place in there.
  function place(details) {
    var owner = details.parentElement ? details.parentElement.closest("[id]") : null;
    var all = Array.prototype.slice.call((owner || view).querySelectorAll("details"));
    return (owner ? owner.id : "") + ":" + all.indexOf(details);
  }
  function restore(kept, open) {
    Object.keys(kept).forEach(function (id) {
      var field = document.getElementById(id);
      if (!field) { return; }
      if (field.type === "checkbox") { field.checked = kept[id]; } else { field.value = kept[id]; }
    });
    view.querySelectorAll("details").forEach(function (details) {
      if (open.indexOf(place(details)) >= 0) { details.open = true; }
    });
  }
  // Someone typing is not interrupted: the refresh waits until they leave the field.
  if (view) {
    view.addEventListener("focusout", function () {
      if (held) { held = false; setTimeout(refresh, 0); }
    });
  }
  function refresh() {
    if (!view) { return; }
    // A form's answer shown at its POST address: go to the page itself (live again).
    var canonical = view.getAttribute("data-href");
    if (canonical) { location.assign(canonical); return; }
    if (editing()) { held = true; return; }
    if (busy) { again = true; return; }
    busy = true;
    fetch(location.href, {
      headers: { "X-Blockflow-Fragment": "1" }, credentials: "same-origin", cache: "no-store"
    }).then(function (response) {
      if (response.status === 401) { location.reload(); throw new Error("signed out"); }
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.text();
    }).then(function (html) {
      var kept = typed(), open = [];
      view.querySelectorAll("details[open]").forEach(function (d) { open.push(place(d)); });
      view.innerHTML = html;
      restore(kept, open);
      document.body.setAttribute("data-refreshed", String(Date.now()));
    }).catch(function () {
      // The view could not be fetched (the controller busy, a review unavailable): try
      // again shortly, or the page would stay stale until the next change.
      again = false;
      setTimeout(refresh, 2000);
    }).then(function () {
      busy = false;
      if (again) { again = false; refresh(); }
    });
  }
  var source = view && view.getAttribute("data-live");
  if (source && window.EventSource) {
    var events = new EventSource(source), opened = false;
    events.addEventListener("open", function () {
      mark("on", "live");
      if (opened) { refresh(); }  // reconnected: catch up on what the gap missed
      opened = true;
    });
    events.addEventListener("changed", refresh);
    events.addEventListener("error", function () { mark("off", "reconnecting…"); });
  }
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form || !form.hasAttribute("data-async") || !window.fetch) { return; }
    event.preventDefault();
    var buttons = form.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    fetch(form.action, {
      method: "POST", body: new FormData(form), credentials: "same-origin",
      headers: { "X-Blockflow-Fragment": "1" }
    }).then(function (response) {
      return response.text().then(function (text) {
        flash(response.ok ? "ok" : "bad", text);
        buttons.forEach(function (b) { b.disabled = false; });
        refresh();
      });
    }).catch(function () {
      flash("bad", "The controller could not be reached; nothing was changed.");
      buttons.forEach(function (b) { b.disabled = false; });
    });
  });
})();
"""


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


#: The Content-Security-Policy of every page: only the inline style and script above, fetches
#: and the event stream to this origin, no frames (clickjacking), no plugins, no base tag.
CSP = "; ".join(
    [
        "default-src 'none'",
        f"style-src {_hash(CSS)}",
        f"script-src {_hash(JS)}",
        "connect-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)
