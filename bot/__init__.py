"""The Discord AI assistant: a core that knows nothing of Discord, and the glue that connects it."""
