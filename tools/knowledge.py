"""`search_knowledge`: the guild's remembered notes (/remember), offered to the model in conversation.

The result is compact JSON with entry ids, scores, text and each source's link, so the answer can
cite where a fact came from.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from bot.errors import UserFacingError
from bot.knowledge import MAX_QUERY_CHARS, MAX_SEARCH_RESULTS, KnowledgeBase, SearchHit
from bot.tooling import Tool, ToolContext, ToolRegistry, ToolResult

DEFAULT_RESULTS = 5
SCORE_DECIMALS = 3


class SearchKnowledgeArgs(BaseModel):
    query: str = Field(
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        description="What to look for, phrased the way the notes would say it.",
    )
    count: int | None = Field(
        default=None,
        ge=1,
        le=MAX_SEARCH_RESULTS,
        description=f"How many passages to return (default {DEFAULT_RESULTS}).",
    )


DESCRIPTION = (
    "Search what members of this server asked the bot to remember (/remember): notes, documents, "
    "rules, FAQs. Returns the closest passages with a similarity score (0-1; below ~0.3 is rarely "
    "relevant) and their source. Use it before answering questions about this server or its people, "
    "and cite what you use as [title](url) (or 'entry #id' when there is no url); a passage from a "
    "file by its `cite` (file, page and section, e.g. handbook.pdf, p. 12)."
)


def hit_json(hit: SearchHit) -> dict[str, object]:
    data: dict[str, object] = {
        "entry_id": hit.entry.id,
        "score": round(hit.score, SCORE_DECIMALS),
        "title": hit.entry.title,
        "source": hit.entry.source,
        "url": hit.entry.jump_url,
        "text": hit.text,
    }
    if hit.entry.file_type is not None:  # a document: where in it the passage is
        data.update(page=hit.page_label or hit.page, section=list(hit.headings), cite=hit.citation)
    return data


def search_knowledge_tool(knowledge: KnowledgeBase) -> Tool[SearchKnowledgeArgs]:
    async def search_knowledge(args: SearchKnowledgeArgs, context: ToolContext) -> ToolResult:
        if context.guild_id is None:
            return ToolResult.failure("unavailable", "Knowledge is kept per server; there is none in DMs.")
        try:
            results = await knowledge.search(
                guild_id=context.guild_id,
                query=args.query,
                count=args.count or DEFAULT_RESULTS,
                model=context.settings.embedding_model,
                user_id=context.user_id,
            )
        except UserFacingError as exc:
            return ToolResult.failure("unavailable", str(exc))
        data: dict[str, object] = {"results": [hit_json(hit) for hit in results.hits]}
        if not results.hits:
            data["note"] = "Nothing in this server's knowledge matches."
        if results.skipped_entries:
            data["not_searched"] = (
                f"{results.skipped_entries} entries were embedded with another model and were not searched."
            )
        summary = f"Found {len(results.hits)} passage{'s' if len(results.hits) != 1 else ''}"
        return ToolResult.success(data, summary)

    return Tool(
        name="search_knowledge",
        family="knowledge",
        description=DESCRIPTION,
        arguments=SearchKnowledgeArgs,
        handler=search_knowledge,
        activity="Searching the server's knowledge",
    )


def register_knowledge_tools(registry: ToolRegistry, knowledge: KnowledgeBase) -> None:
    registry.add(search_knowledge_tool(knowledge))
