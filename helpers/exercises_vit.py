"""Checker for notebook 00's exercise: the forward pass of a pre-norm transformer block.

Like the checkers of notebooks 02-05 it prints right or not-yet with a hint, never raises, and
returns True when the answer is right, so a notebook (or a test) can assert on it.
"""
from __future__ import annotations

import torch

from helpers.checking import attempt, report
from helpers.models import Block

# (dim, num_heads) of the blocks tried: the ci profile's width, and one with another head count.
_SIZES = [(48, 3), (64, 4)]
_PARTS = "norm1, attn (with qkv and proj), norm2 and mlp (with fc1 and fc2)"


# The usual slips, each written with a block's own layers, so that the checker can name them.
def _post_norm(block, x):
    x = block.norm1(x + block.attn(x))
    return block.norm2(x + block.mlp(x))


def _no_residual(block, x):
    return block.mlp(block.norm2(block.attn(block.norm1(x))))


def _residual_after_norm(block, x):
    h = block.norm1(x)
    x = h + block.attn(h)
    h = block.norm2(x)
    return h + block.mlp(h)


def _parallel_branches(block, x):
    return x + block.attn(block.norm1(x)) + block.mlp(block.norm2(x))


_MISTAKES = [
    (_post_norm, "this is post-norm, LN(x + Attn(x)), as in the original transformer (Vaswani et al., "
                 "2017). ViT and DeiT normalize inside each branch: x + attn(norm1(x))."),
    (_no_residual, "the residual connections are missing: add each branch's output to its input, "
                   "x = x + attn(norm1(x))."),
    (_residual_after_norm, "the residual adds the normalized x. Add the branch to x itself: "
                           "x + attn(norm1(x)), not norm1(x) + attn(norm1(x))."),
    (_parallel_branches, "both branches read the block's input. The MLP step must read the output of "
                         "the attention step: first x = x + attn(norm1(x)), then x + mlp(norm2(x))."),
]


def _randomize(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Random values for every parameter, LayerNorms included, so that each one matters."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=generator))


def check_block_forward(block_class) -> bool:
    """block_class(dim, num_heads) -> a block with the parts of helpers.models.Block (norm1, attn,
    norm2, mlp) whose forward the student wrote. The block's random weights are copied into
    helpers.models.Block and the two outputs compared; known mistakes get their own hint.

    Notebooks: used in 00.
    """
    generator = torch.Generator().manual_seed(0)
    for dim, heads in _SIZES:
        student, failure = attempt(block_class, dim, heads)
        if failure:
            return report(False, f"creating the block: {failure}")
        _randomize(student, generator)
        reference = Block(dim, heads).eval()
        try:
            reference.load_state_dict(student.state_dict())
        except RuntimeError as err:  # its first line only announces the lists of keys below it
            return report(False, f"its weights do not fit helpers.models.Block; keep the parts as given "
                                 f"({_PARTS}).\n" + "\n".join(str(err).splitlines()[:4]))
        x = torch.randn(2, 5, dim, generator=generator)
        got, failure = attempt(student.eval(), x)  # with autograd on, as in training
        if failure:
            return report(False, failure)
        with torch.no_grad():
            want = reference(x)
            if not isinstance(got, torch.Tensor) or got.shape != want.shape:
                shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
                return report(False, f"for tokens of shape {tuple(x.shape)} return a tensor of the same "
                                     f"shape, not {shape}.")
            if got.dtype != x.dtype:
                return report(False, f"for {x.dtype} tokens return {x.dtype}, not {got.dtype}: a block keeps "
                                     f"its input's precision.")
            if not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
                for mistake, hint in _MISTAKES:
                    if torch.allclose(got, mistake(reference, x), rtol=1e-4, atol=1e-5):
                        return report(False, hint)
                return report(False, f"for dim={dim}, {heads} heads the output differs from "
                                     f"helpers.models.Block's by up to {(got - want).abs().max().item():.3g}. "
                                     f"The block is x = x + attn(norm1(x)), then x + mlp(norm2(x)).")
        # Right values can still fail to train: x += ... overwrites a tensor a LayerNorm saved.
        _, failure = attempt(lambda: got.sum().backward())
        if failure and "inplace" in failure:
            return report(False, "the values are right, but the residual is added in place (x += ...), "
                                 "which overwrites a tensor that autograd saved, so training would fail. "
                                 "Write x = x + attn(norm1(x)).")
        if failure:
            return report(False, f"the values are right, but backpropagating through the block fails: {failure}")
    return report(True, "your block computes what helpers.models.Block (and timm's Block) computes.")
