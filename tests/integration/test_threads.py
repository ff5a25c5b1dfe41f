"""
test_threads.py — "threads": 2 (a reader thread that parses and counts, an
analysis thread that detects; handoff.h) must give exactly what "threads": 1
gives.

  ReplayThreads   `tokenwatch replay` prints byte-identical anomaly events and
                  identical counts with threads 1 and 2: on the golden log
                  (and equal to its expected output), on the seeded
                  three-week scenario (testdata/scenarios), on several files
                  in one run (the queue is drained between files), and on a
                  log whose tokens are bigger than a whole batch. "threads"
                  outside 1..2 is a config error naming the key.
  DaemonThreads   `tokenwatch run`, with each setting: the events file gets
                  exactly the golden events; after the counters reach the
                  total and one more state snapshot is written, a kill -9
                  loses no anomaly event (the snapshot waits for detection);
                  SIGHUP reloads under a steady write load keep the counters
                  exact; the analyst API answers while lines pour in.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.dont_write_bytecode = True   # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twtest  # noqa: E402
from twtest import SOURCE_DIR, TW_BIN, append, wait_until  # noqa: E402

DETECT = os.path.join(SOURCE_DIR, "testdata", "detect")
GEOIP = os.path.join(SOURCE_DIR, "testdata", "geoip")
GOLDEN_LOG = os.path.join(DETECT, "gateway.log")
GOLDEN_EXPECTED = os.path.join(DETECT, "gateway.expected")
FORMATS_DIR = os.path.join(SOURCE_DIR, "rules", "formats")
SCENARIOS = os.path.join(SOURCE_DIR, "testdata", "scenarios")

SUMMARY_RE = re.compile(r"^(replay|detect): (.*)$", re.M)
# Fields of the summary lines that depend on time, not on the input.
TIMING = {"seconds", "lines_per_s", "mb_per_s"}


def summary(stderr):
    """{"replay": {...}, "detect": {...}} without the timing fields."""
    out = {}
    for kind, body in SUMMARY_RE.findall(stderr):
        out[kind] = {k: v for k, v in re.findall(r"(\w+)=(\S+)", body) if k not in TIMING}
    return out


def prepare_state(state_dir):
    """A state_dir holding the golden fingerprint key (token ids in the
    expected output depend on it)."""
    os.makedirs(state_dir, 0o700, exist_ok=True)
    key = os.path.join(state_dir, "fingerprint.key")
    shutil.copyfile(os.path.join(DETECT, "fingerprint.key"), key)
    os.chmod(key, 0o600)


def read_lines(path):
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        return f.read().splitlines(keepends=True)


def anomaly_lines(path):
    return [l for l in read_lines(path) if b'"rule":' in l]


class ReplayThreads(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        twtest.require_binary()

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="tw-threads-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        prepare_state(os.path.join(self.tmp, "state"))

    def config(self, threads, **extra):
        path = os.path.join(self.tmp, "tw-%s.json" % threads)
        cfg = {
            "state_dir": os.path.join(self.tmp, "state"),
            "formats_dir": FORMATS_DIR,
            "geoip": {"city_db": os.path.join(GEOIP, "GeoLite2-City-Test.mmdb"),
                      "asn_db": os.path.join(GEOIP, "GeoLite2-ASN-Test.mmdb")},
            "rules_file": os.path.join(DETECT, "rules.json"),
            "inputs": [{"name": "gateway", "path": GOLDEN_LOG, "format": "generic-text"}],
            "threads": threads,
        }
        cfg.update(extra)
        with open(path, "w") as f:
            json.dump(cfg, f)
        return path

    def replay(self, threads, logs, args=(), **extra):
        p = subprocess.run([TW_BIN, "replay", "-c", self.config(threads, **extra)] + list(args)
                           + list(logs), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=240)
        err = p.stderr.decode(errors="replace")
        self.assertEqual(p.returncode, 0, err)
        return p.stdout, err

    def same(self, logs, args=(), min_anomalies=1, **extra):
        """Replays logs with 1 and 2 threads; asserts the same stdout and
        counts; returns (stdout, stderr of the two-thread run)."""
        out1, err1 = self.replay(1, logs, args, **extra)
        out2, err2 = self.replay(2, logs, args, **extra)
        self.assertEqual(summary(err1), summary(err2))
        self.assertIn("replay", summary(err1), err1)
        self.assertNotIn("threads: 2", err1)
        self.assertRegex(err2, r"threads: 2 reader_cpu_s=")
        if out1 != out2:
            l1, l2 = out1.splitlines(), out2.splitlines()
            for i, (a, b) in enumerate(zip(l1, l2)):
                self.assertEqual(a, b, "line %d differs" % (i + 1))
            self.fail("threads 1 printed %d events, threads 2 printed %d" % (len(l1), len(l2)))
        self.assertGreaterEqual(len(out1.splitlines()), min_anomalies)
        return out2, err2

    def test_golden_log(self):
        out, _ = self.same([GOLDEN_LOG])
        with open(GOLDEN_EXPECTED, "rb") as f:
            self.assertEqual(out, f.read())

    def test_scenario(self):
        scen = os.path.join(self.tmp, "scen")
        subprocess.run([sys.executable, os.path.join(SCENARIOS, "gen_scenarios.py"), "--out",
                        scen], check=True, stdout=subprocess.DEVNULL, timeout=240)
        out, err = self.same([os.path.join(scen, "scenario.log")], ["--format", "generic-text"],
                             min_anomalies=50,
                             rules_file=os.path.join(SOURCE_DIR, "rules", "default.json"))
        # Many batches crossed over (about 286,000 checks).
        batches = int(re.search(r"batches=(\d+)", err).group(1))
        self.assertGreater(batches, 50)

    def test_several_files(self):
        # The same log three times under other names: the queue is drained
        # before each file's input (whose name the queued events carry) goes.
        copies = []
        for i in range(3):
            p = os.path.join(self.tmp, "copy%d.log" % i)
            shutil.copyfile(GOLDEN_LOG, p)
            copies.append(p)
        self.same([GOLDEN_LOG] + copies)

    def test_tokens_bigger_than_a_batch(self):
        # Tokens of 300,000 bytes (a batch's arena is 256 KiB) in failure
        # bursts, between ordinary lines: each big check travels in a batch
        # of its own and must arrive intact (its token id and hint show it).
        log = os.path.join(self.tmp, "big.log")
        rules = os.path.join(self.tmp, "burst.json")
        with open(rules, "w") as f:
            json.dump({"rules": [{"id": "burst", "kind": "failures", "scope": "token",
                                  "severity": "medium", "action": "flag", "window_s": 300,
                                  "min_rejected": 3, "min_ratio": 0.5}]}, f)
        lines = []
        for i in range(12):
            big = ("B%02d" % i) + "x" * 299990 + ("%07d" % i)
            for k in range(4):
                lines.append("2026-11-0%dT10:%02d:%02dZ ip=203.0.113.%d user=big%d token=%s "
                             "path=/v1/x result=denied" % (1 + i % 5, i, k, 1 + i, i, big))
                lines.append("2026-11-0%dT10:%02d:%02dZ ip=192.0.2.%d token=small-%06d-%d "
                             "result=ok" % (1 + i % 5, i, k, 1 + k, i, k))
        with open(log, "w") as f:
            f.write("\n".join(lines) + "\n")
        out, err = self.same([log], ["--format", "generic-text"], min_anomalies=12,
                             follow={"max_line_bytes": 1 << 20}, rules_file=rules)
        self.assertRegex(err, r"big_batches=(?:[1-9]\d*)")
        hints = {json.loads(l)["token_hint"] for l in out.splitlines()}
        self.assertIn("B00…0000", hints)
        self.assertIn("B11…0011", hints)
        self.assertEqual(summary(err)["replay"]["checks"], str(len(lines)))

    def test_threads_out_of_range(self):
        for bad in (0, 3, "2", 1.5):
            with self.subTest(threads=bad):
                p = subprocess.run([TW_BIN, "check", "-c", self.config(bad)],
                                   capture_output=True, text=True, timeout=30)
                self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
                self.assertIn("threads", p.stderr)


class DaemonThreads(twtest.TwTestCase):
    """Each test runs once per setting ("threads": 1 and 2)."""

    def golden_daemon(self, threads, start=True, **kw):
        state = self.path("state-%d" % threads)
        prepare_state(state)
        self.events = self.path("events-%d.jsonl" % threads)
        inp = self.input("gateway", path=self.path("gateway-%d.log" % threads))
        extra = {"threads": threads, "events_file": self.events,
                 "rules_file": os.path.join(DETECT, "rules.json"),
                 "geoip": {"city_db": os.path.join(GEOIP, "GeoLite2-City-Test.mmdb"),
                           "asn_db": os.path.join(GEOIP, "GeoLite2-ASN-Test.mmdb")}}
        extra.update(kw)
        d = self.daemon([inp], state_dir=state, extra=extra, name="tw-t%d" % threads,
                        start=start)
        return d, inp["path"]

    def golden_expect(self):
        with open(GOLDEN_LOG, "rb") as f:
            data = f.read()
        results = re.findall(rb" result=(\S+)$", data, re.M)
        rejected = sum(1 for r in results if r.decode() in twtest.REJECT_RESULTS)
        return data, {"gateway": twtest.Expect(checks=data.count(b"\n"), rejected=rejected)}

    def test_events_file_matches_golden(self):
        with open(GOLDEN_EXPECTED, "rb") as f:
            want = f.read().splitlines(keepends=True)
        for threads in (1, 2):
            with self.subTest(threads=threads):
                d, log = self.golden_daemon(threads)
                data, exp = self.golden_expect()
                # In pieces, as a logger writes: several read rounds.
                pos = 0
                while pos < len(data):
                    end = data.rfind(b"\n", pos, pos + len(data) // 7 + 1) + 1 or len(data)
                    append(log, data[pos:end])
                    pos = end
                d.expect(exp, timeout=30)
                d.stop()
                self.assertEqual(anomaly_lines(self.events), want)
                if threads == 2:
                    self.assertIn("two threads", d.stderr())
                else:
                    self.assertNotIn("two threads", d.stderr())

    def test_kill9_after_snapshot_loses_no_event(self):
        with open(GOLDEN_EXPECTED, "rb") as f:
            want = f.read().splitlines(keepends=True)
        for threads in (1, 2):
            with self.subTest(threads=threads):
                d, log = self.golden_daemon(threads)
                data, exp = self.golden_expect()
                append(log, data)
                d.expect(exp, timeout=30)
                # A snapshot written after the totals were published covers
                # every line; it must not have been written before their
                # anomaly events were judged and flushed.
                d.snapshot_after(count=1, timeout=30)
                d.kill9()
                self.assertEqual(anomaly_lines(self.events), want)
                # The restart resumes at the end: nothing read, nothing judged twice.
                d.start()
                d.expect(exp, hold=0.5)
                d.stop()
                self.assertEqual(anomaly_lines(self.events), want)

    def test_snapshot_never_ahead_of_detection(self):
        # The seeded scenario (286,430 lines, attacks at the end) written at
        # once; snapshots every 50 ms. The moment a snapshot on disk covers
        # every line, the daemon is stopped (SIGSTOP): the events file must
        # already hold every anomaly replay finds. Without the drain before
        # each snapshot, the analysis thread would still be up to four
        # batches behind the reader then.
        scen = self.path("scen")
        subprocess.run([sys.executable, os.path.join(SCENARIOS, "gen_scenarios.py"), "--out",
                        scen], check=True, stdout=subprocess.DEVNULL, timeout=240)
        with open(os.path.join(scen, "scenario.log"), "rb") as f:
            data = f.read()
        total = data.count(b"\n")
        for threads in (2, 1):
            with self.subTest(threads=threads):
                d, log = self.golden_daemon(
                    threads, start=False, state_interval_ms=50,
                    rules_file=os.path.join(SOURCE_DIR, "rules", "default.json"))
                with open(log, "wb") as f:
                    f.write(data)
                p = subprocess.run([TW_BIN, "replay", "-c", d.config_path, log],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=240)
                self.assertEqual(p.returncode, 0, p.stderr)
                want = p.stdout.splitlines(keepends=True)
                self.assertGreater(len(want), 50)
                offsets = os.path.join(d.state_dir, "offsets.json")
                pat = re.compile(rb'"checks"\s*:\s*"?%d\b' % total)

                def covered():
                    try:
                        with open(offsets, "rb") as f:
                            return pat.search(f.read()) is not None
                    except FileNotFoundError:
                        return False
                d.start()
                wait_until(covered, timeout=120, interval=0.001,
                           what="a snapshot covering all %d lines" % total)
                d.proc.send_signal(signal.SIGSTOP)
                try:
                    got = anomaly_lines(self.events)
                finally:
                    d.proc.send_signal(signal.SIGCONT)
                self.assertEqual(len(got), len(want))
                self.assertEqual(got, want)
                d.stop()

    def test_reload_under_load_keeps_counts(self):
        for threads in (1, 2):
            with self.subTest(threads=threads):
                inp = self.input("gw%d" % threads)
                rules = self.path("rules-%d.json" % threads)
                with open(rules, "w") as f:
                    json.dump({"rules": [{"id": "burst", "kind": "failures", "scope": "token",
                                          "severity": "medium", "action": "flag",
                                          "window_s": 300, "min_rejected": 3,
                                          "min_ratio": 0.5}]}, f)
                d = self.daemon([inp], extra={"threads": threads, "rules_file": rules},
                                name="reload-t%d" % threads)
                w = twtest.Writer([(inp["name"], inp["path"], "generic-text")], duration=2.5,
                                  period=0.0005, seed=threads)
                w.start()
                for _ in range(5):
                    time.sleep(0.3)
                    d.sighup()
                w.join()
                self.assertIsNone(w.error)
                d.expect({inp["name"]: w.expect(inp["name"])}, timeout=30, hold=0.3)
                self.assertGreaterEqual(d.stderr().count("configuration reloaded"), 1)
                d.stop()

    def test_api_answers_while_ingesting(self):
        for threads in (1, 2):
            with self.subTest(threads=threads):
                inp = self.input("api%d" % threads)
                d = self.daemon([inp], extra={"threads": threads,
                                              "rules_file": os.path.join(DETECT, "rules.json")},
                                name="api-t%d" % threads)
                w = twtest.Writer([(inp["name"], inp["path"], "generic-text")], duration=2.0,
                                  period=0.0002, seed=10 + threads)
                w.start()
                answered = 0
                while w.is_alive():
                    status, body, _ = d.get("/api/v1/stats", timeout=5)
                    self.assertEqual(status, 200, body)
                    doc = json.loads(body)
                    self.assertEqual([i["name"] for i in doc["inputs"]], [inp["name"]])
                    answered += 1
                w.join()
                self.assertGreater(answered, 3)
                exp = w.expect(inp["name"])
                d.expect({inp["name"]: exp}, timeout=30)

                def stats_total():
                    doc = json.loads(d.get("/api/v1/stats")[1])
                    return doc["inputs"][0]["checks"] == exp.checks
                wait_until(stats_total, what="the API's input counters")
                d.stop()


if __name__ == "__main__":
    twtest.main()
