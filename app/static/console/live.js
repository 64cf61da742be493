// The console's live connection: /console/ws when it is there, polling otherwise.
//
// Pages subscribe with live.on(type, fn). Frame types the pages understand:
//   "ticket.event"   {ticket, seq, event}     a new timeline event
//   "ticket.created" {ticket}                 a new ticket (public shape)
//   "ticket.updated" {ticket, changes}
//   "ticket.deleted" {ticket: {id, number, team_id}}  an admin deleted it
//   "typing"         {ticket, author, typing}  someone typing (agent or contact)
//   "read"           {ticket, seq, by, author} someone read up to seq (agents: also "viewing")
//   "presence"       {agent, status}
//   "state"          {connected}
// The wire protocol is channels/webchat (docs/): hello -> welcome, subscribe to the
// "workspace" stream (tickets this agent may see) and to "ticket" streams with cursors.
// Until the socket is up (or if it never is), live.setPoller(fn) runs fn every few
// seconds so nothing waits for a reload.
import { boot } from "./util.js";

const handlers = new Map();
let socket = null;
let connected = false;
let poller = null;
let pollTimer = null;
let backoff = 500;
const watched = new Map(); // ticket id -> last seq seen

export function on(type, fn) {
  if (!handlers.has(type)) handlers.set(type, new Set());
  handlers.get(type).add(fn);
}

export function emit(type, frame) {
  for (const fn of handlers.get(type) || []) {
    try {
      fn(frame);
    } catch (err) {
      console.error(err);
    }
  }
}

export function isConnected() {
  return connected;
}

export function setPoller(fn, everyMs = 3000) {
  poller = fn;
  clearInterval(pollTimer);
  pollTimer = setInterval(() => {
    if (!connected && poller && !document.hidden) poller();
  }, everyMs);
}

// Live-only frames (typing, read, presence) are dropped while offline: they are
// courtesy signals, and the state they describe is re-sent on reconnect.
export function send(frame) {
  if (connected && socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify(frame));
    return true;
  }
  return false;
}

export function watchTicket(id, afterSeq) {
  watched.set(id, afterSeq || 0);
  send({ type: "subscribe", stream: "ticket", ticket: id, after_seq: afterSeq || 0 });
}

function presenceStatus() {
  return localStorage.getItem("hd.presence") || "available";
}

export function advance(id, seq) {
  if (watched.has(id) && seq > watched.get(id)) watched.set(id, seq);
}

function setState(value) {
  if (connected === value) return;
  connected = value;
  emit("state", { connected: value });
}

// Server frames are normalised to the shapes above, so the pages stay independent
// of the wire protocol's details.
function dispatch(frame) {
  const type = frame.type;
  if (type === "welcome") {
    backoff = 500;
    setState(true);
    send({ type: "subscribe", stream: "workspace" });
    for (const [id, seq] of watched) {
      send({ type: "subscribe", stream: "ticket", ticket: id, after_seq: seq });
    }
    emit("welcome", frame);
    return;
  }
  if (type === "event" || type === "ticket.event") {
    const event = frame.event || frame;
    const ticket = frame.ticket_id || frame.ticket || event.ticket_id;
    const seq = frame.seq || event.seq;
    advance(ticket, seq);
    emit("ticket.event", { ticket, seq, event: { ...event, ticket_id: ticket, seq } });
  } else if (type === "ticket") {
    emit("ticket." + (["created", "deleted"].includes(frame.action) ? frame.action : "updated"), frame);
  } else if (type === "ticket.created" || type === "ticket.updated" || type === "ticket.deleted") {
    emit(type, frame);
  } else if (type === "ping") {
    send({ type: "pong" });
  } else if (type === "error") {
    console.warn("console socket:", frame.code, frame.message);
  } else {
    emit(type, frame);
  }
}

function connect() {
  if (!("WebSocket" in window)) return;
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/console/ws";
  let opened = false;
  try {
    socket = new WebSocket(url);
  } catch {
    return;
  }
  socket.addEventListener("open", () => {
    opened = true;
    // Nothing else may be sent before the server's welcome.
    socket.send(JSON.stringify({ type: "hello", presence: presenceStatus(), locale: boot.locale }));
  });
  socket.addEventListener("message", (msg) => {
    let frame;
    try {
      frame = JSON.parse(msg.data);
    } catch {
      return;
    }
    if (frame && typeof frame === "object") dispatch(frame);
  });
  socket.addEventListener("close", () => {
    setState(false);
    socket = null;
    // A socket that never opened (endpoint missing) retries slowly; polling covers it.
    backoff = Math.min(opened ? backoff * 2 : 15000, 15000);
    setTimeout(connect, backoff + Math.random() * 250);
    if (poller) poller();
  });
}

connect();
