"""The `adherence-bot` console script (also `python -m bot`).

It imports the command line only after pausing the garbage collector (`bot/startup.py`), so
nothing heavy may be imported above `main`.
"""

from __future__ import annotations

from bot.startup import pause_collector, resume_collector


def main() -> int:
    """Runs `adherence-bot` (see `bot.cli.main`), importing it with the collector paused."""
    pause_collector()
    try:
        from bot import cli

        return cli.main()
    finally:
        resume_collector()


if __name__ == "__main__":
    raise SystemExit(main())
