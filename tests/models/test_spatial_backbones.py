"""Every built-in backbone exposes its spatial trunk: the feature map whose average is its
pooled feature vector, sharing the same parameters."""

import pytest
import torch

from embplat.models.encoders import get_backbone


@pytest.mark.parametrize(
    ("name", "weights", "size", "grid"),
    [
        ("tiny_cnn", None, 32, 4),
        ("tiny_cnn", None, 64, 8),
        ("efficientnet_lite0", None, 64, 2),
        ("resnet18", "random", 64, 2),
        ("squeezenet1_1", "random", 64, 3),
    ],
)
def test_pooled_features_are_the_spatial_maps_average(name, weights, size, grid):
    backbone = get_backbone(name, weights)
    assert backbone.spatial is not None and backbone.spatial_dim is not None
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    backbone.module.eval()
    with torch.no_grad():
        pooled = backbone.module(x)
        maps = backbone.spatial(x)
    assert maps.shape == (2, backbone.spatial_dim, grid, grid)
    assert pooled.shape == (2, backbone.dim)
    torch.testing.assert_close(maps.mean(dim=(2, 3)), pooled, rtol=1e-4, atol=1e-5)
    pooled_params = {id(p) for p in backbone.module.parameters()}
    assert {id(p) for p in backbone.spatial.parameters()} <= pooled_params


def test_training_the_spatial_trunk_changes_the_pooled_encoder():
    backbone = get_backbone("tiny_cnn")
    x = torch.ones(1, 3, 32, 32)
    before = backbone.module(x).detach().clone()
    with torch.no_grad():
        for p in backbone.spatial.parameters():
            p.add_(0.1)
    assert not torch.allclose(backbone.module(x), before)


@pytest.mark.parametrize(
    ("name", "weights", "size", "grid", "earlier"),
    [("efficientnet_lite0", None, 64, 2, 40 + 112), ("resnet18", "random", 64, 2, 128 + 256)],
)
def test_hypercolumns_are_the_last_map_beside_earlier_stages_on_its_grid(
    name, weights, size, grid, earlier
):
    """The hypercolumn map ends with the spatial map itself; before it come the stride-8 and
    stride-16 stages pooled onto the same grid; the parameters are the backbone's own."""
    backbone = get_backbone(name, weights)
    assert backbone.hypercolumns is not None
    assert backbone.hypercolumns_dim == backbone.spatial_dim + earlier
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    backbone.module.eval()
    backbone.hypercolumns.eval()
    with torch.no_grad():
        columns = backbone.hypercolumns(x)
        maps = backbone.spatial(x)
    assert columns.shape == (2, backbone.hypercolumns_dim, grid, grid)
    torch.testing.assert_close(columns[:, earlier:], maps, rtol=1e-4, atol=1e-5)
    assert columns[:, :earlier].abs().sum() > 0  # the earlier stages are really there
    shared = {id(p) for p in backbone.module.parameters()}
    assert {id(p) for p in backbone.hypercolumns.parameters()} <= shared


@pytest.mark.parametrize(
    ("name", "weights"), [("efficientnet_lite0", None), ("resnet18", "random")]
)
def test_multilevel_features_pool_every_hypercolumn_level_beside_the_last(name, weights):
    from embplat.models.encoders import with_features

    backbone = get_backbone(name, weights)
    assert with_features(backbone, "last") is backbone
    multi = with_features(backbone, "multilevel")
    assert (multi.features, multi.dim) == ("multilevel", backbone.hypercolumns_dim)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    backbone.module.eval()
    with torch.no_grad():
        feats, last = multi.module(x), backbone.module(x)
    assert feats.shape == (2, multi.dim) and multi.dim > backbone.dim
    # the last columns are the plain pooled features; the earlier ones the other stages'
    torch.testing.assert_close(feats[:, -backbone.dim :], last, rtol=1e-4, atol=1e-5)
    assert {id(p) for p in multi.module.parameters()} == {
        id(p) for p in backbone.module.parameters()
    }


def test_multilevel_features_are_refused_where_there_are_no_hypercolumns():
    from embplat.errors import ConfigError
    from embplat.models.encoders import with_features

    with pytest.raises(ConfigError, match="hypercolumns"):
        with_features(get_backbone("tiny_cnn"), "multilevel")
    with pytest.raises(ConfigError, match="last, multilevel"):
        with_features(get_backbone("tiny_cnn"), "all")
