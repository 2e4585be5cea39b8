"""The recipe registry: built-in recipes found without being listed, lookups, configs,
and the built-in recipes' declarations (DeViSE's stage 1, its hooks)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from embplat.errors import ConfigError
from embplat.models.recipes import (
    Built,
    RecipeSpec,
    get_recipe,
    list_recipes,
    make_config,
    register_recipe,
)
from embplat.models.recipes.classifier import ClassifierConfig
from embplat.models.recipes.devise import DeviseConfig, DeviseRecipe


def test_importing_the_registry_imports_no_torch():
    code = "import sys, embplat.models.recipes; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_recipe_module_registers_itself():
    assert {"classifier", "devise", "metric"} <= set(list_recipes())
    assert get_recipe("devise").config is DeviseConfig
    with pytest.raises(ConfigError, match=r"unknown recipe .gan.; choose one of: .*classifier"):
        get_recipe("gan")


def test_make_config_takes_a_dict_a_dataclass_or_nothing():
    assert make_config("classifier", None) == ClassifierConfig()
    cfg = make_config("metric", {"loss": "arcface", "classes": ["a", "b"]})
    assert make_config("metric", json.loads(json.dumps(cfg.as_dict()))) == cfg
    assert make_config("metric", cfg) is cfg
    with pytest.raises(ConfigError, match="needs a MetricConfig"):
        make_config("metric", ClassifierConfig())


def test_a_second_recipe_under_a_taken_name_is_refused():
    class Impostor(RecipeSpec):
        name = "classifier"
        config = ClassifierConfig

    list_recipes()  # the built-in one is registered
    with pytest.raises(ConfigError, match="'classifier' is registered already"):
        register_recipe(Impostor)
    assert get_recipe("classifier").config is ClassifierConfig


@pytest.mark.parametrize(("stage1", "kinds"), [(2, ["classifier", "devise"]), (0, ["devise"])])
def test_devise_trains_a_softmax_stage_first_when_asked(stage1, kinds):
    spec = get_recipe("devise")
    cfg = DeviseConfig(stage1_epochs=stage1, freeze_epochs=3, unfreeze_epochs=1)
    built = Built(DeviseRecipe(np.eye(3, 5, dtype=np.float32)), extras={"label_vectors": 1})
    stages = spec.stages(cfg, built, ["a", "b", "c"])
    assert [s.kind for s in stages] == kinds
    if stage1:
        first = stages[0]
        assert [(p.name, p.epochs) for p in first.phases] == [("stage1-frozen", 3), ("stage1", 2)]
        assert first.recipe.head.out_dim == 3 and first.extras == {}  # a softmax over a, b, c
    assert stages[-1].recipe is built.recipe and stages[-1].extras == {"label_vectors": 1}
    assert spec.hooks == ("pca_plot", "gzsl_calibration", "label_vectors")
