"""Start-up stays light: the CLI imports only what the invoked command needs (STYLE.md,
"Start-up and imports"). Each check runs a fresh interpreter, so nothing this test process
imported (torch, to build a data home) can hide an import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

#: Never imported by ``import embplat.cli.app`` or ``--help``.
HEAVY = {
    "torch",
    "torchvision",
    "sentence_transformers",
    "pytorch_metric_learning",
    "sklearn",
    "matplotlib",
    "nmslib",
    "qdrant_client",
    "celery",
    "alembic",
    "PIL",
    "numpy",
    "sqlalchemy",
    "pydantic_settings",
}
#: Never imported by the inspection commands (which do open the catalog, and ``status`` the
#: index: sqlalchemy, numpy, nmslib are theirs to load).
ML = {"torch", "torchvision", "sentence_transformers", "pytorch_metric_learning", "sklearn"}
ML |= {"matplotlib", "celery", "alembic", "PIL"}

FLAGS = ["--encoder", "tiny_cnn", "--backend", "nmslib"]


def _loaded_after(code: str, env: dict[str, str] | None = None) -> tuple[set[str], str]:
    """Run ``code`` in a fresh interpreter; the top-level packages it left in sys.modules."""
    modules = "sorted({m.split('.')[0] for m in sys.modules})"
    probe = f"{code}\nimport sys, json\nprint(json.dumps({modules}))"
    proc = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    *output, modules = proc.stdout.rstrip("\n").split("\n")
    return set(json.loads(modules)), "\n".join(output)


def _run_cli(args: list[str]) -> str:
    """Python code running ``platform ARGS`` in-process (Typer's exit is swallowed)."""
    return (
        "from embplat.cli.app import app\n"
        f"try:\n    app({args!r}, standalone_mode=False)\n"
        "except SystemExit as exc:\n    assert not exc.code, exc.code"
    )


def test_importing_the_cli_imports_no_heavy_library():
    loaded, _ = _loaded_after("import embplat.cli.app")
    assert not loaded & HEAVY


def test_help_lists_every_command_without_heavy_imports():
    loaded, out = _loaded_after(_run_cli(["--help"]))
    assert not loaded & HEAVY
    for command in ("ingest", "classify", "search", "evaluate", "status", "encoders", "train"):
        assert command in out


def test_encoders_lists_the_registry_without_torch():
    loaded, out = _loaded_after(_run_cli(["encoders"]))
    assert not loaded & (ML | {"nmslib", "qdrant_client", "numpy"})
    from embplat.models.encoders import list_encoders

    assert out.split() == list_encoders()


@pytest.fixture(scope="module")
def ingested_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A data home holding a small ingested nmslib index (built here, with torch)."""
    root = tmp_path_factory.mktemp("startup")
    for label, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (root / "images" / label).mkdir(parents=True)
        for i in range(4):
            shade = tuple(min(255, c + 10 * i) for c in colour)
            Image.new("RGB", (40, 40), shade).save(root / "images" / label / f"{label}{i}.png")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBPLAT_")}
    env |= {"EMBPLAT_HOME": str(root / "home"), "EMBPLAT_EMBED_NUM_WORKERS": "0"}
    code = _run_cli([*FLAGS, "ingest", str(root / "images"), "--json"])
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    return env


@pytest.mark.parametrize(
    "args",
    [["status", "--json"], ["jobs", "--json"], ["jobs"], ["classes", "list", "--json"]],
    ids=" ".join,
)
def test_inspection_commands_do_not_import_torch(ingested_home, args):
    loaded, out = _loaded_after(_run_cli([*FLAGS, *args]), env=ingested_home)
    assert not loaded & ML, sorted(loaded & ML)
    if args == ["status", "--json"]:
        info = json.loads(out)
        assert info["model"] == "tiny_cnn-random"
        assert info["index"] == "embplat_tiny_cnn_random"
        assert info["points"] == info["embedded"] == 8


def test_classify_imports_torch_but_not_torchvision_or_training_libraries(ingested_home):
    """One image classified by a CNN encoder: torch and the index, nothing a forward pass
    does not need (torchvision's import alone pulls in torch._dynamo)."""
    images = Path(ingested_home["EMBPLAT_HOME"]).parent / "images"
    query = str(images / "red" / "red0.png")
    loaded, out = _loaded_after(
        _run_cli([*FLAGS, "classify", query, "--k", "3", "--json"])
        + "\nimport sys\nassert 'torch._dynamo' not in sys.modules",
        env=ingested_home,
    )
    assert json.loads(out)[0]["label"] == "red"
    assert "torch" in loaded
    assert not loaded & (ML - {"torch", "PIL"}), sorted(loaded & ML)


def test_status_of_a_new_space_still_registers_it(ingested_home):
    """An encoder whose collection is not in the catalog yet: status builds it, as before."""
    loaded, out = _loaded_after(
        _run_cli([*FLAGS, "--image-size", "48", "status", "--json"]), env=ingested_home
    )
    info = json.loads(out)
    assert info["model"] == "tiny_cnn-48px-random"
    assert info["points"] == info["embedded"] == 0
    assert "torch" in loaded


def test_builtin_keys_match_the_built_encoders():
    """``registry.BUILTIN_ENCODERS`` describes exactly what ``backbones`` registers."""
    from embplat.models.backbones import _torchvision  # noqa: F401  (registers them)
    from embplat.models.encoders import _REGISTRY, get_encoder
    from embplat.models.registry import BUILTIN_ENCODERS, builtin_key, encoder_names

    assert sorted(BUILTIN_ENCODERS) == sorted(_REGISTRY) == encoder_names()
    for weights, size in ((None, None), ("random", 48)):
        encoder = get_encoder("tiny_cnn", weights=weights, image_size=size, device="cpu")
        assert builtin_key("tiny_cnn", weights, size) == encoder.key
        assert BUILTIN_ENCODERS["tiny_cnn"].dim == encoder.dim
    for name in ("efficientnet_lite0", "resnet18", "resnet50", "squeezenet1_1"):
        backbone = _REGISTRY[name]("random")
        spec = BUILTIN_ENCODERS[name]
        assert (spec.dim, spec.default_size) == (backbone.dim, backbone.default_size)
        assert spec.label("random") == backbone.weights
    assert builtin_key("efficientnet_lite0", None, None) == "efficientnet_lite0"
    assert builtin_key("resnet18", "IMAGENET1K_V1", 160) == "resnet18-160px-imagenet1k_v1"
    assert builtin_key("resnet18", None, None) == "resnet18"
    assert builtin_key("tiny_cnn", "/w/My Net.pth", None) == "tiny_cnn-my_net"
    assert builtin_key("no_such_encoder", None, None) is None


def test_help_default_of_fashion_mnist_folder_is_the_library_one():
    from embplat.cli.datasets import DEFAULT_FMNIST_DIR as shown
    from embplat.ingest.fashion_mnist import DEFAULT_FMNIST_DIR

    assert shown == DEFAULT_FMNIST_DIR


def test_startup_benchmark_is_runnable():
    script = Path(__file__).parents[2] / "benchmarks" / "startup.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "--quick" in proc.stdout
