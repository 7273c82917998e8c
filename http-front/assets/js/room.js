// The video room (/room/{code}?token=…): answer the ring, check camera and
// microphone, join, and call over WebRTC with callbackd relaying the
// signalling (the room page's own socket, `?room=&token=`); mute, camera
// off, screen share, hang up, the other side's state; after the call, the
// customer's survey. A template room (a meeting service) is only a link.
//
// The agent offers when both sides are in; the customer answers.

import { api, ApiError } from './api.js';
import { connect } from './push.js';
import { $, failed as failedCall, showError } from './ui.js';
import { pickLanguage, setLanguage, language, t } from './i18n.js';

const code = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() || '');
const token = new URLSearchParams(location.search).get('token') || '';
const base = `/api/v1/rooms/${encodeURIComponent(code)}`;
const withToken = (path) => `${path}?token=${encodeURIComponent(token)}`;
const VIEWS = ['ring', 'lobby', 'template', 'call', 'after'];

let view = null; // GET /api/v1/rooms/{code}
let media = null; // the camera and microphone
let screen = null;
let pc = null;
let socket = null;
let offered = false;
// "started" heard before this side's own join was answered: offer then.
let startedEarly = false;
let ended = false;
let pendingCandidates = [];
// Signals heard before this side's own join was answered (no peer yet).
let earlySignals = [];

function show(name) {
  for (const v of VIEWS) $(v).hidden = v !== name;
}

function failed(e) {
  if (e?.name === 'NotAllowedError') {
    return showError(t('room.noPermission', 'The browser did not allow the camera or microphone. Allow them for this page and try again.'));
  }
  return failedCall(e);
}

function peerState(text, connected = false) {
  $('peer-state').textContent = text;
  $('peer-state').classList.toggle('connected', connected);
}

async function load() {
  view = await api.get(withToken(base));
  if (view.status === 'ended') return afterCall();
  if (view.provider !== 'relay') {
    $('meet').href = view.meet_url;
    return show('template');
  }
  if (view.status === 'ringing' && view.ringing === view.side) {
    // Already answered on the page that opened this one (the chat's
    // invitation): no second question.
    if (new URLSearchParams(location.search).get('answer') === 'accept') return answer(true);
    return show('ring');
  }
  await lobby();
}

// ---------------------------------------------------------------- ring and lobby

async function answer(accept) {
  try {
    view = await api.post(withToken(`${base}/${accept ? 'accept' : 'decline'}`));
  } catch (e) {
    return failed(e);
  }
  if (accept) await lobby();
  else afterCall();
}

async function lobby() {
  show('lobby');
  try {
    media ??= await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    $('preview').srcObject = media;
  } catch (e) {
    failed(e);
  }
}

function toggle(button, kind) {
  const on = button.getAttribute('aria-pressed') !== 'true';
  for (const track of media?.getTracks() || []) if (track.kind === kind) track.enabled = on;
  for (const id of kind === 'audio' ? ['mic', 'lobby-mic'] : ['cam', 'lobby-cam']) {
    $(id).setAttribute('aria-pressed', String(on));
  }
}

// ---------------------------------------------------------------- the call

async function join() {
  showError('');
  $('join').disabled = true;
  // Listen first, so "started" cannot pass unheard.
  await new Promise((resolve) => {
    socket = connect({ room: code, token }, { onOpen: resolve, onMessage });
  });
  try {
    view = await api.post(withToken(`${base}/join`));
  } catch (e) {
    $('join').disabled = false;
    return failed(e);
  }
  show('call');
  $('local').srcObject = media;
  startPeer();
  peerState(t('room.waitingOther', 'Waiting for the other side…'));
  for (const s of earlySignals.splice(0)) await onSignal(s);
  if (view.status === 'started' || startedEarly) bothIn();
}

function startPeer() {
  pc = new RTCPeerConnection({ iceServers: view.ice_servers || [] });
  window.callbackdRoom = { pc };
  for (const track of media?.getTracks() || []) pc.addTrack(track, media);
  pc.addEventListener('track', (event) => {
    $('remote').srcObject = event.streams[0];
    $('remote-note').hidden = true;
  });
  pc.addEventListener('icecandidate', (event) => {
    if (event.candidate) signal({ type: 'candidate', candidate: event.candidate.toJSON() });
  });
  pc.addEventListener('connectionstatechange', () => {
    const states = {
      connected: t('room.connected', 'Connected'),
      connecting: t('room.connecting', 'Connecting…'),
      disconnected: t('room.reconnecting', 'Connection lost, retrying…'),
      failed: t('room.failed', 'The connection failed'),
    };
    if (states[pc.connectionState]) peerState(states[pc.connectionState], pc.connectionState === 'connected');
  });
}

/// Both sides are in: the agent makes the offer.
async function bothIn() {
  if (!pc) {
    // The other side's join came in while this side's was on its way.
    startedEarly = true;
    return;
  }
  if (view.side !== 'agent' || offered) return;
  offered = true;
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  await signal({ type: 'offer', sdp: offer.sdp });
}

async function signal(body) {
  try {
    await api.post(withToken(`${base}/signal`), body);
  } catch (e) {
    if (!ended) failed(e);
  }
}

async function onSignal(s) {
  if (!pc) {
    earlySignals.push(s);
    return;
  }
  if (s.type === 'offer') {
    await pc.setRemoteDescription({ type: 'offer', sdp: s.sdp });
    await flushCandidates();
    const reply = await pc.createAnswer();
    await pc.setLocalDescription(reply);
    await signal({ type: 'answer', sdp: reply.sdp });
  } else if (s.type === 'answer') {
    await pc.setRemoteDescription({ type: 'answer', sdp: s.sdp });
    await flushCandidates();
  } else if (s.type === 'candidate' && s.candidate) {
    if (pc.remoteDescription) await pc.addIceCandidate(s.candidate).catch(() => {});
    else pendingCandidates.push(s.candidate);
  } else if (s.type === 'bye') {
    otherLeft();
  }
}

async function flushCandidates() {
  for (const c of pendingCandidates) await pc.addIceCandidate(c).catch(() => {});
  pendingCandidates = [];
}

function onMessage(frame) {
  const tag = frame.tag || '';
  let data = frame.data || {};
  if (typeof data.message === 'string') {
    try {
      data = JSON.parse(data.message);
    } catch {
      data = {};
    }
  }
  if (tag.includes('.video.signal.')) {
    onSignal(data.signal || {});
    return;
  }
  const event = data._event;
  if (event === 'started') bothIn();
  // A room ends when one side leaves: if this side is still in, it was
  // the other one.
  else if ((event === 'left' || event === 'ended') && pc && !ended) otherLeft();
}

function otherLeft() {
  $('remote-note').hidden = false;
  $('remote-note').textContent = t('room.otherLeft', 'The other side has left the call.');
  peerState(t('room.otherLeftShort', 'The other side left'));
  endCall(false);
}

async function shareScreen() {
  const sender = pc?.getSenders().find((s) => s.track?.kind === 'video');
  if (!sender) return;
  if (screen) {
    screen.getTracks().forEach((track) => track.stop());
    screen = null;
    await sender.replaceTrack(media.getVideoTracks()[0] || null);
    $('share').setAttribute('aria-pressed', 'false');
    return;
  }
  try {
    screen = await navigator.mediaDevices.getDisplayMedia({ video: true });
  } catch (e) {
    return failed(e);
  }
  const track = screen.getVideoTracks()[0];
  track.addEventListener('ended', () => screen && shareScreen());
  await sender.replaceTrack(track);
  $('share').setAttribute('aria-pressed', 'true');
}

async function hangUp() {
  await signal({ type: 'bye' });
  await endCall(true);
}

async function endCall(mine) {
  if (ended) return;
  ended = true;
  if (mine) {
    try {
      await api.post(withToken(`${base}/leave`));
    } catch {
      // The room may have ended meanwhile: leaving is done either way.
    }
  }
  socket?.close();
  peerState('');
  screen?.getTracks().forEach((track) => track.stop());
  media?.getTracks().forEach((track) => track.stop());
  pc?.close();
  afterCall();
}

// ---------------------------------------------------------------- after

async function afterCall() {
  show('after');
  try {
    view = await api.get(withToken(base));
  } catch {
    return;
  }
  const survey = view.survey;
  if (view.side !== 'customer' || !survey?.open) return;
  $('survey-question').textContent = survey.question;
  const scores = $('scores');
  scores.replaceChildren();
  for (let n = 1; n <= survey.scale; n += 1) {
    const label = document.createElement('label');
    const input = document.createElement('input');
    input.type = 'radio';
    input.name = 'score';
    input.value = String(n);
    input.required = true;
    label.append(input, document.createTextNode(new Intl.NumberFormat(language()).format(n)));
    scores.append(label);
  }
  $('survey').hidden = false;
}

async function sendSurvey(event) {
  event.preventDefault();
  const values = Object.fromEntries(new FormData($('survey')));
  if (!values.score) {
    showError(t('room.pickScore', 'Please choose a score.'));
    return;
  }
  const body = { score: Number(values.score) };
  if (values.comment?.trim()) body.comment = values.comment.trim();
  try {
    await api.post(withToken(`${base}/survey`), body);
    $('survey').hidden = true;
    $('thanks').hidden = false;
    showError('');
  } catch (e) {
    failed(e);
  }
}

async function start() {
  // Inside the chat page or the console: their header is enough.
  if (window.parent !== window) document.body.classList.add('embedded');
  await setLanguage(pickLanguage());
  $('lang').value = language();
  $('lang').addEventListener('change', (e) => setLanguage(e.target.value));
  $('accept').addEventListener('click', () => answer(true));
  $('decline').addEventListener('click', () => answer(false));
  $('join').addEventListener('click', join);
  $('lobby-mic').addEventListener('click', (e) => toggle(e.currentTarget, 'audio'));
  $('lobby-cam').addEventListener('click', (e) => toggle(e.currentTarget, 'video'));
  $('mic').addEventListener('click', (e) => toggle(e.currentTarget, 'audio'));
  $('cam').addEventListener('click', (e) => toggle(e.currentTarget, 'video'));
  $('share').addEventListener('click', shareScreen);
  $('hangup').addEventListener('click', hangUp);
  $('survey').addEventListener('submit', sendSurvey);
  try {
    await load();
  } catch (e) {
    if (e instanceof ApiError && (e.status === 404 || e.status === 403)) {
      showError(t('room.notFound', 'This link does not open a video call. Please ask for a new one.'));
    } else {
      failed(e);
    }
  }
}

start();
