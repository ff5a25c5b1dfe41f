#!/usr/bin/env python3
"""
text_to_json.py — the same events as JSON lines, for bench/compare/run.sh.

Reads a generic-text log written by bench/gen_logs.py and writes each line as
a generic-json object (the layout gen_logs.py uses for that format) with the
same time, ip, user, token, path and result, so the text and JSON runs of the
comparison see identical events (bench/gen_logs.py draws each format from its
own random stream). Prints the known totals on stdout:

    lines=N checks=N rejected=R

where rejected counts results that rules/formats/generic-*.json call
rejected. Fails (exit 1) on a line that is not in gen_logs.py's text layout.

    python3 bench/compare/text_to_json.py TEXT_LOG JSON_LOG
"""

import json
import os
import re
import sys

LINE = re.compile(r"(\S+) ip=(\S+) user=(\S+) token=(\S+) path=(\S+) result=(\S+)\n\Z")
REJECTED = frozenset(("rejected", "denied", "failed", "401", "403"))
# Values gen_logs.py writes never need JSON escaping; anything else is
# escaped properly rather than assumed.
PLAIN = re.compile(r"[A-Za-z0-9._:/{}+-]*\Z")


def js(v):
    return '"%s"' % v if PLAIN.match(v) else json.dumps(v)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: text_to_json.py TEXT_LOG JSON_LOG")
    src, dst = sys.argv[1], sys.argv[2]
    lines = rejected = 0
    tmp = dst + ".tmp"
    with open(src, encoding="ascii") as fin, \
            open(tmp, "w", encoding="ascii", newline="\n", buffering=1 << 20) as fout:
        out = []
        for n, line in enumerate(fin, 1):
            m = LINE.match(line)
            if not m:
                sys.exit("text_to_json.py: %s:%d: not a gen_logs.py generic-text line" % (src, n))
            t, ip, user, tok, path, res = m.groups()
            out.append('{"time":%s,"client":{"ip":%s},"auth":{"token":%s,"user":%s},'
                       '"request":{"path":%s},"result":%s}\n'
                       % (js(t), js(ip), js(tok), js(user), js(path), js(res)))
            lines += 1
            if res in REJECTED:
                rejected += 1
            if len(out) >= 50000:
                fout.write("".join(out))
                out = []
        fout.write("".join(out))
    os.replace(tmp, dst)
    print("lines=%d checks=%d rejected=%d" % (lines, lines, rejected))


if __name__ == "__main__":
    main()
