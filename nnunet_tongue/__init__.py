"""nnunet_tongue: tongue segmentation in photographs as a plug-in for stock nnU-Net v2.

Kept import-light on purpose: ``nnunet_tongue.pth`` imports this package at every interpreter
start-up to register the trainers (see :mod:`nnunet_tongue.registration`).
"""

__version__ = "0.2.0"
