// The inbox: views, filters, search, sort, unread markers, live updates.
import { age, api, boot, el, me, seenSeq, t } from "./util.js";
import * as live from "./live.js";
import { onKey } from "./shell.js";

const list = document.getElementById("tickets");
const empty = document.getElementById("empty");
const filters = document.getElementById("filters");
const viewButtons = [...document.querySelectorAll(".view")];
const STATE_KEY = "hd.inbox";

const saved = JSON.parse(sessionStorage.getItem(STATE_KEY) || "{}");
let view = saved.view || (viewButtons.some((b) => b.dataset.view === "mine") ? "mine" : "all");
if (!viewButtons.some((b) => b.dataset.view === view)) view = viewButtons[0].dataset.view;
for (const [name, value] of Object.entries(saved.filters || {})) {
  if (filters.elements[name]) filters.elements[name].value = value;
}
let rows = [];
let selected = 0;
let lastSync = null;
let loading = null;

function params() {
  const p = new URLSearchParams({ view, limit: "100" });
  for (const [k, v] of new FormData(filters)) if (v) p.set(k, v);
  return p;
}

function saveState() {
  const f = {};
  for (const [k, v] of new FormData(filters)) f[k] = v;
  sessionStorage.setItem(STATE_KEY, JSON.stringify({ view, filters: f }));
}

function unread(row) {
  if (row.last_seq <= seenSeq(row.id)) return false;
  const last = row.last_event;
  // My own last action is not news to me.
  return !(last && last.actor_type === "agent" && me && last.actor_id === me.id);
}

function render() {
  list.replaceChildren();
  empty.hidden = rows.length > 0;
  const now = Date.now();
  rows.forEach((row, index) => {
    const isUnread = unread(row);
    const due = row.due_at
      ? Date.parse(row.due_at) < now
        ? t("inbox.overdue")
        : t("inbox.due", { time: age(new Date(now - (Date.parse(row.due_at) - now)).toISOString(), now) })
      : "";
    const item = el(
      "li",
      {
        role: "option",
        class: "ticket-row" + (isUnread ? " unread" : "") + (index === selected ? " selected" : ""),
        "aria-selected": index === selected ? "true" : "false",
        dataset: { id: row.id, testid: "ticket-row" },
        "data-testid": "ticket-row",
        "data-ticket": row.id,
      },
      el(
        "a",
        { href: "/console/tickets/" + row.id, class: "row-link" },
        el("span", { class: "unread-dot", title: t("inbox.unread"), "aria-label": isUnread ? t("inbox.unread") : null }),
        el("span", { class: "badge ch-" + row.channel, text: t("channel." + row.channel) }),
        el("span", { class: "num", text: "#" + row.number }),
        el("span", { class: "subject", text: row.subject || row.contact_name || t("channel." + row.channel) }),
        el("span", { class: "who", text: row.contact_name }),
        el("span", { class: "preview", text: row.last_event && !row.last_event.internal ? row.last_event.preview : "" }),
        el(
          "span",
          { class: "meta" },
          el("span", { class: "status st-" + row.status, text: t("status." + row.status) }),
          row.priority !== "normal" ? el("span", { class: "prio pr-" + row.priority, text: t("priority." + row.priority) }) : null,
          row.assignee_name ? el("span", { class: "assignee", text: row.assignee_name }) : null,
          row.waiting_since ? el("span", { class: "waiting", text: t("inbox.waiting", { time: age(row.waiting_since, now) }) }) : null,
          due ? el("span", { class: "due" + (Date.parse(row.due_at) < now ? " overdue" : ""), text: due }) : null,
        ),
      ),
    );
    list.append(item);
  });
}

async function load() {
  const started = new Date().toISOString();
  loading = api("GET", "/console/api/inbox?" + params().toString());
  try {
    const data = await loading;
    rows = data.items;
    lastSync = started;
    selected = Math.min(selected, Math.max(0, rows.length - 1));
    render();
  } finally {
    loading = null;
  }
}

// Re-query the current view for tickets that changed; replaces or drops their rows.
async function refreshIds(ids) {
  if (!ids.length) return;
  const p = params();
  p.set("ids", ids.join(","));
  const data = await api("GET", "/console/api/inbox?" + p.toString());
  const fresh = new Map(data.items.map((r) => [r.id, r]));
  const known = new Set(rows.map((r) => r.id));
  rows = rows.filter((r) => !ids.includes(r.id) || fresh.has(r.id)).map((r) => fresh.get(r.id) || r);
  for (const r of data.items) if (!known.has(r.id)) rows.unshift(r);
  if (params().get("sort") === "updated" || !params().get("sort")) {
    rows.sort((a, b) => b.updated_at.localeCompare(a.updated_at) || b.id - a.id);
  }
  render();
}

let pending = new Set();
let flushTimer = null;
function changed(ticketId) {
  pending.add(ticketId);
  clearTimeout(flushTimer);
  flushTimer = setTimeout(() => {
    const ids = [...pending];
    pending = new Set();
    refreshIds(ids).catch(() => load());
  }, 150);
}

live.on("ticket.event", (f) => changed(f.ticket));
live.on("ticket.created", (f) => f.ticket && changed(f.ticket.id));
live.on("ticket.updated", (f) => f.ticket && changed(f.ticket.id));
live.on("ticket.deleted", (f) => {
  if (!f.ticket) return;
  rows = rows.filter((r) => r.id !== f.ticket.id);
  render();
});
live.on("state", ({ connected }) => connected && load());

// Without the socket: ask for what changed since the last sync.
live.setPoller(async () => {
  if (loading || !lastSync) return;
  const p = params();
  p.set("updated_since", lastSync);
  p.set("status", "any");
  const started = new Date().toISOString();
  const data = await api("GET", "/console/api/inbox?" + p.toString()).catch(() => null);
  if (!data) return;
  lastSync = started;
  const ids = data.items.map((r) => r.id);
  if (ids.length) await refreshIds(ids);
  else render(); // waiting times move on
}, 2000);

function setView(next) {
  view = next;
  for (const b of viewButtons) b.setAttribute("aria-pressed", b.dataset.view === view ? "true" : "false");
  saveState();
  load();
}
for (const b of viewButtons) b.addEventListener("click", () => setView(b.dataset.view));

let searchTimer = null;
filters.addEventListener("input", (e) => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => {
    saveState();
    load();
  }, e.target.id === "q" || e.target.id === "f-tag" ? 300 : 0);
});
filters.addEventListener("submit", (e) => e.preventDefault());

function move(delta) {
  if (!rows.length) return;
  selected = Math.max(0, Math.min(rows.length - 1, selected + delta));
  render();
  const node = list.children[selected];
  if (node) {
    node.scrollIntoView({ block: "nearest" });
    node.querySelector("a").focus();
  }
}
onKey("j", () => move(1));
onKey("k", () => move(-1));
onKey("Enter", () => rows[selected] && (location.href = "/console/tickets/" + rows[selected].id));
onKey("/", () => document.getElementById("q").focus());

setView(view);
setInterval(() => !document.hidden && render(), 30000);
void boot;
