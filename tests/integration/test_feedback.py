"""
test_feedback.py — an analyst's "dismiss" feeds back into the token's
baseline (DESIGN.md "Detection": the dismissed hour or rate becomes normal
for that token), through the real daemon and its API.

Each case has two tokens with the same history and the same anomaly: one is
dismissed through POST /api/v1/tokens/{id}/dismiss, the other is left alone.
After the rule's cooldown the same behaviour comes again: the control token
is flagged again (so the test can fail), the dismissed one is not.

Event time is the log's own, so the history is written with explicit
timestamps: ten days of daytime use, then the anomaly, then (after the
dismissal) the same anomaly a day later.
"""

import json
import os
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone

sys.dont_write_bytecode = True   # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twtest  # noqa: E402
from twtest import append, wait_until  # noqa: E402

RULES = {
    "learning": {"min_events": 20, "min_days": 1},
    "cooldown_s": 3600,
    "rules": [
        {"id": "off_hours", "kind": "off_hours", "severity": "medium", "action": "flag",
         "max_share": 0.05, "spread_hours": 1, "lookback_hours": 0, "min_profile": 20,
         "learned": True, "policy": False},
        {"id": "rate_spike", "kind": "rate", "severity": "high", "action": "flag",
         "window_s": 60, "multiplier": 4, "sigmas": 6, "min_count": 10, "ceiling": 100000,
         "alpha": 0.1},
    ],
}

DAY0 = datetime(2026, 11, 2, tzinfo=timezone.utc)   # a Monday


def stamp(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def read_events(path):
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        return [json.loads(line) for line in f.read().splitlines()]


class FeedbackTest(twtest.TwTestCase):

    def setUp(self):
        super().setUp()
        self.rules = self.path("rules.json")
        with open(self.rules, "w") as f:
            json.dump(RULES, f)
        self.log = self.path("gw.log")
        self.events = self.path("run", "events.jsonl")
        os.makedirs(self.path("run"), exist_ok=True)

    def line(self, tok, t):
        return self.gen.text(token=tok, ip="203.0.113.9", user=False, stamp=stamp(t))

    def history(self, tok):
        """Ten days of use at 10:00-11:00 UTC, two requests a minute."""
        out = []
        for day in range(10):
            base = DAY0 + timedelta(days=day, hours=10)
            for minute in range(0, 60, 2):
                out.append(self.line(tok, base + timedelta(minutes=minute)))
                out.append(self.line(tok, base + timedelta(minutes=minute, seconds=20)))
        return out

    def api(self, d, method, path, body=None):
        req = urllib.request.Request(d.url(path), method=method,
                                     data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def fired(self, rule):
        return [e for e in read_events(self.events) if e.get("rule") == rule]

    def ids_for(self, rule):
        return [e["token_id"] for e in self.fired(rule)]

    def run_case(self, rule, anomaly):
        """anomaly(tok, t) -> lines; returns (dismissed id, control id)."""
        toks = [self.gen.token(), self.gen.token()]
        lines = []
        for tok in toks:
            lines += self.history(tok)
        day10 = DAY0 + timedelta(days=10)
        for tok in toks:
            lines += anomaly(tok, day10)
        d = self.daemon([self.input("gw")],
                        extra={"rules_file": self.rules, "events_file": self.events})
        append(self.log, b"".join(lines))
        wait_until(lambda: len(self.fired(rule)) == 2, what="both tokens flagged by " + rule)
        dismissed, control = self.ids_for(rule)
        before = self.api(d, "GET", "/api/v1/tokens/" + dismissed)
        self.assertEqual(before["state"], "flagged")
        r = self.api(d, "POST", "/api/v1/tokens/%s/dismiss" % dismissed,
                     {"analyst": "alice", "note": "expected: %s" % rule})
        self.assertEqual(r["state"], "dismissed")
        # The same behaviour a day later (past the cooldown), for both.
        day11 = DAY0 + timedelta(days=11)
        later = []
        for tok in toks:
            later += anomaly(tok, day11)
        append(self.log, b"".join(later))
        wait_until(lambda: self.ids_for(rule).count(control) == 2,
                   what="the control token flagged again")
        # Everything appended has been read (the control's line came after
        # the dismissed token's in the same append).
        time.sleep(0.3)
        self.assertEqual(self.ids_for(rule).count(dismissed), 1,
                         "the dismissed token was flagged again")
        audit = [e for e in read_events(self.events) if e.get("type") == "analyst_action"]
        self.assertEqual([(a["token_id"], a["action"], a["analyst"]) for a in audit],
                         [(dismissed, "dismiss", "alice")])
        d.stop()
        return dismissed, control

    def test_dismissed_hour_becomes_usual(self):
        def night_use(tok, day):
            t = day + timedelta(hours=3, minutes=15)
            return [self.line(tok, t)]
        self.run_case("off_hours", night_use)

    def test_dismissed_rate_becomes_usual(self):
        def burst(tok, day):
            # 40 requests in one minute (the learned mean is 2).
            base = day + timedelta(hours=10, minutes=30)
            return [self.line(tok, base + timedelta(seconds=s)) for s in range(0, 60, 1)][:40]
        self.run_case("rate_spike", burst)


if __name__ == "__main__":
    twtest.main()
