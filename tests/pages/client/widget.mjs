// The widget on the contact centre's own site (another origin, allowed
// with --frame-origin): one script tag adds a button; the button opens the
// callback page in a panel, keyboard and all; Escape closes it and gives
// the focus back.
//
// node widget.mjs <base url> <screenshot dir> <port of the site>

import { strict as assert } from 'node:assert';
import { createServer } from 'node:http';
import {
  main, newPage, checkAccessibility, screenshot, step, PHONE, DESKTOP,
} from './lib.mjs';

const [base, shots, port] = process.argv.slice(2);
const WAIT = { timeout: 10000 };

const site = createServer((req, res) => {
  if (req.url !== '/') {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Example Bank</title></head>
<body><main><h1>Example Bank</h1><p>Questions about your account? We call you back.</p></main>
<script src="${base}/assets/widget.js" data-scenario="chat-delay" data-label="Talk to us" defer></script>
</body></html>`);
});
await new Promise((resolve) => site.listen(Number(port), '127.0.0.1', resolve));

await main(async (browser) => {
  const page = await newPage(browser, DESKTOP, 'site');
  await page.goto(`http://127.0.0.1:${port}/`);
  const launcher = page.getByRole('button', { name: 'Talk to us' });
  await launcher.waitFor(WAIT);
  assert.equal(await launcher.getAttribute('aria-expanded'), 'false');
  await checkAccessibility(page, 'site with the widget, closed');

  // Opened from the keyboard.
  await launcher.focus();
  await page.keyboard.press('Enter');
  const panel = page.getByRole('dialog', { name: 'Talk to us' });
  await panel.waitFor(WAIT);
  const frame = page.frameLocator('iframe[title="Talk to us"]');
  await frame.getByRole('heading', { name: 'Talk to an agent' }).waitFor(WAIT);
  assert.equal(await launcher.getAttribute('aria-expanded'), 'true');
  step('the widget opened the callback page in a panel');
  await screenshot(page, shots, 'widget');

  // The page in the panel works: a request from the site's visitor.
  await frame.getByLabel('Phone number').fill('+44 20 7946 0000');
  await frame.getByRole('button', { name: 'Request a chat' }).click();
  await frame.getByRole('heading', { name: 'You are in the queue' }).waitFor(WAIT);
  step('a callback asked for from inside the panel');

  await page.keyboard.press('Escape');
  await panel.waitFor({ state: 'hidden', ...WAIT });
  assert.equal(await page.evaluate(() => document.activeElement?.shadowRoot?.activeElement?.textContent), 'Talk to us');
  step('Escape closed the panel and gave the focus back');

  // On a phone the panel takes the screen.
  const phone = await newPage(browser, PHONE, 'site-phone');
  await phone.goto(`http://127.0.0.1:${port}/`);
  await phone.getByRole('button', { name: 'Talk to us' }).click();
  const box = await phone.getByRole('dialog', { name: 'Talk to us' }).boundingBox();
  assert.equal(Math.round(box.width), PHONE.width);
});
site.close();
