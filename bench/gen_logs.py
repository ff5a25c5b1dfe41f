#!/usr/bin/env python3
"""
gen_logs.py — deterministic benchmark logs for tokenwatch.

Writes N lines (default 1,000,000) per format into OUTDIR:
  bench-generic-text.log   generic-text lines (docs/internal-contract.md)
  bench-generic-json.log   generic-json lines
Tokens are drawn uniformly from ~50,000, ~10% of results are rejections;
timestamps advance ~1 ms per line from 2026-11-29T00:00:00Z so replay sees
ordered event time. The same seed gives the same bytes.

Where the checks come from (--addresses):
  home    (default) as in a real gateway log: every user (a token's user
          is token number mod --users) has a home address from a pool of
          ~20,000 (offices and NATs share one); each of its tokens has a
          second address in the same /24. 90% of a token's checks come from
          home, 10% from the second. --leaked (default 0.01) of the tokens are leaked: half of
          their checks come from an address drawn from the whole pool, so
          they are the ones detection flags (impossible travel, new country).
  random  every check from an address drawn from the whole pool: with a
          GeoIP database that locates them all, every token appears to
          travel and is flagged — the worst case for detection.

    python3 bench/gen_logs.py [--lines N] [--seed S] [--tokens T] [--ips I]
                              [--addresses home|random] [--leaked F]
                              [--formats generic-text,generic-json] OUTDIR
"""

import argparse
import calendar
import os
import random
import sys
import time

CHUNK = 50_000
BASE = calendar.timegm((2026, 11, 29, 0, 0, 0))
REJECTS = ("rejected", "denied", "failed", "401", "403")
PATHS = ("/v1/orders", "/v1/orders/{}", "/v1/items", "/v1/items/{}", "/v1/users/{}/profile",
         "/oauth/token", "/v2/search", "/health")


def make_pool(rng, tokens, ips, users, leaked):
    toks = ["at-%016x" % rng.getrandbits(64) for _ in range(tokens)]
    addrs = []
    for _ in range(ips):
        a = rng.randrange(1, 224)
        if a in (10, 127):
            a += 1
        addrs.append("%d.%d.%d.%d" % (a, rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)))
    names = ["user%05d" % i for i in range(users)]
    # Per user its home address; per token a second one in the home's /24
    # and whether it leaked.
    user_home = [addrs[rng.randrange(ips)] for _ in range(users)]
    homes, seconds, leaks = [], [], []
    for t in range(tokens):
        h = user_home[t % users]
        net, last = h.rsplit(".", 1)
        homes.append(h)
        seconds.append("%s.%d" % (net, (int(last) + rng.randrange(1, 254)) % 254 + 1))
        leaks.append(rng.random() < leaked)
    return toks, addrs, names, homes, seconds, leaks


def stamps(start_line, n, ms):
    """RFC 3339 stamps for lines [start_line, start_line+n), 1 ms apart."""
    out = []
    sec_cache = {}
    for i in range(start_line, start_line + n):
        s, m = divmod(i, 1000)
        head = sec_cache.get(s)
        if head is None:
            head = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(BASE + s))
            sec_cache = {s: head}
        out.append("%s.%03dZ" % (head, m) if ms else head + "Z")
    return out


def generate(fmt, path, lines, seed, pool, home):
    toks, addrs, names, homes, seconds, leaks = pool
    rng = random.Random("%s/%s" % (seed, fmt))
    ntok, nip = len(toks), len(addrs)
    written = 0
    with open(path + ".tmp", "w", encoding="ascii", newline="\n", buffering=1 << 20) as f:
        for start in range(0, lines, CHUNK):
            n = min(CHUNK, lines - start)
            ts = stamps(start, n, ms=(fmt == "generic-json"))
            rnd = rng.random
            rint = rng.randrange
            buf = []
            for i in range(n):
                t = rint(ntok)
                tok = toks[t]
                if not home or (leaks[t] and rnd() < 0.5):
                    ip = addrs[rint(nip)]
                else:
                    ip = homes[t] if rnd() < 0.9 else seconds[t]
                user = names[t % len(names)]
                p = PATHS[rint(len(PATHS))].format(rint(100000))
                res = REJECTS[rint(5)] if rnd() < 0.10 else "ok"
                if fmt == "generic-text":
                    buf.append("%s ip=%s user=%s token=%s path=%s result=%s\n"
                               % (ts[i], ip, user, tok, p, res))
                else:
                    buf.append('{"time":"%s","client":{"ip":"%s"},"auth":{"token":"%s","user":"%s"},'
                               '"request":{"path":"%s"},"result":"%s"}\n'
                               % (ts[i], ip, tok, user, p, res))
            f.write("".join(buf))
            written += n
    os.replace(path + ".tmp", path)
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=20261129)
    ap.add_argument("--tokens", type=int, default=50_000)
    ap.add_argument("--ips", type=int, default=20_000)
    ap.add_argument("--users", type=int, default=5_000)
    ap.add_argument("--addresses", choices=("home", "random"), default="home")
    ap.add_argument("--leaked", type=float, default=0.01)
    ap.add_argument("--formats", default="generic-text,generic-json")
    a = ap.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    pool = make_pool(random.Random(a.seed), a.tokens, a.ips, a.users, a.leaked)
    for fmt in a.formats.split(","):
        if fmt not in ("generic-text", "generic-json"):
            sys.exit("gen_logs.py: unknown format %r" % fmt)
        path = os.path.join(a.outdir, "bench-%s.log" % fmt)
        t0 = time.monotonic()
        n = generate(fmt, path, a.lines, a.seed, pool, a.addresses == "home")
        print("%s: %d lines, %.1f MB in %.1fs" % (path, n, os.path.getsize(path) / 1e6,
                                                 time.monotonic() - t0), file=sys.stderr)


if __name__ == "__main__":
    main()
