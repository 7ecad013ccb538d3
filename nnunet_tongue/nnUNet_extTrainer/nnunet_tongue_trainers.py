# Thin re-export for nnU-Net's trainer search (nnUNet_extTrainer). nnU-Net imports every module of
# this folder as a top-level module and removes it from sys.modules afterwards, so classes are only
# re-exported here: they live in the installed package, which keeps them picklable.
# Do not define classes in this folder; see docs/registration.md.
from nnunet_tongue.training.trainers import *  # noqa: F401,F403  (its __all__: PRODUCT_TRAINERS)
