// Reading the Prometheus text format (version 0.0.4) in the browser, and histogram_quantile as Prometheus computes it.

/** Parses exposition text into series `{name, labels, value}` with helpers to sum and to read histogram buckets. */
export function parsePrometheus(text) {
  const series = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels = {};
    for (const [, key, raw] of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key] = raw.replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    }
    series.push({name: match[1], labels, value: Number(match[3])});
  }
  return {
    series: (name) => series.filter((s) => s.name === name),
    /** The sum over every series of `name` whose labels pass `where`. */
    sum: (name, where = () => true) => series.filter((s) => s.name === name && where(s.labels)).reduce((a, s) => a + s.value, 0),
    /** Cumulative buckets `[[le, count], …]` of a histogram, summed over its label sets, by ascending `le`. */
    buckets(name) {
      const byBound = new Map();
      for (const s of series) {
        if (s.name !== `${name}_bucket`) continue;
        const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
        byBound.set(le, (byBound.get(le) ?? 0) + s.value);
      }
      return [...byBound.entries()].sort((a, b) => a[0] - b[0]);
    },
  };
}

/** The q-quantile of cumulative buckets, interpolating linearly within a bucket; null without observations. */
export function histogramQuantile(q, buckets) {
  if (!buckets.length) return null;
  const total = buckets[buckets.length - 1][1];
  if (!(total > 0)) return null;
  const rank = q * total;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const [le, count] of buckets) {
    if (count >= rank) {
      if (le === Infinity) return lowerBound === 0 ? Infinity : lowerBound;
      return lowerBound + (le - lowerBound) * ((rank - lowerCount) / Math.max(1e-9, count - lowerCount));
    }
    lowerBound = le;
    lowerCount = count;
  }
  return null;
}
