// The dashboard's only way to the server: the admin API, over the session cookie, with the
// session's CSRF token on every state-changing request.
let csrfToken = '';
let onSignedOut = () => {};

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
  }
}

export function setCsrfToken(token) { csrfToken = token || ''; }
export function onUnauthenticated(fn) { onSignedOut = fn; }

export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  const res = await fetch('/api/v1/admin' + path, {
    method, headers, credentials: 'same-origin', cache: 'no-store',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) {
    const err = new ApiError(res.status, data && data.detail);
    if (res.status === 429) err.retryAfter = res.headers.get('Retry-After');
    if (res.status === 401 && path !== '/session') onSignedOut();
    throw err;
  }
  return data;
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body === undefined ? {} : body);
export const put = (path, body) => api('PUT', path, body);
export const del = (path) => api('DELETE', path);

// `/runners/NAME/jobs/JOB` with each segment encoded.
export function jobPath(runner, job) {
  return `/runners/${encodeURIComponent(runner)}/jobs/${encodeURIComponent(job)}`;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const s = q.toString();
  return s ? '?' + s : '';
}
