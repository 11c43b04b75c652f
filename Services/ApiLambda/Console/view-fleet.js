// Pools (health, backlog, workers, models, GPU busy) and the workers' heartbeats.
import { listPools, listWorkers } from "./api.js";
import { errorBox, fill, formatMs, formatTime, h, percent } from "./ui.js";

let ctx = null;
let timer = null;
let visible = false;

const $ = (id) => document.getElementById(id);

export function init(context) {
  ctx = context;
  $("fleet-refresh").addEventListener("click", () => load());
}

export function show() {
  visible = true;
  if (!$("fleet-body").childElementCount) fill($("fleet-body"), h("p", { class: "muted", text: "Loading…" }));
  load();
}

export function hide() {
  visible = false;
  clearTimeout(timer);
}

const table = (columns, rows, label) =>
  h("div", { class: "table-wrap" },
    h("table", { class: "table", "aria-label": label },
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", text: c })))),
      h("tbody", {}, rows)));

const list = (items) => (items && items.length ? items.join(", ") : "–");

async function load() {
  clearTimeout(timer);
  const [pools, workers] = await Promise.allSettled([listPools(), listWorkers()]);
  if (!visible) return;
  for (const result of [pools, workers]) {
    if (result.status === "rejected" && result.reason.status === 401) return ctx.keyRefused(result.reason);
  }
  const sections = [];
  sections.push(h("h3", { text: "Pools" }));
  if (pools.status === "rejected") sections.push(errorBox(pools.reason, "GET /v1/pools failed"));
  else {
    const rows = pools.value.pools.map((p) => {
      const health = p.health || { status: "unknown", reason: "", unreachable_workers: [] };
      return h("tr", { class: "pool-row", dataset: { pool: p.name, health: health.status } },
        h("th", { scope: "row", class: "pool-name", text: p.name }),
        h("td", { text: p.runtime }),
        h("td", {},
          h("span", { class: `badge health-${health.status}`, text: health.status }),
          health.reason ? h("span", { class: "health-reason", text: ` ${health.reason}` }) : null,
          health.unreachable_workers && health.unreachable_workers.length ? h("span", { class: "muted", text: ` (unreachable: ${health.unreachable_workers.join(", ")})` }) : null),
        h("td", { class: "num", text: p.backlog ?? "–" }),
        h("td", { class: "num", text: `${p.ready_workers ?? "–"} / ${p.workers ?? "–"}` }),
        h("td", { class: "num", text: p.dead_letters ?? "–" }),
        h("td", { text: list(p.models) }),
        h("td", { text: list(p.loaded_models) }),
        h("td", { class: "num", text: p.gpu_busy_fraction == null ? "–" : percent(p.gpu_busy_fraction) }));
    });
    sections.push(rows.length
      ? table(["Pool", "Runtime", "Health", "Backlog", "Ready / workers", "Dead letters", "Models", "Loaded", "GPU busy"], rows, "Pools")
      : h("p", { class: "muted", text: "No pools are configured." }));
  }
  sections.push(h("h3", { text: "Workers" }));
  if (workers.status === "rejected") sections.push(errorBox(workers.reason, "GET /v1/workers failed"));
  else {
    const rows = workers.value.workers.map((w) =>
      h("tr", { class: "worker-row", dataset: { worker: w.worker } },
        h("th", { scope: "row", text: w.worker }),
        h("td", { text: w.pool }),
        h("td", {}, h("span", { class: `badge state-${w.state}`, text: w.state })),
        h("td", { text: w.loaded_model || "–" }),
        h("td", { text: w.current_task || "–" }),
        h("td", {}, w.runtime_reachable ? "yes" : h("span", { class: "bad", text: `no${w.runtime_error ? `: ${w.runtime_error}` : ""}` })),
        h("td", { class: "num", text: percent(w.gpu_busy_fraction) }),
        h("td", { class: "num", text: w.idle_gap_ms == null ? "–" : formatMs(w.idle_gap_ms) }),
        h("td", { text: formatTime(w.seen_at) })));
    sections.push(rows.length
      ? table(["Worker", "Pool", "State", "Loaded model", "Task", "Runtime reachable", "GPU busy", "Longest idle gap", "Last heartbeat"], rows, "Workers")
      : h("p", { class: "muted", text: "No worker has a live heartbeat." }));
  }
  sections.push(h("p", { class: "muted", text: `Updated ${new Date().toLocaleTimeString()}; refreshes every 5 s.` }));
  fill($("fleet-body"), sections);
  timer = setTimeout(load, 5000);
}
