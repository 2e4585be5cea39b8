"""``Platform``: the public Python facade over the use cases the CLI calls.

:class:`Platform` = the queries here (classify, zero-shot labels, search) + the catalog's
methods (:mod:`embplat.api.catalog`) + settings, context and lock (:mod:`embplat.api.session`).
The CLI's ``classify`` and ``search`` and the HTTP service answer through these methods, so
the three doors give the same answers with the same ``to_dict()`` keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from embplat.api.catalog import CatalogMethods
from embplat.api.inputs import ImageInput, query_files, query_images, source_of
from embplat.api.results import Captions, Classification, Failure, SearchResult, ZeroShot
from embplat.errors import ConfigError, DataError

#: The ``space`` values of :meth:`Platform.zero_shot` and of :meth:`Platform.search`.
ZERO_SHOT_SPACES = ("semantic", "conse", "clip")
SEARCH_SPACES = ("encoder", *ZERO_SHOT_SPACES)


class Platform(CatalogMethods):
    """Ingest, classify, search, enrol and evaluate from Python.

    Args:
        home: the data home (default: ``EMBPLAT_HOME`` or ``./.embplat``).
        settings: complete settings; otherwise read like the CLI's (environment, ``.env``).
        context: an open use-case context built from ``settings`` (the CLI's); its owner
            closes it.
        **options: the CLI's root flags: ``catalog_url``, ``backend``, ``encoder``,
            ``weights``, ``image_size``, ``device``.

    Raises:
        ConfigError: a setting is invalid or an option unknown.
    """

    def classify(self, image: ImageInput, *, k: int = 10, **options: Any) -> Classification:
        """The class of one image by kNN vote of its ``k`` nearest enrolled images.

        Args:
            image: a path, bytes, a binary file object, a PIL image or an (H, W[, 3]) uint8
                array.
            **options: as :meth:`classify_many`.

        Raises:
            DataError: the image cannot be read (the message says why); a bad option.
            IndexEmptyError: nothing is enrolled yet.
            NotFoundError: no such model.
        """
        return _answered(self.classify_many([image], k=k, **options)[0])

    def classify_many(
        self,
        images: Sequence[ImageInput],
        *,
        k: int = 10,
        weighted: bool = False,
        model: str | None = None,
        reject_below: float | None = None,
        reject_on: str = "share",
        names: Sequence[str] | None = None,
        knn: bool = False,
    ) -> list[Classification | Failure]:
        """Classify several images in batches; one answer per image, in order, a
        :class:`Failure` for each image that cannot be read.

        Args:
            weighted: weight the votes by similarity.
            model: a trained model (``platform models list``); None: the active encoder.
                A classifier (``platform train classifier``) answers with its softmax head
                (``method="softmax"``, the ``k`` most probable classes in ``probabilities``).
            knn: with a classifier ``model``, the vote among its neighbours instead.
            reject_below, reject_on: answer ``unknown`` when the vote share (``share``) or
                the nearest cosine (``score``) is below this threshold.
            names: how the answers name their images (default: the path, a file object's
                name, else ``<image N>``).
        """
        from embplat.api import querying

        options = {"k": k, "weighted": weighted, "model": model, "reject_on": reject_on, "knn": knn}
        with self._lock:
            return querying.classify(
                self.context, images, _sources(images, names), reject_below=reject_below, **options
            )

    def caption(self, image: ImageInput, **options: Any) -> Captions:
        """Captions generated for one image, best first (as :meth:`caption_many`).

        Raises:
            DataError: the image cannot be read. ConfigError: no captioning model, a bad
                beam or n.
        """
        return _answered(self.caption_many([image], **options)[0])

    def caption_many(
        self,
        images: Sequence[ImageInput],
        *,
        model: str | None = None,
        beam: int = 3,
        n: int = 1,
        names: Sequence[str] | None = None,
    ) -> list[Captions | Failure]:
        """Captions of several images by a captioning model (``platform train caption``;
        the newest unless ``model``): beam search of width ``beam`` (1-10), ``n`` captions
        per image (1..beam), best first; a :class:`Failure` for each image that cannot be
        read.

        Raises:
            ConfigError: ``model`` generates no captions, no captioning model exists, or a
                bad beam or n.
            NotFoundError: no such model.
        """
        from embplat.api import querying

        with self._lock:
            return querying.caption(
                self.context, images, _sources(images, names), model=model, beam=beam, n=n
            )

    def zero_shot(
        self,
        images: Sequence[ImageInput],
        *,
        k: int = 10,
        model: str | None = None,
        unseen_only: bool = False,
        names: Sequence[str] | None = None,
        gamma: float | None = None,
        hubness: str = "none",
        space: str = "semantic",
        top: int = 10,
    ) -> list[ZeroShot | Failure]:
        """Each image's nearest label vectors in a DeViSE model's space (``classify --space
        semantic``): classes never seen in training compete too; one answer per image.

        Args:
            k: labels listed per image (``candidates``).
            model: a DeViSE model; None: the newest.
            unseen_only: only labels of role ``unseen`` (the zero-shot setting).
            names: as :meth:`classify_many`.
            gamma: calibrated stacking's gamma; None: the one stored with the model.
            hubness: ``none``, ``csls`` or ``isoftmax`` rescoring over the label set.
            space: ``semantic`` (a DeViSE model), ``conse`` (training-free, the frozen
                encoder's ImageNet head; ``top`` classes combined) or ``clip`` (training-free,
                the active open_clip encoder's label prompts).

        Raises:
            DataError: an unknown ``space``. ConfigError: an unknown ``hubness``, ``top`` < 1.
            NotFoundError: no DeViSE model. IndexEmptyError: no label vectors.
        """
        from embplat.api import querying
        from embplat.evaluation.hubness import check_hubness

        _check_space(space, ZERO_SHOT_SPACES)
        check_hubness(hubness)  # conse and clip ignore it, but a typo must not pass unseen
        roles = ["unseen"] if unseen_only else None
        with self._lock:
            return querying.zero_shot(
                self.context, images, _sources(images, names), k=k, model=model, roles=roles,
                gamma=gamma, hubness=hubness, space=space, top=top,
            )  # fmt: skip

    def semantic_model(self, model: str | None = None) -> str:
        """``model`` checked to be a DeViSE model, or the newest one.

        Raises:
            NotFoundError: no such model, or none trained yet (the message says how).
        """
        from embplat.pipelines.semantic import semantic_model

        return semantic_model(self.context, model)

    def search(
        self,
        *,
        image: ImageInput | None = None,
        text: str | None = None,
        vector: Sequence[float] | Any | None = None,
        point_id: str | None = None,
        k: int = 5,
        label: str | None = None,
        split: str | None = None,
        kind: str = "image",
        model: str | None = None,
        hubness: str | None = None,
        space: str = "encoder",
        expand: int = 0,
    ) -> SearchResult:
        """The ``k`` points nearest to one query: an image, a text (a sentence for a sentence
        index or a matching ``model``, else words in a DeViSE model's space), a vector of the
        space's dimension, or a stored point's id. Vector and point-id queries build no
        encoder.

        Args:
            label, split: only points of this class / split.
            kind: the points to find: ``image``; ``label`` (a DeViSE model's label vectors:
                for an image, its nearest labels); ``caption`` (a matching model's captions).
                Text queries find images only.
            model: a trained model's space; text queries default to the newest DeViSE model
                (to the sentence index when there is none).
            hubness: a DeViSE text query's rescoring over the label set (``isoftmax`` by
                default, ``csls``, ``none``).
            space: ``semantic``: an image or vector query of ``kind="image"`` searches a
                DeViSE model's image space (``model`` or the newest); ``conse`` (text queries
                only): the catalog's ConSE vectors (no training); ``clip``: a text query is
                embedded by the active open_clip encoder's text tower, and ``kind="label"``
                lists an image's nearest label prompts.
            expand: a DeViSE text query searches again with the mean of its ``expand``
                best images (query expansion); 0 = off.

        Raises:
            DataError: not exactly one query given; a bad filter, kind, k, vector or space.
            ConfigError: an unknown ``hubness``; ``expand`` on a query other than a
                DeViSE text query.
            NotFoundError: no such model or point.
            IndexEmptyError: nothing matches the filters.
        """
        from embplat.api import searching

        given = {"image": image, "text": text, "vector": vector, "point_id": point_id}
        names = [name for name, value in given.items() if value is not None]
        if len(names) != 1:
            raise DataError(
                "give exactly one query of image=, text=, vector=, point_id= "
                f"(got {names or 'none'})"
            )
        by_points = image is None and text is None
        flt = searching.user_filter(label=label, split=split, kind=kind, by_points=by_points)
        if text is not None and kind != "image":
            raise DataError(f"a text query finds images, not kind={kind!r}")
        if expand and text is None:
            raise ConfigError("expand (query expansion) applies to text queries only")
        with self._lock:
            space, model = self._search_space(space, model, text=text, kind=kind, hubness=hubness)
            if text is not None:
                return searching.by_text(
                    self.context, text, k=k, flt=flt, model=model, hubness=hubness,
                    space=space, expand=expand,
                )  # fmt: skip
            if image is None:
                return searching.by_vector(
                    self.context, vector, point_id, k=k, flt=flt, model=model
                )
            result = self._search_image(image, kind, k=k, flt=flt, model=model, space=space)
        result.query = f"image {source_of(image, 0)}"
        return result

    # --- helpers -------------------------------------------------------------------------

    def _search_space(
        self, space: str, model: str | None, *, text: str | None, kind: str, hubness: str | None
    ) -> tuple[str, str | None]:
        """The (space, model) a search runs in, as the CLI's ``search --space`` resolves
        them: ``semantic`` is a DeViSE model's space (a text query's default already)."""
        from embplat.evaluation.hubness import check_hubness

        _check_space(space, SEARCH_SPACES)
        if hubness is not None:
            check_hubness(hubness)
        if space == "conse" and text is None:
            raise DataError(
                "space 'conse' searches by text only; classify an image with "
                "zero_shot(space='conse') (`platform classify --space conse`)"
            )
        if space != "semantic":
            return space, model
        if text is None and kind == "image":
            model = self.semantic_model(model)
        return "encoder", model

    def _search_image(
        self, image: ImageInput, kind: str, *, space: str, **options: Any
    ) -> SearchResult:
        from embplat.api import searching

        if kind == "image":
            return searching.by_image(self.context, query_images([image])[0], **options)
        if kind == "label":
            with query_files([image]) as paths:
                return searching.labels_of_image(self.context, paths[0], space=space, **options)
        with query_files([image]) as paths:
            return searching.captions_of_image(self.context, paths[0], **options)


A = TypeVar("A")


def _answered(answer: A | Failure) -> A:
    """A one-image answer, or the DataError its :class:`Failure` describes."""
    if isinstance(answer, Failure):
        raise DataError(f"{answer.source}: {answer.error}")
    return answer


def _sources(images: Sequence[ImageInput], names: Sequence[str] | None) -> list[str]:
    """How the answers name their images. Raises DataError when the counts differ."""
    sources = list(names or [source_of(image, n) for n, image in enumerate(images)])
    if len(sources) != len(images):
        raise DataError(f"{len(images)} images but {len(sources)} names")
    return sources


def _check_space(space: str, allowed: Sequence[str]) -> None:
    """Raises DataError naming ``space`` when it is not one of ``allowed``."""
    if space not in allowed:
        raise DataError(f"space must be one of {', '.join(allowed)}, got {space!r}")
