// The HTTP API the pages use. Errors come back as ApiError with the server's code, message and details.

export class ApiError extends Error {
  constructor(status, code, message, details = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.details = details;
  }
  /** No answer from the server at all (offline, refused, aborted). */
  get isNetwork() { return this.status === 0; }
}

async function request(method, path, { body, token, headers = {}, timeoutMs = 10_000 } = {}) {
  const init = { method, headers: { Accept: 'application/json', ...headers }, cache: 'no-store' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (token) init.headers.Authorization = `Bearer ${token}`;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  init.signal = controller.signal;
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, 'network', 'The server could not be reached.', { cause: String(error?.message ?? error) });
  } finally {
    clearTimeout(timer);
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    if (response.ok) throw new ApiError(response.status, 'bad_response', 'The server sent an answer this page cannot read.');
  }
  if (!response.ok) {
    const error = data?.error ?? {};
    const { code = 'http_' + response.status, message = response.statusText || 'Request failed', ...details } = error;
    throw new ApiError(response.status, code, message, details);
  }
  return data;
}

/** A random id for the Idempotency-Key header (crypto.randomUUID needs a secure context; this does not). */
export function randomKey() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export const api = {
  config: () => request('GET', '/api/config'),
  events: () => request('GET', '/api/events'),
  event: (id) => request('GET', `/api/events/${encodeURIComponent(id)}`),
  availability: (id) => request('GET', `/api/events/${encodeURIComponent(id)}/availability`, { timeoutMs: 5000 }),
  login: (name) => request('POST', '/api/dev/login', { body: { name } }),
  reserve: (eventId, ticketTypeId, quantity, token, key = randomKey()) =>
    request('POST', `/api/events/${encodeURIComponent(eventId)}/reservations`, {
      body: { ticket_type_id: ticketTypeId, quantity }, token, headers: { 'Idempotency-Key': key },
    }),
  confirm: (reservationId, token) => request('POST', `/api/reservations/${encodeURIComponent(reservationId)}/confirm`, { token }),
  cancel: (reservationId, token) => request('POST', `/api/reservations/${encodeURIComponent(reservationId)}/cancel`, { token }),
};
