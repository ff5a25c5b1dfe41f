#!/usr/bin/env python3
"""test_analyst_page.py — the analyst page in a real browser (issue 5).

Debian's chromium, headless, driven over the DevTools protocol on a pipe
(cdp.py; no npm, no port), against the real daemon fed with the seeded
ground-truth scenario (testdata/scenarios/):

 1. generate the scenario, start `tokenwatch run` on it with a bearer token
    and a freeze hook (a small script that appends its stdin to a file), wait
    until every line is read and the flagged list is complete and settled;
 2. load "/" without credentials: the API answers 401, the page asks for the
    token, the test types it; the table must show the API's first page (rows
    = min(total, page size), same hints in the same order, at least one of
    them a token the scenario attacked), the header the API's stats; a
    severity filter and the second page go through the URL hash and back;
 3. keyboard only: j moves the selection to a token with an impossible-travel
    anomaly, Enter opens it; its travel leg shows from → to, km, hours and
    km/h as in the API's evidence, the heat map has 168 cells with the
    anomaly's hour outlined, the rate chart is drawn;
 4. Acknowledge with an analyst name and a note (with markup in it, which must
    stay text): the page shows the new state, the API says "acked" with the
    history entry, the events file has the analyst_action line; Esc goes
    back to the list with the token still selected; ? opens the shortcuts;
    a refresh of the list or the token view moves nothing on the page
    (Layout Instability API: no layout-shift entry; same row boxes);
 5. screenshots (1440x900, dark) in $TW_BINARY_DIR/screenshots/; with
    TW_UPDATE_SCREENSHOT=1 the list view is copied to
    docs/screenshots/analyst-page.png;
 6. secrecy: every response the page received (from the browser's network
    log), the DOM at each step, every API document refetched (the flagged
    list and each flagged token), the events file, the freeze hook's input
    and the daemon's stderr are searched for every raw token of the scenario
    — none may appear. No JavaScript exception, no CSP violation.

Exit 77 (skip) only when chromium is missing and $CI is not set; in CI a
missing chromium fails. TW_PAGE_STANDIN=1 runs the same test against
standin.py (events from `tokenwatch replay`) instead of the daemon: a dev aid
for page work while the daemon side changes. TW_KEEP_TMP=1 keeps the temp
dir. Environment from ctest: TW_BIN, TW_SOURCE_DIR, TW_BINARY_DIR.
"""
import json
import math
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
from datetime import datetime
from zoneinfo import ZoneInfo

sys.dont_write_bytecode = True   # keep the source tree clean
HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("TW_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "integration"))
sys.path.insert(0, os.path.join(SOURCE_DIR, "testdata", "scenarios"))

import cdp  # noqa: E402
import twtest  # noqa: E402
import evaluate  # noqa: E402  (the scenario's labels and rules helpers)

TW_BIN = twtest.TW_BIN
BINARY_DIR = os.environ.get("TW_BINARY_DIR") or os.path.dirname(os.path.abspath(TW_BIN))
SCREEN_DIR = os.path.join(BINARY_DIR, "screenshots")
README_SHOT = os.path.join(SOURCE_DIR, "docs", "screenshots", "analyst-page.png")
STANDIN = os.environ.get("TW_PAGE_STANDIN") == "1"

WIDTH, HEIGHT = 1440, 900
PAGE_SIZE = 50                     # the page's default "per page"
ANALYST = "e2e-analyst"
# Markup in the note must come back as text, never as elements.
NOTE = "Owner confirmed the trip <b>not bold</b> & <img src=x>"
INPUT = "gateway"


def log(msg):
    sys.stderr.write("[analyst-page %6.1fs] %s\n" % (time.monotonic() - T0, msg))


T0 = time.monotonic()


def kmh_text(v):
    """The page's num(v, 0): en-US grouping, half away from zero."""
    return "{:,}".format(int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1))


def hour_of_week(rfc3339, tz):
    d = datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).astimezone(ZoneInfo(tz or "UTC"))
    return d.weekday() * 24 + d.hour


class AnalystPageTest(unittest.TestCase):
    maxDiff = None

    # -- fixtures -----------------------------------------------------------
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="tw-page-")
        self.addCleanup(self._rm_tmp)
        self.bearer = "tw-e2e-" + secrets.token_hex(16)
        self.browser = None
        self.daemon = None
        self.standin = None
        self.doms = []          # (step, outerHTML)
        self.addCleanup(self._stop_all)

    def _rm_tmp(self):
        if os.environ.get("TW_KEEP_TMP") == "1":
            sys.stderr.write("(keeping %s)\n" % self.tmp)
            return
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _stop_all(self):
        if self.browser is not None:
            self.browser.close()
        if self.daemon is not None:
            self.daemon.cleanup()
        if self.standin is not None:
            self.standin.shutdown()
            self.standin.server_close()

    def path(self, *p):
        return os.path.join(self.tmp, *p)

    # -- the scenario ---------------------------------------------------------
    def make_scenario(self):
        scen = self.path("scenario")
        p = subprocess.run([sys.executable, os.path.join(SOURCE_DIR, "testdata", "scenarios", "gen_scenarios.py"),
                            "--out", scen], capture_output=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr.decode("utf-8", "replace"))
        self.log_path = os.path.join(scen, "scenario.log")
        self.labels = evaluate.Labels(os.path.join(scen, "labels.jsonl"))
        self.raw_tokens = sorted(self.labels.tokens)
        self.assertGreater(len(self.raw_tokens), 1000)
        self.token_re = re.compile("|".join(re.escape(t) for t in self.raw_tokens))
        # Positive control: the matcher finds tokens where they are.
        with open(self.log_path, encoding="utf-8") as f:
            head = f.read(1 << 16)
        self.assertTrue(self.token_re.search(head), "raw-token matcher finds nothing in the log itself")
        self.attacked_hints = {a["hint"] for a in self.labels.attacks if a.get("hint")}
        self.rules_path = self.path("rules.json")
        evaluate.scenario_rules(os.path.join(SOURCE_DIR, "rules", "default.json"),
                                self.labels.meta["vpn_cidrs"], self.rules_path)
        with open(self.rules_path, encoding="utf-8") as f:
            self.rule_kind = {r["id"]: r["kind"] for r in json.load(f)["rules"]}
        self.geoip = {"city_db": os.path.join(SOURCE_DIR, "testdata", "geoip", "GeoLite2-City-Test.mmdb"),
                      "asn_db": os.path.join(SOURCE_DIR, "testdata", "geoip", "GeoLite2-ASN-Test.mmdb")}

    # -- the server under test ------------------------------------------------
    def start_daemon(self):
        bearer_file = self.path("bearer")
        fd = os.open(bearer_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.bearer + "\n")
        hook = self.path("hook.py")
        with open(hook, "w") as f:
            f.write("import sys\n"
                    "data = sys.stdin.buffer.read().rstrip(b'\\n')\n"
                    "with open(sys.argv[1], 'ab') as f:\n"
                    "    f.write(data + b'\\n')\n")
        self.freeze_out = self.path("freeze-stdin.jsonl")
        self.unfreeze_out = self.path("unfreeze-stdin.jsonl")
        self.events_path = self.path("events.jsonl")
        run = self.path("run")
        os.makedirs(run)
        test = self

        class PageDaemon(twtest.Daemon):
            def config(self):
                cfg = super().config()
                cfg["http"]["auth"] = {"bearer_token_file": bearer_file}
                cfg.update({
                    "rules_file": test.rules_path,
                    "geoip": test.geoip,
                    "events_file": test.events_path,
                    "state_interval_ms": 1000,
                    # A breaker of 10 a minute would open on the scenario's
                    # 14 impossible-travel tokens replayed in one second.
                    "freeze": {"command": [sys.executable, hook, test.freeze_out], "pass_token": False,
                               "timeout_s": 10, "max_per_minute": 1000, "backoff_ms": 100},
                    "unfreeze": {"command": [sys.executable, hook, test.unfreeze_out]},
                })
                return cfg

        self.daemon = PageDaemon(run, [{"name": INPUT, "path": self.log_path, "format": "generic-text",
                                        "start": "beginning"}], name="tw")
        self.daemon.start(timeout=20)
        self.base = self.daemon.url("")
        want = self.labels.meta["lines"]

        def all_lines_read():
            if not self.daemon.running():
                raise twtest.Fatal("daemon died:\n" + self.daemon.stderr_tail())
            v = self.daemon.metrics().get_value("tokenwatch_lines_total", input=INPUT)
            return v is not None and int(v) == want
        twtest.wait_until(all_lines_read, timeout=60, interval=0.1,
                          what="tokenwatch_lines_total == %d" % want)
        log("daemon read all %d lines" % want)

        # The flagged list is complete when it has every token of the events
        # file, and settled when no freeze is queued or running any more.
        def settled():
            flagged_ids = set()
            with open(self.events_path, encoding="utf-8") as f:
                for line in f:
                    e = json.loads(line)
                    if e.get("type") in (None, "anomaly") and e.get("rule") and e.get("token_id"):
                        flagged_ids.add(e["token_id"])
            st, body, _ = self.api("/api/v1/flagged?limit=1")
            if st != 200 or not flagged_ids or body["total"] != len(flagged_ids):
                return False
            st, stats, _ = self.api("/api/v1/stats")
            return (st == 200 and stats.get("freeze_queue_depth") == 0
                    and not stats.get("flagged_by_state", {}).get("freezing")
                    and not stats.get("flagged_by_state", {}).get("unfreezing"))
        twtest.wait_until(settled, timeout=30, interval=0.1,
                          what="/api/v1/flagged complete and no freeze pending")

    def start_standin(self):
        import standin
        cfg = {"state_dir": self.path("replay-state"), "formats_dir": os.path.join(SOURCE_DIR, "rules", "formats"),
               "rules_file": self.rules_path, "geoip": self.geoip}
        with open(self.path("replay.json"), "w") as f:
            json.dump(cfg, f)
        p = subprocess.run([TW_BIN, "replay", "-c", self.path("replay.json"), "--format", "generic-text",
                            self.log_path],
                           capture_output=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr.decode("utf-8", "replace")[-2000:])
        self.events_path = self.path("events.jsonl")
        with open(self.events_path, "wb") as f:
            f.write(p.stdout)
        self.standin = standin.make_server(0, standin.read_events(self.events_path), self.bearer,
                                           audit=self.events_path)
        threading.Thread(target=self.standin.serve_forever, daemon=True).start()
        self.base = "http://127.0.0.1:%d" % self.standin.server_address[1]
        self.freeze_out = self.unfreeze_out = None

    def api(self, path, bearer=True):
        """(status, parsed JSON or None, raw text) — HTTP errors returned."""
        req = urllib.request.Request(self.base + path)
        if bearer:
            req.add_header("Authorization", "Bearer " + self.bearer)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read().decode("utf-8")
                status = r.status
        except urllib.error.HTTPError as e:
            raw = e.read().decode("utf-8", "replace")
            status = e.code
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        return status, body, raw

    # -- browser helpers ----------------------------------------------------
    def snap(self, page, name):
        path = page.screenshot(os.path.join(SCREEN_DIR, name))
        log("screenshot " + path)
        return path

    def dom(self, page, step):
        html = page.evaluate("document.documentElement.outerHTML")
        values = page.evaluate("[...document.querySelectorAll('input,textarea')].map(e => e.value).join('\\n')")
        self.doms.append((step, html + "\n" + values))
        return html

    def refresh_without_shift(self, page, where):
        """Clicks Refresh, waits for the refresh to finish, and asserts that
        nothing on the page moved (Layout Instability API) and the table's
        rows kept their boxes."""
        rects = ("[...document.querySelectorAll('#flagged-body tr, #token-view .panel')]"
                 ".filter(e => e.offsetParent).map(e => { const r = e.getBoundingClientRect();"
                 " return [Math.round(r.top), Math.round(r.height)]; })")
        before = page.evaluate(rects)
        n = page.evaluate("window.__tw_shifts.length")
        t = page.evaluate("document.getElementById('refresh-status').dataset.time || ''")
        page.evaluate("document.getElementById('refresh-now').click()")
        page.wait_for("(document.getElementById('refresh-status').dataset.time || '') !== %s" % json.dumps(t),
                      what="a refresh (%s)" % where)
        page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        shifts = page.evaluate("window.__tw_shifts.slice(%d)" % n)
        self.assertEqual([x for x in shifts if x["value"] > 0], [], "layout shifts on refresh (%s)" % where)
        self.assertEqual(page.evaluate(rects), before, "boxes moved on refresh (%s)" % where)

    def rows(self, page):
        return page.evaluate("""[...document.querySelectorAll('#flagged-body tr')].map(tr => ({
            id: tr.dataset.tokenId, sev: tr.children[0].textContent, rule: tr.children[1].textContent,
            hint: tr.children[3].textContent, state: tr.children[7].textContent,
            selected: tr.getAttribute('aria-selected') === 'true'}))""")

    # -- the test -------------------------------------------------------------
    def test_analyst_page(self):
        self.make_scenario()
        log("scenario: %d lines, %d raw tokens" % (self.labels.meta["lines"], len(self.raw_tokens)))
        if STANDIN:
            self.start_standin()
        else:
            self.start_daemon()
        log("server ready at " + self.base)

        # Without the bearer token the API refuses; the page itself is public.
        st, body, _ = self.api("/api/v1/flagged", bearer=False)
        self.assertEqual(st, 401, "the API answered %s without a token" % st)

        st, flagged, _ = self.api("/api/v1/flagged?limit=%d" % PAGE_SIZE)
        self.assertEqual(st, 200)
        total, items = flagged["total"], flagged["items"]
        self.assertGreater(total, 0)
        st, stats, _ = self.api("/api/v1/stats")
        self.assertEqual(st, 200)

        self.browser = cdp.Browser(self.path("chromium-profile"), stderr_path=self.path("chromium.stderr"))
        page = self.browser.new_page(WIDTH, HEIGHT)
        page.set_dark(True)
        page.call("Page.addScriptToEvaluateOnNewDocument", {"source": (
            "window.__tw_csp = [];"
            "document.addEventListener('securitypolicyviolation', e => window.__tw_csp.push("
            "e.violatedDirective + ' ' + e.blockedURI + ' ' + e.sourceFile + ':' + e.lineNumber));"
            "window.__tw_shifts = [];"
            "new PerformanceObserver(l => { for (const e of l.getEntries()) window.__tw_shifts.push("
            "{value: e.value, input: e.hadRecentInput}); }).observe({type: 'layout-shift', buffered: true});")})
        page.navigate(self.base + "/")
        log("page loaded")

        # -- the 401 flow: the page asks for the token, we type it -----------
        page.wait_for("!document.getElementById('auth-view').hidden", what="the page to ask for a token")
        self.assertEqual(page.evaluate("document.activeElement && document.activeElement.id"), "auth-token")
        page.insert_text(self.bearer)
        page.key("Enter")
        try:
            page.wait_for("document.body.dataset.loaded === 'true' && "
                          "document.querySelectorAll('#flagged-body tr').length > 0", timeout=20,
                          what="the flagged table")
        except AssertionError:
            log("page state: %r" % page.evaluate(
                "[document.getElementById('auth-view').hidden, document.getElementById('auth-message').textContent,"
                " document.getElementById('refresh-status').textContent, location.href]"))
            raise
        self.assertEqual(page.evaluate("sessionStorage.getItem('tokenwatch.bearer')"), self.bearer)

        # -- list view ----------------------------------------------------------
        rows = self.rows(page)
        self.assertEqual(len(rows), min(total, PAGE_SIZE), "rows shown vs API total %d" % total)
        self.assertEqual([r["hint"] for r in rows], [i["token_hint"] for i in items])
        self.assertEqual([r["id"] for r in rows], [i["token_id"] for i in items])
        for r, it in zip(rows, items):
            self.assertEqual(r["sev"].strip("▲● ").lower(), it["severity"])
            self.assertEqual(r["rule"], it["rule"])
            self.assertTrue(r["state"].startswith(it["state"]), (r["state"], it["state"]))
        shown_attacked = [r["hint"] for r in rows if r["hint"] in self.attacked_hints]
        self.assertTrue(shown_attacked, "no token the scenario attacked is shown")
        self.assertIn(shown_attacked[0], page.evaluate("document.getElementById('flagged-table').textContent"))
        info = page.evaluate("document.getElementById('page-info').textContent")
        self.assertIn("of %s" % format(total, ","), info)
        self.assertEqual(page.evaluate("document.getElementById('st-flagged').textContent"),
                         format(stats["tokens_flagged"], ","))
        self.assertEqual(page.evaluate("document.getElementById('st-tracked').textContent"),
                         format(stats["tokens_tracked"], ","))
        breaker_hidden = page.evaluate("document.getElementById('st-breaker').classList.contains('is-hidden')")
        self.assertEqual(breaker_hidden, not stats["freeze_circuit_open"])
        log("list: %d rows of %d, e.g. %s" % (len(rows), total, shown_attacked[0]))
        self.dom(page, "list")
        list_shot = self.snap(page, "analyst-page-list.png")
        self.refresh_without_shift(page, "list")

        # A filter goes through the URL hash, and the table follows it.
        page.evaluate("(() => { const s = document.getElementById('f-severity'); s.value = 'critical';"
                      " s.dispatchEvent(new Event('change')); })()")
        page.wait_for("location.hash.includes('severity=critical')", what="severity in the URL hash")
        st, crit, _ = self.api("/api/v1/flagged?severity=critical&limit=%d" % PAGE_SIZE)
        self.assertEqual(st, 200)
        page.wait_for("document.querySelectorAll('#flagged-body tr').length === %d && "
                      "[...document.querySelectorAll('#flagged-body tr')].every(tr => "
                      "tr.children[0].textContent.includes('CRITICAL'))" % len(crit["items"]),
                      what="%d critical rows" % len(crit["items"]))
        page.evaluate("document.getElementById('f-reset').click()")
        page.wait_for("!location.hash.includes('severity') && "
                      "document.querySelectorAll('#flagged-body tr').length === %d" % len(rows),
                      what="the unfiltered list again")
        if total > PAGE_SIZE:   # ] and [ page through the list (offset in the hash)
            page.evaluate("document.activeElement && document.activeElement.blur()")
            page.key("]")
            page.wait_for("location.hash.includes('offset=%d') && "
                          "document.querySelectorAll('#flagged-body tr').length === %d"
                          % (PAGE_SIZE, min(total - PAGE_SIZE, PAGE_SIZE)), what="the second page")
            st, p2, _ = self.api("/api/v1/flagged?limit=%d&offset=%d" % (PAGE_SIZE, PAGE_SIZE))
            self.assertEqual([r["hint"] for r in self.rows(page)], [i["token_hint"] for i in p2["items"]])
            page.key("[")
            page.wait_for("!location.hash.includes('offset') && "
                          "document.querySelectorAll('#flagged-body tr').length === %d" % len(rows),
                          what="the first page again")

        # -- keyboard: select a token with impossible travel, open it --------
        geo_rules = {rid for rid, kind in self.rule_kind.items() if kind == "geo_velocity"}
        idx = next((i for i, it in enumerate(items) if geo_rules & set(it.get("rules") or [it["rule"]])), None)
        self.assertIsNotNone(idx, "no impossible-travel token on the first page")
        target = items[idx]
        page.evaluate("document.activeElement && document.activeElement.blur()")
        page.key("g")   # first row (the selection follows a token across list changes)
        page.key("j", times=idx)
        sel = [i for i, r in enumerate(self.rows(page)) if r["selected"]]
        self.assertEqual(sel, [idx], "selection after %d x j" % idx)
        page.key("Enter")
        page.wait_for("location.hash.startsWith('#/token/%s')" % target["token_id"], what="the token's URL")
        st, tok, _ = self.api("/api/v1/tokens/" + target["token_id"])
        self.assertEqual(st, 200)
        page.wait_for("document.getElementById('token-title').textContent === %s && "
                      "document.querySelectorAll('#t-anomalies li.anomaly').length === %d"
                      % (json.dumps(target["token_hint"]), len(tok["anomalies"])),
                      what="the token view of %s" % target["token_hint"])
        self.assertEqual(page.evaluate("document.getElementById('t-id').textContent"), target["token_id"])

        # Evidence: the travel leg as in the API.
        geo = next(a for a in tok["anomalies"] if a.get("kind") == "geo_velocity")
        ev = geo["evidence"]
        legs = page.evaluate("[...document.querySelectorAll('#t-anomalies tr.travel-leg')].map(tr => "
                             "[...tr.children].map(td => td.textContent))")
        self.assertTrue(legs, "no travel leg shown")
        leg = next((l for l in legs if kmh_text(ev["kmh"]) + " km/h" in l), None)
        self.assertIsNotNone(leg, "no leg with %s km/h among %r" % (kmh_text(ev["kmh"]), legs))
        frm, arrow, to = leg[0], leg[1], leg[2]
        self.assertEqual(arrow, "→")
        self.assertIn(ev["from"]["country"], frm)
        self.assertIn(ev["to"]["country"], to)
        if ev["from"].get("city"):
            self.assertIn(ev["from"]["city"], frm)
        if ev["to"].get("city"):
            self.assertIn(ev["to"]["city"], to)
        self.assertIn(kmh_text(ev["km"]) + " km", leg[3])
        self.assertIn(" h", leg[4])
        # The hour-of-week heat map: 7 x 24 cells, the anomaly's hour outlined.
        self.assertEqual(page.evaluate("document.querySelectorAll('#t-heatmap .hm-cell').length"), 168)
        marks = page.evaluate("[...document.querySelectorAll('#t-heatmap .hm-mark')].map(r => +r.dataset.hour)")
        self.assertIn(hour_of_week(geo["time"], tok.get("time_zone", "")), marks)
        self.assertEqual(page.evaluate("document.querySelectorAll('#t-heatmap text').length"), 7 + 8)
        self.assertTrue(page.evaluate("!!document.querySelector('#t-rate svg.rate-chart rect.bar')"))
        log("token view of %s: travel %s → %s, %s km/h" % (target["token_hint"], frm, to, kmh_text(ev["kmh"])))
        self.dom(page, "token")
        self.snap(page, "analyst-page-token.png")
        self.refresh_without_shift(page, "token view")
        page.evaluate("document.getElementById('t-heatmap').scrollIntoView({block: 'start'})")
        self.snap(page, "analyst-page-evidence.png")
        page.evaluate("window.scrollTo(0, 0)")

        # -- the action: Acknowledge with a note ---------------------------------
        before = tok["state"]
        self.assertFalse(page.evaluate("document.getElementById('act-ack').disabled"),
                         "Acknowledge is disabled for state %s" % before)
        self.assertEqual(page.evaluate("document.getElementById('act-unfreeze').disabled"),
                         not tok["frozen"] or tok["state"] == "unfreezing")
        page.evaluate("(() => { const a = document.getElementById('analyst'); a.value = ''; a.focus(); })()")
        page.insert_text(ANALYST)
        page.evaluate("document.getElementById('note').focus()")
        page.insert_text(NOTE)
        page.evaluate("document.getElementById('act-ack').focus()")
        page.key("Enter")
        page.wait_for("document.getElementById('action-result').classList.contains('is-ok')", timeout=15,
                      what="the action's result (%s)" % "action-result")
        result = page.evaluate("document.getElementById('action-result').textContent")
        self.assertIn("acked", result)
        page.wait_for("document.getElementById('t-state').textContent.startsWith('acked')",
                      what="the state badge to say acked")
        st, tok2, _ = self.api("/api/v1/tokens/" + target["token_id"])
        self.assertEqual(st, 200)
        self.assertEqual(tok2["state"], "acked")
        acks = [h for h in tok2.get("history", []) if h.get("action") == "ack"]
        self.assertTrue(acks, "no ack in the token's history: %r" % tok2.get("history"))
        self.assertEqual((acks[0]["analyst"], acks[0]["note"]), (ANALYST, NOTE))
        page.wait_for("document.getElementById('t-history').textContent.includes(%s)" % json.dumps(NOTE),
                      what="the note in the history table")
        self.assertEqual(page.evaluate("document.querySelectorAll('#t-history b, #t-history img').length"), 0,
                         "markup in a note became elements")
        self.assertEqual(page.evaluate("localStorage.getItem('tokenwatch.analyst')"), ANALYST)

        def audit_line():
            with open(self.events_path, encoding="utf-8") as f:
                for line in f:
                    e = json.loads(line)
                    if (e.get("type") == "analyst_action" and e.get("token_id") == target["token_id"]
                            and e.get("action") == "ack"):
                        return e
            return None
        rec = twtest.wait_until(audit_line, timeout=10, what="the analyst_action line in the events file")
        self.assertEqual((rec["analyst"], rec["note"], rec["state"]), (ANALYST, NOTE, "acked"))
        self.assertEqual(rec.get("token_hint"), target["token_hint"])
        log("acknowledged: %s -> acked, audit line written" % before)
        self.dom(page, "after action")
        self.snap(page, "analyst-page-action.png")

        # -- Esc: back to the list, the token still selected and now acked ---
        page.evaluate("document.activeElement && document.activeElement.blur()")
        page.key("Escape")
        page.wait_for("!location.hash.startsWith('#/token/') && !document.getElementById('list-view').hidden",
                      what="the list after Esc")
        page.wait_for("(() => { const tr = document.querySelector('#flagged-body tr[aria-selected=\"true\"]');"
                      " if (!tr) return false; const r = tr.getBoundingClientRect();"
                      " return tr.dataset.tokenId === %s && tr.children[7].textContent.startsWith('acked')"
                      " && r.top >= 0 && r.bottom <= innerHeight; })()"
                      % json.dumps(target["token_id"]), what="the acked token selected and in view in the list")
        self.dom(page, "list after action")
        self.refresh_without_shift(page, "list after the action")

        # An unknown token id: the API's 404 is shown, no action is offered.
        page.evaluate("location.hash = '#/token/tw_0000000000000000'")
        page.wait_for("!document.getElementById('token-error').classList.contains('is-hidden')",
                      what="the unknown-token message")
        self.assertIn("tw_0000000000000000", page.evaluate("document.getElementById('token-error').textContent"))
        self.assertTrue(page.evaluate("[...document.querySelectorAll('button.act')].every(b => b.disabled)"))
        self.assertEqual(page.evaluate("document.querySelectorAll('#t-anomalies li, #t-heatmap rect').length"), 0)
        page.key("Escape")
        page.wait_for("!location.hash.startsWith('#/token/') && !document.getElementById('list-view').hidden",
                      what="the list after Esc")

        # Help: ? opens the shortcuts, Esc closes them.
        page.key("?")
        page.wait_for("document.getElementById('help-dialog').open", what="the help dialog")
        page.key("Escape")
        page.wait_for("!document.getElementById('help-dialog').open", what="the help dialog to close")

        # -- no script errors, no CSP violations, CSP sent ---------------------
        exc = [p.get("exceptionDetails", {}) for p in page.events("Runtime.exceptionThrown")]
        self.assertEqual(exc, [], "JavaScript exceptions")
        self.assertEqual(page.evaluate("window.__tw_csp"), [], "CSP violations")
        responses = page.responses()
        doc = [r for r in responses if r[0] == self.base + "/"]
        self.assertTrue(doc, "the document's response was not seen")
        csp = {k.lower(): v for k, v in doc[0][2].items()}.get("content-security-policy", "")
        self.assertIn("default-src 'self'", csp)
        api_seen = sorted({r[0] for r in responses if "/api/" in r[0]})
        log("%d responses seen by the page (%d API URLs)" % (len(responses), len(api_seen)))

        # -- secrecy: no raw token anywhere the page or an analyst can see ------
        texts = [("page response " + url, body or "") for url, status, headers, body in responses]
        texts += [("DOM " + step, html) for step, html in self.doms]
        st, allf, raw = self.api("/api/v1/flagged?limit=500")
        self.assertEqual(st, 200)
        texts.append(("/api/v1/flagged?limit=500", raw))
        for it in allf["items"]:
            texts.append(("/api/v1/tokens/" + it["token_id"], self.api("/api/v1/tokens/" + it["token_id"])[2]))
        texts.append(("/api/v1/stats", self.api("/api/v1/stats")[2]))
        for url in api_seen:   # what the page fetched, fetched again
            texts.append(("refetch " + url, self.api(url[len(self.base):])[2]))
        for label, path in (("events file", self.events_path), ("freeze hook stdin", self.freeze_out),
                            ("unfreeze hook stdin", self.unfreeze_out)):
            if path and os.path.exists(path):
                with open(path, encoding="utf-8", errors="replace") as f:
                    texts.append((label, f.read()))
        if self.daemon is not None:
            texts.append(("daemon stderr", self.daemon.stderr(all_runs=True)))
        leaks = []
        for label, text in texts:
            m = self.token_re.search(text)
            if m:
                leaks.append("%s: %s…" % (label, m.group(0)[:6]))
        self.assertEqual(leaks, [], "raw tokens found")
        log("secrecy: %d documents searched for %d raw tokens, none found" % (len(texts), len(self.raw_tokens)))
        if self.freeze_out and os.path.exists(self.freeze_out):
            with open(self.freeze_out) as f:
                log("freeze hook ran %d times" % sum(1 for _ in f))

        if os.environ.get("TW_UPDATE_SCREENSHOT") == "1":
            os.makedirs(os.path.dirname(README_SHOT), exist_ok=True)
            shutil.copyfile(list_shot, README_SHOT)
            log("copied to " + README_SHOT)


def main():
    if not cdp.find_chromium():
        if os.environ.get("CI"):
            sys.stderr.write("test_analyst_page: chromium is not installed (apt-get install chromium); "
                             "required in CI\n")
            return 1
        sys.stderr.write("test_analyst_page: SKIP: chromium is not installed (apt-get install chromium)\n")
        return 77
    if not STANDIN:
        twtest.require_binary()
    prog = unittest.main(verbosity=2, exit=False)
    return 0 if prog.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
