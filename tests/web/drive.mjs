// Drives Taskflow's web page in headless Chromium (playwright-core, the system chromium) and
// prints one JSON report on stdout for tests/tests/web.rs to assert on. Checks that need a
// bound (latency) are measured here but judged by the Rust test.
//
// Usage: node drive.mjs <api url>   (env: PLAYWRIGHT_CORE = the playwright-core directory,
// AXE_CORE = the axe-core directory, CHROMIUM = the browser binary, SCREENSHOTS = a
// directory to write the README's screenshots into, or empty)

import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';

const api = process.argv[2];
const require = createRequire(path.join(process.env.PLAYWRIGHT_CORE, 'node_modules', 'x.js'));
const { chromium } = require('playwright-core');
const AXE_SOURCE = fs.readFileSync(path.join(process.env.AXE_CORE, 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');
const SHOTS = process.env.SCREENSHOTS || '';

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

/** axe-core on the page as it is now: the serious and critical violations. The script goes
 * in through the DevTools protocol (evaluate), which the page's CSP does not govern. */
async function audit(page, view) {
  await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => ({ view, id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
}

/** Desktop and phone-width screenshots of `page` as it is now, when asked for. */
async function shoot(page, name, focus) {
  if (!SHOTS) return;
  const size = page.viewportSize();
  for (const [kind, width, height] of [['desktop', 1280, 900], ['phone', 390, 844]]) {
    await page.setViewportSize({ width, height });
    // Show `focus` (a part of the open dialog) rather than wherever the page was scrolled.
    if (focus) await page.evaluate((sel) => document.querySelector(sel).scrollIntoView(), focus);
    else await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: path.join(SHOTS, `${name}-${kind}.png`), fullPage: !focus });
  }
  await page.setViewportSize(size);
}

/** `datetime-local` value `days` from now at `hh:mm`, in the browser's zone. */
const localAt = (page, days, hh, mm) => page.evaluate(([d, h, m]) => {
  const t = new Date();
  t.setDate(t.getDate() + d);
  t.setHours(h, m, 0, 0);
  const p = (n) => String(n).padStart(2, '0');
  return `${t.getFullYear()}-${p(t.getMonth() + 1)}-${p(t.getDate())}T${p(t.getHours())}:${p(t.getMinutes())}`;
}, [days, hh, mm]);

const taskTitles = (page) => page.$$eval('#tasks li .task-title', (els) => els.map((e) => e.textContent));

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    args: ['--no-sandbox'],
  });
  const consoleErrors = [];
  // B's proxy stays up to the end: B keeps making requests through it.
  let proxyRef = null;
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
    report.zone = await a.evaluate(() => Intl.DateTimeFormat().resolvedOptions().timeZone);
    step('page loaded');

    const alice = `alice-${unique()}@example.test`;
    const bob = `bob-${unique()}@example.test`;
    await session(a, alice, true);
    // B goes through the proxy (its own origin; the page only talks to its origin).
    const proxy = await startProxy();
    proxyRef = proxy;
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

    // 5. Plain words next to the RRULE, from the worker's engine: presets, a custom rule and
    // a broken one, in the new-task form.
    const words = {};
    await a.fill('#title', `Standup ${unique()}`);
    const standup = await a.inputValue('#title');
    await a.fill('#due', await localAt(a, 1, 9, 0));
    await a.selectOption('#repeat', 'FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR');
    await a.locator('#rrule-words', { hasText: 'every weekday at 09:00' }).waitFor({ timeout: 10000 });
    words.preset = await a.textContent('#rrule-words');
    words.preset_next = await a.$$eval('#rrule-next li', (els) => els.length);
    await a.fill('#rrule', 'FREQ=MONTHLY;BYDAY=1MO');
    await a.locator('#rrule-words', { hasText: 'first Monday' }).waitFor({ timeout: 10000 });
    words.custom = await a.textContent('#rrule-words');
    words.custom_select = await a.inputValue('#repeat');
    await a.fill('#rrule', 'FREQ=SOMETIMES');
    await a.locator('#rrule[aria-invalid="true"]').waitFor({ timeout: 10000 });
    words.invalid = await a.textContent('#rrule-words');
    await a.selectOption('#repeat', 'FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR');
    await a.locator('#rrule-words', { hasText: 'every weekday' }).waitFor({ timeout: 10000 });
    await a.selectOption('#priority', 'high');
    await a.fill('#tags', 'work, daily');
    await a.focus('#title');
    await a.keyboard.press('Enter');
    await row(a, standup).waitFor({ timeout: 10000 });
    words.badges = await row(a, standup).locator('.meta').textContent();
    // The list's filters: priority and tag narrow it to this task.
    await a.selectOption('#filter-priority', 'high');
    await a.fill('#filter-tag', '#daily');
    await a.focus('#filter-tag');
    await a.keyboard.press('Enter');
    await row(a, title).waitFor({ state: 'detached', timeout: 10000 });
    words.filtered = await taskTitles(a);
    await a.selectOption('#filter-priority', '');
    await a.fill('#filter-tag', '');
    await a.keyboard.press('Enter');
    await row(a, title).waitFor({ timeout: 10000 });
    report.words = words;
    step('recurrence words');

    // 6. Completing the recurring task brings its next instance into both pages.
    const firstId = await row(a, standup).getAttribute('data-id');
    await a.click(`#tasks li[data-id="${firstId}"] button[aria-label="Complete ${standup}"]`);
    const nextRow = (p) => p.locator(`#tasks li:not([data-id="${firstId}"])`, { has: p.locator('.task-title', { hasText: standup }) });
    const nextInA = await nextRow(a).waitFor({ timeout: 30000 }).then(() => true, () => false);
    const nextInB = await nextRow(b).waitFor({ timeout: 30000 }).then(() => true, () => false);
    const nextId = nextInA ? await nextRow(a).getAttribute('data-id') : null;
    report.recurring = { next_in_a: nextInA, next_in_b: nextInB };
    step('next instance');

    // 7. The task dialog: series (next occurrences, instances) and history (from the audit
    // worker), then a reminder added in plain words.
    await a.click(`#tasks li[data-id="${nextId}"] button[aria-label="Open ${standup}"]`);
    await a.locator('#detail[open]').waitFor({ timeout: 10000 });
    await a.locator('#series-instances li', { hasText: 'completed' }).waitFor({ timeout: 20000 });
    report.series = {
      visible: await a.isVisible('#series'),
      words: await a.textContent('#series-words'),
      next: await a.$$eval('#series-next li', (els) => els.map((e) => e.textContent)),
      instances: await a.$$eval('#series-instances li', (els) => els.map((e) => e.textContent)),
    };
    // The history fills in as the audit worker records the events; a live entry refreshes it.
    await a.locator('#history li', { hasText: 'Created' }).waitFor({ timeout: 30000 }).catch(() => {});
    report.history = await a.$$eval('#history > li', (els) => els.map((e) => e.textContent));
    if (SHOTS) await shoot(a, 'task', '#series');
    report.axe = (await audit(a, 'task dialog'));
    await a.fill('#edit-remind-before', '15');
    await a.click('#edit-add-before');
    report.reminder_words = await a.$$eval('#edit-reminders li', (els) => els.map((e) => e.textContent));
    await a.click('#edit-save');
    await a.locator('#detail-message', { hasText: 'Saved.' }).waitFor({ timeout: 10000 });
    const badge = a.locator(`#tasks li[data-id="${nextId}"] .meta`);
    await badge.filter({ hasText: '1 reminder' }).waitFor({ timeout: 10000 }).catch(() => {});
    report.reminder_badge = await badge.textContent();
    await a.keyboard.press('Escape');
    await a.locator('#detail[open]').waitFor({ state: 'detached', timeout: 10000 }).catch(() => {});
    report.dialog_closed = !(await a.evaluate(() => document.getElementById('detail').open));
    step('dialog');

    // 8. Edit in two pages at once: B saves first; A, still editing the version it opened,
    // meets the 412, sees B's version and keeps its own.
    const editTitle = `Edit ${unique()}`;
    await fetch(`${api}/tasks`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ title: editTitle }),
    });
    await row(a, editTitle).waitFor({ timeout: 10000 });
    await row(b, editTitle).waitFor({ timeout: 10000 });
    await a.click(`#tasks li button[aria-label="Open ${editTitle}"]`);
    await b.click(`#tasks li button[aria-label="Open ${editTitle}"]`);
    await a.fill('#edit-title', `${editTitle} by A`);
    await b.fill('#edit-title', `${editTitle} by B`);
    await b.click('#edit-save');
    await b.locator('#detail-message', { hasText: 'Saved.' }).waitFor({ timeout: 10000 });
    await b.keyboard.press('Escape');
    await a.click('#edit-save');
    const conflict = {};
    conflict.shown = await a.locator('#conflict').waitFor({ timeout: 10000 }).then(() => true, () => false);
    conflict.text = await a.textContent('#conflict-text');
    conflict.fields = await a.$$eval('#conflict-fields tr', (els) => els.map((e) => Array.from(e.children).map((c) => c.textContent)));
    conflict.focus = await a.evaluate(() => document.activeElement && document.activeElement.id);
    report.axe.push(...(await audit(a, 'conflict')));
    if (SHOTS) await shoot(a, 'conflict', '#conflict');
    await a.click('#conflict-mine');
    await a.locator('#detail-message', { hasText: 'Saved.' }).waitFor({ timeout: 10000 });
    conflict.saved_title = await a.inputValue('#edit-title');
    conflict.b_sees = await row(b, `${editTitle} by A`).waitFor({ timeout: 10000 }).then(() => true, () => false);
    // Both saves in the task's history, from the audit worker, shown live in the open dialog.
    await a.locator('#history > li', { hasText: 'version 3' }).waitFor({ timeout: 30000 }).catch(() => {});
    conflict.history = await a.$$eval('#history > li', (els) => els.map((e) => e.textContent));
    await a.keyboard.press('Escape');
    report.conflict = conflict;
    step('conflict');

    // 9. The other views: axe on the list and the inbox, and on a logged-out page.
    report.axe.push(...(await audit(a, 'tasks')));
    if (SHOTS) await shoot(a, 'tasks');
    if (await a.isHidden('#inbox')) {
      await a.focus('#bell');
      await a.keyboard.press('Enter');
    }
    await a.locator('#inbox').waitFor({ timeout: 10000 });
    report.axe.push(...(await audit(a, 'inbox')));
    const d = await newPage('d');
    await d.goto(`${api}/`);
    report.axe.push(...(await audit(d, 'log in')));
    if (SHOTS) await shoot(d, 'login');
    // The audit's control: a page with a known critical violation (an image without text).
    const e = await newPage('control');
    await e.setContent('<!doctype html><html lang="en"><title>control</title><img src="data:,">');
    report.axe_control = (await audit(e, 'control')).map((v) => v.id);
    step('accessibility');

    // 10. Phone width: nothing wider than the viewport.
    report.phone_overflow = await a.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  } catch (e) {
    report.error = String(e && e.stack ? e.stack : e);
  } finally {
    if (proxyRef) proxyRef.close();
    report.console_errors = consoleErrors;
    await browser.close();
  }
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main();
