"""How every `binbot` subcommand shows its help: one formatter, and one shape of epilog.

The shape: in the command list, a one-line purpose ending with the side it runs on, "(workstation)",
"(Pi)" or "(workstation, Pi)"; options in groups where there are many; an epilog of notes, examples
and, where a command leads to another, what to run next.
"""

from __future__ import annotations

import argparse
import textwrap


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default shown, unless its help already says what happens without it; the description
    and epilog wrapped paragraph by paragraph, a paragraph with indented lines (examples, tables) kept as laid out."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False:
            return action.help or ""
        return super()._get_help_string(action)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = text.strip("\n").split("\n\n")
        fill = super()._fill_text
        return "\n\n".join(textwrap.indent(p, indent) if _laid_out(p) else fill(p, width, indent) for p in paragraphs)


def _laid_out(paragraph: str) -> bool:
    return any(line.startswith(" ") for line in paragraph.splitlines())


def epilog(*examples: tuple[str, str], notes: str = "", next_steps: str = "") -> str:
    """A command's epilog: notes, then examples as (command, what it does), then "Next:" and next_steps.

    For a parser made with formatter_class=DefaultsFormatter, which keeps the examples as laid out.
    """
    shown = "\n".join(f"  # {what}\n  {command}" for command, what in examples)
    return "\n\n".join(part for part in (notes, f"examples:\n{shown}", next_steps and f"Next: {next_steps}") if part)
