"""
test_detect_replay.py — golden test of detection: `tokenwatch replay` on the
crafted log testdata/detect/gateway.log (stories in gen_detect_log.py) with
the test GeoIP databases and testdata/detect/rules.json must print exactly
testdata/detect/gateway.expected, byte for byte, on every run.

The token ids in the expected output depend on the fingerprint key, so the
test copies testdata/detect/fingerprint.key into a private state_dir (mode
0600, as tokenwatch requires).

To regenerate after an intended change of the rules or the event format:
    TW_UPDATE_GOLDEN=1 python3 tests/integration/test_detect_replay.py
and review the diff of gateway.expected.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("TW_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
TW_BIN = os.environ.get("TW_BIN") or "/tmp/detbuild/tokenwatch"
DETECT = os.path.join(SOURCE_DIR, "testdata", "detect")
GEOIP = os.path.join(SOURCE_DIR, "testdata", "geoip")
LOG = os.path.join(DETECT, "gateway.log")
EXPECTED = os.path.join(DETECT, "gateway.expected")


class DetectReplay(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="tw-detect-")
        state = os.path.join(self.tmp, "state")
        os.mkdir(state, 0o700)
        key = os.path.join(state, "fingerprint.key")
        shutil.copyfile(os.path.join(DETECT, "fingerprint.key"), key)
        os.chmod(key, 0o600)
        self.config = os.path.join(self.tmp, "tokenwatch.json")
        with open(self.config, "w") as f:
            json.dump({
                "state_dir": "state",
                "formats_dir": os.path.join(SOURCE_DIR, "rules", "formats"),
                "geoip": {"city_db": os.path.join(GEOIP, "GeoLite2-City-Test.mmdb"),
                          "asn_db": os.path.join(GEOIP, "GeoLite2-ASN-Test.mmdb")},
                "rules_file": os.path.join(DETECT, "rules.json"),
                "inputs": [{"name": "gateway", "path": LOG, "format": "generic-text"}],
            }, f)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def replay(self):
        p = subprocess.run([TW_BIN, "replay", "-c", self.config, LOG],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))
        return p.stdout, p.stderr.decode(errors="replace")

    def test_golden_and_deterministic(self):
        out1, err1 = self.replay()
        out2, _ = self.replay()
        self.assertEqual(out1, out2, "replay is not deterministic")
        if os.environ.get("TW_UPDATE_GOLDEN"):
            with open(EXPECTED, "wb") as f:
                f.write(out1)
        with open(EXPECTED, "rb") as f:
            want = f.read()
        if out1 != want:
            got_lines, want_lines = out1.splitlines(), want.splitlines()
            for i, (g, w) in enumerate(zip(got_lines, want_lines)):
                if g != w:
                    self.fail("line %d differs:\n got: %r\nwant: %r" % (i + 1, g, w))
            self.fail("got %d lines, want %d" % (len(got_lines), len(want_lines)))
        self.assertIn("anomalies=%d " % len(want.splitlines()), err1)

    def test_events_are_json_without_raw_tokens(self):
        out, _ = self.replay()
        with open(LOG, "rb") as f:
            raw_tokens = {l.split(b" token=")[1].split(b" ")[0] for l in f if b" token=" in l}
        keys = ["time", "token_id", "token_hint", "rule", "kind", "severity", "action", "ip",
                "country", "city", "input", "evidence"]
        rules = set()
        for line in out.splitlines():
            ev = json.loads(line.decode("utf-8"))   # valid UTF-8 JSON, even for hostile bytes
            order = [k for k in keys if k in ev]
            self.assertEqual(list(ev.keys()), order, line)
            self.assertRegex(ev["token_id"], r"^tw_[0-9a-f]{16}$")
            rules.add(ev["rule"])
            for tok in raw_tokens:
                self.assertNotIn(tok, line)
        self.assertEqual(rules, {"rate_spike", "failure_burst", "ip_spraying",
                                 "impossible_travel", "new_country", "off_hours"})
        # The hostile source field is escaped, not copied.
        self.assertIn(b'"ip":"bad\\"ip\\ufffd"', out)
        # bob alternates with an allowlisted VPN egress: never flagged.
        self.assertNotIn(b"at-\xe2\x80\xa60b0b", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
