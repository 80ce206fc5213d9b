"""The 2021 library (bitmex-trio-websocket 0.16.1) on the benchmark stream, in its own venv.

Theory of operation: the library pins slurry, which needs trio 0.21, so it cannot share our venv.
``ensure_venv`` creates a throwaway venv (default ``/tmp/oldlib-venv``, ``OLDLIB_VENV``
overrides) and installs the library from the package index with pip, once. ``run_driver`` then
runs ``_oldlib_driver.py`` with that venv's Python and reads its JSON result. Its code is never
copied here: the driver only imports and drives it.

    python -m benchmarks.oldlib --messages 200000 --runs 3            # in-process
    python -m benchmarks.oldlib --mode loopback --url ws://127.0.0.1:PORT/realtime
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ._common import Result, add_common_arguments, emit
from .gen_stream import stream_path

__all__ = ["DRIVER", "OLDLIB_REQUIREMENT", "available", "ensure_venv", "main", "run_driver"]

OLDLIB_REQUIREMENT = "bitmex-trio-websocket==0.16.1"
DRIVER = Path(__file__).with_name("_oldlib_driver.py")


def venv_dir() -> Path:
    return Path(os.environ.get("OLDLIB_VENV", "/tmp/oldlib-venv"))


def _python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def available() -> bool:
    """Whether the venv exists with the library installed (nothing is installed here)."""
    python = _python(venv_dir())
    if not python.exists():
        return False
    probe = "import bitmex_trio_websocket.websocket, slurry"
    done = subprocess.run([python, "-c", probe], capture_output=True, env=_clean_env())
    return done.returncode == 0


def _clean_env() -> dict[str, str]:
    """Our environment without PYTHONPATH: the venv must import its own
    bitmex_trio_websocket (same name as ours), never ours."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def ensure_venv() -> Path:
    """The venv's Python, creating the venv and installing the library first if needed."""
    venv = venv_dir()
    python = _python(venv)
    if not available():
        print(f"creating {venv} with {OLDLIB_REQUIREMENT} ...", file=sys.stderr, flush=True)
        subprocess.run(
            [sys.executable, "-m", "venv", "--clear", str(venv)], check=True, env=_clean_env()
        )
        pip = [str(python), "-m", "pip", "install", "--quiet", OLDLIB_REQUIREMENT]
        subprocess.run(pip, check=True, stdout=subprocess.DEVNULL, env=_clean_env())
    return python


def run_driver(mode: str, stream: Path, runs: int, url: str = "") -> Result:
    """Run the driver in the library's venv; ``mode`` is ``inprocess`` or ``loopback``."""
    python = ensure_venv()
    command = [str(python), str(DRIVER), mode, str(stream), "--runs", str(runs), "--url", url]
    # Outside our source tree and without our PYTHONPATH (see _clean_env).
    done = subprocess.run(command, capture_output=True, text=True, cwd=venv_dir(), env=_clean_env())
    if done.returncode != 0:
        raise RuntimeError(f"2021 library driver failed:\n{done.stderr[-4000:]}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return Result(data["path"], data["rates"], data["messages"], data["peak_rss_mib"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.oldlib", description=__doc__)
    add_common_arguments(parser)
    parser.add_argument("--mode", choices=["inprocess", "loopback"], default="inprocess")
    parser.add_argument("--url", default="", help="emulator URL (loopback mode)")
    args = parser.parse_args(argv)
    stream = Path(args.stream) if args.stream else stream_path(args.messages, args.seed)
    result = run_driver(args.mode, stream, args.runs, args.url)
    emit([result], args.json, "2021 library (bitmex-trio-websocket 0.16.1, trio 0.21)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
