// A small Supabase Realtime (Phoenix channels, vsn 1.0.0 JSON frames) client: one socket with heartbeats and
// reconnect with backoff, and channels that join (and rejoin after a reconnect) with a config.
// Frames: {topic, event, payload, ref, join_ref}; see docs/realtime-protocol.md.

const VSN = '1.0.0';
export const HEARTBEAT_MS = 25_000;
const CONNECT_TIMEOUT_MS = 8_000;
const JOIN_TIMEOUT_MS = 10_000;

/** Reconnect delays: 0.5, 1, 2, 4, 8, then 15 s, with up to 20 % jitter. */
export function backoff(tries) {
  const steps = [500, 1000, 2000, 4000, 8000, 15000];
  const base = steps[Math.min(tries, steps.length) - 1] ?? 500;
  return Math.round(base * (1 + Math.random() * 0.2));
}

/** `/realtime/v1` (or an absolute http(s)/ws(s) URL) → `ws(s)://host/realtime/v1/websocket?apikey=…&vsn=1.0.0`. */
export function socketURL(endpoint, apikey, base = globalThis.location?.href) {
  const url = new URL(endpoint.replace(/\/+$/, '') + '/websocket', base);
  if (url.protocol === 'http:') url.protocol = 'ws:';
  if (url.protocol === 'https:') url.protocol = 'wss:';
  url.searchParams.set('apikey', apikey);
  url.searchParams.set('vsn', VSN);
  return url.toString();
}

/** A minimal event emitter: `on(name, fn)` returns a function that removes the listener. */
class Emitter {
  #listeners = new Map();
  on(name, fn) {
    if (!this.#listeners.has(name)) this.#listeners.set(name, new Set());
    this.#listeners.get(name).add(fn);
    return () => this.#listeners.get(name)?.delete(fn);
  }
  emit(name, ...args) {
    for (const fn of this.#listeners.get(name) ?? []) {
      try {
        fn(...args);
      } catch (error) {
        // a listener's bug must not break the socket: its owner hears about it, or else the page's error handler
        if (name !== 'listener_error' && this.#listeners.get('listener_error')?.size) this.emit('listener_error', error, name);
        else setTimeout(() => { throw error; });
      }
    }
  }
}

/**
 * The socket. Events: `open`, `close` ({code, reason, wasOpen}), `reconnect_scheduled` (delayMs, tries),
 * `protocol_error` (error, raw), `listener_error` (error, eventName).
 */
export class RealtimeSocket extends Emitter {
  #ws = null;
  #ref = 0;
  #channels = new Set();
  #tries = 0;
  #reconnectTimer = null;
  #heartbeatTimer = null;
  #connectTimer = null;
  #pendingHeartbeat = null;
  #wanted = false;

  constructor(endpoint, { apikey, heartbeatMs = HEARTBEAT_MS, reconnectAfterMs = backoff, WebSocketImpl } = {}) {
    super();
    this.endpoint = endpoint;
    this.apikey = apikey;
    this.heartbeatMs = heartbeatMs;
    this.reconnectAfterMs = reconnectAfterMs;
    this.WebSocketImpl = WebSocketImpl ?? globalThis.WebSocket;
  }

  get supported() { return typeof this.WebSocketImpl === 'function'; }
  get isOpen() { return this.#ws?.readyState === 1; }
  /** Failed or lost connections since the last one that opened. */
  get tries() { return this.#tries; }

  nextRef() { this.#ref += 1; return String(this.#ref); }

  connect() {
    this.#wanted = true;
    if (this.#ws || !this.supported) return;
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    let ws;
    try {
      ws = new this.WebSocketImpl(socketURL(this.endpoint, this.apikey));
    } catch (error) {
      this.emit('protocol_error', error, null);
      this.#lost({ code: 0, reason: String(error?.message ?? error), wasOpen: false });
      return;
    }
    this.#ws = ws;
    let opened = false;
    this.#connectTimer = setTimeout(() => { if (!opened) ws.close(4000, 'connect timeout'); }, CONNECT_TIMEOUT_MS);
    ws.onopen = () => {
      opened = true;
      clearTimeout(this.#connectTimer);
      this.#tries = 0;
      this.#startHeartbeat();
      this.emit('open');
      for (const channel of this.#channels) channel._socketOpened();
    };
    ws.onmessage = (event) => this.#receive(event.data);
    ws.onclose = (event) => {
      if (this.#ws !== ws) return;
      this.#lost({ code: event.code, reason: event.reason, wasOpen: opened });
    };
    ws.onerror = () => { /* a close event follows */ };
  }

  /** Closes for good (no reconnect). */
  disconnect() {
    this.#wanted = false;
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    const ws = this.#ws;
    this.#teardown();
    if (ws) ws.close(1000, 'bye');
  }

  /** Drops the current connection (if any) and connects again now: after `online`, or a heartbeat timeout. */
  reconnectNow(reason = 'reconnect') {
    const ws = this.#ws;
    if (ws) {
      this.#teardown();
      ws.close(4001, reason);
      this.#lost({ code: 4001, reason, wasOpen: true }, 0);
    } else if (this.#wanted) {
      clearTimeout(this.#reconnectTimer);
      this.#reconnectTimer = null;
      this.connect();
    }
  }

  channel(name, params) {
    const channel = new RealtimeChannel(this, `realtime:${name}`, params);
    this.#channels.add(channel);
    return channel;
  }

  _removeChannel(channel) { this.#channels.delete(channel); }

  push(frame) {
    if (!this.isOpen) return false;
    this.#ws.send(JSON.stringify({ topic: frame.topic, event: frame.event, payload: frame.payload ?? {},
      ref: frame.ref ?? null, join_ref: frame.join_ref ?? null }));
    return true;
  }

  #receive(data) {
    let message;
    try {
      message = JSON.parse(data);
      if (!message || typeof message !== 'object' || typeof message.topic !== 'string' || typeof message.event !== 'string') {
        throw new TypeError('frame without topic or event');
      }
    } catch (error) {
      this.emit('protocol_error', error, typeof data === 'string' ? data.slice(0, 200) : '(binary frame)');
      return;
    }
    if (message.topic === 'phoenix') {
      if (message.event === 'phx_reply' && message.ref === this.#pendingHeartbeat) this.#pendingHeartbeat = null;
      return;
    }
    for (const channel of this.#channels) {
      if (channel.topic === message.topic) channel._receive(message);
    }
  }

  #startHeartbeat() {
    clearInterval(this.#heartbeatTimer);
    this.#pendingHeartbeat = null;
    this.#heartbeatTimer = setInterval(() => {
      if (this.#pendingHeartbeat) {
        this.reconnectNow('heartbeat timeout');
        return;
      }
      this.#pendingHeartbeat = this.nextRef();
      this.push({ topic: 'phoenix', event: 'heartbeat', payload: {}, ref: this.#pendingHeartbeat });
    }, this.heartbeatMs);
  }

  #teardown() {
    clearInterval(this.#heartbeatTimer);
    clearTimeout(this.#connectTimer);
    if (this.#ws) {
      this.#ws.onopen = this.#ws.onmessage = this.#ws.onclose = this.#ws.onerror = null;
    }
    this.#ws = null;
    this.#pendingHeartbeat = null;
  }

  #lost(info, delay) {
    this.#teardown();
    for (const channel of this.#channels) channel._socketClosed();
    this.emit('close', info);
    if (!this.#wanted) return;
    this.#tries += 1;
    const wait = delay ?? this.reconnectAfterMs(this.#tries);
    this.emit('reconnect_scheduled', wait, this.#tries);
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = setTimeout(() => { this.#reconnectTimer = null; this.connect(); }, wait);
  }
}

/**
 * A channel on topic `realtime:<name>`. Events: `joined` (response), `join_error` (reason), `postgres_changes`
 * (payload), `system` (payload), `broadcast` (payload), `closed`, `errored`.
 * States: closed → joining → joined; errored while the socket is away or after an error (then it rejoins).
 */
export class RealtimeChannel extends Emitter {
  state = 'closed';
  #joinRef = null;
  #joinTimer = null;
  #rejoinTimer = null;
  #rejoinTries = 0;
  #wanted = false;

  constructor(socket, topic, params) {
    super();
    this.socket = socket;
    this.topic = topic;
    this.params = params;
  }

  subscribe() {
    this.#wanted = true;
    if (this.socket.isOpen) this.#join();
    else this.socket.connect();
    return this;
  }

  unsubscribe() {
    this.#wanted = false;
    clearTimeout(this.#rejoinTimer);
    clearTimeout(this.#joinTimer);
    if (this.state === 'joined') this.socket.push({ topic: this.topic, event: 'phx_leave', ref: this.socket.nextRef(), join_ref: this.#joinRef });
    this.state = 'closed';
    this.socket._removeChannel(this);
  }

  /** Joins again on the open socket (the server replaces the previous join of the topic). */
  rejoin() {
    if (this.#wanted && this.socket.isOpen) this.#join();
  }

  _socketOpened() {
    if (this.#wanted) this.#join();
  }

  _socketClosed() {
    clearTimeout(this.#joinTimer);
    clearTimeout(this.#rejoinTimer);
    if (this.state !== 'closed') {
      this.state = 'errored';
      this.emit('errored');
    }
  }

  #join() {
    clearTimeout(this.#rejoinTimer);
    this.state = 'joining';
    this.#joinRef = this.socket.nextRef();
    this.socket.push({ topic: this.topic, event: 'phx_join', payload: this.params, ref: this.#joinRef, join_ref: this.#joinRef });
    clearTimeout(this.#joinTimer);
    this.#joinTimer = setTimeout(() => this.#failed('join timed out'), JOIN_TIMEOUT_MS);
  }

  #failed(reason) {
    clearTimeout(this.#joinTimer);
    this.state = 'errored';
    this.emit('join_error', reason);
    if (!this.#wanted || !this.socket.isOpen) return;
    this.#rejoinTries += 1;
    const wait = [1000, 2000, 5000, 10000][Math.min(this.#rejoinTries, 4) - 1];
    this.#rejoinTimer = setTimeout(() => { if (this.socket.isOpen && this.#wanted) this.#join(); }, wait);
  }

  _receive(message) {
    const { event, payload, ref } = message;
    if (event === 'phx_reply') {
      if (ref !== this.#joinRef || this.state !== 'joining') return;
      clearTimeout(this.#joinTimer);
      if (payload?.status === 'ok') {
        this.state = 'joined';
        this.#rejoinTries = 0;
        this.emit('joined', payload.response ?? {});
      } else {
        this.#failed(payload?.response?.reason ?? 'join refused');
      }
      return;
    }
    // frames of an older join of this topic are dropped
    if (message.join_ref != null && message.join_ref !== this.#joinRef) return;
    switch (event) {
      case 'phx_close':
        if (ref != null && ref !== this.#joinRef) break; // the close of a join this channel has replaced
        if (this.#wanted && this.state !== 'closed') this.#failed('channel closed by the server');
        else this.emit('closed');
        break;
      case 'phx_error':
        this.#failed('channel error');
        break;
      default:
        this.emit(event, payload);
    }
  }
}
