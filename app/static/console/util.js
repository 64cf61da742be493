// Shared helpers for the console modules: page data, strings, fetch, DOM, time.
const bootEl = document.getElementById("boot");
export const boot = bootEl ? JSON.parse(bootEl.textContent) : { strings: {} };
export const me = boot.me || null;

export function t(key, values) {
  let text = (boot.strings && boot.strings[key]) || key;
  if (values) {
    for (const [k, v] of Object.entries(values)) text = text.split("{" + k + "}").join(String(v));
  }
  return text;
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// Same-origin fetch with the session cookie; the server checks Origin on writes.
export async function api(method, url, body) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  if (response.status === 401) {
    location.href = "/console/login?next=" + encodeURIComponent(location.pathname);
    throw new ApiError(401, "signed out");
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const message = (data && data.error && data.error.message) || response.statusText;
    throw new ApiError(response.status, message);
  }
  return data;
}

export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function age(iso, now = Date.now()) {
  if (!iso) return "";
  const seconds = Math.max(0, (now - Date.parse(iso)) / 1000);
  if (seconds < 60) return t("time.now");
  if (seconds < 3600) return t("time.m", { n: Math.floor(seconds / 60) });
  if (seconds < 86400) return t("time.h", { n: Math.floor(seconds / 3600) });
  return t("time.d", { n: Math.floor(seconds / 86400) });
}

export function clock(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString(boot.locale === "de" ? "de-DE" : "en-GB", {
    dateStyle: "short",
    timeStyle: "short",
  });
}

export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

let toastTimer = null;
export function toast(message) {
  const node = document.getElementById("toast");
  if (!node) return;
  node.textContent = message;
  node.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (node.hidden = true), 4000);
}

// Unread markers: the last seq this browser has shown the agent, per ticket.
const SEEN_KEY = "hd.seen." + (me ? me.id : "0");
function seenMap() {
  try {
    return JSON.parse(localStorage.getItem(SEEN_KEY) || "{}");
  } catch {
    return {};
  }
}
export function seenSeq(ticketId) {
  return seenMap()[ticketId] || 0;
}
export function markSeen(ticketId, seq) {
  const map = seenMap();
  if ((map[ticketId] || 0) >= seq) return;
  map[ticketId] = seq;
  const keys = Object.keys(map);
  if (keys.length > 2000) for (const k of keys.slice(0, keys.length - 2000)) delete map[k];
  localStorage.setItem(SEEN_KEY, JSON.stringify(map));
}

export function typingTarget(event) {
  const target = event.target;
  return (
    target instanceof HTMLElement &&
    (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))
  );
}
