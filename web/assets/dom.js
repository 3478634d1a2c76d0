// Small DOM and formatting helpers shared by the pages.

/** `h('li', {class: 'x', dataset: {id: 1}}, 'text', child)` — text is always set as text, never as HTML. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') element.className = value;
    else if (key === 'dataset') Object.assign(element.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') element.addEventListener(key.slice(2), value);
    else if (value === true) element.setAttribute(key, '');
    else element.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

const CURRENCY = 'USD';
const money = new Intl.NumberFormat(undefined, { style: 'currency', currency: CURRENCY });
export const formatPrice = (cents) => money.format((Number(cents) || 0) / 100);

export function formatDate(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  return date.toLocaleString(undefined, { weekday: 'short', day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit' });
}

/** `125` → `2:05`; `3725` → `1:02:05`. */
export function formatCountdown(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, '0');
  return hours ? `${hours}:${String(minutes).padStart(2, '0')}:${rest}` : `${minutes}:${rest}`;
}

export const STATUS_LABELS = { available: 'Available', few_left: 'Few left', sold_out: 'Sold out' };

export const CONNECTION_LABELS = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  polling: 'Updating every few seconds',
  offline: 'Offline — showing last known counts',
};

/** Says `text` to screen readers through the page's polite live region. */
export function announce(text) {
  const region = document.getElementById('announcer');
  if (!region) return;
  // a change of text is what gets announced; clear first so the same words twice are read twice
  region.textContent = '';
  setTimeout(() => { region.textContent = text; }, 50);
}

/** Updates the page's connection indicator. */
export function showConnection(status) {
  const indicator = document.querySelector('[data-connection-status]');
  if (!indicator) return;
  indicator.dataset.connectionStatus = status;
  indicator.querySelector('.connection-label').textContent = CONNECTION_LABELS[status] ?? status;
  indicator.title = status === 'polling' ? 'Live updates are not available here; the page checks for changes every few seconds.' : '';
}
