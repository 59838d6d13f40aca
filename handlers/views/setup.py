"""The set-up questions and her profile in words, shared by onboarding and /settings.

Callback data: `<onb|set>:<op>[:<arg>...]`. The same question, with the flow's prefix, serves
joining and changing a setting later, each flow in its own words (`ASK`); each flow decides
what a stored answer leads to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from bot import participants as pt
from bot import scheduling
from bot.clock import now
from bot.config import Settings
from bot.content import Messages, consent_text
from bot.countries import OTHER_CODE, Country, all_countries, country, utc_offset
from bot.models import Participant, Schedule
from bot.outbox import Buttons
from bot.participants import Step
from handlers.common import msgs

ONB = "onb"
SET = "set"  # /settings (handlers.settings)

COUNTRIES_PER_PAGE = 8
# Callback data: a prefix, an operation and its arguments (values are checked per operation).
PRESS = re.compile(r"^(onb|set):([a-z]{2,6})(?::([A-Za-z0-9_.\-:]{1,40}))?$")

MEDICINE_LABELS = {
    "anastrozole": "onboarding.medicine.anastrozole",
    "letrozole": "onboarding.medicine.letrozole",
    "exemestane": "onboarding.medicine.exemestane",
    "other": "onboarding.medicine.other",
    "not_sure": "onboarding.medicine.not_sure",
}
STARTED_LABELS = {
    "this_month": "onboarding.started.this_month",
    "1_6_months": "onboarding.started.1_6_months",
    "6_12_months": "onboarding.started.6_12_months",
    "over_year": "onboarding.started.over_year",
    "not_sure": "onboarding.started.not_sure",
}
ITEM_LABELS = {
    "med": "onboarding.item.med",
    "st": "onboarding.item.st",
    "cty": "onboarding.item.cty",
    "tm": "onboarding.item.tm",
    "dy": "onboarding.item.dy",
}
ITEM_STEPS = {
    "med": Step.medicine,
    "st": Step.started,
    "cty": Step.country,
    "tm": Step.time,
    "dy": Step.days,
}
# Each flow asks in its own words: onboarding leads her through set-up step by step, while
# /settings asks about one change ("Which medicine do you take now?").
ASK = {
    ONB: {
        "medicine": "onboarding.ask_medicine",
        "started": "onboarding.ask_started",
        "country": "onboarding.ask_country",
        "zone": "onboarding.ask_zone",
        "zone_other": "onboarding.ask_zone_other",
        "time": "onboarding.ask_time",
        "time_typed": "onboarding.ask_time_typed",
        "days": "onboarding.ask_days",
        "pick_days": "onboarding.ask_pick_days",
        "no_reminder": "onboarding.no_reminder",
    },
    SET: {
        "medicine": "settings.ask_medicine",
        "started": "settings.ask_started",
        "country": "settings.ask_country",
        "zone": "settings.ask_zone",
        "zone_other": "settings.ask_zone_other",
        "time": "settings.ask_time",
        "time_typed": "settings.ask_time_typed",
        "days": "settings.ask_days",
        "pick_days": "settings.ask_pick_days",
        "no_reminder": "settings.no_reminder",
    },
}
DAY_SHORT = tuple(f"onboarding.day_short.{d}" for d in range(7))
DAY_LONG = tuple(f"onboarding.day_long.{d}" for d in range(7))


def ask(m: Messages, prefix: str, name: str, **values: object) -> str:
    """Returns one set-up sentence in the words of the flow with this prefix."""
    return m.get(ASK[prefix][name], **values)


def parse_press(data: str | None) -> tuple[str, str, list[str]] | None:
    """Splits callback data into (prefix, operation, arguments), or None when malformed."""
    match = PRESS.match(data or "")
    if not match or len((data or "").encode()) > 64:
        return None
    args = match.group(3).split(":") if match.group(3) else []
    return match.group(1), match.group(2), args


# ---------------------------------------------------------------- labels


def zone_label(m: Messages, found: Country, index: int) -> str:
    """Returns the button label of one zone of a country."""
    choice = found.zones[index]
    if found.is_other:
        offset = utc_offset(choice.zone, at=now())
        return m.get("onboarding.zone_other_button", offset=offset, label=choice.label)
    return choice.label


def default_zone_label(m: Messages, settings: Settings) -> str:
    """Returns the button label of the study's default zone."""
    return m.get(
        "onboarding.zone_other_button",
        offset=utc_offset(settings.default_timezone, at=now()),
        label=m.get("onboarding.zone_default_label"),
    )


def describe_zone(m: Messages, participant: Participant, settings: Settings) -> str:
    """Returns the label of her stored zone for the summary."""
    found = country(participant.country)
    zone = participant.timezone or ""
    if found is not None:
        for index, choice in enumerate(found.zones):
            if choice.zone == zone:
                return zone_label(m, found, index)
    if zone == settings.default_timezone:
        return default_zone_label(m, settings)
    return zone


def describe_country(m: Messages, code: str | None) -> str:
    """Returns a country's name for the summary."""
    found = country(code)
    if found is None:
        return ""
    return m.get("onboarding.other_country_name") if found.is_other else found.name


def describe_days(m: Messages, weekdays: str) -> str:
    """Returns 'Every day' or the chosen days, e.g. 'Mon, Wed, Fri'."""
    if weekdays == pt.EVERY_DAY:
        return m.get("onboarding.every_day")
    return ", ".join(m.get(DAY_SHORT[int(d)]) for d in weekdays)


def describe_when(m: Messages, due_at_utc: datetime, zone: str) -> str:
    """Returns 'today at 09:05', 'tomorrow at 08:00' or 'on Wednesday at 08:00' in her time."""
    local = pt.local_due(due_at_utc, zone)
    today = pt.local_due(now(), zone).date()
    hhmm = local.strftime("%H:%M")
    if local.date() == today:
        return m.get("onboarding.when_today", time=hhmm)
    if local.date() == today + timedelta(days=1):
        return m.get("onboarding.when_tomorrow", time=hhmm)
    return m.get("onboarding.when_later", day=m.get(DAY_LONG[local.weekday()]), time=hhmm)


def profile_fields(
    m: Messages, participant: Participant, settings: Settings, *, local_time: str, weekdays: str
) -> dict[str, str]:
    """Returns her set-up answers as labels, for the summary and the settings menu."""
    return {
        "medicine": m.get(MEDICINE_LABELS[participant.medicine or "not_sure"]),
        "started": m.get(STARTED_LABELS[participant.therapy_started or "not_sure"]),
        "country": describe_country(m, participant.country),
        "zone": describe_zone(m, participant, settings),
        "time": local_time,
        "days": describe_days(m, weekdays),
    }


# ---------------------------------------------------------------- questions


def consent_message(m: Messages, participant: Participant | None) -> tuple[str, Buttons]:
    """Returns the consent text with its version and the Agree / Not now buttons."""
    ct = consent_text(participant.locale if participant else "en")
    return m.get("onboarding.consent", text=ct.text, version=ct.version), consent_buttons(
        m, ct.version
    )


def consent_buttons(m: Messages, version: str) -> Buttons:
    """Returns Agree / Not now; Agree names the version she read."""
    return [
        [(m.get("onboarding.agree"), f"{ONB}:agree:{version}")],
        [(m.get("onboarding.not_now"), f"{ONB}:later")],
    ]


def country_page(m: Messages, prefix: str, page: int) -> Buttons:
    """Returns one page of country buttons, page arrows and "Another country"."""
    listed = all_countries()
    pages = max(1, -(-len(listed) // COUNTRIES_PER_PAGE))
    page = min(max(page, 0), pages - 1)
    shown = listed[page * COUNTRIES_PER_PAGE : (page + 1) * COUNTRIES_PER_PAGE]
    rows: Buttons = [
        [(c.name, f"{prefix}:cty:{c.code}") for c in shown[i : i + 2]]
        for i in range(0, len(shown), 2)
    ]
    nav: list[tuple[str, str]] = []
    if page > 0:
        nav.append((m.get("onboarding.fewer_countries"), f"{prefix}:cp:{page - 1}"))
    if page < pages - 1:
        nav.append((m.get("onboarding.more_countries"), f"{prefix}:cp:{page + 1}"))
    if nav:
        rows.append(nav)
    rows.append([(m.get("onboarding.other_country"), f"{prefix}:cty:{OTHER_CODE}")])
    return rows


def zone_question(
    m: Messages, prefix: str, found: Country, settings: Settings
) -> tuple[str, Buttons]:
    """Returns the time zone question for one country."""
    rows: Buttons = [
        [(zone_label(m, found, i), f"{prefix}:tz:{found.code}:{i}")]
        for i in range(len(found.zones))
    ]
    if found.is_other:
        rows.append([(default_zone_label(m, settings), f"{prefix}:tz:{found.code}:d")])
        return ask(m, prefix, "zone_other"), rows
    return ask(m, prefix, "zone"), rows


def days_toggle(m: Messages, prefix: str, mask: str) -> tuple[str, Buttons]:
    """Returns the weekday toggles (ticked when chosen) and Done."""
    buttons: list[tuple[str, str]] = []
    for day in range(7):
        name = m.get(DAY_SHORT[day])
        label = m.get("onboarding.day_on", day=name) if str(day) in mask else name
        buttons.append((label, f"{prefix}:dy:{pt.toggle_weekday(mask, day) or '-'}"))
    rows: Buttons = [buttons[:4], buttons[4:]]
    rows.append([(m.get("onboarding.days_done"), f"{prefix}:dd:{mask or '-'}")])
    return ask(m, prefix, "pick_days"), rows


def question(
    m: Messages,
    step: Step,
    *,
    prefix: str,
    participant: Participant,
    settings: Settings,
) -> tuple[str, Buttons | None]:
    """Returns one set-up question with its buttons (the summary is `summary_message`)."""
    if step == Step.consent:
        return consent_message(m, participant)
    if step == Step.medicine:
        return ask(m, prefix, "medicine"), [
            [(m.get(key), f"{prefix}:med:{value}")] for value, key in MEDICINE_LABELS.items()
        ]
    if step == Step.started:
        return ask(m, prefix, "started"), [
            [(m.get(key), f"{prefix}:st:{value}")] for value, key in STARTED_LABELS.items()
        ]
    if step == Step.country:
        return ask(m, prefix, "country"), country_page(m, prefix, 0)
    if step == Step.zone:
        found = country(participant.country)
        if found is None:
            return question(
                m, Step.country, prefix=prefix, participant=participant, settings=settings
            )
        return zone_question(m, prefix, found, settings)
    if step == Step.time:
        # The study's default time comes first, as .env.example promises.
        presets = [
            (hhmm, f"{prefix}:tm:{hhmm.replace(':', '')}")
            for hhmm in pt.time_presets(settings.default_checkin_time)
        ]
        rows: Buttons = [presets[i : i + 3] for i in range(0, len(presets), 3)]
        rows.append([(m.get("onboarding.another_time"), f"{prefix}:tmx")])
        return ask(m, prefix, "time"), rows
    if step == Step.days:
        return ask(m, prefix, "days"), [
            [(m.get("onboarding.every_day"), f"{prefix}:dd:{pt.EVERY_DAY}")],
            [(m.get("onboarding.choose_days"), f"{prefix}:dy:-")],
        ]
    raise ValueError(f"no question for step {step}")


def item_menu(m: Messages, prefix: str) -> Buttons:
    """Returns one button per set-up item she can change."""
    return [[(m.get(key), f"{prefix}:edit:{item}")] for item, key in ITEM_LABELS.items()]


def summary_message(
    m: Messages, participant: Participant, draft: Schedule, settings: Settings
) -> tuple[str, Buttons]:
    """Returns the summary of her answers with Confirm / Change something."""
    fields = profile_fields(
        m, participant, settings, local_time=draft.local_time, weekdays=draft.weekdays
    )
    return m.get("onboarding.summary", **fields), [
        [(m.get("onboarding.confirm"), f"{ONB}:ok")],
        [(m.get("onboarding.change"), f"{ONB}:chg")],
    ]


def no_reminder_note(
    m: Messages, prefix: str, participant: Participant, settings: Settings, local_time: str
) -> str | None:
    """Returns a short note when a check-in at this time gets no reminder, else None."""
    tz = participant.timezone or settings.default_timezone
    quiet = settings.quiet_window
    if scheduling.reminder_fits(
        local_time=local_time,
        tz=tz,
        quiet=quiet,
        delay=timedelta(minutes=settings.reminder_delay_minutes),
        window=timedelta(hours=settings.checkin_window_hours),
    ):
        return None
    start, end = (t.strftime("%H:%M") for t in quiet)
    return ask(m, prefix, "no_reminder", quiet_start=start, quiet_end=end)


async def next_checkin_words(session: AsyncSession, participant: Participant) -> str:
    """Describes her next scheduled check-in ('today at 19:00'), or '' when none is planned."""
    upcoming = await pt.next_checkin(session=session, participant=participant)
    if upcoming is None or participant.timezone is None:
        return ""
    return describe_when(msgs(participant), upcoming.due_at, participant.timezone)


# ---------------------------------------------------------------- answers shared with /settings


@dataclass
class Answer:
    """A valid set-up answer from a button, not yet stored (what to store depends on the flow)."""

    label: str = ""
    stored_country: str | None = None  # a country (its zone is chosen next, or automatically)
    stored_zone: tuple[str, str] | None = None  # (country code, IANA zone)
    stored_time: str | None = None
    stored_days: str | None = None
    typed_prompt: bool = False  # "Another time": she will type it
    replace: tuple[str, Buttons | None] | None = None  # a page turn or a day toggle
    toast: str | None = None


async def apply_answer(
    session: AsyncSession,
    participant: Participant,
    settings: Settings,
    prefix: str,
    op: str,
    args: list[str],
) -> Answer | None:
    """Validates one answer button; stores medicine/start directly; None when unreadable."""
    m = msgs(participant)
    arg = args[0] if len(args) == 1 else None
    if op == "med" and arg in MEDICINE_LABELS:
        pt.set_medicine(participant=participant, value=arg)
        session.add(participant)
        return Answer(label=m.get(MEDICINE_LABELS[arg]))
    if op == "st" and arg in STARTED_LABELS:
        pt.set_started(participant=participant, value=arg)
        session.add(participant)
        return Answer(label=m.get(STARTED_LABELS[arg]))
    if op == "cp" and arg is not None and arg.isdigit() and len(arg) <= 2:
        return Answer(replace=(ask(m, prefix, "country"), country_page(m, prefix, int(arg))))
    if op == "cty" and arg is not None and country(arg) is not None:
        return Answer(label=describe_country(m, arg), stored_country=arg)
    if op == "tz" and len(args) == 2:
        found = country(args[0])
        if found is None:
            return None
        if args[1] == "d" and found.is_other:
            zone, label = settings.default_timezone, default_zone_label(m, settings)
        elif args[1].isdigit() and int(args[1]) < len(found.zones):
            zone, label = found.zones[int(args[1])].zone, zone_label(m, found, int(args[1]))
        else:
            return None
        return Answer(label=label, stored_zone=(found.code, zone))
    if op == "tm" and arg is not None and len(arg) == 4:
        hhmm = pt.parse_local_time(arg)
        return None if hhmm is None else Answer(label=hhmm, stored_time=hhmm)
    if op == "tmx" and not args:
        return Answer(typed_prompt=True)
    if op in ("dy", "dd") and arg is not None:
        mask = "" if arg == "-" else arg
        if not pt.is_weekday_mask(mask):
            return None
        if op == "dy":
            return Answer(replace=days_toggle(m, prefix, mask))
        if not mask:
            return Answer(toast=m.get("onboarding.pick_a_day"))
        return Answer(label=describe_days(m, mask), stored_days=mask)
    return None
