// An early visitor opens a booked video appointment's join link on a
// phone: the waiting room (the scenario's image and message, the time in
// the visitor's zone, what is left of it), which moves on to the room by
// itself once an advisor takes the appointment.
//
// node waiting.mjs <base url> [screenshot dir]

import { strict as assert } from 'node:assert';
import {
  main, newPage, apiClient, checkAccessibility, screenshot, step, PHONE, DESKTOP,
} from './lib.mjs';

const [base, shots] = process.argv.slice(2);
const api = apiClient(base);
const WAIT = { timeout: 15000 };

await main(async (browser) => {
  // The first open slot at least five minutes ahead.
  const from = new Date(Date.now() + 5 * 60000).toISOString();
  const open = await api.get(`/genesys/1/service/callback/video-booked/availability?start=${from}&max-time-slots=1`);
  const slot = Object.keys(open)[0];
  const booked = await api.create('video-booked', { _customer_number: '+971501234567', _desired_time: slot, name: 'Fatima' });
  const join = new URL(booked._join_url);
  assert.equal(join.pathname, `/video/${booked._id}`);

  const page = await newPage(browser, PHONE, 'waiting', [], { timezoneId: 'Asia/Dubai' });
  await page.goto(`${base}${join.pathname}?lang=en`);
  await page.getByRole('heading', { name: 'Welcome to the waiting room' }).waitFor(WAIT);
  await page.getByText('Your advisor will be with you at your appointment time.').waitFor(WAIT);
  await page.getByText(/Asia\/Dubai/).waitFor(WAIT);
  const first = await page.locator('#countdown').textContent();
  await page.waitForTimeout(1500);
  assert.notEqual(await page.locator('#countdown').textContent(), first, 'the time left runs');
  assert.equal(await page.locator('#media img').evaluate((img) => img.complete && img.naturalWidth > 0), true);
  await checkAccessibility(page, 'waiting room, phone');
  await screenshot(page, shots, 'waiting-room');
  step('the early visitor sees the waiting room with the time left');
  const wide = await newPage(browser, DESKTOP, 'waiting-desktop', [], { timezoneId: 'Asia/Dubai' });
  await wide.goto(`${base}${join.pathname}?lang=ar`);
  await wide.getByRole('heading', { name: 'مرحبًا بك في غرفة الانتظار' }).waitFor(WAIT);
  await checkAccessibility(wide, 'waiting room, desktop, rtl');
  await wide.goto(`${base}${join.pathname}?lang=en`);
  await wide.getByRole('heading', { name: 'Welcome to the waiting room' }).waitFor(WAIT);
  await checkAccessibility(wide, 'waiting room, desktop');

  // An advisor takes it (the service is in the queue already): the page moves on.
  await api.put('/api/v1/agents/omar', { name: 'Omar', queues: ['vbooked'], max_concurrent: 1 });
  await api.post('/api/v1/agents/omar/ready');
  await page.waitForURL(/\/room\/[A-Z0-9]+\?token=/, WAIT);
  await page
    .getByRole('heading', { name: /Check your camera and microphone|You are invited to a video call/ })
    .waitFor(WAIT);
  step('the waiting room moved to the room by itself');
  await page.goto(`${base}${join.pathname}?lang=ar`);
  await page.waitForURL(/\/room\//, WAIT);
  await checkAccessibility(page, 'room, phone, rtl');
  await wide.goto(page.url().replace('lang=ar', 'lang=en'));
  await wide.getByRole('heading', { name: /Check your camera and microphone|You are invited to a video call/ }).waitFor(WAIT);
  await checkAccessibility(wide, 'room, desktop');
});
