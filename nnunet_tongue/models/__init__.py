"""Trained tongue models: the bundled one, installed ones, packing (no pickle) and export to nnU-Net.

- :mod:`nnunet_tongue.models.packed`: the packed-model format (card + plans + safetensors), :func:`pack`,
  :meth:`PackedModel.export`;
- :mod:`nnunet_tongue.models.store`: where models live, :func:`find_model` (name or folder),
  :func:`install_zip`;
- :mod:`nnunet_tongue.models.command`: ``nnunet-tongue models``.
"""
