// The waiting room of a booked video appointment (/video/{service_id}, the
// join link of its e-mail): before the time, the scenario's image or video
// loop, its message, the time and what is left of it; when the advisor
// takes the appointment and a room opens, the page moves to the room by
// itself (the service's video events, over the waiting room's socket).

import { api, ApiError } from './api.js';
import { connect } from './push.js';
import { $, showError } from './ui.js';
import { pickLanguage, setLanguage, language, t } from './i18n.js';
import { span } from './slots.js';

const id = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() || '');
let view = null;
let tick = null;
let recheck = null;

/// Goes to the room's page (callbackd's own, for every provider: a
/// meeting service's room shows its link there) when there is a room.
function toRoom(code, token) {
  if (!code || !token) return false;
  location.replace(`/room/${encodeURIComponent(code)}?token=${encodeURIComponent(token)}`);
  return true;
}

async function load() {
  try {
    view = await api.get(`/genesys/1/service/${encodeURIComponent(id)}/ixn/video`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      return showError(t('wait.roomNotFound', 'This link does not open an appointment. Please check it, or use the newest e-mail we sent.'));
    }
    return showError(t('error.network', 'We could not reach the service. Please try again.'));
  }
  if (view.status !== 'waiting' && view.status !== 'routing' && toRoom(view._room_code, view._room_token)) return;
  if (view.status === 'ended' || view._callback_state === 'COMPLETED') {
    $('waiting').hidden = true;
    $('over').hidden = false;
    return;
  }
  render();
}

function render() {
  $('waiting').hidden = false;
  const room = view._waiting_room || {};
  const media = $('media');
  if (!media.firstChild) {
    if (room.video) {
      const v = document.createElement('video');
      v.src = room.video;
      v.autoplay = true;
      v.loop = true;
      v.muted = true;
      v.playsInline = true;
      v.setAttribute('aria-hidden', 'true');
      media.append(v);
    } else if (room.image) {
      const img = document.createElement('img');
      img.src = room.image;
      img.alt = '';
      media.append(img);
    }
  }
  $('message').textContent = room.message || t('wait.roomMessage', 'Your advisor will be with you at your appointment time.');
  if (view._desired_time) $('when').textContent = span(view._desired_time);
  clearInterval(tick);
  clearTimeout(recheck);
  if (view.status === 'waiting') {
    const at = Date.now() + (view._seconds_left || 0) * 1000;
    const draw = () => {
      const left = Math.max(0, Math.round((at - Date.now()) / 1000));
      $('countdown').textContent = clockOf(left);
      // Screen readers hear it once a minute, not every second.
      if (left % 60 === 0 || !$('countdown-live').textContent) {
        $('countdown-live').textContent = t('wait.minutesLeft', '{n} minutes left', { n: Math.ceil(left / 60) });
      }
    };
    draw();
    tick = setInterval(draw, 1000);
    // At the time, one look: the room may be open already.
    recheck = setTimeout(load, (view._seconds_left || 0) * 1000 + 500);
  } else {
    $('countdown').textContent = t('wait.anyMoment', 'Any moment now');
    $('countdown-live').textContent = $('countdown').textContent;
  }
}

function clockOf(seconds) {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  const nf = new Intl.NumberFormat(language(), { minimumIntegerDigits: 2 });
  return `${h ? `${nf.format(h)}:` : ''}${nf.format(m)}:${nf.format(s)}`;
}

async function start() {
  await setLanguage(pickLanguage());
  $('lang').value = language();
  $('lang').addEventListener('change', async (e) => {
    await setLanguage(e.target.value);
    if (view) render();
  });
  await load();
  if (!view) return;
  connect(
    { service: id },
    {
      // The socket says what happened; the view says where the room is.
      onMessage: () => load(),
      // After a reconnect, look again: something may have happened meanwhile.
      onOpen: () => view && load(),
    },
  );
}

start();
