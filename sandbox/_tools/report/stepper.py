"""The stepping view: the run message by message, with the books and accounts at each step (inline script, allowed by its hash)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, Final, Sequence


from sandbox._tools.plain import plain

from sandbox._tools.report.axis import fmt_time
from sandbox._tools.report.recording import Recording, _merge_steps
from sandbox._tools.report.rows import Arrow, Row


# --- the stepping view ---------------------------------------------------------------------------

# At most this many narrated sentences are listed for one step.
_STEP_SAID: Final = 8
# At most this many accounts are shown as involved in one step.
_STEP_ACCOUNTS: Final = 6


def _plain_data(value: Any) -> Any:
    """Every string in a JSON-able value, keys too, made plain (see :func:`plain`)."""
    if isinstance(value, str):
        return plain(value)
    if isinstance(value, dict):
        return {plain(k): _plain_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_data(v) for v in value]
    return value


def step_data(rec: Recording, rows: Sequence[Row]) -> dict[str, Any]:
    """What the stepping view steps through: one step per row of the sequence diagram.

    A row is a message (or ×N identical ones) or a run of messages not
    drawn; its step carries what the deliveries it stands for changed (see
    :meth:`Recorder._step`), merged, so stepping through the rows of a cut
    diagram still reaches every state, the last one included. ``id`` is the
    SVG id of the row's arrow or gap, which the page highlights.
    """
    steps = []
    cursor = 0
    gaps = 0
    for row in rows:
        covered = rec.steps[cursor:cursor + row.count]
        cursor += row.count
        delta = _merge_steps(covered) or {}
        involved = delta.pop("involved", [])
        said = delta.pop("said", [])
        if isinstance(row, Arrow):
            d = row.first
            ident = f"seq-msg{d.index}"
            head = (f"#{d.index} at t = {fmt_time(d.time_ms)}: {d.sender} → {d.recipient}: {d.type}"
                    + (f" ({row.detail})" if row.detail else "") + (f", {row.count} times" if row.count > 1 else ""))
        else:
            ident = f"seq-gap{gaps}"
            gaps += 1
            head = row.label()
        if len(said) > _STEP_SAID:
            said = said[:_STEP_SAID] + [f"… and {len(said) - _STEP_SAID} more"]
        steps.append({"id": ident, "head": head, "said": said, "involved": involved[:_STEP_ACCOUNTS],
                      "more": max(0, len(involved) - _STEP_ACCOUNTS), "d": delta})
    return _plain_data({"steps": steps})


_STEP_JS: Final = """
(function () {
  "use strict";
  // The script comes before the diagram it highlights: start once the whole page is parsed.
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
  function start() {
  var data = JSON.parse(document.getElementById("step-data").textContent);
  var steps = data.steps, n = steps.length;
  var $ = function (id) { return document.getElementById(id); };
  var slider = $("step-slider"), play = $("step-play");
  var current = -1, timer = null;
  if (!n) { return; }
  function stateAt(k) {
    var s = {books: {}, accounts: {}, marks: {}, fund: {}};
    for (var i = 0; i <= k; i++) {
      var d = steps[i].d;
      for (var part in d) { for (var key in d[part]) { s[part][key] = d[part][key]; } }
    }
    return s;
  }
  function cell(row, text, cls) {
    var td = document.createElement(row.parentNode && row.parentNode.tagName === "THEAD" ? "th" : "td");
    td.textContent = text;
    if (cls) { td.className = cls; }
    row.appendChild(td);
  }
  function levels(list) {
    return list.length ? list.map(function (l) { return l[0] + " × " + l[1]; }).join("\\n") : "none";
  }
  function mark(id, on) {
    [id, id + "-label"].forEach(function (x) {
      var el = $(x);
      if (el) { el.classList.toggle("current", on); }
    });
  }
  function show(k, scroll) {
    k = Math.max(0, Math.min(n - 1, k));
    if (current >= 0) { mark(steps[current].id, false); }
    current = k;
    var st = steps[k], s = stateAt(k), d = st.d;
    mark(st.id, true);
    slider.value = String(k);
    $("step-count").textContent = "step " + (k + 1) + " of " + n;
    $("step-head").textContent = st.head;
    var said = $("step-said");
    said.textContent = "";
    st.said.forEach(function (x) { var li = document.createElement("li"); li.textContent = x; said.appendChild(li); });
    if (!st.said.length) { var li = document.createElement("li"); li.className = "none"; li.textContent = "(no event narrated)"; said.appendChild(li); }
    var books = $("step-books");
    books.textContent = "";
    Object.keys(s.books).forEach(function (m) {
      var tr = document.createElement("tr");
      books.appendChild(tr);
      cell(tr, m, d.books && d.books[m] ? "changed" : "");
      cell(tr, levels(s.books[m].buy), "num");
      cell(tr, levels(s.books[m].sell), "num");
    });
    var accts = $("step-accounts");
    accts.textContent = "";
    st.involved.forEach(function (a) {
      var v = s.accounts[a];
      if (!v) { return; }
      var tr = document.createElement("tr");
      tr.setAttribute("data-account", a);
      accts.appendChild(tr);
      var changed = d.accounts && d.accounts[a] ? "changed" : "";
      cell(tr, a, changed);
      for (var i = 0; i < 3; i++) { cell(tr, v[i], "num " + changed); }
      cell(tr, v[3], changed);
    });
    $("step-accounts-more").textContent = st.more ? "and " + st.more + " more" : (st.involved.length ? "" : "none in this step");
    var f = s.fund.fund || ["", "", ""];
    $("step-fund-balance").textContent = f[0];
    $("step-fund-reserved").textContent = f[1];
    $("step-fund-available").textContent = f[2];
    $("step-fund").className = d.fund ? "changed" : "";
    $("step-marks").textContent = Object.keys(s.marks).map(function (m) { return m + " " + s.marks[m]; }).join(" · ");
    $("step-marks").className = d.marks ? "changed" : "";
    if (scroll) {
      var el = $(st.id);
      if (el && el.scrollIntoView) { el.scrollIntoView({block: "center", inline: "nearest"}); }
    }
  }
  function stop() {
    if (timer !== null) { clearInterval(timer); timer = null; }
    play.textContent = "▶ play";
    play.setAttribute("aria-pressed", "false");
  }
  function toggle() {
    if (timer !== null) { stop(); return; }
    if (current >= n - 1) { show(0, true); }
    play.textContent = "❚❚ pause";
    play.setAttribute("aria-pressed", "true");
    timer = setInterval(function () { if (current >= n - 1) { stop(); } else { show(current + 1, true); } }, 800);
  }
  $("step-first").addEventListener("click", function () { stop(); show(0, true); });
  $("step-prev").addEventListener("click", function () { stop(); show(current - 1, true); });
  $("step-next").addEventListener("click", function () { stop(); show(current + 1, true); });
  $("step-last").addEventListener("click", function () { stop(); show(n - 1, true); });
  play.addEventListener("click", toggle);
  slider.addEventListener("input", function () { stop(); show(parseInt(slider.value, 10), true); });
  document.addEventListener("keydown", function (e) {
    if (e.target === slider || e.altKey || e.ctrlKey || e.metaKey) { return; }
    var keys = {ArrowRight: function () { stop(); show(current + 1, true); },
                ArrowLeft: function () { stop(); show(current - 1, true); },
                Home: function () { stop(); show(0, true); }, End: function () { stop(); show(n - 1, true); },
                " ": toggle};
    if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
  });
  slider.max = String(n - 1);
  $("stepper").hidden = false;
  show(0, false);
  }
})();
"""
# The page's one script, allowed by its hash and nothing else (see _CSP).
_STEP_JS_HASH: Final = "sha256-" + base64.b64encode(hashlib.sha256(_STEP_JS.encode()).digest()).decode()


def _json_for_html(value: Any) -> str:
    """JSON to put inside <script type="application/json">: no "<", ">" or "&" that could end the element."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def stepper_html(rec: Recording, rows: Sequence[Row]) -> str:
    """The stepping view: controls, the message of the step, and the state it changed; data and script."""
    data = step_data(rec, rows)
    n = len(data["steps"])
    return "".join([
        '<div id="stepper" class="stepper" hidden>',
        '<div class="controls">',
        '<button type="button" id="step-first" title="first step (Home)">« first</button>',
        '<button type="button" id="step-prev" title="previous step (←)">◀ prev</button>',
        '<button type="button" id="step-play" title="play or pause (space)" aria-pressed="false">▶ play</button>',
        '<button type="button" id="step-next" title="next step (→)">next ▶</button>',
        '<button type="button" id="step-last" title="last step (End)">last »</button>',
        f'<input type="range" id="step-slider" min="0" max="{max(n - 1, 0)}" value="0" aria-label="step">',
        '<span id="step-count"></span></div>',
        '<p id="step-head" class="step-head"></p>',
        '<ul id="step-said" class="step-said"></ul>',
        '<div class="step-state">',
        '<div><h3>Books (best 3 levels: price × size)</h3><table><thead><tr><th>market</th><th>bids</th>'
        '<th>asks</th></tr></thead><tbody id="step-books"></tbody></table></div>',
        '<div><h3>Accounts involved</h3><table><thead><tr><th>account</th><th>balance</th><th>equity</th>'
        '<th>maint. margin</th><th>positions</th></tr></thead><tbody id="step-accounts"></tbody></table>'
        '<p id="step-accounts-more" class="note"></p></div>',
        '<div><h3>Insurance fund (ETH)</h3><p id="step-fund">balance <b id="step-fund-balance"></b> · '
        'reserved <b id="step-fund-reserved"></b> · available <b id="step-fund-available"></b></p>'
        '<h3>Mark prices (ETH)</h3><p id="step-marks"></p></div>',
        "</div></div>",
        '<noscript><p class="note">The stepping view needs JavaScript; the diagram below shows every step.</p>'
        "</noscript>",
        f'<script type="application/json" id="step-data">{_json_for_html(data)}</script>',
        f"<script>{_STEP_JS}</script>",
    ])
