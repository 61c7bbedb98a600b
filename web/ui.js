// Small DOM helpers: elements, tables, times in the browser's time zone, sizes, charts.
const timeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'short', timeStyle: 'medium' });
const hourFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });

// h('button', {class: 'x', onclick: fn}, 'text', child...)
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);

// A time (Unix ms or ISO string) in the operator's local time zone; '—' for none.
export function localTime(t) {
  if (t === undefined || t === null || t === '' || t === 0) return '—';
  const d = typeof t === 'number' ? new Date(t) : new Date(t);
  if (Number.isNaN(d.getTime()) || d.getTime() <= 0) return '—';
  return timeFormat.format(d);
}
export function localHour(ms) { return hourFormat.format(new Date(ms)); }

export function bytes(n) {
  if (n === undefined || n === null) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function duration(ms) {
  if (!ms) return '—';
  const s = ms / 1000;
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

export function badge(text, kind) { return h('span', { class: `badge ${kind || text}` }, text); }

// A table with header `cols` and one row per item (`row(item)` returns cells: Nodes or text).
export function table(cols, items, row, empty = 'Nothing here yet.') {
  const tbody = h('tbody');
  if (!items.length) tbody.append(h('tr', {}, h('td', { colspan: cols.length, class: 'muted' }, empty)));
  for (const item of items) {
    tbody.append(h('tr', {}, row(item).map((c, i) => h('td', { 'data-label': cols[i] }, c))));
  }
  return h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, cols.map((c) => h('th', {}, c)))), tbody));
}

// A progress bar 0..100 (width set through the CSSOM: the CSP forbids inline style attributes).
export function progress(percent, label) {
  const fill = h('div', { class: 'bar-fill' });
  fill.style.width = `${Math.max(0, Math.min(100, percent))}%`;
  return h('div', { class: 'bar', role: 'progressbar', 'aria-valuenow': Math.round(percent), 'aria-valuemin': 0, 'aria-valuemax': 100 },
    fill, h('span', { class: 'bar-label' }, label ?? `${Math.round(percent)} %`));
}

const SVG = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) el.append(c);
  return el;
}

// A bar chart of `points` [{x: label, y: number, title}] as inline SVG, scaled to its box.
export function barChart(points, { height = 120, format = String, cls = '' } = {}) {
  const width = 600;
  const pad = 22;
  const max = Math.max(1, ...points.map((p) => p.y));
  const bw = (width - 2 * pad) / Math.max(1, points.length);
  const svg = s('svg', { viewBox: `0 0 ${width} ${height + 30}`, class: `chart ${cls}`, role: 'img' });
  svg.append(s('line', { x1: pad, y1: height, x2: width - pad, y2: height, class: 'axis' }));
  svg.append(s('text', { x: pad, y: 10, class: 'chart-label' }, document.createTextNode(`max ${format(max)}`)));
  points.forEach((p, i) => {
    const bh = (p.y / max) * (height - 16);
    const rect = s('rect', { x: pad + i * bw + 1, y: height - bh, width: Math.max(1, bw - 2), height: bh, class: 'chart-bar' });
    rect.append(s('title', {}, document.createTextNode(p.title ?? `${p.x}: ${format(p.y)}`)));
    svg.append(rect);
    if (i % Math.ceil(points.length / 8) === 0) {
      svg.append(s('text', { x: pad + i * bw, y: height + 16, class: 'chart-label' }, document.createTextNode(p.x)));
    }
  });
  return svg;
}

export function field(label, input) { return h('label', {}, label, ' ', input); }

export function select(name, options, value) {
  const el = h('select', { name });
  for (const o of options) {
    const [v, text] = Array.isArray(o) ? o : [o, o || 'any'];
    el.append(h('option', { value: v, selected: v === value }, text));
  }
  return el;
}
