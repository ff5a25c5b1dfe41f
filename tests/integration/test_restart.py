"""
test_restart.py — a restart resumes where the daemon stopped: no line lost,
none counted twice, whether it stopped on SIGTERM or was killed with -9 while
lines kept arriving, even across a rotation that happened while it was down.
A saved offset is trusted only while the file still holds the same bytes.
"""

import os
import sys
import time

sys.dont_write_bytecode = True   # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twtest  # noqa: E402
from twtest import Expect, Writer, append  # noqa: E402


class RestartTest(twtest.TwTestCase):

    def test_sigterm_restart_continues_totals(self):
        d = self.daemon([self.input("gw", "generic-text"), self.input("idp", "generic-json")])
        g = self.gen
        append(self.path("gw.log"), g.batch("generic-text", 40, 9))
        append(self.path("idp.log"), g.batch("generic-json", 25, 4))
        append(self.path("gw.log"), b"garbage line\n\n")
        exp = {"gw": Expect(checks=40, rejected=9, parse_errors={"no_match": 1},
                            skipped={"blank": 1}),
               "idp": Expect(checks=25, rejected=4)}
        d.expect(exp)
        d.stop()
        d.start()
        d.expect(exp, hold=0.5)                       # not reset, not doubled

        append(self.path("gw.log"), g.batch("generic-text", 10, 1))
        append(self.path("idp.log"), g.batch("generic-json", 5, 5))
        exp = {"gw": exp["gw"] + Expect(checks=10, rejected=1),
               "idp": exp["idp"] + Expect(checks=5, rejected=5)}
        d.expect(exp, hold=0.3)

        # Lines written while the daemon is down are read after the restart.
        d.stop()
        append(self.path("gw.log"), g.batch("generic-text", 7, 2))
        append(self.path("idp.log"), g.batch("generic-json", 3, 0))
        d.start()
        exp = {"gw": exp["gw"] + Expect(checks=7, rejected=2),
               "idp": exp["idp"] + Expect(checks=3)}
        d.expect(exp, hold=0.5)
        d.stop()

    def test_kill9_while_writing_three_times(self):
        d = self.daemon([self.input("gw", "generic-text"), self.input("idp", "generic-json")])
        w = Writer([("gw", self.path("gw.log"), "generic-text"),
                    ("idp", self.path("idp.log"), "generic-json")], duration=5.0, seed=7)
        w.start()
        try:
            for _ in range(3):
                # Let the daemon read and snapshot for a while, then kill it
                # in the middle of the stream.
                twtest.wait_until(lambda: d.counters("gw")["auth_token_check"] > 0)
                d.snapshot_after(count=3)
                time.sleep(0.137)   # not for correctness: lands the kill between snapshots
                d.kill9()
                d.start()
        finally:
            w.join(30)
            self.gen.tokens += w.gen.tokens
        self.assertIsNone(w.error)
        self.assertFalse(w.is_alive())
        self.assertGreater(w.written["gw"][0], 1000)
        d.expect({"gw": w.expect("gw"), "idp": w.expect("idp")}, timeout=15, hold=0.5)
        d.stop()

    def test_corrupt_state_is_refused_with_a_clear_error(self):
        # A damaged snapshot is not silently discarded (that would recount
        # or skip lines): the daemon refuses to start and names the file.
        d = self.daemon([self.input("gw", "generic-text")])
        append(self.path("gw.log"), self.gen.batch("generic-text", 5, 1))
        d.expect({"gw": Expect(checks=5, rejected=1)})
        d.stop()
        files = [f for f in os.listdir(d.state_dir) if f.endswith(".json")]
        self.assertTrue(files, os.listdir(d.state_dir))
        for f in files:
            with open(os.path.join(d.state_dir, f), "w") as fh:
                fh.write('{"version": 1, "inputs": [ {"name": "gw", "files": 7')
        d.start(wait_ready=False)
        rc = d.proc.wait(10)
        self.assertEqual(rc, 1, d.stderr())
        self.assertIn(d.state_dir, d.stderr())

    def test_kill9_with_partial_line_pending(self):
        # Saved offsets sit on line boundaries: a line half written when the
        # daemon dies is read whole, once, after the restart.
        log = self.path("gw.log")
        d = self.daemon([self.input("gw", "generic-text")])
        g = self.gen
        line = g.text(rejected=True)
        append(log, g.batch("generic-text", 4, 0) + line[:33])
        d.expect({"gw": Expect(checks=4)})
        d.snapshot_after(count=2)
        d.kill9()
        append(log, line[33:] + g.text())
        d.start()
        d.expect({"gw": Expect(checks=6, rejected=1)}, hold=0.5)
        m = d.metrics()
        self.assertEqual(m.get_value("tokenwatch_state_save_failures_total"), 0)
        d.stop()

    def test_kill9_then_rename_rotation_while_down(self):
        log = self.path("gw.log")
        d = self.daemon([self.input("gw", "generic-text")])
        g = self.gen
        writer = open(log, "ab", buffering=0)
        writer.write(g.batch("generic-text", 30, 3))
        d.expect({"gw": Expect(checks=30, rejected=3)})
        d.snapshot_after()
        writer.write(g.batch("generic-text", 5, 1))     # maybe read, maybe not: -9 anyway
        d.kill9()

        os.rename(log, log + ".1")
        writer.write(g.batch("generic-text", 6, 2))     # appended to the rotated file
        writer.close()
        append(log, g.batch("generic-text", 8, 1))      # the new file
        d.start()
        # The contract does not say whether a rotation that happened while the
        # daemon was down counts in rotations_total; the lines must be exact.
        rot = {"rename": (0, 1)}
        d.expect({"gw": Expect(checks=49, rejected=7, rotations=rot)}, hold=0.8)

        append(log, g.batch("generic-text", 2, 2))
        d.expect({"gw": Expect(checks=51, rejected=9, rotations=rot)}, hold=0.3)
        d.stop()

    def test_saved_offset_not_trusted_when_file_content_changed(self):
        g = self.gen
        names = ("same", "bigger", "replaced", "untouched")
        d = self.daemon([self.input(n, "generic-text") for n in names])
        content = {}
        for n in names:
            content[n] = g.batch("generic-text", 20, 4)
            append(self.path(n + ".log"), content[n])
        d.expect({n: Expect(checks=20, rejected=4) for n in names})
        d.stop()

        def retokenize(data):
            # Same bytes except every token: same size, same rejections.
            out = []
            for line in data.splitlines(keepends=True):
                old = line.split(b"token=")[1].split(b" ")[0]
                new = g.token().encode()
                assert len(new) == len(old)
                out.append(line.replace(old, new))
            return b"".join(out)

        # In place, same size, different bytes.
        with open(self.path("same.log"), "r+b") as f:
            f.write(retokenize(content["same"]))
        # In place, larger.
        with open(self.path("bigger.log"), "r+b") as f:
            f.write(retokenize(content["bigger"]) + g.batch("generic-text", 6, 6))
        # A new file put in place (new inode), larger.
        tmp = self.path("replaced.log.new")
        with open(tmp, "wb") as f:
            f.write(retokenize(content["replaced"]) + g.batch("generic-text", 3, 0))
        os.replace(tmp, self.path("replaced.log"))

        d.start()
        d.expect({"same": Expect(checks=40, rejected=8),
                  "bigger": Expect(checks=46, rejected=14),
                  "replaced": Expect(checks=43, rejected=8),
                  "untouched": Expect(checks=20, rejected=4)}, hold=0.8)
        d.stop()

    def test_recycled_inode_in_log_dir_is_not_read(self):
        # The saved file is deleted while the daemon is down and another file
        # in the same directory gets its inode number (ext4 and tmpfs reuse
        # freed inodes at once). That file is not the input's log: it must
        # not be resumed, drained or read from 0.
        os.makedirs(self.path("logs"))
        log = self.path("logs", "gw.log")
        g = self.gen
        d = self.daemon([self.input("gw", "generic-text", path=log)])
        append(log, g.batch("generic-text", 10, 2))
        d.expect({"gw": Expect(checks=10, rejected=2)})
        d.stop()

        old_ino = os.stat(log).st_ino
        os.remove(log)
        recycled = None
        for i in range(64):
            other = self.path("logs", "other-%02d.log" % i)
            with open(other, "wb") as f:
                # Same format, so a wrong read shows up as extra checks.
                f.write(g.batch("generic-text", 5, 5))
            if os.stat(other).st_ino == old_ino:
                recycled = other
                break
        if recycled is None:
            self.skipTest("the filesystem did not reuse the freed inode; cannot provoke")
        append(log, g.batch("generic-text", 3, 0))   # the new file at the path
        d.start()
        d.expect({"gw": Expect(checks=13, rejected=2)}, hold=0.8)
        d.stop()


if __name__ == "__main__":
    twtest.main()
