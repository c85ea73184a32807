"""Run SDK application processes (sdk_worker.py) and collect their reports."""

import json
import os
import subprocess
import sys
from pathlib import Path

from daemon import DEADLINE

WORKER = Path(__file__).with_name("sdk_worker.py")
# The worker imports tokend_client from this source tree, as the tests do.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [str(WORKER.parents[1])] + [p for p in [os.environ.get("PYTHONPATH")] if p])}


def run_sdk(daemon, zoho, tmp_path, *tokens, calls=1, remove=False, file_store=None):
    """Run one SDK process per token spec, all at once; return their reports in order.

    With `file_store`, the processes use the SDK's own FileStore on that CSV file
    instead of TokendStore.
    """
    procs = []
    for token in tokens:
        spec = {"socket": daemon.socket, "url": zoho.url, "token": token, "calls": calls,
                "remove": remove, "file_store": file_store}
        workdir = tmp_path / f"sdk-{len(list(tmp_path.glob('sdk-*')))}"  # the SDK's resource_path
        workdir.mkdir()
        procs.append(subprocess.Popen([sys.executable, str(WORKER), json.dumps(spec)], cwd=workdir, env=ENV,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=DEADLINE * 3)
        assert p.returncode == 0, err
        reports.append(json.loads(out))
    return reports
