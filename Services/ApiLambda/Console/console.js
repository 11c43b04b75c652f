// The console's entry point: the API key, the tabs and the hash router.
import { api, getKey, setKey } from "./api.js";
import { announce } from "./ui.js";
import * as submitView from "./view-submit.js";
import * as galleryView from "./view-gallery.js";
import * as taskView from "./view-task.js";
import * as fleetView from "./view-fleet.js";
import * as deadLettersView from "./view-dead-letters.js";

const views = {
  submit: submitView,
  gallery: galleryView,
  task: taskView,
  fleet: fleetView,
  "dead-letters": deadLettersView,
};
const titles = { submit: "Submit", gallery: "Gallery", task: "Task", fleet: "Fleet", "dead-letters": "Dead letters" };

let current = null;

function $(id) {
  return document.getElementById(id);
}

// ---- API key -------------------------------------------------------------------------------

function showKeyPanel(message) {
  if (current) {
    views[current].hide();
    current = null;
  }
  $("app").hidden = true;
  $("session").hidden = true;
  $("key-panel").hidden = false;
  $("key-error").textContent = message || "";
  $("key-cancel").hidden = !getKey();
  $("key-input").value = "";
  $("key-input").focus();
}

function showApp() {
  const key = getKey();
  $("key-panel").hidden = true;
  $("app").hidden = false;
  $("session").hidden = false;
  $("session-label").textContent = `Key …${key.slice(-4)}`;
  route();
}

async function onKeySubmit(event) {
  event.preventDefault();
  const key = $("key-input").value.trim();
  if (!key) {
    $("key-error").textContent = "Enter an API key.";
    $("key-input").focus();
    return;
  }
  const previous = getKey();
  setKey(key);
  try {
    // Any authenticated read checks the key.
    await api("GET", "/v1/pools");
  } catch (error) {
    setKey(previous);
    $("key-error").textContent = `The key was not accepted: ${error.describe ? error.describe() : error}`;
    $("key-input").focus();
    return;
  }
  announce("Key accepted.");
  submitView.reset();
  galleryView.reset();
  deadLettersView.reset();
  showApp();
}

/** Called by views when the API answers 401: the key is gone or wrong. */
export function keyRefused(error) {
  setKey("");
  showKeyPanel(`The API refused the key: ${error.describe()}`);
}

// ---- Tabs and routing ----------------------------------------------------------------------

function parseHash() {
  const hash = decodeURIComponent(location.hash.replace(/^#/, ""));
  if (hash.startsWith("task/") && hash.length > 5) return { view: "task", arg: hash.slice(5) };
  if (views[hash]) return { view: hash, arg: null };
  return { view: "submit", arg: null };
}

function selectTab(name) {
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    const selected = tab.dataset.view === name;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    $(tab.getAttribute("aria-controls")).hidden = !selected;
  }
}

function route() {
  if (!getKey()) {
    showKeyPanel();
    return;
  }
  const { view, arg } = parseHash();
  if (current && current !== view) views[current].hide();
  if (view === "task") {
    const tab = $("tab-task");
    tab.hidden = false;
    tab.textContent = `Task ${arg.slice(0, 12)}`;
  }
  selectTab(view);
  current = view;
  document.title = `${titles[view]} · sdq console`;
  views[view].show(arg);
}

function onTabClick(event) {
  const tab = event.target.closest('[role="tab"]');
  if (!tab) return;
  const view = tab.dataset.view;
  if (view === "task") {
    const { arg } = parseHash();
    if (!arg && taskView.lastId()) location.hash = `#task/${encodeURIComponent(taskView.lastId())}`;
    return;
  }
  if (location.hash !== `#${view}`) location.hash = `#${view}`;
  else route();
}

function onTabKey(event) {
  const tabs = [...document.querySelectorAll('[role="tab"]')].filter((t) => !t.hidden);
  const index = tabs.indexOf(document.activeElement);
  if (index < 0) return;
  let next = null;
  if (event.key === "ArrowRight") next = tabs[(index + 1) % tabs.length];
  else if (event.key === "ArrowLeft") next = tabs[(index - 1 + tabs.length) % tabs.length];
  else if (event.key === "Home") next = tabs[0];
  else if (event.key === "End") next = tabs[tabs.length - 1];
  if (!next) return;
  event.preventDefault();
  next.focus();
  next.click();
}

function start() {
  $("key-form").addEventListener("submit", onKeySubmit);
  $("key-cancel").addEventListener("click", () => showApp());
  $("change-key").addEventListener("click", () => showKeyPanel());
  $("sign-out").addEventListener("click", () => {
    setKey("");
    showKeyPanel("Signed out. Enter a key to continue.");
    announce("Signed out.");
  });
  $("tabs").addEventListener("click", onTabClick);
  $("tabs").addEventListener("keydown", onTabKey);
  window.addEventListener("hashchange", () => { if (getKey()) route(); });
  for (const view of Object.values(views)) view.init({ keyRefused });
  if (getKey()) showApp();
  else showKeyPanel();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
