// The customer on a phone and the agent in the console on a desktop, each
// in their own browser context: the agent signs in and gets ready; an offer
// arrives with a badge; the customer confirms and they chat both ways with
// typing shown on both sides; the agent notifies the customer's device; a
// second offer opens a second tab (arrow keys move between them); the
// agent completes and the customer is thanked. axe-core checks the console
// at desktop and phone size and in Arabic.
//
// node chat-console.mjs <base url> [screenshot dir]

import { strict as assert } from 'node:assert';
import {
  main, chatOpen, newPage, apiClient, checkAccessibility, screenshot, step, PHONE, DESKTOP,
} from './lib.mjs';

const [base, shots] = process.argv.slice(2);
const api = apiClient(base);
const WAIT = { timeout: 10000 };

await main(async (browser) => {
  await api.put('/api/v1/agents/alice', { name: 'Alice', queues: ['support'], max_concurrent: 2 });

  // Signing in as an agent that does not exist is a 404 the page shows.
  const console_ = await newPage(browser, DESKTOP, 'agent', ['/api/v1/agents/nobody']);
  await console_.goto(`${base}/agent?lang=en`);
  await console_.getByRole('heading', { name: 'Sign in' }).waitFor(WAIT);
  await checkAccessibility(console_, 'agent sign-in, desktop');
  // No id: the page says so.
  await console_.getByRole('button', { name: 'Sign in' }).click();
  await console_.getByRole('alert').filter({ hasText: 'agent id' }).waitFor(WAIT);
  // An unknown agent: the API's answer, shown.
  await console_.getByLabel('Agent id').fill('nobody');
  await console_.getByRole('button', { name: 'Sign in' }).click();
  await console_.getByRole('alert').filter({ hasText: 'nobody' }).waitFor(WAIT);
  await console_.getByLabel('Agent id').fill('alice');
  await console_.getByRole('button', { name: 'Sign in' }).click();
  const readiness = console_.getByRole('button', { name: 'Not ready' });
  await readiness.waitFor(WAIT);
  await console_.getByText('No services yet').waitFor(WAIT);
  await readiness.click();
  await console_.getByRole('button', { name: 'Ready', pressed: true }).waitFor(WAIT);
  step('the agent signed in and is ready');

  const customer = await newPage(browser, PHONE, 'customer');
  await customer.goto(`${base}/callback/chat-delay?lang=en`);
  await customer.getByLabel('First name').fill('Layla');
  await customer.getByLabel('Last name').fill('Haddad');
  await customer.getByLabel('Phone number').fill('+44 20 7946 0000');
  await customer.getByRole('button', { name: 'Request a chat' }).click();

  await customer.getByRole('heading', { name: 'Your agent is ready' }).waitFor(WAIT);
  // The desk knows at once that the service is Alice's, before the customer confirms.
  await console_.getByRole('tab', { name: /Layla Haddad.*Reserved for you/ }).waitFor(WAIT);
  await customer.getByRole('button', { name: 'Start the chat' }).click();
  await chatOpen(customer);

  // The offer (GMS offers the interaction once the customer is there): a
  // badge, and a tab with the customer's name.
  await console_.getByRole('status', { name: 'New offers' }).filter({ hasText: '1' }).waitFor(WAIT);
  await console_.getByRole('tab', { name: /Layla Haddad/ }).waitFor(WAIT);
  step('the offer reached the console with a badge');

  // Customer → agent, typing first.
  const customerBox = customer.getByRole('textbox', { name: 'Message' });
  await customerBox.pressSequentially('Hi', { delay: 30 });
  await console_.getByText('Layla Haddad is typing…').waitFor(WAIT);
  await customerBox.fill('Hi, my bill looks wrong');
  await customerBox.press('Enter');
  await console_.getByText('Hi, my bill looks wrong').waitFor(WAIT);
  step("the customer's typing and message reached the console");

  // Agent → customer, typing first.
  const panel = console_.getByRole('tabpanel');
  const agentBox = panel.getByRole('textbox', { name: 'Message', exact: true });
  await agentBox.pressSequentially('Let me', { delay: 30 });
  await customer.getByText('Alice is typing…').waitFor(WAIT);
  await agentBox.fill('Let me look at it for you');
  await agentBox.press('Enter');
  await customer.getByText('Let me look at it for you').waitFor(WAIT);
  await panel.getByText('Let me look at it for you').waitFor(WAIT);
  step("the agent's typing and message reached the customer");

  // The agent notifies the customer's device.
  await panel.getByLabel("Message to the customer's device").fill('I have sent you an e-mail');
  await panel.getByRole('button', { name: 'Notify customer' }).click();
  await customer.getByText('I have sent you an e-mail').waitFor(WAIT);
  step("the agent's notification reached the customer");

  // The customer's data and the service's history are in the panel.
  await panel.getByText('+442079460000').or(panel.getByText('+44 20 7946 0000')).first().waitFor(WAIT);
  await panel.getByRole('listitem').filter({ hasText: 'agent reserved' }).first().waitFor(WAIT);
  await checkAccessibility(console_, 'agent console with a chat, desktop');
  await screenshot(console_, shots, 'agent-console');

  // A second customer (an app, through the API): a second offer, a second tab.
  const second = (await api.create('chat-delay', { _customer_number: '+441632960077', firstName: 'Omar' }))._id;
  await api.waitForState(second, 'ROUTING');
  await api.post(`/genesys/1/service/${second}/connect`);
  await console_.getByRole('tab', { name: /Omar/ }).waitFor(WAIT);
  await console_.getByRole('status', { name: 'New offers' }).filter({ hasText: '2' }).waitFor(WAIT);
  const first = console_.getByRole('tab', { name: /Layla Haddad/ });
  await first.focus();
  await console_.keyboard.press('ArrowRight');
  await console_.getByRole('tab', { name: /Omar/, selected: true }).waitFor(WAIT);
  await console_.keyboard.press('ArrowLeft');
  await console_.getByRole('tab', { name: /Layla Haddad/, selected: true }).waitFor(WAIT);
  // Looking at the tabs clears the badge.
  await console_.getByRole('status', { name: 'New offers' }).waitFor({ state: 'hidden', ...WAIT });
  step('two services, two tabs, arrow keys move between them');

  // In Arabic, and at phone size.
  await console_.getByLabel('Language').selectOption('ar');
  await console_.waitForFunction(() => document.documentElement.dir === 'rtl', null, WAIT);
  await checkAccessibility(console_, 'agent console, desktop, rtl');
  await screenshot(console_, shots, 'agent-console-rtl');
  await console_.getByLabel('اللغة').selectOption('en');
  await console_.setViewportSize(PHONE);
  await checkAccessibility(console_, 'agent console, phone');
  await console_.setViewportSize(DESKTOP);

  // The agent completes the chat: the customer is thanked, the tab goes.
  await console_.getByRole('tabpanel').getByRole('button', { name: 'Complete' }).click();
  await customer.getByRole('heading', { name: 'Thank you' }).waitFor(WAIT);
  await console_.getByRole('tab', { name: /Layla Haddad/ }).waitFor({ state: 'detached', ...WAIT });
  step('the agent completed; the customer was thanked and the tab closed');

  // Omar's app starts the chat, then leaves it: the desk says so, and the
  // agent closes the tab.
  await console_.getByRole('tab', { name: /Omar/, selected: true }).waitFor(WAIT);
  await api.post(`/genesys/1/service/${second}/ixn/chat`, new FormData());
  await console_.getByRole('tabpanel').getByText(/joined the chat/).first().waitFor(WAIT);
  await api.post(`/genesys/1/service/${second}/ixn/chat/disconnect`, new FormData());
  await console_.getByText('The customer left; the service is complete.').waitFor(WAIT);
  await console_.getByRole('tabpanel').getByRole('button', { name: 'Close' }).click();
  await console_.getByText('No services yet').waitFor(WAIT);
  const agent = await api.get('/api/v1/agents/alice');
  assert.equal(agent.services.length, 0);
});
