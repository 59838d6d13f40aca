"""/stats and `adherence-bot stats`: the study at a glance on a seeded database, small cells
shown as "<5", the chart's numbers, and the unknown-command reply for everyone else."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bot import charts, stats
from bot.cli import main
from bot.content import messages
from bot.db import Database
from bot.models import (
    Alert,
    AlertStatus,
    Answer,
    Broadcast,
    CheckIn,
    Cohort,
    Lifecycle,
    OutboxState,
    OutgoingMessage,
    Participant,
)
from tests.conftest import PATIENT, START, Harness, make_harness

NURSE = 5_100_000_001
RESEARCHER = 5_100_000_003
PAIN_A = [2, 4, 6, 8, 3]  # site-a participants 1-5; participant 6 never answers
LAST_WEEK = [START - timedelta(days=d) for d in (6, 5, 4)]  # Tue-Thu, 10:00 UTC
WEEK_BEFORE = START - timedelta(days=13)  # Tue 30 Dec


async def _checkin(
    db: Database, pid: int, due: datetime, *, pain: int | None, took: str | None
) -> None:
    """Stores one sent scheduled check-in, answered when a pain or tablet answer is given."""
    async with db.session() as session:
        answered = pain is not None or took is not None
        row = CheckIn(
            participant_id=pid,
            questionnaire_id="daily_checkin",
            questionnaire_version="1",
            due_at=due,
            window_closes_at=due + timedelta(hours=6),
            sent_at=due,
            first_answer_at=due + timedelta(minutes=5) if answered else None,
            status="completed" if answered else "missed",
        )
        session.add(row)
        await session.flush()
        assert row.id is not None
        if pain is not None:
            session.add(Answer(checkin_id=row.id, item_code="worst_pain", value=str(pain)))
        if took is not None:
            session.add(Answer(checkin_id=row.id, item_code="took_med", value=took))


async def _person(db: Database, n: int, cohort_id: int, **fields: object) -> int:
    async with db.session() as session:
        p = Participant(
            telegram_user_id=PATIENT + n,
            chat_id=PATIENT + n,
            pseudonym=f"p{n}",
            cohort_id=cohort_id,
            **({"status": Lifecycle.active} | fields),
        )
        session.add(p)
        await session.flush()
        assert p.id is not None
        return p.id


async def seed(db: Database) -> None:
    """Site a: six active (one unreachable) and one deleted; site b: three, one each of active,
    paused, withdrawn. Check-ins last week and the week before; open alerts."""
    async with db.session() as session:
        a, b = Cohort(code="site-a"), Cohort(code="site-b")
        session.add_all([a, b])
        await session.flush()
        assert a.id is not None and b.id is not None
        a_id, b_id = a.id, b.id
    site_a = [await _person(db, n, a_id) for n in range(1, 7)]
    async with db.session() as session:
        sixth = await session.get(Participant, site_a[5])
        assert sixth is not None
        sixth.reachable = False
        session.add(sixth)
    await _person(db, 7, a_id, status=Lifecycle.deleted)
    site_b = [
        await _person(db, 8, b_id),
        await _person(db, 9, b_id, status=Lifecycle.paused),
        await _person(db, 10, b_id, status=Lifecycle.withdrawn),
    ]
    for due in LAST_WEEK:
        for pid, pain in zip(site_a, [*PAIN_A, None], strict=True):
            took = None if pain is None else ("missed" if pid == site_a[4] else "yes")
            await _checkin(db, pid, due, pain=pain, took=took)
        for pid in site_b:
            await _checkin(db, pid, due, pain=9, took="yes")
    for pid in site_a:
        await _checkin(db, pid, WEEK_BEFORE, pain=5, took="yes")
    async with db.session() as session:
        for pid in site_a[:5]:
            session.add(Alert(participant_id=pid, kind="severe_pain", created_at=LAST_WEEK[2]))
        session.add(Alert(participant_id=site_b[0], kind="red_flag", created_at=LAST_WEEK[1]))
        session.add(
            Alert(
                participant_id=site_b[0],
                kind="stop_intent",
                status=AlertStatus.closed,
                created_at=LAST_WEEK[0],
            )
        )
        # One broadcast delivered to two people last week, one from two months ago.
        for sent in (LAST_WEEK[0], START - timedelta(days=60)):
            cast = Broadcast(created_by="cli", text="Hello", text_hash="x")
            session.add(cast)
            await session.flush()
            for pid in site_a[:2]:
                session.add(
                    OutgoingMessage(
                        kind="broadcast",
                        participant_id=pid,
                        chat_id=1,
                        broadcast_id=cast.id,
                        state=OutboxState.sent,
                        sent_at=sent,
                    )
                )


@pytest.fixture
async def team(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await make_harness(
        f"sqlite:///{tmp_path / 'stats.db'}",
        coordinator_ids=[NURSE],
        researcher_ids=[RESEARCHER],
    )
    await seed(h.db)
    yield h
    await h.app.shutdown()
    await h.db.dispose()


async def test_the_overview_numbers_on_a_seeded_study(team: Harness) -> None:
    async with team.db.session() as session:
        ov = await stats.overview(session=session, settings=team.settings)
    assert ov is not None
    assert (ov.enrolled, ov.active, ov.paused, ov.withdrawn, ov.unreachable) == (9, 7, 1, 1, 1)
    week, month = ov.windows
    # Last 7 days: site a 15 of 18 answered, site b 9 of 9.
    assert (week.answered.part, week.answered.whole, week.answered.people) == (24, 27, 9)
    assert (week.tablet.part, week.tablet.whole) == (21, 24)
    # 2,3,4,6,8 three times each and 9 nine times: the 12th and 13th of 24 are 6 and 8.
    assert week.pain.value == 7
    assert (month.answered.part, month.answered.whole) == (30, 33)
    assert {k: (c.count, c.people) for k, c in ov.open_alerts.items()} == {
        "red_flag": (1, 1),
        "severe_pain": (5, 5),
    }
    assert [c.count for c in ov.weekly_alerts["stop_intent"]] == [0, 0, 1, 0]
    assert ov.broadcasts == 1


async def test_stats_in_the_chat_shows_numbers_small_cells_and_the_chart(team: Harness) -> None:
    h = team
    await h.command(NURSE, "stats")
    text, photo = h.fake.chat(NURSE)[-2:]
    lines = text.text.splitlines()
    assert "Enrolled: 9" in lines
    assert "Active: 7 · Paused: <5 · Withdrawn: <5" in lines
    assert "Unreachable (blocked the bot): <5" in lines
    assert "Check-ins answered: 89% (24 of 27)" in lines  # last 7 days
    assert "Said they took the tablet: 88% (21 of 24)" in lines
    assert "Median worst pain (0-10): 7" in lines
    assert "  severe_pain: 5" in lines and "  red_flag: <5" in lines
    assert "Broadcasts sent in the last 30 days (whole study): 1" in lines
    assert "Cohorts: site-a, site-b. Send /stats <cohort> for one." in lines
    assert photo.photo and photo.file is not None and photo.file.startswith(b"\x89PNG")
    # One cohort: every number rests on three people.
    await h.command(NURSE, "stats", "site-b")
    text = h.fake.chat(NURSE)[-2].text
    assert text.startswith("Study overview: cohort site-b")
    assert "Enrolled: <5" in text and "Check-ins answered: <5" in text
    assert "Median worst pain (0-10): <5" in text
    await h.command(NURSE, "stats", "site-z")
    assert h.last(NURSE).text == "There is no cohort called site-z. Cohorts: site-a, site-b"
    # Researchers may read it too.
    await h.command(RESEARCHER, "stats")
    assert h.last(RESEARCHER).photo


async def test_the_chart_plots_weekly_rate_and_median_pain_and_leaves_small_cells_out(
    team: Harness,
) -> None:
    async with team.db.session() as session:
        ov = await stats.overview(session=session, settings=team.settings)
    assert ov is not None and ov.chart is not None
    chart = ov.chart
    assert len(chart.weeks) == 12 and chart.weeks[-1] == START.date()  # Monday 12 Jan
    fig = charts.stats_figure(chart, messages("en"))
    lines = {line.get_gid(): list(line.get_ydata()) for ax in fig.axes for line in ax.lines}
    rate_a = lines["rate:site-a"]
    pain_a = lines["pain:site-a"]
    assert rate_a[-3] == 100.0 and rate_a[-2] == pytest.approx(100 * 15 / 18)
    assert pain_a[-3] == 5 and pain_a[-2] == 4  # median of 2, 3, 4, 6, 8
    assert all(math.isnan(v) for v in rate_a[:-3] + rate_a[-1:])
    # Site b has three people: no point of it is drawn.
    assert all(math.isnan(v) for v in lines["rate:site-b"] + lines["pain:site-b"])
    png = charts.render_stats_png(chart, messages("en"))
    assert png.startswith(b"\x89PNG") and len(png) > 20_000


async def test_patients_asking_for_stats_get_the_unknown_command_reply(team: Harness) -> None:
    h = team
    await h.command(PATIENT + 1, "no_such_command")
    unknown = h.last(PATIENT + 1).text
    await h.command(PATIENT + 1, "stats")
    await h.command(PATIENT + 1, "stats", "site-a")
    assert h.texts(PATIENT + 1)[-2:] == [unknown, unknown]
    assert not any(m.photo for m in h.fake.chat(PATIENT + 1))


def test_cli_stats_prints_the_overview_and_saves_the_chart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    for name, value in {
        "DATABASE_URL": url,
        "EMERGENCY_NUMBER": "112",
        "PSEUDONYM_KEY": "a-test-pseudonym-key",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)

    async def prepare() -> None:
        db = Database(url)
        await db.create_all()
        await seed(db)
        await db.dispose()

    asyncio.run(prepare())
    png = tmp_path / "stats.png"
    assert main(["stats", "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "Enrolled: 9" in out and "Check-ins answered: 89% (24 of 27)" in out
    assert png.read_bytes().startswith(b"\x89PNG")
    assert main(["stats", "--cohort", "site-a"]) == 0
    out = capsys.readouterr().out
    assert "cohort site-a" in out and "Enrolled: 6" in out and "Unreachable" in out
    assert main(["stats", "--cohort", "nope"]) == 1
    assert "no cohort called nope" in capsys.readouterr().err


def test_small_cells_and_shares_read_as_the_issue_asks() -> None:
    assert [stats.count_cell(n) for n in (0, 1, 4, 5, 12)] == ["0", "<5", "<5", "5", "12"]
    m = messages("en")
    assert stats._share(stats.Share(1, 3, 3), m) == "<5"
    assert stats._share(stats.Share(0, 0, 0), m) == "-"
    assert stats._share(stats.Share(7, 8, 6), m) == "88% (7 of 8)"


async def test_invites_and_the_overview_on_postgresql(pg_url: str) -> None:
    h = await make_harness(pg_url, coordinator_ids=[NURSE], open_enrollment=False)
    try:
        await seed(h.db)
        await h.command(NURSE, "invite")
        await h.press(NURSE, "site-b")
        await h.send(NURSE, "B-7")
        await h.press(NURSE, "No end date")
        await h.press(NURSE, "1")
        assert "Last valid day: no end date" in h.last(NURSE).text
        await h.command(NURSE, "invite")
        await h.press(NURSE, "site-b")
        await h.send(NURSE, "b-7")
        await h.press(NURSE, "7 days")
        await h.press(NURSE, "1")
        assert "1 live invite(s)" in h.last(NURSE).text
        await h.press(NURSE, "Create anyway")
        assert "forced" in h.last(NURSE).text
        await h.command(NURSE, "stats")
        text, photo = h.fake.chat(NURSE)[-2:]
        assert "Check-ins answered: 89% (24 of 27)" in text.text and photo.photo
    finally:
        await h.app.shutdown()
        await h.db.dispose()


def test_one_hidden_status_hides_the_next_smallest_so_subtraction_finds_nothing() -> None:
    """Enrolled 12 = 9 active + 3 paused + 0 withdrawn: "<5" paused alone would be 12 - 9."""
    assert stats.status_cells(active=9, paused=3, withdrawn=0) == {
        "active": "5+",
        "paused": "<5",
        "withdrawn": "0",
    }
    # Two hidden cells already hide each other; nothing hidden, nothing to do.
    assert stats.status_cells(active=7, paused=1, withdrawn=2) == {
        "active": "7",
        "paused": "<5",
        "withdrawn": "<5",
    }
    assert stats.status_cells(active=8, paused=6, withdrawn=0) == {
        "active": "8",
        "paused": "6",
        "withdrawn": "0",
    }
