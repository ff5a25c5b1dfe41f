"""
test_promtool.py — the live /metrics output passes `promtool check metrics`
with exactly two allowed findings (the mandated auth_token_check and
auth_token_rejected counters have no _total suffix), every family has HELP
and TYPE, and no raw token from the logs appears anywhere in it.
promtool comes from Debian's prometheus package, which the test setup
installs: a missing promtool is a failure, not a skip.
"""

import os
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True   # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twtest  # noqa: E402
from twtest import Expect, append  # noqa: E402

ALLOWED = {
    'auth_token_check counter metrics should have "_total" suffix',
    'auth_token_rejected counter metrics should have "_total" suffix',
}


class PromtoolTest(twtest.TwTestCase):

    def promtool(self):
        exe = shutil.which("promtool")
        if not exe:
            self.fail("promtool not found on PATH: install Debian's `prometheus` package "
                      "(apt-get install prometheus); this test does not skip without it")
        return exe

    def traffic(self, d):
        g = self.gen
        append(self.path("gw.log"), g.batch("generic-text", 60, 13) + b"nonsense\n\n")
        append(self.path("idp.log"), g.batch("generic-json", 40, 7) + b"{bad json\n")
        d.expect({"gw": Expect(checks=60, rejected=13, parse_errors={"no_match": 1},
                               skipped={"blank": 1}),
                  "idp": Expect(checks=40, rejected=7, parse_errors={"invalid_json": 1})})

    def start(self):
        return self.daemon([self.input("gw", "generic-text"), self.input("idp", "generic-json"),
                            # odd but valid input name: label escaping is exercised
                            self.input("a.b-c_9", "generic-text", create=False)])

    def test_promtool_check_metrics_live(self):
        exe = self.promtool()
        d = self.start()
        for phase in ("at start-up", "after traffic"):
            if phase == "after traffic":
                self.traffic(d)
            status, body, _ = d.get("/metrics")
            self.assertEqual(status, 200)
            p = subprocess.run([exe, "check", "metrics"], input=body, capture_output=True,
                               timeout=30)
            findings = {l.strip() for l in (p.stdout + p.stderr).decode().splitlines() if l.strip()}
            unexpected = findings - ALLOWED
            self.assertFalse(unexpected, "%s: promtool findings beyond the two allowed ones:\n  %s"
                             % (phase, "\n  ".join(sorted(unexpected))))
            # promtool exits 3 for lint findings (ours are the allowed ones),
            # 1 for a parse failure.
            self.assertIn(p.returncode, (0, 3), "%s: promtool rc=%d" % (phase, p.returncode))
        d.stop()

    def test_help_type_everywhere_and_no_tokens(self):
        d = self.start()
        self.traffic(d)
        m = d.metrics()
        text = m.text
        for fam in m.family_names():
            base = fam
            self.assertIn(base, m.help, "family %s has no # HELP" % fam)
            self.assertIn(base, m.type, "family %s has no # TYPE" % fam)
            self.assertTrue(m.help[base].strip(), "family %s has an empty HELP" % fam)
        self.assertEqual(m.type.get("auth_token_check"), "counter")
        self.assertEqual(m.type.get("auth_token_rejected"), "counter")
        for fam in ("tokenwatch_lines_total", "tokenwatch_parse_errors_total",
                    "tokenwatch_lines_skipped_total", "tokenwatch_rotations_total",
                    "tokenwatch_state_saves_total", "tokenwatch_state_save_failures_total"):
            self.assertEqual(m.type.get(fam), "counter", fam)
        self.assertEqual(m.type.get("tokenwatch_input_lag_bytes"), "gauge")
        self.assertEqual(m.type.get("tokenwatch_build_info"), "gauge")
        info = m.series("tokenwatch_build_info")
        self.assertEqual(len(info), 1, info)
        self.assertIn("version", info[0][0])
        self.assertEqual(info[0][1], 1)
        # The odd input name is a label value, verbatim.
        self.assertEqual(m.get_value("auth_token_check", input="a.b-c_9"), 0)
        # No family is declared twice, no sample without its family header.
        self.assertEqual(sum(1 for l in text.splitlines() if l.startswith("# TYPE ")),
                         len(m.type))
        # Raw tokens never reach /metrics (nor label values nor help).
        self.assertGreater(len(self.gen.tokens), 90)
        for t in self.gen.tokens:
            self.assertNotIn(t, text)
            self.assertNotIn(t[3:], text)   # not even without its prefix
        d.stop()


if __name__ == "__main__":
    twtest.main()
