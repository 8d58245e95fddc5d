"""Chatting end to end: the real bot, the real discord.py client, the stand-in Discord and OpenAI."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from standins.discord import FakeChannel, FakeDiscord, StoredMessage, Upload
from standins.openai import FakeOpenAI, HttpError, Reply
from standins.png import encode_png
from tests.harness import Harness, running_bot

WAIT_S = 10.0


def pings_nobody(allowed_mentions: dict[str, object] | None) -> bool:
    """What discord.AllowedMentions.none() sends: nothing parsed, no users, roles or replied user."""
    return (
        allowed_mentions is not None
        and allowed_mentions.get("parse") == []
        and not allowed_mentions.get("users")
        and not allowed_mentions.get("roles")
        and not allowed_mentions.get("replied_user")
    )


async def wait_for_thread(h: Harness, count: int = 1) -> FakeChannel:
    await h.discord.wait_for(lambda: len(h.discord.threads_in(h.general.id)) >= count, timeout=WAIT_S)
    return h.discord.threads_in(h.general.id)[count - 1]


async def wait_for_text(h: Harness, channel_id: int, text: str) -> list[StoredMessage]:
    """Until the bot's messages in the channel hold exactly `text` (joined by newlines)."""

    def done() -> bool:
        return "\n".join(m.content for m in h.discord.bot_messages(channel_id)) == text

    await h.discord.wait_for(done, timeout=WAIT_S)
    return h.discord.bot_messages(channel_id)


async def mention(h: Harness, text: str, *, channel: FakeChannel | None = None) -> dict[str, object]:
    return await h.discord.user_message(
        (channel or h.general).id, h.alice, f"{h.bot_mention} {text}", mentions_bot=True
    )


def assert_no_pings(server: FakeDiscord) -> None:
    """Every write of the bot that could carry model text disables all mentions."""
    writes = [c for c in server.calls if c.kind in {"message_create", "message_edit"}]
    assert writes
    for call in writes:
        assert pings_nobody(call.allowed_mentions), (call.kind, call.allowed_mentions)


async def test_mention_opens_a_thread_and_the_reply_streams_into_it(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    answer = "Paris is the capital of France, and it is lovely in spring."
    fake_openai.responses.push(Reply(answer, deltas=6, delta_delay_s=0.05))
    async with running_bot(tmp_path, fake_openai) as h:
        await mention(h, "What is the capital of France?\nAnd why?")
        thread = await wait_for_thread(h)
        assert thread.name == "What is the capital of France?"
        messages = await wait_for_text(h, thread.id, answer)
        assert len(messages) == 1
        assert h.discord.bot_messages(h.general.id) == []  # the answer is in the thread only
        request = fake_openai.requests_to("/v1/responses")[0].json
        assert request["input"][0]["content"][0]["text"] == "alice: What is the capital of France?\nAnd why?"
        assert_no_pings(h.discord)


async def test_follow_up_in_the_thread_needs_no_mention_and_reuses_the_conversation(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai) as h:
        await mention(h, "first")
        thread = await wait_for_thread(h)
        await wait_for_text(h, thread.id, "echo: alice: first")
        await h.discord.user_message(thread.id, h.world.bob, "second, no mention")
        await wait_for_text(h, thread.id, "echo: alice: first\necho: bob: second, no mention")
        conversations = {r.json["conversation"] for r in fake_openai.requests_to("/v1/responses")}
        assert len(conversations) == 1
        record = await h.services.storage.conversations.get(f"channel:{thread.id}")
        assert record is not None and record.conversation_id in conversations


async def test_direct_messages_are_one_conversation(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    async with running_bot(tmp_path, fake_openai) as h:
        await h.discord.dm_message(h.alice, "hello in private")
        dm = h.discord.dm_channel(h.alice)
        await wait_for_text(h, dm.id, "echo: alice: hello in private")
        await h.discord.dm_message(h.alice, "again")
        await wait_for_text(h, dm.id, "echo: alice: hello in private\necho: alice: again")
        assert len({r.json["conversation"] for r in fake_openai.requests_to("/v1/responses")}) == 1


async def test_long_answer_with_code_is_split_cleanly(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    prose = " ".join(f"word{i}" for i in range(300))
    code = "\n".join(f"print('line {i}')  # {'x' * 20}" for i in range(80))
    answer = f"{prose}\n\n```python\n{code}\n```\n\nThat is all."
    assert len(answer) > 5000
    fake_openai.responses.push(Reply(answer, deltas=40))
    async with running_bot(tmp_path, fake_openai) as h:
        await mention(h, "show me code")
        thread = await wait_for_thread(h)

        def complete() -> bool:
            parts = [m.content for m in h.discord.bot_messages(thread.id)]
            return bool(parts) and parts[-1].endswith("That is all.")

        await h.discord.wait_for(complete, timeout=WAIT_S)
        parts = [m.content for m in h.discord.bot_messages(thread.id)]
        assert len(parts) >= 3
        assert all(len(part) <= 2000 for part in parts)
        assert all(part.count("```") % 2 == 0 for part in parts)  # fences balanced in every message
        words = re.findall(r"word\d+", " ".join(parts))
        assert words == [f"word{i}" for i in range(300)]  # nothing lost or reordered
        lines = re.findall(r"print\('line (\d+)'\)", "\n".join(parts))
        assert lines == [str(i) for i in range(80)]
        assert h.discord.rate_limit_hits == []


async def test_everyone_in_model_text_pings_nobody(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    fake_openai.responses.push(Reply(f"Hey @everyone and @here and <@{123456789}>!"))
    async with running_bot(tmp_path, fake_openai) as h:
        await mention(h, "ping everyone")
        thread = await wait_for_thread(h)
        await wait_for_text(h, thread.id, "Hey @everyone and @here and <@123456789>!")
        assert_no_pings(h.discord)


async def test_three_quick_messages_are_answered_in_order(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    fake_openai.responses.default = lambda body: Reply(
        "re: " + body["input"][0]["content"][0]["text"], deltas=3, delta_delay_s=0.02
    )
    async with running_bot(tmp_path, fake_openai) as h:
        await mention(h, "start")
        thread = await wait_for_thread(h)
        await wait_for_text(h, thread.id, "re: alice: start")
        for text in ("one", "two", "three"):
            await h.discord.user_message(thread.id, h.alice, text)
        await wait_for_text(
            h, thread.id, "re: alice: start\nre: alice: one\nre: alice: two\nre: alice: three"
        )
        assert fake_openai.max_inflight_per_conversation == 1


async def test_a_model_failure_is_reported_and_the_next_message_works(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    error = HttpError(500, "upstream exploded", headers={"retry-after-ms": "1"})
    fake_openai.responses.push(error, error, error)
    async with running_bot(tmp_path, fake_openai, allow_errors=True) as h:
        await mention(h, "hello?")
        thread = await wait_for_thread(h)

        def warned() -> bool:
            return any("⚠️" in m.content for m in h.discord.bot_messages(thread.id))

        await h.discord.wait_for(warned, timeout=WAIT_S)
        assert "model server had a problem" in h.discord.bot_messages(thread.id)[0].content
        await h.discord.user_message(thread.id, h.alice, "and now?")
        await h.discord.wait_for(
            lambda: any(m.content == "echo: alice: and now?" for m in h.discord.bot_messages(thread.id)),
            timeout=WAIT_S,
        )


async def test_restart_keeps_the_conversation(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    async with FakeDiscord() as server:
        async with running_bot(tmp_path, fake_openai, discord=server) as h:
            world = h.world
            await mention(h, "remember me")
            thread = await wait_for_thread(h)
            await wait_for_text(h, thread.id, "echo: alice: remember me")
        async with running_bot(tmp_path, fake_openai, discord=server, world=world) as h:
            await h.discord.user_message(thread.id, h.alice, "still there?")
            await wait_for_text(h, thread.id, "echo: alice: remember me\necho: alice: still there?")
        assert len({r.json["conversation"] for r in fake_openai.requests_to("/v1/responses")}) == 1


async def test_without_thread_permission_the_bot_replies_in_the_channel(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai) as h:
        await h.discord.set_denied(h.general.id, {"create_threads", "create_public_threads"})
        sent = await mention(h, "no threads here")
        reply = await h.discord.wait_for_message(channel_id=h.general.id, timeout=WAIT_S)
        await wait_for_text(h, h.general.id, "echo: alice: no threads here")
        assert h.discord.threads_in(h.general.id) == []
        assert reply.data["message_reference"]["message_id"] == str(sent["id"])
        call = next(c for c in h.discord.calls if c.kind == "message_create" and c.channel_id == h.general.id)
        assert pings_nobody(call.allowed_mentions)


async def test_ignores_bots_unaddressed_messages_and_channels_it_cannot_write(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai) as h:
        other_bot = h.discord.add_user("otherbot", guilds=[h.world.guild.id], bot=True)
        await h.discord.user_message(h.general.id, other_bot, f"{h.bot_mention} hi", mentions_bot=True)
        await h.discord.user_message(h.general.id, h.alice, "just chatting, no mention")
        read_only = h.discord.add_text_channel(h.world.guild.id, "announcements")
        await h.discord.set_denied(read_only.id, {"send_messages"})
        await h.discord.user_message(read_only.id, h.alice, f"{h.bot_mention} hi", mentions_bot=True)
        # A later addressed message is answered, so the earlier ones had their chance first.
        await mention(h, "now me")
        thread = await wait_for_thread(h)
        await wait_for_text(h, thread.id, "echo: alice: now me")
        assert len(fake_openai.requests_to("/v1/responses")) == 1


async def test_attachments_become_image_input_and_inlined_text(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai) as h:
        await h.discord.user_message(
            h.general.id,
            h.alice,
            f"{h.bot_mention} look",
            mentions_bot=True,
            attachments=[
                Upload("cat.png", encode_png(2, 2, (255, 0, 0)), content_type="image/png"),
                Upload("notes.md", b"# Notes\nbuy milk", content_type="text/markdown"),
                Upload("archive.zip", b"PK\x03\x04", content_type="application/zip"),
            ],
        )
        thread = await wait_for_thread(h)
        await h.discord.wait_for(lambda: bool(h.discord.bot_messages(thread.id)), timeout=WAIT_S)
        content = fake_openai.requests_to("/v1/responses")[0].json["input"][0]["content"]
        text = content[0]["text"]
        assert text.startswith("alice: look")
        assert "[Attached notes.md]\n```\n# Notes\nbuy milk\n```" in text
        assert "archive.zip" in text and "cannot read" in text
        images = [part for part in content if part["type"] == "input_image"]
        assert len(images) == 1 and "cat.png" in images[0]["image_url"]


async def test_chat_backend_sends_images_inside_the_request_and_keeps_a_note_in_the_history(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """Local servers cannot fetch Discord's links (and they expire): the image goes as a data: URI."""
    png = encode_png(2, 2, (255, 0, 0))
    async with running_bot(tmp_path, fake_openai, defaults={"backend": "chat", "enabled_tools": []}) as h:
        await h.discord.user_message(
            h.general.id,
            h.alice,
            f"{h.bot_mention} what colour?",
            mentions_bot=True,
            attachments=[Upload("cat.png", png, content_type="image/png")],
        )
        thread = await wait_for_thread(h)
        await wait_for_text(h, thread.id, "echo: alice: what colour?")
        await h.discord.user_message(thread.id, h.alice, "and now?")
        await wait_for_text(h, thread.id, "echo: alice: what colour?\necho: alice: and now?")
    first, second = (r.json["messages"] for r in fake_openai.requests_to("/v1/chat/completions"))
    images = [part for part in first[-1]["content"] if part["type"] == "image_url"]
    assert len(images) == 1
    kind, _, encoded = images[0]["image_url"]["url"].partition(";base64,")
    assert kind == "data:image/png" and base64.b64decode(encoded) == png
    earlier = second[1]["content"]
    assert {"type": "text", "text": "[An image was shown here]"} in earlier
    assert "data:" not in json.dumps(second)


async def test_reset_starts_a_fresh_conversation(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    async with running_bot(tmp_path, fake_openai) as h:
        nothing = await h.discord.slash_command("reset", user=h.alice, channel_id=h.general.id)
        await h.discord.wait_for_response(nothing)
        assert nothing.ephemeral and "no conversation" in json.dumps(nothing.callbacks[0].data)
        await mention(h, "first")
        thread = await wait_for_thread(h)
        await wait_for_text(h, thread.id, "echo: alice: first")
        reset = await h.discord.slash_command("reset", user=h.alice, channel_id=thread.id)
        await h.discord.wait_for_response(reset)
        assert not reset.ephemeral and "fresh conversation" in json.dumps(reset.callbacks[0].data)
        await h.discord.user_message(thread.id, h.alice, "second")
        await h.discord.wait_for(
            lambda: any(m.content == "echo: alice: second" for m in h.discord.bot_messages(thread.id)),
            timeout=WAIT_S,
        )
        conversations = [r.json["conversation"] for r in fake_openai.requests_to("/v1/responses")]
        assert conversations[0] != conversations[1]


async def test_stop_cancels_the_answer_in_progress(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    fake_openai.responses.push(Reply("one two three four five six seven eight", deltas=8, delta_delay_s=0.3))
    async with running_bot(tmp_path, fake_openai) as h:
        idle = await h.discord.slash_command("stop", user=h.alice, channel_id=h.general.id)
        await h.discord.wait_for_response(idle)
        assert idle.ephemeral and "not answering" in json.dumps(idle.callbacks[0].data)
        await mention(h, "count slowly")
        thread = await wait_for_thread(h)
        await h.discord.wait_for(lambda: bool(h.discord.bot_messages(thread.id)), timeout=WAIT_S)
        stop = await h.discord.slash_command("stop", user=h.alice, channel_id=thread.id)
        await h.discord.wait_for_response(stop)
        assert "Stopping" in json.dumps(stop.callbacks[0].data)
        await h.discord.wait_for(
            lambda: "Stopped" in h.discord.bot_messages(thread.id)[-1].content, timeout=WAIT_S
        )
        assert "eight" not in h.discord.bot_messages(thread.id)[-1].content
        await h.discord.user_message(thread.id, h.alice, "next")
        await h.discord.wait_for(
            lambda: any(m.content == "echo: alice: next" for m in h.discord.bot_messages(thread.id)),
            timeout=WAIT_S,
        )
