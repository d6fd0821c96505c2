"""``hstlab explore``: serve the explorer on localhost (same app as ``panel serve apps/explorer.py``)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``explore`` sub-command.

    Example:
        >>> parser = argparse.ArgumentParser(prog="hstlab")
        >>> register(parser.add_subparsers())
        >>> parser.parse_args(["explore"]).address
        '127.0.0.1'
    """
    p = subparsers.add_parser("explore", help="serve the explorer web app (localhost by default)")
    p.add_argument("--port", type=int, default=5006)
    p.add_argument(
        "--address", default="127.0.0.1", help="interface to bind (127.0.0.1: this machine only)"
    )
    p.add_argument("--show", action="store_true", help="open a browser tab")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hstlab.ui.app import serve

    serve(port=args.port, address=args.address, show=args.show)
    return 0
