"""
test_syslog.py — the daemon's optional syslog output ("syslog" config
section). The test is its own syslog daemon: a Unix datagram socket bound in
the temp dir, named by syslog.socket, so the code path is the one that
writes to /dev/log in production.

  - each event arrives as one datagram "<PRI>Mmm dd hh:mm:ss IDENT[PID]: JSON"
    with PRI = facility | severity (critical LOG_CRIT, medium LOG_WARNING),
    the JSON byte for byte the events-file line, and no raw token;
  - severity_min filters; a changed section applies on SIGHUP, and
    "enabled": false stops sending while the events file goes on;
  - max_per_round caps one round and counts the rest
    (tokenwatch_syslog_dropped_total{reason="limit"});
  - no receiver: events are dropped and counted (reason="error"), the
    events file is unaffected, and a receiver that appears later is used.
"""

import json
import os
import re
import socket
import sys
import time

sys.dont_write_bytecode = True   # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twtest  # noqa: E402
from twtest import append, wait_until  # noqa: E402

# Two rules on the same trigger (the third rejection of a token), one
# medium and one critical: each burst yields one event of each severity.
RULES = {
    "rules": [
        {"id": "burst_medium", "kind": "failures", "scope": "token", "severity": "medium",
         "action": "flag", "window_s": 300, "min_rejected": 3, "min_ratio": 0.5},
        {"id": "burst_critical", "kind": "failures", "scope": "token", "severity": "critical",
         "action": "flag", "window_s": 300, "min_rejected": 3, "min_ratio": 0.5},
    ],
}

LOG_LOCAL3, LOG_AUTHPRIV = 19 << 3, 10 << 3
LOG_CRIT, LOG_WARNING = 2, 4
SEVERITY_LEVEL = {"critical": LOG_CRIT, "medium": LOG_WARNING}

DATAGRAM = re.compile(rb"^<(\d+)>([A-Z][a-z]{2} [ 1-3]\d \d\d:\d\d:\d\d) "
                      rb"([A-Za-z0-9_.-]+)\[(\d+)\]: (.*)$", re.S)


class Receiver:
    """A syslog daemon of one socket: collects every datagram."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.got = []

    def poll(self):
        while True:
            try:
                self.got.append(self.sock.recv(1 << 20))
            except BlockingIOError:
                return self.got

    def close(self):
        self.sock.close()


def read_lines(path):
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        return f.read().splitlines()


class SyslogTest(twtest.TwTestCase):

    def setUp(self):
        super().setUp()
        self.rules = self.path("rules.json")
        with open(self.rules, "w") as f:
            json.dump(RULES, f)
        self.events = self.path("events.jsonl")
        self.sock_path = self.path("log.sock")
        self.log = self.path("gw.log")

    def receiver(self):
        r = Receiver(self.sock_path)
        self.addCleanup(r.close)
        return r

    def start(self, syslog):
        return self.daemon([self.input("gw")],
                           extra={"rules_file": self.rules, "events_file": self.events,
                                  "syslog": syslog})

    def burst(self):
        tok = self.gen.token()
        append(self.log, b"".join(self.gen.text(rejected=True, token=tok) for _ in range(3)))

    def burst_and_wait(self, total_events):
        self.burst()
        wait_until(lambda: len(read_lines(self.events)) == total_events,
                   what="%d events in the events file" % total_events)

    def reload(self, d, syslog, log_line):
        before = d.stderr().count(log_line)
        d.extra["syslog"] = syslog
        d.write_config()
        d.sighup()
        wait_until(lambda: d.stderr().count(log_line) > before, what=repr(log_line))

    def parse(self, d, datagram):
        m = DATAGRAM.match(datagram)
        self.assertIsNotNone(m, datagram)
        pri, _, ident, pid, msg = m.groups()
        self.assertEqual(int(pid), d.proc.pid)
        for tok in self.gen.tokens:
            self.assertNotIn(tok.encode(), datagram)
        return int(pri), ident.decode(), msg

    def assert_delivered(self, d, datagrams, lines, facility, ident):
        """datagrams carry exactly lines (in order), with the right PRI."""
        self.assertEqual(len(datagrams), len(lines))
        for dg, line in zip(datagrams, lines):
            pri, got_ident, msg = self.parse(d, dg)
            self.assertEqual(msg, line, "syslog payload differs from the events-file line")
            sev = json.loads(line)["severity"]
            self.assertEqual(pri, facility | SEVERITY_LEVEL[sev], (sev, pri))
            self.assertEqual(got_ident, ident)

    def test_priority_payload_filter_and_reload(self):
        r = self.receiver()
        d = self.start({"socket": self.sock_path, "facility": "local3", "ident": "tw-test"})

        # 1. Every event, severity_min low: two datagrams per burst.
        self.burst_and_wait(2)
        wait_until(lambda: len(r.poll()) == 2, what="two datagrams")
        self.assert_delivered(d, r.got, read_lines(self.events), LOG_LOCAL3, "tw-test")

        # 2. SIGHUP with severity_min high and the default facility/ident:
        #    only the critical event of the next burst is sent.
        self.reload(d, {"socket": self.sock_path, "severity_min": "high"}, "syslog output on")
        self.burst_and_wait(4)
        wait_until(lambda: len(r.poll()) == 3, what="the critical event")
        critical = [ln for ln in read_lines(self.events)[2:]
                    if json.loads(ln)["severity"] == "critical"]
        self.assert_delivered(d, r.got[2:], critical, LOG_AUTHPRIV, "tokenwatch")

        # 3. SIGHUP with "enabled": false: the events file goes on, syslog
        #    hears nothing. The syslog send of a round happens right after
        #    the file write, so half a second more is ample.
        self.reload(d, {"socket": self.sock_path, "enabled": False}, "syslog output off")
        self.burst_and_wait(6)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            self.assertEqual(len(r.poll()), 3, "a datagram after syslog was disabled")
            time.sleep(0.05)

        m = d.metrics()
        self.assertEqual(m.get_value("tokenwatch_syslog_sent_total"), 3)
        self.assertEqual(m.get_value("tokenwatch_syslog_dropped_total", reason="limit"), 0)
        self.assertEqual(m.get_value("tokenwatch_syslog_dropped_total", reason="error"), 0)
        d.stop()

    def test_cap_per_round(self):
        # Both events of a burst come from one line, so from one round.
        r = self.receiver()
        d = self.start({"socket": self.sock_path, "max_per_round": 1})
        self.burst_and_wait(2)
        wait_until(lambda: d.metrics().get_value("tokenwatch_syslog_dropped_total",
                                                 reason="limit") == 1,
                   what="one event over the cap")
        self.assertEqual(len(r.poll()), 1)
        self.assertIn(self.parse(d, r.got[0])[2], read_lines(self.events))
        self.assertEqual(d.metrics().get_value("tokenwatch_syslog_sent_total"), 1)
        d.stop()

    def test_no_receiver_then_receiver(self):
        # No socket yet: the daemon starts, the events file gets every
        # event, the syslog messages are counted as dropped.
        d = self.start({"socket": self.sock_path})
        self.burst_and_wait(2)
        wait_until(lambda: d.metrics().get_value("tokenwatch_syslog_dropped_total",
                                                 reason="error") == 2,
                   what="two send errors counted")
        wait_until(lambda: "syslog: " in d.stderr(), what="a warning about syslog")
        # The receiver appears (a syslog daemon started late): the next
        # round reconnects by itself.
        r = self.receiver()
        self.burst_and_wait(4)
        wait_until(lambda: len(r.poll()) == 2, what="datagrams after the receiver appeared")
        self.assert_delivered(d, r.got, read_lines(self.events)[2:], LOG_AUTHPRIV, "tokenwatch")
        self.assertEqual(d.metrics().get_value("tokenwatch_syslog_sent_total"), 2)
        d.stop()


if __name__ == "__main__":
    twtest.main()
