"""
test_rotation.py — tail -F semantics without loss or double counting:
rename rotation (with a writer that keeps writing to the renamed file),
copytruncate, delete + recreate, lines written in two parts, over-long lines.
Every scenario runs with inotify on and again with follow.inotify=false.
"""

import os
import shutil
import sys

sys.dont_write_bytecode = True   # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twtest  # noqa: E402
from twtest import Expect, append  # noqa: E402

MAX_LINE = 1024
# Longer than rotate_wait_ms: a drained file must have been closed by then
# and nothing may be counted twice afterwards.
HOLD = twtest.ROTATE_WAIT_MS / 1000.0 + 0.3


class RotationScenarios:
    """Mixed into one TestCase per follow backend."""

    INOTIFY = True

    def start(self, *inputs):
        """A daemon following the given inputs plus "probe" (see sync())."""
        self.probe_n = 0
        ins = list(inputs) + [self.input("probe", "generic-text")]
        return self.daemon(ins, follow={"inotify": self.INOTIFY, "max_line_bytes": MAX_LINE})

    def sync(self, d):
        """Returns once the daemon has run a full poll round that started
        after this call: a probe line is appended twice, each time waiting
        until it is counted (the round that counts the second one began after
        the round that counted the first had finished)."""
        for _ in range(2):
            append(self.path("probe.log"), self.gen.text())
            self.probe_n += 1
            n = self.probe_n
            twtest.wait_until(lambda: d.counters("probe")["auth_token_check"] == n,
                              what="probe line %d counted" % n)

    def probe(self):
        return Expect(checks=self.probe_n)

    # -- rename ------------------------------------------------------------
    def test_rename_rotation_drains_old_file_and_reads_new_from_start(self):
        log = self.path("gw.log")
        d = self.start(self.input("gw", "generic-text"))
        g = self.gen
        writer = open(log, "ab", buffering=0)   # a logger that reopens late
        writer.write(g.batch("generic-text", 40, 6))
        d.expect({"gw": Expect(checks=40, rejected=6)})

        with d.paused():   # mv + create seen as one step: kind "rename"
            os.rename(log, log + ".1")
            writer.write(g.batch("generic-text", 15, 4))     # lands in gw.log.1
            with open(log, "wb") as f:                       # the new file
                f.write(g.batch("generic-text", 7, 1))
        writer.write(g.batch("generic-text", 3, 3))      # still gw.log.1
        writer.close()
        writer = open(log, "ab", buffering=0)
        writer.write(g.batch("generic-text", 5, 0))
        d.expect({"gw": Expect(checks=70, rejected=14, rotations={"rename": 1})}, hold=HOLD)

        # A second rotation, after the first drained file was closed.
        with d.paused():
            os.rename(log + ".1", log + ".2")
            os.rename(log, log + ".1")
            open(log, "wb").close()
        writer.write(g.batch("generic-text", 11, 2))
        writer.close()
        append(log, g.batch("generic-text", 6, 6))
        d.expect({"gw": Expect(checks=87, rejected=22, rotations={"rename": 2})}, hold=HOLD)

    def test_rename_rotation_new_file_created_late(self):
        # mv, the old file keeps being written, and the new file appears only
        # after the daemon has looked: the path is gone for a while, but the
        # old file still has a name (link count > 0), so this is a rename,
        # not a delete — exactly one rotation, and every line once.
        log = self.path("gw.log")
        d = self.start(self.input("gw", "generic-text"))
        g = self.gen
        writer = open(log, "ab", buffering=0)
        writer.write(g.batch("generic-text", 10, 1))
        d.expect({"gw": Expect(checks=10, rejected=1)})
        os.rename(log, log + ".1")
        writer.write(g.batch("generic-text", 4, 2))
        writer.write(g.batch("generic-text", 2, 0))
        writer.close()
        self.sync(d)
        d.expect({"gw": Expect(checks=16, rejected=3, rotations={"rename": 1})})
        append(log, g.batch("generic-text", 5, 5))
        d.expect({"gw": Expect(checks=21, rejected=8, rotations={"rename": 1})}, hold=HOLD)

    def test_rename_rotation_json(self):
        log = self.path("idp.log")
        d = self.start(self.input("idp", "generic-json"))
        g = self.gen
        with open(log, "ab", buffering=0) as w:
            w.write(g.batch("generic-json", 20, 5))
            d.expect({"idp": Expect(checks=20, rejected=5)})
            with d.paused():
                os.rename(log, log + ".1")
                w.write(g.batch("generic-json", 9, 9))
                append(log, g.batch("generic-json", 13, 0))
        d.expect({"idp": Expect(checks=42, rejected=14, rotations={"rename": 1})}, hold=HOLD)

    # -- copytruncate ------------------------------------------------------
    def test_copytruncate_restarts_at_zero_without_recount(self):
        log = self.path("gw.log")
        d = self.start(self.input("gw", "generic-text"))
        g = self.gen
        append(log, g.batch("generic-text", 50, 10))
        d.expect({"gw": Expect(checks=50, rejected=10)})

        # logrotate's copytruncate: copy, then truncate in place.
        shutil.copyfile(log, log + ".1")
        os.truncate(log, 0)
        d.expect({"gw": Expect(checks=50, rejected=10, rotations={"truncate": 1})})
        append(log, g.batch("generic-text", 8, 2))
        d.expect({"gw": Expect(checks=58, rejected=12, rotations={"truncate": 1})}, hold=HOLD)

        # Again, this time writing right after the truncation (fewer bytes
        # than before, so the shrink is visible whenever the daemon looks).
        shutil.copyfile(log, log + ".1")
        with open(log, "r+b") as f:
            f.truncate(0)
        append(log, g.batch("generic-text", 3, 1))
        d.expect({"gw": Expect(checks=61, rejected=13, rotations={"truncate": 2})}, hold=HOLD)

    # -- delete + recreate -------------------------------------------------
    def test_delete_then_recreate(self):
        log = self.path("gw.log")
        d = self.start(self.input("gw", "generic-text"))
        g = self.gen
        writer = open(log, "ab", buffering=0)
        writer.write(g.batch("generic-text", 12, 3))
        d.expect({"gw": Expect(checks=12, rejected=3)})

        os.remove(log)
        writer.write(g.batch("generic-text", 4, 4))      # into the unlinked file: drained
        writer.close()
        d.expect({"gw": Expect(checks=16, rejected=7, rotations={"delete": 1})}, hold=HOLD)

        with open(log, "wb") as f:
            f.write(g.batch("generic-text", 9, 1))
        d.expect({"gw": Expect(checks=25, rejected=8, rotations={"delete": 1})}, hold=HOLD)

    def test_rotated_file_ending_in_partial_line(self):
        # The old file ends in a line that never gets its newline: once the
        # drained file is closed, that tail is skipped as "partial" (it is
        # not a complete line, so not in lines_total).
        log = self.path("gw.log")
        d = self.start(self.input("gw", "generic-text"))
        g = self.gen
        append(log, g.batch("generic-text", 5, 1) + g.text()[:25])
        d.expect({"gw": Expect(checks=5, rejected=1)})
        with d.paused():
            os.rename(log, log + ".1")
            append(log, g.batch("generic-text", 2, 2))
        d.expect({"gw": Expect(checks=7, rejected=3, skipped={"partial": 1},
                               rotations={"rename": 1})}, hold=HOLD)

    def test_truncate_with_partial_line_pending(self):
        log = self.path("gw.log")
        d = self.start(self.input("gw", "generic-text"))
        g = self.gen
        append(log, g.batch("generic-text", 3, 0) + g.text(rejected=True)[:30])
        self.sync(d)
        d.expect({"gw": Expect(checks=3)})
        os.truncate(log, 0)
        d.expect({"gw": Expect(checks=3, skipped={"partial": 1}, rotations={"truncate": 1})})
        append(log, g.batch("generic-text", 2, 1))
        d.expect({"gw": Expect(checks=5, rejected=1, skipped={"partial": 1},
                               rotations={"truncate": 1})}, hold=HOLD)

    # -- partial writes ----------------------------------------------------
    def test_line_in_two_writes_counts_once_after_newline(self):
        d = self.start(self.input("gw", "generic-text"), self.input("idp", "generic-json"))
        g = self.gen
        append(self.path("gw.log"), g.batch("generic-text", 3, 1))
        d.expect({"gw": Expect(checks=3, rejected=1), "idp": Expect()})

        def not_yet(exp):
            def check():
                self.sync(d)    # the daemon has read the partial line by now
                d.expect(exp)   # ... and counted nothing for it
            return check

        line = g.text(rejected=True)
        twtest.write_two_parts(self.path("gw.log"), line,
                               not_yet({"gw": Expect(checks=3, rejected=1), "idp": Expect()}))
        # Everything but the newline, then the newline alone.
        line = g.text()
        twtest.write_two_parts(self.path("gw.log"), line,
                               not_yet({"gw": Expect(checks=4, rejected=2), "idp": Expect()}),
                               split=len(line) - 1)
        jline = g.json(rejected=True)
        twtest.write_two_parts(self.path("idp.log"), jline,
                               not_yet({"gw": Expect(checks=5, rejected=2), "idp": Expect()}),
                               split=7)
        d.expect({"gw": Expect(checks=5, rejected=2), "idp": Expect(checks=1, rejected=1),
                  "probe": self.probe()}, hold=0.3)

    # -- over-long lines ---------------------------------------------------
    def exact_len_line(self, n, rejected=False):
        """A valid text line of exactly n bytes without its newline."""
        base = self.gen.text(rejected=rejected, path="/p/")
        pad = n - (len(base) - 1)
        assert pad >= 0
        return base.replace(b"path=/p/", b"path=/p/" + b"x" * pad)

    def test_over_long_line_skipped_and_next_lines_count(self):
        log = self.path("gw.log")
        d = self.start(self.input("gw", "generic-text"))
        g = self.gen
        at_limit = self.exact_len_line(MAX_LINE)
        over = self.exact_len_line(MAX_LINE + 1)
        self.assertEqual(len(at_limit), MAX_LINE + 1)
        append(log, g.text() + at_limit + over + g.text(rejected=True))
        d.expect({"gw": Expect(checks=3, rejected=1, skipped={"too_long": 1})})

        # A huge line (bigger than a read block) arriving in several writes,
        # then normal lines; then a too-long JSON-ish line with no newline yet.
        huge = g.text(path="/h/" + "y" * 700000)
        with open(log, "ab", buffering=0) as w:
            for i in range(0, len(huge), 200000):
                w.write(huge[i:i + 200000])
                os.fsync(w.fileno())
            w.write(g.batch("generic-text", 5, 2))
        d.expect({"gw": Expect(checks=8, rejected=3, skipped={"too_long": 2})}, hold=0.3)

        long_tail = self.exact_len_line(5000)
        append(log, long_tail[:3000])
        self.sync(d)
        d.expect({"gw": Expect(checks=8, rejected=3, skipped={"too_long": 2}),
                  "probe": self.probe()})
        append(log, long_tail[3000:] + g.text())
        d.expect({"gw": Expect(checks=9, rejected=3, skipped={"too_long": 3}),
                  "probe": self.probe()}, hold=0.3)


class RotationInotifyTest(RotationScenarios, twtest.TwTestCase):
    INOTIFY = True


class RotationPollingTest(RotationScenarios, twtest.TwTestCase):
    INOTIFY = False


if __name__ == "__main__":
    twtest.main()
