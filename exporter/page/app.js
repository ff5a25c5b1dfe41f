/*
 * app.js — the analyst page of tokenwatch: flagged tokens, one token's
 * evidence, and the four review actions, over the JSON API (docs/api.md).
 *
 * Promises kept here:
 *  - Text that comes from the API (and so, in the end, from logs an attacker
 *    can write to) only ever reaches the page through textContent, attribute
 *    values set with setAttribute on fixed attribute names, or form values —
 *    never through innerHTML or any other HTML parser.
 *  - Nothing inline: no eval, no string-built styles (element.style
 *    properties only), no inline handlers — the page works under
 *    Content-Security-Policy default-src 'self'.
 *  - No layout jumps on refresh: the table keeps its rows and rewrites only
 *    the cells that changed; the token view is rebuilt only when its JSON
 *    changed; warnings and status lines have reserved space.
 *  - The bearer token (when the API asks for one) lives in sessionStorage,
 *    the analyst's name in localStorage; nothing else is stored.
 * Plain ES2020, no framework, no build step.
 */
'use strict';

(() => {
  const API = '/api/v1';
  const REFRESH_MS = 10000;
  const KEY_BEARER = 'tokenwatch.bearer';
  const KEY_ANALYST = 'tokenwatch.analyst';
  const KEY_THEME = 'tokenwatch.theme';
  const KEY_AUTO = 'tokenwatch.autorefresh';
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const SEVERITIES = ['low', 'medium', 'high', 'critical'];
  const STATES = ['observed', 'flagged', 'freezing', 'frozen', 'unfreezing', 'unfrozen',
                  'acked', 'confirmed', 'dismissed'];
  const DAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];
  const SINCE_PRESETS = { '1h': 3600, '24h': 86400, '7d': 7 * 86400, '30d': 30 * 86400 };
  const LIMITS = ['25', '50', '100', '200', '500'];
  const DEFAULT_LIMIT = '50';
  const ACTIONS = {
    ack: { label: 'Acknowledge', done: 'Acknowledged', confirm: null },
    unfreeze: { label: 'Unfreeze', done: 'Unfrozen', confirm: 'Run the unfreeze hook for' },
    confirm: { label: 'Confirm compromise', done: 'Compromise confirmed',
               confirm: 'Confirm that this token is compromised (it stays frozen):' },
    dismiss: { label: 'Dismiss as false positive', done: 'Dismissed',
               confirm: 'Dismiss as a false positive (what fired becomes normal for it):' },
  };

  const $ = (id) => document.getElementById(id);

  // ---- small DOM helpers ------------------------------------------------

  /** Creates an element with a class and text (textContent, never HTML). */
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function svg(tag, attrs, cls) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (cls) e.setAttribute('class', cls);
    return e;
  }

  function setText(node, text) {
    const s = text === undefined || text === null ? '' : String(text);
    if (node.textContent !== s) node.textContent = s;
  }

  function setTitle(node, text) {
    if (text) {
      if (node.getAttribute('title') !== text) node.setAttribute('title', text);
    } else if (node.hasAttribute('title')) {
      node.removeAttribute('title');
    }
  }

  function show(node, visible) {
    node.classList.toggle('is-hidden', !visible);
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  // ---- formatting -------------------------------------------------------

  const pad2 = (n) => String(n).padStart(2, '0');

  function parseTime(s) {
    if (typeof s !== 'string' || !s) return null;
    const d = new Date(s);
    return Number.isNaN(d.getTime()) ? null : d;
  }

  /** "2026-11-16 10:12:44" in the browser's time zone. */
  function localTime(s) {
    const d = parseTime(s);
    if (!d) return s ? String(s) : '–';
    return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ` +
           `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  }

  /** The UTC form shown on hover. */
  function utcTitle(s) {
    const d = parseTime(s);
    return d ? 'UTC ' + d.toISOString().replace('.000Z', 'Z') : '';
  }

  /** A <time> element: local time as text, UTC on hover. */
  function timeEl(s, cls) {
    const t = el('time', cls, localTime(s));
    if (parseTime(s)) {
      t.setAttribute('datetime', s);
      t.setAttribute('title', utcTitle(s));
    }
    return t;
  }

  function num(v, digits) {
    if (typeof v !== 'number' || !Number.isFinite(v)) return v === undefined || v === null ? '–' : String(v);
    return v.toLocaleString('en-US', { maximumFractionDigits: digits === undefined ? 2 : digits,
                                       minimumFractionDigits: 0 });
  }

  function hoursText(h) {
    if (typeof h !== 'number' || !Number.isFinite(h)) return num(h);
    const s = `${num(h, h < 10 ? 2 : 1)} h`;
    if (h < 1) return `${s} (${num(h * 60, 0)} min)`;
    return s;
  }

  function place(city, country) {
    const parts = [];
    if (city) parts.push(String(city));
    if (country) parts.push(String(country));
    return parts.length ? parts.join(', ') : '–';
  }

  function ago(d) {
    const s = Math.max(0, Math.round((Date.now() - d.getTime()) / 1000));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    return `${Math.round(s / 3600)} h ago`;
  }

  /** Any JSON value as one line of text, for the generic evidence list. */
  function valueText(v) {
    if (v === null || v === undefined) return '–';
    if (typeof v === 'number') return Number.isInteger(v) ? String(v) : String(Number(v.toFixed(4)));
    if (typeof v === 'string') return v;
    if (typeof v === 'boolean') return v ? 'yes' : 'no';
    if (Array.isArray(v) && v.every((x) => typeof x !== 'object' || x === null)) {
      return v.length ? v.map(valueText).join(', ') : '(none)';
    }
    return JSON.stringify(v);
  }

  function sevIndex(s) {
    return SEVERITIES.indexOf(s);
  }

  /** A severity badge: colour AND text (never colour only). */
  function sevBadge(node, sev) {
    const known = sevIndex(sev) >= 0;
    node.className = 'badge sev ' + (known ? 'sev-' + sev : 'sev-unknown');
    setText(node, sev ? String(sev).toUpperCase() : '?');
  }

  function stateBadge(node, state, frozen) {
    const known = STATES.indexOf(state) >= 0;
    node.className = 'badge state ' + (known ? 'state-' + state : 'state-unknown');
    const extra = frozen && state !== 'frozen' ? ' · frozen' : '';
    setText(node, (state || '?') + extra);
  }

  // ---- storage (may be disabled: private modes, policies) ---------------

  function store(kind, key, value) {
    try {
      const s = kind === 'session' ? window.sessionStorage : window.localStorage;
      if (value === null) s.removeItem(key); else s.setItem(key, value);
    } catch (e) { /* storage unavailable: keep working without it */ }
  }

  function load(kind, key) {
    try {
      const s = kind === 'session' ? window.sessionStorage : window.localStorage;
      return s.getItem(key);
    } catch (e) {
      return null;
    }
  }

  // ---- API --------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  let authPending = null;   // resolves when the analyst entered a token

  async function api(path, options) {
    const opts = options || {};
    for (;;) {
      const headers = { Accept: 'application/json' };
      if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
      const bearer = load('session', KEY_BEARER);
      if (bearer) headers.Authorization = 'Bearer ' + bearer;
      let r;
      try {
        r = await fetch(path, {
          method: opts.method || 'GET', headers, cache: 'no-store', credentials: 'same-origin',
          body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        });
      } catch (e) {
        throw new ApiError(0, 'tokenwatch did not answer (' + (e && e.message ? e.message : 'network error') + ')');
      }
      const text = await r.text();
      let body = null;
      try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
      if (r.status === 401) {
        await askForToken(bearer ? 'The API refused the token (401). Enter a valid one.'
                                 : 'This tokenwatch asks for a bearer token before it answers.');
        continue;   // retry with the new token
      }
      if (!r.ok) {
        const msg = body && typeof body.error === 'string' ? body.error : `HTTP ${r.status}`;
        throw new ApiError(r.status, msg);
      }
      if (body === null || typeof body !== 'object') {
        throw new ApiError(r.status, 'the answer was not JSON');
      }
      return { body, text };
    }
  }

  function askForToken(message) {
    setText($('auth-message'), message);
    if ($('auth-view').hidden) {
      // Only when it opens: several requests may get their 401 one after
      // the other, and a later one must not wipe what the analyst typed.
      $('auth-view').hidden = false;
      $('list-view').hidden = true;
      $('token-view').hidden = true;
      const input = $('auth-token');
      input.value = '';
      input.focus();
    }
    if (!authPending) {
      let resolve;
      const p = new Promise((res) => { resolve = res; });
      authPending = { promise: p, resolve };
    }
    return authPending.promise;
  }

  function onAuthSubmit(ev) {
    ev.preventDefault();
    const v = $('auth-token').value.trim();
    if (!v) return;
    store('session', KEY_BEARER, v);
    $('auth-token').value = '';
    $('auth-view').hidden = true;
    updateForgetButton();
    route();
    if (authPending) {
      const p = authPending;
      authPending = null;
      p.resolve();
    }
  }

  function updateForgetButton() {
    show($('forget-token'), !!load('session', KEY_BEARER));
  }

  // ---- URL hash: the view and the list's filters -----------------------

  function defaultFilters() {
    return { severity: '', state: '', rule: '', since: '', limit: DEFAULT_LIMIT, offset: 0 };
  }

  /** "#/?severity=high&offset=50" or "#/token/tw_…?severity=high". */
  function parseHash() {
    const h = location.hash.replace(/^#/, '');
    const q = h.indexOf('?');
    const path = q >= 0 ? h.slice(0, q) : h;
    const params = new URLSearchParams(q >= 0 ? h.slice(q + 1) : '');
    const f = defaultFilters();
    const sev = params.get('severity') || '';
    if (SEVERITIES.includes(sev)) f.severity = sev;
    const st = params.get('state') || '';
    if (STATES.includes(st)) f.state = st;
    f.rule = (params.get('rule') || '').slice(0, 128);
    const since = params.get('since') || '';
    if (SINCE_PRESETS[since] || parseTime(since)) f.since = since;
    const lim = params.get('limit') || '';
    if (LIMITS.includes(lim)) f.limit = lim;
    const off = Number.parseInt(params.get('offset') || '0', 10);
    f.offset = Number.isFinite(off) && off > 0 ? off : 0;
    const m = /^\/token\/([^/?#]+)$/.exec(path);
    return { view: m ? 'token' : 'list', id: m ? decodeURIComponent(m[1]) : null, filters: f };
  }

  function filterQuery(f) {
    const p = new URLSearchParams();
    if (f.severity) p.set('severity', f.severity);
    if (f.state) p.set('state', f.state);
    if (f.rule) p.set('rule', f.rule);
    if (f.since) p.set('since', f.since);
    if (f.limit !== DEFAULT_LIMIT) p.set('limit', f.limit);
    if (f.offset) p.set('offset', String(f.offset));
    const s = p.toString();
    return s ? '?' + s : '';
  }

  function listHash(f) {
    return '#/' + filterQuery(f);
  }

  function tokenHash(id, f) {
    return '#/token/' + encodeURIComponent(id) + filterQuery(f);
  }

  /** The API query for the list: relative "since" presets become a time. */
  function apiQuery(f) {
    const p = new URLSearchParams();
    if (f.severity) p.set('severity', f.severity);
    if (f.state) p.set('state', f.state);
    if (f.rule) p.set('rule', f.rule);
    if (f.since) {
      const rel = SINCE_PRESETS[f.since];
      const t = rel ? new Date(Date.now() - rel * 1000) : parseTime(f.since);
      if (t) p.set('since', t.toISOString().replace(/\.\d{3}Z$/, 'Z'));
    }
    p.set('limit', f.limit);
    p.set('offset', String(f.offset));
    return p.toString();
  }

  // ---- application state -----------------------------------------------

  const state = {
    filters: defaultFilters(),
    view: 'list',
    tokenId: null,
    items: [],          // the list page currently shown
    total: 0,
    sel: 0,             // selected row index
    selId: null,        // selected token id (selection follows it across refreshes)
    rules: new Set(),   // rule ids seen, for the filter's suggestions
    tokenText: null,    // last token JSON rendered (re-render only on change)
    token: null,
    pendingAction: null,
    timer: null,
    busy: false,
  };

  // ---- header: stats ----------------------------------------------------

  async function loadStats() {
    const { body: s } = await api(API + '/stats');
    setText($('st-tracked'), num(s.tokens_tracked, 0));
    setText($('st-flagged'), num(s.tokens_flagged, 0));
    setText($('st-frozen'), num(s.tokens_frozen, 0));
    setText($('st-queue'), num(s.freeze_queue_depth, 0));
    setText($('st-anomalies'), num(s.anomalies_total, 0));
    $('st-queue').classList.toggle('is-warn', typeof s.freeze_queue_depth === 'number' && s.freeze_queue_depth > 0);
    $('st-frozen').classList.toggle('is-warn', typeof s.tokens_frozen === 'number' && s.tokens_frozen > 0);
    show($('st-breaker'), s.freeze_circuit_open === true);
    show($('st-detection'), s.detection === false);
    setText($('st-version'), s.version ? 'v' + s.version : '');
    const inputs = Array.isArray(s.inputs) ? s.inputs : [];
    const up = typeof s.uptime_s === 'number' ? `up ${num(s.uptime_s / 3600, 1)} h` : '';
    setTitle($('st-version'), [up].concat(inputs.map((i) =>
      `${i.name}: ${num(i.checks, 0)} checks, ${num(i.rejected, 0)} rejected, ${num(i.parse_errors, 0)} parse errors`))
      .filter(Boolean).join('\n'));
  }

  // ---- list view ---------------------------------------------------------

  const COLS = ['sev', 'rule', 'time', 'hint', 'principal', 'loc', 'input', 'state', 'count'];

  function makeRow() {
    const tr = el('tr');
    tr.setAttribute('aria-selected', 'false');
    for (const c of COLS) {
      const td = el('td', 'col-' + c);
      if (c === 'sev' || c === 'state') td.appendChild(el('span', 'badge'));
      else if (c === 'hint') td.appendChild(el('a', 'mono hint-link'));
      else if (c === 'time') td.appendChild(el('time'));
      tr.appendChild(td);
    }
    tr.addEventListener('click', (ev) => {
      const i = Array.prototype.indexOf.call(tr.parentNode.children, tr);
      select(i, false);
      if (ev.target.closest('a')) return;   // the link navigates itself
      if (ev.detail === 2) openSelected();
    });
    return tr;
  }

  function fillRow(tr, it) {
    const cells = tr.children;
    sevBadge(cells[0].firstChild, it.severity);
    const rules = Array.isArray(it.rules) ? it.rules.filter((r) => r !== it.rule) : [];
    setText(cells[1], it.rule || '–');
    setTitle(cells[1], rules.length ? 'also: ' + rules.join(', ') : '');
    const t = cells[2].firstChild;
    setText(t, localTime(it.last_anomaly));
    setTitle(t, utcTitle(it.last_anomaly) + (it.first_flagged ? '\nfirst flagged ' + localTime(it.first_flagged) : ''));
    const a = cells[3].firstChild;
    setText(a, it.token_hint || '–');
    const href = tokenHash(it.token_id || '', state.filters);
    if (a.getAttribute('href') !== href) a.setAttribute('href', href);
    setTitle(a, it.token_id || '');
    setText(cells[4], it.principal === null || it.principal === undefined || it.principal === '' ? '–' : it.principal);
    setTitle(cells[4], it.principal ? String(it.principal) : '');
    setText(cells[5], place(it.city, it.country));
    setTitle(cells[5], place(it.city, it.country) + (it.ip ? ' · IP ' + it.ip : ''));
    setText(cells[6], it.input || '–');
    stateBadge(cells[7].firstChild, it.state, it.frozen);
    if (it.freeze_until) setTitle(cells[7].firstChild, 'frozen until ' + localTime(it.freeze_until));
    else setTitle(cells[7].firstChild, '');
    setText(cells[8], num(it.anomalies, 0));
    tr.dataset.tokenId = it.token_id || '';
    tr.classList.toggle('is-critical', it.severity === 'critical');
  }

  function renderTable() {
    const body = $('flagged-body');
    const items = state.items;
    while (body.children.length < items.length) body.appendChild(makeRow());
    while (body.children.length > items.length) body.removeChild(body.lastChild);
    items.forEach((it, i) => fillRow(body.children[i], it));
    show($('empty-note'), items.length === 0);
    // Selection follows the token across refreshes; else it stays in place.
    if (state.selId) {
      const i = items.findIndex((it) => it.token_id === state.selId);
      if (i >= 0) state.sel = i;
    }
    state.sel = Math.max(0, Math.min(state.sel, items.length - 1));
    paintSelection(false);
    const f = state.filters;
    const lim = Number(f.limit);
    const first = items.length ? f.offset + 1 : 0;
    setText($('page-info'), items.length
      ? `${num(first, 0)}–${num(f.offset + items.length, 0)} of ${num(state.total, 0)}`
      : `0 of ${num(state.total, 0)}`);
    $('page-prev').disabled = f.offset <= 0;
    $('page-next').disabled = f.offset + lim >= state.total;
    for (const it of items) for (const r of [it.rule].concat(it.rules || [])) if (r) state.rules.add(String(r));
    const dl = $('rule-list');
    if (dl.children.length !== state.rules.size) {
      clear(dl);
      for (const r of Array.from(state.rules).sort()) {
        const o = el('option');
        o.value = r;
        dl.appendChild(o);
      }
    }
  }

  function paintSelection(focus) {
    const rows = $('flagged-body').children;
    for (let i = 0; i < rows.length; i++) {
      const on = i === state.sel;
      if (rows[i].getAttribute('aria-selected') !== String(on)) rows[i].setAttribute('aria-selected', String(on));
      rows[i].classList.toggle('is-selected', on);
    }
    const row = rows[state.sel];
    if (row) {
      state.selId = row.dataset.tokenId || null;
      if (focus) {
        row.querySelector('a').focus({ preventScroll: true });
        row.scrollIntoView({ block: 'nearest' });
      }
    }
  }

  function select(i, focus) {
    const n = state.items.length;
    if (!n) return;
    state.sel = Math.max(0, Math.min(i, n - 1));
    paintSelection(focus);
  }

  function openSelected() {
    const it = state.items[state.sel];
    if (it && it.token_id) location.hash = tokenHash(it.token_id, state.filters);
  }

  async function loadList() {
    const f = state.filters;
    const query = apiQuery(f);
    const { body } = await api(API + '/flagged?' + query);
    // Filters changed while this was on its way: the rerun loads the new list.
    if (f !== state.filters || filterQuery(f) !== filterQuery(parseHash().filters)) return undefined;
    state.items = Array.isArray(body.items) ? body.items : [];
    state.total = typeof body.total === 'number' ? body.total : state.items.length;
    setText($('filter-error'), '');
    // A page past the end (tokens were resolved meanwhile): go to the last page.
    if (!state.items.length && f.offset > 0 && state.total > 0) {
      const lim = Number(f.limit);
      f.offset = Math.max(0, Math.floor((state.total - 1) / lim) * lim);
      history.replaceState(null, '', listHash(f));
      return loadList();
    }
    renderTable();
    return undefined;
  }

  function syncFilterForm() {
    const f = state.filters;
    $('f-severity').value = f.severity;
    $('f-state').value = f.state;
    if (document.activeElement !== $('f-rule')) $('f-rule').value = f.rule;
    const preset = !f.since || SINCE_PRESETS[f.since];
    $('f-since').value = preset ? f.since : 'custom';
    if (!preset && document.activeElement !== $('f-since-custom')) $('f-since-custom').value = f.since;
    show($('f-since-custom-label'), !preset || $('f-since').value === 'custom');
    $('f-limit').value = f.limit;
  }

  function onFilterChange() {
    const f = state.filters;
    f.severity = $('f-severity').value;
    f.state = $('f-state').value;
    f.rule = $('f-rule').value.trim();
    const sv = $('f-since').value;
    show($('f-since-custom-label'), sv === 'custom');
    if (sv === 'custom') {
      const c = $('f-since-custom').value.trim();
      if (c && !parseTime(c)) {
        setText($('filter-error'), 'Since: expected an RFC 3339 time like 2026-11-16T00:00:00Z');
        return;
      }
      f.since = c;
    } else {
      f.since = sv;
    }
    f.limit = $('f-limit').value;
    f.offset = 0;
    setText($('filter-error'), '');
    location.hash = listHash(f);
  }

  function page(delta) {
    const f = state.filters;
    const lim = Number(f.limit);
    const off = f.offset + delta * lim;
    if (off < 0 || off >= Math.max(state.total, 1)) return;
    f.offset = off;
    state.sel = 0;
    state.selId = null;
    location.hash = listHash(f);
  }

  // ---- token view --------------------------------------------------------

  async function loadToken(id) {
    let res;
    const current = () => state.view === 'token' && state.tokenId === id;
    try {
      res = await api(API + '/tokens/' + encodeURIComponent(id));
    } catch (e) {
      if (!current()) return;   // the analyst moved on meanwhile
      if (e.status === 404 || e.status === 400) {
        state.token = null;
        state.tokenText = null;
        setText($('token-error'), e.status === 404 ? `No token ${id} is tracked or flagged.` : e.message);
        show($('token-error'), true);
        setText($('token-title'), id);
        updateActionButtons();
        return;
      }
      throw e;
    }
    if (!current()) return;
    show($('token-error'), false);
    if (res.text === state.tokenText && state.token) return;   // nothing changed: no re-render
    state.tokenText = res.text;
    state.token = res.body;
    renderToken(res.body);
  }

  function renderToken(t) {
    setText($('token-title'), t.token_hint || t.token_id || '–');
    document.title = `${t.token_hint || t.token_id} — tokenwatch`;
    stateBadge($('t-state'), t.state, false);
    show($('t-frozen'), t.frozen === true && t.state !== 'frozen');
    show($('t-learning'), t.learning === true);
    setText($('t-id'), t.token_id || '–');
    setText($('t-principal'), t.principal || '–');
    let baseline = t.tracked === false ? 'not in memory' : (t.learning ? 'learning' : 'active');
    if (t.tracked !== false && typeof t.learning !== 'boolean') baseline = 'tracked';
    setText($('t-baseline'), baseline);
    replaceTime($('t-first'), t.first_seen);
    replaceTime($('t-last'), t.last_seen);
    setText($('t-events'), num(t.events, 0));
    const ll = t.last_location;
    if (ll && typeof ll === 'object') {
      const bits = [place(ll.city, ll.country)];
      if (ll.ip) bits.push(ll.ip);
      if (typeof ll.radius_km === 'number') bits.push(`±${num(ll.radius_km, 0)} km`);
      setText($('t-lastloc'), bits.join(' · '));
      setTitle($('t-lastloc'), ll.time ? 'at ' + localTime(ll.time) + ' (' + utcTitle(ll.time) + ')' : '');
    } else {
      setText($('t-lastloc'), '–');
    }
    setText($('t-freezes'), t.freezes === undefined ? '–' : num(t.freezes, 0));
    if (t.freeze_until) replaceTime($('t-freeze-until'), t.freeze_until);
    else setText($('t-freeze-until'), t.frozen ? 'until unfrozen' : '–');

    renderRate(t);
    renderChips($('t-countries'), t.countries, (c) => String(c));
    renderChips($('t-asns'), t.asns, (a) => 'AS' + a);
    renderHeatmap(t);
    renderAnomalies(t);
    renderHistory(t);
    updateActionButtons();
  }

  /** Empties the token view before another token is loaded into it, so
   *  nothing of the previous one is shown meanwhile (or after a 404). */
  function resetTokenView(id) {
    state.token = null;
    state.tokenText = null;
    cancelConfirm();
    actionResult('', null);
    setText($('token-title'), id || '…');
    for (const n of ['t-state', 't-id', 't-principal', 't-baseline', 't-first', 't-last', 't-events',
                     't-lastloc', 't-freezes', 't-freeze-until', 't-countries', 't-asns']) {
      clear($(n));
      $(n).textContent = '–';
    }
    $('t-state').className = 'badge';
    show($('t-frozen'), false);
    show($('t-learning'), false);
    show($('token-error'), false);
    for (const n of ['t-rate', 't-heatmap', 't-anomalies', 't-history']) clear($(n));
    setText($('hours-tz'), '');
    updateActionButtons();
  }

  function replaceTime(node, s) {
    clear(node);
    node.appendChild(s ? timeEl(s) : document.createTextNode('–'));
  }

  function renderChips(node, list, fmt) {
    clear(node);
    if (!Array.isArray(list) || !list.length) {
      node.textContent = '–';
      return;
    }
    for (const x of list) node.appendChild(el('span', 'chip mono', fmt(x)));
  }

  /* Horizontal bar chart: the baseline mean with a ±sd whisker, the
   * threshold, and the observed count, on one linear scale. */
  function rateChart(o) {
    const rows = [
      { label: 'baseline mean', value: o.mean, sd: o.sd, cls: 'bar-base' },
    ];
    if (typeof o.threshold === 'number') rows.push({ label: 'threshold', value: o.threshold, cls: 'bar-threshold' });
    rows.push({ label: o.countLabel, value: o.count, cls: o.spike ? 'bar-spike' : 'bar-current' });
    const W = 520, labelW = 130, valueW = 110, rowH = 30, top = 6;
    const plotW = W - labelW - valueW;
    const H = top + rows.length * rowH + 22;
    let max = 0;
    for (const r of rows) {
      if (typeof r.value === 'number') max = Math.max(max, r.value + (typeof r.sd === 'number' ? r.sd : 0));
    }
    max = max > 0 ? max * 1.05 : 1;
    const x = (v) => labelW + Math.max(0, Math.min(plotW, (v / max) * plotW));
    const s = svg('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img' }, 'rate-chart');
    const desc = rows.map((r) => `${r.label} ${num(r.value)}${typeof r.sd === 'number' ? ' ± ' + num(r.sd) : ''}`).join(', ');
    s.setAttribute('aria-label', desc);
    const title = svg('title');
    title.textContent = desc;
    s.appendChild(title);
    rows.forEach((r, i) => {
      const y = top + i * rowH;
      const lab = svg('text', { x: labelW - 8, y: y + rowH / 2 + 5, 'text-anchor': 'end' }, 'chart-label');
      lab.textContent = r.label;
      s.appendChild(lab);
      if (typeof r.value !== 'number' || !Number.isFinite(r.value)) return;
      const w = Math.max(r.value > 0 ? 2 : 0, x(r.value) - labelW);
      s.appendChild(svg('rect', { x: labelW, y: y + 6, width: w, height: rowH - 12, rx: 2 }, 'bar ' + r.cls));
      if (typeof r.sd === 'number' && r.sd > 0) {
        const x0 = x(Math.max(0, r.value - r.sd)), x1 = x(r.value + r.sd), ym = y + rowH / 2;
        s.appendChild(svg('line', { x1: x0, y1: ym, x2: x1, y2: ym }, 'whisker'));
        s.appendChild(svg('line', { x1: x0, y1: ym - 7, x2: x0, y2: ym + 7 }, 'whisker'));
        s.appendChild(svg('line', { x1: x1, y1: ym - 7, x2: x1, y2: ym + 7 }, 'whisker'));
      }
      const val = svg('text', { x: W - valueW + 8, y: y + rowH / 2 + 5 }, 'chart-value');
      val.textContent = num(r.value) + (typeof r.sd === 'number' ? ` ± ${num(r.sd)}` : '');
      s.appendChild(val);
    });
    if (typeof o.threshold === 'number') {
      const tx = x(o.threshold);
      s.appendChild(svg('line', { x1: tx, y1: top, x2: tx, y2: top + rows.length * rowH }, 'threshold-line'));
    }
    // axis: 0 and max
    const ay = top + rows.length * rowH + 4;
    s.appendChild(svg('line', { x1: labelW, y1: ay, x2: labelW + plotW, y2: ay }, 'axis'));
    const a0 = svg('text', { x: labelW, y: ay + 15, 'text-anchor': 'start' }, 'chart-axis');
    a0.textContent = '0';
    s.appendChild(a0);
    const a1 = svg('text', { x: labelW + plotW, y: ay + 15, 'text-anchor': 'end' }, 'chart-axis');
    a1.textContent = `${num(max, 1)} requests / ${num(o.window_s, 0)} s`;
    s.appendChild(a1);
    return s;
  }

  function renderRate(t) {
    const box = $('t-rate');
    clear(box);
    const r = t.rate;
    if (!r || typeof r !== 'object') {
      box.appendChild(el('p', 'hint', 'No rate baseline.'));
      return;
    }
    box.appendChild(rateChart({ mean: r.mean, sd: r.sd, count: r.current, countLabel: 'current window',
                                window_s: r.window_s, spike: false }));
    box.appendChild(el('p', 'hint',
      `Requests per ${num(r.window_s, 0)} s window, learned over ${num(r.baseline_windows, 0)} windows.`));
  }

  /** Hour of week (0 = Monday 00:00–01:00) of a time in a zone ("" = UTC). */
  function hourOfWeek(s, tz) {
    const d = parseTime(s);
    if (!d) return -1;
    let wd, h;
    try {
      const parts = new Intl.DateTimeFormat('en-US', { timeZone: tz || 'UTC', weekday: 'short',
                                                         hour: 'numeric', hourCycle: 'h23' }).formatToParts(d);
      wd = DAYS.indexOf((parts.find((p) => p.type === 'weekday') || {}).value);
      h = Number.parseInt((parts.find((p) => p.type === 'hour') || {}).value, 10) % 24;
    } catch (e) {
      wd = (d.getUTCDay() + 6) % 7;
      h = d.getUTCHours();
    }
    return wd < 0 || !Number.isFinite(h) ? -1 : wd * 24 + h;
  }

  /* 7 rows (Mon..Sun) x 24 columns of the learned activity profile, in the
   * token's local time; the hours of its anomalies are outlined. */
  function renderHeatmap(t) {
    const box = $('t-heatmap');
    clear(box);
    const tz = typeof t.time_zone === 'string' ? t.time_zone : '';
    setText($('hours-tz'), tz ? `(${tz} local time)` : '(UTC)');
    const hours = Array.isArray(t.hours) && t.hours.length === 168 ? t.hours : null;
    if (!hours) {
      box.appendChild(el('p', 'hint', 'No hour-of-week profile.'));
      return;
    }
    const marked = new Map();   // hour index -> rule ids
    for (const a of Array.isArray(t.anomalies) ? t.anomalies : []) {
      const ev = a && typeof a.evidence === 'object' && a.evidence ? a.evidence : {};
      const how = typeof ev.hour_of_week === 'number' ? ev.hour_of_week : hourOfWeek(a.time, tz);
      if (how >= 0 && how < 168) {
        if (!marked.has(how)) marked.set(how, []);
        marked.get(how).push(a.rule || a.kind || 'anomaly');
      }
    }
    let max = 0;
    for (const v of hours) if (typeof v === 'number' && v > max) max = v;
    const level = (v) => (typeof v !== 'number' || v <= 0 || max <= 0 ? 0 : 1 + Math.min(4, Math.floor(Math.sqrt(v / max) * 5)));
    const cell = 26, gap = 3, left = 48, top = 22;
    const W = left + 24 * (cell + gap) + 4, H = top + 7 * (cell + gap) + 4;
    const s = svg('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img' }, 'heatmap');
    s.setAttribute('aria-label', `Uses per hour of week, ${tz || 'UTC'}; ${marked.size} hour(s) with an anomaly outlined`);
    for (let h = 0; h < 24; h += 1) {
      if (h % 3 !== 0) continue;
      const tx = svg('text', { x: left + h * (cell + gap) + cell / 2, y: top - 8, 'text-anchor': 'middle' }, 'chart-axis');
      tx.textContent = pad2(h);
      s.appendChild(tx);
    }
    for (let d = 0; d < 7; d += 1) {
      const ty = svg('text', { x: left - 8, y: top + d * (cell + gap) + cell / 2 + 5, 'text-anchor': 'end' }, 'chart-axis');
      ty.textContent = DAYS[d];
      s.appendChild(ty);
      for (let h = 0; h < 24; h += 1) {
        const i = d * 24 + h;
        const v = hours[i];
        const r = svg('rect', { x: left + h * (cell + gap), y: top + d * (cell + gap), width: cell, height: cell, rx: 3 },
                      `hm-cell hm-${level(v)}`);
        r.setAttribute('data-hour', String(i));
        const tt = svg('title');
        tt.textContent = `${DAYS[d]} ${pad2(h)}:00–${pad2((h + 1) % 24)}:00: ${num(v, 0)} use(s)` +
                         (marked.has(i) ? ` — anomaly: ${marked.get(i).join(', ')}` : '');
        r.appendChild(tt);
        s.appendChild(r);
      }
    }
    for (const i of marked.keys()) {
      const d = Math.floor(i / 24), h = i % 24;
      const m = svg('rect', { x: left + h * (cell + gap) - 1.5, y: top + d * (cell + gap) - 1.5,
                              width: cell + 3, height: cell + 3, rx: 4 }, 'hm-mark');
      m.setAttribute('data-hour', String(i));
      s.appendChild(m);
    }
    box.appendChild(s);
    // Legend: the five shades and what they mean, plus the outline.
    const legend = el('div', 'heatmap-legend');
    legend.appendChild(el('span', 'hint', 'uses per hour:'));
    const bounds = [0];
    for (let l = 1; l <= 5; l += 1) bounds.push(Math.ceil(max * ((l - 1) / 5) ** 2) || 1);
    for (let l = 0; l <= 5; l += 1) {
      const item = el('span', 'legend-item');
      const sw = el('span', `legend-swatch hm-${l}`);
      item.appendChild(sw);
      let txt;
      if (l === 0) txt = '0';
      else if (l === 5) txt = `≥ ${num(bounds[5], 0)} (max ${num(max, 0)})`;
      else txt = `≥ ${num(bounds[l], 0)}`;
      if (max <= 0 && l > 0) continue;
      item.appendChild(el('span', null, txt));
      legend.appendChild(item);
    }
    const mk = el('span', 'legend-item');
    mk.appendChild(el('span', 'legend-swatch legend-mark'));
    mk.appendChild(el('span', null, 'hour of an anomaly'));
    legend.appendChild(mk);
    box.appendChild(legend);
  }

  // Evidence renderers: each takes the evidence object and the set of keys
  // it has shown; whatever is left is listed generically as key: value.

  function locCell(p) {
    if (!p || typeof p !== 'object') return '–';
    return place(p.city, p.country);
  }

  function renderTravel(ev, used, box) {
    for (const k of ['from', 'to', 'km', 'hours', 'kmh', 'max_kmh', 'km_after_radii']) used.add(k);
    const legs = el('table', 'evidence-table travel');
    const cap = el('caption', null, 'Travel leg');
    legs.appendChild(cap);
    const hr = el('tr');
    for (const h of ['From', '', 'To', 'Distance', 'Time', 'Speed', 'Limit']) hr.appendChild(el('th', null, h));
    const thead = el('thead');
    thead.appendChild(hr);
    legs.appendChild(thead);
    const tb = el('tbody');
    const tr = el('tr', 'travel-leg');
    tr.appendChild(el('td', 'leg-from', locCell(ev.from)));
    tr.appendChild(el('td', 'leg-arrow', '→'));
    tr.appendChild(el('td', 'leg-to', locCell(ev.to)));
    const km = el('td', 'num', `${num(ev.km, 0)} km`);
    if (typeof ev.km_after_radii === 'number') km.setAttribute('title', `${num(ev.km_after_radii, 0)} km after the accuracy radii`);
    tr.appendChild(km);
    tr.appendChild(el('td', 'num', hoursText(ev.hours)));
    tr.appendChild(el('td', 'num speed', `${num(ev.kmh, 0)} km/h`));
    tr.appendChild(el('td', 'num', typeof ev.max_kmh === 'number' ? `${num(ev.max_kmh, 0)} km/h` : '–'));
    tb.appendChild(tr);
    legs.appendChild(tb);
    box.appendChild(legs);

    const ends = el('table', 'evidence-table endpoints');
    const eh = el('tr');
    for (const h of ['', 'Location', 'IP', 'Accuracy', 'Time (local)']) eh.appendChild(el('th', null, h));
    const ethead = el('thead');
    ethead.appendChild(eh);
    ends.appendChild(ethead);
    const etb = el('tbody');
    for (const [label, p] of [['from', ev.from], ['to', ev.to]]) {
      if (!p || typeof p !== 'object') continue;
      const r = el('tr');
      r.appendChild(el('th', null, label));
      r.appendChild(el('td', null, locCell(p)));
      r.appendChild(el('td', 'mono', p.ip || '–'));
      r.appendChild(el('td', 'num', typeof p.radius_km === 'number' ? `±${num(p.radius_km, 0)} km` : '–'));
      const tdt = el('td');
      tdt.appendChild(timeEl(p.time));
      r.appendChild(tdt);
      etb.appendChild(r);
    }
    ends.appendChild(etb);
    box.appendChild(ends);
    if (typeof ev.km_after_radii === 'number') {
      box.appendChild(el('p', 'hint', `${num(ev.km_after_radii, 0)} km after subtracting both accuracy radii.`));
    }
  }

  function renderRateEvidence(ev, used, box) {
    for (const k of ['window_s', 'count', 'baseline_mean', 'baseline_sd', 'threshold']) used.add(k);
    box.appendChild(rateChart({ mean: ev.baseline_mean, sd: ev.baseline_sd, threshold: ev.threshold,
                                count: ev.count, countLabel: 'this window', window_s: ev.window_s, spike: true }));
    const ratio = typeof ev.count === 'number' && typeof ev.baseline_mean === 'number' && ev.baseline_mean > 0
      ? ` — ${num(ev.count / ev.baseline_mean, 1)}× the baseline mean` : '';
    box.appendChild(el('p', 'evidence-line',
      `${num(ev.count, 0)} requests in ${num(ev.window_s, 0)} s; threshold ${num(ev.threshold)}${ratio}.`));
  }

  function renderFailures(ev, used, box) {
    for (const k of ['window_s', 'rejected', 'checks', 'ratio', 'scope', 'distinct_tokens']) used.add(k);
    const who = ev.scope === 'ip' ? 'from this source address' : 'of this token';
    let line = `${num(ev.rejected, 0)} of ${num(ev.checks, 0)} checks ${who} rejected in ${num(ev.window_s, 0)} s`;
    const ratio = typeof ev.ratio === 'number' ? ev.ratio
      : (typeof ev.rejected === 'number' && typeof ev.checks === 'number' && ev.checks > 0 ? ev.rejected / ev.checks : null);
    if (ratio !== null) line += ` (${num(ratio * 100, 0)} %)`;
    if (typeof ev.distinct_tokens === 'number') line += `, across ${num(ev.distinct_tokens, 0)} distinct tokens`;
    box.appendChild(el('p', 'evidence-line', line + '.'));
  }

  function renderGeoNew(ev, used, box) {
    const asnKind = Array.isArray(ev.known_asns) || (ev.country === undefined && ev.asn !== undefined);
    const knownKey = ['known', asnKind ? 'known_asns' : 'known_countries'].find((k) => Array.isArray(ev[k]));
    const known = knownKey ? ev[knownKey] : [];
    if (knownKey) used.add(knownKey);
    const fmt = (x) => (asnKind ? 'AS' + x : String(x));
    let what;
    if (asnKind) {
      used.add('asn');
      what = `First use from network ${fmt(ev.asn)}`;
    } else {
      used.add('country');
      what = `First use from country ${ev.country === undefined ? '?' : ev.country}`;
      if (typeof ev.asn === 'number') {
        used.add('asn');
        what += ` (network AS${ev.asn})`;
      }
    }
    box.appendChild(el('p', 'evidence-line',
      `${what}; seen before: ${known.length ? known.map(fmt).join(', ') : 'none'}.`));
  }

  function renderOffHours(ev, used, box, a, t) {
    for (const k of ['hour_of_week', 'local_time', 'time_zone', 'share', 'profile_share', 'policy']) used.add(k);
    const how = typeof ev.hour_of_week === 'number' ? ev.hour_of_week : -1;
    const when = how >= 0 && how < 168
      ? `${DAYS[Math.floor(how / 24)]} ${pad2(how % 24)}:00–${pad2((how % 24 + 1) % 24)}:00` : 'this hour';
    const tz = ev.time_zone || (t && t.time_zone) || 'UTC';
    const share = typeof ev.share === 'number' ? ev.share : ev.profile_share;
    let line = `Used ${when} (${tz}${ev.local_time ? ', local ' + ev.local_time : ''})`;
    if (typeof share === 'number') line += `; that hour is ${num(share * 100, 2)} % of its usual activity`;
    if (ev.policy === true) line += '; outside the site\'s business hours';
    box.appendChild(el('p', 'evidence-line', line + '. The hour is outlined in the heat map above.'));
  }

  const EVIDENCE = {
    geo_velocity: renderTravel,
    rate: renderRateEvidence,
    failures: renderFailures,
    geo_new: renderGeoNew,
    off_hours: renderOffHours,
  };

  function renderAnomalies(t) {
    const list = $('t-anomalies');
    clear(list);
    const as = Array.isArray(t.anomalies) ? t.anomalies : [];
    if (!as.length) {
      list.appendChild(el('li', 'hint', 'No anomalies recorded.'));
      return;
    }
    for (const a of as) {
      const li = el('li', 'anomaly panel-inner');
      li.dataset.kind = String(a.kind || '');
      const head = el('div', 'anomaly-head');
      const b = el('span');
      sevBadge(b, a.severity);
      head.appendChild(b);
      head.appendChild(el('strong', 'anomaly-rule', a.rule || '?'));
      head.appendChild(el('span', 'hint', a.kind ? `(${a.kind})` : ''));
      head.appendChild(timeEl(a.time, 'anomaly-time'));
      const where = [place(a.city, a.country)];
      if (a.ip) where.push(a.ip);
      if (a.input) where.push('input ' + a.input);
      if (a.action) where.push('action ' + a.action);
      head.appendChild(el('span', 'anomaly-where', where.join(' · ')));
      li.appendChild(head);
      const ev = a.evidence && typeof a.evidence === 'object' && !Array.isArray(a.evidence) ? a.evidence : {};
      const box = el('div', 'evidence');
      const used = new Set();
      const fn = EVIDENCE[a.kind];
      if (fn) {
        try {
          fn(ev, used, box, a, t);
        } catch (e) {
          box.appendChild(el('p', 'hint', 'Could not draw this evidence: ' + e.message));
        }
      }
      const rest = Object.keys(ev).filter((k) => !used.has(k));
      if (rest.length) {
        const dl = el('dl', 'evidence-generic');
        for (const k of rest) {
          const row = el('div');
          row.appendChild(el('dt', 'mono', k));
          row.appendChild(el('dd', 'mono', valueText(ev[k])));
          dl.appendChild(row);
        }
        box.appendChild(dl);
      }
      li.appendChild(box);
      list.appendChild(li);
    }
  }

  function renderHistory(t) {
    const body = $('t-history');
    clear(body);
    const hs = Array.isArray(t.history) ? t.history : [];
    if (!hs.length) {
      const tr = el('tr');
      const td = el('td', 'hint', 'Nothing yet.');
      td.colSpan = 5;
      tr.appendChild(td);
      body.appendChild(tr);
      return;
    }
    for (const h of hs) {
      const tr = el('tr');
      const td0 = el('td');
      td0.appendChild(timeEl(h.time));
      tr.appendChild(td0);
      tr.appendChild(el('td', null, h.action || '–'));
      const tds = el('td');
      const sb = el('span');
      stateBadge(sb, h.state, false);
      tds.appendChild(sb);
      tr.appendChild(tds);
      tr.appendChild(el('td', null, h.analyst || '–'));
      tr.appendChild(el('td', 'note-cell', h.note || ''));
      body.appendChild(tr);
    }
  }

  // ---- actions -------------------------------------------------------------

  /** Which actions apply to a state; the API has the last word (409). */
  function applicable(action, t) {
    if (!t) return false;
    const s = t.state;
    switch (action) {
      case 'ack': return ['flagged', 'freezing', 'frozen', 'unfreezing', 'unfrozen'].includes(s);
      case 'unfreeze': return t.frozen === true && s !== 'unfreezing';
      case 'confirm': return s !== 'confirmed' && s !== 'observed';
      case 'dismiss': return s !== 'dismissed' && s !== 'observed';
      default: return false;
    }
  }

  const WHY_NOT = {
    ack: 'Only a flagged, freezing, frozen or unfrozen token can be acknowledged.',
    unfreeze: 'Only a frozen token can be unfrozen (and not while an unfreeze runs).',
    confirm: 'Already confirmed (or never flagged).',
    dismiss: 'Already dismissed (or never flagged).',
  };

  function updateActionButtons() {
    const t = state.token;
    for (const b of document.querySelectorAll('button.act')) {
      const ok = applicable(b.dataset.action, t) && !state.busy;
      b.disabled = !ok;
      setTitle(b, ok ? '' : (t ? WHY_NOT[b.dataset.action] : 'No token loaded.'));
    }
  }

  function actionResult(text, kind) {
    const p = $('action-result');
    setText(p, text);
    p.className = 'action-result' + (kind ? ' is-' + kind : '');
  }

  function requestAction(action) {
    const t = state.token;
    if (!t || !applicable(action, t)) return;
    const analyst = $('analyst').value.trim();
    if (!analyst) {
      actionResult('Enter your name as the analyst first.', 'error');
      $('analyst').focus();
      return;
    }
    const spec = ACTIONS[action];
    if (spec.confirm) {
      state.pendingAction = action;
      setText($('action-confirm-text'), `${spec.confirm} ${t.token_hint || t.token_id}?`);
      setText($('action-confirm-yes'), `Yes, ${spec.label.toLowerCase()}`);
      actionResult('', null);
      show($('action-confirm'), true);
      $('action-confirm-yes').focus();
      return;
    }
    doAction(action);
  }

  function cancelConfirm() {
    state.pendingAction = null;
    show($('action-confirm'), false);
  }

  async function doAction(action) {
    const t = state.token;
    cancelConfirm();
    const analyst = $('analyst').value.trim();
    const note = $('note').value;
    if (analyst.length > 64) {
      actionResult('The analyst name is longer than 64 characters.', 'error');
      return;
    }
    store('local', KEY_ANALYST, analyst);
    state.busy = true;
    updateActionButtons();
    actionResult(`${ACTIONS[action].label}…`, 'pending');
    try {
      const { body } = await api(`${API}/tokens/${encodeURIComponent(t.token_id)}/${action}`,
                                 { method: 'POST', body: { analyst, note } });
      $('note').value = '';
      updateNoteCount();
      const now = localTime(new Date().toISOString());
      actionResult(`${ACTIONS[action].done} by ${analyst} at ${now}: state now ${body.state || '?'}` +
                   (body.frozen ? ' (frozen)' : '') + '.', 'ok');
      state.tokenText = null;
    } catch (e) {
      actionResult(`${ACTIONS[action].label} failed: ${e.message}` + (e.status ? ` (HTTP ${e.status})` : ''), 'error');
    } finally {
      state.busy = false;
      updateActionButtons();
    }
    await refresh();
  }

  function updateNoteCount() {
    setText($('note-count'), `${$('note').value.length} / 1000`);
  }

  // ---- routing and refresh ----------------------------------------------

  async function route() {
    const r = parseHash();
    const was = state.view;
    const wasId = state.tokenId;
    state.filters = r.filters;
    state.view = r.view;
    state.tokenId = r.id;
    syncFilterForm();
    if (!$('auth-view').hidden) return;
    $('list-view').hidden = r.view !== 'list';
    $('token-view').hidden = r.view !== 'token';
    if (r.view === 'token' && (wasId !== r.id || was !== 'token')) {
      resetTokenView(r.id);
      window.scrollTo(0, 0);
    }
    if (r.view === 'list') document.title = 'tokenwatch — flagged tokens';
    // Coming back: select the token we were looking at, at once from the
    // rows already shown (the list does not sit at the token view's scroll
    // position while it refreshes), and again once the refresh is in.
    const back = r.view === 'list' && was === 'token';
    if (back) selectToken(wasId);
    await refresh();
    if (back) selectToken(wasId);
  }

  function selectToken(id) {
    const i = state.items.findIndex((it) => it.token_id === id);
    if (i >= 0) select(i, true);
  }

  let refreshing = null;
  let rerun = false;

  /* One refresh at a time; a request for another while one runs (a filter
   * changed during an auto-refresh) runs it again afterwards, so the last
   * state asked for is the one shown. */
  function refresh() {
    if (refreshing) {
      rerun = true;
      return refreshing;
    }
    refreshing = (async () => {
      do {
        rerun = false;
        await refreshOnce();
      } while (rerun);
    })().finally(() => { refreshing = null; });
    return refreshing;
  }

  async function refreshOnce() {
    const status = $('refresh-status');
    try {
      const jobs = [loadStats()];
      if (state.view === 'token' && state.tokenId) jobs.push(loadToken(state.tokenId), loadList());
      else jobs.push(loadList());
      await Promise.all(jobs);
      const d = new Date();
      setText(status, `Updated ${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`);
      status.dataset.time = String(d.getTime());
      status.className = 'refresh-status';
      document.body.dataset.loaded = 'true';
    } catch (e) {
      const last = status.dataset.time ? ` (last good ${ago(new Date(Number(status.dataset.time)))})` : '';
      setText(status, 'Refresh failed: ' + e.message + last);
      status.className = 'refresh-status is-error';
      if (e.status === 400 && state.view === 'list') setText($('filter-error'), e.message);
    }
  }

  function schedule() {
    if (state.timer) clearInterval(state.timer);
    state.timer = null;
    if ($('auto-refresh').checked) {
      state.timer = setInterval(() => {
        if (document.visibilityState === 'visible' && $('auth-view').hidden) refresh();
      }, REFRESH_MS);
    }
  }

  // ---- theme ---------------------------------------------------------------

  const THEMES = ['auto', 'dark', 'light'];

  function applyTheme(t) {
    const theme = THEMES.includes(t) ? t : 'auto';
    document.documentElement.dataset.theme = theme;
    setText($('theme-toggle'), 'Theme: ' + theme);
  }

  // ---- keyboard ------------------------------------------------------------

  function isField(node) {
    if (!node || !node.tagName) return false;
    const tag = node.tagName;
    return tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT' || node.isContentEditable;
  }

  function onKey(ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const help = $('help-dialog');
    if (help.open) return;   // the dialog handles Esc itself
    const target = ev.target;
    if (isField(target)) {
      if (ev.key === 'Escape') {
        target.blur();
        ev.preventDefault();
      }
      return;
    }
    if (!$('auth-view').hidden) return;
    const k = ev.key;
    if (k === '?') {
      help.showModal();
      ev.preventDefault();
      return;
    }
    if (k === 'r') {
      refresh();
      return;
    }
    if (state.view === 'list') {
      const onButton = target && (target.tagName === 'BUTTON' || (target.tagName === 'A' && !target.closest('#flagged-body')));
      switch (k) {
        case 'j': case 'ArrowDown': select(state.sel + 1, true); break;
        case 'k': case 'ArrowUp': select(state.sel - 1, true); break;
        case 'g': case 'Home': select(0, true); break;
        case 'G': case 'End': select(state.items.length - 1, true); break;
        case ']': page(1); break;
        case '[': page(-1); break;
        case '/': $('f-severity').focus(); break;
        case 'Enter':
          if (onButton) return;   // let the focused button or link act
          openSelected();
          break;
        default: return;
      }
      ev.preventDefault();
      return;
    }
    // token view
    switch (k) {
      case 'Escape':
        if (state.pendingAction) {
          cancelConfirm();
          break;
        }
        location.hash = listHash(state.filters);
        break;
      case 'n': $('note').focus(); break;
      case 'j': case 'k': {
        const i = state.items.findIndex((it) => it.token_id === state.tokenId);
        const next = state.items[i + (k === 'j' ? 1 : -1)];
        if (i >= 0 && next) {
          state.sel = i + (k === 'j' ? 1 : -1);
          state.selId = next.token_id;
          location.hash = tokenHash(next.token_id, state.filters);
        }
        break;
      }
      default: return;
    }
    ev.preventDefault();
  }

  // ---- start ---------------------------------------------------------------

  function init() {
    applyTheme(load('local', KEY_THEME) || 'auto');
    $('theme-toggle').addEventListener('click', () => {
      const cur = document.documentElement.dataset.theme;
      const next = THEMES[(THEMES.indexOf(cur) + 1) % THEMES.length];
      store('local', KEY_THEME, next);
      applyTheme(next);
    });
    const auto = load('local', KEY_AUTO);
    $('auto-refresh').checked = auto !== 'off';
    $('auto-refresh').addEventListener('change', () => {
      store('local', KEY_AUTO, $('auto-refresh').checked ? null : 'off');
      schedule();
    });
    $('refresh-now').addEventListener('click', () => refresh());
    $('help-button').addEventListener('click', () => $('help-dialog').showModal());
    $('forget-token').addEventListener('click', () => {
      store('session', KEY_BEARER, null);
      updateForgetButton();
      refresh();
    });
    $('auth-form').addEventListener('submit', onAuthSubmit);

    for (const id of ['f-severity', 'f-state', 'f-since', 'f-limit']) $(id).addEventListener('change', onFilterChange);
    $('f-rule').addEventListener('change', onFilterChange);
    $('f-since-custom').addEventListener('change', onFilterChange);
    $('filters').addEventListener('submit', (ev) => { ev.preventDefault(); onFilterChange(); });
    $('f-reset').addEventListener('click', () => { location.hash = listHash(defaultFilters()); });
    $('page-prev').addEventListener('click', () => page(-1));
    $('page-next').addEventListener('click', () => page(1));

    $('analyst').value = load('local', KEY_ANALYST) || '';
    $('analyst').addEventListener('change', () => store('local', KEY_ANALYST, $('analyst').value.trim() || null));
    $('note').addEventListener('input', updateNoteCount);
    for (const b of document.querySelectorAll('button.act')) {
      b.addEventListener('click', () => requestAction(b.dataset.action));
    }
    $('action-confirm-yes').addEventListener('click', () => {
      if (state.pendingAction) doAction(state.pendingAction);
    });
    $('action-confirm-no').addEventListener('click', cancelConfirm);
    $('action-form').addEventListener('submit', (ev) => ev.preventDefault());
    $('back-link').addEventListener('click', (ev) => {
      ev.preventDefault();
      location.hash = listHash(state.filters);
    });

    document.addEventListener('keydown', onKey);
    window.addEventListener('hashchange', route);
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible' && $('auto-refresh').checked) refresh();
    });
    updateForgetButton();
    updateActionButtons();
    schedule();
    route();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
