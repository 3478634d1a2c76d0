// The buyer's holds on this event: what is held, a countdown to expiry, and Confirm / Cancel.

import { announce, formatCountdown, h } from './dom.js';

const STATUS_TEXT = {
  confirmed: 'Confirmed — enjoy the show.',
  cancelled: 'Cancelled — the seats were released.',
  expired: 'Expired — the seats were released.',
};

export class HoldsPanel {
  #items = new Map();
  #timer = 0;

  /**
   * @param {HTMLElement} section  shown while there are holds
   * @param {HTMLElement} list     the <ul>
   * @param {{onConfirm: (hold) => Promise<void>, onCancel: (hold) => Promise<void>, onChange: (holds) => void}} actions
   */
  constructor(section, list, actions) {
    this.section = section;
    this.list = list;
    this.actions = actions;
  }

  get holds() { return [...this.#items.values()].map((item) => item.hold); }

  /** hold: {id, ticketTypeId, typeName, quantity, expiresAt (local ms), status} */
  add(hold, { focus = false } = {}) {
    if (this.#items.has(hold.id)) return;
    const titleId = `hold-${hold.id}-title`;
    const countdown = h('time', { class: 'countdown' });
    const state = h('p', { class: 'hold-state' }, 'Held for ', countdown);
    const confirm = h('button', { type: 'button', class: 'confirm' }, 'Confirm');
    const cancel = h('button', { type: 'button', class: 'cancel secondary' }, 'Cancel');
    const message = h('p', { class: 'hold-message', role: 'alert' });
    const buttons = h('div', { class: 'hold-actions' }, confirm, cancel);
    const li = h('li', { class: 'hold', 'data-hold-id': hold.id, 'data-hold-status': hold.status, 'aria-labelledby': titleId },
      h('p', { class: 'hold-title', id: titleId }, `${hold.quantity} × ${hold.typeName}`), state, buttons, message);
    const item = { hold, li, countdown, state, buttons, confirm, cancel, message };
    confirm.addEventListener('click', () => this.#act(item, 'confirm'));
    cancel.addEventListener('click', () => this.#act(item, 'cancel'));
    this.#items.set(hold.id, item);
    this.list.prepend(li);
    this.section.hidden = false;
    this.#tick();
    if (!this.#timer) this.#timer = setInterval(() => this.#tick(), 1000);
    if (focus) confirm.focus();
  }

  clear() {
    this.#items.clear();
    this.list.replaceChildren();
    this.section.hidden = true;
  }

  async #act(item, action) {
    if (item.busy || item.hold.status !== 'reserved') return;
    item.busy = true;
    item.confirm.disabled = item.cancel.disabled = true;
    item.li.setAttribute('aria-busy', 'true');
    (action === 'confirm' ? item.confirm : item.cancel).textContent = action === 'confirm' ? 'Confirming…' : 'Cancelling…';
    item.message.textContent = '';
    try {
      const status = await (action === 'confirm' ? this.actions.onConfirm(item.hold) : this.actions.onCancel(item.hold));
      this.#finish(item, status);
    } catch (error) {
      if (error?.code === 'hold_expired') {
        this.#finish(item, 'expired');
      } else {
        item.message.textContent = `Could not ${action}: ${error?.message ?? error}. Try again.`;
        item.confirm.disabled = item.cancel.disabled = false;
      }
    } finally {
      item.busy = false;
      item.li.setAttribute('aria-busy', 'false');
      item.confirm.textContent = 'Confirm';
      item.cancel.textContent = 'Cancel';
    }
  }

  /** The hold reached a final state: say so, drop the buttons. */
  #finish(item, status) {
    item.hold.status = status;
    item.li.dataset.holdStatus = status;
    item.state.textContent = STATUS_TEXT[status] ?? status;
    item.buttons.remove();
    announce(`${item.hold.quantity} × ${item.hold.typeName}: ${STATUS_TEXT[status] ?? status}`);
    this.actions.onChange(this.holds);
  }

  #tick() {
    const now = Date.now();
    let open = 0;
    for (const item of this.#items.values()) {
      if (item.hold.status !== 'reserved') continue;
      const left = Math.max(0, Math.ceil((item.hold.expiresAt - now) / 1000));
      if (left === 0 && !item.busy) {
        this.#finish(item, 'expired');
        continue;
      }
      open += 1;
      const text = formatCountdown(left);
      if (item.countdown.textContent !== text) {
        item.countdown.textContent = text;
        item.countdown.dateTime = `PT${left}S`;
        item.countdown.dataset.secondsLeft = String(left);
      }
      item.li.classList.toggle('is-ending', left <= 60);
      if (left === 60) announce(`${item.hold.typeName}: your hold ends in one minute.`);
    }
    if (!open) {
      clearInterval(this.#timer);
      this.#timer = 0;
    }
  }
}
