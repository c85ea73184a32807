"""The low-level client: one request, one reply line, over tokend's Unix socket.

`Client` keeps a single connection per process and serialises requests with a lock, so
one instance can be shared by every thread of an application. It survives the two
things that break a long-lived connection in practice:

* the daemon restarts: the old connection reports a broken pipe or end of file, so the
  client reconnects and sends the request once more, if that is harmless: always when
  the request never left (the write failed), and otherwise only for a request whose
  repeat changes nothing more (`_repeatable`);
* the process forks: a child must not share the parent's socket (their replies would
  interleave), so a child opens its own connection on first use.

Standard library only. The wire protocol is described in docs/protocol.md.
"""

import itertools
import json
import os
import socket
import threading
import weakref

__all__ = ["Client", "TokendError", "TokendUnavailable", "default_socket_path"]

#: Seconds to wait for a reply before giving up on the connection.
DEFAULT_TIMEOUT = 30.0


class TokendError(Exception):
    """The daemon refused a request, or could not be talked to.

    `code` is for programs: one of the protocol's error codes (`bad_request`,
    `too_large`, `incomplete_token`, `store_failure`, `busy`, `shutting_down`) or one of
    the client's own: `unavailable` (no daemon at the socket), `timeout`, `protocol`
    (a reply the client could not understand). `message` is for people; the daemon
    never puts a token value in it, and neither does this client.
    """

    def __init__(self, code, message):
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self):
        return f"{self.code}: {self.message}"


class TokendUnavailable(TokendError):
    """No daemon answers at the socket path (not started, or restarting)."""

    def __init__(self, message):
        super().__init__("unavailable", message)


class _Disconnected(Exception):
    """The connection died under a request; `sent`: after the request was written, so the
    daemon may have carried it out."""

    def __init__(self, reason, sent):
        super().__init__(reason)
        self.sent = sent


def _repeatable(op, args):
    """Whether doing `op` twice has the effect of doing it once.

    Not `refresh`: each one spends a refresh from Zoho's budget. Not a `save_token` the
    daemon's matching rules (docs/protocol.md) cannot match to the token the first one
    stored: each would insert a new token. Everything else is a lookup, an upsert or a
    delete.
    """
    if op == "refresh":
        return False
    if op == "save_token":
        t = args.get("token") or {}
        credentials = bool(t.get("client_id")) and bool(t.get("client_secret"))
        return bool(
            t.get("id") or t.get("user_name")
            or (credentials and (t.get("refresh_token") or t.get("grant_token")))
            or (t.get("access_token") and not t.get("client_id") and not t.get("client_secret")))
    return True


#: The system unit's socket, tried when the user's own default does not exist.
SYSTEM_SOCKET = "/run/tokend/tokend.sock"


def default_socket_path():
    """The socket the daemon listens on when not told otherwise.

    `TOKEND_SOCKET` if set, else `$XDG_RUNTIME_DIR/tokend/tokend.sock`, else
    `/tmp/tokend-<uid>/tokend.sock` — the same rule as the daemon's own default — and,
    when that does not exist but the system unit's `/run/tokend/tokend.sock` does, that
    one (as the `tokend` command does): an application run as a service user, a member
    of the socket's group, then finds the system daemon without being told.
    """
    explicit = os.environ.get("TOKEND_SOCKET")
    if explicit:
        return explicit
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        own = os.path.join(runtime, "tokend", "tokend.sock")
    else:
        own = f"/tmp/tokend-{os.getuid()}/tokend.sock"
    if not os.path.exists(own) and os.path.exists(SYSTEM_SOCKET):
        return SYSTEM_SOCKET
    return own


class Client:
    """A thread-safe, fork-safe connection to tokend.

    >>> client = Client()                      # doctest: +SKIP
    >>> client.request("find_token_by_id", token_id="1")["token"]   # doctest: +SKIP
    """

    def __init__(self, socket_path=None, timeout=DEFAULT_TIMEOUT):
        self.socket_path = socket_path or default_socket_path()
        self.timeout = timeout
        self._lock = threading.Lock()
        self._sock = None
        self._buf = bytearray()  # bytes received but not yet returned as a reply line
        self._pid = None  # the process that opened the connection
        self._seq = itertools.count(1)
        # A fork can happen while another thread holds the lock; the child would then
        # wait on it forever. Give the child a fresh lock and no connection.
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _reset_in_child(ref))

    def request(self, op, **args):
        """Send one request and return its `result` object; raise `TokendError` on failure."""
        seq = next(self._seq)
        try:
            line = (json.dumps({"op": op, "seq": seq, **args}) + "\n").encode()
        except (TypeError, ValueError) as e:
            # Name the type only: the value may be a secret.
            raise TokendError("bad_request", f"{op}: an argument is not JSON: {type(e).__name__}") from None
        with self._lock:
            try:
                reply = self._round_trip(line)
            except _Disconnected as e:
                # Most likely the daemon restarted since our last request. Once only:
                # if the new connection dies too, something else is wrong.
                self._close()
                if e.sent and not _repeatable(op, args):
                    raise TokendUnavailable(
                        f"connection to {self.socket_path} lost after {op} was sent; it may or may not "
                        "have been carried out, and repeating it is not harmless") from None
                try:
                    reply = self._round_trip(line)
                except _Disconnected as e:
                    self._close()
                    raise TokendUnavailable(f"connection to {self.socket_path} lost: {e}") from None
            return self._result(op, seq, reply)

    def ping(self):
        """The daemon's `ping` result: version, protocol and token count."""
        return self.request("ping")

    def close(self):
        """Close the connection; the next request opens a new one."""
        with self._lock:
            self._close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- internals; callers hold self._lock --

    def _round_trip(self, line):
        self._ensure_connected()
        sent = False  # a line cut short by a failed write is dropped by the daemon unread
        try:
            self._sock.sendall(line)
            sent = True
            raw = self._read_line()
        except socket.timeout:
            # A late reply would be read as the answer to the next request: drop the line.
            self._close()
            raise TokendError("timeout", f"no reply from {self.socket_path} in {self.timeout}s") from None
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as e:
            raise _Disconnected(e.strerror or type(e).__name__, sent) from None
        except OSError as e:
            self._close()
            raise TokendUnavailable(f"connection to {self.socket_path} failed: {e.strerror or e}") from None
        try:
            return json.loads(raw)
        except ValueError:
            self._close()
            raise TokendError("protocol", "reply is not JSON") from None

    def _read_line(self):
        # A plain buffer rather than socket.makefile(): a buffered file has an internal
        # lock that a fork can leave held, and the child must be able to close it.
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                raw = bytes(self._buf[:end])
                del self._buf[:end + 1]
                return raw
            chunk = self._sock.recv(65536)
            if not chunk:
                raise _Disconnected("the daemon closed the connection", True)
            self._buf += chunk

    def _ensure_connected(self):
        if self._sock is not None and self._pid == os.getpid():
            return
        # Also reached in a child forked by means that skip os.register_at_fork.
        self._close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError as e:
            sock.close()
            raise TokendUnavailable(f"cannot connect to {self.socket_path}: {e.strerror or e} "
                                    "(is tokend running? TOKEND_SOCKET names its socket)") from None
        self._sock = sock
        self._buf = bytearray()
        self._pid = os.getpid()

    def _close(self):
        # close(), not shutdown(): in a forked child the parent still uses this connection.
        if self._sock is not None:
            self._sock.close()
        self._sock = self._pid = None
        self._buf = bytearray()

    def _result(self, op, seq, reply):
        # Replies come in request order, so `seq` is only a check that client and daemon
        # agree; a request the daemon could not parse (e.g. too_large) is answered with null.
        if not isinstance(reply, dict) or reply.get("seq") not in (seq, None):
            self._close()
            raise TokendError("protocol", f"reply to {op} does not match the request")
        if reply.get("ok") is True and isinstance(reply.get("result"), dict):
            return reply["result"]
        error = reply.get("error") if isinstance(reply.get("error"), dict) else {}
        code = error.get("code", "protocol")
        if code == "busy":
            self._close()  # the daemon closes the connection after this reply
        raise TokendError(code, error.get("message", f"malformed reply to {op}"))


def _reset_in_child(ref):
    client = ref()
    if client is not None:
        client._lock = threading.Lock()
        client._close()
