"""
test_faults.py — the daemon under faults of its surroundings (issue 7 point 7,
brief "stress"): each test breaks one thing the daemon depends on, checks that
the failure is loud (a metric, a log line, a record) and contained (ingestion
goes on, nothing crashes), then repairs it and checks that the daemon recovers
by itself, without a restart.

  1. state directory full (a 256 KiB tmpfs): baselines.bin saves fail with a
     metric and an error naming the file while counting goes on; once space
     returns the next save succeeds and a restart loads it;
  2. input unreadable (mode 0000, daemon running as nobody): counted in
     tokenwatch_input_errors_total{reason="open"} at every poll, nothing read;
     readable again -> every line counted exactly once;
  3. GeoIP database replaced on disk + SIGHUP: the new data is used (API
     last_location, anomaly city) with a fresh cache; a corrupt replacement
     keeps the running database;
  4. freeze hook binary missing: exec_error records with the errno text, the
     metric, the daemon fine; installing the binary makes the next freeze work;
  5. event timestamps going backwards, or jumping a year ahead and back: no
     crash, no negative durations, sane API numbers, detection windows intact.

Needs root for 1 (mount) and 2 (setpriv); each skips with its reason when
that is not available. The temp dirs, mounts and processes are removed at the
end, also on failure.
"""

import json
import os
import shutil
import struct
import subprocess
import sys
import time
import unittest

sys.dont_write_bytecode = True   # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twtest  # noqa: E402
from twtest import Expect, append, utc_stamp, wait_until  # noqa: E402
# The project's own helpers (token ids as the daemon computes them, the
# events file reader) live with the freeze tests.
from test_freeze import read_jsonl, siphash24  # noqa: E402

GEOIP_DIR = os.path.join(twtest.TESTDATA_DIR, "geoip")
CITY_DB = os.path.join(GEOIP_DIR, "GeoLite2-City-Test.mmdb")

NOBODY = 65534
YEAR_S = 365 * 86400


def failures_rule(action="flag", min_rejected=3, window_s=60, rule_id="failure_burst"):
    return {"id": rule_id, "kind": "failures", "scope": "token", "severity": "high",
            "action": action, "window_s": window_s, "min_rejected": min_rejected,
            "min_ratio": 0.5}


# ---------------------------------------------------------------------------
# A MaxMind DB whose IPv4 subtree is rearranged: the two halves of one /24
# swap places, so every address of that /24 answers with the record of its
# mirror in the other half. Needs nothing but the committed test database
# (the Perl writer testdata/geoip/gen_mmdb.pl uses is optional).

_MMDB_META = b"\xab\xcd\xefMaxMind.com"


def _mmdb_decode(buf, pos):
    """One value of the MMDB data format at buf[pos:] -> (value, next pos).
    Enough for the metadata section (no pointers there)."""
    ctrl = buf[pos]
    pos += 1
    typ = ctrl >> 5
    if typ == 0:
        typ = 7 + buf[pos]
        pos += 1
    if typ == 1:
        raise ValueError("mmdb: pointer in metadata")
    size = ctrl & 0x1F
    if size >= 29:
        extra = size - 28
        n = int.from_bytes(buf[pos:pos + extra], "big")
        pos += extra
        size = {29: 29, 30: 285, 31: 65821}[ctrl & 0x1F] + n
    if typ == 2:
        return buf[pos:pos + size].decode("utf-8"), pos + size
    if typ == 3:
        return struct.unpack(">d", buf[pos:pos + 8])[0], pos + 8
    if typ == 4:
        return bytes(buf[pos:pos + size]), pos + size
    if typ in (5, 6, 9, 10):
        return int.from_bytes(buf[pos:pos + size], "big"), pos + size
    if typ == 8:
        return int.from_bytes(buf[pos:pos + size], "big", signed=True), pos + size
    if typ == 7:
        out = {}
        for _ in range(size):
            k, pos = _mmdb_decode(buf, pos)
            out[k], pos = _mmdb_decode(buf, pos)
        return out, pos
    if typ == 11:
        out = []
        for _ in range(size):
            v, pos = _mmdb_decode(buf, pos)
            out.append(v)
        return out, pos
    if typ == 14:
        return bool(size), pos
    if typ == 15:
        return struct.unpack(">f", buf[pos:pos + 4])[0], pos + 4
    raise ValueError("mmdb: unsupported type %d" % typ)


def _mmdb_records(buf, node, rs):
    nb = rs // 4
    b = buf[node * nb:(node + 1) * nb]
    if rs == 24:
        return int.from_bytes(b[0:3], "big"), int.from_bytes(b[3:6], "big")
    if rs == 28:
        return (((b[3] & 0xF0) << 20) | int.from_bytes(b[0:3], "big"),
                ((b[3] & 0x0F) << 24) | int.from_bytes(b[4:7], "big"))
    return int.from_bytes(b[0:4], "big"), int.from_bytes(b[4:8], "big")


def _mmdb_set_records(buf, node, rs, left, right):
    nb = rs // 4
    if rs == 24:
        b = left.to_bytes(3, "big") + right.to_bytes(3, "big")
    elif rs == 28:
        b = (left & 0xFFFFFF).to_bytes(3, "big") + bytes(
            [((left >> 20) & 0xF0) | ((right >> 24) & 0x0F)]) + (right & 0xFFFFFF).to_bytes(3, "big")
    else:
        b = left.to_bytes(4, "big") + right.to_bytes(4, "big")
    buf[node * nb:(node + 1) * nb] = b


def mmdb_swap_halves(src, dst, net24):
    """Writes to dst a copy of the MaxMind DB src in which the two /25 halves
    of the IPv4 network net24 ("a.b.c") have swapped places."""
    with open(src, "rb") as f:
        buf = bytearray(f.read())
    at = buf.rfind(_MMDB_META)
    if at < 0:
        raise ValueError("%s: not a MaxMind DB" % src)
    meta, _ = _mmdb_decode(buf, at + len(_MMDB_META))
    rs, count = meta["record_size"], meta["node_count"]
    if rs not in (24, 28, 32):
        raise ValueError("%s: record size %d" % (src, rs))
    bits = [0] * (96 if meta["ip_version"] == 6 else 0)
    for octet in (int(x) for x in net24.split(".")):
        bits += [(octet >> (7 - i)) & 1 for i in range(8)]
    node = 0
    for bit in bits:
        nxt = _mmdb_records(buf, node, rs)[bit]
        if nxt >= count:
            raise ValueError("%s: %s/24 is not split in the tree" % (src, net24))
        node = nxt
    left, right = _mmdb_records(buf, node, rs)
    _mmdb_set_records(buf, node, rs, right, left)
    with open(dst, "wb") as f:
        f.write(buf)


def replace_file(path, data):
    """Moves new content into place the way geoipupdate does (another
    inode, one rename)."""
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def perl_writer_available():
    try:
        return subprocess.run(["perl", "-MMaxMind::DB::Writer::Tree", "-e", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# ---------------------------------------------------------------------------

class FaultTestCase(twtest.TwTestCase):

    def write_rules(self, rules, cooldown_s=3600, learning=None):
        path = self.path("rules.json")
        doc = {"cooldown_s": cooldown_s, "rules": rules}
        if learning is not None:
            doc["learning"] = learning
        with open(path, "w") as f:
            json.dump(doc, f)
        return path

    def tid(self, d, tok):
        with open(os.path.join(d.state_dir, "fingerprint.key"), "rb") as f:
            key = f.read()
        return "tw_" + siphash24(key, tok.encode()).hex()

    def metric(self, d, name, **labels):
        v = d.metrics().get_value(name, **labels)
        return None if v is None else int(v)

    def api_token(self, d, tid):
        status, body, _ = d.get("/api/v1/tokens/" + tid)
        self.assertEqual(status, 200, "GET /api/v1/tokens/%s: %s" % (tid, body[:300]))
        return json.loads(body)

    def events(self, d, type_=None, **match):
        out = []
        for e in read_jsonl(d.extra.get("events_file") or os.path.join(d.state_dir, "events.jsonl")):
            if type_ is not None and e.get("type", "anomaly") != type_:
                continue
            if all(e.get(k) == v for k, v in match.items()):
                out.append(e)
        return out

    def anomalies(self, d, tid=None, rule=None):
        return [e for e in self.events(d, "anomaly")
                if (tid is None or e["token_id"] == tid) and (rule is None or e["rule"] == rule)]

    def hold(self, seconds, check, what):
        """Keeps checking for `seconds` that check() stays true (the only way
        to see that something does NOT happen)."""
        end = time.monotonic() + seconds
        while True:
            self.assertTrue(check(), what)
            if time.monotonic() >= end:
                return
            time.sleep(0.05)

    def assert_alive(self, d):
        self.assertTrue(d.running(), "daemon died:\n" + d.stderr_tail())
        self.assertEqual(d.get("/-/healthy")[0], 200)


# ---------------------------------------------------------------------------
# 1. The state directory fills up.

class StateDirFullTest(FaultTestCase):

    TMPFS_KB = 256

    def mount_tmpfs(self, where):
        os.makedirs(where)
        if os.geteuid() != 0:
            self.skipTest("mounting a tmpfs needs root (the CI runs as root)")
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dk,mode=0700" % self.TMPFS_KB,
                            "tmpfs", where], capture_output=True, text=True)
        if p.returncode != 0:
            self.skipTest("cannot mount a tmpfs here (%s)" % p.stderr.strip())

        def umount():
            for d in self.daemons:   # a daemon holding files keeps the mount busy
                d.cleanup()
            if subprocess.run(["umount", where], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", where], capture_output=True)
        self.addCleanup(umount)

    def free_bytes(self, where):
        st = os.statvfs(where)
        return st.f_bavail * st.f_frsize

    def test_state_dir_full(self):
        sd = self.path("state")
        self.mount_tmpfs(sd)
        bl = os.path.join(sd, "baselines.bin")
        rules = self.write_rules([failures_rule()])
        # The events file lives elsewhere: the test is about the state files.
        d = self.daemon([self.input("gw")], state_dir=sd, start=False,
                        extra={"rules_file": rules, "baselines_interval_s": 1,
                               "events_file": self.path("events.jsonl")})
        # Leave about 24 KiB: room for offsets.json, cases.json and the key,
        # not for the baselines of 3,000 tokens (~30 bytes each).
        filler = os.path.join(sd, "filler")
        with open(filler, "wb") as f:
            f.write(b"\0" * (self.free_bytes(sd) - 24 * 1024))
        d.start()
        n1 = 3000
        append(self.input("gw")["path"], b"".join(self.gen.text(user=False) for _ in range(n1)))
        d.expect({"gw": Expect(checks=n1)})

        # Saves fail, loudly: the metric rises, each time, and the log names
        # the file and the reason.
        def failures():
            return self.metric(d, "tokenwatch_state_save_failures_total")
        f0 = wait_until(failures, what="a failed save")
        wait_until(lambda: failures() >= f0 + 2, what="failures counted at every interval")
        err = d.stderr()
        self.assertIn(bl, err)
        self.assertIn("No space left on device", err)
        self.assertRegex(err, r"error: .*baselines")
        self.assertFalse(os.path.exists(bl))
        self.assertFalse(os.path.exists(bl + ".tmp"), "a failed save left its temp file")

        # Ingestion goes on: offsets snapshots still fit and every line counts.
        s0 = self.metric(d, "tokenwatch_state_saves_total")
        n2 = 500
        append(self.input("gw")["path"], b"".join(self.gen.text(user=False) for _ in range(n2)))
        d.expect({"gw": Expect(checks=n1 + n2)})
        wait_until(lambda: self.metric(d, "tokenwatch_state_saves_total") > s0,
                   what="offsets snapshots go on")
        self.assert_alive(d)

        # Space returns: the next save succeeds and failures stop.
        os.unlink(filler)
        wait_until(lambda: os.path.exists(bl) and
                   self.metric(d, "tokenwatch_state_baselines_saved") == n1 + n2,
                   what="baselines.bin written once space returned")
        self.assertEqual(self.metric(d, "tokenwatch_state_baselines_bytes"), os.path.getsize(bl))
        f1 = failures()
        s1 = self.metric(d, "tokenwatch_state_saves_total")
        self.hold(2.5, lambda: failures() == f1, "save failures still rising with space back")
        self.assertGreater(self.metric(d, "tokenwatch_state_saves_total"), s1)

        # The file is valid: a restart loads every baseline from it.
        tok = self.gen.tokens[0]
        tid = self.tid(d, tok)
        d.stop()
        d.start()
        self.assertIn("baselines loaded from %s: %d tokens" % (bl, n1 + n2), d.stderr())
        info = self.api_token(d, tid)
        self.assertEqual((info["tracked"], info["events"]), (True, 1))
        d.expect({"gw": Expect(checks=n1 + n2)})
        d.stop()


# ---------------------------------------------------------------------------
# 2. The input file cannot be read (permissions).

class InputUnreadableTest(FaultTestCase):

    def as_nobody(self):
        """A TW_BIN wrapper that drops root before exec'ing the daemon (root
        reads any file whatever its mode). Installed in twtest for the
        duration of a start: Daemon.start runs twtest.TW_BIN."""
        if os.geteuid() != 0:
            self.skipTest("needs root to run the daemon as nobody")
        setpriv = shutil.which("setpriv")
        if not setpriv:
            self.skipTest("setpriv (util-linux) not installed")
        wrapper = self.path("tw-as-nobody")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\nexec %s --reuid=%d --regid=%d --clear-groups %s \"$@\"\n"
                    % (setpriv, NOBODY, NOBODY, twtest.TW_BIN))
        os.chmod(wrapper, 0o755)
        return wrapper

    def start_with(self, d, binary):
        saved = twtest.TW_BIN
        twtest.TW_BIN = binary
        try:
            d.start()
        finally:
            twtest.TW_BIN = saved

    def test_unreadable_then_readable(self):
        wrapper = self.as_nobody()
        os.chmod(self.tmp, 0o755)   # nobody may search it and watch it (inotify)
        inp = self.input("gw")
        os.makedirs(self.path("run"))
        os.chmod(self.path("run"), 0o777)   # nobody creates its state dir there
        n1 = 40
        append(inp["path"], self.gen.batch("generic-text", n1, 6))
        os.chmod(inp["path"], 0)
        d = self.daemon([inp], start=False)
        self.start_with(d, wrapper)
        with open("/proc/%d/status" % d.proc.pid) as f:
            self.assertRegex(f.read(), r"\nUid:\s+%d\s" % NOBODY, "the daemon is not nobody")

        def open_errors():
            return self.metric(d, "tokenwatch_input_errors_total", input="gw", reason="open")
        e0 = wait_until(open_errors, what="an open error counted")
        # Retried (and counted) at every poll (poll_interval_ms 100).
        wait_until(lambda: open_errors() >= e0 + 3, what="open errors rising")
        d.expect({"gw": Expect()}, hold=0.3)
        for reason in ("read", "stat", "not_regular"):
            self.assertEqual(self.metric(d, "tokenwatch_input_errors_total", input="gw",
                                         reason=reason), 0, reason)
        err = d.stderr()
        self.assertIn("cannot open %s: Permission denied" % inp["path"], err)
        # Rate-limited, not a line per poll.
        self.assertLess(err.count("cannot open"), open_errors())

        # More lines while unreadable, then readable: each line exactly once.
        n2 = 25
        append(inp["path"], self.gen.batch("generic-text", n2, 4))
        os.chmod(inp["path"], 0o644)
        d.expect({"gw": Expect(checks=n1 + n2, rejected=10)}, hold=0.5)
        e1 = open_errors()
        self.hold(0.5, lambda: open_errors() == e1, "open errors still rising once readable")
        n3 = 7
        append(inp["path"], self.gen.batch("generic-text", n3, 1))
        d.expect({"gw": Expect(checks=n1 + n2 + n3, rejected=11)}, hold=0.3)
        d.stop()


# ---------------------------------------------------------------------------
# 3. The GeoIP database is replaced on disk, then SIGHUP.

class GeoReloadTest(FaultTestCase):

    # In the test database 198.51.100.0/27 is New York, 198.51.100.128/27
    # São Paulo; 192.0.2.0/26 is Berlin.
    IP = "198.51.100.5"
    IP2 = "198.51.100.6"
    OTHER = "192.0.2.10"

    def city_of(self, d, tok, ip):
        """One accepted check of tok from ip; returns the API's
        last_location once it shows that check."""
        tid = self.tid(d, tok)
        status, body, _ = d.get("/api/v1/tokens/" + tid)
        before = json.loads(body)["events"] if status == 200 else 0
        append(self.log, self.gen.text(token=tok, ip=ip, user=False))

        def loc():
            info = self.api_token(d, tid)
            return info["last_location"] if info["events"] > before else None
        return wait_until(loc, what="the check from %s in the API" % ip)

    def burst_city(self, d, ip):
        """A new token's 3 rejections from ip: the anomaly's (country, city)."""
        tok = self.gen.token()
        append(self.log, b"".join(self.gen.text(rejected=True, token=tok, ip=ip, user=False)
                                  for _ in range(3)))
        tid = self.tid(d, tok)
        a = wait_until(lambda: self.anomalies(d, tid), what="the burst's anomaly")
        self.assertEqual(len(a), 1)
        return a[0]["country"], a[0]["city"]

    def sighup_and_wait(self, d, text):
        n = d.stderr().count(text)
        d.sighup()
        wait_until(lambda: d.stderr().count(text) > n, what="%r in the log" % text)
        self.assert_alive(d)

    def test_replaced_database_and_sighup(self):
        geo = self.path("geo")
        os.makedirs(geo)
        db = os.path.join(geo, "GeoLite2-City.mmdb")
        shutil.copyfile(CITY_DB, db)
        rules = self.write_rules([failures_rule()])
        inp = self.input("gw")
        self.log = inp["path"]
        d = self.daemon([inp], extra={"rules_file": rules,
                                      "geoip": {"city_db": db, "cache_entries": 1024}})
        tok = self.gen.token()
        loc = self.city_of(d, tok, self.IP)
        self.assertEqual((loc["country"], loc["city"]), ("US", "New York"))
        self.assertEqual(self.burst_city(d, self.IP2), ("US", "New York"))

        # A new release moved into place: the /24's halves swapped, so the
        # address (and its cached answer) now belongs to São Paulo.
        swapped = os.path.join(self.tmp, "swapped.mmdb")
        mmdb_swap_halves(CITY_DB, swapped, "198.51.100")
        with open(swapped, "rb") as f:
            replace_file(db, f.read())
        self.sighup_and_wait(d, "reload: GeoIP database %s" % db)
        self.assertRegex(d.stderr(), r"reload: GeoIP database %s \(GeoLite2-City, built \d+\) "
                         r"opened" % db)
        loc = self.city_of(d, tok, self.IP)
        self.assertEqual((loc["country"], loc["city"], loc["ip"]),
                         ("BR", "São Paulo", self.IP))
        self.assertEqual(self.burst_city(d, self.IP2), ("BR", "São Paulo"))
        self.assertEqual(self.city_of(d, tok, self.OTHER)["city"], "Berlin")

        # A corrupt replacement: refused with an error, the running database
        # stays and answers.
        replace_file(db, b"\x00not a MaxMind DB\xff" * 512)
        self.sighup_and_wait(d, "reload: keeping the running GeoIP databases")
        self.assertRegex(d.stderr(), r"error: reload: keeping the running GeoIP databases: .*%s"
                         % db)
        self.assertEqual(self.city_of(d, tok, self.IP)["city"], "São Paulo")
        self.assertEqual(self.burst_city(d, self.IP2), ("BR", "São Paulo"))

        # A release built by the project's generator (when its Perl writer
        # is installed) with New York's /27 moved to Sydney; it also proves a
        # good file is taken after a refused one.
        if perl_writer_available():
            gen = os.path.join(self.tmp, "gen")
            os.makedirs(gen)
            shutil.copy(os.path.join(GEOIP_DIR, "gen_mmdb.pl"), gen)
            shutil.copy(os.path.join(GEOIP_DIR, "asn.csv"), gen)
            with open(os.path.join(GEOIP_DIR, "cities.csv"), encoding="utf-8") as f:
                rows = f.read().splitlines()
            moved = [r for r in rows if r.startswith("198.51.100.0/27,")]
            self.assertEqual(len(moved), 1)
            rows[rows.index(moved[0])] = ("198.51.100.0/27,Sydney,AU,Australia,-33.8678,151.2073,"
                                          "20,Australia/Sydney,64504,Example Broadband Australia,"
                                          "2147714,residential")
            with open(os.path.join(gen, "cities.csv"), "w", encoding="utf-8") as f:
                f.write("\n".join(rows) + "\n")
            p = subprocess.run(["perl", os.path.join(gen, "gen_mmdb.pl")], capture_output=True,
                               text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            with open(os.path.join(gen, "GeoLite2-City-Test.mmdb"), "rb") as f:
                replace_file(db, f.read())
            self.sighup_and_wait(d, "reload: GeoIP database %s" % db)
            loc = self.city_of(d, tok, self.IP)
            self.assertEqual((loc["country"], loc["city"]), ("AU", "Sydney"))
        else:
            sys.stderr.write("\n(libmaxmind-db-writer-perl not installed: the generator step "
                             "is skipped)\n")
        self.assert_alive(d)
        d.stop()


# ---------------------------------------------------------------------------
# 4. The freeze hook's binary is missing.

HOOK = """#!/bin/sh
# Fixture hook of test_faults.py: records the call, succeeds.
cat > /dev/null
echo "$TOKENWATCH_ACTION $TOKENWATCH_TOKEN_ID" >> "%s"
exit 0
"""


class HookMissingTest(FaultTestCase):

    def test_missing_hook_binary(self):
        hook = self.path("hooks", "freeze")   # neither the file nor its dir exist
        calls = self.path("calls.log")
        rules = self.write_rules([failures_rule(action="freeze")])
        inp = self.input("gw")
        d = self.daemon([inp], extra={
            "rules_file": rules,
            "freeze": {"command": [hook], "max_attempts": 2, "backoff_ms": 50,
                       "backoff_max_ms": 100, "timeout_s": 10}})

        def burst():
            tok = self.gen.token()
            append(inp["path"], b"".join(self.gen.text(rejected=True, token=tok, user=False)
                                         for _ in range(3)))
            return self.tid(d, tok)

        tid1 = burst()
        recs = wait_until(lambda: [r for r in self.events(d, "hook_call", token_id=tid1)
                                   if r["final"]], what="the final hook_call record")
        recs = self.events(d, "hook_call", token_id=tid1)
        self.assertEqual([(r["action"], r["outcome"], r["attempt"], r["final"]) for r in recs],
                         [("freeze", "exec_error", 1, False), ("freeze", "exec_error", 2, True)])
        for r in recs:
            self.assertEqual(r["error"], "No such file or directory")
            self.assertIsNone(r["exit_status"])
        wait_until(lambda: self.metric(d, "tokenwatch_hook_calls_total", action="freeze",
                                       outcome="exec_error") == 2, what="exec_error counted")
        for outcome in ("success", "failure", "timeout"):
            self.assertEqual(self.metric(d, "tokenwatch_hook_calls_total", action="freeze",
                                         outcome=outcome), 0, outcome)
        wait_until(lambda: self.metric(d, "tokenwatch_freeze_total", result="failed") == 1,
                   what="freeze_total{failed} 1")
        self.assertIn("freeze hook for %s: No such file or directory" % tid1, d.stderr())
        info = self.api_token(d, tid1)
        self.assertEqual((info["state"], info["frozen"]), ("flagged", False))
        self.assert_alive(d)
        d.expect({"gw": Expect(checks=3, rejected=3)})

        # Installed afterwards: the next freeze runs it, no restart.
        os.makedirs(os.path.dirname(hook))
        with open(hook + ".tmp", "w") as f:
            f.write(HOOK % calls)
        os.chmod(hook + ".tmp", 0o755)
        os.replace(hook + ".tmp", hook)
        tid2 = burst()
        wait_until(lambda: self.events(d, "hook_call", token_id=tid2, outcome="success"),
                   what="the freeze hook's success")
        with open(calls) as f:
            self.assertEqual(f.read().split(), ["freeze", tid2])
        wait_until(lambda: self.api_token(d, tid2)["state"] == "frozen", what="frozen")
        self.assertEqual(self.metric(d, "tokenwatch_hook_calls_total", action="freeze",
                                     outcome="exec_error"), 2)
        self.assertEqual(self.metric(d, "tokenwatch_tokens_frozen"), 1)
        d.expect({"gw": Expect(checks=6, rejected=6)})
        d.stop()


# ---------------------------------------------------------------------------
# 5. Event timestamps that go backwards or jump a year ahead.

class TimeJumpTest(FaultTestCase):

    BERLIN = "192.0.2.10"
    NEW_YORK = "198.51.100.5"

    def start_geo(self, rules, **kw):
        inp = self.input("gw")
        self.log = inp["path"]
        extra = {"rules_file": self.write_rules(rules, **kw),
                 "geoip": {"city_db": CITY_DB}}
        return self.daemon([inp], extra=extra)

    def line(self, tok, t, ip=BERLIN, rejected=False):
        return self.gen.text(token=tok, ip=ip, rejected=rejected, user=False,
                             stamp=utc_stamp(t=t))

    def feed(self, d, lines):
        """Appends lines, then a sentinel: a fresh token's failure burst.
        Events are written in line order, so once the sentinel's anomaly is
        in the events file every anomaly of the lines before it is too (the
        counters alone are published a moment before the events are
        flushed). Every rule set here has failure_burst for that."""
        sentinel = self.gen.token()
        tail = [self.line(sentinel, time.time(), rejected=True) for _ in range(3)]
        before = self.metric(d, "auth_token_check", input="gw")
        append(self.log, b"".join(lines + tail))
        tid = self.tid(d, sentinel)
        wait_until(lambda: self.anomalies(d, tid, "failure_burst"), what="the sentinel's anomaly")
        self.assertEqual(self.metric(d, "auth_token_check", input="gw"),
                         before + len(lines) + len(tail))

    def assert_sane(self, info, events, first=None):
        self.assertEqual(info["events"], events)
        self.assertLessEqual(info["first_seen"], info["last_seen"])   # RFC 3339, UTC: sortable
        if first is not None:
            self.assertEqual(info["first_seen"], utc_stamp(t=first))

    def assert_durations(self, d):
        for a in self.anomalies(d):
            ev = a["evidence"]
            if a["kind"] == "geo_velocity":
                self.assertGreaterEqual(ev["hours"], 0, a)
                self.assertGreaterEqual(ev["kmh"], 0, a)
            for k, v in ev.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.assertGreaterEqual(v, 0, "%s: %s < 0 in %s" % (a["rule"], k, a))

    def test_backwards(self):
        """Stamps from before the last one (two sources, clock skew): no
        negative travel time, the API's numbers sane, and a burst stamped in
        the past is still one burst, reported once."""
        d = self.start_geo([failures_rule(),
                            {"id": "impossible_travel", "kind": "geo_velocity",
                             "severity": "critical", "action": "flag"}])
        t0 = int(time.time()) - 600
        tok = self.gen.token()
        self.feed(d, [self.line(tok, t0), self.line(tok, t0 - 3 * 3600, ip=self.NEW_YORK)])
        tid = self.tid(d, tok)
        travel = self.anomalies(d, tid, "impossible_travel")
        self.assertEqual(len(travel), 1, "Berlin -> New York in no time is impossible travel")
        self.assertEqual(travel[0]["evidence"]["hours"], 0)
        self.assert_sane(self.api_token(d, tid), 2, first=t0)

        # A burst stamped an hour before the token's last use.
        self.feed(d, [self.line(tok, t0 - 3600 + i, ip=self.NEW_YORK, rejected=True)
                      for i in range(5)])
        self.assertEqual(len(self.anomalies(d, tid, "failure_burst")), 1)
        info = self.api_token(d, tid)
        self.assert_sane(info, 7, first=t0)
        self.assertEqual(info["last_seen"], utc_stamp(t=t0))
        self.assert_durations(d)
        self.assert_alive(d)
        d.stop()

    def test_year_ahead_and_back_no_crash(self):
        """One line a year ahead, then back to now: no crash, no negative
        number in any event, first_seen <= last_seen, and exact counts: the
        future-stamped checks are counted in auth_token_check and in
        tokenwatch_future_stamps_total, and not judged (the token's event
        count in the API leaves them out), before and after a restart."""
        d = self.start_geo([failures_rule(),
                            {"id": "impossible_travel", "kind": "geo_velocity",
                             "severity": "critical", "action": "flag"}])
        self.assertEqual(self.metric(d, "tokenwatch_future_stamps_total", input="gw"), 0)
        t0 = int(time.time()) - 600
        tok = self.gen.token()
        lines = [self.line(tok, t0), self.line(tok, t0 + YEAR_S, ip=self.NEW_YORK)]
        lines += [self.line(tok, t0 + 60 + i) for i in range(5)]
        lines += [self.line(tok, t0 + 120 + i, ip=self.NEW_YORK, rejected=True) for i in range(3)]
        self.feed(d, lines)
        tid = self.tid(d, tok)
        self.assert_sane(self.api_token(d, tid), 9, first=t0)
        self.assertEqual(self.anomalies(d, tid, "impossible_travel"), [])
        self.assert_durations(d)
        # A token first seen a year ahead, then now: first seen now.
        tok2 = self.gen.token()
        self.feed(d, [self.line(tok2, t0 + YEAR_S)] + [self.line(tok2, t0 + i) for i in range(4)])
        tid2 = self.tid(d, tok2)
        self.assert_sane(self.api_token(d, tid2), 4, first=t0)
        self.assertEqual(self.metric(d, "tokenwatch_future_stamps_total", input="gw"), 2)
        self.assertIn("ahead of this host's clock is not judged", d.stderr())
        d.restart()
        self.assert_sane(self.api_token(d, tid), 9, first=t0)
        self.assert_sane(self.api_token(d, tid2), 4, first=t0)
        self.assert_alive(d)
        d.stop()

    def jump_then_pattern(self, d, jump):
        """One token's story in event time from t0: a use (and, with jump, a
        use stamped a year ahead), then rejections 10 minutes apart (no
        burst in a 60 s window), then two real bursts two hours apart.
        Returns the token id."""
        t0 = int(time.time()) - 6 * 3600
        tok = self.gen.token()
        lines = [self.line(tok, t0)]
        if jump:
            lines.append(self.line(tok, t0 + YEAR_S))
        lines += [self.line(tok, t0 + 60)]
        lines += [self.line(tok, t0 + 600 * k, rejected=True) for k in range(1, 4)]
        lines += [self.line(tok, t0 + 3600 + i, rejected=True) for i in range(5)]
        lines += [self.line(tok, t0 + 3 * 3600 + i, rejected=True) for i in range(5)]
        self.feed(d, lines)
        return self.tid(d, tok)

    def test_year_ahead_and_back_windows(self):
        """A token whose log once carried a stamp a year ahead must be judged
        like any other afterwards: sparse rejections are no burst, and two
        real bursts two hours apart (cooldown 1 h) are two anomalies, each
        reported exactly once — as for a control token without the jump.

        Were the future stamp judged, every later event of that token would
        be clamped to it (baseline.h: "an event older than the last one seen
        is treated as happening at the last time"), its windows would stop
        moving for a year: the sparse rejections would pile up into a false
        burst, and the cooldown set at the future time would silence every
        real burst after it. The daemon does not judge checks stamped more
        than 15 minutes ahead of its clock (pipeline.h)."""
        d = self.start_geo([failures_rule()])
        control = self.jump_then_pattern(d, jump=False)
        jumped = self.jump_then_pattern(d, jump=True)
        ctl = [a["time"] for a in self.anomalies(d, control)]
        self.assertEqual(len(ctl), 2, "the control token's two bursts: %s" % ctl)
        got = [a["time"] for a in self.anomalies(d, jumped)]
        self.assertEqual(len(got), 2, "anomalies of the token after its year jump: %s" % got)
        self.assert_alive(d)
        d.stop()

    def test_year_ahead_and_back_rate(self):
        """One use a minute for 40 minutes is far below a 20-per-minute
        ceiling, with or without an earlier stamp a year ahead. Were that
        stamp judged, the clamped token's rate window would never close, and
        a year between its first and last stamps would end its learning
        period at once: rate_spike once the window held more than min_count
        (30) uses."""
        d = self.start_geo([{"id": "rate_spike", "kind": "rate", "severity": "high",
                             "action": "flag", "window_s": 60, "ceiling": 20},
                            failures_rule()])
        t0 = int(time.time()) - 3600
        toks = {}
        for jump in (False, True):
            tok = self.gen.token()
            lines = [self.line(tok, t0)]
            if jump:
                lines.append(self.line(tok, t0 + YEAR_S))
            lines += [self.line(tok, t0 + 60 * k) for k in range(1, 41)]
            self.feed(d, lines)
            toks[jump] = self.tid(d, tok)
        self.assertEqual(self.anomalies(d, toks[False]), [])
        self.assertEqual([a["rule"] for a in self.anomalies(d, toks[True])], [])
        d.stop()


if __name__ == "__main__":
    twtest.main()
