// The page's error boundary: an uncaught error, a rejected promise or an unexpected realtime message shows a small
// notice that does not block the page, and is reported to the server (POST /api/client-errors) without tokens,
// names or query strings.

const MAX_REPORTS = 10;
const NOTICE_MS = 8000;
let reported = 0;
const seen = new Set();
let noticeTimer = 0;

function pathOf(url) {
  if (!url) return '';
  try {
    return new URL(url, location.href).pathname;
  } catch {
    return String(url).split(/[?#]/)[0];
  }
}

/** Removes what could identify the user or grant access, and strips query strings from URLs. */
function scrub(text, limit) {
  return String(text ?? '')
    .replace(/eyJ[\w-]{4,}\.[\w-]*\.?[\w-]*/g, '[token]')
    .replace(/[\w.%+-]+@[\w.-]+\.[a-z]{2,}/gi, '[email]')
    .replace(/(https?:\/\/[^\s?#)]+)[?#][^\s)]*/g, '$1')
    .slice(0, limit);
}

/** Shows the notice for a while; the rest of the page stays usable. */
export function showNotice(text = 'Something went wrong on this page. It keeps working; reload if anything looks wrong.') {
  const notice = document.getElementById('error-notice');
  if (!notice) return;
  notice.querySelector('.notice-text').textContent = text;
  notice.hidden = false;
  document.body.classList.add('has-notice');
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(hideNotice, NOTICE_MS);
}

function hideNotice() {
  const notice = document.getElementById('error-notice');
  if (notice) notice.hidden = true;
  document.body.classList.remove('has-notice');
}

/** Reports an error once (per message) to the server and shows the notice. `kind`: script | promise | message | render. */
export function reportError(kind, error, extra = {}) {
  showNotice();
  const message = scrub(error?.message ?? error ?? 'unknown error', 500);
  const signature = `${kind}:${message}`;
  if (seen.has(signature) || reported >= MAX_REPORTS) return;
  seen.add(signature);
  reported += 1;
  const body = {
    kind,
    message,
    page: location.pathname,
    source: pathOf(extra.source),
    line: Number.isInteger(extra.line) ? extra.line : undefined,
    column: Number.isInteger(extra.column) ? extra.column : undefined,
    stack: scrub(error?.stack ?? '', 2000),
  };
  try {
    fetch('/api/client-errors', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body), keepalive: true,
    }).catch(() => { /* nothing more to do */ });
  } catch { /* reporting must never throw */ }
  console.warn(`[marquee] ${kind} error reported:`, error);
}

/** Runs `fn`, reporting (not throwing) what it throws. */
export function guard(kind, fn) {
  return (...args) => {
    try {
      return fn(...args);
    } catch (error) {
      reportError(kind, error);
      return undefined;
    }
  };
}

export function installErrorBoundary() {
  window.addEventListener('error', (event) => {
    if (event.target && event.target !== window) return; // a failed <img>/<link>, not a script error
    reportError('script', event.error ?? event.message, { source: event.filename, line: event.lineno, column: event.colno });
  });
  window.addEventListener('unhandledrejection', (event) => reportError('promise', event.reason));
  const notice = document.getElementById('error-notice');
  notice?.querySelector('button')?.addEventListener('click', hideNotice);
}
