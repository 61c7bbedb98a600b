// The DataSync dashboard: sign-in, then one page per hash route (#/overview, #/runners, #/jobs,
// #/runs, #/runs/ID, #/scrub, #/logs, #/tokens, #/audit), each polling the admin API while shown.
import { api, get, post, put, del, jobPath, query, setCsrfToken, onUnauthenticated, ApiError } from './api.js';
import { h, $, localTime, localHour, bytes, duration, badge, table, progress, barChart, field, select } from './ui.js';
import { scrubPage } from './scrub.js';

const POLL_MS = 3000;
let me = null;            // {actor, role, user, csrf_token}
let current = null;       // the page object being shown
let pollTimer = null;

const isAdmin = () => me && me.role === 'admin';

function showError(e) {
  const msg = e instanceof ApiError ? `${e.message} (HTTP ${e.status})` : String(e.message || e);
  $('#app-error').textContent = msg;
}
function clearError() { $('#app-error').textContent = ''; }

// A button for a state-changing action: disabled for viewers (the server refuses them anyway).
function action(label, fn, { danger = false, confirmText = null } = {}) {
  const b = h('button', {
    type: 'button', class: danger ? 'danger' : '',
    disabled: !isAdmin(), title: isAdmin() ? null : 'viewers cannot change anything',
    onclick: async () => {
      if (confirmText && !window.confirm(confirmText)) return;
      b.disabled = true;
      try { clearError(); await fn(); await refreshNow(); } catch (e) { showError(e); } finally { b.disabled = !isAdmin(); }
    },
  }, label);
  return b;
}

// ---- pages ----------------------------------------------------------------------------------

const pages = {};

pages.overview = () => {
  const cards = h('div', { class: 'cards' });
  const chart = h('div', { class: 'card wide' });
  const alerts = h('div', { class: 'card wide' });
  return {
    title: 'Overview',
    root: h('div', {}, cards, chart, alerts),
    async refresh() {
      const [status, runners, jobs, stats] = await Promise.all([
        get('/status'), get('/runners'), get('/jobs?with_last_run=1'), get('/stats/hourly?hours=24')]);
      const rs = runners.runners;
      const online = rs.filter((r) => r.status === 'approved' && r.online).length;
      const offline = rs.filter((r) => r.status === 'approved' && !r.online).length;
      const pending = rs.filter((r) => r.status === 'pending' || r.replacement_pending).length;
      const health = (k) => jobs.jobs.filter((j) => j.health === k).length;
      let backlogFiles = 0, backlogBytes = 0, haveBacklog = false;
      for (const r of rs) {
        if (r.health && r.health.backlog_files !== undefined) {
          haveBacklog = true;
          backlogFiles += r.health.backlog_files || 0;
          backlogBytes += r.health.backlog_bytes || 0;
        }
      }
      const budget = status.index_budget_bytes;
      cards.replaceChildren(
        h('div', { class: 'card', id: 'card-runners' }, h('h3', {}, 'Runners'),
          h('p', {}, badge(`${online} online`, 'online'), ' ', badge(`${offline} offline`, 'offline'), ' ',
            badge(`${pending} pending`, 'pending'))),
        h('div', { class: 'card', id: 'card-jobs' }, h('h3', {}, 'Jobs'),
          h('p', {}, badge(`${health('healthy') + health('running')} healthy`, 'healthy'), ' ',
            badge(`${health('late')} late`, 'late'), ' ', badge(`${health('failing')} failing`, 'failing'),
            ' ', badge(`${health('never')} not run yet`, 'never'), ' ', badge(`${health('disabled')} disabled`, 'disabled'))),
        h('div', { class: 'card' }, h('h3', {}, 'Backlog'),
          h('p', {}, haveBacklog ? `${backlogFiles} files · ${bytes(backlogBytes)}` : '— (agents do not report it yet)')),
        h('div', { class: 'card' }, h('h3', {}, 'Index'),
          h('p', {}, bytes(status.index_size_bytes), budget > 0 ? ` of ${bytes(budget)}` : ' (no budget)'),
          budget > 0 ? progress(status.index_budget_used_percent) : ''),
      );
      const hours = stats.hours;
      chart.replaceChildren(
        h('h3', {}, 'Files synced per hour (last 24 h)'),
        barChart(hours.map((p) => ({ x: localHour(p.hour_start_ms), y: p.files, title: `${localTime(p.hour_start_ms)}: ${p.files} files, ${p.runs} runs` }))),
        h('h3', {}, 'Bytes synced per hour'),
        barChart(hours.map((p) => ({ x: localHour(p.hour_start_ms), y: p.bytes, title: `${localTime(p.hour_start_ms)}: ${bytes(p.bytes)}` })), { format: bytes, cls: 'bytes' }),
      );
      try {
        const a = await get('/alerts?active=1&limit=20');
        alerts.replaceChildren(h('h3', {}, `Active alerts (${a.items.length})`),
          table(['Severity', 'Alert', 'Subject', 'Message', 'Since', ''], a.items, (x) => [
            badge(x.severity, x.severity), x.rule_name || x.kind, x.subject, x.message, localTime(x.fired_at_ms),
            x.acknowledged_by ? `ack by ${x.acknowledged_by}` : action('Acknowledge', () => post(`/alerts/${x.id}/ack`)),
          ], 'No active alerts.'));
      } catch (e) {
        if (!(e instanceof ApiError) || e.status !== 404) throw e;
        alerts.replaceChildren(h('h3', {}, 'Active alerts'), h('p', { class: 'muted' }, 'Alerts are not available on this server.'));
      }
    },
  };
};

function minDiskFree(r) {
  const d = r.health && r.health.disk_free;
  if (!d || !d.length) return '—';
  const worst = d.reduce((a, b) => (a.free_bytes <= b.free_bytes ? a : b));
  return `${bytes(worst.free_bytes)} free (${worst.job || worst.path})`;
}

// The registrations waiting on a runner, each with its own decision: on a pending runner,
// approve or reject that enrollment; on an enrolled one (a replacement request), bind that
// machine. Host, address and time tell a second registration under one name from the first.
function enrollmentList(r) {
  const name = encodeURIComponent(r.name);
  const items = r.pending_enrollments || [];
  if (!items.length) return h('div');
  return h('div', { class: 'enrollments' }, h('h3', {}, `Pending enrollments of ${r.name} (${items.length})`),
    table(['Host', 'Address', 'Registered', 'OS', 'Enrollment', 'Actions'], items, (e) => {
      const body = { enrollment: e.id };
      const acts = h('span', { class: 'actions' });
      if (r.status === 'pending') {
        acts.append(action('Approve', () => post(`/runners/${name}/approve`, body),
          { confirmText: `Approve ${r.name} on host ${e.hostname || '?'} from ${e.address || '?'}? The other pending enrollments are rejected.` }),
        action('Reject', () => post(`/runners/${name}/reject`, body), { danger: true, confirmText: `Reject this enrollment of ${r.name}?` }));
      } else {
        acts.append(action('Replace machine', () => post(`/runners/${name}/replace`, body),
          { confirmText: `Bind host ${e.hostname || '?'} (${e.address || '?'}) to ${r.name}? The old PC's key stops working.` }));
      }
      return [e.hostname || '—', e.address || '—', localTime(e.created_at), e.os || '—', e.id.slice(0, 8), acts];
    }));
}

pages.runners = () => {
  const list = h('div');
  const enrollments = h('div');
  return {
    title: 'Runners',
    root: h('div', {}, list, enrollments),
    async refresh() {
      const { runners } = await get('/runners');
      const order = { pending: 0, quarantined: 1, approved: 2, revoked: 3, rejected: 4 };
      runners.sort((a, b) => (order[a.status] - order[b.status]) || a.name.localeCompare(b.name));
      list.replaceChildren(table(
        ['Name', 'Status', 'Connection', 'Group', 'Host', 'Version', 'Last heartbeat', 'State', 'Disk', 'Actions'], runners, (r) => {
          const name = encodeURIComponent(r.name);
          const acts = h('span', { class: 'actions' });
          const waiting = (r.pending_enrollments || []).length;
          if (r.status === 'pending' && waiting === 1) {
            const body = { enrollment: r.pending_enrollments[0].id };
            acts.append(action('Approve', () => post(`/runners/${name}/approve`, body)),
              action('Reject', () => post(`/runners/${name}/reject`, body), { danger: true, confirmText: `Reject ${r.name}?` }));
          }
          if (waiting > 1) acts.append(h('span', { class: 'muted' }, `${waiting} enrollments: choose below`));
          if (r.status === 'approved') {
            acts.append(action('Rotate key', () => post(`/runners/${name}/rotate-key`)),
              action('Revoke', () => post(`/runners/${name}/revoke`), { danger: true, confirmText: `Revoke ${r.name}? Its agent stops at once.` }));
          }
          if (r.status === 'quarantined') {
            acts.append(action('Revoke', () => post(`/runners/${name}/revoke`), { danger: true, confirmText: `Revoke ${r.name}? Replace machine (after its PC re-enrolls) keeps the runner instead.` }));
          }
          if (r.replacement_pending && waiting === 1) {
            acts.append(action('Replace machine', () => post(`/runners/${name}/replace`, { enrollment: r.pending_enrollments[0].id }),
              { confirmText: `Bind the new PC registering as ${r.name} to this runner? The old PC's key stops working.` }));
          }
          if (['pending', 'rejected', 'revoked'].includes(r.status)) {
            acts.append(action('Delete', () => del(`/runners/${name}`), { danger: true, confirmText: `Delete ${r.name} and its enrollments? Its name becomes free.` }));
          }
          return [h('span', { class: 'runner-name' }, r.name), badge(r.status),
            r.status === 'approved' ? badge(r.online ? 'online' : 'offline') : '—',
            r.group || '—', r.hostname || '—', r.agent_version || '—', localTime(r.last_heartbeat_at),
            r.runtime_state ? `${r.runtime_state}${r.current_run ? ' ' + r.current_run.slice(0, 8) : ''}` : '—',
            minDiskFree(r), acts];
        }, 'No runners yet: start datasync-agent on a PC.'));
      enrollments.replaceChildren(...runners.filter((r) => (r.pending_enrollments || []).length > 0).map(enrollmentList));
    },
  };
};

function jobForm(runners, job, done) {
  const f = h('form', { class: 'card form-grid', id: 'job-form' });
  const editing = !!job;
  f.append(
    h('h3', {}, editing ? `Edit ${job.runner}/${job.name}` : 'New job'),
    field('Runner', editing ? h('input', { name: 'runner', value: job.runner, readonly: true })
      : select('runner', runners.filter((r) => r.status !== 'rejected').map((r) => r.name), '')),
    field('Name', h('input', { name: 'name', value: job ? job.name : '', required: true, readonly: editing, pattern: '[A-Za-z0-9_][A-Za-z0-9._\\-]{0,63}' })),
    field('Source folder', h('input', { name: 'source', value: job ? job.source : '', required: true })),
    field('Destination prefix', h('input', { name: 'dest_prefix', value: job ? job.dest_prefix : '', required: true })),
    field('Include globs', h('input', { name: 'includes', value: job ? job.includes.join(', ') : '', placeholder: '*.csv, raw/**' })),
    field('Exclude globs', h('input', { name: 'excludes', value: job ? job.excludes.join(', ') : '' })),
    field('Interval (s)', h('input', { name: 'interval', type: 'number', min: 1, value: job ? job.interval_ms / 1000 : 600 })),
    field('Settle (s)', h('input', { name: 'settle', type: 'number', min: 0, value: job ? job.settle_ms / 1000 : 60 })),
    field('Enabled', h('input', { name: 'enabled', type: 'checkbox', checked: job ? job.enabled : true })),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', disabled: !isAdmin() }, editing ? 'Save' : 'Create job'),
      h('button', { type: 'button', onclick: () => done(false) }, 'Cancel')));
  const globs = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const d = new FormData(f);
    const spec = {
      name: d.get('name'), source: d.get('source'), dest_prefix: d.get('dest_prefix'),
      includes: globs(d.get('includes')), excludes: globs(d.get('excludes')),
      interval_ms: Math.round(Number(d.get('interval')) * 1000), settle_ms: Math.round(Number(d.get('settle')) * 1000),
      enabled: d.get('enabled') === 'on',
    };
    try {
      clearError();
      const path = jobPath(d.get('runner'), spec.name);
      if (editing) await put(path, spec); else await post(path, spec);
      done(true);
    } catch (e) { showError(e); }
  });
  return f;
}

function filesPanel(job) {
  const box = h('div', { class: 'card wide', id: 'files-panel' });
  const q = h('input', { name: 'q', type: 'search', placeholder: 'path contains…' });
  const prefix = h('input', { name: 'prefix', type: 'checkbox' });
  const out = h('div');
  const pageSize = 50;
  let stack = [''];  // `after` of every page shown so far (keyset paging)
  async function load() {
    const after = stack[stack.length - 1];
    const res = await get(`${jobPath(job.runner, job.name)}/files${query({ q: q.value, match: prefix.checked ? 'prefix' : '', after, limit: pageSize })}`);
    out.replaceChildren(
      h('p', { class: 'muted' }, `${res.total} files in the index · page ${stack.length}`),
      table(['Path', 'Size', 'Modified', 'Synced', 'Run'], res.files, (f) => [
        h('span', { class: 'path' }, f.path), bytes(f.size), localTime(Math.floor(f.mtime_ns / 1e6)), localTime(f.synced_at),
        h('a', { href: `#/runs/${f.run_id}` }, f.run_id.slice(0, 8))], 'No matching files.'),
      h('div', { class: 'actions' },
        h('button', { type: 'button', disabled: stack.length === 1, onclick: () => { stack.pop(); load().catch(showError); } }, 'Previous'),
        h('button', { type: 'button', disabled: !res.next_after, onclick: () => { stack.push(res.next_after); load().catch(showError); } }, 'Next')));
  }
  let debounce = null;
  const restart = () => { clearTimeout(debounce); debounce = setTimeout(() => { stack = ['']; load().catch(showError); }, 250); };
  q.addEventListener('input', restart);
  prefix.addEventListener('change', restart);
  box.append(h('h3', {}, `Files of ${job.runner}/${job.name}`), h('div', { class: 'filters' }, q, field('prefix', prefix)), out);
  load().catch(showError);
  return box;
}

pages.jobs = () => {
  const list = h('div');
  const side = h('div');
  const reconciles = h('div', { class: 'card wide', id: 'reconciles' });
  let runners = [];
  let jobs = [];
  let formOpen = false;
  const newButton = action('New job', async () => { openForm(null); });
  function openForm(job) {
    formOpen = true;
    side.replaceChildren(jobForm(runners, job, (changed) => {
      formOpen = false;
      side.replaceChildren();
      if (changed) refreshNow();
    }));
  }
  return {
    title: 'Jobs',
    root: h('div', {}, h('div', { class: 'actions' }, newButton), side, list, reconciles),
    async refresh() {
      const [r, j, rec] = await Promise.all([get('/runners'), get('/jobs?with_last_run=1'), get('/reconciles?active=0&limit=10')]);
      runners = r.runners;
      jobs = j.jobs;
      list.replaceChildren(table(['Runner', 'Job', 'Source → destination', 'Every', 'Health', 'Last run', 'Actions'], jobs, (job) => {
        const path = jobPath(job.runner, job.name);
        const lr = job.last_run;
        return [job.runner, h('span', { class: 'job-name' }, job.name), `${job.source} → ${job.dest_prefix}`, duration(job.interval_ms),
          badge(job.health),
          lr ? h('a', { href: `#/runs/${lr.run_id}` }, `${lr.state} · ${lr.files_uploaded} up · ${localTime(lr.started_at_ms)}`) : '—',
          h('span', { class: 'actions' },
            action('Sync now', () => post(`${path}/sync`)),
            action('Reconcile', () => post(`${path}/reconcile`, {})),
            action(job.enabled ? 'Disable' : 'Enable', () => put(path, { ...stripJob(job), enabled: !job.enabled })),
            h('button', { type: 'button', disabled: !isAdmin(), onclick: () => openForm(job) }, 'Edit'),
            h('button', { type: 'button', onclick: () => side.replaceChildren(filesPanel(job)) }, 'Files'),
            action('Delete', () => del(path), { danger: true, confirmText: `Delete job ${job.runner}/${job.name}? Stored files stay.` }))];
      }, 'No jobs yet.'));
      reconciles.replaceChildren(h('h3', {}, 'Reconciles'), table(['Job', 'State', 'Progress', 'Seen', 'Added / removed / updated', 'Requested'], rec.reconciles, (x) => [
        `${x.runner}/${x.job}`, badge(x.state), progress(x.percent ?? 0), `${x.files_seen} files · ${bytes(x.bytes_seen)}`,
        `${x.rows_added} / ${x.rows_removed} / ${x.rows_updated}`, localTime(x.requested_at)], 'No reconcile yet.'));
      if (formOpen) return;
    },
  };
};

function stripJob(job) {
  const { name, source, dest_prefix, includes, excludes, interval_ms, settle_ms, enabled } = job;
  return { name, source, dest_prefix, includes, excludes, interval_ms, settle_ms, enabled };
}

pages.runs = () => {
  const form = h('form', { class: 'filters' },
    field('Runner', h('input', { name: 'runner' })), field('Job', h('input', { name: 'job' })),
    field('State', select('state', ['', 'running', 'succeeded', 'partial', 'failed', 'abandoned'], '')),
    field('Per page', select('limit', ['50', '200', '1000'], '50')));
  const list = h('div');
  let offset = 0;
  form.addEventListener('change', () => { offset = 0; refreshNow(); });
  form.addEventListener('submit', (e) => { e.preventDefault(); offset = 0; refreshNow(); });
  return {
    title: 'Runs',
    root: h('div', {}, form, list),
    async refresh() {
      const d = new FormData(form);
      const limit = Number(d.get('limit'));
      const res = await get('/runs' + query({ runner: d.get('runner'), job: d.get('job'), state: d.get('state'), limit, offset }));
      const runs = res.runs;
      const pager = h('div', { class: 'actions' },
        h('button', { type: 'button', disabled: offset === 0, onclick: () => { offset = Math.max(0, offset - limit); refreshNow(); } }, 'Newer'),
        h('button', { type: 'button', disabled: !res.next_offset, onclick: () => { offset = res.next_offset; refreshNow(); } }, 'Older'));
      list.replaceChildren(table(['Run', 'Runner/job', 'Trigger', 'State', 'Uploaded', 'Failed', 'Skipped', 'Bytes', 'Started', 'Finished'], runs, (r) => [
        h('a', { href: `#/runs/${r.run_id}`, class: 'run-link' }, r.run_id.slice(0, 8)), `${r.runner}/${r.job}`, r.trigger, badge(r.state, 'state-' + r.state),
        r.files_uploaded, r.files_failed, r.files_skipped, bytes(r.bytes_uploaded), localTime(r.started_at), localTime(r.finished_at)], 'No runs match.'), pager);
    },
  };
};

pages.run = (id) => {
  const head = h('div', { class: 'card wide', id: 'run-summary' });
  const files = h('div');
  let stack = [''];
  async function loadFiles() {
    const res = await get(`/runs/${encodeURIComponent(id)}/files${query({ after: stack[stack.length - 1], limit: 100 })}`);
    files.replaceChildren(table(['Path', 'Planned', 'Size', 'Result', 'Error'], res.files, (f) => [
      h('span', { class: 'path' }, f.path), f.planned_reason || '—', bytes(f.size), badge(f.result || 'pending', 'result-' + (f.result || 'pending')), f.error || ''], 'No files in this run.'),
    h('div', { class: 'actions' },
      h('button', { type: 'button', disabled: stack.length === 1, onclick: () => { stack.pop(); loadFiles().catch(showError); } }, 'Previous'),
      h('button', { type: 'button', disabled: !res.next_after, onclick: () => { stack.push(res.next_after); loadFiles().catch(showError); } }, 'Next')));
  }
  return {
    title: `Run ${id.slice(0, 8)}`,
    root: h('div', {}, head, h('h3', {}, 'Files'), files),
    async refresh() {
      const r = await get(`/runs/${encodeURIComponent(id)}`);
      head.replaceChildren(h('h3', {}, `Run ${r.run_id}`), h('dl', { class: 'facts' },
        ...[['Runner/job', `${r.runner}/${r.job}`], ['State', badge(r.state, 'state-' + r.state)], ['Trigger', r.trigger],
          ['Seen', `${r.files_seen} files · ${bytes(r.bytes_seen)}`], ['Planned', r.files_planned],
          ['Uploaded', `${r.files_uploaded} files · ${bytes(r.bytes_uploaded)}`], ['Failed', r.files_failed], ['Skipped', r.files_skipped],
          ['Started', localTime(r.started_at)], ['Finished', localTime(r.finished_at)], ['Error', r.error || '—']]
          .flatMap(([k, v]) => [h('dt', {}, k), h('dd', { 'data-fact': k.toLowerCase() }, v)])),
      h('p', {}, h('a', { href: `#/logs?correlation=${r.run_id}` }, 'Agent log lines of this run')));
      if (r.state !== 'running' && this.loaded) return;
      this.loaded = true;
      await loadFiles();
    },
  };
};

pages.scrub = (params) => scrubPage(params, { action });

pages.logs = (params) => {
  const form = h('form', { class: 'filters' },
    field('Runner', h('input', { name: 'runner' })),
    field('Level', select('level', ['', 'debug', 'info', 'warn', 'error'], '')),
    field('Text', h('input', { name: 'grep', type: 'search', value: params.get('correlation') || '' })),
    field('Since', h('input', { name: 'since', type: 'datetime-local' })),
    field('Until', h('input', { name: 'until', type: 'datetime-local' })),
    h('button', { type: 'submit' }, 'Filter'));
  const list = h('div');
  let stack = [''];
  form.addEventListener('submit', (e) => { e.preventDefault(); stack = ['']; refreshNow(); });
  const ms = (v) => (v ? String(new Date(v).getTime()) : '');
  return {
    title: 'Agent logs',
    root: h('div', {}, form, list),
    async refresh() {
      const d = new FormData(form);
      let res;
      try {
        res = await get('/logs' + query({ runner: d.get('runner'), level: d.get('level'), grep: d.get('grep'),
          since: ms(d.get('since')), until: ms(d.get('until')), before_id: stack[stack.length - 1], limit: 100 }));
      } catch (e) {
        if (e instanceof ApiError && e.status === 404) {
          list.replaceChildren(h('p', { class: 'muted' }, 'Agent logs are not available on this server.'));
          return;
        }
        throw e;
      }
      list.replaceChildren(table(['Time', 'Runner', 'Level', 'Message', 'Run'], res.items, (l) => [
        localTime(l.time_ms), l.runner, badge(l.level), h('span', { class: 'message' }, l.message),
        l.correlation_id ? h('a', { href: `#/runs/${l.correlation_id}` }, l.correlation_id.slice(0, 8)) : ''], 'No log lines match.'),
      h('div', { class: 'actions' },
        h('button', { type: 'button', disabled: stack.length === 1, onclick: () => { stack.pop(); refreshNow(); } }, 'Newer'),
        h('button', { type: 'button', disabled: !res.next_before_id, onclick: () => { stack.push(String(res.next_before_id)); refreshNow(); } }, 'Older')));
    },
  };
};

pages.tokens = () => {
  const form = h('form', { class: 'card form-grid', id: 'token-form' },
    h('h3', {}, 'New API token (for the CLI)'),
    field('Name', h('input', { name: 'name', required: true, pattern: '[A-Za-z0-9_][A-Za-z0-9._\\-]{0,63}' })),
    field('Role', select('role', [['viewer', 'viewer (read only)'], ['admin', 'admin']], 'viewer')),
    h('button', { type: 'submit', disabled: !isAdmin() }, 'Create token'));
  const created = h('div', { id: 'token-created' });
  const list = h('div');
  const users = h('div');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const d = new FormData(form);
    try {
      clearError();
      const t = await post('/tokens', { name: d.get('name'), role: d.get('role') });
      created.replaceChildren(h('div', { class: 'card notice' }, h('p', {}, `Token "${t.name}" (${t.role}); copy it now, it is not shown again:`),
        h('code', { class: 'secret' }, t.token)));
      form.reset();
      refreshNow();
    } catch (err) { showError(err); }
  });
  return {
    title: 'Tokens',
    root: h('div', {}, form, created, list, users),
    async refresh() {
      const { items } = await get('/tokens');
      list.replaceChildren(h('h3', {}, 'API tokens'), table(['Name', 'Role', 'Created', 'By', 'Revoked', ''], items, (t) => [
        t.name, badge(t.role), localTime(t.created_at), t.created_by || '—', t.revoked_at ? localTime(t.revoked_at) : '—',
        t.active ? action('Revoke', () => del(`/tokens/${t.id}`), { danger: true, confirmText: `Revoke token ${t.name}?` }) : '']));
      if (isAdmin()) {
        const u = await get('/users');
        users.replaceChildren(h('h3', {}, 'Operators'), table(['User', 'Role', 'Created', 'Last sign-in'], u.items, (x) => [
          x.name, badge(x.role), localTime(x.created_at), localTime(x.last_login_at)]),
        h('p', { class: 'muted' }, 'Add or remove operators on the server: datasync-server users add|rm|passwd NAME.'));
      }
    },
  };
};

pages.audit = () => {
  const form = h('form', { class: 'filters' },
    field('Actor', h('input', { name: 'actor', placeholder: 'user:ann' })),
    field('Action contains', h('input', { name: 'q', type: 'search' })),
    h('button', { type: 'submit' }, 'Filter'));
  const list = h('div');
  let stack = [''];
  form.addEventListener('submit', (e) => { e.preventDefault(); stack = ['']; refreshNow(); });
  return {
    title: 'Audit log',
    root: h('div', {}, form, list),
    async refresh() {
      const d = new FormData(form);
      const res = await get('/audit' + query({ actor: d.get('actor'), q: d.get('q'), before_id: stack[stack.length - 1], limit: 50 }));
      list.replaceChildren(table(['Time', 'Actor', 'Action', 'Result', 'From', 'Details'], res.items, (a) => [
        localTime(a.time_ms), a.actor || '(anonymous)', a.action, badge(a.result, Number(a.result) < 300 ? 'ok' : 'refused'), a.source_ip,
        h('code', { class: 'details' }, JSON.stringify(a.details))]),
      h('div', { class: 'actions' },
        h('button', { type: 'button', disabled: stack.length === 1, onclick: () => { stack.pop(); refreshNow(); } }, 'Newer'),
        h('button', { type: 'button', disabled: !res.next_before_id, onclick: () => { stack.push(String(res.next_before_id)); refreshNow(); } }, 'Older')));
    },
  };
};

// ---- shell -------------------------------------------------------------------------------------

async function refreshNow() {
  if (!current) return;
  try {
    await current.refresh();
    clearError();
    $('#updated').textContent = `updated ${localTime(Date.now())}`;
  } catch (e) {
    showError(e);
  }
}

function route() {
  if (!me) return;
  const hash = location.hash.replace(/^#\/?/, '') || 'overview';
  const [path, qs] = hash.split('?');
  const params = new URLSearchParams(qs || '');
  const parts = path.split('/');
  let page;
  if (parts[0] === 'runs' && parts[1]) page = pages.run(decodeURIComponent(parts[1]));
  else page = (pages[parts[0]] || pages.overview)(params);
  current = page;
  document.title = `${page.title} · DataSync`;
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.page === parts[0]);
  $('#page').replaceChildren(h('h2', {}, page.title), page.root);
  clearError();
  refreshNow();
}

function showSignedIn(who) {
  me = who;
  setCsrfToken(who.csrf_token);
  $('#login').hidden = true;
  $('#page').hidden = false;
  $('#nav').hidden = false;
  $('#logout').hidden = false;
  $('#whoami').textContent = `${who.user || who.actor} (${who.role})`;
  document.body.classList.toggle('viewer', who.role !== 'admin');
  get('/status').then((s) => { $('#server-status').textContent = `server ${s.version} · schema v${s.schema_version}`; }, () => {});
  clearInterval(pollTimer);
  pollTimer = setInterval(() => { if (!document.hidden) refreshNow(); }, POLL_MS);
  route();
}

function showSignedOut(message) {
  me = null;
  current = null;
  clearInterval(pollTimer);
  setCsrfToken('');
  $('#login').hidden = false;
  $('#page').hidden = true;
  $('#nav').hidden = true;
  $('#logout').hidden = true;
  $('#whoami').textContent = '';
  $('#login-error').textContent = message || '';
  $('#login-name').focus();
}

onUnauthenticated(() => showSignedOut('Your session ended; sign in again.'));

$('#login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('#login-error').textContent = '';
  try {
    const who = await api('POST', '/session', { name: $('#login-name').value.trim(), password: $('#login-password').value });
    $('#login-password').value = '';
    showSignedIn(who);
  } catch (e) {
    if (e.status === 429) $('#login-error').textContent = `Too many failed attempts; try again in ${e.retryAfter || 'a few'} s.`;
    else if (e.status === 401) $('#login-error').textContent = 'Wrong user name or password.';
    else $('#login-error').textContent = e.message;
  }
});

$('#logout').addEventListener('click', async () => {
  try { await del('/session'); } catch { /* signed out either way */ }
  showSignedOut('Signed out.');
});

window.addEventListener('hashchange', route);

// Resume an existing session (the cookie is HttpOnly: ask the server who we are).
api('GET', '/session').then(showSignedIn, () => showSignedOut(''));
