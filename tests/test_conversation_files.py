"""Files in conversations: which tool or part of the request each attachment reaches, the uploads a
conversation keeps for its code interpreter (and forgets on /reset), and the sentence for each file
that cannot be used.

The core runs against the stand-in OpenAI (its Files API and `container.file_ids` in the real shapes);
the end-to-end tests add the real bot and the stand-in Discord.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import discord
from hypothesis import given
from hypothesis import strategies as st

from bot.config import GuildSettings
from bot.conversation_files import (
    MAX_FILES_PER_MESSAGE,
    PREVIEW_CHARS,
    AttachmentInfo,
    ConversationFiles,
    document_text,
    megabytes,
    plan_attachments,
)
from bot.discord.attachments import user_turn
from bot.engine import UserTurn
from bot.engine.events import Completed, TurnEvent
from bot.engine.turn import TurnFile
from bot.storage import Storage
from standins.discord import StoredMessage, Upload
from standins.openai import CodeInterpreterCall, FakeOpenAI, HttpError, Reply
from tests import conftest
from tests.conftest import ServicesFactory, settings
from tests.document_files import docx_bytes, pdf_bytes
from tests.harness import Harness, running_bot
from tests.test_chat_e2e import wait_for_thread
from tests.tool_support import CHANNEL, GUILD, KEY, turn_context

DATABASE_ENGINES = conftest.DATABASE_ENGINES
WAIT_S = 10.0
CSV = b"month,total\nJan,3\nFeb,5\n"
MB = 1024 * 1024
INTERPRETER = settings(enabled_tools=("code_interpreter",))
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def info(filename: str, content_type: str = "", size: int = 100) -> AttachmentInfo:
    return AttachmentInfo(filename, content_type, size)


# --------------------------------------------------------------------------------------- planning


def test_with_the_code_interpreter_every_file_it_reads_is_uploaded_and_text_and_images_still_shown() -> None:
    plans = plan_attachments(
        [
            info("sales.csv", "text/csv"),
            info("book.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
            info("plan.pdf", "application/pdf"),
            info("cat.png", "image/png"),
            info("tool.exe", "application/octet-stream"),
        ],
        INTERPRETER,
        max_bytes=25 * MB,
    )
    assert [plan.routes for plan in plans] == [
        ("text", "code_interpreter"),
        ("code_interpreter",),
        ("input_file", "code_interpreter"),  # the model still reads the PDF itself
        ("image", "code_interpreter"),
        ("refused",),
    ]
    assert plans[-1].refusal == "tool.exe was not read: the assistant cannot read .exe files."


def test_with_the_code_interpreter_the_model_still_reads_a_docx_as_text() -> None:
    [plan] = plan_attachments([info("brief.docx", DOCX_TYPE)], INTERPRETER, max_bytes=25 * MB)
    assert plan.routes == ("document_text", "code_interpreter")


def test_without_it_text_is_inlined_a_pdf_is_a_file_on_responses_and_text_on_chat() -> None:
    attachments = [
        info("notes.md", "text/markdown"),
        info("plan.pdf", "application/pdf"),
        info("brief.docx", DOCX_TYPE),
        info("cat.jpg", "image/jpeg"),
        info("book.xlsx"),
    ]
    responses = plan_attachments(attachments, settings(), max_bytes=25 * MB)
    assert [plan.routes for plan in responses] == [
        ("text",),
        ("input_file",),
        ("document_text",),
        ("image",),
        ("refused",),
    ]
    assert "without the code interpreter" in responses[-1].refusal
    chat = plan_attachments(attachments, settings(backend="chat"), max_bytes=25 * MB)
    assert [plan.routes for plan in chat] == [
        ("text",),
        ("document_text",),
        ("document_text",),
        ("image",),
        ("refused",),
    ]
    assert chat[-1].refusal == "book.xlsx was not read: the assistant cannot read .xlsx files."


def test_too_large_and_too_many_files_are_refused_with_their_sentence() -> None:
    plans = plan_attachments(
        [info("big.csv", "text/csv", 30 * MB), *(info(f"f{n}.csv", "text/csv") for n in range(10))],
        INTERPRETER,
        max_bytes=25 * MB,
    )
    assert plans[0].refusal == "big.csv was not read: it is too large (30.0 MB; the limit is 25.0 MB)."
    assert [plan.routes for plan in plans[1:MAX_FILES_PER_MESSAGE]] == [("text", "code_interpreter")] * 9
    assert plans[-1].refusal == "f9.csv was not read: at most 10 files of one message are read."


def test_a_messages_files_are_downloaded_up_to_a_total_and_the_rest_get_their_sentence() -> None:
    plans = plan_attachments(
        [
            info("a.csv", "text/csv", 20 * MB),
            info("b.csv", "text/csv", 20 * MB),
            info("c.csv", "text/csv", 20 * MB),
            info("d.csv", "text/csv", 5 * MB),
        ],
        INTERPRETER,
        max_bytes=25 * MB,
        max_total_bytes=45 * MB,
    )
    assert [plan.routes for plan in plans] == [
        ("text", "code_interpreter"),
        ("text", "code_interpreter"),
        ("refused",),
        ("text", "code_interpreter"),
    ]
    assert plans[2].refusal == (
        "c.csv was not read: the message's files together are over 45.0 MB, the most read from one message."
    )
    # A single file within the per-file limit is never refused for the total.
    [alone] = plan_attachments([info("big.csv", "text/csv", 30 * MB)], INTERPRETER, max_bytes=40 * MB)
    assert alone.routes == ("text", "code_interpreter")


def test_two_files_of_one_message_with_the_same_name_for_the_code_interpreter_keep_only_the_last() -> None:
    plans = plan_attachments(
        [info("data.csv", "text/csv"), info("data.csv", "text/csv", 200)], INTERPRETER, max_bytes=25 * MB
    )
    assert plans[0].refusal == (
        "data.csv was not read: a later file of this message has the same name, and only that one is read."
    )
    assert plans[1].routes == ("text", "code_interpreter")


@given(
    names=st.lists(
        st.tuples(
            st.text(min_size=1, max_size=12).map(str.strip).filter(bool),
            st.sampled_from([".csv", ".pdf", ".png", ".zip", ".exe", ".docx", ".md", ""]),
            st.sampled_from(["", "text/plain", "image/png", "application/pdf", "application/zip"]),
            st.integers(min_value=0, max_value=600 * MB),
        ),
        max_size=14,
    ),
    backend=st.sampled_from(["responses", "chat"]),
    interpreter=st.booleans(),
)
def test_no_attachment_is_dropped_silently(
    names: list[tuple[str, str, str, int]], backend: str, interpreter: bool
) -> None:
    tools = ("code_interpreter",) if interpreter and backend == "responses" else ()
    guild = GuildSettings(backend=backend, enabled_tools=tools)
    attachments = [info(stem + suffix, kind, size) for stem, suffix, kind, size in names]
    plans = plan_attachments(attachments, guild, max_bytes=25 * MB)
    assert [plan.attachment for plan in plans] == attachments
    for plan in plans:
        assert plan.routes, plan
        if plan.routes == ("refused",):
            assert plan.refusal.startswith(f"{plan.attachment.filename} was not read: ")
            assert plan.refusal.endswith(".")
        else:
            assert not plan.refusal
            assert "code_interpreter" not in plan.routes or interpreter


# ------------------------------------------------------------------------- reading a message's files


@dataclass
class Attachment:
    """A Discord attachment as `user_turn` reads it; every read waits at `together` (when set), so
    reads one after the other never get past it, and each read is counted."""

    filename: str
    data: bytes
    content_type: str | None = None
    together: asyncio.Barrier | None = None
    reads: int = 0

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def url(self) -> str:
        return f"https://cdn.example/{self.filename}"

    async def read(self) -> bytes:
        self.reads += 1
        if self.together is not None:
            await self.together.wait()
        return self.data


@dataclass
class Author:
    id: int = 7
    display_name: str = "Ada"


@dataclass
class Message:
    attachments: list[Attachment]
    author: Author = field(default_factory=Author)
    id: int = 99


async def read_message(
    guild: GuildSettings, *attachments: Attachment, text_budget: int = 20_000, max_file_mb: int = 25
) -> UserTurn:
    message = cast(discord.Message, Message(list(attachments)))
    async with asyncio.timeout(WAIT_S):  # a safety net: reads one after the other would wait forever
        return await user_turn(
            message, "look", guild, text_budget=text_budget, max_file_bytes=max_file_mb * MB
        )


async def test_a_messages_files_are_downloaded_together_each_once() -> None:
    together = asyncio.Barrier(4)
    csv = Attachment("sales.csv", CSV, "text/csv", together)
    pdf = Attachment("plan.pdf", pdf_bytes([["The plan"]]), "application/pdf", together)
    notes = Attachment("notes.md", b"# Notes", "text/markdown", together)
    cat = Attachment("cat.png", b"png", "image/png", together)
    dog = Attachment("dog.png", b"png", "image/png")
    turn = await read_message(INTERPRETER, csv, pdf, notes, cat)
    assert [a.reads for a in (csv, pdf, notes, cat)] == [1, 1, 1, 1]
    assert [(f.filename, f.use) for f in turn.files] == [
        ("sales.csv", "code_interpreter"),
        ("plan.pdf", "code_interpreter"),
        ("plan.pdf", "input_file"),
        ("notes.md", "code_interpreter"),
        ("cat.png", "code_interpreter"),
    ]
    assert turn.image_urls == ("https://cdn.example/cat.png",)
    assert turn.notices == ()
    # Without the code interpreter an image goes to the model by its URL alone: never downloaded.
    shown = await read_message(settings(), dog)
    assert dog.reads == 0 and shown.image_urls == ("https://cdn.example/dog.png",) and shown.files == ()


async def test_a_csv_for_the_code_interpreter_is_previewed_not_refused_as_too_large() -> None:
    rows = b"".join(b"%d,%d\n" % (n, n * n) for n in range(200_000))  # over 2 MB of text
    big = Attachment("squares.csv", b"n,square\n" + rows, "text/csv")
    turn = await read_message(INTERPRETER, big)
    assert turn.notices == ()  # the whole file is in the container: nothing is missing
    [file] = turn.files
    assert file.data == big.data and big.reads == 1
    assert "[Attached squares.csv, its beginning (the whole file is /mnt/data/squares.csv)]" in turn.text
    assert "n,square\n0,0\n1,1\n" in turn.text
    preview = turn.text.split("```")[1]
    assert len(preview) <= PREVIEW_CHARS + 2 and preview.endswith("\n\n")  # whole lines only
    assert "too large" not in turn.text
    # Without the code interpreter, the same file is too large to read, and says so.
    alone = await read_message(settings(), Attachment("squares.csv", big.data, "text/csv"))
    size = megabytes(len(big.data))
    assert alone.notices == (f"squares.csv was not read: it is too large ({size}; the limit is 2.0 MB).",)


async def test_a_second_document_past_the_text_limit_is_said_never_dropped() -> None:
    first = Attachment("plan.pdf", pdf_bytes([["Ground floor: kitchen and hall. " * 20]]), "application/pdf")
    second = Attachment("budget.docx", docx_bytes([("Normal", "Ten thousand euros.")]), DOCX_TYPE)
    turn = await read_message(settings(backend="chat"), first, second, text_budget=100)
    assert turn.notices == (
        "Only the beginning of plan.pdf was read (the text limit).",
        "budget.docx was not read: the message's attachments hold more text than the assistant reads.",
    )
    assert "[Attached plan.pdf, its text (cut short)]" in turn.text
    assert "[Attached budget.docx: not read, the text limit was reached]" in turn.text
    assert "Ten thousand" not in turn.text


async def test_document_text_with_no_budget_left_says_so() -> None:
    block, used, problem = await document_text("a.pdf", "application/pdf", pdf_bytes([["x"]]), 0)
    assert (block, used) == ("[Attached a.pdf: not read, the text limit was reached]", 0)
    assert problem == "a.pdf was not read: the message's attachments hold more text than the assistant reads."


# ------------------------------------------------------------------------------ through the engine


async def run(services: Any, turn: UserTurn, guild: GuildSettings) -> list[TurnEvent]:
    context = turn_context(families=guild.enabled_tools, backend=guild.backend)
    return [event async for event in services.engine.reply(KEY, turn, context)]


def completed(events: list[TurnEvent]) -> Completed:
    assert isinstance(events[-1], Completed), events[-1]
    return events[-1]


def container_of(body: dict[str, Any]) -> dict[str, Any]:
    [tool] = [tool for tool in body.get("tools", []) if tool["type"] == "code_interpreter"]
    container: dict[str, Any] = tool["container"]
    return container


def turn_with(text: str, *files: TurnFile) -> UserTurn:
    return UserTurn(text=text, author_id=7, author_name="Ada", files=files)


async def test_a_csv_reaches_the_container_stays_for_later_turns_and_reset_forgets_it(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    fake_openai.responses.push(Reply("Plotted.", hosted=[CodeInterpreterCall("import pandas")]))
    csv = TurnFile("sales.csv", "text/csv", CSV, "code_interpreter")
    completed(await run(services, turn_with("plot this CSV", csv), INTERPRETER))
    [uploaded] = fake_openai.files.values()
    assert (uploaded.filename, uploaded.data, uploaded.purpose) == ("sales.csv", CSV, "user_data")
    assert uploaded.expires_at == uploaded.created_at + 30 * 24 * 3600
    first = fake_openai.requests_to("/v1/responses")[0].json
    assert container_of(first) == {"type": "auto", "file_ids": [uploaded.id]}
    # The run's container holds the file as the code interpreter sees it.
    [container] = fake_openai.containers.values()
    assert [(f.filename, f.data, f.source) for f in container.values()] == [("sales.csv", CSV, "user")]

    completed(await run(services, turn_with("now make the bars red"), INTERPRETER))
    second = fake_openai.requests_to("/v1/responses")[1].json
    assert container_of(second) == {"type": "auto", "file_ids": [uploaded.id]}
    assert len(fake_openai.requests_to("/v1/files", "POST")) == 1  # kept, not uploaded again

    assert await services.engine.reset(KEY)
    completed(await run(services, turn_with("start again"), INTERPRETER))
    third = fake_openai.requests_to("/v1/responses")[2].json
    assert container_of(third) == {"type": "auto"}


async def test_a_pdf_goes_in_the_message_as_an_input_file_without_the_code_interpreter(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    pdf = pdf_bytes([["The plan"]])
    completed(
        await run(
            services,
            turn_with("summarise", TurnFile("plan.pdf", "application/pdf", pdf, "input_file")),
            settings(),
        )
    )
    [uploaded] = fake_openai.files.values()
    body = fake_openai.requests_to("/v1/responses")[0].json
    assert body["input"][0]["content"][-1] == {"type": "input_file", "file_id": uploaded.id}
    assert "tools" not in body


async def test_a_refused_upload_is_said_on_the_reply(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    fake_openai.fail_next("/v1/files", HttpError(400, "File type not supported."))
    csv = TurnFile("sales.csv", "text/csv", CSV, "code_interpreter")
    done = completed(await run(services, turn_with("plot", csv), INTERPRETER))
    assert done.notes == ("sales.csv could not be given to the model: OpenAI refused the upload (HTTP 400).",)
    assert container_of(fake_openai.requests_to("/v1/responses")[0].json) == {"type": "auto"}


# ------------------------------------------------------------------------------------- end to end


async def mention(h: Harness, text: str, *uploads: Upload) -> None:
    await h.discord.user_message(
        h.general.id, h.alice, f"{h.bot_mention} {text}", mentions_bot=True, attachments=list(uploads)
    )


async def reply_saying(h: Harness, text: str, *, after: int = 0) -> tuple[int, StoredMessage]:
    """The conversation's thread and the bot's message there (past the first `after`) holding `text`."""
    thread = await wait_for_thread(h)

    def found() -> StoredMessage | None:
        return next((m for m in h.discord.bot_messages(thread.id)[after:] if text in m.content), None)

    await h.discord.wait_for(lambda: found() is not None, timeout=WAIT_S)
    message = found()
    assert message is not None
    return thread.id, message


async def test_plot_this_csv_end_to_end_with_a_second_turn_and_reset(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.responses.push(Reply("Here is the chart.", hosted=[CodeInterpreterCall("plot()")]))
    async with running_bot(tmp_path, fake_openai, defaults={"enabled_tools": ["code_interpreter"]}) as h:
        await mention(h, "plot this CSV", Upload("sales.csv", CSV, content_type="text/csv"))
        thread_id, _ = await reply_saying(h, "Here is the chart.")
        [uploaded] = fake_openai.files.values()
        assert uploaded.filename == "sales.csv" and uploaded.data == CSV
        first = fake_openai.requests_to("/v1/responses")[0].json
        assert container_of(first)["file_ids"] == [uploaded.id]
        sent = first["input"][0]["content"][0]["text"]
        assert "[Attached sales.csv: given to the code interpreter as /mnt/data/sales.csv]" in sent
        assert "[Attached sales.csv]\n```\nmonth,total\nJan,3" in sent  # and its text, as without the tool

        await h.discord.user_message(thread_id, h.alice, "now make the bars red")
        await reply_saying(h, "echo: alice: now make the bars red")
        assert container_of(fake_openai.requests_to("/v1/responses")[1].json)["file_ids"] == [uploaded.id]

        reset = await h.discord.slash_command("reset", user=h.alice, channel_id=thread_id)
        await h.discord.wait_for_response(reset)
        await h.discord.user_message(thread_id, h.alice, "fresh start")
        await reply_saying(h, "echo: alice: fresh start")
        assert container_of(fake_openai.requests_to("/v1/responses")[2].json) == {"type": "auto"}


async def test_too_large_and_unreadable_files_get_their_sentence_on_the_reply(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(
        tmp_path,
        fake_openai,
        defaults={"enabled_tools": ["code_interpreter"]},
        discord_settings={"max_attachment_mb": 1},
    ) as h:
        await mention(
            h,
            "look at these",
            Upload("big.csv", b"x" * (2 * MB), content_type="text/csv"),
            Upload("tool.exe", b"MZ", content_type="application/octet-stream"),
        )
        _, reply = await reply_saying(h, "tool.exe was not read")
        assert "big.csv was not read: it is too large (2.0 MB; the limit is 1.0 MB)." in reply.content
        assert "tool.exe was not read: the assistant cannot read .exe files." in reply.content
        assert fake_openai.files == {}
        sent = fake_openai.requests_to("/v1/responses")[0].json["input"][0]["content"][0]["text"]
        assert "[big.csv was not read" in sent and "[tool.exe was not read" in sent


async def test_the_chat_backend_reads_a_pdfs_and_a_docxs_text(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    pdf = pdf_bytes([["Ground floor: kitchen and hall."], ["First floor: two bedrooms."]])
    docx = docx_bytes([("Heading 1", "Budget"), ("Normal", "Ten thousand euros.")])
    async with running_bot(tmp_path, fake_openai, defaults={"backend": "chat", "enabled_tools": []}) as h:
        await mention(
            h,
            "what is upstairs?",
            Upload("plan.pdf", pdf, content_type="application/pdf"),
            Upload("budget.docx", docx, content_type="application/octet-stream"),
        )
        await reply_saying(h, "echo: alice: what is upstairs?")
    sent = fake_openai.requests_to("/v1/chat/completions")[0].json["messages"][-1]["content"]
    assert "[Attached plan.pdf, its text]" in sent
    assert "[page 1]\n\nGround floor: kitchen and hall." in sent and "First floor: two bedrooms." in sent
    assert "# Budget" in sent and "Ten thousand euros." in sent
    assert fake_openai.files == {}


async def test_only_the_newest_files_are_given_to_the_container(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    files = ConversationFiles(services.openai, services.storage.conversation_files, max_files=2)
    record = await services.storage.conversations.get_or_create(
        KEY, backend="responses", guild_id=GUILD, channel_id=CHANNEL
    )
    for number in range(3):
        csv = TurnFile(f"part{number}.csv", "text/csv", CSV, "code_interpreter")
        assert (await files.upload(record, [csv])).notices == ()
    by_name = {stored.filename: stored.id for stored in fake_openai.files.values()}
    assert await files.container_file_ids(record) == [by_name["part1.csv"], by_name["part2.csv"]]


async def test_the_store_keeps_files_per_generation_newest_last_and_prunes_expired_ones(
    storage: Storage,
) -> None:
    files = storage.conversation_files
    for number in range(3):
        await files.add(KEY, 1, f"file-{number}", f"part{number}.csv", 10 + number)
    await files.add(KEY, 2, "file-new", "fresh.csv", 5)
    await files.add("channel:other", 1, "file-other", "other.csv", 5)
    kept = await files.newest(KEY, 1, 2)
    assert [(f.file_id, f.filename, f.size_bytes) for f in kept] == [
        ("file-1", "part1.csv", 11),
        ("file-2", "part2.csv", 12),
    ]
    assert [f.file_id for f in await files.newest(KEY, 2, 10)] == ["file-new"]
    await files.add(KEY, 1, "file-again", "part1.csv", 20)  # a newer part1.csv shadows the older one
    assert [(f.file_id, f.filename) for f in await files.newest(KEY, 1, 10)] == [
        ("file-0", "part0.csv"),
        ("file-2", "part2.csv"),
        ("file-again", "part1.csv"),
    ]
    assert await files.prune(older_than_s=3600) == 0
    assert await files.prune(older_than_s=-1) == 6  # everything is older than a moment from now
    assert await files.newest(KEY, 1, 10) == []


async def test_a_pdf_with_the_code_interpreter_is_uploaded_once_for_the_message_and_the_container(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    pdf = pdf_bytes([["The plan"]])
    both = [TurnFile("plan.pdf", "application/pdf", pdf, use) for use in ("code_interpreter", "input_file")]
    completed(await run(services, turn_with("chart the plan", *both), INTERPRETER))
    [uploaded] = fake_openai.files.values()
    body = fake_openai.requests_to("/v1/responses")[0].json
    assert body["input"][0]["content"][-1] == {"type": "input_file", "file_id": uploaded.id}
    assert container_of(body) == {"type": "auto", "file_ids": [uploaded.id]}


async def test_a_newer_file_of_the_same_name_replaces_the_older_in_the_container(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    first = TurnFile("sales.csv", "text/csv", CSV, "code_interpreter")
    completed(await run(services, turn_with("plot", first), INTERPRETER))
    second = TurnFile("sales.csv", "text/csv", CSV + b"Mar,8\n", "code_interpreter")
    other = TurnFile("costs.csv", "text/csv", CSV, "code_interpreter")
    completed(await run(services, turn_with("and these", second, other), INTERPRETER))
    by_data = {(stored.filename, stored.data): stored.id for stored in fake_openai.files.values()}
    body = fake_openai.requests_to("/v1/responses")[1].json
    # Only one file may be /mnt/data/sales.csv: the newer one.
    assert container_of(body)["file_ids"] == [
        by_data[("sales.csv", second.data)],
        by_data[("costs.csv", CSV)],
    ]
