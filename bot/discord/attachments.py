"""A Discord message's attachments turned into a `UserTurn`: images by URL, text inlined, files for
the model's tools downloaded, and a sentence for each one that cannot be used.

Which attachment goes where is the core's decision (`bot.conversation_files.plan_attachments`); this
module only reads Discord's attachments for it.
"""

from __future__ import annotations

import asyncio

import discord

from bot.config import GuildSettings
from bot.conversation_files import (
    AttachmentInfo,
    document_text,
    file_line,
    plan_attachments,
    text_block,
)
from bot.engine import UserTurn
from bot.engine.turn import FileUse, TurnFile


async def user_turn(
    message: discord.Message,
    text: str,
    settings: GuildSettings,
    *,
    text_budget: int,
    max_file_bytes: int,
) -> UserTurn:
    """The message as the model should see it, under the effective settings (backend and tools).

    `text`: the message's own text, cleaned; `text_budget`: characters of inlined text (text files and
    documents' text) the turn may hold; `max_file_bytes`: the largest file given as a file. The files
    the plan reads are downloaded together, each once, within the plan's limit for the message.
    """
    images: list[str] = []
    inlined: list[str] = []
    files: list[TurnFile] = []
    notices: list[str] = []
    budget = text_budget
    infos = [
        AttachmentInfo(attachment.filename, attachment.content_type or "", attachment.size)
        for attachment in message.attachments
    ]
    plans = plan_attachments(infos, settings, max_bytes=max_file_bytes)
    read = [attachment for attachment, plan in zip(message.attachments, plans, strict=True) if plan.downloads]
    downloads = await asyncio.gather(*(_download(attachment) for attachment in read))
    downloaded = iter(downloads)
    for attachment, plan in zip(message.attachments, plans, strict=True):
        name = attachment.filename
        if plan.refusal:
            inlined.append(f"[{plan.refusal}]")
            notices.append(plan.refusal)
            continue
        if "image" in plan.routes:
            images.append(attachment.url)
        if not plan.downloads:
            continue
        data = next(downloaded)
        if data is None:
            inlined.append(f"[Attached {name}: could not be downloaded]")
            notices.append(f"{name} could not be downloaded from Discord.")
            continue
        kind = attachment.content_type or ""
        if "text" in plan.routes:
            # With the code interpreter the whole file is in its container: the text is a preview.
            preview = "code_interpreter" in plan.routes
            block, used, problem = text_block(name, data, budget, preview=preview)
            budget -= used
            if block:
                inlined.append(block)
            if problem:
                notices.append(problem)
        uses: list[FileUse] = [use for use in ("code_interpreter", "input_file") if use in plan.routes]
        for use in uses:
            file = TurnFile(name, kind, data, use)
            files.append(file)
            inlined.append(file_line(file))
        if "document_text" in plan.routes:
            block, used, problem = await document_text(name, kind, data, budget)
            budget -= used
            inlined.append(block)
            if problem:
                notices.append(problem)
    full_text = "\n\n".join(part for part in [text, *inlined] if part)
    return UserTurn(
        text=full_text,
        author_id=message.author.id,
        author_name=message.author.display_name,
        image_urls=tuple(images),
        message_id=message.id,
        files=tuple(files),
        notices=tuple(notices),
    )


async def _download(attachment: discord.Attachment) -> bytes | None:
    """The attachment's bytes, or None if Discord would not give them."""
    try:
        return await attachment.read()
    except discord.HTTPException:
        return None
