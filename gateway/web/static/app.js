// The owner's page: the site state from /api/v1/stream (server-sent events, one per
// cycle), mode buttons that PUT /api/v1/settings. No build step: plain browser JS.
"use strict";
const MODES = ["standard", "eco", "solar", "excess", "off"];
const HEADERS = { "Content-Type": "application/json", "X-Requested-With": "evse-gateway" };
let writable = false;

const $ = (id) => document.getElementById(id);
const num = (v, digits = 1) => (v === null || v === undefined ? "–" : v.toFixed(digits));
const kw = (w) => (w === null ? "–" : (w / 1000).toFixed(2) + " kW");

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e[k] = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

async function access() {
  const r = await fetch("/api/v1/access");
  const a = await r.json();
  writable = a.writable;
  const banner = $("access");
  banner.classList.toggle("writable", writable);
  banner.textContent = writable
    ? "Logged in: you can change the modes."
    : a.password_set
      ? "Read-only: log in with the owner's password to change settings."
      : "Read-only: no owner's password is set (run evse-gateway passwd).";
  $("login").hidden = writable || !a.password_set;
  document.querySelectorAll(".modes button").forEach((b) => (b.disabled = !writable));
}

$("login").onsubmit = async (event) => {
  event.preventDefault();
  const r = await fetch("/api/v1/login", {
    method: "POST", headers: HEADERS, body: JSON.stringify({ password: $("password").value }),
  });
  showError(r.ok ? "" : (await r.json()).error);
  await access();
};

async function setMode(charger, mode) {
  const r = await fetch("/api/v1/settings", {
    method: "PUT", headers: HEADERS,
    body: JSON.stringify({ chargers: { [charger]: { mode } } }),
  });
  showError(r.ok ? "" : (await r.json()).error);
  if (r.status === 401) await access();
}

function render(s) {
  $("updated").textContent = "cycle " + s.cycle + ", " + new Date(s.updated_unix * 1000).toLocaleTimeString();
  const limit = s.current_limit_a;
  $("phases").replaceChildren(...s.grid_current_a.map((a, i) => {
    const share = Math.min(100, (Math.abs(a) / limit) * 100);
    const bar = el("div", { class: a < 0 ? "export" : share > 90 ? "high" : "", style: "width:" + share + "%" });
    return el("div", { class: "phase" }, "L" + (i + 1), el("div", { class: "bar" }, bar),
      num(a) + " / " + num(limit, 0) + " A");
  }));
  const figures = [
    ["grid", kw(s.grid_power_w)], ["PV", kw(s.pv_power_w)],
    ["battery", s.battery_soc === null ? "–" : num(s.battery_soc, 0) + " % " + kw(s.battery_power_w)],
    ["house", kw(s.household_consumption_w)], ["cars", kw(s.ev_power_w)],
  ];
  if (s.failsafe) figures.push(["state", "FAILSAFE"]);
  $("figures").replaceChildren(...figures.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v))));
  $("chargers").replaceChildren(...s.chargers.map((c) => {
    const chosen = c.setting && c.setting.mode ? c.setting.mode : c.mode;
    const buttons = MODES.map((m) => {
      const b = el("button", { "data-charger": c.id, "data-mode": m, class: m === chosen ? "active" : "" }, m);
      b.disabled = !writable;
      b.onclick = () => setMode(c.id, m);
      return b;
    });
    return el("div", { class: "charger", id: "charger-" + c.id },
      el("div", { class: "head" },
        el("strong", {}, c.id),
        el("span", { class: "status" }, c.online ? c.status : "offline"),
        el("span", { class: "limit" }, "limit " + num(c.allocated_a) + " A"),
        el("span", { class: "draw" }, "draw " + c.current_a.slice(0, c.phases || 3).map((a) => num(a)).join("/") + " A")),
      el("div", { class: "reason" }, c.reason ? c.reason.text : ""),
      el("div", { class: "modes" }, ...buttons));
  }));
}

async function sessions() {
  const rows = await (await fetch("/api/v1/sessions")).json();
  const when = (t) => (t === null ? "running" : new Date(t * 1000).toLocaleString());
  const kwh = (wh) => (wh / 1000).toFixed(2);
  $("sessions").tBodies[0].replaceChildren(...rows.slice(0, 50).map((r) => el("tr", {},
    ...[r.charger, when(r.start_unix), when(r.end_unix), kwh(r.energy_wh), kwh(r.pv_wh),
      kwh(r.battery_wh), kwh(r.grid_wh)].map((v) => el("td", {}, v)))));
}

function connect() {
  const source = new EventSource("/api/v1/stream");
  source.onmessage = (event) => render(JSON.parse(event.data));
  source.onerror = () => { source.close(); setTimeout(connect, 2000); };
}

access();
connect();
sessions();
setInterval(sessions, 30000);
