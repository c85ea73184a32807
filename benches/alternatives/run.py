#!/usr/bin/env python3
"""Time one TokenStore call of a tokend alternative: ops/s and latency percentiles.

    python3 benches/alternatives/run.py --store kaizen|filestore \
        --op find_by_id|find_by_user|find_by_refresh|save \
        --tokens 10000 --seconds 3 --clients 1 --json

Each client is a separate process (as separate SDK processes would be), started with
fork, that preloads nothing itself: the parent writes the data set once in bulk, every
client makes one untimed warm-up call, then all start together and each loops — pick a
uniformly random token, build its arguments (untimed), time the call — until the shared
deadline passes or it has made its share of --max-ops. A call in flight at the deadline
is finished and counted, so `seconds` (wall time from start to the last client's end)
can exceed --seconds when one call is slow.

With --json, stdout gets exactly one JSON object, in the shape tokend's load generator
prints:
  {"system", "op", "tokens", "clients", "ops", "seconds", "ops_per_sec",
   "p50_us", "p99_us", "p999_us"}
`ops` counts successful calls only; failed calls (exceptions, or a find that matched
nothing) are left out of ops and latencies and reported on stderr, with the store
implementation, the rows before/after and the load average.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from array import array

sys.dont_write_bytecode = True  # leave no __pycache__ in the repo
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import filestore  # noqa: E402
import kaizen_store  # noqa: E402

STORES = {"kaizen": kaizen_store, "filestore": filestore}
OPS = ("find_by_id", "find_by_user", "find_by_refresh", "save")
READY_TIMEOUT_S = 900  # preparing a client (the SDK reads the file) + one warm-up call


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", choices=sorted(STORES), required=True)
    p.add_argument("--op", choices=OPS, required=True)
    p.add_argument("--tokens", type=int, default=10_000)
    p.add_argument("--seconds", type=float, default=3.0, help="time bound of the timed phase")
    p.add_argument("--clients", type=int, default=1, help="client processes")
    p.add_argument("--max-ops", type=int, default=1_000_000, help="bound on calls, all clients together")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--dir", help="keep the data here (a kaizen DB of the same size is reused); "
                                 "default: a fresh temp dir, removed afterwards")
    p.add_argument("--sdk", choices=("auto", "real", "mini"), default="auto",
                   help="filestore: the SDK's FileStore (real), the stdlib reimplementation "
                        "(mini), or real when importable (auto)")
    p.add_argument("--sdk-path", default=os.environ.get("ZOHO_SDK_PATH"),
                   help="site-packages directory holding zohocrmsdk8-0 (env ZOHO_SDK_PATH)")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    if a.tokens < 1 or a.clients < 1 or a.seconds <= 0 or a.max_ops < a.clients:
        p.error("--tokens and --clients must be >= 1, --seconds > 0, --max-ops >= --clients")
    return a


def worker(n: int, args, path: str, ready, start_ns, go, results) -> None:
    """One client process; sends (latencies_ns bytes, errors, misses, first error, end_ns)."""
    store = STORES[args.store]
    rng = random.Random(args.seed * 100_003 + n)
    quota = args.max_ops // args.clients + (1 if n < args.max_ops % args.clients else 0)
    lat = array("q")
    errors = misses = 0
    first_error = None
    try:
        client = store.Client(path)
        client.op(args.op, rng.randrange(args.tokens))()  # warm-up, untimed
    except Exception as e:  # reported by the parent; this client then does nothing
        first_error, quota = f"{type(e).__name__}: {e}", 0
    ready.put(n)
    go.wait()
    deadline = start_ns.value + int(args.seconds * 1e9)
    is_find = args.op.startswith("find")
    perf = time.perf_counter_ns
    done = 0
    while done < quota:
        call = client.op(args.op, rng.randrange(args.tokens))
        if time.monotonic_ns() >= deadline:
            break
        t0 = perf()
        try:
            result = call()
        except Exception as e:
            errors += 1
            first_error = first_error or f"{type(e).__name__}: {e}"
            done += 1
            continue
        t1 = perf()
        done += 1
        if is_find and result is None:
            misses += 1
        else:
            lat.append(t1 - t0)
    results.put((n, lat.tobytes(), errors, misses, first_error, time.monotonic_ns()))


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds the whole machine has been busy, CPU seconds this process and its
    reaped children used): their deltas over a run tell how much CPU others took."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    own = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        own += r.ru_utime + r.ru_stime
    return busy, own


def measure(args, path: str) -> dict:
    ctx = mp.get_context("fork")  # children inherit the loaded store module (and SDK)
    ready, results = ctx.Queue(), ctx.Queue()
    go = ctx.Event()
    start_ns = ctx.Value("q", 0)
    procs = [ctx.Process(target=worker, args=(n, args, path, ready, start_ns, go, results), daemon=True)
             for n in range(args.clients)]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            ready.get(timeout=READY_TIMEOUT_S)
        start_ns.value = time.monotonic_ns()
        go.set()
        # Every client stops at the deadline, after at most one more call.
        got = [results.get(timeout=args.seconds + READY_TIMEOUT_S) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
    lat = array("q")
    for g in got:
        lat.frombytes(g[1])
    elapsed = (max(g[5] for g in got) - start_ns.value) / 1e9
    return {
        "latencies": sorted(lat),
        "errors": sum(g[2] for g in got),
        "misses": sum(g[3] for g in got),
        "first_error": next((g[4] for g in got if g[4]), None),
        "elapsed": elapsed,
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    store = STORES[args.store]
    if args.store == "filestore" and args.sdk != "mini":
        try:
            filestore.load_sdk(args.sdk_path)
        except ImportError as e:
            if args.sdk == "real":
                print(f"run.py: the SDK's FileStore is not importable: {e}", file=sys.stderr)
                return 2
    workdir = args.dir or tempfile.mkdtemp(prefix="tokend-alt-")
    os.makedirs(workdir, exist_ok=True)
    try:
        t = time.perf_counter()
        path = store.prepare(workdir, args.tokens)
        preload_s = time.perf_counter() - t
        rows_before = store.count_rows(path)
        load_before = os.getloadavg()[0]
        busy0, own0, wall0 = *cpu_seconds(), time.monotonic()
        m = measure(args, path)
        busy1, own1, wall1 = *cpu_seconds(), time.monotonic()
        rows_after = store.count_rows(path)
    finally:
        if not args.dir:
            shutil.rmtree(workdir, ignore_errors=True)

    lat = m["latencies"]
    out = {
        "system": args.store,
        "op": args.op,
        "tokens": args.tokens,
        "clients": args.clients,
        "ops": len(lat),
        "seconds": round(m["elapsed"], 3),
        "ops_per_sec": round(len(lat) / m["elapsed"], 1) if m["elapsed"] > 0 else 0.0,
        "p50_us": round(common.percentile(lat, 50) / 1000, 1),
        "p99_us": round(common.percentile(lat, 99) / 1000, 1),
        "p999_us": round(common.percentile(lat, 99.9) / 1000, 1),
    }
    note = (f"# {args.store} {args.op}: impl={store.implementation()}; preload {preload_s:.2f}s; "
            f"rows before/after {rows_before}/{rows_after}; errors {m['errors']}; "
            f"misses {m['misses']}; loadavg1 {load_before:.2f}->{os.getloadavg()[0]:.2f}; "
            # Busy CPU not ours (other work on the machine, kernel flushing): a figure
            # taken while this is well above ~0.05 cores was disturbed.
            f"other CPU {max(0.0, (busy1 - busy0) - (own1 - own0)) / (wall1 - wall0):.2f} cores "
            f"of {os.cpu_count()}")
    if m["first_error"]:
        note += f"; first error: {m['first_error'][:200]}"
    if rows_after != rows_before:
        note += f"; DATA LOSS: {rows_before - rows_after} rows gone"
    print(note, file=sys.stderr)
    if args.json:
        print(json.dumps(out), flush=True)
    else:
        print(f"{out['system']:<10} {out['op']:<16} tokens={out['tokens']:<8} clients={out['clients']:<3} "
              f"ops={out['ops']:<8} {out['ops_per_sec']:>10.1f} ops/s  p50 {out['p50_us']:.1f} µs  "
              f"p99 {out['p99_us']:.1f} µs  p99.9 {out['p999_us']:.1f} µs")
    return 1 if m["errors"] and not lat else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
