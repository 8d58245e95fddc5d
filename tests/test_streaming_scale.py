"""Many replies streaming at once against Discord's limits (issue 10), end to end.

The real bot and discord.py against the stand-in Discord with Discord's per-channel buckets (5 creates
and 5 edits per 5 s) and the global limit (50 requests in any rolling second, answered with global
429s). Fifty people, each in a thread the bot owns, write at the same moment; a naive bot would send
50 first posts, about 50 edits a second and 50 final edits in the same two seconds. Every reply must
arrive whole and exact, and the bot must never be rate-limited. The figures are in bench/.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from standins.discord import FakeChannel, FakeDiscord, FakeUser
from standins.openai import FakeOpenAI, Reply
from tests.harness import Harness, build_world, running_bot

PEOPLE = 50
DELTAS = 8
DELTA_DELAY_S = 0.1
WAIT_S = 30.0


def answer_to(text: str) -> str:
    """The stand-in model's answer: built from the question, so a reply in the wrong thread shows."""
    return f"About '{text}': " + " ".join(f"word{i}" for i in range(24)) + "."


def bot_text(h: Harness, thread: FakeChannel) -> str:
    messages = h.discord.messages_in(thread.id, include_ephemeral=False)
    return "\n".join(m.content for m in messages if m.author_id == h.discord.bot_user.id)


async def test_fifty_threads_streaming_at_once_all_arrive_exact_without_a_429(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    def stream_answer(body: dict[str, object]) -> Reply:
        question = body["input"][0]["content"][0]["text"]  # type: ignore[index]
        return Reply(answer_to(question), deltas=DELTAS, delta_delay_s=DELTA_DELAY_S, pace="deltas")

    fake_openai.responses.default = stream_answer
    async with FakeDiscord(global_limit=50) as server:
        world = build_world(server)
        people: list[tuple[FakeUser, FakeChannel]] = []
        for index in range(PEOPLE):
            user = server.add_user(f"person{index}", guilds=[world.guild.id])
            people.append((user, server.add_thread(world.general.id, f"Chat {index}", owner=server.bot_user)))
        async with running_bot(tmp_path, fake_openai, discord=server, world=world) as h:
            since = len(server.calls)
            for index, (user, thread) in enumerate(people):
                await server.user_message(thread.id, user, f"question {index}")
            expected = {
                thread.id: answer_to(f"{user.name}: question {index}")
                for index, (user, thread) in enumerate(people)
            }
            await server.wait_for(
                lambda: all(bot_text(h, thread) == expected[thread.id] for _, thread in people),
                timeout=WAIT_S,
            )
            assert server.rate_limit_hits == []  # no 429 of any scope: global, per channel or shared
            writes = [c for c in server.calls[since:] if c.kind in {"message_create", "message_edit"}]
            assert all(200 <= c.status < 300 for c in writes)
            posts = Counter(c.channel_id for c in writes if c.kind == "message_create")
            assert posts == Counter({thread.id: 1 for _, thread in people})  # one message per reply
            assert len(fake_openai.requests_to("/v1/responses")) == PEOPLE
