"""How every eval command spells and shows its options (no heavy imports: the detection helpers use it too)."""
from __future__ import annotations

import argparse
import copy
import os

FORMER_SPELLINGS = {"--output", "--imagenet-root", "--voc-root", "--places-root"}  # accepted, not shown
DEFAULT_WORKERS = min(4, max(0, (os.cpu_count() or 1) - 1))  # leave a core to the main process


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` of every eval command: a default shown once (not for switches or when the text gives it),
    former spellings of options hidden."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (not action.option_strings or action.nargs == 0 or "default" in text
                or action.default in (None, False, [], argparse.SUPPRESS)):
            return text
        return f"{text} (default: %(default)s)".strip()

    def _format_action_invocation(self, action):
        if set(action.option_strings) & FORMER_SPELLINGS:
            action = copy.copy(action)
            action.option_strings = [s for s in action.option_strings if s not in FORMER_SPELLINGS]
        return super()._format_action_invocation(action)


def add_out_arg(parser, what: str = "result JSON, written atomically") -> None:
    parser.add_argument("--out", "--output", dest="out", metavar="FILE", required=True, help=what)


def add_progress_arg(parser) -> None:
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="progress bars on a terminal, plain lines in a log (default: on)")
