"""The Zoho Python SDK's CSV FileStore, driven as a tokend user would run it.

Preferred: the SDK's own `FileStore` class (package `zohocrmsdk8-0`, 7.0.0 when this was
written). It is not in the standard library, so run.py imports it only when asked to
(`--sdk-path` naming a site-packages directory where it is installed, or `--sdk real`
with it importable). Otherwise this file's `MiniFileStore` stands in: a minimal
reimplementation with the same I/O pattern, which is what the benchmark measures:

- find_token_by_id: open the file, read ALL of it into a list of rows, scan for the id;
- find_token: open the file, read rows until the first match (user_name; else access
  token; else grant/refresh token with client credentials);
- save_token: read ALL rows, replace the matching row (by id when the token has one),
  then reopen the file with mode "w" (truncating it) and write every row back.

No locking, no temp file + rename, no fsync — as in the SDK. Several processes that save
at once can therefore read a file another one has just truncated; run.py counts the rows
left afterwards and reports any loss.
"""

from __future__ import annotations

import csv
import os
import sys
from typing import Callable, Optional

import common

FILE_NAME = "sdk_tokens.csv"

_SDK = None  # (FileStore, OAuthToken, UserSignature) once loaded


def load_sdk(sdk_path: Optional[str]) -> None:
    """Import the real SDK classes; raises ImportError when they are not available."""
    global _SDK
    if sdk_path:
        sys.path.insert(0, sdk_path)
    from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
    from zohocrmsdk.src.com.zoho.api.authenticator.store.file_store import FileStore
    from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature
    _SDK = (FileStore, OAuthToken, UserSignature)


def implementation() -> str:
    if _SDK is None:
        return "MiniFileStore (stdlib reimplementation of the SDK FileStore's I/O pattern)"
    try:
        from importlib.metadata import version
        v = version("zohocrmsdk8_0")
    except Exception:  # the version is only informative
        v = "?"
    return f"real SDK FileStore (zohocrmsdk8-0 {v}, {sys.modules[_SDK[0].__module__].__file__})"


class MiniFileStore:
    """Tokens are dicts keyed by common.SQL_COLUMNS; the file uses common.CSV_HEADER."""

    def __init__(self, path: str):
        self.path = path

    @staticmethod
    def _matches(token: dict, rec: list) -> bool:
        if token.get("user_name"):
            return token["user_name"] == rec[1]
        if token.get("access_token") and not token.get("client_id") and not token.get("client_secret"):
            return token["access_token"] == rec[5]
        if token.get("client_id") and token.get("client_secret"):
            if token.get("grant_token") and token["grant_token"] == rec[6]:
                return True
            return bool(token.get("refresh_token")) and token["refresh_token"] == rec[4]
        return False

    @staticmethod
    def _merge(token: dict, rec: list) -> dict:
        for name, value in zip(common.SQL_COLUMNS, rec):
            if token.get(name) is None and value != "":
                token[name] = value
        return token

    def find_token(self, token: dict) -> Optional[dict]:
        with open(self.path, newline="") as f:
            reader = csv.reader(f)
            next(reader, None)  # header
            for rec in reader:
                if rec and self._matches(token, rec):
                    return self._merge(token, rec)
        return None

    def find_token_by_id(self, token_id: str) -> dict:
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))  # the SDK reads the whole file, then scans
        for rec in rows:
            if rec and rec[0] == token_id:
                return self._merge({}, rec)
        raise KeyError(f"no token with id {token_id}")

    def save_token(self, token: dict) -> None:
        with open(self.path, newline="") as f:
            rows = [rec for rec in csv.reader(f) if rec]
        for n, rec in enumerate(rows):
            hit = (rec[0] == token["id"]) if token.get("id") is not None else self._matches(token, rec)
            if hit:
                self._merge(token, rec)
                rows[n] = [token.get(c) or "" for c in common.SQL_COLUMNS]
                break
        else:
            if token.get("id") is None:
                token["id"] = str(1 + max((int(r[0]) for r in rows[1:] if r[0]), default=0))
            rows.append([token.get(c) or "" for c in common.SQL_COLUMNS])
        with open(self.path, "w", newline="") as f:
            csv.writer(f).writerows(rows)


# ---- the interface run.py drives -------------------------------------------------

def prepare(directory: str, tokens: int) -> str:
    """Write the CSV in one pass (header + all rows), not through save_token."""
    path = os.path.join(directory, FILE_NAME)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(common.CSV_HEADER)
        w.writerows(common.row(i) for i in range(tokens))
    return path


def count_rows(path: str) -> int:
    """Well-formed data rows: ten fields and a numeric id. Parsed line by line (no
    generated value holds a quote or a newline) so that a file mangled by concurrent
    rewrites — NUL-filled holes, cut rows — is counted rather than rejected whole."""
    def well_formed(line: str) -> bool:
        try:
            rec = next(csv.reader([line]), [])
        except csv.Error:  # e.g. a cut row whose open quote swallows the rest
            return False
        return len(rec) == 10 and rec[0].isdigit() and "\0" not in line

    try:
        with open(path, newline="", errors="replace") as f:
            return sum(1 for line in f if well_formed(line))
    except OSError:
        return -1


class Client:
    """One SDK process: builds the call for token index i (untimed), returns a
    zero-argument callable (timed by run.py)."""

    def __init__(self, path: str):
        if _SDK is not None:
            self.store = _SDK[0](path)  # the SDK's __init__ reads the file once
        else:
            self.store = MiniFileStore(path)

    def op(self, name: str, i: int) -> Callable[[], object]:
        store = self.store
        if name == "find_by_id":
            tid = common.token_id(i)
            return lambda: store.find_token_by_id(tid)
        if _SDK is None:
            token = dict.fromkeys(common.SQL_COLUMNS)
            if name == "find_by_user":
                token["user_name"] = common.user_name(i)
            elif name == "find_by_refresh":
                token["client_id"], token["client_secret"] = common.client_of(i)
                token["refresh_token"] = common.refresh_token(i)
            elif name == "save":
                token.update(zip(common.SQL_COLUMNS, common.row(i)))
                token["grant_token"] = None
                token["access_token"], token["expiry_time"] = common.fresh_access()
            else:
                raise ValueError(f"unknown op {name}")
        else:
            _, OAuthToken, UserSignature = _SDK
            if name == "find_by_user":
                token = OAuthToken(user_signature=UserSignature(common.user_name(i)))
            elif name == "find_by_refresh":
                cid, secret = common.client_of(i)
                token = OAuthToken(client_id=cid, client_secret=secret,
                                   refresh_token=common.refresh_token(i))
            elif name == "save":
                # As the SDK holds the token after a refresh: id and user set by an
                # earlier find, a new access token and expiry.
                r = common.row(i)
                token = OAuthToken(client_id=r[2], client_secret=r[3], refresh_token=r[4],
                                   redirect_url=r[8], id=r[0],
                                   user_signature=UserSignature(r[1]), api_domain=r[9])
                access, expiry = common.fresh_access()
                token.set_access_token(access)
                token.set_expires_in(expiry)
            else:
                raise ValueError(f"unknown op {name}")
        if name == "save":
            return lambda: store.save_token(token)
        return lambda: store.find_token(token)
