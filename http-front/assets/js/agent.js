// The agent console (/agent): sign in with the agent's id (and key, when the
// server checks callers); ready and not ready; offers arrive live over the
// agent's push channel with a sound and a badge; each service the agent
// holds is a tab with its customer, history and chat; notify the customer,
// accept or reject a preview, complete (forcing, after a confirmation, when
// a video room is live).
//
// Everything a customer typed is put in the page with textContent.

import { api, form, useCredential, ApiError } from './api.js';
import { connect } from './push.js';
import { $, ask, failed, showError, stored } from './ui.js';
import { pickLanguage, setLanguage, language, t, apply } from './i18n.js';

const enc = encodeURIComponent;
const kept = stored('callbackd:agent');

let me = kept.load(); // {id, key}
let agent = null; // GET /api/v1/agents/{id}
let push = null;
let selected = null;
let offers = 0;
const offered = new Set(); // services the badge has counted
let sound = null;
const panels = new Map(); // service id → {tab, panel, rows: Set, typingSent, typingTimer}

// ---------------------------------------------------------------- sign in

async function signIn(event) {
  event.preventDefault();
  showError('');
  const values = Object.fromEntries(new FormData($('sign-in-form')));
  const id = String(values.agent || '').trim();
  const input = $('sign-in-form').elements.agent;
  input.setAttribute('aria-invalid', String(!id));
  if (!id) {
    showError(t('agent.idRequired', 'Please give your agent id.'));
    input.focus();
    return;
  }
  // The click lets the page play the offer sound later.
  sound ??= new AudioContext();
  useCredential(values.key);
  try {
    agent = await api.get(`/api/v1/agents/${enc(id)}`);
  } catch (e) {
    useCredential(null);
    return failed(e);
  }
  me = { id, key: values.key || null };
  kept.save(me);
  enter();
}

function signOut() {
  push?.close();
  push = null;
  me = null;
  agent = null;
  kept.save(me);
  useCredential(null);
  for (const id of [...panels.keys()]) dropPanel(id);
  $('desk').hidden = true;
  $('me').hidden = true;
  $('sign-in').hidden = false;
  $('sign-in-form').reset();
}

function enter() {
  useCredential(me.key);
  $('sign-in').hidden = true;
  $('desk').hidden = false;
  $('me').hidden = false;
  listen();
  refresh();
}

// ---------------------------------------------------------------- the agent

async function refresh() {
  if (!me) return;
  try {
    agent = await api.get(`/api/v1/agents/${enc(me.id)}`);
  } catch (e) {
    return failed(e);
  }
  $('me-name').textContent = agent.name || agent.id;
  const ready = agent.state === 'ready';
  $('readiness').setAttribute('aria-pressed', String(ready));
  $('readiness-text').textContent = ready ? t('agent.ready', 'Ready') : t('agent.notReady', 'Not ready');
  $('load').textContent = t('agent.load', '{n} of {max} services', {
    n: agent.services.length,
    max: agent.max_concurrent,
  });
  const current = new Set(agent.services.map((s) => s._id));
  for (const [id, entry] of [...panels]) {
    if (current.has(id)) continue;
    // Ended under the agent's eyes: kept, with its transcript, until closed.
    if (entry.ended) continue;
    dropPanel(id);
  }
  for (const service of agent.services) {
    if (!panels.has(service._id)) addPanel(service);
    loadService(service._id);
  }
  $('empty').hidden = panels.size > 0;
  $('empty').textContent = ready
    ? t('agent.emptyReady', 'No services yet. New offers appear here.')
    : t('agent.empty', 'No services yet. Get ready to receive offers.');
  if ((!selected || !panels.has(selected)) && panels.size) select(panels.keys().next().value);
}

async function toggleReady() {
  const ready = $('readiness').getAttribute('aria-pressed') === 'true';
  try {
    await api.post(`/api/v1/agents/${enc(me.id)}/${ready ? 'not-ready' : 'ready'}`);
  } catch (e) {
    failed(e);
  }
  refresh();
}

// ---------------------------------------------------------------- tabs

function addPanel(service) {
  const id = service._id;
  const tab = document.createElement('button');
  tab.type = 'button';
  tab.role = 'tab';
  tab.id = `tab-${id}`;
  tab.setAttribute('aria-controls', `panel-${id}`);
  tab.setAttribute('aria-selected', 'false');
  tab.tabIndex = -1;
  const name = document.createElement('span');
  name.className = 'name';
  name.textContent = service._customer_number;
  const state = document.createElement('span');
  state.className = 'state';
  tab.append(name, state);
  tab.addEventListener('click', () => select(id, true));
  tab.addEventListener('keydown', tabKeys);
  $('tabs').append(tab);

  const panel = $('panel-template').content.firstElementChild.cloneNode(true);
  panel.id = `panel-${id}`;
  panel.setAttribute('aria-labelledby', tab.id);
  panel.hidden = true;
  $('panels').append(panel);
  const entry = { tab, panel, rows: new Set(), typingSent: false, typingTimer: null, theirTimer: null };
  panels.set(id, entry);
  wirePanel(id, entry);
  // The template's texts, in the page's language.
  apply(panel);
}

function dropPanel(id) {
  const entry = panels.get(id);
  if (!entry) return;
  entry.tab.remove();
  entry.panel.remove();
  panels.delete(id);
  if (selected === id) selected = null;
}

/// Shows service `id`'s tab; the agent choosing it (`looked`) has seen the
/// new offers.
function select(id, looked = false) {
  selected = id;
  for (const [other, entry] of panels) {
    const on = other === id;
    entry.tab.setAttribute('aria-selected', String(on));
    entry.tab.tabIndex = on ? 0 : -1;
    entry.panel.hidden = !on;
  }
  if (looked) {
    offers = 0;
    renderBadge();
  }
}

/// Arrow keys move between tabs (the WAI-ARIA tabs pattern).
function tabKeys(event) {
  const ids = [...panels.keys()];
  const at = ids.indexOf(selected);
  const rtl = document.documentElement.dir === 'rtl';
  const step = { ArrowRight: rtl ? -1 : 1, ArrowLeft: rtl ? 1 : -1, Home: -Infinity, End: Infinity }[event.key];
  if (step === undefined || !ids.length) return;
  event.preventDefault();
  const next = Number.isFinite(step) ? (at + step + ids.length) % ids.length : step < 0 ? 0 : ids.length - 1;
  select(ids[next], true);
  panels.get(ids[next]).tab.focus();
}

// ---------------------------------------------------------------- one service

function wirePanel(id, entry) {
  const q = (s) => entry.panel.querySelector(s);
  q('.composer').addEventListener('submit', (e) => send(e, id));
  const box = q('.composer textarea');
  box.addEventListener('input', () => typing(id));
  box.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      q('.composer').requestSubmit();
    }
  });
  q('.notify').addEventListener('submit', (e) => notify(e, id));
  q('.complete').addEventListener('click', () => {
    if (panels.get(id)?.ended) {
      dropPanel(id);
      refresh();
    } else {
      complete(id);
    }
  });
  q('.video').addEventListener('click', () => startVideo(id));
  q('.accept').addEventListener('click', () => answerPreview(id, 'accept'));
  q('.reject').addEventListener('click', () => answerPreview(id, 'reject'));
}

async function loadService(id) {
  const entry = panels.get(id);
  if (!entry) return;
  let record;
  try {
    record = await api.get(`/api/v1/services/${enc(id)}`);
  } catch (e) {
    if (e instanceof ApiError && (e.status === 404 || e.status === 403)) return dropPanel(id);
    return failed(e);
  }
  const q = (s) => entry.panel.querySelector(s);
  const name = [record.user_data?.firstName, record.user_data?.lastName].filter(Boolean).join(' ');
  const who = record.chat?.nickname || name || record.customer_number;
  entry.tab.querySelector('.name').textContent = who;
  entry.tab.querySelector('.state').textContent = stateName(record._callback_state);
  q('.customer-name').textContent = who;
  q('.customer-state').textContent = `${record.scenario} · ${stateName(record._callback_state)}`;
  q('.avatar').textContent = (who.trim()[0] || '?').toUpperCase();

  const facts = q('.facts');
  facts.replaceChildren();
  const fact = (label, value) => {
    const dt = document.createElement('dt');
    dt.textContent = label;
    const dd = document.createElement('dd');
    dd.textContent = value;
    dd.dir = 'auto';
    facts.append(dt, dd);
  };
  fact(t('agent.number', 'Number'), record.customer_number);
  fact(t('agent.scenario', 'Scenario'), record.scenario);
  for (const [k, v] of Object.entries(record.user_data || {})) fact(k, v);

  const history = q('.history');
  history.replaceChildren();
  for (const h of record.history || []) {
    const li = document.createElement('li');
    const time = document.createElement('time');
    time.dateTime = h.at;
    time.textContent = new Intl.DateTimeFormat(language(), { timeStyle: 'medium' }).format(new Date(h.at));
    li.append(time, document.createTextNode(`${h.event.replace(/_/g, ' ')} (${h.by || '—'})`));
    history.append(li);
  }

  for (const row of record.chat?.transcript || []) addRow(id, row);
  q('.preview').hidden = !(record.preview_pending && record.agent === me.id);
  if (record._callback_state === 'COMPLETED') ended(id);
  const box = q('.composer textarea');
  const open = Boolean(record.chat) && !entry.ended;
  box.disabled = !open;
  q('.composer button').disabled = !open;
  box.placeholder = open
    ? t('chat.placeholder', 'Write a message…')
    : t('agent.noChatYet', 'The chat opens when the customer joins');
}

/// A GMS state as people say it.
export function stateName(state) {
  const names = {
    SCHEDULED: t('state.SCHEDULED', 'Scheduled'),
    QUEUED: t('state.QUEUED', 'Waiting'),
    ROUTING: t('state.ROUTING', 'Reserved for you'),
    PROCESSING: t('state.PROCESSING', 'In progress'),
    COMPLETED: t('state.COMPLETED', 'Completed'),
  };
  return names[state] || state;
}

function addRow(id, row) {
  const entry = panels.get(id);
  if (!entry || entry.rows.has(row.index)) return;
  entry.rows.add(row.index);
  const li = document.createElement('li');
  li.dataset.index = row.index;
  const kind = row.kind || row.type;
  const party = row.party || row.from;
  if (kind === 'Message.Text') {
    const mine = party === 'AGENT';
    li.className = `msg ${mine ? 'mine' : 'theirs'}`;
    const meta = document.createElement('span');
    meta.className = 'meta';
    meta.textContent = mine ? t('chat.you', 'You') : row.nickname;
    const text = document.createElement('span');
    text.dir = 'auto';
    text.textContent = row.text;
    li.append(meta, text);
  } else {
    li.className = 'msg notice';
    const who = party === 'AGENT' ? t('chat.you', 'You') : row.nickname;
    li.textContent =
      kind === 'Notice.Joined'
        ? t('chat.joined', '{name} joined the chat', { name: who })
        : t('chat.left', '{name} left the chat', { name: who });
  }
  const list = entry.panel.querySelector('.transcript');
  const after = [...list.children].find((other) => Number(other.dataset.index) > row.index);
  list.insertBefore(li, after || null);
  list.scrollTop = list.scrollHeight;
}

function addNote(id, text) {
  const entry = panels.get(id);
  if (!entry) return;
  const li = document.createElement('li');
  li.className = 'msg notice';
  li.dataset.index = Number.MAX_SAFE_INTEGER;
  li.textContent = text;
  entry.panel.querySelector('.transcript').append(li);
}

async function send(event, id) {
  event.preventDefault();
  const box = panels.get(id).panel.querySelector('.composer textarea');
  const text = box.value.trim();
  if (!text) return;
  box.value = '';
  stopTyping(id);
  try {
    await api.post(`/api/v1/services/${enc(id)}/chat`, { text });
    await loadService(id);
  } catch (e) {
    box.value = text;
    failed(e);
  }
  box.focus();
}

function typing(id) {
  const entry = panels.get(id);
  if (entry.panel.querySelector('.composer textarea').disabled) return;
  if (!entry.typingSent) {
    entry.typingSent = true;
    api.post(`/api/v1/services/${enc(id)}/chat/typing`, { typing: true }).catch(() => {});
  }
  clearTimeout(entry.typingTimer);
  entry.typingTimer = setTimeout(() => stopTyping(id), 3000);
}

function stopTyping(id) {
  const entry = panels.get(id);
  if (!entry) return;
  clearTimeout(entry.typingTimer);
  if (!entry.typingSent) return;
  entry.typingSent = false;
  api.post(`/api/v1/services/${enc(id)}/chat/typing`, { typing: false }).catch(() => {});
}

function theirTyping(id, started, nickname) {
  const entry = panels.get(id);
  if (!entry) return;
  const line = entry.panel.querySelector('.typing');
  clearTimeout(entry.theirTimer);
  line.textContent = started ? t('chat.typing', '{name} is typing…', { name: nickname }) : '';
  if (started) entry.theirTimer = setTimeout(() => (line.textContent = ''), 15000);
}

async function notify(event, id) {
  event.preventDefault();
  const input = event.target.elements.display;
  const text = input.value.trim();
  if (!text) return;
  try {
    await api.post(`/genesys/1/service/${enc(id)}/internal-notification`, form({ _display_message: text }));
    input.value = '';
    addNote(id, t('agent.notified', 'Sent to the customer: {text}', { text }));
  } catch (e) {
    failed(e);
  }
}

/// The customer left: the service is over. Its panel stays, read-only, with
/// a button to close it.
function ended(id) {
  const entry = panels.get(id);
  if (!entry || entry.ended) return;
  entry.ended = true;
  const q = (s) => entry.panel.querySelector(s);
  q('.composer textarea').disabled = true;
  q('.composer button').disabled = true;
  q('.notify').hidden = true;
  q('.video').hidden = true;
  q('.complete').textContent = t('agent.close', 'Close');
  entry.tab.querySelector('.state').textContent = t('state.COMPLETED', 'Completed');
  q('.customer-state').textContent = t('agent.customerLeft', 'The customer left; the service is complete.');
}

/// Calls the customer from the chat: the room opens in the panel.
async function startVideo(id) {
  let room;
  try {
    room = await api.post(`/api/v1/services/${encodeURIComponent(id)}/video`, {});
  } catch (e) {
    return failed(e);
  }
  showRoom(id, room._room_code, room._room_token);
}

/// callbackd's room page for the agent's side (for every provider: a
/// meeting service's room shows its link there).
function showRoom(id, code, token) {
  const entry = panels.get(id);
  if (!entry || !code || !token) return;
  const frame = entry.panel.querySelector('.video-frame iframe');
  const src = `/room/${encodeURIComponent(code)}?token=${encodeURIComponent(token)}`;
  if (!frame.src.endsWith(src)) frame.src = src;
  entry.panel.querySelector('.video-frame').hidden = false;
}

async function answerPreview(id, answer) {
  try {
    await api.post(`/api/v1/services/${enc(id)}/${answer}`, me.key ? {} : { agent_id: me.id });
  } catch (e) {
    failed(e);
  }
  refresh();
}

/// Whether the service's latest video room is live (not ended).
async function roomLive(id) {
  try {
    const record = await api.get(`/api/v1/services/${enc(id)}`);
    const last = record.video?.rooms?.at(-1);
    return Boolean(last && !last.ended_at);
  } catch {
    return false;
  }
}

async function complete(id) {
  let force = false;
  if (await roomLive(id)) {
    // A live video room: only after the agent says so.
    const dialog = $('force-dialog');
    const choice = await ask(dialog);
    if (choice !== 'force') return;
    force = true;
  }
  try {
    await api.post(`/api/v1/services/${enc(id)}/complete${force ? '?force=true' : ''}`, {});
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 409 && /room/i.test(e.body?.message || ''))) return failed(e);
    // The room went live meanwhile: ask, as above.
    const dialog = $('force-dialog');
    const choice = await ask(dialog);
    if (choice !== 'force') return;
    try {
      await api.post(`/api/v1/services/${enc(id)}/complete?force=true`, {});
    } catch (e2) {
      return failed(e2);
    }
  }
  showError('');
  refresh();
}

// ---------------------------------------------------------------- live

function listen() {
  push?.close();
  push = connect(
    { agent_id: me.id },
    { onMessage, onOpen: refresh, credential: me.key || null },
  );
}

function onMessage(frame) {
  const tag = frame.tag || frame.data?.tag || '';
  const data = frame.data || {};
  let body = data.message ?? data;
  if (typeof body === 'string') {
    try {
      body = JSON.parse(body);
    } catch {
      body = {};
    }
  }
  const id = body._id || tag.split('.').pop();
  if (tag.startsWith('agent.offer.') || tag.startsWith('agent.reserved.')) {
    // Reserved for this agent, or offered: one badge and one sound a service.
    if (!offered.has(id)) {
      offered.add(id);
      offers += 1;
      renderBadge();
      ding();
    }
    refresh();
  } else if (tag.startsWith('agent.chat.typing.')) {
    theirTyping(id, body.type === 'Notice.TypingStarted', body.nickname);
  } else if (tag.startsWith('agent.chat.')) {
    if (body.type === 'Message.Text') theirTyping(id, false);
    if (body.index != null) addRow(id, body);
    if (body.type === 'Notice.Joined' || body.index == null) loadService(id);
    if (body.type === 'Notice.Left' && body.from === 'CLIENT') ended(id);
  } else if (tag.startsWith('agent.video.') && !tag.startsWith('agent.video.signal.')) {
    // The customer called from the chat: the room, ringing, in the panel.
    if (body._event === 'ringing' && body._ringing === 'agent') showRoom(id, body._room_code, body._room_token);
  } else if (tag.startsWith('agent.message.')) {
    addNote(id, t('agent.fromDevice', 'From the customer\'s device: {text}', { text: body._display_message || '' }));
  } else {
    refresh();
  }
}

function renderBadge() {
  $('offers').textContent = String(offers);
  $('offers').hidden = offers === 0;
}

/// Two short tones: a new offer.
function ding() {
  if (!sound || sound.state === 'closed') return;
  const now = sound.currentTime;
  for (const [at, freq] of [[0, 880], [0.18, 1175]]) {
    const osc = sound.createOscillator();
    const gain = sound.createGain();
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0.0001, now + at);
    gain.gain.exponentialRampToValueAtTime(0.2, now + at + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, now + at + 0.16);
    osc.connect(gain).connect(sound.destination);
    osc.start(now + at);
    osc.stop(now + at + 0.17);
  }
}

// ---------------------------------------------------------------- start

async function start() {
  await setLanguage(pickLanguage());
  $('lang').value = language();
  $('lang').addEventListener('change', async (e) => {
    await setLanguage(e.target.value);
    // Rows are written in the language of the moment: write them again.
    for (const entry of panels.values()) {
      entry.rows.clear();
      entry.panel.querySelector('.transcript').replaceChildren();
    }
    refresh();
  });
  $('sign-in-form').addEventListener('submit', signIn);
  $('sign-out').addEventListener('click', signOut);
  $('readiness').addEventListener('click', toggleReady);
  if (me) enter();
  else $('sign-in').hidden = false;
}

start();
