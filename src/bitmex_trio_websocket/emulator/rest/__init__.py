"""BitMEX's REST API (``/api/v1``) for the emulator, sans-IO: ``RestApp`` answers one request.

See ``_app`` for the request's path through routing, authentication, rate limits, the overload
fault and the endpoints, and ``docs/rest-api.rst`` for the API as served and how it differs
from BitMEX's.
"""

from ._app import API_PREFIX, RestApp, RestResult
from ._endpoints import ROUTES
from ._errors import RestError
from ._ratelimit import DEFAULT_REST_LIMITS, RestLimits

__all__ = [
    "API_PREFIX",
    "DEFAULT_REST_LIMITS",
    "ROUTES",
    "RestApp",
    "RestError",
    "RestLimits",
    "RestResult",
]
