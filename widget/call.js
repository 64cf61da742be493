/* Helpdesk widget: voice calls in the chat panel. Appended to widget.js by the server;
   frames in docs/voice-protocol.md. Adds a call button to the header and a call bar. */
(() => {
  "use strict";
  const W = window, N = navigator, H = W.Helpdesk, X = H && H._ext;
  if (!X || !W.RTCPeerConnection || !(N.mediaDevices && N.mediaDevices.getUserMedia)) return;
  const { send, h, icon, panel, closeBtn, log } = X;
  const STR = {
    en: {
      call: "Call us", calling: "Connecting your call…", queued: "Waiting for an agent",
      position: "You are number {n} in the queue", active: "On a call with {name}",
      held: "On hold", transferring: "Transferring your call…", ringing: "{name} is calling you",
      ended: "Call ended", mute: "Mute", unmute: "Unmute", hangup: "Hang up", accept: "Answer",
      decline: "Decline", callback: "Call me back instead", callback_done: "We will call you back.",
      recording: "This call may be recorded.", agent: "an agent",
      denied: "Microphone access was denied. Allow it in your browser to call us.",
      failed: "The call could not be connected.",
    },
    de: {
      call: "Anrufen", calling: "Ihr Anruf wird verbunden…", queued: "Warten auf einen Mitarbeiter",
      position: "Sie sind Nummer {n} in der Warteschlange", active: "Im Gespräch mit {name}",
      held: "In der Warteschleife", transferring: "Ihr Anruf wird weitergeleitet…",
      ringing: "{name} ruft Sie an", ended: "Anruf beendet", mute: "Stumm", unmute: "Ton an",
      hangup: "Auflegen", accept: "Annehmen", decline: "Ablehnen",
      callback: "Stattdessen zurückrufen", callback_done: "Wir rufen Sie zurück.",
      recording: "Dieser Anruf kann aufgezeichnet werden.", agent: "ein Mitarbeiter",
      denied: "Der Zugriff auf das Mikrofon wurde verweigert. Erlauben Sie ihn im Browser, um uns anzurufen.",
      failed: "Der Anruf konnte nicht verbunden werden.",
    },
  };
  const t = (k, v) => (STR[X.lang] || STR.en)[k].replace(/\{(\w+)\}/g, (_, n) => (v || {})[n]);

  let pc = null, mic = null, call = 0, state = "", since = 0, timerT = 0, muted = false;
  const audio = h("audio", { autoplay: true });
  const info = h("span", { class: "cinfo", role: "status" });
  const clock = h("span", { class: "ctime" });
  const notice = h("small", { class: "crec", hidden: true, text: t("recording") });
  const btn = (k, cls, fn) => h("button", { type: "button", class: "cb " + cls, text: t(k), onclick: fn, hidden: true });
  const muteB = btn("mute", "", () => setMute(!muted));
  const hangB = btn("hangup", "end", () => { send({ type: "call.hangup", call }); done(); });
  const answerB = btn("accept", "ok", answer);
  const declineB = btn("decline", "end", () => { send({ type: "call.decline", call }); done(); });
  const backB = btn("callback", "", () => send({ type: "call.callback", call }));
  const bar = h("div", { class: "callbar", hidden: true }, [
    h("div", { class: "crow" }, [info, clock]), notice,
    h("div", { class: "crow" }, [muteB, answerB, declineB, backB, hangB]), audio,
  ]);
  const callB = h("button", {
    class: "icon", type: "button", "aria-label": t("call"), title: t("call"), onclick: () => start(),
  }, icon("M6.6 10.8a15.1 15.1 0 0 0 6.6 6.6l2.2-2.2c.3-.3.7-.4 1-.2 1.1.4 2.3.6 3.6.6.6 0 1 .4 1 1V20c0 .6-.4 1-1 1A17 17 0 0 1 3 4c0-.6.4-1 1-1h3.5c.6 0 1 .4 1 1 0 1.3.2 2.5.6 3.6.1.3 0 .7-.2 1z"));
  closeBtn.before(callB);
  log.before(bar);
  const style = h("style", {
    text: ".callbar{padding:8px 12px;border-bottom:1px solid rgba(127,127,127,.25);font-size:13px}" +
      ".crow{display:flex;gap:6px;align-items:center;flex-wrap:wrap}.cinfo{flex:1}.ctime{font-variant-numeric:tabular-nums}" +
      ".cb{border:0;border-radius:6px;padding:5px 10px;margin-top:6px;background:rgba(127,127,127,.18)}" +
      ".cb.end{background:#c62828;color:#fff}.cb.ok{background:#2e7d32;color:#fff}.crec{opacity:.75}",
  });
  panel.append(style);

  function show(text, buttons) {
    bar.hidden = false;
    info.textContent = text;
    for (const b of [muteB, answerB, declineB, backB, hangB]) b.hidden = !(buttons || []).includes(b);
    callB.disabled = !!call;
  }

  function tick() {
    const s = Math.floor((Date.now() - since) / 1000);
    clock.textContent = since ? `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}` : "";
  }

  function setMute(on) {
    muted = on;
    if (mic) mic.getAudioTracks().forEach((tr) => (tr.enabled = !on));
    muteB.textContent = t(on ? "unmute" : "mute");
    send({ type: "call.mute", call, muted: on });
  }

  async function leg() {
    // STUN/TURN servers (HELPDESK_ICE_SERVERS) come with /widget/config, refreshed when
    // old: before the microphone, so nothing else is awaited between it and its use.
    const ice = (await X.config()).ice_servers || [];
    // Ask for the microphone only when the customer calls or answers.
    try {
      mic = await N.mediaDevices.getUserMedia({ audio: true });
    } catch {
      show(t("denied"));
      return null;
    }
    pc = new RTCPeerConnection({ iceServers: ice });
    mic.getTracks().forEach((tr) => pc.addTrack(tr, mic));
    pc.ontrack = (e) => { audio.srcObject = e.streams[0] || new MediaStream([e.track]); };
    pc.onconnectionstatechange = () => pc && pc.connectionState === "failed" && (show(t("failed")), done(true));
    await pc.setLocalDescription(await pc.createOffer());
    // The server does not trickle: send the offer once every candidate is in it.
    await new Promise((ok) => {
      if (pc.iceGatheringState === "complete") return ok();
      pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && ok());
      setTimeout(ok, 3000);
    });
    return pc.localDescription.sdp;
  }

  async function start() {
    if (call || pc) return;
    X.open();
    show(t("calling"));
    const sdp = await leg();
    if (sdp) send({ type: "call.start", sdp });
  }

  async function answer() {
    show(t("calling"));
    const sdp = await leg();
    if (sdp) send({ type: "call.accept", call, sdp });
    else send({ type: "call.decline", call });
  }

  function done(keep) {
    clearInterval(timerT);
    if (pc) pc.close();
    if (mic) mic.getTracks().forEach((tr) => tr.stop());
    pc = mic = null;
    call = 0;
    since = 0;
    muted = false;
    muteB.textContent = t("mute");
    tick();
    callB.disabled = false;
    if (!keep) setTimeout(() => !call && (bar.hidden = true), 4000);
  }

  function onState(f) {
    if (call && f.call !== call && f.state !== "ringing") return;
    state = f.state;
    notice.hidden = !f.recording;
    const name = (f.agent && f.agent.name) || (f.caller && f.caller.name) || t("agent");
    switch (state) {
      case "queued":
        call = f.call;
        show(f.position ? t("position", { n: f.position }) : t("queued"),
          f.callback_offered ? [muteB, backB, hangB] : [muteB, hangB]);
        break;
      case "ringing":
        if (call && f.call !== call) return;
        call = f.call;
        X.open();
        send({ type: "call.ringing", call });
        show(t("ringing", { name }), [answerB, declineB]);
        break;
      case "active":
        call = f.call;
        if (!since) { since = Date.now(); timerT = setInterval(tick, 1000); }
        show(t("active", { name }), [muteB, hangB]);
        break;
      case "held": show(t("held"), [muteB, hangB]); break;
      case "transferring": show(t("transferring"), [muteB, hangB]); break;
      case "callback_requested": show(t("callback_done")); done(true); break;
      case "answered_elsewhere":
        if (pc) break; // only the tab that answered holds a peer connection
      // falls through
      case "ended":
      case "abandoned":
        show(t("ended"));
        done();
        break;
    }
  }

  X.frames.push((f) => {
    if (f.type === "call.answer" && pc) {
      call = f.call;
      pc.setRemoteDescription({ type: "answer", sdp: f.sdp }).catch(() => show(t("failed")));
    } else if (f.type === "call.state") onState(f);
    else if (f.type === "call.error") { show(f.message || t("failed")); if (!pc || !call) done(true); }
  });

  // For tests and host pages that want call quality: inbound audio packets received so far.
  H.call = {
    get state() { return state; },
    async stats() {
      if (!pc) return null;
      let packets = 0;
      (await pc.getStats()).forEach((r) => { if (r.type === "inbound-rtp" && r.kind === "audio") packets += r.packetsReceived; });
      return { packets, connection: pc.connectionState };
    },
  };
})();
