"""Writes an Alembic revision from the models: `python -m bot.devtools.make_migration "message"`.

`--initial` rewrites versions/0001_initial.py from scratch (only while nothing is deployed).
"""

from __future__ import annotations

import argparse

from bot.migrate import make_revision, reset_initial_revision


def main(argv: list[str] | None = None) -> int:
    """Parses the arguments and writes the revision file."""
    parser = argparse.ArgumentParser(prog="python -m bot.devtools.make_migration")
    parser.add_argument("message", nargs="?", default="schema change")
    parser.add_argument("--initial", action="store_true", help="rewrite 0001_initial.py")
    args = parser.parse_args(argv)
    path = reset_initial_revision() if args.initial else make_revision(args.message)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
