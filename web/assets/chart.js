/* The admission charts as inline SVG (no library; attributes only, no inline styles, so the CSP holds):
   attempts over a rolling window against their limit, and the cooldowns and blocks ahead as bars with
   their end time. Pure builders: they take numbers and times and return an <svg>.
   Not: fetching the status (admission.js). */
import { t, lang } from './i18n.js';

const NS = 'http://www.w3.org/2000/svg';
// Drawn about as wide as it is shown (two charts a row), so the labels keep their size.
const W = 440;
const H = 180;
const PAD = { left: 34, right: 10, top: 24, bottom: 22 };
// A bucket with attempts is at least this tall (SVG units): one attempt against a limit of 50 would
// otherwise be a two-pixel sliver. Its count is written above it, so the height is never read alone.
const MIN_BAR = 14;

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(NS, tag);
  Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, String(v)));
  if (text !== undefined) node.textContent = text;
  return node;
}

const hhmm = (ms) => new Date(ms).toLocaleTimeString(lang(), { hour: '2-digit', minute: '2-digit' });

// Attempts (RFC 3339 times) in the window ending now, bucketed, with the running total against `limit`.
export function attemptsChart({ id, title, times, limit, windowMs, buckets, now }) {
  const from = now - windowMs;
  const at = times.map((x) => Date.parse(x)).filter((x) => Number.isFinite(x) && x > from && x <= now).sort((a, b) => a - b);
  const svg = svgEl('svg', { viewBox: '0 0 ' + W + ' ' + H, class: 'chart', role: 'img', 'aria-labelledby': id + '-t ' + id + '-d',
    'data-attempts': at.length, 'data-limit': limit });
  svg.appendChild(svgEl('title', { id: id + '-t' }, title));
  svg.appendChild(svgEl('desc', { id: id + '-d' }, t('chart.desc', { n: at.length, limit })));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const top = Math.max(limit, at.length, 1);
  const y = (v) => PAD.top + plotH - (v / top) * plotH;
  const x = (ms) => PAD.left + ((ms - from) / windowMs) * plotW;
  svg.appendChild(svgEl('rect', { x: PAD.left, y: PAD.top, width: plotW, height: plotH, class: 'chart-bg' }));
  // Per-bucket bars.
  const size = windowMs / buckets;
  const counts = new Array(buckets).fill(0);
  at.forEach((ms) => { counts[Math.min(buckets - 1, Math.floor((ms - from) / size))] += 1; });
  const barW = Math.max(4, plotW / buckets - 2);
  counts.forEach((c, i) => {
    if (!c) return;
    const bx = x(from + i * size) + 1;
    const h = Math.max(MIN_BAR, y(0) - y(c));
    svg.appendChild(svgEl('rect', { x: bx, y: y(0) - h, width: barW, height: h, class: 'chart-bar', 'data-count': c }));
    svg.appendChild(svgEl('text', { x: bx + barW / 2, y: Math.max(PAD.top + 10, y(0) - h - 3), 'text-anchor': 'middle', class: 'chart-count' }, String(c)));
  });
  // The running total within the window: a step line, reaching the limit line means "no more".
  let points = PAD.left + ',' + y(0);
  at.forEach((ms, i) => { points += ' ' + x(ms) + ',' + y(i) + ' ' + x(ms) + ',' + y(i + 1); });
  points += ' ' + x(now) + ',' + y(at.length);
  svg.appendChild(svgEl('polyline', { points, class: 'chart-total' }));
  svg.appendChild(svgEl('line', { x1: PAD.left, x2: W - PAD.right, y1: y(limit), y2: y(limit), class: 'chart-limit' }));
  svg.appendChild(svgEl('text', { x: W - PAD.right - 2, y: y(limit) - 3, 'text-anchor': 'end', class: 'chart-label' }, t('chart.limit', { limit })));
  svg.appendChild(svgEl('text', { x: PAD.left, y: PAD.top - 8, class: 'chart-used' }, t('chart.used', { n: at.length, limit })));
  svg.appendChild(svgEl('text', { x: PAD.left - 4, y: y(0), 'text-anchor': 'end', class: 'chart-label' }, '0'));
  svg.appendChild(svgEl('text', { x: PAD.left - 4, y: y(top) + 8, 'text-anchor': 'end', class: 'chart-label' }, String(top)));
  // A day's window starts at the same clock time as now: "24 h ago" says which side is which.
  const start = windowMs >= 24 * 3600 * 1000 ? t('chart.hoursAgo', { n: Math.round(windowMs / 3600000) }) : hhmm(from);
  svg.appendChild(svgEl('text', { x: PAD.left, y: H - 6, class: 'chart-label' }, start));
  svg.appendChild(svgEl('text', { x: W - PAD.right, y: H - 6, 'text-anchor': 'end', class: 'chart-label' }, t('chart.now', { at: hhmm(now) })));
  return svg;
}

// Holds ahead (cooldown, block, the admission's own block): one bar each from now to its end, labelled.
export function holdsChart({ id, title, holds, now }) {
  const live = holds.map((h) => Object.assign({}, h, { end: Date.parse(h.until) })).filter((h) => Number.isFinite(h.end) && h.end > now);
  const rowH = 22;
  const h = PAD.top + Math.max(1, live.length) * rowH + PAD.bottom;
  const svg = svgEl('svg', { viewBox: '0 0 ' + W + ' ' + h, class: 'chart chart-holds', role: 'img', 'aria-labelledby': id + '-t', 'data-holds': live.length });
  const summary = live.length ? live.map((x) => t('chart.holdUntil', { what: x.label, at: new Date(x.end).toLocaleString(lang()) })).join('; ') : t('chart.noHolds');
  svg.appendChild(svgEl('title', { id: id + '-t' }, title + ': ' + summary));
  if (!live.length) {
    svg.appendChild(svgEl('text', { x: PAD.left, y: PAD.top + 14, class: 'chart-label' }, t('chart.noHolds')));
    return svg;
  }
  const last = Math.max(...live.map((x) => x.end));
  const span = Math.max(last - now, 60000);
  const plotW = W - PAD.left - PAD.right - 150;
  live.forEach((x, i) => {
    const y = PAD.top + i * rowH;
    const width = Math.max(4, ((x.end - now) / span) * plotW);
    svg.appendChild(svgEl('rect', { x: PAD.left, y, width, height: rowH - 6, class: 'chart-hold chart-hold-' + x.kind, 'data-kind': x.kind }));
    svg.appendChild(svgEl('text', { x: PAD.left + width + 6, y: y + rowH - 10, class: 'chart-label' },
      t('chart.holdUntil', { what: x.label, at: hhmm(x.end) })));
  });
  svg.appendChild(svgEl('text', { x: PAD.left, y: h - 6, class: 'chart-label' }, t('chart.now', { at: hhmm(now) })));
  return svg;
}
