"""`adherence-bot run` as a user starts it: a real process against a Bot API over HTTP."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine
from sqlmodel import Session, select

from bot import clock
from bot.clock import OFFSET_VARIABLE, offset_from_environment
from bot.config import Settings
from bot.content import consent_text, questionnaire
from bot.devtools.bot_api_server import FakeBotApiServer, command_update, running_server
from bot.devtools.fake_telegram import FakeMessage, FakeTelegram
from bot.models import (
    Answer,
    CheckIn,
    CheckInOrigin,
    CheckInStatus,
    Cohort,
    Lifecycle,
    Participant,
    Schedule,
)
from bot.safety_scan import lock_screen_words

TOKEN = "123456:AAE-e2e_token"
PATIENT = 5_000_000_777
DEADLINE = 20.0  # seconds for the whole start-up / reply / shutdown dance
_T = TypeVar("_T")


def _wait_for(condition: Callable[[], bool], what: str, proc: subprocess.Popen[str]) -> None:
    # A subprocess runs in real time, so this test has to poll; every wait is bounded.
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        if condition():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"bot exited ({proc.returncode}) before {what}:\n{out}\n{err}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def server() -> Iterator[FakeBotApiServer]:
    """A fake Bot API that knows the bot's token."""
    with running_server(FakeTelegram(valid_token=TOKEN, username="e2e_test_bot")) as s:
        yield s


@pytest.fixture
def bot_process(server: FakeBotApiServer, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Starts `adherence-bot run` from an unrelated folder, pointed at the fake server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "WEBHOOK_"))}
    env.update(
        {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE_URL": server.root_url,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'e2e.db'}",
            "EMERGENCY_NUMBER": "112",
            "PSEUDONYM_KEY": "e2e-pseudonym-key",
            "OPEN_ENROLLMENT": "true",
            "HEALTH_PORT": "0",  # each test bot would fight over the default port
        }
    )
    script = Path(sys.executable).parent / "adherence-bot"
    proc = subprocess.Popen(
        [str(script), "run"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"bot did not stop on SIGINT:\n{out}\n{err}")
    return out, err


def test_run_connects_publishes_commands_polls_and_stops_cleanly(
    server: FakeBotApiServer, bot_process: subprocess.Popen[str]
) -> None:
    fake = server.fake
    _wait_for(lambda: bool(fake.calls_to("getUpdates")), "the first getUpdates", bot_process)
    methods = [m for m, _ in fake.calls]
    assert methods.index("getMe") < methods.index("getUpdates")
    assert "setMyCommands" in methods
    polled = fake.calls_to("getUpdates")[0]
    assert "my_chat_member" in polled["allowed_updates"]
    out, err = _stop(bot_process)
    assert bot_process.returncode == 0, err
    assert "running (long polling)" in out and "@e2e_test_bot" in out
    assert "Bot stopped." in out
    assert "Traceback" not in err
    assert TOKEN not in out + err


def test_run_answers_a_start_delivered_by_get_updates(
    server: FakeBotApiServer, bot_process: subprocess.Popen[str]
) -> None:
    fake = server.fake
    _wait_for(lambda: bool(fake.calls_to("getUpdates")), "the first getUpdates", bot_process)
    server.updates.put(command_update(PATIENT, "/start"))
    _wait_for(lambda: bool(fake.chat(PATIENT)), "a reply to /start", bot_process)
    reply = fake.texts(PATIENT)[0]
    assert reply.strip()
    assert "something went wrong" not in reply
    _out, err = _stop(bot_process)
    assert bot_process.returncode == 0, err
    assert "Traceback" not in err and "handler failed" not in err, err


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_webhook_on_the_url_path_registers_the_secret_and_refuses_requests_without_it(
    server: FakeBotApiServer, tmp_path: Path
) -> None:
    import json
    import urllib.error
    import urllib.request

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "WEBHOOK_"))}
    env.update(
        {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE_URL": server.root_url + "/bot",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'hook.db'}",
            "EMERGENCY_NUMBER": "112",
            "PSEUDONYM_KEY": "e2e-pseudonym-key",
            "OPEN_ENROLLMENT": "true",
            "HEALTH_PORT": "0",  # each test bot would fight over the default port
            "WEBHOOK_URL": "https://bot.example.org/telegram",
            "WEBHOOK_SECRET": "s3cret-Token_1",
            "WEBHOOK_LISTEN": "127.0.0.1",
            "WEBHOOK_PORT": str(port),
        }
    )
    script = Path(sys.executable).parent / "adherence-bot"
    proc = subprocess.Popen(
        [str(script), "run"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        fake = server.fake
        _wait_for(lambda: bool(fake.calls_to("setWebhook")), "setWebhook", proc)
        hook = fake.calls_to("setWebhook")[0]
        assert hook["url"] == "https://bot.example.org/telegram"
        assert hook["secret_token"] == "s3cret-Token_1"
        assert "my_chat_member" in hook["allowed_updates"]

        body = json.dumps({"update_id": 1, **command_update(PATIENT, "/start")}).encode()

        def post(secret: str | None, path: str = "/telegram") -> int:
            headers = {"Content-Type": "application/json"}
            if secret:
                headers["X-Telegram-Bot-Api-Secret-Token"] = secret
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", body, headers)
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    return int(response.status)
            except urllib.error.HTTPError as exc:
                return int(exc.code)
            except OSError:
                return 0  # not listening yet

        _wait_for(lambda: post("wrong-secret") == 403, "the webhook to refuse a bad secret", proc)
        assert post(None) == 403
        # It listens on the path of WEBHOOK_URL, not on / (where nothing would ever arrive).
        assert post("s3cret-Token_1", path="/") == 404
        assert not fake.chat(PATIENT)
        assert post("s3cret-Token_1") == 200
        _wait_for(lambda: bool(fake.chat(PATIENT)), "a reply to /start via the webhook", proc)
        _out, err = _stop(proc)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


# ---------------------------------------------------------------- a new patient, end to end
#
# The "Done when": with TELEGRAM_BOT_TOKEN and TELEGRAM_API_BASE_URL pointing at a
# Bot API-compatible server, a new patient can /start, consent, set a check-in a few minutes
# ahead, receive it on time, answer every item, and the answers are in the database.
# Two patients walk it at once (in threads, so the suite waits for one check-in, not two):
# one joins by open enrollment against the server root, the other with an invite made by
# `adherence-bot invite create` against the ".../bot" prefix, with DEBUG logs on.
#
# Each bot process runs on the real clock, shifted at start-up (ADHERENCE_CLOCK_OFFSET_SECONDS,
# see bot/clock.py) so that one of its minute boundaries falls READY + LEAD seconds after it
# starts: she types that minute as soon as she reaches the time question, instead of the test
# waiting up to a minute for the wall clock's next one. Due times, the dispatcher's ticks and
# what the database stores are all the bot's own clock; the test compares in that frame too.

UK = ZoneInfo("Europe/London")
MIN_AHEAD = 25.0  # seconds between typing the time and the check-in being due, at least ...
MAX_AHEAD = 85.0  # ... and at most (pick_checkin_time's defaults)
READY = 12.0  # seconds from starting the bot to typing the time: ~9 s, 15+ on a busy machine
LEAD = 16.0  # seconds from typing the time to its being due, when she is READY on time ...
MIN_LEAD = 10.0  # ... at least (three replies, then dispatcher ticks before it is due); later
# than READY + LEAD - MIN_LEAD she takes the minute after, which costs the test a minute
ON_TIME = 30.0  # the check-in must arrive within this many seconds of its due time
STEP_TIMEOUT = 15.0  # one reply to one tap or message
JOURNEY_TIMEOUT = 240.0  # ~30 s normally; more when she types late or must wait out midnight
# The shared lock-screen words, plus what would tell a passer-by she is on a medicine.
LOCK_SCREEN_WORDS = (*lock_screen_words("en"), "tablet", "medicine", "pain")


def pick_checkin_time(
    at: datetime, *, min_ahead: float = MIN_AHEAD, max_ahead: float = MAX_AHEAD
) -> tuple[str, datetime] | None:
    """Returns ("HH:MM" in UK time, its UTC instant) due 25-85 s after `at`, or None.

    None when that minute falls on the next local day or around a clock change; the caller
    waits and asks again. `min_ahead` and `max_ahead` change the 25-85 s window.
    """
    local = at.astimezone(UK)
    earliest = local + timedelta(seconds=min_ahead)
    wall = earliest.replace(tzinfo=None, second=0, microsecond=0)
    if wall < earliest.replace(tzinfo=None):
        wall += timedelta(minutes=1)
    due = wall.replace(tzinfo=UK)
    # A wall time that is skipped or repeated by a clock change has no single instant.
    unambiguous = due.utcoffset() == wall.replace(tzinfo=UK, fold=1).utcoffset()
    round_trips = due.astimezone(UTC).astimezone(UK).replace(tzinfo=None) == wall
    ahead = (due.astimezone(UTC) - at).total_seconds()
    if wall.date() != local.date() or not (unambiguous and round_trips):
        return None
    if not min_ahead <= ahead <= max_ahead:
        return None  # the wall clock jumped (an hour back in autumn)
    return wall.strftime("%H:%M"), due.astimezone(UTC)


def test_pick_checkin_time_is_25_to_85_seconds_ahead_on_the_same_local_day() -> None:
    at = datetime(2026, 6, 3, 11, 58, 40, tzinfo=UTC)  # 12:58:40 in London (BST)
    assert pick_checkin_time(at) == ("13:00", datetime(2026, 6, 3, 12, 0, tzinfo=UTC))
    at = datetime(2026, 6, 3, 11, 58, 30, tzinfo=UTC)
    assert pick_checkin_time(at) == ("12:59", datetime(2026, 6, 3, 11, 59, tzinfo=UTC))
    assert pick_checkin_time(datetime(2026, 1, 12, 23, 59, 10, tzinfo=UTC)) is None  # midnight
    # Clock changes: 01:00 does not exist on 29 March; 01:31 happens twice on 25 October;
    # 02:00 on 25 October comes an hour after 01:59:30 BST.
    assert pick_checkin_time(datetime(2026, 3, 29, 0, 59, 30, tzinfo=UTC)) is None
    assert pick_checkin_time(datetime(2026, 10, 25, 0, 30, tzinfo=UTC)) is None
    assert pick_checkin_time(datetime(2026, 10, 25, 0, 59, 30, tzinfo=UTC)) is None
    assert pick_checkin_time(datetime(2026, 10, 25, 2, 0, tzinfo=UTC)) == (
        "02:01",
        datetime(2026, 10, 25, 2, 1, tzinfo=UTC),
    )


def test_clock_offset_variable_shifts_by_seconds_and_refuses_anything_else() -> None:
    assert offset_from_environment({}) == timedelta(0)
    assert offset_from_environment({OFFSET_VARIABLE: ""}) == timedelta(0)
    assert offset_from_environment({OFFSET_VARIABLE: "37.25"}) == timedelta(seconds=37.25)
    assert offset_from_environment({OFFSET_VARIABLE: " -90 "}) == timedelta(seconds=-90)
    for bad in ("12s", "1:30", "nan", "inf"):
        with pytest.raises(ValueError, match=OFFSET_VARIABLE):
            offset_from_environment({OFFSET_VARIABLE: bad})


def minute_boundary_after(seconds: float) -> timedelta:
    """Returns the clock offset that puts a whole minute `seconds` from now (0-60 s ahead)."""
    target = datetime.now(UTC) + timedelta(seconds=seconds)
    boundary = target.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return boundary - target


def bot_env(server_url: str, database: Path, **extra: str) -> dict[str, str]:
    """Returns the environment of a bot process: ours only, nothing inherited for settings."""
    ours = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in ours}
    env.update(
        {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE_URL": server_url,
            "DATABASE_URL": f"sqlite:///{database}",
            "EMERGENCY_NUMBER": "112",
            "PSEUDONYM_KEY": "e2e-pseudonym-key",
            "OPEN_ENROLLMENT": "true",
            "HEALTH_PORT": "0",  # each test bot would fight over the default port
            "DISPATCH_INTERVAL_SECONDS": "2",
        }
    )
    env.update(extra)
    return env


@dataclass
class Journey:
    """One patient talking to one real bot process through one fake Bot API server."""

    name: str
    server: FakeBotApiServer
    folder: Path
    env: dict[str, str]
    patient: int
    started: float = field(default_factory=time.monotonic)
    proc: subprocess.Popen[bytes] | None = None
    offset: timedelta = timedelta(0)  # the bot's clock minus the real one
    timings: dict[str, float] = field(default_factory=dict)

    def bot_now(self) -> datetime:
        """Returns the time on the bot process's clock."""
        return datetime.now(UTC) + self.offset

    @property
    def fake(self) -> FakeTelegram:
        """Returns the fake server's state."""
        return self.server.fake

    def output(self) -> tuple[str, str]:
        """Returns what the bot printed so far (stdout, stderr)."""
        read = lambda name: (self.folder / name).read_text("utf-8", "replace")  # noqa: E731
        return read("bot.out"), read("bot.err")

    def fail(self, what: str) -> NoReturn:
        """Fails with the last messages she got and the tail of the bot's stderr."""
        out, err = self.output() if (self.folder / "bot.out").exists() else ("", "")
        sent = "\n".join(
            f"  #{m.message_id} {m.text[:160]!r} buttons={[lbl for lbl, _ in m.buttons()]}"
            for m in self.fake.chat(self.patient)[-8:]
        )
        elapsed = time.monotonic() - self.started
        raise AssertionError(
            f"[{self.name}] {what} (after {elapsed:.1f} s, now {self.bot_now():%H:%M:%S} UTC "
            f"on the bot's clock, shifted {self.offset.total_seconds():+.1f} s)"
            f"\nlast messages to the patient:\n{sent}\nbot stdout:\n{out[-1500:]}"
            f"\nbot stderr (tail):\n{err[-4000:]}"
        )

    def start_bot(self, *args: str) -> None:
        """Starts `adherence-bot run` in the journey's folder, output going to files.

        Its clock is shifted so that a minute begins READY + LEAD seconds from now.
        """
        script = Path(sys.executable).parent / "adherence-bot"
        self.offset = minute_boundary_after(READY + LEAD)
        env = {**self.env, OFFSET_VARIABLE: f"{self.offset.total_seconds():.6f}"}
        with (
            (self.folder / "bot.out").open("wb") as out,
            (self.folder / "bot.err").open("wb") as err,
        ):
            self.proc = subprocess.Popen(
                [str(script), "run", *args], cwd=self.folder, env=env, stdout=out, stderr=err
            )

    def wait_for(self, probe: Callable[[], _T | None], what: str, timeout: float) -> _T:
        """Polls `probe` until it returns something, failing on the deadline or a dead bot."""
        # Two processes in real time: polling with a deadline is the honest way to wait.
        end = time.monotonic() + timeout
        while True:
            found = probe()
            if found:
                return found
            if self.proc is not None and self.proc.poll() is not None:
                self.fail(f"the bot exited ({self.proc.returncode}) while waiting for {what}")
            if time.monotonic() > end:
                self.fail(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.1)

    def question(self, words: str, *, after: int = 0) -> FakeMessage | None:
        """Returns the newest message with buttons showing `words` (text or label) after an id."""
        for message in reversed(self.fake.chat(self.patient)):
            labels = [label for label, _ in message.buttons()]
            if (
                message.message_id > after
                and labels
                and (words in message.text or words in labels)
            ):
                return message
        return None

    def reply(self, words: str, *, after: int) -> FakeMessage | None:
        """Returns the first message after an id that contains `words`."""
        for message in self.fake.chat(self.patient):
            if message.message_id > after and words in message.text:
                return message
        return None

    def newest_id(self) -> int:
        """Returns the id of the newest message in her chat (0 when none)."""
        chat = self.fake.chat(self.patient)
        return chat[-1].message_id if chat else 0

    def tap(self, label: str, message: FakeMessage) -> None:
        """She taps the button with this label on a message the bot sent her."""
        data = next((d for lbl, d in message.buttons() if lbl == label), None)
        if data is None:
            self.fail(f"no button {label!r} on message {message.message_id}: {message.text!r}")
        self.server.press(self.patient, data, message)

    def ask(self, label: str, on: str, then: str) -> FakeMessage:
        """Taps `label` on the question containing `on`, then waits for a question with `then`."""
        message = self.wait_for(lambda: self.question(on), f"a question with {on!r}", STEP_TIMEOUT)
        before = self.newest_id()
        self.tap(label, message)
        return self.wait_for(
            lambda: self.question(then, after=before),
            f"a question with {then!r} after tapping {label!r}",
            STEP_TIMEOUT,
        )

    def stop(self) -> tuple[str, str]:
        """Stops the bot with SIGINT (Ctrl+C) and returns what it printed."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=STEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.fail("the bot did not stop on SIGINT")
        return self.output()

    def close(self) -> None:
        """Kills the bot if it still runs (a failed journey)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def create_invite(journey: Journey) -> str:
    """Runs `adherence-bot invite create --cohort pilot` and returns the code of its link."""
    script = Path(sys.executable).parent / "adherence-bot"
    done = subprocess.run(
        [str(script), "invite", "create", "--cohort", "pilot"],
        cwd=journey.folder,
        env=journey.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert TOKEN not in done.stdout + done.stderr
    match = re.search(r"https://t\.me/e2e_test_bot\?start=([A-Za-z0-9_-]+)", done.stdout)
    assert match, done.stdout
    return match.group(1)


def walk_through(
    j: Journey,
    *,
    start: str,
    pain: str,
    symptoms: list[str],
    note: str,
) -> dict[str, Any]:
    """Joins, sets a check-in a minute or so ahead, answers it; returns what she chose."""
    j.wait_for(lambda: j.fake.calls_to("getUpdates"), "the first getUpdates", 30.0)
    j.timings["polling"] = time.monotonic() - j.started

    # Joining and consent.
    j.server.send_text(j.patient, start)
    consent = j.wait_for(lambda: j.question("I agree"), "the consent question", STEP_TIMEOUT)
    j.ask("I agree", on="I agree", then="Letrozole (Femara)")
    j.ask("Letrozole (Femara)", on="Letrozole (Femara)", then="1 to 6 months ago")
    j.ask("1 to 6 months ago", on="1 to 6 months ago", then="United Kingdom")
    j.ask("United Kingdom", on="United Kingdom", then="Another time")
    time_question = j.wait_for(
        lambda: j.question("Another time"), "the time question", STEP_TIMEOUT
    )
    before = j.newest_id()
    j.tap("Another time", time_question)
    j.wait_for(lambda: j.reply("Please type the time", after=before), "the typing prompt", 15)

    # The next minute at least MIN_LEAD s ahead on the bot's clock, in her (UK) time: the one
    # the offset put LEAD s ahead, unless she got here more than LEAD - MIN_LEAD s late.
    picked = j.wait_for(
        lambda: pick_checkin_time(j.bot_now(), min_ahead=MIN_LEAD),
        "a usable check-in minute",
        100.0,
    )
    hhmm, due = picked
    j.timings["typed"] = time.monotonic() - j.started
    j.timings["typed_time_ahead"] = (due - j.bot_now()).total_seconds()
    before = j.newest_id()
    j.server.send_text(j.patient, hhmm)
    j.wait_for(lambda: j.question("Every day", after=before), "the days question", STEP_TIMEOUT)
    summary = j.ask("Every day", on="Every day", then="Yes, that's right")
    assert hhmm in summary.text, summary.text
    before = j.newest_id()
    j.tap("Yes, that's right", summary)
    done = j.wait_for(lambda: j.reply("All set", after=before), "the all-set message", 15)
    assert f"today at {hhmm}" in done.text, done.text
    j.timings["onboarded"] = time.monotonic() - j.started
    assert consent.message_id < done.message_id

    # The check-in arrives by itself, on time.
    settled = done.message_id
    wait = (due - j.bot_now()).total_seconds() + ON_TIME + 5
    first = j.wait_for(
        lambda: j.question("Did you take your tablet yesterday?", after=settled),
        f"the check-in due at {hhmm} UK time",
        wait,
    )
    arrived = j.bot_now()  # due and arrival on the bot's clock
    late = (arrived - due).total_seconds()
    j.timings["late_by"] = late
    if late < 0 or late > ON_TIME:
        j.fail(f"the check-in due at {due:%H:%M:%S} UTC arrived at {arrived:%H:%M:%S} UTC")
    lock_screen = first.text.splitlines()[0].lower()
    assert not any(word in lock_screen for word in LOCK_SCREEN_WORDS), first.text
    assert j.reply("", after=settled) is first  # nothing else came in between

    # Every item, by tapping the buttons of the messages the bot sent.
    j.tap("Yes", first)
    worst = j.wait_for(
        lambda: j.question("worst joint pain", after=first.message_id), "the pain question", 15
    )
    stiff = j.ask(pain, on="worst joint pain", then="stiff this morning")
    way = j.ask("Longer", on="stiff this morning", then="get in the way")
    new = j.ask("3", on="get in the way", then="Anything new since last time?")
    assert worst.message_id < stiff.message_id < way.message_id < new.message_id
    for label in symptoms:
        j.tap(label, new)
        j.wait_for(
            lambda label=label: f"✓ {label}" in [lbl for lbl, _ in new.buttons()],
            f"{label!r} ticked",
            STEP_TIMEOUT,
        )
    before = j.newest_id()
    j.tap("Done" if symptoms else "None", new)
    j.wait_for(
        lambda: j.question("Anything else you want to note?", after=before),
        "the note question",
        STEP_TIMEOUT,
    )
    before = j.newest_id()
    j.server.send_text(j.patient, note)
    closing = j.wait_for(
        lambda: j.reply("Here is what you told me", after=before), "the check-in summary", 15
    )
    assert "Note: Added" in closing.text, closing.text
    j.timings["answered"] = time.monotonic() - j.started
    return {"hhmm": hhmm, "due": due}


def stored_journey(database: Path, patient: int) -> dict[str, Any]:
    """Reads what the database holds about her: participant, schedule, check-ins, answers."""
    engine = create_engine(f"sqlite:///{database}")
    try:
        with Session(engine) as session:
            participant = session.exec(
                select(Participant).where(Participant.telegram_user_id == patient)
            ).one()
            cohort = session.get(Cohort, participant.cohort_id) if participant.cohort_id else None
            schedules = session.exec(
                select(Schedule).where(Schedule.participant_id == participant.id)
            ).all()
            checkins = session.exec(
                select(CheckIn).where(CheckIn.participant_id == participant.id)
            ).all()
            answered = [c for c in checkins if c.status != CheckInStatus.scheduled]
            answers = (
                session.exec(select(Answer).where(Answer.checkin_id == answered[0].id)).all()
                if len(answered) == 1
                else []
            )
            return {
                "participant": participant,
                "cohort": cohort.code if cohort else None,
                "schedules": list(schedules),
                "answered": answered,
                "answers": {a.item_code: a.value for a in answers},
            }
    finally:
        engine.dispose()


def run_journey(
    j: Journey, *, invite: bool, pain: str, symptoms: list[str], note: str, values: str
) -> dict[str, float]:
    """Runs one whole journey and checks the bot's output and the database afterwards."""
    database = Path(j.env["DATABASE_URL"].removeprefix("sqlite:///"))
    start = "/start"
    if invite:
        start = f"/start {create_invite(j)}"
    j.start_bot(*(["--log-level", "DEBUG"] if invite else []))
    try:
        chosen = walk_through(j, start=start, pain=pain, symptoms=symptoms, note=note)
    finally:
        if j.proc is not None and j.proc.poll() is None:
            j.stop()
    out, err = j.output()
    assert j.proc is not None and j.proc.returncode == 0, err[-3000:]
    assert "running (long polling)" in out and "@e2e_test_bot" in out, out
    assert "Bot stopped." in out, out
    # It really ran on the shifted clock the test compares in.
    assert f"clock shifted by {j.offset.total_seconds():+.3f} s by {OFFSET_VARIABLE}" in err, err
    assert "Traceback" not in out + err, err[-3000:]
    assert "handler failed" not in err, err[-3000:]
    assert TOKEN not in out + err and TOKEN.split(":")[1] not in out + err
    assert note not in out + err

    got = stored_journey(database, j.patient)
    participant = got["participant"]
    assert participant.status == Lifecycle.active
    assert participant.timezone == "Europe/London" and participant.country == "GB"
    assert participant.consent_version == consent_text().version
    assert got["cohort"] == ("pilot" if invite else None)
    [schedule] = [s for s in got["schedules"] if s.active]
    assert (schedule.local_time, schedule.weekdays) == (chosen["hhmm"], "0123456")
    [checkin] = got["answered"]
    assert checkin.origin == CheckInOrigin.scheduled
    assert checkin.status == CheckInStatus.completed
    assert checkin.due_at == chosen["due"]
    assert checkin.sent_at is not None
    assert 0 <= (checkin.sent_at - checkin.due_at).total_seconds() <= ON_TIME
    assert checkin.questionnaire_version == questionnaire().version
    assert got["answers"] == {
        "took_med": "yes",
        "worst_pain": pain,
        "stiffness": "over_30",
        "interference": "3",
        "new_symptoms": values,
        "note": note,
    }
    j.timings["total"] = time.monotonic() - j.started
    return {name: round(seconds, 1) for name, seconds in j.timings.items()}


def test_new_patients_join_get_their_checkin_on_time_and_their_answers_are_stored(
    tmp_path: Path,
) -> None:
    # The bot processes run on the real clock (shifted); the fake servers' stamps use it too.
    clock.reset()
    open_dir, invite_dir = tmp_path / "open", tmp_path / "invite"
    open_dir.mkdir()
    invite_dir.mkdir()
    with (
        running_server(FakeTelegram(valid_token=TOKEN, username="e2e_test_bot")) as open_server,
        running_server(FakeTelegram(valid_token=TOKEN, username="e2e_test_bot")) as invite_server,
    ):
        by_open = Journey(
            "open enrollment, server root",
            open_server,
            open_dir,
            bot_env(open_server.root_url, open_dir / "e2e.db"),
            PATIENT,
        )
        by_invite = Journey(
            "invite, .../bot prefix, DEBUG logs",
            invite_server,
            invite_dir,
            bot_env(
                invite_server.root_url + "/bot", invite_dir / "e2e.db", OPEN_ENROLLMENT="false"
            ),
            PATIENT + 1,
        )
        try:
            with ThreadPoolExecutor(max_workers=2) as pool:
                first = pool.submit(
                    run_journey,
                    by_open,
                    invite=False,
                    pain="7",
                    symptoms=["A swollen or red joint"],
                    note="Knees ached after gardening on Sunday",
                    values="swelling",
                )
                second = pool.submit(
                    run_journey,
                    by_invite,
                    invite=True,
                    pain="2",
                    symptoms=[],
                    note="Felt fine except a stiff thumb",
                    values="none",
                )
                outcomes = [_outcome(f.result, JOURNEY_TIMEOUT) for f in (first, second)]
        finally:
            by_open.close()
            by_invite.close()
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    if failures:
        # Both journeys' diagnostics, the first failure raised.
        for extra in failures[1:]:
            print(f"second failure: {extra}", file=sys.stderr)
        raise failures[0]
    print("journey timings (s):", outcomes)


def _outcome(result: Callable[[float], _T], timeout: float) -> _T | BaseException:
    """Returns a journey's result, or the exception it ended with."""
    try:
        return result(timeout)
    except Exception as exc:
        return exc
