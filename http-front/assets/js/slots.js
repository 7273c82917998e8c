// The calendar of open slots the booking pages share: the days ahead in the
// viewer's time zone (a closed day greyed), and the chosen day's slots, open
// ones green, full ones greyed, the expected wait on hover. From GMS's v2
// availability with `report-busy`, so full slots are shown too.

import { api } from './api.js';
import { t, language, duration } from './i18n.js';

const DAYS = 14;

export function viewerZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}

/// Renders into `root`; `onPick(slot)` with `{utcTime, localTime}` when a
/// slot is chosen. `skip`: a slot start (ISO) not to offer (the booking's own).
export async function calendar(root, scenario, { onPick, skip } = {}) {
  const zone = viewerZone();
  const start = new Date();
  const query = new URLSearchParams({
    start: start.toISOString(),
    'number-of-days': String(DAYS),
    timezone: zone,
    'report-busy': 'true',
  });
  const [availability, wait] = await Promise.all([
    api.get(`/genesys/2/service/callback/${encodeURIComponent(scenario.name)}/availability?${query}`),
    expectedWait(scenario),
  ]);
  const byDay = new Map();
  for (const slot of availability.slots || []) {
    if (skip && Date.parse(slot.utcTime) === Date.parse(skip)) continue;
    const day = slot.localTime.slice(0, 10);
    if (!byDay.has(day)) byDay.set(day, []);
    byDay.get(day).push(slot);
  }
  const days = [];
  for (let i = 0; i < DAYS; i += 1) {
    const d = new Date(start.getTime() + i * 86400000);
    days.push(dayKey(d, zone));
  }
  const uniqueDays = [...new Set(days)];

  root.replaceChildren();
  const strip = el('div', 'day-strip');
  strip.setAttribute('role', 'group');
  strip.setAttribute('aria-label', t('book.days', 'Days'));
  const grid = el('div', 'slot-grid');
  grid.setAttribute('role', 'group');
  const note = el('p', 'muted slot-note');
  if (wait != null) {
    note.textContent = t('book.wait', 'Once your time comes, the expected wait is {wait}.', {
      wait: duration(wait).toLowerCase(),
    });
  }
  root.append(strip, grid, note);

  const showDay = (day) => {
    for (const b of strip.children) b.setAttribute('aria-pressed', String(b.dataset.day === day));
    grid.replaceChildren();
    grid.setAttribute('aria-label', t('book.timesOn', 'Times on {day}', { day: longDay(day, zone) }));
    for (const slot of byDay.get(day) || []) {
      const open = slot.capacity > 0;
      const b = el('button', `slot ${open ? 'open' : 'full'}`);
      b.type = 'button';
      const time = clock(slot.utcTime, zone);
      b.textContent = time;
      b.disabled = !open;
      b.dataset.utc = slot.utcTime;
      b.setAttribute('aria-label', open ? time : t('book.fullSlot', '{time}, full', { time }));
      if (open && wait != null) b.title = t('book.waitHint', 'Expected wait: {wait}', { wait: duration(wait) });
      b.addEventListener('click', () => {
        for (const other of grid.children) other.setAttribute('aria-pressed', 'false');
        b.setAttribute('aria-pressed', 'true');
        const minutes = availability.durationMin;
        const endUtc = minutes ? new Date(Date.parse(slot.utcTime) + minutes * 60000).toISOString() : null;
        onPick?.({ ...slot, endUtc });
      });
      grid.append(b);
    }
  };

  let first = null;
  for (const day of uniqueDays) {
    const slots = byDay.get(day) || [];
    const open = slots.filter((s) => s.capacity > 0).length;
    const b = el('button', `day ${open ? '' : 'closed'}`);
    b.type = 'button';
    b.dataset.day = day;
    const name = el('span', 'day-name');
    name.textContent = new Intl.DateTimeFormat(language(), { weekday: 'short', timeZone: 'UTC' }).format(utcNoon(day));
    const num = el('span', 'day-num');
    num.textContent = new Intl.DateTimeFormat(language(), { day: 'numeric', month: 'short', timeZone: 'UTC' }).format(utcNoon(day));
    const count = el('span', 'day-count');
    count.textContent = open
      ? t('book.openCount', '{n} open', { n: open })
      : slots.length
        ? t('book.full', 'Full')
        : t('book.closed', 'Closed');
    b.append(name, num, count);
    // The visible text is the name ("Mon 7 Dec 12 open"); the title says it in full.
    b.title = `${longDay(day, zone)}: ${count.textContent}`;
    b.disabled = !open;
    b.addEventListener('click', () => showDay(day));
    strip.append(b);
    if (open && !first) first = day;
  }
  if (first) showDay(first);
  else {
    const none = el('p', 'muted');
    none.textContent = t('book.none', 'There are no open times in the next two weeks.');
    grid.append(none);
  }
}

async function expectedWait(scenario) {
  const queue = scenario._target?.queue;
  if (!queue) return null;
  try {
    const answer = await api.get(`/genesys/1/service/ewt-for-vq?name=${encodeURIComponent(queue)}`);
    return typeof answer.ewt === 'number' && answer.ewt >= 0 ? answer.ewt : null;
  } catch {
    return null;
  }
}

function el(tag, className) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  return e;
}

function dayKey(date, zone) {
  // en-CA writes YYYY-MM-DD.
  return new Intl.DateTimeFormat('en-CA', { timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit' }).format(date);
}

function utcNoon(day) {
  return new Date(`${day}T12:00:00Z`);
}

function longDay(day, zone) {
  void zone;
  return new Intl.DateTimeFormat(language(), { weekday: 'long', day: 'numeric', month: 'long', timeZone: 'UTC' }).format(utcNoon(day));
}

export function clock(utc, zone = viewerZone()) {
  return new Intl.DateTimeFormat(language(), { hour: 'numeric', minute: '2-digit', timeZone: zone }).format(new Date(utc));
}

/// "Monday 7 December, 09:00–09:15 (Europe/London)" in the viewer's zone.
export function span(startUtc, endUtc, zone = viewerZone()) {
  const day = new Intl.DateTimeFormat(language(), { weekday: 'long', day: 'numeric', month: 'long', timeZone: zone }).format(new Date(startUtc));
  const end = endUtc ? `–${clock(endUtc, zone)}` : '';
  return `${day}, ${clock(startUtc, zone)}${end} (${zone})`;
}
