"""
twtest.py — shared harness for tokenwatch's integration tests (stdlib only).

Every test runs the real daemon (`$TW_BIN run -c CONFIG`) on a private temp
dir and a free loopback port, feeds it log lines through ordinary files and
checks the counters scraped from /metrics against EXACT expected totals.

Rules the tests follow (STYLE.md §11):
  - correctness waits poll with a deadline (wait_until / Daemon.expect); the
    only fixed pauses are "hold" windows that prove a value does NOT change
    any more (over-counting cannot be observed any other way);
  - every process started here is killed at exit, even on failure, by its
    own pid (never by name);
  - the temp dir is removed at the end, kept when TW_KEEP_TMP=1 is set.

Environment: TW_BIN (default /tmp/itbuild/tokenwatch) and TW_SOURCE_DIR
(default: two levels above this file) are set by ctest.
"""

import atexit
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("TW_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
TW_BIN = os.environ.get("TW_BIN") or "/tmp/itbuild/tokenwatch"
FORMATS_DIR = os.path.join(SOURCE_DIR, "rules", "formats")
TESTDATA_DIR = os.path.join(SOURCE_DIR, "testdata")

# Timing used in generated configs. Small so that rotations, snapshots and
# polls happen many times within one test.
STATE_INTERVAL_MS = 100
ROTATE_WAIT_MS = 300
POLL_INTERVAL_MS = 100

DEFAULT_TIMEOUT = 10.0   # seconds a counter may take to reach its value

# Label values of the reason/kind-labelled families (internal-contract.md).
PARSE_REASONS = ("no_match", "invalid_json", "missing_field", "bad_time")
SKIP_REASONS = ("too_long", "partial", "blank", "filtered")
ROTATION_KINDS = ("rename", "truncate", "delete")


# ---------------------------------------------------------------------------
# Process bookkeeping: kill whatever we started, whatever happens.

_LIVE_PROCS = []


def _kill_leftovers():
    for p in list(_LIVE_PROCS):
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        _LIVE_PROCS.remove(p)


atexit.register(_kill_leftovers)


def _on_sigterm(signum, frame):   # ctest timeout sends SIGTERM
    _kill_leftovers()
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _on_sigterm)


# ---------------------------------------------------------------------------
# Small utilities.

def free_port():
    """A loopback TCP port that was free a moment ago."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


class Fatal(AssertionError):
    """Raised by a wait_until predicate to stop waiting at once (e.g. the
    daemon died): no later poll can succeed."""


def wait_until(predicate, timeout=DEFAULT_TIMEOUT, interval=0.02, what=None):
    """Polls predicate() until it returns a truthy value, which is returned.
    Raises AssertionError after `timeout` seconds (message: `what`, or the
    predicate's last value / exception)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = predicate()
            if last:
                return last
        except Fatal:
            raise
        except AssertionError as e:
            last = e
        except (OSError, urllib.error.URLError, ValueError) as e:
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s (last: %r)"
                                 % (timeout, what or predicate, last))
        time.sleep(interval)


def run_cli(args, timeout=60, input_bytes=None, cwd=None):
    """Runs `$TW_BIN args...`; returns CompletedProcess with text output."""
    p = subprocess.run([TW_BIN] + list(args), input=input_bytes, capture_output=True,
                       timeout=timeout, cwd=cwd)
    p.stdout_text = p.stdout.decode("utf-8", "replace")
    p.stderr_text = p.stderr.decode("utf-8", "replace")
    return p


def require_binary():
    if not os.path.isfile(TW_BIN) or not os.access(TW_BIN, os.X_OK):
        raise SystemExit("twtest: daemon binary %s not found (build it, or set TW_BIN)" % TW_BIN)
    if not os.path.isdir(FORMATS_DIR):
        raise SystemExit("twtest: formats dir %s not found (set TW_SOURCE_DIR)" % FORMATS_DIR)


# ---------------------------------------------------------------------------
# Prometheus text format.

_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?\s*$')
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def _unescape(v):
    out, i = [], 0
    while i < len(v):
        c = v[i]
        if c == "\\" and i + 1 < len(v):
            n = v[i + 1]
            out.append({"n": "\n", "\\": "\\", '"': '"'}.get(n, "\\" + n))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _parse_value(s):
    if s in ("+Inf", "Inf"):
        return float("inf")
    if s == "-Inf":
        return float("-inf")
    if s == "NaN":
        return float("nan")
    return float(s)


class Metrics(dict):
    """{(name, frozenset(labels.items())): value}, plus HELP/TYPE by family."""

    def __init__(self, text):
        super().__init__()
        self.text = text
        self.help = {}
        self.type = {}
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] == "HELP":
                    self.help[parts[2]] = parts[3] if len(parts) > 3 else ""
                elif len(parts) >= 4 and parts[1] == "TYPE":
                    self.type[parts[2]] = parts[3].strip()
                continue
            m = _SAMPLE_RE.match(line)
            if not m:
                raise ValueError("metrics line %d unparsable: %r" % (lineno, line))
            labels = {}
            body = m.group(3) or ""
            pos = 0
            while pos < len(body):
                lm = _LABEL_RE.match(body, pos)
                if not lm:
                    raise ValueError("metrics line %d: bad labels: %r" % (lineno, line))
                labels[lm.group(1)] = _unescape(lm.group(2))
                pos = lm.end()
            key = (m.group(1), frozenset(labels.items()))
            if key in self:
                raise ValueError("metrics line %d: duplicate series %r" % (lineno, line))
            self[key] = _parse_value(m.group(4))

    def get_value(self, name, **labels):
        """The series' value, or None when it is not exported."""
        return self.get((name, frozenset(labels.items())))

    def series(self, name):
        """[(labels dict, value)] of one family."""
        return [(dict(k[1]), v) for k, v in self.items() if k[0] == name]

    def family_names(self):
        return {k[0] for k in self}


# ---------------------------------------------------------------------------
# Log lines (internal-contract.md, "Fixture line formats").

REJECT_RESULTS = ("rejected", "denied", "failed", "401", "403")


def utc_stamp(ms=False, t=None):
    t = time.time() if t is None else t
    s = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
    if ms:
        s += ".%03d" % int((t % 1) * 1000)
    return s + "Z"


class LineGen:
    """Makes log lines with unique tokens and IPs and remembers every token
    it produced, so tests can assert that none leaks to /metrics or stderr."""

    def __init__(self, seed=None):
        self.rng = random.Random(seed if seed is not None else os.getpid() ^ int(time.time()))
        self.n = 0
        self.tokens = []
        self._rej = 0

    def token(self):
        self.n += 1
        # "at-" + 16 hex: long and random enough to be unmistakable in output.
        tok = "at-%04x%012x" % (self.n & 0xFFFF, self.rng.getrandbits(48))
        self.tokens.append(tok)
        return tok

    def ip(self):
        n = self.n + 1
        return "10.%d.%d.%d" % ((n >> 16) & 255, (n >> 8) & 255, (n & 255) or 1)

    def result(self, rejected):
        if not rejected:
            return "ok"
        self._rej += 1
        return REJECT_RESULTS[self._rej % len(REJECT_RESULTS)]

    def text(self, rejected=False, token=None, ip=None, user=True, path=True, stamp=None,
             result=None):
        tok = token or self.token()
        parts = [stamp or utc_stamp(), "ip=" + (ip or self.ip())]
        if user:
            parts.append("user=%s" % (user if isinstance(user, str) else "u%d" % (self.n % 97)))
        parts.append("token=" + tok)
        if path:
            parts.append("path=%s" % (path if isinstance(path, str) else "/v1/orders/%d" % self.n))
        parts.append("result=" + (result or self.result(rejected)))
        return (" ".join(parts) + "\n").encode()

    def json(self, rejected=False, token=None, ip=None, user=True, path=True, stamp=None,
             result=None):
        tok = token or self.token()
        obj = {"time": stamp or utc_stamp(ms=True), "client": {"ip": ip or self.ip()},
               "auth": {"token": tok}}
        if user:
            obj["auth"]["user"] = user if isinstance(user, str) else "u%d" % (self.n % 97)
        if path:
            obj["request"] = {"path": path if isinstance(path, str) else "/v1/items/%d" % self.n}
        obj["result"] = result or self.result(rejected)
        return (json.dumps(obj, separators=(",", ":")) + "\n").encode()

    def line(self, fmt, rejected=False, **kw):
        if fmt == "generic-text":
            return self.text(rejected, **kw)
        if fmt == "generic-json":
            return self.json(rejected, **kw)
        raise ValueError(fmt)

    def batch(self, fmt, n, k_rejected=0):
        """n lines of which k_rejected are rejections, spread through the batch."""
        assert 0 <= k_rejected <= n
        rej = set(self.rng.sample(range(n), k_rejected))
        return b"".join(self.line(fmt, i in rej) for i in range(n))


def append(path, data):
    """Appends bytes like a logger would (O_APPEND, one write)."""
    with open(path, "ab", buffering=0) as f:
        f.write(data)


def write_two_parts(path, line, between, split=None):
    """Writes one line in two partial writes with a flush between: the first
    part (no newline), then `between()` (a callable that typically asserts
    the partial line is not counted yet), then the rest."""
    if split is None:
        split = len(line) // 2
    with open(path, "ab", buffering=0) as f:
        f.write(line[:split])
        os.fsync(f.fileno())
        between()
        f.write(line[split:])


class Writer(threading.Thread):
    """Appends one line to each target every `period` seconds (O_APPEND, one
    write per line) for `duration` seconds, counting what it wrote."""

    def __init__(self, targets, duration, period=0.002, seed=1):
        super().__init__(daemon=True)
        self.targets = targets           # [(input name, path, format)]
        self.duration = duration
        self.period = period
        self.gen = LineGen(seed)
        self.written = {name: [0, 0] for name, _, _ in targets}   # [lines, rejected]
        self.error = None

    def run(self):
        try:
            files = [(name, open(path, "ab", buffering=0), fmt) for name, path, fmt in self.targets]
            start = time.monotonic()
            i = 0
            while time.monotonic() - start < self.duration:
                for name, f, fmt in files:
                    rej = (i % 7 == 3)
                    f.write(self.gen.line(fmt, rej))
                    self.written[name][0] += 1
                    self.written[name][1] += rej
                i += 1
                # Steady rate: sleep until the next tick.
                next_tick = start + i * self.period
                delay = next_tick - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            for _, f, _ in files:
                f.close()
        except Exception as e:   # surfaced by the test after join()
            self.error = e

    def expect(self, name):
        n, k = self.written[name]
        return Expect(checks=n, rejected=k)


# ---------------------------------------------------------------------------
# The daemon.

class Expect:
    """Expected counter totals for one input; unspecified reasons/kinds are
    expected to be 0 (or absent)."""

    def __init__(self, checks=0, rejected=0, lines=None, parse_errors=None, skipped=None,
                 rotations=None):
        self.checks = checks
        self.rejected = rejected
        self.parse_errors = dict(parse_errors or {})
        self.skipped = dict(skipped or {})
        self.rotations = dict(rotations or {})
        if lines is None:
            # Every complete line read is one of: a check, an ignored line, a
            # parse error or a skipped line ("partial" tails are not complete
            # lines, so they are not in lines_total).
            lines = checks + sum(self.parse_errors.values()) + sum(
                v for k, v in self.skipped.items() if k != "partial")
        self.lines = lines

    def add(self, other):
        def merge(a, b):
            r = dict(a)
            for k, v in b.items():
                r[k] = r.get(k, 0) + v
            return r
        return Expect(self.checks + other.checks, self.rejected + other.rejected,
                      self.lines + other.lines, merge(self.parse_errors, other.parse_errors),
                      merge(self.skipped, other.skipped), merge(self.rotations, other.rotations))

    def __add__(self, other):
        return self.add(other)


def observed(m, inp):
    """The counters of one input in a scrape, as a comparable dict."""
    def v(name, **labels):
        x = m.get_value(name, input=inp, **labels)
        return None if x is None else int(x)
    return {
        "auth_token_check": v("auth_token_check"),
        "auth_token_rejected": v("auth_token_rejected"),
        "tokenwatch_lines_total": v("tokenwatch_lines_total"),
        "parse_errors": {r: v("tokenwatch_parse_errors_total", reason=r) or 0 for r in PARSE_REASONS},
        "skipped": {r: v("tokenwatch_lines_skipped_total", reason=r) or 0 for r in SKIP_REASONS},
        "rotations": {k: v("tokenwatch_rotations_total", kind=k) or 0 for k in ROTATION_KINDS},
    }


def expected_dict(e):
    return {
        "auth_token_check": e.checks,
        "auth_token_rejected": e.rejected,
        "tokenwatch_lines_total": e.lines,
        "parse_errors": {r: e.parse_errors.get(r, 0) for r in PARSE_REASONS},
        "skipped": {r: e.skipped.get(r, 0) for r in SKIP_REASONS},
        "rotations": {k: e.rotations.get(k, 0) for k in ROTATION_KINDS},
    }


def _ok(observed_value, expected):
    # A tuple lists the accepted values where the contract is silent; use
    # sparingly and say why at the call site.
    if isinstance(expected, tuple):
        return observed_value in expected
    return observed_value == expected


def diff_counters(obs, exp):
    out = []
    for k in exp:
        if isinstance(exp[k], dict):
            for kk in exp[k]:
                if not _ok(obs[k].get(kk), exp[k][kk]):
                    out.append("%s{%s}: observed %s, expected %s" % (k, kk, obs[k].get(kk), exp[k][kk]))
        elif not _ok(obs[k], exp[k]):
            out.append("%s: observed %s, expected %s" % (k, obs[k], exp[k]))
    return out


class Daemon:
    """One tokenwatch daemon on its own config, state dir and port.

    inputs: list of dicts {"name", "path", "format", "start"} written as-is.
    follow / top-level keys may be overridden with follow={...}, extra={...}.
    """

    def __init__(self, workdir, inputs, follow=None, extra=None, name="tw", state_dir=None):
        self.workdir = workdir
        self.name = name
        self.inputs = [dict(i) for i in inputs]
        self.follow = {"rotate_wait_ms": ROTATE_WAIT_MS, "poll_interval_ms": POLL_INTERVAL_MS,
                       "inotify": True}
        self.follow.update(follow or {})
        self.extra = dict(extra or {})
        self.state_dir = state_dir or os.path.join(workdir, name + "-state")
        self.config_path = os.path.join(workdir, name + ".json")
        self.port = free_port()
        self.proc = None
        self.stopped = False
        self.runs = 0
        self.stderr_path = None
        self.stderr_paths = []
        self.write_config()

    # -- configuration -----------------------------------------------------
    def config(self):
        cfg = {
            "state_dir": self.state_dir,
            "formats_dir": FORMATS_DIR,
            "log_level": "info",
            "state_interval_ms": STATE_INTERVAL_MS,
            "http": {"listen": "127.0.0.1:%d" % self.port},
            "follow": dict(self.follow),
            "inputs": self.inputs,
        }
        cfg.update(self.extra)
        return cfg

    def write_config(self, cfg=None, raw=None):
        data = raw if raw is not None else json.dumps(cfg or self.config(), indent=2)
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(data)
        os.replace(tmp, self.config_path)

    # -- life cycle --------------------------------------------------------
    def start(self, wait_ready=True, timeout=DEFAULT_TIMEOUT):
        assert self.proc is None or self.proc.poll() is not None, "daemon already running"
        self.stopped = False
        for attempt in range(3):
            self.runs += 1
            self.stderr_path = os.path.join(self.workdir, "%s.stderr.%d" % (self.name, self.runs))
            self.stderr_paths.append(self.stderr_path)
            with open(self.stderr_path, "wb") as err, open(os.devnull, "wb") as out:
                self.proc = subprocess.Popen([TW_BIN, "run", "-c", self.config_path],
                                             stdin=subprocess.DEVNULL, stdout=out, stderr=err)
            _LIVE_PROCS.append(self.proc)
            if not wait_ready:
                return self
            try:
                self.wait_ready(timeout)
                return self
            except AssertionError:
                if self.proc.poll() is not None and "in use" in self.stderr().lower():
                    # Someone took our port between free_port() and bind():
                    # pick another one and try again.
                    self.port = free_port()
                    self.write_config()
                    continue
                raise
        raise AssertionError("daemon could not bind a port:\n" + self.stderr_tail())

    def wait_ready(self, timeout=DEFAULT_TIMEOUT):
        def ready():
            if self.proc.poll() is not None:
                raise Fatal("daemon exited with %s before ready:\n%s"
                                     % (self.proc.returncode, self.stderr_tail()))
            try:
                return self.get("/-/ready", timeout=1)[0] == 200
            except (OSError, urllib.error.URLError):
                return False
        try:
            wait_until(ready, timeout, interval=0.02, what="/-/ready == 200")
        except AssertionError as e:
            if self.proc.poll() is None:
                raise AssertionError("%s\nstderr:\n%s" % (e, self.stderr_tail())) from None
            raise

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self):
        """For wait_until predicates: raises Fatal, with the exit status and
        stderr, once the daemon has died (nothing it serves can come back)."""
        if self.proc is not None and self.proc.poll() is not None and not self.stopped:
            raise Fatal("%s died (exit status %s); stderr:\n%s"
                        % (self.name, self.proc.returncode, self.stderr_tail()))

    def stop(self, timeout=10.0, expect_rc=0):
        """SIGTERM; asserts the exit code (0 by default)."""
        if not self.running():
            rc = None if self.proc is None else self.proc.returncode
            raise AssertionError("daemon not running at stop (rc=%s):\n%s" % (rc, self.stderr_tail()))
        self.stopped = True
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError("daemon did not exit within %.0fs of SIGTERM:\n%s"
                                 % (timeout, self.stderr_tail()))
        if expect_rc is not None and rc != expect_rc:
            raise AssertionError("daemon exited %s after SIGTERM, expected %s:\n%s"
                                 % (rc, expect_rc, self.stderr_tail()))
        return rc

    def kill9(self):
        self.stopped = True
        if self.running():
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)

    def restart(self, kill=False):
        if kill:
            self.kill9()
        else:
            self.stop()
        return self.start()

    @contextlib.contextmanager
    def paused(self):
        """SIGSTOP ... SIGCONT: the daemon sees the end state of a multi-step
        file operation (mv + create) at once, as logrotate usually manages
        between two polls; makes the rotation kind deterministic."""
        self.proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.proc.send_signal(signal.SIGCONT)

    def sighup(self):
        self.proc.send_signal(signal.SIGHUP)

    def cleanup(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        elif not self.stopped:
            # It died on its own: say how, whatever the test concluded.
            sys.stderr.write("\n%s died during the test (exit status %s); stderr:\n%s\n"
                             % (self.name, self.proc.returncode, self.stderr_tail()))

    # -- output ------------------------------------------------------------
    def stderr(self, all_runs=False):
        paths = self.stderr_paths if all_runs else [self.stderr_path]
        out = []
        for p in paths:
            if p and os.path.exists(p):
                with open(p, "rb") as f:
                    out.append(f.read().decode("utf-8", "replace"))
        return "".join(out)

    def stderr_tail(self, n=40):
        lines = self.stderr(all_runs=True).splitlines()
        return "\n".join("    " + l for l in lines[-n:]) or "    (empty)"

    # -- HTTP --------------------------------------------------------------
    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def get(self, path, timeout=5):
        """(status, body bytes, headers) — HTTP errors are returned, not raised."""
        try:
            with urllib.request.urlopen(self.url(path), timeout=timeout) as r:
                return r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            return e.code, e.read(), e.headers

    def metrics(self):
        status, body, _ = self.get("/metrics")
        if status != 200:
            raise AssertionError("/metrics returned %d" % status)
        return Metrics(body.decode("utf-8"))

    def counters(self, inp):
        return observed(self.metrics(), inp)

    def expect(self, expectations, timeout=DEFAULT_TIMEOUT, hold=0.0):
        """Waits until every input's counters equal the expected totals
        EXACTLY ({input: Expect}); then, if hold > 0, keeps checking for
        `hold` seconds that they stay so (catches double counting). Fails
        with an observed-vs-expected diff and the daemon's stderr."""
        exp = {i: expected_dict(e) for i, e in expectations.items()}
        state = {}

        def match():
            m = self.metrics()
            state["diff"] = []
            for i, e in exp.items():
                d = diff_counters(observed(m, i), e)
                state["diff"] += ["input %r: %s" % (i, x) for x in d]
            return not state["diff"]

        def fail(why):
            raise AssertionError("%s\n  %s\n  daemon stderr (tail):\n%s"
                                 % (why, "\n  ".join(state.get("diff", [])), self.stderr_tail()))

        deadline = time.monotonic() + timeout
        while True:
            if not self.running():
                fail("daemon died (rc=%s)" % self.proc.returncode)
            try:
                ok = match()
            except (OSError, urllib.error.URLError) as e:
                ok, state["diff"] = False, ["scrape failed: %s" % e]
            if ok:
                break
            if time.monotonic() >= deadline:
                fail("counters did not reach the expected totals within %.1fs:" % timeout)
            time.sleep(0.03)
        end = time.monotonic() + hold
        while time.monotonic() < end:
            time.sleep(0.05)
            if not match():
                fail("counters reached the expected totals but then changed:")

    def lag_zero(self, inp):
        v = self.metrics().get_value("tokenwatch_input_lag_bytes", input=inp)
        return v == 0

    def snapshot_after(self, inp=None, count=2, timeout=DEFAULT_TIMEOUT):
        """Waits until the daemon has written `count` more state snapshots
        (tokenwatch_state_saves_total), so the current counters are on disk."""
        def saves():
            return int(self.metrics().get_value("tokenwatch_state_saves_total") or 0)
        start = saves()
        wait_until(lambda: saves() >= start + count, timeout, what="%d state snapshots" % count)


# ---------------------------------------------------------------------------
# Test case base.

class TwTestCase(unittest.TestCase):
    """Gives each test a temp dir (removed afterwards, even on failure), a
    LineGen, and daemon factories whose processes are killed at the end.
    At the end of each test, no generated token may appear in any daemon's
    stderr."""

    maxDiff = None

    @classmethod
    def setUpClass(cls):
        require_binary()

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="tw-it-")
        self.addCleanup(self._rm_tmp)
        self.gen = LineGen()
        self.daemons = []
        self.addCleanup(self._stop_daemons)

    def _rm_tmp(self):
        if os.environ.get("TW_KEEP_TMP") == "1":
            sys.stderr.write("\n(keeping %s)\n" % self.tmp)
            return
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _stop_daemons(self):
        for d in self.daemons:
            d.cleanup()
        # Secrecy: raw tokens never reach stderr (DESIGN.md "Token identity").
        if self.gen.tokens:
            for d in self.daemons:
                err = d.stderr(all_runs=True)
                leaked = [t for t in self.gen.tokens if t in err]
                if leaked:
                    raise AssertionError("raw token(s) found in daemon stderr, e.g. %s" % leaked[0])

    def path(self, *names):
        return os.path.join(self.tmp, *names)

    def daemon(self, inputs, start=True, **kw):
        # Config, stderr and state live apart from the logs: files the
        # harness creates must not land in the followed directory.
        run = self.path("run")
        os.makedirs(run, exist_ok=True)
        d = Daemon(run, inputs, name=kw.pop("name", "tw%d" % len(self.daemons)), **kw)
        self.daemons.append(d)
        if start:
            d.start()
        return d

    def input(self, name, fmt="generic-text", start="beginning", path=None, create=True):
        p = path or self.path(name + ".log")
        if create and not os.path.exists(p):
            open(p, "wb").close()
        return {"name": name, "path": p, "format": fmt, "start": start}


def main():
    """unittest.main that exits non-zero on failure and kills leftovers."""
    try:
        unittest.main(verbosity=2, exit=True)
    finally:
        _kill_leftovers()
