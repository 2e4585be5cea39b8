"""The service's routes: classify, search, classes, jobs, models, images, probes, metrics.

Handlers read the request (uploads are checked in :mod:`embplat.serve.uploads`) and run the
:class:`~embplat.api.Platform`'s model work on the service's one model thread (catalog
reads on the thread pool), so the encoder and index serve one request at a time. Images are
served by catalog id only.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from embplat.api import Platform
from embplat.serve.app import STATIC, Service
from embplat.serve.uploads import UPLOAD_BODY, read_images

router = APIRouter()

K = Annotated[int, Query(ge=1, description="neighbours (at most EMBPLAT_SERVE_MAX_K)")]
Model = Annotated[str | None, Query(max_length=200, description="a trained model's name")]
ClassName = Annotated[str | None, Query(alias="class", max_length=200)]
Split = Annotated[Literal["train", "valid", "test"] | None, Query()]
Kind = Annotated[Literal["image", "label", "caption"], Query()]
#: As ``--space`` of ``platform classify`` / ``search`` (``embplat.api.platform.SEARCH_SPACES``).
Space = Annotated[
    Literal["encoder", "semantic", "conse", "clip"],
    Query(
        description="encoder: kNN vote / image space; semantic: a DeViSE model's labels "
        "(stored calibration applied); conse, clip: training-free zero-shot"
    ),
]
#: As ``embplat.evaluation.hubness.HUBNESS_METHODS``.
Hubness = Literal["none", "csls", "isoftmax"]
#: How many labels a zero-shot answer lists at most (``platform classify --space``'s cap).
MAX_LABELS = 10


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _platform(request: Request, k: int | None = None) -> Platform:
    service = _service(request)
    if k is not None and k > service.options.max_k:
        raise HTTPException(422, f"k={k} is over the limit of {service.options.max_k}")
    return service.platform


async def _json(request: Request) -> Any:
    if not request.headers.get("content-type", "").startswith("application/json"):
        return None
    try:
        return await request.json()
    except ValueError as exc:
        raise HTTPException(422, f"body is not valid JSON ({exc})") from exc


def _per_image(answers: Sequence[Any]) -> JSONResponse:
    """``{"results": [...]}``, one answer per uploaded image; a 422 naming each image's
    error when none could be answered."""
    results = [a.to_dict() for a in answers]
    if all("error" in r for r in results):
        detail = "; ".join(f"{r['source']}: {r['error']}" for r in results)
        return JSONResponse({"error": "invalid", "detail": detail, "results": results}, 422)
    return JSONResponse({"results": results})


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    """The search page."""
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.get("/healthz", tags=["probes"])
def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz", tags=["probes"])
async def readyz(request: Request) -> JSONResponse:
    """The catalog answers and the active index is open (503 otherwise)."""
    try:
        info = await _service(request).run(_platform(request).ready)
    except Exception as exc:  # any fault of a dependency means "not ready", never a 500
        return JSONResponse({"error": "unavailable", "detail": str(exc)}, status_code=503)
    return JSONResponse({"status": "ready", **info})


@router.get("/metrics", tags=["probes"])
def metrics(request: Request) -> Response:
    """Prometheus metrics: requests, latency histograms, model load time."""
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(_service(request).metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


@router.post("/classify", tags=["query"], openapi_extra=UPLOAD_BODY)
async def classify(
    request: Request,
    k: K = 10,
    model: Model = None,
    weighted: bool = False,
    reject_below: Annotated[float | None, Query(ge=0.0, le=1.0)] = None,
    reject_on: Literal["share", "score"] = "share",
    knn: bool = False,
    space: Space = "encoder",
    gamma: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    hubness: Hubness = "none",
    top: Annotated[int, Query(ge=1, le=1000, description="conse: ImageNet classes")] = 10,
    unseen_only: bool = False,
) -> JSONResponse:
    """Classify one or more uploaded images by kNN vote (multipart field `image`, or JSON
    `{"images": [base64...]}`); a classifier `model` answers with its softmax head unless
    `knn`. With `space` semantic, conse or clip: each image's nearest labels instead (at most
    10 listed; `gamma`, `hubness`, `top`, `unseen_only` as `platform classify`; the gamma
    applied is in each answer). One answer per image, in order; an image that cannot be
    read is an entry `{"source", "error"}`, and a request where none can is a 422."""
    _platform(request, k)  # checks k against the limit
    service = _service(request)
    uploads = await read_images(request, service.options.limits, json_body=await _json(request))
    service.metrics.images.labels("classify").inc(len(uploads))
    images, names = [u.data for u in uploads], [u.name for u in uploads]
    answers: Sequence[Any]
    if space == "encoder":
        answers = await service.batcher.submit(  # shares a forward pass with concurrent requests
            images, names, k=k, weighted=weighted, model=model, reject_below=reject_below,
            reject_on=reject_on, knn=knn,
        )  # fmt: skip
    else:  # not batched: a hubness correction scores each image against its batch too
        answers = await service.run(
            service.platform.zero_shot, images, names=names, k=min(k, MAX_LABELS), model=model,
            unseen_only=unseen_only, gamma=gamma, hubness=hubness, space=space, top=top,
        )  # fmt: skip
    return _per_image(answers)


@router.post("/caption", tags=["query"], openapi_extra=UPLOAD_BODY)
async def caption(
    request: Request,
    model: Model = None,
    beam: Annotated[int, Query(ge=1, le=10)] = 3,
    n: Annotated[int, Query(ge=1, le=10, description="captions per image, at most beam")] = 1,
) -> JSONResponse:
    """Captions of one or more uploaded images (multipart `image`, or JSON `{"images":
    [base64...]}`) by a captioning model (the newest unless `model`), best first, as
    `platform caption --json`; an image that cannot be read is an entry `{"source",
    "error"}`, and a request where none can is a 422."""
    service = _service(request)
    uploads = await read_images(request, service.options.limits, json_body=await _json(request))
    service.metrics.images.labels("caption").inc(len(uploads))
    answers = await service.run(
        service.platform.caption_many, [u.data for u in uploads], names=[u.name for u in uploads],
        model=model, beam=beam, n=n,
    )  # fmt: skip
    return _per_image(answers)


@router.get("/search", tags=["query"])
async def search(
    request: Request,
    text: Annotated[str | None, Query(max_length=500)] = None,
    point_id: Annotated[str | None, Query(max_length=64)] = None,
    k: K = 5,
    label: ClassName = None,
    split: Split = None,
    kind: Kind = "image",
    model: Model = None,
    space: Space = "encoder",
    hubness: Annotated[Hubness | None, Query(description="DeViSE text: default isoftmax")] = None,
    expand: Annotated[
        int, Query(ge=0, le=1000, description="DeViSE text: query expansion from the N best")
    ] = 0,
) -> dict[str, Any]:
    """Nearest images to a text (a DeViSE model's word space, a sentence index, a matching
    model; `space` conse or clip: training-free) or to a stored point's id."""
    platform = _platform(request, k)
    found = await _service(request).run(
        platform.search, text=text, point_id=point_id, k=k, label=label, split=split, kind=kind,
        model=model, hubness=hubness, space=space, expand=expand,
    )  # fmt: skip
    return found.to_dict()


@router.post("/search", tags=["query"], openapi_extra=UPLOAD_BODY)
async def search_by_upload(
    request: Request,
    k: K = 5,
    label: ClassName = None,
    split: Split = None,
    kind: Kind = "image",
    model: Model = None,
    space: Space = "encoder",
) -> dict[str, Any]:
    """Nearest images to an uploaded image (multipart `image` or JSON `images`), or to a
    vector (JSON `{"vector": [...]}`, the space's dimension); `kind=label`: the image's
    nearest labels (a DeViSE model's, or with `space=clip` the label prompts);
    `space=semantic`: images in a DeViSE model's space."""
    platform = _platform(request, k)
    body = await _json(request)
    options: dict[str, Any] = {"k": k, "label": label, "split": split, "kind": kind}
    options |= {"model": model, "space": space}
    if isinstance(body, dict) and "vector" in body:
        query: dict[str, Any] = {"vector": body["vector"]}
    else:
        uploads = await read_images(request, _service(request).options.limits, json_body=body)
        if len(uploads) != 1:
            raise HTTPException(422, f"search takes one image, got {len(uploads)}")
        query = {"image": uploads[0].data}
    found = await _service(request).run(platform.search, **query, **options)
    if "image" in query:
        found.query = f"image {uploads[0].name}"
    return found.to_dict()


@router.get("/classes", tags=["catalog"])
async def classes(request: Request) -> list[dict[str, Any]]:
    """Every class with its role and image count per split."""
    rows = await _service(request).run(_platform(request).classes)
    return [c.to_dict() for c in rows]


@router.post("/classes/{name}", tags=["catalog"], status_code=201, openapi_extra=UPLOAD_BODY)
async def add_class(request: Request, name: Annotated[str, Path(max_length=64)]) -> dict[str, Any]:
    """Enrol class `name` from uploaded images, as a recorded job (in-process, or on the
    workers in server mode): classifiable at once, no retraining."""
    platform = _platform(request)
    uploads = await read_images(
        request, _service(request).options.limits, json_body=await _json(request)
    )
    return await _service(request).run(platform.add_class, name, [u.data for u in uploads])


@router.get("/jobs", tags=["catalog"])
async def jobs(
    request: Request, limit: Annotated[int, Query(ge=1, le=500)] = 20
) -> list[dict[str, Any]]:
    """The most recent jobs, newest first."""
    rows = await run_in_threadpool(_platform(request).jobs, limit)
    return [j.to_dict() for j in rows]


@router.get("/jobs/{job_id}", tags=["catalog"])
async def job(request: Request, job_id: Annotated[int, Path(ge=1)]) -> dict[str, Any]:
    """One job's state and progress."""
    return (await run_in_threadpool(_platform(request).job, job_id)).to_dict()


@router.get("/models", tags=["catalog"])
async def models(request: Request) -> list[dict[str, Any]]:
    """Registered models: pretrained encoders used so far and trained models."""
    return [m.to_dict() for m in await run_in_threadpool(_platform(request).models)]


@router.get("/images/{image_id}", tags=["images"])
async def image(request: Request, image_id: Annotated[int, Path(ge=1)]) -> Response:
    """A cataloged image's file, by catalog id."""
    from pathlib import Path as FilePath

    from embplat.errors import NotFoundError

    info = await run_in_threadpool(_platform(request).image, image_id)
    if not FilePath(info.path).is_file():
        raise NotFoundError(f"the file of image {image_id} is gone; run `platform doctor`")
    return FileResponse(info.path)


@router.get("/images/{image_id}/thumbnail", tags=["images"])
async def thumbnail(
    request: Request,
    image_id: Annotated[int, Path(ge=1)],
    size: Annotated[int, Query(ge=16, le=512)] = 128,
) -> Response:
    """A cataloged image as a JPEG at most `size` pixels on its long side."""
    platform = _platform(request)
    info = await run_in_threadpool(platform.image, image_id)
    max_pixels = _service(request).options.max_pixels
    data = await run_in_threadpool(_thumbnail, info.path, size, max_pixels)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})


def _thumbnail(path: str, size: int, max_pixels: int) -> bytes:
    from embplat.errors import NotFoundError
    from embplat.ingest.images import load_rgb

    try:
        img = load_rgb(path, max_pixels=max_pixels)
    except Exception as exc:
        raise NotFoundError(f"the file of this image cannot be read any more: {exc}") from exc
    img.thumbnail((size, size))
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()
