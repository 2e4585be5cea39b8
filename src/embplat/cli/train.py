"""``platform train classifier|devise|metric``: train a recipe on the catalog's seen classes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.progress import TaskID
from rich.table import Table

from embplat.cli.output import RichProgress, console, print_json, progress_bars

train_app = typer.Typer(
    no_args_is_help=True, help="Train a recipe (transfer learning, DeViSE, metric learning)."
)


def register(app: typer.Typer) -> None:
    """Attach this group to the root app."""
    app.add_typer(train_app, name="train")


class StatusBars(RichProgress):
    """Rich bars whose newest bar also shows a live status (loss, images/s)."""

    _task: TaskID | None = None
    _label = ""

    def task(self, description: str, total: int) -> Callable[[int], None]:
        """Add a bar; returns ``advance(n)``."""
        task_id = self.progress.add_task(description, total=total)
        self._task, self._label = task_id, description
        return lambda n: self.progress.advance(task_id, n)

    def status(self, text: str) -> None:
        """Append ``text`` to the newest bar's description."""
        if self._task is not None:
            self.progress.update(self._task, description=f"{self._label} [dim]{text}[/]")


Opt = typer.Option
# the metric-learning options (``train metric`` and ``experiment unseen`` share them)
LossOpt = Annotated[str, Opt(help="triplet-epshn | proxynca | arcface | subcenter-arcface")]
EncoderOpt = Annotated[str | None, Opt(help="backbone (default: the configured encoder)")]
DimOpt = Annotated[int, Opt(help="embedding dimension")]
OptimizerOpt = Annotated[str, Opt(help="adam | sgd (momentum 0.9)")]
EpochsOpt = Annotated[int, Opt(help="epochs with the backbone trained")]
FreezeOpt = Annotated[int, Opt(help="head-only epochs first (backbone frozen, features cached)")]
SizeOpt = Annotated[int | None, Opt(help="input side in pixels")]
BatchOpt = Annotated[int, Opt(help="batch size, a multiple of --m-per-class")]
MPerClassOpt = Annotated[int, Opt(help="images per class in each batch")]
MaxPerClassOpt = Annotated[int | None, Opt(help="train images per class at most")]
ClassesOpt = Annotated[str | None, Opt(help="comma-separated classes (default: all seen)")]
LrOpt = Annotated[float | None, Opt(help="peak one-cycle LR (default adam 1e-3, sgd 1e-2)")]
BackboneLrOpt = Annotated[float, Opt(help="backbone LR = lr x this")]
LossLrOpt = Annotated[float | None, Opt(help="LR of proxies / class weights (default --lr)")]
DistanceOpt = Annotated[str, Opt(help="cosine | euclidean (triplet, ProxyNCA)")]
MarginOpt = Annotated[float | None, Opt(help="loss margin (default: the loss's own)")]
ScaleOpt = Annotated[float | None, Opt(help="ProxyNCA softmax scale / ArcFace scale")]
KeepOpt = Annotated[str, Opt(help="all | best: which epoch checkpoints stay after training")]


@train_app.command("classifier")
def classifier_cmd(
    ctx: typer.Context,
    encoder: Annotated[str | None, Opt(help="backbone (default: the configured encoder)")] = None,
    image_size: Annotated[int | None, Opt(help="input side in pixels")] = None,
    name: Annotated[str | None, Opt(help="model name (default classifier-N)")] = None,
    classes: Annotated[str | None, Opt(help="comma-separated classes (default: all seen)")] = None,
    max_per_class: Annotated[int | None, Opt(help="train images per class at most")] = None,
    freeze_epochs: Annotated[int, Opt(help="epochs with the backbone frozen")] = 2,
    unfreeze_epochs: Annotated[int, Opt(help="epochs with everything trained")] = 2,
    batch_size: Annotated[int, Opt()] = 32,
    lr: Annotated[float, Opt(help="peak one-cycle LR of the head")] = 1e-3,
    backbone_lr_mult: Annotated[float, Opt(help="backbone LR = lr x this")] = 0.1,
    label_smoothing: Annotated[float, Opt()] = 0.0,
    seed: Annotated[int, Opt()] = 0,
    amp: Annotated[bool, Opt(help="mixed precision on CUDA")] = True,
    embed: Annotated[bool, Opt(help="embed the catalog with the trained model")] = True,
    keep_checkpoints: KeepOpt = "all",
    json_out: Annotated[bool, Opt("--json")] = False,
) -> None:
    """Transfer learning: new linear head, frozen then unfrozen backbone, best valid epoch."""
    config = {k: v for k, v in locals().items() if k not in {"ctx", "json_out"}}
    _run(ctx, "classifier", config, json_out)


@train_app.command("devise")
def devise_cmd(
    ctx: typer.Context,
    encoder: Annotated[str | None, Opt(help="backbone (default: the configured encoder)")] = None,
    image_size: Annotated[int | None, Opt(help="input side in pixels")] = None,
    name: Annotated[str | None, Opt(help="model name (default devise-N)")] = None,
    classes: Annotated[str | None, Opt(help="comma-separated classes (default: all seen)")] = None,
    max_per_class: Annotated[int | None, Opt(help="train images per class at most")] = None,
    stage1_epochs: Annotated[int, Opt(help="softmax classifier epochs before the projection")] = 1,
    freeze_epochs: Annotated[int, Opt(help="projection epochs, backbone frozen")] = 3,
    unfreeze_epochs: Annotated[int, Opt(help="projection epochs, backbone trained")] = 2,
    loss: Annotated[str, Opt(help="cosine | hinge (DeViSE's rank loss)")] = "cosine",
    margin: Annotated[float, Opt(help="hinge rank loss margin")] = 0.1,
    vectors: Annotated[str, Opt(help="word-vector file (default: `vectors load`'s)")] = "",
    center: Annotated[bool, Opt(help="subtract the training labels' mean vector")] = True,
    batch_size: Annotated[int, Opt()] = 32,
    lr: Annotated[float, Opt(help="peak one-cycle LR of the head")] = 1e-3,
    backbone_lr_mult: Annotated[float, Opt(help="backbone LR = lr x this")] = 0.1,
    seed: Annotated[int, Opt()] = 0,
    amp: Annotated[bool, Opt(help="mixed precision on CUDA")] = True,
    embed: Annotated[bool, Opt(help="embed the catalog and label vectors")] = True,
    plots: Annotated[bool, Opt(help="save the PCA plot (frozen vs unfrozen)")] = True,
    keep_checkpoints: KeepOpt = "all",
    json_out: Annotated[bool, Opt("--json")] = False,
) -> None:
    """DeViSE: map images onto their label's word vector (zero-shot on unseen labels)."""
    config = {k: v for k, v in locals().items() if k not in {"ctx", "json_out"}}
    _run(ctx, "devise", config, json_out)


@train_app.command("metric")
def metric_cmd(
    ctx: typer.Context,
    loss: LossOpt = "triplet-epshn",
    encoder: EncoderOpt = None,
    dim: DimOpt = 128,
    optimizer: OptimizerOpt = "adam",
    epochs: EpochsOpt = 3,
    freeze_epochs: FreezeOpt = 1,
    image_size: SizeOpt = None,
    batch_size: BatchOpt = 32,
    m_per_class: MPerClassOpt = 4,
    max_per_class: MaxPerClassOpt = None,
    name: Annotated[str | None, Opt(help="model name (default metric-N)")] = None,
    classes: ClassesOpt = None,
    lr: LrOpt = None,
    loss_lr: LossLrOpt = None,
    backbone_lr_mult: BackboneLrOpt = 1.0,
    distance: DistanceOpt = "cosine",
    margin: MarginOpt = None,
    scale: ScaleOpt = None,
    seed: Annotated[int, Opt()] = 0,
    embed: Annotated[bool, Opt(help="embed the catalog with the trained model")] = True,
    keep_checkpoints: KeepOpt = "all",
    json_out: Annotated[bool, Opt("--json")] = False,
) -> None:
    """Deep metric learning: an embedding head trained with a triplet, proxy or ArcFace loss."""
    options = {k: v for k, v in locals().items() if k not in {"ctx", "json_out"}}
    _run(ctx, "metric", metric_options(options), json_out)


def metric_options(options: dict[str, Any]) -> dict[str, Any]:
    """CLI options → ``MetricConfig`` fields: ``epochs`` are the unfrozen epochs; the LR
    defaults to 1e-3 for Adam and 1e-2 for SGD."""
    out = dict(options)
    out["unfreeze_epochs"] = out.pop("epochs")
    if out.get("lr") is None:
        out["lr"] = 1e-2 if out.get("optimizer") == "sgd" else 1e-3
    return out


def train_config(ctx: typer.Context, options: dict[str, Any]) -> dict[str, Any]:
    """A recipe's config dict from CLI options and the settings (encoder, device...)."""
    settings = ctx.obj.settings
    config = {k: v for k, v in options.items() if v is not None}
    if "encoder" not in config:  # the configured encoder, with its weights
        config["encoder"] = settings.embed.encoder
        if settings.embed.weights:
            config["weights"] = settings.embed.weights
    if settings.embed.image_size and "image_size" not in config:
        config["image_size"] = settings.embed.image_size
    if "classes" in config:
        config["classes"] = [c.strip() for c in config["classes"].split(",") if c.strip()]
    config["device"] = settings.embed.device
    config["num_workers"] = settings.embed.num_workers
    return config


def _run(ctx: typer.Context, recipe: str, options: dict[str, Any], json_out: bool) -> None:
    from embplat.catalog import repo
    from embplat.pipelines.train import train_recipe

    config = train_config(ctx, options)
    context = ctx.obj.context()
    if context.dispatch is not None:  # server mode: a GPU worker trains, under a fixed name
        from embplat.pipelines.jobs import queue_training

        out = queue_training(context, recipe, config)
        if json_out:
            print_json({"queued": out["task"], **out})
        else:
            console.print(
                f"queued {recipe} training of {out['model']} as job {out['job']} (task "
                f"{out['task']}): follow with `platform jobs --watch`, then "
                "`platform models list`"
            )
        return
    with progress_bars(not json_out) as bars:
        name = train_recipe(context, recipe, config, StatusBars(bars.progress))
    with context.sessions() as session:
        record = repo.get_model(session=session, name=name)
        info = {"name": record.name, "kind": record.kind, "dim": record.dim, **record.config}
    if json_out:
        print_json(info)
        return
    console.print(epochs_table(info))
    console.print(
        f"[bold green]{name}[/]: best epoch {info['best_epoch']} "
        f"({info['metric']}, untrained {info['baseline']}), {info['data']['train_images']} "
        f"train images of {len(info['data']['classes'])} classes → index {info['collection']}"
    )
    for path in info.get("plots") or []:
        console.print(f"plot: {context.home / path}")


def epochs_table(info: dict[str, Any]) -> Table:
    """Per-epoch loss, metric and speed of a registered model (the best epoch starred)."""
    table = Table(
        "epoch", "phase", "loss", info.get("metric", "metric"), "img/s", "s", title=info["name"]
    )
    for e in info.get("epochs", []):
        star = " *" if e["epoch"] == info.get("best_epoch") else ""
        table.add_row(
            f"{e['epoch']}{star}",
            e["phase"],
            _num(e["loss"]),
            _num(e["metric"]),
            f"{e['images_per_s']:.1f}",
            f"{e['seconds']:.0f}",
        )
    return table


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"
