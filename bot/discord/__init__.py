"""The Discord side of the bot: everything that imports discord.py lives in this package.

- ``app``: the ``AssistantBot`` (extensions, the one slash-command error handler, graceful close),
  start-up retries and signal handling;
- ``endpoint``: where discord.py connects (``DISCORD_API_BASE_URL``, for the stand-in in tests);
- ``confirmation``: Confirm / Cancel buttons that only the asker can press;
- ``render``: replies as Discord messages: splitting at 2,000 characters, streaming by edits, and the
  one write scheduler that keeps every message write under Discord's rate limits.

The core (the rest of ``bot/``) never imports this package or discord.py (tests/test_boundaries.py);
``cogs/`` build on both.
"""
