"""One SDK application process, run by the end-to-end tests in a subprocess.

    python sdk_worker.py '<json spec>'

The spec names the tokend socket, the loopback Zoho URL, how to identify the token
(`grant_token`, `refresh_token`, `user_name` or `id`), how many CRM calls to make, and
whether to `remove()` the token. The process initialises the real SDK with a
TokendStore (or, given `file_store`, the SDK's own FileStore on that file), does that, and prints one JSON line describing what happened, including
every TokenStore method the SDK called. Tokens themselves are not printed.
"""

import json
import sys

from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.api.authenticator.store.file_store import FileStore
from zohocrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature
from zohocrmsdk.src.com.zoho.crm.api.users import UsersOperations

from fake_zoho import CLIENT_ID, CLIENT_SECRET
from tokend_client.zoho import TokendStore


class RecordingStore(TokendStore):
    """Notes each method the SDK calls, so a test can check the SDK's use of the store."""

    calls = []

    def __getattribute__(self, name):
        if name in ("find_token", "find_token_by_id", "save_token", "delete_token", "get_tokens",
                    "delete_tokens"):
            RecordingStore.calls.append(name)
        return super().__getattribute__(name)


def make_token(spec):
    if "grant_token" in spec:
        return OAuthToken(client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                          grant_token=spec["grant_token"], redirect_url="http://127.0.0.1/callback")
    if "refresh_token" in spec:
        return OAuthToken(client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                          refresh_token=spec["refresh_token"])
    if "user_name" in spec:
        return OAuthToken(user_signature=UserSignature(spec["user_name"]))
    return OAuthToken(id=spec["id"])


def main(spec):
    # The whole point of pointing the SDK at loopback: the CRM API URL and the accounts
    # URL are both the fake server; DataCenter.get() knows no loopback domain, so the SDK
    # keeps this environment even after the token's api_domain is set.
    url = spec["url"]
    environment = DataCenter.Environment(url, url + "/oauth/v2/token", url)
    token = make_token(spec["token"])
    if spec.get("file_store"):
        store = FileStore(spec["file_store"])  # the SDK's own store, to check an export
    else:
        store = RecordingStore(socket_path=spec["socket"])
    Initializer.initialize(environment=environment, token=token, store=store)
    out = {"init_calls": list(RecordingStore.calls)}
    RecordingStore.calls.clear()

    out["statuses"], out["emails"] = [], []
    for _ in range(spec.get("calls", 1)):
        response = UsersOperations().get_users()
        out["statuses"].append(response.get_status_code())
        if response.get_status_code() == 200:
            out["emails"].append(response.get_object().get_users()[0].get_email())
    out["call_calls"] = list(RecordingStore.calls)
    out["id"] = token.get_id()
    sig = token.get_user_signature()
    out["user_name"] = sig.get_name() if sig is not None else None
    if spec.get("remove"):
        out["removed"] = token.remove()
    print(json.dumps(out))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
