// The live dashboard: polls /api/admin/summary every two seconds with a service token kept for this tab only,
// and turns the server's running totals into per-second rates.

const form = document.getElementById('admin-login');
const tokenInput = document.getElementById('admin-token');
const errorBox = document.getElementById('admin-error');
const data = document.getElementById('admin-data');
const statusBox = document.getElementById('admin-status');
let previous = null;
let timer = null;

function setStatus(state, label) {
  statusBox.dataset.connectionStatus = state;
  statusBox.querySelector('.connection-label').textContent = label;
}

function show(name, text) {
  const el = data.querySelector(`[data-stat="${name}"]`);
  if (el.textContent !== text) el.textContent = text;
}

function ms(value) {
  return value === null || value === undefined ? '–' : `≤ ${value} ms`;
}

function render(summary, now) {
  show('connections', String(summary.connections));
  show('subscriptions', String(summary.subscriptions));
  if (previous) {
    const seconds = Math.max(0.001, (now - previous.at) / 1000);
    show('deliveries_per_s', ((summary.deliveries_total - previous.summary.deliveries_total) / seconds).toFixed(1));
    show('frames_in_per_s', ((summary.frames_in_total - previous.summary.frames_in_total) / seconds).toFixed(1));
  }
  const latency = summary.commit_to_queue_ms;
  show('latency', `${ms(latency.p50)} / ${ms(latency.p90)} / ${ms(latency.p99)}`);
  show('slow', String(summary.slow_consumer_drops_total));
  const feed = summary.feed;
  show('feed', feed.connected === 'yes'
    ? `reading (${feed.changes_total} changes, last commit ${feed.last_commit_age_seconds} s ago, LSN ${feed.last_lsn})`
    : 'disconnected');
  const body = document.getElementById('admin-events');
  body.replaceChildren(...summary.events.map((event) => {
    const row = document.createElement('tr');
    const name = document.createElement('td');
    const link = document.createElement('a');
    link.href = `/events/${event.event_id}`;
    link.textContent = event.name || event.event_id;
    name.append(link);
    const count = document.createElement('td');
    count.textContent = String(event.channels);
    row.append(name, count);
    return row;
  }));
  previous = {summary, at: now};
}

async function poll() {
  const token = sessionStorage.getItem('marquee-admin-token');
  if (!token) return;
  try {
    const response = await fetch('/api/admin/summary', {headers: {Authorization: `Bearer ${token}`}, cache: 'no-store'});
    const body = await response.json();
    if (!response.ok) {
      errorBox.textContent = body.error ? body.error.message : `HTTP ${response.status}`;
      errorBox.hidden = false;
      setStatus('offline', 'Refused');
      if (response.status === 401 || response.status === 403) { stop(); return; }
    } else {
      errorBox.hidden = true;
      data.hidden = false;
      setStatus('live', 'Live');
      render(body, performance.now());
    }
  } catch (error) {
    setStatus('reconnecting', 'Unreachable');
  }
  timer = setTimeout(poll, 2000);
}

function stop() {
  clearTimeout(timer);
  timer = null;
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  sessionStorage.setItem('marquee-admin-token', tokenInput.value.trim());
  tokenInput.value = '';
  previous = null;
  stop();
  poll();
});

poll();
