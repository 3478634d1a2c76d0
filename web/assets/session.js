// The signed-in buyer (demo login: a name → a token from the server in development) and the holds they made
// from this browser, kept in localStorage so a reload still shows them.

const SESSION_KEY = 'marquee.session';
const HOLDS_KEY = 'marquee.holds';

function read(key, fallback) {
  try {
    return JSON.parse(localStorage.getItem(key)) ?? fallback;
  } catch {
    return fallback;
  }
}

function write(key, value) {
  try {
    if (value === null) localStorage.removeItem(key);
    else localStorage.setItem(key, JSON.stringify(value));
  } catch { /* private mode or full storage: the page still works for this visit */ }
}

/** {token, user: {id, name}} while the token is valid, else null. */
export function currentSession() {
  const session = read(SESSION_KEY, null);
  if (!session?.token || !session.user?.id) return null;
  if (session.expiresAt && Date.now() > session.expiresAt - 60_000) {
    write(SESSION_KEY, null);
    return null;
  }
  return session;
}

export function saveSession({ token, user, expires_in: expiresIn }) {
  const session = { token, user, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : null };
  write(SESSION_KEY, session);
  return session;
}

export function clearSession() {
  write(SESSION_KEY, null);
}

/** Open holds of this user for this event: [{id, ticketTypeId, typeName, quantity, expiresAt}]. */
export function loadHolds(userId, eventId) {
  const all = read(HOLDS_KEY, {});
  return (all[userId] ?? []).filter((hold) => hold.eventId === eventId && Number(hold.expiresAt) > Date.now());
}

export function saveHolds(userId, eventId, holds) {
  const all = read(HOLDS_KEY, {});
  const others = (all[userId] ?? []).filter((hold) => hold.eventId !== eventId && Number(hold.expiresAt) > Date.now());
  all[userId] = [...others, ...holds.filter((hold) => hold.status === 'reserved').map((hold) => ({ ...hold, eventId }))];
  write(HOLDS_KEY, all);
}
