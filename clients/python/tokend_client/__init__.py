"""tokend-client: talk to the tokend daemon over its Unix socket.

`Client` speaks the wire protocol (standard library only). `tokend_client.zoho.TokendStore`
is the Zoho CRM SDK `TokenStore`; it is imported from its own module so that this package
works without the SDK installed.
"""

from .connection import Client, TokendError, TokendUnavailable, default_socket_path

__all__ = ["Client", "TokendError", "TokendUnavailable", "default_socket_path"]
__version__ = "0.1.0"
