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

// Rebuilds a container, giving focus back to the control (same data-key) that had it. When that
// control is gone (a scanned QR's button, a finished campaign's Pause), the focus goes to what
// `fallback(key)` names (the campaign's row), else to the panel's heading, rather than falling to the
// page, so the next Tab continues where the person was.
export function keepFocus(container, rebuild, fallback) {
  const active = document.activeElement;
  const inside = !!active && active !== container && container.contains(active);
  const key = inside ? active.dataset.key : null;
  rebuild();
  const again = key && container.querySelector('[data-key="' + CSS.escape(key) + '"]');
  if (again) again.focus();
  else if (inside && !document.contains(active)) {
    const near = key && fallback ? fallback(key) : null;
    if (near) near.focus(); else focusPanel(container);
  }
}

// The focus on the heading of the panel holding `node` (focusable from script only).
export function focusPanel(node) {
  const section = node.closest('section');
  const heading = section && section.querySelector('h2');
  if (!heading) return;
  heading.tabIndex = -1;
  heading.focus();
}

// Runs a button's action with the button marked busy (aria-disabled, data-busy) rather than
// disabled: a disabled button loses the focus, and a keyboard user would be sent back to the top of
// the page. A press while busy does nothing (undefined).
export async function whileBusy(btn, run) {
  if (btn.dataset.busy) return undefined;
  btn.dataset.busy = 'true';
  btn.setAttribute('aria-disabled', 'true');
  try {
    return await run();
  } finally {
    delete btn.dataset.busy;
    btn.removeAttribute('aria-disabled');
  }
}

export function toast(text) {
  const list = $('toasts');
  const item = list.appendChild(el('li', { class: 'toast' }, text));
  while (list.children.length > 5) list.firstChild.remove();
  setTimeout(() => item.remove(), 8000);
}
