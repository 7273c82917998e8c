// The whole chat-to-video flow: the customer asks for a chat on a phone and
// sees the place in the queue fall; the agent signs in to the console on a
// desktop and gets ready; the customer is told and confirms; they chat
// both ways with typing shown; the agent starts video; the customer is
// invited, accepts and joins; WebRTC connects through callbackd's relay of
// the signalling with Chromium's fake camera and microphone, and each side
// sees the other's video frames arrive; the customer hangs up and answers
// the survey; the supervisor's board shows the completed service with its
// timeline and survey.
//
// node video-call.mjs <base url> [screenshot dir]

import { strict as assert } from 'node:assert';
import {
  main, chatOpen, newPage, apiClient, checkAccessibility, screenshot, step, PHONE, DESKTOP,
} from './lib.mjs';

const [base, shots] = process.argv.slice(2);
const api = apiClient(base);
const WAIT = { timeout: 15000 };

/// The frame of `page` showing a room page.
async function roomFrame(page) {
  const deadline = Date.now() + WAIT.timeout;
  while (Date.now() < deadline) {
    const frame = page.frames().find((f) => f.url().includes('/room/'));
    if (frame) return frame;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('no room frame');
}

/// Waits until the frame's peer connection is connected and video frames
/// from the other side have been decoded.
async function mediaFlows(frame, who) {
  await frame.waitForFunction(() => window.callbackdRoom?.pc?.connectionState === 'connected', null, WAIT);
  await frame.waitForFunction(
    async () => {
      const stats = await window.callbackdRoom.pc.getStats();
      let decoded = 0;
      stats.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') decoded = s.framesDecoded || 0;
      });
      const video = document.getElementById('remote');
      return decoded > 5 && video.videoWidth > 0;
    },
    null,
    { ...WAIT, polling: 200 },
  );
  step(`${who}: WebRTC connected, the other side's video frames arrive`);
}

await main(async (browser) => {
  await api.put('/api/v1/agents/alice', { name: 'Alice', queues: ['support'], max_concurrent: 1 });
  // Someone is waiting already.
  const ahead = (await api.create('chat-delay', { _customer_number: '+441632960050' }))._id;

  const customer = await newPage(browser, PHONE, 'customer');
  await customer.goto(`${base}/callback/chat-delay?lang=en`);
  await customer.getByLabel('First name').fill('Layla');
  await customer.getByLabel('Phone number').fill('+44 20 7946 0000');
  await customer.getByRole('button', { name: 'Request a chat' }).click();
  await customer.getByRole('heading', { name: 'You are in the queue' }).waitFor(WAIT);
  const position = customer.locator('#position');
  await customer.waitForFunction(() => document.getElementById('position').textContent.trim() === '2', null, WAIT);
  await api.del(`/genesys/1/service/callback/chat-delay/${ahead}`);
  await customer.waitForFunction(() => document.getElementById('position').textContent.trim() === '1', null, WAIT);
  assert.equal((await position.textContent()).trim(), '1');
  step('the place in the queue fell from 2 to 1');

  // The agent signs in and gets ready: the customer is told.
  const console_ = await newPage(browser, DESKTOP, 'agent');
  await console_.goto(`${base}/agent?lang=en`);
  await console_.getByLabel('Agent id').fill('alice');
  await console_.getByRole('button', { name: 'Sign in' }).click();
  await console_.getByRole('button', { name: 'Not ready' }).click();
  await console_.getByRole('button', { name: 'Ready', pressed: true }).waitFor(WAIT);
  await customer.getByRole('heading', { name: 'Your agent is ready' }).waitFor(WAIT);
  await customer.getByRole('button', { name: 'Start the chat' }).click();
  await chatOpen(customer);
  await console_.getByRole('tab', { name: /Layla/ }).waitFor(WAIT);
  const id = await customer.evaluate(() => JSON.parse(sessionStorage.getItem('callbackd:callback:chat-delay')).id);

  // They chat both ways, typing shown on each side.
  const customerBox = customer.getByRole('textbox', { name: 'Message' });
  await customerBox.pressSequentially('Hi', { delay: 30 });
  await console_.getByText('Layla is typing…').waitFor(WAIT);
  await customerBox.fill('Can you see my router?');
  await customerBox.press('Enter');
  await console_.getByText('Can you see my router?').waitFor(WAIT);
  const agentBox = console_.getByRole('tabpanel').getByRole('textbox', { name: 'Message', exact: true });
  await agentBox.pressSequentially('Let', { delay: 30 });
  await customer.getByText('Alice is typing…').waitFor(WAIT);
  await agentBox.fill('Let us switch to video');
  await agentBox.press('Enter');
  await customer.getByText('Let us switch to video').waitFor(WAIT);
  step('they chatted both ways, typing shown');

  // The agent calls from the console; the room opens in the panel.
  await console_.getByRole('tabpanel').getByRole('button', { name: 'Start video' }).click();
  const agentRoom = await roomFrame(console_);
  await agentRoom.getByRole('heading', { name: 'Check your camera and microphone' }).waitFor(WAIT);

  // The customer is invited; joining from the invitation answers the ring,
  // then the camera and microphone check.
  await customer.getByRole('heading', { name: 'Your agent invites you to a video call' }).waitFor(WAIT);
  await checkAccessibility(customer, 'chat with the video invitation, phone');
  await customer.getByRole('button', { name: 'Join the video call' }).click();
  const customerRoom = await roomFrame(customer);
  await customerRoom.getByRole('heading', { name: 'Check your camera and microphone' }).waitFor(WAIT);
  step('the customer accepted the call from the invitation');

  // Both join; the call connects.
  await agentRoom.getByRole('button', { name: 'Join the call' }).click();
  await customerRoom.getByRole('button', { name: 'Join the call' }).click();
  await Promise.all([mediaFlows(agentRoom, 'agent'), mediaFlows(customerRoom, 'customer')]);
  await customerRoom.getByRole('status').filter({ hasText: 'Connected' }).waitFor(WAIT);

  // Mute and camera off are the customer's own; the call goes on.
  const mic = customerRoom.getByRole('button', { name: 'Microphone' });
  await mic.click();
  assert.equal(await mic.getAttribute('aria-pressed'), 'false');
  await mic.click();
  await checkAccessibility(customer, 'video call, phone');
  await screenshot(customer, shots, 'room-customer');
  await screenshot(console_, shots, 'room-agent');

  // Completing while the room is live asks first; keeping the call keeps it.
  await console_.getByRole('tabpanel').getByRole('button', { name: 'Complete' }).click();
  const force = console_.getByRole('dialog', { name: 'End the live video call?' });
  await force.waitFor(WAIT);
  await checkAccessibility(console_, 'console: force-complete dialog, desktop');
  await force.getByRole('button', { name: 'Keep the call' }).click();
  await force.waitFor({ state: 'hidden', ...WAIT });
  assert.equal((await api.get(`/genesys/1/service/callback?_id=${id}`))[0]._callback_state, 'PROCESSING');
  step('completing during the call asked first, and the call went on');

  // The customer hangs up; the agent sees it; the survey follows.
  await customerRoom.getByRole('button', { name: 'Hang up' }).click();
  await customerRoom.getByRole('heading', { name: 'The call has ended' }).waitFor(WAIT);
  await agentRoom.getByRole('heading', { name: 'The call has ended' }).waitFor(WAIT);
  step('hung up; both sides see the call ended');
  await customerRoom.getByRole('radio', { name: '5' }).check();
  await customerRoom.getByLabel(/Anything to add/).fill('Very helpful, thank you');
  await customerRoom.getByRole('button', { name: 'Send' }).click();
  await customerRoom.getByText('Thank you for your answer.').waitFor(WAIT);
  await checkAccessibility(customer, 'survey, phone');
  await screenshot(customer, shots, 'room-survey');
  const record = await api.get(`/api/v1/services/${id}`);
  assert.equal(record.video.survey.score, 5, JSON.stringify(record.video));
  step('the survey answer is on the service');

  // The agent completes; the supervisor sees it, its timeline and survey.
  await console_.getByRole('tabpanel').getByRole('button', { name: 'Complete' }).click();
  await customer.getByRole('heading', { name: 'Thank you' }).waitFor(WAIT);
  const board = await newPage(browser, DESKTOP, 'supervisor');
  await board.goto(`${base}/supervisor?lang=en`);
  await board.getByLabel('Status').selectOption('COMPLETED');
  await board.getByRole('button', { name: 'Apply' }).click();
  await board.getByRole('button', { name: 'Timeline of +442079460000' }).or(board.getByRole('button', { name: 'Timeline of +44 20 7946 0000' })).first().click();
  await board.locator('#timeline').getByText(/Survey: 5/).waitFor(WAIT);
  await board.locator('#timeline').getByText(/complete/).first().waitFor(WAIT);
  step("the supervisor's board shows the completed service, its timeline and survey");
});
