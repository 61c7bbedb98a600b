// The storage scrub page (#/scrub, #/scrub?id=SCRUB): per job the last scrub, its findings and
// when the next is due, "Scrub now", recent scrubs, and the report of one selected scrub.
// Every server string goes into the page as text (h() makes text nodes), never as HTML.
import { get, post, jobPath, query, ApiError } from './api.js';
import { h, localTime, bytes, duration, badge, table } from './ui.js';

const STATES = ['queued', 'running', 'succeeded', 'failed'];
const finished = (s) => s && (s.state === 'succeeded' || s.state === 'failed');
const count = (n) => Number(n) || 0;
const mismatched = (s) => count(s.size_mismatches) + count(s.hash_mismatches);

function stateBadge(s) {
  if (!s) return badge('never', 'never');
  const b = badge(s.state, STATES.includes(s.state) ? s.state : 'unknown');
  if (s.error) b.title = s.error;
  return b;
}

// "drift" (red) whenever the server says so; "clean" (green) only after a scrub that succeeded
// (a failed or unfinished one proves nothing); '—' otherwise.
function driftBadge(drift, clean) {
  if (drift) return badge('drift', 'drift');
  return clean ? badge('clean', 'clean') : '—';
}
const succeeded = (s) => !!s && s.state === 'succeeded';

// A count that should be 0: shown in red when it is not.
const bad = (n) => h('span', { class: count(n) > 0 ? 'count-bad' : '' }, String(count(n)));

const reportLink = (s) => h('a', { href: `#/scrub${query({ id: s.id })}`, class: 'scrub-link' }, s.id.slice(0, 8));

function schedule(st) {
  const rate = count(st.rate_objects_per_s);
  return `Every job is scrubbed every ${duration(count(st.interval_s) * 1000)}`
    + (rate > 0 ? ` at up to ${rate} objects/s` : '')
    + `, re-hashing ${(Number(st.rehash_fraction) * 100 || 0).toFixed(1)} % of the objects.`;
}

function jobsTable(jobs, action) {
  return table(['Runner', 'Job', 'Last scrub', 'Finished', 'Listed', 'Missing', 'Extra', 'Mismatched', 'Temp',
    'Unhealed', 'Drift', 'Next due', 'Actions'], jobs, (j) => {
    const last = j.last || null;
    const busy = last && !finished(last);
    const scrub = action('Scrub now', () => post(`${jobPath(j.runner, j.job)}/scrub`, {}));
    if (busy) {
      scrub.disabled = true;
      scrub.title = `a scrub is ${last.state}`;
    }
    const n = (k) => (last ? count(last[k]) : '—');
    return [j.runner, h('span', { class: 'job-name' }, j.job),
      h('span', { class: 'scrub-state', dataset: { scrubId: last ? last.id : '' } }, stateBadge(last)),
      last ? localTime(last.finished_at) : '—', n('objects_listed'), n('missing'), n('extra'),
      last ? mismatched(last) : '—', n('temp_files'), bad(j.unhealed), driftBadge(j.drift, succeeded(last)),
      localTime(j.next_due_at),
      h('span', { class: 'actions' }, scrub, last ? h('a', { href: `#/scrub${query({ id: last.id })}`, class: 'report-link' }, 'Report') : '')];
  }, 'No jobs yet.');
}

function recentTable(scrubs) {
  return table(['Scrub', 'Job', 'State', 'Trigger', 'Requested', 'Took', 'Listed', 'Drift', 'Unhealed'], scrubs, (s) => [
    reportLink(s), `${s.runner}/${s.job}`, stateBadge(s), s.trigger, localTime(s.requested_at),
    finished(s) ? duration(Number(s.elapsed_s) * 1000) : '—', `${count(s.objects_listed)} · ${bytes(s.bytes_listed)}`,
    driftBadge(s.drift, succeeded(s)), bad(s.unhealed)], 'No scrub yet.');
}

// One list of the report: "first 200 of N" when the server capped it.
function findingList(title, cls, items, total, cols, row) {
  const list = Array.isArray(items) ? items : [];
  if (!list.length && !total) return '';
  const note = total > list.length ? ` (first ${list.length} of ${total})` : ` (${list.length})`;
  return h('div', { class: `finding-list ${cls}` }, h('h4', {}, title + note), table(cols, list, row, 'None listed.'));
}

function reportView(s) {
  const rep = s.report || {};
  const path = (p) => h('span', { class: 'path' }, p);
  const facts = [['Job', `${s.runner}/${s.job}`], ['State', stateBadge(s)], ['Trigger', s.trigger],
    ['Re-hash fraction', `${(Number(s.rehash_fraction) * 100 || 0).toFixed(1)} %`],
    ['Requested', localTime(s.requested_at)], ['Started', localTime(s.started_at)], ['Finished', localTime(s.finished_at)],
    ['Took', duration(Number(s.elapsed_s) * 1000)], ['Listed', `${count(s.objects_listed)} objects · ${bytes(s.bytes_listed)}`],
    ['Re-hashed', count(s.objects_rehashed)], ['Missing', bad(s.missing)], ['Extra', bad(s.extra)],
    ['Size mismatches', bad(s.size_mismatches)], ['Hash mismatches', bad(s.hash_mismatches)],
    ['Temp files', count(s.temp_files)], ['Healed', count(s.healed)], ['Unhealed', bad(s.unhealed)],
    ['Drift', driftBadge(s.drift, succeeded(s))], ['Error', s.error || '—']];
  return h('div', { class: 'card wide', id: 'scrub-report', dataset: { scrubId: s.id } },
    h('h3', {}, `Scrub ${s.id}`),
    h('dl', { class: 'facts' }, ...facts.flatMap(([k, v]) => [h('dt', {}, k), h('dd', { 'data-fact': k.toLowerCase() }, v)])),
    findingList('Unhealed', 'unhealed', rep.unhealed, count(s.unhealed), ['Path', 'Reason'], (e) => [path(e.path), e.reason]),
    findingList('Missing from storage', 'missing', rep.missing, count(s.missing), ['Path', 'Size', 'SHA-256', 'Action'],
      (e) => [path(e.path), bytes(e.size), h('code', { class: 'details' }, e.sha256 || '—'), e.action || '—']),
    findingList('Mismatched', 'mismatches', rep.mismatches, mismatched(s), ['Path', 'Kind', 'Index', 'Stored', 'Action'],
      (e) => [path(e.path), e.kind, e.kind === 'size' ? bytes(e.index_size) : h('code', { class: 'details' }, e.index_sha256 || '—'),
        e.kind === 'size' ? bytes(e.stored_size) : h('code', { class: 'details' }, e.stored_sha256 || '—'), e.action || '—']),
    findingList('Extra in storage', 'extra', rep.extra, count(s.extra), ['Path', 'Size', 'Action'],
      (e) => [path(e.path), bytes(e.size), e.action || '—']),
    findingList('Temp files', 'temp', rep.temp_files, count(s.temp_files), ['Key', 'Size', 'Age', 'Removed'],
      (e) => [path(e.key), bytes(e.size), duration(count(e.age_s) * 1000), e.removed ? 'yes' : 'no']));
}

// The page object app.js shows; `action(label, fn)` makes an admin-only button (app.js).
export function scrubPage(params, { action }) {
  const summary = h('p', { class: 'muted', id: 'scrub-schedule' });
  const jobs = h('div', { id: 'scrub-jobs' });
  const report = h('div');
  const recent = h('div', { class: 'card wide', id: 'scrub-recent' });
  const selected = params.get('id') || '';
  let shown = null;  // the selected scrub once finished: not fetched again
  async function loadReport() {
    if (!selected || finished(shown)) return;
    try {
      shown = await get(`/scrubs/${encodeURIComponent(selected)}`);
      report.replaceChildren(reportView(shown));
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 404) throw e;
      report.replaceChildren(h('p', { class: 'muted' }, `No scrub ${selected}.`));
    }
  }
  return {
    title: 'Storage scrub',
    root: h('div', {}, summary, jobs, report, recent),
    async refresh() {
      let st;
      try {
        st = await get('/scrubs/status');
      } catch (e) {
        if (!(e instanceof ApiError) || e.status !== 404) throw e;
        summary.replaceChildren();
        recent.replaceChildren();
        jobs.replaceChildren(h('p', { class: 'muted' }, 'Storage scrub is not available on this server.'));
        return;
      }
      const rec = await get('/scrubs?limit=20');
      summary.textContent = schedule(st);
      jobs.replaceChildren(jobsTable(st.jobs || [], action));
      recent.replaceChildren(h('h3', {}, 'Recent scrubs'), recentTable(rec.scrubs || []));
      await loadReport();
    },
  };
}
