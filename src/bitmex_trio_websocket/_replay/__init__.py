"""Replaying BitMEX's history through the client's API: sources on disk, the replay client.

Theory of operation: ``_sources`` reads recordings and Tardis raw slices into server frames in
time order (sans-IO apart from reading files); ``_feeder`` feeds a file replay's frames through
the store to the listeners (the file replay's driver); ``_client`` is ``open_bitmex_replay``,
which gives the live client's facade over that driver, or over the live supervisor for a
tardis-machine URL.
"""

from ._client import BitMEXReplay, open_bitmex_replay, parse_topics
from ._feeder import ReplayStats
from ._sources import ReplayFrame, ReplaySource, iter_frames

__all__ = [
    "BitMEXReplay",
    "ReplayFrame",
    "ReplaySource",
    "ReplayStats",
    "iter_frames",
    "open_bitmex_replay",
    "parse_topics",
]
