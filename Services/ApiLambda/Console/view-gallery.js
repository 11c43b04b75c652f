// The tenant's tasks (GET /v1/tasks): thumbnails, parameters, seed, download, re-run, cancel.
import { cancelTask, getTask, isTerminal, listTasks } from "./api.js";
import { announce, badge, errorBox, fill, formatTime, h, percent } from "./ui.js";
import { prefill } from "./view-submit.js";

let ctx = null;
let tasks = []; // newest first
let nextCursor = null;
let refreshTimer = null;
let visible = false;

const $ = (id) => document.getElementById(id);

export function init(context) {
  ctx = context;
  $("gallery-refresh").addEventListener("click", () => load(false));
  $("gallery-more").addEventListener("click", () => load(true));
  $("gallery-list").addEventListener("click", onAction);
}

export function show() {
  visible = true;
  load(false);
}

export function hide() {
  visible = false;
  clearTimeout(refreshTimer);
}

export function reset() {
  tasks = [];
  nextCursor = null;
  fill($("gallery-list"));
}

async function load(more) {
  clearTimeout(refreshTimer);
  fill($("gallery-error"));
  try {
    const page = await listTasks(more ? nextCursor : null);
    if (more) tasks = tasks.concat(page.tasks.filter((t) => !tasks.some((o) => o.id === t.id)));
    else {
      // Keep the pages already loaded beyond the first.
      const rest = tasks.slice(page.tasks.length).filter((t) => !page.tasks.some((o) => o.id === t.id));
      tasks = page.tasks.concat(rest);
      if (!rest.length) nextCursor = page.next_cursor;
    }
    if (more) nextCursor = page.next_cursor;
    render();
  } catch (error) {
    if (error.status === 401) return ctx.keyRefused(error);
    fill($("gallery-error"), errorBox(error, "The tasks could not be listed"));
  }
  scheduleRefresh();
}

/** While tasks are unfinished, their cards are refreshed every 2 s. */
function scheduleRefresh() {
  clearTimeout(refreshTimer);
  if (!visible || !tasks.some((t) => !isTerminal(t.status))) return;
  refreshTimer = setTimeout(async () => {
    for (const task of tasks.filter((t) => !isTerminal(t.status))) {
      try {
        updateTask(await getTask(task.id));
      } catch (error) {
        if (error.status === 401) return ctx.keyRefused(error);
      }
    }
    scheduleRefresh();
  }, 2000);
}

function updateTask(doc) {
  const index = tasks.findIndex((t) => t.id === doc.id);
  if (index < 0) return;
  const before = tasks[index];
  tasks[index] = { ...doc, context: doc.context !== undefined ? doc.context : before.context };
  if (before.status === doc.status && before.progress === doc.progress && (before.preview || {}).url === (doc.preview || {}).url) return;
  const old = document.querySelector(`.task-card[data-task-id="${CSS.escape(doc.id)}"]`);
  if (!old) return;
  const focused = old.contains(document.activeElement) ? document.activeElement.dataset.action : null;
  const card = taskCard(tasks[index]);
  old.replaceWith(card);
  if (focused) (card.querySelector(`[data-action="${focused}"]`) || card.querySelector("a")).focus();
}

function render() {
  fill($("gallery-list"), tasks.map(taskCard));
  $("gallery-empty").hidden = tasks.length > 0;
  $("gallery-more").hidden = !nextCursor;
}

/** The task's request parameters (A1111 names, as the status document gives them). */
export function taskParams(task) {
  const p = task.parameters;
  return p && typeof p === "object" && !Array.isArray(p) ? p : null;
}

function taskCard(task) {
  const params = taskParams(task);
  const image = (task.images || [])[0];
  const previewURL = task.preview && task.preview.url;
  let thumb;
  if (image && (image.content_type || "image/png").startsWith("image/")) {
    thumb = h("img", { class: "thumb", src: image.url, alt: `Result of task ${task.id}`, loading: "lazy" });
  } else if (previewURL && !isTerminal(task.status)) {
    thumb = h("img", { class: "thumb", src: previewURL, alt: `Live preview of task ${task.id}` });
  } else {
    thumb = h("div", { class: "thumb thumb-empty", text: task.status === "succeeded" ? "no image" : task.status });
  }
  const size = image ? `${image.width}×${image.height}` : params && params.width ? `${params.width}×${params.height || "?"}` : null;
  const seeds = (task.images || []).map((i) => i.seed);
  const rows = [
    ["Submitted", formatTime(task.timings && task.timings.submitted_at)],
    ["Pool / model", `${task.pool} / ${task.model}`],
    size ? ["Size", size] : null,
    params && params.steps ? ["Steps", String(params.steps)] : null,
    params && params.sampler_name ? ["Sampler", params.sampler_name] : null,
    seeds.length ? ["Seed", seeds.join(", ")] : null,
    isTerminal(task.status) ? null : ["Progress", percent(task.progress)],
    task.error ? ["Error", `${task.error.code}: ${task.error.message}`] : null,
  ].filter(Boolean);
  const prompt = params && params.prompt ? params.prompt : null;
  const actions = [
    h("a", { href: `#task/${encodeURIComponent(task.id)}`, "data-action": "detail", text: "Details" }),
    image ? h("a", { href: image.url, download: `sdq-${task.id}.png`, "data-action": "download", text: "Download" }) : null,
    task.status === "succeeded" || params ? h("button", { type: "button", "data-action": "rerun", text: "Re-run with same seed" }) : null,
    isTerminal(task.status) ? null : h("button", { type: "button", "data-action": "cancel", text: "Cancel" }),
  ];
  return h(
    "li",
    { class: "task-card card", dataset: { taskId: task.id, status: task.status } },
    h("a", { href: `#task/${encodeURIComponent(task.id)}`, class: "thumb-link", tabindex: "-1", "aria-hidden": "true" }, thumb),
    h("div", { class: "task-meta" },
      h("p", { class: "task-title" }, badge(task.status), " ", h("code", { text: task.id })),
      prompt ? h("p", { class: "prompt", text: prompt }) : null,
      h("dl", { class: "facts compact" }, rows.map(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })])),
      h("div", { class: "actions" }, actions)),
  );
}

async function onAction(event) {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const id = button.closest(".task-card").dataset.taskId;
  const task = tasks.find((t) => t.id === id);
  if (!task) return;
  if (button.dataset.action === "cancel") {
    button.disabled = true;
    try {
      const doc = await cancelTask(id);
      updateTask(doc);
      announce(`Task ${id} cancelled.`);
    } catch (error) {
      if (error.status === 401) return ctx.keyRefused(error);
      button.disabled = false;
      announce(`Cancel failed: ${error.describe()}`, "error");
    }
  } else if (button.dataset.action === "rerun") {
    rerun(task);
  }
}

/** Fills the submit form with the task's parameters and its first image's seed. */
export function rerun(task) {
  const params = taskParams(task) || {};
  const image = (task.images || [])[0];
  const filled = { ...params };
  if (image && !filled.width) {
    filled.width = image.width;
    filled.height = image.height;
  }
  if (!filled.pool && !filled.model) filled.pool = task.pool;
  prefill(filled, image ? image.seed : null);
  location.hash = "#submit";
  const note = params.prompt ? "" : " The task's prompt is no longer known (it was purged): enter it.";
  announce(`Form filled from task ${task.id}${image ? ` with seed ${image.seed}` : ""}. Press Submit to re-run.${note}`);
  document.getElementById("f-prompt").focus();
}
