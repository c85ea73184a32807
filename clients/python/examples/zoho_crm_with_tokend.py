"""The Zoho CRM Python SDK with tokend as its token store.

Start the daemon first (`tokend serve`), install this package with the SDK
(`pip install 'tokend-client[zoho]'`), then:

    # first run: exchange a grant token (from https://api-console.zoho.com, valid 3 minutes)
    ZOHO_CLIENT_ID=1000.XXXX ZOHO_CLIENT_SECRET=... ZOHO_GRANT_TOKEN=1000.xxxx.yyyy \\
        python zoho_crm_with_tokend.py

    # any later run, in any process on the machine: no grant needed, tokend has the tokens
    ZOHO_CLIENT_ID=1000.XXXX ZOHO_CLIENT_SECRET=... ZOHO_USER='you@example.com:<org zgid>' \\
        python zoho_crm_with_tokend.py

The only tokend-specific line is `store=TokendStore()`; the rest is the SDK's usual setup.
"""

import os
import sys

from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.dc import USDataCenter
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature
from zohocrmsdk.src.com.zoho.crm.api.users import UsersOperations

from tokend_client.zoho import TokendStore


def token_from_environment():
    client_id = os.environ["ZOHO_CLIENT_ID"]
    client_secret = os.environ["ZOHO_CLIENT_SECRET"]
    if os.environ.get("ZOHO_GRANT_TOKEN"):
        # The SDK exchanges the grant at Zoho's accounts server and saves the result
        # through TokendStore.save_token; the token then has tokend's id.
        return OAuthToken(client_id=client_id, client_secret=client_secret,
                          grant_token=os.environ["ZOHO_GRANT_TOKEN"],
                          redirect_url=os.environ.get("ZOHO_REDIRECT_URL"))
    # Later runs name the user; TokendStore.find_token fills in everything else. The
    # SDK stores the user as "<email>:<org zgid>"; `tokend tokens list` shows it.
    return OAuthToken(client_id=client_id, client_secret=client_secret,
                      user_signature=UserSignature(os.environ["ZOHO_USER"]))


def main():
    # The socket comes from TOKEND_SOCKET, else tokend's default path; pass
    # TokendStore(socket_path=...) to choose another.
    store = TokendStore()

    # USDataCenter: accounts.zoho.com and www.zohoapis.com. Use the data centre your
    # Zoho account lives in (EUDataCenter, INDataCenter, ...).
    Initializer.initialize(environment=USDataCenter.PRODUCTION(), token=token_from_environment(),
                           store=store)

    # Before this call the SDK asks the store for the token (find_token_by_id). When
    # tokend refreshes tokens, the access token it hands over is always fresh, so this
    # process never refreshes on its own.
    response = UsersOperations().get_users()
    if response.get_status_code() != 200:
        sys.exit(f"CRM call failed with HTTP {response.get_status_code()}")
    for user in response.get_object().get_users():
        print(user.get_email())


if __name__ == "__main__":
    main()
