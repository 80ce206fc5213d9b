"""The trio-native BitMEX REST client: ``open_bitmex_rest`` / ``BitMEXRest``.

``_client`` is the client (signing, limits, retries, errors), ``_http`` one keep-alive HTTP/1.1
connection over a trio stream (h11), ``_limits`` the sans-IO rate-limit tracker, ``_params``
the wire form of requests and the ``clOrdID`` maker. docs/rest-client.rst tells users.
"""

from ._client import REST_NETWORKS, BitMEXRest, open_bitmex_rest, resolve_rest_network
from ._limits import RateLimit

__all__ = ["REST_NETWORKS", "BitMEXRest", "RateLimit", "open_bitmex_rest", "resolve_rest_network"]
