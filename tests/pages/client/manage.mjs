// The customer opens the link from the confirmation e-mail, moves the
// booking to another open time, then cancels it (after confirming).
// A link with a wrong token opens nothing.
//
// node manage.mjs <base url> <screenshot dir> <manage url from the e-mail>

import { strict as assert } from 'node:assert';
import {
  main, newPage, apiClient, checkAccessibility, screenshot, step, PHONE, DESKTOP,
} from './lib.mjs';

const [base, shots, link] = process.argv.slice(2);
const api = apiClient(base);
const WAIT = { timeout: 10000 };
const ZONE = { timezoneId: 'Asia/Dubai' };

await main(async (browser) => {
  const url = new URL(link);
  const id = url.pathname.split('/').pop();
  const token = url.searchParams.get('token');
  const before = await api.get(`/api/v1/bookings/${id}?token=${token}`);

  const page = await newPage(browser, PHONE, 'manage', [], ZONE);
  await page.goto(`${base}${url.pathname}${url.search}&lang=en`);
  await page.getByRole('heading', { name: 'Your booking' }).waitFor(WAIT);
  await page.getByText('Booked', { exact: true }).waitFor(WAIT);
  assert.match(await page.locator('#when').textContent(), /Asia\/Dubai/);
  await checkAccessibility(page, 'manage, phone');
  await screenshot(page, shots, 'booking-manage');

  // The same page on a desktop, and in Arabic.
  const wide = await newPage(browser, DESKTOP, 'manage-desktop', [], ZONE);
  await wide.goto(`${base}${url.pathname}${url.search}&lang=ar`);
  await wide.getByRole('heading', { name: 'حجزك' }).waitFor(WAIT);
  assert.equal(await wide.evaluate(() => document.documentElement.dir), 'rtl');
  await checkAccessibility(wide, 'manage, desktop, rtl');
  await wide.goto(`${base}${url.pathname}${url.search}&lang=en`);
  await wide.getByRole('heading', { name: 'Your booking' }).waitFor(WAIT);
  await checkAccessibility(wide, 'manage, desktop');

  // Move: another open time, then confirm. The picker leaves out the
  // booked time, so its first open time is another one; late in the day
  // the first day shown may have only one left.
  await page.getByRole('button', { name: 'Move to another time' }).click();
  await page.getByRole('heading', { name: 'Choose a new time' }).waitFor(WAIT);
  const times = page.getByRole('group', { name: /^Times on/ });
  await times.getByRole('button', { disabled: false }).first().click();
  await page.getByRole('button', { name: 'Move booking' }).click();
  await page.getByRole('status').filter({ hasText: 'Your booking has moved' }).waitFor(WAIT);
  const after = await api.get(`/api/v1/bookings/${id}?token=${token}`);
  assert.notEqual(after._desired_time, before._desired_time, 'the booking moved');
  assert.equal(after._callback_state, 'SCHEDULED');
  step(`moved from ${before._desired_time} to ${after._desired_time}`);

  // Cancel: a confirmation first; keeping it changes nothing.
  await page.getByRole('button', { name: 'Cancel booking' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Keep it' }).click();
  assert.equal((await api.get(`/api/v1/bookings/${id}?token=${token}`))._callback_state, 'SCHEDULED');
  await page.getByRole('button', { name: 'Cancel booking' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Cancel booking' }).click();
  await page.getByRole('status').filter({ hasText: 'Your booking is cancelled' }).waitFor(WAIT);
  await page.getByText('Cancelled', { exact: true }).waitFor(WAIT);
  assert.equal(await page.getByRole('button', { name: 'Move to another time' }).isVisible(), false);
  const gone = await api.get(`/api/v1/bookings/${id}?token=${token}`);
  assert.equal(gone._callback_reason, 'CANCELLED');
  step('cancelled after a confirmation');
  await checkAccessibility(page, 'manage: cancelled, phone');

  // A wrong token opens nothing, and says so.
  const wrong = await newPage(browser, PHONE, 'wrong-token', [`/api/v1/bookings/${id}`], ZONE);
  await wrong.goto(`${base}/booking/${id}?token=0000&lang=en`);
  await wrong.getByRole('alert').filter({ hasText: 'does not open a booking' }).waitFor(WAIT);
  assert.equal(await wrong.getByRole('heading', { name: 'Your booking' }).isVisible(), false);
});
