// Small DOM and formatting helpers shared by the views.

/**
 * Creates an element. `props`: `class`, `text`, `dataset`, `on` (event → handler), attributes
 * (`aria-*`, `role`, `href`, ...) and boolean properties. Never sets inline styles (the CSP forbids
 * them in markup); widths are set through the CSSOM where needed.
 */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "on") for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    else if (name === "style") throw new Error("inline styles are not allowed");
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

let announceTimer = null;

/** Says something in the live region (and shows it in the status bar). */
export function announce(message, kind = "info") {
  const region = document.getElementById("status");
  if (!region) return;
  region.textContent = message;
  region.dataset.kind = kind;
  clearTimeout(announceTimer);
  if (kind !== "error") announceTimer = setTimeout(() => { if (region.textContent === message) region.textContent = ""; }, 8000);
}

export function formatMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

export function formatTime(epochMs) {
  if (!epochMs) return "–";
  return new Date(epochMs).toLocaleString();
}

export function percent(fraction) {
  if (fraction === null || fraction === undefined) return "–";
  return `${Math.round(fraction * 100)} %`;
}

/** A status badge. */
export function badge(status) {
  return h("span", { class: `badge badge-${status}`, text: status });
}

/** An error box for an ApiError (or any error). */
export function errorBox(error, prefix) {
  const text = error && typeof error.describe === "function" ? error.describe() : String(error && error.message ? error.message : error);
  return h("p", { class: "error-box", role: "alert" }, prefix ? `${prefix}: ` : "", text);
}

