#!/usr/bin/env python3
"""tokend side by side with what its users would otherwise run, in one table.

    python3 benches/compare.py                      # 10k tokens, 1/16/64 clients, ~4 minutes
    python3 benches/compare.py --tokens 10000 --clients 1,64 --seconds 3 --jsonl runs.jsonl

Runs, one after the other (never two at once: the machine has two cores):
- tokend: `cargo bench --bench loadgen` (builds the release daemon if needed), one
  preloaded daemon for every operation and client count;
- each alternative: `benches/alternatives/run.py`, the Kaizen #192-style SQLite store
  and the SDK's FileStore (the real one when the Zoho SDK is importable: from
  $ZOHO_SDK_PATH, else from the repo's .venv, else run.py's stdlib reimplementation).

Every run prints one JSON object of the same shape; this script collects them (and,
with --jsonl, saves them) and prints one markdown table per operation with ratios
tokend ÷ alternative for throughput and alternative ÷ tokend for p99 latency (both
"how many times better tokend is"). The runs' notes (CPU used by others during each
run, errors, rows lost) go to stderr as they come.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
# The loadgen's operation → the alternatives' name for the same call.
OPS = {"find_token_by_id": "find_by_id", "find_by_user": "find_by_user",
       "find_by_refresh": "find_by_refresh", "save_token": "save"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, default=10_000)
    p.add_argument("--clients", default="1,16,64", help="comma-separated client counts")
    p.add_argument("--ops", default="find_token_by_id,find_by_user,save_token",
                   help=f"comma-separated, of {', '.join(OPS)}")
    p.add_argument("--systems", default="kaizen,filestore", help="alternatives to run")
    p.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run")
    p.add_argument("--jsonl", help="also write every run's JSON object to this file")
    a = p.parse_args(argv)
    a.clients = [int(c) for c in a.clients.split(",")]
    a.ops = a.ops.split(",")
    a.systems = [s for s in a.systems.split(",") if s]
    for op in a.ops:
        if op not in OPS:
            p.error(f"unknown op {op}")
    return a


def json_lines(cmd: list[str], env: dict | None = None) -> list[dict]:
    """Runs `cmd` (stderr passed through) and returns the JSON objects it printed."""
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True, env=env)
    runs = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0:
        print(f"  (exit status {out.returncode})", file=sys.stderr)
    return runs


def sdk_path() -> str | None:
    if os.environ.get("ZOHO_SDK_PATH"):
        return os.environ["ZOHO_SDK_PATH"]
    found = glob.glob(os.path.join(REPO, ".venv/lib/python3*/site-packages/zohocrmsdk"))
    return os.path.dirname(found[0]) if found else None


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    runs = json_lines([
        "cargo", "bench", "--quiet", "--bench", "loadgen", "--",
        "--tokens", str(a.tokens), "--op", ",".join(a.ops),
        "--clients", ",".join(map(str, a.clients)), "--seconds", str(a.seconds), "--json",
    ])
    env = dict(os.environ)
    sdk = sdk_path()
    if sdk:
        env["ZOHO_SDK_PATH"] = sdk
    for system in a.systems:
        for op in a.ops:
            for clients in a.clients:
                runs += json_lines([
                    sys.executable, os.path.join(HERE, "alternatives", "run.py"),
                    "--store", system, "--op", OPS[op], "--tokens", str(a.tokens),
                    "--clients", str(clients), "--seconds", str(a.seconds), "--json",
                ], env)
    if a.jsonl:
        with open(a.jsonl, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in runs)

    def find(system: str, op: str, clients: int) -> dict | None:
        name = op if system == "tokend" else OPS[op]
        return next((r for r in runs if r["system"] == system and r["op"] == name
                     and r["clients"] == clients and r["tokens"] == a.tokens), None)

    print(f"\n{a.tokens} tokens, {a.seconds:g} s per run; ops/s (p99 µs); "
          "× = tokend's ops/s ÷ the alternative's (p99: the alternative's ÷ tokend's)\n")
    for op in a.ops:
        head = f"| {op} | tokend |" + "".join(f" {s} | × ops/s | × p99 |" for s in a.systems)
        print(head)
        print("|" + "---|" * (head.count("|") - 1))
        for clients in a.clients:
            t = find("tokend", op, clients)
            cells = [f"{clients} clients", cell(t)]
            for s in a.systems:
                alt = find(s, op, clients)
                cells += [cell(alt), ratio(t and t["ops_per_sec"], alt and alt["ops_per_sec"]),
                          ratio(alt and alt["p99_us"], t and t["p99_us"])]
            print("| " + " | ".join(cells) + " |")
        print()
    return 0


def cell(r: dict | None) -> str:
    if not r or not r["ops"]:
        return "—"
    return f"{r['ops_per_sec']:,.0f} ({r['p99_us']:,.0f})"


def ratio(num, den) -> str:
    if not num or not den:
        return "—"
    return f"{num / den:,.0f}×" if num / den >= 10 else f"{num / den:.1f}×"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
