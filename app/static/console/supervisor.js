// Supervisor station: live queues per team, agents with state and load, due tickets.
import { age, api, boot, el, t, toast } from "./util.js";
import * as live from "./live.js";

const queues = document.getElementById("queues");
const agents = document.getElementById("agents");
const due = document.getElementById("due");
const teamName = (id) => ((boot.teams || []).find((x) => x.id === id) || {}).name || t("supervisor.no_team");

function stateLabel(state) {
  return { available: t("presence.available"), away: t("presence.away"), offline: t("supervisor.offline"), on_call: t("supervisor.on_call") }[state] || state;
}

function draw(data) {
  const now = Date.parse(data.now) || Date.now();
  queues.replaceChildren(
    ...data.queues.map((q) =>
      el(
        "article",
        { class: "card queue", "data-testid": "queue" },
        el("h3", { text: q.team_id === null ? t("supervisor.no_team") : q.name }),
        el(
          "dl",
          {},
          el("dt", { text: t("supervisor.waiting_chats") }), el("dd", { class: "big", text: q.chats }),
          el("dt", { text: t("supervisor.waiting_calls") }), el("dd", { class: "big", text: q.calls }),
          el("dt", { text: t("supervisor.oldest_wait") }), el("dd", { text: q.oldest ? age(q.oldest, now) : "–" }),
        ),
      ),
    ),
  );
  agents.replaceChildren(
    ...data.agents.map((a) =>
      el(
        "tr",
        {},
        el("td", { text: a.name }),
        el("td", {}, el("span", { class: "state st-" + a.state, text: stateLabel(a.state) })),
        el("td", { text: a.chats + " / " + ((a.capacity && a.capacity.chat) ?? "–") }),
        el("td", { text: a.calls }),
        el("td", { text: a.open }),
        el("td", { text: a.team_ids.map(teamName).join(", ") }),
      ),
    ),
  );
  const options = (current) => [
    el("option", { value: "", text: t("ticket.nobody") }),
    ...(boot.agents || []).map((a) => el("option", { value: a.id, text: a.name, selected: a.id === current })),
  ];
  due.replaceChildren(
    ...(data.due.length
      ? data.due.map((r) =>
          el(
            "tr",
            { class: r.overdue ? "overdue" : "" },
            el("td", {}, el("a", { href: "/console/tickets/" + r.id, text: "#" + r.number + " " + (r.subject || r.contact_name) })),
            el("td", { text: t("status." + r.status) }),
            el("td", { text: r.assignee_name || "–" }),
            el("td", { text: r.overdue ? t("inbox.overdue") : age(new Date(2 * now - Date.parse(r.due_at)).toISOString(), now) }),
            el(
              "td",
              {},
              el("label", { class: "visually-hidden", for: "re-" + r.id, text: t("supervisor.reassign") }),
              el(
                "select",
                {
                  id: "re-" + r.id,
                  onchange: (e) =>
                    api("PATCH", "/api/v1/tickets/" + r.id, { assignee_id: e.target.value ? Number(e.target.value) : null })
                      .then(load)
                      .catch((err) => toast(err.message)),
                },
                options(r.assignee_id),
              ),
            ),
          ),
        )
      : [el("tr", {}, el("td", { colspan: 5, text: t("supervisor.nothing_due") }))]),
  );
}

let timer = null;
async function load() {
  try {
    draw(await api("GET", "/console/api/supervisor"));
  } catch (err) {
    toast(err.message);
  }
}
function soon() {
  clearTimeout(timer);
  timer = setTimeout(load, 300);
}
live.on("ticket.created", soon);
live.on("ticket.updated", soon);
live.on("ticket.deleted", soon);
live.on("ticket.event", soon);
live.on("presence", soon);
live.setPoller(load, 3000);
load();
setInterval(() => live.isConnected() && !document.hidden && load(), 15000);
