"""A Discord message's attachments turned into a `UserTurn`: images by URL, text inlined, files for
the model's tools downloaded, and a sentence for each one that cannot be used.

Which attachment goes where is the core's decision (`bot.conversation_files.plan_attachments`); this
module only reads Discord's attachments for it.
"""

from __future__ import annotations

import discord

from bot.config import GuildSettings
from bot.conversation_files import AttachmentInfo, document_text, file_line, megabytes, plan_attachments
from bot.engine import UserTurn
from bot.engine.turn import FileUse, TurnFile

MAX_TEXT_ATTACHMENT_BYTES = 2 * 1024 * 1024


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
    documents' text) the turn may hold; `max_file_bytes`: the largest file given as a file.
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
    for attachment, plan in zip(message.attachments, plans, strict=True):
        if plan.refusal:
            inlined.append(f"[{plan.refusal}]")
            notices.append(plan.refusal)
            continue
        if "image" in plan.routes:
            images.append(attachment.url)
        if "text" in plan.routes:
            block, budget, problem = await _inline_text(attachment, budget)
            inlined.append(block)
            if problem:
                notices.append(problem)
        uses: list[FileUse] = [use for use in ("code_interpreter", "input_file") if use in plan.routes]
        if not uses and "document_text" not in plan.routes:
            continue
        try:
            data = await attachment.read()
        except discord.HTTPException:
            inlined.append(f"[Attached {attachment.filename}: could not be downloaded]")
            notices.append(f"{attachment.filename} could not be downloaded from Discord.")
            continue
        kind = attachment.content_type or ""
        for use in uses:
            file = TurnFile(attachment.filename, kind, data, use)
            files.append(file)
            inlined.append(file_line(file))
        if "document_text" in plan.routes:
            block, problem = await document_text(attachment.filename, kind, data, max(budget, 0))
            budget -= len(block)
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


async def _inline_text(attachment: discord.Attachment, budget: int) -> tuple[str, int, str | None]:
    """A text attachment as a fenced block, within the remaining character budget: (the block, the
    budget left, the sentence for the person if it was not read whole)."""
    name = attachment.filename
    if budget <= 0:
        return (
            f"[Attached {name}: not read, the text limit was reached]",
            budget,
            (f"{name} was not read: the message's attachments hold more text than the assistant reads."),
        )
    if attachment.size > MAX_TEXT_ATTACHMENT_BYTES:
        limit = megabytes(MAX_TEXT_ATTACHMENT_BYTES)
        return (
            f"[Attached {name}: too large to read ({attachment.size} bytes)]",
            budget,
            (f"{name} was not read: it is too large ({megabytes(attachment.size)}; the limit is {limit})."),
        )
    try:
        data = await attachment.read()
    except discord.HTTPException:
        return f"[Attached {name}: could not be downloaded]", budget, f"{name} could not be downloaded."
    text = data.decode("utf-8", errors="replace")
    cut = len(text) > budget
    text = text[:budget]
    note = " (cut short)" if cut else ""
    block = f"[Attached {name}{note}]\n```\n{text.replace('```', '` ``')}\n```"
    problem = f"Only the beginning of {name} was read (the text limit)." if cut else None
    return block, budget - len(text), problem
