// The ticket selection page (/events/{id}): live counts, the reserve flow, the buyer's holds.

import { api, ApiError } from './api.js';
import { announce, formatDate, showConnection } from './dom.js';
import { guard, installErrorBoundary, reportError } from './errors.js';
import { HoldsPanel } from './holds.js';
import { LiveFeed } from './live.js';
import { setupAccount } from './account.js';
import { loadHolds, saveHolds } from './session.js';
import { AvailabilityStore, FrameBatcher } from './store.js';
import { TicketList } from './ticket-list.js';

installErrorBoundary();

const eventId = decodeURIComponent(location.pathname.split('/').filter(Boolean)[1] ?? '');
const $ = (selector) => document.querySelector(selector);

const store = new AvailabilityStore();
let list;
let holds;
let account;
let config;

/** Applies rows from the API or the socket; rows of other events are ignored. */
function applyRows(rows) {
  let failure = null;
  for (const row of rows ?? []) {
    if (row?.event_id && row.event_id !== eventId) continue;
    try {
      store.apply(row);
    } catch (error) {
      failure ??= error; // one bad row must not hold back the others
    }
  }
  if (failure) throw failure;
}

async function refresh() {
  const snapshot = await api.availability(eventId);
  applyRows(snapshot.ticket_types);
}

function conflictMessage(error, name) {
  const left = Number(error.details?.available ?? 0);
  if (error.code === 'sold_out' || left === 0) return `${name} sold out while you were choosing — nothing was reserved.`;
  return `Only ${left} ${name} ${left === 1 ? 'ticket is' : 'tickets are'} left now — nothing was reserved. Choose ${left} or fewer.`;
}

async function reserve(ticketTypeId, quantity) {
  const session = account.session();
  const name = list.name(ticketTypeId);
  list.setMessage(ticketTypeId, '');
  if (!session) {
    list.setMessage(ticketTypeId, 'Enter your name first (top of the page), then reserve.', 'info');
    account.focus();
    return;
  }
  const view = store.view(ticketTypeId);
  if (!view || quantity < 1 || quantity > view.available) {
    list.setMessage(ticketTypeId, `Choose between 1 and ${view?.available ?? 0}.`);
    return;
  }
  const sentAt = Date.now();
  const pending = store.hold(ticketTypeId, quantity); // optimistic: the seats look taken at once
  list.setBusy(ticketTypeId, true);
  try {
    const reservation = await api.reserve(eventId, ticketTypeId, quantity, session.token);
    await refresh().catch(() => {}); // the count that includes this hold, so it does not bounce back up
    store.settle(pending);
    const expiresAt = Math.min(Date.parse(reservation.hold_expires_at) || Infinity, sentAt + config.hold_seconds * 1000);
    holds.add({ id: reservation.id, ticketTypeId, typeName: name, quantity: reservation.quantity, expiresAt, status: reservation.status },
      { focus: true });
    saveHolds(session.user.id, eventId, holds.holds);
    announce(`Reserved ${reservation.quantity} × ${name}. Confirm before the hold ends.`);
  } catch (error) {
    store.settle(pending); // roll back the optimistic count
    if (error instanceof ApiError && error.status === 409) {
      list.setMessage(ticketTypeId, conflictMessage(error, name));
      refresh().catch(() => {});
    } else if (error instanceof ApiError && error.status === 401) {
      account.signOut();
      list.setMessage(ticketTypeId, 'Your sign-in has expired. Enter your name again, then reserve.', 'info');
      account.focus();
    } else if (error instanceof ApiError) {
      list.setMessage(ticketTypeId, `Could not reserve: ${error.message}`);
    } else {
      list.setMessage(ticketTypeId, 'Could not reserve; try again.');
      reportError('script', error);
    }
    list.focusQuantity(ticketTypeId);
  } finally {
    list.setBusy(ticketTypeId, false);
  }
}

async function act(hold, action) {
  const session = account.session();
  if (!session) throw new Error('sign in again to change this hold');
  const result = await (action === 'confirm' ? api.confirm(hold.id, session.token) : api.cancel(hold.id, session.token));
  refresh().catch(() => {});
  return result.status;
}

function renderEvent(event) {
  document.title = `${event.name} · Marquee`;
  $('#event-name').textContent = event.name;
  const when = $('#event-when');
  when.textContent = formatDate(event.starts_at);
  when.dateTime = event.starts_at;
  $('#event-venue').textContent = event.venue;
}

function showLoadError(error) {
  $('#event-name').textContent = error?.status === 404 ? 'Event not found' : 'This event could not be loaded';
  const message = $('#load-error');
  message.textContent = error?.status === 404 ? 'There is no such event.' : `${error?.message ?? error} Reload the page to try again.`;
  message.hidden = false;
}

async function main() {
  let event;
  try {
    [config, event] = await Promise.all([api.config(), api.event(eventId)]);
  } catch (error) {
    showLoadError(error);
    showConnection('offline');
    return;
  }
  renderEvent(event);
  account = setupAccount(config, { onChange: (session) => restoreHolds(session) });
  list = new TicketList($('#ticket-list'), store, { maxQuantity: config.max_quantity ?? 10, onReserve: reserve });
  const batcher = new FrameBatcher((id) => list.render(id), { onError: (error) => reportError('render', error) });
  store.subscribe((id) => batcher.mark(id));
  applyRows(event.ticket_types);
  batcher.flush();
  $('#tickets').setAttribute('aria-busy', 'false');
  holds = new HoldsPanel($('#holds'), $('#hold-list'), {
    onConfirm: (hold) => act(hold, 'confirm'),
    onCancel: (hold) => act(hold, 'cancel'),
    onChange: (all) => { const session = account.session(); if (session) saveHolds(session.user.id, eventId, all); },
  });
  restoreHolds(account.session());

  const feed = new LiveFeed({
    config,
    channelName: `event-${eventId}-tickets`,
    bindings: [{ event: 'UPDATE', schema: 'public', table: 'event_tickets', filter: `event_id=eq.${eventId}` }],
    poll: async () => (await api.availability(eventId)).ticket_types,
    onRows: guard('message', applyRows),
    onStatus: showConnection,
    onError: (kind, error) => reportError(kind, error),
  });
  feed.start();
  // for tests and debugging: counts of renders and frames
  window.marquee = { store, feed, batcher, list };
}

function restoreHolds(session) {
  if (!holds) return;
  holds.clear();
  if (!session) return;
  for (const hold of loadHolds(session.user.id, eventId)) holds.add(hold);
}

main().catch((error) => reportError('script', error));
