"""Command line: ``python -m wordnet_hierarchy {setup,build,stats,readings}``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import DATASETS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wordnet_hierarchy",
        description="WordNet-depth relabeling of ImageNet-1K and CIFAR-10 (paper Table 5).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("setup", help="check wordnet-base and prepare the NLTK WordNet directory")
    build = commands.add_parser(
        "build", help="regenerate the committed hierarchy file (needs WordNet)"
    )
    build.add_argument("--output", type=Path, help="write here instead of the package data file")
    stats = commands.add_parser("stats", help="class counts per depth (no WordNet needed)")
    stats.add_argument("--dataset", choices=DATASETS, default="imagenet")
    commands.add_parser(
        "readings", help="ImageNet counts under alternative path rules (needs WordNet)"
    )
    args = parser.parse_args(argv)

    from .wordnet_source import WordNetUnavailableError

    try:
        if args.command == "setup":
            from .wordnet_source import open_wordnet

            wordnet = open_wordnet()
            print(f"WordNet {wordnet.get_version()} ready for NLTK in {wordnet.root.path}")
        elif args.command == "build":
            from .build import DATA_FILE, write_hierarchy

            print(f"wrote {write_hierarchy(args.output or DATA_FILE)}")
        elif args.command == "stats":
            from .stats import format_stats

            print(format_stats(args.dataset))
        else:
            from .build import format_readings

            print(format_readings())
    except WordNetUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
