// The customer's booking (/booking/{id}?token=…), reached by the link of
// the confirmation, its e-mail and invite: see it, move it to another open
// slot, add it to a calendar, or cancel it.

import { api, ApiError } from './api.js';
import { $, ask, failed as failedCall, notice, showError } from './ui.js';
import { pickLanguage, setLanguage, language, t } from './i18n.js';
import { calendar, span, viewerZone } from './slots.js';

const id = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() || '');
const token = new URLSearchParams(location.search).get('token') || '';
const base = `/api/v1/bookings/${encodeURIComponent(id)}`;
const withToken = (path) => `${path}?token=${encodeURIComponent(token)}`;
let booking = null;
let chosen = null;

function failed(e) {
  if (e instanceof ApiError && (e.status === 404 || (e.status === 400 && !token))) {
    return showError(t('manage.notFound', 'This link does not open a booking. Please check it, or use the newest e-mail we sent.'));
  }
  return failedCall(e);
}

function show(which) {
  $('view').hidden = which !== 'view';
  $('moving').hidden = which !== 'moving';
  window.scrollTo(0, 0);
}

async function load() {
  try {
    booking = await api.get(withToken(base));
  } catch (e) {
    show(null);
    return failed(e);
  }
  render();
  show('view');
}

function render() {
  $('what').textContent = booking.title || booking._service_name;
  $('when').textContent = span(booking._desired_time, booking._slot_end);
  const states = {
    SCHEDULED: t('manage.scheduled', 'Booked'),
    COMPLETED: booking._callback_reason === 'CANCELLED' ? t('manage.cancelled', 'Cancelled') : t('manage.done', 'Done'),
  };
  $('status').textContent = states[booking._callback_state] || t('manage.now', 'Under way');
  const join = $('join');
  join.textContent = booking._join_url || '';
  join.href = booking._join_url || '#';
  for (const row of document.querySelectorAll('.join-row')) row.hidden = !booking._join_url || booking._callback_state === 'COMPLETED';
  $('ics').href = withToken(`${base}/invite.ics`);
  $('move').hidden = !booking.changeable;
  $('cancel').hidden = !booking.changeable;
}

async function startMove() {
  showError('');
  chosen = null;
  $('move-confirm').disabled = true;
  $('move-chosen').hidden = true;
  $('zone').textContent = viewerZone();
  show('moving');
  $('moving-title').tabIndex = -1;
  $('moving-title').focus();
  try {
    await calendar($('calendar'), { name: booking._service_name }, {
      skip: booking._desired_time,
      onPick(slot) {
        chosen = slot;
        $('move-time').textContent = span(slot.utcTime, slot.endUtc);
        $('move-chosen').hidden = false;
        $('move-confirm').disabled = false;
      },
    });
  } catch (e) {
    failed(e);
  }
  $('calendar').setAttribute('aria-busy', 'false');
}

async function confirmMove() {
  if (!chosen) return;
  $('move-confirm').disabled = true;
  try {
    booking = await api.put(withToken(base), { _new_desired_time: chosen.utcTime });
    render();
    show('view');
    notice(t('manage.moved', 'Your booking has moved.'));
  } catch (e) {
    failed(e);
    $('move-confirm').disabled = false;
  }
}

async function cancel() {
  const dialog = $('cancel-dialog');
  const choice = await ask(dialog);
  if (choice !== 'cancel') return;
  try {
    booking = await api.del(withToken(base));
    render();
    notice(t('manage.cancelDone', 'Your booking is cancelled.'));
  } catch (e) {
    failed(e);
  }
}

async function start() {
  await setLanguage(pickLanguage());
  $('lang').value = language();
  $('lang').addEventListener('change', async (e) => {
    await setLanguage(e.target.value);
    if (booking) render();
  });
  $('move').addEventListener('click', startMove);
  $('move-back').addEventListener('click', () => show('view'));
  $('move-confirm').addEventListener('click', confirmMove);
  $('cancel').addEventListener('click', cancel);
  await load();
}

start();
