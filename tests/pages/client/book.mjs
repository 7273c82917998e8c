// A customer in Dubai books a video appointment on a phone at
// /book/video-scheduled: the calendar shows open times in the customer's
// zone (closed days greyed), a slot is chosen and confirmed in two clicks,
// and the confirmation shows the time, the join link, the invite to add
// to a calendar and the link to change or cancel. Prints `booked: <id>`.
//
// node book.mjs <base url> [screenshot dir]

import { strict as assert } from 'node:assert';
import {
  main, newPage, checkAccessibility, screenshot, step, PHONE, DESKTOP,
} from './lib.mjs';

const [base, shots] = process.argv.slice(2);
const WAIT = { timeout: 10000 };
const ZONE = { timezoneId: 'Asia/Dubai' };

await main(async (browser) => {
  const page = await newPage(browser, PHONE, 'book', [], ZONE);
  const answer = await page.goto(`${base}/book/video-scheduled?lang=en`);
  assert.equal(answer.status(), 200);
  await page.getByRole('heading', { name: /Book a time/ }).waitFor(WAIT);
  await page.getByText('Asia/Dubai').first().waitFor(WAIT);
  const times = page.getByRole('group', { name: /^Times on/ });
  await times.getByRole('button').first().waitFor(WAIT);
  // Sundays are closed in this scenario: greyed and not choosable.
  const closed = page.getByRole('button', { name: /^Sun.*Closed$/ }).first();
  assert.equal(await closed.isDisabled(), true);
  await checkAccessibility(page, 'book: calendar, phone');
  await screenshot(page, shots, 'book-calendar');

  const slot = times.getByRole('button', { disabled: false }).first();
  const label = (await slot.textContent()).trim();
  await slot.click();
  await page.getByRole('heading', { name: 'Your details' }).waitFor(WAIT);
  assert.match(await page.locator('#chosen-time').textContent(), new RegExp(`${label}.*Asia/Dubai`));
  step(`chose ${label} (Dubai time)`);

  // The details are needed.
  await page.getByRole('button', { name: 'Confirm booking' }).click();
  await page.getByRole('alert').filter({ hasText: 'required' }).waitFor(WAIT);
  await page.getByLabel('Your name').fill('Fatima Al-Ali');
  await page.getByLabel('E-mail').fill('fatima@example.ae');
  await page.getByLabel('Phone number').fill('+971 4 123 4567');
  await checkAccessibility(page, 'book: details, phone');
  await page.getByRole('button', { name: 'Confirm booking' }).click();
  await page.getByRole('heading', { name: 'You are booked' }).waitFor(WAIT);
  assert.match(await page.locator('#done-time').textContent(), new RegExp(`${label}.*Asia/Dubai`));
  const join = await page.locator('#done-join').getAttribute('href');
  assert.match(join, /^http/);
  step('booked, with the time in Dubai and a join link');
  await checkAccessibility(page, 'book: confirmation, phone');
  await screenshot(page, shots, 'book-done');

  // The invite downloads as a calendar file.
  const ics = await page.getByRole('link', { name: 'Add to calendar' }).getAttribute('href');
  const invite = await page.request.get(`${base}${ics}`);
  assert.equal(invite.status(), 200);
  assert.match(invite.headers()['content-type'], /^text\/calendar/);
  assert.match(await invite.text(), /BEGIN:VEVENT/);
  const manage = await page.getByRole('link', { name: 'Change or cancel' }).getAttribute('href');
  assert.match(manage, /^\/booking\/[^?]+\?token=[0-9a-f]{32,}$/);
  const id = manage.split('/')[2].split('?')[0];

  // The calendar on a desktop, and in Arabic.
  const wide = await newPage(browser, DESKTOP, 'book-desktop', [], ZONE);
  await wide.goto(`${base}/book/video-scheduled?lang=en`);
  await wide.getByRole('group', { name: /^Times on/ }).getByRole('button').first().waitFor(WAIT);
  await checkAccessibility(wide, 'book: calendar, desktop');
  await screenshot(wide, shots, 'book-calendar-desktop');
  await wide.goto(`${base}/book/video-scheduled?lang=ar`);
  await wide.getByRole('heading', { name: /احجز موعدًا/ }).waitFor(WAIT);
  await wide.getByRole('group', { name: /^الأوقات/ }).getByRole('button').first().waitFor(WAIT);
  assert.equal(await wide.evaluate(() => document.documentElement.dir), 'rtl');
  await checkAccessibility(wide, 'book: calendar, desktop, rtl');

  // A scenario without a schedule has no booking page.
  const lost = await newPage(browser, PHONE, 'lost', ['/book/chat-delay']);
  assert.equal((await lost.goto(`${base}/book/chat-delay`)).status(), 404);
  console.log(`booked: ${id}`);
});
