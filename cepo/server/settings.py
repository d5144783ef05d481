"""What a server operator sets: access, limits, and the methods' default settings."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ServerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: str | None = Field(None, description="clients must send it as a bearer token; None: open")
    max_concurrent: int = Field(8, ge=1, description="requests running at once; the rest queue")
    max_queued: int = Field(32, ge=0, description="requests waiting for a slot; beyond that, 429")
    retry_after_s: int = Field(5, ge=1, description="what a 429 tells the client to wait")
    max_n: int = Field(4, ge=1, le=16, description="most choices (runs of the method) per request")
    max_tokens: int = Field(4096, ge=1, le=65536, description="largest answer budget a request may ask for")
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="largest request body; a longer one is refused (413) unread"
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="the methods' settings (see cepo.methods.check_all); requests override",
    )
