// The API client: every call sends the key kept in sessionStorage; errors become ApiError.

const KEY_NAME = "sdq.apiKey";

/** The API's base path: the console is served by the API at BASE/console/ (BASE is empty, or a stage prefix). */
export const BASE = location.pathname.replace(/\/console(\/.*)?$/, "");

/**
 * An event stream URL the page may connect to (CSP connect-src 'self'). The API may name itself by
 * another host than the one the browser used (127.0.0.1 for localhost, an internal name behind a
 * proxy); the console is always served by the same API, so such a URL is read from this origin.
 */
export function streamURL(url) {
  const parsed = new URL(url, location.href);
  if (parsed.origin === location.origin) return parsed.href;
  return `${location.origin}${parsed.pathname}${parsed.search}`;
}

export function getKey() {
  return sessionStorage.getItem(KEY_NAME) || "";
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY_NAME, key);
  else sessionStorage.removeItem(KEY_NAME);
}

/** An error answer of the API (`{"error": {"code", "message", "field"}}`) or a network failure. */
export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field || null;
  }

  /** "code: message (field: x)" for showing to the user. */
  describe() {
    const where = this.field ? ` (field: ${this.field})` : "";
    const status = this.status ? `HTTP ${this.status} ` : "";
    return `${status}${this.code}: ${this.message}${where}`;
  }
}

/** Calls the API; answers the parsed JSON body (null for an empty one) or throws ApiError. */
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const key = getKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(`${BASE}${path}`, init);
  } catch (error) {
    throw new ApiError(0, "network_error", `the API could not be reached (${error.message})`, null);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const e = data && data.error ? data.error : {};
    throw new ApiError(
      response.status,
      e.code || `http_${response.status}`,
      e.message || response.statusText || "request failed",
      e.field || null,
    );
  }
  return data;
}

export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

export function isTerminal(status) {
  return TERMINAL.has(status);
}

export const getTask = (id) => api("GET", `/v1/tasks/${encodeURIComponent(id)}`);
export const cancelTask = (id) => api("DELETE", `/v1/tasks/${encodeURIComponent(id)}`);
export const submitTask = (body) => api("POST", "/v1/tasks", body);
export const listPools = () => api("GET", "/v1/pools");
export const listWorkers = () => api("GET", "/v1/workers");
export const listDeadLetters = () => api("GET", "/v1/dead-letters");
export const redrive = (queue) => api("POST", "/v1/dead-letters/redrive", { queue });

export function listTasks(cursor, limit = 24) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (cursor) query.set("cursor", cursor);
  return api("GET", `/v1/tasks?${query}`);
}
