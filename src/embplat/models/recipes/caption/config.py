"""The ``caption`` recipe's frozen config (torch-free, so it can be checked before a training
is queued)."""

from __future__ import annotations

from dataclasses import dataclass

from embplat.errors import ConfigError
from embplat.models.train_config import TrainConfig

#: The widest beam the decoder accepts (``valid_beam``, ``platform caption --beam``).
MAX_BEAM = 10
#: ``vectors`` value that initialises every word embedding at random.
NO_VECTORS = "none"


def check_beam(beam: int, what: str = "beam") -> None:
    """Refuse a beam width outside 1..:data:`MAX_BEAM`.

    Raises:
        ConfigError: naming the value and the accepted range.
    """
    if not 1 <= beam <= MAX_BEAM:
        raise ConfigError(f"{what} must be between 1 and {MAX_BEAM}, got {beam}")


@dataclass(frozen=True)
class CaptionConfig(TrainConfig):
    """Show-attend-tell captioning: soft attention over the encoder's spatial feature map and
    an LSTM decoder (Xu et al. 2015).

    Epochs: ``freeze_epochs`` train the decoder on feature maps computed once (encoder
    frozen), then ``unfreeze_epochs`` fine-tune encoder and decoder together; :attr:`epochs`
    is their sum. Each phase has its own one-cycle schedule and ends early when valid BLEU-4
    has not improved for ``patience`` epochs.

    Attributes:
        lr: the decoder's one-cycle maximum learning rate.
        encoder_lr: the encoder's maximum learning rate while fine-tuning (3e-4: on the
            captioned scenes at 128 px it beat the reference's 1e-4 and 1e-3; see README).
        attention_dim: the soft attention's hidden size.
        decoder_dim: the LSTM's hidden size.
        embed_dim: word embedding size; words the word vectors know start from them (see
            ``caption.build.init_embeddings``), the others at random.
        dropout: on the LSTM output, before the vocabulary layer.
        alpha_c: weight of the doubly stochastic attention penalty
            ``((1 - sum_t alpha_t)^2).mean()`` (each location attended about once overall).
        grad_clip: gradient-norm clip; 0 = off.
        min_word_count: vocabulary: words seen at least this often in train captions; the
            others become ``<unk>``.
        max_len: the most words of a caption kept in training (``<start>``/``<end>`` not
            counted), and the most words decoding generates.
        patience: epochs without a better valid BLEU-4 that end a phase.
        valid_beam: the beam width that decodes the valid images for BLEU each epoch.
        vectors: word vectors for the embedding init: "" the active ones, a file, or
            ``none`` (random).
        positions: add a learned projection of each location's (x, y) grid coordinates to
            its feature, so the attended context carries where the decoder looked (spatial
            relations: "left of", "above"). Models saved before it existed have it off.
        hypercolumns: attend over the backbone's hypercolumns (its last map with the maps
            of the stages at strides 8 and 16 pooled onto the same grid, see
            ``Backbone.hypercolumns``) instead of its last map alone: the earlier stages
            keep colour and fine form that the last one abstracts away. Off in models
            saved before it existed.
        coverage: the attention also sees how much each location has been attended over
            the earlier steps (coverage), so the decoder can move on from what it has
            described. Off in models saved before it existed.
    """

    freeze_epochs: int = 12
    unfreeze_epochs: int = 0
    batch_size: int = 64
    lr: float = 4e-4
    encoder_lr: float = 3e-4
    weight_decay: float = 0.0
    attention_dim: int = 512
    decoder_dim: int = 512
    embed_dim: int = 300
    dropout: float = 0.5
    alpha_c: float = 1.0
    grad_clip: float = 5.0
    min_word_count: int = 1
    max_len: int = 30
    patience: int = 3
    valid_beam: int = 1
    vectors: str = ""
    positions: bool = True
    hypercolumns: bool = False
    coverage: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("attention_dim", "decoder_dim", "embed_dim", "min_word_count", "max_len"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be at least 1, got {getattr(self, key)}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.alpha_c < 0 or self.grad_clip < 0 or self.weight_decay < 0:
            raise ConfigError(
                f"alpha_c ({self.alpha_c}), grad_clip ({self.grad_clip}) and weight_decay "
                f"({self.weight_decay}) must be 0 (off) or positive"
            )
        if self.encoder_lr <= 0:
            raise ConfigError(f"encoder_lr must be positive, got {self.encoder_lr}")
        if self.patience < 1:
            raise ConfigError(f"patience must be at least 1 epoch, got {self.patience}")
        check_beam(self.valid_beam, "valid_beam")
        self.check_epochs()

    @property
    def epochs(self) -> int:
        """All epochs: decoder on cached feature maps, then fine-tuning the encoder too."""
        return self.freeze_epochs + self.unfreeze_epochs
