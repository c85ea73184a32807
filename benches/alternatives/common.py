"""Synthetic tokens and latency statistics shared by the alternative-store drivers.

Every token is a pure function of its index, so a worker process can name the token it
is about to look up (its id, user_name or refresh token) without loading the data set:
the preload writes rows 0..N-1 and a worker only needs N and a random index.

Values have the shapes ZOHO.md describes (ids are decimal strings as the SDK's stores
generate them, `user_name` is "<email>:<org zgid>", `expiry_time` is a string of epoch
milliseconds) and realistic lengths, because the stores compare strings and the CSV
store's cost grows with the bytes it reads and writes.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time

# The SDK's ten columns, in its order. The CSV FileStore calls the redirect column
# `redirect_uri`, the MySQL/SQLite stores `redirect_url` (same meaning).
SQL_COLUMNS = (
    "id", "user_name", "client_id", "client_secret", "refresh_token",
    "access_token", "grant_token", "expiry_time", "redirect_url", "api_domain",
)
CSV_HEADER = SQL_COLUMNS[:8] + ("redirect_uri", "api_domain")

# A handful of OAuth clients (apps) shared by many users, as in a real deployment.
N_CLIENTS = 8
REDIRECT_URL = "https://app.example.com/oauth/callback"
API_DOMAIN = "https://www.zohoapis.com"
# Fixed so that two preloads of the same N produce byte-identical data.
BASE_EXPIRY_MS = 1_795_330_406_683


def _client(c: int) -> tuple[str, str]:
    h = hashlib.blake2b(f"tokend-bench-client:{c}".encode(), digest_size=36).hexdigest()
    return "1000." + h[:30].upper(), h[30:72]


_CLIENTS = [_client(c) for c in range(N_CLIENTS)]


def token_id(i: int) -> str:
    """Id of token index i (0-based): "1", "2", ... as the SDK's stores number them."""
    return str(i + 1)


def user_name(i: int) -> str:
    return f"user{i}@example.com:{700_000_000 + i}"


def refresh_token(i: int) -> str:
    h = hashlib.blake2b(f"tokend-bench-rt:{i}".encode(), digest_size=32).hexdigest()
    return f"1000.{h[:32]}.{h[32:]}"


def client_of(i: int) -> tuple[str, str]:
    """(client_id, client_secret) of token index i."""
    return _CLIENTS[i % N_CLIENTS]


def row(i: int) -> tuple[str, ...]:
    """The stored record of token index i, in SQL_COLUMNS order (grant token empty:
    a grant is single-use and gone once exchanged)."""
    h = hashlib.blake2b(f"tokend-bench-at:{i}".encode(), digest_size=32).hexdigest()
    cid, secret = client_of(i)
    return (
        token_id(i), user_name(i), cid, secret, refresh_token(i),
        f"1000.{h[:32]}.{h[32:]}", "", str(BASE_EXPIRY_MS + (i % 3600) * 1000),
        REDIRECT_URL, API_DOMAIN,
    )


def fresh_access() -> tuple[str, str]:
    """A new (access_token, expiry_time) pair, as the SDK holds after a refresh."""
    h = secrets.token_hex(32)
    return f"1000.{h[:32]}.{h[32:]}", str(time.time_ns() // 1_000_000 + 3_600_000)


def percentile(sorted_values: list[int], p: float) -> int:
    """Nearest-rank percentile (p in 0..100) of an ascending list; 0 if empty.

    With fewer than 1000 samples p99.9 is simply the maximum: the JSON carries `ops`
    so a reader can tell."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]
