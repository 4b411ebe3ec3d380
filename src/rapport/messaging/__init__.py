"""Messaging: templates, channels (one file per backend), outbox, tracking, campaigns."""
