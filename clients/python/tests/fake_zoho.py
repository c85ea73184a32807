"""A loopback imitation of Zoho: the accounts server's token endpoint and one CRM call.

Runs `http.server` in a thread on 127.0.0.1. It answers as ZOHO.md describes:
errors with HTTP 200 and `{"error": ...}`, `expires_in` in seconds, no refresh token in
a refresh response, and an `api_domain` that is this server, so the SDK never leaves
the machine. Every request is recorded for the tests to inspect.
"""

import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

CLIENT_ID = "1000.LOOPBACKCLIENT"
CLIENT_SECRET = "loopback-client-secret"
USER_EMAIL = "admin@example.com"
ORG_ZGID = "20061234"
#: The user_name the SDK derives at a grant exchange: "<email>:<org zgid>".
USER_NAME = f"{USER_EMAIL}:{ORG_ZGID}"

# The CRM calls the SDK needs: the current user and the org (both read after a grant
# exchange to name the user) and the users list the tests call.
CRM = {
    "/crm/v8/users": {"users": [{"id": "4150868000000225013", "email": USER_EMAIL, "full_name": "Admin"}],
                      "info": {"per_page": 200, "count": 1, "page": 1, "more_records": False}},
    "/crm/v8/org": {"org": [{"id": "4150868000000225000", "zgid": ORG_ZGID, "company_name": "Example"}]},
}


class FakeZoho:
    def __init__(self):
        self.lock = threading.Lock()
        self.grants = set()           # unused grant codes
        self.refresh_tokens = set()
        self.access_tokens = {}       # access token -> expiry, epoch seconds
        self.token_calls = []         # (grant_type, User-Agent) per token endpoint call
        self.crm_calls = []           # (path, access token) per CRM call
        self._serial = itertools.count(1)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        # A short poll interval: shutdown() waits for the loop to notice, up to one interval.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def new_grant(self):
        code = f"1000.grant.{next(self._serial)}"
        with self.lock:
            self.grants.add(code)
        return code

    def authorised_user(self):
        """Tokens as if the user had authorised earlier: a known refresh token and a valid
        access token, with the expiry the SDK would have stored (epoch ms string)."""
        with self.lock:
            refresh = f"1000.refresh.{next(self._serial)}"
            self.refresh_tokens.add(refresh)
            access = self._issue_access()
        expiry = str(int(self.access_tokens[access["access_token"]] * 1000))
        return {"refresh_token": refresh, "access_token": access["access_token"], "expiry_time": expiry}

    def refreshes(self):
        with self.lock:
            return [c for c in self.token_calls if c[0] == "refresh_token"]

    # -- the endpoints --

    def token_endpoint(self, form, user_agent):
        grant_type = form.get("grant_type")
        with self.lock:
            self.token_calls.append((grant_type, user_agent))
            if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
                return {"error": "invalid_client"}
            if grant_type == "authorization_code" and form.get("code") in self.grants:
                self.grants.discard(form["code"])  # grant codes are single-use
                refresh = f"1000.refresh.{next(self._serial)}"
                self.refresh_tokens.add(refresh)
                return {**self._issue_access(), "refresh_token": refresh}
            if grant_type == "refresh_token" and form.get("refresh_token") in self.refresh_tokens:
                return self._issue_access()
            return {"error": "invalid_code"}

    def _issue_access(self):
        access = f"1000.access.{next(self._serial)}"
        self.access_tokens[access] = time.time() + 3600
        return {"access_token": access, "api_domain": self.url, "token_type": "Bearer", "expires_in": 3600}

    def crm(self, path, authorization):
        access = authorization.removeprefix("Zoho-oauthtoken ")
        with self.lock:
            self.crm_calls.append((path, access))
            if self.access_tokens.get(access, 0) < time.time():
                return 401, {"code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token",
                             "status": "error"}
        return 200, CRM[path]


def _handler(fake):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            if urlsplit(self.path).path != "/oauth/v2/token":
                return self._reply(404, {"error": "not_found"})
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            form = {k: v[0] for k, v in parse_qs(body).items()}
            self._reply(200, fake.token_endpoint(form, self.headers.get("User-Agent", "")))

        def do_GET(self):
            path = urlsplit(self.path).path
            if path not in CRM:
                return self._reply(404, {"code": "INVALID_URL_PATTERN", "status": "error"})
            self._reply(*fake.crm(path, self.headers.get("Authorization", "")))

        def _reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass  # requests carry tokens; keep them out of the test output

    return Handler
