// The cairn dashboard: every number on the page comes from the public HTTP
// API v1 of the node that served it (docs/API.md), fetched with the
// credentials the user signed in with, every 2 s.
"use strict";
(function () {
  const REFRESH_MS = 2000;
  const PAGE = 20;
  const AUTH_KEY = "cairn.auth";
  const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"];
  const $ = (id) => document.getElementById(id);

  // ApiError is an answer that was not 2xx, with the API's error code.
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // ---- credentials (sessionStorage: gone when the tab closes) ----
  function loadAuth() {
    try { return JSON.parse(sessionStorage.getItem(AUTH_KEY) || "null"); } catch (e) { return null; }
  }
  function authHeader() {
    const a = loadAuth();
    if (!a) return null;
    if (a.kind === "bearer") return "Bearer " + a.secret;
    const bytes = new TextEncoder().encode(a.user + ":" + a.secret);
    let bin = "";
    bytes.forEach((c) => { bin += String.fromCharCode(c); });
    return "Basic " + btoa(bin);
  }

  // api fetches a path of the API. credentials "omit": the browser adds no
  // cookie and shows no login prompt of its own on a 401; the page sends
  // the Authorization header itself.
  async function api(path, opts) {
    opts = opts || {};
    const headers = Object.assign({}, opts.headers || {});
    const h = opts.noAuth ? null : authHeader();
    if (h) headers["Authorization"] = h;
    let resp;
    try {
      resp = await fetch(path, { method: opts.method || "GET", body: opts.body, headers: headers, credentials: "omit", cache: "no-store", signal: opts.signal });
    } catch (e) {
      throw new ApiError(0, "unreachable", "no answer from " + path + " (" + e.message + ")");
    }
    if (!resp.ok && !opts.raw) {
      let code = "http_" + resp.status, msg = resp.status + " " + resp.statusText;
      try {
        const j = await resp.json();
        if (j && j.error) { code = j.error.code || code; msg = j.error.message || msg; }
      } catch (e) { /* not JSON */ }
      const err = new ApiError(resp.status, code, msg);
      if (resp.status === 401) state.unauthenticated = err;
      throw err;
    }
    if (resp.status === 401) state.unauthenticated = new ApiError(401, "unauthenticated", path + " needs credentials");
    return resp;
  }
  async function apiJSON(path, opts) { return (await api(path, opts)).json(); }

  // describe turns an error into what the user should read: a 401 or 403
  // says to sign in or that the identity lacks the permission.
  function describe(e) {
    if (!(e instanceof ApiError)) return String(e && e.message || e);
    if (e.status === 401) return (loadAuth() ? "Sign-in refused (401): " : "Sign in: this cluster needs credentials (401): ") + e.message;
    if (e.status === 403) return "Not allowed for " + (state.identity || "this identity") + " (403): " + e.message;
    return e.message + (e.status ? " (" + e.status + " " + e.code + ")" : "");
  }

  // encodeKey percent-encodes a key for a /v1/kv/ path, slashes included
  // (%2F means a slash to the API), so that no part of it is a dot segment
  // the browser would fold away.
  function encodeKey(key) {
    if (key === "." || key === "..") throw new Error("the key " + JSON.stringify(key) + " cannot be sent from a browser (it folds dot segments); use the CLI");
    return encodeURIComponent(key);
  }

  // ---- small DOM helpers ----
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const k of kids) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return e;
  }
  function showError(id, e) {
    const box = $(id);
    if (!e) { box.hidden = true; box.textContent = ""; return; }
    box.hidden = false;
    box.textContent = typeof e === "string" ? e : describe(e);
  }
  const dash = "—";
  const fmt = (v) => (v === undefined || v === null ? dash : String(v));

  const state = {
    identity: null,
    status: null,
    members: [],
    memberStatus: {}, // name -> {status, at} read from the member itself
    corsBlocked: {}, // client URL -> time of the last failed cross-origin read
    ring: null, ringKey: "", ringCache: null, keyInfo: null,
    prevScrape: null,
    keys: { prefix: "", starts: [""], items: [], more: false },
    selected: null,
    busy: false,
    unauthenticated: null, // a 401 seen during this refresh
  };

  // ---- sign in ----
  function showLogin() {
    const a = loadAuth();
    $("logout").hidden = !a;
    $("login").hidden = !!a;
    const bearer = $("login-kind").value === "bearer";
    $("login-user").hidden = bearer;
    $("login-secret").placeholder = bearer ? "token" : "password";
  }
  async function whoami() {
    try {
      const w = await apiJSON("/v1/auth/whoami");
      state.identity = w.identity || "anonymous";
      $("identity").textContent = w.identity ? "signed in as " + w.identity + " (" + w.via + ")" : "anonymous (not signed in)";
      return true;
    } catch (e) {
      state.identity = null;
      $("identity").textContent = "";
      banner(describe(e));
      return false;
    }
  }
  $("login-kind").addEventListener("change", showLogin);
  $("login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const kind = $("login-kind").value, user = $("login-user").value, secret = $("login-secret").value;
    if (!secret || (kind === "basic" && !user)) { banner(kind === "basic" ? "Give a user name and a password." : "Give a token."); return; }
    sessionStorage.setItem(AUTH_KEY, JSON.stringify({ kind: kind, user: user, secret: secret }));
    $("login-secret").value = "";
    if (!(await whoami())) { sessionStorage.removeItem(AUTH_KEY); showLogin(); return; }
    banner(null);
    showLogin();
    refresh();
  });
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(AUTH_KEY);
    showLogin();
    whoami();
    refresh();
  });

  let bannerText = null;
  function banner(text) {
    bannerText = text;
    $("banner").hidden = !text;
    $("banner").textContent = text || "";
  }

  // ---- members ----
  function sameOrigin(url) {
    try { return new URL(url).origin === location.origin; } catch (e) { return false; }
  }
  // readMember asks a member for its own status: directly when it is this
  // origin, otherwise cross-origin, which a member allows for the client
  // URLs of the cluster's members (not when it has no quorum to list them);
  // a failed cross-origin read is not tried again for 60 s.
  async function readMember(m) {
    if (!m.client_url) return;
    if (sameOrigin(m.client_url)) return; // this node: refresh reads it already
    const last = state.corsBlocked[m.client_url];
    if (last && Date.now() - last < 60000) return;
    try {
      const ctl = new AbortController();
      const t = setTimeout(() => ctl.abort(), 1500);
      // Without the credentials: the status needs none, and they are for
      // this origin only.
      const s = await apiJSON(m.client_url.replace(/\/$/, "") + "/v1/cluster/status", { signal: ctl.signal, noAuth: true });
      clearTimeout(t);
      state.memberStatus[m.name] = { status: s, at: Date.now() };
    } catch (e) {
      state.corsBlocked[m.client_url] = Date.now();
      delete state.memberStatus[m.name];
    }
  }

  function renderMembers() {
    const st = state.status, tbody = $("members").querySelector("tbody");
    tbody.replaceChildren();
    if (!st) return;
    const health = st.health || {};
    let leaderCommit = 0;
    for (const m of state.members) {
      const s = m.name === st.name ? st : (state.memberStatus[m.name] || {}).status;
      if (s && s.state === "leader") leaderCommit = s.commit_index;
    }
    if (!leaderCommit) leaderCommit = st.commit_index;
    let unread = 0;
    for (const m of state.members) {
      const self = m.name === st.name;
      const s = self ? st : (state.memberStatus[m.name] || {}).status;
      const h = health[m.name];
      let up = "unknown";
      if (self || s) up = "up";
      else if (h === "damaged") up = "down";
      else if (h === "healthy") up = "up";
      else if (h === "validating") up = "validating";
      const leader = m.name === st.leader || m.leader;
      const stateText = s ? s.state : (up === "down" ? "down" : (leader ? "leader" : (m.voter ? "follower" : "learner")));
      if (!s) unread++;
      const lag = s ? Math.max(0, leaderCommit - s.applied_index) : null;
      const link = !m.client_url ? dash : /^https?:\/\//i.test(m.client_url) ?
        el("a", { href: m.client_url.replace(/\/$/, "") + "/ui/", text: m.client_url }) : m.client_url;
      const tr = el("tr", { "data-name": m.name, "data-up": up, "data-leader": leader ? "true" : "false", "data-read": s ? "true" : "false", class: up === "down" ? "down" : (leader ? "leader" : "") },
        el("td", {}, m.name, self ? el("span", { class: "tag", text: "this node" }) : null),
        el("td", { class: "state" }, stateText),
        el("td", {}, m.voter ? "voter" : "learner"),
        el("td", { class: "health health-" + up }, up + (h && h !== "self" ? " (" + h + ")" : "")),
        el("td", {}, s ? fmt(s.term) : dash),
        el("td", {}, s ? fmt(s.commit_index) : dash),
        el("td", {}, s ? fmt(s.applied_index) : dash),
        el("td", {}, lag === null ? dash : String(lag)),
        el("td", {}, s ? (s.state === "leader" ? "leader" : fmt(s.last_contact_ms) + " ms") : dash),
        el("td", {}, link));
      tbody.append(tr);
    }
    const lead = st.leader ? "leader: " + st.leader + ", term " + st.term : "no leader";
    $("leader").textContent = lead + " · revision " + st.revision;
    $("leader").className = st.leader ? "muted" : "error-text";
    $("members-note").textContent = unread ?
      "Health is what " + st.name + "'s failure detector sees. A member that cannot be read from here (down, or without quorum to list the members it lets read its status) shows — for its Raft indices: open its dashboard from its client URL." : "";
    renderMirrors(st.mirrors);
  }

  function renderMirrors(mirrors) {
    const box = $("mirrors");
    box.replaceChildren();
    if (!mirrors || !Object.keys(mirrors).length) return;
    const rows = [];
    const list = Array.isArray(mirrors) ? mirrors : Object.entries(mirrors).map(([p, m]) => Object.assign({ prefix: p }, m));
    for (const m of list) {
      // Zero counts are left out of the JSON (omitempty).
      const progress = m.mode === "eventual" ? (m.outbox || 0) + " queued" + (m.outbox_overflow ? ", " + m.outbox_overflow + " not queued" : "") :
        "at revision " + (m.cursor || 0) + ", " + (m.behind || 0) + " behind";
      rows.push(el("tr", { "data-prefix": m.prefix }, el("td", {}, JSON.stringify(m.prefix)), el("td", {}, fmt(m.bucket)), el("td", {}, fmt(m.mode)),
        el("td", {}, m.active ? "active" : "idle"), el("td", { class: "progress" }, progress), el("td", {}, (m.puts || 0) + " / " + (m.deletes || 0)),
        el("td", {}, fmt(m.last_copy)), el("td", { class: m.last_error ? "error-text" : "" }, m.last_error ? m.last_error + " (" + m.last_error_at + ")" : dash)));
    }
    box.append(el("h3", { text: "Backup mirrors on this node" }),
      el("table", {}, el("thead", {}, el("tr", {}, ...["prefix", "bucket", "mode", "", "progress", "puts / deletes", "last copy", "last error"].map((h) => el("th", { text: h })))), el("tbody", {}, ...rows)));
  }

  // ---- ring ----
  // buildRing places every member's vnodes tokens as the server does:
  // token i of member m is xxhash64("m#i"), members sorted by name, a
  // collision kept by the name that sorts first.
  function buildRing(names, vnodes) {
    const ms = [...new Set(names)].sort();
    const key = ms.join("\u0000") + "/" + vnodes;
    if (state.ringCache && state.ringCache.key === key) return state.ringCache;
    const toks = [];
    ms.forEach((m, mi) => { for (let i = 0; i < vnodes; i++) toks.push({ h: xxh64String(m + "#" + i), m: mi }); });
    toks.sort((a, b) => (a.h < b.h ? -1 : a.h > b.h ? 1 : a.m - b.m));
    const tokens = [], owner = [];
    toks.forEach((t, i) => { if (i === 0 || t.h !== toks[i - 1].h) { tokens.push(t.h); owner.push(t.m); } });
    state.ringCache = { key: key, members: ms, tokens: tokens, owner: owner };
    return state.ringCache;
  }
  const TWO64 = 18446744073709551616;
  const frac = (h) => Number(h) / TWO64;
  // ownersAt is the preference list of a hash: the first n distinct
  // members clockwise from the first token >= h.
  function ownersAt(r, h, n) {
    let lo = 0, hi = r.tokens.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (r.tokens[mid] < h) lo = mid + 1; else hi = mid; }
    const out = [], k = r.tokens.length;
    for (let j = 0; j < k && out.length < n; j++) {
      const m = r.members[r.owner[(lo + j) % k]];
      if (!out.includes(m)) out.push(m);
    }
    return { index: lo % k, owners: out };
  }
  function pt(radius, f) {
    const a = f * 2 * Math.PI;
    return (radius * Math.sin(a)).toFixed(2) + " " + (-radius * Math.cos(a)).toFixed(2);
  }
  function sector(R, r0, f0, f1) {
    if (f1 - f0 >= 0.999999) { // the whole ring: two halves
      return sector(R, r0, 0, 0.5) + sector(R, r0, 0.5, 1);
    }
    const large = f1 - f0 > 0.5 ? 1 : 0;
    return "M" + pt(R, f0) + "A" + R + " " + R + " 0 " + large + " 1 " + pt(R, f1) +
      "L" + pt(r0, f1) + "A" + r0 + " " + r0 + " 0 " + large + " 0 " + pt(r0, f0) + "Z";
  }
  const NS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }
  function color(r, name) { return COLORS[r.members.indexOf(name) % COLORS.length]; }

  let ringDrawn = "";
  function renderRing() {
    const info = state.ring, box = $("ring");
    if (!info) return;
    const r = buildRing(info.members.map((m) => m.name), info.vnodes);
    const health = Object.fromEntries(info.members.map((m) => [m.name, m.health]));
    $("ring-summary").textContent = info.members.length + " members × " + info.vnodes + " virtual nodes";
    const legend = $("ring-legend");
    legend.replaceChildren(...info.members.map((m) => el("li", { "data-node": m.name },
      el("span", { class: "swatch" }), m.name + " · " + m.health + " · " + (100 * m.share).toFixed(1) + "% primary")));
    legend.querySelectorAll("li").forEach((li) => { li.firstChild.style.background = color(r, li.dataset.node); });
    const sig = r.key + "|" + JSON.stringify(health) + "|" + (state.keyInfo ? state.keyInfo.hash : "");
    if (sig === ringDrawn) return;
    ringDrawn = sig;
    // One path per member: its arcs (runs of tokens it owns, each arc the
    // hashes after the previous token up to its own) on the outer ring.
    const d = r.members.map(() => []);
    const k = r.tokens.length;
    let i = 0;
    while (i < k) {
      let j = i;
      while (j + 1 < k && r.owner[j + 1] === r.owner[i]) j++;
      const f0 = i === 0 ? 0 : frac(r.tokens[i - 1]), f1 = frac(r.tokens[j]);
      d[r.owner[i]].push(sector(150, 122, f0, f1));
      i = j + 1;
    }
    if (k) d[r.owner[0]].push(sector(150, 122, frac(r.tokens[k - 1]), 1)); // the arc that wraps past the top
    box.replaceChildren();
    r.members.forEach((m, mi) => {
      const p = svg("path", { d: d[mi].join(""), fill: color(r, m), class: "arc" + (health[m] === "damaged" ? " damaged" : ""), "data-node": m, "data-arcs": String(d[mi].length) });
      const t = svg("title", {});
      t.textContent = m + ": " + d[mi].length + " arcs (" + health[m] + ")";
      p.append(t);
      box.append(p);
    });
    // The inner ring: each member's share as one sector, for reading at a glance.
    let f = 0;
    for (const m of info.members) {
      if (m.share <= 0) continue;
      const p = svg("path", { d: sector(112, 84, f, Math.min(1, f + m.share)), fill: color(r, m.name), class: "share", "data-node": m.name });
      f += m.share;
      box.append(p);
    }
    const label = svg("text", { x: 0, y: 5, "text-anchor": "middle", class: "ring-label" });
    label.textContent = "2^64 hashes";
    box.append(label);
    if (state.keyInfo && state.keyInfo.hash) {
      const h = BigInt("0x" + state.keyInfo.hash);
      box.append(svg("line", { x1: 0, y1: 0, x2: pt(158, frac(h)).split(" ")[0], y2: pt(158, frac(h)).split(" ")[1], class: "key-marker" }));
      box.append(svg("circle", { cx: pt(150, frac(h)).split(" ")[0], cy: pt(150, frac(h)).split(" ")[1], r: 5, class: "key-dot" }));
    }
  }
  $("ring").addEventListener("mousemove", (ev) => {
    if (!state.ringCache || !state.ringCache.tokens.length) return;
    const b = $("ring").getBoundingClientRect();
    const x = ev.clientX - b.left - b.width / 2, y = ev.clientY - b.top - b.height / 2;
    let a = Math.atan2(x, -y); if (a < 0) a += 2 * Math.PI;
    const h = BigInt(Math.floor((a / (2 * Math.PI)) * 2 ** 53)) << 11n;
    const r = state.ringCache, at = ownersAt(r, h, Math.min(3, r.members.length));
    const k = r.tokens.length, prev = r.tokens[(at.index + k - 1) % k], end = r.tokens[at.index];
    $("ring-point").textContent = "range (" + prev.toString(16).padStart(16, "0") + ", " + end.toString(16).padStart(16, "0") +
      "]: owned by " + at.owners[0] + (at.owners.length > 1 ? ", then " + at.owners.slice(1).join(", ") : "");
  });
  $("ring-key-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    await placeKey($("ring-key").value);
  });
  async function placeKey(key) {
    const out = $("ring-key-result");
    out.replaceChildren();
    state.keyInfo = null;
    if (!key) { renderRing(); return; }
    try {
      const info = await apiJSON("/v1/ring?key=" + encodeURIComponent(key));
      state.keyInfo = info;
      const mine = xxh64String(key).toString(16).padStart(16, "0");
      const kids = [el("div", {}, "hash ", el("code", { id: "ring-key-hash", text: info.hash }), " · keyspace ", JSON.stringify(info.keyspace), " (" + info.mode + ")")];
      if (mine !== info.hash) kids.push(el("div", { class: "error-text", text: "this page hashes the key to " + mine + ": the picture of the ring may be wrong" }));
      if (info.mode === "eventual") {
        kids.push(el("div", { id: "ring-key-preference" }, info.replicas + " replicas: " + (info.preference || []).join(", ")));
      } else {
        kids.push(el("div", { text: "a strong key: every voter holds it (Raft); the ring places eventual keys only" }));
      }
      out.append(...kids);
    } catch (e) {
      out.append(el("div", { class: "error-text", text: describe(e) }));
    }
    ringDrawn = "";
    renderRing();
  }

  // ---- keyspaces ----
  function renderKeyspaces(list) {
    const tbody = $("keyspaces").querySelector("tbody");
    tbody.replaceChildren(...list.map((p) => {
      const rest = Object.entries(p).filter(([k]) => k !== "prefix" && k !== "mode").map(([k, v]) => k + ": " + (typeof v === "object" ? JSON.stringify(v) : v));
      return el("tr", { "data-prefix": p.prefix }, el("td", {}, p.prefix === "" ? el("em", { text: "(every other key)" }) : el("code", { text: p.prefix })),
        el("td", { class: "mode-" + p.mode, text: p.mode }), el("td", { class: "small", text: rest.join(" · ") || "defaults" }));
    }));
  }

  // ---- key browser ----
  async function listKeys() {
    const k = state.keys, after = k.starts[k.starts.length - 1];
    let path;
    try {
      path = "/v1/kv/" + (k.prefix ? encodeKey(k.prefix) : "") + "?list=true&keys_only=true&limit=" + PAGE + (after ? "&after=" + encodeURIComponent(after) : "");
    } catch (e) { showError("keys-error", e.message); return; }
    try {
      const res = await apiJSON(path);
      k.items = res.items || [];
      k.more = !!res.more;
      showError("keys-error", null);
    } catch (e) {
      k.items = [];
      k.more = false;
      showError("keys-error", e);
    }
    renderKeys();
  }
  function renderKeys() {
    const k = state.keys, tbody = $("keys").querySelector("tbody");
    tbody.replaceChildren(...k.items.map((it) => {
      const tr = el("tr", { "data-key": it.key, class: state.selected === it.key ? "selected" : "" },
        el("td", {}, el("a", { href: "#", class: "key-link", text: it.key })),
        el("td", { class: "small", text: it.timestamp ? it.timestamp + " @" + it.origin : "rev " + it.mod_revision + " · v" + it.version }),
        el("td", { class: "small", text: it.expires || "" }));
      return tr;
    }));
    $("page-next").disabled = !k.more;
    $("page-first").disabled = k.starts.length <= 1;
    $("keys-count").textContent = "page " + k.starts.length + ": " + k.items.length + " keys" + (k.more ? ", more" : "");
  }
  $("keys").addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr[data-key]");
    if (!tr) return;
    ev.preventDefault();
    showKey(tr.dataset.key);
  });
  $("search").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.keys = { prefix: $("prefix").value, starts: [""], items: [], more: false };
    listKeys();
  });
  $("page-next").addEventListener("click", () => {
    const k = state.keys;
    if (!k.items.length) return;
    k.starts.push(k.items[k.items.length - 1].key);
    listKeys();
  });
  $("page-first").addEventListener("click", () => { state.keys.starts = [""]; listKeys(); });

  function decodeValue(buf) {
    const bytes = new Uint8Array(buf);
    try {
      return { text: new TextDecoder("utf-8", { fatal: true }).decode(bytes), binary: false };
    } catch (e) {
      const hex = Array.from(bytes.slice(0, 4096), (b) => b.toString(16).padStart(2, "0")).join(" ");
      return { text: hex + (bytes.length > 4096 ? " …" : ""), binary: true };
    }
  }
  async function showKey(key) {
    state.selected = key;
    renderKeys();
    const view = $("value-view");
    view.replaceChildren(el("p", { class: "muted", text: "reading " + key + "…" }));
    let resp;
    try {
      resp = await api("/v1/kv/" + encodeKey(key));
    } catch (e) {
      view.replaceChildren(el("h3", {}, el("code", { text: key })), el("p", { class: "error-text", text: describe(e) }));
      return;
    }
    const v = decodeValue(await resp.arrayBuffer());
    const meta = [];
    resp.headers.forEach((val, name) => {
      if (name.startsWith("x-cairn-") || name === "etag" || name === "content-length") meta.push(el("tr", {}, el("th", { text: name }), el("td", { text: val })));
    });
    const del = el("button", { type: "button", id: "delete-key", text: "Delete" });
    del.addEventListener("click", async () => {
      if (del.dataset.armed !== "true") { del.dataset.armed = "true"; del.textContent = "Really delete " + key + "?"; return; }
      try {
        const r = await apiJSON("/v1/kv/" + encodeKey(key), { method: "DELETE" });
        view.replaceChildren(el("p", { id: "delete-result", text: "deleted " + key + " (" + r.deleted + " key" + (r.deleted === 1 ? "" : "s") + ")" }));
        state.selected = null;
        listKeys();
      } catch (e) {
        view.append(el("p", { class: "error-text", text: describe(e) }));
      }
    });
    const edit = el("button", { type: "button", text: "Edit" });
    edit.addEventListener("click", () => { $("put-key").value = key; $("put-value").value = v.binary ? "" : v.text; $("put-value").focus(); });
    const replicas = el("div", { id: "key-replicas", class: "small" });
    view.replaceChildren(el("h3", {}, el("code", { id: "value-key", text: key })),
      el("pre", { id: "value-body", class: v.binary ? "binary" : "" }, v.text),
      el("table", { class: "meta" }, el("tbody", {}, ...meta)), replicas, el("div", { class: "row" }, edit, del));
    if (resp.headers.get("x-cairn-mode") === "eventual") {
      try {
        const info = await apiJSON("/v1/ring?key=" + encodeURIComponent(key));
        const health = Object.fromEntries((info.members || []).map((m) => [m.name, m.health]));
        replicas.append("held by " + info.replicas + " replicas: ", ...(info.preference || []).map((n, i) =>
          el("span", { class: "tag health-" + (health[n] === "damaged" ? "down" : "up") }, (i + 1) + ". " + n + " (" + health[n] + ")")));
      } catch (e) {
        replicas.append(el("span", { class: "error-text", text: "replicas: " + describe(e) }));
      }
    } else {
      replicas.textContent = "strong key: replicated to every voter through Raft";
    }
  }
  $("put").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const key = $("put-key").value, ttl = $("put-ttl").value.trim(), out = $("put-result");
    out.className = "small";
    if (!key) { out.className = "small error-text"; out.textContent = "a key is needed"; return; }
    try {
      const r = await apiJSON("/v1/kv/" + encodeKey(key) + (ttl ? "?ttl=" + encodeURIComponent(ttl) : ""), { method: "PUT", body: $("put-value").value });
      out.textContent = "wrote " + key + (r.revision ? " at revision " + r.revision : " (" + r.acks + "/" + r.replicas + " acks)");
      out.dataset.key = key;
      listKeys();
      showKey(key);
    } catch (e) {
      out.className = "small error-text";
      out.textContent = describe(e);
    }
  });

  // ---- request rates from /metrics ----
  // FAMILIES are the series the rates come from, per front end: the
  // request counter (by outcome), the latency histogram, the requests
  // refused for the in-flight limit and the connections open.
  const FAMILIES = {
    HTTP: { total: "cairn_http_requests_total", hist: "cairn_http_request_duration_seconds", refused: "cairn_http_requests_refused_total", open: "cairn_http_connections_open" },
    RESP: { total: "cairn_resp_commands_total", hist: "cairn_resp_command_duration_seconds", refused: "cairn_resp_commands_refused_total", open: "cairn_resp_connections_open" },
  };
  // parseMetrics sums each front end's families over their labels.
  function parseMetrics(text) {
    const byName = {};
    for (const [fe, f] of Object.entries(FAMILIES)) for (const [k, n] of Object.entries(f)) byName[n] = [fe, k];
    const out = {};
    for (const line of text.split("\n")) {
      if (!line || line[0] === "#") continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
      if (!m) continue;
      let name = m[1], part = "";
      const labels = m[3] || "", v = parseFloat(m[4]);
      for (const suffix of ["_bucket", "_sum", "_count"]) {
        if (name.endsWith(suffix) && byName[name.slice(0, -suffix.length)]) { part = suffix; name = name.slice(0, -suffix.length); }
      }
      const hit = byName[name];
      if (!hit || !isFinite(v)) continue;
      const [fe, kind] = hit;
      const f = out[fe] || (out[fe] = { total: null, outcomes: {}, count: null, sum: null, buckets: {}, refused: null, open: null });
      if (kind === "hist") {
        if (part === "_bucket") {
          const le = /(?:^|,)le="([^"]*)"/.exec(labels);
          if (le) f.buckets[le[1]] = (f.buckets[le[1]] || 0) + v;
        } else if (part === "_count") f.count = (f.count || 0) + v;
        else if (part === "_sum") f.sum = (f.sum || 0) + v;
      } else if (kind === "total") {
        f.total = (f.total || 0) + v;
        const o = /(?:^|,)(?:outcome|code)="([^"]*)"/.exec(labels);
        if (o) f.outcomes[o[1]] = (f.outcomes[o[1]] || 0) + v;
      } else {
        f[kind] = (f[kind] || 0) + v;
      }
    }
    for (const fe of Object.keys(out)) if (out[fe].total === null && out[fe].count === null) delete out[fe];
    return out;
  }
  function quantile(q, prev, cur) {
    const les = Object.keys(cur).map((l) => ({ l: l, x: l === "+Inf" ? Infinity : parseFloat(l) })).sort((a, b) => a.x - b.x);
    const d = les.map((b) => ({ x: b.x, n: cur[b.l] - ((prev || {})[b.l] || 0) }));
    const total = d.length ? d[d.length - 1].n : 0;
    if (total <= 0) return null;
    const want = q * total;
    let lower = 0, below = 0;
    for (const b of d) {
      if (b.n >= want) {
        if (b.x === Infinity) return lower;
        return lower + (b.x - lower) * ((want - below) / Math.max(1e-9, b.n - below));
      }
      lower = b.x; below = b.n;
    }
    return lower;
  }
  const ms = (s) => (s === null || !isFinite(s) ? dash : s < 0.001 ? (s * 1e6).toFixed(0) + " µs" : (s * 1000).toFixed(s < 0.01 ? 2 : 1) + " ms");
  async function scrape() {
    const box = $("rates");
    let text;
    try {
      const resp = await api("/metrics", { raw: true });
      if (resp.status === 401 || resp.status === 403) throw new Error("metrics unavailable: " + resp.status + " (this identity may not read /metrics)");
      if (!resp.ok) throw new Error("metrics unavailable: /metrics answers " + resp.status);
      text = await resp.text();
    } catch (e) {
      state.prevScrape = null;
      box.replaceChildren(el("p", { id: "metrics-unavailable", class: "muted", text: /^metrics unavailable/.test(e.message) ? e.message : "metrics unavailable: " + e.message }));
      return;
    }
    const cur = { at: performance.now(), fe: parseMetrics(text) };
    if (!Object.keys(cur.fe).length) {
      box.replaceChildren(el("p", { id: "metrics-unavailable", class: "muted", text: "metrics unavailable: /metrics has no cairn_http_requests_total or cairn_resp_commands_total series" }));
      state.prevScrape = null;
      return;
    }
    const prev = state.prevScrape;
    state.prevScrape = cur;
    if (!prev) { box.replaceChildren(el("p", { class: "muted", text: "first scrape taken; rates after the next one…" })); return; }
    const dt = (cur.at - prev.at) / 1000;
    const rows = [];
    for (const [name, f] of Object.entries(cur.fe)) {
      const p = prev.fe[name] || {};
      const count = f.total !== null ? f.total : f.count, pcount = f.total !== null ? p.total : p.count;
      const refused = f.refused !== null && p.refused !== undefined && p.refused !== null && f.refused >= p.refused ? (f.refused - p.refused) / dt : null;
      const reset = pcount === undefined || pcount === null || count < pcount;
      const rate = reset ? null : (count - pcount) / dt;
      const dc = (f.count || 0) - (p.count || 0), ds = (f.sum || 0) - (p.sum || 0);
      const outcomes = Object.entries(f.outcomes).map(([o, v]) => {
        const r = (v - ((p.outcomes || {})[o] || 0)) / dt;
        return r > 0 ? o + " " + r.toFixed(1) + "/s" : null;
      }).filter(Boolean).join(", ");
      rows.push(el("tr", { "data-frontend": name }, el("td", { text: name }), el("td", { class: "rate", text: rate === null ? dash : rate.toFixed(1) + "/s" }),
        el("td", { class: "small", text: outcomes || dash }), el("td", { text: reset || dc <= 0 ? dash : ms(ds / dc) }),
        el("td", { text: reset ? dash : ms(quantile(0.5, p.buckets, f.buckets)) }), el("td", { text: reset ? dash : ms(quantile(0.99, p.buckets, f.buckets)) }),
        el("td", { text: refused === null ? dash : refused.toFixed(1) + "/s" }), el("td", { text: fmt(f.open) })));
    }
    box.replaceChildren(el("table", { id: "rates-table" }, el("thead", {}, el("tr", {}, ...["front end", "req/s", "by outcome", "mean", "p50", "p99", "busy", "conns"].map((h) => el("th", { text: h })))), el("tbody", {}, ...rows)),
      el("p", { class: "muted small", text: "over the last " + dt.toFixed(1) + " s, on this node (the dashboard's own requests included)" }));
  }

  // ---- the refresh loop ----
  async function refresh() {
    if (state.busy) return;
    state.busy = true;
    state.unauthenticated = null;
    try {
      const [st, mem] = await Promise.allSettled([apiJSON("/v1/cluster/status"), apiJSON("/v1/cluster/members")]);
      if (st.status === "fulfilled") {
        state.status = st.value;
        $("node").textContent = "node " + st.value.name + " (" + st.value.state + ")";
        document.title = "cairn · " + st.value.name;
        if (bannerText && bannerText.startsWith("This node")) banner(null);
      } else {
        banner(st.reason.status === 0 ? "This node does not answer: " + st.reason.message : describe(st.reason));
        $("node").textContent = "node unreachable";
        state.status = null; // nothing it showed is known any more
      }
      if (mem.status === "fulfilled") state.members = mem.value.members || [];
      await Promise.all(state.members.map(readMember));
      renderMembers();
      const tasks = [
        apiJSON("/v1/ring").then((r) => { state.ring = r; showError("ring-error", null); renderRing(); },
          (e) => { showError("ring-error", e); }),
        apiJSON("/v1/keyspaces").then((k) => { showError("keyspaces-error", null); renderKeyspaces(k.keyspaces || []); },
          (e) => { showError("keyspaces-error", e.status === 403 ? describe(e) + " (keyspaces need the admin action)" : e); }),
        listKeys(),
        scrape(),
      ];
      await Promise.allSettled(tasks);
      // A 401 anywhere means the cluster has rules that this caller's
      // credentials (or their absence) do not pass: say so at the top.
      if (!state.status) { /* the banner says this node does not answer */ }
      else if (state.unauthenticated) banner(describe(state.unauthenticated));
      else if (bannerText && /^Sign/.test(bannerText)) banner(null);
      $("updated").textContent = "updated " + new Date().toLocaleTimeString();
      document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
    } finally {
      state.busy = false;
    }
  }

  // The pure parts, for the browser test.
  window.cairnDashboard = {
    parseMetrics: parseMetrics, quantile: quantile, encodeKey: encodeKey, renderMirrors: renderMirrors,
    // preference is a key's first n owners on the ring the page drew.
    preference: (key, n) => (state.ringCache ? ownersAt(state.ringCache, xxh64String(key), n).owners : null),
  };

  showLogin();
  whoami();
  refresh();
  setInterval(refresh, REFRESH_MS);
})();
