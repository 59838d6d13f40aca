"""Start-up with the cyclic garbage collector paused (the console script: `bot/__main__.py`).

Importing the bot and its stack (SQLAlchemy, pydantic, python-telegram-bot) creates several
hundred thousand objects that live as long as the process. While they are being created, the
cyclic garbage collector runs again and again, finds nothing to free, and rescans all of them:
about a quarter of the start-up (`bench/startup_bench.py`). So the collector is off while the
bot is built, and then the objects built so far are frozen (`gc.freeze()`, out of every later
collection) before it is switched back on. Reference counting frees everything else as usual.
"""

from __future__ import annotations

import gc

_paused = {"by_us": False}


def pause_collector() -> None:
    """Switches the cyclic collector off until `resume_collector()` (if it was on)."""
    if gc.isenabled():
        gc.disable()
        _paused["by_us"] = True


def resume_collector() -> None:
    """Freezes what start-up built and switches the collector back on; safe to call twice."""
    if _paused["by_us"]:
        _paused["by_us"] = False
        gc.freeze()
        gc.enable()
