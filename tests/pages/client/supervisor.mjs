// A supervisor on the board: the queues live (a new service shows up by
// itself), the agents (one set not ready), the services filtered by scenario
// and state, a service's timeline, two cancelled at once with a reason, and
// the CSV of what the filter shows downloaded. axe-core at desktop and phone
// size and in Arabic.
//
// node supervisor.mjs <base url> [screenshot dir]

import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import {
  main, newPage, apiClient, checkAccessibility, screenshot, step, PHONE, DESKTOP,
} from './lib.mjs';

const [base, shots] = process.argv.slice(2);
const api = apiClient(base);
const WAIT = { timeout: 10000 };

await main(async (browser) => {
  await api.put('/api/v1/agents/ann', { name: 'Ann', queues: ['support'], max_concurrent: 1 });
  const numbers = ['+441632960101', '+441632960102', '+441632960103', '+441632960104'];
  const ids = [];
  for (const n of numbers) ids.push((await api.create('chat-delay', { _customer_number: n }))._id);
  // A booking too: it waits for its slot, in no queue yet.
  const open = await api.get('/genesys/1/service/callback/video-scheduled/availability?max-time-slots=1');
  await api.create('video-scheduled', { _customer_number: '+441632960199', _desired_time: Object.keys(open)[0] });

  const page = await newPage(browser, DESKTOP, 'supervisor');
  await page.goto(`${base}/supervisor?lang=en`);
  // Open on loopback: the board asks for no key.
  await page.getByRole('heading', { name: 'Queues' }).waitFor(WAIT);
  const support = page.getByRole('table').first().getByRole('row', { name: /^support/ });
  await support.getByRole('cell', { name: '4', exact: true }).first().waitFor(WAIT);
  await page.getByRole('status').filter({ hasText: 'Live' }).waitFor(WAIT);
  step('the board shows support with 4 waiting');

  // Live: a new service shows up without a reload.
  ids.push((await api.create('chat-delay', { _customer_number: '+441632960105' }))._id);
  await support.getByRole('cell', { name: '5', exact: true }).first().waitFor(WAIT);
  step('a new service showed up live');

  // The chart of the last hours, and the bookings of the scheduled scenario.
  // Drawn when the board opened (then at most every 30 s): 5 or 6 by now.
  await page.getByRole('img', { name: /^[56] services in the last 12 hours/ }).waitFor(WAIT);
  const bookings = page.getByRole('region', { name: 'Bookings, the next 7 days' });
  await bookings.getByRole('heading', { name: /video-scheduled/ }).waitFor(WAIT);
  await bookings.getByRole('row').filter({ has: page.getByRole('cell', { name: '1', exact: true }) }).first().waitFor(WAIT);
  step('the chart counts the services; the booking takes a seat');

  // A filter nothing matches says so.
  await page.getByLabel('Status').selectOption('PROCESSING');
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.getByText('No service matches these filters.').waitFor(WAIT);

  // Filter: chat-delay, QUEUED.
  await page.getByLabel('Scenario').selectOption('chat-delay');
  await page.getByLabel('Status').selectOption('QUEUED');
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.getByText('Page 1 of 1 · 5 services').waitFor(WAIT);
  const services = page.locator('#services tbody tr');
  assert.equal(await services.count(), 5);
  step('filtered: 5 QUEUED chat-delay services');

  // A service's timeline.
  await page.getByRole('button', { name: 'Timeline of +441632960101' }).click();
  await page.getByRole('heading', { name: 'Timeline' }).waitFor(WAIT);
  await page.locator('#timeline').getByText(/created → scheduled/).waitFor(WAIT);
  await page.locator('#timeline').getByText(/desired time reached → wait_for_agent/).waitFor(WAIT);

  // Cancel two at once, with a reason.
  await page.getByRole('checkbox', { name: 'Select +441632960102' }).check();
  await page.getByRole('checkbox', { name: 'Select +441632960103' }).check();
  await page.getByText('2 selected').waitFor(WAIT);
  await page.getByRole('button', { name: 'Cancel selected' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByLabel(/Reason/).fill('duplicate requests');
  await checkAccessibility(page, 'supervisor: cancel dialog, desktop');
  await dialog.getByRole('button', { name: 'Cancel services' }).click();
  await page.getByRole('status').filter({ hasText: '2 cancelled.' }).waitFor(WAIT);
  await page.getByText('Page 1 of 1 · 3 services').waitFor(WAIT);
  for (const id of [ids[1], ids[2]]) {
    const record = await api.get(`/api/v1/services/${id}`);
    assert.equal(record._callback_reason, 'CANCELLED');
    assert.match(JSON.stringify(record.history.at(-1)), /duplicate requests/);
  }
  assert.equal((await api.get(`/api/v1/services/${ids[0]}`))._callback_state, 'QUEUED');
  step('two services cancelled with a reason');

  // The agent gets ready (elsewhere): the board follows; set her not ready here.
  await api.post('/api/v1/agents/ann/ready');
  const ann = page.getByRole('row', { name: /Ann \(ann\)/ });
  await ann.getByText('Ready', { exact: true }).waitFor(WAIT);
  await checkAccessibility(page, 'supervisor: board, desktop');
  await screenshot(page, shots, 'supervisor', { fullPage: true });
  await page.getByRole('button', { name: 'Set not ready: Ann' }).click();
  await ann.getByText('Not ready', { exact: true }).waitFor(WAIT);
  assert.equal((await api.get('/api/v1/agents/ann')).state, 'not_ready');
  step('the supervisor set Ann not ready');

  // The CSV of what the filter shows.
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('button', { name: 'Download CSV' }).click(),
  ]);
  assert.equal(download.suggestedFilename(), 'callbacks.csv');
  const csv = readFileSync(await download.path(), 'utf8').trim().split(/\r?\n/);
  assert.match(csv[0], /_id/);
  assert.ok(csv.length >= 3, csv.join('\n'));
  assert.ok(csv.every((line, i) => i === 0 || line.includes('chat-delay')), csv.join('\n'));
  step(`downloaded the CSV: ${csv.length - 1} rows`);

  // In Arabic, and on a phone.
  await page.getByLabel('Language').selectOption('ar');
  await page.waitForFunction(() => document.documentElement.dir === 'rtl', null, WAIT);
  await checkAccessibility(page, 'supervisor: board, desktop, rtl');
  await page.getByLabel('اللغة').selectOption('en');
  await page.setViewportSize(PHONE);
  await checkAccessibility(page, 'supervisor: board, phone');
});
