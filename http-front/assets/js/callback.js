// The customer's page (/callback/{scenario}): ask for a callback or a chat
// through the GMS API, wait with the place in the queue (pushed live), confirm
// when the agent is ready (GMS connect), then chat. The service and the
// device id are kept in sessionStorage, so a reload comes back to the same
// conversation with its transcript.
//
// Everything people typed is put in the page with textContent, never as HTML.

import './embed.js';
import { api, form, plausiblePhone, ApiError } from './api.js';
import { connect } from './push.js';
import { $, failed, showError, stored } from './ui.js';
import { pickLanguage, setLanguage, language, t, duration, clock, number } from './i18n.js';

const scenario = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() || '');
const enc = encodeURIComponent;
const kept = stored(`callbackd:callback:${scenario}`);
const VIEWS = ['ask', 'wait', 'ready', 'chat', 'done'];

let session = kept.load(); // {id, device, nickname, chatStarted}
let push = null;
let view = null;
const shown = new Set(); // transcript positions on the page
let agentName = '';
let typingSent = false;
let typingTimer = null;
let theirTypingTimer = null;

function show(name) {
  if (view === name) return;
  const first = view === null;
  view = name;
  for (const v of VIEWS) $(v).hidden = v !== name;
  window.scrollTo(0, 0);
  // Screen readers and keyboards follow the step (not on arrival: the page
  // starts at its top).
  const heading = $(name).querySelector('h1');
  if (heading && !first) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
}

// ---------------------------------------------------------------- asking

async function showAsk() {
  show('ask');
  try {
    const scenarios = await api.get('/api/v1/scenarios');
    const me = scenarios.find((s) => s.name === scenario);
    renderExtraFields(me?._mandatory_fields || []);
  } catch {
    // The form works without the extra fields; the create names any missing.
  }
}

const KNOWN = new Set(['_customer_number', 'firstName', 'lastName', 'email', 'subject']);

function renderExtraFields(fields) {
  const box = $('extra-fields');
  box.replaceChildren();
  for (const name of fields.filter((f) => !KNOWN.has(f))) {
    const label = document.createElement('label');
    const text = document.createElement('span');
    text.textContent = name.replace(/^_+|^usr_/g, '').replace(/_/g, ' ');
    const input = document.createElement('input');
    input.name = name;
    input.required = true;
    input.maxLength = 200;
    label.append(text, input);
    box.append(label);
  }
}

async function ask(event) {
  event.preventDefault();
  showError('');
  const formEl = $('ask-form');
  const values = Object.fromEntries(new FormData(formEl));
  let invalid = null;
  for (const input of formEl.querySelectorAll('input, textarea')) {
    const missing = input.required && !String(values[input.name] || '').trim();
    input.setAttribute('aria-invalid', String(missing));
    if (missing && !invalid) invalid = input;
  }
  if (invalid) {
    showError(t('error.required', 'Please fill in the fields marked as required.'));
    invalid.focus();
    return;
  }
  const phone = formEl.elements._customer_number;
  if (!plausiblePhone(phone.value)) {
    phone.setAttribute('aria-invalid', 'true');
    showError(t('error.phone', 'Please give a phone number we can call, with its country code.'));
    phone.focus();
    return;
  }
  const button = formEl.querySelector('button[type=submit]');
  button.disabled = true;
  const device = crypto.randomUUID();
  try {
    const answer = await api.post(
      `/genesys/1/service/callback/${enc(scenario)}`,
      form({ ...values, _device_os: 'comet', _device_notification_id: device }),
    );
    const nickname = `${values.firstName || ''} ${values.lastName || ''}`.trim();
    session = {
      id: answer._id,
      device,
      nickname,
      first: values.firstName || '',
      last: values.lastName || '',
      since: Date.now(),
    };
    kept.save(session);
    listen();
    showWait();
  } catch (e) {
    failed(e);
    if (e instanceof ApiError) markField(e.body?.message || '');
  } finally {
    button.disabled = false;
  }
}

/// The API's messages name the field: mark it for people and screen readers.
function markField(message) {
  for (const input of $('ask-form').querySelectorAll('input, textarea')) {
    if (message.includes(input.name)) {
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
  }
}

// ---------------------------------------------------------------- waiting

function showWait() {
  show('wait');
  showWaitTexts();
}

function showWaitTexts() {
  if (session?.since) {
    $('since').textContent = t('wait.since', 'Waiting since {time}', { time: clock(new Date(session.since)) });
  }
  checkPosition();
}

async function checkPosition() {
  if (!session) return;
  try {
    const p = await api.get(`/genesys/1/service/${enc(session.id)}/check-queue-position`);
    renderPosition(p._position, p._eta);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return gone();
  }
}

function renderPosition(position, eta) {
  // 0: no longer in the queue (an agent is being connected).
  if (position != null) $('position').textContent = position > 0 ? number(position) : '–';
  if (eta !== undefined) {
    const known = typeof eta === 'number';
    $('eta').textContent = known ? duration(eta) : t('time.unknown', 'Not known yet');
    $('eta').classList.toggle('words', !known);
  }
}

async function cancel() {
  if (!session) return;
  try {
    await api.del(`/genesys/1/service/callback/${enc(scenario)}/${enc(session.id)}`);
    finish('CANCELLED');
  } catch (e) {
    failed(e);
  }
}

// ---------------------------------------------------------------- ready

function showReady() {
  // Kept, so a reload comes back to this step: the notice itself is not
  // sent again once the device had it.
  if (session && !session.ready) {
    session.ready = true;
    kept.save(session);
  }
  show('ready');
}

async function confirm() {
  const button = $('confirm');
  button.disabled = true;
  try {
    await api.post(`/genesys/1/service/${enc(session.id)}/connect`);
    await openChat();
  } catch (e) {
    failed(e);
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- chat

/// Opens the chat once, however many ways ask at the same moment (the
/// confirm's answer and the state push race).
let opening = null;
function openChat() {
  opening ??= startChat().finally(() => {
    opening = null;
  });
  return opening;
}

async function startChat() {
  show('chat');
  // Nothing can be sent before the chat exists.
  $('message').disabled = !session.chatStarted;
  if (!session.chatStarted) {
    try {
      await api.post(
        `/genesys/1/service/${enc(session.id)}/ixn/chat`,
        form({ firstName: session.first, lastName: session.last, nickname: session.nickname, subject: 'Chat' }),
      );
    } catch (e) {
      // Started already (a second tab, or a reload at the wrong moment).
      if (!(e instanceof ApiError && e.status === 409)) return failed(e);
    }
    session.chatStarted = true;
    kept.save(session);
  }
  $('message').disabled = false;
  await readTranscript();
  $('message').focus();
}

/// The rows the page has not shown yet (after a reload: all of them).
async function readTranscript() {
  try {
    // From the first row not on the page: a pushed row may have arrived
    // before rows the device is never pushed (the customer's own).
    let from = 1;
    while (shown.has(from)) from += 1;
    const body = new FormData();
    body.append('transcriptPosition', String(from));
    const state = await api.post(`/genesys/1/service/${enc(session.id)}/ixn/chat/refresh`, body);
    const rows = state.transcriptToShow || [];
    rows.forEach(([kind, nickname, text, , party], i) =>
      addRow({ index: from + i, type: kind, nickname, text, from: party }),
    );
  } catch (e) {
    failed(e);
  }
}

function addRow(row) {
  if (row.index != null) {
    if (shown.has(row.index)) return;
    shown.add(row.index);
  }
  const li = document.createElement('li');
  if (row.type === 'Message.Text') {
    const mine = row.from === 'CLIENT';
    li.className = `msg ${mine ? 'mine' : 'theirs'}`;
    const meta = document.createElement('span');
    meta.className = 'meta';
    meta.textContent = mine ? t('chat.you', 'You') : row.nickname;
    const text = document.createElement('span');
    text.dir = 'auto'; // a message keeps its own direction on a page in another
    text.textContent = row.text;
    li.append(meta, text);
  } else {
    li.className = 'msg notice';
    if (row.from === 'AGENT' && row.type === 'Notice.Joined') setAgent(row.nickname);
    const who = row.from === 'CLIENT' ? t('chat.you', 'You') : row.nickname;
    li.textContent =
      row.type === 'Notice.Joined'
        ? t('chat.joined', '{name} joined the chat', { name: who })
        : t('chat.left', '{name} left the chat', { name: who });
  }
  const list = $('transcript');
  // In transcript order, whichever way a row arrived first.
  li.dataset.index = row.index ?? '';
  const after = row.index == null
    ? null
    : [...list.children].find((other) => Number(other.dataset.index) > row.index);
  list.insertBefore(li, after || null);
  list.scrollTop = list.scrollHeight;
}

/// The agent called from the chat: an invitation, then the room in a frame
/// of this page (its own socket carries the call).
function onVideo(data) {
  if (!data._room_code || !data._room_token) return;
  // callbackd's room page for every provider (a meeting service's room
  // shows its link there): never another origin in this frame.
  // Joining from the invitation is the customer's answer to the ring.
  const room = `/room/${encodeURIComponent(data._room_code)}?token=${encodeURIComponent(data._room_token)}&answer=accept`;
  if (data._event === 'ringing' && $('video').hidden) {
    $('video-invite').hidden = false;
    $('video-join').onclick = () => openRoom(room);
  } else if (data._event === 'ended') {
    $('video-invite').hidden = true;
  }
}

function openRoom(room) {
  $('video-invite').hidden = true;
  const frame = $('video-room');
  if (!frame.src.endsWith(room)) frame.src = room;
  $('video').hidden = false;
  frame.focus();
}

/// A message from the agent's desktop (GMS internal notification): in the
/// chat when it is open, else above the step.
function note(text) {
  if (!text) return;
  if (view !== 'chat') {
    $('notice').textContent = text;
    $('notice').hidden = false;
    return;
  }
  const li = document.createElement('li');
  li.className = 'msg notice';
  li.dataset.index = String(Number.MAX_SAFE_INTEGER);
  li.textContent = text;
  $('transcript').append(li);
}

function setAgent(name) {
  agentName = name || '';
  $('agent-name').textContent = agentName;
  $('agent-initial').textContent = (agentName.trim()[0] || 'A').toUpperCase();
}

async function send(event) {
  event.preventDefault();
  const box = $('message');
  const text = box.value.trim();
  if (!text) return;
  box.value = '';
  stopTyping();
  try {
    await api.post(`/genesys/1/service/${enc(session.id)}/ixn/chat/send`, form({ message: text }));
    await readTranscript();
  } catch (e) {
    box.value = text;
    failed(e);
  }
  box.focus();
}

function typing() {
  if (!session?.chatStarted) return;
  if (!typingSent && $('message').value.trim()) {
    typingSent = true;
    api.post(`/genesys/1/service/${enc(session.id)}/ixn/chat/startTyping`).catch(() => {});
  }
  clearTimeout(typingTimer);
  typingTimer = setTimeout(stopTyping, 3000);
}

function stopTyping() {
  clearTimeout(typingTimer);
  if (!typingSent) return;
  typingSent = false;
  api.post(`/genesys/1/service/${enc(session.id)}/ixn/chat/stopTyping`).catch(() => {});
}

function theirTyping(started, nickname) {
  clearTimeout(theirTypingTimer);
  $('typing').textContent = started ? t('chat.typing', '{name} is typing…', { name: nickname || agentName }) : '';
  // A lost "stopped" must not leave it on for ever.
  if (started) theirTypingTimer = setTimeout(() => ($('typing').textContent = ''), 15000);
}

async function leave() {
  try {
    stopTyping();
    await api.post(`/genesys/1/service/${enc(session.id)}/ixn/chat/disconnect`);
    finish('AGENT_CONNECTED');
  } catch (e) {
    failed(e);
  }
}

// ---------------------------------------------------------------- the end

function finish(reason) {
  push?.close();
  push = null;
  session = null;
  kept.save(session);
  $('done-text').textContent =
    reason === 'CANCELLED'
      ? t('done.cancelled', 'You left the queue. You can ask again at any time.')
      : t('done.lead', 'Your conversation has ended.');
  show('done');
}

function gone() {
  finish('GONE');
}

// ---------------------------------------------------------------- live

function listen() {
  push?.close();
  push = connect({ gms_user: session.device }, { onMessage, onOpen: resync });
}

function onMessage(frame) {
  const tag = frame.tag || frame.data?.tag || '';
  const data = frame.data || {};
  const message = data.message || {};
  if (tag.startsWith('service.position.')) {
    renderPosition(message._position);
    checkPosition();
  } else if (tag.startsWith('service.agentavailable.')) {
    showReady();
  } else if (tag.startsWith('service.state.')) {
    onState(message._callback_state);
  } else if (tag.startsWith('service.chat.typing.')) {
    theirTyping(data.type === 'Notice.TypingStarted', data.nickname);
  } else if (tag.startsWith('service.chat.')) {
    if (view === 'chat') {
      if (data.type === 'Message.Text') theirTyping(false);
      addRow(data);
    }
  } else if (tag.startsWith('service.video.') && !tag.startsWith('service.video.signal.')) {
    onVideo(data);
  } else if (tag.startsWith('service.internal.')) {
    note(data._display_message || '');
  } else if (tag.startsWith('service.completed.')) {
    finish(data._callback_reason);
  }
}

function onState(state) {
  if ((state === 'QUEUED' || state === 'SCHEDULED') && session?.ready) {
    // Back in the queue (the confirmation timed out): ready no more.
    session.ready = false;
    kept.save(session);
  }
  if (state === 'QUEUED' || state === 'SCHEDULED') {
    if (view !== 'wait') showWait();
  } else if (state === 'PROCESSING') {
    if (view !== 'chat') openChat();
  } else if (state === 'COMPLETED') {
    finish();
  }
}

/// (Re)connected: read the state once, in case something happened while
/// the socket was down.
async function resync() {
  if (!session) return;
  try {
    const found = await api.get(`/genesys/1/service/callback?_id=${enc(session.id)}`);
    const record = Array.isArray(found) ? found[0] : found;
    if (!record) return gone();
    const state = record._callback_state;
    if (state === 'COMPLETED') return finish(record._callback_reason);
    if (state === 'PROCESSING') return view === 'chat' ? readTranscript() : openChat();
    if (state === 'ROUTING') {
      if (session.ready) return showReady();
      // The agent may have been found before this socket listened: what
      // the device was not pushed waits in its outbox (GMS's
      // retrieve-notifications).
      const waiting = await api.post(`/genesys/1/service/${enc(session.id)}/retrieve-notifications`);
      for (const n of waiting || []) {
        if (String(n.message?._action || '').startsWith('get-dialog-user-confirmation')) return showReady();
        if (n._display_message) note(n._display_message);
      }
    }
    if (view !== 'ready') showWait();
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return gone();
    failed(e);
  }
}

// ---------------------------------------------------------------- start

async function start() {
  await setLanguage(pickLanguage());
  $('lang').value = language();
  $('lang').addEventListener('change', async (e) => {
    await setLanguage(e.target.value);
    if (view === 'wait') showWaitTexts();
    if (view === 'chat') {
      // The notices are written in the language of the moment: write again.
      shown.clear();
      $('transcript').replaceChildren();
      readTranscript();
    }
  });
  $('ask-form').addEventListener('submit', ask);
  $('cancel').addEventListener('click', cancel);
  $('confirm').addEventListener('click', confirm);
  $('composer').addEventListener('submit', send);
  $('message').addEventListener('input', typing);
  $('message').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      $('composer').requestSubmit();
    }
  });
  $('leave').addEventListener('click', leave);
  $('again').addEventListener('click', () => {
    showError('');
    $('ask-form').reset();
    showAsk();
  });
  if (session) {
    show('wait');
    listen(); // its first frame runs resync
  } else {
    showAsk();
  }
}

start();
