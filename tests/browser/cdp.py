"""
cdp.py — a small Chrome DevTools Protocol client over --remote-debugging-pipe
(python3 stdlib only), enough to drive Debian's headless chromium in tests.

Chromium started with --remote-debugging-pipe reads commands from its fd 3
and writes answers and events to its fd 4, each message one JSON object
followed by a NUL byte. Nothing listens on a port, so nothing else on the
machine can reach the browser, and no npm package is needed.

    with Browser(user_data_dir=tmp) as b:
        page = b.new_page(1440, 900)
        page.navigate("http://127.0.0.1:8088/")
        page.wait_for("document.readyState === 'complete'")
        page.key("j"); page.key("Enter")
        page.screenshot("/tmp/x.png")

Every wait has a deadline and raises CDPTimeout with what it waited for.
The browser runs in its own session (process group); close() asks it to
quit (Browser.close), then SIGKILLs that group — never other processes. A
browser not closed by its user is closed at interpreter exit (atexit), which
also runs when a SIGTERM handler exits (twtest installs one for ctest's
timeout).
"""
import atexit
import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import time

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


_LIVE = []   # browsers not closed yet: killed at exit whatever happens


def _kill_leftovers():
    for b in list(_LIVE):
        b.close()


atexit.register(_kill_leftovers)


def find_chromium():
    """The chromium binary: $TW_CHROMIUM, else Debian's /usr/bin/chromium, else None."""
    env = os.environ.get("TW_CHROMIUM")
    if env:
        return env if os.access(env, os.X_OK) else None
    for c in CHROMIUM_CANDIDATES:
        if os.access(c, os.X_OK):
            return c
    return shutil.which("chromium")


class CDPError(Exception):
    """A command answered with an error."""


class CDPTimeout(AssertionError):
    """A wait passed its deadline."""


# Key definitions for Input.dispatchKeyEvent: key -> (code, keyCode, text).
_KEYS = {
    "Enter": ("Enter", 13, "\r"),
    "Escape": ("Escape", 27, None),
    "Tab": ("Tab", 9, None),
    "ArrowDown": ("ArrowDown", 40, None),
    "ArrowUp": ("ArrowUp", 38, None),
    "Home": ("Home", 36, None),
    "End": ("End", 35, None),
    "Backspace": ("Backspace", 8, None),
}


def _high_fd(fd, low=10):
    """Moves fd to a number >= low (close-on-exec), so the child's dup2 onto
    3 and 4 never meets one of our own descriptors."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low)
    os.close(fd)
    return new


class Browser:
    def __init__(self, user_data_dir, binary=None, extra_args=(), stderr_path=None, timeout=30.0):
        self.binary = binary or find_chromium()
        if not self.binary:
            raise FileNotFoundError("chromium not found")
        self.timeout = timeout
        self.events = []          # (method, params, sessionId) in arrival order
        self._next_id = 0
        self._buf = b""
        self._answers = {}
        cmd_r, cmd_w = (_high_fd(fd) for fd in os.pipe())
        res_r, res_w = (_high_fd(fd) for fd in os.pipe())

        def child_fds():   # runs in the child between fork and exec
            os.dup2(cmd_r, 3)
            os.dup2(res_w, 4)

        args = [self.binary, "--headless=new", "--remote-debugging-pipe",
                "--user-data-dir=" + user_data_dir,
                "--no-first-run", "--no-default-browser-check", "--disable-gpu",
                "--disable-extensions", "--disable-background-networking", "--disable-sync",
                "--disable-component-update", "--disable-default-apps", "--disable-breakpad",
                "--disable-features=Translate,MediaRouter,OptimizationHints",
                "--metrics-recording-only", "--mute-audio", "--hide-scrollbars",
                "--password-store=basic", "--use-mock-keychain",
                "--force-device-scale-factor=1", "--window-size=1440,900"]
        if os.geteuid() == 0:
            args.append("--no-sandbox")   # the setuid sandbox refuses root
        args += list(extra_args)
        args.append("about:blank")
        err = open(stderr_path or os.devnull, "wb")
        try:
            # close_fds=False: our own descriptors are close-on-exec (PEP 446),
            # fds 3 and 4 made by dup2 in the child are not.
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         preexec_fn=child_fds, close_fds=False,
                                         start_new_session=True)
        finally:
            err.close()
            os.close(cmd_r)
            os.close(res_w)
        self._w = cmd_w
        self._r = res_r
        _LIVE.append(self)

    # -- life cycle --------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Ends the browser and its helpers (idempotent)."""
        if self not in _LIVE:
            return
        _LIVE.remove(self)
        if self.proc.poll() is None:
            try:
                self.call("Browser.close", timeout=5)
            except Exception:   # noqa: BLE001 - best effort, killed below anyway
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        # The browser's helpers (zygote, renderers) share its process group.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for fd in (self._w, self._r):
            try:
                os.close(fd)
            except OSError:
                pass
        self._w = self._r = -1

    # -- protocol ----------------------------------------------------------
    def send(self, method, params=None, session=None):
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            n = os.write(self._w, data)
            data = data[n:]
        return self._next_id

    def _pump(self, deadline):
        """Reads what is available (waiting until deadline); returns False on timeout."""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([self._r], [], [], left)
        if not ready:
            return False
        chunk = os.read(self._r, 1 << 20)
        if not chunk:
            raise CDPError("chromium closed the pipe (exit %s)" % self.proc.poll())
        self._buf += chunk
        while b"\0" in self._buf:
            raw, self._buf = self._buf.split(b"\0", 1)
            msg = json.loads(raw.decode("utf-8"))
            if "id" in msg:
                self._answers[msg["id"]] = msg
            else:
                self.events.append((msg.get("method"), msg.get("params", {}), msg.get("sessionId")))
        return True

    def call(self, method, params=None, session=None, timeout=None):
        mid = self.send(method, params, session)
        deadline = time.monotonic() + (timeout or self.timeout)
        while mid not in self._answers:
            if not self._pump(deadline):
                raise CDPTimeout("no answer to %s within %.0fs" % (method, timeout or self.timeout))
        msg = self._answers.pop(mid)
        if "error" in msg:
            raise CDPError("%s: %s" % (method, msg["error"].get("message", msg["error"])))
        return msg.get("result", {})

    def drain(self, seconds=0.0):
        """Reads the messages that arrive within `seconds` (at least what is
        already waiting)."""
        deadline = time.monotonic() + max(seconds, 0.001)
        while self._pump(deadline):
            pass

    def new_page(self, width=1440, height=900):
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session, target)
        page.call("Page.enable")
        page.call("Runtime.enable")
        page.call("Network.enable", {"maxTotalBufferSize": 64 << 20, "maxResourceBufferSize": 16 << 20})
        page.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        return page


class Page:
    """One tab, attached with flatten=True (commands carry its sessionId)."""

    def __init__(self, browser, session, target):
        self.b = browser
        self.session = session
        self.target = target

    def call(self, method, params=None, timeout=None):
        return self.b.call(method, params, self.session, timeout)

    def events(self, method=None):
        return [p for m, p, s in self.b.events if s == self.session and (method is None or m == method)]

    def navigate(self, url, timeout=30):
        n = len(self.b.events)
        r = self.call("Page.navigate", {"url": url}, timeout)
        if r.get("errorText"):
            raise CDPError("navigate %s: %s" % (url, r["errorText"]))
        deadline = time.monotonic() + timeout
        while True:
            if any(m == "Page.loadEventFired" and s == self.session for m, p, s in self.b.events[n:]):
                return r
            if not self.b._pump(deadline):
                raise CDPTimeout("page %s did not load within %ds" % (url, timeout))

    def evaluate(self, expression, await_promise=True, timeout=None):
        """Evaluates in the page; returns the value (JSON-serialisable)."""
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                           "awaitPromise": await_promise, "userGesture": True}, timeout)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            text = d.get("exception", {}).get("description") or d.get("text")
            raise CDPError("evaluate %r: %s" % (expression[:80], text))
        return r.get("result", {}).get("value")

    def wait_for(self, expression, timeout=15.0, what=None, interval=0.05):
        """Polls a JS expression until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                last = self.evaluate(expression)
                if last:
                    return last
            except CDPError as e:
                last = e
            if time.monotonic() >= deadline:
                raise CDPTimeout("timed out after %.0fs waiting for %s (last: %r)"
                                 % (timeout, what or expression, last))
            self.b.drain(interval)

    def key(self, key, times=1):
        """Presses and releases a key like a keyboard would (keydown, the
        character for printable keys, keyup)."""
        if key in _KEYS:
            code, vk, text = _KEYS[key]
        elif len(key) == 1:
            code = ("Key" + key.upper()) if key.isalpha() else ""
            vk = ord(key.upper()) if key.isalnum() else 0
            text = key
        else:
            raise ValueError("unknown key %r" % key)
        for _ in range(times):
            down = {"type": "keyDown" if text else "rawKeyDown", "key": key, "code": code,
                    "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk}
            if text:
                down["text"] = text
                down["unmodifiedText"] = text
            self.call("Input.dispatchKeyEvent", down)
            self.call("Input.dispatchKeyEvent", {"type": "keyUp", "key": key, "code": code,
                                                 "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk})

    def insert_text(self, text):
        """Types text into the focused field (as an IME commit would)."""
        self.call("Input.insertText", {"text": text})

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False})["data"]
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path

    def set_dark(self, dark=True):
        self.call("Emulation.setEmulatedMedia",
                  {"features": [{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]})

    def responses(self):
        """[(url, status, headers, body text)] of every response this page
        received (document, scripts, fetches), bodies fetched from the
        browser's buffer."""
        self.b.drain(0.2)
        out = []
        seen = {}
        for m, p, s in self.b.events:
            if s != self.session:
                continue
            if m == "Network.responseReceived":
                seen[p["requestId"]] = p["response"]
            elif m == "Network.loadingFinished" and p["requestId"] in seen:
                resp = seen[p["requestId"]]
                try:
                    r = self.call("Network.getResponseBody", {"requestId": p["requestId"]})
                    body = base64.b64decode(r["body"]).decode("utf-8", "replace") if r.get("base64Encoded") else r["body"]
                except CDPError:
                    body = None
                out.append((resp["url"], resp["status"], resp.get("headers", {}), body))
        return out
