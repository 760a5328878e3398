"""`binbot convert`. TensorFlow is imported only when it runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from binbot.device.bundle import MODES
from binbot import quiet
from binbot.helpformat import DefaultsFormatter, epilog

EPILOG = epilog(
    ("binbot convert runs/first/model.keras --out bundles/first", "int8, the default"),
    ("binbot convert runs/first/model.keras --out bundles/first-f16 --mode float16", "half-size float weights"),
    ("binbot convert runs/first/model.keras --out bundles/mine --float-layers Conv1_1,expanded_conv_depthwise_1",
     "int8 with these layers in float, chosen by hand"),
    ("binbot convert runs/first/model.keras --out bundles/strict --no-mixed", "integers throughout, or no bundle"),
    next_steps="`binbot bundle inspect BUNDLE` shows what the bundle is and verifies it; "
    "`binbot deploy BUNDLE HOST` puts it on a Pi.",
)


def register(commands: argparse._SubParsersAction) -> None:
    convert = commands.add_parser(
        "convert",
        help="quantize a checkpoint into a bundle for the Pi (workstation)",
        description="Convert CHECKPOINT (a model.keras or .h5 from binbot train, or a trusted SavedModel folder) to "
        "TFLite, check the result against the checkpoint on images with known classes, and write a bundle: model.tflite, "
        "labels.txt, bundle.json and selftest.npz. By default the images are the training run's own (split.json "
        "beside the checkpoint): its training images for calibration, its validation images for the check. If int8 "
        "loses more accuracy than --max-drop, the layers whose rounding costs most are kept in float, the fewest that "
        "bring the loss within it (mixed int8: input and output stay uint8, so the device is unchanged).",
        epilog=EPILOG, formatter_class=DefaultsFormatter,
    )
    convert.add_argument("checkpoint", type=Path, help="model.keras, a Keras .h5 model, or a SavedModel folder")
    convert.add_argument("--trust-savedmodel", action="store_true",
                         help="load a SavedModel folder, which runs its graph (file reads and writes included): "
                         "only for one you trust, as a .keras or .h5 checkpoint cannot run code")
    convert.add_argument("--out", type=Path, required=True, help="bundle folder to create")
    convert.add_argument("--labels", type=Path, help="labels file (default: labels.txt beside the checkpoint)")
    convert.add_argument("--force", action="store_true",
                         help="replace an existing --out (only once the new bundle is complete)")
    quantization = convert.add_argument_group("quantization")
    quantization.add_argument(
        "--mode", choices=MODES, default="int8",
        help="int8: integer only, uint8 pixels in (smallest, fastest on the Pi), but for the few layers kept in float "
        "when full int8 would lose more than --max-drop (see --no-mixed); float16: half-size float weights; "
        "dynamic: int8 weights, float activations; float32: no quantization",
    )
    quantization.add_argument("--no-mixed", action="store_true",
                              help="int8 throughout: refuse (or with --allow-drop, write) a model that loses more "
                              "than --max-drop, instead of keeping the layers whose rounding costs most in float")
    quantization.add_argument("--float-layers", type=_names, metavar="NAME,...",
                              help="keep exactly these layers with weights in float, the rest int8 (no search); "
                              "names as binbot convert prints them and bundle inspect shows them, e.g. Conv1_1")
    check = convert.add_argument_group("calibration and the accuracy check")
    check.add_argument("--calibration-data", type=Path, metavar="DIR",
                       help="<class>/<image> folder to calibrate int8 on (default: the run's training images)")
    check.add_argument("--calibration-samples", type=int, default=300, help="images drawn for int8 calibration")
    check.add_argument("--eval-data", type=Path, metavar="DIR",
                       help="<class>/<image> folder to validate on (default: the run's validation images, "
                       "else the calibration images)")
    check.add_argument("--max-drop", type=float, default=1.0,
                       help="largest accepted loss of accuracy, in percentage points, before no bundle is written")
    check.add_argument("--allow-drop", action="store_true", help="write the bundle even if accuracy drops more")
    check.add_argument("--threads", type=int, default=2, help="interpreter threads for the validation")
    convert.set_defaults(handler=_convert)


def _convert(args: argparse.Namespace) -> int:
    quiet.import_tensorflow()
    from binbot.convert.converter import ConvertConfig, convert_checkpoint

    convert_checkpoint(ConvertConfig(
        checkpoint=args.checkpoint, out=args.out, mode=args.mode, labels=args.labels,
        calibration_data=args.calibration_data, calibration_samples=args.calibration_samples,
        eval_data=args.eval_data, max_drop=args.max_drop, allow_drop=args.allow_drop,
        threads=args.threads, force=args.force, trust_savedmodel=args.trust_savedmodel,
        float_layers=args.float_layers, mixed=not args.no_mixed,
    ))
    return 0


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",")]
