# Thin hook for nnU-Net's trainer search (nnUNet_extTrainer): any name of the form
# <trainer>_<E>epochs_<I>its[_<V>val][_lr<X>] resolves to a budget trainer of the installed package
# (nnunet_tongue/training/budget.py). This folder is NOT registered at start-up: only the demo, the tests
# and the benchmarks add it (nnunet_tongue.workspace.NnUNetWorkspace).
from nnunet_tongue.training.budget import __getattr__  # noqa: F401
