// What every page test shares: Debian's Chromium through playwright-core,
// pages that record their JavaScript errors and failed requests, axe-core
// checks, screenshots, and the agent's side over the HTTP API.

import { readFileSync, mkdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

export const PHONE = { width: 375, height: 667 };
export const DESKTOP = { width: 1280, height: 800 };

export function chromiumPath() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  for (const name of ['chromium', 'chromium-browser']) {
    try {
      return execFileSync('sh', ['-c', `command -v ${name}`]).toString().trim();
    } catch {
      // try the next name
    }
  }
  throw new Error("no chromium on PATH: install Debian's `chromium` package");
}

export async function launch() {
  return chromium.launch({
    executablePath: chromiumPath(),
    args: [
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection',
    ],
  });
}

/// Problems seen on any page: JavaScript errors, console errors, failed
/// requests. A test ends by asserting there were none.
export const problems = [];

/// `allow`: what this page may answer with 4xx (a path, or a RegExp), for
/// a test that asks for it.
/// `options`: more of the context's options (`timezoneId`, `locale`).
export async function newPage(browser, viewport, name, allow = [], options = {}) {
  const context = await browser.newContext({
    viewport,
    deviceScaleFactor: 1,
    isMobile: viewport.width < 500,
    ...options,
  });
  const page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`${name}: page error: ${e.message}`));
  page.on('console', (m) => {
    // A failed load is reported with its URL by `response` below.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) {
      problems.push(`${name}: console error: ${m.text()}`);
    }
  });
  page.on('requestfailed', (r) => {
    const why = r.failure()?.errorText || '';
    // A reload cancels what was in flight: that is not a failure.
    if (why.includes('ERR_ABORTED')) return;
    problems.push(`${name}: request failed: ${r.method()} ${r.url()} ${why}`);
  });
  page.on('response', (r) => {
    if (r.status() < 400) return;
    const path = new URL(r.url()).pathname;
    if (allow.some((a) => (a instanceof RegExp ? a.test(path) : a === path))) return;
    problems.push(`${name}: ${r.status()} from ${r.request().method()} ${r.url()}`);
  });
  return page;
}

/// axe-core on the page as it is now: no serious or critical violation.
/// Injected through the DevTools protocol, so the page's CSP stays on.
export async function checkAccessibility(page, what) {
  await page.evaluate(AXE);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')),
    }));
  });
  const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  if (bad.length) {
    throw new Error(`accessibility (${what}): ${JSON.stringify(bad, null, 2)}`);
  }
  step(`axe: ${what}: no serious or critical violations (${result.length} minor)`);
}

/// Waits until the customer's chat exists (its message box takes text).
export async function chatOpen(page) {
  await page.getByRole('heading', { name: 'Chat' }).waitFor({ timeout: 10000 });
  await page.waitForFunction(() => !document.getElementById('message').disabled, null, { timeout: 10000 });
}

export async function screenshot(page, dir, name, options = {}) {
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: `${dir}/${name}.png`, ...options });
}

export function step(text) {
  console.log(`step: ${text}`);
}

/// The HTTP API, as an agent desktop or an app calls it (callbackd runs open
/// on loopback in these tests).
export function apiClient(base) {
  const call = async (method, path, body) => {
    const init = { method, headers: {} };
    if (body instanceof FormData) init.body = body;
    else if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(base + path, init);
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
  return {
    get: (p) => call('GET', p),
    post: (p, b) => call('POST', p, b),
    put: (p, b) => call('PUT', p, b),
    del: (p) => call('DELETE', p),
    /// Waits until the service is in this GMS state (the query's
    /// `_callback_state`); throws with the last one seen.
    async waitForState(id, state, timeout = 10000) {
      const deadline = Date.now() + timeout;
      let last;
      while (Date.now() < deadline) {
        last = (await call('GET', `/genesys/1/service/callback?_id=${id}`))[0]?._callback_state ?? null;
        if (last === state) return;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`service ${id}: expected ${state}, last saw ${last}`);
    },
    /// A GMS create, multipart as the seed sends it.
    async create(scenario, fields) {
      const form = new FormData();
      for (const [k, v] of Object.entries(fields)) form.append(k, v);
      return call('POST', `/genesys/1/service/callback/${scenario}`, form);
    },
  };
}

export async function main(run) {
  let browser;
  try {
    browser = await launch();
    await run(browser);
    if (problems.length) throw new Error(`the pages reported problems:\n${problems.join('\n')}`);
    console.log('ok');
  } catch (e) {
    console.error(e.stack || String(e));
    if (problems.length) console.error(`also:\n${problems.join('\n')}`);
    // What each page showed when it failed, to read with the message.
    let n = 0;
    for (const context of browser?.contexts() ?? []) {
      for (const page of context.pages()) {
        const path = `${tmpdir()}/callbackd-page-failure-${process.pid}-${n++}.png`;
        await page.screenshot({ path }).catch(() => {});
        console.error(`screenshot of ${page.url()}: ${path}`);
      }
    }
    process.exitCode = 1;
  } finally {
    await browser?.close();
  }
}
