// The ticket view's call card: "Call customer" while the contact has the widget open,
// the ticket's live call, and its callback requests (the progressive dialer's queue).
import { api, age, boot, el, t } from "./util.js";
import * as live from "./live.js";
import { activeCalls, dial } from "./calls.js";

const ticket = boot.ticket;
const body = document.getElementById("calls-body");
let data = null;
let dialing = false;

function callbackLine(cb) {
  const bits = [t("call.callback_state." + cb.state)];
  if (cb.attempts) bits.push(t("call.attempts", { n: cb.attempts }));
  if (cb.agent_name) bits.push(cb.agent_name);
  bits.push(age(cb.created_at));
  return el("li", { "data-testid": "callback", class: cb.open ? "open" : "" }, bits.join(" · "));
}

function draw() {
  if (!body || !data) return;
  const busy = activeCalls().some((c) => c.role === "agent" && c.mode !== "ended");
  const parts = [];
  if (data.live) {
    const who = data.live.agent_name ? " · " + data.live.agent_name : "";
    parts.push(el("p", { class: "call-live", "data-testid": "ticket-live-call", text: t("call.live_on_ticket", { state: t("call.state." + data.live.state) }) + who }));
  } else if (data.contact_online) {
    parts.push(
      el("button", {
        type: "button",
        class: "primary",
        "data-testid": "call-customer",
        disabled: busy || dialing,
        text: t("call.call_customer"),
        onclick: async () => {
          dialing = true;
          draw();
          await dial(ticket.id, ticket.contact_name);
          dialing = false;
          draw();
        },
      }),
    );
  } else if (data.contact_id) {
    parts.push(el("p", { class: "muted", "data-testid": "contact-offline", text: t("call.contact_offline") }));
  } else {
    parts.push(el("p", { class: "muted", text: t("call.no_contact") }));
  }
  if (data.callbacks.length) {
    parts.push(el("h3", { text: t("call.callbacks") }), el("ul", { class: "plain" }, data.callbacks.map(callbackLine)));
  }
  body.replaceChildren(...parts);
}

let loading = null;
async function load() {
  if (loading) return loading;
  loading = api("GET", `/console/api/tickets/${ticket.id}/calls`)
    .then((fresh) => {
      data = fresh;
      draw();
    })
    .catch(() => {})
    .finally(() => (loading = null));
  return loading;
}

live.on("ticket.event", (f) => {
  if (f.ticket === ticket.id && ["call", "recording"].includes(f.event.kind)) load();
});
live.on("state", ({ connected }) => connected && load());
document.addEventListener("hd:calls", draw);
// Whether the customer has the widget open changes without a ticket event.
setInterval(() => !document.hidden && load(), 5000);
load();
