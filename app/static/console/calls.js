// The console's call dock, on every page: rings, the in-call panel, supervision, rejoin.
//
// Signaling is the `call.*` frames on /console/ws (channels/voice, docs/voice-protocol.md):
//   server -> console  call.state {call, state, role, ticket, offer?, consult?, rejoin?…}
//                      call.answer {call, sdp, leg}     call.error {code, message, call?}
//   console -> server  call.accept/decline/offer/hangup/hold/mute/transfer/dial,
//                      call.listen/whisper/barge (supervisors)
// A page navigation reloads the console and closes its socket: the server holds the
// customer and, when the new page's socket says hello, announces the agent's live calls
// (`rejoin: true` once it has noticed the old leg is gone). This module then rejoins
// with a fresh leg (`call.offer`), without the agent doing anything.
import { api, el, t, toast } from "./util.js";
import * as live from "./live.js";
import { MicError, closeLeg, legStats, offerSdp, openLeg, setMic } from "./rtc.js";

const calls = new Map(); // call id -> call
let pendingDial = null; // {ticket, leg, contact} until the server names the new call
let targets = null;
const REJOIN_TRIES = 10;
const REJOIN_GAP_MS = 800;
const ENDED = new Set(["ended", "abandoned", "callback_requested", "transferred"]);
const TALKING = new Set(["active", "held", "transferring"]);

const dock = el("section", { id: "call-dock", class: "call-dock", "aria-label": t("call.dock"), "data-testid": "call-dock" });
document.body.append(dock);

// A call: {id, ticket, role: agent|supervisor, mode: ring|connecting|dialing|talking|rejoin|ended,
//          state, offer, leg, since, muted, held, consult, supervising, info, ui}
function upsert(id, fields) {
  let call = calls.get(id);
  if (!call) {
    call = { id, role: "agent", mode: "ring", state: "", leg: null, since: 0, muted: false, info: null, ui: {} };
    calls.set(id, call);
  }
  Object.assign(call, fields);
  return call;
}

function send(frame) {
  if (live.send(frame)) return true;
  toast(t("call.offline"));
  return false;
}

// -- ringing: sound and a desktop notification ------------------------------------------
let ringCtx = null;
let ringTimer = null;
function ringOnce() {
  try {
    ringCtx = ringCtx || new AudioContext();
    const now = ringCtx.currentTime;
    for (const [start, freq] of [[0, 660], [0.35, 880]]) {
      const osc = ringCtx.createOscillator();
      const gain = ringCtx.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.12, now + start);
      gain.gain.exponentialRampToValueAtTime(0.001, now + start + 0.3);
      osc.connect(gain).connect(ringCtx.destination);
      osc.start(now + start);
      osc.stop(now + start + 0.3);
    }
  } catch {
    /* no audio output: the dock and the notification still show */
  }
}
function updateRinging() {
  const ringing = [...calls.values()].some((c) => c.mode === "ring");
  if (ringing && !ringTimer) {
    ringOnce();
    ringTimer = setInterval(ringOnce, 2500);
  } else if (!ringing && ringTimer) {
    clearInterval(ringTimer);
    ringTimer = null;
  }
}
function notifyRing(call) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  const title = ringTitle(call);
  const body = call.info ? "#" + call.info.ticket_number + " " + (call.info.contact_name || call.info.ticket_subject || "") : "";
  try {
    const n = new Notification(title, { body, tag: "call-" + call.id, requireInteraction: true });
    n.onclick = () => {
      window.focus();
      const button = dock.querySelector(`[data-call="${call.id}"] [data-action="accept"]`);
      if (button) button.focus();
    };
    call.notification = n;
  } catch {
    /* some browsers only allow notifications from a service worker */
  }
}
function ringTitle(call) {
  if (call.offer === "consult") return t("call.consult_from", { name: call.consultFrom || t("call.colleague") });
  if (call.offer === "transfer") return t("call.incoming_transfer");
  if (call.offer === "callback") return t("call.callback_offer");
  return t("call.incoming");
}

async function loadInfo(call) {
  try {
    call.info = await api("GET", "/console/api/calls/" + call.id);
    // The server's answer time keeps the timer right across page loads and rejoins.
    if (call.info.answered_at && TALKING.has(call.state)) call.since = Date.parse(call.info.answered_at);
  } catch {
    call.info = call.info || null; // a consulted agent may not see the ticket: the frame is enough
  }
  render();
}

// -- actions ---------------------------------------------------------------------------
async function accept(call) {
  if (call.mode !== "ring") return;
  call.mode = "connecting";
  call.consultee = call.offer === "consult";
  if (call.notification) call.notification.close();
  render();
  try {
    call.leg = await openLeg();
    watchLeg(call);
    const sdp = await offerSdp(call.leg.pc);
    if (!send({ type: "call.accept", call: call.id, sdp })) throw new Error("offline");
  } catch (err) {
    toast(err instanceof MicError ? t("call.mic_denied") : t("call.failed"));
    closeLeg(call.leg);
    call.leg = null;
    send({ type: "call.decline", call: call.id });
    drop(call);
  }
}

function decline(call) {
  send({ type: "call.decline", call: call.id });
  drop(call);
}

function hangup(call) {
  send({ type: "call.hangup", call: call.id });
  finish(call, "ended", {});
}

function mute(call) {
  call.muted = !call.muted;
  setMic(call.leg, !call.muted);
  send({ type: "call.mute", call: call.id, muted: call.muted });
  render();
}

function hold(call) {
  send({ type: "call.hold", call: call.id, held: call.state !== "held" });
}

function transfer(call, form) {
  const value = form.elements.target.value;
  const warm = form.elements.warm.checked;
  if (!value) return;
  const [kind, raw] = value.split(":");
  const target = Number(raw);
  if (warm && kind !== "agent") {
    toast(t("call.warm_needs_agent"));
    return;
  }
  const frame = { type: "call.transfer", call: call.id, mode: warm ? "warm" : "blind" };
  frame[kind] = target;
  call.ui.transferOpen = false;
  send(frame);
  render();
}

function transferAction(call, action) {
  send({ type: "call.transfer", call: call.id, action });
}

// Supervisors: listen, whisper (only the agent hears), barge (three-way).
export async function supervise(callId, mode) {
  const existing = calls.get(callId);
  if (existing && existing.role === "supervisor" && existing.leg) {
    setMic(existing.leg, mode !== "listen");
    send({ type: "call." + mode, call: callId });
    return;
  }
  if (existing) return;
  const call = upsert(callId, { role: "supervisor", mode: "connecting", supervising: mode });
  render();
  loadInfo(call);
  try {
    call.leg = await openLeg({ micEnabled: mode !== "listen" });
    watchLeg(call);
    const sdp = await offerSdp(call.leg.pc);
    if (!send({ type: "call." + mode, call: callId, sdp })) throw new Error("offline");
  } catch (err) {
    toast(err instanceof MicError ? t("call.mic_denied") : t("call.failed"));
    drop(call);
  }
}

// Outbound: the agent calls the ticket's contact in their widget.
export async function dial(ticketId, contactName) {
  if (pendingDial || [...calls.values()].some((c) => c.role === "agent" && c.mode !== "ended")) {
    toast(t("call.busy"));
    return false;
  }
  pendingDial = { ticket: ticketId, contact: contactName || "", leg: null };
  renderPending();
  try {
    pendingDial.leg = await openLeg();
    const sdp = await offerSdp(pendingDial.leg.pc);
    if (!send({ type: "call.dial", ticket: ticketId, sdp })) throw new Error("offline");
    return true;
  } catch (err) {
    toast(err instanceof MicError ? t("call.mic_denied") : t("call.failed"));
    if (pendingDial) closeLeg(pendingDial.leg);
    pendingDial = null;
    renderPending();
    return false;
  }
}

function bindDial(id) {
  const pending = pendingDial;
  pendingDial = null;
  renderPending();
  const call = upsert(id, { role: "agent", mode: "dialing", state: "ringing", leg: pending.leg, ticket: pending.ticket });
  call.info = { ticket_number: null, contact_name: pending.contact };
  watchLeg(call);
  loadInfo(call);
  return call;
}

// Rejoin after a reload (or a failed leg): a fresh leg offered on the same call.
async function rejoin(call, attempt = 0) {
  if (call.rejoining && attempt === 0) return;
  call.rejoining = true;
  call.mode = "rejoin";
  render();
  try {
    if (!call.leg) {
      call.leg = await openLeg({ micEnabled: !call.muted });
      watchLeg(call);
      call.offerSdp = await offerSdp(call.leg.pc);
    }
    call.rejoinAttempt = attempt;
    if (!send({ type: "call.offer", call: call.id, sdp: call.offerSdp })) throw new Error("offline");
  } catch (err) {
    call.rejoining = false;
    toast(err instanceof MicError ? t("call.mic_denied") : t("call.failed"));
    closeLeg(call.leg);
    call.leg = null;
    render();
  }
}

function watchLeg(call) {
  const leg = call.leg;
  if (!leg) return;
  leg.onblocked = render;
  leg.pc.addEventListener("connectionstatechange", () => {
    if (call.leg !== leg) return;
    if (leg.pc.connectionState === "failed" && call.role === "agent" && TALKING.has(call.state)) {
      // The server notices the dead leg too and holds the customer; offer a new one.
      closeLeg(leg);
      call.leg = null;
      call.offerSdp = null;
      rejoin(call);
    }
    render();
  });
}

function drop(call) {
  closeLeg(call.leg);
  call.leg = null;
  if (call.notification) call.notification.close();
  calls.delete(call.id);
  render();
}

function finish(call, state, frame) {
  closeLeg(call.leg);
  call.leg = null;
  if (call.notification) call.notification.close();
  if (call.mode === "ended") return;
  const talked = call.since ? Math.round((Date.now() - call.since) / 1000) : null;
  call.mode = "ended";
  call.state = state;
  call.summary =
    state === "transferred"
      ? t("call.transferred")
      : frame.reason === "left"
        ? t("call.left")
        : t("call.ended") + (frame.duration != null ? " · " + mmss(frame.duration) : talked ? " · " + mmss(talked) : "");
  render();
  setTimeout(() => calls.get(call.id) === call && call.mode === "ended" && drop(call), 5000);
}

// -- frames ----------------------------------------------------------------------------
// A socket that comes back (network blip, server restart) is a new connection to the
// server: it dropped the legs that hung on the old one (agent: customer held for the
// grace period; supervisor and consult legs: gone; an outbound dial: ended). Rings are
// addressed to the agent, not the connection, and keep ringing.
live.on("welcome", () => {
  for (const call of [...calls.values()]) {
    if (call.mode === "ring" || call.mode === "ended") continue;
    if (call.role === "agent" && !call.consultee && (TALKING.has(call.state) || call.mode === "rejoin")) {
      closeLeg(call.leg);
      call.leg = null;
      call.offerSdp = null;
      call.rejoining = false;
      rejoin(call);
    } else {
      drop(call);
    }
  }
  if (pendingDial) {
    closeLeg(pendingDial.leg);
    pendingDial = null;
    renderPending();
  }
});

live.on("call.state", (f) => {
  const id = f.call;
  const state = f.state;
  let call = calls.get(id);
  if (!call && pendingDial && state === "ringing") call = bindDial(id);
  if (state === "withdrawn") {
    if (call) {
      if (call.mode === "ring" && f.reason === "no_answer") toast(t("call.missed"));
      drop(call);
    }
    return;
  }
  if (ENDED.has(state)) {
    if (call) finish(call, state, f);
    return;
  }
  if (state === "offered") {
    // A ring (with `offer`), or the server announcing a call still ringing for us.
    if (call && call.mode !== "ring") return;
    call = upsert(id, {
      mode: "ring",
      state,
      ticket: f.ticket,
      offer: f.offer || "inbound",
      consultFrom: f.consult_from || null,
      timeout: f.timeout || null,
    });
    render();
    loadInfo(call).then(() => notifyRing(call));
    return;
  }
  if (state === "ringing" && call) {
    call.state = state;
    call.mode = "dialing";
    render();
    return;
  }
  if (!TALKING.has(state)) return;
  if (!call || !call.leg) {
    // Announced after a (re)connect: this agent's call, with no leg in this page.
    if (f.role && f.role !== "agent") return;
    call = upsert(id, { state, ticket: f.ticket ?? (call && call.ticket), role: "agent" });
    if (!call.info) loadInfo(call);
    if (f.rejoin === false && !call.rejoining) {
      // The server has not yet noticed the old page is gone: rejoin retries shortly.
      call.mode = "rejoin";
      render();
      setTimeout(() => !call.leg && rejoin(call), REJOIN_GAP_MS);
      return;
    }
    if (!call.rejoining) rejoin(call);
    return;
  }
  // Announcements (after a reconnect) carry no `direction`: they must not end a rejoin.
  if (f.direction === undefined && call.mode === "rejoin") return;
  call.state = state;
  call.rejoining = false;
  if (state === "active") call.consultee = false;
  if (call.mode !== "ended") call.mode = "talking";
  if (f.muted !== undefined) call.muted = f.muted;
  if (f.supervising) call.supervising = f.supervising;
  call.consult = state === "transferring" ? f.consult || call.consult || null : null;
  if (!call.since && state !== "transferring") call.since = call.info && call.info.answered_at ? Date.parse(call.info.answered_at) : Date.now();
  render();
});

live.on("call.answer", (f) => {
  let call = calls.get(f.call);
  if (!call && pendingDial && pendingDial.leg) call = bindDial(f.call);
  if (!call || !call.leg) return;
  call.leg.pc.setRemoteDescription({ type: "answer", sdp: f.sdp }).catch(() => {
    toast(t("call.failed"));
    hangup(call);
  });
});

live.on("call.error", (f) => {
  const call = f.call ? calls.get(f.call) : null;
  if (!call) {
    if (pendingDial) {
      closeLeg(pendingDial.leg);
      pendingDial = null;
      renderPending();
    }
    toast(f.message || t("call.failed"));
    return;
  }
  if (call.mode === "rejoin" && f.code === "conflict") {
    // "still connected": the old page's leg is not gone yet on the server; try again.
    const next = (call.rejoinAttempt || 0) + 1;
    if (next < REJOIN_TRIES) {
      setTimeout(() => calls.get(call.id) === call && call.mode === "rejoin" && rejoin(call, next), REJOIN_GAP_MS);
      return;
    }
    call.rejoining = false;
    call.elsewhere = true;
    closeLeg(call.leg);
    call.leg = null;
    call.offerSdp = null;
    render();
    return;
  }
  toast(f.message || t("call.failed"));
  if (f.code === "ended" || f.code === "not_found") finish(call, "ended", {});
  else if (call.mode === "connecting" || call.mode === "rejoin") drop(call);
});

// -- rendering -----------------------------------------------------------------------------
function mmss(seconds) {
  const s = Math.max(0, Math.round(Number(seconds) || 0));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h ? h + ":" + String(m).padStart(2, "0") + ":" + rest : m + ":" + rest;
}

function ticketLink(call) {
  const info = call.info || {};
  const ticket = info.ticket_id || call.ticket;
  if (!ticket) return null;
  const label = (info.ticket_number ? "#" + info.ticket_number : "#") + " " + (info.contact_name || info.ticket_subject || "");
  return el("a", { href: "/console/tickets/" + ticket, class: "call-ticket", "data-testid": "call-ticket", text: label.trim() });
}

function button(call, action, label, fn, extra = {}) {
  return el("button", { type: "button", "data-action": action, onclick: () => fn(call), ...extra, text: label });
}

function stateLine(call) {
  if (call.role === "supervisor") return t("call.supervising." + (call.supervising || "listen"), { name: (call.info && call.info.agent_name) || "" });
  if (call.state === "held") return t("call.on_hold");
  if (call.state === "transferring") {
    if (call.consult === "connected") return t("call.consult_connected");
    if (call.consult === "ringing") return t("call.consult_ringing");
    return t("call.transferring");
  }
  return t("call.talking");
}

function transferForm(call) {
  if (!call.ui.transferOpen) return null;
  const list = targets || { agents: [], teams: [] };
  const form = el(
    "form",
    {
      class: "call-transfer",
      "data-testid": "call-transfer-form",
      onsubmit: (e) => {
        e.preventDefault();
        transfer(call, e.target);
      },
    },
    el("label", { for: "xfer-" + call.id, text: t("call.transfer_to") }),
    el(
      "select",
      { id: "xfer-" + call.id, name: "target", required: true },
      el("option", { value: "", text: "–" }),
      el("optgroup", { label: t("call.teams") }, list.teams.map((x) => el("option", { value: "team:" + x.id, text: x.name }))),
      el("optgroup", { label: t("call.agents") }, list.agents.map((x) => el("option", { value: "agent:" + x.id, text: x.name }))),
    ),
    el("label", { class: "check" }, el("input", { type: "checkbox", name: "warm" }), " " + t("call.warm")),
    el("button", { type: "submit", class: "primary", text: t("call.transfer_go") }),
  );
  return form;
}

function card(call) {
  const attrs = { class: "call-card mode-" + call.mode + " st-" + call.state, "data-call": call.id, "data-testid": "call-card", "data-mode": call.mode };
  if (call.role !== "supervisor" && (call.mode === "ring" || call.mode === "connecting")) {
    const waited = call.info && call.info.queued_at ? Math.round((Date.now() - Date.parse(call.info.queued_at)) / 1000) : null;
    return el(
      "article",
      { ...attrs, role: "alertdialog", "aria-label": ringTitle(call) },
      el("h2", { text: ringTitle(call) }),
      ticketLink(call),
      waited !== null && call.offer === "inbound" ? el("p", { class: "muted" }, t("call.waited"), " ", el("span", { "data-since": Date.parse(call.info.queued_at) })) : null,
      el(
        "div",
        { class: "call-buttons" },
        button(call, "accept", t("call.accept"), accept, { class: "ok", disabled: call.mode !== "ring" }),
        button(call, "decline", t("call.decline"), decline, { class: "end", disabled: call.mode !== "ring" }),
      ),
    );
  }
  if (call.mode === "ended") {
    return el("article", attrs, el("h2", { text: call.summary || t("call.ended") }), ticketLink(call));
  }
  if (call.mode === "dialing") {
    return el(
      "article",
      attrs,
      el("h2", { text: t("call.dialing", { name: (call.info && call.info.contact_name) || t("call.customer") }) }),
      ticketLink(call),
      el("div", { class: "call-buttons" }, button(call, "hangup", t("call.hangup"), hangup, { class: "end" })),
    );
  }
  if (call.mode === "rejoin") {
    return el(
      "article",
      attrs,
      el("h2", { text: call.elsewhere ? t("call.elsewhere") : t("call.rejoining") }),
      ticketLink(call),
      el(
        "div",
        { class: "call-buttons" },
        call.rejoining ? null : button(call, "rejoin", t("call.rejoin"), (c) => rejoin(c), { class: "ok" }),
        button(call, "hangup", t("call.hangup"), hangup, { class: "end" }),
      ),
    );
  }
  // talking (agent or supervisor)
  const bits = [
    el("h2", {}, el("span", { class: "call-state", "data-testid": "call-state", text: stateLine(call) }), " ", el("span", { class: "call-timer", "data-testid": "call-timer", "data-since": call.since || "" })),
    ticketLink(call),
  ];
  if (call.leg && call.leg.blocked) {
    bits.push(
      button(call, "audio", t("call.enable_audio"), (c) => {
        c.leg.audio.play().then(() => {
          c.leg.blocked = false;
          render();
        }).catch(() => {});
      }),
    );
  }
  const buttons = [];
  if (call.role === "supervisor") {
    for (const mode of ["listen", "whisper", "barge"]) {
      buttons.push(
        button(call, mode, t("call." + mode), () => supervise(call.id, mode), { "aria-pressed": call.supervising === mode ? "true" : "false" }),
      );
    }
    buttons.push(button(call, "hangup", t("call.leave"), hangup, { class: "end" }));
  } else if (call.consultee) {
    buttons.push(button(call, "mute", t(call.muted ? "call.unmute" : "call.mute"), mute, { "aria-pressed": call.muted ? "true" : "false" }));
    buttons.push(button(call, "hangup", t("call.hangup"), hangup, { class: "end" }));
  } else {
    buttons.push(button(call, "mute", t(call.muted ? "call.unmute" : "call.mute"), mute, { "aria-pressed": call.muted ? "true" : "false" }));
    if (call.state === "transferring" && call.consult) {
      if (call.consult === "connected") buttons.push(button(call, "complete", t("call.transfer_complete"), () => transferAction(call, "complete"), { class: "ok" }));
      buttons.push(button(call, "cancel", t("call.transfer_cancel"), () => transferAction(call, "cancel")));
    } else {
      buttons.push(button(call, "hold", t(call.state === "held" ? "call.resume" : "call.hold"), hold, { "aria-pressed": call.state === "held" ? "true" : "false" }));
      buttons.push(
        button(call, "transfer", t("call.transfer"), async () => {
          call.ui.transferOpen = !call.ui.transferOpen;
          if (call.ui.transferOpen && !targets) targets = await api("GET", "/console/api/calls/targets").catch(() => null);
          render();
          const select = dock.querySelector(`#xfer-${call.id}`);
          if (select) select.focus();
        }, { "aria-expanded": call.ui.transferOpen ? "true" : "false" }),
      );
    }
    buttons.push(button(call, "hangup", t("call.hangup"), hangup, { class: "end" }));
  }
  bits.push(el("div", { class: "call-buttons" }, buttons), transferForm(call));
  return el("article", { ...attrs, "aria-label": t("call.panel") }, bits);
}

let pendingNode = null;
function renderPending() {
  if (pendingNode) pendingNode.remove();
  pendingNode = null;
  if (pendingDial) {
    pendingNode = el("article", { class: "call-card mode-dialing", "data-testid": "call-card", "data-mode": "dialing" }, el("h2", { text: t("call.dialing", { name: pendingDial.contact || t("call.customer") }) }));
    dock.append(pendingNode);
  }
  dock.hidden = !dock.childElementCount;
}

function render() {
  // Keep the focused control focused across a redraw (state frames arrive any time).
  const active = document.activeElement;
  const focus = active && dock.contains(active) ? [active.closest("[data-call]")?.dataset.call, active.dataset.action || active.id] : null;
  const keep = new Map();
  for (const node of dock.querySelectorAll("select[id^=xfer-]")) keep.set(node.id, node.value);
  dock.replaceChildren(...[...calls.values()].map(card));
  for (const [nodeId, value] of keep) {
    const node = document.getElementById(nodeId);
    if (node) node.value = value;
  }
  if (pendingNode) dock.append(pendingNode);
  dock.hidden = !dock.childElementCount;
  if (focus) {
    const scope = dock.querySelector(`[data-call="${focus[0]}"]`);
    const target = scope && (scope.querySelector(`[data-action="${focus[1]}"]`) || scope.querySelector("#" + CSS.escape(focus[1] || "x")));
    if (target) target.focus();
  }
  tick();
  updateRinging();
  document.dispatchEvent(new CustomEvent("hd:calls", { detail: { calls: [...calls.values()] } }));
}

function tick() {
  const now = Date.now();
  for (const node of dock.querySelectorAll("[data-since]")) {
    const since = Number(node.dataset.since);
    node.textContent = since ? mmss((now - since) / 1000) : "";
  }
}
setInterval(tick, 1000);
render();

// For the ticket and supervisor pages, and for tests: what this console is doing.
export function activeCalls() {
  return [...calls.values()];
}

window.hdCalls = {
  list: () => [...calls.values()].map((c) => ({ id: c.id, mode: c.mode, state: c.state, role: c.role, muted: c.muted })),
  stats: async (id) => {
    const call = id ? calls.get(id) : [...calls.values()].find((c) => c.leg);
    return call ? legStats(call.leg) : null;
  },
};

