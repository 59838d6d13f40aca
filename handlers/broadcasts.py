"""Broadcasts in the chat, for coordinators: /broadcast <text> (checked, previewed exactly as
patients see it, audience buttons `bc:`, the exact count, Send or Cancel), /broadcastat <time>
(a send time for the draft), /broadcasts (waiting and sending ones, Stop buttons `bx:`), and
the renderers of the deliveries, the progress message and the final report.

The rules (scan, lock screen, audience, rows, quiet hours, report) live in `bot.broadcasts`.
The role check is `bot.roles`; anybody else gets exactly the unknown-command reply.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot import broadcasts, roles
from bot.broadcasts import Audience, BroadcastError, Count, Tally
from bot.callbacks import Codec, choice, id_part
from bot.config import Settings
from bot.content import Messages
from bot.models import Broadcast, BroadcastStatus, OutgoingMessage, Participant
from bot.outbox import Buttons, RenderedMessage, payload_of
from bot.services import Services
from handlers.common import BotContext
from handlers.ui import TextRoute, Turn, turn
from handlers.views.staff_gate import (
    allowed,
    answer_as_unknown,
    in_private,
    staff_command,
    staff_m,
    staff_press,
)

# bc:<op>:<broadcast id>[:<number>] -- f: cycle filter <number> (index in FILTERS);
# go: send, <number> the count shown (a changed count is shown again, not sent); now; no.
DRAFT = Codec(
    "bc", (choice("op", "f", "go", "now", "no"), id_part("broadcast"), id_part("n")), optional=1
)
# bx:<op>:<broadcast id> -- ask to stop, stop, keep.
STOP = Codec("bx", (choice("op", "ask", "yes", "keep"), id_part("broadcast")))
FILTER_BUTTONS = {
    "cohort": "broadcasts.btn_cohort",
    "medicine": "broadcasts.btn_medicine",
    "therapy": "broadcasts.btn_therapy",
    "locale": "broadcasts.btn_locale",
}


# ---------------------------------------------------------------- the role gate


async def _coordinator(t: Turn) -> bool:
    """Tells whether a coordinator (or admin) wrote this in her private chat with the bot
    (the preview and the progress are hers); anybody else gets the unknown-command answer."""
    if not in_private(t):
        answer_as_unknown(t)
        return False
    return await staff_command(t, roles.COORDINATOR_WORK)


async def _press(t: Turn, codec: Codec) -> tuple[Any, ...] | None:
    """Returns a press's fields, or None (the expired toast) for anybody but a coordinator."""
    return await staff_press(t, codec, roles.COORDINATOR_WORK)


def _actor(t: Turn) -> str:
    """Returns who acts, as the audit log names staff."""
    return roles.staff_actor(t.user_id or 0, t.settings)


# ---------------------------------------------------------------- writing a broadcast


def _refusal(m: Messages, error: BroadcastError) -> str:
    """Returns why a text was refused, quoting the failing sentences."""
    if error.code == "advice":
        quoted = "\n".join(f'"{s}"' for s in error.detail.splitlines())
        return m.get("broadcasts.refused_advice", sentences=quoted)
    if error.code == "lock_screen":
        return m.get("broadcasts.refused_lock_screen", word=error.detail)
    if error.code == "too_long":
        return m.get(
            "broadcasts.refused_too_long", chars=error.detail, limit=broadcasts.MAX_TEXT_CHARS
        )
    return m.get("broadcasts.refused_empty")


def _command_text(t: Turn) -> str:
    """Returns what follows the command, line breaks kept (context.args would lose them)."""
    _, _, rest = t.text.partition(" ")
    first, newline, more = t.text.partition("\n")
    if newline and " " not in first:
        return more.strip()  # "/broadcast" alone on its first line
    return rest.strip()


def _when_text(m: Messages, broadcast: Broadcast, settings: Settings) -> str:
    """Returns the send time in words."""
    if broadcast.local_time:
        return m.get("broadcasts.when_local", time=broadcast.local_time)
    if broadcast.send_at:
        zone = ZoneInfo(settings.coverage_timezone or settings.default_timezone)
        shown = broadcast.send_at.astimezone(zone).strftime("%a %d %b %Y %H:%M %Z")
        return m.get("broadcasts.when_at", time=shown)
    return m.get("broadcasts.when_now")


def _audience_text(m: Messages, audience: Audience) -> str:
    """Returns the audience in words."""
    if audience == Audience():
        return m.get("broadcasts.audience_all")
    return audience.describe().replace(",", ", ")


def _reasons(m: Messages, skipped: dict[str, int]) -> str:
    """Returns skip reasons with counts ("paused 2, unreachable 1")."""
    known = {"paused", "unreachable", "withdrawn", "deleted", "cancelled", "not_active"}
    codes = ((code if code in known else "other", n) for code, n in sorted(skipped.items()))
    return ", ".join(f"{m.get(f'broadcasts.reason_{code}')} {n}" for code, n in codes)


def _draft_view(
    m: Messages, broadcast: Broadcast, count: Count, settings: Settings
) -> tuple[str, Buttons]:
    """Returns the draft's summary (audience, exact count, time) and its buttons."""
    audience = Audience.from_json(broadcast.audience)
    skipped = ""
    if count.skipped:
        skipped = m.get(
            "broadcasts.skipped_now",
            count=sum(count.skipped.values()),
            reasons=_reasons(m, count.skipped),
        )
    text = m.get(
        "broadcasts.preview_note",
        id=broadcast.id,
        audience=_audience_text(m, audience),
        reach=count.reach,
        skipped=skipped,
        when=_when_text(m, broadcast, settings),
    )
    if count.total == 0:
        text += "\n" + m.get("broadcasts.nobody")
    any_ = m.get("broadcasts.any")
    labels = [
        (
            m.get(key, value=getattr(audience, name) or any_),
            DRAFT.build("f", broadcast.id, broadcasts.FILTERS.index(name)),
        )
        for name, key in FILTER_BUTTONS.items()
    ]
    rows: Buttons = [labels[:2], labels[2:]]
    if broadcast.send_at or broadcast.local_time:
        rows.append([(m.get("broadcasts.btn_now"), DRAFT.build("now", broadcast.id))])
    last = [(m.get("broadcasts.btn_discard"), DRAFT.build("no", broadcast.id))]
    if count.total:
        send = m.get("broadcasts.btn_send", count=count.total)
        last.insert(0, (send, DRAFT.build("go", broadcast.id, count.total)))
    rows.append(last)
    return text, rows


@turn
async def on_broadcast(t: Turn) -> None:
    """Checks a coordinator's broadcast text and shows it exactly as patients will see it,
    with the audience, the exact count and the send time, ready to send or cancel."""
    if not await _coordinator(t):
        return
    text = _command_text(t)
    if not text:
        if t.user_id is not None:
            await broadcasts.await_text(session=t.session, user_id=t.user_id)
        t.reply.say(staff_m().get("broadcasts.type_text"))
        return
    await _draft(t, text)


async def on_broadcast_text(t: Turn) -> bool:
    """Takes the text typed after a bare /broadcast; False when none was awaited."""
    if not await broadcasts.take_awaited_text(session=t.session, user_id=t.user_id):
        return False
    if not await allowed(t, roles.COORDINATOR_WORK):
        return False  # a role revoked in between: her text is read like anyone's
    if not await _draft(t, t.text.strip()) and t.user_id is not None:
        # Refused: her next message is the text written again, not a patient's message.
        await broadcasts.await_text(session=t.session, user_id=t.user_id)
    return True


async def _draft(t: Turn, text: str) -> bool:
    """Checks the text and shows the preview, the audience, the count and the buttons;
    False when the text was refused (the reply says why)."""
    m = staff_m()
    try:
        broadcast = await broadcasts.create_draft(
            session=t.session, text=text, actor=_actor(t), user_id=t.user_id, chat_id=t.chat_id
        )
    except BroadcastError as error:
        t.reply.say(_refusal(m, error))
        return False
    count = await broadcasts.count_audience(t.session, Audience())
    t.reply.say(broadcasts.render_for(broadcast.text, "en"))
    t.reply.say(*_draft_view(m, broadcast, count, t.settings))
    return True


@turn
async def on_broadcast_at(t: Turn) -> None:
    """Sets the send time of the coordinator's newest draft (absolute, or her own HH:MM)."""
    if not await _coordinator(t) or t.user_id is None:
        return
    m = staff_m()
    draft = await broadcasts.latest_draft(session=t.session, user_id=t.user_id)
    if draft is None:
        t.reply.say(m.get("broadcasts.no_draft"))
        return
    raw = _command_text(t)
    if not raw:
        t.reply.say(m.get("broadcasts.at_usage"))
        return
    try:
        when = broadcasts.parse_when(raw, default_zone=t.settings.default_timezone)
    except BroadcastError as error:
        if error.code == "past":
            t.reply.say(m.get("broadcasts.at_past"))
        elif error.code == "no_zone":
            t.reply.say(m.get("broadcasts.at_no_zone"))
        else:
            usage = m.get("broadcasts.at_usage")
            t.reply.say(m.get("broadcasts.at_bad", raw=raw[:64], usage=usage))
        return
    draft.send_at, draft.local_time = when.send_at, when.local_time
    t.session.add(draft)
    count = await broadcasts.count_audience(t.session, Audience.from_json(draft.audience))
    t.reply.say(*_draft_view(m, draft, count, t.settings))


@turn
async def on_draft_button(t: Turn) -> None:
    """Changes a filter or the time of a draft, sends it, or drops it."""
    parsed = await _press(t, DRAFT)
    if parsed is None:
        return
    m = staff_m()
    op, broadcast_id = parsed[0], int(parsed[1])
    number = int(parsed[2]) if len(parsed) > 2 else None
    broadcast = await t.session.get(Broadcast, broadcast_id)
    if broadcast is not None and broadcast.creator_user_id != t.user_id:
        t.reply.toast = m.get("common.expired_button")  # a draft is its writer's alone
        return
    if broadcast is None or broadcast.status != BroadcastStatus.draft:
        t.reply.toast = m.get("broadcasts.gone_toast")
        t.reply.drop_buttons = True
        return
    if op == "no":
        broadcast.status = BroadcastStatus.cancelled
        t.session.add(broadcast)
        t.reply.replace(m.get("broadcasts.discarded"))
        return
    audience = Audience.from_json(broadcast.audience)
    if op == "f" and number is not None and number < len(broadcasts.FILTERS):
        name = broadcasts.FILTERS[number]
        values = await broadcasts.filter_choices(t.session, name)
        current = getattr(audience, name)
        nxt = values[(values.index(current) + 1) % len(values)] if current in values else None
        audience = Audience(**{**audience.__dict__, name: nxt})
        broadcast.audience = audience.to_json()
    elif op == "now":
        broadcast.send_at, broadcast.local_time = None, None
    t.session.add(broadcast)
    count = await broadcasts.count_audience(t.session, audience)
    if op == "go":
        if number != count.total or not count.total:
            t.reply.toast, t.reply.alert = m.get("broadcasts.count_changed_toast"), True
            t.reply.replace(*_draft_view(m, broadcast, count, t.settings))
            return
        try:
            queued = await broadcasts.queue(
                session=t.session, broadcast=broadcast, settings=t.settings, actor=_actor(t)
            )
        except BroadcastError as error:
            gone = error.code == "not_draft"
            t.reply.replace(m.get("broadcasts.gone_toast") if gone else _refusal(m, error))
            return
        pressed = t.pressed
        broadcast.progress_message_id = pressed.message_id if pressed is not None else None
        broadcast.creator_chat_id = t.chat_id
        t.session.add(broadcast)
        when = _when_text(m, broadcast, t.settings)
        t.reply.edit_fallback = False  # the progress edits need this very message
        t.reply.replace(m.get("broadcasts.queued", id=broadcast.id, count=queued, when=when))
        return
    t.reply.replace(*_draft_view(m, broadcast, count, t.settings))


# ---------------------------------------------------------------- following and stopping


def _list_view(
    m: Messages, rows: list[tuple[Broadcast, Tally, datetime | None]], settings: Settings
) -> tuple[str, Buttons | None]:
    """Returns the waiting and sending broadcasts with a Stop button each."""
    if not rows:
        return m.get("broadcasts.list_empty"), None
    zone = ZoneInfo(settings.coverage_timezone or settings.default_timezone)
    lines = [m.get("broadcasts.list_head")]
    buttons: Buttons = []
    for broadcast, counts, due in rows:
        nxt = (
            due.astimezone(zone).strftime("%a %d %b %H:%M")
            if due is not None
            else m.get("broadcasts.list_next_none")
        )
        lines.append(
            m.get(
                "broadcasts.list_item",
                id=broadcast.id,
                who=broadcast.created_by,
                settled=counts.settled,
                total=counts.recipients,
                next=nxt,
                audience=_audience_text(m, Audience.from_json(broadcast.audience)),
            )
        )
        buttons.append(
            [(m.get("broadcasts.btn_stop", id=broadcast.id), STOP.build("ask", broadcast.id))]
        )
    return "\n".join(lines), buttons


async def _live_rows(session: AsyncSession) -> list[tuple[Broadcast, Tally, datetime | None]]:
    """Returns each waiting or sending broadcast with its counts and next due delivery."""
    out = []
    for broadcast in await broadcasts.live_broadcasts(session=session):
        assert broadcast.id is not None
        counts = await broadcasts.tally(session, broadcast.id)
        out.append((broadcast, counts, await broadcasts.next_due(session, broadcast.id)))
    return out


@turn
async def on_broadcasts(t: Turn) -> None:
    """Lists the broadcasts waiting or being sent, each with a Stop button."""
    if not await _coordinator(t):
        return
    t.reply.say(*_list_view(staff_m(), await _live_rows(t.session), t.settings))


@turn
async def on_stop_button(t: Turn) -> None:
    """Asks to confirm stopping a broadcast, stops it (unsent rows cancelled), or keeps it."""
    parsed = await _press(t, STOP)
    if parsed is None:
        return
    m = staff_m()
    op, broadcast_id = parsed[0], int(parsed[1])
    broadcast = await t.session.get(Broadcast, broadcast_id)
    if broadcast is None or broadcast.status != BroadcastStatus.queued:
        t.reply.toast = m.get("broadcasts.not_live_toast")
        t.reply.drop_buttons = True
        return
    if op == "keep":
        t.reply.replace(m.get("broadcasts.kept", id=broadcast_id))
        return
    counts = await broadcasts.tally(t.session, broadcast_id)
    if op == "ask":
        t.reply.replace(
            m.get("broadcasts.confirm_stop", id=broadcast_id, pending=counts.pending),
            [
                [
                    (m.get("broadcasts.btn_stop_sure"), STOP.build("yes", broadcast_id)),
                    (m.get("broadcasts.btn_keep"), STOP.build("keep", broadcast_id)),
                ]
            ],
        )
        return
    stopped = await broadcasts.cancel(session=t.session, broadcast=broadcast, actor=_actor(t))
    t.reply.replace(
        m.get("broadcasts.stopped", id=broadcast_id, stopped=stopped, delivered=counts.delivered)
    )


# ---------------------------------------------------------------- what the sender renders


def report_text(m: Messages, broadcast: Broadcast, counts: Tally) -> str:
    """Returns the final report: delivered, skipped by reason, blocked, failed, uncertain."""
    reasons = (
        m.get("broadcasts.reasons", reasons=_reasons(m, counts.skipped)) if counts.skipped else ""
    )
    return m.get(
        "broadcasts.report",
        id=broadcast.id,
        total=counts.recipients,
        delivered=counts.delivered,
        skipped=counts.skipped_total,
        reasons=reasons,
        blocked=counts.blocked,
        failed=counts.failed,
        uncertain=counts.uncertain,
    )


def register_outbox(services: Services) -> None:
    """Registers the renderers of deliveries, progress edits and the final report."""

    async def render_delivery(
        session: AsyncSession, row: OutgoingMessage, participant: Participant | None
    ) -> RenderedMessage:
        broadcast = await session.get(Broadcast, row.broadcast_id) if row.broadcast_id else None
        if broadcast is None or broadcast.status == BroadcastStatus.cancelled:
            return RenderedMessage(text="", skip=True, extra={"skip_reason": "cancelled"})
        if participant is None:
            return RenderedMessage(text="", skip=True, extra={"skip_reason": "deleted"})
        return RenderedMessage(
            text=broadcasts.render_for(broadcast.text, participant.locale),
            protect_content=participant.discreet,
        )

    async def render_progress(
        session: AsyncSession, row: OutgoingMessage, participant: Participant | None
    ) -> RenderedMessage:
        broadcast = await session.get(Broadcast, row.broadcast_id) if row.broadcast_id else None
        if broadcast is None or broadcast.progress_message_id is None:
            return RenderedMessage(text="", skip=True)
        assert broadcast.id is not None
        counts = await broadcasts.tally(session, broadcast.id)
        m = staff_m()
        if payload_of(row).get("final") or counts.pending == 0:
            text = report_text(m, broadcast, counts)
        else:
            text = m.get(
                "broadcasts.progress",
                id=broadcast.id,
                settled=counts.settled,
                total=counts.recipients,
                delivered=counts.delivered,
            )
        return RenderedMessage(text=text, extra={"edit_message_id": broadcast.progress_message_id})

    async def render_report(
        session: AsyncSession, row: OutgoingMessage, participant: Participant | None
    ) -> RenderedMessage:
        broadcast = await session.get(Broadcast, row.broadcast_id) if row.broadcast_id else None
        if broadcast is None:
            return RenderedMessage(text="", skip=True)
        assert broadcast.id is not None
        return RenderedMessage(
            text=report_text(staff_m(), broadcast, await broadcasts.tally(session, broadcast.id))
        )

    services.renderers[broadcasts.KIND] = render_delivery
    services.renderers[broadcasts.PROGRESS_KIND] = render_progress
    services.renderers[broadcasts.REPORT_KIND] = render_report


HANDLERS: list[BaseHandler[Update, BotContext, None]] = [
    CommandHandler("broadcast", on_broadcast),
    CommandHandler("broadcastat", on_broadcast_at),
    CommandHandler("broadcasts", on_broadcasts),
    CallbackQueryHandler(on_draft_button, pattern=DRAFT.pattern),
    CallbackQueryHandler(on_stop_button, pattern=STOP.pattern),
]


# Typed text the fallback hands here after a bare /broadcast.
TEXT_ROUTES: dict[str, TextRoute] = {broadcasts.TEXT_ROUTE: on_broadcast_text}
