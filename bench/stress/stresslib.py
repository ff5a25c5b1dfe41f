"""
stresslib.py — shared pieces of the stress scripts (bench/stress/): log line
generation, a tokenwatch daemon on a private temp dir, /metrics scraping and
RSS sampling. Standard library only.

Lines are `generic-text` (docs/configuration.md, "Shipped formats"):
    TIME ip=IP user=USER token=TOKEN path=PATH result=RESULT
with tokens "at-" + 16 hex digits, as the integration tests make them.
"""

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
FORMATS_DIR = os.path.join(ROOT, "rules", "formats")
DEFAULT_RULES = os.path.join(ROOT, "rules", "default.json")
CITY_DB = os.path.join(ROOT, "testdata", "geoip", "GeoLite2-City-Test.mmdb")

STAMP_LEN = len("2026-01-01T00:00:00Z")
PLACEHOLDER = b"S" * STAMP_LEN


def stamp(t=None):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


# ---------------------------------------------------------------------------
# Lines.

class LineMaker:
    """Builds generic-text lines. Each token belongs to one of `users`
    principals, and each principal works from one address of a pool of
    `ips` (a quarter of them in the test GeoIP database's located ranges,
    the rest spread over public-looking space, mostly not found): steady
    behaviour, so detection runs every rule without reporting anything
    (random addresses per line would make every token an impossible
    traveller). `reject_permille` of the lines are rejections (1 in 1000 by
    default: a busy address, 12 lines/s, then stays under ip_spraying's 30
    rejections in 10 minutes)."""

    def __init__(self, seed=1, ips=20000, users=50000, reject_permille=1):
        self.rng = random.Random(seed)
        located = ["192.0.2.%d" % i for i in range(1, 255)] + \
                  ["198.51.100.%d" % i for i in range(1, 240)] + \
                  ["203.0.113.%d" % i for i in range(1, 255)]
        pool = []
        for i in range(ips):
            if i % 4 == 0:
                pool.append(located[i // 4 % len(located)])
            else:
                pool.append("%d.%d.%d.%d" % (self.rng.randint(1, 223), self.rng.randint(0, 255),
                                             self.rng.randint(0, 255), self.rng.randint(1, 254)))
        self.ips = pool
        self.users = users
        self.reject_permille = reject_permille

    def line(self, token_no, stamp_bytes=PLACEHOLDER, rejected=None):
        r = self.rng.random
        if rejected is None:
            rejected = r() * 1000 < self.reject_permille
        # Both results three characters long, so a line can be flipped in place.
        res = b"401" if rejected else b"200"
        user = token_no % self.users
        return b"%s ip=%s user=u%d token=at-%016x path=/v1/orders/%d result=%s\n" % (
            stamp_bytes, self.ips[user % len(self.ips)].encode(), user, token_no,
            int(r() * 1000), res)


def token_of(n, salt=0x5EED):
    """The n-th distinct token number: a bijection of n spread over 64 bits
    (so the tokens do not share long prefixes)."""
    x = (n * 0x9E3779B97F4A7C15 + salt) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 31
    return x


# ---------------------------------------------------------------------------
# The daemon.

class Daemon:
    """tokenwatch run on its own config; killed at exit by its pid."""

    def __init__(self, binary, workdir, inputs, http=None, extra=None, name="tw"):
        self.binary = binary
        self.workdir = workdir
        self.name = name
        self.port = free_port()
        self.http = {"listen": "127.0.0.1:%d" % self.port}
        self.http.update(http or {})
        self.state_dir = os.path.join(workdir, name + "-state")
        self.config_path = os.path.join(workdir, name + ".json")
        self.stderr_path = os.path.join(workdir, name + ".stderr")
        cfg = {
            "state_dir": self.state_dir,
            "formats_dir": FORMATS_DIR,
            "log_level": "warn",
            "http": self.http,
            "inputs": inputs,
            "geoip": {"city_db": CITY_DB},
            "rules_file": DEFAULT_RULES,
            "events_file": os.path.join(workdir, name + "-events.jsonl"),
        }
        cfg.update(extra or {})
        self.config = cfg
        with open(self.config_path, "w") as f:
            json.dump(cfg, f, indent=2)
        self.proc = None

    def start(self, timeout=60):
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen([self.binary, "run", "-c", self.config_path],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=err)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("tokenwatch exited with %s:\n%s" % (self.proc.returncode,
                                                                     self.stderr()))
            try:
                if self.get("/-/ready", timeout=1)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise SystemExit("tokenwatch not ready within %ds:\n%s" % (timeout, self.stderr()))

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def get(self, path, timeout=5):
        try:
            with urllib.request.urlopen(self.url(path), timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def metrics(self, timeout=5):
        status, body = self.get("/metrics", timeout)
        if status != 200:
            raise RuntimeError("/metrics answered %d" % status)
        return parse_metrics(body.decode("utf-8"))

    def value(self, name, timeout=5, **labels):
        return self.metrics(timeout).get(series_key(name, labels))

    def rss_kb(self):
        return proc_status(self.proc.pid).get("VmRSS", 0)

    def stop(self, timeout=60):
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return -9

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')


def series_key(name, labels):
    if not labels:
        return name
    return name + "{" + ",".join('%s="%s"' % (k, labels[k]) for k in sorted(labels)) + "}"


def parse_metrics(text):
    """{series key with sorted labels: value} (enough for our own names)."""
    out = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = {}
        if m.group(2):
            for kv in re.finditer(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2)):
                labels[kv.group(1)] = kv.group(2)
        try:
            out[series_key(m.group(1), labels)] = float(m.group(3))
        except ValueError:
            pass
    return out


def proc_status(pid):
    """VmRSS, VmHWM (kB) and Threads of a process, {} once it is gone."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "Threads"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def cpu_seconds(pid):
    """User + system CPU seconds a process (all its threads) has used."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    if n == 0:
        return float("nan")
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def log(msg):
    sys.stderr.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()
