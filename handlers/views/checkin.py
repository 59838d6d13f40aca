"""How a check-in question and its closing summary look; shared by the flows that show one."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from bot import checkins
from bot.checkins import CheckinState
from bot.content import Item, Messages
from bot.doctor_first import ADHERENCE_ITEM
from bot.models import Participant
from bot.outbox import Buttons


def answer_label(item: Item, value: str, m: Messages) -> str:
    """Returns an answer in plain words (option labels, 'n out of 10', note added or not)."""
    if item.type == "scale":
        return m.get("checkin.scale_answer", value=value, max=item.scale_max)
    if item.type == "text":
        return m.get("checkin.note_added") if value else m.get("checkin.note_skipped")
    labels = []
    for v in checkins.split_values(value):
        option = item.option(v)
        labels.append(option.text(m.locale) if option else v)
    return ", ".join(labels)


def question_text(
    item: Item, m: Messages, *, answer: str | None = None, wording: str | None = None
) -> str:
    """Returns the question wording, its scale anchors and, once answered, her answer."""
    parts = [wording or item.text(m.locale)]
    anchors = item.anchors.get(m.locale) or item.anchors.get("en")
    if item.type == "scale" and anchors:
        parts.append(anchors)
    text = "\n".join(parts)
    if answer is not None:
        text += "\n\n" + m.get("checkin.your_answer", answer=answer_label(item, answer, m))
    return text


def item_buttons(checkin_id: int, item: Item, m: Messages, chosen: tuple[str, ...]) -> Buttons:
    """Returns the item's buttons, marking what she chose with a tick."""

    def label(text: str, value: str) -> str:
        """Returns the label, ticked when she chose this value."""
        return m.get("checkin.chosen", label=text) if value in chosen else text

    def data(value: str) -> str:
        """Returns the callback data for one value of this item."""
        return checkins.callback_data(checkin_id, item.code, value)

    if item.type == "scale":
        values = item.values()
        middle = (len(values) + 1) // 2  # 0-5 on the first row, 6-10 on the second
        return [
            [(label(v, v), data(v)) for v in row] for row in (values[:middle], values[middle:])
        ]
    if item.type == "multi":
        rows: Buttons = []
        for option in item.options:
            value = option.value
            if value not in item.exclusive:
                value = (checkins.UNTICK if value in chosen else checkins.TICK) + value
            rows.append([(label(option.text(m.locale), option.value), data(value))])
        rows.append([(m.get("checkin.button_done"), data(checkins.DONE))])
        return rows
    if item.type == "text":
        skipped = chosen == (checkins.SKIPPED_VALUE,)
        text = m.get("checkin.button_skip")
        return [[(m.get("checkin.chosen", label=text) if skipped else text, data(checkins.SKIP))]]
    return [[(label(o.text(m.locale), o.value), data(o.value))] for o in item.options]


def question_view(state: CheckinState, item: Item, m: Messages) -> tuple[str, Buttons]:
    """Returns the question as she should see it now: wording, her answer, ticked buttons."""
    answer = state.rows.get(item.code)
    if item.type == "multi":
        chosen = state.selection(item)
    elif answer is not None:
        chosen = (answer.value,) if item.type == "text" else checkins.split_values(answer.value)
    else:
        chosen = ()
    has_draft = item.code + checkins.DRAFT_SUFFIX in state.rows
    shown = answer.value if answer is not None and not has_draft else None
    # After a switch her doctor advised, the tablet question is about her current medicine.
    wording = None
    if item.code == ADHERENCE_ITEM and state.mode == "current":
        wording = m.get("doctor_first.took_med_current")
    text = question_text(item, m, answer=shown, wording=wording)
    return text, item_buttons(state.checkin.id or 0, item, m, chosen)


def summary_text(state: CheckinState, m: Messages, *, advised: bool = False) -> str:
    """Returns the closing summary: her answers in plain words.

    `advised`: the check-in already brought her red-flag advice, so the summary does not
    repeat "tell your care team" (one check-in, one red-flag reply).
    """
    out = [m.get("checkin.summary_title")]
    something_new = False
    for line in checkins.summary(state):
        label = line.item.summary_label.get(m.locale) or line.item.summary_label.get("en")
        answer = answer_label(line.item, line.value, m)
        out.append(m.get("checkin.summary_line", label=label or line.item.code, answer=answer))
        if line.item.type == "multi" and any(v not in line.item.exclusive for v in line.values):
            something_new = True
    out.append("")
    if something_new and not advised:
        out.append(m.get("checkin.summary_new"))
    out.append(m.get("checkin.summary_footer"))
    return "\n".join(out)


async def open_question(
    session: AsyncSession, participant: Participant | None
) -> tuple[CheckinState, Item] | None:
    """Returns her open check-in's state and the question it waits for, if there is one."""
    if participant is None or participant.has_left:
        return None
    checkin = await checkins.open_checkin_for(session=session, participant=participant)
    if checkin is None:
        return None
    state = await checkins.load_state(session=session, checkin=checkin)
    item = state.current_item()
    return (state, item) if item is not None else None
