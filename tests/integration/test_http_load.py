"""
test_http_load.py — the HTTP listener is not locked out by held-open
connections or by slow requests (issue 7 point 5; docs/configuration.md
"HTTP limits"). Functional checks only, no speed assertions:

  - 1,000 idle connections (slowloris: an unfinished request each), spread
    over 100 loopback addresses, are all held by the daemon with its
    default http config, and a normal scrape and a probe from 127.0.0.1 are
    still answered (generous deadline);
  - 1,000 such connections from one address are capped (at most a quarter
    of max_connections held), the scrape still answered;
  - credential checks run off the poll threads: while many API requests
    with a wrong basic-auth password wait for their argon2id verifications
    (one at a time), /metrics and /-/healthy are answered before the last of
    them is;
  - /metrics answers stay monotonic and show every line counted before
    the scrape arrived, also when scrapes come back to back;
  - HTTP threads run 10 nice levels below the daemon while ingestion is
    behind and come back to its priority once it has caught up (or, where
    this process may not raise a priority, stay lower and say so once).
"""

import base64
import math
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.dont_write_bytecode = True   # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twtest  # noqa: E402
from twtest import SOURCE_DIR, Expect, append, run_cli, wait_until  # noqa: E402

CONNS = 1000
HEAD = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a"
DEADLINE = 20.0   # "answered at all", not a latency target
DEFAULT_MAX_CONNECTIONS = 2048


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def open_idle(port, sources, n):
    """n connections with an unfinished request each, round-robin over the
    source addresses; the sockets (some may be closed by the server)."""
    socks = []
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((sources[i % len(sources)], 0))
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        try:
            s.sendall(HEAD)
        except OSError:
            pass   # closed at once by a cap: counted as not held below
        socks.append(s)
    return socks


def held(socks):
    """How many are still open on the server side: not readable (a closed
    one reads EOF or a reset)."""
    poller = select.poll()
    for s in socks:
        poller.register(s.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
    closed = {fd for fd, _ in poller.poll(0)}
    return sum(1 for s in socks if s.fileno() not in closed)


def comm_nice(stat_path):
    """(comm, nice) from a /proc/.../stat file."""
    with open(stat_path) as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return stat[stat.index("(") + 1:stat.rindex(")")], int(fields[16])   # field 19 (fields[0] is 3)


def thread_nices(pid):
    """[(comm, nice)] of the process' threads, from /proc/PID/task/*/stat."""
    out = []
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            out.append(comm_nice("/proc/%d/task/%s/stat" % (pid, tid)))
        except OSError:
            continue   # the thread has ended
    return out


def http_nices(pid):
    """The nice values of the HTTP threads: libmicrohttpd's ("MHD-...") and
    the listener's own ("tw-http-slow")."""
    return [n for comm, n in thread_nices(pid) if comm.startswith(("MHD-", "tw-http"))]


def may_raise_priority():
    """Whether a process like this one may lower its nice value back after
    raising it (CAP_SYS_NICE, or RLIMIT_NICE): asked of a child."""
    code = ("import os, sys\n"
            "base = os.getpriority(os.PRIO_PROCESS, 0)\n"
            "os.setpriority(os.PRIO_PROCESS, 0, min(base + 10, 19))\n"
            "try:\n"
            "    os.setpriority(os.PRIO_PROCESS, 0, base)\n"
            "except OSError:\n"
            "    sys.exit(1)\n")
    return subprocess.run([sys.executable, "-c", code]).returncode == 0


def scrape(d, path="/metrics"):
    with urllib.request.urlopen(d.url(path), timeout=DEADLINE) as r:
        return r.status, r.read()


class HttpLoadTest(twtest.TwTestCase):

    def setUp(self):
        super().setUp()
        if raise_nofile(CONNS + 256) < CONNS + 64:
            self.skipTest("RLIMIT_NOFILE too low for %d connections" % CONNS)
        self.socks = []
        self.addCleanup(self._close_socks)

    def _close_socks(self):
        for s in self.socks:
            s.close()

    def http_daemon(self, **http):
        """A daemon on input gw whose http section has these keys too."""
        d = self.daemon([self.input("gw")], start=False)
        base_config = d.config

        def config():   # follows a port change in start()
            cfg = base_config()
            cfg["http"].update(http)
            return cfg
        d.config = config
        d.write_config()
        return d.start()

    def scrape_ok(self, d):
        status, body = scrape(d)
        self.assertEqual(status, 200)
        self.assertIn(b'auth_token_check{input="gw"}', body)
        self.assertEqual(scrape(d, "/-/healthy")[0], 200)

    def test_idle_connections_from_many_addresses_do_not_lock_out_a_scrape(self):
        # A long idle timeout, so that "held" does not race with it.
        d = self.http_daemon(timeout_s=300)
        sources = ["127.0.1.%d" % i for i in range(1, 101)]
        self.socks = open_idle(d.port, sources, CONNS)
        # All of them held: the default cap leaves room, and none is
        # answered (their requests are unfinished).
        wait_until(lambda: held(self.socks) == CONNS, what="all %d connections held" % CONNS)
        self.scrape_ok(d)
        append(self.path("gw.log"), self.gen.batch("generic-text", 5, 1))
        d.expect({"gw": Expect(checks=5, rejected=1)})
        self.assertEqual(held(self.socks), CONNS, "the scrapes closed idle connections")
        d.check_alive()

    def test_idle_connections_from_one_address_are_capped(self):
        d = self.http_daemon(timeout_s=300)
        self.socks = open_idle(d.port, ["127.0.0.2"], CONNS)
        cap = DEFAULT_MAX_CONNECTIONS // 4
        # The ones past the per-address cap are closed by the server.
        wait_until(lambda: held(self.socks) <= cap,
                   what="at most %d connections from one address held" % cap)
        self.assertGreater(held(self.socks), 0)
        self.scrape_ok(d)

    def test_slow_credential_checks_do_not_hold_up_scrapes(self):
        cp = run_cli(["hash-password"], input_bytes=b"right-pass-4e1a\n")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        hashed = cp.stdout.decode().strip()
        self.assertTrue(hashed.startswith("$argon2id$"), hashed)
        users = self.path("users")
        with open(users, "w") as f:
            f.write("analyst:%s\n" % hashed)
        os.chmod(users, 0o600)
        d = self.http_daemon(auth={"basic_auth_file": users})
        wrong = "Basic " + base64.b64encode(b"analyst:wrong-pass").decode()

        n = 48
        finished = []
        lock = threading.Lock()

        def api_call():
            req = urllib.request.Request(d.url("/api/v1/flagged"),
                                         headers={"Authorization": wrong})
            try:
                urllib.request.urlopen(req, timeout=120)
                status = 200
            except urllib.error.HTTPError as e:
                status = e.code
            with lock:
                finished.append(status)

        threads = [threading.Thread(target=api_call, daemon=True) for _ in range(n)]
        for t in threads:
            t.start()
        # Verifications run one at a time (tenths of a second each); a
        # scrape that does not wait behind them is answered while most are
        # still queued. Were they run on the poll threads, the scrape would
        # wait for the poll thread's turn, after most of them.
        time.sleep(0.2)
        self.scrape_ok(d)
        with lock:
            done_at_scrape = len(finished)
        for t in threads:
            t.join(180)
        self.assertEqual(finished, [401] * n)
        self.assertLess(done_at_scrape, n // 2,
                        "the scrape waited for %d of %d credential checks" % (done_at_scrape, n))

    def test_metrics_stay_monotonic_and_catch_up(self):
        d = self.daemon([self.input("gw")])
        last = 0
        for i in range(1, 6):
            append(self.path("gw.log"), self.gen.batch("generic-text", 3, 0))
            d.expect({"gw": Expect(checks=3 * i)})
            for _ in range(20):
                v = d.metrics().get_value("auth_token_check", input="gw")
                self.assertGreaterEqual(v, last)
                last = v
        self.assertEqual(last, 15)

    def test_http_threads_yield_only_while_ingestion_is_behind(self):
        for threads in (1, 2):
            with self.subTest(threads=threads):
                self.check_yield(threads)

    def check_yield(self, threads):
        d = self.daemon([self.input("gw%d" % threads)], extra={
            "log_level": "debug", "threads": threads,
            "rules_file": os.path.join(SOURCE_DIR, "rules", "default.json"),
            "geoip": {"city_db": os.path.join(SOURCE_DIR, "testdata", "geoip",
                                              "GeoLite2-City-Test.mmdb")}})
        log = self.path("gw%d.log" % threads)
        pid = d.proc.pid
        base = comm_nice("/proc/%d/stat" % pid)[1]
        lowered = min(base + 10, 19)
        raise_ok = may_raise_priority()

        def poll_nices():
            # 16 connections opened at once, so that each poll thread
            # accepts some (whichever is awake takes a new connection).
            socks = [socket.create_connection(("127.0.0.1", d.port), timeout=DEADLINE)
                     for _ in range(16)]
            for s in socks:
                s.sendall(b"GET /-/healthy HTTP/1.0\r\n\r\n")
            for s in socks:
                while s.recv(4096):
                    pass
                s.close()
            return [n for c, n in thread_nices(pid) if c.startswith("MHD-")]

        def back_at_base():
            if raise_ok:
                wait_until(lambda: (lambda v: len(v) >= 2 and set(v) == {base})(poll_nices()),
                           what="the poll threads back at nice %d" % base)
            else:
                for _ in range(20):
                    poll_nices()
                self.assertIn("cannot raise the HTTP threads' priority back", d.stderr())
                self.assertEqual(set(http_nices(pid)), {lowered})

        # The daemon starts with the HTTP threads lowered (start-up often
        # catches up on a backlog) and raises them once a read round comes
        # back empty, which an empty input does at once.
        wait_until(lambda: "ingestion caught up" in d.stderr(), what="'ingestion caught up'")
        back_at_base()

        # A backlog after a stall: the daemon is stopped for 0.7 s while
        # 64 MiB arrive, so its first read round after it resumes finds data
        # and no round has come back empty for longer than 0.5 s. Scrapes
        # while it reads are served by lowered threads.
        block = twtest.LineGen(seed=7).batch("generic-text", 72000, 7200)
        os.kill(pid, signal.SIGSTOP)
        try:
            for _ in range(8):
                append(log, block)
            time.sleep(0.7)
        finally:
            os.kill(pid, signal.SIGCONT)
        seen = set()

        def after_backlog():
            seen.update(poll_nices())
            err = d.stderr()
            at = err.find("ingestion behind")
            return at >= 0 and (lowered in seen or "ingestion caught up" in err[at:])
        wait_until(after_backlog, timeout=120,
                   what="a lowered poll thread, or the end of the backlog")
        d.expect({"gw%d" % threads: Expect(checks=8 * 72000, rejected=8 * 7200)}, timeout=300)
        wait_until(lambda: "ingestion caught up" in d.stderr()[d.stderr().find("ingestion behind"):],
                   what="'ingestion caught up' after the backlog")
        self.assertIn("ingestion behind", d.stderr())
        self.assertIn(lowered, seen, "no poll thread was seen lowered while behind")
        back_at_base()
        d.check_alive()


if __name__ == "__main__":
    twtest.main()
