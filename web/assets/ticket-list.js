// The ticket types of an event: one <li> per type, built once; `render(id)` touches only that type's row and only
// the parts that changed.

import { announce, formatPrice, h, STATUS_LABELS } from './dom.js';

export class TicketList {
  #rows = new Map();

  /**
   * @param {HTMLElement} list   the <ul>
   * @param {import('./store.js').AvailabilityStore} store
   * @param {{maxQuantity: number, onReserve: (id: string, quantity: number) => void}} options
   */
  constructor(list, store, { maxQuantity, onReserve }) {
    this.list = list;
    this.store = store;
    this.maxQuantity = maxQuantity;
    this.onReserve = onReserve;
    this.renders = 0;
  }

  #build(id, view) {
    const name = view.name ?? 'Tickets';
    const nameId = `tt-${id}-name`;
    const count = h('span', { class: 'count', 'data-available': view.available }, view.available.toLocaleString());
    const badge = h('span', { class: 'badge', 'data-status': view.status }, STATUS_LABELS[view.status]);
    const select = h('select', { id: `tt-${id}-qty`, name: 'quantity', class: 'quantity' });
    const button = h('button', { type: 'submit', class: 'reserve' }, 'Reserve');
    const fieldset = h('fieldset', { class: 'reserve-controls' },
      h('legend', { class: 'visually-hidden' }, `Reserve ${name}`),
      h('label', { for: select.id }, 'Quantity'), select, button);
    const message = h('p', { class: 'ticket-message', role: 'alert' });
    const form = h('form', { class: 'reserve-form', 'aria-labelledby': nameId }, fieldset);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.onReserve(id, Number(select.value));
    });
    const li = h('li', { class: 'ticket', 'data-ticket-type-id': id },
      h('div', { class: 'ticket-info' },
        h('h3', { class: 'ticket-name', id: nameId }, name),
        h('p', { class: 'ticket-price' }, formatPrice(view.price_cents))),
      h('p', { class: 'ticket-availability' }, badge, ' ', h('span', { class: 'count-line' }, count, ' left')),
      form, message);
    const row = { li, count, badge, select, button, fieldset, message, last: {}, busy: false };
    this.#rows.set(id, row);
    this.list.append(li);
    return row;
  }

  /** Re-renders one ticket type from the store. */
  render(id) {
    const view = this.store.view(id);
    if (!view) return;
    this.renders += 1;
    const row = this.#rows.get(id) ?? this.#build(id, view);
    const { last } = row;
    if (last.available !== view.available) {
      row.count.textContent = view.available.toLocaleString();
      row.count.dataset.available = String(view.available);
      if (last.available !== undefined) this.#flash(row.count, view.available < last.available ? 'down' : 'up');
    }
    if (last.status !== view.status) {
      row.badge.dataset.status = view.status;
      row.badge.textContent = STATUS_LABELS[view.status];
      row.li.classList.toggle('is-sold-out', view.status === 'sold_out');
      row.li.classList.toggle('is-few-left', view.status === 'few_left');
      if (last.status !== undefined && view.pending === 0) {
        const name = view.name ?? 'Tickets';
        if (view.status === 'sold_out') announce(`${name} is sold out.`);
        else if (last.status === 'sold_out') announce(`${name} is available again: ${view.available} left.`);
        else if (view.status === 'few_left') announce(`${name}: only ${view.available} left.`);
      }
    }
    const max = Math.min(view.available, this.maxQuantity);
    if (last.max !== max) this.#fillQuantities(row.select, max);
    const disabled = view.status === 'sold_out' || row.busy;
    if (last.disabled !== disabled || last.busy !== row.busy) {
      row.fieldset.disabled = disabled;
      row.button.textContent = row.busy ? 'Reserving…' : view.status === 'sold_out' ? 'Sold out' : 'Reserve';
      row.li.setAttribute('aria-busy', String(row.busy));
    }
    row.last = { available: view.available, status: view.status, max, disabled, busy: row.busy };
  }

  #fillQuantities(select, max) {
    const chosen = Number(select.value) || 1;
    select.replaceChildren(...Array.from({ length: Math.max(max, 1) }, (_, i) => h('option', { value: i + 1 }, String(i + 1))));
    select.value = String(Math.min(chosen, Math.max(max, 1)));
  }

  #flash(element, direction) {
    element.classList.remove('flash-down', 'flash-up');
    void element.offsetWidth; // restart the animation
    element.classList.add(`flash-${direction}`);
  }

  setBusy(id, busy) {
    const row = this.#rows.get(id);
    if (!row) return;
    row.busy = busy;
    this.render(id);
  }

  /** A message under one ticket type (kind: error | info); empty text hides it. */
  setMessage(id, text, kind = 'error') {
    const row = this.#rows.get(id);
    if (!row) return;
    row.message.textContent = text ?? '';
    row.message.dataset.kind = kind;
    row.message.classList.toggle('is-visible', Boolean(text));
  }

  name(id) {
    return this.store.row(id)?.name ?? 'Tickets';
  }

  focusQuantity(id) {
    this.#rows.get(id)?.select.focus();
  }
}
