"""Long threads keep working: the model's context window, enforced by the stand-in as OpenAI does.

The stand-in counts its own tokens (`estimate_context_tokens`) against a per-model window: over it, a
request is refused with OpenAI's 400 `context_length_exceeded`, unless a Responses request asks for
`truncation: "auto"` (the oldest items are then left out of the model's view). The bot always asks
for it, and recovers once per turn when a context-length error comes all the same.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.engine.chat_backend import HISTORY_LEFT_OUT_NOTE
from bot.engine.events import Completed, Failed, TurnEvent
from bot.engine.openai_errors import context_window_of, describe_error, is_context_length_error
from bot.engine.responses_backend import SHORTENED_NOTE, SUMMARISED_NOTE, SUMMARY_INSTRUCTIONS
from bot.services import Services
from standins.openai import (
    FakeOpenAI,
    HttpError,
    RecordedRequest,
    Reply,
    estimate_context_tokens,
)
from tests.conftest import ServicesFactory, settings
from tests.harness import running_bot
from tests.test_chat_e2e import mention, wait_for_thread
from tests.test_engine import KEY, collect, context, turn

MODEL = "gpt-5.5"
OPENAI_MESSAGE = (
    "Your input exceeds the context window of this model. Please adjust your input and try again."
)
TOO_LONG = "too long for the model's context window"


def long_text(index: int, words: int = 120) -> str:
    """A message of `words` distinct words (about as many of the stand-in's tokens)."""
    return f"message {index}: " + " ".join(f"w{index}x{n}" for n in range(words))


def is_summary_call(body: dict[str, Any]) -> bool:
    return body.get("instructions") == SUMMARY_INSTRUCTIONS


def short_answers(body: dict[str, Any]) -> Reply:
    """Short answers, so the conversation grows by the users' long messages."""
    if is_summary_call(body):
        return Reply("Ada sent many long numbered messages; nothing is pending.")
    return Reply("noted")


def completed(events: list[TurnEvent]) -> Completed:
    final = events[-1]
    assert isinstance(final, Completed), final
    return final


def failed(events: list[TurnEvent]) -> Failed:
    final = events[-1]
    assert isinstance(final, Failed), final
    return final


def status_error(status: int, body: dict[str, Any]) -> openai.APIStatusError:
    """An error exactly as the SDK builds it from a response (it keeps the inner `error` object)."""
    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx2.Response(status, json=body, request=request)
    client = openai.OpenAI(api_key="test", base_url="http://127.0.0.1/v1")
    return client._make_status_error_from_response(response)


def stream_error(error: dict[str, Any]) -> openai.APIError:
    """An error event in the middle of a stream, as the SDK's stream raises it."""
    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    return openai.APIError(str(error.get("message")), request, body=error)


# ------------------------------------------------------------------------------ the classifier

OPENAI_RESPONSES = {
    "error": {
        "message": OPENAI_MESSAGE,
        "type": "invalid_request_error",
        "param": "input",
        "code": "context_length_exceeded",
    }
}
OPENAI_CHAT = {
    "error": {
        "message": "This model's maximum context length is 8192 tokens. However, your messages resulted "
        "in 9000 tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}
VLLM = {
    "object": "error",
    "message": "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens "
    "(4000 in the messages, 1000 in the completion). Please reduce the length of the messages or completion.",
    "type": "BadRequestError",
    "param": None,
    "code": 400,
}
LLAMA_CPP_MESSAGE = "the request exceeds the available context size, try increasing it"
LLAMA_CPP = {
    "error": {
        "code": 400,
        "message": LLAMA_CPP_MESSAGE,
        "type": "exceed_context_size_error",
        "n_prompt_tokens": 14429,
        "n_ctx": 8192,
    }
}


@pytest.mark.parametrize(
    ("body", "window"),
    [(OPENAI_RESPONSES, None), (OPENAI_CHAT, 8192), (VLLM, 4096), (LLAMA_CPP, 8192)],
    ids=["openai-responses", "openai-chat", "vllm", "llama.cpp"],
)
def test_context_length_errors_of_each_server_are_recognised(
    body: dict[str, Any], window: int | None
) -> None:
    exc = status_error(400, body)
    assert is_context_length_error(exc)
    assert context_window_of(exc) == window
    kind, reason = describe_error(exc, model=MODEL)
    assert kind == "bad_request" and TOO_LONG in reason


def test_context_errors_in_a_stream_and_in_other_words_are_recognised() -> None:
    assert is_context_length_error(stream_error(LLAMA_CPP["error"]))  # llama.cpp, after its 200
    assert is_context_length_error(stream_error({"message": "Context size has been exceeded."}))  # LM Studio
    llama_cpp_python = "Requested tokens (2285) exceed context window of 2048"
    assert is_context_length_error(status_error(400, {"error": {"message": llama_cpp_python}}))
    assert context_window_of(status_error(400, {"error": {"message": llama_cpp_python}})) == 2048


@pytest.mark.parametrize(
    "exc",
    [
        status_error(400, {"error": {"message": "Invalid value for 'model'.", "code": "invalid_value"}}),
        status_error(400, {"error": {"message": "No tool output found for function call call_1."}}),
        status_error(429, {"error": {"message": "Rate limit reached.", "code": "rate_limit_exceeded"}}),
        status_error(500, {"error": {"message": "The server had an error.", "type": "server_error"}}),
        openai.APIConnectionError(request=httpx2.Request("POST", "http://127.0.0.1/v1/responses")),
        ValueError("maximum context length is 10 tokens"),  # not from a model server
    ],
    ids=["bad-model", "tool-pairs", "rate-limit", "server", "connection", "not-an-api-error"],
)
def test_other_errors_are_not_context_errors(exc: BaseException) -> None:
    assert not is_context_length_error(exc)
    assert TOO_LONG not in describe_error(exc, model=MODEL)[1]


@given(st.text(max_size=300).filter(lambda text: "context" not in text.lower()))
def test_a_message_that_never_says_context_is_not_a_context_error(message: str) -> None:
    assert not is_context_length_error(stream_error({"message": message}))


@given(
    st.text(max_size=80),
    st.sampled_from(
        [
            "This model's maximum context length is 128000 tokens.",
            "Your input exceeds the context window of this model.",
            "the request exceeds the available context size",
            "Context length exceeded",
        ]
    ),
    st.text(max_size=80),
)
def test_known_phrasings_are_recognised_anywhere_in_a_message(before: str, phrase: str, after: str) -> None:
    assert is_context_length_error(stream_error({"message": f"{before} {phrase} {after}"}))


@given(st.integers(min_value=1, max_value=10_000_000))
def test_the_window_a_message_names_is_read(window: int) -> None:
    exc = stream_error({"message": f"This model's maximum context length is {window} tokens. However..."})
    assert context_window_of(exc) == window


# ------------------------------------------------------------------------------ the stand-in


async def test_stand_in_refuses_a_request_over_the_window_as_openai_does(fake_openai: FakeOpenAI) -> None:
    fake_openai.context_windows[MODEL] = 50
    async with fake_openai.client(max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.responses.create(model=MODEL, input=long_text(1, 60))
        assert refused.value.body == OPENAI_RESPONSES["error"]
        assert refused.value.code == "context_length_exceeded"
        small = await client.responses.create(model=MODEL, input="hello there")  # within the window
        assert small.output_text == "echo: hello there"
        with pytest.raises(openai.BadRequestError) as chat_refused:
            await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": long_text(1, 60)}]
            )
        assert chat_refused.value.code == "context_length_exceeded"
        assert "maximum context length is 50 tokens" in chat_refused.value.message


async def test_stand_in_truncation_auto_drops_the_oldest_items_from_the_models_view_only(
    fake_openai: FakeOpenAI,
) -> None:
    async with fake_openai.client(max_retries=0) as client:
        conversation = await client.conversations.create()
        for index in range(4):  # 4 x (60-word input + echo): about 520 tokens
            await client.responses.create(
                model=MODEL, conversation=conversation.id, input=long_text(index, 60)
            )
        fake_openai.context_windows[MODEL] = 300
        with pytest.raises(openai.BadRequestError):
            await client.responses.create(model=MODEL, conversation=conversation.id, input="and now?")
        answer = await client.responses.create(
            model=MODEL, conversation=conversation.id, input="and now?", truncation="auto"
        )
    assert answer.status == "completed" and answer.truncation == "auto"
    truncation = fake_openai.truncations[-1]
    assert truncation.conversation_id == conversation.id
    assert truncation.dropped_items > 0 and truncation.kept_items > 0
    assert truncation.dropped_items + truncation.kept_items == 8
    items = fake_openai.conversations[conversation.id].items
    assert len(items) == 10  # nothing left the conversation itself
    kept = items[truncation.dropped_items : 8]
    assert estimate_context_tokens([*kept, {"role": "user", "content": "and now?"}]) <= 300
    assert estimate_context_tokens(items) > 300


async def test_stand_in_refuses_what_truncation_cannot_fix(fake_openai: FakeOpenAI) -> None:
    fake_openai.context_windows[MODEL] = 50
    async with fake_openai.client(max_retries=0) as client:
        conversation = await client.conversations.create()
        with pytest.raises(openai.BadRequestError) as too_long:  # the new input alone is too long
            await client.responses.create(
                model=MODEL, conversation=conversation.id, input=long_text(1, 60), truncation="auto"
            )
        assert too_long.value.code == "context_length_exceeded"
        with pytest.raises(openai.BadRequestError) as bad_value:
            await client.responses.create(model=MODEL, input="hi", extra_body={"truncation": "sometimes"})
        assert bad_value.value.code == "invalid_value" and bad_value.value.param == "truncation"
        await client.responses.create(model=MODEL, conversation=conversation.id, input=long_text(2, 30))
        fake_openai.honours_truncation = False  # a compatible server without truncation
        with pytest.raises(openai.BadRequestError) as ignored:
            await client.responses.create(
                model=MODEL, conversation=conversation.id, input=long_text(3, 30), truncation="auto"
            )
        assert ignored.value.code == "context_length_exceeded"


# ------------------------------------------------------------------------------ the responses backend


async def test_responses_thread_of_many_long_messages_keeps_being_answered(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    fake_openai.context_windows[MODEL] = 700
    fake_openai.responses.default = short_answers
    for index in range(12):  # about 130 tokens each: the thread outgrows the window by far
        final = completed(await collect(services, turn(long_text(index)), context(settings())))
        assert final.text == "noted" and final.notes == ()
    requests = fake_openai.requests_to("/v1/responses")
    assert len(requests) == 12  # no retries, no summaries: truncation did it
    assert all(r.json["truncation"] == "auto" for r in requests)
    assert len({r.json["conversation"] for r in requests}) == 1
    assert len(fake_openai.truncations) >= 6
    conversation = fake_openai.conversations[requests[0].json["conversation"]]
    assert len(conversation.texts("user")) == 12  # the conversation itself keeps everything


async def seeded_thread(services: Services, fake_openai: FakeOpenAI, turns: int, words: int = 300) -> str:
    """A thread of `turns` long messages answered while the window was unlimited; its conversation id."""
    for index in range(turns):
        completed(await collect(services, turn(long_text(index, words)), context(settings())))
    record = await services.storage.conversations.get(KEY)
    assert record is not None and record.conversation_id is not None
    return record.conversation_id


async def test_server_ignoring_truncation_moves_the_thread_to_a_summarised_conversation(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    fake_openai.responses.default = short_answers
    old_id = await seeded_thread(services, fake_openai, 3)  # about 1000 tokens
    fake_openai.context_windows[MODEL] = 800  # the summary's transcript (the gist of each) fits
    fake_openai.honours_truncation = False
    before = len(fake_openai.requests_to("/v1/responses"))

    final = completed(await collect(services, turn("what did I send so far?"), context(settings())))

    assert final.text == "noted" and final.notes == (SUMMARISED_NOTE,)
    record = await services.storage.conversations.get(KEY)
    assert record is not None and record.conversation_id not in (None, old_id)
    fresh = fake_openai.conversations[record.conversation_id]
    seed = fresh.items[0]
    assert seed["role"] == "assistant" and "Ada sent many long numbered messages" in fresh.texts()[0]
    assert fresh.texts("user") == ["Ada: what did I send so far?"]
    requests = fake_openai.requests_to("/v1/responses")[before:]
    assert [r.status for r in requests] == [400, 200, 200]  # refused, summary, answer
    summary_request = requests[1].json
    assert "conversation" not in summary_request and summary_request["store"] is False
    assert "message 2" in summary_request["input"] and "message 0" in summary_request["input"]
    assert final.usage.input_tokens > 0  # the summary's tokens are counted too

    later = completed(await collect(services, turn("thanks"), context(settings())))
    assert later.notes == ()  # the thread goes on in the fresh conversation
    assert fake_openai.requests_to("/v1/responses")[-1].json["conversation"] == record.conversation_id


async def test_when_the_summary_fails_too_the_newest_messages_are_carried_over(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services(openai={"max_retries": 0})
    fake_openai.responses.default = short_answers
    old_id = await seeded_thread(services, fake_openai, 8)
    fake_openai.context_windows[MODEL] = 450  # the summary's transcript (about 850) does not fit either
    fake_openai.honours_truncation = False

    final = completed(await collect(services, turn("and now?"), context(settings())))

    assert final.notes == (SHORTENED_NOTE,)
    record = await services.storage.conversations.get(KEY)
    assert record is not None and record.conversation_id != old_id
    assert record.conversation_id is not None
    seed = fake_openai.conversations[record.conversation_id].texts()[0]
    assert "message 7" in seed and "message 5" in seed and "message 4:" not in seed  # the newest six
    assert len(seed) < 3500  # each trimmed
    statuses = [r.status for r in fake_openai.requests_to("/v1/responses")[-3:]]
    assert statuses == [400, 400, 200]  # refused, the summary refused, answered


async def test_a_message_longer_than_the_window_fails_once_and_keeps_the_thread(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services(openai={"max_retries": 0})
    fake_openai.responses.default = short_answers
    old_id = await seeded_thread(services, fake_openai, 2)
    fake_openai.context_windows[MODEL] = 300  # the summary fits, the new message alone does not
    before = len(fake_openai.requests_to("/v1/responses"))

    final = failed(await collect(services, turn(long_text(99, 300)), context(settings())))

    assert final.kind == "bad_request" and TOO_LONG in final.reason
    statuses = [r.status for r in fake_openai.requests_to("/v1/responses")[before:]]
    assert statuses == [400, 200, 400]  # refused, summary, refused in the fresh one too: no loop
    record = await services.storage.conversations.get(KEY)
    assert record is not None and record.conversation_id == old_id  # the thread keeps its history
    completed(await collect(services, turn("short again"), context(settings())))


async def test_a_first_message_longer_than_the_window_has_nothing_to_summarise(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services(openai={"max_retries": 0})
    fake_openai.context_windows[MODEL] = 100
    final = failed(await collect(services, turn(long_text(1, 200)), context(settings())))
    assert TOO_LONG in final.reason
    assert [r.status for r in fake_openai.requests_to("/v1/responses")] == [400]
    assert len(fake_openai.conversations) == 1


# ------------------------------------------------------------------------------ the chat backend


async def test_chat_thread_of_many_long_messages_keeps_being_answered(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()  # the history budget (8000 estimated tokens) is far above the window
    fake_openai.context_windows[MODEL] = 700
    fake_openai.chat.default = short_answers
    notes: list[tuple[str, ...]] = []
    for index in range(10):
        final = completed(await collect(services, turn(long_text(index)), context(settings(backend="chat"))))
        assert final.text == "noted"
        notes.append(final.notes)
    # The first refusal names the window; from then on each request is cut to fit before it is sent.
    assert notes[0] == () and notes.count((HISTORY_LEFT_OUT_NOTE,)) == 1
    requests = fake_openai.requests_to("/v1/chat/completions")
    refused = [r for r in requests if r.status == 400]
    assert len(refused) == 1
    assert all(len(r.json["messages"]) < 2 * 10 for r in requests[-3:])  # older turns left out
    for request in requests:
        assert request.json["messages"][-1]["content"].startswith("Ada: message")  # the new turn is kept
    assert await services.storage.history.count(KEY) == 20  # the stored history is never cut


async def test_chat_retry_after_a_llama_cpp_overflow_with_a_shorter_history(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services(openai={"max_retries": 0})
    ctx = context(settings(backend="chat"))
    for index in range(4):
        completed(await collect(services, turn(long_text(index, 40)), ctx))
    fake_openai.chat.push(HttpError(400, LLAMA_CPP_MESSAGE, type="exceed_context_size_error"))

    final = completed(await collect(services, turn("still there?"), ctx))

    assert final.text == "echo: Ada: still there?" and final.notes == (HISTORY_LEFT_OUT_NOTE,)
    refused, retried = (r.json["messages"] for r in fake_openai.requests_to("/v1/chat/completions")[-2:])
    assert len(refused) == 10 and len(retried) < len(refused)
    assert retried[0]["role"] == "system" and retried[-1]["content"] == "Ada: still there?"
    assert [m["role"] for m in retried[1:-1]] in ([], ["user", "assistant"])


async def test_chat_retry_after_an_empty_llama_cpp_python_stream_with_a_shorter_history(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    # No window configured, and llama-cpp-python never says it is over one: its 200 stream is empty.
    services = await make_services(openai={"max_retries": 0})
    ctx = context(settings(backend="chat"))
    fake_openai.chat_dialect = "llama-cpp-python"
    for index in range(4):
        completed(await collect(services, turn(long_text(index, 40)), ctx))
    fake_openai.context_windows[MODEL] = 300  # the whole history (about 476) is over it

    final = completed(await collect(services, turn("still there?"), ctx))

    assert final.text == "echo: Ada: still there?" and final.notes == (HISTORY_LEFT_OUT_NOTE,)
    emptied, retried = fake_openai.requests_to("/v1/chat/completions")[-2:]
    assert emptied.status == 200 and len(emptied.json["messages"]) == 10
    assert retried.json["messages"][-1]["content"] == "Ada: still there?"
    assert len(retried.json["messages"]) < 10
    assert await services.storage.history.count(KEY) == 10  # the stored history is never cut

    fake_openai.context_windows[MODEL] = 20  # now the message alone is too long: no useless retry
    before = len(fake_openai.requests_to("/v1/chat/completions"))
    final_failure = failed(await collect(services, turn(long_text(9, 40)), ctx))
    assert final_failure.kind == "bad_request" and TOO_LONG in final_failure.reason
    assert len(fake_openai.requests_to("/v1/chat/completions")) - before <= 2


async def test_chat_message_longer_than_the_window_fails_without_a_useless_retry(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services(openai={"max_retries": 0})
    ctx = context(settings(backend="chat"))
    fake_openai.context_windows[MODEL] = 100
    final = failed(await collect(services, turn(long_text(1, 200)), ctx))
    assert final.kind == "bad_request" and TOO_LONG in final.reason
    assert len(fake_openai.requests_to("/v1/chat/completions")) == 1  # no history to leave out
    assert await services.storage.history.count(KEY) == 0


# ------------------------------------------------------------------------------ end to end on Discord


def model_answers(fake: FakeOpenAI, path: str) -> list[RecordedRequest]:
    """The conversation's model calls (no summaries) that were answered or refused."""
    return [r for r in fake.requests_to(path) if r.status is not None and not is_summary_call(r.json)]


def expected_replies(fake: FakeOpenAI, path: str, note: str) -> list[str]:
    """ "noted" for each answered turn, with the note where a refused call came before the answer."""
    replies: list[str] = []
    refused = False
    for request in model_answers(fake, path):
        if request.status == 400:
            refused = True
            continue
        replies.append(f"noted\n\n-# ℹ️ {note}" if refused else "noted")
        refused = False
    return replies


async def thread_of_long_messages(
    tmp_path: Path, fake_openai: FakeOpenAI, backend: str, note: str
) -> list[str]:
    """The real bot in a thread of ten long messages; the bot's messages in the thread once all ten
    answers are shown as the model calls say they should be."""
    path = "/v1/chat/completions" if backend == "chat" else "/v1/responses"

    def answered() -> int:
        return sum(r.status == 200 for r in model_answers(fake_openai, path))

    def answered_is(count: int) -> bool:
        return answered() == count

    async with running_bot(tmp_path, fake_openai, defaults={"backend": backend, "enabled_tools": []}) as h:
        await mention(h, long_text(0))
        thread = await wait_for_thread(h)
        for index in range(1, 10):
            await fake_openai.wait_for(functools.partial(answered_is, index), timeout=10)
            await h.discord.user_message(thread.id, h.alice, long_text(index))
        await fake_openai.wait_for(lambda: answered() == 10, timeout=10)
        expected = expected_replies(fake_openai, path, note)
        assert len(expected) == 10

        def shown() -> list[str]:
            return [m.content for m in h.discord.bot_messages(thread.id)]

        await h.discord.wait_for(lambda: shown() == expected, timeout=10)
        return shown()


async def test_a_busy_responses_thread_on_discord_keeps_being_answered(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.context_windows[MODEL] = 700
    fake_openai.responses.default = short_answers
    replies = await thread_of_long_messages(tmp_path, fake_openai, "responses", SUMMARISED_NOTE)
    assert replies == ["noted"] * 10
    assert fake_openai.truncations
    assert all(r.status == 200 for r in fake_openai.requests_to("/v1/responses"))


async def test_a_busy_chat_thread_on_discord_answers_with_a_note(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.context_windows[MODEL] = 700
    fake_openai.chat.default = short_answers
    replies = await thread_of_long_messages(tmp_path, fake_openai, "chat", HISTORY_LEFT_OUT_NOTE)
    note = f"noted\n\n-# ℹ️ {HISTORY_LEFT_OUT_NOTE}"
    # Once: the refusal that names the window; later requests are cut to fit before they are sent.
    assert replies[0] == "noted" and replies.count(note) == 1
    assert set(replies) == {"noted", note}


async def test_a_thread_moved_to_a_fresh_conversation_says_so_on_discord(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.context_windows[MODEL] = 700
    fake_openai.honours_truncation = False
    fake_openai.responses.default = short_answers
    replies = await thread_of_long_messages(tmp_path, fake_openai, "responses", SUMMARISED_NOTE)
    note = f"noted\n\n-# ℹ️ {SUMMARISED_NOTE}"
    assert note in replies and set(replies) == {"noted", note}
    assert len(fake_openai.conversations) >= 2
