"""
test_cli.py — the command line as users and scripts see it: `check` (config
errors name the file and the JSON path; --sample like fail2ban-regex, never
printing line text), `replay` summaries, --version/--help, exit codes, and
SIGHUP reloads (valid: applied without losing totals; invalid: refused).
"""

import glob
import json
import os
import re
import sys

sys.dont_write_bytecode = True   # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twtest  # noqa: E402
from twtest import Expect, append, run_cli  # noqa: E402

SAMPLE_RE = re.compile(r"^sample: lines=(\d+) matched=(\d+) rejected=(\d+) ignored=(\d+) "
                       r"unmatched=(\d+) skipped=(\d+)\s*$", re.M)
REPLAY_RE = re.compile(r"^replay: lines=(\d+) checks=(\d+) rejected=(\d+) ignored=(\d+) "
                       r"parse_errors=(\d+) skipped=(\d+) seconds=([0-9.]+) "
                       r"lines_per_s=([0-9.]+) mb_per_s=([0-9.]+)\s*$", re.M)
FAIL_LINE_RE = re.compile(r"^  line (\d+): ([a-z_]+)(?: \(([^)]*)\))?\s*$", re.M)


def tokens_in(data):
    """Token-like secrets in a sample file: token= values, and the values of
    JSON keys that hold tokens or accessors (Vault)."""
    found = set(re.findall(rb"token=([^\s\"]+)", data))
    for line in data.splitlines():
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            continue
        stack = [obj]
        while stack:
            o = stack.pop()
            if isinstance(o, dict):
                for k, v in o.items():
                    if isinstance(v, str) and re.search(r"token|accessor", k, re.I) and len(v) >= 6:
                        found.add(v.encode())
                    elif isinstance(v, (dict, list)):
                        stack.append(v)
            elif isinstance(o, list):
                stack.extend(o)
    return {t for t in found if len(t) >= 6}


class CliTest(twtest.TwTestCase):

    def base_config(self, inputs=None):
        return self.daemon(inputs or [self.input("gw", "generic-text"),
                                      self.input("idp", "generic-json")], start=False)

    def write_json(self, name, obj):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(obj if isinstance(obj, str) else json.dumps(obj, indent=2))
        return p

    def assert_config_error(self, path, json_path, args=None):
        p = run_cli(args or ["check", "-c", path])
        self.assertEqual(p.returncode, 2, "exit code for %s (%s):\n%s" % (json_path, path, p.stderr_text))
        if json_path is None:
            self.assertIn(path, p.stderr_text)
            return p
        want = "%s: %s: " % (path, json_path)
        lines = [l for l in p.stderr_text.splitlines() if want in l]
        self.assertTrue(lines, "stderr should contain %r, got:\n%s" % (want, p.stderr_text))
        self.assertIn("expected", lines[0], lines[0])
        return p

    # -- check -------------------------------------------------------------
    def test_check_good_config(self):
        d = self.base_config()
        p = run_cli(["check", "-c", d.config_path])
        self.assertEqual(p.returncode, 0, p.stderr_text)
        nformats = len(glob.glob(os.path.join(twtest.FORMATS_DIR, "*.json")))
        self.assertRegex(p.stdout_text, r"(?m)^config OK: 2 inputs, %d formats\b" % nformats)

    def test_check_invalid_configs_exit_2_naming_file_and_path(self):
        good = self.base_config().config()

        def variant(name, mutate):
            cfg = json.loads(json.dumps(good))
            mutate(cfg)
            return self.write_json(name, cfg)

        cases = [
            ("fmt.json", lambda c: c["inputs"][1].update(format="no-such-format"), "inputs[1].format"),
            ("listen.json", lambda c: c["http"].update(listen="not an address"), "http.listen"),
            ("port.json", lambda c: c["http"].update(listen="127.0.0.1:99999"), "http.listen"),
            ("start.json", lambda c: c["inputs"][0].update(start="middle"), "inputs[0].start"),
            ("unknown.json", lambda c: c.update(bogus_key=1), "bogus_key"),
            ("unknown2.json", lambda c: c["follow"].update(inotfy=False), "follow.inotfy"),
            ("dupname.json", lambda c: c["inputs"][1].update(name="gw"), "inputs[1].name"),
            ("duppath.json", lambda c: c["inputs"][1].update(path=c["inputs"][0]["path"]),
             "inputs[1].path"),
            ("badname.json", lambda c: c["inputs"][0].update(name="has space"), "inputs[0].name"),
            ("interval.json", lambda c: c.update(state_interval_ms=10), "state_interval_ms"),
            ("interval2.json", lambda c: c.update(state_interval_ms="100"), "state_interval_ms"),
            ("nostate.json", lambda c: c.pop("state_dir"), "state_dir"),
            ("level.json", lambda c: c.update(log_level="loud"), "log_level"),
            ("inputs.json", lambda c: c.update(inputs={"gw": 1}), "inputs"),
        ]
        for name, mutate, json_path in cases:
            with self.subTest(json_path=json_path, file=name):
                self.assert_config_error(variant(name, mutate), json_path)

        # `run` validates exactly like `check` and refuses to start.
        p = self.assert_config_error(self.path("fmt.json"), "inputs[1].format",
                                     args=["run", "-c", self.path("fmt.json")])

        # Not JSON at all / truncated JSON: the file is named.
        for name, text in (("notjson.json", "this is not json\n"),
                           ("trunc.json", json.dumps(good)[:-7])):
            with self.subTest(file=name):
                self.assert_config_error(self.write_json(name, text), None)
        # A config file that does not exist.
        missing = self.path("does-not-exist.json")
        self.assert_config_error(missing, None)
        self.assert_config_error(missing, None, args=["run", "-c", missing])

    def test_check_opens_the_geoip_databases(self):
        """check opens the GeoIP databases as a start would: a truncated
        file passes the config's existence checks but is refused."""
        src = os.path.join(twtest.TESTDATA_DIR, "geoip", "GeoLite2-City-Test.mmdb")
        with open(src, "rb") as f:
            data = f.read()
        good_db, bad_db = self.path("city.mmdb"), self.path("cut.mmdb")
        with open(good_db, "wb") as f:
            f.write(data)
        with open(bad_db, "wb") as f:
            f.write(data[: len(data) // 3])
        cfg = self.base_config().config()
        cfg["geoip"] = {"city_db": good_db}
        p = run_cli(["check", "-c", self.write_json("geo-good.json", cfg)])
        self.assertEqual(p.returncode, 0, p.stderr_text)
        cfg["geoip"] = {"city_db": bad_db}
        path = self.write_json("geo-bad.json", cfg)
        p = run_cli(["check", "-c", path])
        self.assertEqual(p.returncode, 2, p.stderr_text)
        self.assertIn(path, p.stderr_text)
        self.assertIn(bad_db, p.stderr_text)
        self.assertNotIn("config OK", p.stdout_text)

    def test_check_sample_shipped_fixtures(self):
        fixtures = sorted(glob.glob(os.path.join(twtest.TESTDATA_DIR, "formats", "*.log")))
        known = {os.path.splitext(os.path.basename(f))[0]
                 for f in glob.glob(os.path.join(twtest.FORMATS_DIR, "*.json"))}
        d = self.base_config()
        tested = 0
        for fx in fixtures:
            stem = os.path.basename(fx)[:-4]
            fmt = next((k for k in sorted(known, key=len, reverse=True) if stem.startswith(k)), None)
            if fmt is None:
                continue
            with self.subTest(fixture=os.path.basename(fx), format=fmt):
                with open(fx, "rb") as f:
                    data = f.read()
                p = run_cli(["check", "-c", d.config_path, "--sample", fx, "--format", fmt])
                self.assertEqual(p.returncode, 0, p.stderr_text)
                out = p.stdout_text + p.stderr_text
                m = SAMPLE_RE.search(out)
                self.assertTrue(m, "no sample: summary in:\n" + out)
                lines, matched, rejected, ignored, unmatched, skipped = map(int, m.groups())
                # A last line without its newline is not a complete line; it
                # is reported as skipped.
                unterminated = 1 if data and not data.endswith(b"\n") else 0
                self.assertEqual(lines, data.count(b"\n"))
                self.assertEqual(lines + unterminated, matched + ignored + unmatched + skipped)
                self.assertLessEqual(rejected, matched)
                fails = FAIL_LINE_RE.findall(out)
                # Up to 10 failures; skipped lines may or may not be listed.
                self.assertGreaterEqual(len(fails), min(10, unmatched), out)
                self.assertLessEqual(len(fails), min(10, unmatched + skipped), out)
                for t in tokens_in(data):
                    self.assertNotIn(t.decode("utf-8", "replace"), out,
                                     "check --sample printed a token from %s" % fx)
                tested += 1
        sys.stderr.write("(%d shipped fixtures checked) " % tested)

    def test_check_sample_generated(self):
        g = self.gen
        lines = []
        expect_fail = []   # (line number, reason)
        for i in range(1, 41):
            if i in (3, 9, 12, 15, 16, 20, 22, 25, 27, 30, 33, 38):
                lines.append(b"not a log line %d\n" % i)
                expect_fail.append((i, "no_match"))
            elif i == 5:
                lines.append(g.text(stamp="2026-02-30T10:00:00Z"))
                expect_fail.append((i, "bad_time"))
            elif i in (7, 8):
                lines.append(b"\n")
            else:
                lines.append(g.text(rejected=(i % 4 == 0)))
        sample = self.path("sample.log")
        with open(sample, "wb") as f:
            f.write(b"".join(lines))
        n_rej = sum(1 for i in range(1, 41) if i % 4 == 0
                    and i not in (3, 5, 7, 8, 9, 12, 15, 16, 20, 22, 25, 27, 30, 33, 38))
        d = self.base_config()
        for args in (["--format", "generic-text"], ["--input", "gw"]):
            with self.subTest(args=args):
                p = run_cli(["check", "-c", d.config_path, "--sample", sample] + args)
                self.assertEqual(p.returncode, 0, p.stderr_text)
                out = p.stdout_text + p.stderr_text
                m = SAMPLE_RE.search(out)
                self.assertTrue(m, "no sample: summary in:\n" + out)
                self.assertEqual(tuple(map(int, m.groups())),
                                 (40, 40 - 13 - 2, n_rej, 0, 13, 2), m.group(0))
                fails = [(int(n), r) for n, r, _ in FAIL_LINE_RE.findall(out)]
                # The first 10 failures, in order; skipped blank lines may or
                # may not be listed, parse failures must be.
                parse_fails = [f for f in fails if f[1] != "blank"]
                self.assertEqual(len(fails), 10, out)
                self.assertEqual(parse_fails, [f for f in expect_fail if f[0] <= fails[-1][0]])
                for t in g.tokens:
                    self.assertNotIn(t, out)
                self.assertNotIn("not a log line", out)

    # -- replay ------------------------------------------------------------
    def test_replay_summary_exact(self):
        g = self.gen
        text = self.path("replay.log")
        with open(text, "wb") as f:
            f.write(g.batch("generic-text", 500, 77) + b"junk\n\n" + g.batch("generic-text", 20, 3))
        js = self.path("replay.jsonl")
        with open(js, "wb") as f:
            f.write(g.batch("generic-json", 300, 45) + b"{broken\n")
        d = self.base_config()
        cases = [
            (["--format", "generic-text", text], (522, 520, 80, 0, 1, 1)),
            (["--format", "generic-json", js], (301, 300, 45, 0, 1, 0)),
            (["--format", "generic-text", text, text], (1044, 1040, 160, 0, 2, 2)),
        ]
        for args, want in cases:
            with self.subTest(args=args[:2] + [os.path.basename(a) for a in args[2:]]):
                p = run_cli(["replay", "-c", d.config_path] + args)
                self.assertEqual(p.returncode, 0, p.stderr_text)
                m = REPLAY_RE.search(p.stderr_text)
                self.assertTrue(m, "no replay: summary in stderr:\n" + p.stderr_text)
                self.assertEqual(tuple(int(x) for x in m.groups()[:6]), want, m.group(0))
                self.assertGreater(float(m.group(8)), 0)
                for line in p.stdout_text.splitlines():
                    json.loads(line)   # anomalies: one JSON object per line
                for t in g.tokens:
                    self.assertNotIn(t, p.stderr_text)
                    self.assertNotIn(t, p.stdout_text)
        p = run_cli(["replay", "-c", d.config_path, "--format", "generic-text",
                     self.path("no-such.log")])
        self.assertNotEqual(p.returncode, 0)

    # -- misc --------------------------------------------------------------
    def test_version_help_unknown_command(self):
        p = run_cli(["--version"])
        self.assertEqual(p.returncode, 0, p.stderr_text)
        self.assertRegex(p.stdout_text + p.stderr_text, r"\d+\.\d+\.\d+")
        p = run_cli(["--help"])
        self.assertEqual(p.returncode, 0, p.stderr_text)
        out = p.stdout_text + p.stderr_text
        for word in ("run", "replay", "check"):
            self.assertIn(word, out)
        p = run_cli(["frobnicate"])
        self.assertEqual(p.returncode, 2, p.stdout_text + p.stderr_text)
        p = run_cli(["check", "--no-such-option"])
        self.assertEqual(p.returncode, 2, p.stdout_text + p.stderr_text)

    # -- SIGHUP ------------------------------------------------------------
    def test_sighup_adds_input_and_keeps_totals(self):
        d = self.daemon([self.input("gw", "generic-text")])
        g = self.gen
        append(self.path("gw.log"), g.batch("generic-text", 30, 5))
        d.expect({"gw": Expect(checks=30, rejected=5)})
        self.assertIsNone(d.metrics().get_value("auth_token_check", input="idp"))

        d.inputs.append(self.input("idp", "generic-json"))
        append(self.path("idp.log"), g.batch("generic-json", 4, 1))   # before the reload
        d.write_config()
        d.sighup()
        d.expect({"gw": Expect(checks=30, rejected=5), "idp": Expect(checks=4, rejected=1)},
                 hold=0.3)
        append(self.path("gw.log"), g.batch("generic-text", 6, 1))
        append(self.path("idp.log"), g.batch("generic-json", 8, 2))
        d.expect({"gw": Expect(checks=36, rejected=6), "idp": Expect(checks=12, rejected=3)},
                 hold=0.3)
        self.assertTrue(d.running())
        d.stop()

    # Reload keeps an input's totals when its format or its path changes, as
    # a restart does: a counter never goes down within a running daemon.
    def test_sighup_changes_format_keeping_totals(self):
        d = self.daemon([self.input("gw", "generic-text")])
        g = self.gen
        append(self.path("gw.log"), g.batch("generic-text", 10, 3))
        d.expect({"gw": Expect(checks=10, rejected=3)})
        # Same path, now JSON lines: the new format applies to new lines.
        d.inputs[0]["format"] = "generic-json"
        d.write_config()
        n = d.stderr().lower().count("reload")
        d.sighup()
        twtest.wait_until(lambda: d.stderr().lower().count("reload") > n, what="reload logged")
        append(self.path("gw.log"), g.batch("generic-json", 4, 1))
        d.expect({"gw": Expect(checks=14, rejected=4)}, hold=0.3)
        d.stop()

    def test_sighup_changes_path_keeping_totals(self):
        d = self.daemon([self.input("gw", "generic-text")])
        g = self.gen
        append(self.path("gw.log"), g.batch("generic-text", 10, 3))
        d.expect({"gw": Expect(checks=10, rejected=3)})
        # Another path (read from its beginning): totals continue.
        append(self.path("gw2.log"), g.batch("generic-text", 6, 2))
        d.inputs[0]["path"] = self.path("gw2.log")
        d.write_config()
        d.sighup()
        d.expect({"gw": Expect(checks=16, rejected=5)}, hold=0.3)
        append(self.path("gw.log"), g.batch("generic-text", 3, 3))    # no longer followed
        append(self.path("gw2.log"), g.batch("generic-text", 1, 0))
        d.expect({"gw": Expect(checks=17, rejected=5)}, hold=0.3)
        d.stop()

    def test_restart_with_changed_path_keeps_totals(self):
        d = self.daemon([self.input("gw", "generic-text")])
        g = self.gen
        append(self.path("gw.log"), g.batch("generic-text", 10, 3))
        d.expect({"gw": Expect(checks=10, rejected=3)})
        d.stop()
        append(self.path("gw3.log"), g.batch("generic-text", 2, 1))
        d.inputs[0]["path"] = self.path("gw3.log")
        d.write_config()
        d.start()
        d.expect({"gw": Expect(checks=12, rejected=4)}, hold=0.3)
        d.stop()

    def test_sighup_while_lines_arrive_loses_nothing(self):
        d = self.daemon([self.input("gw", "generic-text"), self.input("idp", "generic-json")])
        w = twtest.Writer([("gw", self.path("gw.log"), "generic-text"),
                           ("idp", self.path("idp.log"), "generic-json")], duration=2.0, seed=3)
        w.start()
        try:
            for i in range(6):
                twtest.wait_until(lambda: d.counters("gw")["auth_token_check"] > 0)
                d.extra["log_level"] = "debug" if i % 2 == 0 else "info"
                d.write_config()
                # Any log line about the reload shows it was handled.
                n = d.stderr().lower().count("reload")
                d.sighup()
                twtest.wait_until(lambda: d.stderr().lower().count("reload") > n
                                  or not d.running(), what="reload %d logged" % i)
        finally:
            w.join(30)
            self.gen.tokens += w.gen.tokens
        self.assertIsNone(w.error)
        d.expect({"gw": w.expect("gw"), "idp": w.expect("idp")}, hold=0.3)
        d.stop()

    def test_sighup_invalid_config_is_refused(self):
        d = self.daemon([self.input("gw", "generic-text")])
        g = self.gen
        append(self.path("gw.log"), g.batch("generic-text", 10, 2))
        d.expect({"gw": Expect(checks=10, rejected=2)})

        bad = d.config()
        bad["inputs"].append({"name": "idp", "path": self.path("idp.log"),
                              "format": "no-such-format", "start": "beginning"})
        d.write_config(bad)
        d.sighup()
        twtest.wait_until(lambda: d.config_path in d.stderr(),
                          what="an error naming %s in stderr" % d.config_path)
        err_lines = [l for l in d.stderr().splitlines() if d.config_path in l]
        self.assertTrue(any("inputs[1].format" in l for l in err_lines), err_lines)
        self.assertTrue(d.running())
        self.assertEqual(d.get("/-/healthy")[0], 200)

        # Not-JSON, too.
        d.write_config(raw="{ this is not json")
        d.sighup()
        twtest.wait_until(lambda: len([l for l in d.stderr().splitlines()
                                       if d.config_path in l]) > len(err_lines),
                          what="a second error naming the config file")
        self.assertTrue(d.running())

        # The old config stays in force.
        append(self.path("gw.log"), g.batch("generic-text", 5, 5))
        d.expect({"gw": Expect(checks=15, rejected=7)}, hold=0.3)
        self.assertIsNone(d.metrics().get_value("auth_token_check", input="idp"))
        d.stop()


if __name__ == "__main__":
    twtest.main()
