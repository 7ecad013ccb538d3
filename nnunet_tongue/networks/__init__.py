"""Networks: residual U-Net (DNA's ``ResidualUNet``), :class:`FabiansUNet` and :class:`TransformerUNet`.

Importing this package is heavy (torch); :mod:`nnunet_tongue` itself stays light.
"""

from nnunet_tongue.networks.fabians_unet import FabiansUNet
from nnunet_tongue.networks.tunet import TransformerUNet

__all__ = ["FabiansUNet", "TransformerUNet"]
