"""The training-recipe registry: one module per recipe, registered by a decorator.

A recipe module in this package (``classifier``, ``devise``, ``metric``) declares, in one
place, everything ``pipelines.train.train_recipe`` needs to train it::

    @register_recipe
    class MyRecipe(RecipeSpec):
        name = "mine"
        config = MyConfig                  # a frozen TrainConfig subclass
        hooks = ("pca_plot",)              # post-training steps (``pipelines.train_hooks``)

        def build(self, cfg, classes, *, home) -> Built: ...   # the fit-able Recipe object
        def stages(self, cfg, built, classes) -> list[Stage]: ...  # default: one stage

Every module of this package is imported on the first lookup (:func:`get_recipe`,
:func:`list_recipes`, :func:`make_config`), so adding a recipe is adding its module; a
recipe registered from anywhere else (a plug-in, a test) works the same way. Importing this
package imports no torch: the recipe modules are loaded only when a recipe is looked up.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from embplat.errors import ConfigError
from embplat.models.train_config import KEEP_CHECKPOINTS, Phase, TrainConfig

if TYPE_CHECKING:
    import torch

    from embplat.models.encoders import Backbone
    from embplat.models.heads import Recipe
    from embplat.models.wordvectors import LabelSpace

__all__ = [
    "KEEP_CHECKPOINTS",
    "Built",
    "RecipeSpec",
    "Stage",
    "TrainConfig",
    "get_recipe",
    "list_recipes",
    "make_config",
    "register_recipe",
]

#: ``(size, mean=, std=) -> (train, test)`` PIL → (3, S, S) transforms of a recipe.
Transforms = Callable[..., "tuple[Callable[[Any], torch.Tensor], Callable[[Any], torch.Tensor]]"]


@dataclass(frozen=True)
class Built:
    """What a recipe builds for one run's classes.

    Attributes:
        recipe: the object ``models.training.fit`` trains (see ``models.heads.Recipe``).
        extras: fields the registered stage's checkpoints carry (DeViSE: label vectors).
        lineage: fields the catalog's model record carries (DeViSE: vectors, label centre).
        labels: the label space the model lives in (DeViSE), for the post-training hooks.
        transforms: the recipe's own train/test transforms; None = the loop's defaults.
    """

    recipe: Recipe
    extras: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    labels: LabelSpace | None = None
    transforms: Transforms | None = None


@dataclass(frozen=True)
class Stage:
    """A run of phases of one ``Recipe`` object on the shared backbone.

    Attributes:
        kind: the recipe name its checkpoints record.
        recipe: what ``fit`` trains in this stage.
        phases: its frozen/unfrozen phases, in order.
        extras: fields its checkpoints carry besides the run's common ones.
    """

    kind: str
    recipe: Recipe
    phases: list[Phase]
    extras: dict[str, Any] = field(default_factory=dict)


C = TypeVar("C", bound=TrainConfig)


class RecipeSpec(Generic[C]):
    """Base of a registered recipe: its name, config class, build, stages and hooks.

    Attributes:
        name: the recipe name (``platform train <name>``, ``models.kind`` in the catalog).
        config: its frozen config class (a :class:`TrainConfig` subclass).
        hooks: post-training steps by name, run by the training use case after fitting or
            after embedding (``pipelines.train_hooks`` lists them).
        data: what it trains on: ``classes`` (labelled images through ``build``/``stages``
            and ``models.training.fit``) or ``captions`` ((image, caption) pairs, trained by
            ``pipelines.train_pairs``; ``build`` and ``stages`` are unused).
    """

    name: ClassVar[str]
    config: ClassVar[type[TrainConfig]]  # C, which a ClassVar cannot name
    hooks: ClassVar[tuple[str, ...]] = ()
    data: ClassVar[str] = "classes"

    def build(self, cfg: C, classes: list[str], *, home: Path) -> Built:
        """The ``Recipe`` object for ``classes`` (in class-index order).

        Args:
            home: the data home (for files a config names relative to it).

        Raises:
            DataError: the classes cannot be trained on (e.g. a label with no word vector).
            ConfigError: the config cannot be built for them (e.g. fewer than 2 classes).
        """
        raise NotImplementedError

    def backbone(self, cfg: C, backbone: Backbone) -> Backbone:
        """The backbone as this recipe trains it (default: as built; DeViSE may pool every
        hypercolumn level instead of the last map's).

        Raises:
            ConfigError: the config asks for features the backbone cannot give.
        """
        return backbone

    def stages(self, cfg: C, built: Built, classes: list[str]) -> list[Stage]:
        """What ``fit`` runs, in order; the last stage's best epoch is the registered model.

        The default: the built recipe through ``cfg.phases()`` (frozen, then unfrozen).
        """
        return [Stage(self.name, built.recipe, cfg.phases(), built.extras)]


S = TypeVar("S", bound=type[RecipeSpec[Any]])
_REGISTRY: dict[str, RecipeSpec[Any]] = {}


def register_recipe(spec: S) -> S:
    """Class decorator registering a :class:`RecipeSpec` subclass under its ``name``.

    Raises:
        ConfigError: another class is registered under that name already.
    """
    known = _REGISTRY.get(spec.name)
    if known is not None and type(known).__qualname__ != spec.__qualname__:
        raise ConfigError(f"recipe {spec.name!r} is registered already by {type(known)}")
    _REGISTRY[spec.name] = spec()
    return spec


def _load_builtin() -> None:
    """Import every recipe module of this package (each registers itself)."""
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def list_recipes() -> list[str]:
    """Names of all registered recipes."""
    _load_builtin()
    return sorted(_REGISTRY)


def get_recipe(name: str) -> RecipeSpec[Any]:
    """The registered recipe ``name``.

    Raises:
        ConfigError: an unknown name; the message lists the known ones.
    """
    names = list_recipes()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown recipe {name!r}; choose one of: {', '.join(names)}")
    return _REGISTRY[name]


def make_config(recipe: str, config: TrainConfig | Mapping[str, Any] | None) -> TrainConfig:
    """A frozen config for ``recipe`` from a dataclass, a JSON-like dict, or None (defaults).

    Raises:
        ConfigError: unknown recipe, a config of another recipe, or unknown keys.
    """
    cls = get_recipe(recipe).config
    if config is None:
        return cls()
    if isinstance(config, TrainConfig):
        if not isinstance(config, cls):
            raise ConfigError(f"recipe {recipe!r} needs a {cls.__name__}, got {type(config)}")
        return config
    return cls.from_dict(config)
