// Rendering of timeline events: chat bubbles, emails (sandboxed), calls, notes, system lines.
import { boot, clock, el, me, t } from "./util.js";

// The iframe gets no scripts (sandbox="") and this policy: nothing remote, ever.
const EMAIL_CSP =
  "default-src 'none'; img-src data: cid:; style-src 'unsafe-inline'; font-src data:";

function agentName(id) {
  const agent = (boot.agents || []).find((a) => a.id === id);
  return agent ? agent.name : "#" + id;
}

function teamName(id) {
  const team = (boot.teams || []).find((x) => x.id === id);
  return team ? team.name : "#" + id;
}

function attachmentLinks(payload) {
  const items = (payload && (payload.attachments || [])) || [];
  if (!items.length) return null;
  return el(
    "ul",
    { class: "attachments" },
    items.map((a) => {
      const id = typeof a === "object" ? a.id : a;
      const name = typeof a === "object" ? a.filename || "attachment " + id : "attachment " + id;
      const ctype = typeof a === "object" ? a.content_type || "" : "";
      return el(
        "li",
        {},
        ctype.startsWith("image/")
          ? el("a", { href: "/console/attachments/" + id, target: "_blank", rel: "noopener" },
              el("img", { src: "/console/attachments/" + id, alt: name, class: "thumb" }))
          : el("a", { href: "/console/attachments/" + id + "?dl=1", text: name }),
      );
    }),
  );
}

function emailFrame(html, label) {
  const frame = el("iframe", {
    sandbox: "",
    referrerpolicy: "no-referrer",
    loading: "lazy",
    title: label,
    class: "email-frame",
    "data-testid": "email-frame",
  });
  const doc =
    '<!doctype html><html><head><meta charset="utf-8">' +
    '<meta http-equiv="Content-Security-Policy" content="' + EMAIL_CSP + '">' +
    '<base target="_blank"><style>body{font:14px/1.45 system-ui,sans-serif;margin:8px;color:#1d2430;word-wrap:break-word}img{max-width:100%}</style>' +
    "</head><body>" + html + "</body></html>";
  frame.srcdoc = doc;
  const lines = (html.match(/<(p|br|div|tr|li|h\d)[\s>/]/gi) || []).length;
  frame.style.height = Math.min(640, Math.max(120, 60 + lines * 22)) + "px";
  return frame;
}

function quotedToggle(render) {
  const holder = el("div", { class: "quoted", hidden: true });
  const button = el("button", {
    type: "button",
    class: "link",
    "aria-expanded": "false",
    text: t("timeline.show_quoted"),
    onclick: () => {
      const open = holder.hidden;
      holder.hidden = !open;
      button.setAttribute("aria-expanded", open ? "true" : "false");
      button.textContent = open ? t("timeline.hide_quoted") : t("timeline.show_quoted");
      if (open && !holder.childElementCount) holder.append(render());
    },
  });
  return [button, holder];
}

// Email HTML (sanitized at ingestion) is fetched from its mail record and shown in a
// sandboxed iframe; the event body is the new text, used until then and as fallback.
function emailBody(event) {
  const p = event.payload || {};
  const label = event.kind === "email_in" ? t("timeline.email_from", { name: event.author.name || "" }) : t("timeline.email_to");
  const holder = el("div", { class: "email-body" }, el("div", { class: "text", text: event.body }));
  const inlineHtml = p.html || p.body_html || null;
  if (inlineHtml) {
    holder.replaceChildren(emailFrame(inlineHtml, label));
  } else if (p.has_html && p.mail_id) {
    fetch("/console/api/mails/" + Number(p.mail_id), { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : null))
      .then((mail) => mail && mail.html && holder.replaceChildren(emailFrame(mail.html, label)))
      .catch(() => {});
  }
  const parts = [holder];
  const quoted = [p.quoted, p.signature].filter(Boolean).join("\n\n");
  if (quoted) parts.push(...quotedToggle(() => el("pre", { text: quoted })));
  return parts;
}

function duration(seconds) {
  if (seconds === undefined || seconds === null) return "";
  const s = Math.round(Number(seconds));
  return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
}

// Call events (app/services/calls.py): a translated line per state, the facts that
// matter (agent, wait, duration, who hung up), and the recording as a player that
// streams with HTTP range requests (/console/attachments answers 206).
function callBody(event) {
  const p = event.payload || {};
  const state = p.state || p.status || "";
  const key = "callev." + state;
  const label = state && t(key) !== key ? t(key, { agent: p.agent || "", outcome: p.outcome ? t("callev.outcome." + p.outcome) : "" }) : event.body || state;
  const bits = [el("strong", { text: (p.direction === "outbound" ? "↗ " : "☎ ") + t("timeline.call") }), " ", label];
  if (state === "transferred" && (p.team || p.agent)) bits.push(" → " + (p.team || p.agent));
  if (p.agent && ["ended", "dialing"].includes(state)) bits.push(" · " + p.agent);
  if (p.mode) bits.push(" · " + t("callev.mode." + p.mode) + (p.supervisor ? " (" + p.supervisor + ")" : ""));
  if (p.wait !== undefined && p.wait !== null && ["answered", "abandoned", "callback_requested"].includes(state)) bits.push(" · " + t("callev.wait", { time: duration(p.wait) }));
  if (p.duration !== undefined && p.duration !== null) bits.push(" · " + t("callev.duration", { time: duration(p.duration) }));
  if (p.hangup_by) bits.push(" · " + t("callev.hangup_by." + p.hangup_by));
  const out = [el("div", { "data-testid": "call-event", "data-state": state }, bits)];
  const rec = event.kind === "recording" ? p.attachment_id || (p.attachments || [])[0] : null;
  if (rec) {
    const src = "/console/attachments/" + Number(rec);
    out.push(
      el(
        "div",
        { class: "recording" },
        el("audio", { controls: true, preload: "metadata", src, "aria-label": t("callev.recording"), "data-testid": "recording" }),
        " ",
        el("a", { href: src + "?dl=1", text: t("callev.download") }),
      ),
    );
  }
  return out;
}

function describeChange(event) {
  const changes = (event.payload && event.payload.changes) || {};
  const parts = [];
  for (const [key, change] of Object.entries(changes)) {
    const show = (v) => {
      if (v === null || v === undefined || v === "") return "–";
      if (key === "assignee_id") return agentName(v);
      if (key === "team_id") return teamName(v);
      if (key === "status") return t("status." + v);
      if (key === "priority") return t("priority." + v);
      if (Array.isArray(v)) return v.join(", ") || "–";
      return String(v);
    };
    const label = { assignee_id: t("ticket.assignee"), team_id: t("ticket.team"), status: t("ticket.status"), priority: t("ticket.priority"), tags: t("ticket.tags") }[key] || key;
    parts.push(label + ": " + show(change.from) + " → " + show(change.to));
  }
  if (event.kind === "merged") {
    const p = event.payload || {};
    if (p.source_number) parts.push("⇐ #" + p.source_number);
    if (p.target_number) parts.push("⇒ #" + p.target_number);
  }
  return parts.join(" · ") || event.kind;
}

export function renderEvent(event) {
  const author = event.author || {};
  const mine = author.type === "agent" && me && author.id === me.id;
  const when = el("time", { datetime: event.created_at, text: clock(event.created_at) });
  const base = { "data-seq": event.seq, "data-kind": event.kind, "data-testid": "event" };
  const k = event.kind;
  if (k === "message" || k === "reply") {
    const side = author.type === "contact" ? "them" : "us";
    return el(
      "li",
      { ...base, class: "bubble " + side + (mine ? " mine" : "") },
      el("div", { class: "who" }, author.name || author.type, " ", when),
      el("div", { class: "text", text: event.body }),
      attachmentLinks(event.payload),
      side === "us" ? el("span", { class: "receipt", "data-receipt": event.seq }) : null,
    );
  }
  if (k === "email_in" || k === "email_out") {
    const p = event.payload || {};
    return el(
      "li",
      { ...base, class: "email " + (k === "email_in" ? "them" : "us") },
      el(
        "div",
        { class: "who" },
        "✉ ",
        k === "email_in" ? t("timeline.email_from", { name: author.name || p.from || "" }) : (author.name || "") + " → " + t("timeline.email_to"),
        " ",
        when,
      ),
      p.subject ? el("div", { class: "subject", text: p.subject }) : null,
      ...emailBody(event),
      attachmentLinks(p),
    );
  }
  if (k === "note") {
    return el(
      "li",
      { ...base, class: "note" },
      el("div", { class: "who" }, el("strong", { text: t("timeline.note") }), " · " + (author.name || ""), " ", when),
      el("div", { class: "text", text: event.body }),
      attachmentLinks(event.payload),
    );
  }
  if (k === "call" || k === "recording") {
    return el("li", { ...base, class: "call" }, ...callBody(event), el("div", { class: "who" }, when));
  }
  if (k === "attachment") {
    return el("li", { ...base, class: "system" }, attachmentLinks(event.payload) || event.body, " ", when);
  }
  return el("li", { ...base, class: "system" }, (author.name ? author.name + ": " : "") + describeChange(event), " ", when);
}
