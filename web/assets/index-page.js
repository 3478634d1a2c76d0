// The event list (/): each event with its live overall status (the best status among its ticket types).

import { api } from './api.js';
import { announce, formatDate, formatPrice, h, showConnection, STATUS_LABELS } from './dom.js';
import { guard, installErrorBoundary, reportError } from './errors.js';
import { LiveFeed } from './live.js';
import { AvailabilityStore, FrameBatcher } from './store.js';

installErrorBoundary();

const RANK = { available: 2, few_left: 1, sold_out: 0 };
const store = new AvailabilityStore();
const events = new Map(); // event id → {event, li, badge, left, typeIds: Set, status}
const eventOfType = new Map(); // ticket type id → event id

function overall(typeIds) {
  let best = 'sold_out';
  let left = 0;
  for (const id of typeIds) {
    const view = store.view(id);
    if (!view) continue;
    left += view.available;
    if (RANK[view.status] > RANK[best]) best = view.status;
  }
  return { status: best, left };
}

function build(event) {
  const typeIds = new Set(event.ticket_types.map((type) => type.id));
  for (const id of typeIds) eventOfType.set(id, event.id);
  const prices = event.ticket_types.map((type) => type.price_cents);
  const badge = h('span', { class: 'badge', 'data-status': 'available' });
  const left = h('span', { class: 'count' });
  const li = h('li', { class: 'event-card', 'data-event-id': event.id },
    h('h2', { class: 'event-title' }, h('a', { href: `/events/${event.id}` }, event.name)),
    h('p', { class: 'event-meta' }, h('time', { datetime: event.starts_at }, formatDate(event.starts_at)), ' · ', event.venue),
    h('p', { class: 'event-availability' }, badge, ' ', left,
      prices.length ? h('span', { class: 'from' }, ` · from ${formatPrice(Math.min(...prices))}`) : null));
  const entry = { event, li, badge, left, typeIds, status: null };
  events.set(event.id, entry);
  return li;
}

function render(eventId) {
  const entry = events.get(eventId);
  if (!entry) return;
  const { status, left } = overall(entry.typeIds);
  entry.left.textContent = status === 'sold_out' ? '' : `${left.toLocaleString()} left`;
  entry.left.dataset.available = String(left);
  if (entry.status !== status) {
    if (entry.status) announce(`${entry.event.name}: ${STATUS_LABELS[status].toLowerCase()}.`);
    entry.status = status;
    entry.badge.dataset.status = status;
    entry.badge.textContent = STATUS_LABELS[status];
    entry.li.classList.toggle('is-sold-out', status === 'sold_out');
  }
}

function applyRows(rows) {
  let failure = null;
  for (const row of rows ?? []) {
    try {
      const eventId = row?.event_id ?? eventOfType.get(row?.id);
      if (!events.has(eventId)) continue;
      eventOfType.set(row.id, eventId);
      events.get(eventId).typeIds.add(row.id);
      store.apply({ ...row, event_id: eventId });
    } catch (error) {
      failure ??= error;
    }
  }
  if (failure) throw failure;
}

/** Ticket types of all listed events, tagged with their event. */
function flatten(list) {
  return list.flatMap((event) => (events.has(event.id) ? event.ticket_types.map((type) => ({ ...type, event_id: event.id })) : []));
}

async function main() {
  let config;
  let list;
  try {
    [config, { events: list }] = await Promise.all([api.config(), api.events()]);
  } catch (error) {
    const message = document.getElementById('load-error');
    message.textContent = `The events could not be loaded: ${error?.message ?? error} Reload to try again.`;
    message.hidden = false;
    showConnection('offline');
    return;
  }
  const ul = document.getElementById('event-list');
  ul.replaceChildren(...list.map(build));
  document.getElementById('no-events').hidden = list.length > 0;
  const batcher = new FrameBatcher(render, { onError: (error) => reportError('render', error) });
  store.subscribe((typeId) => batcher.mark(eventOfType.get(typeId)));
  applyRows(flatten(list));
  batcher.flush();
  document.getElementById('events').setAttribute('aria-busy', 'false');

  const ids = [...events.keys()];
  const filter = ids.length && ids.length <= 100 ? `event_id=in.(${ids.join(',')})` : undefined;
  const feed = new LiveFeed({
    config,
    channelName: 'events-availability',
    bindings: [{ event: 'UPDATE', schema: 'public', table: 'event_tickets', ...(filter ? { filter } : {}) }],
    poll: async () => flatten((await api.events()).events),
    onRows: guard('message', applyRows),
    onStatus: showConnection,
    onError: (kind, error) => reportError(kind, error),
  });
  feed.start();
  window.marquee = { store, feed, batcher };
}

main().catch((error) => reportError('script', error));
