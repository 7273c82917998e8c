// The booking page (/book/{scenario}): pick an open slot in the viewer's
// time zone, give name, e-mail and phone, confirm. The confirmation shows
// the time, the link to join, an invite to add to a calendar, and the link
// to change or cancel (the same one the e-mail carries).

import './embed.js';
import { api, form, plausiblePhone, ApiError } from './api.js';
import { $, failed, showError } from './ui.js';
import { pickLanguage, setLanguage, language, t } from './i18n.js';
import { calendar, span, viewerZone } from './slots.js';

const name = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() || '');
let scenario = { name };
let chosen = null;
let booked = null;

function show(id) {
  for (const s of ['pick', 'details', 'done']) $(s).hidden = s !== id;
  window.scrollTo(0, 0);
  const h = $(id).querySelector('h1');
  h.tabIndex = -1;
  h.focus({ preventScroll: true });
}

async function loadCalendar() {
  $('zone').textContent = viewerZone();
  $('calendar').setAttribute('aria-busy', 'true');
  try {
    await calendar($('calendar'), scenario, {
      onPick(slot) {
        chosen = slot;
        $('chosen-time').textContent = span(slot.utcTime, slot.endUtc);
        showError('');
        show('details');
      },
    });
  } catch (e) {
    failed(e);
  }
  $('calendar').setAttribute('aria-busy', 'false');
}

async function confirm(event) {
  event.preventDefault();
  showError('');
  const formEl = $('details-form');
  const values = Object.fromEntries(new FormData(formEl));
  let invalid = null;
  for (const input of formEl.querySelectorAll('input')) {
    const bad = input.required && !String(values[input.name] || '').trim();
    input.setAttribute('aria-invalid', String(bad));
    if (bad && !invalid) invalid = input;
  }
  if (invalid) {
    showError(t('error.required', 'Please fill in the fields marked as required.'));
    invalid.focus();
    return;
  }
  const email = formEl.elements.email;
  const phone = formEl.elements._customer_number;
  for (const [input, ok, message] of [
    [email, email.checkValidity(), t('error.email', 'Please give an e-mail address such as name@example.com.')],
    [phone, plausiblePhone(phone.value), t('error.phone', 'Please give a phone number we can call, with its country code.')],
  ]) {
    if (!ok) {
      input.setAttribute('aria-invalid', 'true');
      showError(message);
      input.focus();
      return;
    }
  }
  const button = formEl.querySelector('button[type=submit]');
  button.disabled = true;
  try {
    booked = await api.post(
      `/genesys/1/service/callback/${encodeURIComponent(name)}`,
      form({ ...values, _desired_time: chosen.utcTime, _timezone: viewerZone() }),
    );
    renderDone();
    show('done');
  } catch (e) {
    failed(e);
    if (e instanceof ApiError && e.status === 409) {
      // Someone took the last seat meanwhile: choose again.
      show('pick');
      loadCalendar();
    }
  } finally {
    button.disabled = false;
  }
}

function renderDone() {
  $('done-time').textContent = span(booked._desired_time, booked._slot_end);
  const join = $('done-join');
  join.textContent = booked._join_url || '';
  join.href = booked._join_url || '#';
  const manage = new URL(booked._manage_url, location.href);
  $('done-manage').href = `${manage.pathname}${manage.search}`;
  $('done-ics').href = `/api/v1/bookings/${encodeURIComponent(booked._id)}/invite.ics${manage.search}`;
}

async function start() {
  await setLanguage(pickLanguage());
  $('lang').value = language();
  $('lang').addEventListener('change', async (e) => {
    await setLanguage(e.target.value);
    if (!$('pick').hidden) loadCalendar();
    if (chosen) $('chosen-time').textContent = span(chosen.utcTime, chosen.endUtc);
    if (booked) renderDone();
  });
  $('details-form').addEventListener('submit', confirm);
  $('change-time').addEventListener('click', () => show('pick'));
  try {
    const all = await api.get('/api/v1/scenarios');
    scenario = all.find((s) => s.name === name) || scenario;
  } catch {
    // The calendar still works; the title and wait are extras.
  }
  $('scenario-title').textContent = scenario._schedule?.title || '';
  $('scenario-sep').hidden = !scenario._schedule?.title;
  $('pick').hidden = false;
  await loadCalendar();
}

start();
