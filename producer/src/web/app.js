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

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
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
    const detail = (json && (json.detail || json.title)) || `${resp.status} ${resp.statusText}`;
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
  $('tasks').replaceChildren();
  $('notifications').replaceChildren();
  $('app').hidden = true;
  $('session').hidden = true;
  $('auth').hidden = false;
  setLive('offline');
  showMessage(message || '');
  $('email').focus();
}

// --- Tasks --------------------------------------------------------------------------------

async function loadTasks() {
  const params = new URLSearchParams();
  const show = $('show').value;
  if (show) params.set('status', show);
  const q = $('search').value.trim();
  if (q) params.set('q', q);
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

function renderTasks(items) {
  const list = $('tasks');
  const focused = document.activeElement && document.activeElement.dataset.key;
  const rows = items.map((task) => {
    const li = document.createElement('li');
    li.dataset.id = task.id;
    li.className = task.status === 'completed' ? 'task done' : 'task';
    const title = document.createElement('span');
    title.className = 'task-title';
    // textContent, never innerHTML: titles are user input.
    title.textContent = task.title;
    li.append(title);
    if (task.due_at) {
      const due = document.createElement('span');
      due.className = 'due';
      due.textContent = `due ${formatInstant(task.due_at)}`;
      li.append(due);
    }
    const act = (path, method) => async () => {
      try {
        await api(method, path);
      } catch (e) {
        showMessage(e.message);
      }
      await loadTasks();
    };
    const toggle = task.status === 'completed'
      ? button('Reopen', act(`/tasks/${task.id}/reopen`, 'POST'), `Reopen ${task.title}`)
      : button('Complete', act(`/tasks/${task.id}/complete`, 'POST'), `Complete ${task.title}`);
    toggle.dataset.key = `toggle-${task.id}`;
    const del = button('Delete', act(`/tasks/${task.id}`, 'DELETE'), `Delete ${task.title}`);
    del.dataset.key = `delete-${task.id}`;
    li.append(toggle, del);
    return li;
  });
  if (rows.length === 0) {
    const li = document.createElement('li');
    li.textContent = 'No tasks.';
    rows.push(li);
  }
  list.replaceChildren(...rows);
  // A re-render after a live event must not throw a keyboard user's focus away.
  if (focused) {
    const again = list.querySelector(`[data-key="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
}

async function createTask(event) {
  event.preventDefault();
  const body = { title: $('title').value.trim() };
  const due = $('due').value;
  if (due) body.due_at = localToRfc3339(due);
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
  $('title').focus();
  await loadTasks();
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
  if (rows.length === 0) {
    const li = document.createElement('li');
    li.textContent = 'Nothing here.';
    rows.push(li);
  }
  $('notifications').replaceChildren(...rows);
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
$('search-form').addEventListener('submit', (e) => {
  e.preventDefault();
  loadTasks();
});
$('show').addEventListener('change', loadTasks);
$('bell').addEventListener('click', toggleInbox);
$('read-all').addEventListener('click', async () => {
  try {
    await api('POST', '/notifications/read-all');
  } catch (e) {
    showMessage(e.message);
  }
  await Promise.all([loadInbox(), loadUnread()]);
});
