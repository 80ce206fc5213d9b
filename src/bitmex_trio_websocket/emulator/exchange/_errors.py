"""The paper exchange's refusals: ``ExchangeError`` and its subclasses, in BitMEX's words.

Theory of operation: every refusal of a command (a bad order, an unknown order, too little
margin) is raised as an ``ExchangeError`` carrying what BitMEX's REST API answered: the HTTP
``status``, the error ``name`` (``HTTPError``, ``ValidationError``...) and the ``message``
text, which the REST layer writes as ``{"error": {"message": ..., "name": ...}}``. Texts are
BitMEX's (its REST API messages page and the replies quoted in ccxt and api-connectors issues).
Some classes also subclass a builtin so the synthetic ``Market``'s older Python callers, which
caught ``ValueError``/``KeyError``, keep working. ::

    BitMEXError
    └── ExchangeError              status, name, message (400 HTTPError unless said)
        ├── OrderRejected          (ValueError) a command BitMEX would refuse as invalid
        │   ├── DuplicateClOrdID   "Duplicate clOrdID"
        │   ├── InsufficientBalance  "Account has insufficient Available Balance, N XBt required"
        │   └── InvalidOrdStatus   "Invalid ordStatus: Filled" (amending a closed order)
        ├── NotFound               (KeyError) 404 "Not Found": no such order
        └── UnknownAccount         (KeyError) 401: no such account
    AccountExists                  (ExchangeError, ValueError) the account is already open
"""

from __future__ import annotations

from typing import Final

from ..._exceptions import BitMEXError

__all__ = [
    "AccountExists",
    "DuplicateClOrdID",
    "ExchangeError",
    "InsufficientBalance",
    "InvalidOrdStatus",
    "NotFound",
    "OrderRejected",
    "UnknownAccount",
]

HTTP_ERROR: Final = "HTTPError"
VALIDATION_ERROR: Final = "ValidationError"


class ExchangeError(BitMEXError):
    """A command the paper exchange refused: ``status`` (HTTP), ``name``, ``message``."""

    status: int = 400
    name: str = HTTP_ERROR

    def __init__(self, message: str, *, status: int | None = None, name: str | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if name is not None:
            self.name = name

    def __str__(self) -> str:  # KeyError subclasses would otherwise quote the text
        return self.message

    def to_json(self) -> dict[str, dict[str, str]]:
        """The body BitMEX's REST API sent with this error."""
        return {"error": {"message": self.message, "name": self.name}}


class OrderRejected(ExchangeError, ValueError):
    """An order, amend or cancel BitMEX would refuse (bad symbol, side, quantity, price...)."""


class DuplicateClOrdID(OrderRejected):
    """The account already used this ``clOrdID``."""

    def __init__(self) -> None:
        super().__init__("Duplicate clOrdID")


class InsufficientBalance(OrderRejected):
    """The order needs more margin than the account has available."""

    name = VALIDATION_ERROR

    def __init__(self, required: int, currency: str) -> None:
        text = f"Account has insufficient Available Balance, {required} {currency} required"
        super().__init__(text)
        self.required = required
        self.currency = currency


class InvalidOrdStatus(OrderRejected):
    """An amend of an order that is no longer open (BitMEX's text since December 2021)."""

    def __init__(self, status: str) -> None:
        super().__init__(f"Invalid ordStatus: {status}")
        self.ord_status = status


class NotFound(ExchangeError, KeyError):
    """No order with that id (or clOrdID) in the account."""

    status = 404

    def __init__(self, message: str = "Not Found") -> None:
        super().__init__(message)


class UnknownAccount(ExchangeError, KeyError):
    """No such account on the exchange."""

    status = 401

    def __init__(self, account: int) -> None:
        super().__init__(f"Account does not exist: {account}")
        self.account = account


class AccountExists(ExchangeError, ValueError):
    """``add_account`` for an account that is already open."""

    def __init__(self, account: int) -> None:
        super().__init__(f"account {account} already exists")
        self.account = account
