// The review console's pages: live queue, keyboard-only work, reviews through the JSON API.
// One key table per page (KEYS) drives both the handlers and the help overlay (?).
"use strict";
const Triage = (() => {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const pageNonce = (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2));
  let KEYS = [];

  async function api(method, path, body, idemKey) {
    const headers = {"x-csrftoken": csrf, "Accept": "application/json"};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (idemKey) headers["Idempotency-Key"] = idemKey;
    const res = await fetch(path, {method, headers, credentials: "same-origin",
                                   body: body === undefined ? undefined : JSON.stringify(body)});
    if (res.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname); }
    let data = null;
    try { data = await res.json(); } catch (e) { data = {detail: res.statusText}; }
    return {ok: res.ok, status: res.status, data};
  }

  function toast(message, bad) {
    const el = document.getElementById("toast");
    el.textContent = message;
    el.className = "show" + (bad ? " bad" : "");
    clearTimeout(el._t);
    el._t = setTimeout(() => { el.className = ""; }, bad ? 6000 : 2500);
  }

  function esc(s) {
    return String(s ?? "").replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  }

  function slaText(deadline) {
    if (!deadline) return {text: "–", late: false};
    const s = Math.round((new Date(deadline) - Date.now()) / 1000);
    const a = Math.abs(s), h = Math.floor(a / 3600), m = Math.floor((a % 3600) / 60), sec = a % 60;
    const t = (h ? h + "h " : "") + (h || m ? m + "m " : "") + (h ? "" : sec + "s");
    return {text: s < 0 ? "late " + t : t, late: s < 0};
  }

  function tickSla() {
    document.querySelectorAll("[data-deadline]").forEach(el => {
      const {text, late} = slaText(el.dataset.deadline);
      el.textContent = el.dataset.deadline ? (el.tagName === "TD" ? text : "SLA " + text) : "";
      el.classList.toggle("late", late);
    });
  }

  function bindKeys(keys) {
    KEYS = keys;
    const table = document.getElementById("help-keys");
    table.innerHTML = keys.map(([k, what]) => `<tr><td><kbd>${esc(k)}</kbd></td><td>${esc(what)}</td></tr>`).join("")
      + `<tr><td><kbd>?</kbd></td><td>this list</td></tr>`;
    document.querySelector("[data-help]")?.addEventListener("click", () => help(true));
    document.addEventListener("keydown", ev => {
      const help_ = document.getElementById("help");
      if (ev.key === "Escape") { help(false); if (document.activeElement) document.activeElement.blur(); return; }
      const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(ev.target.tagName);
      if (typing && !(ev.key === "Enter" && (ev.ctrlKey || ev.metaKey))) return;
      if (ev.key === "?") { help(help_.hidden); ev.preventDefault(); return; }
      const name = (ev.ctrlKey || ev.metaKey) && ev.key === "Enter" ? "Ctrl+Enter" : ev.key;
      const hit = KEYS.find(([k]) => k === name);
      if (hit && !ev.altKey) { ev.preventDefault(); hit[2](ev); }
    });
  }

  function help(show) { document.getElementById("help").hidden = !show; }

  function filters(form) {
    const q = new URLSearchParams();
    new FormData(form).forEach((v, k) => { if (v !== "") q.set(k, v); });
    return q;
  }

  // ---- the queue -----------------------------------------------------------------------------------------
  function queuePage() {
    const form = document.getElementById("filters"), body = document.getElementById("rows");
    let items = [], selected = null;
    const saved = sessionStorage.getItem("queue-filters");
    if (saved) new URLSearchParams(saved).forEach((v, k) => { if (form.elements[k]) form.elements[k].value = v; });

    function render() {
      if (selected && !items.some(i => i.ticket_id === selected)) selected = null;
      if (!selected && items.length) selected = items[0].ticket_id;
      body.innerHTML = items.map(i => `<tr data-id="${esc(i.ticket_id)}" class="${i.ticket_id === selected ? "selected" : ""}">
        <td data-deadline="${esc(i.sla_deadline || "")}"></td>
        <td><a href="/tickets/${encodeURIComponent(i.ticket_id)}">${esc(i.ticket_id)}</a></td>
        <td><span class="route route-${esc(i.route)}">${esc(i.route)}</span></td>
        <td>${esc(i.intent || "–")}${i.abstained ? " <em>(unsure)</em>" : ""}</td>
        <td>${i.intent_confidence == null ? "–" : Math.round(i.intent_confidence * 100) + "%"}</td>
        <td>${esc(i.urgency || "–")}</td><td>${esc(i.channel)}</td><td>${esc(i.claimed_by || "")}</td>
        <td class="preview">${esc(i.preview)}</td></tr>`).join("");
      document.getElementById("count").textContent = `(${items.length})`;
      document.getElementById("empty").hidden = items.length > 0;
      tickSla();
      body.querySelector("tr.selected")?.scrollIntoView({block: "nearest"});
    }

    async function load() {
      const q = filters(form);
      sessionStorage.setItem("queue-filters", q.toString());
      const r = await api("GET", "/api/queue?" + q.toString());
      if (r.ok) { items = r.data.items; render(); }
    }

    function move(step) {
      if (!items.length) return;
      const at = Math.max(0, items.findIndex(i => i.ticket_id === selected));
      selected = items[Math.min(items.length - 1, Math.max(0, at + step))].ticket_id;
      render();
    }
    const open = () => { if (selected) location.href = "/tickets/" + encodeURIComponent(selected); };

    body.addEventListener("click", ev => { const tr = ev.target.closest("tr"); if (tr) { selected = tr.dataset.id; render(); } });
    form.addEventListener("change", load);
    bindKeys([
      ["j", "next ticket", () => move(1)],
      ["k", "previous ticket", () => move(-1)],
      ["o", "open the ticket", open],
      ["Enter", "open the ticket", open],
      ["c", "claim and open", async () => {
        if (!selected) return;
        const r = await api("POST", `/api/tickets/${encodeURIComponent(selected)}/claim`);
        if (r.ok) open(); else toast(r.data.detail, true);
      }],
      ["b", "bulk review", () => { location.href = "/bulk"; }],
    ]);
    load();
    setInterval(load, 3000);
    setInterval(tickSla, 1000);
  }

  // ---- one ticket ----------------------------------------------------------------------------------------
  function ticketPage(t) {
    const id = t.ticket_id, reply = document.getElementById("reply");
    const val = sel => document.getElementById(sel)?.value || null;

    async function next() {
      const r = await api("GET", "/api/queue?claimed=no");
      const n = r.ok ? r.data.items.find(i => i.ticket_id !== id) : null;
      location.href = n ? "/tickets/" + encodeURIComponent(n.ticket_id) : "/";
    }

    async function claim(quiet) {
      const r = await api("POST", `/api/tickets/${encodeURIComponent(id)}/claim`);
      if (!r.ok) { toast(r.data.detail, true); return false; }
      document.getElementById("claim-status").textContent = `Claimed by you until ${new Date(r.data.expires_at).toLocaleTimeString()}.`;
      if (!quiet) toast("Claimed");
      return true;
    }

    async function review(kind, extra) {
      if (!t.open) { toast("This ticket was reviewed already.", true); return; }
      if (!(await claim(true))) return;
      const body = {kind, comment: val("comment") || "", ...extra};
      const r = await api("POST", `/api/tickets/${encodeURIComponent(id)}/review`, body, `${id}:${kind}:${pageNonce}`);
      if (!r.ok) { toast(r.data.detail, true); return; }
      t.open = false;
      toast(`${kind} saved` + (r.data.reply_action_key ? "; reply queued for delivery" : ""));
      setTimeout(next, 400);
    }

    const approve = () => {
      const labels = {intent: val("intent"), urgency: val("urgency")};
      const text = reply.value.trim();
      const changed = labels.intent || labels.urgency;
      review(changed ? "correct" : "confirm", {...labels, reply: text ? text : null});
    };

    async function why() {
      const box = document.getElementById("salience");
      box.textContent = "Computing…";
      const r = await api("GET", `/api/tickets/${encodeURIComponent(id)}/salience`);
      if (!r.ok) { box.textContent = r.data.detail; return; }
      const top = Math.max(0.0001, ...r.data.words.map(w => w.salience));
      box.innerHTML = `For <b>${esc(r.data.label)}</b> (${Math.round(r.data.probability * 100)}%): ` +
        r.data.words.map(w => w.salience > 0
          ? `<mark style="--w:${(0.15 + 0.6 * w.salience / top).toFixed(2)}" title="${(w.salience * 100).toFixed(1)} pts">${esc(w.word)}</mark>`
          : esc(w.word)).join(" ");
    }

    document.querySelectorAll("[data-act]").forEach(b => b.addEventListener("click", () => acts[b.dataset.act]()));
    document.getElementById("why").addEventListener("click", why);
    const acts = {
      claim: () => claim(false),
      approve,
      edit: () => { reply.focus(); reply.setSelectionRange(reply.value.length, reply.value.length); },
      relabel: () => {
        const intent = val("intent"), urgency = val("urgency");
        if (!intent && !urgency) { toast("Pick the right intent or urgency first.", true); document.getElementById("intent")?.focus(); return; }
        review("correct", {intent, urgency});
      },
      reroute: () => review("reroute", {route: val("route")}),
      escalate: () => review("escalate", {route: "escalate"}),
      release: async () => { const r = await api("POST", `/api/tickets/${encodeURIComponent(id)}/release`); toast(r.ok ? "Released" : r.data.detail, !r.ok); },
    };
    bindKeys([
      ["c", "claim", acts.claim],
      ["a", "approve the reply (with any relabel picked)", acts.approve],
      ["e", "edit the reply (Ctrl+Enter approves it)", acts.edit],
      ["Ctrl+Enter", "approve the reply", acts.approve],
      ["i", "pick the right intent", () => document.getElementById("intent")?.focus()],
      ["u", "pick the right urgency", () => document.getElementById("urgency")?.focus()],
      ["l", "relabel (send the picked intent/urgency, no reply)", acts.relabel],
      ["r", "reroute to the picked route", () => { const s = document.getElementById("route"); if (document.activeElement === s) acts.reroute(); else s?.focus(); }],
      ["x", "escalate", acts.escalate],
      ["w", "show the words that drove the intent", why],
      ["n", "next unclaimed ticket", next],
      ["q", "back to the queue", () => { location.href = "/"; }],
    ]);
    tickSla();
    setInterval(tickSla, 1000);
  }

  // ---- bulk ----------------------------------------------------------------------------------------------
  function bulkPage() {
    const form = document.getElementById("bulk-filters"), body = document.getElementById("bulk-rows");
    let items = [], cursor = 0;
    function render() {
      body.innerHTML = items.map((i, n) => `<tr data-id="${esc(i.ticket_id)}" class="${n === cursor ? "selected" : ""}">
        <td><input type="checkbox" ${i._on ? "checked" : ""} aria-label="select ${esc(i.ticket_id)}"></td>
        <td><a href="/tickets/${encodeURIComponent(i.ticket_id)}">${esc(i.ticket_id)}</a></td>
        <td>${i.intent_confidence == null ? "–" : Math.round(i.intent_confidence * 100) + "%"}</td>
        <td class="preview">${esc(i.preview)}</td><td class="preview">${esc(i.draft || "(no draft: confirm only)")}</td></tr>`).join("");
      document.getElementById("bulk-count").textContent = `${items.filter(i => i._on).length} of ${items.length} selected`;
    }
    async function load() {
      const q = filters(form);
      if (!q.get("intent")) { items = []; render(); return; }
      q.set("claimed", "no");
      const r = await api("GET", "/api/queue?" + q.toString());
      if (r.ok) { items = r.data.items.map(i => ({...i, _on: true})); cursor = 0; render(); }
    }
    async function approveAll() {
      const chosen = items.filter(i => i._on);
      let done = 0, failed = 0;
      for (const i of chosen) {
        const c = await api("POST", `/api/tickets/${encodeURIComponent(i.ticket_id)}/claim`);
        const r = c.ok ? await api("POST", `/api/tickets/${encodeURIComponent(i.ticket_id)}/review`,
          {kind: "confirm", reply: i.draft || null}, `${i.ticket_id}:bulk-confirm:${pageNonce}`) : c;
        if (r.ok) done++; else failed++;
      }
      toast(`${done} approved` + (failed ? `, ${failed} refused (claimed or reviewed by someone else)` : ""), failed > 0);
      load();
    }
    body.addEventListener("change", ev => { const tr = ev.target.closest("tr"); const i = items.find(x => x.ticket_id === tr.dataset.id); i._on = ev.target.checked; render(); });
    document.getElementById("all").addEventListener("change", ev => { items.forEach(i => { i._on = ev.target.checked; }); render(); });
    document.getElementById("approve-all").addEventListener("click", approveAll);
    form.addEventListener("change", load);
    bindKeys([
      ["j", "next row", () => { cursor = Math.min(items.length - 1, cursor + 1); render(); }],
      ["k", "previous row", () => { cursor = Math.max(0, cursor - 1); render(); }],
      [" ", "select or unselect the row", () => { if (items[cursor]) { items[cursor]._on = !items[cursor]._on; render(); } }],
      ["A", "approve every selected ticket", approveAll],
      ["i", "pick the intent", () => form.elements.intent.focus()],
      ["q", "back to the queue", () => { location.href = "/"; }],
    ]);
    load();
  }

  return {api, queuePage, ticketPage, bulkPage, slaText};
})();
