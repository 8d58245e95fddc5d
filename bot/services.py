"""The core, assembled: storage, model clients, tools, settings and the engine, with no Discord.

The Discord bot builds one of these in `setup_hook`; tests and benchmarks build it directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from openai import AsyncOpenAI, DefaultAioHttpClient

from bot.assistants import AssistantDirectory
from bot.config import AppConfig, Secrets
from bot.conversation_files import ConversationFiles
from bot.engine import Backend, ConversationEngine
from bot.engine.chat_backend import ChatBackend
from bot.engine.inline_images import ImageInliner
from bot.engine.responses_backend import ResponsesBackend
from bot.features import OPENAI_KNOWLEDGE_STORE_OFF, FeatureOffError, Features
from bot.guild_settings import OpenAIModelCatalog, SettingsService
from bot.knowledge import KnowledgeBase
from bot.limits import MeteredCalls
from bot.metrics import BotMetrics
from bot.moderation import Moderator
from bot.process_state import ProcessState
from bot.storage import Storage
from bot.storage.database import is_postgres_url
from bot.storage.settings_events import SettingsChangeListener
from bot.tooling import ToolRegistry
from bot.vector_knowledge import VectorKnowledge

if TYPE_CHECKING:
    import httpx2  # the SDK's HTTP library

log = logging.getLogger(__name__)

PLACEHOLDER_KEY = "not-needed"  # local servers (Ollama, llama.cpp) ignore the key but the SDK wants one


def model_http_client() -> httpx2.AsyncClient:
    """The SDK's own aiohttp transport (aiohttp already comes with discord.py), with its defaults.

    Under the default httpx2 pool every request and every response's end walks all the pool's
    connections (a thousand, with a thousand replies at once), and reading a stream costs about twice
    the CPU; see bench/README.md.
    """
    return DefaultAioHttpClient()


@dataclass
class Services:
    config: AppConfig
    storage: Storage
    state: ProcessState
    openai: AsyncOpenAI
    chat_client: AsyncOpenAI
    tools: ToolRegistry
    settings: SettingsService
    engine: ConversationEngine
    knowledge: KnowledgeBase
    metered: MeteredCalls
    """Direct model calls from commands: limits checked, a gate slot, usage recorded."""
    metrics: BotMetrics
    """What the engine counts; the bot serves it on `/metrics` when `[metrics] port` is set."""
    features: Features
    """What this bot offers and which server serves each; commands and /help read it, never the keys."""
    vector_knowledge: VectorKnowledge
    """Guilds whose `knowledge_store` is `openai`: their files in an OpenAI vector store."""
    assistants: AssistantDirectory
    """The guilds' named assistants and which channel, thread or DM answers as which."""
    settings_listener: SettingsChangeListener | None = None
    """On PostgreSQL: other processes' settings changes, dropped from this process's cache."""
    images: ImageInliner | None = None
    """Downloads images for the chat backend's requests (closed with the rest)."""
    image_client: AsyncOpenAI | None = None
    """Where /imagine goes (the image server or OpenAI); None when image generation is off."""

    @classmethod
    async def start(
        cls,
        config: AppConfig,
        secrets: Secrets,
        *,
        openai_base_url: str | None = None,
        metrics: BotMetrics | None = None,
    ) -> Services:
        """Open the database (migrating it) and build everything on top of it.

        `metrics`: the bot's (shared with its write scheduler); None makes one for this core alone.
        """
        metrics = metrics if metrics is not None else BotMetrics()
        storage = await Storage.open(config.storage.database)
        state = ProcessState.create(
            max_concurrent_model_calls=config.engine.max_concurrent_model_calls,
            max_waiting_model_calls=config.engine.max_waiting_model_calls,
            knowledge_memory_bytes=config.storage.knowledge_memory_mb << 20,
        )
        openai_key = secrets.openai_api_key.get_secret_value() if secrets.openai_api_key else PLACEHOLDER_KEY
        openai_client = AsyncOpenAI(
            api_key=openai_key,
            base_url=openai_base_url,  # None: the SDK's default, or OPENAI_BASE_URL
            timeout=config.openai.request_timeout_s,
            max_retries=config.openai.max_retries,
            http_client=model_http_client(),
        )
        chat_base_url = config.chat_backend.base_url
        if chat_base_url is None:
            chat_client = openai_client
        else:
            chat_key = secrets.chat_api_key.get_secret_value() if secrets.chat_api_key else PLACEHOLDER_KEY
            chat_client = AsyncOpenAI(
                api_key=chat_key,
                base_url=chat_base_url,
                timeout=config.openai.request_timeout_s,
                max_retries=config.openai.max_retries,
                http_client=model_http_client(),
            )
        features = Features.of(config, secrets)
        if features.off():
            log.info("Off on this bot: %s", " ".join(feature.off_reason for feature in features.off()))
        if config.defaults.moderation != "off" and not features.moderation.on:
            log.warning(
                "[defaults] moderation = %r is not applied: %s",
                config.defaults.moderation,
                features.moderation.off_reason,
            )
        image_client = openai_client if features.images_from == "openai" else None
        if features.images_from == "image_server" and config.images.base_url is not None:
            image_key = (
                secrets.images_api_key.get_secret_value() if secrets.images_api_key else PLACEHOLDER_KEY
            )
            image_client = AsyncOpenAI(
                api_key=image_key,
                base_url=config.images.base_url,
                timeout=config.openai.request_timeout_s,
                max_retries=config.openai.max_retries,
                http_client=model_http_client(),
            )
        embedding_client: AsyncOpenAI | None = None  # knowledge off
        if features.embeddings_from is not None:
            embedding_client = chat_client if features.embeddings_from == "chat" else openai_client
        images = ImageInliner()
        tools = ToolRegistry(storage.tool_calls, confirmation_timeout_s=config.engine.confirmation_timeout_s)
        backends: dict[str, Backend] = {}
        if features.responses_backend.on:  # without a key, the engine says the backend is not configured
            backends["responses"] = ResponsesBackend(
                openai_client,
                storage,
                tools,
                state.model_gate,
                max_tool_rounds=config.engine.max_tool_rounds,
                files=ConversationFiles(openai_client, storage.conversation_files),
            )
        backends |= {
            "chat": ChatBackend(
                chat_client,
                storage,
                tools,
                state.model_gate,
                max_tool_rounds=config.engine.max_tool_rounds,
                history_token_budget=config.chat_backend.history_token_budget,
                images=images,
                context_tokens=config.chat_backend.context_tokens,
                tool_files=state.tool_files,
            ),
        }
        engine = ConversationEngine(
            storage=storage,
            state=state,
            backends=backends,
            config=config.engine,
            # Without a key there is no moderation to ask: `Features` says so wherever it is set.
            moderator=(
                Moderator(openai_client, model=config.openai.moderation_model)
                if features.moderation.on
                else None
            ),
            metrics=metrics,
        )
        model_catalog = OpenAIModelCatalog(openai_client) if features.openai_key else None
        settings = SettingsService(
            storage, state.settings, config.defaults, providers=config.providers, models=model_catalog
        )
        settings_listener = None
        if is_postgres_url(config.storage.database):
            settings_listener = SettingsChangeListener(
                str(config.storage.database), changed=state.settings.forget, missed=state.settings.forget_all
            )
            await settings_listener.start()
        return cls(
            config=config,
            storage=storage,
            state=state,
            openai=openai_client,
            chat_client=chat_client,
            tools=tools,
            settings=settings,
            engine=engine,
            knowledge=KnowledgeBase(
                embedding_client,
                storage,
                state.knowledge,
                served_model=features.embedding_model,
                server=features.embedding_server,
                off_reason=features.knowledge.off_reason,
            ),
            metered=MeteredCalls(storage.usage, state.cooldowns, state.model_gate),
            metrics=metrics,
            settings_listener=settings_listener,
            images=images,
            features=features,
            assistants=AssistantDirectory(storage.assistants, settings, models=model_catalog),
            image_client=image_client,
            vector_knowledge=VectorKnowledge(
                openai_client if features.openai_key else None,
                storage.vector_stores,
                off_reason=OPENAI_KNOWLEDGE_STORE_OFF,
            ),
        )

    def image_generation(self) -> AsyncOpenAI:
        """The client /imagine sends to; raises the feature's one sentence when this bot has none."""
        if self.image_client is None:
            raise FeatureOffError(self.features.images.off_reason)
        return self.image_client

    async def close(self) -> None:
        if self.settings_listener is not None:
            await self.settings_listener.close()
        if self.images is not None:
            await self.images.close()
        await self.openai.close()
        if self.chat_client is not self.openai:
            await self.chat_client.close()
        if self.image_client is not None and self.image_client is not self.openai:
            await self.image_client.close()
        await self.storage.close()
