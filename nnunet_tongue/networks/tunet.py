"""Transformer-UNet (T-Unet): a ViT on the raw image's patches feeds a U-Net decoder.

The main path is a transformer: the raw image is cut into n×n patches by a convolutional patch
embedding (kernel = stride = n), a learnable position embedding is added, and pre-LayerNorm blocks
(8 heads, ELU in the MLP, fused ``scaled_dot_product_attention``) mix all patches. The token grid,
reshaped to an image of stride n, is the decoder's input. A residual CNN encoder on the raw image is
*not* in the main path: its feature maps at strides 1, 2, …, n/2 are concatenated into the decoder
stages, which upsample bilinearly. See ``docs/networks.md`` for the diagram.

The constructor follows timm's ``VisionTransformer`` for the transformer (``token_size``, ``embed_dim``,
``depth``, ``num_heads``, ``mlp_ratio``) and dynamic-network-architectures' U-Nets for the CNN encoder,
whose arguments mirror nnU-Net plans: stage ``s`` has ``features_per_stage[s]``, ``strides[s]``,
``kernel_sizes[s]`` and ``n_blocks_per_stage[s]`` residual blocks. Variants are constructor overrides
(:data:`nnunet_tongue.networks.from_plans.TUNET_VARIANTS`).
"""

from __future__ import annotations

from typing import Sequence, Type

import numpy as np
import torch
import torch.nn.functional as F
from dynamic_network_architectures.building_blocks.helper import convert_conv_op_to_dim, maybe_convert_scalar_to_list
from dynamic_network_architectures.building_blocks.residual import StackedResidualBlocks
from dynamic_network_architectures.building_blocks.residual_encoders import ResidualEncoder
from dynamic_network_architectures.building_blocks.simple_conv_blocks import StackedConvBlocks
from dynamic_network_architectures.initialization.weight_init import InitWeights_He, init_last_bn_before_add_to_0
from torch import nn
from torch.nn.init import trunc_normal_
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.dropout import _DropoutNd


def _per_stage(value, n: int) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value] * n


def cumulative_strides(strides: Sequence) -> np.ndarray:
    """Per stage, the total stride from the input (rows: stages, columns: axes), e.g. 1, 2, 4, 8, 16."""
    return np.cumprod(np.array([np.atleast_1d(s) for s in strides]), axis=0)


def token_grid(image_size: Sequence[int], token_size: Sequence[int]) -> tuple[int, ...]:
    """Tokens per axis for an input of ``image_size``; a ``ValueError`` if it is not divisible by the token."""
    if any(s % t for s, t in zip(image_size, token_size)):
        raise ValueError(f"T-Unet input {tuple(image_size)} is not divisible by its patch size {tuple(token_size)}; "
                         f"pad or plan a patch size that is a multiple of it")
    return tuple(s // t for s, t in zip(image_size, token_size))


class PatchEmbedding(nn.Module):
    """Image -> tokens: a convolution with kernel = stride = the patch size, flattened to (B, tokens, dim)."""

    def __init__(self, input_channels: int, patch_size: Sequence[int], embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(input_channels, embed_dim, kernel_size=tuple(patch_size), stride=tuple(patch_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention: one qkv projection, fused ``scaled_dot_product_attention``, output projection."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    """Two linear layers with a non-linearity between them."""

    def __init__(self, dim: int, hidden: int, act_layer: Type[nn.Module] = nn.ELU):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth: in training, drop a sample's residual branch with probability ``p`` (kept ones scaled)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class TransformerBlock(nn.Module):
    """Pre-LayerNorm transformer block: x + attention(norm(x)), then x + MLP(norm(x)).

    Parameter names are timm's ``Block`` (``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.fc1``,
    ``mlp.fc2``), which the T-Unet used up to version 0.2, so models trained then load unchanged."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 act_layer: Type[nn.Module] = nn.ELU):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer)
        self.drop_path2 = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x)))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


def resample_position_embedding(pos_embed: torch.Tensor, grid: Sequence[int], old_grid: Sequence[int]) -> torch.Tensor:
    """A (1, tokens, dim) position embedding learnt on ``old_grid`` resampled to ``grid`` (bicubic, antialiased)."""
    dim = pos_embed.shape[-1]
    image = pos_embed.float().reshape(1, *old_grid, dim).permute(0, 3, 1, 2)
    image = F.interpolate(image, size=tuple(grid), mode="bicubic", antialias=True)
    return image.permute(0, 2, 3, 1).reshape(1, -1, dim).to(pos_embed.dtype)


class PatchTransformer(nn.Module):
    """ViT encoder on the raw image: patch embedding + position embedding + pre-LN blocks → token map.

    ``pos_embed_grid`` is the token grid the position embedding is learnt at; any other grid gets it resampled
    (bicubic), so any input divisible by the patch size works and weights move between patch sizes.
    """

    def __init__(self, input_channels: int, patch_size: Sequence[int], embed_dim: int, depth: int = 6,
                 num_heads: int = 8, mlp_ratio: float = 4.0, pos_embed_grid: Sequence[int] = (10, 12),
                 drop_path_rate: float = 0.0):
        super().__init__()
        self.patch_size = tuple(int(p) for p in patch_size)
        self.pos_embed_grid = tuple(int(g) for g in pos_embed_grid)
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.patch_embed = PatchEmbedding(input_channels, self.patch_size, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, int(np.prod(self.pos_embed_grid)), embed_dim))
        trunc_normal_(self.pos_embed, std=0.02)
        drop_path = np.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.Sequential(*[
            TransformerBlock(embed_dim, num_heads, mlp_ratio, drop_path=drop_path[i], act_layer=nn.ELU)
            for i in range(depth)
        ])
        self.norm = nn.LayerNorm(embed_dim)

    @property
    def embed_dim(self) -> int:
        return self.pos_embed.shape[-1]

    def grid_size(self, image_size: Sequence[int]) -> tuple[int, ...]:
        return token_grid(image_size, self.patch_size)

    def position_embedding(self, grid: tuple[int, ...]) -> torch.Tensor:
        if grid == self.pos_embed_grid:
            return self.pos_embed
        return resample_position_embedding(self.pos_embed, grid, self.pos_embed_grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = self.grid_size(x.shape[2:])
        tokens = self.patch_embed(x) + self.position_embedding(grid)
        tokens = self.norm(self.blocks(tokens))
        return tokens.transpose(1, 2).reshape(x.shape[0], -1, *grid)

    def compute_feature_map_size(self, image_size: Sequence[int]) -> int:
        """Activation elements per sample, counted as dynamic-network-architectures counts a convolution: one
        map per weight layer's output (patch embedding; per block qkv, projection, MLP in and out). Attention
        is fused (``scaled_dot_product_attention``), so the tokens x tokens matrix is never stored."""
        n_tokens = int(np.prod(self.grid_size(image_size)))
        d, hidden = self.embed_dim, int(self.embed_dim * self.mlp_ratio)
        return int(n_tokens * d + len(self.blocks) * n_tokens * (5 * d + hidden))


class CNNBottleneck(nn.Module):
    """The control without a transformer: residual blocks that continue the CNN encoder from its deepest skip
    (stride n/2) to the token stride n, ``embed_dim`` wide, so the decoder is fed by the CNN alone."""

    def __init__(self, encoder: ResidualEncoder, stride: Sequence[int], embed_dim: int, n_blocks: int = 1):
        super().__init__()
        self.stride = tuple(int(s) for s in stride)
        self.blocks = StackedResidualBlocks(
            n_blocks, encoder.conv_op, encoder.output_channels[-1], embed_dim, encoder.kernel_sizes[-1], self.stride,
            encoder.conv_bias, encoder.norm_op, encoder.norm_op_kwargs, encoder.dropout_op, encoder.dropout_op_kwargs,
            encoder.nonlin, encoder.nonlin_kwargs)

    def forward(self, deepest_skip: torch.Tensor) -> torch.Tensor:
        return self.blocks(deepest_skip)

    def compute_feature_map_size(self, skip_size: Sequence[int]) -> int:
        return int(self.blocks.compute_conv_feature_map_size(list(skip_size)))


class TUNetDecoder(nn.Module):
    """Decoder from the token map (stride n) to full resolution, concatenating the CNN skips.

    Each stage: bilinear upsampling to the skip's size → concat skip → convs. One
    segmentation head per stage; with ``deep_supervision`` all are returned, highest resolution first.
    With ``project_before_upsampling`` a 1×1 convolution first maps the deeper map to the skip's width at
    its own (4× smaller) size, so the upsampling, the concatenation and the stage's first convolution
    handle 2× instead of 3× the skip's channels (a 1×1 convolution commutes with bilinear resampling).
    """

    def __init__(self, encoder: ResidualEncoder, input_channels: int, num_classes: int,
                 n_conv_per_stage: int | Sequence[int], deep_supervision: bool,
                 project_before_upsampling: bool = False):
        super().__init__()
        self.deep_supervision = deep_supervision
        self.skip_channels = list(encoder.output_channels)
        n = len(self.skip_channels)
        n_conv = _per_stage(n_conv_per_stage, n)
        self.mode = "bilinear"
        stages, seg_layers, projections = [], [], []
        below = input_channels
        for s in reversed(range(n)):  # deepest skip first
            if project_before_upsampling:
                projections.append(encoder.conv_op(below, self.skip_channels[s], 1, 1, 0, bias=True))
                below = self.skip_channels[s]
            stages.append(StackedConvBlocks(
                n_conv[s], encoder.conv_op, below + self.skip_channels[s], self.skip_channels[s],
                encoder.kernel_sizes[s], 1, encoder.conv_bias, encoder.norm_op, encoder.norm_op_kwargs,
                encoder.dropout_op, encoder.dropout_op_kwargs, encoder.nonlin, encoder.nonlin_kwargs))
            seg_layers.append(encoder.conv_op(self.skip_channels[s], num_classes, 1, 1, 0, bias=True))
            below = self.skip_channels[s]
        self.stages = nn.ModuleList(stages)
        self.seg_layers = nn.ModuleList(seg_layers)
        self.projections = nn.ModuleList(projections)  # empty unless project_before_upsampling

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        outputs = []
        for i, (stage, skip) in enumerate(zip(self.stages, reversed(skips))):
            if self.projections:
                x = self.projections[i](x)
            x = F.interpolate(x, size=skip.shape[2:], mode=self.mode, align_corners=False)
            x = stage(torch.cat((x.to(skip.dtype), skip), 1))
            if self.deep_supervision or i == len(self.stages) - 1:
                outputs.append(self.seg_layers[i](x))
        outputs = outputs[::-1]
        return outputs if self.deep_supervision else outputs[0]

    def compute_conv_feature_map_size(self, skip_sizes: list[list[int]], input_channels: int,
                                      input_size: Sequence[int]) -> int:
        """Elements per sample, counted as DNA's ``UNetDecoder`` does: the upsampled map (where it counts the
        transposed convolution's output), conv outputs, segmentation heads; plus the projected maps.
        ``input_size`` is the size of the decoder's input (the token grid)."""
        total, below, below_size = 0, input_channels, input_size
        for i, s in enumerate(reversed(range(len(skip_sizes)))):
            pixels = int(np.prod(skip_sizes[s]))
            if self.projections:  # the projected map, at the deeper map's size
                below = self.skip_channels[s]
                total += int(np.prod(below_size)) * below
            total += pixels * below
            total += int(self.stages[i].compute_conv_feature_map_size(skip_sizes[s]))
            if self.deep_supervision or i == len(self.stages) - 1:
                total += pixels * self.seg_layers[i].out_channels
            below, below_size = self.skip_channels[s], skip_sizes[s]
        return total


class TransformerUNet(nn.Module):
    """T-Unet. The CNN encoder's arguments mirror nnU-Net plans (one entry per CNN stage); the transformer's are
    explicit: ``token_size`` (edge of the square image patch one token covers, or one edge per axis),
    ``embed_dim``, ``depth``, ``num_heads``, ``mlp_ratio``, and ``pos_embed_grid``, the token grid the position
    embedding is learnt at (resampled to the input's grid, so weights move between patch sizes).
    ``project_before_upsampling`` with ``n_conv_per_stage_decoder=1`` is the lean decoder.
    ``bottleneck="cnn"`` is the control without a transformer (:class:`CNNBottleneck`: the decoder is fed by the
    CNN alone; ``depth``, ``num_heads``, ``mlp_ratio``, ``pos_embed_grid`` and ``drop_path_rate`` then do nothing).
    """

    def __init__(
        self,
        input_channels: int,
        num_classes: int,
        n_stages: int,
        features_per_stage: int | Sequence[int],
        conv_op: Type[_ConvNd],
        kernel_sizes: int | Sequence,
        strides: int | Sequence,
        n_blocks_per_stage: int | Sequence[int] = 1,
        n_conv_per_stage_decoder: int | Sequence[int] = 2,
        conv_bias: bool = False,
        norm_op: Type[nn.Module] | None = None,
        norm_op_kwargs: dict | None = None,
        dropout_op: Type[_DropoutNd] | None = None,
        dropout_op_kwargs: dict | None = None,
        nonlin: Type[nn.Module] | None = None,
        nonlin_kwargs: dict | None = None,
        token_size: int | Sequence[int] = 16,
        embed_dim: int = 512,
        depth: int = 6,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        pos_embed_grid: Sequence[int] = (10, 12),
        drop_path_rate: float = 0.0,
        project_before_upsampling: bool = False,
        bottleneck: str = "transformer",
        deep_supervision: bool = False,
    ):
        super().__init__()
        if n_stages < 1:
            raise ValueError("T-Unet needs at least one CNN encoder stage (n_stages >= 1)")
        if convert_conv_op_to_dim(conv_op) != 2:
            raise ValueError("T-Unet is 2d only (its patch embedding is 2d): use the 2d configuration")
        stride_list = [maybe_convert_scalar_to_list(conv_op, s) for s in _per_stage(strides, n_stages)]
        token = [int(t) for t in maybe_convert_scalar_to_list(conv_op, token_size)]
        deepest_skip = [int(s) for s in cumulative_strides(stride_list)[-1]]
        if any(t % s for t, s in zip(token, deepest_skip)):
            raise ValueError(f"token size {token} must be a multiple of the CNN encoder's total stride {deepest_skip}")
        self.encoder = ResidualEncoder(
            input_channels, n_stages, _per_stage(features_per_stage, n_stages), conv_op,
            _per_stage(kernel_sizes, n_stages), stride_list, _per_stage(n_blocks_per_stage, n_stages), conv_bias,
            norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs, return_skips=True)
        if bottleneck not in ("transformer", "cnn"):
            raise ValueError(f"bottleneck must be 'transformer' or 'cnn', got {bottleneck!r}")
        self.token_size = tuple(token)
        self.embed_dim = embed_dim
        self.transformer = self.bottleneck = None  # one of them feeds the decoder
        if bottleneck == "transformer":
            self.transformer = PatchTransformer(input_channels, token, embed_dim, depth, num_heads, mlp_ratio,
                                                pos_embed_grid, drop_path_rate)
        else:
            self.bottleneck = CNNBottleneck(self.encoder, [t // s for t, s in zip(token, deepest_skip)], embed_dim)
        self.decoder = TUNetDecoder(self.encoder, embed_dim, num_classes, n_conv_per_stage_decoder,
                                    deep_supervision, project_before_upsampling)

    @property
    def patch_size(self) -> tuple[int, ...]:
        """The token's edge per axis (inputs must be divisible by it)."""
        return self.token_size

    def grid_size(self, image_size: Sequence[int]) -> tuple[int, ...]:
        return token_grid(image_size, self.token_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        self.grid_size(x.shape[2:])  # first: x must be divisible by the token size
        skips = self.encoder(x)
        tokens = self.transformer(x) if self.transformer is not None else self.bottleneck(skips[-1])
        return self.decoder(tokens, skips)

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> int:
        """Activation elements per sample (nnU-Net's VRAM proxy), attention included."""
        skip_sizes, size = [], list(input_size)
        for stride in self.encoder.strides:
            size = [i // j for i, j in zip(size, stride)]
            skip_sizes.append(size)
        middle = (self.transformer.compute_feature_map_size(input_size) if self.transformer is not None
                  else self.bottleneck.compute_feature_map_size(skip_sizes[-1]))
        return int(self.encoder.compute_conv_feature_map_size(input_size) + middle
                   + self.decoder.compute_conv_feature_map_size(skip_sizes, self.embed_dim, self.grid_size(input_size)))

    @staticmethod
    def initialize(module: nn.Module) -> None:
        """He init for convolutions, zero last norm in residual blocks, ViT init for linear layers."""
        InitWeights_He(1e-2)(module)
        init_last_bn_before_add_to_0(module)
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
