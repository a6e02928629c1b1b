"""Shared command-line plumbing: common arguments, logging, one error handler."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from collections.abc import Callable, Sequence

from skysift import config as cfg
from skysift.errors import SkysiftError

log = logging.getLogger("skysift")


def parser(description: str) -> argparse.ArgumentParser:
    """An ArgumentParser with the options every skysift CLI takes.

    ``--strict`` is shared by every step: it sets the config key ``strict`` (data problems
    that are otherwise counted and rejected become errors).
    """
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", help="YAML config file (defaults from config/schema.yaml)")
    p.add_argument("--config-json", help="JSON config merged over --config (what rules pass)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one key, e.g. --set train.epochs=3")
    p.add_argument("--strict", action="store_true",
                   help="data problems (bad coordinates, all-NaN tiles, label ids not in "
                        "the catalog) are errors (config strict)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--quiet", action="store_true", help="log warnings only")
    return p


def load_config(args: argparse.Namespace) -> dict:
    """The validated config named by the common arguments; ``--strict`` sets ``strict``."""
    config = cfg.load(args.config, args.config_json, args.set)
    if getattr(args, "strict", False):
        config["strict"] = True
    return config


def setup_logging(quiet: bool = False) -> None:
    """Log to stderr (which a rule sends to its log file)."""
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
                        stream=sys.stderr, force=True)


def run(body: Callable[[argparse.Namespace], int], p: argparse.ArgumentParser,
        argv: Sequence[str] | None) -> int:
    """Parse ``argv``, set up logging, run ``body``; user errors exit 2 without traceback."""
    args = p.parse_args(argv)
    setup_logging(args.quiet)
    try:
        return body(args)
    except SkysiftError as exc:
        if args.debug:
            raise
        print(f"skysift: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        if args.debug:
            raise
        where = f" while writing {exc.filename}" if exc.filename else ""
        # os.strerror: h5py's strerror is a page of HDF5 internals
        print(f"skysift: error: disk full{where} ({os.strerror(exc.errno)}); no partial output "
              "was kept: free space (or point results/ elsewhere) and re-run", file=sys.stderr)
        return 3


def progress(iterable, **kwargs):
    """A tqdm progress bar when stderr is a terminal, the iterable otherwise."""
    if sys.stderr.isatty():
        from tqdm import tqdm
        return tqdm(iterable, **kwargs)
    return iterable
