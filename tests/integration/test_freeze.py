"""
test_freeze.py — the freeze hook, the token lifecycle and the state files
against the real daemon (issue 4 point 8; DESIGN.md "Freeze hook", "Files").

The hook is a small /bin/sh fixture written into each test's temp dir and
exec'd by the daemon directly (argv: the script and its record dir). Each
call records what it got under that dir — its stdin (stdin.PID), its
/proc/PID/cmdline and /proc/PID/environ, and one line
"ACTION TOKEN_ID PID MODE" in calls.log — and then behaves as the file
"mode" says:
  ok          exit 0
  fail-first  the first call per token id exits 3 (with a stderr line), the
              next ones exit 0
  hang        writes hang.PID, starts a grandchild that ignores SIGTERM
              (its pid in grandchild.PID) and sleeps "forever"
  slow        waits until the file "release" exists, then exits 0

What the tests check (each names its point of the brief):
  1. one freeze call per token, more anomalies while frozen call nothing;
  2. a failed attempt is retried with backoff and both are recorded;
  3. a hook past its timeout is killed with its whole process group
     (a grandchild that ignores SIGTERM included);
  4. a flood larger than the queue is dropped, counted and recorded, and
     never holds ingestion up;
  5. the circuit breaker opens, suppresses (records, metric) and closes;
  6. hostile token values reach the hook only as valid JSON on stdin;
  7. kill -9 in every lifecycle state, then restart;
  8. corrupt, truncated and newer state files stop the start (exit 1) unless
     --discard-state moves them aside;
  9. learned baselines survive a restart;
 10. the freeze TTL expires through the unfreeze hook and escalates;
 11. dry_run runs nothing and records what it would have run.

Token ids are computed here as the daemon does (tokenid.h: SipHash-2-4 of
the raw token under state_dir/fingerprint.key, printed big-endian), so each
test knows which id belongs to which of its tokens.
"""

import json
import os
import signal
import stat
import struct
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request

sys.dont_write_bytecode = True   # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twtest  # noqa: E402
from twtest import Expect, append, wait_until  # noqa: E402

# ---------------------------------------------------------------------------
# Fixtures.

HOOK_SCRIPT = r"""#!/bin/sh
# Fixture hook of test_freeze.py (generated). $1: the record dir.
d=$1
me=$$
cat > "$d/stdin.$me"
cat /proc/$me/cmdline > "$d/cmdline.$me"
cat /proc/$me/environ > "$d/environ.$me"
mode=$(cat "$d/mode" 2>/dev/null)
echo "$TOKENWATCH_ACTION $TOKENWATCH_TOKEN_ID $me $mode" >> "$d/calls.log"
case "$mode" in
ok)
    exit 0 ;;
fail-first)
    if [ -e "$d/failed.$TOKENWATCH_TOKEN_ID" ]; then exit 0; fi
    : > "$d/failed.$TOKENWATCH_TOKEN_ID"
    echo "fixture hook: first attempt fails" >&2
    exit 3 ;;
hang)
    (trap '' TERM; exec sleep 120) &
    echo $! > "$d/grandchild.$me"
    echo $me > "$d/hang.$me"
    exec sleep 120 ;;
slow)
    i=0
    while [ ! -e "$d/release" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
    exit 0 ;;
*)
    echo "fixture hook: unknown mode '$mode'" >&2
    exit 2 ;;
esac
"""

RULE_ID = "failure_burst"


def rules_doc(action="freeze", learning=None):
    """One rule: a token's third rejection in 300 s is an anomaly, and with
    cooldown_s 0 so is every further one (one event per rejection)."""
    doc = {"cooldown_s": 0,
           "rules": [{"id": RULE_ID, "kind": "failures", "scope": "token",
                      "severity": "high", "action": action, "window_s": 300,
                      "min_rejected": 3, "min_ratio": 0.5}]}
    if learning is not None:
        doc["learning"] = learning
    return doc


def _rotl(x, b):
    return ((x << b) | (x >> (64 - b))) & 0xFFFFFFFFFFFFFFFF


def siphash24(key, data):
    """SipHash-2-4 (libsodium crypto_shorthash): 8 bytes, little-endian."""
    mask = 0xFFFFFFFFFFFFFFFF
    k0, k1 = struct.unpack("<QQ", key)
    v0 = k0 ^ 0x736F6D6570736575
    v1 = k1 ^ 0x646F72616E646F6D
    v2 = k0 ^ 0x6C7967656E657261
    v3 = k1 ^ 0x7465646279746573

    def rounds(n):
        nonlocal v0, v1, v2, v3
        for _ in range(n):
            v0 = (v0 + v1) & mask
            v1 = _rotl(v1, 13) ^ v0
            v0 = _rotl(v0, 32)
            v2 = (v2 + v3) & mask
            v3 = _rotl(v3, 16) ^ v2
            v0 = (v0 + v3) & mask
            v3 = _rotl(v3, 21) ^ v0
            v2 = (v2 + v1) & mask
            v1 = _rotl(v1, 17) ^ v2
            v2 = _rotl(v2, 32)

    tail = len(data) % 8
    for i in range(0, len(data) - tail, 8):
        m = struct.unpack_from("<Q", data, i)[0]
        v3 ^= m
        rounds(2)
        v0 ^= m
    last = (len(data) & 0xFF) << 56
    for i, byte in enumerate(data[len(data) - tail:]):
        last |= byte << (8 * i)
    v3 ^= last
    rounds(2)
    v0 ^= last
    v2 ^= 0xFF
    rounds(4)
    return struct.pack("<Q", v0 ^ v1 ^ v2 ^ v3)


def alive(pid):
    """True while pid is a process that has not exited (a zombie is dead)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return fields[0] != "Z"


def read_jsonl(path):
    """The complete JSON lines of a file ([] when it does not exist)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")[:-1]   # a trailing partial line is not read yet
    return [json.loads(line) for line in lines if line.strip()]


class Hook:
    """The fixture hook's record dir."""

    def __init__(self, root):
        self.dir = os.path.join(root, "hook")
        os.makedirs(self.dir)
        self.script = os.path.join(root, "hook.sh")
        with open(self.script, "w") as f:
            f.write(HOOK_SCRIPT)
        os.chmod(self.script, stat.S_IRWXU)
        self.set_mode("ok")

    def argv(self):
        return [self.script, self.dir]

    def set_mode(self, mode):
        tmp = os.path.join(self.dir, "mode.tmp")
        with open(tmp, "w") as f:
            f.write(mode + "\n")
        os.replace(tmp, os.path.join(self.dir, "mode"))

    def release(self):
        open(os.path.join(self.dir, "release"), "w").close()

    def calls(self):
        """[(action, token_id, pid, mode)] in call order."""
        try:
            with open(os.path.join(self.dir, "calls.log")) as f:
                rows = [line.split() for line in f.read().splitlines()]
        except FileNotFoundError:
            return []
        return [(r[0], r[1], int(r[2]), r[3] if len(r) > 3 else "") for r in rows]

    def calls_of(self, tid, action=None):
        return [c for c in self.calls() if c[1] == tid and (action is None or c[0] == action)]

    def _read(self, name, pid):
        with open(os.path.join(self.dir, "%s.%d" % (name, pid)), "rb") as f:
            return f.read()

    def stdin(self, pid):
        return self._read("stdin", pid)

    def stdin_json(self, pid):
        return json.loads(self._read("stdin", pid))   # bytes: strict UTF-8

    def cmdline(self, pid):
        return self._read("cmdline", pid)

    def environ(self, pid):
        env = {}
        for item in self._read("environ", pid).split(b"\0"):
            if b"=" in item:
                k, v = item.split(b"=", 1)
                env[k.decode()] = v
        return env

    def pid_file(self, kind, pid=None):
        """The pid in the newest (or the given call's) hang/grandchild file."""
        names = sorted((n for n in os.listdir(self.dir) if n.startswith(kind + ".")),
                       key=lambda n: os.stat(os.path.join(self.dir, n)).st_mtime)
        if pid is not None:
            names = [n for n in names if n == "%s.%d" % (kind, pid)]
        for n in reversed(names):
            with open(os.path.join(self.dir, n)) as f:
                text = f.read().strip()
            if text:
                return int(text)
        return None

    def kill_leftovers(self):
        """Kills every hanging hook's process group (the daemon's SIGKILL
        leaves them orphaned; so may a failed test)."""
        for name in os.listdir(self.dir):
            if not (name.startswith("hang.") or name.startswith("grandchild.")):
                continue
            with open(os.path.join(self.dir, name)) as f:
                text = f.read().strip()
            if not text:
                continue
            pid = int(text)
            if not alive(pid):
                continue
            try:
                with open("/proc/%d/comm" % pid) as f:
                    if f.read().strip() != "sleep":   # not ours any more
                        continue
                if name.startswith("hang."):
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass


# ---------------------------------------------------------------------------
# Test base.

class FreezeTestCase(twtest.TwTestCase):

    def setUp(self):
        super().setUp()
        self.hook = Hook(self.tmp)
        self.addCleanup(self._kill_hooks)
        self.rules_path = self.path("rules.json")
        self.write_rules()

    def _kill_hooks(self):
        # The daemons first (twtest kills them again, harmlessly), so that no
        # hook starts after the sweep.
        for d in self.daemons:
            d.cleanup()
        self.hook.kill_leftovers()

    def write_rules(self, **kw):
        with open(self.rules_path, "w") as f:
            json.dump(rules_doc(**kw), f)

    # -- the daemon ----------------------------------------------------------
    def freeze_conf(self, **over):
        conf = {"command": self.hook.argv(), "timeout_s": 10, "max_attempts": 1,
                "backoff_ms": 50, "backoff_max_ms": 200}
        conf.update(over)
        return {k: v for k, v in conf.items() if v is not None}

    def start(self, freeze=None, unfreeze=False, fmt="generic-text", extra=None, start=True):
        cfg = {"rules_file": self.rules_path}
        if freeze is not False:
            cfg["freeze"] = freeze if freeze is not None else self.freeze_conf()
        if unfreeze:
            cfg["unfreeze"] = {"command": self.hook.argv()}
        cfg.update(extra or {})
        self.log = self.path("gw.log")
        return self.daemon([self.input("gw", fmt=fmt)], extra=cfg, start=start)

    # -- inputs --------------------------------------------------------------
    def burst(self, tok, n=3, log=None):
        """n rejections of tok (generic-text), in one append."""
        append(log or self.log,
               b"".join(self.gen.text(rejected=True, token=tok) for _ in range(n)))

    def tid(self, d, tok):
        """The token id the daemon gives tok (str or raw bytes)."""
        with open(os.path.join(d.state_dir, "fingerprint.key"), "rb") as f:
            key = f.read()
        raw = tok if isinstance(tok, bytes) else tok.encode()
        return "tw_" + siphash24(key, raw).hex()

    # -- outputs -------------------------------------------------------------
    def events(self, d, type_=None, **match):
        out = []
        for e in read_jsonl(os.path.join(d.state_dir, "events.jsonl")):
            if type_ is not None and e.get("type", "anomaly") != type_:
                continue
            if all(e.get(k) == v for k, v in match.items()):
                out.append(e)
        return out

    def anomalies(self, d, tid):
        return [e for e in self.events(d) if "type" not in e and e.get("token_id") == tid]

    def hook_calls(self, d, tid=None, **match):
        if tid is not None:
            match["token_id"] = tid
        return self.events(d, "hook_call", **match)

    def cases(self, d):
        """{token_id: case} from state_dir/cases.json ({} before it exists)."""
        try:
            with open(os.path.join(d.state_dir, "cases.json"), "rb") as f:
                doc = json.loads(f.read())
        except FileNotFoundError:
            return {}
        return {c["token_id"]: c for c in doc["cases"]}

    def metric(self, d, name, **labels):
        v = d.metrics().get_value(name, **labels)
        return None if v is None else int(v)

    def api(self, d, path):
        status, body, _ = d.get(path)
        self.assertEqual(status, 200, "GET %s: %s" % (path, body[:300]))
        return json.loads(body)

    def api_state(self, d, tid):
        return self.api(d, "/api/v1/tokens/" + tid)["state"]

    def post(self, d, path, body):
        req = urllib.request.Request(d.url(path), data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"},
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def wait_state(self, d, tid, state, on_disk=False, timeout=twtest.DEFAULT_TIMEOUT):
        """Waits until the API (and, with on_disk, cases.json) shows state."""
        wait_until(lambda: self.api_state(d, tid) == state, timeout,
                   what="%s in state %s (API)" % (tid, state))
        if on_disk:
            wait_until(lambda: self.cases(d).get(tid, {}).get("state") == state, timeout,
                       what="%s in state %s in cases.json" % (tid, state))

    def hold(self, seconds, check, what):
        """Keeps checking for `seconds` that check() stays true: the only way
        to see that something does NOT happen (twtest's "hold" windows)."""
        end = time.monotonic() + seconds
        while True:
            self.assertTrue(check(), what)
            if time.monotonic() >= end:
                return
            time.sleep(0.05)

    def assert_no_secret(self, data, secret, where):
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        if isinstance(secret, str):
            secret = secret.encode()
        self.assertNotIn(secret, data, "raw token found in %s" % where)

    def state_files_clean(self, d, secrets):
        """No raw token in the events file or any state file."""
        for name in ("events.jsonl", "cases.json", "baselines.bin", "offsets.json"):
            p = os.path.join(d.state_dir, name)
            if os.path.exists(p):
                with open(p, "rb") as f:
                    data = f.read()
                for s in secrets:
                    self.assert_no_secret(data, s, name)


# ---------------------------------------------------------------------------
# 1, 2, 3: a hook's outcomes.

class HookOutcomeTest(FreezeTestCase):

    def test_1_freezes_exactly_once(self):
        d = self.start()
        tok = self.gen.token()
        self.burst(tok)
        tid = self.tid(d, tok)
        wait_until(lambda: self.hook_calls(d, tid, outcome="success"), what="freeze success")
        self.wait_state(d, tid, "frozen")

        # More bursts while frozen: more anomaly events, no more calls.
        self.burst(tok)
        self.burst(tok)
        wait_until(lambda: len(self.anomalies(d, tid)) == 7, what="7 anomaly events")
        self.hold(1.0, lambda: len(self.hook.calls()) == 1, "a frozen token was frozen again")
        self.assertEqual(len(self.hook_calls(d)), 1)

        self.assertEqual(self.metric(d, "tokenwatch_tokens_frozen"), 1)
        self.assertEqual(self.metric(d, "tokenwatch_freeze_total", result="ok"), 1)
        self.assertEqual(self.metric(d, "tokenwatch_hook_calls_total", action="freeze",
                                     outcome="success"), 1)
        for outcome in ("failure", "timeout", "exec_error", "dropped"):
            self.assertEqual(self.metric(d, "tokenwatch_hook_calls_total", action="freeze",
                                         outcome=outcome), 0, outcome)
        self.assertEqual(self.metric(d, "tokenwatch_freeze_queue_depth"), 0)

        info = self.api(d, "/api/v1/tokens/" + tid)
        self.assertEqual((info["state"], info["frozen"], info["freezes"]), ("frozen", True, 1))
        self.assertIn("frozen", [h["action"] for h in info["history"]])
        items = self.api(d, "/api/v1/flagged?state=frozen")["items"]
        self.assertEqual([(i["token_id"], i["frozen"]) for i in items], [(tid, True)])

        rec = self.hook_calls(d, tid)[0]
        self.assertEqual((rec["action"], rec["rule"], rec["outcome"], rec["attempt"],
                          rec["final"], rec["exit_status"], rec["signal"]),
                         ("freeze", RULE_ID, "success", 1, True, 0, None))
        self.assertIsInstance(rec["duration_s"], (int, float))

        # What the hook got: the anomaly event + action + reason, no token.
        (action, call_tid, pid, _), = self.hook.calls()
        self.assertEqual((action, call_tid), ("freeze", tid))
        job = self.hook.stdin_json(pid)
        first = self.anomalies(d, tid)[0]
        self.assertEqual((job["action"], job["reason"], job["token_id"], job["rule"]),
                         ("freeze", "rule", tid, RULE_ID))
        self.assertEqual(job["evidence"], first["evidence"])
        self.assertNotIn("token", job)
        env = self.hook.environ(pid)
        self.assertEqual((env.get("TOKENWATCH_ACTION"), env.get("TOKENWATCH_TOKEN_ID"),
                          env.get("TOKENWATCH_RULE")),
                         (b"freeze", tid.encode(), RULE_ID.encode()))
        self.assertEqual(self.hook.cmdline(pid).split(b"\0")[-3:-1],
                         [self.hook.script.encode(), self.hook.dir.encode()])
        for where, data in (("stdin", self.hook.stdin(pid)), ("argv", self.hook.cmdline(pid)),
                            ("environ", b"\0".join(env.values()))):
            self.assert_no_secret(data, tok, "the hook's " + where)
        d.stop()
        self.state_files_clean(d, [tok])

    def test_2_fails_then_succeeds(self):
        self.hook.set_mode("fail-first")
        d = self.start(self.freeze_conf(max_attempts=3, backoff_ms=50, backoff_max_ms=100))
        tok = self.gen.token()
        self.burst(tok)
        tid = self.tid(d, tok)
        wait_until(lambda: len(self.hook_calls(d, tid)) == 2, what="two attempts recorded")
        self.wait_state(d, tid, "frozen")
        first, second = self.hook_calls(d, tid)
        self.assertEqual((first["attempt"], first["outcome"], first["final"],
                          first["exit_status"]), (1, "failure", False, 3))
        self.assertIn("first attempt fails", first["stderr"])
        self.assertGreaterEqual(first["retry_in_ms"], 25)   # jitter in [d/2, d], d = 50
        self.assertLessEqual(first["retry_in_ms"], 50)
        self.assertEqual((second["attempt"], second["outcome"], second["final"],
                          second["exit_status"]), (2, "success", True, 0))
        self.assertEqual([c[:2] for c in self.hook.calls()], [("freeze", tid)] * 2)
        self.assertEqual(self.metric(d, "tokenwatch_hook_calls_total", action="freeze",
                                     outcome="failure"), 1)
        self.assertEqual(self.metric(d, "tokenwatch_hook_calls_total", action="freeze",
                                     outcome="success"), 1)
        self.assertEqual(self.metric(d, "tokenwatch_freeze_total", result="ok"), 1)
        self.assertEqual(self.metric(d, "tokenwatch_freeze_total", result="failed"), 0)
        self.assertEqual(self.metric(d, "tokenwatch_tokens_frozen"), 1)
        d.stop()

    def test_3_hang_past_timeout_kills_the_group(self):
        self.hook.set_mode("hang")
        d = self.start(self.freeze_conf(timeout_s=1, max_attempts=1))
        tok = self.gen.token()
        self.burst(tok)
        tid = self.tid(d, tok)
        wait_until(lambda: self.hook.pid_file("grandchild"), what="the hook's grandchild")
        leader = self.hook.pid_file("hang")
        grandchild = self.hook.pid_file("grandchild")
        self.assertTrue(alive(grandchild))
        self.wait_state(d, tid, "freezing")
        wait_until(lambda: self.hook_calls(d, tid), what="the timeout record")
        rec, = self.hook_calls(d, tid)
        self.assertEqual((rec["outcome"], rec["attempt"], rec["final"], rec["exit_status"]),
                         ("timeout", 1, True, None))
        self.assertIsNotNone(rec["signal"])
        self.assertGreaterEqual(rec["duration_s"], 1.0)
        # The whole group: the leader and the grandchild that ignores SIGTERM.
        wait_until(lambda: not alive(leader), what="the hook (leader) dead")
        wait_until(lambda: not alive(grandchild), what="the grandchild dead")
        self.wait_state(d, tid, "flagged")
        info = self.api(d, "/api/v1/tokens/" + tid)
        self.assertFalse(info["frozen"])
        self.assertIn("freeze_failed", [h["action"] for h in info["history"]])
        self.assertEqual(self.metric(d, "tokenwatch_freeze_total", result="timeout"), 1)
        self.assertEqual(self.metric(d, "tokenwatch_hook_calls_total", action="freeze",
                                     outcome="timeout"), 1)
        self.assertEqual(self.metric(d, "tokenwatch_tokens_frozen"), 0)
        self.assertEqual(len(self.hook.calls()), 1)
        d.stop()


# ---------------------------------------------------------------------------
# 4, 5: the queue and the breaker.

class SafetyRailTest(FreezeTestCase):

    def test_4_flood_larger_than_the_queue(self):
        self.hook.set_mode("slow")
        d = self.start(self.freeze_conf(concurrency=1, queue_size=2, max_per_minute=100))
        toks = [self.gen.token() for _ in range(8)]
        append(self.log, b"".join(self.gen.text(rejected=True, token=t)
                                  for t in toks for _ in range(3)))
        tids = [self.tid(d, t) for t in toks]
        # Every line is counted, and 6 drops recorded, while the first hook
        # is still running (it waits for "release").
        d.expect({"gw": Expect(checks=24, rejected=24)})
        wait_until(lambda: len(self.hook_calls(d, outcome="dropped")) == 6,
                   what="6 dropped records")
        wait_until(lambda: self.hook.calls(), what="the first hook running")
        self.assertEqual([c[1] for c in self.hook.calls()], [tids[0]])
        self.assertTrue(alive(self.hook.calls()[0][2]), "the first hook ended before release")
        m = d.metrics()
        self.assertEqual(m.get_value("tokenwatch_freeze_total", result="dropped"), 6)
        self.assertEqual(m.get_value("tokenwatch_hook_calls_total", action="freeze",
                                     outcome="dropped"), 6)
        self.assertEqual(m.get_value("tokenwatch_freeze_queue_depth"), 2)
        dropped = self.hook_calls(d, outcome="dropped")
        self.assertEqual(sorted(r["token_id"] for r in dropped), sorted(tids[2:]))
        self.assertTrue(all(r["final"] and r["action"] == "freeze" for r in dropped))
        self.assertEqual(self.api_state(d, tids[5]), "flagged")

        self.hook.release()
        wait_until(lambda: len(self.hook_calls(d, outcome="success")) == 2,
                   what="both accepted freezes done")
        self.assertEqual([c[1] for c in self.hook.calls()], tids[:2])
        wait_until(lambda: self.metric(d, "tokenwatch_tokens_frozen") == 2, what="2 frozen")
        self.assertEqual(self.metric(d, "tokenwatch_freeze_total", result="ok"), 2)
        self.assertEqual(self.metric(d, "tokenwatch_freeze_queue_depth"), 0)
        d.stop()

    def test_5_breaker_opens_and_closes(self):
        window = 2
        d = self.start(self.freeze_conf(max_per_minute=3, circuit_window_s=window))
        toks = [self.gen.token() for _ in range(5)]
        t0 = time.monotonic()
        append(self.log, b"".join(self.gen.text(rejected=True, token=t)
                                  for t in toks for _ in range(3)))
        tids = [self.tid(d, t) for t in toks]
        wait_until(lambda: len(self.events(d, "freeze_suppressed")) == 2,
                   what="2 freeze_suppressed records")
        m = d.metrics()
        if time.monotonic() - t0 < window:
            # Admitted after t0: the window cannot have cleared yet.
            self.assertEqual(m.get_value("tokenwatch_freeze_circuit_open"), 1)
        else:
            sys.stderr.write("(test_5: too slow to see the breaker open in its %d s window)\n"
                             % window)
        self.assertEqual(m.get_value("tokenwatch_freeze_total", result="suppressed"), 2)
        sup = self.events(d, "freeze_suppressed")
        self.assertEqual([r["token_id"] for r in sup], tids[3:])
        self.assertTrue(all(r["reason"] == "circuit_open" and r["rule"] == RULE_ID
                            for r in sup))
        wait_until(lambda: len(self.hook_calls(d, outcome="success")) == 3, what="3 frozen")
        self.assertEqual(sorted(c[1] for c in self.hook.calls()), sorted(tids[:3]))
        for tid in tids[3:]:
            info = self.api(d, "/api/v1/tokens/" + tid)
            self.assertEqual((info["state"], info["frozen"]), ("flagged", False))

        # The window clears: the breaker closes, a new token is frozen.
        wait_until(lambda: self.metric(d, "tokenwatch_freeze_circuit_open") == 0,
                   timeout=window + 10, what="breaker closed")
        self.assertFalse(self.api(d, "/api/v1/stats")["freeze_circuit_open"])
        tok = self.gen.token()
        self.burst(tok)
        tid = self.tid(d, tok)
        wait_until(lambda: self.hook_calls(d, tid, outcome="success"), what="new token frozen")
        self.wait_state(d, tid, "frozen")
        self.assertEqual(self.metric(d, "tokenwatch_tokens_frozen"), 4)
        self.assertEqual(self.metric(d, "tokenwatch_freeze_total", result="suppressed"), 2)
        d.stop()


# ---------------------------------------------------------------------------
# 6: hostile token values.

class HostileTokenTest(FreezeTestCase):

    def test_6_hostile_tokens_reach_the_hook_only_as_json(self):
        d = self.start(self.freeze_conf(pass_token=True, max_per_minute=100),
                       fmt="generic-json")
        pwned = [self.path("pwned%d" % i) for i in range(3)]
        payloads = [
            'quote"in"side',
            'back\\slash\\\\end\\',
            "$(touch %s)" % pwned[0],
            "`touch %s`" % pwned[1],
            "a; touch %s; b" % pwned[2],
            "line one\nline two\r\n",
            "x" * 10240,
            "tab\there\x01ctl",
        ]
        toks = []   # (raw bytes, expected JSON string value, marker)
        for i, p in enumerate(payloads):
            marker = "hm%d%s" % (i, os.urandom(6).hex())
            s = "%s-%s-end" % (marker, p)
            toks.append((s.encode(), s, marker))
        # Invalid UTF-8, raw in the log line: each bad sequence becomes U+FFFD.
        marker = "hm9" + os.urandom(6).hex()
        raw = marker.encode() + b"-\xff-\xfe-\xc3(-\xed\xa0\x80-\x80-end"
        toks.append((raw, raw.decode("utf-8", "replace"), marker))
        for _, _, mk in toks:
            self.gen.tokens.append(mk)   # the harness checks stderr for it

        lines = []
        for i, (rawtok, value, _) in enumerate(toks):
            for _ in range(3):
                if i < len(payloads):
                    obj = {"time": twtest.utc_stamp(ms=True), "client": {"ip": "10.9.0.%d" % i},
                           "auth": {"token": value}, "result": "rejected"}
                    lines.append(json.dumps(obj).encode() + b"\n")
                else:
                    lines.append(b'{"time":"' + twtest.utc_stamp(ms=True).encode() +
                                 b'","client":{"ip":"10.9.0.99"},"auth":{"token":"' + rawtok +
                                 b'"},"result":"rejected"}\n')
        append(self.log, b"".join(lines))
        n = len(toks)
        d.expect({"gw": Expect(checks=3 * n, rejected=3 * n)})
        wait_until(lambda: len(self.hook_calls(d, outcome="success")) == n,
                   what="%d freezes" % n)
        calls = {c[1]: c for c in self.hook.calls()}
        self.assertEqual(len(calls), n)
        for rawtok, value, mk in toks:
            tid = self.tid(d, rawtok)
            self.assertIn(tid, calls, "no freeze call for the token marked %s" % mk)
            pid = calls[tid][2]
            job = self.hook.stdin_json(pid)   # raises unless valid UTF-8 JSON
            self.assertEqual(job["token"], value, mk)
            self.assertEqual((job["token_id"], job["action"]), (tid, "freeze"))
            self.assertEqual(self.hook.stdin(pid).count(b"\n"), 1, "one line of JSON")
            self.assertNotIn(mk.encode(), self.hook.cmdline(pid), mk)
            env = self.hook.environ(pid)
            for k, v in env.items():
                self.assertNotIn(mk.encode(), v, "%s in %s" % (mk, k))
            self.assertEqual(env["TOKENWATCH_TOKEN_ID"], tid.encode())
        # Nothing ran any of it; no file holds it.
        self.hold(0.5, lambda: not any(os.path.exists(p) for p in pwned),
                  "a token value was run by a shell")
        with open(self.log, "rb") as f:
            log_size = len(f.read())
        self.assertGreater(log_size, 30000)   # the 10 KB token was in it, 3 times
        d.stop()
        self.state_files_clean(d, [mk for _, _, mk in toks])


# ---------------------------------------------------------------------------
# 7: kill -9 in each lifecycle state, then restart.

class KillRestartTest(FreezeTestCase):

    def settle(self, d):
        """Waits until the file offsets past everything appended are on disk,
        so the restart does not read the lines again."""
        d.expect({"gw": Expect(checks=self.checks, rejected=self.rejected)})
        d.snapshot_after(count=2)

    def feed(self, tok, n=3):
        self.burst(tok, n)
        self.checks = getattr(self, "checks", 0) + n
        self.rejected = getattr(self, "rejected", 0) + n

    def test_7a_flagged(self):
        self.write_rules(action="flag")
        d = self.start()
        tok = self.gen.token()
        self.feed(tok)
        tid = self.tid(d, tok)
        self.wait_state(d, tid, "flagged", on_disk=True)
        self.settle(d)
        d.restart(kill=True)
        info = self.api(d, "/api/v1/tokens/" + tid)
        self.assertEqual((info["state"], info["frozen"], info["anomalies"][0]["rule"]),
                         ("flagged", False, RULE_ID))
        self.hold(0.5, lambda: not self.hook.calls(), "a flagged token was frozen")
        self.assertEqual(len(self.anomalies(d, tid)), 1)   # no line read twice
        d.stop()

    def test_7b_frozen_not_rerun(self):
        d = self.start()
        tok = self.gen.token()
        self.feed(tok)
        tid = self.tid(d, tok)
        self.wait_state(d, tid, "frozen", on_disk=True)
        self.settle(d)
        d.restart(kill=True)
        info = self.api(d, "/api/v1/tokens/" + tid)
        self.assertEqual((info["state"], info["frozen"], info["freezes"]), ("frozen", True, 1))
        # Misbehaving again after the restart: events, no second freeze. (The
        # failure window is part of the baseline, saved every
        # baselines_interval_s and at exit, not at kill -9: it starts over.)
        self.feed(tok, 3)
        wait_until(lambda: len(self.anomalies(d, tid)) >= 2, what="an anomaly after restart")
        self.hold(1.0, lambda: len(self.hook.calls()) == 1, "frozen token frozen again")
        wait_until(lambda: self.metric(d, "tokenwatch_tokens_frozen") == 1, what="gauge 1")
        d.stop()

    def test_7c_unfrozen_not_rerun(self):
        d = self.start(unfreeze=True)
        tok = self.gen.token()
        self.feed(tok)
        tid = self.tid(d, tok)
        self.wait_state(d, tid, "frozen")
        status, body = self.post(d, "/api/v1/tokens/%s/unfreeze" % tid,
                                 {"analyst": "alice", "note": "customer rotated it"})
        self.assertEqual(status, 200, body)
        self.wait_state(d, tid, "unfrozen", on_disk=True)
        self.assertEqual([c[:2] for c in self.hook.calls()],
                         [("freeze", tid), ("unfreeze", tid)])
        job = self.hook.stdin_json(self.hook.calls()[1][2])
        self.assertEqual((job["action"], job["reason"], job["analyst"], job["note"]),
                         ("unfreeze", "analyst", "alice", "customer rotated it"))
        audit = self.events(d, "analyst_action", token_id=tid)
        self.assertEqual([(a["action"], a["analyst"]) for a in audit], [("unfreeze", "alice")])
        self.settle(d)
        d.restart(kill=True)
        info = self.api(d, "/api/v1/tokens/" + tid)
        self.assertEqual((info["state"], info["frozen"]), ("unfrozen", False))
        self.hold(1.0, lambda: len(self.hook.calls()) == 2, "a hook call was re-run")
        d.stop()

    def test_7d_freezing_rerun_after_restart(self):
        self.hook.set_mode("hang")
        d = self.start(self.freeze_conf(timeout_s=60))
        tok = self.gen.token()
        self.feed(tok)
        tid = self.tid(d, tok)
        wait_until(lambda: self.hook.pid_file("hang"), what="the hook hanging")
        self.wait_state(d, tid, "freezing", on_disk=True)
        self.assertTrue(self.cases(d)[tid]["freeze_pending"])
        self.settle(d)
        d.kill9()
        # The orphaned hook is ours to end; the next one succeeds.
        hung = self.hook.pid_file("hang")
        self.assertTrue(alive(hung), "the hook died with the daemon")
        self.hook.kill_leftovers()
        wait_until(lambda: not alive(hung), what="the orphaned hook gone")
        self.hook.set_mode("ok")
        d.start()
        wait_until(lambda: self.hook_calls(d, tid, outcome="success"), what="freeze re-run")
        self.wait_state(d, tid, "frozen")
        self.assertEqual([c[:2] for c in self.hook.calls()], [("freeze", tid)] * 2)
        job = self.hook.stdin_json(self.hook.calls()[1][2])
        self.assertEqual((job["action"], job["token_id"], job["reason"]),
                         ("freeze", tid, "rule"))
        self.assertNotIn("token", job)
        self.assertEqual(self.metric(d, "tokenwatch_tokens_frozen"), 1)
        d.stop()

    def test_7f_freezing_sigterm_kills_the_hook_and_keeps_the_debt(self):
        """Not kill -9 but SIGTERM while the hook hangs: the daemon still
        exits 0 at once, takes the hook's group with it (the grandchild that
        ignores SIGTERM included), and the restart runs the owed freeze."""
        self.hook.set_mode("hang")
        d = self.start(self.freeze_conf(timeout_s=60))
        tok = self.gen.token()
        self.feed(tok)
        tid = self.tid(d, tok)
        wait_until(lambda: self.hook.pid_file("grandchild"), what="the hook hanging")
        leader, grandchild = self.hook.pid_file("hang"), self.hook.pid_file("grandchild")
        self.wait_state(d, tid, "freezing")
        d.stop()
        wait_until(lambda: not alive(leader) and not alive(grandchild),
                   what="the hook's group dead after the daemon's exit")
        self.assertTrue(self.cases(d)[tid]["freeze_pending"])
        self.hook.set_mode("ok")
        d.start()
        wait_until(lambda: self.hook_calls(d, tid, outcome="success"), what="freeze re-run")
        self.wait_state(d, tid, "frozen")
        self.assertEqual([c[:2] for c in self.hook.calls()], [("freeze", tid)] * 2)
        d.stop()

    def test_7e_freezing_pass_token_waits_for_the_token(self):
        self.hook.set_mode("hang")
        d = self.start(self.freeze_conf(timeout_s=60, pass_token=True))
        tok = self.gen.token()
        self.feed(tok)
        tid = self.tid(d, tok)
        wait_until(lambda: self.hook.pid_file("hang"), what="the hook hanging")
        self.assertEqual(self.hook.stdin_json(self.hook.calls()[0][2])["token"], tok)
        self.wait_state(d, tid, "freezing", on_disk=True)
        self.settle(d)
        d.kill9()
        self.hook.kill_leftovers()
        self.hook.set_mode("ok")
        d.start()
        self.state_files_clean(d, [tok])
        # The raw token was never written down: nothing to run until it shows.
        self.hold(1.0, lambda: len(self.hook.calls()) == 1, "freeze re-run without its token")
        self.assertEqual(self.api_state(d, tid), "freezing")
        append(self.log, self.gen.text(token=tok))   # an accepted check
        wait_until(lambda: self.hook_calls(d, tid, outcome="success"), what="freeze re-run")
        self.wait_state(d, tid, "frozen")
        self.assertEqual(len(self.hook.calls()), 2)
        job = self.hook.stdin_json(self.hook.calls()[1][2])
        self.assertEqual((job["action"], job["token_id"], job["token"]), ("freeze", tid, tok))
        d.stop()
        self.state_files_clean(d, [tok])


# ---------------------------------------------------------------------------
# 8, 9: state files.

class StateFileTest(FreezeTestCase):

    def run_discard(self, d):
        """`run --discard-state` on d's config until ready, then SIGTERM;
        returns the stderr."""
        err_path = self.path("discard.stderr.%d" % time.monotonic_ns())
        with open(err_path, "wb") as err:
            p = subprocess.Popen([twtest.TW_BIN, "run", "--discard-state", "-c", d.config_path],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        twtest._LIVE_PROCS.append(p)

        def ready():
            if p.poll() is not None:
                with open(err_path, "rb") as f:
                    raise twtest.Fatal("run --discard-state exited %s:\n%s"
                                       % (p.returncode, f.read().decode("utf-8", "replace")))
            return d.get("/-/ready", timeout=1)[0] == 200
        try:
            wait_until(ready, what="run --discard-state ready")
        finally:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            rc = p.wait(15)
        self.assertEqual(rc, 0)
        with open(err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def test_8_damaged_state_files(self):
        d = self.start()
        tok = self.gen.token()
        self.burst(tok)
        tid = self.tid(d, tok)
        self.wait_state(d, tid, "frozen", on_disk=True)
        d.stop()
        sd = d.state_dir
        pristine = {}
        for name in ("offsets.json", "baselines.bin", "cases.json"):
            with open(os.path.join(sd, name), "rb") as f:
                pristine[name] = f.read()

        def newer(name, data):
            if name == "baselines.bin":
                self.assertEqual(data[:4], b"TWBL")
                return data[:4] + struct.pack("<I", 2) + data[8:]
            doc = json.loads(data)
            doc["version"] = 99
            return json.dumps(doc).encode()

        damages = {
            "garbage": lambda name, data: b"\x00garbage\xff" * 7,
            "truncated": lambda name, data: data[:len(data) // 2],
            "newer": newer,
        }
        for name in ("cases.json", "baselines.bin", "offsets.json"):
            for kind, damage in damages.items():
                with self.subTest(file=name, damage=kind):
                    for n, data in pristine.items():   # start from the good set
                        with open(os.path.join(sd, n), "wb") as f:
                            f.write(data)
                    for old in os.listdir(sd):
                        if ".discarded-" in old:
                            os.unlink(os.path.join(sd, old))
                    bad = damage(name, pristine[name])
                    self.assertNotEqual(bad, pristine[name])
                    path = os.path.join(sd, name)
                    with open(path, "wb") as f:
                        f.write(bad)
                    p = twtest.run_cli(["run", "-c", d.config_path], timeout=30)
                    self.assertEqual(p.returncode, 1, p.stderr_text)
                    self.assertIn(path, p.stderr_text)
                    self.assertEqual(p.stderr_text.count("--discard-state"), 1, p.stderr_text)
                    if kind == "newer":
                        self.assertIn("newer", p.stderr_text)
                    with open(path, "rb") as f:
                        self.assertEqual(f.read(), bad, "a refused file was changed")

                    err = self.run_discard(d)
                    self.assertIn(path, err)
                    aside = [n for n in os.listdir(sd) if n.startswith(name + ".discarded-")]
                    self.assertEqual(len(aside), 1, os.listdir(sd))
                    self.assertRegex(aside[0], r"\.discarded-\d+$")
                    with open(os.path.join(sd, aside[0]), "rb") as f:
                        self.assertEqual(f.read(), bad)
                    # Everything else was kept: the frozen case survives unless
                    # it was cases.json that went.
                    cases = self.cases(d)
                    if name == "cases.json":
                        self.assertNotIn(tid, cases)
                    else:
                        self.assertEqual(cases[tid]["state"], "frozen")
        self.assertEqual(len(self.hook.calls()), 1)

    def test_9_baselines_survive_restart(self):
        self.write_rules(action="flag", learning={"min_events": 3, "min_days": 0})
        d = self.start(freeze=False)
        tok = self.gen.token()
        append(self.log, b"".join(self.gen.text(token=tok) for _ in range(5)))
        tid = self.tid(d, tok)

        def events_n():
            status, body, _ = d.get("/api/v1/tokens/" + tid)
            return json.loads(body)["events"] if status == 200 else None
        wait_until(lambda: events_n() == 5, what="5 events")
        info = self.api(d, "/api/v1/tokens/" + tid)
        self.assertEqual((info["tracked"], info["learning"], info["state"]),
                         (True, False, "observed"))
        first_seen = info["first_seen"]
        d.stop()
        d.start()
        info = self.api(d, "/api/v1/tokens/" + tid)
        self.assertEqual((info["events"], info["learning"], info["tracked"], info["first_seen"]),
                         (5, False, True, first_seen))
        append(self.log, b"".join(self.gen.text(token=tok) for _ in range(2)))
        wait_until(lambda: events_n() == 7, what="7 events after the restart")
        self.assertFalse(self.api(d, "/api/v1/tokens/" + tid)["learning"])
        d.stop()
        d.start()
        self.assertEqual(events_n(), 7)
        d.stop()


# ---------------------------------------------------------------------------
# 10, 11: TTL and dry run.

class TtlDryRunTest(FreezeTestCase):

    def test_10_ttl_expires_and_escalates(self):
        d = self.start(self.freeze_conf(ttl_s=1, ttl_increment=2, ttl_max_s=3600),
                       unfreeze=True)
        tok = self.gen.token()
        self.burst(tok)
        tid = self.tid(d, tok)
        wait_until(lambda: self.hook_calls(d, tid, action="unfreeze", outcome="success"),
                   what="the TTL's unfreeze")
        self.wait_state(d, tid, "unfrozen", on_disk=True)
        calls = self.hook.calls()
        self.assertEqual([c[:2] for c in calls], [("freeze", tid), ("unfreeze", tid)])
        job = self.hook.stdin_json(calls[1][2])
        self.assertEqual((job["action"], job["reason"], job["token_id"]),
                         ("unfreeze", "ttl_expired", tid))
        self.assertEqual(self.hook.environ(calls[1][2])["TOKENWATCH_ACTION"], b"unfreeze")
        case = self.cases(d)[tid]
        self.assertEqual((case["frozen"], case["freezes"], case["freeze_until_ns"]),
                         (False, 1, "0"))
        self.assertEqual(self.metric(d, "tokenwatch_hook_calls_total", action="unfreeze",
                                     outcome="success"), 1)

        # Misbehaving again: frozen again, for ttl_s * ttl_increment = 2 s.
        self.burst(tok, 1)

        def frozen_again():
            c = self.cases(d).get(tid, {})
            return c if c.get("freezes") == 2 and c.get("frozen") else None
        # (On disk for the 2 s it lasts; polled every 20 ms.)
        case = wait_until(frozen_again, what="the second freeze in cases.json")
        self.assertEqual(int(case["freeze_until_ns"]) - int(case["frozen_at_ns"]), 2 * 10**9)
        self.assertEqual(self.metric(d, "tokenwatch_freeze_total", result="ok"), 2)
        wait_until(lambda: len(self.hook_calls(d, tid, action="unfreeze",
                                               outcome="success")) == 2,
                   what="the second TTL's unfreeze")
        # Escalation seen from outside: the second freeze lasted >= 2 s.
        frozen2, unfrozen2 = [r for r in self.hook_calls(d, tid, outcome="success")][2:4]
        self.assertEqual((frozen2["action"], unfrozen2["action"]), ("freeze", "unfreeze"))
        self.wait_state(d, tid, "unfrozen")
        d.stop()

    def test_11_dry_run(self):
        d = self.start(self.freeze_conf(dry_run=True))
        tok = self.gen.token()
        self.burst(tok)
        tid = self.tid(d, tok)
        wait_until(lambda: self.hook_calls(d, tid), what="the dry_run record")
        rec, = self.hook_calls(d, tid)
        self.assertEqual((rec["action"], rec["outcome"], rec["final"], rec["attempt"]),
                         ("freeze", "dry_run", True, 1))
        wait_until(lambda: self.metric(d, "tokenwatch_freeze_total", result="dry_run") == 1,
                   what="freeze_total{dry_run} 1")
        self.hold(0.5, lambda: not self.hook.calls(), "dry_run ran the hook")
        info = self.api(d, "/api/v1/tokens/" + tid)
        self.assertEqual((info["frozen"], info["state"]), (False, "flagged"))
        self.assertEqual(self.metric(d, "tokenwatch_tokens_frozen"), 0)
        for outcome in ("success", "failure", "timeout", "exec_error"):
            self.assertEqual(self.metric(d, "tokenwatch_hook_calls_total", action="freeze",
                                         outcome=outcome), 0, outcome)
        d.stop()

    # "freeze": {"dry_run": true} needs no command: it records what would run.
    def test_11b_dry_run_without_command(self):
        d = self.start({"dry_run": True})
        tok = self.gen.token()
        self.burst(tok)
        tid = self.tid(d, tok)
        wait_until(lambda: self.anomalies(d, tid), what="the anomaly")
        wait_until(lambda: self.hook_calls(d, tid, outcome="dry_run"), timeout=3,
                   what="the dry_run record")
        self.assertEqual(self.metric(d, "tokenwatch_freeze_total", result="dry_run"), 1)
        d.stop()


if __name__ == "__main__":
    twtest.main()
