// Supervisor station: live calls with Listen / Whisper / Barge (supervisors and admins).
import { api, el, t, toast } from "./util.js";
import * as live from "./live.js";
import { activeCalls, supervise } from "./calls.js";

const table = document.getElementById("live-calls");
const callbacks = document.getElementById("pending-callbacks");
const SUPERVISABLE = new Set(["active", "held", "transferring"]);
let data = null;

function since(iso) {
  return iso ? el("span", { "data-since": Date.parse(iso) }) : "–";
}

function row(call, me) {
  const mine = activeCalls().find((c) => c.id === call.id && c.role === "supervisor");
  const can = SUPERVISABLE.has(call.state) && call.agent_id && call.agent_id !== me;
  const buttons = ["listen", "whisper", "barge"].map((mode) =>
    el("button", {
      type: "button",
      "data-mode": mode,
      disabled: !can,
      "aria-pressed": mine && mine.supervising === mode ? "true" : "false",
      text: t("call." + mode),
      "aria-label": t("call." + mode) + " · #" + call.ticket_number,
      onclick: () => supervise(call.id, mode).catch((err) => toast(err.message)),
    }),
  );
  return el(
    "tr",
    { "data-testid": "live-call", "data-call": call.id },
    el("td", {}, el("a", { href: "/console/tickets/" + call.ticket_id, text: "#" + call.ticket_number + " " + (call.contact_name || call.ticket_subject || "") })),
    el("td", { text: t("call.direction." + call.direction) }),
    el("td", { text: call.team_name || "–" }),
    el("td", { text: call.agent_name || "–" }),
    el("td", {}, el("span", { class: "state", text: t("call.state." + call.state) })),
    el("td", {}, since(call.answered_at || call.queued_at)),
    el("td", {}, el("div", { class: "call-buttons" }, buttons)),
  );
}

function draw() {
  if (!data || !table) return;
  table.replaceChildren(
    ...(data.items.length
      ? data.items.map((c) => row(c, data.me))
      : [el("tr", {}, el("td", { colspan: 7, class: "muted", text: t("call.no_live_calls") }))]),
  );
  if (callbacks) callbacks.textContent = t("call.pending_callbacks", { n: data.pending_callbacks });
  tick();
}

function tick() {
  const now = Date.now();
  for (const node of table.querySelectorAll("[data-since]")) {
    const s = Math.max(0, Math.round((now - Number(node.dataset.since)) / 1000));
    node.textContent = Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }
}

let timer = null;
async function load() {
  try {
    data = await api("GET", "/console/api/calls/live");
    draw();
  } catch (err) {
    toast(err.message);
  }
}
function soon() {
  clearTimeout(timer);
  timer = setTimeout(load, 250);
}
live.on("ticket.event", (f) => ["call", "recording"].includes(f.event.kind) && soon());
live.on("state", ({ connected }) => connected && soon());
document.addEventListener("hd:calls", draw);
setInterval(() => !document.hidden && load(), 4000);
setInterval(tick, 1000);
load();
