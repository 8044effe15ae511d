// Drives Taskflow's web page in headless Chromium (playwright-core, the system chromium) and
// prints one JSON report on stdout for tests/tests/web.rs to assert on. Checks that need a
// bound (latency) are measured here but judged by the Rust test.
//
// Usage: node drive.mjs <api url>   (env: PLAYWRIGHT_CORE = the playwright-core directory,
// CHROMIUM = the browser binary)

import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';

const api = process.argv[2];
const require = createRequire(path.join(process.env.PLAYWRIGHT_CORE, 'node_modules', 'x.js'));
const { chromium } = require('playwright-core');

const report = { steps: [] };
const step = (name) => report.steps.push(name);
const unique = () => Math.random().toString(36).slice(2, 10);
const PASSWORD = 'a long enough passphrase';

/** The page's session through its own form: sign up (first time) or log in; Enter, no click. */
async function session(page, email, signUp, base = api) {
  await page.goto(`${base}/`);
  await page.fill('#email', email);
  await page.fill('#password', PASSWORD);
  if (signUp) {
    await page.focus('#signup');
    await page.keyboard.press('Enter');
  } else {
    await page.focus('#password');
    await page.keyboard.press('Enter');
  }
  await page.locator('#app').waitFor({ state: 'visible', timeout: 10000 });
  // The live stream is open before anything is created, so no entry can be missed.
  await page.locator('#live', { hasText: /^live$/ }).waitFor({ timeout: 10000 });
}

async function apiToken(email) {
  const r = await fetch(`${api}/auth/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ email, password: PASSWORD }),
  });
  return (await r.json()).access_token;
}

/** Presses Tab until the focused element matches `pred` (at most 60 times). */
async function tabTo(page, pred, arg) {
  for (let i = 0; i < 60; i += 1) {
    await page.keyboard.press('Tab');
    if (await page.evaluate(pred, arg)) return true;
  }
  return false;
}

/** A TCP proxy in front of the API that can drop its connections and refuse new ones: a
 * real network failure for page B (browser network emulation leaves an open stream to
 * localhost alone). */
function startProxy() {
  const target = new URL(api);
  const sockets = new Set();
  const proxy = { down: false };
  const server = net.createServer((client) => {
    if (proxy.down) {
      client.destroy();
      return;
    }
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  proxy.cut = () => {
    proxy.down = true;
    for (const s of sockets) s.destroy();
  };
  proxy.restore = () => {
    proxy.down = false;
  };
  proxy.close = () => server.close();
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      proxy.url = `http://127.0.0.1:${server.address().port}`;
      resolve(proxy);
    });
  });
}

const taskTitles = (page) => page.$$eval('#tasks li .task-title', (els) => els.map((e) => e.textContent));

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    args: ['--no-sandbox'],
  });
  const consoleErrors = [];
  const newPage = async (label) => {
    // One context each: separate pages as separate tabs/devices would be, nothing shared.
    const ctx = await browser.newContext({ viewport: { width: 390, height: 844 } });
    const page = await ctx.newPage();
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push({ page: label, text: m.text() }); });
    page.on('pageerror', (e) => consoleErrors.push({ page: label, text: String(e) }));
    return page;
  };
  try {
    const a = await newPage('a');
    const resp = await a.goto(`${api}/`);
    const headers = resp.headers();
    report.page = {
      status: resp.status(),
      content_type: headers['content-type'],
      csp: headers['content-security-policy'],
      nosniff: headers['x-content-type-options'],
      referrer_policy: headers['referrer-policy'],
    };
    step('page loaded');

    const alice = `alice-${unique()}@example.test`;
    const bob = `bob-${unique()}@example.test`;
    await session(a, alice, true);
    // B goes through the proxy (its own origin; the page only talks to its origin).
    const proxy = await startProxy();
    const b = await newPage('b');
    await session(b, alice, false, proxy.url);
    const c = await newPage('c');
    await session(c, bob, true);
    step('three sessions live');

    // 1. Created in A, seen in B: measured from A's POST /tasks answer to B's list showing it.
    const title = `Live ${unique()}`;
    const appeared = b.locator('#tasks li .task-title', { hasText: title })
      .waitFor({ timeout: 15000 }).then(() => Date.now());
    const created = a.waitForResponse((r) => r.url().endsWith('/tasks') && r.request().method() === 'POST')
      .then((r) => ({ at: Date.now(), status: r.status() }));
    await a.fill('#title', title);
    const submitted = Date.now();
    await a.focus('#title');
    await a.keyboard.press('Enter');
    const [createdAt, appearedAt] = await Promise.all([created, appeared]);
    report.live = {
      create_status: createdAt.status,
      created_to_b_ms: appearedAt - createdAt.at,
      submit_to_b_ms: appearedAt - submitted,
    };
    step('live in B');
    // Bob's page: a moment for a (wrong) entry to arrive, then none of Alice's tasks.
    await c.waitForTimeout(1500);
    report.other_user_titles = await taskTitles(c);

    // 2. Keyboard only: Tab to the title field, type, Enter; Tab to "Complete <title>", Space.
    const kbTitle = `Keyboard ${unique()}`;
    await a.evaluate(() => document.activeElement && document.activeElement.blur());
    const reachedTitle = await tabTo(a, () => document.activeElement && document.activeElement.id === 'title');
    await a.keyboard.type(kbTitle);
    await a.keyboard.press('Enter');
    await a.locator('#tasks li .task-title', { hasText: kbTitle }).waitFor({ timeout: 10000 });
    const reachedComplete = await tabTo(
      a,
      (t) => document.activeElement && document.activeElement.getAttribute('aria-label') === `Complete ${t}`,
      kbTitle,
    );
    let focusVisible = null;
    if (reachedComplete) {
      focusVisible = await a.evaluate(() => getComputedStyle(document.activeElement).outlineStyle !== 'none');
      await a.keyboard.press('Space');
    }
    // Completed: it leaves the open list in A, and in B live.
    await a.locator('#tasks li .task-title', { hasText: kbTitle }).waitFor({ state: 'detached', timeout: 10000 });
    await b.locator('#tasks li .task-title', { hasText: kbTitle }).waitFor({ state: 'detached', timeout: 10000 });
    const token = await apiToken(alice);
    const done = await (await fetch(`${api}/tasks?status=completed`, {
      headers: { Authorization: `Bearer ${token}` },
    })).json();
    report.keyboard = {
      reached_title: reachedTitle,
      reached_complete: reachedComplete,
      focus_visible: focusVisible,
      completed_titles: done.items.map((t) => t.title),
    };
    step('keyboard');

    // Reopen and delete (keyboard again): the completed list shows it, Reopen brings it
    // back to the open list, Delete removes it, in B too; the search box filters by `q`.
    const row = (page, t) => page.locator('#tasks li', { has: page.locator('.task-title', { hasText: t }) });
    await a.selectOption('#show', 'completed');
    await row(a, kbTitle).waitFor({ timeout: 10000 });
    await a.focus(`#tasks li[data-id] button[aria-label="Reopen ${kbTitle}"]`);
    await a.keyboard.press('Enter');
    await row(a, kbTitle).waitFor({ state: 'detached', timeout: 10000 });
    await a.selectOption('#show', 'open');
    await row(a, kbTitle).waitFor({ timeout: 10000 });
    const reopenedInB = await row(b, kbTitle).waitFor({ timeout: 10000 }).then(() => true, () => false);
    await a.fill('#search', kbTitle.split(' ')[1]);
    await a.focus('#search');
    await a.keyboard.press('Enter');
    await a.locator('#tasks li .task-title', { hasText: title }).waitFor({ state: 'detached', timeout: 10000 });
    const searched = await taskTitles(a);
    await a.fill('#search', '');
    await a.keyboard.press('Enter');
    await a.focus(`#tasks li[data-id] button[aria-label="Delete ${kbTitle}"]`);
    await a.keyboard.press('Enter');
    await row(a, kbTitle).waitFor({ state: 'detached', timeout: 10000 });
    const deletedInB = await row(b, kbTitle).waitFor({ state: 'detached', timeout: 10000 }).then(() => true, () => false);
    report.lifecycle = { reopened_in_b: reopenedInB, searched, deleted_in_b: deletedInB };
    step('reopen, search, delete');

    // 3. B's connection drops: it reconnects with a fresh stream token and resumes after the
    // last entry it saw, so a task created meanwhile still reaches it (its list is not
    // reloaded on reconnect: only the resumed entry can bring the task).
    const streamUrls = [];
    b.on('request', (req) => {
      if (req.url().includes('/feed/stream?')) {
        const u = new URL(req.url());
        streamUrls.push({ last_event_id: u.searchParams.get('last_event_id'), token: u.searchParams.has('access_token') });
      }
    });
    proxy.cut();
    const dropped = await b.locator('#live', { hasText: 'reconnecting' })
      .waitFor({ timeout: 10000 }).then(() => true, () => false);
    const missedTitle = `Missed ${unique()}`;
    await a.fill('#title', missedTitle);
    await a.focus('#title');
    await a.keyboard.press('Enter');
    await a.locator('#tasks li .task-title', { hasText: missedTitle }).waitFor({ timeout: 10000 });
    proxy.restore();
    const resumed = await b.locator('#tasks li .task-title', { hasText: missedTitle })
      .waitFor({ timeout: 30000 }).then(() => true, () => false);
    report.reconnect = { dropped, resumed, stream_urls: streamUrls };
    proxy.close();
    step('reconnect');

    // 4. A reminder due in 3 s rings the bell in both of Alice's pages, not in Bob's.
    const at = new Date(Date.now() + 3000).toISOString();
    const r = await fetch(`${api}/tasks`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ title: `Remind ${unique()}`, reminders: [{ at }] }),
    });
    report.reminder = { create_status: r.status };
    const rang = (p) => p.locator('#unread', { hasText: /^1$/ }).waitFor({ timeout: 60000 }).then(() => true, () => false);
    const [ringA, ringB] = await Promise.all([rang(a), rang(b)]);
    report.reminder.bell_a = await a.textContent('#unread');
    report.reminder.bell_b = await b.textContent('#unread');
    report.reminder.rang = ringA && ringB;
    report.reminder.bell_other = await c.textContent('#unread');
    // The inbox by keyboard: open it, mark the notification read; B's bell follows live.
    await a.focus('#bell');
    await a.keyboard.press('Enter');
    await a.locator('#notifications li button').first().waitFor({ timeout: 10000 });
    await a.focus('#notifications li button');
    await a.keyboard.press('Enter');
    report.reminder.read_b = await b.locator('#unread', { hasText: /^0$/ })
      .waitFor({ timeout: 10000 }).then(() => true, () => false);
    step('reminder');

    // 5. Phone width: nothing wider than the viewport.
    report.phone_overflow = await a.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  } catch (e) {
    report.error = String(e && e.stack ? e.stack : e);
  } finally {
    report.console_errors = consoleErrors;
    await browser.close();
  }
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main();
