"""Discord extensions, one per feature; each turns interactions into calls on the core (`bot/`)."""
