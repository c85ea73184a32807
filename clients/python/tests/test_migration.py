"""Moving in and out: `tokend import` from the SDK's stores, `tokend export` back to a
FileStore CSV, with the real SDK using the tokens afterwards and no new grant.

These run once the binary has the `import` / `export` subcommands. The command line
they assume is in `tokend_cli` below, the one place to adjust if it differs.
"""

import csv
import re
import sqlite3
import subprocess

import pytest
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.api.authenticator.store.file_store import FileStore
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from daemon import DEADLINE, TOKEND_BIN
from fake_zoho import CLIENT_ID, CLIENT_SECRET, USER_NAME
from sdk import run_sdk

FIELDS = ["id", "user_name", "client_id", "client_secret", "refresh_token", "access_token",
          "grant_token", "expiry_time", "redirect_url", "api_domain"]


def tokend_cli(daemon, *args):
    """`tokend --socket S <args>`; the import and export talk to the running daemon."""
    # The daemon's own (empty) config file: never /etc/tokend/tokend.toml of this machine.
    return subprocess.run([TOKEND_BIN, "--socket", daemon.socket, "--config", str(daemon.config), *args],
                          capture_output=True,
                          text=True, timeout=DEADLINE, env=daemon.env)


def stored(daemon):
    with daemon.client() as c:
        return [{k: t[k] for k in FIELDS} for t in c.request("get_tokens")["tokens"]]


def old_tokens(zoho, n=2):
    """The rows an application kept before tokend: authorised users with ids "1".."n"."""
    rows = []
    for i in range(1, n + 1):
        user = USER_NAME if i == 1 else f"user{i}@example.com:20061234"
        rows.append({"id": str(i), "user_name": user, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                     "grant_token": None, "redirect_url": "http://127.0.0.1/callback",
                     "api_domain": zoho.url, **zoho.authorised_user()})
    return rows


def write_filestore(path, rows):
    """Written by the SDK's own FileStore, so the file is exactly what users have."""
    store = FileStore(str(path))
    for row in rows:
        token = OAuthToken(id=row["id"], access_token=row["access_token"],
                           user_signature=UserSignature(row["user_name"]))
        for key in ("client_id", "client_secret", "refresh_token", "redirect_url", "api_domain"):
            getattr(token, "set_" + key)(row[key])
        token.set_expires_in(row["expiry_time"])
        store.save_token(token)


def write_kaizen_sqlite(path, rows):
    """The Kaizen #192 sample's `zohooauth.db`: the MySQL DBStore table in SQLite."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE oauthtoken (id varchar(10) NOT NULL, user_name varchar(255), "
                   "client_id varchar(255), client_secret varchar(255), refresh_token varchar(255), "
                   "access_token varchar(255), grant_token varchar(255), expiry_time varchar(20), "
                   "redirect_url varchar(255), api_domain varchar(255), primary key (id))")
        db.executemany(f"INSERT INTO oauthtoken VALUES ({','.join('?' * len(FIELDS))})",
                       [[r[k] for k in FIELDS] for r in rows])
    db.close()


def write_mysql_csv(path, rows):
    """A CSV export of the MySQL DBStore table: its column names, empty for NULL."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(FIELDS)
        w.writerows([["" if r[k] is None else r[k] for k in FIELDS] for r in rows])


@pytest.mark.parametrize("fmt, write", [("filestore", write_filestore), ("sqlite", write_kaizen_sqlite),
                                        ("mysql-csv", write_mysql_csv)])
def test_import_then_the_sdk_works_with_no_new_grant(daemon, zoho, tmp_path, fmt, write):
    rows = old_tokens(zoho)
    source = tmp_path / f"old-store.{fmt}"
    write(source, rows)

    first = tokend_cli(daemon, "import", "--format", fmt, str(source))
    assert first.returncode == 0, first.stderr
    assert stored(daemon) == rows
    again = tokend_cli(daemon, "import", "--format", fmt, str(source))
    assert again.returncode == 0, again.stderr
    assert stored(daemon) == rows  # idempotent

    by_id, by_user = run_sdk(daemon, zoho, tmp_path, {"id": "2"}, {"user_name": USER_NAME})
    assert by_id["statuses"] == [200] and by_user["statuses"] == [200]
    assert zoho.token_calls == []  # no grant exchange, no refresh: the imported tokens were used


def test_a_malformed_row_imports_nothing(daemon, zoho, tmp_path):
    rows = old_tokens(zoho, n=3)
    source = tmp_path / "broken.csv"
    write_mysql_csv(source, rows)
    lines = source.read_text().splitlines()
    lines[2] = lines[2].split(",", 1)[0] + ",only-two-columns"
    source.write_text("\n".join(lines) + "\n")

    result = tokend_cli(daemon, "import", "--format", "mysql-csv", str(source))
    assert result.returncode != 0
    assert re.search(r"\b3\b", result.stderr), result.stderr  # the bad row's line number
    assert stored(daemon) == []


def test_export_is_read_by_the_sdks_own_filestore(daemon, zoho, tmp_path):
    rows = old_tokens(zoho)
    with daemon.client() as c:
        for row in rows:
            c.request("save_token", token=row)
    out = tmp_path / "tokens.csv"

    result = tokend_cli(daemon, "export", "--format", "filestore", str(out))
    assert result.returncode == 0, result.stderr

    by_id = {t.get_id(): t for t in FileStore(str(out)).get_tokens()}
    assert set(by_id) == {"1", "2"}
    assert by_id["1"].get_user_signature().get_name() == USER_NAME
    assert by_id["1"].get_expires_in() == rows[0]["expiry_time"]
    [report] = run_sdk(daemon, zoho, tmp_path, {"id": "1"}, file_store=str(out))
    assert report["statuses"] == [200]
    assert zoho.token_calls == []
