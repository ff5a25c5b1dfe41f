"""
test_api_auth.py — the analyst API's access control, validation and TLS on
the real daemon (docs/api.md), and the CLI against it:

  - with a bearer token and basic auth configured: every endpoint refuses a
    missing or wrong credential (401 + WWW-Authenticate) and serves a right
    one; bad ids, bad query parameters, oversized, malformed and mistyped
    bodies and wrong methods get their 400/413/415/405; the page needs the
    basic login; /metrics and the probes stay open;
  - a token flagged by the default rules (a burst of rejections) is listed,
    shown and acknowledged, and no raw token of the fed log appears in any
    API answer, the page, the CLI output or the daemon's stderr; nor does
    the bearer token;
  - metrics_auth puts /metrics behind the same credentials;
  - with http.tls (a self-signed certificate from openssl, skipped when
    openssl is missing) the daemon speaks HTTPS only, and `tokenwatch
    flagged -c CONFIG` finds it and trusts its certificate;
  - `tokenwatch flagged` and `tokenwatch token` exit codes and output.
"""

import base64
import json
import os
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request

sys.dont_write_bytecode = True   # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twtest  # noqa: E402
from twtest import append, run_cli, wait_until  # noqa: E402

BEARER = "it-bearer-5c1d7e29a4b8f036"
USER, PASSWORD = "analyst", "it-pass-0b7e"
DEFAULT_RULES = os.path.join(twtest.SOURCE_DIR, "rules", "default.json")


def basic(user, password):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


class AuthDaemon(twtest.Daemon):
    """A Daemon whose config carries an http section beyond "listen"."""

    def __init__(self, *a, http=None, **kw):
        self.http_extra = http or {}
        super().__init__(*a, **kw)

    def config(self):
        cfg = super().config()
        cfg["http"].update(self.http_extra)
        return cfg

    def request(self, path, method="GET", headers=None, body=None, scheme="http", ctx=None):
        """(status, body bytes, headers); HTTP errors are returned."""
        url = "%s://127.0.0.1:%d%s" % (scheme, self.port, path)
        req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
                return r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            return e.code, e.read(), e.headers


class ApiAuthTest(twtest.TwTestCase):

    def secret_file(self, name, text, mode=0o600):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)
        return p

    def start_daemon(self, http, inputs=None, extra=None):
        run = self.path("run")
        os.makedirs(run, exist_ok=True)
        d = AuthDaemon(run, inputs or [self.input("gw")], name="tw%d" % len(self.daemons),
                       http=http, extra=extra)
        self.daemons.append(d)
        d.start()
        return d

    def auth_daemon(self, metrics_auth=False, extra=None, inputs=None):
        self.bearer_file = self.secret_file("api-token", BEARER + "\n")
        self.users_file = self.secret_file("users", "# analysts\n%s:%s\n" % (USER, PASSWORD))
        http = {"auth": {"bearer_token_file": self.bearer_file,
                         "basic_auth_file": self.users_file},
                "metrics_auth": metrics_auth}
        return self.start_daemon(http, inputs=inputs, extra=extra)

    def require_api(self, d):
        """The daemon side of the API must answer (issue 5); and a daemon
        that ignores http.auth must fail here, never pass quietly."""
        status, body, _ = d.request("/api/v1/stats", headers={"Authorization": "Bearer " + BEARER})
        if status == 404:
            self.skipTest("the daemon serves no /api yet (backend not wired)")
        self.assertEqual(status, 200, body)
        status, body, _ = d.request("/api/v1/stats")
        self.assertEqual(status, 401, "the daemon answered /api without credentials although "
                         "http.auth is configured: it must pass the config's http settings to "
                         "tw_http_start (tw_config_http_opts)")

    # ------------------------------------------------------------------

    def test_endpoints_need_credentials(self):
        d = self.auth_daemon()
        self.require_api(d)
        good = [{"Authorization": "Bearer " + BEARER},
                {"Authorization": basic(USER, PASSWORD)}]
        wrong = [{}, {"Authorization": "Bearer " + BEARER + "x"},
                 {"Authorization": "Bearer"}, {"Authorization": basic(USER, "nope")},
                 {"Authorization": basic("mallory", PASSWORD)},
                 {"Authorization": "Token " + BEARER}]
        gets = ["/api/v1/stats", "/api/v1/flagged", "/api/v1/flagged?severity=high",
                "/api/v1/tokens/tw_00000000000000ff", "/api/v1/tokens/bad", "/api/v1/nope"]
        for path in gets:
            for h in wrong:
                with self.subTest(path=path, headers=h):
                    status, body, headers = d.request(path, headers=h)
                    self.assertEqual(status, 401, body)
                    challenges = headers.get_all("WWW-Authenticate")
                    self.assertIn(challenges[0].split(",")[0], ('Bearer realm="tokenwatch"',))
                    self.assertEqual(challenges[1], 'Basic realm="tokenwatch", charset="UTF-8"')
                    self.assertIn("error", json.loads(body))
        for h in good:
            status, body, headers = d.request("/api/v1/stats", headers=h)
            self.assertEqual(status, 200, body)
            self.assertEqual(headers["Content-Type"], "application/json; charset=utf-8")
            self.assertEqual(headers["Cache-Control"], "no-store")
            stats = json.loads(body)
            self.assertIn("tokens_tracked", stats)
            status, body, _ = d.request("/api/v1/flagged", headers=h)
            self.assertEqual(status, 200, body)
            self.assertEqual(json.loads(body)["limit"], 50)
            status, body, _ = d.request("/api/v1/tokens/tw_00000000000000ff", headers=h)
            self.assertEqual(status, 404, body)
        # Actions: 401 before the body matters, then the usual checks.
        post = "/api/v1/tokens/tw_00000000000000ff/ack"
        js = {"Content-Type": "application/json"}
        status, _, _ = d.request(post, "POST", js, b'{"analyst":"a"}')
        self.assertEqual(status, 401)
        auth = dict(js, Authorization="Bearer " + BEARER)
        status, body, _ = d.request(post, "POST", auth, b'{"analyst":"a","note":"x"}')
        self.assertEqual(status, 404, body)
        # The probes and /metrics (metrics_auth false) need nothing.
        for path in ("/-/healthy", "/-/ready", "/metrics"):
            self.assertEqual(d.request(path)[0], 200, path)
        # The page: the basic login.
        status, _, headers = d.request("/")
        self.assertEqual(status, 401)
        status, body, headers = d.request("/", headers={"Authorization": basic(USER, PASSWORD)})
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Security-Policy"].startswith("default-src 'self'"))
        self.assertEqual(headers["X-Frame-Options"], "DENY")
        self.assertIn(b"<", body)
        # The bearer token never reaches the log, the failures do.
        err = d.stderr()
        self.assertNotIn(BEARER, err)
        self.assertNotIn(PASSWORD, err)
        self.assertIn("wrong credentials for the API from 127.0.0.1", err)
        d.stop()   # exit 0 after SIGTERM (and, under ASan, no leak report)

    def test_validation(self):
        d = self.auth_daemon()
        self.require_api(d)
        auth = {"Authorization": "Bearer " + BEARER}
        js = dict(auth, **{"Content-Type": "application/json"})
        cases = [
            ("GET", "/api/v1/tokens/tw_3F9A1C2B7D4E5F60", {}, None, 400, "token id"),
            ("GET", "/api/v1/tokens/at-a-raw-token-9f2c", {}, None, 400, "token id"),
            ("GET", "/api/v1/flagged?severity=urgent", {}, None, 400, "severity"),
            ("GET", "/api/v1/flagged?state=gone", {}, None, 400, "state"),
            ("GET", "/api/v1/flagged?since=yesterday", {}, None, 400, "since"),
            ("GET", "/api/v1/flagged?limit=0", {}, None, 400, "limit"),
            ("GET", "/api/v1/flagged?limit=501", {}, None, 400, "limit"),
            ("GET", "/api/v1/flagged?offset=-1", {}, None, 400, "offset"),
            ("DELETE", "/api/v1/stats", {}, None, 405, "method"),
            ("GET", "/api/v1/tokens/tw_00000000000000ff/ack", {}, None, 405, "POST"),
            ("POST", "/api/v1/tokens/tw_00000000000000ff/freeze", js, b'{"analyst":"a"}',
             404, "no such endpoint"),
            ("POST", "/api/v1/tokens/tw_00000000000000ff/ack", dict(auth, **{
                "Content-Type": "text/plain"}), b'{"analyst":"a"}', 415, "Content-Type"),
            ("POST", "/api/v1/tokens/tw_00000000000000ff/ack", js, b'{"analyst":', 400,
             "not valid JSON"),
            ("POST", "/api/v1/tokens/tw_00000000000000ff/ack", js, b'{"note":"x"}', 400,
             "analyst"),
            ("POST", "/api/v1/tokens/tw_00000000000000ff/ack", js,
             b'{"analyst":"' + b"a" * 65 + b'"}', 400, "analyst"),
            ("POST", "/api/v1/tokens/tw_00000000000000ff/ack", js,
             b'{"analyst":"a","note":"' + b"n" * 9000 + b'"}', 413, "too large"),
        ]
        for method, path, headers, body, want, words in cases:
            with self.subTest(method=method, path=path):
                status, out, h = d.request(path, method, dict(auth, **headers), body)
                self.assertEqual(status, want, out)
                self.assertIn(words, json.loads(out)["error"])
                self.assertNotIn(b"at-a-raw-token", out)
                if want == 405:
                    self.assertTrue(h["Allow"])

    def test_flagged_token_secrecy_and_cli(self):
        gw = self.input("gw")
        d = self.auth_daemon(inputs=[gw], extra={"rules_file": DEFAULT_RULES})
        self.require_api(d)
        auth = {"Authorization": "Bearer " + BEARER}
        # Nothing flagged yet: an empty list (the daemon once passed NULL to
        # qsort here, which UBSan stops on).
        status, body, _ = d.request("/api/v1/flagged", headers=auth)
        self.assertEqual(status, 200, body)
        self.assertEqual((json.loads(body)["total"], json.loads(body)["items"]), (0, []))
        d.check_alive()
        # A burst of rejections flags one token (failure_burst: 20 in 300 s).
        bad = self.gen.token()
        lines = b"".join(self.gen.text(rejected=True, token=bad, ip="10.9.8.7")
                         for _ in range(25))
        lines += b"".join(self.gen.text() for _ in range(10))
        append(gw["path"], lines)

        def flagged():
            d.check_alive()
            status, body, _ = d.request("/api/v1/flagged", headers=auth)
            items = json.loads(body)["items"] if status == 200 else []
            return items[0] if items else None
        item = wait_until(flagged, what="a flagged token in /api/v1/flagged")
        self.assertEqual(item["rule"], "failure_burst")
        self.assertEqual(item["token_hint"], bad[:3] + "\u2026" + bad[-4:])
        tid = item["token_id"]
        answers = []
        for path in ("/api/v1/flagged", "/api/v1/stats", "/api/v1/tokens/" + tid,
                     "/api/v1/flagged?rule=failure_burst&severity=medium"):
            status, body, _ = d.request(path, headers=auth)
            self.assertEqual(status, 200, (path, body))
            answers.append(body)
        status, body, _ = d.request("/api/v1/tokens/%s/ack" % tid, "POST",
                                    dict(auth, **{"Content-Type": "application/json"}),
                                    json.dumps({"analyst": "it", "note": "checked"}).encode())
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["state"], "acked")
        answers.append(body)
        status, page, _ = d.request("/", headers={"Authorization": basic(USER, PASSWORD)})
        answers.append(page)

        # The CLI, with the config's URL and token.
        p = run_cli(["flagged", "-c", d.config_path])
        self.assertEqual(p.returncode, 0, p.stderr_text)
        self.assertIn(tid, p.stdout_text)
        self.assertIn("acked", p.stdout_text)
        answers.append(p.stdout)
        p = run_cli(["token", tid, "-c", d.config_path])
        self.assertEqual(p.returncode, 0, p.stderr_text)
        self.assertIn("Hour-of-week profile", p.stdout_text)
        self.assertIn("failure_burst", p.stdout_text)
        answers.append(p.stdout)
        p = run_cli(["token", tid, "-c", d.config_path, "--json"])
        self.assertEqual(p.returncode, 0, p.stderr_text)
        self.assertEqual(json.loads(p.stdout)["token_id"], tid)
        # Without credentials: 1, with the API's message; bad usage: 2.
        p = run_cli(["flagged", "--url", "http://127.0.0.1:%d" % d.port,
                     "-c", self.secret_file("bare.json", '{"state_dir": "s"}', 0o644)])
        self.assertEqual(p.returncode, 1, p.stderr_text)
        self.assertIn("HTTP 401", p.stderr_text)
        self.assertEqual(run_cli(["token", "tw_XYZ", "-c", d.config_path]).returncode, 2)
        self.assertEqual(run_cli(["flagged", "--severity", "huge", "-c",
                                  d.config_path]).returncode, 2)

        for body in answers:
            for tok in self.gen.tokens:
                self.assertNotIn(tok.encode(), body, "raw token in an answer")
            self.assertNotIn(BEARER.encode(), body)
        self.assertNotIn(BEARER, d.stderr())
        d.stop()

    def test_metrics_auth(self):
        d = self.auth_daemon(metrics_auth=True)
        status, _, headers = d.request("/metrics")
        self.assertEqual(status, 401)
        self.assertIn('Basic realm="tokenwatch", charset="UTF-8"',
                      headers.get_all("WWW-Authenticate"))
        self.assertEqual(d.request("/metrics", headers={"Authorization": basic(USER, "x")})[0],
                         401)
        status, body, _ = d.request("/metrics", headers={"Authorization": basic(USER, PASSWORD)})
        self.assertEqual(status, 200)
        self.assertIn(b"auth_token_check", body)
        status, _, _ = d.request("/metrics", headers={"Authorization": "Bearer " + BEARER})
        self.assertEqual(status, 200)
        self.assertEqual(d.request("/-/healthy")[0], 200)

    def test_config_refuses_loose_files(self):
        loose = self.secret_file("loose-token", BEARER + "\n", 0o644)
        cfg = self.path("loose.json")
        with open(cfg, "w") as f:
            json.dump({"state_dir": self.path("s"), "formats_dir": twtest.FORMATS_DIR,
                       "http": {"auth": {"bearer_token_file": loose}}}, f)
        p = run_cli(["check", "-c", cfg])
        self.assertEqual(p.returncode, 2)
        self.assertIn("%s: http.auth.bearer_token_file: %s: expected a file readable by its "
                      "owner only" % (cfg, loose), p.stderr_text)
        self.assertNotIn(BEARER, p.stderr_text + p.stdout_text)

    def test_tls(self):
        openssl = shutil.which("openssl")
        if not openssl:
            self.skipTest("openssl is not installed (Debian: openssl)")
        cert, key = self.path("cert.pem"), self.path("key.pem")
        subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                       check=True, capture_output=True)
        os.chmod(key, 0o600)
        bearer_file = self.secret_file("api-token", BEARER + "\n")
        http = {"auth": {"bearer_token_file": bearer_file},
                "tls": {"cert_file": cert, "key_file": key}}
        run = self.path("run")
        os.makedirs(run, exist_ok=True)
        d = AuthDaemon(run, [self.input("gw")], name="tls", http=http)
        self.daemons.append(d)
        d.start(wait_ready=False)
        ctx = ssl.create_default_context(cafile=cert)

        def ready():
            if not d.running():
                raise twtest.Fatal("daemon exited:\n" + d.stderr_tail())
            return d.request("/-/ready", scheme="https", ctx=ctx)[0] == 200
        wait_until(ready, what="/-/ready over HTTPS")
        status, body, _ = d.request("/api/v1/stats", scheme="https", ctx=ctx,
                                    headers={"Authorization": "Bearer " + BEARER})
        if status == 404:
            self.skipTest("the daemon serves no /api yet (backend not wired)")
        self.assertEqual(status, 200, body)
        self.assertEqual(d.request("/api/v1/stats", scheme="https", ctx=ctx)[0], 401)
        # Plain HTTP gets no HTTP answer.
        with self.assertRaises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(d.url("/-/healthy"), timeout=5).read()
        p = run_cli(["flagged", "-c", d.config_path])
        self.assertEqual(p.returncode, 0, p.stderr_text)
        self.assertIn("no flagged tokens match", p.stdout_text)
        d.stop()


if __name__ == "__main__":
    twtest.main()
