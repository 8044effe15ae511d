// Taskflow's web page: plain DOM, no framework, no build step. The access token lives only
// in this module's memory (never localStorage): a script injected elsewhere on the origin
// cannot read a stored token, at the price of logging in again after a reload.

const $ = (id) => document.getElementById(id);

const state = {
  token: null,
  lastEventId: null,
  source: null,
  retry: null,
  retryDelay: 1000,
  // Bumped on log out so a reconnect scheduled before it does nothing.
  generation: 0,
};

const TASK_EVENTS = ['TaskCreated', 'TaskUpdated', 'TaskCompleted', 'TaskReopened', 'TaskDeleted', 'ReminderSnoozed'];
const INBOX_EVENTS = ['ReminderDue', 'NotificationRead'];

function showMessage(text) {
  $('message').textContent = text;
}

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function api(method, path, body, extraHeaders) {
  const headers = { Accept: 'application/json', ...(extraHeaders || {}) };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!resp.ok) {
    // problem+json answers carry a human-readable detail.
    let detail = (json && (json.detail || json.title)) || `${resp.status} ${resp.statusText}`;
    // A 422 names each invalid field: say which and why, not only "the request is invalid".
    if (json && Array.isArray(json.errors) && json.errors.length) {
      detail = json.errors.map((e) => `${e.field}: ${e.reason}`).join('; ');
    }
    if (resp.status === 401 && state.token) {
      loggedOut('Your session has ended; please log in again.');
    }
    throw new ApiError(resp.status, detail);
  }
  return json;
}

// --- Dates: the browser's zone in, RFC 3339 with offset out -------------------------------

function pad(n) {
  return String(n).padStart(2, '0');
}

/** `YYYY-MM-DDTHH:MM` of a datetime-local input, read in the browser's zone, as RFC 3339
 * with the zone's offset at that instant (e.g. `2026-05-01T09:00:00+02:00`). */
function localToRfc3339(value) {
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return null;
  const offset = -d.getTimezoneOffset();
  const sign = offset >= 0 ? '+' : '-';
  const abs = Math.abs(offset);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:00${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

function formatInstant(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

// --- Auth ---------------------------------------------------------------------------------

async function logIn(signUp) {
  const creds = { email: $('email').value, password: $('password').value };
  showMessage('');
  try {
    if (signUp) await api('POST', '/auth/signup', creds);
    const answer = await api('POST', '/auth/login', creds);
    state.token = answer.access_token;
  } catch (e) {
    showMessage(e.message);
    return;
  }
  $('password').value = '';
  $('auth').hidden = true;
  $('app').hidden = false;
  $('session').hidden = false;
  $('title').focus();
  await Promise.all([loadTasks(), loadUnread()]);
  connect();
}

function loggedOut(message) {
  state.token = null;
  state.lastEventId = null;
  state.generation += 1;
  if (state.source) state.source.close();
  state.source = null;
  clearTimeout(state.retry);
  closeDetail();
  $('tasks').replaceChildren();
  $('notifications').replaceChildren();
  $('app').hidden = true;
  $('session').hidden = true;
  $('auth').hidden = false;
  setLive('offline');
  showMessage(message || '');
  $('email').focus();
}

// --- Plain words ----------------------------------------------------------------------------

/** The browser's IANA zone: recurrence rules are evaluated on its wall clock. */
const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';

/** `YYYY-MM-DDTHH:MM` for a datetime-local input, in the browser's zone. */
function isoToLocalInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

const UNITS = [['W', 'week'], ['D', 'day'], ['H', 'hour'], ['M', 'minute'], ['S', 'second']];

/** `PT1H30M` -> "1 hour 30 minutes". */
function durationWords(iso) {
  const m = /^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$/.exec(iso || '');
  if (!m) return iso;
  const parts = [];
  UNITS.forEach(([, unit], i) => {
    const n = Number(m[i + 1] || 0);
    if (n) parts.push(`${n} ${unit}${n === 1 ? '' : 's'}`);
  });
  return parts.length ? parts.join(' ') : '0 minutes';
}

/** A reminder in plain words: "15 minutes before the due date" or "at <local time>". */
function reminderWords(r) {
  let words = r.before ? `${durationWords(r.before)} before the due date` : `at ${formatInstant(r.at)}`;
  if (r.snoozed_until) words += `, snoozed until ${formatInstant(r.snoozed_until)}`;
  return words;
}

const EVENT_WORDS = {
  TaskCreated: 'Created',
  TaskUpdated: 'Changed',
  TaskCompleted: 'Completed',
  TaskReopened: 'Reopened',
  TaskDeleted: 'Deleted',
  ReminderSnoozed: 'Reminder snoozed',
  ReminderDue: 'Reminder rang',
};

function shortValue(v) {
  if (v === null || v === undefined || v === '') return 'none';
  if (typeof v === 'string') {
    const d = /^\d{4}-\d\d-\d\dT/.test(v) ? new Date(v) : null;
    if (d && !Number.isNaN(d.getTime())) return d.toLocaleString();
    return v.length > 60 ? `${v.slice(0, 57)}...` : v;
  }
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v.join(', ') || 'none';
  if (v && typeof v === 'object' && v.rrule) return v.rrule;
  const text = JSON.stringify(v);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

// --- Priorities: one list for the three selects that offer them ---------------------------

const PRIORITIES = [['low', 'Low'], ['medium', 'Medium'], ['high', 'High'], ['urgent', 'Urgent']];

/** Fills every `select[data-priorities]`; a non-empty attribute value is a first "no
 * choice" option (the list filter's "Any"), otherwise medium is preselected. */
function fillPriorities() {
  for (const select of document.querySelectorAll('select[data-priorities]')) {
    const none = select.dataset.priorities;
    const choices = none ? [['', none], ...PRIORITIES] : PRIORITIES;
    setOptions(select, choices, none ? '' : 'medium');
  }
}

/** `select`'s options from `[value, label]` pairs, `selected` chosen by default. */
function setOptions(select, pairs, selected) {
  select.replaceChildren(...pairs.map(([value, label]) => {
    const o = document.createElement('option');
    o.value = value;
    o.textContent = label;
    o.defaultSelected = value === selected;
    return o;
  }));
}
fillPriorities();

// --- Recurrence editor (the new-task form and the edit dialog share it) ---------------------

const PRESETS = [
  ['', 'Does not repeat'],
  ['FREQ=DAILY', 'Every day'],
  ['FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR', 'Every weekday'],
  ['FREQ=WEEKLY', 'Every week'],
  ['FREQ=MONTHLY', 'Every month'],
  ['FREQ=YEARLY', 'Every year'],
  ['custom', 'Custom rule'],
];

/** Wires a preset select, an RRULE field, its plain-words line and its next-occurrences
 * list; `dueOf()` gives the due input's value (the rule's anchor). Returns `{ set(rrule),
 * value() }`. The words come from `POST /recurrence/preview`, the worker's own engine. */
function recurrenceEditor(prefix, dueOf) {
  const select = $(`${prefix}repeat`);
  const input = $(`${prefix}rrule`);
  const words = $(`${prefix}rrule-words`);
  const next = $(`${prefix}rrule-next`);
  setOptions(select, PRESETS, '');
  let timer = null;
  let asked = 0;
  words.textContent = 'Does not repeat.';
  const preview = async () => {
    const rrule = input.value.trim();
    const ticket = ++asked;
    input.removeAttribute('aria-invalid');
    next.replaceChildren();
    if (!rrule) {
      words.textContent = 'Does not repeat.';
      return;
    }
    const body = { rrule, tz: ZONE };
    const due = dueOf();
    if (due) body.start = localToRfc3339(due);
    try {
      const p = await api('POST', '/recurrence/preview', body);
      if (ticket !== asked) return;
      words.textContent = `Repeats ${p.description} (${ZONE}).`;
      next.replaceChildren(...p.next.slice(0, 3).map((t) => item(formatInstant(t))));
    } catch (e) {
      if (ticket !== asked) return;
      input.setAttribute('aria-invalid', 'true');
      words.textContent = e.message;
    }
  };
  const later = () => {
    clearTimeout(timer);
    timer = setTimeout(preview, 250);
  };
  const syncPreset = () => {
    const rrule = input.value.trim().replace(/^RRULE:/i, '');
    const preset = PRESETS.find(([v]) => v === rrule && v !== 'custom');
    select.value = preset ? preset[0] : 'custom';
  };
  select.addEventListener('change', () => {
    if (select.value !== 'custom') input.value = select.value;
    else input.focus();
    preview();
  });
  input.addEventListener('input', () => {
    syncPreset();
    later();
  });
  return {
    set(rrule) {
      input.value = rrule || '';
      syncPreset();
      preview();
    },
    value: () => input.value.trim(),
    refresh: later,
  };
}

function parseTags(text) {
  return text.split(',').map((t) => t.trim()).filter(Boolean);
}

// --- Tasks --------------------------------------------------------------------------------

async function loadTasks() {
  const params = new URLSearchParams();
  const show = $('show').value;
  if (show) params.set('status', show);
  const q = $('search').value.trim();
  if (q) params.set('q', q);
  const priority = $('filter-priority').value;
  if (priority) params.set('priority', priority);
  const tag = $('filter-tag').value.trim().replace(/^#/, '');
  if (tag) params.set('tag', tag);
  params.set('limit', '200');
  let page;
  try {
    page = await api('GET', `/tasks?${params}`);
  } catch (e) {
    showMessage(e.message);
    return;
  }
  renderTasks(page.items);
}

function button(label, onClick, extra) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  if (extra) b.setAttribute('aria-label', extra);
  b.addEventListener('click', onClick);
  return b;
}

/** A list item holding `text`. */
function item(text) {
  const li = document.createElement('li');
  li.textContent = text;
  return li;
}

/** `rows`, or one item saying there is nothing. */
function orEmpty(rows, text) {
  return rows.length ? rows : [item(text)];
}

function span(className, text) {
  const s = document.createElement('span');
  s.className = className;
  s.textContent = text;
  return s;
}

function renderTasks(items) {
  const list = $('tasks');
  const focused = document.activeElement && document.activeElement.dataset.key;
  const rows = items.map((task) => {
    const li = document.createElement('li');
    li.dataset.id = task.id;
    li.className = task.status === 'completed' ? 'task done' : 'task';
    // textContent, never innerHTML: titles are user input.
    li.append(span('task-title', task.title));
    const meta = document.createElement('span');
    meta.className = 'meta';
    if (task.due_at) meta.append(span('due', `due ${formatInstant(task.due_at)}`));
    if (task.priority !== 'medium') meta.append(span(`badge ${task.priority}`, task.priority));
    if (task.recurrence) meta.append(span('badge', 'repeats'));
    if (task.reminders.length) {
      meta.append(span('badge', `${task.reminders.length} reminder${task.reminders.length === 1 ? '' : 's'}`));
    }
    for (const tag of task.tags) meta.append(span('tag', `#${tag}`));
    li.append(meta);
    const act = (path, method) => async () => {
      try {
        await api(method, path);
      } catch (e) {
        showMessage(e.message);
      }
      await loadTasks();
    };
    const open = button('Open', () => openDetail(task.id), `Open ${task.title}`);
    open.dataset.key = `open-${task.id}`;
    const toggle = task.status === 'completed'
      ? button('Reopen', act(`/tasks/${task.id}/reopen`, 'POST'), `Reopen ${task.title}`)
      : button('Complete', act(`/tasks/${task.id}/complete`, 'POST'), `Complete ${task.title}`);
    toggle.dataset.key = `toggle-${task.id}`;
    const del = button('Delete', act(`/tasks/${task.id}`, 'DELETE'), `Delete ${task.title}`);
    del.dataset.key = `delete-${task.id}`;
    li.append(open, toggle, del);
    return li;
  });
  list.replaceChildren(...orEmpty(rows, 'No tasks.'));
  // A re-render after a live event must not throw a keyboard user's focus away.
  if (focused) {
    const again = list.querySelector(`[data-key="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
}

const newRecurrence = recurrenceEditor('', () => $('due').value);

async function createTask(event) {
  event.preventDefault();
  const body = { title: $('title').value.trim(), priority: $('priority').value };
  const due = $('due').value;
  if (due) body.due_at = localToRfc3339(due);
  const tags = parseTags($('tags').value);
  if (tags.length) body.tags = tags;
  const rrule = newRecurrence.value();
  if (rrule) body.recurrence = { rrule, tz: ZONE, mode: due ? 'from_due' : 'from_completion' };
  const before = $('remind-before').value;
  const at = $('remind-at').value;
  if (before && !due) {
    showMessage('A reminder "minutes before" needs a due date.');
    return;
  }
  const reminders = [];
  if (before) reminders.push({ before: `PT${Number.parseInt(before, 10)}M` });
  if (at) reminders.push({ at: localToRfc3339(at) });
  if (reminders.length) body.reminders = reminders;
  showMessage('');
  try {
    await api('POST', '/tasks', body);
  } catch (e) {
    showMessage(e.message);
    return;
  }
  $('new-task').reset();
  newRecurrence.set('');
  $('title').focus();
  await loadTasks();
}

// --- One task: edit, series, history ------------------------------------------------------

const detail = {
  task: null, // the version the form was filled from
  dirty: false,
  reminders: [], // the form's reminders: { id?, before? | at?, snoozed_until? }
  pending: null, // the patch that met a 412
  opener: null,
};

const editRecurrence = recurrenceEditor('edit-', () => $('edit-due').value);

function detailMessage(text) {
  $('detail-message').textContent = text;
}

async function openDetail(id) {
  detail.opener = document.activeElement;
  let task;
  try {
    task = await api('GET', `/tasks/${id}`);
  } catch (e) {
    showMessage(e.message);
    return;
  }
  fillForm(task);
  detailMessage('');
  $('conflict').hidden = true;
  const dialog = $('detail');
  if (!dialog.open) dialog.showModal();
  $('edit-title').focus();
  await Promise.all([loadSeries(task), loadHistory(task.id)]);
}

function closeDetail() {
  const dialog = $('detail');
  if (dialog.open) dialog.close();
}

function fillForm(task) {
  detail.task = task;
  detail.dirty = false;
  $('detail-title').textContent = task.title;
  $('edit-title').value = task.title;
  $('edit-description').value = task.description || '';
  $('edit-due').value = isoToLocalInput(task.due_at);
  $('edit-priority').value = task.priority;
  $('edit-tags').value = task.tags.join(', ');
  $('edit-mode').value = task.recurrence ? task.recurrence.mode : (task.due_at ? 'from_due' : 'from_completion');
  editRecurrence.set(task.recurrence ? task.recurrence.rrule : '');
  detail.reminders = task.reminders.map((r) => ({ ...r }));
  renderReminders();
}

function renderReminders() {
  const rows = detail.reminders.map((r, i) => {
    const li = document.createElement('li');
    const words = reminderWords(r);
    li.append(span('task-title', words));
    li.append(button('Remove', () => {
      detail.reminders.splice(i, 1);
      detail.dirty = true;
      renderReminders();
      $('edit-remind-before').focus();
    }, `Remove reminder ${words}`));
    return li;
  });
  $('edit-reminders').replaceChildren(...orEmpty(rows, 'No reminders.'));
}

/** The form as the task's fields, in the API's shapes. */
function formFields() {
  const due = $('edit-due').value;
  const rrule = editRecurrence.value();
  const recurrence = rrule
    ? {
      rrule,
      tz: (detail.task.recurrence && detail.task.recurrence.tz) || ZONE,
      mode: $('edit-mode').value,
      exdates: detail.task.recurrence ? detail.task.recurrence.exdates : [],
    }
    : null;
  return {
    title: $('edit-title').value.trim(),
    description: $('edit-description').value.trim() || null,
    // The field has minutes only: an untouched one keeps the stored instant (its seconds).
    due_at: due ? (due === isoToLocalInput(detail.task.due_at) ? detail.task.due_at : localToRfc3339(due)) : null,
    priority: $('edit-priority').value,
    tags: parseTags($('edit-tags').value),
    recurrence,
    reminders: detail.reminders.map((r) => {
      // Unchanged reminders keep their id (and so their snooze) and their own channels.
      const out = r.before ? { id: r.id, before: r.before } : { id: r.id, at: r.at };
      if (r.channels) out.channels = r.channels;
      return out;
    }),
  };
}

const sameInstant = (a, b) => (a === null || b === null ? a === b : new Date(a).getTime() === new Date(b).getTime());

/** The fields of `fields` that differ from `task` (a merge patch). */
function diff(task, fields) {
  const patch = {};
  if (fields.title !== task.title) patch.title = fields.title;
  if (fields.description !== (task.description || null)) patch.description = fields.description;
  if (!sameInstant(fields.due_at, task.due_at || null)) patch.due_at = fields.due_at;
  if (fields.priority !== task.priority) patch.priority = fields.priority;
  if (JSON.stringify(fields.tags) !== JSON.stringify(task.tags)) patch.tags = fields.tags;
  const rec = task.recurrence ? { rrule: task.recurrence.rrule, mode: task.recurrence.mode } : null;
  const mine = fields.recurrence ? { rrule: fields.recurrence.rrule, mode: fields.recurrence.mode } : null;
  if (JSON.stringify(rec) !== JSON.stringify(mine)) patch.recurrence = fields.recurrence;
  const rem = (list) => JSON.stringify(list.map((r) => [r.id || null, r.before || null, r.at ? new Date(r.at).getTime() : null]));
  if (rem(fields.reminders) !== rem(task.reminders)) patch.reminders = fields.reminders;
  return patch;
}

async function saveTask(event) {
  event.preventDefault();
  const task = detail.task;
  const patch = diff(task, formFields());
  if (Object.keys(patch).length === 0) {
    detailMessage('Nothing changed.');
    return;
  }
  await sendPatch(task, patch);
}

/** PATCH with `If-Match` on the version the edit started from. Optimistic: the list shows
 * the new title at once; a 412 puts the saved version back and asks. */
async function sendPatch(base, patch) {
  detailMessage('');
  const row = document.querySelector(`#tasks li[data-id="${CSS.escape(base.id)}"] .task-title`);
  if (row && patch.title) row.textContent = patch.title;
  try {
    const saved = await api('PATCH', `/tasks/${base.id}`, patch, { 'If-Match': `"${base.version}"` });
    detail.pending = null;
    $('conflict').hidden = true;
    fillForm(saved);
    detailMessage('Saved.');
    await Promise.all([loadTasks(), loadSeries(saved), loadHistory(saved.id)]);
  } catch (e) {
    if (e.status === 412) {
      await showConflict(base, patch);
    } else {
      if (row) row.textContent = base.title;
      detailMessage(e.message);
    }
  }
}

const FIELD_NAMES = {
  title: 'Title', description: 'Description', due_at: 'Due', priority: 'Priority',
  tags: 'Tags', recurrence: 'Repeats', reminders: 'Reminders',
};

async function showConflict(base, patch) {
  let newer;
  try {
    newer = await api('GET', `/tasks/${base.id}`);
  } catch (e) {
    detailMessage(e.message);
    return;
  }
  const row = document.querySelector(`#tasks li[data-id="${CSS.escape(base.id)}"] .task-title`);
  if (row) row.textContent = newer.title;
  detail.pending = { newer, patch };
  $('conflict-text').textContent = `Someone saved version ${newer.version} of this task after you opened version ${base.version}. Your changes are not saved yet.`;
  const rows = Object.keys(patch).map((field) => {
    const tr = document.createElement('tr');
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = FIELD_NAMES[field] || field;
    const theirs = document.createElement('td');
    theirs.textContent = shortValue(field === 'reminders' ? newer.reminders.map(reminderWords) : newer[field]);
    const yours = document.createElement('td');
    yours.textContent = shortValue(field === 'reminders' ? patch.reminders.map(reminderWords) : patch[field]);
    tr.append(th, theirs, yours);
    return tr;
  });
  $('conflict-fields').replaceChildren(...rows);
  $('conflict').hidden = false;
  $('conflict-theirs').focus();
}

async function useTheirs() {
  const p = detail.pending;
  if (!p) return;
  detail.pending = null;
  $('conflict').hidden = true;
  fillForm(p.newer);
  detailMessage('Showing the saved version.');
  $('edit-title').focus();
  await loadHistory(p.newer.id);
}

async function keepMine() {
  const p = detail.pending;
  if (!p) return;
  detail.task = p.newer;
  await sendPatch(p.newer, p.patch);
}

async function loadSeries(task) {
  const section = $('series');
  if (!task.series_id) {
    section.hidden = true;
    return;
  }
  section.hidden = false;
  $('series-words').textContent = '';
  if (task.recurrence) {
    try {
      const p = await api('POST', '/recurrence/preview', {
        rrule: task.recurrence.rrule, tz: task.recurrence.tz, start: task.occurrence, count: 1,
      });
      $('series-words').textContent = `Repeats ${p.description} (${task.recurrence.tz}).`;
    } catch {
      $('series-words').textContent = `Rule: ${task.recurrence.rrule}`;
    }
  } else {
    $('series-words').textContent = 'This series no longer repeats.';
  }
  const next = (task.next_occurrences || []).map((t) => item(formatInstant(t)));
  $('series-next').replaceChildren(...orEmpty(next, 'None: the series has ended.'));
  let page;
  try {
    page = await api('GET', `/tasks?series_id=${task.series_id}&limit=50`);
  } catch (e) {
    detailMessage(e.message);
    return;
  }
  $('series-instances').replaceChildren(...page.items.map((t) => {
    const li = document.createElement('li');
    const when = t.occurrence ? formatInstant(t.occurrence) : '';
    li.textContent = `${when}: ${t.status}${t.id === task.id ? ' (this one)' : ''}`;
    return li;
  }));
}

async function loadHistory(id) {
  let history;
  try {
    history = await api('GET', `/tasks/${id}/history`);
  } catch (e) {
    if (e.status !== 404) detailMessage(e.message);
    $('history').replaceChildren();
    return;
  }
  const rows = history.items.map((h) => {
    const li = document.createElement('li');
    li.append(span('task-title', `${EVENT_WORDS[h.event_type] || h.event_type}, ${formatInstant(h.occurred_at)} (version ${h.version})`));
    // A creation lists every field from "none": the task itself says that better.
    if (h.changes.length && h.event_type !== 'TaskCreated') {
      const ul = document.createElement('ul');
      for (const c of h.changes) {
        const item = document.createElement('li');
        item.textContent = `${FIELD_NAMES[c.field] || c.field}: ${shortValue(c.old)} to ${shortValue(c.new)}`;
        ul.append(item);
      }
      li.append(ul);
    }
    return li;
  });
  $('history').replaceChildren(...orEmpty(rows, 'Nothing recorded yet.'));
}

/** A live entry about the task the dialog shows: an untouched form follows it; an edited
 * one is left alone (saving it meets the 412 and asks). */
async function detailFollows() {
  const shown = detail.task;
  if (!$('detail').open || !shown) return;
  let task;
  try {
    task = await api('GET', `/tasks/${shown.id}`);
  } catch (e) {
    if (e.status === 404 && detail.task === shown) detailMessage('This task was deleted elsewhere.');
    return;
  }
  // The dialog may have been closed, or have moved to another task, meanwhile.
  if (detail.task !== shown) return;
  if (!detail.dirty && !detail.pending && task.version !== shown.version) fillForm(task);
  await Promise.all([loadSeries(task), loadHistory(task.id)]);
}

// --- Inbox --------------------------------------------------------------------------------

async function loadUnread() {
  try {
    const answer = await api('GET', '/notifications/unread-count');
    $('unread').textContent = String(answer.unread);
  } catch (e) {
    showMessage(e.message);
  }
}

async function loadInbox() {
  let page;
  try {
    page = await api('GET', '/notifications?limit=50');
  } catch (e) {
    showMessage(e.message);
    return;
  }
  const rows = page.items.map((n) => {
    const li = document.createElement('li');
    li.dataset.id = n.id;
    if (!n.read_at) li.classList.add('unread');
    const text = document.createElement('span');
    text.className = 'task-title';
    text.textContent = `${n.title} (${formatInstant(n.created_at)})`;
    li.append(text);
    if (!n.read_at) {
      li.append(button('Mark read', async () => {
        try {
          await api('POST', `/notifications/${n.id}/read`);
        } catch (e) {
          showMessage(e.message);
        }
        await Promise.all([loadInbox(), loadUnread()]);
      }, `Mark read: ${n.title}`));
    }
    return li;
  });
  $('notifications').replaceChildren(...orEmpty(rows, 'Nothing here.'));
}

function toggleInbox() {
  const inbox = $('inbox');
  inbox.hidden = !inbox.hidden;
  $('bell').setAttribute('aria-expanded', String(!inbox.hidden));
  if (!inbox.hidden) loadInbox();
}

// --- Live updates -------------------------------------------------------------------------

function setLive(text) {
  $('live').textContent = text;
}

/** Opens the feed with a fresh stream token, resuming after the last entry seen. Any error
 * closes the stream and reconnects with a new token: `EventSource`'s own retry would reuse
 * the first token, which is only valid for opening within 60 s. */
async function connect() {
  const generation = state.generation;
  let token;
  try {
    token = (await api('POST', '/feed/stream-tokens')).token;
  } catch {
    if (state.token && generation === state.generation) scheduleReconnect();
    return;
  }
  if (generation !== state.generation) return;
  const params = new URLSearchParams({ access_token: token });
  if (state.lastEventId !== null) params.set('last_event_id', state.lastEventId);
  const source = new EventSource(`/feed/stream?${params}`);
  state.source = source;
  source.onopen = () => {
    state.retryDelay = 1000;
    setLive('live');
  };
  source.onerror = () => {
    source.close();
    if (state.source === source) {
      setLive('reconnecting');
      scheduleReconnect();
    }
  };
  const seen = (e) => {
    if (e.lastEventId) state.lastEventId = e.lastEventId;
  };
  for (const kind of TASK_EVENTS) {
    source.addEventListener(kind, (e) => {
      seen(e);
      loadTasks();
      detailFollows();
    });
  }
  for (const kind of INBOX_EVENTS) {
    source.addEventListener(kind, (e) => {
      seen(e);
      loadUnread();
      if (!$('inbox').hidden) loadInbox();
    });
  }
  // Entries after our position were pruned: reload everything, then keep reading.
  source.addEventListener('resync', () => {
    loadTasks();
    loadUnread();
  });
  source.addEventListener('end', (e) => {
    source.close();
    let reason = '';
    try {
      reason = JSON.parse(e.data).reason;
    } catch {
      reason = '';
    }
    if (reason === 'expired' || reason === 'revoked') {
      loggedOut('Your session has ended; please log in again.');
    } else {
      setLive('reconnecting');
      scheduleReconnect();
    }
  });
}

function scheduleReconnect() {
  clearTimeout(state.retry);
  const delay = state.retryDelay;
  state.retryDelay = Math.min(state.retryDelay * 2, 30000);
  state.retry = setTimeout(connect, delay);
}

// --- Wiring -------------------------------------------------------------------------------

$('auth-form').addEventListener('submit', (e) => {
  e.preventDefault();
  logIn(false);
});
$('signup').addEventListener('click', () => {
  if ($('auth-form').reportValidity()) logIn(true);
});
$('logout').addEventListener('click', () => loggedOut(''));
$('new-task').addEventListener('submit', createTask);
$('due').addEventListener('change', newRecurrence.refresh);
$('edit-form').addEventListener('submit', saveTask);
$('edit-form').addEventListener('input', () => { detail.dirty = true; });
$('edit-due').addEventListener('change', editRecurrence.refresh);
$('detail-close').addEventListener('click', closeDetail);
$('detail').addEventListener('close', () => {
  detail.task = null;
  detail.pending = null;
  // Back where the dialog was opened from, for keyboard users.
  if (detail.opener && document.contains(detail.opener)) detail.opener.focus();
});
$('conflict-theirs').addEventListener('click', useTheirs);
$('conflict-mine').addEventListener('click', keepMine);
$('edit-add-before').addEventListener('click', () => {
  const n = Number.parseInt($('edit-remind-before').value, 10);
  if (!(n > 0)) {
    detailMessage('Minutes before: a whole number from 1.');
    return;
  }
  if (!$('edit-due').value) {
    detailMessage('A reminder "minutes before" needs a due date.');
    return;
  }
  detail.reminders.push({ before: `PT${n}M` });
  detail.dirty = true;
  $('edit-remind-before').value = '';
  renderReminders();
});
$('edit-add-at').addEventListener('click', () => {
  const at = $('edit-remind-at').value;
  if (!at) {
    detailMessage('Pick a date and time for the reminder.');
    return;
  }
  detail.reminders.push({ at: localToRfc3339(at) });
  detail.dirty = true;
  $('edit-remind-at').value = '';
  renderReminders();
});
$('search-form').addEventListener('submit', (e) => {
  e.preventDefault();
  loadTasks();
});
$('show').addEventListener('change', loadTasks);
$('filter-priority').addEventListener('change', loadTasks);
$('bell').addEventListener('click', toggleInbox);
$('read-all').addEventListener('click', async () => {
  try {
    await api('POST', '/notifications/read-all');
  } catch (e) {
    showMessage(e.message);
  }
  await Promise.all([loadInbox(), loadUnread()]);
});
