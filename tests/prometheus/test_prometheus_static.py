#!/usr/bin/env python3
"""
test_prometheus_static.py — static checks of everything under prometheus/
(ctest label `prometheus`; no daemon needed, stdlib only):

  config        promtool check config prometheus/prometheus.yml (and the
                rule files it loads)
  rules         promtool check rules; HighTokenFailureRate is verbatim the
                contract; every metric name used is one of the contract's
  unit          promtool test rules prometheus/tests/*.yml, and every alert
                of the rules file is exercised by at least one unit test
  alertmanager  amtool check-config; critical alerts route to the critical
                webhook, the rest to the default one; TokenwatchDown inhibits
                every other tokenwatch alert
  dashboard     the Grafana JSON loads, is an importable export (the
                ${DS_PROMETHEUS} input), covers the required panels, and every
                PromQL expression in it parses with promtool

promtool and amtool come from Debian's prometheus and prometheus-alertmanager
packages, which the test setup installs: a missing tool is a FAILURE, not a
skip.

Run one check:  python3 tests/prometheus/test_prometheus_static.py StaticChecks.test_unit
Environment:    TW_SOURCE_DIR (default: two levels above this file).
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("TW_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
PROM_DIR = os.path.join(SOURCE_DIR, "prometheus")
PROMETHEUS_YML = os.path.join(PROM_DIR, "prometheus.yml")
RULES_YML = os.path.join(PROM_DIR, "rules", "tokenwatch.rules.yml")
ALERTMANAGER_YML = os.path.join(PROM_DIR, "alertmanager.yml")
DASHBOARD_JSON = os.path.join(PROM_DIR, "grafana", "tokenwatch-dashboard.json")
UNIT_TESTS = sorted(glob.glob(os.path.join(PROM_DIR, "tests", "*.yml")))
CONTRACT_MD = os.path.join(SOURCE_DIR, "docs", "internal-contract.md")

# The contract alert, verbatim (DESIGN.md "Prometheus side", issue 6).
CONTRACT_EXPR = "rate(auth_token_rejected[5m]) / rate(auth_token_check[5m]) > 0.5"
CONTRACT_SUMMARY = "Token 拒绝率过高"
CONTRACT_DESCRIPTION = "过去5分钟内超过50%的 token 验证失败,可能存在暴力破解或泄露风险。"

# Alerts that must ship (issue 6) and their routing severity.
REQUIRED_ALERTS = {
    "HighTokenFailureRate", "TokenwatchDown", "TokenFrozen", "ImpossibleTravelDetected",
    "TokenwatchParseErrorsHigh", "TokenwatchFreezeHookFailing", "TokenwatchFreezeCircuitOpen",
    "TokenwatchInputStalled",
}

# Metrics every dashboard must show (issue 6, point 1).
DASHBOARD_METRICS = {
    "auth_token_check", "auth_token_rejected", "tokenwatch_anomalies_total",
    "tokenwatch_tokens_frozen", "tokenwatch_hook_calls_total", "tokenwatch_input_lag_bytes",
    "tokenwatch_parse_errors_total",
}

METRIC_RE = re.compile(r"\b(?:auth_token|tokenwatch)_[a-z0-9_]+\b")
ALERT_RE = re.compile(r"^\s*-\s*alert:\s*(\S+)\s*$", re.M)


def tool(name, package):
    exe = shutil.which(name)
    if not exe:
        raise AssertionError(
            "%s not found on PATH: install Debian's `%s` package (apt-get install %s, or "
            "scripts/install-deps.sh --test); the prometheus checks do not skip without it"
            % (name, package, package))
    return exe


def run(argv, cwd=None, timeout=120):
    p = subprocess.run(argv, capture_output=True, timeout=timeout, cwd=cwd)
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    return p.returncode, out


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def contract_metric_names():
    """Metric names listed in docs/internal-contract.md (foundation and the
    names reserved for detection and response)."""
    names = set(re.findall(r"^\s{4}((?:auth_token|tokenwatch)_[a-z0-9_]+)", read(CONTRACT_MD), re.M))
    if not names:
        raise AssertionError("no metric names found in %s" % CONTRACT_MD)
    return names


def rule_blocks(text):
    """{alertname: text of its list item} from the rules file (no YAML
    library needed: the file is ours and keeps one rule per `- alert:`)."""
    out = {}
    starts = [m for m in re.finditer(r"^(\s*)-\s*(alert|record):\s*(\S+)\s*$", text, re.M)]
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        # a new group also ends the block
        g = re.search(r"^\s*-\s*name:", text[m.end():end], re.M)
        if g:
            end = m.end() + g.start()
        if m.group(2) == "alert":
            out[m.group(3)] = text[m.start():end]
    return out


# ---------------------------------------------------------------------------
# Grafana helpers.

GRAFANA_INTERVALS = re.compile(r"\$(?:__rate_interval|__interval|__range)\b|\$\{(?:__rate_interval|__interval|__range)\}")
GRAFANA_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::[A-Za-z]+)?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def grafana_to_promql(expr):
    """Replaces Grafana's macros by what they would become at query time:
    interval macros by a duration, dashboard variables (used only inside
    regex matchers here) by a regex matching anything."""
    expr = GRAFANA_INTERVALS.sub("5m", expr)
    return GRAFANA_VAR.sub(".*", expr)


def walk_panels(panels):
    for p in panels:
        yield p
        for sub in p.get("panels", []) or []:
            yield sub


def dashboard_exprs(dash):
    """[(where, expr)] of every PromQL expression: panel targets, annotation
    queries and the inner selectors of label_values() variable queries."""
    out = []
    for p in walk_panels(dash.get("panels", [])):
        for t in p.get("targets", []) or []:
            if "expr" in t:
                out.append(("panel %r target %s" % (p.get("title"), t.get("refId")), t["expr"]))
    for a in dash.get("annotations", {}).get("list", []):
        if a.get("expr"):
            out.append(("annotation %r" % a.get("name"), a["expr"]))
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if v.get("type") == "query" and isinstance(q, str):
            m = re.match(r"^\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$", q)
            out.append(("variable %r" % v.get("name"), m.group(1) if m else q))
    return out


class StaticChecks(unittest.TestCase):
    maxDiff = None

    # -- prometheus.yml --------------------------------------------------------
    def test_config(self):
        promtool = tool("promtool", "prometheus")
        rc, out = run([promtool, "check", "config", PROMETHEUS_YML])
        self.assertEqual(rc, 0, "promtool check config failed:\n" + out)
        self.assertIn("SUCCESS", out)
        text = read(PROMETHEUS_YML)
        self.assertRegex(text, r"(?m)^\s*-\s*job_name:\s*['\"]?tokenwatch['\"]?\s*$",
                         "the scrape job must be called tokenwatch (TokenwatchDown selects it)")
        self.assertRegex(text, r"(?m)^\s*-\s*rules/tokenwatch\.rules\.yml\s*$")
        self.assertRegex(text, r"(?m)^\s*alertmanagers:")
        for opt in ("basic_auth", "tls_config", "scheme: https"):
            self.assertRegex(text, r"(?m)^\s*#\s*%s" % re.escape(opt),
                             "the optional %s setting should be shown (commented)" % opt)

    # -- rules -----------------------------------------------------------------
    def test_rules(self):
        promtool = tool("promtool", "prometheus")
        rc, out = run([promtool, "check", "rules", RULES_YML])
        self.assertEqual(rc, 0, "promtool check rules failed:\n" + out)

        text = read(RULES_YML)
        blocks = rule_blocks(text)
        missing = REQUIRED_ALERTS - set(blocks)
        self.assertFalse(missing, "alerts missing from %s: %s" % (RULES_YML, sorted(missing)))

        # The contract alert, byte for byte.
        b = blocks["HighTokenFailureRate"]
        self.assertRegex(b, r"(?m)^\s+expr:\s*%s\s*$" % re.escape(CONTRACT_EXPR))
        self.assertRegex(b, r"(?m)^\s+for:\s*2m\s*$")
        self.assertRegex(b, r"(?m)^\s+severity:\s*critical\s*$")
        self.assertIn('summary: "%s"' % CONTRACT_SUMMARY, b)
        self.assertIn('description: "%s"' % CONTRACT_DESCRIPTION, b)

        for name, block in blocks.items():
            self.assertRegex(block, r"(?m)^\s+severity:\s*(critical|warning)\s*$",
                             "%s: severity must be critical or warning (routing)" % name)
            self.assertRegex(block, r"(?m)^\s+summary:", "%s has no summary" % name)
            self.assertRegex(block, r"(?m)^\s+description:", "%s has no description" % name)
            if name != "HighTokenFailureRate":
                self.assertIn("Runbook:", block, "%s: description has no runbook steps" % name)
        self.assertIn('up{job="tokenwatch"} == 0', blocks["TokenwatchDown"])

        # Only metric names fixed by the contract (a typo would never fire).
        known = contract_metric_names()
        used = set(METRIC_RE.findall(text))
        self.assertFalse(used - known, "metric names not in %s: %s"
                         % (CONTRACT_MD, sorted(used - known)))

    # -- promtool unit tests ---------------------------------------------------
    def test_unit(self):
        promtool = tool("promtool", "prometheus")
        self.assertTrue(UNIT_TESTS, "no promtool unit tests in prometheus/tests/")
        rc, out = run([promtool, "test", "rules"] + UNIT_TESTS, cwd=PROM_DIR)
        self.assertEqual(rc, 0, "promtool test rules failed:\n" + out)
        self.assertEqual(out.count("SUCCESS"), len(UNIT_TESTS), out)

        tested = set()
        for t in UNIT_TESTS:
            tested |= set(re.findall(r"(?m)^\s+alertname:\s*(\S+)\s*$", read(t)))
        alerts = set(ALERT_RE.findall(read(RULES_YML)))
        self.assertFalse(alerts - tested, "alerts without a promtool unit test: %s"
                         % sorted(alerts - tested))

    # -- alertmanager.yml ------------------------------------------------------
    def test_alertmanager(self):
        amtool = tool("amtool", "prometheus-alertmanager")
        rc, out = run([amtool, "check-config", ALERTMANAGER_YML])
        self.assertEqual(rc, 0, "amtool check-config failed:\n" + out)
        self.assertIn("SUCCESS", out)

        def route(labels, receiver):
            rc, out = run([amtool, "config", "routes", "test", "--config.file=" + ALERTMANAGER_YML,
                           "--verify.receivers=" + receiver] + labels)
            self.assertEqual(rc, 0, "%s should route to %s:\n%s" % (labels, receiver, out))

        route(["alertname=HighTokenFailureRate", "severity=critical", "input=gw"], "tokenwatch-critical")
        route(["alertname=TokenwatchDown", "severity=critical"], "tokenwatch-critical")
        route(["alertname=TokenwatchInputStalled", "severity=warning", "input=gw"], "tokenwatch-tickets")

        text = read(ALERTMANAGER_YML)
        self.assertRegex(text, r"(?m)^\s+group_by:\s*\[\s*alertname\s*,\s*input\s*\]\s*$")
        self.assertRegex(text, r"(?m)^\s+-\s*alertname=\"TokenwatchDown\"\s*$")
        m = re.search(r"(?m)^\s+-\s*alertname=~\"([^\"]+)\"\s*$", text)
        self.assertTrue(m, "no target_matchers regex for the inhibited alerts")
        inhibited = set(m.group(1).split("|"))
        others = set(ALERT_RE.findall(read(RULES_YML))) - {"TokenwatchDown"}
        self.assertFalse(others - inhibited, "not inhibited while TokenwatchDown fires: %s"
                         % sorted(others - inhibited))
        self.assertNotIn("TokenwatchDown", inhibited)
        self.assertRegex(text, r"(?m)^\s+equal:\s*\[\s*job\s*,\s*instance\s*\]\s*$")

    # -- Grafana dashboard -----------------------------------------------------
    def test_dashboard(self):
        promtool = tool("promtool", "prometheus")
        with open(DASHBOARD_JSON, encoding="utf-8") as f:
            dash = json.load(f)   # fails the test on invalid JSON

        self.assertGreaterEqual(dash.get("schemaVersion", 0), 36)
        self.assertEqual(dash.get("title"), "tokenwatch")
        inputs = {i.get("name"): i for i in dash.get("__inputs", [])}
        self.assertIn("DS_PROMETHEUS", inputs, "dashboard must take the datasource as an import input")
        self.assertEqual(inputs["DS_PROMETHEUS"].get("pluginId"), "prometheus")

        panels = list(walk_panels(dash.get("panels", [])))
        ids = [p.get("id") for p in panels]
        self.assertEqual(len(ids), len(set(ids)), "duplicate panel ids: %s" % ids)
        for p in panels:
            self.assertIn("gridPos", p, "panel %r has no gridPos" % p.get("title"))
            if p.get("type") == "row":
                continue
            self.assertTrue(p.get("targets"), "panel %r has no queries" % p.get("title"))
            for obj in [p] + list(p["targets"]):
                self.assertEqual(obj.get("datasource"), {"type": "prometheus", "uid": "${DS_PROMETHEUS}"},
                                 "panel %r: datasource must be ${DS_PROMETHEUS}" % p.get("title"))

        exprs = dashboard_exprs(dash)
        text = " ".join(e for _, e in exprs)
        known = contract_metric_names()
        used = set(METRIC_RE.findall(text))
        self.assertFalse(used - known, "dashboard uses metric names not in the contract: %s"
                         % sorted(used - known))
        self.assertFalse(DASHBOARD_METRICS - used, "dashboard does not show: %s"
                         % sorted(DASHBOARD_METRICS - used))

        # The failure-ratio panel: the alert expression with the 0.5 threshold.
        ratio_re = re.compile(r"rate\(auth_token_rejected\{[^}]*\}\[5m\]\)\s*/\s*"
                              r"rate\(auth_token_check\{[^}]*\}\[5m\]\)")
        ratio = [p for p in panels
                 if any(ratio_re.search(t.get("expr", "")) for t in p.get("targets", []))]
        self.assertTrue(ratio, "no panel shows rate(auth_token_rejected[5m]) / rate(auth_token_check[5m])")
        self.assertTrue(any(
            0.5 in [s.get("value") for s in
                    p["fieldConfig"]["defaults"]["thresholds"]["steps"]] for p in ratio),
            "the failure ratio panel has no 0.5 threshold")

        # Every expression parses: promtool check rules on a file of recording
        # rules built from them (JSON is YAML).
        rules = [{"record": "dashboard:expr_%d" % i, "expr": grafana_to_promql(e)}
                 for i, (_, e) in enumerate(exprs)]
        self.assertGreater(len(rules), 10)
        with tempfile.TemporaryDirectory(prefix="tw-dash-") as tmp:
            path = os.path.join(tmp, "dashboard.rules.yml")
            with open(path, "w", encoding="utf-8") as f:
                json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, f, indent=1)
            rc, out = run([promtool, "check", "rules", path])
            if rc != 0:
                # Pinpoint the offending expressions, one file each.
                bad = []
                for i, (where, e) in enumerate(exprs):
                    one = os.path.join(tmp, "one.yml")
                    with open(one, "w", encoding="utf-8") as f:
                        json.dump({"groups": [{"name": "d", "rules": [rules[i]]}]}, f)
                    rc1, out1 = run([promtool, "check", "rules", one])
                    if rc1 != 0:
                        bad.append("%s: %s\n    %s" % (where, e, out1.strip().replace("\n", "\n    ")))
                self.fail("dashboard PromQL does not parse:\n" + "\n".join(bad or [out]))
            self.assertIn("SUCCESS: %d rules found" % len(rules), out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
