// The dashboard in a real headless Chromium (Debian's, driven by playwright-core), against a real
// server + agent started by run_dashboard_test.py (which passes everything in the environment).
// Each step asserts what the operator sees; screenshots of every main page go to SCREENSHOT_DIR.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pw from 'playwright-core';

const { chromium } = pw;
const env = (k) => {
  if (!process.env[k]) throw new Error(`missing environment variable ${k}`);
  return process.env[k];
};
const BASE = env('BASE_URL');
const SHOTS = env('SCREENSHOT_DIR');
const RUNNER = env('RUNNER');
const FILES = Number(env('FILE_COUNT'));
const STEP_TIMEOUT = 60_000;

let step = '';
const log = (m) => console.log(`[dashboard] ${m}`);
function begin(name) { step = name; log(name); }

// Polls `check` (the page's CSP forbids waitForFunction's eval) until true or the step times out.
async function until(what, check, timeoutMs = STEP_TIMEOUT) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

async function signIn(page, user, password) {
  await page.goto(BASE + '/#/overview');
  await page.locator('#login-name').waitFor();
  await page.fill('#login-name', user);
  await page.fill('#login-password', password);
  await page.click('#login-form button[type=submit]');
}

async function signOut(page) {
  await page.click('#logout');
  await page.locator('#login-form').waitFor();
}

// fetch() from inside the page: same origin, the session cookie goes along.
async function rawFetch(page, method, url, headers = {}, body = '{}') {
  return page.evaluate(async ({ method, url, headers, body }) => {
    const r = await fetch(url, { method, headers: { 'Content-Type': 'application/json', ...headers }, body: method === 'GET' ? undefined : body });
    return { status: r.status, body: await r.text() };
  }, { method, url, headers, body });
}

const runnerRow = (page) => page.locator('tbody tr', { has: page.locator('.runner-name', { hasText: new RegExp(`^${RUNNER}$`) }) });
const jobRow = (page, job) => page.locator('tbody tr', { has: page.locator('.job-name', { hasText: new RegExp(`^${job}$`) }) });

const userDataDir = fs.mkdtempSync(path.join(process.env.WORK_DIR || os.tmpdir(), 'chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1366, height: 900 },
  timezoneId: 'Europe/Berlin',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', '--disable-dev-shm-usage',
    // The server's certificate comes from the harness's private CA: trust exactly its public
    // key (SHA-256 of the SubjectPublicKeyInfo), not every certificate.
    ...(process.env.SERVER_SPKI ? [`--ignore-certificate-errors-spki-list=${process.env.SERVER_SPKI}`] : [])],
});
context.setDefaultTimeout(STEP_TIMEOUT);
const page = context.pages()[0] || await context.newPage();
const consoleErrors = [];
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
page.on('pageerror', (e) => consoleErrors.push(String(e)));
page.on('dialog', (d) => d.accept());  // confirm() of destructive actions

try {
  begin('a wrong password is refused');
  await signIn(page, env('ADMIN_USER'), 'not-the-password');
  await page.locator('#login-error', { hasText: 'Wrong user name or password' }).waitFor();
  assert.equal(await page.locator('#nav').isHidden(), true);
  await shot(page, '01-login-refused');

  begin('a viewer signs in and cannot approve');
  await signIn(page, env('VIEWER_USER'), env('VIEWER_PASSWORD'));
  await page.locator('#whoami', { hasText: '(viewer)' }).waitFor();
  await page.goto(BASE + '/#/runners');
  await runnerRow(page).locator('.badge.pending').waitFor();
  const approveAsViewer = runnerRow(page).getByRole('button', { name: 'Approve' });
  assert.equal(await approveAsViewer.isDisabled(), true, 'Approve must be disabled for a viewer');
  await shot(page, '02-runners-viewer');
  // And the server refuses it too, even with a valid CSRF token.
  const who = JSON.parse((await rawFetch(page, 'GET', '/api/v1/admin/session')).body);
  const refused = await rawFetch(page, 'POST', `/api/v1/admin/runners/${RUNNER}/approve`, { 'X-CSRF-Token': who.csrf_token });
  assert.equal(refused.status, 403, `viewer approve: ${refused.body}`);
  await signOut(page);

  begin('the admin signs in');
  await signIn(page, env('ADMIN_USER'), env('ADMIN_PASSWORD'));
  await page.locator('#whoami', { hasText: '(admin)' }).waitFor();
  await page.locator('#card-runners', { hasText: '1 pending' }).waitFor();
  await shot(page, '03-overview');

  begin('a request without the CSRF token is refused');
  const noCsrf = await rawFetch(page, 'POST', '/api/v1/admin/tokens', {}, JSON.stringify({ name: 'sneaky', role: 'admin' }));
  assert.equal(noCsrf.status, 403, `no CSRF: ${noCsrf.body}`);
  assert.match(noCsrf.body, /CSRF/);
  const badCsrf = await rawFetch(page, 'POST', `/api/v1/admin/runners/${RUNNER}/approve`, { 'X-CSRF-Token': 'forged' });
  assert.equal(badCsrf.status, 403);

  begin('approve the pending agent');
  await page.click('#nav a[data-page=runners]');
  await runnerRow(page).getByRole('button', { name: 'Approve' }).click();
  await runnerRow(page).locator('.badge.approved').waitFor();
  await runnerRow(page).locator('.badge.online').waitFor();  // the agent got its key and heartbeats
  await shot(page, '04-runners');

  begin('two registrations under one name: each its own decision, then Delete frees the name');
  for (const host of ['first-pc', 'second-pc']) {
    const r = await rawFetch(page, 'POST', '/api/v1/agent/register', {}, JSON.stringify({ name: 'pc-twice', hostname: host }));
    assert.equal(r.status, 202, r.body);
  }
  await page.reload();
  const twiceRow = page.locator('tbody tr', { has: page.locator('.runner-name', { hasText: /^pc-twice$/ }) });
  await twiceRow.locator('text=2 enrollments: choose below').waitFor();
  const choices = page.locator('.enrollments', { hasText: 'pc-twice' });
  await choices.locator('tbody tr', { hasText: '127.0.0.1' }).nth(1).waitFor();
  await shot(page, '04b-runners-two-enrollments');
  await choices.locator('tbody tr', { hasText: 'second-pc' }).getByRole('button', { name: 'Reject' }).click();
  await twiceRow.getByRole('button', { name: 'Reject' }).click();  // the one left: the runner is rejected
  await twiceRow.locator('.badge.rejected').waitFor();
  await twiceRow.getByRole('button', { name: 'Delete' }).click();
  await twiceRow.waitFor({ state: 'detached' });
  const again = await rawFetch(page, 'POST', '/api/v1/agent/register', {}, JSON.stringify({ name: 'pc-twice' }));
  assert.equal(again.status, 202, again.body);

  begin('create a job');
  await page.click('#nav a[data-page=jobs]');
  await page.getByRole('button', { name: 'New job' }).click();
  const form = page.locator('#job-form');
  await form.locator('select[name=runner]').selectOption(RUNNER);
  await form.locator('input[name=name]').fill('raw');
  await form.locator('input[name=source]').fill(env('SOURCE_DIR'));
  await form.locator('input[name=dest_prefix]').fill(env('DEST_PREFIX'));
  await form.locator('input[name=interval]').fill('3600');
  await form.locator('input[name=settle]').fill('0');
  await form.locator('input[name=enabled]').uncheck();  // runs only when told to: the sync below is the only run
  await shot(page, '05-job-form');
  await form.getByRole('button', { name: 'Create job' }).click();
  await jobRow(page, 'raw').waitFor();
  await jobRow(page, 'raw').locator('.badge.disabled').waitFor();

  begin('trigger a sync and see it complete with the right file count');
  await jobRow(page, 'raw').getByRole('button', { name: 'Sync now' }).click();
  await jobRow(page, 'raw').getByRole('link', { name: new RegExp(`^succeeded · ${FILES} up`) }).waitFor({ timeout: 120_000 });
  await shot(page, '06-jobs');

  begin('open the run');
  await jobRow(page, 'raw').getByRole('link', { name: /^succeeded/ }).click();
  await page.locator('#run-summary dd[data-fact=state] .badge', { hasText: 'succeeded' }).waitFor();
  const uploaded = await page.locator('#run-summary dd[data-fact=uploaded]').textContent();
  assert.match(uploaded, new RegExp(`^${FILES} files`), `uploaded: ${uploaded}`);
  await page.locator('tbody tr .badge.result-uploaded').nth(FILES - 1).waitFor();
  assert.equal(await page.locator('tbody tr .badge.result-uploaded').count(), FILES);
  await shot(page, '07-run');

  begin('files of the job: searchable, paged');
  await page.click('#nav a[data-page=jobs]');
  await jobRow(page, 'raw').getByRole('button', { name: 'Files' }).click();
  const panel = page.locator('#files-panel');
  await panel.locator('p', { hasText: `${FILES} files in the index` }).waitFor();
  await panel.locator('input[name=q]').fill('m007');
  await panel.locator('tbody tr', { hasText: 'day1/m007.csv' }).waitFor();
  await until('one search result', async () => (await panel.locator('tbody tr').count()) === 1);
  await shot(page, '08-files-search');

  begin('reconcile with a live progress bar reaching 100 %');
  await jobRow(page, 'raw').getByRole('button', { name: 'Reconcile' }).click();
  const rec = page.locator('#reconciles tbody tr').first();
  await rec.locator('.badge.succeeded').waitFor({ timeout: 120_000 });
  await rec.locator('[role=progressbar][aria-valuenow="100"]').waitFor();
  assert.match(await rec.locator('.bar-label').textContent(), /100 %/);
  await shot(page, '09-reconcile');

  begin('storage scrub: the job is listed, Scrub now reaches succeeded, the report is clean');
  const scrubStatus = await rawFetch(page, 'GET', '/api/v1/admin/scrubs/status');
  await page.click('#nav a[data-page=scrub]');
  if (scrubStatus.status === 404) {
    log('SKIPPED the scrub checks: this server has no GET /scrubs/status (scrub not built in); checking the page says so');
    await page.locator('#scrub-jobs p', { hasText: 'not available on this server' }).waitFor();
  } else {
    assert.equal(scrubStatus.status, 200, `GET /scrubs/status: ${scrubStatus.body}`);
    const srow = page.locator('#scrub-jobs tbody tr', { has: page.locator('.job-name', { hasText: /^raw$/ }) });
    await srow.waitFor();
    const before = await srow.locator('.scrub-state').getAttribute('data-scrub-id');
    // click() waits while the button is disabled (a scheduled scrub of the job queued or running).
    await srow.getByRole('button', { name: 'Scrub now' }).click();
    await until('a new scrub of raw in the list', async () => {
      const id = await srow.locator('.scrub-state').getAttribute('data-scrub-id');
      return !!id && id !== before;
    });
    await srow.locator('.scrub-state .badge.succeeded').waitFor({ timeout: 120_000 });
    await srow.locator('.badge.clean').waitFor();
    await shot(page, '16-scrub');
    await srow.getByRole('link', { name: 'Report' }).click();
    const report = page.locator('#scrub-report');
    await report.locator('dd[data-fact=state] .badge.succeeded').waitFor();
    for (const fact of ['missing', 'extra', 'size mismatches', 'hash mismatches', 'unhealed']) {
      assert.equal((await report.locator(`dd[data-fact="${fact}"]`).textContent()).trim(), '0', `scrub report: ${fact}`);
    }
    const listed = await report.locator('dd[data-fact=listed]').textContent();
    assert.match(listed, new RegExp(`^${FILES} objects`), `scrub listed: ${listed}`);
    await page.locator('#scrub-recent tbody tr a.scrub-link').first().waitFor();
    await shot(page, '17-scrub-report');
  }

  begin('runs, logs, tokens, audit pages');
  await page.click('#nav a[data-page=runs]');
  await page.locator('a.run-link').first().waitFor();
  await shot(page, '10-runs');
  await page.click('#nav a[data-page=logs]');
  await page.locator('#page table, #page p.muted').first().waitFor();
  await shot(page, '11-logs');
  await page.click('#nav a[data-page=tokens]');
  await page.locator('#token-form input[name=name]').fill('ci-reader');
  await page.locator('#token-form select[name=role]').selectOption('viewer');
  await page.locator('#token-form').getByRole('button', { name: 'Create token' }).click();
  const secret = (await page.locator('#token-created code.secret').textContent()).trim();
  assert.match(secret, /^dsa_/);
  const viaToken = await rawFetch(page, 'GET', '/api/v1/admin/status', { Authorization: `Bearer ${secret}` });
  assert.equal(viaToken.status, 200);
  const revoke = page.locator('tbody tr', { hasText: 'ci-reader' }).getByRole('button', { name: 'Revoke' });
  await revoke.click();
  await revoke.waitFor({ state: 'detached' });
  const revoked = await rawFetch(page, 'GET', '/api/v1/admin/status', { Authorization: `Bearer ${secret}` });
  assert.equal(revoked.status, 401);
  await shot(page, '12-tokens');
  await page.click('#nav a[data-page=audit]');
  await page.locator('tbody tr', { hasText: `POST /runners/${RUNNER}/approve` }).first().waitFor();
  await shot(page, '13-audit');

  begin('edit, then delete the job');
  await page.click('#nav a[data-page=jobs]');
  await jobRow(page, 'raw').getByRole('button', { name: 'Edit' }).click();
  await page.locator('#job-form input[name=interval]').fill('1800');
  await page.locator('#job-form').getByRole('button', { name: 'Save' }).click();
  await jobRow(page, 'raw').locator('td', { hasText: /^30 min$/ }).waitFor();
  await jobRow(page, 'raw').getByRole('button', { name: 'Enable' }).click();
  await jobRow(page, 'raw').getByRole('button', { name: 'Disable' }).waitFor();
  await shot(page, '15-jobs-edited');
  await jobRow(page, 'raw').getByRole('button', { name: 'Delete' }).click();
  await jobRow(page, 'raw').waitFor({ state: 'detached' });

  begin('phone-sized screen');
  await page.setViewportSize({ width: 390, height: 844 });
  await page.click('#nav a[data-page=overview]');
  await page.locator('#card-jobs').waitFor();
  await shot(page, '14-overview-phone');
  await page.setViewportSize({ width: 1366, height: 900 });

  begin('sign out');
  await signOut(page);
  const after = await rawFetch(page, 'GET', '/api/v1/admin/status');
  assert.equal(after.status, 401);

  assert.deepEqual(consoleErrors.filter((e) => !/status of 40[134]|429/.test(e)), [], 'browser console errors');
  log('all steps passed');
} catch (e) {
  console.error(`[dashboard] FAILED at step "${step}": ${e.stack || e}`);
  try { await shot(page, 'zz-failure'); } catch { /* best effort */ }
  process.exitCode = 1;
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
