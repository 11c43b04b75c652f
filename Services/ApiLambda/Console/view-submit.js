// The submit form and the live progress of the task it submitted (EventSource on events_url).
import { cancelTask, getTask, isTerminal, listPools, streamURL, submitTask } from "./api.js";
import { announce, badge, fill, formatMs, h, percent } from "./ui.js";

const FIELDS = ["prompt", "negative_prompt", "width", "height", "steps", "seed", "sampler_name", "cfg_scale", "target", "batch_size", "priority"];
const INTEGER_FIELDS = ["width", "height", "steps", "seed", "batch_size"];

let ctx = null;
let poolsLoaded = false;
let live = null; // { id, doc, source, pollTimer }

const $ = (id) => document.getElementById(id);

export function init(context) {
  ctx = context;
  $("submit-form").addEventListener("submit", onSubmit);
  $("submit-form").addEventListener("reset", () => setTimeout(clearErrors, 0));
  $("live-cancel").addEventListener("click", onCancel);
}

export function show() {
  if (!poolsLoaded) loadTargets();
}

export function hide() {}

/** Forgets what belongs to the previous key. */
export function reset() {
  stopTracking();
  live = null;
  $("live").hidden = true;
  poolsLoaded = false;
  clearErrors();
}

async function loadTargets() {
  poolsLoaded = true;
  const select = $("f-target");
  const keep = select.value;
  try {
    const { pools } = await listPools();
    const poolGroup = h("optgroup", { label: "Pool" });
    const modelGroup = h("optgroup", { label: "Model" });
    const models = new Set();
    for (const pool of pools) {
      poolGroup.append(h("option", { value: `pool:${pool.name}`, text: `${pool.name} (${pool.runtime})` }));
      for (const model of pool.models || []) models.add(model);
    }
    for (const model of [...models].sort()) modelGroup.append(h("option", { value: `model:${model}`, text: model }));
    fill(select, h("option", { value: "", text: "Default pool" }), poolGroup, modelGroup);
    if ([...select.options].some((o) => o.value === keep)) select.value = keep;
  } catch (error) {
    poolsLoaded = false;
    if (error.status === 401) return ctx.keyRefused(error);
    $("err-target").textContent = `Pools could not be read: ${error.describe()}`;
  }
}

// ---- Form ----------------------------------------------------------------------------------

function clearErrors() {
  for (const name of FIELDS) {
    $(`err-${name}`).textContent = "";
    $(`f-${name}`).removeAttribute("aria-invalid");
  }
  $("submit-error").hidden = true;
  $("submit-error").textContent = "";
}

/** The field input an API error names (`width`, `task.content.width`, `pool`, ...), or null. */
function fieldFor(apiField) {
  if (!apiField) return null;
  const name = apiField.split(".").pop().replace(/\[\d+\]$/, "");
  if (name === "pool" || name === "model") return "target";
  return FIELDS.includes(name) ? name : null;
}

function showError(error) {
  const box = $("submit-error");
  box.textContent = `Not submitted: ${error.describe()}`;
  box.hidden = false;
  const field = fieldFor(error.field);
  if (field) {
    $(`err-${field}`).textContent = `${error.message} (${error.code})`;
    $(`f-${field}`).setAttribute("aria-invalid", "true");
    $(`f-${field}`).focus();
  } else {
    box.focus();
  }
  announce(`Not submitted: ${error.code}: ${error.message}`, "error");
}

/** The request body from the form. Numbers that do not parse are sent as typed so the API names them. */
function readForm() {
  const form = $("submit-form");
  const body = {};
  for (const name of FIELDS) {
    const raw = form.elements[name].value;
    const value = typeof raw === "string" ? raw.trim() : raw;
    if (name === "target" || value === "") continue;
    if (INTEGER_FIELDS.includes(name)) body[name] = /^-?\d+$/.test(value) ? Number(value) : value;
    else if (name === "cfg_scale") body[name] = Number.isFinite(Number(value)) ? Number(value) : value;
    else body[name] = name === "prompt" || name === "negative_prompt" ? raw : value;
  }
  const target = form.elements.target.value;
  if (target.startsWith("pool:")) body.pool = target.slice(5);
  else if (target.startsWith("model:")) body.model = target.slice(6);
  return body;
}

async function onSubmit(event) {
  event.preventDefault();
  clearErrors();
  const button = $("submit-button");
  button.disabled = true;
  try {
    const doc = await submitTask(readForm());
    announce(`Task ${doc.id} submitted.`);
    track(doc);
  } catch (error) {
    if (error.status === 401) return ctx.keyRefused(error);
    showError(error);
  } finally {
    button.disabled = false;
  }
}

/** Fills the form from a task's parameters (re-run). */
export function prefill(params, seed) {
  const form = $("submit-form");
  clearErrors();
  form.reset();
  for (const name of FIELDS) {
    if (name === "target" || params[name] === undefined || params[name] === null) continue;
    form.elements[name].value = String(params[name]);
  }
  form.elements.seed.value = seed === undefined || seed === null ? "" : String(seed);
  const target = params.pool ? `pool:${params.pool}` : params.model ? `model:${params.model}` : "";
  if (target && ![...form.elements.target.options].some((o) => o.value === target)) {
    form.elements.target.append(h("option", { value: target, text: target.replace(":", ": ") }));
  }
  form.elements.target.value = target;
}

// ---- Live progress ---------------------------------------------------------------------------

function stopTracking() {
  if (!live) return;
  if (live.source) live.source.close();
  live.source = null;
  clearTimeout(live.pollTimer);
  live.pollTimer = null;
}

function track(doc) {
  stopTracking();
  live = { id: doc.id, doc, source: null, pollTimer: null, preview: null, eta: null };
  $("live").hidden = false;
  fill($("live-images"));
  $("live-preview").hidden = true;
  $("live-detail").href = `#task/${encodeURIComponent(doc.id)}`;
  render();
  if (isTerminal(doc.status)) return;
  if (doc.events_url && typeof EventSource === "function") openStream(doc.events_url);
  else schedulePoll();
}

function openStream(url) {
  const task = live;
  const source = new EventSource(streamURL(url));
  task.source = source;
  const parse = (event) => {
    try {
      return JSON.parse(event.data);
    } catch {
      return {};
    }
  };
  const onState = (event) => {
    if (live !== task) return;
    const data = parse(event);
    task.doc = { ...task.doc, status: data.status || event.type };
    if (data.queue_position !== undefined) task.doc.queue_position = data.queue_position;
    else if (event.type === "running") delete task.doc.queue_position;
    render();
  };
  for (const type of ["queued", "dispatched", "running"]) source.addEventListener(type, onState);
  source.addEventListener("progress", (event) => {
    if (live !== task) return;
    const data = parse(event);
    if (typeof data.fraction === "number") task.doc = { ...task.doc, progress: data.fraction };
    task.eta = data.eta_seconds;
    task.step = data.step !== undefined ? `${data.step} / ${data.steps}` : null;
    render();
  });
  source.addEventListener("preview", (event) => {
    if (live !== task) return;
    const data = parse(event);
    if (data.url) task.doc = { ...task.doc, preview: data };
    render();
  });
  for (const type of ["succeeded", "failed", "cancelled"]) {
    source.addEventListener(type, (event) => {
      source.close();
      if (live !== task) return;
      task.source = null;
      const doc = parse(event);
      task.doc = doc && doc.id ? doc : { ...task.doc, status: type };
      render();
      announce(`Task ${task.id} ${type}.`, type === "failed" ? "error" : "info");
    });
  }
  source.addEventListener("error", () => {
    // The browser reconnects by itself (with Last-Event-ID) unless the stream was refused.
    if (source.readyState === EventSource.CLOSED && live === task && !isTerminal(task.doc.status)) {
      task.source = null;
      schedulePoll();
    }
  });
}

function schedulePoll() {
  const task = live;
  task.pollTimer = setTimeout(async () => {
    if (live !== task) return;
    try {
      task.doc = await getTask(task.id);
      render();
    } catch (error) {
      if (error.status === 401) return ctx.keyRefused(error);
      $("live-message").textContent = `Status could not be read: ${error.describe()}`;
    }
    if (live === task && !isTerminal(task.doc.status)) schedulePoll();
  }, 1000);
}

async function onCancel() {
  if (!live) return;
  const task = live;
  const button = $("live-cancel");
  button.disabled = true;
  try {
    const doc = await cancelTask(task.id);
    if (live === task && doc && doc.id) {
      task.doc = doc;
      if (isTerminal(doc.status)) stopTracking();
      render();
    }
    announce(`Task ${task.id} cancelled.`);
  } catch (error) {
    if (error.status === 401) return ctx.keyRefused(error);
    announce(`Cancel failed: ${error.describe()}`, "error");
    button.disabled = false;
  }
}

function render() {
  const { doc } = live;
  const facts = [
    ["Task", h("a", { href: `#task/${encodeURIComponent(doc.id)}`, text: doc.id })],
    ["Status", h("span", { id: "live-status" }, badge(doc.status))],
    ["Pool", doc.pool || "–"],
    ["Model", doc.model || "–"],
  ];
  if (doc.queue_position !== undefined && !isTerminal(doc.status)) facts.push(["Queue position", h("span", { id: "live-queue", text: String(doc.queue_position) })]);
  if (live.step && !isTerminal(doc.status)) facts.push(["Step", live.step]);
  if (typeof live.eta === "number" && !isTerminal(doc.status)) facts.push(["ETA", formatMs(live.eta * 1000)]);
  if (doc.worker) facts.push(["Worker", doc.worker]);
  fill($("live-facts"), facts.map(([k, v]) => [h("dt", { text: k }), h("dd", {}, v)]));

  const progress = doc.status === "succeeded" ? 1 : doc.progress || 0;
  $("live-progress").value = progress;
  $("live-percent").textContent = percent(progress);
  $("live-cancel").hidden = isTerminal(doc.status);
  $("live-cancel").disabled = false;
  $("live-message").textContent = doc.error ? `${doc.error.code}: ${doc.error.message}` : "";
  $("live-message").className = doc.error ? "error-box" : "muted";

  const preview = doc.preview && doc.preview.url && !isTerminal(doc.status) ? doc.preview.url : null;
  $("live-preview").hidden = !preview;
  if (preview && $("live-preview-img").getAttribute("src") !== preview) $("live-preview-img").src = preview;

  if (doc.status === "succeeded" && $("live-images").childElementCount === 0) {
    fill($("live-images"), (doc.images || []).map((image, i) => imageFigure(image, i)));
  }
}

export function imageFigure(image, index) {
  const isImage = (image.content_type || "image/png").startsWith("image/");
  return h(
    "figure",
    { class: "result" },
    h("a", { href: image.url, target: "_blank", rel: "noopener" },
      isImage ? h("img", { src: image.url, alt: `Result image ${index + 1}, seed ${image.seed}`, class: "result-img", loading: "lazy" }) : `Output ${index + 1} (${image.content_type})`),
    h("figcaption", {}, `${image.width}×${image.height} · seed ${image.seed} · `, h("a", { href: image.url, download: `sdq-${image.seed}.png`, text: "Download" })),
  );
}
