#!/usr/bin/env python3
"""
test_alert_e2e.py — scrape to alert to webhook, against the real servers
(ctest label `e2e`).

On loopback ports it picks and in a temp dir it owns, the test starts:
  - a webhook receiver (http.server on a thread of this process),
  - Debian's prometheus-alertmanager with the shipped prometheus/alertmanager.yml
    (webhook URLs pointed at the receiver; group_wait, group_interval and
    resolve_timeout shortened), clustering disabled,
  - the tokenwatch daemon following one generic-text log,
  - Debian's prometheus scraping it every second with the shipped rules
    (a test copy whose `for:` durations are shortened to FOR_IN_TEST;
    expressions untouched), evaluating every second.

It writes a brute-force burst (75% rejected) and asserts: the target is up;
auth_token_check and auth_token_rejected are stored with the exact totals;
HighTokenFailureRate goes pending, then firing, with the contract's labels
and annotations; Alertmanager's API v2 lists it; the webhook receives it on
the critical receiver. Then the traffic turns healthy and the alert
resolves: gone from Prometheus, and the webhook receives it "resolved".

Every wait polls with a deadline. Everything started here is stopped at the
end (also on failure or on ctest's SIGTERM) and the temp dir is removed
(kept with TW_KEEP_TMP=1). A missing prometheus/alertmanager is a failure.

Environment (set by ctest): TW_BIN, TW_SOURCE_DIR.
"""

import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import twtest  # noqa: E402  (the integration harness; used read-only)
from twtest import Expect, append, free_port  # noqa: E402

SOURCE_DIR = twtest.SOURCE_DIR
RULES_YML = os.path.join(SOURCE_DIR, "prometheus", "rules", "tokenwatch.rules.yml")
ALERTMANAGER_YML = os.path.join(SOURCE_DIR, "prometheus", "alertmanager.yml")

ALERT = "HighTokenFailureRate"
SUMMARY = "Token 拒绝率过高"
DESCRIPTION = "过去5分钟内超过50%的 token 验证失败,可能存在暴力破解或泄露风险。"
CONTRACT_EXPR = "rate(auth_token_rejected[5m]) / rate(auth_token_check[5m]) > 0.5"
FOR_IN_TEST = "4s"   # `for: 2m` in production; long enough to observe pending

INPUT = "gw"
BURST_CHECKS, BURST_REJECTED = 80, 60      # 75% rejected
HEALTHY_CHECKS = 220                       # then 60 of 300 rejected: 20%


def find_tool(*names):
    for n in names:
        exe = shutil.which(n)
        if exe:
            return exe
    raise AssertionError("%s not found on PATH: install Debian's prometheus and "
                         "prometheus-alertmanager packages (scripts/install-deps.sh --test); "
                         "the e2e test does not skip without them" % " / ".join(names))


def http_json(url, timeout=2.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode("utf-8"))


def http_status(url, timeout=1.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def tail(path, n=25):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return "    (no output)"
    return "\n".join("    " + l for l in lines[-n:]) or "    (empty)"


# ---------------------------------------------------------------------------
# Webhook receiver: records every notification Alertmanager posts.

class Webhook:
    def __init__(self):
        self.lock = threading.Lock()
        self.received = []          # [(path, payload dict)]
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                try:
                    payload = json.loads(body.decode("utf-8"))
                except ValueError:
                    payload = {"_unparsable": body[:200].decode("utf-8", "replace")}
                with outer.lock:
                    outer.received.append((self.path, payload))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, fmt, *args):   # keep the test output clean
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def base(self):
        return "http://127.0.0.1:%d" % self.port

    def notifications(self, alertname, status):
        """[(path, payload, alert)] of received alerts with that name and status."""
        out = []
        with self.lock:
            for path, p in self.received:
                for a in p.get("alerts", []) or []:
                    if a.get("labels", {}).get("alertname") == alertname and a.get("status") == status:
                        out.append((path, p, a))
        return out

    def summary(self):
        with self.lock:
            return "\n".join("    %s status=%s alerts=%s" % (
                path, p.get("status"),
                [(a.get("labels", {}).get("alertname"), a.get("status")) for a in p.get("alerts", [])])
                for path, p in self.received) or "    (nothing received)"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


# ---------------------------------------------------------------------------
# A server process (prometheus or alertmanager) on a port we pick.

class Server:
    def __init__(self, name, workdir, argv_for_port, ready_path, env=None):
        self.name = name
        self.workdir = workdir
        self.argv_for_port = argv_for_port
        self.ready_path = ready_path
        self.env = env
        self.proc = None
        self.port = None
        self.log = os.path.join(workdir, name + ".log")

    def start(self, timeout=30.0):
        for attempt in range(3):
            self.port = free_port()
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(self.argv_for_port(self.port), stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                             cwd=self.workdir)
            twtest._LIVE_PROCS.append(self.proc)   # killed by the harness at exit/SIGTERM too
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    if http_status(self.url(self.ready_path)) == 200:
                        return self
                except (OSError, urllib.error.URLError):
                    pass
                time.sleep(0.05)
            if self.proc.poll() is not None and "address already in use" in tail(self.log, 200):
                continue   # lost the port to someone else between free_port() and bind()
            self.stop()
            raise AssertionError("%s did not become ready within %.0fs (rc=%s):\n%s"
                                 % (self.name, timeout, self.proc.returncode, tail(self.log)))
        raise AssertionError("%s could not bind a port:\n%s" % (self.name, tail(self.log)))

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# ---------------------------------------------------------------------------

class AlertEndToEnd(twtest.TwTestCase):

    def setUp(self):
        super().setUp()
        self.prometheus_bin = find_tool("prometheus")
        self.alertmanager_bin = find_tool("prometheus-alertmanager", "alertmanager")
        self.servers = []
        self.webhook = None

    # -- set-up of the servers --------------------------------------------
    def start_webhook(self):
        self.webhook = Webhook()
        self.addCleanup(self.webhook.close)

    def start_alertmanager(self):
        cfg = twtest_read(ALERTMANAGER_YML)
        subs = [
            # every receiver URL -> our webhook (the path tells the receivers apart)
            (r"http://127\.0\.0\.1:5001/", self.webhook.base() + "/"),
            (r"(?m)^(\s*group_wait:\s*)\S+", r"\g<1>1s"),
            (r"(?m)^(\s*group_interval:\s*)\S+", r"\g<1>1s"),
            (r"(?m)^(\s*resolve_timeout:\s*)\S+", r"\g<1>5s"),
        ]
        for pat, rep in subs:
            cfg, n = re.subn(pat, rep, cfg)
            self.assertGreater(n, 0, "prometheus/alertmanager.yml changed: %r not found; "
                                     "update the e2e test's substitutions" % pat)
        path = self.path("alertmanager.yml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(cfg)
        data = self.path("am-data")
        os.makedirs(data)
        am = Server("alertmanager", self.tmp, lambda port: [
            self.alertmanager_bin, "--config.file=" + path, "--storage.path=" + data,
            "--web.listen-address=127.0.0.1:%d" % port, "--cluster.listen-address=",
            "--log.level=info"], "/-/ready")
        self.servers.append(am)
        self.addCleanup(am.stop)
        self.am = am.start()

    def start_prometheus(self, tw_port):
        rules = twtest_read(RULES_YML)
        self.assertIn("expr: " + CONTRACT_EXPR, rules)
        rules, n = re.subn(r"(?m)^(\s+for:\s*)\S+\s*$", r"\g<1>" + FOR_IN_TEST, rules)
        self.assertGreater(n, 0)
        rules_path = self.path("tokenwatch.rules.yml")
        with open(rules_path, "w", encoding="utf-8") as f:
            f.write(rules)
        # JSON is YAML: no YAML library needed.
        cfg = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [rules_path],
            "alerting": {"alertmanagers": [
                {"static_configs": [{"targets": ["127.0.0.1:%d" % self.am.port]}]}]},
            "scrape_configs": [{"job_name": "tokenwatch",
                                "static_configs": [{"targets": ["127.0.0.1:%d" % tw_port]}]}],
        }
        cfg_path = self.path("prometheus.yml")
        with open(cfg_path, "w") as f:
            json.dump(cfg, f, indent=2)
        data = self.path("prom-data")
        os.makedirs(data)
        # Keep prometheus small: few OS threads, an early GC and a soft memory
        # limit (Go >= 1.19), one hour of retention, few concurrent queries.
        env = dict(os.environ, GOMAXPROCS="2", GOGC="50", GOMEMLIMIT="256MiB")
        prom = Server("prometheus", self.tmp, lambda port: [
            self.prometheus_bin, "--config.file=" + cfg_path, "--storage.tsdb.path=" + data,
            "--web.listen-address=127.0.0.1:%d" % port, "--storage.tsdb.retention.time=1h",
            "--query.max-concurrency=4", "--query.max-samples=1000000",
            "--rules.alert.resend-delay=1s", "--log.level=info"], "/-/ready", env=env)
        self.servers.append(prom)
        self.addCleanup(prom.stop)
        self.prom = prom.start()

    # -- queries ------------------------------------------------------------
    def query(self, promql):
        url = self.prom.url("/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        r = http_json(url)
        if r.get("status") != "success":
            raise AssertionError("query %s failed: %r" % (promql, r))
        return r["data"]["result"]

    def scalar(self, promql):
        """The value of a one-series instant query, or None."""
        res = self.query(promql)
        if len(res) != 1:
            return None
        return float(res[0]["value"][1])

    def prom_alerts(self):
        return [a for a in http_json(self.prom.url("/api/v1/alerts"))["data"]["alerts"]
                if a["labels"].get("alertname") == ALERT]

    def am_alerts(self):
        q = urllib.parse.urlencode({"filter": 'alertname="%s"' % ALERT})
        return http_json(self.am.url("/api/v2/alerts?" + q))

    def wait(self, predicate, timeout, what):
        for s in self.servers:
            if not s.running():
                raise AssertionError("%s died (rc=%s):\n%s" % (s.name, s.proc.returncode, tail(s.log)))
        return twtest.wait_until(predicate, timeout=timeout, interval=0.1, what=what)

    def diagnostics(self):
        parts = []
        for s in self.servers:
            parts.append("%s log (tail):\n%s" % (s.name, tail(s.log)))
        if self.webhook:
            parts.append("webhook received:\n" + self.webhook.summary())
        for d in self.daemons:
            parts.append("tokenwatch stderr (tail):\n" + d.stderr_tail(15))
        return "\n".join(parts)

    # -- the test ------------------------------------------------------------
    def test_brute_force_fires_then_resolves(self):
        try:
            self.scenario()
        except AssertionError as e:
            raise AssertionError("%s\n\n--- diagnostics ---\n%s" % (e, self.diagnostics())) from None

    def scenario(self):
        t0 = time.monotonic()
        log = self.path(INPUT + ".log")
        self.start_webhook()
        self.start_alertmanager()
        tw = self.daemon([self.input(INPUT, "generic-text", start="beginning")])
        self.start_prometheus(tw.port)
        sel = '{job="tokenwatch",input="%s"}' % INPUT

        # 1. The target is up, and the counters are stored at 0 before any
        # line: the baseline sample that rate() starts from.
        def target_up():
            ts = http_json(self.prom.url("/api/v1/targets?state=active"))["data"]["activeTargets"]
            return any(t["labels"].get("job") == "tokenwatch" and t["health"] == "up" for t in ts)
        self.wait(target_up, 30, "the tokenwatch target to be up in Prometheus")
        self.assertEqual(self.scalar('up{job="tokenwatch"}'), 1.0)
        self.wait(lambda: self.scalar("auth_token_check" + sel) == 0
                  and self.scalar("auth_token_rejected" + sel) == 0, 20,
                  "auth_token_check/auth_token_rejected stored at 0")

        # 2. Brute force: 80 checks, 60 rejected.
        append(log, self.gen.batch("generic-text", BURST_CHECKS, BURST_REJECTED))
        tw.expect({INPUT: Expect(checks=BURST_CHECKS, rejected=BURST_REJECTED)})
        self.wait(lambda: self.scalar("auth_token_check" + sel) == BURST_CHECKS
                  and self.scalar("auth_token_rejected" + sel) == BURST_REJECTED, 20,
                  "Prometheus to store auth_token_check=%d, auth_token_rejected=%d"
                  % (BURST_CHECKS, BURST_REJECTED))

        # 3. HighTokenFailureRate: pending, then firing.
        states = []

        def firing():
            a = self.prom_alerts()
            if a and (not states or states[-1] != a[0]["state"]):
                states.append(a[0]["state"])
            return a[0] if a and a[0]["state"] == "firing" else None
        alert = self.wait(firing, 60, "%s to fire in Prometheus" % ALERT)
        self.assertEqual(alert["labels"], {"alertname": ALERT, "severity": "critical",
                                           "job": "tokenwatch", "input": INPUT,
                                           "instance": "127.0.0.1:%d" % tw.port})
        self.assertEqual(alert["annotations"], {"summary": SUMMARY, "description": DESCRIPTION})
        self.assertAlmostEqual(float(alert["value"]), BURST_REJECTED / BURST_CHECKS, places=9)
        # Pending came first: the TSDB holds both ALERTS series, pending earlier.
        rng = self.prom.url("/api/v1/query_range?" + urllib.parse.urlencode({
            "query": 'ALERTS{alertname="%s"}' % ALERT, "start": time.time() - 170,
            "end": time.time(), "step": "1s"}))
        first = {}
        for s in http_json(rng)["data"]["result"]:
            first[s["metric"]["alertstate"]] = min(float(v[0]) for v in s["values"])
        self.assertIn("pending", first, "no pending ALERTS sample stored (states seen: %s)" % states)
        self.assertIn("firing", first)
        self.assertLess(first["pending"], first["firing"], "pending must precede firing")
        self.assertEqual(states[-1], "firing")

        # 4. Alertmanager lists it (API v2), routed to the critical receiver.
        def am_active():
            for a in self.am_alerts():
                if a["status"]["state"] == "active" and a["labels"].get("input") == INPUT:
                    return a
            return None
        a = self.wait(am_active, 20, "Alertmanager /api/v2/alerts to list %s" % ALERT)
        self.assertEqual(a["labels"]["severity"], "critical")
        self.assertEqual(a["annotations"]["summary"], SUMMARY)
        self.assertEqual(a["annotations"]["description"], DESCRIPTION)
        self.assertIn("tokenwatch-critical", [r["name"] for r in a["receivers"]])

        # 5. The webhook receives it.
        got = self.wait(lambda: self.webhook.notifications(ALERT, "firing"), 30,
                        "the webhook to receive %s firing" % ALERT)
        path, payload, wa = got[0]
        self.assertEqual(path, "/tokenwatch/critical")
        self.assertEqual(payload["receiver"], "tokenwatch-critical")
        self.assertEqual(payload["status"], "firing")
        self.assertEqual(payload["groupLabels"], {"alertname": ALERT, "input": INPUT})
        self.assertEqual(wa["annotations"], {"summary": SUMMARY, "description": DESCRIPTION})
        self.assertEqual(wa["labels"]["severity"], "critical")

        # 6. Healthy traffic: 220 accepted checks, 60 of 300 rejected (20%).
        append(log, self.gen.batch("generic-text", HEALTHY_CHECKS, 0))
        total = BURST_CHECKS + HEALTHY_CHECKS
        tw.expect({INPUT: Expect(checks=total, rejected=BURST_REJECTED)})
        self.wait(lambda: self.scalar("auth_token_check" + sel) == total
                  and self.scalar("auth_token_rejected" + sel) == BURST_REJECTED, 20,
                  "Prometheus to store auth_token_check=%d" % total)
        self.wait(lambda: not self.prom_alerts(), 30, "%s to resolve in Prometheus" % ALERT)
        got = self.wait(lambda: self.webhook.notifications(ALERT, "resolved"), 30,
                        "the webhook to receive %s resolved" % ALERT)
        path, payload, wa = got[0]
        self.assertEqual(path, "/tokenwatch/critical")
        self.assertEqual(payload["status"], "resolved")
        self.assertEqual(wa["labels"]["input"], INPUT)
        self.wait(lambda: not [x for x in self.am_alerts() if x["status"]["state"] == "active"], 20,
                  "Alertmanager to stop listing %s as active" % ALERT)

        # 7. Sanity: every shipped rule evaluated without error, and the
        # target never looked down.
        groups = http_json(self.prom.url("/api/v1/rules"))["data"]["groups"]
        bad = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"]
               if r.get("health") not in ("ok", "unknown")]
        self.assertFalse(bad, "rules with evaluation errors: %s" % bad)
        self.assertEqual(sum(len(g["rules"]) for g in groups),
                         len(re.findall(r"(?m)^\s*-\s*alert:", twtest_read(RULES_YML))))
        self.assertEqual(self.query('ALERTS{alertname="TokenwatchDown"}'), [])

        elapsed = time.monotonic() - t0
        sys.stderr.write("\n(e2e scenario took %.1fs; states seen: %s)\n" % (elapsed, states))
        self.assertLess(elapsed, 150, "the e2e scenario must finish well under 3 minutes")


def twtest_read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


if __name__ == "__main__":
    twtest.main()
