/* DOM helpers shared by the views: element builders, message areas, focus keeping and toasts.
   Owns: no state beyond the DOM it is handed. Not: API calls (api.js), live times (time.js), strings (i18n.js). */

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs, text) {
  const node = document.createElement(tag);
  Object.entries(attrs || {}).forEach(([k, v]) => { if (v !== null && v !== undefined) node.setAttribute(k, v); });
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

export function button(attrs, label, ariaLabel) {
  const b = el('button', Object.assign({ type: 'button', class: 'btn btn-small' }, attrs), label);
  if (ariaLabel) b.setAttribute('aria-label', ariaLabel);
  return b;
}

// A message area (role=status): text, error flag, and optionally an extra node (a countdown).
export function setMsg(id, text, isError, extra) {
  const node = $(id);
  node.textContent = text || '';
  node.classList.toggle('error', !!isError);
  node.dataset.result = text ? (isError ? 'error' : 'ok') : '';
  if (text && extra) node.append(' ', extra);
}

// Rebuilds a container, giving focus back to the control (same data-key) that had it.
export function keepFocus(container, rebuild) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.key : null;
  rebuild();
  const again = key && container.querySelector('[data-key="' + CSS.escape(key) + '"]');
  if (again) again.focus();
}

export function toast(text) {
  const list = $('toasts');
  const item = list.appendChild(el('li', { class: 'toast' }, text));
  while (list.children.length > 5) list.firstChild.remove();
  setTimeout(() => item.remove(), 8000);
}
