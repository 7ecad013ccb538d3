"""``nnunet-tongue plan_and_preprocess``: ``nnUNetv2_plan_and_preprocess`` with the plug-in planners.

nnU-Net resolves ``-pl`` only inside its own package, so this command takes the same flags, resolves
the plug-in planners itself (nnU-Net's own planner names still work), and then calls nnU-Net's own
fingerprint, planning and preprocessing functions.
"""

from __future__ import annotations

import argparse

from nnunet_tongue.planning.planners import PLANNERS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nnunet-tongue plan_and_preprocess", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-d", nargs="+", type=int, required=True, help="dataset IDs, e.g. 501")
    p.add_argument("-pl", default="nnUNetTongueTUNetPlanner",
                   help=f"planner: {', '.join(PLANNERS)} or an nnU-Net planner class name "
                        "(default: nnUNetTongueTUNetPlanner)")
    p.add_argument("-fpe", default="DatasetFingerprintExtractor", help="fingerprint extractor class (nnU-Net's)")
    p.add_argument("-npfp", type=int, default=8, help="processes for fingerprint extraction (default 8)")
    p.add_argument("--verify_dataset_integrity", action="store_true", help="check the raw dataset first (recommended)")
    p.add_argument("--no_pp", action="store_true", help="fingerprint and plan only, no preprocessing")
    p.add_argument("--clean", action="store_true", help="recompute existing fingerprints")
    p.add_argument("-gpu_memory_target", type=float, default=None, help="VRAM target in GB (planner default: 8)")
    p.add_argument("-preprocessor_name", default="DefaultPreprocessor", help="preprocessor class (nnU-Net's)")
    p.add_argument("-overwrite_target_spacing", nargs="+", default=None, help="3d_fullres target spacing")
    p.add_argument("-overwrite_plans_name", default=None,
                   help="plans identifier (default: nnUNetTongue<Network>Plans); pass it as -p to train/predict")
    p.add_argument("-c", nargs="+", default=["2d"], help="configurations to preprocess (default: 2d)")
    p.add_argument("-np", type=int, nargs="+", default=None, help="processes per configuration (default 8)")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--no_pbar", action="store_true", help="no progress bars")
    return p


def resolve_planner(name: str):
    """A plug-in planner by name or alias, else nnU-Net's planner of that name."""
    if name in PLANNERS:
        return PLANNERS[name]
    import nnunetv2
    from batchgenerators.utilities.file_and_folder_operations import join
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    planner = recursive_find_python_class(join(nnunetv2.__path__[0], "experiment_planning"), name,
                                          current_module="nnunetv2.experiment_planning")
    if planner is None:
        raise SystemExit(f"nnunet-tongue plan_and_preprocess: unknown planner {name!r}; "
                         f"use one of {', '.join(PLANNERS)} or an nnU-Net planner class name")
    return planner


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    planner = resolve_planner(args.pl)
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints, plan_experiment_dataset, preprocess)

    print("Fingerprint extraction...")
    extract_fingerprints(args.d, args.fpe, args.npfp, args.verify_dataset_integrity, args.clean, args.verbose,
                         show_progress_bar=not args.no_pbar)
    print(f"Experiment planning with {planner.__name__}...")
    plans_identifier = None
    for dataset_id in args.d:
        _, plans_identifier = plan_experiment_dataset(dataset_id, planner, args.gpu_memory_target,
                                                      args.preprocessor_name, args.overwrite_target_spacing,
                                                      args.overwrite_plans_name)
    if not args.no_pp:
        print("Preprocessing...")
        num_processes = args.np or [8] * len(args.c)
        preprocess(args.d, plans_identifier, args.c, num_processes, args.verbose, show_progress_bar=not args.no_pbar)
    print(f"Plans identifier: {plans_identifier}  (use -p {plans_identifier} with nnUNetv2_train / nnUNetv2_predict)")
    return 0
