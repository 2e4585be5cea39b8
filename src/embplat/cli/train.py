"""``platform train classifier|devise|metric|matching|caption``: train a recipe on the
catalog's seen classes (``matching``, ``caption``: on its captioned images)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any

import typer

from embplat.cli.training_run import metric_config, run_recipe

train_app = typer.Typer(
    no_args_is_help=True,
    help="Train a recipe (transfer learning, DeViSE, metric learning, image–caption matching, "
    "captioning).",
)


def register(app: typer.Typer) -> None:
    """Attach this group to the root app."""
    app.add_typer(train_app, name="train")


Opt = typer.Option
# options every recipe's command has
KeepOpt = Annotated[str, Opt(help="all | best: which epoch checkpoints stay after training")]
ClassesOpt = Annotated[str | None, Opt(help="comma-separated classes (default: all seen)")]
EncoderOpt = Annotated[str | None, Opt(help="backbone (default: the configured encoder)")]
SizeOpt = Annotated[int | None, Opt(help="input side in pixels")]
MaxPerClassOpt = Annotated[int | None, Opt(help="train images per class at most")]
SeedOpt = Annotated[int, Opt()]
JsonOpt = Annotated[bool, Opt("--json")]
# the head-then-backbone options of ``train classifier`` and ``train devise``
HeadLrOpt = Annotated[float, Opt(help="peak one-cycle LR of the head")]
BackboneLrOpt = Annotated[float, Opt(help="backbone LR = lr x this")]
AmpOpt = Annotated[bool, Opt(help="mixed precision on CUDA")]

#: The metric-learning options, defined once for ``train metric`` and ``experiment unseen``
#: (see :func:`with_metric_options`): name, type with its help, default.
METRIC_OPTIONS: list[tuple[str, Any, Any]] = [
    (
        "loss",
        Annotated[str, Opt(help="triplet-epshn | proxynca | arcface | subcenter-arcface")],
        "triplet-epshn",
    ),
    ("encoder", EncoderOpt, None),
    ("dim", Annotated[int, Opt(help="embedding dimension")], 128),
    ("optimizer", Annotated[str, Opt(help="adam | sgd (momentum 0.9)")], "adam"),
    ("epochs", Annotated[int, Opt(help="epochs with the backbone trained")], 3),
    (
        "freeze_epochs",
        Annotated[int, Opt(help="head-only epochs first (backbone frozen, features cached)")],
        1,
    ),
    ("image_size", SizeOpt, None),
    ("batch_size", Annotated[int, Opt(help="batch size, a multiple of --m-per-class")], 32),
    ("m_per_class", Annotated[int, Opt(help="images per class in each batch")], 4),
    ("max_per_class", MaxPerClassOpt, None),
    ("classes", ClassesOpt, None),
    (
        "lr",
        Annotated[float | None, Opt(help="peak one-cycle LR (default adam 1e-3, sgd 1e-2)")],
        None,
    ),
    (
        "loss_lr",
        Annotated[float | None, Opt(help="LR of proxies / class weights (default --lr)")],
        None,
    ),
    ("backbone_lr_mult", BackboneLrOpt, 1.0),
    ("distance", Annotated[str, Opt(help="cosine | euclidean (triplet, ProxyNCA)")], "cosine"),
    ("margin", Annotated[float | None, Opt(help="loss margin (default: the loss's own)")], None),
    ("scale", Annotated[float | None, Opt(help="ProxyNCA softmax scale / ArcFace scale")], None),
    ("seed", SeedOpt, 0),
    ("keep_checkpoints", KeepOpt, "all"),
]


def with_metric_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` the :data:`METRIC_OPTIONS` (after ``ctx``); it receives them in its
    ``**options``. Typer reads the options from the returned function's signature."""
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    shared = [inspect.Parameter(n, kind, default=d, annotation=t) for n, t, d in METRIC_OPTIONS]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        command(*args, **kwargs)

    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[own[0], *shared, *own[1:]]
    )
    return wrapper


@train_app.command("classifier")
def classifier_cmd(
    ctx: typer.Context,
    encoder: EncoderOpt = None,
    image_size: SizeOpt = None,
    name: Annotated[str | None, Opt(help="model name (default classifier-N)")] = None,
    classes: ClassesOpt = None,
    max_per_class: MaxPerClassOpt = None,
    freeze_epochs: Annotated[int, Opt(help="epochs with the backbone frozen")] = 10,
    unfreeze_epochs: Annotated[int, Opt(help="epochs with everything trained")] = 4,
    batch_size: Annotated[int, Opt()] = 32,
    lr: HeadLrOpt = 1e-3,
    backbone_lr_mult: BackboneLrOpt = 0.1,
    fine_tune_lr_mult: Annotated[
        float, Opt(help="head LR while the backbone is fine-tuned = lr x this")
    ] = 0.1,
    warmup_epochs: Annotated[
        float, Opt(help="linear LR warm-up at the start of fine-tuning, then cosine decay")
    ] = 1.0,
    augment: Annotated[
        str, Opt(help="light (flips) | full (random crop, flip, rotation) while fine-tuning")
    ] = "light",
    label_smoothing: Annotated[float, Opt()] = 0.0,
    freeze_bn: Annotated[
        bool, Opt(help="BatchNorm statistics frozen while the backbone is fine-tuned")
    ] = True,
    seed: SeedOpt = 0,
    amp: AmpOpt = True,
    embed: Annotated[bool, Opt(help="embed the catalog with the trained model")] = True,
    keep_checkpoints: KeepOpt = "all",
    json_out: JsonOpt = False,
) -> None:
    """Transfer learning: new linear head, frozen then unfrozen backbone, best valid epoch."""
    config = {k: v for k, v in locals().items() if k not in {"ctx", "json_out"}}
    run_recipe(ctx, "classifier", config, json_out)


@train_app.command("devise")
def devise_cmd(
    ctx: typer.Context,
    encoder: EncoderOpt = None,
    image_size: SizeOpt = None,
    name: Annotated[str | None, Opt(help="model name (default devise-N)")] = None,
    classes: ClassesOpt = None,
    max_per_class: MaxPerClassOpt = None,
    stage1_epochs: Annotated[int, Opt(help="softmax classifier epochs before the projection")] = 1,
    freeze_epochs: Annotated[int, Opt(help="projection epochs, backbone frozen")] = 3,
    unfreeze_epochs: Annotated[int, Opt(help="projection epochs, backbone trained")] = 2,
    projection: Annotated[
        str,
        Opt(help="trained (SGD epochs) | ridge (closed-form least squares, frozen features)"),
    ] = "trained",
    ridge_alpha: Annotated[
        float | None, Opt(help="ridge penalty (default: chosen over splits of the seen classes)")
    ] = None,
    features: Annotated[
        str, Opt(help="last (pooled last map) | multilevel (pooled stride-8/16/32 maps)")
    ] = "last",
    loss: Annotated[str, Opt(help="cosine | hinge (DeViSE's rank loss)")] = "cosine",
    margin: Annotated[float, Opt(help="hinge rank loss margin")] = 0.1,
    vectors: Annotated[
        str, Opt(help="glove | minilm | attributes | a vector file (default: the active ones)")
    ] = "",
    center: Annotated[bool, Opt(help="subtract the training labels' mean vector")] = True,
    batch_size: Annotated[int, Opt()] = 32,
    lr: HeadLrOpt = 1e-3,
    backbone_lr_mult: BackboneLrOpt = 0.1,
    seed: SeedOpt = 0,
    amp: AmpOpt = True,
    embed: Annotated[bool, Opt(help="embed the catalog and label vectors")] = True,
    plots: Annotated[bool, Opt(help="save the PCA plot (frozen vs unfrozen)")] = True,
    keep_checkpoints: KeepOpt = "all",
    json_out: JsonOpt = False,
) -> None:
    """DeViSE: map images onto their label's word vector (zero-shot on unseen labels)."""
    config = {k: v for k, v in locals().items() if k not in {"ctx", "json_out"}}
    run_recipe(ctx, "devise", config, json_out)


@train_app.command("metric")
@with_metric_options
def metric_cmd(
    ctx: typer.Context,
    name: Annotated[str | None, Opt(help="model name (default metric-N)")] = None,
    embed: Annotated[bool, Opt(help="embed the catalog with the trained model")] = True,
    json_out: JsonOpt = False,
    **options: Any,
) -> None:
    """Deep metric learning: an embedding head trained with a triplet, proxy or ArcFace loss."""
    run_recipe(ctx, "metric", metric_config({**options, "name": name, "embed": embed}), json_out)


@train_app.command("matching")
def matching_cmd(
    ctx: typer.Context,
    name: Annotated[str | None, Opt(help="model name (default matching-N)")] = None,
    text_encoder: Annotated[str, Opt(help="gru | minilm | glove")] = "gru",
    loss: Annotated[str, Opt(help="order | vse | infonce")] = "order",
    epochs: Annotated[int, Opt(help="epochs on the active encoder's cached features")] = 15,
    embed_dim: Annotated[int, Opt(help="dimension of the joint space")] = 512,
    margin: Annotated[float | None, Opt(help="hinge margin (default order 0.05, vse 0.2)")] = None,
    temperature: Annotated[float, Opt(help="infonce: starting temperature (learnt)")] = 0.07,
    text_hidden: Annotated[int, Opt(help="gru: hidden size")] = 512,
    vectors: Annotated[str, Opt(help="word vectors of glove/gru (default: the active ones)")] = "",
    batch_size: Annotated[int, Opt(help="(image, caption) pairs per step")] = 128,
    lr: Annotated[float, Opt(help="Adam(W) learning rate")] = 2e-4,
    seed: SeedOpt = 0,
    embed: Annotated[bool, Opt(help="write the image and caption points")] = True,
    keep_checkpoints: KeepOpt = "all",
    json_out: JsonOpt = False,
) -> None:
    """Image–caption matching: image tower over the active encoder's cached vectors, text
    tower over a sentence encoder, best epoch by valid R-sum; fills the model's collection
    with image and caption points (`search --text`, `search --image --captions`)."""
    config = {k: v for k, v in locals().items() if k not in {"ctx", "json_out", "epochs"}}
    run_recipe(ctx, "matching", {**config, "freeze_epochs": epochs}, json_out)


_NOT_CONFIG = {"ctx", "json_out", "epochs", "fine_tune_epochs"}


@train_app.command("caption")
def caption_cmd(
    ctx: typer.Context,
    name: Annotated[str | None, Opt(help="model name (default caption-N)")] = None,
    encoder: EncoderOpt = None,
    image_size: SizeOpt = None,
    epochs: Annotated[int, Opt(help="decoder epochs, encoder frozen (its maps cached)")] = 12,
    fine_tune_epochs: Annotated[int, Opt(help="then epochs fine-tuning the encoder too")] = 0,
    attention_dim: Annotated[int, Opt(help="soft attention size")] = 512,
    decoder_dim: Annotated[int, Opt(help="LSTM decoder size")] = 512,
    embed_dim: Annotated[int, Opt(help="word embedding size")] = 300,
    dropout: Annotated[float, Opt(help="dropout before the word scores")] = 0.5,
    alpha_c: Annotated[float, Opt(help="doubly stochastic attention regularisation")] = 1.0,
    positions: Annotated[
        bool, Opt("--positions/--no-positions", help="add grid coordinates to the features")
    ] = True,
    hypercolumns: Annotated[
        bool,
        Opt(
            "--hypercolumns/--no-hypercolumns",
            help="attend over the last map plus earlier stages pooled onto its grid",
        ),
    ] = False,
    coverage: Annotated[
        bool,
        Opt("--coverage/--no-coverage", help="attention sees where it has already looked"),
    ] = False,
    min_word_count: Annotated[int, Opt(help="rarer training words become <unk>")] = 1,
    max_len: Annotated[int, Opt(help="tokens per caption (training and decoding)")] = 30,
    patience: Annotated[int, Opt(help="epochs without a better valid BLEU-4 end a phase")] = 3,
    vectors: Annotated[str, Opt(help="word vectors for the embeddings ('none': random)")] = "",
    batch_size: Annotated[int, Opt(help="(image, caption) pairs per step")] = 64,
    lr: Annotated[float, Opt(help="decoder's peak one-cycle LR")] = 4e-4,
    encoder_lr: Annotated[float, Opt(help="encoder's peak LR while fine-tuning")] = 3e-4,
    seed: SeedOpt = 0,
    keep_checkpoints: KeepOpt = "all",
    json_out: JsonOpt = False,
) -> None:
    """Show-attend-tell captioning: soft attention over the encoder's feature map, an LSTM
    decoder, teacher forcing; best epoch by valid BLEU-4 (`platform caption`,
    `platform ingest DIR --caption-with NAME`)."""
    options = dict(locals())
    config = {k: v for k, v in options.items() if k not in _NOT_CONFIG}
    config.update(freeze_epochs=epochs, unfreeze_epochs=fine_tune_epochs, embed=False)
    run_recipe(ctx, "caption", config, json_out)
