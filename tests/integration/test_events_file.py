"""
test_events_file.py — the daemon's anomaly events file: events are appended
as JSON lines without raw tokens, and the file follows logrotate — a rename
(or delete) is noticed by itself at the next event, and SIGHUP reopens it —
so no event is lost in a rotated-away file.
"""

import json
import os
import signal
import sys

sys.dont_write_bytecode = True   # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twtest  # noqa: E402
from twtest import append, wait_until  # noqa: E402

# One rule that fires on the third rejection of a token: each burst of
# three rejections of a fresh token is exactly one event.
RULES = {
    "rules": [{"id": "failure_burst", "kind": "failures", "scope": "token",
               "severity": "medium", "action": "flag", "window_s": 300,
               "min_rejected": 3, "min_ratio": 0.5}],
}


def read_events(path):
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        return [json.loads(line) for line in f.read().splitlines()]


class EventsFileTest(twtest.TwTestCase):

    def setUp(self):
        super().setUp()
        self.rules = self.path("rules.json")
        with open(self.rules, "w") as f:
            json.dump(RULES, f)
        self.events = self.path("events", "events.jsonl")
        os.makedirs(os.path.dirname(self.events))

    def burst(self, log):
        """Three rejections of one fresh token; returns its token."""
        tok = self.gen.token()
        append(log, b"".join(self.gen.text(rejected=True, token=tok) for _ in range(3)))
        return tok

    def test_events_follow_rename_and_sighup(self):
        log = self.path("gw.log")
        d = self.daemon([self.input("gw")],
                        extra={"rules_file": self.rules, "events_file": self.events})
        # 1. An event lands in the file, as one JSON object per line.
        self.burst(log)
        wait_until(lambda: len(read_events(self.events)) == 1, what="first event")
        ev = read_events(self.events)[0]
        self.assertEqual((ev["rule"], ev["kind"], ev["input"]),
                         ("failure_burst", "failures", "gw"))
        self.assertRegex(ev["token_id"], r"^tw_[0-9a-f]{16}$")

        # 2. logrotate renames the file and sends nothing: the next event
        #    goes to a new file at the path, the old one keeps its line.
        os.rename(self.events, self.events + ".1")
        self.burst(log)
        wait_until(lambda: len(read_events(self.events)) == 1, what="event after rename")
        self.assertEqual(len(read_events(self.events + ".1")), 1)

        # 3. Rename, then SIGHUP (the shipped logrotate rule): the file is
        #    reopened at once, even before the next event.
        os.rename(self.events, self.events + ".2")
        d.sighup()
        wait_until(lambda: os.path.exists(self.events), what="events file reopened on SIGHUP")
        self.burst(log)
        wait_until(lambda: len(read_events(self.events)) == 1, what="event after SIGHUP")
        self.assertEqual(len(read_events(self.events + ".2")), 1)

        # 4. Deleted outright: recreated at the next event.
        os.unlink(self.events)
        self.burst(log)
        wait_until(lambda: len(read_events(self.events)) == 1, what="event after delete")

        # Four bursts, four events, and the metric agrees.
        m = d.metrics()
        self.assertEqual(m.get_value("tokenwatch_anomalies_total", rule="failure_burst",
                                     kind="failures", severity="medium"), 4)
        # No raw token in any events file.
        for name in os.listdir(os.path.dirname(self.events)):
            with open(os.path.join(os.path.dirname(self.events), name), "rb") as f:
                data = f.read()
            for tok in self.gen.tokens:
                self.assertNotIn(tok.encode(), data)
        d.stop()


if __name__ == "__main__":
    twtest.main()
