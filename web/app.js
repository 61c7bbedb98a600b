// Minimal read-mostly dashboard over the admin API. The full dashboard (accounts, sessions,
// CSRF, paging) is issue 6; this page already talks only to /api/v1/admin.
const $ = (sel) => document.querySelector(sel);
const tokenKey = 'datasync.token';

async function api(method, path) {
  const res = await fetch('/api/v1/admin' + path, {
    method, headers: { Authorization: 'Bearer ' + sessionStorage.getItem(tokenKey) },
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.detail || `HTTP ${res.status}`);
  return body;
}

function cell(text, cls) {
  const td = document.createElement('td');
  td.textContent = text ?? '';
  if (cls) td.className = cls;
  return td;
}

function local(iso) { return iso ? new Date(iso).toLocaleString() : '—'; }

function fill(table, rows) {
  const tbody = $(table + ' tbody');
  tbody.replaceChildren(...rows.map((cells) => {
    const tr = document.createElement('tr');
    tr.append(...cells);
    return tr;
  }));
}

async function refresh() {
  try {
    const [status, runners, jobs, runs] = await Promise.all([
      api('GET', '/status'), api('GET', '/runners'), api('GET', '/jobs'), api('GET', '/runs?limit=20')]);
    $('#server-status').textContent = `server ${status.version} · schema v${status.schema_version} · ${status.storage}`;
    fill('#runners', runners.runners.map((r) => {
      const action = document.createElement('td');
      if (r.status === 'pending') {
        const b = document.createElement('button');
        b.textContent = 'Approve';
        b.onclick = () => api('POST', `/runners/${encodeURIComponent(r.name)}/approve`).then(refresh, showError);
        action.append(b);
      }
      return [cell(r.name), cell(r.status, r.status), cell(r.online ? 'online' : 'offline', r.online ? 'online' : 'offline'),
        cell(r.hostname), cell(r.agent_version), cell(r.runtime_state), cell(local(r.last_heartbeat_at)), action];
    }));
    fill('#jobs', jobs.jobs.map((j) => {
      const action = document.createElement('td');
      const b = document.createElement('button');
      b.textContent = 'Sync now';
      b.onclick = () => api('POST', `/runners/${encodeURIComponent(j.runner)}/jobs/${encodeURIComponent(j.name)}/sync`).then(refresh, showError);
      action.append(b);
      return [cell(j.runner), cell(j.name), cell(j.source), cell(j.dest_prefix), cell(`${j.interval_ms / 1000}s`), action];
    }));
    fill('#runs', runs.runs.map((r) => [cell(r.run_id.slice(0, 8)), cell(`${r.runner}/${r.job}`),
      cell(r.state, 'state-' + r.state), cell(r.files_uploaded), cell(r.files_failed), cell(r.bytes_uploaded),
      cell(local(r.started_at))]));
    $('#app-error').textContent = '';
  } catch (e) {
    showError(e);
  }
}

function showError(e) { $('#app-error').textContent = e.message; }

function show() {
  const signedIn = !!sessionStorage.getItem(tokenKey);
  $('#login').hidden = signedIn;
  $('#app').hidden = !signedIn;
  $('#logout').hidden = !signedIn;
  if (signedIn) refresh();
}

$('#login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(tokenKey, $('#token').value.trim());
  try {
    await api('GET', '/status');
    show();
  } catch (e) {
    sessionStorage.removeItem(tokenKey);
    $('#login-error').textContent = e.message;
  }
});
$('#logout').onclick = () => { sessionStorage.removeItem(tokenKey); show(); };
setInterval(() => { if (sessionStorage.getItem(tokenKey)) refresh(); }, 3000);
show();
