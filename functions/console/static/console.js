// The Stratus console: one page, every figure from Stratus's own HTTP API with the key signed in with.
//
// Rules this file keeps (tests/console checks them in a real browser):
// - the key lives in this tab's sessionStorage only: never in a URL, localStorage, a cookie or the DOM
//   (the sign-in field is emptied and removed at once); "Sign out" forgets it;
// - every string from the API is rendered as text (`h()` appends text nodes; no HTML string is ever parsed);
// - a new key is shown once, in a dialog, and removed from the DOM when the dialog closes;
// - lists are paged by the server (`limit`, `after`), never fetched whole.
import { barChart, compact, stepChart } from './charts.js';

const KEY = 'stratus.console.key';
const PAGE = 20;
const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const statusLine = document.getElementById('status');
const signOutButton = document.getElementById('sign-out');
let session = null; // {role: 'operator' | 'tenant', tenantId}

class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function key() {
  return sessionStorage.getItem(KEY);
}

async function api(method, path, body, headers = {}) {
  const init = { method, headers: { Authorization: `Bearer ${key()}`, ...headers }, cache: 'no-store', credentials: 'omit' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const answer = await fetch(path, init);
  const text = await answer.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!answer.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(answer.status, error.message || (data && data.message) || answer.statusText, error.code);
  }
  return data;
}

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else if (name === 'class') el.className = value;
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const num = (n) => (n === null || n === undefined ? '—' : Number(n).toLocaleString('en-US'));
// Costs are exact decimals in the API; shown to the cent from a dollar up, else to 6 decimals (a small model's request costs millionths)
const money = (cost, currency = 'USD') => {
  const value = Number(cost || 0);
  const text = Math.abs(value) >= 1 || value === 0 ? value.toFixed(2) : value.toFixed(6);
  return `${currency === 'USD' ? '$' : `${currency} `}${text}`;
};
const when = (epoch) => (epoch ? new Date(epoch * 1000).toISOString().slice(0, 16).replace('T', ' ') : '—');
const whenIso = (iso) => (iso ? iso.slice(0, 16).replace('T', ' ') : '—');
const today = () => new Date().toISOString().slice(0, 10);
const monthStart = () => `${today().slice(0, 8)}01`;

function say(message) {
  statusLine.textContent = message;
}

function failure(error) {
  if (error instanceof ApiError && error.status === 403) {
    return h('p', { class: 'error', role: 'alert' }, `This key may not see this: ${error.message}`);
  }
  return h('p', { class: 'error', role: 'alert' }, `Could not load: ${error.message}`);
}

function table(head, rows, caption) {
  return h(
    'div',
    { class: 'scroll' },
    h(
      'table',
      {},
      caption ? h('caption', { class: 'muted' }, caption) : null,
      h('thead', {}, h('tr', {}, head.map(([label, cls]) => h('th', { scope: 'col', class: cls }, label)))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: head.length, class: 'muted' }, 'Nothing yet.'))),
    ),
  );
}

const td = (value, cls) => h('td', { class: cls }, value);

function badge(text, tone) {
  return h('span', { class: `badge ${tone}` }, text);
}

const STATUS_TONES = { active: 'ok', completed: 'ok', in_progress: 'warn', validating: 'warn', finalizing: 'warn', queued: 'warn', dispatched: 'warn', cancelling: 'warn' };
const tone = (status) => STATUS_TONES[status] || (['failed', 'expired', 'revoked', 'suspended', 'cancelled'].includes(status) ? 'bad' : 'muted');

// A list view paged by the server: `load(after)` answers OpenAI's list shape.
function pager(load, render) {
  const cursors = [null];
  const body = h('div', {});
  const previous = h('button', { type: 'button', class: 'secondary', onclick: () => go(cursors.length - 2) }, 'Previous');
  const next = h('button', { type: 'button', class: 'secondary' }, 'Next');
  const where = h('span', { class: 'muted' });
  let last = null;
  next.addEventListener('click', () => {
    cursors.push(last);
    go(cursors.length - 1);
  });
  async function go(index) {
    cursors.length = Math.max(1, index + 1);
    say('Loading…');
    try {
      const page = await load(cursors[cursors.length - 1]);
      last = page.last_id;
      body.replaceChildren(render(page.data));
      previous.disabled = cursors.length <= 1;
      next.disabled = !page.has_more;
      where.textContent = `Page ${cursors.length}`;
      say('');
    } catch (error) {
      body.replaceChildren(failure(error));
      say('');
    }
  }
  go(0);
  return h('div', {}, body, h('div', { class: 'pager' }, previous, where, next));
}

function query(params) {
  const pairs = Object.entries(params).filter(([, v]) => v !== null && v !== undefined && v !== '');
  return pairs.length ? `?${new URLSearchParams(pairs)}` : '';
}

// ---- charts of usage rows ({date, model, total_tokens, cost}) ----

function usageChart(caption, rows, field) {
  if (!rows.length) return h('p', { class: 'muted' }, `${caption}: no usage in this range.`);
  const days = [...new Set(rows.map((row) => row.date))].sort();
  const models = [...new Set(rows.map((row) => row.model))].sort();
  const series = models.map((model) => ({
    name: model,
    values: days.map((day) => rows.filter((r) => r.date === day && r.model === model).reduce((s, r) => s + Number(r[field]), 0)),
  }));
  return barChart(caption, days.map((d) => d.slice(5)), series, field === 'cost' ? (v) => `$${compact(v)}` : compact);
}

function usageTable(rows, currency) {
  return table(
    [['Day'], ['Model'], ['Requests', 'num'], ['Prompt tokens', 'num hide-narrow'], ['Completion tokens', 'num hide-narrow'], ['Tokens', 'num'], ['Cost', 'num']],
    rows.map((r) => h('tr', {}, td(r.date), td(r.model), td(num(r.requests), 'num'), td(num(r.prompt_tokens), 'num hide-narrow'), td(num(r.completion_tokens), 'num hide-narrow'), td(num(r.total_tokens), 'num'), td(money(r.cost, currency), 'num'))),
  );
}

function rangeForm(onChange) {
  const start = h('input', { type: 'date', name: 'start', value: monthStart(), required: true });
  const end = h('input', { type: 'date', name: 'end', value: today(), required: true });
  const form = h('form', { class: 'inline', onsubmit: (event) => { event.preventDefault(); onChange(start.value, end.value); } },
    h('label', {}, 'From', start), h('label', {}, 'To', end), h('button', { type: 'submit' }, 'Show'));
  return { form, start, end };
}

function usageView(title, path) {
  const out = h('div', {});
  async function show(start, end) {
    try {
      const report = await api('GET', `${path}${query({ start, end })}`);
      const t = report.totals;
      out.replaceChildren(h('div', {},
        h('div', { class: 'cards' },
          card('Requests', num(t.requests), 'usage-requests'),
          card('Tokens', num(t.total_tokens), 'usage-total-tokens'),
          card('Cost', money(t.cost, report.currency), 'usage-cost')),
        h('section', { class: 'card' }, usageChart('Tokens by day and model', report.data, 'total_tokens')),
        h('section', { class: 'card' }, usageChart('Cost by day and model', report.data, 'cost')),
        h('section', { class: 'card' }, usageTable(report.data, report.currency)),
        report.tenants ? h('section', { class: 'card' }, h('h2', {}, 'By tenant'), table(
          [['Tenant'], ['Requests', 'num'], ['Tokens', 'num'], ['Cost', 'num']],
          report.tenants.map((one) => h('tr', {}, td(h('a', { href: `#/tenants/${encodeURIComponent(one.tenant_id)}` }, one.tenant_id)), td(num(one.requests), 'num'), td(num(one.total_tokens), 'num'), td(money(one.cost, report.currency), 'num'))),
        )) : null,
      ));
    } catch (error) {
      out.replaceChildren(failure(error));
    }
  }
  const range = rangeForm(show);
  show(range.start.value, range.end.value);
  return h('div', {}, h('h1', {}, title), range.form, out);
}

function card(label, value, testid) {
  return h('section', { class: 'card' }, h('div', { class: 'muted' }, label), h('div', { 'data-testid': testid, class: 'big' }, value));
}

// ---- operator views ----

function tenantsView() {
  const list = pager(
    (after) => api('GET', `/admin/tenants${query({ limit: PAGE, after })}`),
    (tenants) => table(
      [['Tenant'], ['Name'], ['Status'], ['Tokens this month', 'num'], ['Spend this month', 'num'], ['In flight', 'num hide-narrow'], ['Requests/min', 'num hide-narrow'], ['Tokens/month', 'num hide-narrow']],
      tenants.map((t) => h('tr', { 'data-tenant': t.tenant_id },
        td(h('a', { href: `#/tenants/${encodeURIComponent(t.tenant_id)}` }, t.tenant_id)),
        td(t.name),
        td(badge(t.status, tone(t.status))),
        td(num(t.month_usage && t.month_usage.total_tokens), 'num'),
        td(t.month_usage ? money(t.month_usage.cost) : '—', 'num'),
        td(num(t.in_flight), 'num hide-narrow'),
        td(num(t.limits.requests_per_minute), 'num hide-narrow'),
        td(num(t.limits.tokens_per_month), 'num hide-narrow'))),
    ),
  );
  return h('div', {}, h('h1', {}, 'Tenants'), newTenantForm(), h('section', { class: 'card' }, list));
}

function limitInputs(limits = {}) {
  const fields = [
    ['requests_per_minute', 'Requests per minute'],
    ['tokens_per_minute', 'Tokens per minute'],
    ['tokens_per_month', 'Tokens per month'],
    ['max_in_flight', 'Requests in flight'],
  ];
  const inputs = Object.fromEntries(fields.map(([name]) => [name, h('input', { type: 'number', min: 0, name, value: limits[name] ?? '', required: true })]));
  const labels = fields.map(([name, label]) => h('label', {}, label, inputs[name]));
  const values = () => Object.fromEntries(fields.map(([name]) => [name, Number(inputs[name].value)]));
  return { labels, values };
}

function newTenantForm() {
  const id = h('input', { name: 'tenant_id', required: true, pattern: '[a-z0-9][a-z0-9\\-]{0,62}', title: 'lowercase letters, digits and -' });
  const name = h('input', { name: 'name', required: true, maxlength: 200 });
  const limits = limitInputs({ requests_per_minute: 60, tokens_per_minute: 100000, tokens_per_month: 10000000, max_in_flight: 16 });
  const message = h('p', { role: 'alert' });
  const form = h('form', { class: 'inline', onsubmit: async (event) => {
    event.preventDefault();
    try {
      const made = await api('POST', '/admin/tenants', { tenant_id: id.value, name: name.value, limits: limits.values() }, { 'Idempotency-Key': crypto.randomUUID() });
      location.hash = `#/tenants/${encodeURIComponent(made.tenant_id)}`;
    } catch (error) {
      message.replaceChildren(failure(error));
    }
  } }, h('label', {}, 'Tenant id', id), h('label', {}, 'Name', name), limits.labels, h('button', { type: 'submit' }, 'Create tenant'));
  return h('details', { class: 'card' }, h('summary', {}, 'New tenant'), form, message);
}

async function tenantView(tenantId) {
  const tenant = await api('GET', `/admin/tenants/${encodeURIComponent(tenantId)}`);
  const message = h('p', { role: 'alert' });
  const suspended = tenant.status === 'suspended';
  const toggle = h('button', { type: 'button', class: suspended ? '' : 'danger', onclick: async () => {
    try {
      await api('PATCH', `/admin/tenants/${encodeURIComponent(tenantId)}`, { status: suspended ? 'active' : 'suspended' });
      render();
    } catch (error) {
      message.replaceChildren(failure(error));
    }
  } }, suspended ? 'Resume' : 'Suspend');
  const limits = limitInputs(tenant.limits);
  const limitsForm = h('form', { class: 'inline', 'aria-label': 'Limits', onsubmit: async (event) => {
    event.preventDefault();
    try {
      await api('PATCH', `/admin/tenants/${encodeURIComponent(tenantId)}`, { limits: limits.values() });
      message.replaceChildren(h('span', {}, 'Limits saved.'));
    } catch (error) {
      message.replaceChildren(failure(error));
    }
  } }, limits.labels, h('button', { type: 'submit' }, 'Save limits'));
  const usage = h('div', {});
  api('GET', `/admin/tenants/${encodeURIComponent(tenantId)}/usage`).then(
    (report) => usage.replaceChildren(usageChart('Tokens by day and model, this month', report.data, 'total_tokens'), usageTable(report.data, report.currency)),
    (error) => usage.replaceChildren(failure(error)),
  );
  return h('div', {},
    h('p', {}, h('a', { href: '#/tenants' }, '← Tenants')),
    h('h1', {}, tenant.name, ' ', h('span', { class: 'muted' }, `(${tenant.tenant_id})`), ' ', badge(tenant.status, tone(tenant.status))),
    h('div', { class: 'row' }, toggle, h('span', { class: 'muted' }, `${num(tenant.in_flight)} in flight · created ${whenIso(tenant.created_at)}`)),
    message,
    h('section', { class: 'card' }, h('h2', {}, 'Limits'), limitsForm),
    h('section', { class: 'card' }, h('h2', {}, 'Keys'), keysSection(tenantId)),
    h('section', { class: 'card' }, h('h2', {}, 'Usage'), usage),
  );
}

function keyRows(keys, actions) {
  return table(
    [['Key'], ['Prefix'], ['Scopes'], ['Status'], ['Created', 'hide-narrow'], ['Expires', 'hide-narrow'], actions ? ['Actions'] : null].filter(Boolean),
    keys.map((k) => h('tr', { 'data-key': k.key_id },
      td(h('code', {}, k.key_id)), td(h('code', {}, `${k.prefix}…`)), td(k.scopes.join(', ')),
      td(badge(k.status, tone(k.status)), k.rotated_to ? h('div', { class: 'muted' }, `rotated to ${k.rotated_to}`) : null),
      td(whenIso(k.created_at), 'hide-narrow'), td(k.expires_at ? whenIso(k.expires_at) : 'never', 'hide-narrow'),
      actions ? td(actions(k)) : null)),
  );
}

function showSecret(issued, onClose) {
  // The one place a key is ever in the DOM; removed when the dialog closes.
  const secret = h('div', { class: 'secret', 'data-testid': 'new-key' }, issued.api_key);
  const copied = h('span', { role: 'status' });
  const dialog = h('dialog', { 'aria-labelledby': 'new-key-title' },
    h('h2', { id: 'new-key-title' }, 'Copy your new key'),
    h('p', {}, `This is the only time the key ${issued.key_id} is shown. Stratus keeps only its hash.`),
    secret,
    h('div', { class: 'row' },
      h('button', { type: 'button', onclick: async () => {
        try {
          await navigator.clipboard.writeText(secret.textContent);
          copied.textContent = 'Copied.';
        } catch {
          copied.textContent = 'Select the key and copy it.';
        }
      } }, 'Copy'),
      h('button', { type: 'button', class: 'secondary', onclick: () => dialog.close() }, 'Done'),
      copied));
  dialog.addEventListener('close', () => {
    dialog.remove();
    onClose();
  });
  document.body.append(dialog);
  dialog.showModal();
}

function keysSection(tenantId) {
  const out = h('div', {});
  const message = h('p', { role: 'alert' });
  async function load() {
    try {
      const keys = await api('GET', `/admin/tenants/${encodeURIComponent(tenantId)}/keys`);
      out.replaceChildren(keyRows(keys.data, (k) => (k.status !== 'active' ? '' : h('div', { class: 'row' },
        h('button', { type: 'button', class: 'danger', 'aria-label': `Revoke ${k.key_id}`, onclick: async () => {
          if (!confirm(`Revoke ${k.key_id}? It stops working within the authorizer's cache time.`)) return;
          try { await api('DELETE', `/admin/keys/${k.key_id}`); load(); } catch (error) { message.replaceChildren(failure(error)); }
        } }, 'Revoke'),
        h('button', { type: 'button', class: 'secondary', 'aria-label': `Rotate ${k.key_id}`, onclick: async () => {
          const hours = prompt('Hours the old key keeps working', '24');
          if (hours === null) return;
          try {
            const issued = await api('POST', `/admin/keys/${k.key_id}/rotate`, { grace_period_seconds: Math.round(Number(hours) * 3600) });
            showSecret(issued, load);
          } catch (error) { message.replaceChildren(failure(error)); }
        } }, 'Rotate')))));
    } catch (error) {
      out.replaceChildren(failure(error));
    }
  }
  const scopes = ['inference', 'batch', 'usage', 'admin'].map((scope) => h('input', { type: 'checkbox', name: 'scope', value: scope, checked: scope !== 'admin' }));
  const days = h('input', { type: 'number', min: 1, name: 'expires_days', placeholder: 'never' });
  const form = h('form', { class: 'inline', 'aria-label': 'New key', onsubmit: async (event) => {
    event.preventDefault();
    const chosen = scopes.filter((box) => box.checked).map((box) => box.value);
    const body = { scopes: chosen, expires_at: days.value ? new Date(Date.now() + Number(days.value) * 86400000).toISOString() : null };
    try {
      const issued = await api('POST', `/admin/tenants/${encodeURIComponent(tenantId)}/keys`, body, { 'Idempotency-Key': crypto.randomUUID() });
      showSecret(issued, load);
    } catch (error) {
      message.replaceChildren(failure(error));
    }
  } },
  h('fieldset', {}, h('legend', {}, 'Scopes'), scopes.map((box) => h('label', { class: 'check' }, box, box.value))),
  h('label', {}, 'Expires in days', days),
  h('button', { type: 'submit' }, 'Create key'));
  load();
  return h('div', {}, out, form, message);
}

function invoicesView() {
  const out = h('div', {});
  const month = h('input', { type: 'month', name: 'month', value: today().slice(0, 7), required: true });
  async function show() {
    try {
      const list = await api('GET', `/admin/invoices/${month.value}`);
      out.replaceChildren(
        h('p', {}, `Amount due for ${list.month}: `, h('strong', {}, money(list.amount_due, list.currency))),
        table(
          [['Tenant'], ['Name', 'hide-narrow'], ['Tokens', 'num'], ['Amount due', 'num'], ['State'], ['Download']],
          list.data.map((inv) => h('tr', {},
            td(inv.tenant_id), td(inv.tenant_name, 'hide-narrow'), td(num(inv.total_tokens), 'num'), td(money(inv.amount_due, inv.currency), 'num'),
            td(inv.final ? badge('final', 'ok') : badge('open', 'warn')),
            td(h('div', { class: 'row' }, download(`${inv.invoice_id}.json`, 'application/json', JSON.stringify(inv, null, 2), 'JSON'),
              download(`${inv.invoice_id}.csv`, 'text/csv', invoiceCsv(inv), 'CSV'))))),
          'An open invoice is the running figure; the billing function writes the final one once the month is complete.',
        ),
      );
    } catch (error) {
      out.replaceChildren(failure(error));
    }
  }
  show();
  return h('div', {}, h('h1', {}, 'Invoices'),
    h('form', { class: 'inline', onsubmit: (event) => { event.preventDefault(); show(); } }, h('label', {}, 'Month', month), h('button', { type: 'submit' }, 'Show')),
    h('section', { class: 'card' }, out));
}

function csvCell(value) {
  const text = String(value ?? '');
  const safe = /^[=+\-@\t\r]/.test(text) ? `'${text}` : text; // no formulas from tenant strings in a spreadsheet
  return /[",\n]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}

function invoiceCsv(inv) {
  const rows = [['invoice_id', 'tenant_id', 'month', 'model', 'requests', 'prompt_tokens', 'completion_tokens', 'total_tokens', 'cost', 'currency']];
  for (const line of inv.lines) rows.push([inv.invoice_id, inv.tenant_id, inv.month, line.model, line.requests, line.prompt_tokens, line.completion_tokens, line.total_tokens, line.cost, inv.currency]);
  rows.push([inv.invoice_id, inv.tenant_id, inv.month, 'amount_due', '', '', '', inv.total_tokens, inv.amount_due, inv.currency]);
  return rows.map((row) => row.map(csvCell).join(',')).join('\n') + '\n';
}

function download(name, type, text, label) {
  return h('button', { type: 'button', class: 'secondary', 'aria-label': `Download ${name}`, onclick: () => {
    const url = URL.createObjectURL(new Blob([text], { type }));
    const link = h('a', { href: url, download: name });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  } }, label);
}

function progress(counts) {
  const done = counts.completed + counts.failed;
  const bar = h('progress', { max: Math.max(1, counts.total), value: done, 'aria-label': `${done} of ${counts.total} requests done` });
  return h('div', {}, bar, h('div', { class: 'muted' }, `${num(counts.completed)} done, ${num(counts.failed)} failed, of ${num(counts.total)}`));
}

function batchTable(batches, withTenant) {
  return table(
    [['Batch'], withTenant ? ['Tenant'] : null, ['Status'], ['Progress'], ['Created', 'hide-narrow'], ['Endpoint', 'hide-narrow']].filter(Boolean),
    batches.map((b) => h('tr', { 'data-batch': b.id }, td(h('code', {}, b.id)), withTenant ? td(b.tenant_id) : null, td(badge(b.status, tone(b.status))), td(progress(b.request_counts)), td(when(b.created_at), 'hide-narrow'), td(b.endpoint, 'hide-narrow'))),
  );
}

function batchesView() {
  const tenant = h('input', { name: 'tenant_id', placeholder: 'every tenant' });
  const holder = h('section', { class: 'card' });
  const load = () => holder.replaceChildren(pager((after) => api('GET', `/admin/batches${query({ limit: PAGE, after, tenant_id: tenant.value.trim() })}`), (batches) => batchTable(batches, true)));
  load();
  return h('div', {}, h('h1', {}, 'Batches'),
    h('form', { class: 'inline', onsubmit: (event) => { event.preventDefault(); load(); } }, h('label', {}, 'Tenant', tenant), h('button', { type: 'submit' }, 'Show')),
    holder);
}

const hoursText = (hours) => (hours >= 10 ? hours.toFixed(1) : hours.toFixed(3));

function endpointView() {
  const hours = h('select', { name: 'hours' }, [1, 6, 24, 72, 168].map((n) => h('option', { value: n, selected: n === 24 }, `${n} h`)));
  const out = h('div', {});
  async function show() {
    try {
      const e = await api('GET', `/admin/endpoint${query({ hours: hours.value })}`);
      const runs = e.runs;
      const end = e.now;
      const start = end - e.hours * 3600;
      const times = runs.map((r) => r.at);
      const saved = e.always_on_instance_hours > 0 ? 1 - e.instance_hours / e.always_on_instance_hours : 0;
      const starts = e.cold_starts.map((c) => c.seconds).filter((s) => s !== null).sort((a, b) => a - b);
      out.replaceChildren(
        h('div', { class: 'cards' },
          card('Instance-hours', hoursText(e.instance_hours), 'instance-hours'),
          card('Always on would be', hoursText(e.always_on_instance_hours), 'always-on-hours'),
          card('Saved by scaling to zero', `${Math.round(saved * 100)} %`, 'saved'),
          card('Cold starts', starts.length ? `${starts.length}, median ${Math.round(starts[Math.floor(starts.length / 2)])} s` : `${e.cold_starts.length}`, 'cold-starts')),
        h('section', { class: 'card' }, stepChart('Instances', times, start, end, [
          { name: 'in service', values: runs.map((r) => r.in_service) },
          { name: 'desired', values: runs.map((r) => r.desired) },
        ])),
        h('section', { class: 'card' }, stepChart('Work', times, start, end, [
          { name: 'interactive queued or running', values: runs.map((r) => r.interactive) },
          { name: 'released', values: runs.map((r) => r.released) },
          { name: 'held', values: runs.map((r) => r.waiting) },
        ])),
        h('section', { class: 'card' }, h('h2', {}, 'Cold starts'), table(
          [['Asked'], ['In service'], ['Seconds', 'num']],
          e.cold_starts.map((c) => h('tr', {}, td(when(c.asked_at)), td(c.in_service_at ? when(c.in_service_at) : 'starting'), td(c.seconds === null ? '—' : Math.round(c.seconds), 'num'))),
        )),
        h('section', { class: 'card' }, h('h2', {}, "The scheduler's decisions"), table(
          [['When'], ['In service', 'num'], ['Desired', 'num'], ['Queued', 'num hide-narrow'], ['Held', 'num hide-narrow'], ['Let go', 'num hide-narrow'], ['Reason']],
          runs.slice().reverse().slice(0, 50).map((r) => h('tr', {}, td(when(r.at)), td(r.in_service, 'num'), td(r.desired, 'num'), td(r.interactive, 'num hide-narrow'), td(r.waiting, 'num hide-narrow'), td(r.release, 'num hide-narrow'), td(r.reason))),
          `The endpoint ${e.endpoint_name}: a run is recorded when something changed, and once an hour.`,
        )),
      );
    } catch (error) {
      out.replaceChildren(failure(error));
    }
  }
  show();
  return h('div', {}, h('h1', {}, 'The endpoint'),
    h('form', { class: 'inline', onsubmit: (event) => { event.preventDefault(); show(); } }, h('label', {}, 'Window', hours), h('button', { type: 'submit' }, 'Show')),
    out);
}

// ---- tenant views ----

function meter(label, used, limit, remaining, testid) {
  const fraction = limit > 0 ? used / limit : 1;
  const bar = h('progress', { max: Math.max(1, limit), value: Math.min(used, limit), class: fraction >= 0.8 ? 'high' : '', 'aria-label': label, 'data-testid': testid, 'data-used': used, 'data-limit': limit });
  return h('div', { class: 'meter' }, h('div', { class: 'label' }, h('span', {}, label), h('span', {}, `${num(used)} of ${num(limit)} · ${num(remaining)} left`)), bar);
}

async function limitsView() {
  const l = await api('GET', '/v1/limits');
  return h('div', {}, h('h1', {}, 'Limits'),
    h('section', { class: 'card' },
      meter('Requests this minute', l.used.requests_this_minute, l.limits.requests_per_minute, l.remaining.requests_this_minute, 'limit-requests-minute'),
      meter('Tokens this minute', l.used.tokens_this_minute, l.limits.tokens_per_minute, l.remaining.tokens_this_minute, 'limit-tokens-minute'),
      meter(`Tokens in ${l.month}`, l.used.tokens_this_month, l.limits.tokens_per_month, l.remaining.tokens_this_month, 'limit-tokens-month'),
      meter('Requests in flight', l.used.in_flight, l.limits.max_in_flight, l.remaining.in_flight, 'limit-in-flight'),
      h('p', { class: 'muted' }, `The minute's counts start again at ${when(l.minute_resets_at)}. A request counts its worst case until it is settled, then what it used.`),
      h('button', { type: 'button', class: 'secondary', onclick: render }, 'Refresh')));
}

function jobTable(jobs) {
  return table(
    [['Job'], ['Status'], ['Model', 'hide-narrow'], ['Created'], ['Tokens', 'num'], ['Error', 'hide-narrow']],
    jobs.map((j) => h('tr', { 'data-job': j.id }, td(h('code', {}, j.id)), td(badge(j.status, tone(j.status))), td(j.model, 'hide-narrow'), td(when(j.created_at)), td(j.usage ? num(j.usage.total_tokens) : '—', 'num'), td(j.error ? j.error.code : '', 'hide-narrow'))),
  );
}

function workView() {
  return h('div', {}, h('h1', {}, 'Batches and jobs'),
    h('section', { class: 'card' }, h('h2', {}, 'Batches'), pager((after) => api('GET', `/v1/batches${query({ limit: PAGE, after })}`), (b) => batchTable(b, false))),
    h('section', { class: 'card' }, h('h2', {}, 'Recent requests'), pager((after) => api('GET', `/v1/jobs${query({ limit: PAGE, after })}`), jobTable)));
}

async function ownKeysView() {
  const keys = await api('GET', '/v1/keys');
  return h('div', {}, h('h1', {}, 'Keys'), h('section', { class: 'card' }, keyRows(keys.data, null),
    h('p', { class: 'muted' }, 'Keys are issued, rotated and revoked by your operator.')));
}

// ---- signing in, navigation ----

const OPERATOR = [
  ['#/tenants', 'Tenants', () => tenantsView()],
  ['#/usage', 'Usage', () => usageView('Usage across tenants', '/admin/usage')],
  ['#/invoices', 'Invoices', () => invoicesView()],
  ['#/batches', 'Batches', () => batchesView()],
  ['#/endpoint', 'Endpoint', () => endpointView()],
];
const TENANT = [
  ['#/usage', 'Usage', () => usageView('Usage and cost', '/v1/usage')],
  ['#/limits', 'Limits', () => limitsView()],
  ['#/work', 'Batches and jobs', () => workView()],
  ['#/keys', 'Keys', () => ownKeysView()],
];

async function identify() {
  try {
    await api('GET', `/admin/tenants${query({ limit: 1 })}`);
    return { role: 'operator', tenantId: null };
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 403) throw error;
  }
  const limits = await api('GET', '/v1/limits').catch(() => null);
  if (limits) return { role: 'tenant', tenantId: limits.tenant_id };
  await api('GET', '/v1/models'); // a valid key without the usage scope still signs in
  return { role: 'tenant', tenantId: null };
}

function signInView(problem) {
  const input = h('input', { type: 'password', id: 'api-key', name: 'api-key', autocomplete: 'off', spellcheck: 'false', required: true, placeholder: 'sk-…' });
  const message = h('p', { role: 'alert', class: 'error' }, problem || '');
  const form = h('form', { class: 'signin card', onsubmit: async (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, input.value.trim());
    input.value = '';
    form.remove();
    try {
      session = await identify();
      if (!location.hash || location.hash === '#/') location.hash = session.role === 'operator' ? '#/tenants' : '#/usage';
      render();
    } catch (error) {
      sessionStorage.removeItem(KEY);
      main.replaceChildren(signInView(error instanceof ApiError && error.status === 401 ? 'That key is not valid.' : `Could not sign in: ${error.message}`));
    }
  } },
  h('h1', {}, 'Sign in'),
  h('p', { class: 'muted' }, 'With an API key. An admin key opens the operator\'s views; any other key its tenant\'s. The key stays in this tab until you sign out.'),
  h('label', { for: 'api-key' }, 'API key'), input,
  h('p', {}, h('button', { type: 'submit' }, 'Sign in')), message);
  return form;
}

function signOut() {
  sessionStorage.removeItem(KEY);
  session = null;
  location.hash = '';
  render();
}

async function render() {
  if (!key()) {
    nav.replaceChildren();
    who.textContent = '';
    signOutButton.hidden = true;
    main.replaceChildren(signInView());
    return;
  }
  if (!session) {
    try {
      session = await identify();
    } catch {
      signOut();
      return;
    }
  }
  const views = session.role === 'operator' ? OPERATOR : TENANT;
  const hash = location.hash || views[0][0];
  nav.replaceChildren(...views.map(([href, label]) => h('a', { href, 'aria-current': hash.startsWith(href) ? 'page' : null }, label)));
  who.textContent = session.role === 'operator' ? 'operator' : `tenant ${session.tenantId || ''}`;
  signOutButton.hidden = false;
  say('Loading…');
  try {
    const tenantPage = session.role === 'operator' && hash.match(/^#\/tenants\/(.+)$/);
    const view = tenantPage ? () => tenantView(decodeURIComponent(tenantPage[1])) : (views.find(([href]) => hash === href) || views[0])[2];
    main.replaceChildren(await view());
  } catch (error) {
    main.replaceChildren(failure(error));
  }
  say('');
}

signOutButton.addEventListener('click', signOut);
window.addEventListener('hashchange', render);
render();
