"""The CMT transformer decoder (docs/model.md §5.7): 6 post-norm layers, self-attention, cross-attention.

Module names follow mmcv's ``PETRTransformerDecoder`` so the original checkpoints load key for key
under ``pts_bbox_head.transformer.*``. Both attentions are torch's ``nn.MultiheadAttention`` (packed
``in_proj_weight``/``in_proj_bias`` and ``out_proj``, the names of flash-attn's ``FlashMHA`` too), which
runs ``scaled_dot_product_attention`` when no weights are asked for. Everything is batch-first; fp16
comes from autocast only.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class _SelfAttention(nn.Module):
    """Holder giving the checkpoint name ``attentions.0.attn`` to a torch ``nn.MultiheadAttention``."""

    def __init__(self, embed_dims: int, num_heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(embed_dims, num_heads, batch_first=True)

    def forward(self, query: Tensor, query_pos: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """Self-attention with q = k = query + query_pos and v = query (no residual); ``attn_mask`` [Q, Q] bool,
        True = may not attend (the denoising groups' mask in training)."""
        q = query + query_pos
        return self.attn(q, q, query, attn_mask=attn_mask, need_weights=False)[0]


class _CrossAttention(nn.Module):
    """Holder giving the checkpoint name ``attentions.1.attn`` to a torch ``nn.MultiheadAttention``."""

    def __init__(self, embed_dims: int, num_heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(embed_dims, num_heads, batch_first=True)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_mask: Tensor | None) -> Tensor:
        """Cross-attention of the queries to the memory (no residual); ``key_mask`` [B, L] bool, True = attend."""
        padding = None if key_mask is None else ~key_mask
        return self.attn(query, key, value, key_padding_mask=padding, need_weights=False)[0]


class Ffn(nn.Module):
    """mmcv FFN without dropout: ``layers.0.0`` Linear → ReLU → ``layers.1`` Linear (residual outside).

    Shared by the decoder layers and the AQR encoder layer, which use the same checkpoint names."""

    def __init__(self, embed_dims: int, ffn_dim: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Sequential(nn.Linear(embed_dims, ffn_dim), nn.ReLU()),
                                    nn.Linear(ffn_dim, embed_dims))

    def forward(self, x: Tensor) -> Tensor:
        """Two-layer MLP (no residual)."""
        return self.layers(x)


class CmtDecoderLayer(nn.Module):
    """Post-norm layer (self_attn, norm, cross_attn, norm, ffn, norm); queries carry ``query_pos``."""

    def __init__(self, embed_dims: int, num_heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.attentions = nn.ModuleList([_SelfAttention(embed_dims, num_heads), _CrossAttention(embed_dims, num_heads)])
        self.ffns = nn.ModuleList([Ffn(embed_dims, ffn_dim)])
        self.norms = nn.ModuleList([nn.LayerNorm(embed_dims) for _ in range(3)])

    def forward(self, query: Tensor, query_pos: Tensor, key: Tensor, memory: Tensor,
                key_mask: Tensor | None, attn_mask: Tensor | None = None) -> Tensor:
        """query/query_pos [B, Q, C]; key = memory + pos and memory [B, L, C] → [B, Q, C]."""
        query = self.norms[0](query + self.attentions[0](query, query_pos, attn_mask))
        query = self.norms[1](query + self.attentions[1](query + query_pos, key, memory, key_mask))
        return self.norms[2](query + self.ffns[0](query))


class _Decoder(nn.Module):
    """Stack of decoder layers plus the shared ``post_norm`` applied to every intermediate output."""

    def __init__(self, num_layers: int, embed_dims: int, num_heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([CmtDecoderLayer(embed_dims, num_heads, ffn_dim) for _ in range(num_layers)])
        self.post_norm = nn.LayerNorm(embed_dims)

    def forward(self, query_pos: Tensor, memory: Tensor, pos: Tensor, key_mask: Tensor | None,
                attn_mask: Tensor | None = None) -> Tensor:
        """Zero-initialised queries through every layer → post-normed outputs [num_layers, B, Q, C]."""
        key = memory + pos
        query = torch.zeros_like(query_pos)
        outputs = []
        for layer in self.layers:
            query = layer(query, query_pos, key, memory, key_mask, attn_mask)
            outputs.append(self.post_norm(query))
        return torch.stack(outputs)


class CmtTransformer(nn.Module):
    """CMT decoder over the fused BEV + camera memory; returns every layer's post-normed queries."""

    def __init__(self, embed_dims: int = 256, num_heads: int = 8, ffn_dim: int = 1024, num_layers: int = 6) -> None:
        super().__init__()
        self.decoder = _Decoder(num_layers, embed_dims, num_heads, ffn_dim)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, query_pos: Tensor, memory: Tensor, pos: Tensor, key_mask: Tensor | None = None,
                attn_mask: Tensor | None = None) -> Tensor:
        """query_pos [B, Q, C], memory/pos [B, L, C], key_mask [B, L] bool (True = attend, None = all),
        attn_mask [Q, Q] bool for the self-attention (True = blocked, None = all)
        → [num_layers, B, Q, C], NaNs and infinities replaced as in the original."""
        return torch.nan_to_num(self.decoder(query_pos, memory, pos, key_mask, attn_mask))
