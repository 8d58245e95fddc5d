"""Which optional features this bot offers, and which server serves each: decided once, at start.

With the `chat` backend `OPENAI_API_KEY` is optional, and every feature that would call OpenAI is then
either served by a server the owner configured or off. `Features` is the one place that decides it,
from the configuration and the secrets; `Services` wires clients by it, the commands refuse with its
sentences, and `/help`, `/config show` and `python -m bot --check` show it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bot.config import AppConfig, GuildSettings, Secrets
from bot.errors import UserFacingError

OPENAI = "OpenAI"
EmbeddingSource = Literal["chat", "openai"]
ImageSource = Literal["image_server", "openai"]

KNOWLEDGE = "Knowledge (/remember, /search, the knowledge tool)"
IMAGES = "Image generation (/imagine)"
EXTRACTION = "Extraction (/extract)"
KNOWLEDGE_OFF = (
    "Knowledge (/remember, /search) is off on this bot: its owner turns it on with an embedding model on"
    " the chat server ([chat_backend] embedding_model) or an OpenAI API key."
)
IMAGES_OFF = (
    "Image generation (/imagine) is off on this bot: its owner turns it on with an image server"
    " ([images] base_url) or an OpenAI API key."
)
MODERATION_OFF = (
    "Moderation is off on this bot: it uses OpenAI's moderation, which needs an OpenAI API key"
    " (OPENAI_API_KEY) that this bot does not have."
)
HOSTED_TOOLS_OFF = (
    "Web search and the code interpreter are off on this bot: they run at OpenAI and need an OpenAI API"
    " key and the `responses` backend."
)
RESPONSES_OFF = (
    "The `responses` backend is off on this bot: it talks to OpenAI and needs an OpenAI API key"
    " (OPENAI_API_KEY); use `chat`."
)
OPENAI_KNOWLEDGE_STORE_OFF = (
    "`knowledge_store` cannot be `openai` on this bot: an OpenAI vector store needs an OpenAI API key"
    " (OPENAI_API_KEY) that this bot does not have."
)
EXTRACTION_OFF = (
    "Extraction (/extract) is off here: this server uses the `responses` backend, which needs an OpenAI"
    " API key this bot does not have; an admin can switch `backend` to `chat`."
)


class FeatureOffError(UserFacingError):
    """A command of a feature this bot does not offer; the message says what would turn it on."""


@dataclass(frozen=True, slots=True)
class Feature:
    """One feature: who serves it, or (when nobody does) the sentence saying why and what turns it on."""

    name: str
    """Short, for `--check`: `knowledge`, `images`..."""
    label: str
    """For people: `Image generation (/imagine)`."""
    served_by: str | None
    off_reason: str = ""

    @property
    def on(self) -> bool:
        return self.served_by is not None

    def require(self) -> None:
        """Raise the feature's one sentence when it is off (before anything is sent anywhere)."""
        if self.served_by is None:
            raise FeatureOffError(self.off_reason)

    def describe(self) -> str:
        """Who serves it, or the sentence saying it is off and why (for `/config show`)."""
        return f"{self.label}: {self.served_by}" if self.served_by is not None else self.off_reason

    def check_line(self) -> str:
        """`name: on, <server>` or `name: off; <why>`, for `python -m bot --check`."""
        if self.served_by is not None:
            return f"{self.name}: on, {self.served_by}"
        return f"{self.name}: off; {self.off_reason}"


@dataclass(frozen=True, slots=True)
class Features:
    """What this bot offers with its configuration and secrets; built by `Features.of`, never changed."""

    openai_key: bool
    responses_backend: Feature
    knowledge: Feature
    images: Feature
    moderation: Feature
    hosted_tools: Feature
    embeddings_from: EmbeddingSource | None
    """Where `/remember`, `/search` and the knowledge tool embed, or None when knowledge is off."""
    embedding_model: str | None
    """The one model every guild embeds with (the chat server's), or None: each guild's own."""
    embedding_server: str | None
    """The server whose name qualifies stored vectors (None: OpenAI), so two servers' never mix."""
    images_from: ImageSource | None
    image_model: str | None
    """The image server's model for every guild, or None: each guild's `image_model`."""
    chat_server: str

    @classmethod
    def of(cls, config: AppConfig, secrets: Secrets) -> Features:
        key = secrets.openai_api_key is not None
        chat_url = config.chat_backend.base_url
        chat_server = f"the chat server at {chat_url}" if chat_url else OPENAI
        embeddings_from: EmbeddingSource | None = None
        if config.chat_backend.embedding_model is not None:
            embeddings_from = "chat"
            knowledge = Feature(
                "knowledge", KNOWLEDGE, f"{chat_server} ({config.chat_backend.embedding_model})"
            )
        elif key:
            embeddings_from = "openai"
            knowledge = Feature("knowledge", KNOWLEDGE, OPENAI)
        else:
            knowledge = Feature("knowledge", KNOWLEDGE, None, KNOWLEDGE_OFF)
        images_from: ImageSource | None = None
        if config.images.base_url is not None:
            images_from = "image_server"
            images = Feature("images", IMAGES, f"the image server at {config.images.base_url}")
        elif key:
            images_from = "openai"
            images = Feature("images", IMAGES, OPENAI)
        else:
            images = Feature("images", IMAGES, None, IMAGES_OFF)
        return cls(
            openai_key=key,
            responses_backend=Feature(
                "responses backend", "The `responses` backend", OPENAI if key else None, RESPONSES_OFF
            ),
            knowledge=knowledge,
            images=images,
            moderation=Feature("moderation", "Moderation", OPENAI if key else None, MODERATION_OFF),
            hosted_tools=Feature(
                "hosted tools",
                "Web search and the code interpreter",
                OPENAI if key else None,
                HOSTED_TOOLS_OFF,
            ),
            embeddings_from=embeddings_from,
            embedding_model=config.chat_backend.embedding_model if embeddings_from == "chat" else None,
            embedding_server=chat_url if embeddings_from == "chat" else None,
            images_from=images_from,
            image_model=config.images.model if images_from == "image_server" else None,
            chat_server=chat_server,
        )

    def image_model_for(self, settings: GuildSettings) -> str:
        """The model /imagine asks for: the image server's, else the guild's `image_model`."""
        return self.image_model or settings.image_model

    def extraction(self, settings: GuildSettings) -> Feature:
        """`/extract` goes to the guild's conversation backend: the chat server, or OpenAI's Responses."""
        if settings.backend == "chat":
            return Feature("extraction", EXTRACTION, self.chat_server)
        return Feature("extraction", EXTRACTION, OPENAI if self.openai_key else None, EXTRACTION_OFF)

    def bot_wide(self) -> list[Feature]:
        """Every optional feature, whatever a guild chose: for `--check` and the lists of what is off."""
        return [
            self.knowledge,
            self.images,
            self.moderation,
            self.hosted_tools,
            self.responses_backend,
        ]

    def off(self) -> list[Feature]:
        """The features this bot cannot offer at all (no guild setting turns them on)."""
        return [feature for feature in self.bot_wide() if not feature.on]

    def setting_refusal(self, name: str, value: object) -> str | None:
        """Why a guild may not set `name` to `value` on this bot (one sentence), or None if it may.

        A value that would ask for a feature this bot does not have is refused when it is set, rather
        than passing or failing every message afterwards.
        """
        if self.openai_key:
            return None
        if name == "moderation" and value in ("flag", "block"):
            return (
                f"`moderation` cannot be `{value}` on this bot: moderation uses OpenAI's moderation, which"
                " needs an OpenAI API key (OPENAI_API_KEY) that this bot does not have."
            )
        if name == "backend" and value == "responses":
            return RESPONSES_OFF
        if name == "knowledge_store" and value == "openai":
            return OPENAI_KNOWLEDGE_STORE_OFF
        return None

    def ignored_settings(self, settings: GuildSettings) -> list[str]:
        """The guild's settings this bot does not apply, each as one line (for `/config show`)."""
        lines = []
        if settings.moderation != "off" and not self.moderation.on:
            lines.append(f"`moderation` is `{settings.moderation}` but is treated as off: {MODERATION_OFF}")
        if self.embedding_model is not None:
            lines.append(
                f"`embedding_model` is not used: every Discord server's knowledge is embedded with"
                f" `{self.embedding_model}` on the chat server."
            )
        if self.image_model is not None:
            lines.append(
                f"`image_model` is not used: /imagine asks the image server for `{self.image_model}`."
            )
        return lines
