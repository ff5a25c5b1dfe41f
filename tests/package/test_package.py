#!/usr/bin/env python3
"""test_package.py — builds the Debian package, installs it on this machine,
checks what an operator relies on, and purges it again.

  1. configure a fresh build (prefix /usr, no tests) in a temp dir, cpack -G DEB
  2. inspect the .deb: Depends (runtime library packages, never -dev),
     conffiles, file list, maintainer scripts
  3. apt-get install ./tokenwatch_*.deb
  4. tokenwatch --version; tokenwatch check (the installed default config);
     the system user and its directories; the daemon run briefly as that user
     (setpriv, the way the unit runs it) against a group-adm log file;
     man -l on both pages; systemd-analyze verify and security on the unit;
     logrotate -d on the logrotate file when logrotate is installed
  5. reinstall with a locally edited conffile: the edit survives
  6. apt-get remove --purge: nothing of the package is left
  7. the machine is restored: the system user and group go if this test
     created them, and passwd/group/shadow/gshadow and the systemd unit
     directories are compared with their state before the test.

Root only: exits 77 (ctest SKIP_RETURN_CODE) as another user, on a system
without dpkg/apt-get, or when a tokenwatch package is already installed
(the test would replace and purge it). Environment: TW_SOURCE_DIR.
"""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request

SRC = os.environ.get("TW_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
PKG = "tokenwatch"
SKIP = 77
MAX_EXPOSURE = 2.0   # systemd-analyze security; the unit scores 1.4 today

ACCOUNT_FILES = ["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"]
# Everything of the package that must be gone after a purge.
PACKAGE_PATHS = [
    "/usr/bin/tokenwatch", "/etc/tokenwatch", "/etc/logrotate.d/tokenwatch",
    "/lib/systemd/system/tokenwatch.service", "/usr/lib/systemd/system/tokenwatch.service",
    "/usr/share/tokenwatch", "/usr/share/doc/tokenwatch",
    "/usr/share/man/man1/tokenwatch.1.gz", "/usr/share/man/man5/tokenwatch.json.5.gz",
    "/var/lib/tokenwatch", "/var/log/tokenwatch",
    "/etc/systemd/system/multi-user.target.wants/tokenwatch.service",
    "/etc/systemd/system/tokenwatch.service",
    "/var/lib/systemd/deb-systemd-helper-enabled/tokenwatch.service.dsh-also",
    "/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/tokenwatch.service",
    "/var/lib/systemd/deb-systemd-helper-masked/tokenwatch.service",
]
SYSTEMD_DIRS = ["/etc/systemd/system", "/var/lib/systemd/deb-systemd-helper-enabled",
                "/var/lib/systemd/deb-systemd-helper-masked"]

T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def run(cmd, ok=(0,), env=None, **kw):
    e = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C.UTF-8")
    if env:
        e.update(env)
    p = subprocess.run(cmd, capture_output=True, text=True, env=e, **kw)
    if ok is not None and p.returncode not in ok:
        raise Failure(f"{' '.join(cmd)} exited {p.returncode}\n--- stdout\n{p.stdout}"
                      f"\n--- stderr\n{p.stderr}")
    return p


def installed():
    p = run(["dpkg-query", "-W", "-f=${Status}", PKG], ok=None)
    return p.returncode == 0 and "not-installed" not in p.stdout


def exists(path):
    return os.path.lexists(path)


def getent(db, name):
    return run(["getent", db, name], ok=None).stdout.strip()


def tree(paths):
    out = {}
    for top in paths:
        for dirpath, dirs, files in os.walk(top):
            for n in dirs + files:
                p = os.path.join(dirpath, n)
                out[p] = os.readlink(p) if os.path.islink(p) else None
    return out


def read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


# --------------------------------------------------------------------------

def preflight():
    if os.geteuid() != 0:
        print("SKIP: the package test installs and purges a .deb; it runs as root "
              "only (CI runs it as root)")
        sys.exit(SKIP)
    for tool in ("dpkg", "dpkg-deb", "apt-get"):
        if not shutil.which(tool):
            print(f"SKIP: {tool} not found; the package test needs a Debian system")
            sys.exit(SKIP)
    if installed() or exists("/etc/tokenwatch"):
        print("SKIP: a tokenwatch package (or /etc/tokenwatch) is already on this "
              "machine; the test would replace and purge it")
        sys.exit(SKIP)
    missing = [t for t in ("cmake", "cpack", "systemd-analyze", "man", "adduser")
               if not shutil.which(t)]
    check(not missing, f"missing tools: {', '.join(missing)} (Debian packages cmake, "
                       "systemd, man-db, adduser)")


def snapshot():
    return {
        "user": getent("passwd", PKG),
        "group": getent("group", PKG),
        "accounts": {p: read_bytes(p) for p in ACCOUNT_FILES},
        "backups": {p + "-": read_bytes(p + "-") for p in ACCOUNT_FILES},
        "systemd": tree(SYSTEMD_DIRS),
    }


def build(tmp):
    bdir = os.path.join(tmp, "build")
    log("configure (prefix /usr, no tests)")
    run(["cmake", "-S", SRC, "-B", bdir, "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
         "-DCMAKE_INSTALL_PREFIX=/usr", "-DBUILD_TESTING=OFF"])
    log("build")
    run(["cmake", "--build", bdir, "-j", str(os.cpu_count() or 2)])
    log("cpack -G DEB")
    run(["cpack", "-G", "DEB"], cwd=bdir)
    debs = glob.glob(os.path.join(bdir, f"{PKG}_*.deb"))
    check(len(debs) == 1, f"expected one {PKG}_*.deb in {bdir}, got {debs}")
    return bdir, debs[0]


def package_deps_of_binary(binary):
    """Debian packages that own the shared libraries the binary needs
    directly (its NEEDED entries, not their dependencies)."""
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                        run(["readelf", "-d", binary]).stdout)
    check(needed, f"no NEEDED entries in {binary}")
    ldd = run(["ldd", binary]).stdout
    check("not found" not in ldd, f"unresolved libraries:\n{ldd}")
    where = dict(re.findall(r"^\s*(\S+)\s+=>\s+(/\S+)", ldd, re.M))
    pkgs = set()
    for soname in needed:
        check(soname in where, f"ldd does not resolve {soname}")
        path = where[soname]
        owner = run(["dpkg", "-S", path], ok=None)
        if owner.returncode != 0:   # /lib vs /usr/lib aliasing on merged /usr
            alt = os.path.realpath(path)
            owner = run(["dpkg", "-S", alt], ok=None)
            if owner.returncode != 0:
                alt = "/usr" + path if not path.startswith("/usr/") else path[4:]
                owner = run(["dpkg", "-S", alt], ok=None)
        check(owner.returncode == 0, f"no package owns {path}")
        pkgs.add(owner.stdout.split(":")[0].strip())
    return pkgs


def inspect(bdir, deb):
    fields = {f: run(["dpkg-deb", "-f", deb, f]).stdout.strip()
              for f in ("Package", "Version", "Architecture", "Depends", "Section")}
    log(f"{os.path.basename(deb)}: Depends: {fields['Depends']}")
    check(fields["Package"] == PKG, fields)
    depends = [d.strip().split(" ")[0] for d in fields["Depends"].split(",")]
    check(not [d for d in depends if d.endswith("-dev")], f"-dev in Depends: {depends}")
    check("adduser" in depends, "Depends lacks adduser (postinst uses it)")
    need = package_deps_of_binary(os.path.join(bdir, "tokenwatch"))
    check(need <= set(depends), f"Depends lacks {sorted(need - set(depends))}")
    for lib in ("libmicrohttpd12", "libpcre2-8-0", "libcjson1"):
        check(lib in depends, f"Depends lacks {lib}")

    ctrl = tempfile.mkdtemp(prefix="tw-ctrl-")
    try:
        run(["dpkg-deb", "-e", deb, ctrl])
        with open(os.path.join(ctrl, "conffiles")) as f:
            conffiles = sorted(f.read().split())
        check(conffiles == ["/etc/logrotate.d/tokenwatch", "/etc/tokenwatch/tokenwatch.json"],
              f"conffiles: {conffiles}")
        for script in ("postinst", "prerm", "postrm"):
            p = os.path.join(ctrl, script)
            check(os.access(p, os.X_OK), f"{script} missing or not executable")
            run(["sh", "-n", p])
    finally:
        shutil.rmtree(ctrl)

    listing = run(["dpkg-deb", "-c", deb]).stdout
    names = {line.split()[-1].rstrip("/") for line in listing.splitlines() if line}
    for want in ["./usr/bin/tokenwatch", "./etc/tokenwatch/tokenwatch.json",
                 "./etc/logrotate.d/tokenwatch", "./lib/systemd/system/tokenwatch.service",
                 "./usr/share/man/man1/tokenwatch.1.gz",
                 "./usr/share/man/man5/tokenwatch.json.5.gz",
                 "./usr/share/tokenwatch/schema/tokenwatch.schema.json",
                 "./usr/share/tokenwatch/schema/format.schema.json",
                 "./usr/share/doc/tokenwatch/configuration.md",
                 "./usr/share/doc/tokenwatch/install.md",
                 "./usr/share/tokenwatch/rules/default.json",
                 "./usr/share/tokenwatch/schema/rules.schema.json",
                 "./usr/share/doc/tokenwatch/detection.md",
                 "./usr/share/doc/tokenwatch/api.md",
                 "./usr/share/doc/tokenwatch/hooks.md",
                 "./usr/share/tokenwatch/hooks/vault-revoke",
                 "./usr/share/tokenwatch/hooks/webhook"]:
        check(want in names, f"{want} is not in the package")
    for fmt in glob.glob(os.path.join(SRC, "rules", "formats", "*.json")):
        want = "./usr/share/tokenwatch/formats/" + os.path.basename(fmt)
        check(want in names, f"{want} is not in the package")
    check(not [n for n in names if n.startswith("./usr/local")], "files under /usr/local")
    check(not [n for n in names if n.endswith("demo.json")], "the demo config is packaged")
    owners = {line.split()[1] for line in listing.splitlines() if line}
    check(owners == {"root/root"}, f"file owners in the package: {owners}")
    return fields


def daemon_as_service_user(tmp):
    """Runs the installed daemon as user tokenwatch with its groups (adm
    included), state in /var/lib/tokenwatch, on a root:adm 0640 log."""
    d = os.path.join(tmp, "svc")
    os.makedirs(d)
    os.chmod(tmp, 0o755)
    os.chmod(d, 0o755)
    logf = os.path.join(d, "auth.log")
    with open(logf, "w") as f:
        f.write("2026-11-29T07:57:53Z ip=203.0.113.7 user=alice token=at-3f9a1c2b9f2c "
                "path=/v1/orders result=denied\n")
    shutil.chown(logf, "root", "adm")
    os.chmod(logf, 0o640)
    cfg = os.path.join(d, "tokenwatch.json")
    with open(cfg, "w") as f:
        json.dump({"state_dir": "/var/lib/tokenwatch", "http": {"listen": "127.0.0.1:0"},
                   "state_interval_ms": 200,
                   "inputs": [{"name": "pkgtest", "path": logf, "format": "generic-text",
                               "start": "beginning"}]}, f)
    os.chmod(cfg, 0o644)
    errf = open(os.path.join(d, "stderr"), "w+")
    proc = subprocess.Popen(["setpriv", "--reuid=tokenwatch", "--regid=tokenwatch",
                             "--init-groups", "--no-new-privs", "/usr/bin/tokenwatch", "run",
                             "-c", cfg], stdout=subprocess.DEVNULL, stderr=errf)
    try:
        deadline = time.monotonic() + 20
        port = None
        while port is None:
            check(time.monotonic() < deadline and proc.poll() is None,
                  "the daemon did not start as user tokenwatch:\n" + open(errf.name).read())
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", open(errf.name).read())
            if m:
                port = int(m.group(1))
            else:
                time.sleep(0.05)
        want = 'auth_token_rejected{input="pkgtest"} 1'
        body = ""
        while want not in body:
            check(time.monotonic() < deadline, f"metrics never showed {want}:\n{body}")
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                          timeout=5).read().decode()
            time.sleep(0.05)
        check("Permission denied" not in open(errf.name).read(), open(errf.name).read())
        proc.send_signal(signal.SIGTERM)
        check(proc.wait(timeout=20) == 0, "SIGTERM did not end the daemon with 0")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        errf.close()
    state = glob.glob("/var/lib/tokenwatch/*")
    check(state, "no state written to /var/lib/tokenwatch")
    for p in state:
        st = os.stat(p)
        check(st.st_uid == int(getent("passwd", PKG).split(":")[2]),
              f"{p} is not owned by tokenwatch")


def installed_checks(tmp, version):
    p = run(["tokenwatch", "--version"])
    check(p.stdout.strip() == f"tokenwatch {version}", f"--version: {p.stdout!r}")
    log(p.stdout.strip())

    nformats = len(glob.glob(os.path.join(SRC, "rules", "formats", "*.json")))
    for cmd in (["tokenwatch", "check"],
                ["tokenwatch", "check", "-c", "/etc/tokenwatch/tokenwatch.json"],
                ["runuser", "-u", PKG, "--", "tokenwatch", "check"]):
        p = run(cmd)
        check(f"{nformats} formats (/usr/share/tokenwatch/formats)" in p.stdout, p.stdout)
    log("tokenwatch check: " + p.stdout.strip())

    # The installed config finds the installed default rules: replay as the
    # service user runs detection (its summary has a "detect:" line).
    sample = os.path.join(tmp, "sample.log")
    with open(sample, "w") as f:
        f.write("2026-11-29T07:57:53Z ip=203.0.113.7 user=alice "
                "token=at-3f9a1c2b7d4e9f2c path=/v1/orders result=ok\n")
    os.chmod(tmp, 0o755)
    os.chmod(sample, 0o644)
    p = run(["runuser", "-u", PKG, "--", "tokenwatch", "replay", "--format", "generic-text",
             sample])
    check("detect:" in p.stderr and "detection is off" not in p.stderr,
          f"installed replay does not run detection: {p.stderr!r}")
    check("lines=1 checks=1" in p.stderr, f"installed replay summary: {p.stderr!r}")

    pw = getent("passwd", PKG).split(":")
    check(len(pw) == 7 and int(pw[2]) < 1000, f"not a system user: {pw}")
    check(pw[6] in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false"), f"shell {pw[6]}")
    groups = run(["id", "-nG", PKG]).stdout.split()
    check("adm" in groups, f"tokenwatch is not in group adm: {groups}")
    for path, mode in (("/var/lib/tokenwatch", 0o700), ("/var/log/tokenwatch", 0o755)):
        st = os.stat(path)
        check(st.st_uid == int(pw[2]) and (st.st_mode & 0o777) == mode,
              f"{path}: uid {st.st_uid} mode {oct(st.st_mode & 0o777)}")
    check(os.path.islink("/etc/systemd/system/multi-user.target.wants/tokenwatch.service"),
          "the unit was not enabled")

    daemon_as_service_user(tmp)
    log("daemon ran as user tokenwatch (group adm), counted a line, SIGTERM -> 0")

    for page, title in (("/usr/share/man/man1/tokenwatch.1.gz", "TOKENWATCH(1)"),
                        ("/usr/share/man/man5/tokenwatch.json.5.gz", "TOKENWATCH.JSON(5)")):
        p = run(["man", "--warnings", "-l", page], env={"MANWIDTH": "80", "MANPAGER": "cat",
                                                        "PAGER": "cat"})
        check(title in p.stdout, f"man -l {page} rendered no {title}")
        check(p.stderr.strip() == "", f"man -l {page} warnings:\n{p.stderr}")
    p = run(["man", "-w", "tokenwatch"])
    check("/usr/share/man/man1/tokenwatch.1.gz" in p.stdout, p.stdout)
    log("man -l: both pages render without warnings")

    unit = "/lib/systemd/system/tokenwatch.service"
    p = run(["systemd-analyze", "verify", unit], ok=None)
    out = (p.stdout + p.stderr).strip()
    check(p.returncode == 0 and "tokenwatch" not in out,
          f"systemd-analyze verify {unit} (exit {p.returncode}):\n{out}")
    log("systemd-analyze verify: ok")
    p = run(["systemd-analyze", "security", "--offline=true", unit], ok=None)
    m = re.search(r"Overall exposure level for tokenwatch\.service: ([\d.]+) (\w+)", p.stdout)
    check(m, f"no score from systemd-analyze security:\n{p.stdout}{p.stderr}")
    log(f"systemd-analyze security: {m.group(1)} {m.group(2)}")
    check(float(m.group(1)) <= MAX_EXPOSURE,
          f"exposure {m.group(1)} > {MAX_EXPOSURE}: the unit's hardening regressed")

    if shutil.which("logrotate"):
        state = os.path.join(tmp, "logrotate.state")
        p = run(["logrotate", "-d", "-s", state, "/etc/logrotate.d/tokenwatch"], ok=None)
        check(p.returncode == 0 and "error" not in p.stderr.lower(),
              f"logrotate -d:\n{p.stdout}{p.stderr}")
        log("logrotate -d: ok")
    else:
        log("logrotate not installed: its config was not exercised")


def reinstall_keeps_edits(deb):
    conf = "/etc/tokenwatch/tokenwatch.json"
    with open(conf) as f:
        doc = json.load(f)
    doc["log_level"] = "warn"
    with open(conf, "w") as f:
        json.dump(doc, f, indent=2)
    run(["apt-get", "install", "-y", "--reinstall", deb])
    with open(conf) as f:
        check(json.load(f).get("log_level") == "warn", "reinstall overwrote the edited config")
    run(["tokenwatch", "check"])
    log("reinstall: the edited conffile was kept")


def purge_and_verify():
    run(["apt-get", "remove", "--purge", "-y", PKG])
    check(not installed(), "still installed after purge")
    left = [p for p in PACKAGE_PATHS if exists(p)]
    check(not left, f"left behind after purge: {left}")
    log("apt-get remove --purge: nothing left")


def restore(before):
    if not before["user"] and getent("passwd", PKG):
        run(["deluser", "--system", "--quiet", PKG], ok=None)
    if not before["group"] and getent("group", PKG):
        run(["delgroup", "--system", "--quiet", PKG], ok=None)
    for path, data in before["backups"].items():
        if data is not None and read_bytes(path) != data:
            with open(path, "wb") as f:
                f.write(data)


def verify_restored(before):
    changed = [p for p, data in before["accounts"].items() if read_bytes(p) != data]
    check(not changed, f"account files differ from before the test: {changed}")
    now = tree(SYSTEMD_DIRS)
    diff = sorted(set(now.items()) ^ set(before["systemd"].items()))
    check(not diff, f"systemd unit state differs from before the test: {diff}")
    log("machine restored: accounts and systemd state as before")


def main():
    preflight()
    before = snapshot()
    tmp = tempfile.mkdtemp(prefix="tw-pkg-")
    ok = False
    try:
        bdir, deb = build(tmp)
        fields = inspect(bdir, deb)
        log("apt-get install " + os.path.basename(deb))
        run(["apt-get", "install", "-y", "--no-install-recommends", deb])
        installed_checks(tmp, fields["Version"])
        reinstall_keeps_edits(deb)
        purge_and_verify()
        ok = True
    except Failure as e:
        print(f"FAIL: {e}", flush=True)
    finally:
        if installed():
            run(["apt-get", "remove", "--purge", "-y", PKG], ok=None)
            if installed():
                run(["dpkg", "--purge", PKG], ok=None)
        restore(before)
        shutil.rmtree(tmp, ignore_errors=True)
    try:
        verify_restored(before)
    except Failure as e:
        print(f"FAIL: {e}", flush=True)
        ok = False
    log("PASS" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
