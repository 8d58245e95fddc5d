"""Structured extraction for /extract: pydantic models are the single source of each target schema.

The model fills one of the models below through the SDK's parse helpers (Responses `text_format`, or
Chat Completions `response_format` for guilds on the chat backend). Each model has a `found` flag so
"there is nothing of that kind in this text" is an answer, distinct from a refusal.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Annotated, Literal, get_args

import openai
import pydantic
from openai import AsyncOpenAI
from pydantic import BaseModel, ConfigDict, Field

from bot.config import Backend
from bot.engine.openai_errors import describe_error
from bot.errors import UserFacingError

MAX_EXTRACT_CHARS = 8000
DateText = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD")]
TimeText = Annotated[str, Field(pattern=r"^\d{2}:\d{2}$", description="24-hour HH:MM")]
_FOUND = "False when the text contains nothing of this kind; then leave the other fields empty or null."


class _Target(BaseModel):
    model_config = ConfigDict(extra="forbid")

    found: bool = Field(description=_FOUND)


class CalendarEvent(_Target):
    """An event to put in a calendar."""

    name: str = Field(description="What the event is, e.g. 'Team dinner'.")
    date: DateText | None = Field(description="The day, if the text says or implies one.")
    start_time: TimeText | None = Field(title="Starts", description="When it starts, if said.")
    end_time: TimeText | None = Field(title="Ends", description="When it ends, if said.")
    location: str | None = Field(description="Where, if said.")
    participants: list[str] = Field(description="Names of the people taking part.")


class Contact(_Target):
    """A person's contact details."""

    name: str = Field(description="The person's full name.")
    organization: str | None = Field(description="Company or organisation, if said.")
    role: str | None = Field(description="Job title or role, if said.")
    email: str | None = Field(description="E-mail address, exactly as written.")
    phone: str | None = Field(description="Phone number, exactly as written.")
    address: str | None = Field(description="Postal address, if said.")


class Task(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = Field(description="What has to be done.")
    assignee: str | None = Field(description="Who should do it, if said.")
    due_date: DateText | None = Field(title="Due", description="The deadline, if said.")
    done: bool = Field(description="True if the text says it is already done.")


class TaskList(_Target):
    """The to-dos in a text."""

    title: str | None = Field(description="A short title for the list, if one is obvious.")
    tasks: list[Task] = Field(description="Every task, in the order the text gives them.")


class BookingRequest(_Target):
    """A request to book a table, a room or a service."""

    venue: str | None = Field(description="The restaurant, hotel or place to book.")
    date: DateText | None = Field(description="The day wanted.")
    time: TimeText | None = Field(description="The time wanted.")
    party_size: int | None = Field(title="Party size", description="How many people.")
    name: str | None = Field(title="Booking name", description="The name to book under.")
    contact: str | None = Field(description="Phone or e-mail to reach the person booking.")
    notes: str | None = Field(description="Special requests: allergies, seating, occasion...")


ExtractionKind = Literal["event", "contact", "tasks", "booking"]
EXTRACTION_KINDS: tuple[ExtractionKind, ...] = get_args(ExtractionKind)


@dataclass(frozen=True, slots=True)
class KindSpec:
    label: str
    model: type[_Target]


KINDS: dict[ExtractionKind, KindSpec] = {
    "event": KindSpec("Calendar event", CalendarEvent),
    "contact": KindSpec("Contact", Contact),
    "tasks": KindSpec("Task list", TaskList),
    "booking": KindSpec("Booking request", BookingRequest),
}


@dataclass(frozen=True, slots=True)
class Extracted:
    kind: ExtractionKind
    data: BaseModel
    input_tokens: int = 0
    output_tokens: int = 0

    def as_json(self) -> str:
        return json.dumps(self.data.model_dump(mode="json", exclude={"found"}), indent=2, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class NothingFound:
    kind: ExtractionKind
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str
    input_tokens: int = 0
    output_tokens: int = 0


ExtractionOutcome = Extracted | NothingFound | Refused


def instructions(kind: ExtractionKind, today: dt.date) -> str:
    label = KINDS[kind].label.lower()
    return (
        f"Extract a {label} from the user's text into the given schema. Use only what the text says; "
        "never invent names, dates, numbers or addresses: leave a field null (or a list empty) when the "
        f"text does not give it. Resolve relative dates against today, {today.isoformat()} "
        f"({today.strftime('%A')}). If the text contains no {label} at all, set found to false."
    )


async def extract(
    client: AsyncOpenAI,
    *,
    backend: Backend,
    model: str,
    kind: ExtractionKind,
    text: str,
    today: dt.date | None = None,
) -> ExtractionOutcome:
    """Fill the `kind` model from `text`; API and format failures raise `UserFacingError`."""
    text = text.strip()
    if not text:
        raise UserFacingError("There is no text to extract from.")
    if len(text) > MAX_EXTRACT_CHARS:
        raise UserFacingError(
            f"That text is too long to extract from ({len(text):,} characters; "
            f"at most {MAX_EXTRACT_CHARS:,})."
        )
    target = KINDS[kind].model
    prompt = instructions(kind, today or dt.datetime.now(dt.UTC).date())
    try:
        if backend == "responses":
            parsed, refusal, tokens = await _via_responses(client, model, target, prompt, text)
        else:
            parsed, refusal, tokens = await _via_chat(client, model, target, prompt, text)
    except pydantic.ValidationError as exc:
        raise UserFacingError(
            f"The model's answer did not fit the {KINDS[kind].label.lower()} format; please try again."
        ) from exc
    except openai.LengthFinishReasonError as exc:
        raise UserFacingError("The model ran out of room before finishing the extraction.") from exc
    except openai.ContentFilterFinishReasonError:
        return Refused("The model's content filter stopped this extraction.")
    except openai.OpenAIError as exc:
        raise UserFacingError(describe_error(exc, model=model)[1]) from exc
    if refusal is not None:
        return Refused(refusal or "The model declined to extract from this text.", *tokens)
    if parsed is None:
        raise UserFacingError("The model did not answer with the extracted data; please try again.")
    if not parsed.found or is_empty(parsed):
        return NothingFound(kind, *tokens)
    return Extracted(kind, parsed, *tokens)


async def _via_responses(
    client: AsyncOpenAI, model: str, target: type[_Target], prompt: str, text: str
) -> tuple[_Target | None, str | None, tuple[int, int]]:
    response = await client.responses.parse(
        model=model, instructions=prompt, input=text, text_format=target, store=False
    )
    refusal = next(
        (
            part.refusal
            for item in response.output
            if item.type == "message"
            for part in item.content
            if part.type == "refusal"
        ),
        None,
    )
    if response.status == "incomplete" and refusal is None and response.output_parsed is None:
        reason = response.incomplete_details.reason if response.incomplete_details else None
        if reason == "content_filter":
            refusal = "The model's content filter stopped this extraction."
        else:
            raise UserFacingError("The model ran out of room before finishing the extraction.")
    usage = response.usage
    tokens = (usage.input_tokens, usage.output_tokens) if usage else (0, 0)
    return response.output_parsed, refusal, tokens


async def _via_chat(
    client: AsyncOpenAI, model: str, target: type[_Target], prompt: str, text: str
) -> tuple[_Target | None, str | None, tuple[int, int]]:
    completion = await client.chat.completions.parse(
        model=model,
        messages=[{"role": "system", "content": prompt}, {"role": "user", "content": text}],
        response_format=target,
    )
    message = completion.choices[0].message
    usage = completion.usage
    tokens = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
    return message.parsed, message.refusal, tokens


def is_empty(data: BaseModel) -> bool:
    """No field (other than `found`) carries anything."""
    return all(value in (None, "", [], False) for name, value in data if name != "found")


def display_fields(data: BaseModel) -> list[tuple[str, str]]:
    """(label, value) pairs for showing an extraction to a person; empty fields left out."""
    fields: list[tuple[str, str]] = []
    for name, info in type(data).model_fields.items():
        if name == "found":
            continue
        value = getattr(data, name)
        if value is None or value == "" or value == []:
            continue
        label = info.title or name.replace("_", " ").capitalize()
        fields.append((label, _display_value(value)))
    return fields


def _display_value(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        if all(isinstance(item, Task) for item in value):
            return "\n".join(_task_line(item) for item in value if isinstance(item, Task))
        return ", ".join(str(item) for item in value)
    return str(value)


def _task_line(task: Task) -> str:
    details = [part for part in (task.assignee, f"due {task.due_date}" if task.due_date else None) if part]
    suffix = f" ({', '.join(details)})" if details else ""
    return f"{'☑' if task.done else '☐'} {task.description}{suffix}"
