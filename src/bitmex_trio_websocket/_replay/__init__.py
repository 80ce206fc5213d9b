"""Replaying BitMEX's history through the client's API: sources on disk, the replay client.

Theory of operation: ``_sources`` reads recordings and Tardis raw slices into server frames in
time order (sans-IO apart from reading files).
"""

from ._sources import ReplayFrame, ReplaySource, iter_frames

__all__ = ["ReplayFrame", "ReplaySource", "iter_frames"]
