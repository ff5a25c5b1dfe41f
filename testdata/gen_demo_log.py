#!/usr/bin/env python3
"""Keeps appending realistic auth lines to two logs for the tokenwatch demo.

gateway.log (generic-text format): ~40 checks/s from a few hundred tokens,
~3% rejected, and every minute or so a 20-second burst in which one source
hammers the gateway with rejected tokens, so that the failure ratio
(auth_token_rejected / auth_token_check) visibly rises. gateway.log is
rotated by rename every --rotate-every lines, as logrotate would.

vault-audit.log (vault-audit format): Vault file-audit request/response
pairs, a few per second, some of them "permission denied".

Tokens here are random demo values, not secrets. Stops on SIGTERM/SIGINT.
"""
import argparse
import json
import os
import random
import signal
import sys
import time
from datetime import datetime, timezone

running = True


def stop(_sig, _frm):
    global running
    running = False


def now_rfc3339():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_tokens(rng, n, prefix):
    return [prefix + "".join(rng.choice("0123456789abcdef") for _ in range(24)) for _ in range(n)]


def gateway_line(rng, tokens, users, burst):
    if burst and rng.random() < 0.7:
        token = "at-" + "".join(rng.choice("0123456789abcdef") for _ in range(24))
        return (f"{now_rfc3339()} ip=198.51.100.{rng.randint(2, 9)} token={token} "
                f"path=/v1/orders result=rejected\n")
    i = rng.randrange(len(tokens))
    result = "rejected" if rng.random() < 0.03 else "ok"
    path = rng.choice(["/v1/orders", "/v1/users/me", "/v1/payments", "/v1/search"])
    return (f"{now_rfc3339()} ip=203.0.113.{i % 250 + 1} user={users[i]} token={tokens[i]} "
            f"path={path} result={result}\n")


def vault_pair(rng, accessors):
    acc = rng.choice(accessors)
    denied = rng.random() < 0.1
    req = {
        "time": now_rfc3339(), "type": "request",
        "auth": {"accessor": acc, "display_name": "approle-ci", "policies": ["default"]},
        "request": {"id": "%032x" % rng.getrandbits(128), "operation": "read",
                    "path": "secret/data/app", "remote_address": f"10.0.{rng.randint(0, 3)}.{rng.randint(2, 250)}"},
    }
    resp = dict(req, time=now_rfc3339(), type="response", response={"data": {}})
    if denied:
        resp["error"] = "1 error occurred:\n\t* permission denied\n\n"
    return json.dumps(req) + "\n" + json.dumps(resp) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--rate", type=float, default=40.0, help="gateway lines per second")
    ap.add_argument("--rotate-every", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    rng = random.Random(args.seed)
    tokens = make_tokens(rng, 300, "at-")
    users = [f"svc-{i % 40:02d}" for i in range(len(tokens))]
    accessors = ["hmac-sha256:" + "".join(rng.choice("0123456789abcdef") for _ in range(64))
                 for _ in range(20)]
    gw_path = os.path.join(args.dir, "gateway.log")
    va_path = os.path.join(args.dir, "vault-audit.log")
    gw = open(gw_path, "a", buffering=1)
    va = open(va_path, "a", buffering=1)
    written = 0
    start = time.monotonic()
    tick = 1.0 / args.rate
    while running:
        t = time.monotonic() - start
        burst = (t % 60) > 40  # 20 s of attack every minute
        gw.write(gateway_line(rng, tokens, users, burst))
        written += 1
        if written % 10 == 0:
            va.write(vault_pair(rng, accessors))
        if written % args.rotate_every == 0:
            gw.close()
            os.replace(gw_path, gw_path + ".1")
            gw = open(gw_path, "a", buffering=1)
        time.sleep(tick)
    gw.close()
    va.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
