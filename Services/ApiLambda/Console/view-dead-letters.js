// Dead-letter queues (operator keys): what is in each, and re-drive.
import { listDeadLetters, redrive } from "./api.js";
import { announce, errorBox, fill, formatTime, h } from "./ui.js";

let ctx = null;
let visible = false;

const $ = (id) => document.getElementById(id);

export function init(context) {
  ctx = context;
  $("dead-letters-refresh").addEventListener("click", () => load());
  $("dead-letters-body").addEventListener("click", onAction);
}

export function show() {
  visible = true;
  load();
}

export function hide() {
  visible = false;
}

export function reset() {
  fill($("dead-letters-body"));
}

async function load() {
  fill($("dead-letters-body"), h("p", { class: "muted", text: "Loading…" }));
  let answer;
  try {
    answer = await listDeadLetters();
  } catch (error) {
    if (!visible) return;
    if (error.status === 401) return ctx.keyRefused(error);
    if (error.status === 403) {
      fill($("dead-letters-body"), h("div", { class: "notice", id: "dead-letters-notice" },
        h("p", { text: "Dead letters are for operator keys only: this key may not inspect or re-drive them." }),
        h("p", { class: "muted", text: `The API answered ${error.describe()}` })));
    } else if (error.status === 404 || error.status === 405) {
      fill($("dead-letters-body"), h("div", { class: "notice", id: "dead-letters-notice" },
        h("p", { text: "Dead-letter inspection is not available on this API (GET /v1/dead-letters is not served)." }),
        h("p", { class: "muted", text: `The API answered ${error.describe()}. Each pool's dead-letter count is on the Fleet view.` })));
    } else {
      fill($("dead-letters-body"), errorBox(error, "The dead letters could not be read"));
    }
    return;
  }
  if (!visible) return;
  render(answer.queues || []);
}

function render(queues) {
  if (!queues.length) {
    fill($("dead-letters-body"), h("p", { class: "muted", id: "dead-letters-notice", text: "There are no dead-letter queues." }));
    return;
  }
  fill($("dead-letters-body"), queues.map((q) =>
    h("section", { class: "card dlq", dataset: { queue: q.queue } },
      h("div", { class: "view-head" },
        h("h3", {}, h("code", { text: q.queue })),
        h("button", { type: "button", "data-action": "redrive", "data-queue": q.queue, disabled: q.depth === 0, text: q.depth === 0 ? "Nothing to re-drive" : `Re-drive ${q.depth} to ${q.source}` })),
      h("p", {}, `From `, h("code", { text: q.source }), ` · ${q.depth} message${q.depth === 1 ? "" : "s"}`),
      (q.messages || []).length
        ? h("div", { class: "table-wrap" }, h("table", { class: "table", "aria-label": `Messages in ${q.queue}` },
          h("thead", {}, h("tr", {}, ["Message", "Kind", "Task", "Tenant", "Pool", "Sent"].map((c) => h("th", { scope: "col", text: c })))),
          h("tbody", {}, q.messages.map((m) => h("tr", {},
            h("td", {}, h("code", { text: m.message_id })),
            h("td", { text: m.kind }),
            h("td", {}, m.task_id ? h("a", { href: `#task/${encodeURIComponent(m.task_id)}`, text: m.task_id }) : "–"),
            h("td", { text: m.tenant || "–" }),
            h("td", { text: m.pool || "–" }),
            h("td", { text: formatTime(m.sent_at) }))))))
        : h("p", { class: "muted", text: q.depth ? "The messages could not be listed (only the depth is known)." : "Empty." }))));
}

async function onAction(event) {
  const button = event.target.closest('button[data-action="redrive"]');
  if (!button) return;
  const queue = button.dataset.queue;
  button.disabled = true;
  try {
    const result = await redrive(queue);
    announce(`Re-drove ${result.redriven} message${result.redriven === 1 ? "" : "s"} from ${result.queue}.`);
    load();
  } catch (error) {
    if (error.status === 401) return ctx.keyRefused(error);
    button.disabled = false;
    announce(`Re-drive failed: ${error.describe()}`, "error");
  }
}
