// Charts drawn as SVG with the DOM API: every label is a text node, never markup. Two kinds are
// all the console needs (stacked bars by day, step lines over time), about a hundred lines, which
// is less than a charting library's build step and bundle would cost the console.

const SVG = 'http://www.w3.org/2000/svg';
const W = 720, H = 240, LEFT = 56, RIGHT = 12, TOP = 12, BOTTOM = 28;

function s(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = String(text);
  return el;
}

export function compact(n) {
  const a = Math.abs(n);
  if (a >= 1e9) return `${+(n / 1e9).toFixed(1)}G`;
  if (a >= 1e6) return `${+(n / 1e6).toFixed(1)}M`;
  if (a >= 1e3) return `${+(n / 1e3).toFixed(1)}k`;
  if (a > 0 && a < 0.01) return n.toPrecision(2);
  return `${+n.toFixed(2)}`;
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((m) => m >= v);
}

function frame(svg, max, format) {
  for (const f of [0, 0.5, 1]) {
    const y = TOP + (H - TOP - BOTTOM) * (1 - f);
    svg.append(s('line', { x1: LEFT, x2: W - RIGHT, y1: y, y2: y, class: f ? 'grid' : 'axis' }));
    svg.append(s('text', { x: LEFT - 6, y: y + 4, 'text-anchor': 'end' }, format(max * f)));
  }
}

function legend(names) {
  const list = document.createElement('ul');
  list.className = 'legend';
  names.forEach((name, i) => {
    const item = document.createElement('li');
    const swatch = s('svg', { viewBox: '0 0 10 10', 'aria-hidden': 'true' });
    swatch.append(s('rect', { width: 10, height: 10, class: `s${i % 8}` }));
    item.append(swatch, document.createTextNode(name));
    list.append(item);
  });
  return list;
}

function figure(caption, svg, names, summary) {
  const fig = document.createElement('figure');
  fig.className = 'figure';
  const cap = document.createElement('figcaption');
  cap.textContent = caption;
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `${caption}: ${summary}`);
  fig.append(cap, svg, legend(names));
  return fig;
}

// labels: x categories (days); series: [{name, values}] stacked; each bar segment carries data-value.
export function barChart(caption, labels, series, format = compact) {
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart' });
  const totals = labels.map((_, i) => series.reduce((sum, one) => sum + (one.values[i] || 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  frame(svg, max, format);
  const plotH = H - TOP - BOTTOM;
  const step = (W - LEFT - RIGHT) / Math.max(1, labels.length);
  const every = Math.ceil(labels.length / 12);
  labels.forEach((label, i) => {
    let base = 0;
    const x = LEFT + i * step + step * 0.15;
    series.forEach((one, k) => {
      const v = one.values[i] || 0;
      if (v > 0) {
        const y = TOP + plotH * (1 - (base + v) / max);
        const bar = s('rect', { x, y, width: step * 0.7, height: (plotH * v) / max, class: `s${k % 8} bar`, 'data-series': one.name, 'data-label': label, 'data-value': v });
        bar.append(s('title', {}, `${label} · ${one.name}: ${format(v)}`));
        svg.append(bar);
      }
      base += v;
    });
    if (i % every === 0) svg.append(s('text', { x: x + step * 0.35, y: H - 8, 'text-anchor': 'middle' }, label));
  });
  const total = totals.reduce((a, b) => a + b, 0);
  return figure(caption, svg, series.map((one) => one.name), `${labels.length} days, ${format(total)} in all`);
}

// times: epoch seconds (ascending), [start, end] the window; series: [{name, values}] drawn as steps.
export function stepChart(caption, times, start, end, series, format = compact) {
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart' });
  const max = niceMax(Math.max(1, ...series.flatMap((one) => one.values)));
  frame(svg, max, format);
  const plotH = H - TOP - BOTTOM;
  const xOf = (t) => LEFT + ((W - LEFT - RIGHT) * (Math.min(Math.max(t, start), end) - start)) / Math.max(1, end - start);
  const yOf = (v) => TOP + plotH * (1 - v / max);
  series.forEach((one, k) => {
    if (!times.length) return;
    let d = `M${xOf(start)},${yOf(one.values[0])}`;
    times.forEach((t, i) => {
      if (i > 0) d += `H${xOf(t)}V${yOf(one.values[i])}`;
    });
    d += `H${xOf(end)}`;
    svg.append(s('path', { d, class: `s${k % 8} line`, 'data-series': one.name }));
  });
  for (const [t, anchor] of [[start, 'start'], [end, 'end']]) {
    const when = new Date(t * 1000).toISOString().slice(5, 16).replace('T', ' ');
    svg.append(s('text', { x: xOf(t), y: H - 8, 'text-anchor': anchor }, when));
  }
  return figure(caption, svg, series.map((one) => one.name), `${times.length} points`);
}
