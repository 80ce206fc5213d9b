"""What a fuzz run found: counts per target and a few samples of every distinct problem.

Theory of operation: a target never raises; it records into ``Findings``. A *crash* is an
exception other than the documented one, a *corruption* is wrong state (or a rejected message that
changed state), a *false rejection* a well-formed message refused, an *anomaly* a contract oddity
that is neither (typing, error texts). Problems are grouped by a signature (for crashes: type,
message head and the deepest frame in the package) with up to three bounded samples each, so a
report of 100,000 inputs stays readable.
"""

from __future__ import annotations

import reprlib
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Findings", "crash_signature", "short"]

_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60
_short.maxlist = _short.maxdict = _short.maxtuple = 5
_short.maxlevel = 3


def short(obj: Any) -> str:
    """A bounded description of any input, deep or enormous ones included."""
    try:
        return _short.repr(obj)[:300]
    except Exception as exc:  # pragma: no cover - reprlib is defensive already
        return f"<unrepresentable {type(exc).__name__}>"


@dataclass
class Findings:
    """Counts per target and a few samples per distinct problem signature."""

    inputs: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    crashes: Counter[tuple[str, str]] = field(default_factory=Counter)
    corruptions: Counter[tuple[str, str]] = field(default_factory=Counter)
    false_rejections: Counter[tuple[str, str]] = field(default_factory=Counter)
    anomalies: Counter[tuple[str, str]] = field(default_factory=Counter)
    harness_errors: Counter[str] = field(default_factory=Counter)  # bugs of this module
    outcomes: Counter[str] = field(default_factory=Counter)  # "target table/action outcome"
    samples: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)

    def _note(self, kind: str, target: str, signature: str, detail: str) -> None:
        bucket = self.samples.setdefault((kind, target, signature), [])
        if len(bucket) < 3:
            bucket.append(detail[:600])

    def crash(self, target: str, exc: BaseException, subject: Any) -> None:
        signature = crash_signature(exc)
        self.crashes[(target, signature)] += 1
        self._note("crash", target, signature, short(subject))

    def corruption(self, target: str, signature: str, detail: str) -> None:
        self.corruptions[(target, signature)] += 1
        self._note("corruption", target, signature, detail)

    def anomaly(self, target: str, signature: str, detail: str) -> None:
        """A contract oddity that is neither a crash nor wrong state (typing, error texts)."""
        self.anomalies[(target, signature)] += 1
        self._note("anomaly", target, signature, detail)

    def false_rejection(self, target: str, exc: BaseException, subject: Any) -> None:
        signature = getattr(exc, "message", str(exc))[:120]
        self.false_rejections[(target, signature)] += 1
        self._note("false rejection", target, signature, short(subject))

    def merge(self, other: Findings) -> None:
        for name in ("inputs", "accepted", "rejected", "crashes", "corruptions"):
            getattr(self, name).update(getattr(other, name))
        self.false_rejections.update(other.false_rejections)
        self.anomalies.update(other.anomalies)
        self.harness_errors.update(other.harness_errors)
        self.outcomes.update(other.outcomes)
        for key, values in other.samples.items():
            bucket = self.samples.setdefault(key, [])
            bucket.extend(values[: 3 - len(bucket)])

    def problems(self, kind: str) -> dict[str, int]:
        counter = {
            "crash": self.crashes,
            "corruption": self.corruptions,
            "anomaly": self.anomalies,
        }[kind]
        return {f"{target}: {signature}": n for (target, signature), n in counter.items()}

    def report(self) -> str:
        lines = []
        for target in sorted(self.inputs):
            crashes = sum(n for (t, _), n in self.crashes.items() if t == target)
            corrupt = sum(n for (t, _), n in self.corruptions.items() if t == target)
            false = sum(n for (t, _), n in self.false_rejections.items() if t == target)
            odd = sum(n for (t, _), n in self.anomalies.items() if t == target)
            lines.append(
                f"{target:21} inputs {self.inputs[target]:>7}  accepted {self.accepted[target]:>7}"
                f"  rejected {self.rejected[target]:>7}  crashes {crashes:>5}  "
                f"corruptions {corrupt:>5}  false rejections {false:>4}  anomalies {odd:>4}"
            )
        for error, n in self.harness_errors.items():
            lines.append(f"harness error (not a finding) x{n}: {error}")
        for (kind, target, signature), samples in sorted(self.samples.items()):
            counter = {
                "crash": self.crashes,
                "corruption": self.corruptions,
                "false rejection": self.false_rejections,
                "anomaly": self.anomalies,
            }[kind]
            lines.append(f"{kind} [{target}] x{counter[(target, signature)]}: {signature}")
            lines.extend(f"    e.g. {sample}" for sample in samples)
        return "\n".join(lines)


def crash_signature(exc: BaseException) -> str:
    """Exception type, message head and the deepest frame inside the package."""
    where = "?"
    for frame in traceback.extract_tb(exc.__traceback__):
        if "bitmex_trio_websocket" in frame.filename:
            where = f"{frame.filename.rsplit('/', 1)[-1]}:{frame.name}:{frame.lineno}"
    return f"{type(exc).__name__}({str(exc)[:60]}) at {where}"
