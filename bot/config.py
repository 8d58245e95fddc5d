"""The bot's configuration: one pydantic schema for `config.toml`, secrets from the environment.

`config.example.toml` documents every setting; a setting absent from the file takes the default
written here. Secrets (`DISCORD_TOKEN`, `OPENAI_API_KEY`) never live in the file: they come from the
environment or a `.env` file (`DOTENV_LOOKUP` says where it is looked for). `ENVIRONMENT_VARIABLES` is
the one list of the variables the bot reads, for `--help`, the docs and a test.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.errors import ConfigError
from bot.time_zones import is_time_zone, unknown_time_zone

DEFAULT_CONFIG_PATH = Path("config.toml")
DEFAULT_DATABASE_PATH = Path("data/bot.db")

DEFAULT_INSTRUCTIONS = (
    "You are a helpful, friendly assistant in a Discord server. Several people may talk to you in one "
    "conversation: each user message starts with the speaker's display name and a colon. Answer in "
    "Discord markdown, concisely. Use the tools you are given when they help; never invent the result "
    "of a tool call."
)

# The names of the tools a guild can switch on. Function tools live in `tools/`; the hosted ones run
# at OpenAI (Responses backend only) and cost money, so they are off by default.
FUNCTION_TOOL_FAMILIES = ("restaurants", "rides", "knowledge")
HOSTED_TOOLS = ("code_interpreter", "web_search")
IMAGE_TOOL = "image_generation"
"""Images drawn in a conversation: OpenAI's hosted tool on `responses`, a function over the image
server on `chat`; offered only where `images_enabled` (and this bot has image generation)."""
ALL_TOOLS = (*FUNCTION_TOOL_FAMILIES, *HOSTED_TOOLS, IMAGE_TOOL)

Backend = Literal["responses", "chat"]
KnowledgeStore = Literal["local", "openai"]
ModerationMode = Literal["off", "flag", "block"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LOG_LEVELS: tuple[LogLevel, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
BUILTIN_PROVIDER = "builtin"
PROVIDER_SETTINGS = {"booking_provider": "restaurants", "ride_provider": "rides"}
"""The settings that pick a provider, and the family of providers each may name."""
DOTENV_LOOKUP = (
    "a .env file in the folder the bot is started from, or else in the nearest parent folder with one"
)


@dataclass(frozen=True)
class EnvironmentVariable:
    """One variable the bot (or the OpenAI SDK for it) reads from the environment or `.env`."""

    name: str
    meaning: str
    read_by_sdk: bool = False
    """True when the bot never reads it itself: the OpenAI SDK does."""


class SettingProblem(ValueError):
    """A cross-setting rule broken: names the setting, so the error line can too."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(problem)
        self.setting = setting
        self.problem = problem


class _Strict(BaseModel):
    """Unknown keys are errors: a typo in config.toml must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class GuildSettings(_Strict):
    """What a server owner can tune for their server (`/config`); `[defaults]` in config.toml.

    The single schema of every per-guild setting: the config file's defaults, the values stored per
    guild in SQLite and the `/config set` commands are all validated by this model.
    """

    model: Annotated[str, Field(min_length=1, max_length=100)] = Field(
        default="gpt-5.5", description="Model for conversations."
    )
    instructions: Annotated[str, Field(min_length=1, max_length=8000)] = Field(
        default=DEFAULT_INSTRUCTIONS, description="System prompt sent with every turn."
    )
    backend: Backend = Field(
        default="responses",
        description="`responses` (OpenAI Conversations) or `chat` (any OpenAI-compatible server).",
    )
    enabled_tools: tuple[str, ...] = Field(
        default=FUNCTION_TOOL_FAMILIES, description="Tools the model may use here."
    )
    channels: tuple[int, ...] = Field(
        default=(), description="Channel ids where the bot answers mentions; empty means everywhere."
    )
    mention_opens_thread: bool = Field(
        default=True, description="A mention in a channel opens a thread (else: reply in place)."
    )
    images_enabled: bool = Field(default=True, description="Whether /imagine is available.")
    image_model: Annotated[str, Field(min_length=1, max_length=100)] = Field(
        default="gpt-image-2", description="Model for /imagine."
    )
    embedding_model: Annotated[str, Field(min_length=1, max_length=100)] = Field(
        default="text-embedding-3-small", description="Model for /remember and /search."
    )
    confirm_side_effects: bool = Field(
        default=True, description="Ask the user before a tool books or orders anything."
    )
    timezone: str = Field(default="UTC", description="IANA time zone for bookings, e.g. Europe/Paris.")
    user_cooldown_s: Annotated[float, Field(ge=0, le=3600)] = Field(
        default=0.0, description="Seconds a member waits between two messages to the bot."
    )
    max_queued_turns_per_user: Annotated[int, Field(ge=1, le=50)] = Field(
        default=3, description="Messages one member may have waiting for an answer."
    )
    daily_token_budget_guild: Annotated[int, Field(ge=0)] = Field(
        default=0, description="Tokens the whole server may use per UTC day; 0 means unlimited."
    )
    daily_token_budget_user: Annotated[int, Field(ge=0)] = Field(
        default=0, description="Tokens one member may use per UTC day; 0 means unlimited."
    )
    moderation: ModerationMode = Field(
        default="off", description="Check each message with OpenAI moderation: off, flag or block."
    )
    mod_log_channel: int | None = Field(
        default=None, description="Channel id that receives moderation flags."
    )
    moderation_fail_open: bool = Field(
        default=True, description="If the moderation API fails, let the message through."
    )
    booking_provider: Annotated[str, Field(min_length=1, max_length=50)] = Field(
        default="builtin", description="Where table bookings go: `builtin` or a [providers] entry."
    )
    ride_provider: Annotated[str, Field(min_length=1, max_length=50)] = Field(
        default="builtin", description="Where ride orders go: `builtin` or a [providers] entry."
    )
    knowledge_store: KnowledgeStore = Field(
        default="local",
        description="Where /remember keeps knowledge: `local` (the bot's database) or `openai` (an OpenAI"
        " vector store searched by the hosted file_search tool; `responses` backend only).",
    )

    @field_validator("enabled_tools", mode="before")
    @classmethod
    def _known_tools(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            unknown = [name for name in value if name not in ALL_TOOLS]
            if unknown:
                raise ValueError(f"unknown tool {unknown[0]!r}; choose from {', '.join(ALL_TOOLS)}")
            return tuple(dict.fromkeys(value))  # de-duplicated, order kept
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        if not is_time_zone(value):
            raise ValueError(unknown_time_zone(value))
        return value


class DiscordConfig(_Strict):
    """How the bot behaves on Discord as a whole (not per guild)."""

    allow_dms: bool = Field(default=True, description="Answer direct messages.")
    command_guild_ids: tuple[int, ...] = Field(
        default=(), description="Sync slash commands to these guilds at start-up (instant, for testing)."
    )
    sync_commands: bool = Field(default=True, description="Sync slash commands at start-up.")
    max_text_attachment_chars: Annotated[int, Field(ge=0, le=100_000)] = Field(
        default=20_000, description="Text attachments are inlined into the turn up to this many characters."
    )
    max_attachment_mb: Annotated[int, Field(ge=1, le=512)] = Field(
        default=25,
        description="Largest attachment given to the model as a file (the Files API takes up to 512 MB).",
    )
    shutdown_grace_s: Annotated[float, Field(ge=0, le=600)] = Field(
        default=8.0,
        description="On SIGTERM or Ctrl-C, seconds for the answers in progress to finish before the bot"
        " stops them (with a note) and exits; keep it under the supervisor's kill timeout (10 s in Docker).",
    )
    shard_count: Annotated[int, Field(ge=1)] | None = Field(
        default=None,
        description="How many shards the bot runs on in all (every process alike); unset: the count"
        " Discord recommends, all of them in this process.",
    )
    shard_ids: tuple[int, ...] | None = Field(
        default=None,
        description="The shards this process connects (needs shard_count); unset: all of them.",
    )
    process_count: Annotated[int, Field(ge=1, le=10_000)] | None = Field(
        default=None,
        description="How many processes run the bot's token; without [redis] url each keeps to"
        " 1/process_count of Discord's global write budget. Unset: shard_count / the number of"
        " shard_ids (rounded up), else 1.",
    )

    @property
    def processes(self) -> int:
        """The processes sharing the token, as `process_count` says or the shards given suggest."""
        if self.process_count is not None:
            return self.process_count
        if self.shard_ids and self.shard_count:
            return -(-self.shard_count // len(self.shard_ids))
        return 1

    @model_validator(mode="after")
    def _shards_consistent(self) -> DiscordConfig:
        """Shard ids are refused at start, as Discord would refuse them at IDENTIFY (close 4010)."""
        if self.shard_ids is None:
            return self
        if self.shard_count is None:
            raise SettingProblem("discord.shard_ids", "needs discord.shard_count (how many shards in all)")
        if not self.shard_ids:
            raise SettingProblem("discord.shard_ids", "is empty (leave it unset to run every shard)")
        outside = sorted({i for i in self.shard_ids if not 0 <= i < self.shard_count})
        if outside:
            raise SettingProblem(
                "discord.shard_ids",
                f"names {outside}, outside 0..{self.shard_count - 1} (shard_count is {self.shard_count})",
            )
        repeated = sorted({i for i in self.shard_ids if self.shard_ids.count(i) > 1})
        if repeated:
            raise SettingProblem("discord.shard_ids", f"names {repeated} more than once")
        return self


class OpenAIConfig(_Strict):
    """The model API client (the SDK reads OPENAI_BASE_URL itself)."""

    request_timeout_s: Annotated[float, Field(gt=0, le=600)] = 60.0
    max_retries: Annotated[int, Field(ge=0, le=10)] = 2
    moderation_model: str = "omni-moderation-latest"


class ChatBackendConfig(_Strict):
    """The `chat` backend: any server speaking Chat Completions (Ollama, vLLM, llama.cpp, gateways)."""

    base_url: str | None = Field(
        default=None, description="e.g. http://localhost:11434/v1; unset means the OpenAI client's URL."
    )
    api_key_env: str = Field(
        default="CHAT_API_KEY", description="Environment variable holding this server's key, if any."
    )
    history_token_budget: Annotated[int, Field(ge=256, le=1_000_000)] = Field(
        default=8000, description="Older messages are dropped to keep the history under this."
    )
    context_tokens: Annotated[int, Field(ge=512, le=10_000_000)] | None = Field(
        default=None,
        description="The server's context window in tokens (llama.cpp's -c / --n_ctx); unset: what the"
        " server's model list says, else learned from its first context-length error.",
    )
    embedding_model: Annotated[str, Field(min_length=1, max_length=100)] | None = Field(
        default=None,
        description="A model this server embeds with (its /v1/embeddings, e.g. nomic-embed-text): /remember,"
        " /search and the knowledge tool then use it for every guild instead of OpenAI; unset: OpenAI"
        " (with an OpenAI key) or knowledge off.",
    )


class ImagesConfig(_Strict):
    """Where /imagine goes: an image server speaking the OpenAI Images API, else OpenAI with a key."""

    base_url: Annotated[str, Field(pattern=r"^https?://")] | None = Field(
        default=None,
        description="e.g. http://localhost:8080/v1; unset: OpenAI when OPENAI_API_KEY is set, else /imagine"
        " is off.",
    )
    api_key_env: str | None = Field(
        default=None, description="Environment variable holding the image server's key, if it needs one."
    )
    model: Annotated[str, Field(min_length=1, max_length=100)] | None = Field(
        default=None,
        description="The image server's model, for every guild; unset: each guild's image_model.",
    )


class EngineConfig(_Strict):
    """Limits of the conversation engine."""

    max_tool_rounds: Annotated[int, Field(ge=1, le=50)] = 8
    max_queued_turns: Annotated[int, Field(ge=1, le=100)] = Field(
        default=10, description="Turns waiting in one conversation before new ones are refused."
    )
    turn_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 300.0
    max_concurrent_model_calls: Annotated[int, Field(ge=1, le=100_000)] = 2000
    max_waiting_model_calls: Annotated[int, Field(ge=0, le=1_000_000)] = 5000
    confirmation_timeout_s: Annotated[float, Field(gt=0, le=900)] = 120.0


class StreamingConfig(_Strict):
    """How replies are written into Discord."""

    edit_interval_s: Annotated[float, Field(ge=0.2, le=10)] = 1.0
    global_writes_per_s: Annotated[int, Field(ge=1, le=50)] = 45


class ProviderConfig(_Strict):
    """An external HTTP booking or ride service a guild can send its tool calls to."""

    serves: Literal["restaurants", "rides"]
    base_url: Annotated[str, Field(pattern=r"^https?://")]
    api_key_env: str | None = Field(default=None, description="Environment variable holding its API key.")
    timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0


PUBLIC_NOMINATIM_HOST = "nominatim.openstreetmap.org"
PUBLIC_NOMINATIM_MIN_INTERVAL_S = 1.0  # its usage policy: at most one request a second
LIBRARY_USER_AGENTS = re.compile(
    r"^\s*(python|python-urllib|python-requests|aiohttp|httpx|curl|wget|mozilla)\b", re.IGNORECASE
)
"""The agents HTTP libraries send by default; Nominatim's usage policy refuses them."""


class GeocoderConfig(_Strict):
    """A Nominatim-compatible geocoder for ride addresses; off unless a URL is given (then the ride
    tools know only the demo places, and a ride to any other address is booked with a metered fare)."""

    url: Annotated[str, Field(pattern=r"^https?://")] | None = Field(
        default=None,
        description="e.g. http://localhost:8080 (a self-hosted Nominatim) or"
        " https://nominatim.openstreetmap.org (the public one: mind its usage policy).",
    )
    user_agent: str = Field(
        default="",
        description="Identifies this bot to the geocoder, e.g. 'acme-guild-bot/1.0 (admin@example.org)';"
        " required with a URL.",
    )
    min_interval_s: Annotated[float, Field(ge=0, le=60)] = Field(
        default=PUBLIC_NOMINATIM_MIN_INTERVAL_S,
        description="Least time between two requests from this process (at least 1 for the public one).",
    )
    timeout_s: Annotated[float, Field(gt=0, le=60)] = Field(
        default=10.0, description="How long one lookup may take before the user is told it failed."
    )

    @model_validator(mode="after")
    def _identified_and_polite(self) -> GeocoderConfig:
        """Refused at start, not at the first ride: a geocoder that would refuse us or be overrun."""
        if self.url is None:
            return self
        if not self.user_agent.strip():
            raise SettingProblem(
                "geocoder.user_agent",
                "must identify this bot to the geocoder, e.g. 'acme-guild-bot/1.0 (admin@example.org)'",
            )
        if LIBRARY_USER_AGENTS.match(self.user_agent):
            raise SettingProblem(
                "geocoder.user_agent",
                "is an HTTP library's default; Nominatim's usage policy wants one naming this bot and a"
                " contact, e.g. 'acme-guild-bot/1.0 (admin@example.org)'",
            )
        host = (urlsplit(self.url).hostname or "").lower()
        if host == PUBLIC_NOMINATIM_HOST and self.min_interval_s < PUBLIC_NOMINATIM_MIN_INTERVAL_S:
            raise SettingProblem(
                "geocoder.min_interval_s",
                f"must be at least {PUBLIC_NOMINATIM_MIN_INTERVAL_S:g} for the public Nominatim (its"
                " usage policy: at most one request a second)",
            )
        return self


class LoggingConfig(_Strict):
    """What the bot writes to its log (stderr)."""

    level: LogLevel = Field(
        default="INFO", description="DEBUG, INFO, WARNING, ERROR or CRITICAL; `--log-level` overrides it."
    )

    @field_validator("level", mode="before")
    @classmethod
    def _upper_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


POSTGRES_URL_SCHEMES = ("postgresql://", "postgres://")


class StorageConfig(_Strict):
    database: Path | str = Field(
        default=DEFAULT_DATABASE_PATH,
        description="The SQLite file, or a postgresql://user:password@host:port/db URL (PostgreSQL,"
        " for several shard processes on one database).",
    )
    knowledge_memory_mb: Annotated[int, Field(ge=16, le=1_000_000)] = Field(
        default=1024,
        description="Memory for the knowledge search indexes; the least recently searched are dropped"
        " past it and load again from the database when next needed.",
    )
    knowledge_document_max_mb: Annotated[int, Field(ge=1, le=100)] = Field(
        default=20, description="The largest file /remember reads (PDF, DOCX, Markdown, HTML or text)."
    )

    @field_validator("database", mode="before")
    @classmethod
    def _file_unless_url(cls, value: object) -> object:
        """A PostgreSQL URL stays text (a Path would fold its `//`); anything else is a file path."""
        if isinstance(value, str) and not value.startswith(POSTGRES_URL_SCHEMES):
            return Path(value)
        return value


class MetricsConfig(_Strict):
    """The health and metrics endpoint (`/healthz`, `/metrics`); off unless a port is given."""

    port: Annotated[int, Field(ge=0, le=65535)] | None = Field(
        default=None,
        description="Serve /healthz and /metrics on this port; unset means off, 0 any free port."
        " BOT_METRICS_PORT overrides it.",
    )
    host: Annotated[str, Field(min_length=1)] = Field(
        default="127.0.0.1", description="Address to listen on; 0.0.0.0 in a container."
    )


REDIS_URL_SCHEMES = ("redis://", "rediss://", "unix://")


class RedisConfig(_Strict):
    """Redis, where every process of the bot shares one Discord write budget; off unless a URL is given."""

    url: str | None = Field(
        default=None,
        description="e.g. redis://localhost:6379/0; BOT_REDIS_URL overrides it. Unset: each process keeps"
        " to its share of the budget ([discord] process_count).",
    )

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        """Refused at start, not at the first write: the scheme and the shape (the password never shown)."""
        if value is None or not value.strip():
            return None
        value = value.strip()
        # SettingProblem: the error line then leaves out the value, which may hold a password
        if not value.startswith(REDIS_URL_SCHEMES):
            raise SettingProblem("redis.url", f"must start with {', '.join(REDIS_URL_SCHEMES)}")
        from redis.connection import parse_url  # only where a URL is given

        try:
            parse_url(value)  # type: ignore[no-untyped-call]
        except ValueError as exc:
            raise SettingProblem("redis.url", f"is not a Redis URL: {str(exc).split(':')[0]}") from None
        return value


class AppConfig(_Strict):
    """Everything in config.toml."""

    discord: DiscordConfig = DiscordConfig()
    openai: OpenAIConfig = OpenAIConfig()
    chat_backend: ChatBackendConfig = ChatBackendConfig()
    images: ImagesConfig = ImagesConfig()
    engine: EngineConfig = EngineConfig()
    streaming: StreamingConfig = StreamingConfig()
    storage: StorageConfig = StorageConfig()
    logging: LoggingConfig = LoggingConfig()
    metrics: MetricsConfig = MetricsConfig()
    redis: RedisConfig = RedisConfig()
    geocoder: GeocoderConfig = GeocoderConfig()
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    defaults: GuildSettings = GuildSettings()

    @model_validator(mode="after")
    def _providers_defined(self) -> AppConfig:
        """`booking_provider` / `ride_provider` must name a provider of their kind: refused at start,
        not at the first booking."""
        for setting, family in PROVIDER_SETTINGS.items():
            chosen = getattr(self.defaults, setting)
            offered = provider_choices(self.providers, family)
            if chosen not in offered:
                raise SettingProblem(
                    f"defaults.{setting}",
                    f"names {chosen!r}, which [providers] does not define for {family}; "
                    f"defined: {', '.join(offered)}",
                )
        return self


def provider_choices(providers: Mapping[str, ProviderConfig], family: str) -> list[str]:
    """What a `*_provider` setting of `family` ("restaurants" or "rides") may name."""
    return [BUILTIN_PROVIDER, *sorted(name for name, config in providers.items() if config.serves == family)]


ENVIRONMENT_VARIABLES: tuple[EnvironmentVariable, ...] = (
    EnvironmentVariable("DISCORD_TOKEN", "the bot's token (required)"),
    EnvironmentVariable(
        "OPENAI_API_KEY",
        'the OpenAI API key (required unless backend = "chat" with a [chat_backend] base_url; without'
        " it, what only OpenAI serves is off: --check lists it)",
    ),
    EnvironmentVariable("OPENAI_BASE_URL", "another server for the OpenAI client", read_by_sdk=True),
    EnvironmentVariable("DISCORD_API_BASE_URL", "a Discord-compatible server instead of Discord (tests)"),
    EnvironmentVariable(
        "BOT_DATABASE", "the SQLite file or a postgresql:// URL; overrides [storage] database"
    ),
    EnvironmentVariable(
        "BOT_METRICS_PORT", "serve /healthz and /metrics on this port; overrides [metrics] port"
    ),
    EnvironmentVariable("BOT_SHARD_COUNT", "how many shards in all; overrides [discord] shard_count"),
    EnvironmentVariable("BOT_SHARD_IDS", "this process's shards, e.g. 0,1; overrides [discord] shard_ids"),
    EnvironmentVariable(
        "BOT_PROCESS_COUNT", "how many processes run the token; overrides [discord] process_count"
    ),
    EnvironmentVariable(
        "BOT_REDIS_URL", "Redis for one Discord write budget across processes; overrides [redis] url"
    ),
    EnvironmentVariable(
        str(ChatBackendConfig.model_fields["api_key_env"].default),
        "the chat backend's key, if its server needs one ([chat_backend] api_key_env names another)",
    ),
)
"""Every variable the bot reads, whatever the configuration; `python -m bot --help` lists them."""
CONFIG_NAMED_VARIABLES = (
    "[providers.NAME] api_key_env: the variable holding that provider's key;\n"
    "  [images] api_key_env: the one holding the image server's key"
)
"""Variables whose names only the configuration knows."""


class Secrets(BaseModel):
    """Credentials, only ever from the environment."""

    model_config = ConfigDict(frozen=True)

    discord_token: SecretStr
    openai_api_key: SecretStr | None = None
    chat_api_key: SecretStr | None = None
    images_api_key: SecretStr | None = None
    discord_api_base_url: str | None = None


def load_config(path: Path, *, required: bool, env: Mapping[str, str] | None = None) -> AppConfig:
    """Read and validate `path`; a missing file gives the defaults unless it was asked for by name.

    Raises `ConfigError` naming the file and the setting, never a traceback-worthy exception.
    """
    env = os.environ if env is None else env
    data: dict[str, object] = {}
    if path.exists() or required:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(str(path), "file", "not found (copy config.example.toml to start)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(str(path), "file", f"cannot be read: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(path), "file", f"is not valid TOML: {exc}") from None
    try:
        config = AppConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(str(path), *_first_problem(exc)) from None
    hosted_problem = hosted_tools_problem(config.defaults)
    if hosted_problem is not None:
        raise ConfigError(str(path), "defaults.enabled_tools", hosted_problem)
    store_problem = knowledge_store_problem(config.defaults)
    if store_problem is not None:
        raise ConfigError(str(path), "defaults.knowledge_store", store_problem)
    database = env.get("BOT_DATABASE")
    if database:
        storage = StorageConfig.model_validate({**config.storage.model_dump(), "database": database})
        config = config.model_copy(update={"storage": storage})
    config = with_metrics_port(config, env.get("BOT_METRICS_PORT"))
    config = with_write_budget(config, env.get("BOT_REDIS_URL"), env.get("BOT_PROCESS_COUNT"))
    return with_shards(
        config,
        shard_count=env.get("BOT_SHARD_COUNT"),
        shard_ids=env.get("BOT_SHARD_IDS"),
        source="environment",
        names=("BOT_SHARD_COUNT", "BOT_SHARD_IDS"),
    )


def with_shards(
    config: AppConfig,
    *,
    shard_count: str | None,
    shard_ids: str | None,
    source: str,
    names: tuple[str, str],
) -> AppConfig:
    """`config` with `[discord] shard_count` / `shard_ids` replaced by the text given (the environment's
    or the command line's; None or blank keeps the file's), validated like the file.

    A count given without ids means every shard of that count, not the file's ids.
    """
    count_name, ids_name = names
    update: dict[str, object] = {}
    if shard_count is not None and shard_count.strip():
        try:
            update["shard_count"] = int(shard_count.strip())
        except ValueError:
            raise ConfigError(source, count_name, f"is not a whole number (got {shard_count!r})") from None
        update["shard_ids"] = None
    if shard_ids is not None and shard_ids.strip():
        try:
            update["shard_ids"] = tuple(int(part) for part in shard_ids.split(","))
        except ValueError:
            raise ConfigError(
                source, ids_name, f"is not a comma-separated list of shard numbers (got {shard_ids!r})"
            ) from None
    if not update:
        return config
    try:
        discord_config = DiscordConfig.model_validate({**config.discord.model_dump(), **update})
    except ValidationError as exc:
        setting, problem = _first_problem(exc)
        named = {"shard_count": count_name, "discord.shard_ids": ids_name, "shard_ids": ids_name}
        raise ConfigError(source, named.get(setting, setting), problem) from None
    return config.model_copy(update={"discord": discord_config})


def with_metrics_port(config: AppConfig, port: str | None) -> AppConfig:
    """`config` with `[metrics] port` replaced by `BOT_METRICS_PORT`'s text (None or blank keeps it)."""
    if port is None or not port.strip():
        return config
    try:
        metrics = MetricsConfig.model_validate({**config.metrics.model_dump(), "port": int(port.strip())})
    except (ValueError, ValidationError):
        raise ConfigError(
            "environment", "BOT_METRICS_PORT", f"must be a port number from 0 to 65535 (got {port!r})"
        ) from None
    return config.model_copy(update={"metrics": metrics})


def with_write_budget(config: AppConfig, redis_url: str | None, process_count: str | None) -> AppConfig:
    """`config` with `[redis] url` and `[discord] process_count` replaced by `BOT_REDIS_URL` and
    `BOT_PROCESS_COUNT` (None or blank keeps the file's)."""
    if redis_url is not None and redis_url.strip():
        try:
            redis = RedisConfig.model_validate({"url": redis_url})
        except ValidationError as exc:
            raise ConfigError("environment", "BOT_REDIS_URL", _first_problem(exc)[1]) from None
        config = config.model_copy(update={"redis": redis})
    if process_count is not None and process_count.strip():
        try:
            count = int(process_count.strip())
            discord_config = DiscordConfig.model_validate(
                {**config.discord.model_dump(), "process_count": count}
            )
        except (ValueError, ValidationError):
            raise ConfigError(
                "environment", "BOT_PROCESS_COUNT", f"must be a whole number from 1 (got {process_count!r})"
            ) from None
        config = config.model_copy(update={"discord": discord_config})
    return config


def load_secrets(config: AppConfig, *, env: Mapping[str, str] | None = None) -> Secrets:
    """Take the credentials from the environment; the ones the configuration needs must be there."""
    env = os.environ if env is None else env
    token = env.get("DISCORD_TOKEN", "").strip()
    if not token:
        raise ConfigError("environment", "DISCORD_TOKEN", "is not set (put it in .env or the environment)")
    openai_key = env.get("OPENAI_API_KEY", "").strip() or None
    needs_openai = config.defaults.backend == "responses" or config.chat_backend.base_url is None
    if needs_openai and openai_key is None:
        raise ConfigError(
            "environment",
            "OPENAI_API_KEY",
            'is not set (put it in .env, or use backend = "chat" with [chat_backend] base_url)',
        )
    chat_key = env.get(config.chat_backend.api_key_env, "").strip() or None
    images_env = config.images.api_key_env
    images_key = (env.get(images_env, "").strip() or None) if images_env else None
    return Secrets(
        discord_token=SecretStr(token),
        openai_api_key=SecretStr(openai_key) if openai_key else None,
        chat_api_key=SecretStr(chat_key) if chat_key else None,
        images_api_key=SecretStr(images_key) if images_key else None,
        discord_api_base_url=env.get("DISCORD_API_BASE_URL", "").strip().rstrip("/") or None,
    )


def hosted_tools_problem(settings: GuildSettings) -> str | None:
    """Why these settings cannot offer their hosted tools, or None if they can.

    OpenAI runs hosted tools inside the Responses API; a Chat Completions server has nothing of the kind.
    """
    hosted = [name for name in settings.enabled_tools if name in HOSTED_TOOLS]
    if not hosted or settings.backend == "responses":
        return None
    if len(hosted) == 1:
        what = f"{hosted[0]}, a tool OpenAI hosts that needs"
    else:
        what = f"{' and '.join(hosted)}, tools OpenAI hosts that need"
    return f'has {what} backend = "responses" (not "{settings.backend}")'


def knowledge_store_problem(settings: GuildSettings) -> str | None:
    """Why these settings cannot keep knowledge where they say, or None if they can.

    An OpenAI vector store is searched by the hosted `file_search` tool, which only Responses has.
    """
    if settings.knowledge_store == "openai" and settings.backend != "responses":
        return (
            'is "openai", a vector store searched by OpenAI\'s hosted file_search, which needs'
            f' backend = "responses" (not "{settings.backend}")'
        )
    return None


def _first_problem(exc: ValidationError) -> tuple[str, str]:
    """The first validation error as (dotted setting name, human message)."""
    error = exc.errors()[0]
    broken_rule = error.get("ctx", {}).get("error")
    if isinstance(broken_rule, SettingProblem):
        return broken_rule.setting, broken_rule.problem
    setting = ".".join(str(part) for part in error["loc"]) or "file"
    if error["type"] == "extra_forbidden":
        return setting, "is not a known setting (see config.example.toml)"
    message = error["msg"].removeprefix("Value error, ")
    return setting, f"{message} (got {error.get('input')!r})"
