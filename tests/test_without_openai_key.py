"""A bot on the `chat` backend with no OpenAI key: every feature is served by a configured server or off.

Two stand-in servers tell the servers apart: `fake_openai` plays OpenAI (and must get no request at
all), `local` plays the chat server (Ollama, llama.cpp, vLLM), and a third one an image server.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.config import AppConfig, Secrets
from bot.features import (
    HOSTED_TOOLS_OFF,
    IMAGES_OFF,
    KNOWLEDGE_OFF,
    MODERATION_OFF,
    RESPONSES_OFF,
    FeatureOffError,
    Features,
)
from bot.images import PNG_SIGNATURE
from bot.knowledge import space_name
from standins.discord import CALLBACK_MESSAGE
from standins.openai import FakeOpenAI, Reply
from standins.openai.state import DEFAULT_MODELS
from tests.command_support import run
from tests.harness import Harness, running_bot
from tests.test_cli import run_cli
from tests.test_extraction import SAMPLES
from tests.test_moderation import answer_in_thread

LOCAL_EMBEDDER = "nomic-embed-text"
LOCAL_CHAT_MODEL = "llama3.2"
LOCAL_IMAGE_MODEL = "sdxl"
NO_KEY: dict[str, Any] = {"openai_api_key": None}


@pytest.fixture
async def local() -> AsyncIterator[FakeOpenAI]:
    """The local chat server: the stand-in with the local models it serves."""
    async with FakeOpenAI(
        models=(*DEFAULT_MODELS, LOCAL_EMBEDDER, LOCAL_CHAT_MODEL, LOCAL_IMAGE_MODEL)
    ) as fake:
        yield fake


def local_sections(local: FakeOpenAI, **chat_backend: Any) -> dict[str, Any]:
    """config.toml sections of a local-only bot talking to `local`."""
    return {
        "defaults": {"backend": "chat", "model": LOCAL_CHAT_MODEL},
        "chat_backend": {"base_url": local.base_url, **chat_backend},
    }


def secrets(**values: Any) -> Secrets:
    return Secrets(discord_token=SecretStr("t"), **values)


def config(**sections: Any) -> AppConfig:
    return AppConfig.model_validate(
        {
            "defaults": {"backend": "chat"},
            "chat_backend": {"base_url": "http://127.0.0.1:11434/v1"},
            **sections,
        }
    )


# ----------------------------------------------------------------------------- the one decision


def test_without_a_key_only_what_a_configured_server_serves_is_on() -> None:
    bare = Features.of(config(), secrets())
    assert [(f.name, f.on) for f in bare.bot_wide()] == [
        ("knowledge", False),
        ("images", False),
        ("moderation", False),
        ("hosted tools", False),
        ("responses backend", False),
    ]
    assert [f.off_reason for f in bare.off()] == [
        KNOWLEDGE_OFF,
        IMAGES_OFF,
        MODERATION_OFF,
        HOSTED_TOOLS_OFF,
        RESPONSES_OFF,
    ]
    with pytest.raises(FeatureOffError, match=r"^Image generation \(/imagine\) is off on this bot"):
        bare.images.require()

    served = Features.of(
        config(
            chat_backend={"base_url": "http://127.0.0.1:11434/v1", "embedding_model": LOCAL_EMBEDDER},
            images={"base_url": "http://127.0.0.1:8080/v1", "model": LOCAL_IMAGE_MODEL},
        ),
        secrets(),
    )
    assert served.knowledge.served_by == f"the chat server at http://127.0.0.1:11434/v1 ({LOCAL_EMBEDDER})"
    assert (served.embeddings_from, served.embedding_model) == ("chat", LOCAL_EMBEDDER)
    assert served.images.served_by == "the image server at http://127.0.0.1:8080/v1"
    assert served.images_from == "image_server" and served.image_model == LOCAL_IMAGE_MODEL
    assert not served.moderation.on and not served.responses_backend.on
    assert served.extraction(config().defaults).served_by == "the chat server at http://127.0.0.1:11434/v1"


def test_with_a_key_openai_serves_what_no_other_server_was_given() -> None:
    features = Features.of(config(), secrets(openai_api_key=SecretStr("sk")))
    assert all(feature.served_by == "OpenAI" for feature in features.bot_wide())
    assert features.embeddings_from == "openai" and features.embedding_model is None
    assert features.setting_refusal("moderation", "block") is None


def test_settings_that_need_openai_are_refused_without_a_key_and_others_pass() -> None:
    features = Features.of(config(), secrets())
    refusal = features.setting_refusal("moderation", "block")
    assert refusal is not None and "needs an OpenAI API key" in refusal and refusal.count(".") == 1
    assert features.setting_refusal("moderation", "flag") is not None
    assert features.setting_refusal("moderation", "off") is None
    assert features.setting_refusal("backend", "responses") == RESPONSES_OFF
    assert features.setting_refusal("backend", "chat") is None
    assert features.setting_refusal("model", "anything") is None


def test_vectors_of_a_chat_server_are_stored_apart_from_openais_of_the_same_name() -> None:
    assert space_name("text-embedding-3-small", None) == "text-embedding-3-small"
    here = space_name("text-embedding-3-small", "http://127.0.0.1:11434/v1/")
    there = space_name("text-embedding-3-small", "http://gpu-box:8000/v1")
    assert len({"text-embedding-3-small", here, there}) == 3


# ----------------------------------------------------------------------------- knowledge


async def test_remember_and_search_embed_on_the_chat_server_and_never_call_openai(
    tmp_path: Path, fake_openai: FakeOpenAI, local: FakeOpenAI
) -> None:
    sections = local_sections(local, embedding_model=LOCAL_EMBEDDER)
    async with running_bot(
        tmp_path, fake_openai, extensions=("cogs.knowledge",), secrets=NO_KEY, **sections
    ) as h:
        said = await run(h, "remember", {"text": "The wifi password is hunter2."}, user=h.alice)
        assert not said.ephemeral and "Remembered entry" in said.text
        found = await run(h, "search", {"query": "wifi password"}, user=h.alice)
        assert not found.ephemeral and "hunter2" in found.text
        assert LOCAL_EMBEDDER in found.text  # the footer names the model and its server
        models = {request.json["model"] for request in local.requests_to("/v1/embeddings")}
        assert models == {LOCAL_EMBEDDER}
        spaces = await h.services.storage.knowledge.spaces(h.general.guild_id or 0)
        assert [space.model for space in spaces] == [space_name(LOCAL_EMBEDDER, local.base_url)]
    assert fake_openai.requests == []


async def test_knowledge_without_an_embedding_model_is_off_in_one_private_sentence(
    tmp_path: Path, fake_openai: FakeOpenAI, local: FakeOpenAI
) -> None:
    async with running_bot(
        tmp_path, fake_openai, extensions=("cogs.knowledge",), secrets=NO_KEY, **local_sections(local)
    ) as h:
        for command, options in (("remember", {"text": "a note"}), ("search", {"query": "note"})):
            said = await run(h, command, options, user=h.alice)
            assert said.ephemeral and said.text == KNOWLEDGE_OFF
            assert said.record.response_type == CALLBACK_MESSAGE  # at once, no public placeholder
        with pytest.raises(FeatureOffError, match="Knowledge"):  # what the search_knowledge tool gets
            await h.services.knowledge.search(guild_id=1, query="note", count=3, model="any")
    assert local.requests_to("/v1/embeddings") == [] and fake_openai.requests == []


@pytest.mark.parametrize("embedding_model", [None, LOCAL_EMBEDDER])
async def test_the_knowledge_tool_is_offered_to_the_model_only_when_knowledge_is_on(
    tmp_path: Path, fake_openai: FakeOpenAI, local: FakeOpenAI, embedding_model: str | None
) -> None:
    """An off tool would only say so, and its schema costs a small local model's context."""
    chat_backend = {"embedding_model": embedding_model} if embedding_model else {}
    sections = local_sections(local, **chat_backend)
    sections["defaults"]["enabled_tools"] = ["knowledge", "restaurants"]
    async with running_bot(tmp_path, fake_openai, secrets=NO_KEY, **sections) as h:
        await answer_in_thread(h, "hello")
    tools = {t["function"]["name"] for t in local.requests_to("/v1/chat/completions")[0].json["tools"]}
    assert ("search_knowledge" in tools) == (embedding_model is not None)
    assert "book_table" in tools or "find_restaurants" in tools
    assert fake_openai.requests == []


# ----------------------------------------------------------------------------- images


async def imagine(h: Harness) -> Any:
    return await run(h, "imagine", {"prompt": "a lighthouse at dusk"}, user=h.alice)


async def test_imagine_is_off_without_a_key_or_an_image_server(
    tmp_path: Path, fake_openai: FakeOpenAI, local: FakeOpenAI
) -> None:
    async with running_bot(
        tmp_path, fake_openai, extensions=("cogs.imagine",), secrets=NO_KEY, **local_sections(local)
    ) as h:
        said = await imagine(h)
        assert said.ephemeral and said.text == IMAGES_OFF
    assert fake_openai.requests == [] and local.requests_to("/v1/images") == []


async def test_imagine_goes_to_the_image_server_with_its_own_key_and_model(
    tmp_path: Path, fake_openai: FakeOpenAI, local: FakeOpenAI
) -> None:
    async with FakeOpenAI(models=(LOCAL_IMAGE_MODEL,)) as image_server:
        async with running_bot(
            tmp_path,
            fake_openai,
            extensions=("cogs.imagine",),
            secrets={**NO_KEY, "images_api_key": SecretStr("image-key")},
            images={
                "base_url": image_server.base_url,
                "api_key_env": "IMAGES_API_KEY",
                "model": LOCAL_IMAGE_MODEL,
            },
            **local_sections(local),
        ) as h:
            said = await imagine(h)
            assert not said.ephemeral and said.message.files[0].data.startswith(PNG_SIGNATURE)
        [request] = image_server.requests_to("/v1/images/generations")
        assert request.json["model"] == LOCAL_IMAGE_MODEL
        assert request.headers["authorization"] == "Bearer image-key"
    assert fake_openai.requests == [] and local.requests_to("/v1/images") == []


# ----------------------------------------------------------------------------- extraction


async def test_extract_goes_to_the_chat_server_with_the_targets_json_schema(
    tmp_path: Path, fake_openai: FakeOpenAI, local: FakeOpenAI
) -> None:
    text, answer = SAMPLES["event"]
    local.chat.push(Reply(json.dumps(answer)))
    async with running_bot(
        tmp_path, fake_openai, extensions=("cogs.extract",), secrets=NO_KEY, **local_sections(local)
    ) as h:
        said = await run(h, "extract", {"kind": "event", "text": text}, user=h.alice)
        assert not said.ephemeral and "Science fair" in said.text
    [request] = local.requests_to("/v1/chat/completions")
    assert request.json["model"] == LOCAL_CHAT_MODEL
    assert request.json["response_format"]["type"] == "json_schema"
    assert fake_openai.requests == []


# ----------------------------------------------------------------------------- moderation, /help, /config


async def test_moderation_cannot_be_turned_on_and_a_stored_choice_is_shown_as_not_applied(
    tmp_path: Path, fake_openai: FakeOpenAI, local: FakeOpenAI
) -> None:
    sections = local_sections(local)
    sections["defaults"] = {**sections["defaults"], "moderation": "flag"}  # set while the bot had a key
    extensions = ("cogs.chat", "cogs.config", "cogs.help")
    async with running_bot(tmp_path, fake_openai, extensions=extensions, secrets=NO_KEY, **sections) as h:
        refused = await run(h, "config set", {"setting": "moderation", "value": "block"}, user=h.world.admin)
        assert refused.ephemeral and "needs an OpenAI API key" in refused.text
        backend = await run(h, "config set", {"setting": "backend", "value": "responses"}, user=h.world.admin)
        assert backend.ephemeral and backend.text == RESPONSES_OFF
        settings = await h.services.settings.effective(h.general.guild_id)
        assert (settings.moderation, settings.backend) == ("flag", "chat")  # nothing was stored

        _, reply = await answer_in_thread(h, "hello there")  # answered, not held back by a check
        assert reply.content == "echo: alice: hello there"
        assert local.requests_to("/v1/chat/completions")

        shown = await run(h, "config show", user=h.alice)
        assert "`moderation` is `flag` but is treated as off" in shown.text
        assert IMAGES_OFF in shown.text and KNOWLEDGE_OFF in shown.text
        assert f"Extraction (/extract): the chat server at {local.base_url}" in shown.text

        helped = await run(h, "help", user=h.alice)
        assert helped.ephemeral and MODERATION_OFF in helped.field("Off on this bot")
    assert fake_openai.requests == []


async def test_help_names_each_command_that_is_off_with_its_sentence(
    tmp_path: Path, fake_openai: FakeOpenAI, local: FakeOpenAI
) -> None:
    extensions = ("cogs.help", "cogs.imagine", "cogs.knowledge", "cogs.extract")
    async with running_bot(
        tmp_path, fake_openai, extensions=extensions, secrets=NO_KEY, **local_sections(local)
    ) as h:
        helped = await run(h, "help", user=h.alice)
        commands = helped.field("Commands")
        assert "`/imagine` — off on this bot" in commands and "`/remember` — off on this bot" in commands
        assert "`/extract` — pull an event" in commands  # served by the chat server
        assert helped.field("Off on this bot") == f"{IMAGES_OFF}\n{KNOWLEDGE_OFF}"
        assert "look things up in this server's knowledge" not in helped.field("What I can do for you")


async def test_with_a_key_help_has_nothing_off(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    async with running_bot(tmp_path, fake_openai, extensions=("cogs.help", "cogs.imagine")) as h:
        helped = await run(h, "help", user=h.alice)
        assert "Off on this bot" not in helped.text
        assert "`/imagine` — create images" in helped.field("Commands")


# ----------------------------------------------------------------------------- python -m bot --check


def test_check_says_which_server_serves_each_feature_and_what_is_off(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        '[defaults]\nbackend = "chat"\nmoderation = "block"\n\n'
        f'[chat_backend]\nbase_url = "http://127.0.0.1:11434/v1"\nembedding_model = "{LOCAL_EMBEDDER}"\n\n'
        '[images]\nbase_url = "http://127.0.0.1:8080/v1"\napi_key_env = "IMAGES_API_KEY"\n',
        encoding="utf-8",
    )
    result = run_cli("--check", cwd=tmp_path, OPENAI_API_KEY="", BOT_DATABASE=str(tmp_path / "bot.db"))
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.strip().splitlines())
    assert lines["knowledge"] == f"on, the chat server at http://127.0.0.1:11434/v1 ({LOCAL_EMBEDDER})"
    assert lines["images"] == "on, the image server at http://127.0.0.1:8080/v1"
    assert lines["moderation"] == f"off; {MODERATION_OFF}"
    assert lines["hosted tools"] == f"off; {HOSTED_TOOLS_OFF}"
    assert lines["extraction"] == "on, the chat server at http://127.0.0.1:11434/v1"
    assert "`moderation` is `block` but is treated as off" in lines["not applied"]
    assert (
        lines["secrets"]
        == "DISCORD_TOKEN set, OPENAI_API_KEY not set, CHAT_API_KEY not set, IMAGES_API_KEY not set"
    )
    assert lines["openai"].endswith("(not used: no OPENAI_API_KEY)")
