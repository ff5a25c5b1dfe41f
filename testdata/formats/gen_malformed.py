#!/usr/bin/env python3
"""Writes FORMAT.malformed.log and FORMAT.malformed.expected for the shipped
formats: lines a text editor cannot hold comfortably (NUL bytes, invalid
UTF-8, values tens of kilobytes long, every truncation of a record).

The expected results are decided here by hand, not computed by tokenwatch.
Run from anywhere; the files land next to this script. The output is
deterministic, so re-running it leaves git clean unless this script changed.
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def render(b):
    """Bytes as the test compares them: printable ASCII except the backslash
    as is, every other byte as \\xHH (see README.md)."""
    if isinstance(b, str):
        b = b.encode()
    return "".join(chr(c) if 0x20 <= c < 0x7F and c != 0x5C else "\\x%02x" % c for c in b)


def ok(token, ip, time, rejected=False, user=None, path=None, result=None):
    d = {"status": "ok", "token": render(token), "ip": render(ip), "time": time,
         "rejected": rejected}
    if user is not None:
        d["user"] = render(user)
    if path is not None:
        d["path"] = render(path)
    if result is not None:
        d["result"] = render(result)
    return d


def err(reason, field=None):
    d = {"status": "error", "error": reason}
    if field:
        d["field"] = field
    return d


def write(name, pairs):
    with open(os.path.join(HERE, name + ".malformed.log"), "wb") as f:
        for line, _ in pairs:
            assert b"\n" not in line and line, line[:40]
            f.write(line + b"\n")
    with open(os.path.join(HERE, name + ".malformed.expected"), "w") as f:
        for _, exp in pairs:
            f.write(json.dumps(exp, separators=(",", ":")) + "\n")


T = "2026-11-29T07:57:53Z"
LONG_TOKEN = b"at-" + b"0123456789abcdef" * 1250             # 20003 bytes
LONG_PATH = b"/v1/" + b"segment/" * 7500                     # 60004 bytes

# ------------------------------------------------------------------ generic-text
text = [
    (b"2026-11-29T07:57:53Z\x00ip=203.0.113.7 token=at-3f9a1c2b9f2c result=ok", err("no_match")),
    (b"2026-11-29T07:57:53Z ip=203.0.113.7 token=at-\x00abc result=ok",
     ok(b"at-\x00abc", "203.0.113.7", T, result="ok")),
    (b"2026-11-29T07:57:53Z ip=203.0.113.7 token=at-3f9a1c2b9f2c result=ok\x00",
     ok("at-3f9a1c2b9f2c", "203.0.113.7", T, result=b"ok\x00")),
    (b"2026-11-29T07:57:53Z ip=203.0.113.7 token=at-3f9a1c2b9f2c result=denied\x00",
     ok("at-3f9a1c2b9f2c", "203.0.113.7", T, result=b"denied\x00")),
    (b"\x00" * 100, err("no_match")),
    (b"2026-11-29T07:57:53Z ip=203.0.113.7 user=\xff\xfe\xc3 token=at-\xc0\xaf result=ok",
     ok(b"at-\xc0\xaf", "203.0.113.7", T, user=b"\xff\xfe\xc3", result="ok")),
    (b"2026-11-29T07:57:53Z\x00 ip=203.0.113.7 token=at-3f9a1c2b9f2c result=ok", err("bad_time", "time")),
    (b"2026-11-29T07:57:53Z ip=203.0.113.7 token=" + LONG_TOKEN + b" result=ok",
     ok(LONG_TOKEN, "203.0.113.7", T, result="ok")),
    (b"2026-11-29T07:57:53Z ip=203.0.113.7 token=at-3f9a1c2b9f2c path=" + LONG_PATH + b" result=denied",
     ok("at-3f9a1c2b9f2c", "203.0.113.7", T, True, path=LONG_PATH, result="denied")),
    (b"a" * 20000, err("no_match")),
    # Many candidate separators and no token: must fail fast, not backtrack.
    (b"2026-11-29T07:57:53Z ip=" + b"x user=y" * 2000 + b" result=ok", err("no_match")),
]
write("generic-text", text)

# ------------------------------------------------------------------ generic-json
J = (b'{"time":"2026-11-29T07:57:53.123Z","client":{"ip":"203.0.113.7"},'
     b'"auth":{"token":"at-3f9a1c2b9f2c","user":"alice"},"request":{"path":"/v1/orders"},'
     b'"result":"ok"}')
gjson = [
    (J.replace(b'"alice"', b'"al\x00ice"'), err("invalid_json")),
    (J + b"\x00", err("invalid_json")),
    (b"\x00" + J, err("invalid_json")),
    (J.replace(b"at-3f9a1c2b9f2c", b"at-\xff\xfe"),
     ok(b"at-\xff\xfe", "203.0.113.7", T, user="alice", path="/v1/orders", result="ok")),
    (J.replace(b"at-3f9a1c2b9f2c", LONG_TOKEN),
     ok(LONG_TOKEN, "203.0.113.7", T, user="alice", path="/v1/orders", result="ok")),
    (J.replace(b"/v1/orders", LONG_PATH),
     ok("at-3f9a1c2b9f2c", "203.0.113.7", T, user="alice", path=LONG_PATH, result="ok")),
    # cJSON refuses nesting deeper than 1000; 500 is fine
    (J[:-1] + b',"deep":' + b"[" * 2000 + b"]" * 2000 + b"}", err("invalid_json")),
    (J[:-1] + b',"deep":' + b"[" * 500 + b"]" * 500 + b"}",
     ok("at-3f9a1c2b9f2c", "203.0.113.7", T, user="alice", path="/v1/orders", result="ok")),
    # a wide object: the arena has to grow past its first chunk
    (J[:-1] + b"," + b",".join(b'"k%d":%d' % (i, i) for i in range(3000)) + b"}",
     ok("at-3f9a1c2b9f2c", "203.0.113.7", T, user="alice", path="/v1/orders", result="ok")),
    (b"{" * 20000, err("invalid_json")),
    (b'{"time":1e999,"client":{"ip":"203.0.113.7"},"auth":{"token":"at-3f9a1c2b9f2c"}}',
     err("missing_field", "time")),
]
# every proper prefix of a record (a writer cut off mid-line) is invalid JSON
for cut in range(1, len(J)):
    gjson.append((J[:cut], err("invalid_json")))
write("generic-json", gjson)

# ------------------------------------------------------------------ vault-audit
ACC = "hmac-sha256:023fbd5a514b43dac6347068defec8400f51d72d634abb736eb057a7aa6f3d61"
V = ('{"time":"2026-11-29T07:57:53.123456Z","type":"response","auth":{"accessor":"%s",'
     '"display_name":"approle","policies":["default","orders-api"],"token_type":"service"},'
     '"request":{"id":"b7f5c2de-1c0e-4f5b-9a7f-2d3c8e6a1b90","operation":"read",'
     '"client_token_accessor":"%s","path":"secret/data/orders/db",'
     '"remote_address":"10.20.3.41","remote_port":51234},'
     '"response":{"mount_type":"kv"}}' % (ACC, ACC)).encode()
vault = [
    (V, ok(ACC, "10.20.3.41", T, user="approle", path="secret/data/orders/db")),
    (V.replace(b"approle", b"app\x00role"), err("invalid_json")),
    (V.replace(b'"type":"response"', b'"type":"request"') + b"\x00", err("invalid_json")),
    (V.replace(b"secret/data/orders/db", LONG_PATH),
     ok(ACC, "10.20.3.41", T, user="approle", path=LONG_PATH)),
    (V.replace(b'"response":{', b'"error":"' + b"permission denied " * 4000 + b'","response":{'),
     ok(ACC, "10.20.3.41", T, True, user="approle", path="secret/data/orders/db")),
]
for cut in range(1, len(V), 7):
    vault.append((V[:cut], err("invalid_json")))
write("vault-audit", vault)
