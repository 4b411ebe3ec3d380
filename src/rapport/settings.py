"""Settings come from the environment (RAPPORT_*) so one binary serves every deployment."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAPPORT_", extra="ignore")

    database_url: str = "sqlite:///rapport.db"
    host: str = "127.0.0.1"
    port: int = 8000
    # Phone numbers written without a country code are read as numbers of this region.
    default_phone_region: str = "RU"
    # Segment's own limits: 32 KB per message, 500 KB per batch.
    max_message_bytes: int = 32 * 1024
    max_batch_bytes: int = 500 * 1024
    # The ingest writer groups requests that arrive together into one transaction.
    ingest_group_max_messages: int = 2000
    # SQLite: `rapport serve` copies the write-ahead log into the database every this many
    # seconds, in a thread of its own, instead of inside a committing request; 0 leaves it
    # to SQLite's commits (rapport.store.checkpoints).
    sqlite_checkpoint_seconds: float = 1.0
    # Queued ingest: answer once a request is appended to the store's inbox and apply it
    # behind, in groups of up to ``ingest_apply_max_messages``. Off, a request is answered
    # once its events are applied (docs/ingest.md compares the two).
    ingest_queue: bool = False
    # Whether this process applies the inbox (``rapport serve`` with queued ingest); off
    # when ``rapport worker`` processes do it.
    ingest_apply: bool = True
    ingest_apply_max_messages: int = 5000
    # Queued ingest on PostgreSQL: the server splits each request by customer into this
    # many lanes, and `rapport worker` runs an applier process per lane, side by side
    # (rapport.ingest.lanes says what that gives up). 1 keeps arrival order throughout.
    ingest_lanes: int = Field(default=1, ge=1, le=16)
    # Seconds an idle applier waits before looking again for requests other processes
    # appended (appends in its own process wake it at once).
    ingest_poll_seconds: float = 0.2
    # Seconds between sweeps of time-dependent segments; 0 turns the sweeper off.
    sweep_seconds: float = 60.0
    # Deliver the outbox through the channels configured in the store (``rapport serve``
    # runs one dispatcher beside the API); off for API-only processes and the tests.
    dispatch: bool = True
    # Seconds between checks for scenario runs that are due; 0 turns the runner off.
    scenario_seconds: float = 1.0
    # Where customers reach this server: tracking pixels, click redirects, unsubscribe and
    # preference links are built on it.
    public_url: str = "http://127.0.0.1:8000"
    # Signs tracking, unsubscribe and deep-link tokens. Unset, a random key is made once
    # and kept in the store (app_settings), so links stay valid across restarts.
    secret_key: str | None = None
    # A Maildir the demo's mail catcher writes (``rapport demo mailcatcher``): when set, the
    # server lists its messages at /mail. Unset in production: the pages have no login.
    mail_catcher_dir: str | None = None


def get_settings() -> Settings:
    return Settings()
