// Availability state of ticket types: the newest row per type (by `version`), the page's own optimistic holds on
// top, and a per-frame batch of the types that changed.

/** `sold_out` at 0, `few_left` at or below max(5, 10 % of capacity), else `available` (as the server decides). */
export function availabilityStatus(available, capacity) {
  if (available <= 0) return 'sold_out';
  if (available <= Math.max(5, Math.floor(capacity / 10))) return 'few_left';
  return 'available';
}

const NUMBER_FIELDS = ['capacity', 'sold', 'reserved', 'available', 'version', 'price_cents'];

/** Checks and normalises a row from the API or a realtime record; throws on anything unexpected. */
export function normaliseRow(row) {
  if (!row || typeof row !== 'object' || typeof row.id !== 'string') throw new TypeError('a ticket type row without an id');
  const out = { ...row };
  for (const field of NUMBER_FIELDS) {
    if (field in out) {
      const value = Number(out[field]);
      if (!Number.isFinite(value)) throw new TypeError(`ticket type ${row.id}: ${field} is not a number`);
      out[field] = value;
    }
  }
  if (!Number.isFinite(out.version) || !Number.isFinite(out.available)) {
    throw new TypeError(`ticket type ${row.id}: version and available are required`);
  }
  return out;
}

export class AvailabilityStore {
  #rows = new Map();
  #pending = new Map(); // key → {id, quantity}
  #nextKey = 0;
  #listeners = new Set();

  /** Called with the id of each type whose shown state may have changed. */
  subscribe(fn) {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  #changed(id) {
    for (const fn of this.#listeners) fn(id);
  }

  has(id) { return this.#rows.has(id); }
  ids() { return [...this.#rows.keys()]; }
  row(id) { return this.#rows.get(id); }

  /** Keeps the row when its version is newer than the one held (or the type is new); true if it did. */
  apply(raw) {
    const row = normaliseRow(raw);
    const current = this.#rows.get(row.id);
    if (current && row.version <= current.version) return false;
    this.#rows.set(row.id, { ...current, ...row });
    this.#changed(row.id);
    return true;
  }

  /** Applies every row of a snapshot (`ticket_types` of the availability API); returns how many were newer. */
  applyAll(rows) {
    let applied = 0;
    for (const row of rows ?? []) if (this.apply(row)) applied += 1;
    return applied;
  }

  /**
   * Shows `quantity` fewer seats of a type until `settle(key)`. When the server's count has meanwhile dropped by
   * that much (the change that includes this hold arrived before the HTTP answer), the hold stops counting twice.
   */
  hold(id, quantity) {
    const key = ++this.#nextKey;
    this.#pending.set(key, { id, quantity, base: this.#rows.get(id)?.available ?? 0 });
    this.#changed(id);
    return key;
  }

  settle(key) {
    const entry = this.#pending.get(key);
    if (!entry) return;
    this.#pending.delete(key);
    this.#changed(entry.id);
  }

  /** Seats the page's own pending holds take off the server's count of a type. */
  pendingFor(id) {
    const available = this.#rows.get(id)?.available ?? 0;
    let total = 0;
    for (const entry of this.#pending.values()) {
      if (entry.id !== id) continue;
      const alreadyCounted = Math.max(0, entry.base - available);
      total += Math.min(entry.quantity, Math.max(0, entry.quantity - alreadyCounted));
    }
    return total;
  }

  /** What the page shows for a type: the row, less the page's pending holds, with its status. */
  view(id) {
    const row = this.#rows.get(id);
    if (!row) return null;
    const pending = this.pendingFor(id);
    const available = Math.max(0, row.available - pending);
    return { ...row, available, status: availabilityStatus(available, row.capacity), pending };
  }
}

/**
 * Collects ids and hands them to `render(id)` once per animation frame, each id once however often it changed.
 * A page in the background gets no frames, so a timer flushes too.
 */
export class FrameBatcher {
  #dirty = new Set();
  #frame = 0;
  #timer = 0;

  constructor(render, { fallbackMs = 250, onError } = {}) {
    this.render = render;
    this.fallbackMs = fallbackMs;
    this.onError = onError ?? ((error) => setTimeout(() => { throw error; }));
    this.flushes = 0;
  }

  mark(id) {
    this.#dirty.add(id);
    if (this.#frame || this.#timer) return;
    this.#frame = requestAnimationFrame(() => this.flush());
    this.#timer = setTimeout(() => this.flush(), this.fallbackMs);
  }

  flush() {
    cancelAnimationFrame(this.#frame);
    clearTimeout(this.#timer);
    this.#frame = 0;
    this.#timer = 0;
    const ids = [...this.#dirty];
    this.#dirty.clear();
    if (ids.length) this.flushes += 1;
    for (const id of ids) {
      try {
        this.render(id);
      } catch (error) {
        this.onError(error, id);
      }
    }
  }
}
