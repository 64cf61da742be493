// The ticket view: live timeline, composer with canned responses and attachments,
// controls, merge, typing / viewing / read courtesy frames.
import { api, boot, el, markSeen, me, t, toast, uuid } from "./util.js";
import * as live from "./live.js";
import { onKey, refreshCapacity } from "./shell.js";
import { renderEvent } from "./timeline.js";

let ticket = boot.ticket;
const id = ticket.id;
const timeline = document.getElementById("timeline");
const composer = document.getElementById("composer");
const body = document.getElementById("body");
const via = document.getElementById("via");
const files = document.getElementById("files");
const fileList = document.getElementById("file-list");
const cannedBox = document.getElementById("canned");
const collision = document.getElementById("collision");
const customerTyping = document.getElementById("customer-typing");
const controls = document.getElementById("controls");
let lastSeq = 0;
let mode = "reply";
const seqs = new Set();

// -- timeline ------------------------------------------------------------------------
function append(event) {
  if (event.ticket_id !== undefined && event.ticket_id !== id) return;
  if (seqs.has(event.seq)) return;
  seqs.add(event.seq);
  const node = renderEvent(event);
  // Events normally arrive in order; an out-of-order one is slotted by seq.
  const after = [...timeline.children].find((c) => Number(c.dataset.seq) > event.seq);
  const atBottom = timeline.scrollHeight - timeline.scrollTop - timeline.clientHeight < 80;
  if (after) timeline.insertBefore(node, after);
  else timeline.append(node);
  lastSeq = Math.max(lastSeq, event.seq);
  live.advance(id, lastSeq);
  if (atBottom || (event.author && me && event.author.id === me.id)) timeline.scrollTop = timeline.scrollHeight;
  if (!document.hidden) seen();
}

// A read mark tells the customer (read receipts) and the other agents (this agent has
// the ticket open: "viewing"); it is repeated while the page is visible.
let readTimer = null;
function sendRead() {
  if (!document.hidden && lastSeq > 0) live.send({ type: "read", ticket: id, seq: lastSeq });
}
function seen() {
  markSeen(id, lastSeq);
  clearTimeout(readTimer);
  readTimer = setTimeout(sendRead, 300);
}
document.addEventListener("visibilitychange", () => !document.hidden && seen());
setInterval(sendRead, 15000);
live.on("welcome", () => setTimeout(sendRead, 500));

async function catchUp() {
  for (let guard = 0; guard < 50; guard++) {
    const data = await api("GET", `/api/v1/tickets/${id}/events?after_seq=${lastSeq}&limit=500`);
    for (const e of data.items) append(e);
    if (!data.next_cursor) break;
  }
}

live.on("ticket.event", (f) => {
  if (f.ticket !== id) return;
  if (f.seq > lastSeq + 1 && seqs.size) {
    catchUp().catch(() => {}); // a gap: fetch what we missed, then this one comes along
    return;
  }
  append(f.event);
  if (["status", "assignment", "update"].includes(f.event.kind)) refreshTicket();
});
live.on("ticket.updated", (f) => f.ticket && f.ticket.id === id && applyTicket(f.ticket));
live.on("state", ({ connected }) => connected && catchUp().catch(() => {}));
live.setPoller(() => catchUp().catch(() => {}), 2000);

// -- read receipts, typing, viewing ---------------------------------------------------
const viewers = new Map(); // agent id -> {name, typing, timer}
const VIEWING_TTL = 40000;
function viewing(author) {
  const v = viewers.get(author.id) || { name: author.name, typing: false };
  clearTimeout(v.expire);
  v.expire = setTimeout(() => {
    viewers.delete(author.id);
    renderCollision();
  }, VIEWING_TTL);
  viewers.set(author.id, v);
  return v;
}
live.on("read", (f) => {
  if (f.ticket !== id || !f.author) return;
  if (f.by === "contact" || f.author.type === "contact") {
    for (const node of timeline.querySelectorAll("[data-receipt]")) {
      if (Number(node.dataset.receipt) <= f.seq) node.textContent = "✓✓ " + t("timeline.read");
    }
    return;
  }
  if (f.author.type === "agent" && !(me && f.author.id === me.id)) {
    const isNew = !viewers.has(f.author.id);
    viewing(f.author);
    renderCollision();
    if (isNew) sendRead(); // let the newcomer know this agent is here too
  }
});

function renderCollision() {
  const parts = [];
  for (const [agentId, v] of viewers) {
    if (me && agentId === me.id) continue;
    parts.push(v.typing ? t("presence.typing", { name: v.name }) : t("presence.viewing", { name: v.name }));
  }
  collision.textContent = parts.join(" · ");
}
let customerTimer = null;
live.on("typing", (f) => {
  if (f.ticket !== id || !f.author) return;
  const typingNow = f.typing !== false;
  if (f.author.type === "contact") {
    customerTyping.hidden = !typingNow;
    clearTimeout(customerTimer);
    if (typingNow) customerTimer = setTimeout(() => (customerTyping.hidden = true), 6000);
    return;
  }
  if (me && f.author.id === me.id) return;
  const v = viewing(f.author);
  v.typing = typingNow;
  clearTimeout(v.timer);
  if (typingNow) v.timer = setTimeout(() => { v.typing = false; renderCollision(); }, 6000);
  viewers.set(f.author.id, v);
  renderCollision();
});

let typingSent = 0;
let stopTimer = null;
function typing() {
  if (mode !== "reply") return; // the customer sees typing; notes stay private
  const now = Date.now();
  if (now - typingSent > 2500) {
    typingSent = now;
    live.send({ type: "typing", ticket: id, typing: true });
  }
  clearTimeout(stopTimer);
  stopTimer = setTimeout(stopTyping, 4000);
}
function stopTyping() {
  clearTimeout(stopTimer);
  if (typingSent) live.send({ type: "typing", ticket: id, typing: false });
  typingSent = 0;
}

// -- composer ------------------------------------------------------------------------
function setMode(next) {
  mode = next;
  for (const b of composer.querySelectorAll("[data-mode]")) {
    b.setAttribute("aria-selected", b.dataset.mode === mode ? "true" : "false");
  }
  composer.classList.toggle("note-mode", mode === "note");
  body.placeholder = t(mode === "note" ? "composer.placeholder_note" : "composer.placeholder_reply");
  document.getElementById("send").textContent = t(mode === "note" ? "composer.add_note" : "composer.send");
  via.textContent = mode === "note" ? "" : t(ticket.channel === "email" ? "composer.via_email" : "composer.via_chat");
  body.focus();
}
for (const b of composer.querySelectorAll("[data-mode]")) b.addEventListener("click", () => setMode(b.dataset.mode));

files.addEventListener("change", () => {
  fileList.textContent = [...files.files].map((f) => f.name).join(", ");
});

let sending = false;
composer.addEventListener("submit", async (e) => {
  e.preventDefault();
  if (sending) return;
  const text = body.value;
  if (!text.trim() && !files.files.length) return;
  sending = true;
  const clientId = uuid();
  try {
    let attachmentIds = [];
    if (files.files.length) {
      const form = new FormData();
      for (const f of files.files) form.append("file", f);
      const up = await api("POST", `/console/api/tickets/${id}/attachments`, form);
      attachmentIds = up.items.map((a) => a.id);
    }
    let event;
    if (mode === "note") {
      event = await api("POST", `/api/v1/tickets/${id}/notes`, { body: text, client_id: clientId });
    } else {
      event = await api("POST", `/api/v1/tickets/${id}/replies`, {
        body: text,
        client_id: clientId,
        attachment_ids: attachmentIds,
      });
    }
    body.value = "";
    files.value = "";
    fileList.textContent = "";
    stopTyping();
    append(event);
  } catch (err) {
    toast(err.message);
  } finally {
    sending = false;
  }
});

// -- canned responses ("/" picker) -----------------------------------------------------
let cannedItems = [];
let cannedIndex = 0;
function slashQuery() {
  const upto = body.value.slice(0, body.selectionStart);
  const m = upto.match(/(?:^|\s)\/([\w-]*)$/);
  return m ? m[1] : null;
}
async function updateCanned() {
  const q = slashQuery();
  if (q === null) {
    cannedBox.hidden = true;
    body.setAttribute("aria-expanded", "false");
    return;
  }
  const data = await api("GET", "/console/api/canned?q=" + encodeURIComponent(q)).catch(() => ({ items: [] }));
  cannedItems = data.items;
  cannedIndex = 0;
  drawCanned();
}
function drawCanned() {
  cannedBox.replaceChildren(
    ...(cannedItems.length
      ? cannedItems.map((c, i) =>
          el(
            "li",
            {
              role: "option",
              id: "canned-" + c.id,
              "aria-selected": i === cannedIndex ? "true" : "false",
              class: i === cannedIndex ? "active" : "",
              onmousedown: (ev) => {
                ev.preventDefault();
                insertCanned(c);
              },
            },
            el("code", { text: "/" + c.shortcut }),
            " ",
            c.title,
          ),
        )
      : [el("li", { class: "muted", text: t("composer.no_canned") })]),
  );
  cannedBox.hidden = false;
  body.setAttribute("aria-expanded", "true");
  if (cannedItems[cannedIndex]) body.setAttribute("aria-activedescendant", "canned-" + cannedItems[cannedIndex].id);
}
function insertCanned(c) {
  const pos = body.selectionStart;
  const upto = body.value.slice(0, pos).replace(/\/([\w-]*)$/, "");
  body.value = upto + c.body + body.value.slice(pos);
  const caret = upto.length + c.body.length;
  body.setSelectionRange(caret, caret);
  cannedBox.hidden = true;
  body.removeAttribute("aria-activedescendant");
  body.focus();
}
body.addEventListener("input", () => {
  typing();
  updateCanned();
});
body.addEventListener("keydown", (e) => {
  if (!cannedBox.hidden && cannedItems.length) {
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      cannedIndex = (cannedIndex + (e.key === "ArrowDown" ? 1 : -1) + cannedItems.length) % cannedItems.length;
      drawCanned();
      return;
    }
    if (e.key === "Enter" || e.key === "Tab") {
      e.preventDefault();
      insertCanned(cannedItems[cannedIndex]);
      return;
    }
  }
  if (e.key === "Escape") {
    cannedBox.hidden = true;
    return;
  }
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    composer.requestSubmit();
  }
});
body.addEventListener("blur", () => setTimeout(() => (cannedBox.hidden = true), 150));

// -- controls ------------------------------------------------------------------------
function applyTicket(next) {
  ticket = { ...ticket, ...next };
  controls.elements.assignee_id.value = ticket.assignee_id ?? "";
  controls.elements.team_id.value = ticket.team_id ?? "";
  controls.elements.status.value = ticket.status;
  controls.elements.priority.value = ticket.priority;
  if (document.activeElement !== controls.elements.tags) controls.elements.tags.value = (ticket.tags || []).join(", ");
}
async function refreshTicket() {
  const fresh = await api("GET", `/api/v1/tickets/${id}`).catch(() => null);
  if (fresh) applyTicket(fresh);
}
async function patch(changes) {
  try {
    applyTicket(await api("PATCH", `/api/v1/tickets/${id}`, changes));
    refreshCapacity();
  } catch (err) {
    toast(err.message);
    refreshTicket();
  }
}
controls.addEventListener("change", (e) => {
  const name = e.target.name;
  const value = e.target.value;
  if (name === "assignee_id" || name === "team_id") patch({ [name]: value ? Number(value) : null });
  else if (name === "tags") patch({ tags: value.split(",").map((s) => s.trim()).filter(Boolean) });
  else patch({ [name]: value });
});
controls.addEventListener("submit", (e) => e.preventDefault());

document.getElementById("merge").addEventListener("submit", async (e) => {
  e.preventDefault();
  const number = Number(e.target.elements.number.value);
  if (!number) return;
  try {
    await api("POST", `/console/api/tickets/${id}/merge`, { source_number: number });
    e.target.reset();
    await catchUp();
  } catch (err) {
    toast(err.message);
  }
});

// -- delete (admins; the <details> toggle is the confirmation step) -------------------
const deleteButton = document.getElementById("delete-confirm");
deleteButton?.addEventListener("click", async () => {
  deleteButton.disabled = true;
  try {
    await api("DELETE", `/api/v1/tickets/${id}`);
    location.href = "/console";
  } catch (err) {
    toast(err.message);
    deleteButton.disabled = false;
  }
});
// Whoever has it open when it is deleted is sent back to the inbox.
live.on("ticket.deleted", (f) => {
  if (!f.ticket || f.ticket.id !== id) return;
  for (const node of document.querySelectorAll("#composer *, #controls *, #merge *")) node.disabled = true;
  toast(t("ticket.deleted"));
  setTimeout(() => (location.href = "/console"), 1500);
});

onKey("r", () => setMode("reply"));
onKey("n", () => setMode("note"));
onKey("e", () => patch({ status: "resolved" }));

setMode("reply");
body.blur();
catchUp()
  .then(() => {
    timeline.scrollTop = timeline.scrollHeight;
    if (!seqs.size) timeline.append(el("li", { class: "system empty-note", text: t("timeline.empty") }));
  })
  .catch((err) => toast(err.message));
live.watchTicket(id, 0);
