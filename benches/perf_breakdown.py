#!/usr/bin/env python3
"""Where a tokend profile's CPU time goes, by thread and by kind of work.

    cargo bench --bench loadgen -- --op find_token_by_id --clients 64 --perf /tmp/find
    python3 benches/perf_breakdown.py /tmp/find.find_token_by_id.64

Reads `perf script` of a recording made with call graphs (loadgen's --perf records the
daemon's threads with DWARF unwinding at 499 Hz) and sorts every sample into the first
category, in the order below, that any frame of its stack matches: a sample spent in
malloc under the JSON encoder counts as JSON encoding, one in the kernel under a
socket read counts as the socket read. The daemon's one busy thread shows as `tokend`
(every actor and the connection tasks); others, such as reqwest's resolver, only when
they ran.
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys

CATEGORIES = [
    ("wait for events (epoll_wait, incl. sleep/wake-up)", r"epoll_wait|park_internal|futex_wait"),
    ("socket read (recv)", r"__libc_recv|unix_stream_recvmsg|__sys_recvfrom|recv_with_flags"),
    ("socket write (send)", r"__send\b|__libc_send|unix_stream_sendmsg|__sys_sendto|sendmsg"),
    ("SQLite (query, page cache, WAL read locks)", r"sqlite3|rusqlite|unixShm|pcache1|posix_lock|fcntl"),
    ("JSON: parse request", r"protocol::parse|serde_json::de::|serde_json::value::de"),
    ("JSON: encode reply", r"protocol::encode|serde_json::ser::|serialize"),
    ("wake another thread (eventfd/futex)", r"eventfd|mio::waker|futex_wake|unpark|try_to_wake_up"),
    ("malloc/free", r"\bmalloc\b|_int_malloc|_int_free|cfree|\bfree\b|realloc|malloc_consolidate|unlink_chunk"),
    ("actix mailboxes, tokio tasks, futures", r"actix|tokio|futures|oneshot|Waker"),
]
RULES = [(name, re.compile(pat)) for name, pat in CATEGORIES]


def samples(path: str):
    """Yields (thread name, [frame symbols]) per sample."""
    out = subprocess.run(["perf", "script", "-i", path, "-F", "comm,tid,ip,sym"],
                         capture_output=True, text=True, check=True).stdout
    comm, frames = None, []
    for line in out.splitlines():
        if not line.strip():
            if comm is not None:
                yield comm, frames
            comm, frames = None, []
        elif not line.startswith(("\t", " " * 8)) or comm is None:
            # A sample header: "<comm> <tid>" (comm may hold '|' but not spaces here).
            comm = line.rsplit(None, 1)[0].strip()
            frames = []
        else:
            parts = line.strip().split(None, 1)
            frames.append(parts[1] if len(parts) > 1 else "")
    if comm is not None:
        yield comm, frames


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    by_thread: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    total = 0
    for comm, frames in samples(argv[0]):
        total += 1
        stack = "\n".join(frames)
        category = next((name for name, rule in RULES if rule.search(stack)), "other")
        by_thread[comm][category] += 1
    if not total:
        print("no samples", file=sys.stderr)
        return 1
    print(f"{total} samples")
    for comm, counts in sorted(by_thread.items(), key=lambda kv: -sum(kv[1].values())):
        n = sum(counts.values())
        print(f"\nthread {comm}: {100 * n / total:.1f}% of samples")
        for category, k in counts.most_common():
            print(f"  {100 * k / total:5.1f}%  {category}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
