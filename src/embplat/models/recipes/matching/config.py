"""The ``matching`` recipe's frozen config (torch-free, so it can be checked before a
training is queued)."""

from __future__ import annotations

from dataclasses import dataclass

from embplat.errors import ConfigError
from embplat.models.text.registry import TextOptions, check_text_encoder
from embplat.models.train_config import TrainConfig
from embplat.models.wordvectors import VectorSource

MATCHING_LOSSES = ("order", "vse", "infonce")
#: The margin each hinge loss starts from: the reference's 0.05 for order embeddings, VSE++'s
#: 0.2 for cosine similarity.
DEFAULT_MARGINS = {"order": 0.05, "vse": 0.2}


@dataclass(frozen=True)
class MatchingConfig(TrainConfig):
    """Image–caption matching: an image tower and a text tower into one ``embed_dim`` space.

    Epochs: ``freeze_epochs`` train on cached image-encoder features (the image encoder
    frozen, as the reference system), ``unfreeze_epochs`` fine-tune it too; :attr:`epochs`
    is their sum (``--epochs N`` is ``freeze_epochs=N``).

    Attributes:
        text_encoder: ``gru`` (trained end-to-end), ``glove`` or ``minilm`` (frozen, their
            features cached), or any registered text encoder.
        loss: ``order`` (order-violation penalty, Vendrov et al. 2016), ``vse`` (VSE++ hinge
            on the hardest negative in the batch) or ``infonce`` (symmetric contrastive
            with a learned temperature).
        margin: the hinge losses' margin; None = :data:`DEFAULT_MARGINS`.
        temperature: ``infonce``'s starting temperature (it is learnt).
        text_hidden: ``gru``'s hidden size; ``max_tokens``: words kept per caption.
        min_word_count: ``gru`` vocabulary: words seen at least this often in training.
        vectors: word-vector file for ``glove``/``gru``; "" = the active ones.
        grad_clip: gradient-norm clip (the reference clips at 2).
    """

    freeze_epochs: int = 15
    unfreeze_epochs: int = 0
    batch_size: int = 128
    lr: float = 2e-4
    weight_decay: float = 0.0
    text_encoder: str = "gru"
    loss: str = "order"
    margin: float | None = None
    temperature: float = 0.07
    embed_dim: int = 512
    text_hidden: int = 512
    max_tokens: int = 32
    min_word_count: int = 1
    vectors: str = ""
    grad_clip: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss not in MATCHING_LOSSES:
            raise ConfigError(
                f"unknown matching loss {self.loss!r}; choose one of: {', '.join(MATCHING_LOSSES)}"
            )
        check_text_encoder(self.text_encoder)
        for name in ("embed_dim", "text_hidden", "max_tokens", "min_word_count"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.margin is not None and self.margin <= 0:
            raise ConfigError(f"margin must be positive, got {self.margin}")
        if not 0 < self.temperature <= 1:
            raise ConfigError(f"temperature must be in (0, 1], got {self.temperature}")
        if self.grad_clip < 0:
            raise ConfigError(f"grad_clip must be 0 (off) or positive, got {self.grad_clip}")
        if self.batch_size < 2:
            raise ConfigError(f"matching needs batches of 2 or more pairs, got {self.batch_size}")
        self.check_epochs()

    @property
    def epochs(self) -> int:
        """All epochs: on cached features, then fine-tuning the image encoder."""
        return self.freeze_epochs + self.unfreeze_epochs

    @property
    def loss_margin(self) -> float:
        """The margin in use (the loss's default when none was given; unused by infonce)."""
        return self.margin if self.margin is not None else DEFAULT_MARGINS.get(self.loss, 0.0)

    def text_options(
        self, vectors: VectorSource, vocabulary: tuple[str, ...], device: str
    ) -> TextOptions:
        """How to build this config's text encoder."""
        return TextOptions(
            vectors=vectors,
            vocabulary=vocabulary,
            device=device,
            max_tokens=self.max_tokens,
            hidden=self.text_hidden,
        )
