"""`binbot bundle inspect`: what a bundle is, and whether this device would serve it. No TensorFlow."""

from __future__ import annotations

import argparse
from pathlib import Path

from binbot.device import actions_cli, paths, run_cli
from binbot.device.bench import cli as bench_cli
from binbot.helpformat import DefaultsFormatter, epilog

INSPECT_EPILOG = epilog(
    ("binbot bundle inspect bundles/first", "what the bundle is, and does it verify here?"),
    (f"binbot bundle inspect {paths.CURRENT_BUNDLE}", "on a Pi: the bundle the service serves"),
    next_steps="`binbot deploy BUNDLE HOST` puts the bundle on a Pi; `binbot run --bundle BUNDLE` or "
    "`binbot classify BUNDLE IMAGE` tries it here.",
)


def register(commands: argparse._SubParsersAction) -> None:
    bundle = commands.add_parser("bundle", help="look into model bundles (workstation, Pi)",
                                 description="Commands on model bundles made by binbot convert.",
                                 epilog=INSPECT_EPILOG, formatter_class=DefaultsFormatter)
    actions = bundle.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)
    inspect = actions.add_parser(
        "inspect",
        help="describe a bundle and verify it (workstation, Pi)",
        description="Print a bundle's classes, input, quantization, size, checksums, validation figures and tool "
        "versions, then verify it as the device does before serving (checksums, labels against the model, "
        "self-test). Exits 1 if it does not verify.",
        epilog=INSPECT_EPILOG, formatter_class=DefaultsFormatter,
    )
    inspect.add_argument("bundle", type=Path, help="bundle folder")
    inspect.add_argument("--threads", type=run_cli.threads_flag, default=2,
                         help="interpreter threads for the self-test")
    inspect.set_defaults(handler=_inspect)
    run_cli.register(commands)
    bench_cli.register(commands)
    actions_cli.register(commands)


def _inspect(args: argparse.Namespace) -> int:
    from binbot.device.bundle import load_bundle, read_bundle

    print(describe(read_bundle(args.bundle).manifest, args.bundle))
    print("verifying:")
    load_bundle(args.bundle, args.threads, report=lambda line: print(f"  ok  {line}"))
    print(f"{args.bundle}: verifies; ready to serve")
    return 0


def describe(manifest: dict, path: Path) -> str:
    """A bundle.json as a few lines a person can read.

    The fields read_bundle checked are read as they are; the others (provenance, validation figures,
    tools) are shown as "?" where they are missing or of the wrong type, since a bundle describes itself.
    """
    shape, quant = manifest["input"], manifest["quantization"]
    source, tools, val = (_table(manifest.get(key)) for key in ("source", "tools", "validation"))
    calibration, selftest = _table(manifest.get("calibration")), manifest["selftest"]
    classes = manifest["class_names"]

    def tensor(t: dict) -> str:
        return f"{t['dtype']}" + (f" (scale {t['scale']:.6g}, zero point {t['zero_point']})" if t["scale"] else "")

    lines = [
        f"bundle {path}: id {manifest['id']}, format {manifest['format_version']}, made {_text(manifest.get('created'))}",
        f"  classes      {len(classes)}: {', '.join(classes)}",
        f"  input        {shape['height']}x{shape['width']} {shape['color_order']}, resize {shape['resize_policy']}, "
        f"tensor {tensor(quant['input'])}",
        f"  output       {len(classes)} probabilities, tensor {tensor(quant['output'])}",
        f"  mode         {quant['mode']}{_float_layers_why(quant, val)}",
    ]
    for n, layer in enumerate(quant.get("float_layers") or []):
        error = layer.get("rounding_error")
        rounding = "" if error is None else f", rounding error {_number(error, '.2f')} steps"
        lines.append(f"  {'float layers' if n == 0 else '':<12} {layer['name']} ({_text(layer.get('op'))}{rounding})")
    for n, (name, file) in enumerate(manifest["files"].items()):
        label = "files" if n == 0 else ""
        lines.append(f"  {label:<12} {name:<13} {file['bytes']:>11,} bytes  sha256 {file['sha256']}")
    lines.append(f"  source       {_text(source.get('checkpoint'))} (sha256 {_text(source.get('sha256'))[:16]}...)")
    if "calibration" in manifest and not calibration:
        lines.append("  calibration  ?")
    elif calibration:
        lines.append(f"  calibration  {_number(calibration.get('images'), 'd')} images from "
                     f"{_text(calibration.get('data'))}")
    if "validation" in manifest and not val:
        lines.append("  validation   ?")
    elif val:
        drop = val.get("accuracy_drop_points")
        lines.append(
            f"  validation   {_number(val.get('images'), 'd')} images from {_text(val.get('data'))}: "
            f"keras {_number(val.get('keras_accuracy'), '.2%')}, tflite {_number(val.get('tflite_accuracy'), '.2%')} "
            f"(drop {_number(drop if drop is None else drop + 0.0, '.2f')} points"
            f"{', beyond --max-drop, allowed' if val.get('drop_allowed') is True else ''}), "
            f"agreement {_number(val.get('agreement'), '.2%')}, "
            f"max probability diff {_number(val.get('max_probability_difference'), '.4f')}"
        )
    shown_classes = selftest.get("classes")
    shown_classes = shown_classes if isinstance(shown_classes, list) else []
    lines.append(
        f"  self-test    {len(selftest['expected'])} inputs ({', '.join(map(_text, shown_classes))}), "
        f"tolerance {selftest['tolerance']:.4g} (reference kernels differed by "
        f"{_number(selftest.get('reference_kernels_difference', 0), '.4g')})"
    )
    lines.append(f"  tools        {', '.join(f'{k} {_text(v)}' for k, v in tools.items()) or '?'}")
    return "\n".join(lines)


def _table(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str:
    return value if isinstance(value, str) else "?"


def _number(value: object, spec: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (spec == "d" and not isinstance(value, int)):
        return "?"
    return format(value, spec)


def _float_layers_why(quant: dict, validation: dict) -> str:
    """How many layers of an int8 model run in float, and who chose them."""
    layers = quant.get("float_layers") or []
    if not layers:
        return ""
    count = f"{len(layers)} layer{'s' if len(layers) > 1 else ''} in float"
    if quant.get("float_layers_chosen") == "automatic":
        drop = quant.get("full_int8_drop_points")
        return (f", {count} (chosen automatically: full int8 lost {_number(drop, '.2f')} points, "
                f"more than --max-drop {_number(validation.get('max_drop_points'), '')}; "
                f"kept the fewest layers with the largest rounding error that bring it within)")
    return f", {count} (chosen by hand with --float-layers)"
