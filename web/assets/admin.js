// The live dashboard: every second it reads /api/admin/metrics (the same Prometheus text as /metrics, for a service
// token kept for this tab only) and derives everything from it, as a Prometheus query would: rates from two
// samples of a counter, latency percentiles from the histogram buckets (like histogram_quantile), channels per event
// from marquee_event_channels. Event names come from the public /api/events.

import { parsePrometheus, histogramQuantile } from './prometheus.js';

const POLL_MS = 1000;
const form = document.getElementById('admin-login');
const tokenInput = document.getElementById('admin-token');
const errorBox = document.getElementById('admin-error');
const data = document.getElementById('admin-data');
const statusBox = document.getElementById('admin-status');
let previous = null;
let timer = null;
let names = new Map();

function setStatus(state, label) {
  statusBox.dataset.connectionStatus = state;
  statusBox.querySelector('.connection-label').textContent = label;
}

function show(name, text) {
  const el = data.querySelector(`[data-stat="${name}"]`);
  if (el.textContent !== text) el.textContent = text;
}

function ms(seconds) {
  if (seconds === null) return '–';
  return seconds === Infinity ? '> 5 s' : `${(seconds * 1000).toFixed(seconds < 0.01 ? 1 : 0)} ms`;
}

function rate(metrics, name, now) {
  if (!previous) return null;
  const seconds = Math.max(0.001, (now - previous.at) / 1000);
  return Math.max(0, metrics.sum(name) - previous.metrics.sum(name)) / seconds;
}

async function eventNames() {
  try {
    const response = await fetch('/api/events', {cache: 'no-store'});
    if (response.ok) names = new Map((await response.json()).events.map((event) => [event.id, event.name]));
  } catch {
    // names are a nicety: ids are shown instead
  }
}

function render(metrics, now) {
  show('connections', String(metrics.sum('marquee_realtime_connections')));
  show('channels', String(metrics.sum('marquee_realtime_channels')));
  show('subscriptions', String(metrics.sum('marquee_realtime_subscriptions')));
  const out = rate(metrics, 'marquee_realtime_deliveries_total', now);
  const inbound = rate(metrics, 'marquee_realtime_frames_in_total', now);
  if (out !== null) show('deliveries_per_s', out.toFixed(1));
  if (inbound !== null) show('frames_in_per_s', inbound.toFixed(1));
  // percentiles over the last interval when changes flowed in it, else since the start
  const buckets = metrics.buckets('marquee_commit_to_send_seconds');
  const before = previous ? previous.metrics.buckets('marquee_commit_to_send_seconds') : null;
  const recent = before ? buckets.map(([le, count], i) => [le, count - (before[i]?.[1] ?? 0)]) : buckets;
  const window = recent.length && recent[recent.length - 1][1] > 0 ? recent : buckets;
  show('latency', [0.5, 0.9, 0.99].map((q) => ms(histogramQuantile(q, window))).join(' / '));
  show('slow', String(metrics.sum('marquee_realtime_slow_consumer_drops_total')));
  const errors = metrics.sum('marquee_errors_total') + metrics.sum('marquee_http_requests_total', (l) => l.status?.startsWith('5'));
  show('errors', String(errors));
  if (metrics.sum('marquee_change_feed_connected') === 1) {
    const lag = metrics.sum('marquee_change_feed_lag_seconds');
    const wal = metrics.sum('marquee_change_feed_wal_behind_bytes');
    show('feed', `reading, ${lag.toFixed(3)} s and ${wal} bytes of WAL behind (${metrics.sum('marquee_change_feed_changes_total')} changes)`);
  } else {
    show('feed', 'disconnected');
  }
  show('database', metrics.sum('marquee_database_up') === 1 ? 'up' : 'down');
  const events = metrics.series('marquee_event_channels').sort((a, b) => b.value - a.value).slice(0, 50);
  const body = document.getElementById('admin-events');
  body.replaceChildren(...events.map(({labels, value}) => {
    const row = document.createElement('tr');
    const name = document.createElement('td');
    const link = document.createElement('a');
    link.href = `/events/${labels.event_id}`;
    link.textContent = names.get(labels.event_id) || labels.event_id;
    name.append(link);
    const count = document.createElement('td');
    count.textContent = String(value);
    row.append(name, count);
    return row;
  }));
  previous = {metrics, at: now};
}

async function poll() {
  const token = sessionStorage.getItem('marquee-admin-token');
  if (!token) return;
  try {
    const response = await fetch('/api/admin/metrics', {headers: {Authorization: `Bearer ${token}`}, cache: 'no-store'});
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      errorBox.textContent = body.error ? body.error.message : `HTTP ${response.status}`;
      errorBox.hidden = false;
      setStatus('offline', 'Refused');
      if (response.status === 401 || response.status === 403) { stop(); return; }
    } else {
      const metrics = parsePrometheus(await response.text());
      const unknown = metrics.series('marquee_event_channels').some(({labels}) => !names.has(labels.event_id));
      if (unknown) await eventNames();
      errorBox.hidden = true;
      data.hidden = false;
      setStatus('live', 'Live');
      render(metrics, performance.now());
    }
  } catch (error) {
    setStatus('reconnecting', 'Unreachable');
  }
  timer = setTimeout(poll, POLL_MS);
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
