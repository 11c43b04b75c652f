// One task: status, images, error, trace id, webhook attempts and where the time went (waterfall).
import { cancelTask, getTask, isTerminal } from "./api.js";
import { announce, badge, errorBox, fill, formatMs, formatTime, h, percent } from "./ui.js";
import { imageFigure } from "./view-submit.js";
import { taskParams, rerun } from "./view-gallery.js";

let ctx = null;
let currentId = null;
let lastShown = null;
let timer = null;

const $ = (id) => document.getElementById(id);

export function init(context) {
  ctx = context;
  $("task-body").addEventListener("click", onAction);
}

export function lastId() {
  return lastShown;
}

export function show(id) {
  clearTimeout(timer);
  if (currentId !== id) fill($("task-body"), h("p", { class: "muted", text: `Loading task ${id}…` }));
  currentId = id;
  lastShown = id;
  load(id, true);
}

export function hide() {
  clearTimeout(timer);
  currentId = null;
}

let doc = null;

async function load(id, first) {
  try {
    const task = await getTask(id);
    if (currentId !== id) return;
    doc = task;
    render(task, first);
    if (!isTerminal(task.status)) timer = setTimeout(() => load(id, false), 1500);
  } catch (error) {
    if (currentId !== id) return;
    if (error.status === 401) return ctx.keyRefused(error);
    fill($("task-body"), h("h2", { text: `Task ${id}` }), errorBox(error, "The task could not be read"));
  }
}

/** The stages of a task, each from one timing to the next that exists; absent ones are skipped. */
export function stages(t) {
  const first = (...names) => names.map((n) => t[n]).find((v) => typeof v === "number");
  const list = [
    ["Queue", t.submitted_at, t.dispatched_at, "submitted → dispatched"],
    ["Wait for a worker", t.dispatched_at, first("worker_received_at", "started_at"), "dispatched → worker received"],
    ["Inputs", t.worker_received_at, t.inputs_ready_at, "worker received → inputs ready"],
    ["Runtime start", first("inputs_ready_at", "started_at", "worker_received_at"), t.runtime_started_at, "ready → runtime started"],
    ["Runtime", t.runtime_started_at, t.runtime_finished_at, "runtime started → finished"],
    ["Upload", t.runtime_finished_at, t.uploaded_at, "runtime finished → uploaded"],
    ["Finalise", t.uploaded_at, t.finished_at, "uploaded → finished"],
  ];
  return list
    .filter(([, from, to]) => typeof from === "number" && typeof to === "number" && to >= from)
    .map(([name, from, to, what]) => ({ name, from, to, what }));
}

function waterfall(timings) {
  const t = timings || {};
  const rows = stages(t);
  if (!rows.length) return h("p", { class: "muted", text: "No timings yet." });
  const start = t.submitted_at ?? Math.min(...rows.map((r) => r.from));
  const end = Math.max(t.finished_at ?? 0, ...rows.map((r) => r.to));
  const total = Math.max(1, end - start);
  const list = h("ol", { class: "waterfall", "aria-label": `Where the time went: ${formatMs(end - start)} in all` });
  for (const row of rows) {
    const bar = h("span", { class: `wf-bar wf-${row.name.toLowerCase().replace(/[^a-z]+/g, "-")}` });
    // Position through the CSSOM (allowed by the CSP, unlike style attributes).
    bar.style.marginLeft = `${((row.from - start) / total) * 100}%`;
    bar.style.width = `${Math.max(0.4, ((row.to - row.from) / total) * 100)}%`;
    list.append(
      h("li", { class: "wf-row", title: row.what },
        h("span", { class: "wf-name", text: row.name }),
        h("span", { class: "wf-track" }, bar),
        h("span", { class: "wf-ms", text: formatMs(row.to - row.from) })),
    );
  }
  return h("div", {}, list, h("p", { class: "muted" }, `Total ${formatMs(end - start)} from submission${t.finished_at ? " to the end" : " so far"}.`));
}

function webhookSection(webhook) {
  if (!webhook) return null;
  const attempts = webhook.attempts || [];
  return h("section", { class: "card" },
    h("h3", { text: "Webhook" }),
    h("p", {}, h("code", { text: webhook.url }), " — ", badge(webhook.status)),
    attempts.length
      ? h("table", { class: "table" },
        h("thead", {}, h("tr", {}, ["Event", "Attempt", "At", "HTTP status", "Duration", "Error"].map((c) => h("th", { scope: "col", text: c })))),
        h("tbody", {}, attempts.map((a) => h("tr", {},
          h("td", { text: a.event }), h("td", { text: String(a.attempt) }), h("td", { text: formatTime(a.at) }),
          h("td", { text: a.status_code == null ? "–" : String(a.status_code) }), h("td", { text: formatMs(a.duration_ms) }),
          h("td", { text: a.error || "" })))))
      : h("p", { class: "muted", text: "No delivery attempts yet." }));
}

function render(task, first) {
  const params = taskParams(task);
  const traceId = task.trace_id || null;
  const facts = [
    ["Status", badge(task.status)],
    ["Progress", percent(task.status === "succeeded" ? 1 : task.progress)],
    ["Pool", task.pool],
    ["Model", task.model],
    ["Worker", task.worker || "–"],
    task.attempts ? ["Dispatch attempts", String(task.attempts)] : null,
    task.queue_position !== undefined ? ["Queue position", String(task.queue_position)] : null,
    traceId ? ["Trace id", h("code", { id: "task-trace", text: traceId })] : null,
    ["Submitted", formatTime(task.timings && task.timings.submitted_at)],
    task.timings && task.timings.finished_at ? ["Finished", formatTime(task.timings.finished_at)] : null,
    task.usage ? ["GPU time", `${task.usage.gpu_seconds.toFixed(2)} s`] : null,
    task.purged_at ? ["Purged", formatTime(task.purged_at)] : null,
    params && params.prompt ? ["Prompt", params.prompt] : null,
    params && params.negative_prompt ? ["Negative prompt", params.negative_prompt] : null,
    params && params.steps ? ["Steps", String(params.steps)] : null,
    params && params.sampler_name ? ["Sampler", params.sampler_name] : null,
  ].filter(Boolean);
  const focusedAction = document.activeElement && $("task-body").contains(document.activeElement) ? document.activeElement.dataset.action : null;
  fill($("task-body"),
    h("div", { class: "view-head" },
      h("h2", { id: "task-title", tabindex: "-1" }, "Task ", h("code", { text: task.id })),
      h("div", { class: "actions" },
        isTerminal(task.status) ? null : h("button", { type: "button", "data-action": "cancel", text: "Cancel task" }),
        task.status === "succeeded" || params ? h("button", { type: "button", "data-action": "rerun", text: "Re-run with same seed" }) : null,
        h("a", { href: "#gallery", text: "Back to gallery" }))),
    task.error ? h("p", { class: "error-box", role: "alert", id: "task-error" }, `Failed: ${task.error.code}: ${task.error.message}`) : null,
    h("section", { class: "card" }, h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", { text: k }), h("dd", {}, v)]))),
    h("section", { class: "card" }, h("h3", { text: "Where the time went" }), waterfall(task.timings)),
    (task.images || []).length ? h("section", { class: "card" }, h("h3", { text: "Images" }), h("div", { class: "images" }, task.images.map((img, i) => imageFigure(img, i)))) : null,
    webhookSection(task.webhook),
  );
  if (first) $("task-title").focus();
  else if (focusedAction) {
    const again = $("task-body").querySelector(`[data-action="${focusedAction}"]`);
    if (again) again.focus();
  }
}

async function onAction(event) {
  const button = event.target.closest("button[data-action]");
  if (!button || !doc) return;
  if (button.dataset.action === "rerun") return rerun(doc);
  if (button.dataset.action === "cancel") {
    button.disabled = true;
    try {
      const task = await cancelTask(doc.id);
      announce(`Task ${doc.id} cancelled.`);
      if (currentId === task.id) {
        clearTimeout(timer);
        load(task.id, false);
      }
    } catch (error) {
      if (error.status === 401) return ctx.keyRefused(error);
      button.disabled = false;
      announce(`Cancel failed: ${error.describe()}`, "error");
    }
  }
}
