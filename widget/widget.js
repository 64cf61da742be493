/* Helpdesk chat widget: one script tag, rendered in a shadow root, no dependencies.
   Protocol: docs/widget-protocol.md. User content is only ever inserted as text. */
(() => {
  "use strict";
  const W = window, D = document, N = navigator;
  const queued = W.Helpdesk;
  if (queued && queued.version) return; // the tag was pasted twice
  const me = D.currentScript ||
    [...D.querySelectorAll("script[data-inbox]")].find((s) => /\/widget\.js\b/.test(s.src));
  const INBOX = me && me.dataset.inbox;
  if (!INBOX) return console.warn("helpdesk: the widget script needs data-inbox");
  const ORIGIN = new URL(me.src, location.href).origin;
  const Q = "?inbox=" + encodeURIComponent(INBOX);
  // The server inlines widget.css here; served raw, the widget links the stylesheet instead.
  const CSS = "__HD_CSS__";

  const STR = {
    en: {
      open: "Open chat", close: "Close chat", title: "Chat with us", online: "We're online",
      away: "We're away right now", connecting: "Connecting…", reconnecting: "Reconnecting…",
      waiting: "Waiting for an agent…", assigned: "{name} is here to help",
      typing: "{name} is typing…", someone: "Someone", you: "You", agent: "Support",
      messages: "Messages", message: "Message", placeholder: "Write a message…", send: "Send",
      attach: "Attach an image or PDF", uploading: "Uploading {name}",
      sending: "Sending", sent: "Sent", read: "Read", failed: "Not sent", retry: "Retry",
      unread: "{n} unread", name: "Name", email: "Email", start: "Start chat",
      prechat: "Please tell us who you are so we can help you better.",
      offline: "Leave us a message and we'll answer by email.", leave: "Send message",
      thanks: "Thanks! We'll get back to you by email.", file: "Attachment",
      too_big: "That file is too large (max. {max} MB).",
      bad_type: "Only images and PDF files can be sent.", upload_failed: "The upload failed.",
      rate_limited: "You're sending messages too fast. Retrying…", too_long: "That message is too long.",
      blocked: "The chat isn't available on this site.", error: "Something went wrong.",
    },
    de: {
      open: "Chat öffnen", close: "Chat schließen", title: "Schreiben Sie uns",
      online: "Wir sind online", away: "Wir sind gerade nicht erreichbar",
      connecting: "Verbinde…", reconnecting: "Verbindung wird wiederhergestellt…",
      waiting: "Warten auf einen Mitarbeiter…", assigned: "{name} hilft Ihnen weiter",
      typing: "{name} schreibt…", someone: "Jemand", you: "Sie", agent: "Support",
      messages: "Nachrichten", message: "Nachricht", placeholder: "Nachricht schreiben…",
      send: "Senden", attach: "Bild oder PDF anhängen", uploading: "{name} wird hochgeladen",
      sending: "Wird gesendet", sent: "Gesendet", read: "Gelesen", failed: "Nicht gesendet",
      retry: "Erneut senden", unread: "{n} ungelesen", name: "Name", email: "E-Mail",
      start: "Chat starten",
      prechat: "Bitte sagen Sie uns, wer Sie sind, damit wir Ihnen besser helfen können.",
      offline: "Hinterlassen Sie uns eine Nachricht, wir antworten per E-Mail.",
      leave: "Nachricht senden", thanks: "Danke! Wir melden uns per E-Mail bei Ihnen.",
      file: "Anhang", too_big: "Die Datei ist zu groß (max. {max} MB).",
      bad_type: "Nur Bilder und PDF-Dateien können gesendet werden.",
      upload_failed: "Das Hochladen ist fehlgeschlagen.",
      rate_limited: "Sie senden zu schnell. Neuer Versuch…",
      too_long: "Die Nachricht ist zu lang.",
      blocked: "Der Chat ist auf dieser Seite nicht verfügbar.",
      error: "Etwas ist schiefgelaufen.",
    },
  };
  const want = (me.dataset.locale || N.language || "en").toLowerCase().slice(0, 2);
  const LANG = STR[want] ? want : "en";
  const t = (k, v) => (STR[LANG][k] || STR.en[k] || k).replace(/\{(\w+)\}/g, (_, n) => v[n]);

  // -- persistent state: the visitor token lives in the host origin's localStorage ----------
  const KEY = "helpdesk:" + INBOX, OUT = "helpdesk-out:" + INBOX;
  const read = (s, k, d) => { try { return JSON.parse(s.getItem(k)) || d; } catch { return d; } };
  const write = (s, k, v) => { try { s.setItem(k, JSON.stringify(v)); } catch { /* full/blocked */ } };
  let store = read(localStorage, KEY, {}); // {token, ticket, rs (read seq), profile}
  const save = () => write(localStorage, KEY, store);
  // Unacked messages survive a reload of this tab and are resent with their client_id.
  const outbox = read(sessionStorage, OUT, []);
  const saveOut = () => write(sessionStorage, OUT, outbox.map(({ el, ...m }) => ({
    ...m, attachments: m.attachments.map(({ local, ...a }) => a), // object URLs die with the page
  })));

  let cfg = { available: true, prechat: false, max_upload_bytes: 10 << 20, max_message_chars: 5000 };
  let ws = null, welcomed = false, tries = 0, retryT = 0, pingT = 0, lastIn = 0, fatal = "";
  let isOpen = false, unread = 0, agentName = "", agentRead = 0, typingT = 0, typedAt = 0;
  let identity = null, contact = {};
  const cursor = {}; // ticket id -> highest seq received on the stream
  const seen = new Map(); // "ticket:seq" -> rendered message element
  const handlers = {};
  const extFrames = []; // extensions (widget/call.js) see frames this file does not handle
  const emit = (ev, data) => (handlers[ev] || []).forEach((fn) => {
    try { fn(data); } catch (e) { console.error(e); }
  });

  // -- DOM helpers: text only, never markup from data ---------------------------------------
  const h = (tag, props, kids) => {
    const el = D.createElement(tag);
    for (const k in props) {
      const v = props[k];
      if (v == null || v === false) continue;
      if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of [].concat(kids || [])) if (c != null) el.append(c);
    return el;
  };
  const icon = (d) => {
    const ns = "http://www.w3.org/2000/svg", s = D.createElementNS(ns, "svg");
    const p = D.createElementNS(ns, "path");
    s.setAttribute("viewBox", "0 0 24 24");
    s.setAttribute("aria-hidden", "true");
    p.setAttribute("d", d);
    s.append(p);
    return s;
  };
  const LINK = /\bhttps?:\/\/[^\s<>"']*[^\s<>"'.,;:!?)\]]/g;
  const rich = (el, text) => {
    let i = 0;
    for (const m of text.matchAll(LINK)) {
      el.append(text.slice(i, m.index),
        h("a", { href: m[0], target: "_blank", rel: "noopener noreferrer nofollow", text: m[0] }));
      i = m.index + m[0].length;
    }
    el.append(text.slice(i));
    return el;
  };
  const uuid = () => {
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 15) | 64;
    b[8] = (b[8] & 63) | 128;
    const x = [...b].map((n) => n.toString(16).padStart(2, "0")).join("");
    return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
  };
  const clock = (iso) => {
    const d = iso ? new Date(iso) : new Date();
    return isNaN(d) ? "" : d.toLocaleTimeString(LANG, { hour: "2-digit", minute: "2-digit" });
  };

  // -- the UI --------------------------------------------------------------------------
  const host = h("div", { id: "helpdesk-widget", "data-helpdesk": "" });
  const root = host.attachShadow({ mode: "open" });
  const title = h("h2", { id: "t" });
  const status = h("p", { class: "status", role: "status" });
  const closeBtn = h("button", { class: "icon", type: "button", "aria-label": t("close"), onclick: () => close() },
    icon("M19 6.4 17.6 5 12 10.6 6.4 5 5 6.4 10.6 12 5 17.6 6.4 19 12 13.4 17.6 19 19 17.6 13.4 12z"));
  const note = h("p", { class: "note", role: "alert" });
  const greet = h("p", { class: "greet", hidden: true });
  const log = h("div", {
    class: "log", role: "log", "aria-live": "polite", "aria-label": t("messages"), tabindex: "0",
  }, greet);
  const typing = h("div", { class: "typing", "aria-live": "polite" });
  const ups = h("div", { class: "ups" });
  const fileIn = h("input", {
    type: "file", hidden: true, tabindex: "-1", accept: "image/png,image/jpeg,image/gif,image/webp,application/pdf",
    onchange: () => { [...fileIn.files].forEach(upload); fileIn.value = ""; },
  });
  const text = h("textarea", {
    rows: "1", "aria-label": t("message"), placeholder: t("placeholder"), maxlength: "5000",
    onkeydown: (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submitText(); }
    },
    oninput: () => {
      text.style.height = "auto";
      text.style.height = Math.min(text.scrollHeight + 2, 120) + "px";
      if (Date.now() - typedAt > 3000 && text.value.trim()) {
        typedAt = Date.now();
        send({ type: "typing", typing: true });
      }
    },
  });
  const attachBtn = h("button", {
    class: "icon", type: "button", "aria-label": t("attach"), title: t("attach"),
    onclick: () => fileIn.click(),
  }, icon("M16.5 6v11.5a4 4 0 0 1-8 0V5a2.5 2.5 0 0 1 5 0v10.5a1 1 0 0 1-2 0V6H10v9.5a2.5 2.5 0 0 0 5 0V5a4 4 0 0 0-8 0v12.5a5.5 5.5 0 0 0 11 0V6z"));
  const compose = h("form", { class: "compose", onsubmit: (e) => { e.preventDefault(); submitText(); } }, [
    attachBtn, fileIn, text,
    h("button", { class: "icon send", type: "submit", "aria-label": t("send") }, icon("M2 21 23 12 2 3v7l15 2-15 2z")),
  ]);
  const field = (label, props) => h("label", {}, [label, h(props.name === "body" ? "textarea" : "input", props)]);
  const prechat = h("form", { class: "card", hidden: true, onsubmit: startChat }, [
    h("p", { text: t("prechat") }),
    field(t("name"), { name: "name", required: true, maxlength: "200", autocomplete: "name" }),
    field(t("email"), { name: "email", type: "email", required: true, maxlength: "254", autocomplete: "email" }),
    h("button", { class: "go", type: "submit", text: t("start") }),
  ]);
  const offline = h("form", { class: "card", hidden: true, onsubmit: leaveMessage }, [
    h("p", { text: t("offline") }),
    field(t("name"), { name: "name", maxlength: "200", autocomplete: "name" }),
    field(t("email"), { name: "email", type: "email", required: true, maxlength: "254", autocomplete: "email" }),
    field(t("message"), { name: "body", required: true, rows: "4", maxlength: "5000" }),
    h("button", { class: "go", type: "submit", text: t("leave") }),
  ]);
  const panel = h("section", {
    class: "panel", id: "p", role: "dialog", "aria-labelledby": "t", hidden: true,
    onkeydown: (e) => e.key === "Escape" && close(),
  }, [h("header", {}, [h("div", {}, [title, status]), closeBtn]), note, log, typing, ups, prechat, offline, compose]);
  const badge = h("span", { class: "badge", "aria-hidden": "true", hidden: true });
  const launcher = h("button", {
    class: "launcher", type: "button", "aria-controls": "p", "aria-expanded": "false",
    "aria-label": t("open"), onclick: () => (isOpen ? close() : open()),
  }, [icon("M20 2H4a2 2 0 0 0-2 2v18l4-4h14a2 2 0 0 0 2-2V4a2 2 0 0 0-2-2z"), badge]);
  if (CSS.startsWith("__")) root.append(h("link", { rel: "stylesheet", href: ORIGIN + "/widget.css" }));
  else root.append(h("style", { text: CSS }));
  root.append(panel, launcher);

  function theme() {
    const th = cfg.theme || {};
    if (/^#[0-9a-f]{3,8}$/i.test(th.color || "")) {
      host.style.setProperty("--c", th.color);
      // Pick readable text on the brand colour (relative luminance).
      const n = th.color.length < 7 ? th.color.replace(/\w/g, "$&$&") : th.color;
      const [r, g, b] = [1, 3, 5].map((i) => parseInt(n.substr(i, 2), 16) / 255);
      host.style.setProperty("--ct", 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.6 ? "#111" : "#fff");
    }
    if (th.position === "left") host.dataset.pos = "left";
    title.textContent = th.title || cfg.title || t("title");
    greet.textContent = cfg.greeting || "";
    greet.hidden = !cfg.greeting;
    text.maxLength = cfg.max_message_chars;
  }

  function view() {
    const started = store.ticket || outbox.length || seen.size;
    const known = store.profile || identity || contact.email;
    const v = started ? "chat" : !cfg.available ? "offline" : cfg.prechat && !known ? "prechat" : "chat";
    prechat.hidden = v !== "prechat";
    offline.hidden = v !== "offline";
    compose.hidden = v !== "chat";
    attachBtn.disabled = !welcomed || !store.ticket; // files join an existing conversation
    renderStatus();
  }

  function renderStatus() {
    let s = cfg.available ? "online" : "away", args = {};
    if (!welcomed && (ws || retryT)) s = tries ? "reconnecting" : "connecting";
    else if (agentName) { s = "assigned"; args = { name: agentName }; }
    else if (store.ticket && cfg.available) s = "waiting";
    status.textContent = fatal || t(s, args);
    status.toggleAttribute("data-on", cfg.available && !fatal && (welcomed || (!ws && !retryT)));
  }

  function setUnread(n) {
    unread = n;
    badge.textContent = n > 9 ? "9+" : n;
    badge.hidden = !n;
    launcher.setAttribute("aria-label", n ? t("open") + ", " + t("unread", { n }) : t("open"));
    emit("unread", n);
  }

  // Everything up to the stream cursor of the current ticket is seen while the panel is visible.
  function markSeen() {
    if (!isOpen || D.hidden || !store.ticket) return;
    const s = cursor[store.ticket] || 0;
    if (s > (store.rs || 0) || store.rt !== store.ticket) {
      store.rs = s;
      store.rt = store.ticket;
      save();
      send({ type: "read", seq: s });
    }
    if (unread) setUnread(0);
  }

  function open() {
    if (isOpen) return;
    isOpen = true;
    panel.hidden = false;
    launcher.setAttribute("aria-expanded", "true");
    if (!ws && !fatal) connect();
    view();
    log.scrollTop = log.scrollHeight;
    const first = [prechat, offline, compose].find((f) => !f.hidden);
    (first ? first.querySelector("textarea,input:not([type=file])") : log).focus();
    markSeen();
    emit("open");
  }

  function close() {
    if (!isOpen) return;
    isOpen = false;
    const inside = root.activeElement;
    panel.hidden = true;
    launcher.setAttribute("aria-expanded", "false");
    if (inside) launcher.focus();
    emit("close");
  }

  function notice(msg) {
    note.textContent = msg || "";
    clearTimeout(notice.t);
    if (msg) notice.t = setTimeout(() => (note.textContent = ""), 8000);
  }

  // -- messages ------------------------------------------------------------------------
  function bubble(m) {
    const mine = m.author && m.author.type === "contact";
    const sys = !mine && (!m.author || m.author.type === "system");
    const el = h("div", { class: "m " + (mine ? "me" : sys ? "sys" : "them") });
    if (!mine && !sys) el.append(h("div", { class: "who", text: m.author.name || t("agent") }));
    el.append(rich(h("div", { class: "b" }), String(m.body || "")));
    const atts = m.attachments || (m.payload && m.payload.attachments) || [];
    if (atts.length) el.append(h("div", { class: "att" }, atts.map(attachment)));
    const meta = h("div", { class: "meta" }, h("time", { text: clock(m.created_at) }));
    if (mine) {
      meta.append(h("span", { class: "st" }, h("span", { class: "sr" })));
      el.setAttribute("data-st", m.state || "sent");
    }
    el.append(meta);
    return el;
  }

  function setState(el, st) {
    if (!el || el.getAttribute("data-st") === "read" || !el.querySelector(".sr")) return;
    el.setAttribute("data-st", st);
    el.querySelector(".sr").textContent = t(st === "pending" ? "sending" : st);
    const old = el.querySelector(".retry");
    if (old) old.remove();
    if (st === "failed") {
      el.querySelector(".meta").append(h("button", {
        class: "retry", type: "button", text: t("retry"), onclick: () => retry(el),
      }));
    }
  }

  // Keep each ticket's messages in seq order; unacked messages stay at the bottom.
  function place(el, tk, sq) {
    let ref = null;
    for (let c = log.lastElementChild; c && c.classList.contains("m"); c = c.previousElementSibling) {
      const cs = +c.dataset.seq || 0;
      if (!cs || (+c.dataset.ticket === tk && cs > sq)) ref = c;
      else break;
    }
    log.insertBefore(el, ref);
  }

  function addEvent(f) {
    const tk = f.ticket, key = tk + ":" + f.seq;
    if (f.seq > (cursor[tk] || 0)) cursor[tk] = f.seq;
    if (seen.has(key)) return; // another connection, a replay or our own ack got here first
    const mine = f.author && f.author.type === "contact";
    const pending = mine && f.client_id && outbox.find((m) => m.client_id === f.client_id);
    let el;
    if (pending) {
      el = pending.el;
      acked(pending);
    } else {
      el = bubble(f);
      place(el, tk, f.seq);
    }
    el.dataset.ticket = tk;
    el.dataset.seq = f.seq;
    if (mine) setState(el, tk === store.ticket && f.seq <= agentRead ? "read" : "sent");
    seen.set(key, el);
    if (!store.ticket || tk > store.ticket) { store.ticket = tk; save(); }
    if (!mine && f.author && f.author.type === "agent") {
      typing.textContent = "";
      if (tk === store.ticket && f.seq > (store.rt === tk ? store.rs : 0)) {
        if (isOpen && !D.hidden) markSeen();
        else setUnread(unread + 1);
      }
    }
    if (isOpen) log.scrollTop = log.scrollHeight;
    emit("message", f);
    view();
  }

  function acked(m) {
    const i = outbox.indexOf(m);
    if (i >= 0) outbox.splice(i, 1);
    saveOut();
  }

  function onAck(f) {
    const m = outbox.find((o) => o.client_id === f.client_id);
    if (!m) return;
    acked(m);
    const key = f.ticket + ":" + f.seq;
    if (seen.has(key)) m.el.remove(); // the event arrived before its ack
    else {
      m.el.dataset.ticket = f.ticket;
      m.el.dataset.seq = f.seq;
      seen.set(key, m.el);
      setState(m.el, "sent");
    }
    if (f.ticket && f.ticket !== store.ticket) { store.ticket = f.ticket; save(); }
    view();
  }

  function submitText() {
    const body = text.value.trim();
    if (!body) return;
    if (body.length > cfg.max_message_chars) return notice(t("too_long"));
    text.value = "";
    text.style.height = "";
    typedAt = 0;
    send({ type: "typing", typing: false });
    queue(body, []);
  }

  function queue(body, attachments) {
    const m = { client_id: uuid(), body, attachments };
    m.el = bubble({ author: { type: "contact" }, body, attachments, state: "pending" });
    setState(m.el, "pending");
    log.append(m.el);
    log.scrollTop = log.scrollHeight;
    outbox.push(m);
    saveOut();
    if (!ws) connect();
    else if (welcomed) transmit(m);
    view();
  }

  function transmit(m) {
    const p = store.profile || {};
    send({
      type: "message", client_id: m.client_id, body: m.body,
      attachments: m.attachments.map((a) => a.id), name: p.name || undefined, email: p.email || undefined,
    });
  }

  function retry(el) {
    const m = outbox.find((o) => o.el === el) || el._m;
    if (!m) return;
    if (!outbox.includes(m)) outbox.push(m);
    saveOut();
    setState(el, "pending");
    if (welcomed) transmit(m);
    else if (!ws) connect();
  }

  function onState(f) {
    if (f.state === "deleted") { // an admin deleted it: nothing of it stays on screen
      for (const [key, el] of seen) if (+el.dataset.ticket === f.ticket) { el.remove(); seen.delete(key); }
      delete cursor[f.ticket];
      if (store.ticket === f.ticket) { store.ticket = null; agentName = ""; }
      if (store.rt === f.ticket) store.rt = store.rs = 0; // a reused id starts unread
      save();
    } else if (f.state === "assigned") agentName = (f.agent && f.agent.name) || agentName;
    else if (f.state === "waiting" || !f.state) agentName = "";
    view();
  }

  function onError(f) {
    const m = f.client_id && outbox.find((o) => o.client_id === f.client_id);
    if (/^identity_/.test(f.code)) {
      console.warn("helpdesk:", f.message);
      return emit("error", f);
    }
    if (f.code === "rate_limited" || f.code === "unavailable") {
      if (f.code === "rate_limited") notice(t("rate_limited"));
      if (m) setTimeout(() => welcomed && outbox.includes(m) && transmit(m), (f.retry_after || 2) * 1000);
      return;
    }
    notice(STR.en[f.code] ? t(f.code) : f.message || t("error"));
    if (m) {
      acked(m);
      m.el._m = m;
      setState(m.el, "failed");
    }
  }

  // -- attachments: uploads with progress, downloads with the visitor token ---------------
  function upload(file) {
    if (!/^(image\/(png|jpeg|gif|webp)|application\/pdf)$/.test(file.type)) return notice(t("bad_type"));
    if (file.size > cfg.max_upload_bytes) return notice(t("too_big", { max: Math.floor(cfg.max_upload_bytes / 1048576) }));
    const bar = h("progress", { max: "100", value: "0", "aria-label": t("uploading", { name: file.name }) });
    const row = h("div", { class: "up" }, [h("span", { text: file.name }), bar]);
    ups.append(row);
    const x = new XMLHttpRequest();
    x.open("POST", ORIGIN + "/widget/attachments" + Q);
    x.upload.onprogress = (e) => e.lengthComputable && (bar.value = (100 * e.loaded) / e.total);
    x.onloadend = () => {
      row.remove();
      let r = {};
      try { r = JSON.parse(x.responseText); } catch { /* not JSON */ }
      if (x.status === 201) {
        if (/^image\//.test(r.content_type)) r.local = URL.createObjectURL(file);
        queue("", [r]);
      }
      else notice((r.error && r.error.message) || t("upload_failed"));
    };
    const fd = new FormData();
    // The token goes in the form (not a header) so the upload is a simple CORS request.
    fd.append("token", store.token || "");
    fd.append("file", file);
    x.send(fd);
  }

  // Event frames name files by id: ask the server what each one is (images show inline).
  function attachment(a) {
    if (typeof a !== "object") a = { id: a };
    const box = h("div");
    const name = (r) => {
      const m = /filename\*?=(?:utf-8'')?"?([^";]+)/i.exec((r && r.headers.get("content-disposition")) || "");
      return a.filename || (m && decodeURIComponent(m[1])) || t("file");
    };
    const get = () => fetch(ORIGIN + "/widget/attachments/" + encodeURIComponent(a.id) + Q, {
      headers: { Authorization: "Visitor " + store.token },
    }).then((r) => (r.ok ? r : Promise.reject(r.status)));
    const link = (label) => box.append(h("button", {
      type: "button", text: "\u{1F4C4} " + label,
      onclick: () => get().then((r) => r.blob()).then((b) => W.open(URL.createObjectURL(b), "_blank", "noopener")),
    }));
    const img = (src) => box.append(h("img", { src, alt: name() }));
    if (a.local) img(a.local);
    else if (a.content_type && !/^image\//.test(a.content_type)) link(name());
    else {
      get().then(async (r) => {
        if (/^image\//.test(r.headers.get("content-type"))) img(URL.createObjectURL(await r.blob()));
        else { if (r.body) r.body.cancel(); link(name(r)); }
      }, () => box.append(h("span", { text: name() })));
    }
    return box;
  }

  // -- pre-chat and offline forms ---------------------------------------------------------
  function startChat(e) {
    e.preventDefault();
    const f = e.target.elements;
    store.profile = { name: f.name.value.trim(), email: f.email.value.trim() };
    save();
    if (ws) { drop(); connect(); } // introduce ourselves in a fresh hello
    view();
    text.focus();
  }

  // Nobody is available: the message goes out with an email address and is answered by mail.
  function leaveMessage(e) {
    e.preventDefault();
    const f = e.target.elements;
    store.profile = { name: f.name.value.trim(), email: f.email.value.trim() };
    save();
    queue(f.body.value.trim(), []);
    log.append(h("p", { class: "sys", text: t("thanks") }));
    e.target.reset();
  }

  // -- the connection ----------------------------------------------------------------------
  function send(f) {
    if (!ws || ws.readyState !== 1) return false;
    ws.send(JSON.stringify(f));
    return true;
  }

  function connect() {
    clearTimeout(retryT);
    retryT = 0;
    if (ws || fatal) return;
    const s = (ws = new WebSocket(ORIGIN.replace(/^http/, "ws") + "/widget/ws" + Q));
    welcomed = false;
    s.onopen = () => {
      // `ticket` tells the server which conversation the cursor belongs to.
      s.send(JSON.stringify({
        type: "hello", token: store.token || null, ticket: store.ticket || null,
        after_seq: cursor[store.ticket] || null, locale: LANG, identity: identity || undefined,
      }));
      lastIn = Date.now();
      pingT = setInterval(() => {
        // A socket that went quiet is dead even if the browser has not noticed yet.
        if (Date.now() - lastIn > 45000) { drop(); schedule(); } else send({ type: "ping" });
      }, 20000);
    };
    s.onmessage = (e) => {
      lastIn = Date.now();
      let f;
      try { f = JSON.parse(e.data); } catch { return; }
      onFrame(f);
    };
    s.onclose = (e) => {
      if (ws !== s) return;
      drop();
      if (e.code === 1008 && /origin|inbox/.test(e.reason)) {
        fatal = t("blocked"); // refused for this site: retrying cannot help
        console.warn("helpdesk:", e.reason);
      }
      if (e.code === 1013) tries = 0; // fell behind: resume at once
      schedule();
    };
    renderStatus();
  }

  function drop() {
    clearInterval(pingT);
    const s = ws;
    ws = null;
    welcomed = false;
    if (s) {
      s.onclose = s.onmessage = s.onopen = null;
      try { s.close(); } catch { /* already closing */ }
    }
    renderStatus();
    emit("connection", false);
  }

  function schedule() {
    if (fatal || retryT || !N.onLine) return renderStatus();
    const delay = Math.min(15000, 500 * 2 ** tries++) * (0.5 + Math.random() / 2);
    retryT = setTimeout(connect, delay);
    renderStatus();
  }

  function onFrame(f) {
    switch (f.type) {
      case "welcome": {
        welcomed = true;
        tries = 0;
        if (f.token) store.token = f.token;
        if (f.ticket) store.ticket = f.ticket;
        save();
        contact = f.contact || {};
        if (f.agents_available != null) cfg.available = !!f.agents_available;
        if (f.inbox) {
          const i = f.inbox;
          cfg.theme = i.theme || cfg.theme;
          cfg.greeting = (cfg.greeting || i.greeting);
          if (i.prechat_form != null) cfg.prechat = !!i.prechat_form;
          theme();
        }
        onState(f);
        for (const m of outbox) transmit(m);
        view();
        emit("connection", true);
        emit("ready", { ticket: f.ticket, contact: f.contact });
        markSeen();
        break;
      }
      case "event": addEvent(f); break;
      case "ack": onAck(f); break;
      case "read":
        if ((f.ticket || store.ticket) !== store.ticket) break;
        if (f.by === "contact") { // another tab of this visitor has shown it
          store.rs = Math.max(store.rs || 0, f.seq);
          store.rt = store.ticket;
          if ((cursor[store.ticket] || 0) <= store.rs) setUnread(0);
          break;
        }
        agentRead = Math.max(agentRead, f.seq || 0);
        for (const el of seen.values()) if (+el.dataset.ticket === store.ticket && +el.dataset.seq <= agentRead) setState(el, "read");
        break;
      case "typing": {
        const a = f.author || {};
        if (a.type === "contact" || f.typing === false) { typing.textContent = ""; break; }
        typing.textContent = t("typing", { name: a.name || f.name || t("someone") });
        clearTimeout(typingT);
        typingT = setTimeout(() => (typing.textContent = ""), 6000);
        break;
      }
      case "state": onState(f); break;
      case "error": onError(f); break;
      default: for (const fn of extFrames) fn(f);
    }
  }

  W.addEventListener("online", () => { tries = 0; if (!ws && (store.token || outbox.length || isOpen)) connect(); });
  W.addEventListener("offline", () => { if (ws) { drop(); renderStatus(); } });
  D.addEventListener("visibilitychange", () => {
    if (D.hidden) return;
    markSeen();
    if (!ws && retryT) connect();
  });
  W.addEventListener("storage", (e) => {
    if (e.key !== KEY) return;
    const was = store.token;
    store = read(localStorage, KEY, {});
    if (store.rt === store.ticket && (cursor[store.ticket] || 0) <= (store.rs || 0)) setUnread(0);
    if (!was && store.token && ws) { drop(); connect(); } // another tab became the visitor first
  });

  // -- public API --------------------------------------------------------------------------
  const api = {
    version: "1",
    // For widget/call.js, appended to this bundle; not a public API.
    _ext: { send, h, icon, root, panel, closeBtn, log, lang: LANG, frames: extFrames, open, config: freshCfg },
    open,
    close,
    toggle: () => (isOpen ? close() : open()),
    identify(o) {
      identity = o ? { id: String(o.id), name: o.name, email: o.email, expires: o.expires, hash: o.hash } : null;
      if (ws) drop();
      connect();
    },
    on(ev, fn) {
      (handlers[ev] ||= []).push(fn);
      return () => (handlers[ev] = handlers[ev].filter((x) => x !== fn));
    },
  };
  W.Helpdesk = api;

  let cfgAt = 0;
  async function getCfg() {
    const r = await fetch(ORIGIN + "/widget/config" + Q + "&locale=" + LANG, { credentials: "omit" });
    if (r.ok) Object.assign(cfg, await r.json()), (cfgAt = Date.now());
    return r;
  }
  // TURN credentials in the config last at least six hours: refresh hourly, before a call.
  async function freshCfg() {
    if (Date.now() - cfgAt > 36e5) await getCfg().catch(() => 0);
    return cfg;
  }

  async function boot() {
    try {
      const r = await getCfg();
      if (!r.ok && (r.status === 403 || r.status === 404)) fatal = t("blocked");
    } catch { /* network: run with defaults; the socket will retry */ }
    theme();
    (D.body || D.documentElement).append(host);
    for (const m of outbox) {
      m.el = bubble({ author: { type: "contact" }, body: m.body, attachments: m.attachments });
      setState(m.el, "pending");
      log.append(m.el);
    }
    // Replay calls made before the script loaded: window.Helpdesk = [["open"], ["on", …]].
    if (Array.isArray(queued)) for (const [fn, ...args] of queued) api[fn] && api[fn](...args);
    // Returning visitors reconnect at once (history, unread badge); new ones on first open.
    if (!ws && (store.token || outbox.length || identity)) connect();
    view();
    emit("load");
    W.dispatchEvent(new Event("helpdesk:ready"));
  }
  if (D.body) boot();
  else D.addEventListener("DOMContentLoaded", boot);
})();
