"""The Vision Transformer (Dosovitskiy et al., 2021) as DeiT uses it, sized for 32x32 images.

Parameter names follow timm's VisionTransformer so that weights load into either model and
the two can be checked against each other output for output.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from helpers.regularization import DropPath, drop_path_rates


def optional_dropout(rate: float) -> nn.Dropout | None:
    """Dropout at `rate`, or None at 0: a model without dropout then has no extra modules and
    draws no extra random numbers, so it trains exactly as before dropout existed here.

    DeiT's --drop (default 0, main.py) is timm's drop_rate, which timm 0.3.2 applies after the
    position embeddings, after attention's output projection and twice in the MLP; not in the head."""
    if not 0 <= rate < 1:
        raise ValueError(f"A dropout rate lies in [0, 1), not {rate}.")
    return nn.Dropout(rate) if rate else None


def dropped(dropout: nn.Dropout | None, x: torch.Tensor) -> torch.Tensor:
    """x through the dropout, or x itself where there is none."""
    return x if dropout is None else dropout(x)


# DeiT-Tiny (Touvron et al., 2021, Table 1) with 4x4 patches for CIFAR's 32x32 images.
DEIT_TINY_32 = dict(img_size=32, patch_size=4, embed_dim=192, depth=12, num_heads=3, mlp_ratio=4.0)


def vit_config(**overrides) -> dict:
    """A ViT config: DeiT-Tiny at 32 px, with any field overridden (e.g. a profile's model).

    Notebooks: used in 00, 03, 04.
    """
    unknown = set(overrides) - set(DEIT_TINY_32) - {"num_classes", "drop_path_rate", "drop_rate", "distilled"}
    if unknown:
        raise ValueError(f"Unknown ViT config fields: {sorted(unknown)}.")
    return {**DEIT_TINY_32, "num_classes": 10, **overrides}


class PatchEmbed(nn.Module):
    """Cut the image into patch_size x patch_size patches and project each to embed_dim.

    A convolution with kernel = stride = patch size is exactly a linear map per patch.
    """

    def __init__(self, img_size=32, patch_size=4, in_chans=3, embed_dim=192):
        super().__init__()
        self.patch_size = patch_size
        self.set_img_size(img_size)
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def set_img_size(self, img_size: int) -> None:
        if img_size % self.patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {self.patch_size}.")
        self.img_size, self.num_patches = img_size, (img_size // self.patch_size) ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if (height, width) != (self.img_size, self.img_size):
            # Otherwise the position embeddings would fail to add, with a message about tensor sizes.
            fix = (f"For another size, resample its position embeddings as DeiT does before fine-tuning: "
                   f"helpers.resolution.at_resolution(model, {width}).") if height == width else \
                "Make the images square: the position embeddings here form a square grid."
            raise ValueError(f"This ViT reads {self.img_size}x{self.img_size} images (one position "
                             f"embedding per patch of that grid), not {height}x{width}. {fix}")
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, N, D)


class MultiHeadAttention(nn.Module):
    """Self-attention with num_heads heads; softmax(QK^T / sqrt(d)) V per head.

    Notebooks: used in 00, 02.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}.")
        self.num_heads = num_heads
        self.fused = True
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = optional_dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        q, k, v = self._queries_keys_values(x)
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v)  # fused kernel where the device has one
        else:  # the same, spelled out (helpers.together: vmap on CUDA breaks the fused kernels)
            out = self._weights(q, k).to(v.dtype) @ v
        return dropped(self.proj_drop, self.proj(out.transpose(1, 2).reshape(B, N, D)))

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """softmax(QK^T / sqrt(d)) of every head, in float32: (B, heads, N, N); row i is how much
        token i takes from each token. The fused kernel never shows them, so they are computed here
        (helpers.distill.attention_maps)."""
        q, k, _ = self._queries_keys_values(x)
        return self._weights(q, k)

    def _queries_keys_values(self, x: torch.Tensor):
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, D // self.num_heads)
        return qkv.permute(2, 0, 3, 1, 4)  # q, k, v: each (B, heads, N, head_dim)

    @staticmethod
    def _weights(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        scores = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
        return scores.float().softmax(dim=-1)  # in float32, as the fused kernels do


def set_fused_attention(model: nn.Module, fused: bool) -> nn.Module:
    """Fused attention kernel (the default) or the same arithmetic spelled out, in every block."""
    for module in model.modules():
        if isinstance(module, MultiHeadAttention):
            module.fused = fused
    return model


class Mlp(nn.Module):
    """Notebooks: used in 02."""
    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)
        self.drop = optional_dropout(drop)

    def forward(self, x):
        # dropout after the activation and after fc2, as in timm 0.3.2's Mlp (the timm DeiT used)
        return dropped(self.drop, self.fc2(dropped(self.drop, self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block: x + DropPath(Attn(LN(x))), then x + DropPath(MLP(LN(x))).

    Notebooks: built in 00 (the transformer block), 02 (with stochastic depth).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0, drop: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiHeadAttention(dim, num_heads, proj_drop=drop)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    """ViT with a [CLS] token and learned position embeddings; DeiT's [DIST] token if distilled.

    forward returns class logits (B, num_classes). With distilled=True it returns
    (cls_logits, dist_logits) in training and their average in eval, as DeiT does.
    """

    def __init__(self, img_size=32, patch_size=4, embed_dim=192, depth=12, num_heads=3,
                 mlp_ratio=4.0, num_classes=10, drop_path_rate=0.0, distilled=False, drop_rate=0.0):
        super().__init__()
        self.patch_embed = PatchEmbed(img_size, patch_size, 3, embed_dim)
        self.num_prefix_tokens = 2 if distilled else 1
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if distilled else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + self.num_prefix_tokens, embed_dim))
        self.pos_drop = optional_dropout(drop_rate)
        rates = drop_path_rates(depth, drop_path_rate)
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio, r, drop_rate) for r in rates])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes)
        self.head_dist = nn.Linear(embed_dim, num_classes) if distilled else None
        self._init_weights()

    def _init_weights(self):
        # Truncated normal (std 0.02) for tokens and linear layers, as in ViT/DeiT.
        for p in (self.cls_token, self.pos_embed, self.dist_token):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Input tokens [CLS, (DIST,) p1 ... pN] with position embeddings added: (B, N+1|2, D)."""
        x = self.patch_embed(x)
        prefix = [self.cls_token] + ([self.dist_token] if self.dist_token is not None else [])
        prefix = torch.cat(prefix, dim=1).expand(x.shape[0], -1, -1)
        return torch.cat([prefix, x], dim=1) + self.pos_embed

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.blocks(dropped(self.pos_drop, self.tokens(x))))

    def forward(self, x: torch.Tensor):
        x = self.forward_features(x)
        logits = self.head(x[:, 0])
        if self.head_dist is None:
            return logits
        dist_logits = self.head_dist(x[:, 1])
        if self.training:
            return logits, dist_logits
        return (logits + dist_logits) / 2


def count_parameters(model: nn.Module) -> int:
    """Notebooks: used in 00, 03."""
    return sum(p.numel() for p in model.parameters())


def build_vit(**overrides) -> VisionTransformer:
    """A VisionTransformer from vit_config(**overrides).

    Notebooks: built in 00 (the ViT); used in 02, 03, 04.
    """
    return VisionTransformer(**vit_config(**overrides))
