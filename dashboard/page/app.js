// The line's page: renders each status the dashboard sends over /api/events (see
// dashboard/status.ts for its fields). Plain DOM, text only (never innerHTML: serials and
// failure messages come from units), uPlot for the chart.
"use strict";

/** A slot in one activity this long needs a person (a stuck unit or fixture). */
const STUCK_MS = 30_000;
/** An allocation running out sooner than this needs a person (the next one must be imported). */
const RUN_OUT_ALERT_S = 30 * 60;
const ACTIVITY = { "waiting-for-unit": "idle", hello: "hello", genkey: "genkey", sign: "sign", store: "store", install: "install" };

const $ = (id) => document.getElementById(id);
function el(tag, props, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props);
  for (const c of children) e.append(c);
  return e;
}
// Only what changed is touched: every change costs the screen's browser a layout and a paint.
function setText(id, text) {
  if ($(id).textContent !== text) $(id).textContent = text;
}
const drawn = new Map();
function section(name, input, draw) {
  const key = JSON.stringify(input);
  if (drawn.get(name) === key) return;
  drawn.set(name, key);
  draw();
}
function flag(id, needsPerson) {
  $(id).classList.toggle("needs-person", Boolean(needsPerson));
}
const fmt = (n) => (n === undefined || n === null ? "–" : Number(n).toLocaleString("en-US"));
function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
const clock = (iso) => (iso ? new Date(iso).toLocaleTimeString("en-GB") : "–");

let chart;
function drawChart(live) {
  const counts = live ? live.recent : [];
  const xs = counts.map((_, i) => live.recentEnd - counts.length + 1 + i);
  const data = [xs, counts];
  if (!window.uPlot) return;
  if (!chart) {
    const width = $("chart").clientWidth || 800;
    chart = new uPlot(
      {
        width,
        height: 220,
        scales: { x: { time: true } },
        axes: [
          { stroke: "#9aa4b2", space: 90, incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600], values: (_, ticks) => ticks.map((t) => clock(new Date(t * 1000).toISOString())) },
          { stroke: "#9aa4b2", label: "units/s" },
        ],
        series: [{}, { stroke: "#8ab4ff", fill: "rgba(138,180,255,.2)", width: 2 }],
      },
      data,
      $("chart"),
    );
  } else chart.setData(data);
}

function renderHourly(live) {
  const box = $("hourly");
  box.replaceChildren(
    ...(live ? live.hourly : []).map(([hour, n]) =>
      el("div", {}, el("div", { className: "bar", textContent: fmt(n) }), el("div", { className: "hour", textContent: `${new Date(hour).getHours()}:00` })),
    ),
  );
}

function renderSlots(live) {
  const box = $("slots");
  box.replaceChildren(
    ...(live ? live.slots : []).map((s) => {
      const busy = s.activity !== "waiting-for-unit" && live.running;
      const card = el(
        "div",
        { className: "slot" },
        el("div", { className: "label", textContent: `slot ${s.slot + 1}` }),
        el("div", { className: `activity${busy ? " busy" : ""}`, textContent: ACTIVITY[s.activity] || s.activity }),
        el("div", { className: "serial", textContent: s.serial || "" }),
        el("div", { className: "elapsed", textContent: "" }),
        el("div", { className: "last", textContent: s.lastSerial ? `last ${s.lastSerial} ${s.lastStatus || ""}` : "" }),
      );
      card.dataset.slot = String(s.slot);
      if (busy) card.dataset.since = s.since;
      return card;
    }),
  );
}

/** Elapsed times in whole seconds, moved with the routine frame (see ROUTINE_MS). */
function tick() {
  for (const card of document.querySelectorAll(".slot")) {
    const since = card.dataset.since;
    const ms = since ? Date.now() - Date.parse(since) : 0;
    const elapsed = card.querySelector(".elapsed");
    const text = since ? duration(ms) : "";
    if (elapsed.textContent !== text) elapsed.textContent = text;
    card.classList.toggle("needs-person", Boolean(since) && ms >= STUCK_MS);
  }
}

function rows(tbody, list) {
  $(tbody).querySelector("tbody").replaceChildren(...list);
}
const row = (...cells) => el("tr", {}, ...cells.map((c) => (c instanceof Node ? c : el("td", { textContent: String(c) }))));
const num = (n) => el("td", { className: "num", textContent: fmt(n) });

function render(st) {
  const live = st.live;
  const store = st.store;
  setText("station", live ? live.station : "idmint");
  const badge = $("line-state");
  badge.textContent = st.line === "running" ? "running" : st.line === "stopped" ? "stopped" : "no run yet";
  badge.className = `badge ${st.line}`;
  $("line-error").hidden = !st.lineError;
  setText("line-error", st.lineError || "");
  setText("updated", `updated ${clock(st.at)}${live ? `, run started ${clock(live.startedAt)}${live.endedAt ? `, ended ${clock(live.endedAt)}` : ""}` : ""}`);

  setText("provisioned", fmt(live ? live.provisioned : 0));
  setText("provisioned-of", live && live.total ? `of ${fmt(live.total)} this run` : "this run");
  setText("failed", fmt(live ? live.failed : 0));
  setText("failed-note", store ? `${fmt(store.failedUnits)} units wait for a retry or scrap` : "");
  flag("tile-failed", live && live.failed > 0);
  setText("rate", st.unitsPerSecond.toFixed(1));
  const ran = live ? ((live.endedAt ? Date.parse(live.endedAt) : Date.now()) - Date.parse(live.startedAt)) / 1000 : 0;
  setText("rate-note", live && ran > 0 ? `run average ${(live.units / ran).toFixed(1)}` : "");

  const left = (store ? store.allocations : []).reduce((a, x) => a + x.available, 0);
  setText("left", store ? fmt(left) : "–");
  const soonest = st.runOut.filter((r) => r.seconds !== undefined).sort((a, b) => a.seconds - b.seconds)[0];
  setText("runout", soonest ? `runs out in ${duration(soonest.seconds * 1000)} (${clock(soonest.at)})` : "");
  // Running short needs a person only if this run still needs more serials than are left (unknown for a real fixture).
  const needed = live && live.total ? live.total - live.units : Infinity;
  flag("tile-left", store && st.line === "running" && (left === 0 || (soonest && soonest.seconds < RUN_OUT_ALERT_S && needed > left)));

  const hsm = live ? live.hsm : undefined;
  setText("hsm-state", hsm ? hsm.state : "–");
  setText("hsm-note", hsm ? [hsm.signMs !== undefined ? `sign ${hsm.signMs} ms` : "", hsm.lastSignAt ? `last ${clock(hsm.lastSignAt)}` : "", hsm.outages ? `${hsm.outages} outages, ${hsm.outageSeconds} s` : "", hsm.lastError || ""].filter(Boolean).join(" · ") : "");
  flag("tile-hsm", hsm && (hsm.state === "failing" || hsm.state === "out"));

  const up = live ? live.upload : undefined;
  const backlog = store ? store.uploads.pending : undefined;
  setText("upload-backlog", fmt(backlog));
  setText("upload-note", up && up.state !== "off" ? [up.state === "waiting" ? "directory unreachable" : up.state, up.lastError || ""].filter(Boolean).join(": ") : "no directory in this run");
  flag("tile-upload", up && up.state === "waiting" && backlog > 0);

  section("chart", live && [live.recentEnd, live.recent], () => drawChart(live));
  section("hourly", live && live.hourly, () => renderHourly(live));
  section("slots", live && [live.running, live.slots], () => renderSlots(live));
  section("failures", live && [live.failures, live.latestFailures], () => {
    rows("failures-by-reason", Object.entries(live ? live.failures : {}).sort((a, b) => b[1] - a[1]).map(([code, n]) => row(code, num(n))));
    rows("failures-list", (live ? live.latestFailures : []).map((f) => row(f.serial || "(no serial)", f.code, f.message, clock(f.at))));
  });
  const runOut = (a) => {
    const r = st.runOut.find((x) => x.allocationId === a.allocationId);
    return r && r.seconds !== undefined ? duration(r.seconds * 1000) : "–";
  };
  const allocations = store ? store.allocations : [];
  section("allocations", [allocations, allocations.map(runOut)], () =>
    rows(
      "allocations",
      allocations.map((a) => {
        const tr = row(`${a.allocationId} (${a.order}, ${a.model})`, num(a.allocated), num(a.provisioned), num(a.scrapped), num(a.available), runOut(a));
        tr.dataset.allocation = a.allocationId;
        return tr;
      }),
    ),
  );
  section("ledger", [store, st.storeError], () => {
    const acc = store && store.lastAccepted;
    rows("ledger", [
      row("ledger entries", num(store ? store.ledgerSize : undefined)),
      row("certificates sent", num(store ? store.uploads.sent : undefined)),
      row("refused by the directory", num(store ? store.uploads.refused : undefined)),
      row("last accepted checkpoint", acc ? `size ${fmt(acc.checkpointSize)} at ${clock(acc.at)}` : "none yet"),
      ...(st.storeError ? [row("store", st.storeError)] : []),
    ]);
  });
  tick();
}

// A status with nothing new (a stopped line) is not drawn again: a screen left open costs nothing.
// What needs a person (the line's state, the HSM, uploads, failures) is drawn at once; counters
// and elapsed times at most every ROUTINE_MS, together in one frame: each frame costs the
// screen's browser ~6-10 ms of CPU, on the station PC if the screen is driven from it.
const ROUTINE_MS = 2000;
let shown = "";
let shownAlerts = "";
let pending;
const alertsOf = (st) =>
  JSON.stringify([st.line, st.lineError, st.storeError, st.live && [st.live.hsm && st.live.hsm.state, st.live.upload && st.live.upload.state, st.live.failed]]);
const events = new EventSource("/api/events");
events.onmessage = (m) => {
  const st = JSON.parse(m.data);
  const key = JSON.stringify([st.line, st.lineError, st.live, st.store, st.storeError]);
  if (key === shown) return;
  shown = key;
  const alerts = alertsOf(st);
  if (alerts === shownAlerts) return void (pending = st);
  shownAlerts = alerts;
  pending = undefined;
  render(st);
};
events.onerror = () => {
  shown = "";
  shownAlerts = "";
  const badge = $("line-state");
  badge.textContent = "dashboard unreachable";
  badge.className = "badge";
};
setInterval(() => {
  if (!pending) return tick();
  const st = pending;
  pending = undefined;
  render(st);
}, ROUTINE_MS);
