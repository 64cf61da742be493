// Every signed-in page: presence, capacity, live state, assignment alerts, shortcuts help.
import { api, boot, me, t, toast, typingTarget } from "./util.js";
import * as live from "./live.js";

const presence = document.getElementById("presence");
const capacity = document.getElementById("capacity");
const liveState = document.getElementById("live-state");
const PRESENCE_KEY = "hd.presence";

function sendPresence() {
  live.send({ type: "presence", status: presence.value });
}

if (presence) {
  presence.value = localStorage.getItem(PRESENCE_KEY) || "available";
  presence.addEventListener("change", () => {
    localStorage.setItem(PRESENCE_KEY, presence.value);
    sendPresence();
  });
}

live.on("state", ({ connected }) => {
  if (!liveState) return;
  liveState.textContent = connected ? t("inbox.live") : "";
  liveState.classList.toggle("on", connected);
});

export async function refreshCapacity() {
  if (!capacity || !me) return;
  try {
    const data = await api("GET", "/console/api/inbox?view=mine&channel=chat&status=new&status=open&limit=200");
    const max = (me.capacity && me.capacity.chat) || 0;
    capacity.textContent = t("capacity", { used: data.items.length, max });
    capacity.classList.toggle("full", data.items.length >= max && max > 0);
  } catch {
    /* shown again on the next change */
  }
}
refreshCapacity();

// -- alerts when something is assigned to me --------------------------------------
let audio = null;
function beep() {
  try {
    audio = audio || new AudioContext();
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.15, audio.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.4);
    osc.connect(gain).connect(audio.destination);
    osc.start();
    osc.stop(audio.currentTime + 0.4);
  } catch {
    /* no audio device: the toast still shows */
  }
}

function alertAssigned(ticket) {
  const text = t("notify.assigned", { number: ticket.number });
  toast(text);
  beep();
  if ("Notification" in window && Notification.permission === "granted" && document.hidden) {
    const n = new Notification(text, { body: ticket.subject || "", tag: "ticket-" + ticket.id });
    n.onclick = () => {
      window.focus();
      location.href = "/console/tickets/" + ticket.id;
    };
  }
}

// The assignment event on the timeline says who assigned whom; a new ticket may be
// created already assigned.
const alerted = new Set();
function alertOnce(ticketId, number, subject) {
  const key = ticketId + ":" + number;
  if (alerted.has(key)) return;
  alerted.add(key);
  alertAssigned({ id: ticketId, number, subject });
}
live.on("ticket.event", (f) => {
  if (!me || f.event.kind !== "assignment") return;
  const change = ((f.event.payload || {}).changes || {}).assignee_id;
  if (change && change.to === me.id && !(f.event.author && f.event.author.id === me.id && f.event.author.type === "agent")) {
    api("GET", "/api/v1/tickets/" + f.ticket)
      .then((tk) => {
        alerted.delete(tk.id + ":" + tk.number);
        alertOnce(tk.id, tk.number, tk.subject);
      })
      .catch(() => {});
  }
  if (change) refreshCapacity();
});
live.on("ticket.created", (f) => {
  if (me && f.ticket && f.ticket.assignee_id === me.id) alertOnce(f.ticket.id, f.ticket.number, f.ticket.subject);
});
live.on("ticket.updated", () => refreshCapacity());
live.on("ticket.deleted", () => refreshCapacity());

// Browsers only allow the permission prompt after a user gesture.
document.addEventListener(
  "click",
  () => {
    if ("Notification" in window && Notification.permission === "default") {
      Notification.requestPermission().catch(() => {});
    }
  },
  { once: true },
);

// -- keyboard ----------------------------------------------------------------------
const help = document.getElementById("help");
const keyHandlers = new Map();
export function onKey(key, fn) {
  keyHandlers.set(key, fn);
}

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === "Escape" && typingTarget(event)) {
    event.target.blur();
    return;
  }
  if (typingTarget(event)) return;
  if (event.key === "?") {
    event.preventDefault();
    if (help && !help.open) help.showModal();
    return;
  }
  const fn = keyHandlers.get(event.key);
  if (fn) {
    event.preventDefault();
    fn(event);
  }
});

export { boot };
