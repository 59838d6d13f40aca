"""/invite: coordinators make, list and revoke invite links in the chat (`iv:` buttons).

`/invite` asks four short questions, each answered with a button or by typing, each but the
first skippable: the cohort (an existing one, or a new code), the site study id, the expiry and
the number of uses. Then the bot replies with the t.me link. The rules are the CLI's
(`bot.invites`): a site study id that already has a participant or a live invite needs a
"Create anyway" press, which is audited. `/invite list` shows the live invites with a Revoke
button each; `/invite revoke <id>` revokes one. Where the coordinator is in the flow lives in
the database (`bot.invites.Draft`), and typed answers reach this flow through the fallback's
text routes before any patient flow reads them. Anyone without the role gets the
unknown-command reply, and a press from them changes nothing.
"""

from __future__ import annotations

import html
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot import invites, roles
from bot.callbacks import Codec, choice, matching
from bot.clock import now
from bot.config import Settings
from bot.invites import Draft
from bot.outbox import Buttons
from handlers.common import BotContext
from handlers.ui import TextRoute, Turn, turn
from handlers.views.staff_gate import allowed, in_private, staff_command, staff_m, staff_press

WORK = roles.COORDINATOR_WORK
OPS = ("coh", "skip", "exp", "uses", "force", "cancel", "rev", "revy", "keep")
BUTTON = Codec("iv", (choice("op", *OPS), matching("arg", r"[a-z0-9]{1,12}")), optional=1)
LIST_BUTTONS = 10  # Revoke buttons under /invite list (the newest live invites)
LIST_LIMIT = 20  # invites listed in one message (each with its link: well under 4096 chars)


def _when(at: datetime | None, settings: Settings) -> str:
    """Formats an expiry as its last valid day (invites end at midnight, DEFAULT_TIMEZONE)."""
    if at is None:
        return staff_m().get("invites.never")
    last = (at - timedelta(seconds=1)).astimezone(ZoneInfo(settings.default_timezone))
    return last.strftime("%d %b %Y")


def _link(t: Turn, code: str) -> str:
    """Returns the deep link that opens the bot with this invite."""
    username = (t.services.bot_username or t.settings.bot_username or "").lstrip("@")
    return f"https://t.me/{username or '<bot_username>'}?start={code}"


def _show(t: Turn, text: str, buttons: Buttons | None, *, edit: bool) -> None:
    """Shows a step's outcome in place of the pressed message, or as a new message."""
    if edit:
        t.reply.replace(text, buttons)
    else:
        t.reply.say(text, buttons)


def _cancel_row() -> list[tuple[str, str]]:
    """Returns the row with the Cancel button."""
    return [(staff_m().get("invites.btn_cancel"), BUTTON.build("cancel"))]


def _skip(step: str) -> tuple[str, str]:
    """Returns a Skip button for this step."""
    return (staff_m().get("invites.btn_skip"), BUTTON.build("skip", step))


# ---------------------------------------------------------------- the questions


async def _question(t: Turn, draft: Draft) -> tuple[str, Buttons]:
    """Returns the question now open in the flow, with its buttons."""
    m = staff_m()
    if draft.step == "cohort":
        known = await invites.cohort_ids(session=t.session)
        rows: Buttons = [[(code, BUTTON.build("coh", cid))] for cid, code in known]
        key = "invites.ask_cohort" if known else "invites.ask_cohort_first"
        return m.get(key), [*rows, _cancel_row()]
    if draft.step == "site":
        return m.get("invites.ask_site", cohort=draft.cohort), [[_skip("site")], _cancel_row()]
    if draft.step == "exp":
        days = [
            (m.get("invites.btn_days", days=d), BUTTON.build("exp", d))
            for d in invites.EXPIRY_CHOICES
        ]
        never = (m.get("invites.btn_no_expiry"), BUTTON.build("skip", "exp"))
        return m.get("invites.ask_expiry"), [days, [never], _cancel_row()]
    uses = [(str(n), BUTTON.build("uses", n)) for n in invites.USES_CHOICES]
    return m.get("invites.ask_uses"), [uses, _cancel_row()]


async def _ask(t: Turn, draft: Draft, *, edit: bool) -> None:
    """Stores where the flow is and asks its question (in place of a pressed message)."""
    await invites.save_draft(session=t.session, telegram_user_id=t.user_id or 0, draft=draft)
    text, buttons = await _question(t, draft)
    _show(t, text, buttons, edit=edit)


def _next(draft: Draft) -> Draft:
    """Moves the draft to the question after the current one."""
    order = invites.STEPS
    draft.step = order[min(order.index(draft.step) + 1, len(order) - 1)]
    return draft


async def _finish(t: Turn, draft: Draft, *, edit: bool, force: bool = False) -> None:
    """Creates the invite and shows its link, or asks to confirm a second one for the id."""
    m = staff_m()
    actor = roles.staff_actor(t.user_id or 0, t.settings)
    created = await invites.create_from_draft(
        session=t.session, actor=actor, draft=draft, force=force
    )
    if created.invite is None:
        draft.step = "confirm"
        await invites.save_draft(session=t.session, telegram_user_id=t.user_id or 0, draft=draft)
        text = m.get(
            "invites.conflict",
            site=draft.site_study_id,
            joined=created.conflict.participants,
            live=created.conflict.live_invites,
        )
        sure = [(m.get("invites.btn_force"), BUTTON.build("force"))]
        buttons: Buttons = [sure, _cancel_row()]
        _show(t, text, buttons, edit=edit)
        return
    await invites.end_draft(session=t.session, telegram_user_id=t.user_id or 0)
    invite = created.invite
    lines = [
        m.get("invites.created_forced" if created.conflict.any else "invites.created"),
        m.get("invites.summary_cohort", cohort=draft.cohort),
    ]
    if draft.site_study_id:
        lines.append(m.get("invites.summary_site", site=draft.site_study_id))
    lines.append(m.get("invites.summary_uses", uses=invite.max_uses))
    lines.append(m.get("invites.summary_expiry", expiry=_when(invite.expires_at, t.settings)))
    lines.append(m.get("invites.link", link=_link(t, invite.code)))
    _show(t, "\n".join(lines), None, edit=edit)


# ---------------------------------------------------------------- /invite, list, revoke


@turn
async def on_invite(t: Turn) -> None:
    """Starts the invite flow, or lists or revokes invites (coordinators and admins)."""
    if not await staff_command(t, WORK):
        return
    m = staff_m()
    if not in_private(t):
        t.reply.say(m.get("invites.private_only"))
        return
    args = t.context.args or []
    if not args:
        await _ask(t, Draft(), edit=False)
        return
    if args[0] == "list" and len(args) <= 2:
        await _list(t, include_all=len(args) == 2 and args[1] == "all")
        return
    if args[0] == "revoke" and len(args) == 2 and args[1].isascii() and args[1].isdigit():
        await _revoke(t, int(args[1]) if len(args[1]) < 10 else 0, edit=False)
        return
    t.reply.say(m.get("invites.usage"))


async def _list(t: Turn, *, include_all: bool) -> None:
    """Lists invites (live ones, or all), newest first, with Revoke buttons on live ones."""
    m = staff_m()
    found = await invites.list_invites(
        session=t.session, include_all=include_all, limit=LIST_LIMIT
    )
    if not found:
        t.reply.say(m.get("invites.list_none"))
        return
    lines = [m.get("invites.list_title_all" if include_all else "invites.list_title")]
    rows: Buttons = []
    for item in found:
        invite = item.invite
        lines.append(
            m.get(
                "invites.list_line",
                id=invite.id,
                cohort=html.escape(item.cohort),
                site=html.escape(invite.site_study_id or "-"),
                uses=invite.uses,
                max=invite.max_uses,
                expiry=_when(invite.expires_at, t.settings),
                status=m.get(f"invites.status_{item.status}"),
            )
        )
        if item.status == invites.InviteStatus.live:
            lines.append(html.escape(_link(t, invite.code)))
            if len(rows) < LIST_BUTTONS:
                label = m.get("invites.btn_revoke", id=invite.id)
                rows.append([(label, BUTTON.build("rev", invite.id))])
    t.reply.say("\n".join(lines), rows or None, html=True)


async def _revoke(t: Turn, invite_id: int, *, edit: bool) -> None:
    """Revokes one invite (audited) and says what happened."""
    m = staff_m()
    actor = roles.staff_actor(t.user_id or 0, t.settings)
    done = await invites.revoke(session=t.session, actor=actor, invite_id=invite_id)
    _show(t, m.get(f"invites.revoke_{done}", id=invite_id), None, edit=edit)


# ---------------------------------------------------------------- buttons


@turn
async def on_press(t: Turn) -> None:
    """Takes a press in the invite flow, or on a Revoke button."""
    parsed = await staff_press(t, BUTTON, WORK)
    if parsed is None or t.user_id is None:
        return
    m = staff_m()
    op, arg = parsed[0], parsed[1] if len(parsed) > 1 else ""
    if op in ("rev", "revy", "keep"):
        await _revoke_press(t, op, arg)
        return
    draft = await invites.draft_of(session=t.session, telegram_user_id=t.user_id)
    if op == "cancel":
        await invites.end_draft(session=t.session, telegram_user_id=t.user_id)
        t.reply.replace(m.get("invites.cancelled"))
        return
    wanted = {"coh": "cohort", "exp": "exp", "uses": "uses", "force": "confirm"}.get(op, arg)
    skippable = op != "skip" or arg in ("site", "exp")  # the cohort is never skipped
    if draft is None or draft.step != wanted or not skippable:
        t.reply.toast = m.get("common.expired_button")  # an older question's button
        t.reply.drop_buttons = True
        return
    if op == "coh":
        code = await invites.cohort_by_id(session=t.session, cohort_id=_number(arg))
        if code is None:
            t.reply.toast = m.get("common.expired_button")
            return
        draft.cohort = code
    elif op == "exp":
        draft.expires_at = invites.expiry_after(_number(arg), t.settings.default_timezone)
    elif op == "uses":
        draft.uses = _number(arg)
    if op == "force":
        await _finish(t, draft, edit=True, force=True)
    elif op == "uses" or (op == "skip" and arg == "uses"):
        await _finish(t, draft, edit=True)
    else:
        await _ask(t, _next(draft), edit=True)


def _number(raw: str) -> int:
    """Reads a small number a button carried (0 for anything else)."""
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else 0


async def _revoke_press(t: Turn, op: str, arg: str) -> None:
    """Asks to confirm a revocation, revokes, or leaves the invite as it is."""
    m = staff_m()
    invite_id = _number(arg)
    if op == "keep":
        t.reply.replace(m.get("invites.revoke_kept", id=invite_id))
    elif op == "revy":
        await _revoke(t, invite_id, edit=True)
    else:
        sure = [
            (m.get("invites.btn_revoke_sure"), BUTTON.build("revy", invite_id)),
            (m.get("invites.btn_keep"), BUTTON.build("keep", invite_id)),
        ]
        t.reply.say(m.get("invites.revoke_confirm", id=invite_id), [sure])


# ---------------------------------------------------------------- typed answers


async def on_invite_text(t: Turn) -> bool:
    """Takes a typed answer in the invite flow (a new cohort code, a site study id, a last
    day or a number of uses); False when this person is not in the flow."""
    user = t.user_id
    if user is None:
        return False
    draft = await invites.draft_of(session=t.session, telegram_user_id=user)
    if draft is None:
        return False
    if not in_private(t) or not await allowed(t, WORK):
        await invites.end_draft(session=t.session, telegram_user_id=user)  # role taken back
        return False
    m = staff_m()
    text = t.text.strip()
    problem: str | None = None
    if draft.step == "cohort":
        if invites.cohort_ok(text):
            draft.cohort = text
        else:
            problem = "invites.bad_cohort"
    elif draft.step == "site":
        if invites.site_study_id_ok(text):
            draft.site_study_id = text
        else:
            problem = "invites.bad_site"
    elif draft.step == "exp":
        day = invites.parse_day(text)
        zone = t.settings.default_timezone
        expires = invites.expiry_instant(day, zone) if day is not None else None
        if expires is None or expires <= now():
            problem = "invites.bad_expiry"
        else:
            draft.expires_at = expires
    elif draft.step == "uses":
        uses = _number(text)
        if invites.uses_ok(uses):
            draft.uses = uses
        else:
            problem = "invites.bad_uses"
    else:
        problem = "invites.press_a_button"
    if problem is not None:
        t.reply.say(m.get(problem, max=invites.MAX_USES))
        if draft.step != "confirm":
            await _ask(t, draft, edit=False)
        return True
    if draft.step == "uses":
        await _finish(t, draft, edit=False)
    else:
        await _ask(t, _next(draft), edit=False)
    return True


# Typed text the fallback hands here while a coordinator is in the /invite flow.
TEXT_ROUTES: dict[str, TextRoute] = {invites.TEXT_ROUTE: on_invite_text}

HANDLERS: list[BaseHandler[Update, BotContext, None]] = [
    CommandHandler("invite", on_invite),
    CallbackQueryHandler(on_press, pattern=BUTTON.pattern),
]
