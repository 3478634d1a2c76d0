// Live availability: a realtime channel on `event_tickets` with the snapshot on join, and a polling fallback when
// the socket cannot be used. Reports one connection status:
//   connecting   — first attempt under way
//   live         — the channel is joined; changes arrive as they commit
//   reconnecting — the socket dropped; trying again with backoff (the snapshot resyncs on rejoin)
//   polling      — no socket; the page asks the server every few seconds instead
//   offline      — neither works (the browser is offline or the server unreachable)

import { RealtimeSocket } from './realtime.js';

const POLL_MS = 3000;
/** Failed socket attempts in a row (or time down) after which the page polls: fewer when it never got a socket. */
const FAILURES_BEFORE_POLLING = 2;
const FAILURES_BEFORE_POLLING_AFTER_LIVE = 4;
const DOWN_MS_BEFORE_POLLING = 5000;

export class LiveFeed {
  #socket = null;
  #channel = null;
  #status = 'connecting';
  #pollTimer = 0;
  #polling = false;
  #pollOk = null;
  #failures = 0;
  #downSince = 0;
  #downTimer = 0;
  #everLive = false;
  #subscriptionFailed = false;
  #systemErrors = 0;

  /**
   * @param {object} options
   * @param {object} options.config       `/api/config`
   * @param {string} options.channelName  e.g. `event-<id>-tickets`
   * @param {object[]} options.bindings   postgres_changes bindings
   * @param {() => Promise<object[]>} options.poll  rows from the HTTP API
   * @param {(rows: object[], source: string) => void} options.onRows
   * @param {(status: string) => void} options.onStatus
   * @param {(kind: string, error: any) => void} options.onError
   */
  constructor({ config, channelName, bindings, poll, onRows, onStatus, onError, pollMs = POLL_MS }) {
    Object.assign(this, { config, channelName, bindings, poll, onRows, onStatus, onError, pollMs });
  }

  get status() { return this.#status; }

  start() {
    addEventListener('online', () => { this.#socket?.reconnectNow('online'); if (this.#polling) this.#pollNow(); this.#update(); });
    addEventListener('offline', () => this.#update());
    const socket = new RealtimeSocket(this.config.realtime_url, { apikey: this.config.anon_key });
    this.#socket = socket;
    if (!socket.supported) {
      this.#startPolling();
      return;
    }
    socket.on('close', () => { this.#failures += 1; this.#down(); });
    socket.on('protocol_error', (error, raw) => this.onError('message', new Error(`unreadable realtime frame: ${error.message}`), raw));
    socket.on('listener_error', (error) => this.onError('message', error));
    const channel = socket.channel(this.channelName, {
      config: {
        broadcast: { ack: false, self: false },
        presence: { key: '', enabled: false },
        postgres_changes: this.bindings,
        private: false,
        marquee: { snapshot: true },
      },
      access_token: this.config.anon_key,
    });
    this.#channel = channel;
    channel.on('listener_error', (error) => this.onError('message', error));
    channel.on('joined', () => {
      this.#subscriptionFailed = false;
      this.#failures = 0;
      this.#everLive = true;
      this.#up();
    });
    channel.on('join_error', (reason) => {
      this.#failures += 1;
      this.onError('message', new Error(`realtime join refused: ${reason}`));
      this.#down();
    });
    channel.on('errored', () => this.#down());
    channel.on('postgres_changes', (payload) => {
      const record = payload?.data?.record;
      if (!record || typeof record !== 'object') throw new TypeError('postgres_changes without a record');
      this.onRows([record], payload.data.snapshot ? 'snapshot' : 'change');
    });
    channel.on('system', (payload) => {
      if (payload?.status !== 'error') {
        this.#systemErrors = 0;
        return;
      }
      // joined, but changes will not come: poll, and join again later (5, 10, 20, then every 30 s)
      this.#subscriptionFailed = true;
      this.#failures += 1;
      this.#systemErrors += 1;
      this.onError('message', new Error(`realtime: ${payload.message ?? 'subscription failed'}`));
      this.#down();
      setTimeout(() => channel.rejoin(), Math.min(30_000, 5000 * 2 ** (this.#systemErrors - 1)));
    });
    channel.subscribe();
    this.#update();
  }

  /** The socket or the channel went away. */
  #down() {
    if (!this.#downSince) {
      this.#downSince = Date.now();
      clearTimeout(this.#downTimer);
      this.#downTimer = setTimeout(() => this.#update(), DOWN_MS_BEFORE_POLLING + 10);
    }
    this.#update();
  }

  #up() {
    this.#downSince = 0;
    clearTimeout(this.#downTimer);
    this.#stopPolling();
    this.#update();
  }

  #update() {
    const live = this.#channel?.state === 'joined' && this.#socket?.isOpen && !this.#subscriptionFailed;
    if (!live) {
      const longDown = this.#downSince && Date.now() - this.#downSince >= DOWN_MS_BEFORE_POLLING;
      const limit = this.#everLive ? FAILURES_BEFORE_POLLING_AFTER_LIVE : FAILURES_BEFORE_POLLING;
      if (this.#failures >= limit || longDown) this.#startPolling();
    }
    let status;
    if (navigator.onLine === false) status = 'offline';
    else if (live) status = 'live';
    else if (this.#polling && this.#pollOk === false) status = 'offline';
    else if (this.#polling && this.#pollOk === true) status = 'polling';
    else if (this.#polling) status = this.#everLive ? 'reconnecting' : 'connecting';
    else status = this.#everLive || this.#failures > 0 || this.#downSince ? 'reconnecting' : 'connecting';
    if (status !== this.#status) {
      this.#status = status;
      this.onStatus(status);
    }
  }

  #startPolling() {
    if (this.#polling) return;
    this.#polling = true;
    this.#pollOk = null;
    this.#pollNow();
  }

  #stopPolling() {
    this.#polling = false;
    this.#pollOk = null;
    clearTimeout(this.#pollTimer);
  }

  async #pollNow() {
    clearTimeout(this.#pollTimer);
    try {
      const rows = await this.poll();
      if (!this.#polling) return;
      this.#pollOk = true;
      this.onRows(rows, 'poll');
    } catch (error) {
      if (!this.#polling) return;
      this.#pollOk = false;
      if (error?.name !== 'ApiError') this.onError('render', error);
    }
    this.#update();
    if (this.#polling) this.#pollTimer = setTimeout(() => this.#pollNow(), this.pollMs);
  }
}
