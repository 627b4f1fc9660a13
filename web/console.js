// easgate console. Every value on a page is set with textContent (never as
// markup), every change is a POST with the session's CSRF token, and every
// action is an easctl command run by the daemon as the logged-in account.
'use strict';

const ROLES = { viewer: 0, helpdesk: 1, admin: 2 };
const state = { user: '', role: 'viewer', csrf: '' };

function $(id) { return document.getElementById(id); }

// el('td', {class: 'mono'}, 'text', childNode, ...): text is always a text node.
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== false && v !== null && v !== undefined) e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat(Infinity)) {
    if (k === null || k === undefined || k === false) continue;
    e.appendChild(typeof k === 'object' ? k : document.createTextNode(String(k)));
  }
  return e;
}

function can(role) { return ROLES[state.role] >= ROLES[role]; }
function setStatus(text, bad) { const s = $('status'); s.textContent = text || ''; s.className = bad ? 'status error' : 'status'; }

async function api(argv, change) {
  const body = new URLSearchParams();
  for (const a of argv) body.append('a', a);
  const opts = change
    ? { method: 'POST', body, headers: { 'X-CSRF-Token': state.csrf } }
    : { method: 'GET' };
  const url = change ? '/api/run' : '/api/run?' + body.toString();
  const r = await fetch(url, Object.assign({ credentials: 'same-origin', cache: 'no-store' }, opts));
  if (r.status === 401) { showLogin(); throw new Error('log in again'); }
  const j = await r.json();
  if (r.status !== 200) throw new Error(j.output || j.error || ('HTTP ' + r.status));
  return j.output;
}
async function apiJson(argv) { return JSON.parse(await api(argv, false)); }

function table(cols, rows, empty, id) {
  if (!rows.length) return el('p', { class: 'empty', id }, empty || 'Nothing to show.');
  return el('table', { id },
    el('thead', {}, el('tr', {}, cols.map(c => el('th', {}, c)))),
    el('tbody', {}, rows));
}
// A throttle class's token bucket as a helpdesk reads it; 0 means unlimited.
function budget(t) { return t.rate || t.burst ? t.burst + ' requests, then ' + t.rate + '/s' : 'unlimited'; }
// The throttle's machine names stay as they are in the JSON API (scripts
// read them); a page says them in a helpdesk's words, with the clock time a
// stage or an empty budget ends (UTC, as every time on these pages).
function untilText(s) { return ' (until ' + new Date(Date.now() + s * 1000).toISOString().slice(11, 19) + ')'; }
function throttleState(t) {
  switch (t.state) {
    case 'ok': return t.budget_wait_s > 0 ? 'throttled' + untilText(t.budget_wait_s) : 'within budget';
    case 'cutoff': return 'cut off: every request refused' + untilText(t.remaining_s);
    case 'loop_throttle': return 'looping: slowed down' + untilText(t.remaining_s);
    case 'loop_quarantine': return 'loop-quarantined' + untilText(t.remaining_s);
    default: return t.state;
  }
}
const THROTTLE_EVENTS = { none: '-', throttled: 'over its budget', cutoff: 'cut off', loop: 'loop detected',
  quarantine: 'loop-quarantined', xdp: 'dropped in the kernel', max_devices: "over the user's device limit" };
function throttleEvent(e) { return THROTTLE_EVENTS[e] || e; }
function pill(v) { return el('span', { class: 'pill ' + v }, v); }
function when(s) { return s && s !== '-' ? s.replace('T', ' ').replace('Z', '') : '-'; }
function devLink(d) {
  return el('a', { href: '#device/' + encodeURIComponent(d.user) + '/' + encodeURIComponent(d.device_id) }, d.device_id);
}

async function deviceAction(verb, d) {
  await api(['device', verb, d.device_id, '--user', d.user], true);
}

// --- pages --------------------------------------------------------------------

async function pageQuarantine(c) {
  const f = { os: el('input', { id: 'q-os', placeholder: 'iOS 7*' }),
              model: el('input', { id: 'q-model', placeholder: 'iPhone' }),
              user: el('input', { id: 'q-user', placeholder: 'user' }) };
  const list = el('div', { id: 'q-list' });
  const selected = new Set();
  let rows = [];
  async function load() {
    const argv = ['devices', '--state', 'Quarantined', '--format', 'json', '--limit', '2000'];
    if (f.os.value) argv.push('--os', f.os.value);
    if (f.user.value) argv.push('--user', f.user.value);
    // A phone approved or blocked here stays Quarantined in the inventory
    // until its next request: it is no longer waiting, so not in the queue.
    rows = (await apiJson(argv)).filter(d => d.admin_state !== 'allow' && d.admin_state !== 'block' &&
      (!f.model.value || d.device_model.toLowerCase().includes(f.model.value.toLowerCase())));
    selected.clear();
    list.replaceChildren(table(
      [el('input', { type: 'checkbox', id: 'q-all', onchange: e => {
        for (const b of list.querySelectorAll('input.q-sel')) { b.checked = e.target.checked; b.dispatchEvent(new Event('change')); }
      } }), 'User', 'Device', 'Model', 'OS', 'First seen', 'Why', ''],
      rows.map(d => el('tr', { 'data-device': d.device_id },
        el('td', {}, el('input', { type: 'checkbox', class: 'q-sel', onchange: e => {
          if (e.target.checked) selected.add(d); else selected.delete(d); } })),
        el('td', {}, d.user), el('td', { class: 'mono' }, devLink(d)),
        el('td', {}, d.device_model), el('td', {}, d.device_os),
        el('td', {}, when(d.first_sync)),
        el('td', {}, d.rule ? d.state_reason + ': ' + d.rule : d.state_reason),
        el('td', { class: 'actions' }, can('helpdesk') ? [
          el('button', { class: 'ok approve', type: 'button', onclick: () => act('approve', [d]) }, 'Approve'),
          el('button', { class: 'bad block', type: 'button', onclick: () => act('block', [d]) }, 'Block')] : []))),
      'No phone is waiting in quarantine.'));
    setStatus(rows.length + ' device' + (rows.length === 1 ? '' : 's') + ' in quarantine');
  }
  async function act(verb, ds) {
    let done = 0, err = null;
    try { for (const d of ds) { await deviceAction(verb, d); done++; } } catch (e) { err = e; }
    await load().catch(e => { err = err || e; });
    if (err) setStatus(verb + ' failed after ' + done + ': ' + err.message, true);
    else setStatus(verb + ': ' + done + ' device' + (done === 1 ? '' : 's') + ' (effective on their next request)');
  }
  const bulk = can('helpdesk') ? [
    el('button', { class: 'ok', id: 'q-approve-sel', type: 'button', onclick: () => act('approve', [...selected]) }, 'Approve selected'),
    el('button', { class: 'bad', id: 'q-block-sel', type: 'button', onclick: () => act('block', [...selected]) }, 'Block selected')] : [];
  c.append(el('div', { class: 'toolbar' },
    el('label', {}, 'OS ', f.os), el('label', {}, 'Model ', f.model), el('label', {}, 'User ', f.user),
    el('button', { type: 'button', id: 'q-filter', onclick: () => load().catch(e => setStatus(e.message, true)) }, 'Filter'), bulk), list);
  await load();
}

async function pageDevices(c) {
  const f = { user: el('input', { id: 'd-user', placeholder: 'user' }),
              os: el('input', { id: 'd-os', placeholder: 'iOS 6.1*' }),
              state: el('select', { id: 'd-state' }, ['', 'Allowed', 'Blocked', 'Quarantined'].map(s => el('option', { value: s }, s || 'any state'))),
              // The inventory holds the devices a backend accepted; the
              // others were only seen (easctl devices --unauthenticated).
              seen: el('select', { id: 'd-seen' }, [['', 'authenticated'], ['unauthenticated', 'seen, not authenticated']].map(([v, t]) => el('option', { value: v }, t))) };
  const list = el('div', {});
  const csv = el('a', { id: 'd-csv' }, 'Export CSV'), json = el('a', { id: 'd-json' }, 'Export JSON');
  async function load() {
    const unauth = f.seen.value === 'unauthenticated';
    const argv = ['devices', '--format', 'json', '--limit', '5000'];
    const q = new URLSearchParams();
    for (const k of ['user', 'os', 'state']) if (f[k].value) { argv.push('--' + k, f[k].value); q.set(k, f[k].value); }
    if (unauth) { argv.push('--unauthenticated'); q.set('unauthenticated', '1'); }
    csv.href = '/export/devices.csv?' + q; json.href = '/export/devices.json?' + q;
    const ds = await apiJson(argv);
    list.replaceChildren(table(['User', 'Device', 'Type', 'Model', 'OS', 'State', 'Rule', unauth ? 'Last seen' : 'Last sync'],
      ds.map(d => el('tr', { 'data-device': d.device_id }, el('td', {}, d.user), el('td', { class: 'mono' }, devLink(d)),
        el('td', {}, d.device_type), el('td', {}, d.device_model), el('td', {}, d.device_os),
        el('td', {}, d.access_state ? pill(d.access_state) : '-'), el('td', {}, d.rule || d.state_reason), el('td', {}, when(d.last_sync_attempt)))),
      unauth ? 'No unauthenticated device matches.' : 'No device matches.'));
    const what = unauth ? ' seen without authenticating' : '';
    setStatus(ds.length + ' device' + (ds.length === 1 ? '' : 's') + what + (ds.length === 5000 ? ' (first 5000: narrow the filters or export)' : ''));
  }
  c.append(el('div', { class: 'toolbar' }, el('label', {}, 'User ', f.user), el('label', {}, 'OS ', f.os),
    el('label', {}, 'State ', f.state), el('label', {}, 'Devices ', f.seen),
    el('button', { type: 'button', id: 'd-filter', onclick: () => load().catch(e => setStatus(e.message, true)) }, 'Filter'), csv, json), list);
  await load();
}

async function pageDevice(c, user, id) {
  const d = JSON.parse(await api(['device', 'show', id, '--user', user, '--format', 'json'], false));
  const hist = JSON.parse(await api(['device', 'history', id, '--user', user, '--format', 'json'], false));
  let thr = [];
  try { thr = JSON.parse(await api(['throttle', 'show', d.user, d.device_id, '--format', 'json'], false)); } catch (e) { /* throttling off */ }
  $('title').textContent = 'Device ' + d.device_id;
  const fields = [['User', d.user], ['DeviceId', d.device_id], ['Type', d.device_type], ['Model', d.device_model],
    ['OS', d.device_os], ['Effective OS', d.os_key], ['User-Agent', d.user_agent], ['Friendly name', d.friendly_name],
    ['Operator', d.mobile_operator], ['Protocol', d.protocol], ['Last command', d.last_command],
    ['First sync', when(d.first_sync)], ['Last attempt', when(d.last_sync_attempt)], ['Last success', when(d.last_success)],
    ['Access', d.access_state], ['Why', d.state_reason + (d.rule ? ': ' + d.rule : '')], ['Admin override', d.admin_state || 'none'],
    ['Authenticated', d.authenticated === false ? 'no' : 'yes']];
  // Seen, never authenticated: not a device yet, so nothing to approve or
  // block (the command layer refuses it too); a rule can let it in.
  const unauth = d.authenticated === false ? el('p', { class: 'note', id: 'dev-unauth' },
    'Seen, but no backend has accepted its credentials yet, so it is not in the inventory ' +
    'and there is nothing to approve or block. To let it in before that, an admin adds the rule ',
    el('code', {}, 'allow DeviceId is "' + d.device_id + '"'), '.') : null;
  const acts = can('helpdesk') && !unauth ? el('div', { class: 'toolbar' },
    ['approve', 'block', 'quarantine', 'clear', 'remove'].map(v => el('button', {
      type: 'button', class: v === 'approve' ? 'ok' : v === 'block' || v === 'remove' ? 'bad' : '', id: 'dev-' + v,
      onclick: async () => {
        try { await deviceAction(v, d); setStatus(v + ': done (effective on its next request)'); if (v !== 'remove') route(); }
        catch (e) { setStatus(e.message, true); } } }, v[0].toUpperCase() + v.slice(1)))) : null;
  c.append(...[acts, unauth].filter(Boolean), el('div', { class: 'grid', id: 'dev-fields' }, fields.map(([k, v]) => [el('div', {}, k), el('div', { class: 'value' }, v || '-')])),
    el('h2', {}, 'Decisions and answers over time'),
    table(['When', 'Kind', 'Command', 'Status', 'Access', 'Reason', 'Rule'], hist.map(h => el('tr', {},
      el('td', {}, when(h.at)), el('td', {}, h.kind), el('td', {}, h.command), el('td', {}, h.status || ''),
      el('td', {}, h.access === '-' ? '' : pill(h.access)), el('td', {}, h.reason === '-' ? '' : h.reason), el('td', {}, h.rule))),
      'No decision remembered since the daemon started.', 'dev-history'),
    el('h2', {}, 'Throttle state'),
    table(['State', 'Last event', 'Class', 'Budget', 'Kernel drop', 'Looping command', 'Seen/refused by command'], thr.map(t => el('tr', {},
      el('td', {}, throttleState(t)), el('td', {}, throttleEvent(t.last_event)), el('td', {}, t.class), el('td', {}, budget(t)),
      el('td', {}, t.xdp ? 'yes' : 'no'), el('td', {}, t.loop_command || '-'),
      el('td', { class: 'mono' }, Object.entries(t.by_command).map(([k, v]) => k + ' ' + v[0] + '/' + v[1]).join(', ')))),
      'Never throttled.', 'dev-throttle'));
}

async function pageRules(c) {
  const r = await apiJson(['rules', 'list', '--format', 'json']);
  const text = el('textarea', { id: 'rule-text', rows: 2, placeholder: 'block DeviceOS like "iOS 6.1*"' });
  const out = el('div', { id: 'dryrun' });
  async function dry() {
    out.replaceChildren();
    try {
      const d = JSON.parse(await api(['rules', 'dryrun', text.value, '--format', 'json'], false));
      setStatus('Dry run of ' + d.rule + ': ' + d.changed + ' of ' + d.scanned + ' devices would change (nothing saved)');
      out.append(table(['User', 'Device', 'Model', 'OS', 'Now', 'Would be', 'Because'], d.devices.map(x => el('tr', { class: 'dry-row' },
        el('td', {}, x.user), el('td', { class: 'mono' }, devLink(x)), el('td', {}, x.device_model), el('td', {}, x.device_os),
        el('td', {}, pill(x.before), ' ', x.before_why), el('td', {}, pill(x.after)), el('td', {}, x.after_why))),
        'No device in the inventory would change.'));
    } catch (e) { setStatus(e.message, true); }
  }
  async function save() {
    try { setStatus((await api(['rules', 'add', text.value], true)).trim()); route(); }
    catch (e) { setStatus(e.message, true); }
  }
  c.append(el('p', {}, 'Default access: ', pill(r.default), '; incubation: ', r.incubation ? 'on (' + r.incubation_days + ' days)' : 'off'),
    table(['#', 'Rule', 'Name', 'From', ''], r.rules.map(x => {
      const rt = r.runtime.find(y => y.text === x.text && x.source === 'runtime');
      return el('tr', {}, el('td', {}, x.n), el('td', { class: 'mono' }, x.text), el('td', {}, x.name), el('td', {}, x.source),
        el('td', { class: 'actions' }, rt && can('admin') ? el('button', { type: 'button', class: 'bad', onclick: async () => {
          try { await api(['rules', 'remove', rt.id], true); route(); } catch (e) { setStatus(e.message, true); } } }, 'Remove') : ''));
    }), 'No rules: every device gets the default.'),
    el('h2', {}, 'Try a rule'),
    el('p', {}, 'Type a rule and see which devices it would change, and how, before saving it.'),
    text, el('div', { class: 'toolbar' }, el('button', { type: 'button', class: 'primary', id: 'rule-dryrun', onclick: dry }, 'Dry run'),
      can('admin') ? el('button', { type: 'button', id: 'rule-save', onclick: save }, 'Save rule') : null), out);
}

function calendar(versions, days) {
  const today = new Date(); today.setUTCHours(0, 0, 0, 0);
  const start = new Date(today.getTime() - today.getUTCDay() * 86400000);
  const cells = [];
  for (let i = 0; i < 35; i++) {
    const d = new Date(start.getTime() + i * 86400000), key = d.toISOString().slice(0, 10);
    const ends = versions.filter(v => v.state === 'incubating' && v.incubating_until.slice(0, 10) === key);
    cells.push(el('div', { class: 'day' + (key === today.toISOString().slice(0, 10) ? ' today' : '') },
      el('div', { class: 'date' }, key.slice(5)), ends.map(v => el('div', { class: 'ver' }, v.os + ' released'))));
  }
  return el('div', { class: 'calendar', id: 'calendar' }, ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'].map(x => el('div', {}, x)), cells);
}

// Approve only where incubation holds a version, Revoke only where an
// approval exists: the command layer refuses (409) anything else.
function versionButton(x) {
  const verb = x.state === 'approved' ? 'revoke' : x.state === 'incubating' ? 'approve' : '';
  if (!verb || !can('admin')) return '';
  return el('button', { type: 'button', class: verb === 'approve' ? 'ok' : '', onclick: async () => {
    try { await api(['versions', verb, x.os], true); route(); } catch (e) { setStatus(e.message, true); } } },
    verb === 'approve' ? 'Approve' : 'Revoke');
}

async function pageVersions(c) {
  const v = await apiJson(['versions', 'list', '--format', 'json']);
  c.append(el('p', {}, 'Incubation: ', v.incubation ? 'on, ' + v.days + ' days from the first authenticated request' : 'off'),
    table(['OS', 'Family', 'First seen', 'State', 'Incubating until', 'Devices', ''], v.versions.map(x => el('tr', {},
      el('td', {}, x.os), el('td', {}, x.family), el('td', {}, x.first_seen === '-' ? 'no authenticated request yet' : when(x.first_seen)), el('td', {}, pill(x.state)),
      el('td', {}, when(x.incubating_until)), el('td', {}, x.devices),
      el('td', { class: 'actions' }, versionButton(x)))), 'No OS version seen yet.'),
    el('h2', {}, 'Incubation calendar (the day each version is let in)'), calendar(v.versions, v.days));
}

async function pageThrottle(c) {
  let t;
  try { t = JSON.parse(await api(['throttle', 'list', '--format', 'json'], false)); }
  catch (e) { c.append(el('p', { class: 'empty' }, e.message)); return; }
  c.append(table(['User', 'Device', 'OS', 'Class', 'Last event', 'State', 'Kernel drop', 'Looping command', 'Seen/refused', ''], t.map(x => el('tr', {},
    el('td', {}, x.user), el('td', { class: 'mono' }, devLink(x)), el('td', {}, x.device_os), el('td', {}, x.class),
    el('td', {}, throttleEvent(x.last_event)), el('td', {}, throttleState(x)), el('td', {}, x.xdp ? 'yes' : 'no'), el('td', {}, x.loop_command || '-'),
    el('td', { class: 'mono' }, Object.entries(x.by_command).map(([k, v]) => k + ' ' + v[0] + '/' + v[1]).join(', ')),
    el('td', { class: 'actions' }, can('helpdesk') ? el('button', { type: 'button', onclick: async () => {
      try { await api(['throttle', 'forgive', x.user, x.device_id], true); route(); } catch (e) { setStatus(e.message, true); } } }, 'Forgive') : ''))),
    'No device is throttled or looping.'));
}

async function pageBackends(c) {
  const b = await apiJson(['backends', '--format', 'json']);
  c.append(table(['Name', 'Address', 'TLS', 'Health', 'Checks ok/failed', 'Connections', 'Requests', 'Failures', 'Last error'],
    b.map(x => el('tr', {}, el('td', {}, x.name), el('td', { class: 'mono' }, x.address), el('td', {}, x.tls ? 'yes' : 'no'),
      el('td', {}, pill(x.up ? 'up' : 'down')), el('td', {}, x.checks_ok + ' / ' + x.checks_failed), el('td', {}, x.connections),
      el('td', {}, x.requests), el('td', {}, x.failures), el('td', {}, x.last_error)))));
}

const charts = [];
async function pageCharts(c) {
  const h = await apiJson(['history']);
  const labels = h.t.map(t => new Date(t * 1000).toISOString().slice(11, 19));
  const colors = ['#2457c5', '#b42318', '#a15c07', '#7a2fb8', '#1d7a46', '#667085', '#0e7490', '#be185d'];
  for (const ch of charts.splice(0)) ch.destroy();
  const cards = el('div', { class: 'cards' });
  c.append(el('p', {}, 'Requests per second over the last hours, kept in memory by the daemon (one point every ' + h.step + ' s).'), cards);
  for (const [key, title] of [['verdict', 'By verdict'], ['command', 'By command'], ['backend', 'By backend']]) {
    const canvas = el('canvas', { id: 'chart-' + key });
    cards.append(el('div', { class: 'card' }, el('h2', {}, title), canvas));
    if (typeof Chart === 'undefined') { setStatus('chart.js did not load', true); continue; }
    charts.push(new Chart(canvas, { type: 'line', data: { labels, datasets: Object.entries(h[key]).map(([name, data], i) => ({
      label: name, data, borderColor: colors[i % colors.length], backgroundColor: colors[i % colors.length], pointRadius: 0, tension: 0.2 })) },
      options: { animation: false, responsive: true, maintainAspectRatio: false, scales: { y: { beginAtZero: true, title: { display: true, text: 'req/s' } } } } }));
  }
}

async function pageAudit(c) {
  const a = await apiJson(['audit', '--limit', '500', '--format', 'json']);
  c.append(table(['#', 'When', 'Who', 'From', 'What', 'Before', 'After'], a.map(x => el('tr', {},
    el('td', {}, x.id), el('td', {}, when(x.at)), el('td', {}, x.who), el('td', {}, x.source), el('td', {}, x.what),
    el('td', { class: 'mono' }, x.before), el('td', { class: 'mono' }, x.after))), 'No change recorded yet.'));
}

const pages = {
  quarantine: ['Quarantine queue', pageQuarantine], devices: ['Devices', pageDevices], rules: ['Rules', pageRules],
  versions: ['OS versions', pageVersions], throttle: ['Throttled and looping devices', pageThrottle],
  backends: ['Backends', pageBackends], charts: ['Requests', pageCharts], audit: ['Audit', pageAudit],
};

async function route() {
  const [name, ...rest] = (location.hash.slice(1) || 'quarantine').split('/');
  const c = $('content');
  c.replaceChildren();
  setStatus('');
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.getAttribute('href') === '#' + name);
  try {
    if (name === 'device') { await pageDevice(c, decodeURIComponent(rest[0] || ''), decodeURIComponent(rest[1] || '')); }
    else {
      const [title, fn] = pages[name] || pages.quarantine;
      $('title').textContent = title;
      await fn(c);
    }
  } catch (e) { setStatus(e.message, true); }
  document.body.dataset.loaded = name;
}

function showLogin() {
  $('nav').hidden = true; $('page').hidden = true; $('logout').hidden = true; $('login').hidden = false;
  $('who').textContent = '';
}

function showApp() {
  $('login').hidden = true; $('nav').hidden = false; $('page').hidden = false; $('logout').hidden = false;
  $('who').textContent = state.user + ' (' + state.role + ')';
  document.body.dataset.role = state.role;
  route();
}

async function start() {
  $('login-form').addEventListener('submit', async ev => {
    ev.preventDefault();
    const body = new URLSearchParams({ user: $('login-user').value, password: $('login-password').value });
    $('login-password').value = '';
    const r = await fetch('/api/login', { method: 'POST', body, credentials: 'same-origin' });
    const j = await r.json();
    if (r.status !== 200) { $('login-error').textContent = j.error || 'login failed'; return; }
    $('login-error').textContent = '';
    Object.assign(state, j);
    showApp();
  });
  $('logout').addEventListener('click', async () => {
    await fetch('/api/logout', { method: 'POST', headers: { 'X-CSRF-Token': state.csrf }, credentials: 'same-origin' });
    state.csrf = ''; showLogin();
  });
  window.addEventListener('hashchange', route);
  const r = await fetch('/api/session', { credentials: 'same-origin', cache: 'no-store' });
  if (r.status === 200) { Object.assign(state, await r.json()); showApp(); } else showLogin();
}

document.addEventListener('DOMContentLoaded', start);
