// The supervisor's board (/supervisor): live queues (waiting, oldest wait,
// estimated wait, agents ready and busy), the agents (set one not ready),
// the services with filters and pages, a service's timeline, cancelling
// one or many, and the CSV export. Live through the supervisors' channel of
// the plain WebSocket: each change of a service redraws what it touches.

import { api, fetchWith, useCredential } from './api.js';
import { connect } from './push.js';
import { $, ask, failed, notice, showError, stored } from './ui.js';
import { pickLanguage, setLanguage, language, t, duration, number } from './i18n.js';

const kept = stored('callbackd:supervisor');
const PAGE = 20;
let me = kept.load(); // {key}
let push = null;
let page = 1;
let total = 0;
let rows = [];
const selected = new Set();
let redraw = null;
let lastDraw = 0;
let lastChart = 0;
const REDRAW_EVERY = 1500;
const CHART_EVERY = 30000;
let timelineOf = null;

// ---------------------------------------------------------------- sign in

async function signIn(event) {
  event.preventDefault();
  showError('');
  const key = new FormData($('sign-in-form')).get('key') || null;
  useCredential(key);
  try {
    await api.get('/api/v1/agents');
  } catch (e) {
    useCredential(null);
    return failed(e);
  }
  me = { key };
  kept.save(me);
  enter();
}

function signOut() {
  push?.close();
  me = null;
  kept.save(null);
  useCredential(null);
  $('board').hidden = true;
  $('sign-out').hidden = true;
  $('sign-in').hidden = false;
}

async function enter() {
  useCredential(me.key);
  $('sign-in').hidden = true;
  $('board').hidden = false;
  $('sign-out').hidden = false;
  await fillFilters();
  listen();
}

// ---------------------------------------------------------------- live

function listen() {
  push?.close();
  push = connect(
    { supervisor: 'true' },
    {
      credential: me.key,
      onOpen() {
        $('live').textContent = t('sup.live', '● Live');
        $('live').classList.remove('off');
        refreshAll(true);
      },
      onClose() {
        $('live').textContent = t('sup.offline', 'Reconnecting…');
        $('live').classList.add('off');
      },
      onMessage(frame) {
        if (!String(frame.tag || '').startsWith('service.changed.')) return;
        const id = frame.data?._id;
        if (id && id === timelineOf) showTimeline(id);
        // Changes come in bursts: at most one redraw every 1.5 s, the last
        // change of a burst always drawn.
        if (redraw) return;
        const wait = Math.max(0, lastDraw + REDRAW_EVERY - Date.now());
        redraw = setTimeout(() => {
          redraw = null;
          refreshAll();
        }, wait);
      },
    },
  );
}

/// Redraws the board; the chart and the bookings (which read more) at most
/// every 30 s unless `full`.
async function refreshAll(full = false) {
  lastDraw = Date.now();
  const parts = [drawQueues(), drawServices()];
  if (full || Date.now() - lastChart > CHART_EVERY) {
    lastChart = Date.now();
    parts.push(drawChart(), drawBookings());
  }
  try {
    await Promise.all(parts);
  } catch (e) {
    failed(e);
  }
}

// ---------------------------------------------------------------- the chart

async function drawChart() {
  const { hours } = await api.get('/api/v1/stats/hours?hours=12');
  const hourFmt = new Intl.DateTimeFormat(language(), { hour: 'numeric' });
  const most = Math.max(1, ...hours.map((h) => h.created));
  const longest = Math.max(1, ...hours.map((h) => h.average_wait_seconds || 0));
  // Drawn at the box's own width: text keeps its size on any screen.
  const W = Math.max(320, $('chart').clientWidth || 720);
  const H = 160;
  const pad = 28;
  const step = (W - pad * 2) / hours.length;
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H + 24}`);
  svg.setAttribute('role', 'img');
  const total = hours.reduce((n, h) => n + h.created, 0);
  svg.setAttribute(
    'aria-label',
    t('sup.chartSummary', '{total} services in the last {n} hours; the table below has each hour.', {
      total: number(total),
      n: number(hours.length),
    }),
  );
  const el = (name, attrs) => {
    const e = document.createElementNS(ns, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    svg.append(e);
    return e;
  };
  el('line', { x1: pad, y1: H, x2: W - pad, y2: H, class: 'axis' });
  const points = [];
  hours.forEach((h, i) => {
    const x = pad + i * step;
    const bh = (h.created / most) * (H - 20);
    el('rect', { x: x + step * 0.15, y: H - bh, width: step * 0.7, height: bh, class: 'bar' });
    const label = el('text', { x: x + step / 2, y: H + 16, 'text-anchor': 'middle' });
    label.textContent = hourFmt.format(new Date(h.start));
    if (h.average_wait_seconds != null) {
      points.push([x + step / 2, H - (h.average_wait_seconds / longest) * (H - 20)]);
    }
  });
  if (points.length > 1) el('polyline', { points: points.map((p) => p.join(',')).join(' '), class: 'wait' });
  for (const [x, y] of points) el('circle', { cx: x, cy: y, r: 3.5, class: 'dot' });
  const legend = document.createElement('div');
  legend.className = 'legend';
  for (const [cls, text] of [
    ['bar', t('sup.created', 'Created')],
    ['wait', t('sup.avgWait', 'Average wait')],
  ]) {
    const item = document.createElement('span');
    const swatch = document.createElement('span');
    swatch.className = 'swatch';
    swatch.style.background = cls === 'bar' ? 'var(--brand)' : 'var(--warn)';
    item.append(swatch, document.createTextNode(text));
    legend.append(item);
  }
  $('chart').replaceChildren(svg, legend);
  const body = $('hours').tBodies[0];
  body.replaceChildren();
  for (const h of hours) {
    const tr = document.createElement('tr');
    cells(tr, [
      hourFmt.format(new Date(h.start)),
      number(h.created),
      number(h.answered),
      number(h.completed),
      h.average_wait_seconds == null ? '–' : duration(h.average_wait_seconds),
    ]);
    tr.firstChild.setAttribute('scope', 'row');
    body.append(tr);
  }
}

// ---------------------------------------------------------------- bookings

let scenarios = [];

async function drawBookings() {
  const booked = scenarios.filter((s) => s._schedule);
  $('bookings-card').hidden = booked.length === 0;
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  const dayFmt = new Intl.DateTimeFormat(language(), { weekday: 'short', day: 'numeric', month: 'short', timeZone: 'UTC' });
  const parts = [];
  for (const s of booked) {
    const q = new URLSearchParams({ start: new Date().toISOString(), 'number-of-days': '7', timezone: zone, 'report-busy': 'true' });
    const { slots = [] } = await api.get(`/genesys/2/service/callback/${encodeURIComponent(s.name)}/availability?${q}`);
    const days = new Map();
    for (const slot of slots) {
      const day = slot.localTime.slice(0, 10);
      const d = days.get(day) || { used: 0, left: 0 };
      d.used += slot.total - slot.capacity;
      d.left += slot.capacity;
      days.set(day, d);
    }
    const section = document.createElement('div');
    const title = document.createElement('h3');
    title.textContent = s._schedule.title ? `${s.name} · ${s._schedule.title}` : s.name;
    const wrap = document.createElement('div');
    wrap.className = 'table-wrap';
    // Scrolls sideways on a phone: reachable by keyboard, and named.
    wrap.tabIndex = 0;
    wrap.setAttribute('role', 'region');
    wrap.setAttribute('aria-label', title.textContent);
    const table = document.createElement('table');
    const head = table.createTHead().insertRow();
    for (const text of [t('sup.day', 'Day'), t('sup.seatsUsed', 'Seats booked'), t('sup.seatsLeft', 'Seats left')]) {
      const th = document.createElement('th');
      th.scope = 'col';
      th.textContent = text;
      head.append(th);
    }
    table.createTBody();
    for (const [day, d] of days) {
      const tr = document.createElement('tr');
      cells(tr, [dayFmt.format(new Date(`${day}T12:00:00Z`)), number(d.used), number(d.left)]);
      tr.firstChild.setAttribute('scope', 'row');
      const meter = document.createElement('span');
      meter.className = 'meter';
      meter.setAttribute('aria-hidden', 'true');
      const fill = document.createElement('span');
      fill.style.inlineSize = `${Math.round((100 * d.used) / Math.max(1, d.used + d.left))}%`;
      meter.append(fill);
      tr.children[1].append(meter);
      table.tBodies[0].append(tr);
    }
    if (!days.size) {
      const p = document.createElement('p');
      p.className = 'muted';
      p.textContent = t('sup.noSlots', 'No open hours in the next 7 days.');
      section.append(title, p);
    } else {
      wrap.append(table);
      section.append(title, wrap);
    }
    parts.push(section);
  }
  $('bookings').replaceChildren(...parts);
}

// ---------------------------------------------------------------- queues and agents

async function drawQueues() {
  const [marks, ewt, agents] = await Promise.all([
    api.get('/genesys/1/admin/callback/watermarks'),
    api.get('/genesys/1/service/ewt-for-vq'),
    api.get('/api/v1/agents'),
  ]);
  const list = Array.isArray(agents) ? agents : agents.agents || [];
  const names = [...new Set([...Object.keys(marks.queues || {}), ...Object.keys(ewt || {})])].sort();
  const body = $('queues').tBodies[0];
  body.replaceChildren();
  for (const q of names) {
    const m = marks.queues?.[q] || {};
    const e = ewt?.[q] || {};
    const serving = list.filter((a) => (a.queues || []).includes(q));
    const busy = serving.filter((a) => (a.services?.length ?? a.load ?? 0) > 0).length;
    const tr = document.createElement('tr');
    cells(tr, [
      q,
      number(m.QUEUED ?? e._total_waiting ?? 0),
      m.oldest_waiting_seconds == null ? '–' : duration(m.oldest_waiting_seconds),
      e.ewt == null || e.ewt < 0 ? '–' : duration(e.ewt),
      number(e._agents_ready ?? serving.filter((a) => a.state === 'ready').length),
      number(busy),
    ]);
    tr.firstChild.setAttribute('scope', 'row');
    body.append(tr);
  }
  drawAgents(list);
}

function drawAgents(list) {
  const body = $('agents').tBodies[0];
  body.replaceChildren();
  for (const a of list) {
    const tr = document.createElement('tr');
    const load = a.services?.length ?? a.load ?? 0;
    const ready = a.state === 'ready';
    cells(tr, [a.name ? `${a.name} (${a.id})` : a.id, '', `${number(load)} / ${number(a.max_concurrent)}`, (a.queues || []).join(', '), '']);
    const pill = document.createElement('span');
    pill.className = `pill ${ready ? 'ready' : ''}`;
    pill.textContent = ready ? t('agent.ready', 'Ready') : t('agent.notReady', 'Not ready');
    tr.children[1].append(pill);
    if (ready) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'secondary small';
      b.textContent = t('sup.setNotReady', 'Set not ready');
      b.setAttribute('aria-label', t('sup.setNotReadyFor', 'Set not ready: {name}', { name: a.name || a.id }));
      b.addEventListener('click', async () => {
        try {
          await api.post(`/api/v1/agents/${encodeURIComponent(a.id)}/not-ready`);
          await drawQueues();
        } catch (e) {
          failed(e);
        }
      });
      tr.children[4].append(b);
    }
    body.append(tr);
  }
}

function cells(tr, values) {
  values.forEach((v, i) => {
    const td = document.createElement(i === 0 ? 'th' : 'td');
    td.textContent = v;
    if (i > 0 && /^[\d–]/.test(String(v))) td.className = 'num';
    tr.append(td);
  });
}

// ---------------------------------------------------------------- services

async function fillFilters() {
  try {
    scenarios = await api.get('/api/v1/scenarios');
    const byName = $('filters').elements.service_name;
    const byQueue = $('filters').elements.target;
    const queues = new Set();
    for (const s of scenarios) {
      byName.append(new Option(s.name, s.name));
      if (s._target?.queue) queues.add(s._target.queue);
    }
    for (const q of [...queues].sort()) byQueue.append(new Option(q, q));
  } catch (e) {
    failed(e);
  }
}

function filterQuery() {
  const f = $('filters').elements;
  const q = new URLSearchParams();
  if (f.service_name.value) q.set('service_name', f.service_name.value);
  if (f.target.value) q.set('target', f.target.value);
  if (f.states.value) q.set('states', f.states.value);
  if (f.from.value) q.set('start_time', new Date(f.from.value).toISOString());
  if (f.to.value) q.set('end_time', new Date(f.to.value).toISOString());
  return q;
}

async function drawServices() {
  const q = filterQuery();
  q.set('max', String(PAGE));
  q.set('page', String(page));
  const { headers, body } = await fetchWith(`/genesys/1/admin/callback/queues?${q}`);
  total = Number(headers.get('x-total-count') || 0);
  rows = Object.values(body).flat();
  const tbody = $('services').tBodies[0];
  tbody.replaceChildren();
  const when = new Intl.DateTimeFormat(language(), { dateStyle: 'medium', timeStyle: 'short' });
  for (const s of rows) {
    const tr = document.createElement('tr');
    const check = document.createElement('input');
    check.type = 'checkbox';
    check.checked = selected.has(s._id);
    check.disabled = s._callback_state === 'COMPLETED';
    check.setAttribute('aria-label', t('sup.select', 'Select {number}', { number: s._customer_number }));
    check.addEventListener('change', () => {
      if (check.checked) selected.add(s._id);
      else selected.delete(s._id);
      drawSelection();
    });
    const td0 = document.createElement('td');
    td0.append(check);
    const open = document.createElement('button');
    open.type = 'button';
    open.className = 'service-link';
    open.textContent = s._customer_number;
    open.setAttribute('aria-label', t('sup.timelineOf', 'Timeline of {number}', { number: s._customer_number }));
    open.addEventListener('click', () => showTimeline(s._id));
    const td1 = document.createElement('td');
    td1.append(open);
    tr.append(td0, td1);
    for (const v of [s._service_name, s._queue, '', when.format(new Date(s._desired_time)), s._agent_id || '–']) {
      const td = document.createElement('td');
      td.textContent = v;
      tr.append(td);
    }
    const pill = document.createElement('span');
    pill.className = `pill ${s._callback_state}`;
    pill.textContent = s._callback_state;
    tr.children[4].append(pill);
    tbody.append(tr);
  }
  if (!rows.length) {
    // Say so, rather than show an empty table.
    const tr = document.createElement('tr');
    const td = document.createElement('td');
    td.colSpan = 7;
    td.className = 'muted';
    td.textContent = t('sup.noServices', 'No service matches these filters.');
    tr.append(td);
    tbody.append(tr);
  }
  const pages = Math.max(1, Math.ceil(total / PAGE));
  $('page-info').textContent = t('sup.pageInfo', 'Page {page} of {pages} · {total} services', {
    page: number(page),
    pages: number(pages),
    total: number(total),
  });
  $('prev').disabled = page <= 1;
  $('next').disabled = page >= pages;
  drawSelection();
}

function drawSelection() {
  $('selected-count').textContent = selected.size ? t('sup.selected', '{n} selected', { n: number(selected.size) }) : '';
  $('cancel-selected').disabled = selected.size === 0;
  const open = rows.filter((s) => s._callback_state !== 'COMPLETED');
  $('select-all').checked = open.length > 0 && open.every((s) => selected.has(s._id));
}

async function showTimeline(id) {
  timelineOf = id;
  try {
    const record = await api.get(`/api/v1/services/${encodeURIComponent(id)}`);
    $('timeline-card').hidden = false;
    $('timeline-of').textContent = `${record.customer_number} · ${record.scenario} · ${record._callback_state}${record._callback_reason ? ` (${record._callback_reason})` : ''}`;
    const list = $('timeline');
    list.replaceChildren();
    const fmt = new Intl.DateTimeFormat(language(), { dateStyle: 'short', timeStyle: 'medium' });
    for (const h of record.history || []) {
      const li = document.createElement('li');
      const time = document.createElement('time');
      time.dateTime = h.at;
      time.textContent = fmt.format(new Date(h.at));
      const reason = h.reason ? `, ${h.reason}` : '';
      li.append(time, document.createTextNode(`${h.event.replace(/_/g, ' ')} → ${h.to}${reason} (${h.by || '—'})`));
      list.append(li);
    }
    const survey = record.video?.survey;
    if (survey) {
      const li = document.createElement('li');
      li.textContent = t('sup.survey', 'Survey: {score}', { score: survey.score }) + (survey.comment ? ` — ${survey.comment}` : '');
      list.append(li);
    }
  } catch (e) {
    failed(e);
  }
}

async function cancelSelected() {
  const dialog = $('cancel-dialog');
  $('cancel-text').textContent = t('sup.cancelText', '{n} services will be cancelled; their customers are told.', { n: number(selected.size) });
  $('cancel-reason').value = '';
  const choice = await ask(dialog);
  if (choice !== 'cancel') return;
  const body = { ids: [...selected] };
  const reason = $('cancel-reason').value.trim();
  if (reason) body.reason = reason;
  try {
    const answer = await api.post('/genesys/1/admin/callback/cancel', body);
    selected.clear();
    const not = answer.not_cancelled || [];
    notice(
      t('sup.cancelled', '{n} cancelled.', { n: number(answer.cancelled.length) }) +
        (not.length ? ` ${t('sup.notCancelled', '{n} not cancelled: {why}', { n: number(not.length), why: not.map((x) => x.message).join('; ') })}` : ''),
    );
    await refreshAll(true);
  } catch (e) {
    failed(e);
  }
}

async function exportCsv() {
  try {
    const { body } = await fetchWith(`/genesys/1/admin/callback/export?${filterQuery()}`, 'blob');
    const a = document.createElement('a');
    a.href = URL.createObjectURL(body);
    a.download = 'callbacks.csv';
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  } catch (e) {
    failed(e);
  }
}

// ---------------------------------------------------------------- start

async function start() {
  await setLanguage(pickLanguage());
  $('lang').value = language();
  $('lang').addEventListener('change', async (e) => {
    await setLanguage(e.target.value);
    if (me) refreshAll(true);
  });
  $('sign-in-form').addEventListener('submit', signIn);
  $('sign-out').addEventListener('click', signOut);
  $('filters').addEventListener('submit', (e) => {
    e.preventDefault();
    page = 1;
    showError('');
    drawServices().catch(failed);
  });
  $('prev').addEventListener('click', () => {
    page = Math.max(1, page - 1);
    drawServices().catch(failed);
  });
  $('next').addEventListener('click', () => {
    page += 1;
    drawServices().catch(failed);
  });
  $('select-all').addEventListener('change', (e) => {
    for (const s of rows) {
      if (s._callback_state === 'COMPLETED') continue;
      if (e.target.checked) selected.add(s._id);
      else selected.delete(s._id);
    }
    drawServices().catch(failed);
  });
  $('cancel-selected').addEventListener('click', cancelSelected);
  $('export').addEventListener('click', exportCsv);
  if (me) return enter();
  // A server running open asks for no key: try without one first.
  try {
    await api.get('/api/v1/agents');
    me = { key: null };
    return enter();
  } catch {
    $('sign-in').hidden = false;
  }
}

start();
