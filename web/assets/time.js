/* Live times: countdowns to an instant and relative times since one, and the 1 s timer that refreshes them.
   Owns: that timer. Not: what the times are of (the views that create the spans); it never touches the network. */
import { el } from './dom.js';
import { t, lang, relTime } from './i18n.js';

let ticker = null;

// Live texts, filled now and refreshed by tick(): a countdown to `until` and a relative time since `iso`.
export function countdownSpan(until, tpl, tplDone) {
  const span = el('span', { class: 'countdown', 'data-until': until, 'data-tpl': tpl, 'data-tpl-done': tplDone, 'aria-live': 'off' });
  tickCountdown(span);
  return span;
}

export function sinceSpan(iso) {
  return el('time', { datetime: iso, 'data-since': iso, title: new Date(iso).toLocaleString(lang()) }, relTime(iso));
}

function clock(secs) {
  const h = Math.floor(secs / 3600);
  const mmss = String(Math.floor((secs % 3600) / 60)).padStart(h ? 2 : 1, '0') + ':' + String(secs % 60).padStart(2, '0');
  return h ? h + ':' + mmss : mmss;
}

export function tickCountdown(node) {
  const until = Date.parse(node.dataset.until);
  if (!Number.isFinite(until)) { node.textContent = ''; return; }
  const left = Math.ceil((until - Date.now()) / 1000);
  node.dataset.remaining = String(Math.max(0, left));
  node.textContent = left > 0 ? t(node.dataset.tpl || 'countdown.left', { time: clock(left) }) : t(node.dataset.tplDone || 'countdown.over');
}

// Relative times and countdowns, computed locally.
export function tick() {
  document.querySelectorAll('[data-until]').forEach((n) => { if (n.dataset.until) tickCountdown(n); });
  document.querySelectorAll('[data-since]').forEach((n) => { n.textContent = relTime(n.dataset.since); });
}

export const startTicker = () => { ticker = setInterval(tick, 1000); };
export const stopTicker = () => clearInterval(ticker);
