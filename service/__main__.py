"""Run the service: ``python -m service [--host 127.0.0.1] [--port 8000]`` (settings: ``CRYSTAL_*``).

``python -m service screen INPUT... --out results.parquet`` screens offline on Ray (``service.screen``).
"""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from .server import raise_fd_limit, server_options
from .settings import get_settings


def main() -> None:
    """Parse the command line and serve the app with uvicorn in this process (one worker).

    ``python -m service screen ...`` screens files offline on Ray instead (see :mod:`service.screen`).
    """
    if sys.argv[1:2] == ["screen"]:
        from .screen import main as screen

        raise SystemExit(screen(sys.argv[2:]))
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise_fd_limit()
    # One process: the parse pool and the micro-batching inference worker live inside it.
    uvicorn.run(
        "service.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        workers=1,
        **server_options(get_settings()),
    )


if __name__ == "__main__":
    main()
