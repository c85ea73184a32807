"""The low-level Client against the real daemon: framing, errors, threads, fork, restart."""

import os
import tempfile
import threading
import time

import pytest

from daemon import DEADLINE, wait_until
from tokend_client import Client, TokendError, TokendUnavailable, connection, default_socket_path


def save(client, user, **fields):
    # Valid for an hour, so that a refreshing daemon leaves it alone during the test.
    expiry = str(int(time.time() * 1000) + 3_600_000)
    token = {"user_name": user, "client_id": "1000.C", "client_secret": "sec-" + user,
             "refresh_token": "r-" + user, "access_token": "a-" + user, "expiry_time": expiry, **fields}
    return client.request("save_token", token=token)["token"]


def test_ping_reports_protocol_1(client):
    assert client.ping()["protocol"] == 1


def test_save_then_find_by_id_round_trips(client):
    expiry = str(int(time.time() * 1000) + 7_200_000)
    saved = save(client, "a@example.com:1", expiry_time=expiry)
    found = client.request("find_token_by_id", token_id=saved["id"])["token"]
    assert found["user_name"] == "a@example.com:1"
    assert found["expiry_time"] == expiry
    assert client.request("find_token_by_id", token_id="999999")["token"] is None


def test_daemon_errors_raise_tokend_error_and_the_connection_stays_usable(client):
    with pytest.raises(TokendError) as e:
        client.request("no_such_op")
    assert e.value.code == "bad_request"
    with pytest.raises(TokendError) as e:
        client.request("save_token", token={"user_name": "only-a-name@example.com"})
    assert e.value.code == "incomplete_token"
    assert client.ping()["protocol"] == 1


def test_a_line_over_the_limit_is_too_large_and_the_next_request_works(client):
    with pytest.raises(TokendError) as e:
        save(client, "big@example.com:1", access_token="x" * 100_000)
    assert e.value.code == "too_large"
    assert client.ping()["protocol"] == 1


def test_no_daemon_raises_unavailable(tmp_path):
    with pytest.raises(TokendUnavailable) as e:
        Client(str(tmp_path / "nothing.sock")).ping()
    assert e.value.code == "unavailable"


def test_default_socket_path(monkeypatch, tmp_path):
    # Not the machine's own system socket, if it has one.
    monkeypatch.setattr(connection, "SYSTEM_SOCKET", str(tmp_path / "none.sock"))
    monkeypatch.setenv("TOKEND_SOCKET", "/run/x/t.sock")
    assert default_socket_path() == "/run/x/t.sock"
    monkeypatch.delenv("TOKEND_SOCKET")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert default_socket_path() == "/run/user/1000/tokend/tokend.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert default_socket_path() == f"/tmp/tokend-{os.getuid()}/tokend.sock"
    assert Client().socket_path == default_socket_path()


def test_the_system_units_socket_is_used_when_the_users_own_does_not_exist(monkeypatch, tmp_path):
    system = tmp_path / "system.sock"
    system.touch()
    monkeypatch.setattr(connection, "SYSTEM_SOCKET", str(system))
    monkeypatch.delenv("TOKEND_SOCKET", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "runtime"))
    assert default_socket_path() == str(system)
    own = tmp_path / "runtime" / "tokend" / "tokend.sock"
    own.parent.mkdir(parents=True)
    own.touch()
    assert default_socket_path() == str(own)
    monkeypatch.setenv("TOKEND_SOCKET", "/run/x/t.sock")
    assert default_socket_path() == "/run/x/t.sock"


def test_one_client_shared_by_threads(client):
    ids = {n: save(client, f"t{n}@example.com:1")["id"] for n in range(16)}
    errors = []

    def worker(n):
        try:
            for _ in range(50):
                token = client.request("find_token_by_id", token_id=ids[n])["token"]
                assert token["user_name"] == f"t{n}@example.com:1"
        except Exception as e:  # collected: an assert in a thread does not fail the test
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def _child(check):
    """Run `check()` in a forked child; return its exit status (0 when it passed)."""
    pid = os.fork()
    if pid == 0:
        try:
            check()
            code = 0
        except BaseException:
            code = 1
        os._exit(code)
    end = time.monotonic() + DEADLINE
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > end:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError("forked child hung (inherited lock or shared connection)")
        time.sleep(0.01)


def test_parent_and_forked_child_use_separate_connections(client):
    parent_id = save(client, "parent@example.com:1")["id"]
    child_id = save(client, "child@example.com:1")["id"]
    stop = threading.Event()
    errors = []

    def parent_load():
        # Keeps the parent's connection busy while the child runs; with a shared
        # socket the two would read each other's replies.
        try:
            while not stop.is_set():
                assert client.request("find_token_by_id", token_id=parent_id)["token"]["id"] == parent_id
        except Exception as e:
            errors.append(e)

    def in_child():
        for _ in range(200):
            assert client.request("find_token_by_id", token_id=child_id)["token"]["id"] == child_id

    t = threading.Thread(target=parent_load)
    t.start()
    try:
        # The fork happens while parent_load is often inside the client's lock.
        statuses = [_child(in_child) for _ in range(3)]
    finally:
        stop.set()
        t.join()
    assert statuses == [0, 0, 0]
    assert errors == []
    # The children closing their copies did not close the parent's connection.
    assert client.request("find_token_by_id", token_id=parent_id)["token"]["id"] == parent_id


def test_reconnects_after_daemon_restart(daemon, client):
    saved = save(client, "restart@example.com:1")
    assert client.ping()["tokens"] == 1

    daemon.stop()
    with pytest.raises(TokendUnavailable):
        client.ping()
    daemon.start()

    # Same Client object, no manual reconnect: the stale connection is replaced.
    assert client.request("find_token_by_id", token_id=saved["id"])["token"]["user_name"] == "restart@example.com:1"


def test_reconnect_is_transparent_when_the_client_held_a_connection(daemon, client):
    saved = save(client, "held@example.com:1")
    daemon.stop()
    daemon.start()
    # The client's connection was open across the restart; the first request sees
    # a broken pipe or EOF and is retried once on a new connection.
    assert client.request("find_token_by_id", token_id=saved["id"])["token"]["id"] == saved["id"]
    wait_until(lambda: client.ping()["tokens"] == 1, "the token count after restart")


class _Dropper:
    """A stand-in daemon on a Unix socket: drops the first connection right after reading
    one request line, then answers every request on later connections. `lines` is what
    it read."""

    def __init__(self, path):
        import socket as s
        self.lines = []
        self._server = s.socket(s.AF_UNIX, s.SOCK_STREAM)
        self._server.bind(path)
        self._server.listen()
        self._server.settimeout(DEADLINE)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        import json
        first = True
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as r:
                for raw in r:
                    self.lines.append(json.loads(raw))
                    if first:
                        first = False
                        break  # gone after reading it: did it carry the request out?
                    reply = {"seq": self.lines[-1]["seq"], "ok": True, "result": {}}
                    conn.sendall((json.dumps(reply) + "\n").encode())

    def close(self):
        self._server.close()


@pytest.mark.parametrize("op, args, repeated", [
    ("ping", {}, True),
    ("find_token_by_id", {"token_id": "1"}, True),
    ("save_token", {"token": {"user_name": "u@example.com", "refresh_token": "r"}}, True),
    ("refresh", {"token_id": "1"}, False),
    ("save_token", {"token": {"client_id": "c", "client_secret": "s", "access_token": "a"}}, False),
    # A refresh token matches only with both client credentials beside it.
    ("save_token", {"token": {"refresh_token": "r", "client_id": "c"}}, False),
    ("save_token", {"token": {"refresh_token": "r", "client_id": "c", "client_secret": "s"}}, True),
    ("save_token", {"token": {"access_token": "a"}}, True),
])
def test_a_request_lost_with_the_connection_is_sent_again_only_if_repeating_it_is_harmless(
        op, args, repeated):
    # A short directory: pytest's tmp_path can be too long for a socket path.
    short = tempfile.TemporaryDirectory(prefix="tokend-")
    path = os.path.join(short.name, "s.sock")
    server = _Dropper(path)
    try:
        c = Client(path, timeout=DEADLINE)
        if repeated:
            assert c.request(op, **args) == {}
            assert [line["op"] for line in server.lines] == [op, op]
        else:
            with pytest.raises(TokendUnavailable) as e:
                c.request(op, **args)
            assert "may or may not have been carried out" in e.value.message
            assert [line["op"] for line in server.lines] == [op]
            # The next request goes on a new connection.
            assert c.ping() == {}
        c.close()
    finally:
        server.close()
        short.cleanup()
