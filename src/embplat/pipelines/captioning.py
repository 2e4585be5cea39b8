"""Use cases of captioning models: caption image files (``platform caption``), with the
attention of every generated word drawn over the image on request.

A captioning model is rebuilt from its registered checkpoint alone (``models.recipes.caption
.saved``): the encoder's architecture, the decoder and the vocabulary are all in it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embplat.catalog import repo
from embplat.errors import ConfigError, DataError
from embplat.models.recipes.caption.config import check_beam
from embplat.pipelines.context import Context
from embplat.pipelines.query_images import QueryFailure, QueryImage, query_label

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from embplat.models.recipes.caption import CaptionModel, CaptionVocab

log = logging.getLogger(__name__)

#: Images per forward pass and batched beam search (captioning files, caption jobs).
CHUNK = 16


@dataclass(frozen=True)
class Candidate:
    """One generated caption: its text, summed token log-probability and ranking score."""

    text: str
    logprob: float
    score: float


@dataclass
class CaptionResult:
    """The captions generated for one image, best first."""

    path: str
    model: str
    beam: int
    captions: list[Candidate] = field(default_factory=list)
    attention: str | None = None  # the attention figure written, if asked for

    @property
    def best(self) -> str:
        """The best caption's text."""
        return self.captions[0].text if self.captions else ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass
class Captioner:
    """A registered captioning model, loaded: the network, its vocabulary, how it sees."""

    name: str
    model: CaptionModel
    vocab: CaptionVocab
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    max_len: int
    device: str

    def tensors(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """RGB images → (B, 3, S, S) normalised, as in training (resize, centre crop)."""
        import torch

        from embplat.models.samples import eval_transform

        transform = eval_transform(self.image_size, self.mean, self.std)
        return torch.stack([transform(img) for img in images]).to(self.device)

    def caption(
        self, images: Sequence[Image.Image], *, beam: int, n: int | None = None
    ) -> list[list[tuple[str, Any]]]:
        """Per image, up to ``n`` (default ``beam``) (text, hypothesis) pairs, best first.

        Raises:
            ConfigError: ``beam`` outside 1..10.
        """
        return self.decode(self.features(images), beam=beam, n=n)

    def features(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """RGB images → (B, P, C) encoder location features (one forward pass)."""
        import torch

        self.model.eval()
        with torch.inference_mode():
            return self.model.encoder(self.tensors(images))

    def decode(
        self, features: torch.Tensor, *, beam: int, n: int | None = None
    ) -> list[list[tuple[str, Any]]]:
        """Beam search over (B, P, C) features from :meth:`features`: per image, up to ``n``
        (default ``beam``) (text, hypothesis) pairs, best first.

        Raises:
            ConfigError: ``beam`` outside 1..10.
        """
        from embplat.models.recipes.caption import caption_features

        check_beam(beam, "--beam")
        found = caption_features(self.model, self.vocab, features, beam=beam, max_len=self.max_len)
        return [hyps[: n or beam] for hyps in found]


def is_captioner(ctx: Context, model: str | None) -> bool:
    """Whether ``model`` is a registered model of a recipe that generates captions."""
    from embplat.pipelines.crossmodal import recipe_data

    return recipe_data(ctx, model) == "captioning"


def newest_captioner(ctx: Context) -> str:
    """The most recently registered captioning model.

    Raises:
        ConfigError: none is registered (the message says how to train one).
    """
    from embplat.models.recipes import get_recipe, list_recipes

    kinds = [r for r in list_recipes() if get_recipe(r).data == "captioning"]
    with ctx.sessions() as session:
        found = repo.list_models(session=session, kinds=kinds)
    if not found:
        raise ConfigError(
            "no captioning model yet: train one with `platform train caption` on captioned "
            "images (e.g. `platform datasets scenes`)"
        )
    return found[-1].name


def load_captioner(ctx: Context, model: str | None = None) -> Captioner:
    """The registered captioning ``model`` (default: the newest) rebuilt from its checkpoint,
    once per context and checkpoint file.

    Raises:
        NotFoundError: no such model. ConfigError: not a captioning model, or its checkpoint
            file is missing.
    """
    from embplat.models.encoders import resolve_device

    name = model or newest_captioner(ctx)
    if not is_captioner(ctx, name):
        raise ConfigError(
            f"model {name!r} does not generate captions: choose one trained with "
            "`platform train caption` (see `platform models list`)"
        )
    with ctx.sessions() as session:
        record = repo.get_model(session=session, name=name)
        checkpoint, size = (record.config or {}).get("checkpoint"), record.image_size
    path = ctx.home / str(checkpoint or "")
    if not checkpoint or not path.is_file():
        raise ConfigError(f"model {name!r}: its checkpoint {path} is missing; train it again")
    loaded = ctx.spaces.loaded  # a job's batches, a service's requests: built once
    key = ("captioner", name, str(path), path.stat().st_mtime_ns)
    if key not in loaded:
        loaded[key] = _build_captioner(name, path, size, str(resolve_device(ctx.spaces.device)))
    return loaded[key]  # type: ignore[no-any-return]


def _build_captioner(name: str, path: Path, size: int | None, device: str) -> Captioner:
    from embplat.models.encoders import get_backbone
    from embplat.models.recipes.caption import load_caption_model

    net, vocab, meta = load_caption_model(path, device=device)
    backbone = get_backbone(meta["encoder"]["name"], "random")  # only its mean/std are read
    config = meta.get("config") or {}
    return Captioner(
        name=name,
        model=net.eval(),
        vocab=vocab,
        image_size=int(meta["encoder"].get("image_size") or size or 0),
        mean=backbone.mean,
        std=backbone.std,
        max_len=int(config.get("max_len", 30)),
        device=device,
    )


def caption_files(
    ctx: Context,
    paths: Sequence[QueryImage],
    *,
    model: str | None = None,
    beam: int = 3,
    n: int = 1,
    attention_png: Path | None = None,
    failures: list[QueryFailure] | None = None,
) -> list[CaptionResult]:
    """Captions of images (files, or encoded bytes named ``<image n>`` as queries are),
    best first (``n`` per image), with their log-probabilities.

    Args:
        attention_png: write the best caption's attention (one panel per word) there; with
            several images, ``<stem>_<i><suffix>`` for the i-th.
        failures: collects the files that cannot be read, which are then skipped; without
            it the first one raises.

    Raises:
        DataError: an unreadable image (unless ``failures`` collects it); ConfigError: a
            bad beam or n, or not a captioning model.
    """
    from embplat.ingest.images import load_rgb

    check_beam(beam, "--beam")
    if not 1 <= n <= beam:
        raise ConfigError(f"--n {n}: ask for 1 to --beam ({beam}) captions per image")
    captioner = load_captioner(ctx, model)
    results: list[CaptionResult] = []
    for start in range(0, len(paths), CHUNK):  # one forward pass and beam search a chunk
        part: list[tuple[int, str, Image.Image]] = []
        for i, query in enumerate(paths[start : start + CHUNK], start=start):
            label = query_label(query, i)
            try:
                part.append((i, label, load_rgb(query, max_pixels=ctx.ingest.max_pixels)))
            except DataError as exc:
                if failures is None:
                    raise
                failures.append(QueryFailure.from_error(label, exc))
        if not part:
            continue
        found_all = captioner.caption([image for _, _, image in part], beam=beam, n=n)
        for (i, label, image), found in zip(part, found_all, strict=True):
            result = CaptionResult(
                path=label,
                model=captioner.name,
                beam=beam,
                captions=[Candidate(t, round(h.logprob, 4), round(h.score, 4)) for t, h in found],
            )
            if attention_png is not None and found:
                out = _numbered(attention_png, i, len(paths))
                result.attention = str(_draw_attention(captioner, image, found[0], out))
            results.append(result)
    return results


def _numbered(out: Path, i: int, count: int) -> Path:
    return out if count == 1 else out.with_name(f"{out.stem}_{i}{out.suffix or '.png'}")


def _draw_attention(captioner: Captioner, image: Image.Image, found: Any, out: Path) -> Path:
    from embplat.evaluation.attention import attention_figure

    text, hypothesis = found
    words = [*text.split(), "<end>"][: len(hypothesis.alphas)]
    grid = captioner.model.grid()
    out.parent.mkdir(parents=True, exist_ok=True)
    return attention_figure(image, words, hypothesis.alphas[: len(words)], grid, out)
