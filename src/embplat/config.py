"""Settings: one object built once by the CLI (or a worker) and passed down explicitly.

Each group reads its own environment prefix, so the variables read naturally
(``EMBPLAT_CATALOG_URL``, ``EMBPLAT_QDRANT_URL``, ``EMBPLAT_BROKER_URL``) while the object
stays nested. Each index backend's options (``embplat.retrieval.backends``) are a section
under ``index``: ``settings.index.nmslib.hnsw_m``, ``settings.index.qdrant.url``.
Precedence: CLI flag > environment > ``.env`` > defaults.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from embplat.errors import ConfigError
from embplat.retrieval.backends import BACKENDS, ExactOptions, NmslibOptions, QdrantOptions


def _group(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=prefix, env_file=".env", extra="ignore", validate_default=True
    )


class CatalogSettings(BaseSettings):
    """Where the catalog lives: an SQLAlchemy URL (SQLite by default, PostgreSQL in server mode)."""

    model_config = _group("EMBPLAT_CATALOG_")
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _known_dialect(cls, v: str | None) -> str | None:
        if v and not re.match(r"^(sqlite|postgresql)(\+\w+)?://", v):
            raise ValueError(
                f"catalog URL {mask_url(v)!r} must start with sqlite:// or postgresql+psycopg://"
            )
        return v


class ExactSettings(BaseSettings, ExactOptions):
    """The exact backend's options, read from ``EMBPLAT_INDEX_*``."""

    model_config = _group("EMBPLAT_INDEX_")


class NmslibSettings(BaseSettings, NmslibOptions):
    """The nmslib backend's options, read from ``EMBPLAT_INDEX_*`` (``EMBPLAT_INDEX_HNSW_M``)."""

    model_config = _group("EMBPLAT_INDEX_")


class QdrantSettings(BaseSettings, QdrantOptions):
    """The Qdrant backend's options, read from ``EMBPLAT_QDRANT_*``: a server (url) or
    qdrant-client's embedded local mode (path)."""

    model_config = _group("EMBPLAT_QDRANT_")


class IndexSettings(BaseSettings):
    """Which vector index backend, and each backend's own options (nested sections, one per
    entry of ``embplat.retrieval.backends.BACKENDS``)."""

    model_config = _group("EMBPLAT_INDEX_")
    backend: str = "auto"
    exact: ExactSettings = Field(default_factory=ExactSettings)
    nmslib: NmslibSettings = Field(default_factory=NmslibSettings)
    qdrant: QdrantSettings = Field(default_factory=QdrantSettings)

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        if v != "auto" and v not in BACKENDS:
            raise ValueError(f"index backend {v!r} is not one of auto, {', '.join(BACKENDS)}")
        return v

    def options(self, backend: str) -> BaseModel:
        """The options section of ``backend`` (a name in ``BACKENDS``)."""
        section = getattr(self, backend, None)
        if not isinstance(section, BACKENDS[backend].options):
            raise ConfigError(f"index settings have no section for the {backend} backend")
        return section


class CelerySettings(BaseSettings):
    """Broker for server mode; empty means jobs run in-process."""

    model_config = _group("EMBPLAT_CELERY_")
    broker_url: str | None = Field(
        None, validation_alias=AliasChoices("EMBPLAT_BROKER_URL", "EMBPLAT_CELERY_BROKER_URL")
    )
    result_backend: str | None = None
    visibility_timeout: int = Field(
        3600, ge=1, description="seconds before a task of a killed worker is redelivered"
    )
    concurrency: int = Field(1, ge=1, le=256, description="worker processes per `platform worker`")
    # Time limits keep every task shorter than the visibility timeout: a task still running
    # when it expires is delivered to a second worker and runs twice. Hard limits are
    # declared before soft ones so each validator sees the value it is compared with.
    task_time_limit: int = Field(1200, ge=1, description="seconds before an embed is killed")
    task_soft_time_limit: int = Field(
        900, ge=1, description="seconds before an embed/rebuild task is asked to stop"
    )
    train_time_limit: int = Field(3300, ge=1, description="seconds before a training is killed")
    train_soft_time_limit: int = Field(
        3000, ge=1, description="seconds before a training is asked to stop (marked failed)"
    )

    @field_validator("task_time_limit", "train_time_limit")
    @classmethod
    def _hard_below_visibility(cls, v: int, info: ValidationInfo) -> int:
        vt = info.data.get("visibility_timeout")
        if vt is not None and v >= vt:
            raise ValueError(
                f"EMBPLAT_CELERY_{str(info.field_name).upper()}={v} must be below "
                f"EMBPLAT_CELERY_VISIBILITY_TIMEOUT={vt}, or a task still running is delivered "
                "again and runs twice; raise the visibility timeout with it"
            )
        return v

    @field_validator("task_soft_time_limit", "train_soft_time_limit")
    @classmethod
    def _soft_below_hard(cls, v: int, info: ValidationInfo) -> int:
        hard_name = str(info.field_name).replace("_soft", "")
        hard = info.data.get(hard_name)
        if hard is not None and v >= hard:
            raise ValueError(
                f"EMBPLAT_CELERY_{str(info.field_name).upper()}={v} must be below "
                f"EMBPLAT_CELERY_{hard_name.upper()}={hard}"
            )
        return v


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, so ``taskset`` and cpusets count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_decode_threads(cores: int | None = None) -> int:
    """Decode threads working ahead of the forward pass by default: none where 2 cores or
    fewer are usable. There a decode thread beside the forward pass's two OpenMP threads
    slows the forward pass by more than it saves (one `classify` call on 100 images at
    224 px: 3.5 s without it, 4.1–4.4 s with it, 3.3 s for the bare loop); with more
    cores it has one of its own."""
    return 0 if (usable_cores() if cores is None else cores) <= 2 else 1


class EmbedSettings(BaseSettings):
    """Default encoder and how images are fed to it."""

    model_config = _group("EMBPLAT_EMBED_")
    encoder: str = "efficientnet_lite0"
    weights: str | None = None
    image_size: int | None = Field(None, ge=16, le=1024)
    batch_size: int = Field(32, ge=1, le=4096)
    num_workers: int = Field(
        default_factory=lambda: default_decode_threads(),
        ge=0,
        le=64,
        description="decode threads working ahead of the forward pass; default 0 on a "
        "machine of 2 cores or fewer (decoding in the forward pass's thread), else 1",
    )
    device: str = "auto"
    threads: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="torch intra-op threads; default: usable cores minus num_workers, >= 1",
    )
    amp: bool = Field(True, description="CUDA only: forward under autocast (bf16/fp16)")
    gpu_decode: bool = Field(True, description="CUDA only: decode JPEG batches with nvJPEG")
    jpeg_draft: bool = Field(
        True, description="decode JPEGs >= 2x the input side at reduced DCT scale"
    )


class IngestSettings(BaseSettings):
    """How ingest splits and validates images."""

    model_config = _group("EMBPLAT_INGEST_")
    valid_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    max_pixels: int = Field(40_000_000, ge=1, description="decompression-bomb guard")
    batch_size: int = Field(256, ge=1)


class ServeSettings(BaseSettings):
    """``platform serve``: where it listens, who may call it, and how much one request may send."""

    model_config = _group("EMBPLAT_SERVE_")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_key: SecretStr | None = Field(None, description="required in the X-API-Key header")
    cors_origins: list[str] = Field(default_factory=list, description="allowed origins; none: off")
    max_upload_bytes: int = Field(10 * 2**20, ge=1024, description="largest image accepted")
    max_images: int = Field(32, ge=1, le=1024, description="images per classify request")
    max_pixels: int = Field(
        40_000_000, ge=1, description="largest uploaded image, checked before decoding"
    )
    max_k: int = Field(1000, ge=1, description="largest k a request may ask")
    upload_dir: Path | None = Field(
        None, description="where uploaded class images are kept; default <home>/uploads"
    )


class Settings(BaseSettings):
    """All configuration. Only ``cli/`` and ``workers/`` build or read this object."""

    model_config = SettingsConfigDict(env_prefix="EMBPLAT_", env_file=".env", extra="ignore")

    home: Path = Path(".embplat")
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    celery: CelerySettings = Field(default_factory=CelerySettings)
    embed: EmbedSettings = Field(default_factory=EmbedSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)

    @field_validator("home")
    @classmethod
    def _usable_home(cls, v: Path) -> Path:
        return check_home(v)

    @property
    def qdrant_path(self) -> Path | None:
        """Local-mode Qdrant folder: the configured one, else one in the data home (no URL)."""
        if self.index.qdrant.url:
            return None
        return self.index.qdrant.path or self.home / "qdrant"

    @property
    def catalog_url(self) -> str:
        """The catalog URL, defaulting to an SQLite file in the data home."""
        return self.catalog.url or f"sqlite:///{(self.home / 'catalog.sqlite3').as_posix()}"

    @property
    def index_backend(self) -> str:
        """The concrete backend: ``auto`` is Qdrant when a Qdrant URL is set, else nmslib."""
        if self.index.backend != "auto":
            return self.index.backend
        return "qdrant" if self.index.qdrant.url else "nmslib"

    def index_options(self) -> BaseModel:
        """The options of :attr:`index_backend`, Qdrant's local folder defaulted as in
        :attr:`qdrant_path` (the data home may change after the sections are read)."""
        options = self.index.options(self.index_backend)
        if isinstance(options, QdrantOptions) and not options.url:
            options = options.model_copy(update={"path": self.qdrant_path})
        return options

    @property
    def server_mode(self) -> bool:
        """True when a broker is configured: jobs go to Celery workers."""
        return bool(self.celery.broker_url)


def load_settings(**overrides: object) -> Settings:
    """Build settings from environment/.env, then apply CLI overrides (dotted keys allowed).

    Raises:
        ConfigError: a value fails validation; the message names the setting.
    """
    try:
        settings = Settings()
    except Exception as exc:  # pydantic.ValidationError, formatted for one line
        raise ConfigError(f"invalid configuration: {_one_line(exc)}") from exc
    for key, value in overrides.items():
        if value is None:
            continue
        group, _, field = key.partition(".")
        if field:
            sub = getattr(settings, group)
            setattr(settings, group, sub.model_copy(update={field: value}))
        else:
            settings = settings.model_copy(update={group: value})
    try:  # model_copy skips validation, so a --home flag is checked here
        check_home(settings.home)
    except ValueError as exc:
        raise ConfigError(f"invalid configuration: home: {exc}") from exc
    return settings


def check_home(home: Path) -> Path:
    """``home`` unchanged when it is a folder or can become one.

    Raises:
        ValueError: ``home`` is a file, or lies under one; the message names it.
    """
    for path in (home, *home.parents):
        if path.exists() and not path.is_dir():
            where = "is" if path == home else f"lies under {path}, which is"
            raise ValueError(
                f"data home {home} {where} a file, not a folder; set EMBPLAT_HOME (or --home) "
                "to a folder"
            )
    return home


def mask_url(url: str) -> str:
    """Hide the password in a connection URL so it can be printed."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def _one_line(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors()]
        return "; ".join(parts)
    return str(exc).splitlines()[0]
