"""The samplers of ``zarrsample plan``: their options, and the sampler and plan they make."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .._errors import ZarrsampleError
from ..planning._balanced_sampler import ClassBalancedPatchSampler
from ..planning._bluenoise_sampler import BlueNoisePatchSampler
from ..planning._random_sampler import RandomPatchSampler
from ..planning._sampler import PatchSampler
from ..sources._collection import ImageCollection
from ._options import area, non_negative

__all__ = ["SAMPLERS", "add_sampler_options", "make_sampler", "plan_of"]

#: The --sampler choices.
SAMPLERS = ("grid", "bluenoise", "random", "balanced")


def crops(text: str) -> int | float:
    """--num-patches: an int >= 1, or a float > 0 (crops per patch area of samplable positions)."""
    try:
        value: int | float = int(text)
    except ValueError:
        value = area(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def class_ratios(text: str) -> dict[int, float]:
    """--class-ratios: a JSON object of class -> ratio, e.g. '{"0": 0.2, "1": 0.8}'."""
    try:
        value = json.loads(text)
        if not isinstance(value, dict) or not value:
            raise ValueError
        return {int(k): float(v) for k, v in value.items()}
    except (ValueError, TypeError):
        raise argparse.ArgumentTypeError(
            f"expected a JSON object of class: ratio, such as '{{\"0\": 0.2, \"1\": 0.8}}', got {text!r}"
        ) from None


def add_sampler_options(plan: argparse.ArgumentParser) -> None:
    """The sampler options of the plan command."""
    plan.add_argument("--sampler", choices=SAMPLERS, default="grid",
                      help="grid (default), bluenoise, random (new crops every epoch) or balanced "
                           "(random crops balanced across the classes of --labels)")
    plan.add_argument("--seed", type=non_negative, default=0, help="seed of bluenoise, random, balanced (default 0)")
    plan.add_argument("--num-patches", type=crops,
                      help="random / balanced: crops per image per epoch, an int, or a float f for f times "
                           "the samplable area in patch areas (default 1.0)")
    plan.add_argument("--epoch", type=non_negative,
                      help="random / balanced: the epoch whose crops to plan (default 0); bluenoise: a new "
                           "pattern per tile and epoch (resample_per_epoch), this epoch's")
    plan.add_argument("--labels", metavar="PATH", help="balanced: the label image (integer classes, any scale)")
    plan.add_argument("--class-ratios", type=class_ratios, metavar="JSON",
                      help='balanced: relative frequency of each class, e.g. \'{"0": 0.2, "1": 0.8}\'')
    plan.add_argument("--min-class-area", type=area, default=1,
                      help="balanced: class pixels each crop's window holds, a fraction in [0, 1) or a count "
                           ">= 1 (default 1)")


def make_sampler(args: argparse.Namespace, spatial: str) -> PatchSampler:
    """The sampler the plan options ask for.

    Raises
    ------
    ZarrsampleError
        Options that the chosen sampler does not take, or missing ones.
    """
    options: dict[str, Any] = dict(pad=args.pad, min_area=args.min_area, spatial_axes=spatial,
                                   allow_incomplete_patches=args.allow_incomplete)
    crops_only = [flag for flag, value in (("--num-patches", args.num_patches), ("--epoch", args.epoch))
                  if value is not None and (args.sampler == "grid" or flag == "--num-patches")]
    if args.sampler in ("grid", "bluenoise") and crops_only:
        verb = "apply" if len(crops_only) > 1 else "applies"
        raise ZarrsampleError(f"{' and '.join(crops_only)} {verb} to --sampler random or balanced, "
                              f"not {args.sampler}")
    if args.sampler != "balanced" and (args.labels or args.class_ratios):
        raise ZarrsampleError("--labels and --class-ratios apply to --sampler balanced")
    if args.sampler in ("random", "balanced") and args.stride is not None:
        raise ZarrsampleError(f"--stride applies to the grid and bluenoise samplers; {args.sampler} crops start "
                              "at any pixel")
    if args.sampler == "grid":
        return PatchSampler(args.patch_size, stride=args.stride, **options)
    if args.sampler == "bluenoise":
        return BlueNoisePatchSampler(args.patch_size, stride=args.stride, seed=args.seed,
                                     resample_per_epoch=args.epoch is not None, **options)
    num = 1.0 if args.num_patches is None else args.num_patches
    if args.sampler == "random":
        return RandomPatchSampler(args.patch_size, num, seed=args.seed, **options)
    if not args.labels or not args.class_ratios:
        raise ZarrsampleError("--sampler balanced needs --labels PATH and --class-ratios JSON "
                              "(e.g. --class-ratios '{\"0\": 0.5, \"1\": 0.5}')")
    return ClassBalancedPatchSampler(args.patch_size, num, class_ratios=args.class_ratios,
                                     min_class_area=args.min_class_area, seed=args.seed, **options)


def plan_of(sampler: PatchSampler, collection: ImageCollection, args: argparse.Namespace, stream: int) -> Any:
    """The plan shown: for samplers with new positions every epoch, those of ``--epoch``."""
    if getattr(sampler, "per_epoch", False):
        return sampler.epoch_plan(collection, epoch=args.epoch or 0, stream=stream)  # type: ignore[attr-defined]
    return sampler.plan(collection)
