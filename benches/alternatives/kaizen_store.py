"""A Kaizen #192-style SQLite TokenStore, written afresh for benchmarking its shape.

What a tokend user runs instead of tokend when they follow Zoho's Kaizen #192 sample:
a TokenStore that keeps the SDK's ten columns in a SQLite file `zohooauth.db` and

- opens a NEW `sqlite3` connection for every call and closes it afterwards;
- uses the sample's table: `oauthtoken`, ten varchar columns, `id` the primary key
  (a varchar key, so SQLite keeps an automatic index on it) and NO index on
  `user_name`, `refresh_token` or `access_token`, so those lookups scan the table;
- builds each statement the way the sample does: `select * from oauthtoken where
  <column>=... limit 1`, `update oauthtoken set <every non-null field> where
  <column>=... limit 1`, an insert when the update touched no row;
- commits once per save, with SQLite's defaults (rollback journal, synchronous=FULL).

One deliberate difference: values are bound as `?` parameters instead of being pasted
into the SQL text (the sample's injection hole). The statement text, the connection per
call and the missing index are what cost time, and they are kept; a new connection has
an empty statement cache, so binding saves no parse either way.

The token is a plain dict of the ten columns (None for absent), standing in for the
SDK's OAuthToken, so this file needs only the standard library.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Callable, Optional

import common

DB_NAME = "zohooauth.db"

# The sample's DDL: varchar columns, primary key on id, nothing else.
CREATE_TABLE = (
    "CREATE TABLE oauthtoken (id varchar(10) NOT NULL, user_name varchar(255), "
    "client_id varchar(255), client_secret varchar(255), refresh_token varchar(255), "
    "access_token varchar(255), grant_token varchar(255), expiry_time varchar(20), "
    "redirect_url varchar(255), api_domain varchar(255), primary key (id))"
)


def _limit_clause() -> str:
    """` limit 1` on UPDATE needs SQLITE_ENABLE_UPDATE_DELETE_LIMIT (Debian's build has
    it). Where the build lacks it the sample's save fails outright; we drop the clause
    instead so the benchmark still measures a save (one full scan, not half on average)."""
    con = sqlite3.connect(":memory:")
    try:
        con.execute("create table t (a)")
        con.execute("update t set a = 1 where a = 0 limit 1")
        return " limit 1"
    except sqlite3.OperationalError:
        return ""
    finally:
        con.close()


UPDATE_LIMIT = _limit_clause()


class KaizenTokenStore:
    """The TokenStore calls the SDK makes, one fresh connection each."""

    def __init__(self, db_path: str):
        self.db_path = db_path

    def _merge(self, token: dict, record: tuple) -> dict:
        # Fill only the fields the caller left None, as the SDK's stores do.
        for name, value in zip(common.SQL_COLUMNS, record):
            if token.get(name) is None:
                token[name] = value
        return token

    def find_token(self, token: dict) -> Optional[dict]:
        """Match by user_name, else access_token (no client credentials), else grant or
        refresh token; fill `token` in place. None when nothing matches."""
        if token.get("user_name"):
            column, value = "user_name", token["user_name"]
        elif token.get("access_token") and not token.get("client_id") and not token.get("client_secret"):
            column, value = "access_token", token["access_token"]
        elif token.get("grant_token"):
            column, value = "grant_token", token["grant_token"]
        elif token.get("refresh_token"):
            column, value = "refresh_token", token["refresh_token"]
        else:
            return None
        con = sqlite3.connect(self.db_path)
        try:
            cur = con.cursor()
            cur.execute("select * from oauthtoken where " + column + "=? limit 1", (value,))
            record = cur.fetchone()
            cur.close()
        finally:
            con.close()
        return None if record is None else self._merge(token, record)

    def find_token_by_id(self, token_id: str) -> dict:
        con = sqlite3.connect(self.db_path)
        try:
            cur = con.cursor()
            cur.execute("select * from oauthtoken where id=?", (token_id,))
            records = cur.fetchall()
            cur.close()
        finally:
            con.close()
        if not records:
            raise KeyError(f"no token with id {token_id}")
        return self._merge({}, records[0])

    def save_token(self, token: dict) -> None:
        """Update the row matched by user_name (else access/grant/refresh token), every
        non-null field in the SET clause; insert with max(id)+1 when nothing matched."""
        if token.get("user_name"):
            column = "user_name"
        elif token.get("access_token") and not token.get("client_id") and not token.get("client_secret"):
            column = "access_token"
        elif token.get("grant_token"):
            column = "grant_token"
        else:
            column = "refresh_token"
        fields = [c for c in common.SQL_COLUMNS if c != "id" and token.get(c) is not None]
        sql = ("update oauthtoken set " + ",".join(f + "=?" for f in fields)
               + " where " + column + "=?" + UPDATE_LIMIT)
        con = sqlite3.connect(self.db_path)
        try:
            cur = con.cursor()
            cur.execute(sql, [token[f] for f in fields] + [token.get(column)])
            if cur.rowcount <= 0:
                if token.get("id") is None:
                    # The sample's id scheme, with its varchar max() defect kept.
                    cur.execute("select max(id) from oauthtoken")
                    top = cur.fetchone()[0]
                    token["id"] = str(int(top) + 1 if top is not None else 1)
                cur.execute(
                    "insert into oauthtoken (" + ",".join(common.SQL_COLUMNS)
                    + ") values (" + ",".join("?" * len(common.SQL_COLUMNS)) + ")",
                    [token.get(c) for c in common.SQL_COLUMNS])
            cur.close()
        finally:
            con.commit()
            con.close()


# ---- the interface run.py drives -------------------------------------------------

def implementation() -> str:
    return f"kaizen-style sqlite3 (SQLite {sqlite3.sqlite_version}, update limit: {bool(UPDATE_LIMIT)})"


def prepare(directory: str, tokens: int) -> str:
    """Create (or reuse, when it already holds exactly these tokens) the database with
    `tokens` rows, loaded in one transaction with executemany — not through save_token."""
    path = os.path.join(directory, DB_NAME)
    if os.path.exists(path) and count_rows(path) == tokens:
        con = sqlite3.connect(path)
        try:
            last = con.execute("select * from oauthtoken where id=?",
                               (common.token_id(tokens - 1),)).fetchone()
        finally:
            con.close()
        if last is not None and last[:5] == common.row(tokens - 1)[:5]:
            return path
    if os.path.exists(path):
        os.remove(path)
    con = sqlite3.connect(path)
    try:
        # Speeds up the load only: pragmas are per connection, so the benchmark's own
        # connections still run with SQLite's defaults, as the sample's do.
        con.execute("pragma synchronous=OFF")
        con.execute(CREATE_TABLE)
        with con:
            con.executemany(
                "insert into oauthtoken values (?,?,?,?,?,?,?,?,?,?)",
                (common.row(i) for i in range(tokens)))
    finally:
        con.close()
    return path


def count_rows(path: str) -> int:
    con = sqlite3.connect(path)
    try:
        return con.execute("select count(*) from oauthtoken").fetchone()[0]
    except sqlite3.Error:
        return -1
    finally:
        con.close()


class Client:
    """One SDK process's view: builds the call for token index i (untimed) and returns
    it as a zero-argument callable (timed by run.py)."""

    def __init__(self, path: str):
        self.store = KaizenTokenStore(path)

    def op(self, name: str, i: int) -> Callable[[], object]:
        store = self.store
        if name == "find_by_id":
            tid = common.token_id(i)
            return lambda: store.find_token_by_id(tid)
        if name == "find_by_user":
            token = dict.fromkeys(common.SQL_COLUMNS)
            token["user_name"] = common.user_name(i)
            return lambda: store.find_token(token)
        if name == "find_by_refresh":
            token = dict.fromkeys(common.SQL_COLUMNS)
            token["client_id"], token["client_secret"] = common.client_of(i)
            token["refresh_token"] = common.refresh_token(i)
            return lambda: store.find_token(token)
        if name == "save":
            # The token as the SDK holds it after a refresh: found earlier (so id and
            # user_name are set), with a new access token and expiry.
            token = dict(zip(common.SQL_COLUMNS, common.row(i)))
            token["grant_token"] = None
            token["access_token"], token["expiry_time"] = common.fresh_access()
            return lambda: store.save_token(token)
        raise ValueError(f"unknown op {name}")
