import pytest
import timm
import torch

from helpers.exercises_vit import check_block_forward
from helpers.models import Block, VisionTransformer, build_vit, count_parameters, set_fused_attention, vit_config
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


def test_init_is_truncated_normal_std_002_with_zero_biases():
    # ViT/DeiT: tokens, position embeddings and linear weights ~ N(0, 0.02^2), linear biases 0
    torch.manual_seed(0)
    model = build_vit(distilled=True)
    tokens = torch.cat([model.cls_token.flatten(), model.dist_token.flatten(), model.pos_embed.flatten()])
    assert tokens.std().item() == pytest.approx(0.02, rel=0.05)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 4 * 12 + 2  # qkv, proj, fc1, fc2 per block, and both heads
    for m in linears:
        assert m.weight.std().item() == pytest.approx(0.02, rel=0.1) and not m.bias.any()


def test_num_classes_sets_the_heads():
    model = build_vit(num_classes=7, distilled=True, embed_dim=24, depth=1, num_heads=2)
    cls, dist = model.train()(torch.randn(2, 3, 32, 32))
    assert cls.shape == dist.shape == (2, 7)


def outputs_and_gradients(model, x):
    model.zero_grad()
    out = model(x)
    out.square().sum().backward()
    return out.detach().float(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("autocast", [False, True])
def test_spelled_out_attention_matches_the_fused_kernel(autocast):
    torch.manual_seed(0)
    model, x = build_vit(**PROFILES["ci"].vit_sizes), torch.randn(4, 3, 32, 32)
    tolerance = dict(rtol=2e-2, atol=2e-2) if autocast else dict(rtol=1e-5, atol=1e-6)
    with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
        fused = outputs_and_gradients(set_fused_attention(model, True), x)
        spelled = outputs_and_gradients(set_fused_attention(model, False), x)
    assert not any(block.attn.fused for block in model.blocks)
    torch.testing.assert_close(spelled, fused, **tolerance)


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


# --- notebook 00: the diagram, and the transformer-block exercise --------------------------------

@pytest.mark.parametrize("distilled", [False, True])
def test_vit_diagram_shows_the_models_token_order(distilled):
    import matplotlib.pyplot as plt

    from helpers.plots import draw_vit_diagram

    ax = draw_vit_diagram(distilled, num_patches=16)
    position = {t.get_text(): t.get_position() for t in ax.texts}
    plt.close(ax.figure)
    tokens = ["[CLS]", "[DIST]", "p1", "p2", "p16"] if distilled else ["[CLS]", "p1", "p2", "p16"]
    xs = [position[token][0] for token in tokens]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)  # left to right, as in VisionTransformer.tokens
    assert ("[DIST]" in position) == distilled and ("head_dist" in position) == distilled
    assert "head" in position and "p64" not in position


def student_block(forward):
    """A helpers Block whose forward is the student's `forward(self, x)`."""
    return type("StudentBlock", (Block,), {"forward": forward})


def pre_norm(self, x):
    x = x + self.attn(self.norm1(x))
    return x + self.mlp(self.norm2(x))


def post_norm(self, x):
    x = self.norm1(x + self.attn(x))
    return self.norm2(x + self.mlp(x))


def residual_after_norm(self, x):
    x = self.norm1(x)
    x = x + self.attn(x)
    x = self.norm2(x)
    return x + self.mlp(x)


def no_mlp_residual(self, x):
    x = x + self.attn(self.norm1(x))
    return self.mlp(self.norm2(x))


def stub(self, x):
    raise NotImplementedError


@pytest.mark.parametrize("block_class", [Block, student_block(pre_norm)])
def test_block_checker_accepts_a_pre_norm_block(block_class, capsys):
    assert check_block_forward(block_class)
    assert capsys.readouterr().out.startswith("Correct!")


@pytest.mark.parametrize("forward, says", [
    (post_norm, "post-norm"),
    (lambda self, x: self.mlp(self.norm2(self.attn(self.norm1(x)))), "residual connections are missing"),
    (residual_after_norm, "the residual adds the normalized x"),
    (lambda self, x: x + self.attn(self.norm1(x)) + self.mlp(self.norm2(x)), "both branches read"),
    (no_mlp_residual, "differs from helpers.models.Block's by up to"),
    (lambda self, x: x, "differs from helpers.models.Block's by up to"),
    (lambda self, x: x[:, 0], "return a tensor of the same shape"),
    (lambda self, x: Block.forward(self, x).double(), "return torch.float32, not torch.float64"),
    (stub, "NotImplementedError"),
])
def test_block_checker_names_the_mistake(forward, says, capsys):
    assert not check_block_forward(student_block(forward))
    out = capsys.readouterr().out
    assert out.startswith("Not yet: ") and says in out


def test_block_checker_explains_parts_it_cannot_copy(capsys):
    class Renamed(torch.nn.Module):
        def __init__(self, dim, num_heads):
            super().__init__()
            self.inner = Block(dim, num_heads)

        def forward(self, x):
            return self.inner(x)

    assert not check_block_forward(Renamed)
    out = capsys.readouterr().out
    assert "keep the parts as given" in out and 'Missing key(s) in state_dict: "norm1.weight"' in out


def in_place_residuals(self, x):
    x += self.attn(self.norm1(x))
    x += self.mlp(self.norm2(x))
    return x


def in_place_second_residual(self, x):
    x = x + self.attn(self.norm1(x))
    x += self.mlp(self.norm2(x))
    return x


@pytest.mark.parametrize("forward", [in_place_residuals, in_place_second_residual])
def test_block_checker_rejects_in_place_residuals_that_break_the_backward_pass(forward, capsys):
    # The values are right, but x += overwrites a tensor a LayerNorm saved for backward: training fails.
    assert not check_block_forward(student_block(forward))
    out = capsys.readouterr().out
    assert out.startswith("Not yet: ") and "x = x + " in out and "in place" in out


def test_dropout_equals_timms_drop_rate_in_train_mode():
    # DeiT's --drop reaches timm 0.3.2's drop_rate: after the position embeddings, attention's
    # projection and twice in the MLP; timm 1.0 names those pos_drop_rate and proj_drop_rate.
    sizes = dict(embed_dim=24, depth=3, num_heads=2)
    torch.manual_seed(0)
    ours = build_vit(drop_rate=0.3, drop_path_rate=0.2, **sizes).train()
    reference = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=4, num_classes=10, pos_drop_rate=0.3, proj_drop_rate=0.3, drop_path_rate=0.2,
        **sizes).train()
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(4, 3, 32, 32)
    torch.manual_seed(1)
    out = ours(x)
    torch.manual_seed(1)
    torch.testing.assert_close(out, reference(x), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(out, ours.eval()(x))  # it did drop: train and eval differ
    dropouts = [m for m in ours.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(dropouts) == 1 + 2 * 3 and all(m.p == 0.3 for m in dropouts)


def test_no_dropout_adds_no_modules_and_draws_nothing():
    torch.manual_seed(0)
    model = build_vit(embed_dim=24, depth=2, num_heads=2).train()
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.modules())
    before = torch.get_rng_state()
    model(torch.randn(2, 3, 32, 32))
    after = torch.get_rng_state()
    torch.set_rng_state(before)
    torch.randn(2, 3, 32, 32)
    assert torch.equal(torch.get_rng_state(), after)  # only the input drew random numbers


@pytest.mark.parametrize("rate", [-0.1, 1.0])
def test_dropout_rate_outside_0_1_is_refused(rate):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        build_vit(drop_rate=rate, embed_dim=24, depth=1, num_heads=2)
