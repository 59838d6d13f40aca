"""The care team in the chat: alert messages and their buttons (`al:`), /grant and /revoke.

Every privileged command and button goes through `bot.roles` (one place). A person without the
role gets exactly the reply an unknown command gets, and a press changes nothing. Alerts are
outbox rows (`bot.alerts`) rendered here at send time, so a message shows the alert as it is
when it leaves; a press edits the pressed copy at once and queues an edit of every other copy,
so everybody who got the alert sees who acted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import BotCommand, BotCommandScopeChat, Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot import alerts, roles
from bot.alerts import Action
from bot.callbacks import Codec, choice, id_part
from bot.clock import now
from bot.config import Settings
from bot.content import Messages, messages
from bot.models import (
    Alert,
    AlertStatus,
    OutgoingMessage,
    Participant,
    Role,
)
from bot.outbox import Buttons, RenderedMessage, enqueue, payload_of
from bot.services import Services
from handlers.common import BotContext
from handlers.ui import Turn, turn
from handlers.views.common import emergency_for, unknown_command

ACTION_CODES = {"ack": Action.acknowledge, "con": Action.contacted}
ACTION_CODES |= {"res": Action.resolved, "na": Action.not_actionable}
BUTTON = Codec("al", (choice("action", *ACTION_CODES), id_part("alert")))
STAFF_COMMANDS = ("alerts", "participant", "grant", "revoke", "help")


def staff_m() -> Messages:
    """Returns the care team's messages (English: staff text is operator text)."""
    return messages("en")


# ---------------------------------------------------------------- the alert message


def _when(at: datetime | None, settings: Settings) -> str:
    """Formats an instant in the care team's time zone."""
    if at is None:
        return "-"
    zone = ZoneInfo(settings.coverage_timezone or settings.default_timezone)
    return at.astimezone(zone).strftime("%a %d %b %H:%M")


def kind_label(kind: str, m: Messages) -> str:
    """Returns an alert kind in words."""
    key = f"care_team.kind_{kind}"
    return m.get(key) if m.has(key) else m.get("care_team.kind_other", kind=kind)


def alert_view(
    alert: Alert, participant: Participant | None, settings: Settings, *, reason: str
) -> tuple[str, Buttons | None]:
    """Returns the alert as the care team sees it: who, what, when, status, and buttons."""
    m = staff_m()
    kind = kind_label(alert.kind, m)
    title = {
        "update": "care_team.title_update",
        "resend": "care_team.title_resend",
    }.get(reason, "care_team.title_urgent" if alert.urgent else "care_team.title_digest")
    pseudonym = participant.pseudonym if participant else "-"
    lines = [m.get(title, kind=kind)]
    if participant is not None and participant.site_study_id:
        lines.append(
            m.get("care_team.who_site", pseudonym=pseudonym, site=participant.site_study_id)
        )
    else:
        lines.append(m.get("care_team.who", pseudonym=pseudonym))
    codes = {k: v for k, v in alerts.parse_detail(alert.detail).items() if k not in ("n", "done")}
    if codes:
        lines.append(
            m.get("care_team.what", codes="; ".join(f"{k} {v}" for k, v in codes.items()))
        )
    last = alert.last_triggered_at or alert.created_at
    lines.append(m.get("care_team.triggers", count=alert.count, when=_when(last, settings)))
    if alert.contact_requested and alert.due_by is not None:
        overdue = alert.due_by < now() and alert.status != AlertStatus.closed
        key = "care_team.contact_overdue" if overdue else "care_team.contact_due"
        lines.append(m.get(key, due=_when(alert.due_by, settings)))
    if alert.status == AlertStatus.closed:
        lines.append(
            m.get(
                "care_team.status_closed",
                by=alert.closed_by or "-",
                when=_when(alert.closed_at, settings),
                reason=m.get(f"care_team.action_{alert.closed_reason}")
                if m.has(f"care_team.action_{alert.closed_reason}")
                else alert.closed_reason or "-",
            )
        )
    elif alert.status == AlertStatus.acknowledged:
        lines.append(
            m.get(
                "care_team.status_acknowledged",
                by=alert.acknowledged_by or "-",
                when=_when(alert.acknowledged_at, settings),
            )
        )
    else:
        lines.append(m.get("care_team.status_open"))
    lines.append(m.get("care_team.open_hint", pseudonym=pseudonym))
    if alert.status == AlertStatus.closed:
        return "\n".join(lines), None
    rows: Buttons = [
        [
            (m.get("care_team.btn_acknowledge"), BUTTON.build("ack", alert.id)),
            (m.get("care_team.btn_contacted"), BUTTON.build("con", alert.id)),
        ],
        [
            (m.get("care_team.btn_resolved"), BUTTON.build("res", alert.id)),
            (m.get("care_team.btn_not_actionable"), BUTTON.build("na", alert.id)),
        ],
    ]
    return "\n".join(lines), rows


async def _render_alert(
    services: Services, session: AsyncSession, row: OutgoingMessage
) -> RenderedMessage:
    """Renders an alert row at send time (a deleted participant's alert is never sent)."""
    payload = payload_of(row)
    alert_id = payload.get("alert_id")
    alert = await session.get(Alert, alert_id) if isinstance(alert_id, int) else None
    if alert is None:
        return RenderedMessage(text="", skip=True)
    participant = await session.get(Participant, alert.participant_id)
    if participant is None or participant.status == "deleted":
        return RenderedMessage(text="", skip=True)
    text, buttons = alert_view(
        alert, participant, services.settings, reason=str(payload.get("reason", "new"))
    )
    extra = {}
    if isinstance(payload.get("message_id"), int):
        extra["edit_message_id"] = payload["message_id"]
    return RenderedMessage(text=text, buttons=buttons, extra=extra)


def register_outbox(services: Services) -> None:
    """Registers the alert renderers and the hook that remembers each alert message."""

    async def render_alert(
        session: AsyncSession, row: OutgoingMessage, participant: Participant | None
    ) -> RenderedMessage:
        return await _render_alert(services, session, row)

    async def contact_failed(
        session: AsyncSession, row: OutgoingMessage, participant: Participant | None
    ) -> RenderedMessage:
        if participant is None or participant.has_left:
            return RenderedMessage(text="", skip=True)
        m = messages(participant.locale)
        emergency = emergency_for(participant, services.settings)
        return RenderedMessage(
            text=m.get("doctor_first.contact_failed", emergency=emergency),
            protect_content=participant.discreet,
        )

    async def remember(session: AsyncSession, row: OutgoingMessage, message_id: int) -> None:
        await alerts.record_copy(session=session, row=row, message_id=message_id)

    services.renderers[alerts.ALERT_KIND] = render_alert
    services.renderers[alerts.ALERT_EDIT_KIND] = render_alert
    services.renderers[alerts.CONTACT_FAILED_KIND] = contact_failed
    services.after_send[alerts.ALERT_KIND] = remember


# ---------------------------------------------------------------- the role gate


async def _allowed(t: Turn, work: frozenset[Role]) -> bool:
    """Tells whether the person behind the update may do this work (one place: bot.roles)."""
    return await roles.may(
        session=t.session, settings=t.settings, telegram_user_id=t.user_id, work=work
    )


# ---------------------------------------------------------------- alert buttons


@turn
async def on_alert_button(t: Turn) -> None:
    """Acknowledges, marks contacted, resolves or dismisses an alert (coordinators, admins)."""
    m = staff_m()
    parsed = BUTTON.parse(t.data)
    if parsed is None or not await _allowed(t, roles.COORDINATOR_WORK):
        t.reply.toast = m.get("common.expired_button")  # a press without the role does nothing
        return
    code, alert_id = parsed
    actor = roles.staff_actor(t.user_id or 0, t.settings)
    result = await alerts.act(
        session=t.session, alert_id=alert_id, actor=actor, action=ACTION_CODES[code]
    )
    if result.alert is None:
        t.reply.toast = m.get("care_team.gone_toast")
        return
    participant = await t.session.get(Participant, result.alert.participant_id)
    text, buttons = alert_view(result.alert, participant, t.settings, reason="new")
    if not result.applied:
        action = m.get(f"care_team.action_{result.earlier}") if result.earlier else "-"
        t.reply.toast = m.get("care_team.already_toast", action=action, by=result.by or "-")
        t.reply.alert = True
        t.reply.replace(text, buttons)
        return
    t.reply.toast = m.get(
        "care_team.done_toast", action=m.get(f"care_team.action_{code_of(code)}")
    )
    t.reply.replace(text, buttons)
    # Every other copy (the group, or each coordinator's chat) shows the same now.
    pressed = t.pressed
    for copy in await alerts.copies_of(session=t.session, alert_id=alert_id):
        if pressed is not None and (copy.chat_id, copy.message_id) == (
            t.chat_id,
            pressed.message_id,
        ):
            continue
        await enqueue(
            t.session,
            kind=alerts.ALERT_EDIT_KIND,
            chat_id=copy.chat_id,
            payload={"alert_id": alert_id, "message_id": copy.message_id, "reason": "new"},
        )


def code_of(code: str) -> str:
    """Returns the action name for a button code."""
    return str(ACTION_CODES[code])


# ---------------------------------------------------------------- /grant, /revoke, staff /help


async def _set_menu(t: Turn, user_id: int) -> None:
    """Queues nothing: the command menu is set at once (not a message, never paced)."""
    held = await roles.roles_of(session=t.session, settings=t.settings, telegram_user_id=user_id)
    await publish_menu(t.context.bot, user_id, held)


async def publish_menu(bot: Any, user_id: int, held: frozenset[Role]) -> None:
    """Shows staff their commands in their private chat (patient commands stay)."""
    from bot.app import PATIENT_COMMANDS

    texts = messages("en")
    names = list(PATIENT_COMMANDS) + [c for c in STAFF_COMMANDS if c not in PATIENT_COMMANDS]
    if not held:
        names = list(PATIENT_COMMANDS)
    commands = [BotCommand(n, texts.get(f"commands.{n}")) for n in names]
    try:
        await bot.set_my_commands(commands, scope=BotCommandScopeChat(user_id))
    except Exception:  # she never started the bot: the menu comes when she does
        return


async def _grant_or_revoke(t: Turn, *, granting: bool) -> None:
    """Parses `/grant <id> <role>` or `/revoke <id> <role>` and applies it (admins only)."""
    m = staff_m()
    if not await _allowed(t, roles.ADMIN_WORK):
        t.reply.show(unknown_command(t.participant))
        return
    args = t.context.args or []
    role = Role(args[1]) if len(args) == 2 and args[1] in Role.__members__ else None
    user = int(args[0]) if args and args[0].isascii() and args[0].isdigit() else None
    if role is None or user is None or user >= 2**63:
        t.reply.say(m.get("care_team.grant_usage" if granting else "care_team.revoke_usage"))
        return
    actor = roles.staff_actor(t.user_id or 0, t.settings)
    change = (roles.grant if granting else roles.revoke)(
        session=t.session, settings=t.settings, actor=actor, telegram_user_id=user, role=role
    )
    done = await change
    shown = roles.staff_code(user, t.settings.pseudonym_key or "")
    if done.done:
        t.reply.say(
            m.get("care_team.granted" if granting else "care_team.revoked", user=shown, role=role)
        )
        await t.session.flush()
        await _set_menu(t, user)
        return
    key = {
        "already": "care_team.already_granted",
        "seeded": "care_team.seeded",
        "not_held": "care_team.not_held",
    }[done.reason]
    t.reply.say(m.get(key, user=shown, role=role))


@turn
async def on_grant(t: Turn) -> None:
    """Gives a role (admins only; everyone else gets the unknown-command reply)."""
    await _grant_or_revoke(t, granting=True)


@turn
async def on_revoke(t: Turn) -> None:
    """Takes a role back (admins only)."""
    await _grant_or_revoke(t, granting=False)


async def publish_staff_menus(bot: Any, services: Services) -> None:
    """Publishes every staff member's command menu (at start-up)."""
    async with services.db.session() as session:
        everyone = await roles.staff_ids(session=session, settings=services.settings)
    for user_id, held in everyone.items():
        await publish_menu(bot, user_id, held)


async def open_alert_ids(session: AsyncSession) -> list[int]:
    """Returns open alerts, urgent first, oldest first (for /alerts)."""
    rows = await session.exec(
        select(Alert.id)
        .where(col(Alert.status).in_(alerts.ACTIVE))
        .order_by(col(Alert.urgent).desc(), col(Alert.created_at))
    )
    return [i for i in rows.all() if i is not None]


HANDLERS: list[BaseHandler[Update, BotContext, None]] = [
    CommandHandler("grant", on_grant),
    CommandHandler("revoke", on_revoke),
    CallbackQueryHandler(on_alert_button, pattern=BUTTON.pattern),
]
