"""The FLOP count behind the model-FLOPs utilisation, against torch's own counter."""
import pytest
import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

from helpers.models import DEIT_TINY_32
from helpers.speed import training_flops_per_image


def counted_training_flops(model, images: int = 2) -> float:
    """torch's count of one training image's matrix-product FLOPs, forward and backward."""
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = False  # explicit Q K^T and A V products, which the counter sees
    with FlopCounterMode(display=False) as counter:
        out = model(torch.randn(images, 3, 32, 32))
        sum(o.sum() for o in (out if isinstance(out, tuple) else (out,))).backward()
    return counter.get_total_flops() / images


@pytest.mark.parametrize("name, distilled", [("deit_tiny_patch16_224", False),
                                             ("deit_tiny_distilled_patch16_224", True)])
def test_the_formula_matches_torchs_count_for_timms_deit_tiny(name, distilled):
    model = timm.create_model(name, pretrained=False, img_size=32, patch_size=4, num_classes=10)
    formula = training_flops_per_image(**DEIT_TINY_32, distilled=distilled)
    # the one term autograd skips: the patch embedding's gradient towards the images, 2 (N - 1) 3 p^2 D
    skipped = 2 * 64 * 3 * 4 ** 2 * 192
    assert counted_training_flops(model) == pytest.approx(formula - skipped, rel=1e-9)
    assert formula / 1e9 == pytest.approx(2.19 if not distilled else 2.23, abs=0.01)
