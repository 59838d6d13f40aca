"""/stats: the study at a glance for coordinators, researchers and admins, as text and a chart.

`/stats` covers the whole study, `/stats <cohort>` one cohort. The figures come from
`bot.stats` (small cells shown as "<5"); the chart is drawn after commit, in a worker thread,
by `bot.charts.render_stats_png`. Anyone else gets the unknown-command reply.
"""

from __future__ import annotations

import functools

from telegram import Update
from telegram.ext import BaseHandler, CommandHandler

from bot import roles, stats
from bot.charts import StudyWeeks, render_stats_png
from bot.content import Messages
from handlers.common import BotContext
from handlers.ui import Screen, Turn, turn
from handlers.views.staff_gate import staff_command, staff_m


def _draw(data: StudyWeeks, m: Messages) -> bytes:
    """Draws the overview chart (called after commit, in a worker thread)."""
    return render_stats_png(data, m)


@turn
async def on_stats(t: Turn) -> None:
    """Shows the overview of the study, or of the cohort named after the command."""
    if not await staff_command(t, roles.OVERVIEW):
        return
    m = staff_m()
    wanted = " ".join(t.context.args or []).strip() or None
    found = await stats.overview(session=t.session, settings=t.settings, cohort=wanted)
    if found is None:
        known = await stats.known_cohorts(session=t.session)
        cohort = (wanted or "")[:64]
        if known:
            t.reply.say(m.get("stats.no_cohort", cohort=cohort, cohorts=", ".join(known)))
        else:
            t.reply.say(m.get("stats.no_cohort_none", cohort=cohort))
        return
    t.reply.say("\n".join(stats.report_lines(found, m)))
    if found.chart is not None:
        caption = m.get("stats.chart_caption", weeks=len(found.chart.weeks))
        t.reply.show(Screen(caption, photo=functools.partial(_draw, found.chart, m)))


HANDLERS: list[BaseHandler[Update, BotContext, None]] = [
    CommandHandler("stats", on_stats),
]
