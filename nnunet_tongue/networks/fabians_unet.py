"""FabiansUNet: residual encoder + plain convolutional decoder (nnU-Net v1 lineage).

This is dynamic-network-architectures' ``ResidualEncoderUNet`` with nnU-Net v1 FabiansUNet's depth
profile as its default: 1, 2, 3, 4, 4, 4, … residual blocks per encoder stage and one convolution per
decoder stage (transposed-convolution upsampling, skip concatenation).
"""

from __future__ import annotations

from typing import Sequence

from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet

ENCODER_BLOCKS = (1, 2, 3, 4)  # then 4 for every deeper stage


def fabians_blocks_per_stage(n_stages: int) -> tuple[int, ...]:
    """Residual blocks per encoder stage of nnU-Net v1's FabiansUNet: 1, 2, 3, 4, 4, 4, …"""
    return tuple(ENCODER_BLOCKS[min(i, len(ENCODER_BLOCKS) - 1)] for i in range(n_stages))


class FabiansUNet(ResidualEncoderUNet):
    """``ResidualEncoderUNet`` whose block counts default to the FabiansUNet profile."""

    def __init__(self, input_channels: int, n_stages: int, features_per_stage, conv_op, kernel_sizes, strides,
                 num_classes: int, n_blocks_per_stage: int | Sequence[int] | None = None,
                 n_conv_per_stage_decoder: int | Sequence[int] = 1, **kwargs):
        super().__init__(input_channels, n_stages, features_per_stage, conv_op, kernel_sizes, strides,
                         n_blocks_per_stage or fabians_blocks_per_stage(n_stages), num_classes,
                         n_conv_per_stage_decoder, **kwargs)
