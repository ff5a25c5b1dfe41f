"""
test_example_hooks.py — the example hooks in rules/hooks/ (vault-revoke,
webhook) against a stand-in HTTP server (stdlib only, no daemon needed).

Each hook runs as tokenwatch runs it: the executable itself (its
#!/usr/bin/python3 line), no shell, one JSON event on stdin, a clean
environment. The stand-in server listens on 127.0.0.1 port 0, records every
request and answers what the test sets. The tests check:
  - the exact request each hook sends (method, path, headers, JSON body);
  - exit codes and the one stderr line for 2xx, 403 with Vault's
    {"errors":[...]}, 400 "invalid accessor", 500, redirects, connection
    refused, a server slower than TOKENWATCH_HOOK_HTTP_TIMEOUT, TLS with and
    without VAULT_CACERT, missing environment, missing or HMAC'd accessor,
    unfreeze on the Vault hook, bad stdin and bad options;
  - the webhook drops "token" unless --include-token;
  - hostile values (quotes, backslashes, $(...), backticks, ;, newlines,
    10 KB, U+FFFD) reach the server with the same JSON value, and no shell
    ever ran them;
  - secrets (VAULT_TOKEN, the accessor, bearer and header-file values) never
    appear on stdout or stderr — asserted after every single hook run.

Environment: TW_SOURCE_DIR (set by ctest; default two levels above this file).
TLS cases need /usr/bin/openssl to make a throwaway certificate and are
skipped without it.
"""

import http.server
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("TW_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
HOOKS_DIR = os.path.join(SOURCE_DIR, "rules", "hooks")
VAULT_HOOK = os.path.join(HOOKS_DIR, "vault-revoke")
WEBHOOK = os.path.join(HOOKS_DIR, "webhook")

# Unique per run, so that any leak into output is unmistakable.
VAULT_TOKEN = "hvs.CAESI" + secrets.token_hex(16)
ACCESSOR = "Ac" + secrets.token_hex(11)              # 24 characters, like Vault's
RAW_TOKEN = "at-" + secrets.token_hex(12)            # a gateway token for the webhook
TOKEN_ID = "tw_3f9a1c2b7d4e5f60"
REVOKE_PATH = "/v1/auth/token/revoke-accessor"
# Headers urllib adds by itself; anything else a hook sends must be expected.
TRANSPORT_HEADERS = {"host", "content-length", "connection", "accept-encoding"}
RUN_TIMEOUT = 20     # a hook that hangs this long is a failure, not a slow pass


def anomaly(**over):
    """An anomaly event as tokenwatch writes it to a freeze hook's stdin."""
    ev = {"time": "2026-11-29T07:57:53Z", "token_id": TOKEN_ID, "token_hint": "Ac0…9f2c",
          "rule": "impossible_travel", "kind": "geo_velocity", "severity": "critical",
          "action": "freeze", "ip": "203.0.113.7", "country": "DE", "city": "Berlin",
          "input": "vault",
          "evidence": {"from": {"ip": "198.51.100.4", "country": "US", "city": "Ashburn",
                                "lat": 39.0437, "lon": -77.4875, "radius_km": 20,
                                "time": "2026-11-29T07:27:53Z"},
                       "to": {"ip": "203.0.113.7", "country": "DE", "city": "Berlin",
                              "lat": 52.5244, "lon": 13.4105, "radius_km": 20,
                              "time": "2026-11-29T07:57:53Z"},
                       "km": 6628.1, "km_after_radii": 6588.1, "hours": 0.5,
                       "kmh": 13176.2, "max_kmh": 900.0},
          "reason": "rule",
          "token": ACCESSOR}
    ev.update(over)
    return {k: v for k, v in ev.items() if v is not None}


# ---------------------------------------------------------------------------
# The stand-in server.

class _Handler(http.server.BaseHTTPRequestHandler):
    def _any(self):
        srv = self.server
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        with srv.lock:
            srv.requests.append({"method": self.command, "path": self.path,
                                 "headers": list(self.headers.items()), "body": body})
            status, headers, answer, delay = srv.answer
        if delay:
            srv.release.wait(delay)      # set at close: never outlives the test
        try:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        except OSError:
            pass                         # the hook gave up first (timeout test)

    do_POST = do_GET = do_PUT = do_DELETE = do_PATCH = _any

    def log_message(self, *args):
        pass


class StandIn:
    """A threaded HTTP(S) server on 127.0.0.1:0 that records every request."""

    def __init__(self, tls=None):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, addr: None
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.httpd.lock = threading.Lock()
        self.httpd.requests = []
        self.httpd.release = threading.Event()
        self.respond(204)
        self.scheme = "https" if tls is not None else "http"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def respond(self, status, body=b"", headers=None, delay=0.0):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = dict(headers or {}, **{"Content-Type": "application/json"})
        with self.httpd.lock:
            self.httpd.answer = (status, dict(headers or {}), body, delay)

    @property
    def requests(self):
        with self.httpd.lock:
            return list(self.httpd.requests)

    def url(self, path=""):
        return "%s://127.0.0.1:%d%s" % (self.scheme, self.httpd.server_address[1], path)

    def close(self):
        self.httpd.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


def header(req, name):
    """Every value of header `name` (any case) in a recorded request."""
    return [v for k, v in req["headers"] if k.lower() == name.lower()]


def closed_port():
    """(socket, port): a loopback port bound but not listening, so connecting
    is refused and nobody else can take it while the socket lives."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


# ---------------------------------------------------------------------------
# Running a hook.

class HookCase(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="tw-hooks-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.server = StandIn()
        self.addCleanup(self.server.close)
        self.secrets = [VAULT_TOKEN, ACCESSOR, RAW_TOKEN]

    def path(self, name):
        return os.path.join(self.tmp, name)

    def write(self, name, text, mode=0o600):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)
        return p

    def run_hook(self, hook, event=None, args=(), env=None, stdin=None):
        """Runs the hook like the daemon does; returns (rc, stdout, stderr).
        Asserts on every run that no secret is printed and that a failure
        says so in exactly one stderr line."""
        e = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": self.tmp}
        if event is not None and isinstance(event, dict):
            e.update({"TOKENWATCH_ACTION": str(event.get("action", "")),
                      "TOKENWATCH_TOKEN_ID": str(event.get("token_id", "")),
                      "TOKENWATCH_RULE": str(event.get("rule", ""))})
            tok = event.get("token")
            if isinstance(tok, str) and len(tok) >= 8:
                self.secrets.append(tok)
        e.update({k: v for k, v in (env or {}).items() if v is not None})
        for k in [k for k, v in (env or {}).items() if v is None]:
            e.pop(k, None)
        if stdin is None:
            stdin = json.dumps(event, ensure_ascii=False).encode("utf-8") + b"\n"
        p = subprocess.run([hook] + list(args), input=stdin, capture_output=True, env=e,
                           timeout=RUN_TIMEOUT, cwd=self.tmp)
        out = p.stdout.decode("utf-8", "replace")
        err = p.stderr.decode("utf-8", "replace")
        for s in self.secrets:
            self.assertNotIn(s, out, "a secret leaked to stdout")
            self.assertNotIn(s, err, "a secret leaked to stderr")
        if p.returncode != 0:
            self.assertEqual(err.count("\n"), 1, "a failure must be one stderr line: %r" % err)
            self.assertTrue(err.startswith(os.path.basename(hook) + ": "), err)
        return p.returncode, out, err

    def assert_headers(self, req, expected):
        """The request carries exactly `expected` (name -> value, any case)
        plus urllib's transport headers."""
        got = {k.lower(): v for k, v in req["headers"]}
        self.assertEqual(len(got), len(req["headers"]), "a header was sent twice: %r" % req["headers"])
        for name, value in expected.items():
            self.assertEqual(header(req, name), [value], "header %s" % name)
        extra = set(got) - {k.lower() for k in expected} - TRANSPORT_HEADERS
        self.assertEqual(extra, set(), "unexpected headers")
        self.assertEqual(int(got["content-length"]), len(req["body"]))

    def only_request(self, server=None):
        reqs = (server or self.server).requests
        self.assertEqual(len(reqs), 1, "expected exactly one request, got %r" % reqs)
        return reqs[0]


# ---------------------------------------------------------------------------
# vault-revoke

class VaultRevoke(HookCase):

    def vault_env(self, **over):
        e = {"VAULT_ADDR": self.server.url(), "VAULT_TOKEN": VAULT_TOKEN}
        e.update(over)
        return e

    def revoke(self, event=None, args=(), **env_over):
        return self.run_hook(VAULT_HOOK, anomaly() if event is None else event, args,
                             self.vault_env(**env_over))

    def assert_revoke_request(self, req, accessor=ACCESSOR, vault_token=VAULT_TOKEN, ns=None):
        self.assertEqual(req["method"], "POST")
        self.assertEqual(req["path"], REVOKE_PATH)
        want = {"X-Vault-Token": vault_token, "Content-Type": "application/json",
                "User-Agent": "tokenwatch-vault-revoke"}
        if ns is not None:
            want["X-Vault-Namespace"] = ns
        self.assert_headers(req, want)
        self.assertEqual(json.loads(req["body"].decode("utf-8")), {"accessor": accessor})

    def test_files_are_python3_executables(self):
        for hook in (VAULT_HOOK, WEBHOOK):
            self.assertTrue(os.access(hook, os.X_OK), hook + " is not executable")
            with open(hook, "rb") as f:
                self.assertEqual(f.readline(), b"#!/usr/bin/python3\n", hook)

    def test_204_revokes_by_accessor(self):
        self.server.respond(204)
        rc, out, err = self.revoke()
        self.assertEqual((rc, out, err), (0, "", ""))
        self.assert_revoke_request(self.only_request())

    def test_200_with_warnings_succeeds_and_says_so(self):
        self.server.respond(200, {"warnings": ["accessor in path is unsafe"], "data": None})
        rc, out, err = self.revoke()
        self.assertEqual(rc, 0, err)
        self.assertIn("accessor in path is unsafe", err)
        self.assert_revoke_request(self.only_request())

    def test_namespace_and_token_file(self):
        f = self.write("vault-token", VAULT_TOKEN + "\n")
        rc, _, err = self.revoke(args=["--token-file", f], VAULT_TOKEN=None,
                                 VAULT_NAMESPACE="team-a/prod")
        self.assertEqual(rc, 0, err)
        self.assert_revoke_request(self.only_request(), ns="team-a/prod")
        # --token-file wins over VAULT_TOKEN.
        rc, _, err = self.revoke(args=["--token-file=" + f], VAULT_TOKEN="hvs.not-this-one")
        self.assertEqual(rc, 0, err)
        self.assert_revoke_request(self.server.requests[1])

    def test_systemd_credential(self):
        creds = self.path("creds")
        os.mkdir(creds, 0o700)
        self.write("creds/vault-token", VAULT_TOKEN)
        rc, _, err = self.revoke(VAULT_TOKEN=None, CREDENTIALS_DIRECTORY=creds)
        self.assertEqual(rc, 0, err)
        self.assert_revoke_request(self.only_request())

    def test_vault_addr_with_trailing_slash(self):
        rc, _, err = self.revoke(VAULT_ADDR=self.server.url("/"))
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.only_request()["path"], REVOKE_PATH)

    def test_403_permission_denied(self):
        self.server.respond(403, {"errors": ["permission denied"]})
        rc, out, err = self.revoke()
        self.assertEqual(rc, 1)
        self.assertEqual(out, "")
        self.assertIn(TOKEN_ID, err)
        self.assertIn("403", err)
        self.assertIn("permission denied", err)
        self.assertIn("auth/token/revoke-accessor", err)     # the policy hint
        self.assert_revoke_request(self.only_request())

    def test_500(self):
        self.server.respond(500, {"errors": ["1 error occurred:\n\t* storage unavailable\n\n"]})
        rc, _, err = self.revoke()
        self.assertEqual(rc, 1)
        self.assertIn("500", err)
        self.assertIn("storage unavailable", err)

    def test_500_without_json(self):
        self.server.respond(502, b"<html>bad gateway</html>", {"Content-Type": "text/html"})
        rc, _, err = self.revoke()
        self.assertEqual(rc, 1)
        self.assertIn("502", err)
        self.assertIn("bad gateway", err)

    def test_invalid_accessor(self):
        self.server.respond(400, {"errors": ["invalid accessor"]})
        rc, _, err = self.revoke()
        self.assertEqual(rc, 1)
        self.assertIn("invalid accessor", err)
        self.assertIn("--unknown-accessor-ok", err)
        rc, _, err = self.revoke(args=["--unknown-accessor-ok"])
        self.assertEqual(rc, 0, err)
        self.assertIn("counted as revoked", err)
        self.assertEqual(len(self.server.requests), 2)
        # Any other 400 stays a failure with the option.
        self.server.respond(400, {"errors": ["missing accessor"]})
        rc, _, err = self.revoke(args=["--unknown-accessor-ok"])
        self.assertEqual(rc, 1)
        self.assertIn("missing accessor", err)

    def test_secrets_echoed_by_vault_are_redacted(self):
        self.server.respond(400, {"errors": ["bad accessor %s for token %s" % (ACCESSOR, VAULT_TOKEN)]})
        rc, _, err = self.revoke()     # run_hook asserts neither value is printed
        self.assertEqual(rc, 1)
        self.assertIn("bad accessor <redacted> for token <redacted>", err)

    def test_no_piece_of_a_secret_survives_the_cut(self):
        # A non-JSON answer is cut to 200 bytes; the secret straddles the cut.
        self.server.respond(502, b"x" * 195 + VAULT_TOKEN.encode(), {"Content-Type": "text/plain"})
        rc, _, err = self.revoke()
        self.assertEqual(rc, 1)
        self.assertIn("x" * 195 + "<reda", err)
        self.assertNotIn(VAULT_TOKEN[:5], err)

    def test_connection_refused(self):
        sock, port = closed_port()
        self.addCleanup(sock.close)
        rc, _, err = self.revoke(VAULT_ADDR="http://127.0.0.1:%d" % port)
        self.assertEqual(rc, 1)
        self.assertIn("connection refused", err)
        self.assertIn("127.0.0.1:%d" % port, err)

    def test_slow_vault_times_out(self):
        self.server.respond(204, delay=RUN_TIMEOUT)
        rc, _, err = self.revoke(args=["--timeout", "0.5"])
        self.assertEqual(rc, 1)
        self.assertIn("no answer from Vault at 127.0.0.1:%d within 0.5s"
                      % self.server.httpd.server_address[1], err)
        self.assert_revoke_request(self.only_request())   # it was sent, no answer came
        # The environment variable, for runs by hand.
        rc, _, err = self.revoke(TOKENWATCH_HOOK_HTTP_TIMEOUT="0.3")
        self.assertEqual(rc, 1)
        self.assertIn("within 0.3s", err)

    def test_bad_timeout_value(self):
        for bad in ("abc", "0", "1e9"):
            rc, _, err = self.revoke(TOKENWATCH_HOOK_HTTP_TIMEOUT=bad)
            self.assertEqual(rc, 2, bad)
            self.assertIn("TOKENWATCH_HOOK_HTTP_TIMEOUT", err)
        for bad in ("-1", "nan"):
            rc, _, err = self.revoke(args=["--timeout", bad])
            self.assertEqual(rc, 2, bad)
            self.assertIn("--timeout", err)
        rc, _, err = self.revoke(args=["--timeout"])
        self.assertEqual(rc, 2)
        self.assertIn("needs a value", err)
        self.assertEqual(self.server.requests, [])

    def test_missing_environment(self):
        rc, _, err = self.revoke(VAULT_ADDR=None)
        self.assertEqual(rc, 2)
        self.assertIn("VAULT_ADDR is not set", err)
        rc, _, err = self.revoke(VAULT_TOKEN=None)
        self.assertEqual(rc, 2)
        self.assertIn("VAULT_TOKEN is not set", err)
        rc, _, err = self.revoke(args=["--token-file", self.path("nope")])
        self.assertEqual(rc, 2)
        self.assertIn("cannot read the Vault token file", err)
        rc, _, err = self.revoke(VAULT_ADDR="vault.example:8200")
        self.assertEqual(rc, 2)
        self.assertIn("VAULT_ADDR must look like", err)
        rc, _, err = self.revoke(VAULT_ADDR="http://admin:pw-s3cr3t@127.0.0.1:1")
        self.assertEqual(rc, 2)
        self.assertNotIn("pw-s3cr3t", err)
        rc, _, err = self.revoke(VAULT_NAMESPACE="a\nX-Injected: 1")
        self.assertEqual(rc, 2)
        self.assertIn("VAULT_NAMESPACE", err)
        self.assertEqual(self.server.requests, [])

    def test_missing_token(self):
        for ev in (anomaly(token=None), anomaly(token=""), anomaly(token=17)):
            rc, out, err = self.revoke(ev)
            self.assertEqual(rc, 2, ev)
            self.assertIn("pass_token", err)
            self.assertIn(TOKEN_ID, err)
        self.assertEqual(self.server.requests, [])

    def test_hmac_accessor(self):
        hashed = "hmac-sha256:" + secrets.token_hex(32)
        rc, _, err = self.revoke(anomaly(token=hashed))
        self.assertEqual(rc, 2)
        self.assertIn("HMAC", err)
        self.assertIn("hmac_accessor=false", err)
        self.assertEqual(self.server.requests, [])

    def test_client_token_is_not_sent(self):
        for tok in ("hvs." + secrets.token_hex(12), "s." + secrets.token_hex(12)):
            rc, _, err = self.revoke(anomaly(token=tok))
            self.assertEqual(rc, 2)
            self.assertIn("not an accessor", err)
        self.assertEqual(self.server.requests, [])

    def test_unfreeze_is_refused(self):
        ev = anomaly(action="unfreeze", reason="analyst", analyst="alice", note="false positive")
        rc, out, err = self.revoke(ev)
        self.assertEqual(rc, 3)
        self.assertIn("cannot unfreeze", err)
        self.assertIn("unfreeze.command", err)
        # Also when the daemon sends no token with an unfreeze.
        rc, _, _ = self.revoke(anomaly(action="unfreeze", reason="ttl_expired", token=None))
        self.assertEqual(rc, 3)
        self.assertEqual(self.server.requests, [])

    def test_unknown_action(self):
        rc, _, err = self.revoke(anomaly(action="flag"))
        self.assertEqual(rc, 2)
        self.assertIn("unexpected action", err)

    def test_dry_run(self):
        # One stderr line: the daemon records stderr, its hooks' stdout is /dev/null.
        rc, out, err = self.revoke(args=["--dry-run"], VAULT_NAMESPACE="ns1")
        self.assertEqual((rc, out), (0, ""))
        self.assertEqual(err.count("\n"), 1, err)
        self.assertIn(TOKEN_ID + ": dry run: would POST " + self.server.url(REVOKE_PATH), err)
        self.assertIn("X-Vault-Namespace: ns1", err)
        self.assertIn("X-Vault-Token: <%d chars, not shown> from VAULT_TOKEN" % len(VAULT_TOKEN), err)
        self.assertIn('{"accessor": "<%d chars, not shown>"}' % len(ACCESSOR), err)
        self.assertEqual(self.server.requests, [])
        # A dry run still reports what a real run would fail on.
        rc, _, err = self.revoke(args=["--dry-run"], VAULT_ADDR=None)
        self.assertEqual(rc, 2)

    def test_bad_stdin_and_argv(self):
        env = self.vault_env()
        for data, why in ((b"", "no event"), (b"not json", "not a JSON object"),
                          (b"[1,2]", "not an object"), (b"{\"a\":\xff}", "not a JSON object")):
            rc, _, err = self.run_hook(VAULT_HOOK, stdin=data, env=env)
            self.assertEqual(rc, 2, data)
            self.assertIn(why, err)
        rc, _, err = self.revoke(args=["--force"])
        self.assertEqual(rc, 2)
        self.assertIn("unknown argument", err)
        self.assertEqual(self.server.requests, [])

    def test_hostile_accessor_arrives_intact(self):
        canary = self.path("canary")
        weird = ' Ac"\\$(touch %s)`touch %s`;\n\'\u00e9\ufffd\t\n' % (canary, canary)
        rc, _, err = self.revoke(anomaly(token=weird))
        self.assertEqual(rc, 0, err)
        self.assert_revoke_request(self.only_request(), accessor=weird)
        self.assertFalse(os.path.exists(canary), "a shell ran the accessor")

    def test_standby_redirect_is_followed(self):
        active = StandIn()
        self.addCleanup(active.close)
        self.server.respond(307, headers={"Location": active.url(REVOKE_PATH)})
        rc, _, err = self.revoke()
        self.assertEqual(rc, 0, err)
        self.assert_revoke_request(self.only_request())
        self.assert_revoke_request(self.only_request(active))

    def test_endless_redirects(self):
        self.server.respond(307, headers={"Location": REVOKE_PATH})
        rc, _, err = self.revoke()
        self.assertEqual(rc, 1)
        self.assertIn("redirects", err)
        self.assertEqual(len(self.server.requests), 4)


class VaultRevokeTLS(HookCase):
    """https: VAULT_CACERT trusted, system CAs otherwise, no downgrade."""

    @classmethod
    def setUpClass(cls):
        if not shutil.which("openssl"):
            raise unittest.SkipTest("openssl not installed: no throwaway certificate")
        cls.certdir = tempfile.mkdtemp(prefix="tw-hooks-tls-")
        cls.cert = os.path.join(cls.certdir, "cert.pem")
        key = os.path.join(cls.certdir, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", key, "-out", cls.cert],
                       check=True, capture_output=True, timeout=60)
        cls.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cls.ctx.load_cert_chain(cls.cert, key)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.certdir, True)

    def setUp(self):
        super().setUp()
        self.tls = StandIn(tls=self.ctx)
        self.addCleanup(self.tls.close)

    def revoke(self, **env):
        e = {"VAULT_ADDR": self.tls.url(), "VAULT_TOKEN": VAULT_TOKEN}
        e.update(env)
        return self.run_hook(VAULT_HOOK, anomaly(), (), e)

    def test_vault_cacert_is_trusted(self):
        rc, _, err = self.revoke(VAULT_CACERT=self.cert)
        self.assertEqual(rc, 0, err)
        req = self.only_request(self.tls)
        self.assertEqual(header(req, "X-Vault-Token"), [VAULT_TOKEN])
        self.assertEqual(json.loads(req["body"]), {"accessor": ACCESSOR})

    def test_unknown_ca_is_refused(self):
        rc, _, err = self.revoke()
        self.assertEqual(rc, 1)
        self.assertIn("not trusted", err)
        self.assertIn("VAULT_CACERT", err)
        self.assertEqual(self.tls.requests, [])

    def test_missing_cacert_file(self):
        rc, _, err = self.revoke(VAULT_CACERT=self.path("missing.pem"))
        self.assertEqual(rc, 2)
        self.assertIn("VAULT_CACERT", err)

    def test_webhook_https(self):
        ev = anomaly(token=RAW_TOKEN)
        rc, _, err = self.run_hook(WEBHOOK, ev, ["--cacert", self.cert, self.tls.url("/hook")])
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.only_request(self.tls)["path"], "/hook")
        # Not signed by a system CA: refused without --cacert.
        rc, _, err = self.run_hook(WEBHOOK, ev, [self.tls.url("/hook")])
        self.assertEqual(rc, 1)
        self.assertIn("not trusted", err)
        rc, _, err = self.run_hook(WEBHOOK, ev, ["--cacert", self.path("missing.pem"),
                                                 self.tls.url("/hook")])
        self.assertEqual(rc, 2)
        self.assertIn("--cacert", err)
        self.assertEqual(len(self.tls.requests), 1)

    def test_no_redirect_from_https_to_http(self):
        self.tls.respond(307, headers={"Location": self.server.url(REVOKE_PATH)})
        rc, _, err = self.revoke(VAULT_CACERT=self.cert)
        self.assertEqual(rc, 1)
        self.assertIn("non-https", err)
        self.assertEqual(self.server.requests, [], "the Vault token went over plain http")


# ---------------------------------------------------------------------------
# webhook

HOSTILE = {
    "quotes": "he said \"freeze\" and 'now'",
    "backslashes": "C:\\temp\\\\share\\n (not a newline)",
    "subst": "$(touch CANARY) ${HOME} $HOME",
    "backticks": "`touch CANARY`",
    "semicolons": "a; touch CANARY; b && c || d | e > f < g &",
    "newlines": "line1\nline2\r\nline3\ttab\u2028sep",
    "controls": "\u0000\u0001\u001b[31mred\u007f",
    "replacement": "bad bytes \ufffd\ufffd here",
    "unicode": "Zürich 東京 🙂",
    "big": "x" * 10240,
    "json_in_string": "{\"token\":\"fake\",\"action\":\"unfreeze\"}",
}


class Webhook(HookCase):

    def setUp(self):
        super().setUp()
        self.canary = self.path("CANARY")

    def event(self, **over):
        over.setdefault("token", RAW_TOKEN)
        return anomaly(input="gateway", **over)

    def hostile_event(self):
        ev = self.event()
        for k, v in HOSTILE.items():
            ev[k] = v.replace("CANARY", self.canary)
        ev["evidence"] = dict(ev["evidence"], note=ev["subst"], **{"key \"with\" $(x)": ev["newlines"]})
        ev["city"] = ev["quotes"]
        return ev

    def hook(self, event, args=(), **env):
        return self.run_hook(WEBHOOK, event, args, env)

    def assert_post(self, req, body, path="/tw/hook?src=lab", extra_headers=None):
        self.assertEqual(req["method"], "POST")
        self.assertEqual(req["path"], path)
        want = {"Content-Type": "application/json", "User-Agent": "tokenwatch-webhook"}
        want.update(extra_headers or {})
        self.assert_headers(req, want)
        self.assertEqual(json.loads(req["body"].decode("utf-8")), body)

    def test_forwards_event_without_token(self):
        ev = self.event()
        rc, out, err = self.hook(ev, [self.server.url("/tw/hook?src=lab")])
        self.assertEqual((rc, out, err), (0, "", ""))
        want = dict(ev)
        del want["token"]
        self.assert_post(self.only_request(), want)

    def test_include_token(self):
        ev = self.event()
        rc, _, err = self.hook(ev, ["--include-token", self.server.url("/tw/hook?src=lab")])
        self.assertEqual(rc, 0, err)
        self.assert_post(self.only_request(), ev)

    def test_event_without_token_is_forwarded(self):
        ev = self.event(token=None)
        rc, _, err = self.hook(ev, [self.server.url("/tw/hook?src=lab")])
        self.assertEqual(rc, 0, err)
        self.assert_post(self.only_request(), ev)

    def test_unfreeze_is_forwarded(self):
        ev = self.event(action="unfreeze", reason="analyst", analyst="alice",
                        note="false positive: VPN egress")
        rc, _, err = self.hook(ev, [self.server.url("/tw/hook?src=lab")])
        self.assertEqual(rc, 0, err)
        want = dict(ev)
        del want["token"]
        self.assert_post(self.only_request(), want)
        ev = self.event(action="unfreeze", reason="ttl_expired")
        rc, _, err = self.hook(ev, [self.server.url("/tw/hook?src=lab")])
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(self.server.requests[1]["body"])["reason"], "ttl_expired")

    def test_url_from_environment(self):
        ev = self.event()
        rc, _, err = self.hook(ev, TOKENWATCH_WEBHOOK_URL=self.server.url("/tw/hook?src=lab"))
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.only_request()["path"], "/tw/hook?src=lab")
        rc, _, err = self.hook(ev)
        self.assertEqual(rc, 2)
        self.assertIn("no URL", err)
        for bad in ("ftp://127.0.0.1/x", "127.0.0.1:80/x", "http://user:pw@127.0.0.1/x"):
            rc, _, err = self.hook(ev, [bad])
            self.assertEqual(rc, 2, bad)
        self.assertEqual(len(self.server.requests), 1)

    def test_bearer_token_from_file(self):
        bearer = "whk_" + secrets.token_hex(16)
        self.secrets.append(bearer)
        f = self.write("webhook-token", bearer + "\n")
        ev = self.event()
        rc, _, err = self.hook(ev, ["--bearer-file", f, self.server.url("/tw/hook?src=lab")])
        self.assertEqual(rc, 0, err)
        want = dict(ev)
        del want["token"]
        self.assert_post(self.only_request(), want, extra_headers={"Authorization": "Bearer " + bearer})
        # The environment variable, for runs by hand.
        rc, _, err = self.hook(ev, [self.server.url("/tw/hook?src=lab")],
                               TOKENWATCH_WEBHOOK_TOKEN_FILE=f)
        self.assertEqual(rc, 0, err)
        self.assert_post(self.server.requests[1], want,
                         extra_headers={"Authorization": "Bearer " + bearer})
        # The receiver echoing it back in an error does not print it.
        self.server.respond(401, ("bad bearer " + bearer).encode())
        rc, _, err = self.hook(ev, ["--bearer-file=" + f, self.server.url("/x")])
        self.assertEqual(rc, 1)
        self.assertIn("bad bearer <redacted>", err)
        for path in (self.path("missing"), self.write("empty", "\n")):
            rc, _, err = self.hook(ev, ["--bearer-file", path, self.server.url("/x")])
            self.assertEqual(rc, 2, path)
            self.assertIn("bearer token file", err)
            rc, _, err = self.hook(ev, [self.server.url("/x")], TOKENWATCH_WEBHOOK_TOKEN_FILE=path)
            self.assertEqual(rc, 2, path)
            self.assertIn("TOKENWATCH_WEBHOOK_TOKEN_FILE", err)
        self.assertEqual(len(self.server.requests), 3)

    def test_extra_headers(self):
        api_key = "k3y_" + secrets.token_hex(12)
        self.secrets.append(api_key)
        hf = self.write("headers", "# for the SOAR\nX-Api-Key: %s\n\nX-Team: sec-ops\n" % api_key)
        ev = self.event()
        args = ["--header", "X-Source: tokenwatch lab", "--header=X-Ticket-Queue:SOC",
                "--header-file", hf, "--header", "User-Agent: tw-test",
                self.server.url("/tw/hook?src=lab")]
        rc, _, err = self.hook(ev, args)
        self.assertEqual(rc, 0, err)
        want = dict(ev)
        del want["token"]
        self.assert_post(self.only_request(), want, extra_headers={
            "X-Source": "tokenwatch lab", "X-Ticket-Queue": "SOC", "X-Api-Key": api_key,
            "X-Team": "sec-ops", "User-Agent": "tw-test"})
        # The dry run masks every header-file value (run_hook checks the key).
        rc, out, err = self.hook(ev, ["--dry-run"] + args)
        self.assertEqual(rc, 0, err)
        self.assertIn("X-Api-Key: <redacted>", err)
        self.assertIn("X-Source: tokenwatch lab", err)
        self.assertEqual(len(self.server.requests), 1)

    def test_bad_headers_are_refused(self):
        ev = self.event()
        url = self.server.url("/x")
        for h in ("X-Evil: a\r\nX-Injected: 1", "NoColon", "Bad Name: v", ": v",
                  "Content-Length: 5", "Host: evil.example"):
            rc, _, err = self.hook(ev, ["--header", h, url])
            self.assertEqual(rc, 2, h)
        rc, _, err = self.hook(ev, ["--header", url])
        self.assertEqual(rc, 2)
        rc, _, err = self.hook(ev, ["--header-file", self.path("missing"), url])
        self.assertEqual(rc, 2)
        self.assertIn("--header-file", err)
        rc, _, err = self.hook(ev, ["--bogus", url])
        self.assertEqual(rc, 2)
        self.assertIn("unknown option", err)
        f = self.write("tok", "abc")
        rc, _, err = self.hook(ev, ["--header", "Authorization: Basic x", "--bearer-file", f, url])
        self.assertEqual(rc, 2)
        self.assertIn("Authorization", err)
        self.assertEqual(self.server.requests, [])

    def test_hostile_values_arrive_intact(self):
        ev = self.hostile_event()
        rc, _, err = self.hook(ev, [self.server.url("/tw/hook?src=lab")])
        self.assertEqual(rc, 0, err)
        want = dict(ev)
        del want["token"]
        req = self.only_request()
        self.assert_post(req, want)
        req["body"].decode("utf-8")     # valid UTF-8 on the wire
        self.assertFalse(os.path.exists(self.canary), "a shell ran an event value")
        # The same with --include-token and with U+FFFD sent as an escape.
        stdin = json.dumps(ev, ensure_ascii=True).encode()
        self.assertIn(b"\\ufffd", stdin)
        rc, _, err = self.run_hook(WEBHOOK, ev, ["--include-token", self.server.url("/y")], stdin=stdin)
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(self.server.requests[1]["body"].decode("utf-8")), ev)
        self.assertFalse(os.path.exists(self.canary))

    def test_non_2xx_status_and_body_prefix(self):
        ev = self.event()
        self.server.respond(500, b"A" * 200 + b"B" * 300, {"Content-Type": "text/plain"})
        rc, out, err = self.hook(ev, [self.server.url("/tw/hook?src=lab")])
        self.assertEqual(rc, 1)
        self.assertIn("500", err)
        self.assertIn("A" * 200, err)
        self.assertNotIn("B", err.split("A" * 200, 1)[1])
        self.assertNotIn("src=lab", err)       # the query string may hold a key
        # The raw token echoed across the 200-byte cut: no piece of it is shown.
        self.server.respond(500, b"y" * 195 + RAW_TOKEN.encode())
        rc, _, err = self.hook(ev, [self.server.url("/x")])
        self.assertEqual(rc, 1)
        self.assertIn("y" * 195 + "<reda", err)
        self.assertNotIn(RAW_TOKEN[:5], err)
        self.server.respond(403, {"errors": ["permission denied"]})
        rc, _, err = self.hook(ev, [self.server.url("/x")])
        self.assertEqual(rc, 1)
        self.assertIn("403", err)
        self.assertIn("permission denied", err)
        self.assertIn(TOKEN_ID, err)
        self.server.respond(404)
        rc, _, err = self.hook(ev, [self.server.url("/x")])
        self.assertEqual(rc, 1)
        self.assertIn("404", err)
        self.server.respond(202)
        rc, _, err = self.hook(ev, [self.server.url("/x")])
        self.assertEqual((rc, err), (0, ""))

    def test_redirect_is_not_followed(self):
        other = StandIn()
        self.addCleanup(other.close)
        self.server.respond(302, headers={"Location": other.url("/elsewhere")})
        f = self.write("tok", "whk_" + secrets.token_hex(8))
        rc, _, err = self.hook(self.event(), ["--bearer-file", f, self.server.url("/x")])
        self.assertEqual(rc, 1)
        self.assertIn("302", err)
        self.assertIn("not followed", err)
        self.assertEqual(other.requests, [])
        self.assertEqual(len(self.server.requests), 1)

    def test_connection_refused(self):
        sock, port = closed_port()
        self.addCleanup(sock.close)
        rc, _, err = self.hook(self.event(), ["http://127.0.0.1:%d/x" % port])
        self.assertEqual(rc, 1)
        self.assertIn("connection refused", err)

    def test_slow_receiver_times_out(self):
        self.server.respond(200, delay=RUN_TIMEOUT)
        rc, _, err = self.hook(self.event(), ["--timeout=0.5", self.server.url("/x")])
        self.assertEqual(rc, 1)
        self.assertIn("within 0.5s", err)
        self.assertEqual(len(self.server.requests), 1)

    def test_dry_run(self):
        # A one-line summary on stderr (what the daemon records), the body on stdout.
        ev = self.event()
        rc, out, err = self.hook(ev, ["--dry-run", self.server.url("/tw/hook?key=s3cr3t")])
        self.assertEqual(rc, 0, err)
        self.assertEqual(err.count("\n"), 1, err)
        self.assertIn(TOKEN_ID + ": dry run: would POST " + self.server.url("/tw/hook?..."), err)
        self.assertIn("(token not sent)", err)
        self.assertNotIn("s3cr3t", out + err)
        want = dict(ev)
        del want["token"]
        self.assertEqual(json.loads(out), want)
        rc, out, err = self.hook(ev, ["--dry-run", "--include-token", self.server.url("/x")])
        self.assertEqual(rc, 0, err)
        self.assertIn("(token included)", err)
        self.assertEqual(json.loads(out)["token"], "<redacted>")
        self.assertEqual(self.server.requests, [])

    def test_bad_stdin(self):
        for data in (b"", b"{", b"\"just a string\"", b"\xff\xfe"):
            rc, _, err = self.run_hook(WEBHOOK, stdin=data, args=[self.server.url("/x")])
            self.assertEqual(rc, 2, data)
        self.assertEqual(self.server.requests, [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
