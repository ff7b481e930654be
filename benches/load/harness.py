#!/usr/bin/env python3
"""The load harness: one upstream, the same workload direct, through
Outrigger (bare route and every resilience layer on), HAProxy and NGINX, in
one run, printed as one table.

Layout (../../../shared/PERF.md): each proxy alone on CPU 0 with one worker;
the upstream nginx and the load generators share CPU 1. Keep-alive
everywhere, 100-byte responses, access logs off.

Per target and round: saturation req/s and proxy CPU-us per request
(wrk -t1 -c50), latency at a fixed 2,000 req/s with coordinated-omission
correction (oha -q 2000 -c 10 --latency-correction), RSS idle and with 1,000
keep-alive connections. Each figure is the median of the rounds, with
min-max. With --instructions N, a second table: user-space instructions per
request under callgrind, which, unlike time, a busy machine does not move.
Run it with benches/load/run.sh.
"""
import argparse
import json
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CLK = os.sysconf("SC_CLK_TCK")
PROXY_CPU, LOAD_CPU = "0", "1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render(name, out_dir, **kw):
    text = open(os.path.join(HERE, name)).read()
    for k, v in kw.items():
        text = text.replace("{" + k + "}", str(v))
    path = os.path.join(out_dir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def tree(pid):
    """pid and all its descendants."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_ticks(pids, fields=(11, 12)):
    """utime + stime (fields 14, 15 of /proc/PID/stat); fields=(12,) for stime alone."""
    total = 0
    for p in pids:
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            total += sum(int(f[i]) for i in fields)
        except (OSError, IndexError):
            pass
    return total


def rss_mb(pids):
    total = 0
    for p in pids:
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024.0


def machine_busy():
    f = open("/proc/stat").readline().split()[1:]
    vals = list(map(int, f))
    idle = vals[3] + vals[4]
    return sum(vals) - idle


def children_ticks():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime) * CLK


def wait_port(port, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def pinned(cpu, cmd):
    return ["taskset", "-c", cpu] + cmd


def wrk(url, conns, secs):
    out = subprocess.run(pinned(LOAD_CPU, ["wrk", "-t1", f"-c{conns}", f"-d{secs}s", url]),
                         capture_output=True, text=True, check=True).stdout
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return reqs, rps, int(errors.group(1)) if errors else 0


def oha(url, rate, secs):
    out = subprocess.run(pinned(LOAD_CPU, ["oha", "--no-tui", "--output-format", "json", "-q", str(rate), "-c", "10",
                                           "-z", f"{secs}s", "--latency-correction", url]),
                         capture_output=True, text=True)
    if out.returncode != 0:  # older oha: -j
        out = subprocess.run(pinned(LOAD_CPU, ["oha", "--no-tui", "-j", "-q", str(rate), "-c", "10",
                                               "-z", f"{secs}s", "--latency-correction", url]),
                             capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    pct = data.get("latencyPercentiles") or data.get("latency_percentiles")
    get = lambda *keys: next(pct[k] for k in keys if k in pct)
    return {"p50": get("p50") * 1e3, "p99": get("p99") * 1e3, "p99.9": get("p99.9", "p999") * 1e3}


class Target:
    def __init__(self, name, cmd, port, cwd=None, env=None):
        self.name, self.cmd, self.port, self.cwd, self.env = name, cmd, port, cwd, env
        self.proc = None

    def start(self, cmd=None, port_timeout=20):
        """Starts the proxy (or `cmd`, a variant of its command line)."""
        cmd = cmd or self.cmd
        if cmd is None:
            return
        self.proc = subprocess.Popen(pinned(PROXY_CPU, cmd), cwd=self.cwd, env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, port_timeout)
        time.sleep(0.5)

    def pids(self):
        return tree(self.proc.pid) if self.proc else []

    def stop(self):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None


def measure(t, upstream_pids, args):
    url = f"http://127.0.0.1:{t.port}/"
    t.start()
    try:
        rss_idle = rss_mb(t.pids()) if t.proc else None
        wrk(url, 50, 2)  # warm up pools and caches
        pids = t.pids()
        s0 = cpu_ticks(pids, (12,))
        p0, u0, c0, m0 = cpu_ticks(pids), cpu_ticks(upstream_pids), children_ticks(), machine_busy()
        reqs, rps, errors = wrk(url, 50, args.sat_secs)
        p1, u1, c1, m1 = cpu_ticks(pids), cpu_ticks(upstream_pids), children_ticks(), machine_busy()
        s1 = cpu_ticks(pids, (12,))
        proxy_us = (p1 - p0) / CLK * 1e6 / reqs if t.proc else None
        up_us = (u1 - u0) / CLK * 1e6 / reqs
        other = max(0.0, (m1 - m0) - (p1 - p0) - (u1 - u0) - (c1 - c0)) / max(1, m1 - m0)
        lat = oha(url, args.rate, args.lat_secs)
        rss_1k = None
        if t.proc:
            load = subprocess.Popen(pinned(LOAD_CPU, ["wrk", "-t1", "-c1000", "-d4s", url]),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(3)
            rss_1k = rss_mb(t.pids())
            load.wait()
        sys_pct = 100.0 * (s1 - s0) / (p1 - p0) if t.proc and p1 > p0 else None
        return {"rps": rps, "errors": errors, "cpu_us": proxy_us, "sys_pct": sys_pct, "upstream_us": up_us,
                "cpu_ratio": proxy_us / up_us if proxy_us else None, "other_load": other,
                "rss_idle": rss_idle, "rss_1k": rss_1k, **lat}
    finally:
        t.stop()


def instructions(t, n, base):
    """User-space instructions per proxied request: the target under
    callgrind, counters zeroed after a warm-up, then `n` requests. Unlike
    time, the count does not move with what else the machine is doing; it
    leaves out the kernel's share (the system calls, which every proxy here
    makes alike)."""
    out = tempfile.mkdtemp(prefix=f"callgrind-{t.name}-", dir=base)
    cmd = list(t.cmd)
    if t.name == "nginx":
        # One process: nginx's worker runs as another user, which
        # callgrind_control cannot reach. The worker's code is the same.
        solo = os.path.join(out, "proxy-nginx-solo.conf")
        with open(solo, "w") as f:
            f.write("master_process off;\n" + open(cmd[-1]).read())
        cmd[-1] = solo
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.%p"] + cmd
    url = f"http://127.0.0.1:{t.port}/"
    fetch = lambda count: subprocess.run(pinned(LOAD_CPU, ["oha", "--no-tui", "-n", str(count), "-c", "10", url]),
                                         capture_output=True, check=True)
    t.start(cmd, port_timeout=120)
    try:
        fetch(2000)
        pids = [str(p) for p in t.pids()]
        subprocess.run(["callgrind_control", "-z"] + pids, capture_output=True, check=True)
        fetch(n)
        subprocess.run(["callgrind_control", "-d"] + pids, capture_output=True, check=True)
        end = time.time() + 30
        while time.time() < end:
            dumps = [os.path.join(out, f) for f in os.listdir(out) if re.fullmatch(r"cg\.\d+\.\d+", f)]
            totals = [re.search(r"^totals: (\d+)", open(d).read(), re.M) for d in dumps]
            if len(dumps) == len(pids) and all(totals):
                return sum(int(m.group(1)) for m in totals) / n
            time.sleep(0.2)
        raise RuntimeError(f"no callgrind dump for {t.name} in {out}")
    finally:
        t.stop()


def ours_vs_peers(names):
    """(Outrigger variant, peer proxy) pairs among `names`."""
    return [(o, p) for o in names if o.startswith("outrigger") for p in names if p in ("haproxy", "nginx")]


def summary(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def fmt(s, digits=1):
    if s is None:
        return "-"
    m, lo, hi = s
    return f"{m:.{digits}f} [{lo:.{digits}f}-{hi:.{digits}f}]"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sat-secs", type=int, default=8)
    ap.add_argument("--lat-secs", type=int, default=10)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "outrigger"))
    ap.add_argument("--only", help="comma-separated targets to run")
    ap.add_argument("--json", help="write raw results here")
    ap.add_argument("--instructions", type=int, default=0, metavar="N",
                    help="also count user-space instructions per request under callgrind over N requests")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for want in (65536, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
            break
        except (ValueError, OSError):
            continue
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 20000:
        print("warning: open-file limit below 20000; the 1,000-connection runs may fail", file=sys.stderr)

    tmp = tempfile.mkdtemp(prefix="outrigger-load-")
    up_port = free_port()
    upstream = subprocess.Popen(pinned(LOAD_CPU, ["nginx", "-c", render("upstream-nginx.conf", tmp, DIR=tmp, PORT=up_port),
                                                  "-p", tmp]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(up_port)
    upstream_pids = tree(upstream.pid)
    quiet = dict(os.environ, RUST_LOG="warn")

    def outrigger(cfg):
        port, admin = free_port(), free_port()
        path = render(cfg, tmp, PORT=port, ADMIN=admin, UPSTREAM=up_port)
        return Target("outrigger" if cfg == "outrigger.yaml" else "outrigger+layers",
                      [args.binary, "run", "--workers", "1", "--config", path], port, env=quiet)

    targets = [Target("direct", None, up_port), outrigger("outrigger.yaml"), outrigger("outrigger-layers.yaml")]
    if subprocess.run(["which", "haproxy"], capture_output=True).returncode == 0:
        p = free_port()
        targets.append(Target("haproxy", ["haproxy", "-db", "-f", render("haproxy.cfg", tmp, PORT=p, UPSTREAM=up_port)], p))
    if subprocess.run(["which", "nginx"], capture_output=True).returncode == 0:
        p = free_port()
        targets.append(Target("nginx", ["nginx", "-p", tmp, "-c", render("proxy-nginx.conf", tmp, DIR=tmp, PORT=p, UPSTREAM=up_port)], p))
    if args.only:
        keep = set(args.only.split(","))
        targets = [t for t in targets if t.name in keep]

    results = {t.name: [] for t in targets}
    try:
        for r in range(args.rounds):
            for t in targets:
                res = measure(t, upstream_pids, args)
                results[t.name].append(res)
                print(f"round {r + 1} {t.name:17} {res['rps']:9.0f} req/s  cpu {res['cpu_us'] or 0:6.1f} us/req  "
                      f"p99 {res['p99']:.3f} ms  rss {res['rss_idle'] or 0:.1f}/{res['rss_1k'] or 0:.1f} MB  "
                      f"other load {res['other_load']:.0%}", file=sys.stderr, flush=True)
        ins = {t.name: instructions(t, args.instructions, tmp) for t in targets if t.cmd} if args.instructions else {}
    finally:
        upstream.terminate()
        upstream.wait()

    if args.rounds:
        print(f"\nPinning: each proxy on CPU {PROXY_CPU} (taskset, one worker); upstream nginx (1 worker) and wrk/oha on "
              f"CPU {LOAD_CPU}. {args.rounds} rounds; median [min-max]. Saturation: wrk -t1 -c50 -d{args.sat_secs}s. "
              f"Latency: oha -q {args.rate} -c 10 -z {args.lat_secs}s --latency-correction.\n")
        cols = [("req/s", "rps", 0), ("CPU us/req", "cpu_us", 1), ("kernel %", "sys_pct", 0), ("CPU/upstream", "cpu_ratio", 2), ("p50 ms", "p50", 3),
                ("p99 ms", "p99", 3), ("p99.9 ms", "p99.9", 3), ("RSS idle MB", "rss_idle", 1), ("RSS 1k conns MB", "rss_1k", 1)]
        print("| target | " + " | ".join(c[0] for c in cols) + " |")
        print("|---" * (len(cols) + 1) + "|")
        for name, runs in results.items():
            print(f"| {name} | " + " | ".join(fmt(summary(runs, k), d) for _, k, d in cols) + " |")
        med = {n: {k: (summary(r, k) or (None,))[0] for _, k, _ in cols} for n, r in results.items()}
        print()
        for ours, peer in ours_vs_peers(med):
            o, p = med[ours], med[peer]
            print(f"{ours} vs {peer}: req/s x{o['rps'] / p['rps']:.2f}, CPU/req x{o['cpu_us'] / p['cpu_us']:.2f}, "
                  f"p99 x{o['p99'] / p['p99']:.2f}")
        if "direct" in med:
            for n in med:
                if n != "direct":
                    print(f"{n}: added latency p50 +{(med[n]['p50'] - med['direct']['p50']) * 1e3:.0f} us, "
                          f"p99 +{(med[n]['p99'] - med['direct']['p99']) * 1e3:.0f} us")
        if "outrigger" in med and "outrigger+layers" in med:
            print(f"all layers on vs bare route: req/s x{med['outrigger+layers']['rps'] / med['outrigger']['rps']:.3f}")
    if args.instructions:
        print(f"\nUser-space instructions per request (valgrind --tool=callgrind, {args.instructions} requests from "
              f"oha -c 10 after 2,000 to warm up; deterministic, kernel time not included):\n")
        print("| target | instructions/request |\n|---|---|")
        for name, v in ins.items():
            print(f"| {name} | {v:,.0f} |")
        print()
        for ours, peer in ours_vs_peers(ins):
            print(f"{ours} vs {peer}: instructions x{ins[ours] / ins[peer]:.2f}")
        if "outrigger" in ins and "outrigger+layers" in ins:
            print(f"all layers on vs bare route: instructions x{ins['outrigger+layers'] / ins['outrigger']:.3f}")
    noisy = [(n, r["other_load"]) for n, rs in results.items() for r in rs if r["other_load"] > 0.05]
    if noisy:
        print(f"warning: other processes used > 5% of the machine during {len(noisy)} runs; repeat for clean figures")
    if args.json:
        json.dump(results, open(args.json, "w"), indent=2)


if __name__ == "__main__":
    main()
