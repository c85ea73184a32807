"""Start and stop the real tokend binary for tests.

The binary is `<repo>/target/debug/tokend` unless `TOKEND_BIN` names another. Each
`Daemon` gets its own socket and database in a short temporary directory (Unix socket
paths are limited to about 100 bytes, so pytest's long tmp_path is not used).
"""

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tokend_client import Client, TokendError

REPO = Path(__file__).resolve().parents[3]
TOKEND_BIN = os.environ.get("TOKEND_BIN", str(REPO / "target" / "debug" / "tokend"))

#: Upper bound for the daemon to start or stop; generous for a loaded CI machine.
DEADLINE = 20.0


def wait_until(condition, what, deadline=DEADLINE):
    """Poll `condition()` until it is true; fail after `deadline` seconds."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline}s waiting for {what}")
        time.sleep(0.01)  # a poll interval, not a wait for time to pass


class Daemon:
    """One tokend process on a private socket and database."""

    def __init__(self, env=None):
        self.dir = Path(tempfile.mkdtemp(prefix="tokend-test-"))
        self.socket = str(self.dir / "tokend.sock")
        self.db = str(self.dir / "tokens.db")
        self.log = self.dir / "tokend.log"
        # An empty config file and no inherited TOKEND_* variables: the machine's
        # /etc/tokend/tokend.toml or the developer's environment must not leak in.
        self.config = self.dir / "tokend.toml"
        self.config.touch()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TOKEND_")}
        self.env.update(env or {})
        self.proc = None

    def start(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [TOKEND_BIN, "serve", "--config", str(self.config), "--socket", self.socket,
                 "--db", self.db],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.env)
        wait_until(self._answers, f"tokend to answer on {self.socket}")
        return self

    def _answers(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"tokend exited with {self.proc.returncode}:\n{self.log.read_text()}")
        try:
            with Client(self.socket, timeout=DEADLINE) as c:
                c.ping()
            return True
        except TokendError:
            return False

    def stop(self):
        """SIGTERM and wait; returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("tokend did not stop on SIGTERM")

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def client(self):
        return Client(self.socket, timeout=DEADLINE)


@contextlib.contextmanager
def serve(env=None, config=""):
    """A started Daemon with `config` as its configuration file; stopped with SIGTERM
    after, which must end it with status 0."""
    d = Daemon(env)
    try:
        d.config.write_text(config)
        d.start()
        yield d
        status = d.stop()
        assert status == 0, f"tokend exited with {status} on SIGTERM:\n{d.log.read_text()}"
    finally:
        d.cleanup()
