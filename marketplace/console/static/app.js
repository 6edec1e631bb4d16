// gpumarket console: a small vanilla app (no build step). Views by URL hash; data from the
// console server's JSON endpoints; live parts over Server-Sent Events. Text from the market is
// always set as text (textContent), never parsed as HTML.
"use strict";

const state = { session: null, market: null, feeds: [], route: "", csrf: "" };

// --- helpers --------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children.flat()) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const NUMERIC = /^(GPUs|Providers|Price|Paid|Reliability|Leases|Free|Healthy|Earned|Samples|Escrow|Deposited|Median|Memory|Orders|Temp|Power|Util|XIDs|Declines|By |#)/;

function table(headers, rows, caption) {
  const num = headers.map((x) => (NUMERIC.test(x) ? "num" : null));
  return h("div", { class: "scroll" },
    h("table", {},
      caption ? h("caption", { class: "muted" }, caption) : null,
      h("thead", {}, h("tr", {}, headers.map((x, i) => h("th", { scope: "col", class: num[i] }, x)))),
      h("tbody", {}, rows.length ? rows.map((r) => h("tr", {}, r.map((c, i) => h("td", { class: num[i] }, c))))
        : h("tr", {}, h("td", { colspan: headers.length, class: "muted" }, "none")))));
}

const short = (a, n = 16) => (a && a.length > n ? a.slice(0, n) + "…" : a || "-");
// times by hand, in local time: the first Intl (toLocale…) call of a page costs tens of ms
const pad = (n) => String(n).padStart(2, "0");
const clock = (ms) => { const d = new Date(ms); return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`; };
const when = (ms) => {
  if (!ms) return "-";
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(ms)}`;
};
const duration = (ms) => {
  if (ms === null || ms === undefined) return "—";
  const m = Math.floor(ms / 60000), d = Math.floor(m / 1440), hr = Math.floor((m % 1440) / 60);
  return d ? `${d} d ${hr} h` : hr ? `${hr} h ${m % 60} min` : `${m} min`;
};
const priceText = (micro) => (micro / 1e6).toFixed(micro < 1e6 ? 4 : 2);

function toast(text) {
  const t = document.getElementById("toast");
  t.textContent = text;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.textContent = ""; }, 6000);
}

async function api(path, body) {
  if (body !== undefined) await state.ready; // the CSRF token comes with the session
  const opts = body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": state.csrf },
    body: JSON.stringify(body),
  };
  const res = await fetch(path, { credentials: "same-origin", ...opts });
  let doc;
  try { doc = await res.json(); } catch (e) { doc = { error: `${res.status} ${res.statusText}` }; }
  if (!res.ok) throw new Error(doc.error || res.statusText);
  return doc;
}

function feed(path, handlers) {
  const es = new EventSource(path);
  for (const [kind, fn] of Object.entries(handlers)) {
    es.addEventListener(kind, (e) => fn(JSON.parse(e.data)));
  }
  es.addEventListener("end", () => es.close());
  state.feeds.push(es);
  return es;
}

function stopFeeds() {
  for (const es of state.feeds) es.close();
  state.feeds = [];
}

function confirmAction(text, okLabel) {
  const dlg = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = okLabel || "Confirm";
  return new Promise((resolve) => {
    dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true });
    dlg.returnValue = "";
    dlg.showModal();
    document.getElementById("confirm-cancel").focus();
  });
}

function put(el, ...children) {
  el.replaceChildren(...children.filter((c) => c !== null && c !== undefined));
}

function view(title, ...children) {
  document.getElementById("title").textContent = title;
  document.getElementById("loading").hidden = true;
  const v = document.getElementById("view");
  v.replaceChildren(...children.filter((c) => c !== null && c !== undefined));
  return v;
}

function failed(err) {
  document.getElementById("loading").hidden = true;
  document.getElementById("view").replaceChildren(h("p", { class: "bad", role: "alert" }, err.message));
}

// --- market ---------------------------------------------------------------------------------

function marketView() {
  const boot = document.getElementById("boot-market"); // the reading the page came with
  if (boot) {
    if (!state.market) state.market = JSON.parse(boot.textContent);
    boot.remove();
  }
  const holder = view("Market", h("p", { class: "muted" }, "Waiting for the first market reading…"));
  if (state.market) renderMarket(state.market);
  // the feed goes on from the reading the page came with (not sent again, not drawn twice)
  const after = state.market && state.market.version !== undefined ? `?after=${state.market.version}` : "";
  feed(`/events/market${after}`, { market: (doc) => { state.market = doc; if (state.route === "market") renderMarket(doc); } });
  return holder;
}

function renderMarket(m) {
  if (!m.gpus_by_model) { // no reading yet: only the reason
    view("Market", h("p", { class: "bad", role: "alert" }, m.error || "no market reading yet"));
    return;
  }
  const first = !state.marketPainted;
  if (first) { // for the benchmark: when the market's numbers first paint
    state.marketPainted = true;
    requestAnimationFrame(() => performance.mark("gm:market-painted"));
  }
  const card = (n, l, id) => h("div", { class: "card" }, h("div", { class: "n", id }, n), h("div", { class: "l" }, l));
  view("Market",
    m.error ? h("p", { class: "bad", role: "alert" }, m.error) : null,
    h("div", { class: "cards" },
      card(m.providers_online, "providers online", "m-online"),
      card(m.gpus_by_model.reduce((s, r) => s + r.gpus, 0), "GPUs online", "m-gpus"),
      card(m.open_orders, "open orders", "m-orders"),
      card(m.running_leases, "leases running", "m-leases"),
      card(m.leases_last_hour, "GPU leases in the last hour", "m-hour")),
    h("section", { class: "panel", "aria-labelledby": "h-prices" },
      h("h2", { id: "h-prices" }, "Clearing price per GPU-hour (P10 · median · P90)"),
      priceCharts(m)),
    h("div", { class: "grid" },
      h("section", { class: "panel", "aria-labelledby": "h-models" }, h("h2", { id: "h-models" }, "GPUs by model"),
        table(["Model", "Providers", "GPUs", "Healthy", "Free", "Median/h"], m.gpus_by_model.map((r) =>
          [r.model, r.providers, r.gpus, r.healthy, r.free, m.prices[r.model] ? m.prices[r.model].median_text : "—"]))),
      h("section", { class: "panel", "aria-labelledby": "h-regions" }, h("h2", { id: "h-regions" }, "By region"),
        table(["Region", "Providers", "GPUs"], m.by_region.map((r) => [r.region, r.providers, r.gpus]))),
      h("section", { class: "panel", "aria-labelledby": "h-rel" }, h("h2", { id: "h-rel" }, "Reliability"),
        barChart(m.reliability.map((r) => [r.range, r.providers]), "providers by reliability")),
      h("section", { class: "panel", "aria-labelledby": "h-rate" }, h("h2", { id: "h-rate" }, "GPU leases per hour"),
        rateChart(m.history.map((p) => [p.t, p.leases_hour])))),
    h("section", { class: "panel", "aria-labelledby": "h-providers" },
      h("h2", { id: "h-providers" }, `Providers online (${m.providers_online} of ${m.providers_known} known${m.providers.length < m.providers_online ? `; the ${m.providers.length} most reliable shown` : ""})`),
      first ? h("div", { id: "m-providers" }) : providerTable(m)));
  if (first) { // the long table comes just after the first paint: the numbers go first
    requestAnimationFrame(() => setTimeout(() => {
      const slot = document.getElementById("m-providers");
      if (slot) slot.replaceWith(providerTable(m));
    }, 0));
  }
}

function providerTable(m) {
  return table(["Provider", "Region", "GPUs", "Reliability", "Leases", "Last heartbeat"], m.providers.map((p) =>
    [h("span", { class: "mono", title: p.address }, short(p.address, 20)), p.region || "-", p.gpus, p.reliability.toFixed(3), p.leases_running, when(p.last_heartbeat_ms)]));
}

function priceCharts(m) {
  const models = Object.keys(m.prices).sort();
  const seen = new Set(models);
  for (const pt of m.history) for (const k of Object.keys(pt.prices)) seen.add(k);
  if (!seen.size) return h("p", { class: "muted" }, "No GPU lease cleared in the last hour yet.");
  return h("div", { class: "charts" }, [...seen].sort().map((model) => h("figure", { class: "chart" },
    priceChart(m.history.filter((p) => p.prices[model]).map((p) => [p.t, p.prices[model]]), model),
    h("figcaption", { class: "muted" }, `${model}: ${m.prices[model] ? `median ${m.prices[model].median_text}/GPU-h over ${m.prices[model].samples} lease(s)` : "no lease in the last hour"}`))));
}

function priceChart(points, model) {
  const W = 320, H = 150, L = 48, B = 20, T = 8, R = 8;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `clearing price of ${model} over time` });
  if (!points.length) return root;
  const ts = points.map((p) => p[0]);
  const lo = Math.min(...points.map((p) => p[1].p10)), hi = Math.max(...points.map((p) => p[1].p90));
  const t0 = Math.min(...ts), t1 = Math.max(...ts, t0 + 1);
  const y0 = lo === hi ? lo * 0.9 : lo, y1 = lo === hi ? hi * 1.1 + 1 : hi;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => H - B - ((v - y0) / (y1 - y0 || 1)) * (H - B - T);
  const upper = points.map((p) => `${x(p[0])},${y(p[1].p90)}`);
  const lower = points.map((p) => `${x(p[0])},${y(p[1].p10)}`).reverse();
  const single = points.length === 1;
  root.append(
    svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }),
    svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }),
    svg("text", { x: L - 4, y: y(y1) + 4, "text-anchor": "end" }, priceText(y1)),
    svg("text", { x: L - 4, y: y(y0), "text-anchor": "end" }, priceText(y0)),
    svg("text", { x: L, y: H - 4 }, clock(t0)),
    svg("text", { x: W - R, y: H - 4, "text-anchor": "end" }, clock(t1)));
  if (single) {
    const p = points[0];
    root.append(svg("rect", { class: "band", x: L, width: W - L - R, y: y(p[1].p90), height: Math.max(1, y(p[1].p10) - y(p[1].p90)) }),
      svg("line", { class: "median", x1: L, x2: W - R, y1: y(p[1].median), y2: y(p[1].median) }));
  } else {
    root.append(svg("polygon", { class: "band", points: upper.concat(lower).join(" ") }),
      svg("polyline", { class: "median", points: points.map((p) => `${x(p[0])},${y(p[1].median)}`).join(" ") }));
  }
  return root;
}

function rateChart(points) {
  const W = 320, H = 130, L = 36, B = 20, T = 8, R = 8;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "GPU leases per hour over time" });
  if (!points.length) return h("div", { class: "chart" }, root);
  const t0 = points[0][0], t1 = Math.max(points[points.length - 1][0], t0 + 1);
  const top = Math.max(1, ...points.map((p) => p[1]));
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => H - B - (v / top) * (H - B - T);
  const line = points.length === 1 ? [[t0, points[0][1]], [t1, points[0][1]]] : points;
  root.append(
    svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }),
    svg("text", { x: L - 4, y: T + 8, "text-anchor": "end" }, top),
    svg("text", { x: L - 4, y: H - B, "text-anchor": "end" }, 0),
    svg("text", { x: L, y: H - 4 }, clock(t0)),
    svg("text", { x: W - R, y: H - 4, "text-anchor": "end" }, clock(t1)),
    svg("polyline", { class: "median", points: line.map((p) => `${x(p[0])},${y(p[1])}`).join(" ") }));
  return h("div", { class: "chart" }, root);
}

function barChart(pairs, label) {
  const W = 320, H = 130, B = 20, max = Math.max(1, ...pairs.map((p) => p[1]));
  const bw = (W - 10) / pairs.length;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label });
  pairs.forEach(([name, n], i) => {
    const bh = ((H - B - 14) * n) / max;
    root.append(svg("rect", { class: "bar", x: 5 + i * bw + 3, width: bw - 6, y: H - B - bh, height: bh }),
      svg("text", { x: 5 + i * bw + bw / 2, y: H - B - bh - 3, "text-anchor": "middle" }, n),
      svg("text", { x: 5 + i * bw + bw / 2, y: H - 5, "text-anchor": "middle" }, name));
  });
  return h("div", { class: "chart" }, root);
}

// --- tenant ---------------------------------------------------------------------------------

async function tenantView() {
  const [account, deps] = await Promise.all([api("/api/account"), api("/api/deployments")]);
  showAccount(account);
  view("Tenant",
    h("div", { class: "cards" },
      h("div", { class: "card" }, h("div", { class: "n", id: "balance" }, account.balance.text), h("div", { class: "l" }, "balance")),
      h("div", { class: "card" }, h("div", { class: "n" }, account.escrowed.text), h("div", { class: "l" }, "in escrow"))),
    deployForm(),
    h("section", { class: "panel", "aria-labelledby": "h-deps" }, h("h2", { id: "h-deps" }, "Your deployments"),
      table(["Deployment", "State", "Kind", "Escrow left", "Deposited", "Orders", "Leases", "Created"], deps.deployments.map((d) =>
        [h("a", { href: `#/deployment/${encodeURIComponent(d.id)}` }, d.id), d.state, d.job_kind, d.escrow.text, d.deposited.text, d.orders, d.leases, when(d.created_at_ms)]))));
}

function showAccount(a) {
  document.getElementById("who").textContent = `${short(a.address, 22)} · ${a.balance.text}`;
}

function deployForm() {
  const gutter = h("pre", { class: "gutter", "aria-hidden": "true", id: "sdl-gutter" });
  const area = h("textarea", { id: "sdl", name: "sdl", spellcheck: "false", rows: 14, "aria-describedby": "sdl-problems",
    placeholder: "version: \"2.0\"\nservices:\n  …" });
  const problems = h("div", { id: "sdl-problems", "aria-live": "polite" });
  const file = h("input", { type: "file", id: "sdl-file", accept: ".yaml,.yml,text/yaml,text/plain" });
  const deposit = h("input", { type: "text", id: "deposit", name: "deposit", value: "5", inputmode: "decimal", size: 10 });
  const force = h("input", { type: "checkbox", id: "force" });
  const button = h("button", { type: "submit", id: "deploy", disabled: true }, "Deploy…");
  let lastCheck = null;
  const editor = h("div", { class: "editor" }, gutter, area);
  const LINE_PX = 18;
  const lines = () => {
    const n = area.value.split("\n").length;
    const bad = new Set((lastCheck ? lastCheck.errors : []).map((e) => e.line));
    gutter.replaceChildren(...Array.from({ length: n }, (_, i) => h("span", { class: bad.has(i + 1) ? "bad" : null, "data-line": i + 1 }, i + 1)));
    area.style.height = `${Math.max(14, n + 1) * LINE_PX + 14}px`; // the editor box scrolls both
  };
  const goToLine = (line) => {
    const starts = [0];
    for (let i = 0; i < area.value.length; i++) if (area.value[i] === "\n") starts.push(i + 1);
    const from = starts[line - 1] ?? 0, to = (starts[line] ?? area.value.length + 1) - 1;
    area.focus();
    area.setSelectionRange(from, to);
    editor.scrollTop = Math.max(0, (line - 4) * LINE_PX);
  };
  const problem = (e) => h("li", { "data-line": e.line }, e.text, e.line ? [" ",
    h("button", { type: "button", class: "secondary goto", onclick: () => goToLine(e.line) }, `go to line ${e.line}`)] : null);
  let timer = null, asked = 0;
  const check = async () => {
    const ask = ++asked;
    if (!area.value.trim()) { lastCheck = null; problems.replaceChildren(); button.disabled = true; lines(); return; }
    try {
      const r = await api("/api/validate", { sdl: area.value });
      if (ask !== asked) return; // a newer check is on its way
      lastCheck = r;
      put(problems,
        r.ok ? h("p", { class: "ok" }, `valid: ${r.groups} placement group(s)`) : null,
        r.errors.length ? h("ul", { class: "problems bad" }, r.errors.map(problem)) : null,
        r.warnings.length ? h("ul", { class: "problems warn" }, r.warnings.map((w) => h("li", {}, `warning: ${w}`))) : null);
      button.disabled = !(r.ok || (r.forceable && force.checked));
    } catch (e) {
      problems.replaceChildren(h("p", { class: "bad" }, e.message));
    }
    lines();
  };
  area.addEventListener("input", () => { lines(); clearTimeout(timer); timer = setTimeout(check, 200); });
  force.addEventListener("change", check);
  file.addEventListener("change", async () => {
    const f = file.files[0];
    if (!f) return;
    if (f.size > 1024 * 1024) { problems.replaceChildren(h("p", { class: "bad" }, `${f.name}: larger than 1 MiB; not a manifest`)); return; }
    area.value = await f.text();
    lines(); check();
  });
  const form = h("form", { class: "panel", id: "deploy-form", "aria-labelledby": "h-deploy",
    onsubmit: async (ev) => {
      ev.preventDefault();
      if (!(await confirmAction(`Deploy this manifest and lock ${deposit.value} act of your balance in its escrow? What the leases do not spend comes back when you close it.`, "Deploy"))) return;
      try {
        button.disabled = true;
        const r = await api("/api/deploy", { sdl: area.value, deposit: deposit.value, force: force.checked });
        toast(`deployment ${r.deployment.id} created`);
        refreshAccount();
        location.hash = `#/deployment/${encodeURIComponent(r.deployment.id)}`;
      } catch (e) { problems.replaceChildren(h("p", { class: "bad", role: "alert" }, e.message)); button.disabled = false; }
    } },
    h("h2", { id: "h-deploy" }, "Deploy a manifest (Akash SDL)"),
    h("label", { for: "sdl-file" }, "Upload an SDL file"), file,
    h("label", { for: "sdl" }, "…or paste it (checked as you type)"),
    editor,
    problems,
    h("div", { class: "row" },
      h("span", {}, h("label", { for: "deposit" }, "Deposit (act)"), deposit),
      h("label", { class: "inline", for: "force" }, force, "deploy anyway (GPU model unknown to the registry)"),
      button));
  lines();
  return form;
}

async function deploymentView(id) {
  const doc = await api(`/api/deployment?id=${encodeURIComponent(id)}`);
  const events = h("ul", { class: "events", id: "events", "aria-live": "polite" });
  const holder = h("div", { id: "dep-body" });
  let lastSeq = 0, unseal = null;
  const render = (d) => {
    holder.replaceChildren(...deploymentBody(d));
    // sealed bids show once their window closes: read again then
    const closes = d.orders.filter((o) => o.state === "open" && o.closes_at_ms > Date.now()).map((o) => o.closes_at_ms);
    clearTimeout(unseal);
    if (closes.length) unseal = setTimeout(reload, Math.min(...closes) - Date.now() + 250);
  };
  render(doc);
  view(`Deployment ${id}`, holder,
    h("section", { class: "panel", "aria-labelledby": "h-events" }, h("h2", { id: "h-events" }, "Events (live)"), events));
  let refresh = null;
  function reload() {
    clearTimeout(refresh);
    refresh = setTimeout(async () => {
      try { if (state.route === `deployment/${id}`) render(await api(`/api/deployment?id=${encodeURIComponent(id)}`)); } catch (e) { toast(e.message); }
    }, 150);
  }
  feed(`/events/deployment?id=${encodeURIComponent(id)}`, {
    event: (e) => {
      if (e.seq <= lastSeq) return;
      lastSeq = e.seq;
      events.prepend(h("li", { "data-kind": e.kind }, h("span", { class: "muted" }, clock(e.time_ms), " "), describe(e)));
      reload();
    },
    failure: (e) => toast(e.error),
  });
}

function describe(e) {
  const b = e.bid, l = e.lease;
  switch (e.kind) {
    case "bid_placed": return b ? `bid ${b.price_per_hour.text}/h from ${short(b.provider)} (reliability ${b.reliability.toFixed(2)})` : `sealed bid on ${e.order_id}`;
    case "bid_declined": return `declined: ${e.message}`;
    case "no_eligible_bid": return `auction closed without a winner: ${e.message}`;
    case "lease_created": return l ? `lease ${l.id}: won by ${short(l.provider)} at ${l.price_per_hour.text}/h` : `lease ${e.lease_id} created`;
    case "lease_running": return `lease ${e.lease_id} running`;
    case "lease_closed": return `lease ${e.lease_id} closed (${e.message})`;
    case "order_opened": case "order_reopened": return `order ${e.order_id} open for bids`;
    case "deployment_closed": return `deployment closed: ${e.message}`;
    default: return `${e.kind.replace(/_/g, " ")} ${e.message || e.order_id || ""}`;
  }
}

function deploymentBody(doc) {
  const d = doc.deployment, open = d.state === "active";
  const amount = h("input", { type: "text", id: "topup", inputmode: "decimal", size: 8, value: "1" });
  const actions = open ? h("div", { class: "row" },
    h("label", { for: "topup" }, "Top up (act)"), amount,
    h("button", { type: "button", id: "topup-go", onclick: async () => {
      if (!(await confirmAction(`Move ${amount.value} act from your balance into the escrow of ${d.id}?`, "Top up"))) return;
      try { const r = await api("/api/deposit", { id: d.id, amount: amount.value }); toast(`escrow of ${d.id} is now ${r.deployment.escrow.text}`); refreshAccount(); route(); } catch (e) { toast(e.message); }
    } }, "Top up…"),
    h("button", { type: "button", class: "danger", id: "close-dep", onclick: async () => {
      if (!(await confirmAction(`Close ${d.id}? Its leases stop now and what is left of its escrow (${d.escrow.text}) goes back to your balance.`, "Close deployment"))) return;
      try {
        const r = await api("/api/close", { id: d.id });
        document.getElementById("refund").textContent = `closed: ${r.refund.text} refunded to your balance (now ${r.account.balance.text})`;
        showAccount(r.account);
      } catch (e) { toast(e.message); }
    } }, "Close…")) : null;
  return [
    h("div", { class: "cards" },
      h("div", { class: "card" }, h("div", { class: "n", id: "dep-state" }, d.state), h("div", { class: "l" }, `${d.job_kind} deployment`)),
      h("div", { class: "card" }, h("div", { class: "n", id: "escrow" }, d.escrow.text), h("div", { class: "l" }, `escrow left of ${d.deposited.text}`)),
      h("div", { class: "card" }, h("div", { class: "n", id: "time-left" }, open ? duration(doc.time_left.ms) : "—"),
        h("div", { class: "l" }, doc.time_left.ms === null ? "time left: nothing is billing" : `time left at ${doc.time_left.burn_per_hour.text}/h`))),
    h("p", { id: "refund", class: "ok", role: "status" }),
    actions,
    h("section", { class: "panel", "aria-labelledby": "h-leases" }, h("h2", { id: "h-leases" }, "Leases"),
      table(["Lease", "State", "Tier", "Provider", "Price/h", "Paid", "Endpoint", "Logs"], doc.leases.map((l) => [
        h("span", { class: "mono" }, l.id), `${l.state}${l.close_reason ? ` (${l.close_reason})` : ""}`, h("span", { class: "tier" }, l.tier), h("span", { class: "mono", title: l.provider }, short(l.provider)),
        l.price_per_hour.text, l.paid.text,
        l.endpoints.length ? l.endpoints.map((e) => e.url ? h("a", { href: e.url, target: "_blank", rel: "noopener noreferrer", class: "endpoint" }, e.url) : `${e.host}:${e.external_port}`) : "-",
        h("button", { type: "button", class: "secondary follow", "data-lease": l.id, onclick: () => followLogs(l.id) }, "Follow logs")])),
      h("pre", { class: "logs", id: "logs", hidden: true, tabindex: "0", "aria-label": "log lines" })),
    ...doc.orders.map((o) => orderPanel(o, open)),
  ];
}

function orderPanel(o, open) {
  const acceptable = open && o.manual && o.state === "open";
  return h("section", { class: "panel", "aria-label": `order ${o.id}` },
    h("h2", {}, `Order ${o.id} · ${o.state} · group ${o.group} · max ${o.max_price_per_hour.text}/h`),
    h("p", { class: "summary" }, o.summary),
    table(["Bid from", "Price/h", "State", "Reliability", "Why", acceptable ? "Accept" : ""], o.bids.map((b) => [
      h("span", { class: "mono", title: b.provider }, short(b.provider)), b.price_per_hour.text, b.state, b.reliability.toFixed(3), b.why,
      acceptable && b.state === "open" ? h("button", { type: "button", class: "accept", onclick: async () => {
        if (!(await confirmAction(`Accept the bid of ${short(b.provider)} at ${b.price_per_hour.text}/h? It becomes your lease and starts billing your escrow.`, "Accept bid"))) return;
        try { const r = await api("/api/accept", { bid: b.id }); toast(`lease ${r.lease.id} created`); route(); } catch (e) { toast(e.message); }
      } }, "Accept…") : ""]), "bids"),
    o.declines.length ? table(["Declined by", "Reason", "By"], o.declines.map((x) => [h("span", { class: "mono", title: x.provider }, short(x.provider)), x.reason, x.by]), "declines") : null);
}

function followLogs(lease) {
  const pre = document.getElementById("logs");
  pre.hidden = false;
  pre.textContent = "";
  pre.dataset.lease = lease;
  if (state.logFeed) state.logFeed.close();
  state.logFeed = feed(`/events/logs?lease=${encodeURIComponent(lease)}`, {
    log: (l) => {
      const cur = document.getElementById("logs");
      if (!cur) return;
      cur.append((l.stream === "stdout" ? "" : `[${l.stream}] `) + l.line + "\n");
      if (cur.childNodes.length > 2000) cur.firstChild.remove();
      cur.scrollTop = cur.scrollHeight;
    },
    failure: (e) => toast(e.error),
  });
}

async function refreshAccount() {
  try { showAccount(await api("/api/account")); } catch (e) { /* shown on the next action */ }
}

// --- provider -------------------------------------------------------------------------------

async function providerView(address) {
  if (address) { // another provider's: the market refuses it unless it is this key's own
    const doc = await api(`/api/provider?address=${encodeURIComponent(address)}`);
    renderProvider(doc);
    return;
  }
  renderProvider(await api("/api/provider"));
  feed("/events/provider", {
    provider: (doc) => { if (state.route === "provider") renderProvider(doc); },
    failure: (doc) => { if (state.route === "provider") toast(doc.error); },
  });
}

const orDash = (v, unit) => (v === null || v === undefined ? "—" : `${v}${unit}`);

function gpuHealth(g) {
  const xid = g.last_xid !== null ? ` (XID ${g.last_xid})` : "";
  return g.healthy ? h("span", { class: "ok" }, "healthy") : h("span", { class: "bad" }, (g.health_reason || "unhealthy") + xid);
}

function renderProvider(doc) {
  if (!doc.provider) {
    view("Provider", h("p", {}, "This console's key is not a provider's. Run the console with the provider's key (--key) to see its GPUs, leases and earnings."));
    return;
  }
  const p = doc.provider;
  const card = (n, l, id) => h("div", { class: "card" }, h("div", { class: "n", id }, n), h("div", { class: "l" }, l));
  const declined = doc.declines.reduce((s, d) => s + d.count, 0);
  view("Provider",
    h("div", { class: "cards" },
      card(p.online ? "online" : "offline", `last heartbeat ${when(p.last_heartbeat_ms)}`, "p-online"),
      card(p.reliability.toFixed(3), "reliability", "p-reliability"),
      card(doc.earned.text, "earned", "p-earned"),
      card(declined, "orders declined", "p-declined")),
    h("section", { class: "panel", "aria-labelledby": "h-gpus" }, h("h2", { id: "h-gpus" }, "GPUs"),
      h("p", { class: "muted" }, doc.telemetry_at_ms ? `As your agent last read them (NVML), reported ${when(doc.telemetry_at_ms)}; only your key can read them.` : "No telemetry from your agent yet: it comes with its heartbeats."),
      table(["#", "Model", "Memory", "Temp °C", "Power W", "Util %", "Memory used", "XIDs", "Health", "Allocated"], doc.gpus.map((g) =>
        [g.index, g.model || g.name, `${g.memory_gib} GiB`,
          h("span", { class: "temp", "data-gpu": g.index }, orDash(g.temperature_c, "")), orDash(g.power_w, ""), orDash(g.utilization_pct, ""),
          g.memory_used_mib === null ? "—" : g.memory_used_mib < 10240 ? `${g.memory_used_mib} MiB` : `${(g.memory_used_mib / 1024).toFixed(1)} GiB`, orDash(g.xid_count, ""), gpuHealth(g), g.allocated ? "yes" : "no"]))),
    h("section", { class: "panel", "aria-labelledby": "h-declines" }, h("h2", { id: "h-declines" }, "Declines by kind"),
      h("p", { class: "muted" }, `Orders you declined, and bids the market refused as ineligible, since ${when(doc.declines_since_ms)}.`),
      table(["Kind", "Declines", "By you", "By the market", "Latest reason", "When"], doc.declines.map((d) =>
        [h("span", { class: "kind" }, d.kind), h("span", { class: "count", "data-kind": d.kind }, d.count), d.by_provider, d.by_marketplace, d.last_reason, when(d.last_ms)]))),
    h("section", { class: "panel", "aria-labelledby": "h-pleases" }, h("h2", { id: "h-pleases" }, "Leases"),
      table(["Lease", "State", "Tier", "Tenant", "Price/h", "Earned"], doc.leases.map((l) =>
        [h("span", { class: "mono" }, l.id), l.state, h("span", { class: "tier" }, l.tier), h("span", { class: "mono" }, short(l.tenant)), l.price_per_hour.text, l.earned.text]))));
}

// --- simulation reports ---------------------------------------------------------------------

async function reportsView() {
  const doc = await api("/api/reports");
  if (!doc.runs.length) {
    view("Simulation reports", h("p", {}, `No report in ${doc.root || "the reports folder"}: run \`gpumarket simulate\` (it writes sim-out/<scenario>-seed<N>/), or start the console with --reports DIR.`));
    return;
  }
  const pick = (id, label, i) => [h("label", { for: id }, label), h("select", { id }, doc.runs.map((r, j) => h("option", { value: r, selected: j === i ? true : null }, r)))];
  view("Simulation reports",
    h("section", { class: "panel", "aria-labelledby": "h-runs" }, h("h2", { id: "h-runs" }, "Runs"),
      h("ul", {}, doc.runs.map((r) => h("li", {}, h("a", { href: `#/reports/${encodeURIComponent(r)}` }, r))))),
    h("section", { class: "panel", "aria-labelledby": "h-cmp" }, h("h2", { id: "h-cmp" }, "Compare two runs"),
      h("div", { class: "row" }, ...pick("run-a", "Run A", 0), ...pick("run-b", "Run B", Math.min(1, doc.runs.length - 1)),
        h("button", { type: "button", id: "compare", onclick: () => {
          location.hash = `#/compare/${encodeURIComponent(document.getElementById("run-a").value)}/${encodeURIComponent(document.getElementById("run-b").value)}`;
        } }, "Compare"))));
}

function reportBody(r) {
  return [
    table(["Metric", "Value"], Object.entries(r.metrics).map(([k, v]) => [k, String(v)])),
    h("div", { class: "plots" }, r.plots.map((p) => h("figure", {},
      h("img", { src: `/api/plot?name=${encodeURIComponent(r.name)}&plot=${encodeURIComponent(p)}`, alt: `${p.replace(/[_.]/g, " ")} of ${r.name}`, loading: "lazy" }),
      h("figcaption", { class: "muted" }, p)))),
  ];
}

async function reportView(name) {
  const r = await api(`/api/report?name=${encodeURIComponent(name)}`);
  view(`Report ${name}`, h("section", { class: "panel" }, ...reportBody(r)));
}

async function compareView(a, b) {
  const [ra, rb] = await Promise.all([api(`/api/report?name=${encodeURIComponent(a)}`), api(`/api/report?name=${encodeURIComponent(b)}`)]);
  const keys = [...new Set([...Object.keys(ra.metrics), ...Object.keys(rb.metrics)])].sort();
  const delta = (x, y) => (typeof x === "number" && typeof y === "number" ? (y - x).toPrecision(4) : "");
  view(`${a} vs ${b}`,
    h("section", { class: "panel", "aria-label": "metrics side by side" },
      table(["Metric", a, b, "B − A"], keys.map((k) => [k, String(ra.metrics[k] ?? "—"), String(rb.metrics[k] ?? "—"), delta(ra.metrics[k], rb.metrics[k])]))),
    h("div", { class: "compare" },
      h("section", { class: "panel", "aria-label": `plots of ${a}` }, h("h2", {}, a), reportBody({ ...ra, metrics: {} })[1]),
      h("section", { class: "panel", "aria-label": `plots of ${b}` }, h("h2", {}, b), reportBody({ ...rb, metrics: {} })[1])));
}

// --- routing --------------------------------------------------------------------------------

async function route() {
  stopFeeds();
  state.logFeed = null;
  const parts = (location.hash.replace(/^#\/?/, "") || "market").split("/").map(decodeURIComponent);
  state.route = parts.join("/");
  const top = { deployment: "tenant", compare: "reports" }[parts[0]] || parts[0];
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.view === top) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  try {
    if (parts[0] === "market") marketView();
    else if (parts[0] === "tenant") await tenantView();
    else if (parts[0] === "deployment" && parts[1]) await deploymentView(parts[1]);
    else if (parts[0] === "provider") await providerView(parts[1]);
    else if (parts[0] === "reports" && parts[1]) await reportView(parts[1]);
    else if (parts[0] === "reports") await reportsView();
    else if (parts[0] === "compare" && parts[2]) await compareView(parts[1], parts[2]);
    else view("Not found", h("p", {}, "No such view. "), h("a", { href: "#/market" }, "Go to the market"));
  } catch (e) { failed(e); }
}

async function start() {
  window.addEventListener("hashchange", () => { route(); document.getElementById("main").focus(); });
  state.ready = api("/api/session").then((s) => { state.session = s; state.csrf = s.csrf; }, () => {});
  const routed = route(); // the market view paints from its feed while the session loads
  try {
    await state.ready;
    if (!state.session) throw new Error("cannot reach the console's session: reload the page");
    document.getElementById("who").textContent = `${short(state.session.address, 22)} · ${state.session.market}`;
    refreshAccount();
  } catch (e) { document.getElementById("who").textContent = e.message; }
  await routed;
}

start();
