import pytest
import timm
import torch

from helpers.models import VisionTransformer, build_vit, count_parameters, vit_config
from helpers.profiles import PROFILES


def timm_vit(cfg):
    return timm.models.vision_transformer.VisionTransformer(
        img_size=cfg["img_size"], patch_size=cfg["patch_size"], embed_dim=cfg["embed_dim"],
        depth=cfg["depth"], num_heads=cfg["num_heads"], mlp_ratio=cfg["mlp_ratio"],
        num_classes=cfg["num_classes"])


@pytest.mark.parametrize("sizes", [{}] + [p.vit_sizes for p in PROFILES.values()])
def test_same_parameters_and_outputs_as_timm(sizes):
    cfg = vit_config(**sizes)
    ours, reference = build_vit(**sizes), timm_vit(cfg)
    assert count_parameters(ours) == count_parameters(reference)
    reference.load_state_dict(ours.state_dict())  # strict: every name and shape must match
    ours.eval(), reference.eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        out = ours(x)
        assert out.shape == (3, 10)
        torch.testing.assert_close(out, reference(x), rtol=1e-4, atol=1e-5)


def test_deit_tiny_shape():
    model = build_vit()
    assert count_parameters(model) == 5_362_762
    assert model.tokens(torch.zeros(2, 3, 32, 32)).shape == (2, 65, 192)


def test_every_parameter_gets_a_gradient():
    model = build_vit(**PROFILES["ci"].vit_sizes)
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_drop_path_rates_rise_linearly_over_depth():
    model = VisionTransformer(depth=4, embed_dim=32, num_heads=2, drop_path_rate=0.3)
    rates = [block.drop_path.drop_prob for block in model.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3])


@pytest.mark.parametrize("bad, message", [
    (dict(embed_dim=100, num_heads=3), "not divisible"),
    (dict(patch_size=5), "not a multiple"),
])
def test_bad_shapes_are_explained(bad, message):
    with pytest.raises(ValueError, match=message):
        build_vit(**bad)


def test_unknown_config_field():
    with pytest.raises(ValueError, match="Unknown ViT config fields"):
        vit_config(width=3)
