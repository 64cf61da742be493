// One WebRTC leg between this console and the server (channels/voice terminates it).
//
// The server does not trickle ICE: the offer goes out once gathering is complete, as
// one full SDP (docs/voice-protocol.md). The leg sends the microphone and plays what
// the server sends; everything after that (hold audio, the customer, a whisper) is a
// source switch on the server, so a leg is never renegotiated.
import { api, boot } from "./util.js";

const GATHER_MS = 3000;
// TURN credentials last at least six hours (HELPDESK_TURN_CREDENTIAL_TTL_SECONDS);
// a console open for longer fetches fresh ones before its next call.
const ICE_FRESH_MS = 3600e3;
let ice = { servers: boot.ice_servers || [], at: Date.now() };

async function iceServers() {
  if (Date.now() - ice.at > ICE_FRESH_MS) {
    try {
      ice = { servers: (await api("GET", "/console/api/ice")).ice_servers, at: Date.now() };
    } catch {
      // Keep the ones we have: STUN still works, and the call may not need TURN.
    }
  }
  return ice.servers;
}

export class MicError extends Error {}

export async function openLeg({ micEnabled = true } = {}) {
  let mic;
  try {
    mic = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (err) {
    throw new MicError(err && err.message ? err.message : "microphone unavailable");
  }
  const pc = new RTCPeerConnection({ iceServers: await iceServers() });
  for (const track of mic.getAudioTracks()) {
    track.enabled = micEnabled;
    pc.addTrack(track, mic);
  }
  const audio = new Audio();
  audio.autoplay = true;
  const leg = { pc, mic, audio, blocked: false, onblocked: null };
  pc.addEventListener("track", (e) => {
    audio.srcObject = e.streams[0] || new MediaStream([e.track]);
    audio.play().catch(() => {
      // Autoplay refused (no user gesture since the page loaded): the UI offers a button.
      leg.blocked = true;
      if (leg.onblocked) leg.onblocked();
    });
  });
  return leg;
}

export async function offerSdp(pc) {
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((done) => {
    if (pc.iceGatheringState === "complete") return done();
    const check = () => pc.iceGatheringState === "complete" && done();
    pc.addEventListener("icegatheringstatechange", check);
    setTimeout(done, GATHER_MS);
  });
  return pc.localDescription.sdp;
}

export function setMic(leg, enabled) {
  if (!leg) return;
  for (const track of leg.mic.getAudioTracks()) track.enabled = enabled;
}

export function closeLeg(leg) {
  if (!leg) return;
  try {
    leg.pc.close();
  } catch {
    /* already closed */
  }
  for (const track of leg.mic.getTracks()) track.stop();
  leg.audio.srcObject = null;
}

// Inbound/outbound audio packets so far (tests and the call panel's quality hint).
export async function legStats(leg) {
  if (!leg) return null;
  let packets = 0;
  let sent = 0;
  (await leg.pc.getStats()).forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "audio") packets += r.packetsReceived || 0;
    if (r.type === "outbound-rtp" && r.kind === "audio") sent += r.packetsSent || 0;
  });
  return { packets, sent, connection: leg.pc.connectionState };
}
