"""Orders as BitMEX took them: parameters in, a validated ``Order`` out, with BitMEX's texts.

Theory of operation: ``parse_new`` turns ``POST /order``'s parameters (already typed: ``orderQty``
int, ``price`` float...) into an ``Order`` or raises ``OrderRejected`` with the message BitMEX's
REST API gave for that mistake (its REST API messages page; replies quoted in ccxt,
api-connectors and roq-bitmex). The defaults are BitMEX's: ``ordType`` is Limit with a price,
Stop with ``stopPx`` only, StopLimit with both and Market with neither; ``timeInForce`` is
GoodTillCancel for the limit types and ImmediateOrCancel for Market, Stop and MarketIfTouched (a
2020 testnet Stop order row, ../shared/captures/moonbot_WsModelSpec.jsonl line 19); ``side``
follows the sign of ``orderQty`` when absent; ``Close`` without a quantity closes the whole
position and without a side takes the side that reduces it. ``parse_amend`` checks ``PUT
/order``'s changes the same way.

An ``Order`` keeps its full ``order`` row as last sent (``row``); the exchange changes both
together. Null-equivalent columns are omitted from rows as BitMEX did since 2023 (no ``stopPx``
on a Limit order, no ``execInst`` when empty, no ``avgPx`` before a fill).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ..market._instruments import Contract
from ._errors import OrderRejected

__all__ = [
    "CANCEL_TEXT",
    "DMS_TEXT",
    "EXEC_INSTS",
    "LIMIT_TYPES",
    "ORD_TYPES",
    "STOP_TYPES",
    "SUBMIT_TEXT",
    "TIME_IN_FORCE",
    "TRIGGER_TEXT",
    "Order",
    "parse_amend",
    "parse_new",
]

ORD_TYPES: Final = ("Limit", "Market", "Stop", "StopLimit", "MarketIfTouched", "LimitIfTouched")
LIMIT_TYPES: Final = frozenset({"Limit", "StopLimit", "LimitIfTouched"})  # carry a price
STOP_TYPES: Final = frozenset({"Stop", "StopLimit", "MarketIfTouched", "LimitIfTouched"})
TIME_IN_FORCE: Final = ("GoodTillCancel", "ImmediateOrCancel", "FillOrKill")
TRIGGERS: Final = ("MarkPrice", "LastPrice", "IndexPrice")
EXEC_INSTS: Final = ("ParticipateDoNotInitiate", "ReduceOnly", "Close", *TRIGGERS)

# Texts of the order row. Cancels write "<reason>\n<the order's text>", as BitMEX did
# ("Canceled: Cancel from testnet.bitmex.com\nSubmission from testnet.bitmex.com", moonbot line
# 15; "Canceled: Order had execInst of ParticipateDoNotInitiate\nSubmitted via API.", line 10).
SUBMIT_TEXT: Final = "Submitted via API."
CANCEL_TEXT: Final = "Canceled: Canceled via API."
DMS_TEXT: Final = "Canceled: Cancel from cancelAllAfter"
POST_ONLY_TEXT: Final = "Canceled: Order had execInst of ParticipateDoNotInitiate"
TRIGGER_TEXT: Final = "Triggered: Order stop price reached"  # moonbot line 21
AMEND_TEXT: Final = "Amended via API."
# The emulator's own wording where no BitMEX text is known (docs/paper-trading.rst says so).
IOC_TEXT: Final = "Canceled: Order had timeInForce of ImmediateOrCancel"
FOK_TEXT: Final = "Canceled: Order had timeInForce of FillOrKill"
BAND_TEXT: Final = "Canceled: Market order reached the price band with quantity remaining"


def reduce_text(inst: str, side: str, position: int) -> str:
    """BitMEX's refusal of a reduce-only/close order that would not reduce the position."""
    return f"Order had execInst of {inst} and side of {side} but current position is {position}"


class Order:
    """One order of one account: what it is, how much is left, and its row as last sent."""

    __slots__ = (
        "account", "buy", "cl_ord_id", "close", "cum", "exec_inst", "leaves", "notional",
        "ord_type", "order_id", "post_only", "price", "qty", "reduce_only", "row", "seq", "side",
        "stop_px", "symbol", "text", "tif", "trigger", "triggered",
    )  # fmt: skip

    def __init__(
        self,
        symbol: str,
        side: str,
        qty: int,
        ord_type: str,
        tif: str,
        *,
        price: float | None,
        stop_px: float | None,
        exec_inst: str,
        cl_ord_id: str,
        text: str,
    ) -> None:
        self.order_id = ""
        self.account = 0
        self.seq = 0
        self.symbol = symbol
        self.side = side
        self.buy = side == "Buy"
        self.qty = qty
        self.leaves = qty
        self.cum = 0
        self.notional = 0.0  # sum of fill qty * price, for avgPx
        self.ord_type = ord_type
        self.tif = tif
        self.price = price
        self.stop_px = stop_px
        self.exec_inst = exec_inst
        insts = exec_inst.split(",") if exec_inst else []
        self.post_only = "ParticipateDoNotInitiate" in insts
        self.close = "Close" in insts
        self.reduce_only = self.close or "ReduceOnly" in insts
        self.trigger = next((inst for inst in insts if inst in TRIGGERS), "MarkPrice")
        self.triggered = False
        self.cl_ord_id = cl_ord_id
        self.text = text
        self.row: dict[str, Any] = {}

    @property
    def is_stop(self) -> bool:
        """A conditional order (Stop, StopLimit, MarketIfTouched, LimitIfTouched)."""
        return self.ord_type in STOP_TYPES

    @property
    def takes_any_price(self) -> bool:
        """Market-like once active: Market, and Stop/MarketIfTouched once triggered."""
        return self.ord_type not in LIMIT_TYPES

    @property
    def status(self) -> str:
        return str(self.row.get("ordStatus", "New"))

    @property
    def inst_name(self) -> str:
        """The reduce instruction named in refusals: ``Close`` wins over ``ReduceOnly``."""
        return "Close" if self.close else "ReduceOnly"

    def new_row(self, account: int, contract: Contract, ts: str, status: str) -> dict[str, Any]:
        """The row of ``order`` insert (``ordStatus`` ``status``); also stored as ``row``."""
        spec = contract.spec
        row: dict[str, Any] = {
            "orderID": self.order_id, "clOrdID": self.cl_ord_id, "account": account,
            "symbol": self.symbol, "strategy": "OneWay", "side": self.side,
            "orderQty": self.qty, "price": self.price, "stopPx": self.stop_px,
            "currency": spec.quote_currency, "settlCurrency": spec.settl_currency,
            "ordType": self.ord_type, "timeInForce": self.tif, "execInst": self.exec_inst,
            "ordStatus": status, "workingIndicator": status == "New" and not self.is_stop,
            "leavesQty": self.leaves if status == "New" else 0, "cumQty": 0, "text": self.text,
            "transactTime": ts, "timestamp": ts,
        }  # fmt: skip
        for name in ("clOrdID", "price", "stopPx", "execInst"):
            if row[name] in ("", None):
                del row[name]
        self.row = row
        return row

    def identity(self) -> dict[str, Any]:
        """The columns BitMEX repeated on every ``order`` update (after the changes)."""
        ids: dict[str, Any] = {"clOrdID": self.cl_ord_id, "account": self.account,
                               "symbol": self.symbol}  # fmt: skip
        if not self.cl_ord_id:
            del ids["clOrdID"]
        return ids


def _reject(message: str) -> OrderRejected:
    return OrderRejected(message)


def _qty(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _reject("Invalid orderQty")
    return value


def _on_tick(contract: Contract, value: Any, what: str, max_price: float) -> float:
    """A positive price on the tick, else BitMEX's ``Invalid <what>``/``... tickSize``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _reject(f"Invalid {what}")
    price = float(value)
    if not price > 0 or price > max_price:
        raise _reject(f"Invalid {what}")
    try:
        tick = contract.tick_of(price)
    except ValueError:
        raise _reject(f"Invalid {what} tickSize") from None
    return contract.price(tick)


def parse_new(
    params: Mapping[str, Any],
    contracts: Mapping[str, Contract],
    position: Mapping[str, int],
    *,
    max_qty: int = 10_000_000,
    max_price: float = 1_000_000.0,
) -> Order:
    """Validate ``POST /order``'s parameters; ``position`` maps symbols to signed positions
    (for ``Close``). Raises ``OrderRejected`` with BitMEX's text."""
    symbol = params.get("symbol")
    if not isinstance(symbol, str) or symbol not in contracts:
        raise _reject("Invalid symbol")
    contract = contracts[symbol]
    lot = contract.spec.lot_size
    price_in, stop_in = params.get("price"), params.get("stopPx")
    ord_type = params.get("ordType")
    if ord_type is None:
        if price_in is not None:
            ord_type = "StopLimit" if stop_in is not None else "Limit"
        else:
            ord_type = "Stop" if stop_in is not None else "Market"
    elif ord_type not in ORD_TYPES:
        raise _reject("Unsupported ordType")
    exec_inst = params.get("execInst") or ""
    if not isinstance(exec_inst, str):
        raise _reject("Invalid execInst")
    insts = [inst.strip() for inst in exec_inst.split(",")] if exec_inst else []
    for inst in insts:
        if inst not in EXEC_INSTS:
            raise _reject("Unsupported execInst")
    if len(set(insts)) != len(insts) or sum(inst in TRIGGERS for inst in insts) > 1:
        raise _reject("Invalid execInst")
    close = "Close" in insts
    held = position.get(symbol, 0)
    side = params.get("side")
    qty = _qty(params.get("orderQty"))
    if side is not None and side not in ("Buy", "Sell"):
        raise _reject("Invalid side")
    if qty is None and close:  # Close without a quantity: the whole position
        if side is None:
            side = "Sell" if held > 0 else "Buy"
        qty = abs(held)
        if not qty:
            raise _reject(reduce_text("Close", side, held))
    if qty is None or qty == 0 or (side is not None and qty < 0):
        raise _reject("Invalid orderQty")
    if side is None:
        side = "Buy" if qty > 0 else "Sell"
    qty = abs(qty)
    if qty % lot:
        raise _reject(f"Order quantity must be a multiple of lot size: {lot}")
    if qty > max_qty * lot:
        raise _reject("Invalid orderQty")
    price = stop_px = None
    if ord_type in LIMIT_TYPES:
        if price_in is None:
            raise _reject("Invalid price")
        price = _on_tick(contract, price_in, "price", max_price)
    elif price_in is not None:
        raise _reject("Invalid price")
    if ord_type in STOP_TYPES:
        if stop_in is None:
            raise _reject("Invalid stopPx for ordType")
        stop_px = _on_tick(contract, stop_in, "stopPx", max_price)
    elif stop_in is not None:
        raise _reject("Invalid stopPx for ordType")
    tif = params.get("timeInForce")
    if tif is None:
        tif = "GoodTillCancel" if ord_type in LIMIT_TYPES else "ImmediateOrCancel"
    elif tif not in TIME_IN_FORCE:
        raise _reject("Unsupported timeInForce")
    if "ParticipateDoNotInitiate" in insts and (
        ord_type not in LIMIT_TYPES or tif != "GoodTillCancel"
    ):
        raise _reject("Invalid ordType or timeInForce for execInst")
    if any(inst in TRIGGERS for inst in insts) and ord_type not in STOP_TYPES:
        raise _reject("Invalid ordType for execInst")
    if params.get("displayQty") is not None:  # hidden and iceberg orders are not emulated
        raise _reject("Invalid displayQty")
    for name in ("pegPriceType", "pegOffsetValue", "contingencyType", "clOrdLinkID"):
        if params.get(name) not in (None, ""):
            raise _reject(f"Unsupported {'contingencyType' if name == 'clOrdLinkID' else name}")
    cl_ord_id = params.get("clOrdID") or ""
    text = params.get("text") or SUBMIT_TEXT
    if not isinstance(cl_ord_id, str) or len(cl_ord_id) > 36:
        raise _reject("Invalid clOrdID")
    if not isinstance(text, str):
        raise _reject("Invalid text")
    return Order(
        symbol, side, qty, ord_type, tif, price=price, stop_px=stop_px,
        exec_inst=",".join(insts), cl_ord_id=cl_ord_id, text=text,
    )  # fmt: skip


def parse_amend(
    order: Order, params: Mapping[str, Any], contract: Contract, *, max_price: float = 1_000_000.0
) -> tuple[int | None, float | None, float | None]:
    """Validate ``PUT /order``'s changes to ``order``: ``(new orderQty, new price, new stopPx)``
    (``None``: unchanged). ``orderQty`` and ``leavesQty`` are two ways to say the same thing
    (``leavesQty`` counts what is left to fill); a new ``orderQty`` at or below what is filled
    is refused as BitMEX did."""
    lot = contract.spec.lot_size
    qty = _qty(params.get("orderQty"))
    leaves = params.get("leavesQty")
    if leaves is not None:
        if isinstance(leaves, bool) or not isinstance(leaves, int) or leaves <= 0:
            raise _reject("Invalid leavesQty")
        if leaves % lot:
            raise _reject("Invalid leavesQty for lotSize")
        if qty is not None and qty != order.cum + leaves:
            raise _reject("Invalid leavesQty")
        qty = order.cum + leaves
    if qty is not None and qty % lot:
        raise _reject(f"Order quantity must be a multiple of lot size: {lot}")
    if qty is not None and qty <= order.cum:
        raise _reject("Invalid orderQty")
    price = stop_px = None
    if params.get("price") is not None:
        if order.ord_type not in LIMIT_TYPES:
            raise _reject("Invalid price")
        price = _on_tick(contract, params["price"], "price", max_price)
    if params.get("stopPx") is not None:
        if order.ord_type not in STOP_TYPES or order.triggered:
            raise _reject("Invalid stopPx for ordType")
        stop_px = _on_tick(contract, params["stopPx"], "stopPx", max_price)
    return qty, price, stop_px
