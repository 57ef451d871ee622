"""Building blocks of EMERT, defined once: ResNet-18, MLPs, gradient reversal, cross-attention.

The ResNet-18 is written here (torchvision is not a dependency); its parameter names are the
standard ones (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer2.0.downsample.0``, ``fc``), which is
what the official checkpoints' ``subnet.f_extractor.*`` keys use.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "BasicBlock",
    "ResNet18",
    "mlp",
    "GradientReversal",
    "grad_reverse",
    "CrossAttention",
    "FeedForward",
    "CrossAttentionBlock",
    "CrossTransformer",
]


# --------------------------------------------------------------------------------------------
# ResNet-18
# --------------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet v1 BasicBlock)."""

    def __init__(self, in_ch: int, out_ch: int, *, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: Optional[nn.Sequential] = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_ch),
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet-18 trunk returning the 512-d global-average-pooled feature.

    Parameters
    ----------
    with_fc : bool
        Also hold the 512 -> 1000 ImageNet classifier ``fc``. It is never applied (the official
        EMERT keeps it in its checkpoints but its forward stops at the pooled feature).
    """

    out_dim = 512

    def __init__(self, *, with_fc: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, stride=2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, stride=2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, stride=2), BasicBlock(512, 512))
        self.fc: Optional[nn.Linear] = nn.Linear(512, 1000) if with_fc else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, 3, H, W)`` -> ``(N, 512)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


# --------------------------------------------------------------------------------------------
# MLP
# --------------------------------------------------------------------------------------------
def mlp(in_dim: int, widths: Sequence[int], *, negative_slope: float) -> nn.Sequential:
    """``Linear -> LeakyReLU -> Linear ...`` with no activation after the last layer.

    Linear layers sit at the even indices (0, 2, 4, ...), as in the official checkpoints.
    """
    layers = []
    prev = in_dim
    for i, w in enumerate(widths):
        if i:
            layers.append(nn.LeakyReLU(negative_slope))
        layers.append(nn.Linear(prev, w))
        prev = w
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------------------------
# Gradient reversal
# --------------------------------------------------------------------------------------------
class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, lambd: float) -> Tensor:  # type: ignore[override]
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return grad.neg() * ctx.lambd, None


def grad_reverse(x: Tensor, lambd: float = 1.0) -> Tensor:
    """Identity forward; multiplies the gradient by ``-lambd`` on the way back."""
    return _GradReverse.apply(x, float(lambd))


class GradientReversal(nn.Module):
    """Module form of :func:`grad_reverse`."""

    def __init__(self, lambd: float = 1.0) -> None:
        super().__init__()
        self.lambd = float(lambd)

    def forward(self, x: Tensor) -> Tensor:
        return grad_reverse(x, self.lambd)

    def extra_repr(self) -> str:
        return f"lambd={self.lambd}"


# --------------------------------------------------------------------------------------------
# Cross-attention transformer
# --------------------------------------------------------------------------------------------
class CrossAttention(nn.Module):
    """Pre-norm multi-head attention with separate LayerNorms for queries, keys and values.

    ``forward(query, context)``: queries from ``query``; keys and values from ``context``
    (each normalised by its own LayerNorm). Returns the attention output (no residual).
    """

    def __init__(self, dim: int, *, heads: int, head_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.head_dim = head_dim
        self.norm_q = nn.LayerNorm(dim)
        self.norm_k = nn.LayerNorm(dim)
        self.norm_v = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.head_dim).transpose(1, 2)  # 'b n (h d) -> b h n d'

    def forward(self, query: Tensor, context: Tensor, *, key_mask: Optional[Tensor] = None) -> Tensor:
        """``query (B, Nq, D)``, ``context (B, Nk, D)``, ``key_mask (B, Nk)`` bool, True = attend."""
        q = self._split(self.to_q(self.norm_q(query)))
        k = self._split(self.to_k(self.norm_k(context)))
        v = self._split(self.to_v(self.norm_v(context)))
        mask = None if key_mask is None else key_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # scale = head_dim ** -0.5
        b, _, n, _ = out.shape
        out = out.transpose(1, 2).reshape(b, n, self.heads * self.head_dim)  # 'b h n d -> b n (h d)'
        return self.dropout(self.to_out(out))


class FeedForward(nn.Module):
    """Pre-norm ``LayerNorm -> Linear -> GELU -> Dropout -> Linear -> Dropout``."""

    def __init__(self, dim: int, hidden: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.dropout(F.gelu(self.fc1(self.norm(x))))
        return self.dropout(self.fc2(x))


class CrossAttentionBlock(nn.Module):
    """``x = x + attn(x, context); x = x + ff(x)`` (residuals around pre-norm sub-layers)."""

    def __init__(self, dim: int, *, heads: int, head_dim: int, mlp_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.attn = CrossAttention(dim, heads=heads, head_dim=head_dim, dropout=dropout)
        self.ff = FeedForward(dim, mlp_dim, dropout=dropout)

    def forward(self, x: Tensor, context: Tensor, *, key_mask: Optional[Tensor] = None) -> Tensor:
        x = x + self.attn(x, context, key_mask=key_mask)
        return x + self.ff(x)


class CrossTransformer(nn.Module):
    """Learned positional embeddings on both token sets + a stack of cross-attention blocks.

    ``forward(query, context, key_mask=None)``: ``query (B, Nq, D)`` tokens attend to
    ``context (B, Nk, D)`` tokens in every block; returns the updated query tokens.
    """

    def __init__(self, dim: int, *, n_query: int, n_context: int, depth: int, heads: int, head_dim: int,
                 mlp_dim: int, dropout: float = 0.0, embedding_dropout: float = 0.0) -> None:
        super().__init__()
        self.pos_context = nn.Parameter(torch.randn(1, n_context, dim))
        self.pos_query = nn.Parameter(torch.randn(1, n_query, dim))
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        self.blocks = nn.ModuleList([
            CrossAttentionBlock(dim, heads=heads, head_dim=head_dim, mlp_dim=mlp_dim, dropout=dropout)
            for _ in range(depth)])

    def forward(self, query: Tensor, context: Tensor, *, key_mask: Optional[Tensor] = None) -> Tensor:
        context = self.embedding_dropout(context + self.pos_context)
        x = self.embedding_dropout(query + self.pos_query)
        for block in self.blocks:
            x = block(x, context, key_mask=key_mask)
        return x
