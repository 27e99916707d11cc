"""Shared plumbing of the SIP and CTI benchmarks (scripts/bench/sip, scripts/bench/cti).

A benchmark measures; it asserts nothing. Everything here is on loopback and every
process it starts is bounded in time and stopped by the script.
"""
import datetime
import glob
import hashlib
import json
import os
import platform
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(ROOT, "docs", "BENCHMARKS.md")
BIN = os.path.join(ROOT, "target", "release", "ctibox")
SIPP_DIR = os.path.join(ROOT, "scripts", "bench", "sipp")
TEST_SIPP_DIR = os.path.join(ROOT, "tests", "sipp")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sh(cmd, **kw):
    log("+ " + " ".join(cmd))
    return subprocess.run(cmd, cwd=ROOT, check=True, **kw)


def prepare(bench=False):
    """Installs what is missing (scripts/deps, with --bench: Kamailio and perf too) and
    builds the release binary."""
    if not shutil.which("sipp") or (bench and not kamailio_bin()):
        sh([os.path.join(ROOT, "scripts", "deps")] + (["--bench"] if bench else []))
    sh(["cargo", "build", "--locked", "--release", "--bin", "ctibox"])


def kamailio_bin():
    """The kamailio binary (Debian puts it in /usr/sbin, which a user's PATH may lack)."""
    return shutil.which("kamailio") or next(
        (p for p in ("/usr/sbin/kamailio", "/usr/local/sbin/kamailio") if os.access(p, os.X_OK)),
        None)


def require(*tools):
    """Exits non-zero, naming what is missing, unless every tool is installed: a
    benchmark never skips the half it cannot run."""
    missing = [t for t in tools if not (kamailio_bin() if t == "kamailio" else shutil.which(t))]
    if missing:
        log("bench: MISSING %s: install with `scripts/deps --bench` (as root)" % ", ".join(missing))
        sys.exit(2)


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def wait_for_low_load(limit=1.0, max_wait_s=120):
    """Waits (bounded) for the 1-minute load average to fall under `limit`; returns it."""
    deadline = time.monotonic() + max_wait_s
    while True:
        one = float(open("/proc/loadavg").read().split()[0])
        if one < limit or time.monotonic() >= deadline:
            return loadavg()
        log("bench: load %.2f >= %.2f, waiting (at most %d s more)" % (
            one, limit, deadline - time.monotonic()))
        time.sleep(10)


def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split(":", 1)[1].split()[0]) / 1024 / 1024
    rustc = subprocess.run(["rustc", "-V"], capture_output=True, text=True).stdout.strip()
    sipp = subprocess.run(["sipp", "-v"], capture_output=True, text=True).stdout
    sipp = re.search(r"SIPp v[\S]+", sipp)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip() or "?"
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "Cargo.toml",
                            "Cargo.lock"], cwd=ROOT, capture_output=True, text=True).stdout
    kam = kamailio_bin()
    kam = subprocess.run([kam, "-v"], capture_output=True, text=True).stdout if kam else ""
    kam = re.search(r"kamailio [\d.]+", kam)
    return {"nproc": os.cpu_count(), "cpu": model, "mem_gib": mem,
            "kamailio": kam.group(0) if kam else "kamailio (not installed)",
            "kernel": platform.release(), "rustc": rustc,
            "sipp": sipp.group(0) if sipp else "SIPp",
            "commit": commit + (" (with uncommitted changes in src)" if dirty.strip() else ""),
            "date": datetime.date.today().isoformat(),
            "python": platform.python_version()}


def write_doc(name, section):
    begin, end = "<!-- bench:%s:begin -->" % name, "<!-- bench:%s:end -->" % name
    text = open(DOC).read()
    block = begin + "\n" + section.rstrip() + "\n" + end
    if begin in text and end in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text,
                      flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    open(DOC, "w").write(text)
    log("bench/%s: wrote %s" % (name, os.path.relpath(DOC, ROOT)))


def free_port(kind=socket.SOCK_STREAM):
    """A free loopback port outside the RTP range (16384-32767) of the default config."""
    for _ in range(100):
        s = socket.socket(socket.AF_INET, kind)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if not 16384 <= port <= 32767:
            return port
    raise RuntimeError("no free port")


def free_udp_tcp_port():
    """A port free for both UDP and TCP."""
    for _ in range(100):
        p = free_port(socket.SOCK_DGRAM)
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
        finally:
            t.close()
    raise RuntimeError("no free port")


def hash_secret(secret):
    out = subprocess.run([BIN, "hash-secret"], input=secret.encode(), capture_output=True,
                         check=True)
    return out.stdout.decode().strip()


# Two SIP phones with known passwords (neither contains its number or name).
CALLER, CALLER_PW = "1001", "Bench-Secret-Alpha-7q"
CALLEE, CALLEE_PW = "1002", "Bench-Secret-Bravo-8r"


POOL_SIZE = 1000
POOL_FIRST = 20000
_LETTERS = "kmnprstvwx"  # digit d of the index -> _LETTERS[d]: no digits in a password


def pool_users(n=POOL_SIZE):
    """`n` callers (username = DN, from 20000), each with its own password. The password
    holds no digit, so it never contains the username (the box refuses such a one)."""
    return [(str(POOL_FIRST + i), "Pool-Secret-" + "".join(_LETTERS[int(d)] for d in "%04d" % i))
            for i in range(n)]


def write_users_csv(path, users, order="SEQUENTIAL"):
    """A SIPp -inf file: `order` on the first line, then `user;password;[authentication
    username=user password=password]` rows. SIPp does not expand a keyword nested in
    another ([authentication username=[field0] ...] sends the text as it is), but it does
    expand a keyword held in a field: the scenario puts [field2] where the
    Proxy-Authorization goes."""
    with open(path, "w") as f:
        f.write(order + "\n" + "".join(
            "%s;%s;[authentication username=%s password=%s]\n" % (u, pw, u, pw)
            for u, pw in users))
    return path


def pool_config(users):
    """[[line]] and [[device]] entries for the pool callers. SIP device passwords are
    plain text in the config (digest needs them; only CTI app secrets are PHC hashes)."""
    out = []
    for user, pw in users:
        out.append(f"""
[[line]]
dn = "{user}"
partition = "internal"
[[device]]
name = "pool-{user}"
type = "sip_phone"
username = "{user}"
password = "{pw}"
lines = ["{user}"]
css = "all"
""")
    return "".join(out)


def sip_config(sip_port, http_port, cti_port, extra=""):
    return f"""
[system]
name = "bench"
[sip]
udp = "127.0.0.1:{sip_port}"
realm = "ctibox"
# SIPp speaks MD5 only and answers the first challenge.
digest_algorithms = ["md5"]
[sip.throttle]
# A load generator is no scanner: never ban it.
auth_failures = 1000
window_s = 1
ban_s = 1
[cti]
listen = "127.0.0.1:{cti_port}"
[http]
listen = "127.0.0.1:{http_port}"
[board]
name = "sim"

[[partition]]
name = "internal"
[[calling_search_space]]
name = "all"
partitions = ["internal"]

[[line]]
dn = "{CALLER}"
partition = "internal"
display_name = "Bench caller"
[[line]]
dn = "{CALLEE}"
partition = "internal"
[[device]]
name = "phone-caller"
type = "sip_phone"
username = "{CALLER}"
password = "{CALLER_PW}"
lines = ["{CALLER}"]
css = "all"
[[device]]
name = "phone-callee"
type = "sip_phone"
username = "{CALLEE}"
password = "{CALLEE_PW}"
lines = ["{CALLEE}"]
css = "all"
""" + extra


def stop_process(proc, kill, err, tmp):
    """SIGTERM, then `kill()` after 10 s; closes its log and removes its directory
    (BENCH_KEEP=1 keeps logs and SIPp files)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            kill()
            proc.wait()
    err.close()
    if not os.environ.get("BENCH_KEEP"):
        shutil.rmtree(tmp, ignore_errors=True)


class Box:
    """The release binary on a fresh data dir and a given config, on loopback."""

    name = "box"

    def __init__(self, config_extra="", tmp=None):
        self.tmp = tmp or tempfile.mkdtemp(prefix="ctibox-bench-")
        self.sip_port = free_udp_tcp_port()
        self.http_port = free_port()
        self.cti_port = free_port()
        cfg = os.path.join(self.tmp, "ctibox.toml")
        with open(cfg, "w") as f:
            f.write(sip_config(self.sip_port, self.http_port, self.cti_port, config_extra))
        data = tempfile.mkdtemp(prefix="data-", dir=self.tmp)
        self.stderr_path = os.path.join(self.tmp, "box-%d.log" % self.sip_port)
        self.err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([BIN, "run", "--config", cfg, "--data-dir", data],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.err)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 10
        while True:
            try:
                self.status()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("ctibox did not start: " +
                                       open(self.stderr_path).read()[-2000:])
                time.sleep(0.05)

    def status(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/status" % self.http_port,
                                    timeout=5) as r:
            return json.loads(r.read())

    def proc_status(self):
        with open("/proc/%d/status" % self.pid) as f:
            st = dict(l.split(":", 1) for l in f if ":" in l)
        return {k: v.strip() for k, v in st.items()}

    def rss_kib(self):
        return int(self.proc_status()["VmRSS"].split()[0])

    def cpu_s(self):
        """utime + stime of the box so far, in seconds."""
        with open("/proc/%d/stat" % self.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def stop(self):
        stop_process(self.proc, self.proc.kill, self.err, self.tmp)


class Sipp:
    """One SIPp process; its statistics come from its -trace_stat CSV file."""

    def __init__(self, box, scenario, service, port, args, tag, auth=None):
        self.port = port
        self.stat = os.path.join(box.tmp, "%s-%d.csv" % (tag, port))
        self.errs = os.path.join(box.tmp, "%s-%d-errors.log" % (tag, port))
        cmd = ["sipp", "127.0.0.1:%d" % box.sip_port, "-sf", scenario, "-s", service,
               "-i", "127.0.0.1", "-p", str(port), "-mp", str(free_port(socket.SOCK_DGRAM)),
               "-nostdin", "-trace_stat", "-stf", self.stat, "-fd", "1",
               "-trace_err", "-error_file", self.errs,
               # SIPp's own socket buffers as large as the box's (4 MiB), so the
               # generator does not drop what the box sends in a burst.
               "-buff_size", str(4 * 1024 * 1024)] + args
        if auth:
            cmd += ["-au", auth[0], "-ap", auth[1]]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.rc = None
        self.cpu = None

    def poll(self):
        """The exit code if it has ended (reaped here, with its CPU time), else None."""
        if self.rc is None:
            pid, status, ru = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                self.rc = os.waitstatus_to_exitcode(status)
                self.cpu = ru.ru_utime + ru.ru_stime
                self.proc.returncode = self.rc
        return self.rc

    def wait(self, timeout):
        """Waits at most `timeout` s (then stops it); returns the exit code."""
        deadline = time.monotonic() + timeout
        stopping = False
        while self.poll() is None:
            if time.monotonic() > deadline:
                # Past its time: ask it to stop (SIPp dumps its stats), then kill.
                self.proc.send_signal(signal.SIGKILL if stopping else signal.SIGINT)
                stopping = True
                deadline = time.monotonic() + 5
            time.sleep(0.05)
        return self.rc

    def kill(self):
        if self.poll() is None:
            self.proc.kill()
            self.wait(10)

    def stats(self):
        """The last line of the stat file as a dict of the cumulative (C) columns."""
        try:
            lines = [l for l in open(self.stat).read().splitlines() if l.strip()]
        except OSError:
            return {}
        if len(lines) < 2:
            return {}
        head = lines[0].rstrip(";").split(";")
        last = lines[-1].rstrip(";").split(";")
        out = {}
        for k, v in zip(head, last):
            if k.endswith("(C)"):
                k = k[:-3]
            elif k.endswith("(P)"):
                continue
            try:
                out[k] = float(v) if "." in v else int(v)
            except ValueError:
                out[k] = v
        return out


def failure_kinds(st):
    """The non-zero Failed* counters of a SIPp stats dict, as 'Kind=N' strings."""
    return ["%s=%d" % (k[len("Failed"):], v) for k, v in sorted(st.items())
            if k.startswith("Failed") and k != "FailedCall" and isinstance(v, int) and v]


def register_callee(box, port, timeout=15):
    s = Sipp(box, os.path.join(TEST_SIPP_DIR, "reg_only.xml"), CALLEE, port,
             ["-m", "1", "-timeout", "%ds" % timeout, "-timeout_error"], "register",
             auth=(CALLEE, CALLEE_PW))
    rc = s.wait(timeout + 5)
    if rc != 0:
        raise RuntimeError("callee registration failed (sipp exit %s)" % rc)


def udp_drops():
    """Datagrams the kernel dropped per bound loopback UDP port (/proc/net/udp 'drops':
    the socket's receive buffer was full)."""
    out = {}
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            p = line.split()
            port = int(p[1].split(":")[1], 16)
            out[port] = out.get(port, 0) + int(p[-1])
    return out


KAMAILIO_MODULES = ["tm", "sl", "rr", "maxfwd", "textops", "siputils", "pv", "auth",
                    "db_text", "htable"]


def kamailio_modules_dir():
    """Where the installed Kamailio keeps its modules (Debian: /usr/lib/<triplet>/...)."""
    for d in sorted(glob.glob("/usr/lib/*/kamailio/modules")) + [
            "/usr/lib/kamailio/modules", "/usr/local/lib64/kamailio/modules"]:
        if os.path.exists(os.path.join(d, "tm.so")):
            return d
    raise RuntimeError("no Kamailio modules directory (with tm.so) found")


def kamailio_cfg(port, callee_port, db_dir, children=4):
    """A stateful proxy doing for each call what the box does: digest (MD5, qop=auth,
    nonce counts checked) against a per-user HA1 from an htable, then relay to the one
    callee. Initial INVITEs are record-routed, in-dialog requests loose-routed."""
    mods = "\n".join('loadmodule "%s.so"' % m for m in KAMAILIO_MODULES)
    return f"""#!KAMAILIO
# Written by scripts/bench/sip for one run; not a production config.
debug=2
log_stderror=yes
memdbg=5
memlog=5
children={children}
disable_tcp=yes
auto_aliases=no
listen=udp:127.0.0.1:{port}
# The box's UDP receive buffer is 4 MiB; let Kamailio's grow as far.
maxbuffer=4194304
dns=no
rev_dns=no
use_dns_cache=no

mpath="{kamailio_modules_dir()}"
{mods}

modparam("htable", "db_url", "text://{db_dir}")
modparam("htable", "htable", "ha1=>size=12;dbtable=ha1;")
modparam("auth", "nonce_count", 1)
modparam("auth", "secret", "bench-nonce-secret")
modparam("rr", "enable_full_lr", 0)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            if (!t_relay()) sl_reply_error();
            exit;
        }}
        # ACK to a 407 (sl absorbs it by its to-tag before the script) or to a
        # forwarded negative answer (tm's transaction).
        if (is_method("ACK")) {{
            if (t_check_trans()) t_relay();
            exit;
        }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) t_relay();
        exit;
    }}
    if (!is_method("INVITE")) {{
        sl_send_reply("405", "Method Not Allowed");
        exit;
    }}
    # A retransmitted INVITE of a transaction under way is absorbed here.
    t_check_trans();
    $var(ha1) = $sht(ha1=>$au);
    if (!pv_proxy_authenticate("$fd", "$var(ha1)", "1")) {{
        auth_challenge("$fd", "1");
        exit;
    }}
    if ($au != $fU) {{
        sl_send_reply("403", "Forbidden");
        exit;
    }}
    consume_credentials();
    record_route();
    $du = "sip:127.0.0.1:{callee_port}";
    if (!t_relay()) sl_reply_error();
    exit;
}}
"""


def kamailio_ha1_table(path, users, realm="127.0.0.1"):
    """The htable's db_text table: one HA1 = MD5(user:realm:password) per user (the realm
    is the callers' From domain, which the config challenges with: "$fd")."""
    with open(path, "w") as f:
        f.write("key_name(str) key_type(int) value_type(int) key_value(str) expires(int)\n")
        for user, pw in users:
            ha1 = hashlib.md5(("%s:%s:%s" % (user, realm, pw)).encode()).hexdigest()
            f.write("%s:0:0:%s:0\n" % (user, ha1))


class Kamailio:
    """Kamailio on loopback UDP with kamailio_cfg, in the foreground (-DD -E), as the
    unprivileged `kamailio` user when started as root and that user exists. `mem` is its
    memory manager for shm and pkg (-x): Debian's binary defaults to `qm`, the one built
    for debugging, which costs it 2-3 times the CPU per call of `fm` or `tlsf`."""

    name = "kamailio"

    def __init__(self, users, callee_port, children=4, shm_mb=1024, pkg_mb=16, mem="fm"):
        self.tmp = tempfile.mkdtemp(prefix="kamailio-bench-")
        os.chmod(self.tmp, 0o755)
        self.sip_port = free_port(socket.SOCK_DGRAM)
        db = os.path.join(self.tmp, "db")
        os.mkdir(db)
        os.chmod(db, 0o755)
        kamailio_ha1_table(os.path.join(db, "ha1"), users)
        self.cfg = os.path.join(self.tmp, "kamailio.cfg")
        with open(self.cfg, "w") as f:
            f.write(kamailio_cfg(self.sip_port, callee_port, db, children))
        kam = kamailio_bin()
        if not kam:
            raise RuntimeError("kamailio is not installed (scripts/deps --bench)")
        check = subprocess.run([kam, "-c", "-f", self.cfg], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError("kamailio rejects its config:\n" + check.stderr[-3000:])
        cmd = [kam, "-DD", "-E", "-f", self.cfg, "-m", str(shm_mb), "-M", str(pkg_mb),
               "-x", mem, "-w", self.tmp]
        if os.getuid() == 0:
            try:
                pwd.getpwnam("kamailio")
                cmd += ["-u", "kamailio", "-g", "kamailio"]
            except KeyError:
                pass
        self.cmd = cmd
        self.stderr_path = os.path.join(self.tmp, "kamailio.log")
        self.err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.err, start_new_session=True)
        self.pid = self.proc.pid
        # Up when its UDP socket is bound (in /proc/net/udp) and the workers are forked.
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("kamailio did not start: " +
                                   open(self.stderr_path, errors="replace").read()[-3000:])
            if self.sip_port in udp_drops() and len(self.pids()) >= children + 2:
                break
            time.sleep(0.1)
        time.sleep(0.5)

    def pids(self):
        """The main process and all its children (Kamailio forks once, from main)."""
        out = subprocess.run(["pgrep", "-P", str(self.pid)], capture_output=True, text=True)
        return [self.pid] + [int(p) for p in out.stdout.split()]

    def cpu_s(self):
        """utime + stime summed over the main process and its children, in seconds."""
        total = 0
        for pid in self.pids():
            try:
                with open("/proc/%d/stat" % pid) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except OSError:
                pass
        return total / CLK_TCK

    def pss_kib(self):
        """Proportional set size summed over its processes (shared memory counted once)."""
        total = 0
        for pid in self.pids():
            try:
                with open("/proc/%d/smaps_rollup" % pid) as f:
                    for line in f:
                        if line.startswith("Pss:"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total

    def stop(self):
        stop_process(self.proc, lambda: os.killpg(self.pid, signal.SIGKILL), self.err, self.tmp)
