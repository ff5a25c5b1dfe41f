"""
test_counting.py — the daemon counts every line of every input exactly:
checks, rejections, malformed lines by reason, odd bytes, start=end|beginning,
files that appear later, and the HTTP probes.
"""

import os
import sys

sys.dont_write_bytecode = True   # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twtest  # noqa: E402
from twtest import Expect, append  # noqa: E402


class CountingTest(twtest.TwTestCase):

    def test_counters_present_at_zero_before_any_line(self):
        inputs = [self.input("gw", "generic-text"),
                  self.input("idp", "generic-json", start="end"),
                  self.input("later", "generic-text", create=False)]
        d = self.daemon(inputs)
        m = d.metrics()   # the very first scrape after /-/ready
        for i in ("gw", "idp", "later"):
            for name in ("auth_token_check", "auth_token_rejected", "tokenwatch_lines_total"):
                self.assertEqual(m.get_value(name, input=i), 0,
                                 "%s{input=%r} must be exported at 0 from start-up" % (name, i))
        # Same label set on both mandated counters, so the alert divides cleanly.
        self.assertEqual({frozenset(l.items()) for l, _ in m.series("auth_token_check")},
                         {frozenset(l.items()) for l, _ in m.series("auth_token_rejected")})
        d.expect({i: Expect() for i in ("gw", "idp", "later")})

    def test_exact_totals_text_and_json(self):
        d = self.daemon([self.input("gw", "generic-text"), self.input("idp", "generic-json")])
        g = self.gen
        # Several appends of different sizes, rejections spread through them.
        for n, k in ((1, 0), (1, 1), (57, 9), (200, 31), (3, 3)):
            append(self.path("gw.log"), g.batch("generic-text", n, k))
        for n, k in ((150, 20), (1, 1), (40, 0)):
            append(self.path("idp.log"), g.batch("generic-json", n, k))
        d.expect({"gw": Expect(checks=262, rejected=44), "idp": Expect(checks=191, rejected=21)},
                 hold=0.5)
        # More on top, after the first totals were reached.
        append(self.path("gw.log"), g.batch("generic-text", 10, 4))
        append(self.path("idp.log"), g.batch("generic-json", 5, 5))
        d.expect({"gw": Expect(checks=272, rejected=48), "idp": Expect(checks=196, rejected=26)},
                 hold=0.3)

    def test_large_burst_counted_exactly_and_lag_drains(self):
        # Far more than one read block and one poll budget at once.
        d = self.daemon([self.input("gw", "generic-text"), self.input("idp", "generic-json")])
        g = self.gen
        text = g.batch("generic-text", 120000, 11111)
        js = g.batch("generic-json", 40000, 4321)
        append(self.path("gw.log"), text)
        append(self.path("idp.log"), js)
        d.expect({"gw": Expect(checks=120000, rejected=11111),
                  "idp": Expect(checks=40000, rejected=4321)}, timeout=30, hold=0.3)
        twtest.wait_until(lambda: d.lag_zero("gw") and d.lag_zero("idp"),
                          what="tokenwatch_input_lag_bytes == 0")

    def test_every_rejection_result_value(self):
        d = self.daemon([self.input("gw", "generic-text"), self.input("idp", "generic-json")])
        results = ["ok", "rejected", "denied", "failed", "401", "403", "ok"]
        for r in results:
            append(self.path("gw.log"), self.gen.text(result=r))
            append(self.path("idp.log"), self.gen.json(result=r))
        d.expect({"gw": Expect(checks=7, rejected=5), "idp": Expect(checks=7, rejected=5)})

    def test_malformed_lines_counted_by_reason(self):
        d = self.daemon([self.input("gw", "generic-text"), self.input("idp", "generic-json")])
        g = self.gen
        ts = twtest.utc_stamp()
        text = b"".join([
            g.text(),
            b"this is not an auth log line at all\n",                       # no_match
            b"Nov 29 07:57:53 sshd[1234]: Accepted publickey for root\n",   # no_match
            g.text(rejected=True),
            # Time-shaped but impossible: month 13, day 45, hour 25.
            g.text(stamp="2026-13-45T25:61:00Z"),                          # bad_time
            g.text(),
        ])
        json_lines = b"".join([
            g.json(),
            b'{"time":"' + ts.encode() + b'","client":{"ip":"10.9.9.9"},\n',  # invalid_json
            b"not json at all\n",                                            # invalid_json
            b"[1,2,3]\n",                                                    # invalid_json
            # No auth.token at all.
            b'{"time":"' + ts.encode() + b'","client":{"ip":"10.9.9.8"},"result":"ok"}\n',  # missing_field
            # Empty token.
            b'{"time":"' + ts.encode() + b'","client":{"ip":"10.9.9.7"},"auth":{"token":""},"result":"ok"}\n',  # missing_field
            g.json(stamp="yesterday at noon"),                               # bad_time
            g.json(rejected=True),
        ])
        append(self.path("gw.log"), text)
        append(self.path("idp.log"), json_lines)
        d.expect({
            "gw": Expect(checks=3, rejected=1, parse_errors={"no_match": 2, "bad_time": 1}),
            "idp": Expect(checks=2, rejected=1,
                          parse_errors={"invalid_json": 3, "missing_field": 2, "bad_time": 1}),
        }, hold=0.3)

    def test_blank_crlf_nul_and_invalid_utf8(self):
        d = self.daemon([self.input("gw", "generic-text"), self.input("idp", "generic-json")])
        g = self.gen
        nul_line = g.text().replace(b" ip=", b"\x00ip=", 1)   # no separator: not a match
        text = b"".join([
            b"\n",                                           # blank
            g.text().replace(b"\n", b"\r\n"),                # CRLF: a normal check
            b"\r\n",                                         # blank once '\r' is stripped
            g.text(rejected=True).replace(b"\n", b"\r\n"),   # CRLF rejection
            nul_line,                                        # no_match, still one line
            g.text(path="/v1/PLACEHOLDER").replace(b"PLACEHOLDER", b"caf\xe9-\xff\xfe"),  # bad UTF-8
            b"\n\n",                                         # two blanks
            g.text(),
        ])
        bad_utf8_json = g.json(path="/v1/PLACEHOLDER").replace(b"PLACEHOLDER", b"\xc3\x28\xa0\xa1")
        json_lines = b"".join([
            g.json().replace(b"\n", b"\r\n"),
            b"\n",
            bad_utf8_json,                                   # invalid UTF-8 inside a string
            g.json(rejected=True),
        ])
        append(self.path("gw.log"), text)
        append(self.path("idp.log"), json_lines)
        d.expect({
            "gw": Expect(checks=4, rejected=1, parse_errors={"no_match": 1}, skipped={"blank": 4}),
            "idp": Expect(checks=3, rejected=1, skipped={"blank": 1}),
        }, hold=0.3)

    def test_start_end_ignores_existing_lines_beginning_reads_them(self):
        g = self.gen
        append(self.path("old-end.log"), g.batch("generic-text", 30, 7))
        append(self.path("old-beg.log"), g.batch("generic-text", 25, 5))
        append(self.path("old-endj.log"), g.batch("generic-json", 12, 2))
        # A line still being written when the daemon starts: start=end means
        # just after the last newline, so this line is read whole later.
        partial = g.text(rejected=True)
        append(self.path("old-end.log"), partial[:20])
        d = self.daemon([self.input("e", "generic-text", start="end", path=self.path("old-end.log")),
                         self.input("b", "generic-text", start="beginning",
                                    path=self.path("old-beg.log")),
                         self.input("j", "generic-json", start="end",
                                    path=self.path("old-endj.log"))])
        d.expect({"e": Expect(), "b": Expect(checks=25, rejected=5), "j": Expect()}, hold=0.3)
        append(self.path("old-end.log"), partial[20:] + g.batch("generic-text", 4, 1))
        append(self.path("old-beg.log"), g.batch("generic-text", 3, 3))
        append(self.path("old-endj.log"), g.batch("generic-json", 6, 0))
        d.expect({"e": Expect(checks=5, rejected=2), "b": Expect(checks=28, rejected=8),
                  "j": Expect(checks=6)}, hold=0.3)

    def test_file_created_after_start_is_read_from_its_start(self):
        # start=end applies to files present at start-up; a file that appears
        # later is new, so all of it is read (tail -F).
        d = self.daemon([self.input("late", "generic-text", start="end", create=False),
                         self.input("latej", "generic-json", start="end", create=False)])
        d.expect({"late": Expect(), "latej": Expect()})
        g = self.gen
        with open(self.path("late.log"), "wb") as f:
            f.write(g.batch("generic-text", 9, 2))
        with open(self.path("latej.log"), "wb") as f:
            f.write(g.batch("generic-json", 4, 4))
        d.expect({"late": Expect(checks=9, rejected=2), "latej": Expect(checks=4, rejected=4)})
        append(self.path("late.log"), g.batch("generic-text", 2, 0))
        d.expect({"late": Expect(checks=11, rejected=2), "latej": Expect(checks=4, rejected=4)},
                 hold=0.3)

    def test_file_in_directory_created_after_start(self):
        # Not even the parent directory exists at start-up.
        path = self.path("later", "sub", "gw.log")
        d = self.daemon([self.input("gw", "generic-text", start="end", path=path, create=False)])
        d.expect({"gw": Expect()})
        os.makedirs(os.path.dirname(path))
        append(path, self.gen.batch("generic-text", 6, 2))
        d.expect({"gw": Expect(checks=6, rejected=2)})
        append(path, self.gen.batch("generic-text", 1, 1))
        d.expect({"gw": Expect(checks=7, rejected=3)}, hold=0.3)

    def test_http_probes_and_unknown_path(self):
        d = self.daemon([self.input("gw")])
        self.assertEqual(d.get("/-/healthy")[0], 200)
        self.assertEqual(d.get("/-/ready")[0], 200)
        self.assertEqual(d.get("/no/such/path")[0], 404)
        self.assertEqual(d.get("/metricsx")[0], 404)
        req = twtest.urllib.request.Request(d.url("/metrics"), data=b"x", method="POST")
        try:
            status = twtest.urllib.request.urlopen(req, timeout=5).status
        except twtest.urllib.error.HTTPError as e:
            status = e.code
        self.assertEqual(status, 405)
        status, body, headers = d.get("/metrics")
        self.assertEqual(status, 200)
        ctype = headers.get("Content-Type", "")
        self.assertTrue(ctype.startswith("text/plain"), ctype)
        self.assertIn("version=0.0.4", ctype)
        d.stop()


if __name__ == "__main__":
    twtest.main()
