"""The care team in the chat: alert messages and their buttons (`al:`), /grant and /revoke,
/alerts (`ax:` pages), /participant (`pt:`), acting on her behalf (`tm:`) and writing to her
(`tx:`, with the typed text taken through the staff route before any patient flow sees it).

Every privileged command and button goes through `bot.roles` (one place). A person without the
role gets exactly the reply an unknown command gets, and a press changes nothing. Alerts are
outbox rows (`bot.alerts`) rendered here at send time, so a message shows the alert as it is
when it leaves; a press edits the pressed copy at once and queues an edit of every other copy,
so everybody who got the alert sees who acted.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import BotCommand, BotCommandScopeChat, Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot import alerts, lifecycle, roles, staff
from bot.alerts import Action
from bot.callbacks import Codec, choice, id_part, matching
from bot.clock import now
from bot.config import Settings
from bot.content import Messages, messages
from bot.models import (
    Alert,
    AlertStatus,
    Lifecycle,
    OutgoingMessage,
    Participant,
    Role,
)
from bot.outbox import Buttons, RenderedMessage, enqueue, payload_of
from bot.services import Services
from handlers.common import BotContext
from handlers.ui import TextRoute, Turn, turn
from handlers.views.common import PATIENT_COMMANDS, emergency_for
from handlers.views.lifecycle import format_date
from handlers.views.staff_gate import allowed as _allowed
from handlers.views.staff_gate import staff_command, staff_m, staff_press


async def _staff_command(t: Turn, work: frozenset[Role] = roles.COORDINATOR_WORK) -> bool:
    """The staff gate (handlers/views/staff_gate.py), for the coordinators' work by default."""
    return await staff_command(t, work)


async def _staff_press(t: Turn, codec: Codec) -> tuple[Any, ...] | None:
    """The staff button gate, for the coordinators' work."""
    return await staff_press(t, codec, roles.COORDINATOR_WORK)


ACTION_CODES = {"ack": Action.acknowledge, "con": Action.contacted}
ACTION_CODES |= {"res": Action.resolved, "na": Action.not_actionable}
BUTTON = Codec("al", (choice("action", *ACTION_CODES), id_part("alert")))


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


# ---------------------------------------------------------------- the daily digest

DIGEST_TEXT_BUDGET = 3500  # characters of lines (Telegram takes 4096 in all); the rest: /alerts
DIGEST_MAX_PEOPLE = 40  # participants listed, one Open button each
DIGEST_CODES_MAX = 120  # characters of codes shown for one alert


def _who(participant: Participant, m: Messages) -> str:
    """Returns her pseudonym, with her site study id when she has one."""
    if participant.site_study_id:
        return m.get(
            "care_team.digest_who_site",
            pseudonym=participant.pseudonym,
            site=participant.site_study_id,
        )
    return participant.pseudonym


def _digest_item(alert: Alert, m: Messages) -> str:
    """Returns one alert in a digest line: kind, count and codes (never a word she typed)."""
    codes = {k: v for k, v in alerts.parse_detail(alert.detail).items() if k not in ("n", "done")}
    shown = ", ".join(f"{k} {v}" for k, v in codes.items())
    if len(shown) > DIGEST_CODES_MAX:
        shown = shown[: DIGEST_CODES_MAX - 1] + "…"
    kind = kind_label(alert.kind, m)
    if not shown:
        return m.get("care_team.digest_item_plain", kind=kind, count=alert.count)
    return m.get("care_team.digest_item", kind=kind, count=alert.count, codes=shown)


def digest_view(
    *,
    day: date,
    lines: Sequence[tuple[Alert, Participant]],
    overdue: Sequence[tuple[Alert, Participant]],
    settings: Settings,
) -> tuple[str, Buttons | None]:
    """Returns the daily digest: overdue contact requests first, counts by kind, then one line
    per participant (pseudonym, site study id, kind, count, codes), with a button to open each.
    """
    m = staff_m()
    text = [m.get("care_team.digest_title", date=day.strftime("%a %d %b"))]
    people: dict[int, Participant] = {}
    shown: list[int] = []  # participants listed, in order: one button each
    left_out: set[int] = set()
    used = 0

    def fits(participant: Participant, line: str) -> bool:
        nonlocal used
        pid = participant.id or 0
        people[pid] = participant
        new = pid not in shown
        if used + len(line) > DIGEST_TEXT_BUDGET or (new and len(shown) >= DIGEST_MAX_PEOPLE):
            left_out.add(pid)
            return False
        used += len(line) + 1
        if new:
            shown.append(pid)
        return True

    for alert, participant in overdue:
        line = m.get(
            "care_team.digest_overdue",
            who=_who(participant, m),
            kind=kind_label(alert.kind, m),
            due=_when(alert.due_by, settings),
        )
        if fits(participant, line):
            text.append(line)
    if lines:
        text.append(m.get("care_team.digest_counts", total=len(lines)))
        counts = Counter(kind_label(alert.kind, m) for alert, _ in lines)
        text += [m.get("care_team.digest_count", kind=k, count=n) for k, n in counts.most_common()]
    grouped: dict[int, list[Alert]] = {}
    for alert, participant in lines:
        grouped.setdefault(participant.id or 0, []).append(alert)
        people[participant.id or 0] = participant
    for pid, items in grouped.items():
        participant = people[pid]
        line = m.get(
            "care_team.digest_line",
            who=_who(participant, m),
            items="; ".join(_digest_item(alert, m) for alert in items),
        )
        if fits(participant, line):
            text.append(line)
    if left_out - set(shown):
        text.append(m.get("care_team.digest_more", count=len(left_out - set(shown))))
    if not shown:
        return "\n".join(text), None
    text.append(m.get("care_team.digest_hint"))
    buttons: Buttons = [
        [(m.get("care_team.digest_btn", pseudonym=people[pid].pseudonym), OPEN.build(pid))]
        for pid in shown
    ]
    return "\n".join(text), buttons


async def _render_digest(
    services: Services, session: AsyncSession, row: OutgoingMessage
) -> RenderedMessage:
    """Renders a chat's daily digest at send time, from the alerts as they are then."""
    payload = payload_of(row)
    try:
        day = date.fromisoformat(str(payload.get("date")))
        cutoff = datetime.fromisoformat(str(payload.get("cutoff")))
    except ValueError:
        return RenderedMessage(text="", skip=True)
    lines = await alerts.digest_alerts(session=session, cutoff=cutoff)
    overdue = await alerts.overdue_alerts(session=session, cutoff=cutoff)
    if not lines and not overdue:
        return RenderedMessage(text="", skip=True)  # everything was dealt with meanwhile
    text, buttons = digest_view(day=day, lines=lines, overdue=overdue, settings=services.settings)
    return RenderedMessage(text=text, buttons=buttons)


def register_outbox(services: Services) -> None:
    """Registers the alert and digest renderers and the hook that remembers each alert message."""

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

    async def render_digest(
        session: AsyncSession, row: OutgoingMessage, participant: Participant | None
    ) -> RenderedMessage:
        return await _render_digest(services, session, row)

    services.renderers[alerts.ALERT_KIND] = render_alert
    services.renderers[alerts.ALERT_EDIT_KIND] = render_alert
    services.renderers[alerts.CONTACT_FAILED_KIND] = contact_failed
    services.renderers[alerts.DIGEST_KIND] = render_digest
    services.after_send[alerts.ALERT_KIND] = remember
    register_team_messages(services)


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
    """Updates her command menu at once (setMyCommands sends no message, so it is not paced)."""
    held = await roles.roles_of(session=t.session, settings=t.settings, telegram_user_id=user_id)
    await publish_menu(t.context.bot, user_id, held, exports=t.settings.telegram_export_enabled)


async def publish_menu(
    bot: Any, user_id: int, held: frozenset[Role], *, exports: bool = False
) -> None:
    """Shows staff their commands in their private chat (patient commands stay)."""
    texts = messages("en")
    # Each role sees the commands it may use.
    extra: list[str] = []
    if held & roles.COORDINATOR_WORK:
        extra += ["alerts", "participant", "invite", "broadcast", "broadcasts"]
    if held & roles.OVERVIEW:
        extra += ["stats"]
    if exports and held & roles.RESEARCH_WORK:  # /export only when it is turned on
        extra += ["export"]
    if held & roles.ADMIN_WORK:
        extra += ["grant", "revoke"]
    names = list(PATIENT_COMMANDS) + [c for c in extra if c not in PATIENT_COMMANDS]
    commands = [BotCommand(n, texts.get(f"commands.{n}")) for n in names]
    try:
        await bot.set_my_commands(commands, scope=BotCommandScopeChat(user_id))
    except Exception:  # she never started the bot: the menu comes when she does
        return


async def _grant_or_revoke(t: Turn, *, granting: bool) -> None:
    """Parses `/grant <id> <role>` or `/revoke <id> <role>` and applies it (admins only)."""
    m = staff_m()
    if not await _staff_command(t, roles.ADMIN_WORK):
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
    exports = services.settings.telegram_export_enabled
    for user_id, held in everyone.items():
        await publish_menu(bot, user_id, held, exports=exports)


# ---------------------------------------------------------------- /alerts, /participant

ALERTS_PAGE = Codec("ax", (id_part("page"),))
OPEN = Codec("pt", (id_part("participant"),))
# Pause or withdraw on her behalf: `tm:<op>:<id>` asks why, `...:<reason>` asks to confirm, and
# `...:<reason>:<stamp>` acts, only while her lifecycle is still what the button was made for.
TEAM_ACT = Codec(
    "tm",
    (
        choice("op", "pause", "withdraw", "back"),
        id_part("participant"),
        choice("reason", *staff.REASONS),
        matching("stamp", r"[0-9a-f]{6}"),
    ),
    optional=2,
)
TEAM_MSG = Codec("tx", (choice("op", "start", "send", "cancel"), id_part("participant")))
# Column widths of the check-in table (monospaced): date, status, tablet, pain.
WIDTHS = (10, 9, 7, 4)


def _age(at: datetime | None) -> str:
    """Returns how long ago an instant was, in minutes, hours or days."""
    m = staff_m()
    age = staff.age_of(at)
    if age < timedelta(hours=1):
        return m.get("care_team.age_minutes", n=int(age.total_seconds() // 60))
    if age < timedelta(days=2):
        return m.get("care_team.age_hours", n=int(age.total_seconds() // 3600))
    return m.get("care_team.age_days", n=age.days)


def alerts_view(page: staff.AlertPage) -> tuple[str, Buttons | None]:
    """Returns one page of active alerts, a button to open each participant, and paging."""
    m = staff_m()
    if not page.total:
        return m.get("care_team.alerts_none"), None
    lines = [
        m.get("care_team.alerts_title", total=page.total, page=page.page + 1, pages=page.pages)
    ]
    rows: Buttons = []
    first = page.page * staff.ALERTS_PER_PAGE + 1
    for n, (alert, participant) in enumerate(page.rows, start=first):
        key = "care_team.alerts_line_urgent" if alert.urgent else "care_team.alerts_line"
        lines.append(
            m.get(
                key,
                n=n,
                pseudonym=participant.pseudonym,
                site=participant.site_study_id or "-",
                kind=kind_label(alert.kind, m),
                count=alert.count,
                age=_age(alert.created_at),
                status=m.get(f"care_team.alert_status_{alert.status}"),
            )
        )
        label = m.get("care_team.btn_open", n=n, pseudonym=participant.pseudonym)
        rows.append([(label, OPEN.build(participant.id))])
    nav = []
    if page.page > 0:
        nav.append((m.get("care_team.btn_back"), ALERTS_PAGE.build(page.page - 1)))
    if page.page + 1 < page.pages:
        nav.append((m.get("care_team.btn_next"), ALERTS_PAGE.build(page.page + 1)))
    if nav:
        rows.append(nav)
    return "\n".join(lines), rows


def _life(participant: Participant, settings: Settings) -> str:
    """Returns her lifecycle status in words, with when it changed or ends."""
    m = staff_m()
    if participant.status == Lifecycle.paused and participant.paused_until is not None:
        return m.get(
            "care_team.life_paused_until", until=_when(participant.paused_until, settings)
        )
    when = participant.deleted_at or participant.withdrawn_at
    return m.get(f"care_team.life_{participant.status}", when=_when(when, settings))


def _table(view: staff.Overview, settings: Settings) -> str:
    """Returns her recent check-ins as a monospaced table: codes and numbers, never her note."""
    m = staff_m()
    zone = ZoneInfo(view.participant.timezone or settings.default_timezone)
    head = [m.get(f"care_team.pt_col_{c}") for c in ("date", "status", "tablet", "pain")]
    rows = [[*head, m.get("care_team.pt_col_missed")]]
    for line in view.checkins:
        day = line.due_at.astimezone(zone).strftime(m.get("care_team.pt_date_format"))
        cells = [day, line.status, line.tablet or "-", line.worst_pain or "-"]
        rows.append([*cells, line.missed_reason or ""])
    text = "\n".join(
        " ".join([*(c.ljust(w) for c, w in zip(row, WIDTHS, strict=False)), row[-1]]).rstrip()
        for row in rows
    )
    return "<pre>" + html.escape(text) + "</pre>"


def participant_view(view: staff.Overview, settings: Settings) -> tuple[str, Buttons | None]:
    """Returns her record for the care team (HTML) and what they can do for her."""
    m = staff_m()
    p = view.participant
    if p.site_study_id:
        who = m.get("care_team.who_site", pseudonym=p.pseudonym, site=p.site_study_id)
    else:
        who = m.get("care_team.who", pseudonym=p.pseudonym)
    if p.reachable:
        reach = m.get("care_team.pt_reachable")
    else:
        reach = m.get("care_team.pt_unreachable", since=_when(p.unreachable_since, settings))
    lines = [
        who,
        m.get("care_team.pt_status", status=_life(p, settings)),
        reach,
        m.get(
            "care_team.pt_therapy",
            therapy=m.get(f"care_team.therapy_{p.therapy_status}"),
            medicine=p.medicine or m.get("care_team.pt_no_medicine"),
        ),
    ]
    text = "\n".join(html.escape(line) for line in lines)
    if view.checkins:
        heading = m.get("care_team.pt_checkins", n=len(view.checkins))
        text += "\n\n" + html.escape(heading) + "\n" + _table(view, settings)
    else:
        text += "\n\n" + html.escape(m.get("care_team.pt_no_checkins"))
    found = [m.get("care_team.pt_alerts", n=len(view.alerts))]
    for alert in view.alerts:
        found.append(
            m.get(
                "care_team.pt_alert_line",
                kind=kind_label(alert.kind, m),
                count=alert.count,
                age=_age(alert.created_at),
                status=m.get(f"care_team.alert_status_{alert.status}"),
            )
        )
    found.append(m.get("care_team.pt_questions", n=view.questions))
    text += "\n\n" + "\n".join(html.escape(line) for line in found)
    rows: Buttons = []
    acts = []
    if staff.may_pause(p):
        acts.append((m.get("care_team.btn_pause_week"), TEAM_ACT.build("pause", p.id)))
    if staff.may_withdraw(p):
        acts.append((m.get("care_team.btn_withdraw"), TEAM_ACT.build("withdraw", p.id)))
    if acts:
        rows.append(acts)
    if staff.may_message(p):
        rows.append([(m.get("care_team.btn_message"), TEAM_MSG.build("start", p.id))])
    return text, rows or None


async def _record(t: Turn, participant: Participant) -> tuple[str, Buttons | None]:
    """Returns her current record for the care team."""
    view = await staff.overview(session=t.session, participant=participant)
    return participant_view(view, t.settings)


@turn
async def on_alerts(t: Turn) -> None:
    """Lists open and acknowledged alerts, urgent first, oldest first (coordinators, admins)."""
    if not await _staff_command(t):
        return
    page = await staff.alerts_page(session=t.session, page=0)
    t.reply.say(*alerts_view(page))


@turn
async def on_alerts_page(t: Turn) -> None:
    """Shows another page of the open alerts in place of the pressed one."""
    parsed = await _staff_press(t, ALERTS_PAGE)
    if parsed is None:
        return
    page = await staff.alerts_page(session=t.session, page=parsed[0])
    t.reply.replace(*alerts_view(page))


@turn
async def on_participant(t: Turn) -> None:
    """Shows one participant at a glance, found by code name or site study id."""
    if not await _staff_command(t):
        return
    m = staff_m()
    key = " ".join(t.context.args or []).strip()
    if not key:
        t.reply.say(m.get("care_team.participant_usage"))
        return
    participant = await staff.find_participant(session=t.session, key=key)
    if participant is None:
        t.reply.say(m.get("care_team.participant_not_found", wanted=key[:64]))
        return
    text, buttons = await _record(t, participant)
    t.reply.say(text, buttons, html=True)


@turn
async def on_open_participant(t: Turn) -> None:
    """Shows the participant whose Open button was pressed, as a new message."""
    parsed = await _staff_press(t, OPEN)
    if parsed is None:
        return
    participant = await t.session.get(Participant, parsed[0])
    if participant is None:
        t.reply.toast = staff_m().get("care_team.participant_gone_toast")
        return
    text, buttons = await _record(t, participant)
    t.reply.say(text, buttons, html=True)


@turn
async def on_team_act(t: Turn) -> None:
    """Pauses her for a week or withdraws her on her behalf: a reason, a confirmation, then it."""
    parsed = await _staff_press(t, TEAM_ACT)
    if parsed is None:
        return
    m = staff_m()
    op, participant_id = parsed[0], parsed[1]
    reason = parsed[2] if len(parsed) > 2 else None
    stamp = parsed[3] if len(parsed) > 3 else None
    participant = await t.session.get(Participant, participant_id)
    if participant is None:
        t.reply.toast = m.get("care_team.participant_gone_toast")
        return
    back = [(m.get("care_team.btn_cancel"), TEAM_ACT.build("back", participant_id))]
    may = staff.may_pause if op == "pause" else staff.may_withdraw
    if op == "back" or not may(participant):
        if op != "back":
            status = m.get(f"care_team.life_{participant.status}", when="")
            t.reply.toast = m.get(f"care_team.cannot_{op}", status=status.strip())
            t.reply.alert = True
        t.reply.replace(*await _record(t, participant), html=True)
        return
    if reason is None:
        rows: Buttons = [
            [(m.get(f"care_team.reason_{code}"), TEAM_ACT.build(op, participant_id, code))]
            for code in staff.REASONS
        ]
        text = m.get(f"care_team.ask_reason_{op}", pseudonym=participant.pseudonym)
        t.reply.replace(text, [*rows, back])
        return
    if stamp is None:
        until = lifecycle.pause_end(choice=staff.TEAM_PAUSE, at=now())
        text = m.get(
            f"care_team.confirm_{op}",
            pseudonym=participant.pseudonym,
            reason=m.get(f"care_team.reason_{reason}"),
            until=_when(until, t.settings),
        )
        sure = TEAM_ACT.build(op, participant_id, reason, lifecycle.lifecycle_stamp(participant))
        t.reply.replace(text, [[(m.get(f"care_team.btn_confirm_{op}"), sure)], back])
        return
    if stamp != lifecycle.lifecycle_stamp(participant):
        t.reply.toast, t.reply.alert = m.get("care_team.stale_toast"), True
        t.reply.replace(*await _record(t, participant), html=True)
        return
    actor = roles.staff_actor(t.user_id or 0, t.settings)
    if op == "pause":
        until = await staff.pause_for(
            session=t.session, participant=participant, actor=actor, reason=reason
        )
        done = m.get("care_team.done_paused", until=_when(until, t.settings))
    else:
        await staff.withdraw_for(
            session=t.session, participant=participant, actor=actor, reason=reason
        )
        done = m.get("care_team.done_withdrawn")
    t.reply.toast = done
    text, buttons = await _record(t, participant)
    t.reply.replace(html.escape(done) + "\n\n" + text, buttons, html=True)


# ---------------------------------------------------------------- "Message her"


def team_message_text(m: Messages, settings: Settings, text: str) -> str:
    """Returns a care-team message as she sees it: who it is from, the text, how to reach them."""
    ending = [m.get("team.no_relay")]
    if settings.care_team_contact:
        ending.insert(0, m.get("team.reach", contact=settings.care_team_contact))
    return "\n\n".join([m.get("team.message_first"), text.strip(), "\n".join(ending)])


def _team_ending(m: Messages, settings: Settings) -> str:
    """Returns how to reach the care team under a notice, or nothing when none is set."""
    if not settings.care_team_contact:
        return ""
    return "\n\n" + m.get("team.reach", contact=settings.care_team_contact)


@turn
async def on_team_message(t: Turn) -> None:
    """Starts, sends or cancels a message from the care team to her (Message her, Send, Cancel)."""
    parsed = await _staff_press(t, TEAM_MSG)
    if parsed is None or t.user_id is None:
        return
    m = staff_m()
    op, participant_id = parsed
    user = t.user_id
    wanted = await staff.awaiting_of(session=t.session, telegram_user_id=user)
    if op == "cancel":
        if wanted is not None and wanted.participant_id == participant_id:
            await staff.clear(session=t.session, telegram_user_id=user)
        t.reply.replace(m.get("care_team.msg_cancelled"))
        return
    participant = await t.session.get(Participant, participant_id)
    if participant is None or not staff.may_message(participant):
        await staff.clear(session=t.session, telegram_user_id=user)
        pseudonym = participant.pseudonym if participant else "-"
        t.reply.say(m.get("care_team.msg_cannot", pseudonym=pseudonym))
        return
    cancel = [(m.get("care_team.btn_cancel"), TEAM_MSG.build("cancel", participant_id))]
    if op == "start":
        value = staff.StaffAwaiting(staff.MESSAGE, participant_id)
        await staff.set_awaiting(session=t.session, telegram_user_id=user, value=value)
        private = t.update.effective_chat is not None and t.chat_id == user
        key = "care_team.msg_prompt" if private else "care_team.msg_prompt_group"
        t.reply.say(m.get(key, pseudonym=participant.pseudonym), [cancel])
        return
    state = await staff.get_state(session=t.session, telegram_user_id=user)
    draft = state.draft if state is not None else None
    if wanted != staff.StaffAwaiting(staff.CONFIRM, participant_id) or not draft:
        t.reply.toast, t.reply.alert = m.get("care_team.msg_nothing_toast"), True
        t.reply.drop_buttons = True
        return
    if staff.refused_sentences(draft, participant.locale):  # the scan rules changed meanwhile
        value = staff.StaffAwaiting(staff.MESSAGE, participant_id)
        await staff.set_awaiting(session=t.session, telegram_user_id=user, value=value)
        t.reply.toast, t.reply.alert = m.get("care_team.msg_nothing_toast"), True
        t.reply.drop_buttons = True
        return
    actor = roles.staff_actor(user, t.settings)
    await staff.queue_message(session=t.session, participant=participant, actor=actor, text=draft)
    await staff.clear(session=t.session, telegram_user_id=user)
    t.reply.replace(m.get("care_team.msg_queued", pseudonym=participant.pseudonym))


async def on_staff_text(t: Turn) -> bool:
    """Takes a coordinator's typed message to her: refuses advice about medicine, else previews.

    The fallback hands text here before any patient flow or safety detection reads it, so a
    coordinator writing "chest pain" is never taken for a patient describing one.
    """
    user = t.user_id
    if user is None or not await _allowed(t, roles.COORDINATOR_WORK):
        return False
    wanted = await staff.awaiting_of(session=t.session, telegram_user_id=user)
    if wanted is None:
        return False
    m = staff_m()
    participant = await t.session.get(Participant, wanted.participant_id)
    if participant is None or not staff.may_message(participant):
        await staff.clear(session=t.session, telegram_user_id=user)
        pseudonym = participant.pseudonym if participant else "-"
        t.reply.say(m.get("care_team.msg_cannot", pseudonym=pseudonym))
        return True
    pid = wanted.participant_id
    cancel = [(m.get("care_team.btn_cancel"), TEAM_MSG.build("cancel", pid))]
    typing = staff.StaffAwaiting(staff.MESSAGE, pid)
    text = t.text.strip()
    if len(text) > staff.MAX_MESSAGE_CHARS:
        await staff.set_awaiting(session=t.session, telegram_user_id=user, value=typing)
        t.reply.say(
            m.get("care_team.msg_too_long", chars=len(text), limit=staff.MAX_MESSAGE_CHARS),
            [cancel],
        )
        return True
    refused = staff.refused_sentences(text, participant.locale)
    if refused:
        await staff.set_awaiting(session=t.session, telegram_user_id=user, value=typing)
        # One line per sentence, however many rules it broke.
        sentences = "\n".join(f'"{s}"' for s in dict.fromkeys(f.sentence for f in refused))
        t.reply.say(m.get("care_team.msg_refused", sentences=sentences), [cancel])
        return True
    confirm = staff.StaffAwaiting(staff.CONFIRM, pid)
    await staff.set_awaiting(session=t.session, telegram_user_id=user, value=confirm, draft=text)
    preview = team_message_text(messages(participant.locale), t.settings, text)
    send = (m.get("care_team.btn_send"), TEAM_MSG.build("send", pid))
    t.reply.say(
        m.get("care_team.msg_preview", pseudonym=participant.pseudonym, preview=preview),
        [[send, *cancel]],
    )
    return True


def register_team_messages(services: Services) -> None:
    """Registers the renderers of what the care team sends her: messages and notices."""

    async def render_message(
        session: AsyncSession, row: OutgoingMessage, participant: Participant | None
    ) -> RenderedMessage:
        text = payload_of(row).get("text")
        if participant is None or participant.has_left or not isinstance(text, str):
            return RenderedMessage(text="", skip=True)
        m = messages(participant.locale)
        return RenderedMessage(
            text=team_message_text(m, services.settings, text),
            protect_content=participant.discreet,
        )

    async def render_change(
        session: AsyncSession, row: OutgoingMessage, participant: Participant | None
    ) -> RenderedMessage:
        change = payload_of(row).get("change")
        if participant is None:
            return RenderedMessage(text="", skip=True)
        m = messages(participant.locale)
        settings = services.settings
        if change == staff.PAUSED and lifecycle.is_paused(participant):
            if participant.paused_until is None:
                return RenderedMessage(text="", skip=True)
            date = format_date(participant.paused_until, participant, settings, m)
            text = m.get("lifecycle.team_paused", date=date)
        elif change == staff.WITHDRAWN and participant.status == Lifecycle.withdrawn:
            text = m.get("lifecycle.team_withdrawn")
        else:
            return RenderedMessage(text="", skip=True)  # she resumed (or left) meanwhile
        return RenderedMessage(
            text=text + _team_ending(m, settings), protect_content=participant.discreet
        )

    services.renderers[staff.MESSAGE_KIND] = render_message
    services.renderers[staff.CHANGE_KIND] = render_change


# Typed text the fallback hands here while a coordinator writes to a participant.
TEXT_ROUTES: dict[str, TextRoute] = {staff.TEXT_ROUTE: on_staff_text}


HANDLERS: list[BaseHandler[Update, BotContext, None]] = [
    CommandHandler("grant", on_grant),
    CommandHandler("revoke", on_revoke),
    CommandHandler("alerts", on_alerts),
    CommandHandler("participant", on_participant),
    CallbackQueryHandler(on_alert_button, pattern=BUTTON.pattern),
    CallbackQueryHandler(on_alerts_page, pattern=ALERTS_PAGE.pattern),
    CallbackQueryHandler(on_open_participant, pattern=OPEN.pattern),
    CallbackQueryHandler(on_team_act, pattern=TEAM_ACT.pattern),
    CallbackQueryHandler(on_team_message, pattern=TEAM_MSG.pattern),
]
