// A customer on a phone asks for a chat on /callback/chat-delay, sees the
// place in the queue fall as others leave, is told the agent is ready,
// confirms, and chats with the agent both ways, typing shown both ways; the
// transcript survives a reload; the page turns right-to-left in Arabic; the
// agent completes and the customer is thanked. axe-core checks each step
// at phone size, and the form at desktop size and in RTL.
//
// node callback-chat.mjs <base url> [screenshot dir]

import { strict as assert } from 'node:assert';
import {
  main, chatOpen, newPage, apiClient, checkAccessibility, screenshot, step, PHONE, DESKTOP,
} from './lib.mjs';

const [base, shots] = process.argv.slice(2);
const api = apiClient(base);
const WAIT = { timeout: 10000 };

await main(async (browser) => {
  // Two customers are already waiting.
  const others = [];
  for (const number of ['+441632960001', '+441632960002']) {
    others.push((await api.create('chat-delay', { _customer_number: number }))._id);
  }

  // An unknown scenario is a page a person can read, with a 404.
  const lost = await newPage(browser, PHONE, 'lost', ['/callback/no-such-scenario']);
  const missing = await lost.goto(`${base}/callback/no-such-scenario`);
  assert.equal(missing.status(), 404);
  await lost.getByRole('heading', { name: 'This page does not exist' }).waitFor(WAIT);

  const customer = await newPage(browser, PHONE, 'customer');
  const page = await customer.goto(`${base}/callback/chat-delay?lang=en`);
  const csp = page.headers()['content-security-policy'];
  assert.match(csp, /script-src 'self';/);
  assert.doesNotMatch(csp, /unsafe-inline/);
  await customer.getByRole('heading', { name: 'Talk to an agent' }).waitFor(WAIT);
  await checkAccessibility(customer, 'ask, phone');
  await screenshot(customer, shots, 'callback-ask');

  // Sending without a phone number says what is missing, on the page.
  await customer.getByRole('button', { name: 'Request a chat' }).click();
  await customer.getByRole('alert').filter({ hasText: 'required' }).waitFor(WAIT);
  assert.equal(await customer.getByLabel('Phone number').getAttribute('aria-invalid'), 'true');

  // A phone number nobody can call is caught on the page.
  await customer.getByLabel('Phone number').fill('abc');
  await customer.getByRole('button', { name: 'Request a chat' }).click();
  await customer.getByRole('alert').filter({ hasText: 'phone number we can call' }).waitFor(WAIT);
  await customer.getByLabel('First name').fill('Layla');
  await customer.getByLabel('Last name').fill('Haddad');
  await customer.getByLabel('Phone number').fill('+44 20 7946 0000');
  await customer.getByLabel('What is it about?').fill('My last bill');
  await customer.getByRole('button', { name: 'Request a chat' }).click();
  await customer.getByRole('heading', { name: 'You are in the queue' }).waitFor(WAIT);
  const position = customer.locator('#position');
  await waitForText(position, '3');
  step('the customer is third in the queue');
  await checkAccessibility(customer, 'wait, phone');
  await screenshot(customer, shots, 'callback-wait');

  // The others leave: the place falls, pushed to the page.
  await api.del(`/genesys/1/service/callback/chat-delay/${others[0]}`);
  await waitForText(position, '2');
  await api.del(`/genesys/1/service/callback/chat-delay/${others[1]}`);
  await waitForText(position, '1');
  step('the place in the queue fell live: 3, 2, 1');

  const id = await customer.evaluate(
    () => JSON.parse(sessionStorage.getItem('callbackd:callback:chat-delay')).id,
  );

  // The agent desktop: the plain WebSocket of agent alice.
  const desk = await newPage(browser, DESKTOP, 'agent-socket');
  await desk.goto(`${base}/assets/icon.svg`);
  await desk.evaluate(
    (url) =>
      new Promise((resolve) => {
        window.frames_ = [];
        const socket = new WebSocket(url);
        socket.onmessage = (e) => {
          window.frames_.push(JSON.parse(e.data));
          resolve();
        };
      }),
    `${base.replace(/^http/, 'ws')}/api/v1/push/ws?agent_id=alice`,
  );
  const agentSaw = async (prefix) =>
    desk.waitForFunction(
      (p) => window.frames_.some((f) => (f.tag || '').startsWith(p)),
      prefix,
      WAIT,
    );

  await api.put('/api/v1/agents/alice', { name: 'Alice', queues: ['support'], max_concurrent: 1 });
  await api.post('/api/v1/agents/alice/ready');
  await customer.getByRole('heading', { name: 'Your agent is ready' }).waitFor(WAIT);
  // A reload does not lose the turn.
  await customer.reload();
  await customer.getByRole('heading', { name: 'Your agent is ready' }).waitFor(WAIT);
  await checkAccessibility(customer, 'ready, phone');
  await screenshot(customer, shots, 'callback-ready');
  step('the customer is told the agent is ready');

  await customer.getByRole('button', { name: 'Start the chat' }).click();
  await chatOpen(customer);
  await api.waitForState(id, 'PROCESSING');

  // The agent writes and types; the customer sees both.
  await api.post(`/api/v1/services/${id}/chat/typing`, { typing: true });
  await customer.getByText('Alice is typing…').waitFor(WAIT);
  await api.post(`/api/v1/services/${id}/chat`, { text: 'Hello Layla, how can I help?' });
  await customer.getByText('Hello Layla, how can I help?').waitFor(WAIT).catch(async (e) => {
    const seen = await customer.locator('#transcript').innerText();
    const record = await api.get(`/api/v1/services/${id}`);
    throw new Error(`${e.message}\npage: ${seen}\nrecord: ${JSON.stringify(record.chat)}`);
  });
  await api.post(`/api/v1/services/${id}/chat/typing`, { typing: false });
  await waitForText(customer.locator('#typing'), '');
  step("the agent's typing and message reached the customer");

  // The customer types (the agent is told) and sends, with Enter.
  const box = customer.getByRole('textbox', { name: 'Message' });
  await box.pressSequentially('My bill', { delay: 20 });
  await agentSaw('agent.chat.typing.');
  await box.fill('My bill is <b>twice</b> what it was');
  await box.press('Enter');
  await customer.getByText('My bill is <b>twice</b> what it was').waitFor(WAIT);
  assert.equal(await customer.locator('#transcript b').count(), 0, 'typed text is never HTML');
  await agentSaw('agent.chat.');
  const record = await api.get(`/api/v1/services/${id}`);
  assert.ok(
    JSON.stringify(record).includes('My bill is <b>twice</b> what it was'),
    "the agent's transcript has the message",
  );
  step("the customer's typing and message reached the agent");

  // A reload keeps the conversation.
  await customer.reload();
  await customer.getByRole('heading', { name: 'Chat' }).waitFor(WAIT);
  await customer.getByText('Hello Layla, how can I help?').waitFor(WAIT);
  await customer.getByText('My bill is <b>twice</b> what it was').waitFor(WAIT);
  assert.equal(await customer.locator('#transcript .msg.mine').count(), 1, 'nothing twice after a reload');
  step('the transcript survived a reload');
  await checkAccessibility(customer, 'chat, phone');
  await screenshot(customer, shots, 'callback-chat');

  // Arabic: the page turns right-to-left.
  await customer.getByLabel('Language').selectOption('ar');
  await customer.waitForFunction(() => document.documentElement.dir === 'rtl', null, WAIT);
  await customer.getByRole('button', { name: 'إرسال' }).waitFor(WAIT);
  const mine = await customer.locator('#transcript .msg.mine').boundingBox();
  assert.ok(mine.x < PHONE.width / 2, "in RTL the customer's own message sits on the left");
  await checkAccessibility(customer, 'chat, phone, rtl');
  await screenshot(customer, shots, 'callback-chat-rtl');
  await customer.getByLabel('اللغة').selectOption('en');

  // The agent completes: the customer is thanked.
  await api.post(`/api/v1/services/${id}/complete`, {});
  await customer.getByRole('heading', { name: 'Thank you' }).waitFor(WAIT);
  step('the agent completed and the customer was thanked');
  await screenshot(customer, shots, 'callback-done');

  // The form on a desktop, and in Arabic.
  const wide = await newPage(browser, DESKTOP, 'desktop');
  await wide.goto(`${base}/callback/chat-delay?lang=en`);
  await wide.getByRole('heading', { name: 'Talk to an agent' }).waitFor(WAIT);
  await checkAccessibility(wide, 'ask, desktop');
  await screenshot(wide, shots, 'callback-ask-desktop');
  await wide.goto(`${base}/callback/chat-delay?lang=ar`);
  await wide.getByRole('heading', { name: 'تحدث إلى أحد الموظفين' }).waitFor(WAIT);
  assert.equal(await wide.evaluate(() => document.documentElement.dir), 'rtl');
  await checkAccessibility(wide, 'ask, desktop, rtl');
});

async function waitForText(locator, text) {
  const deadline = Date.now() + WAIT.timeout;
  let last;
  while (Date.now() < deadline) {
    last = (await locator.textContent())?.trim();
    if (last === text) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`expected ${JSON.stringify(text)}, last saw ${JSON.stringify(last)}`);
}
