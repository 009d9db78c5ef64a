"""``recognize`` and ``export-recognizer``: argument parsing only; the work is in formula_gan.recognition."""

from __future__ import annotations

import argparse
import contextlib
import sys

from formula_gan.cli import number


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "recognize",
        help="read handwritten formulas (PNG/JPEG photos and scans, InkML files) into LaTeX",
        description=(
            "Print the LaTeX of each input, one line per file in the order given (tab-separated: file, "
            "LaTeX). A folder stands for the pictures and InkML files directly in it, sorted by name "
            "(by suffix; hidden files and subfolders are not read). Pictures are turned to grayscale, their "
            "lighting flattened, the ruling of lined or squared paper removed, contrast normalized, cropped "
            "to the formula's connected ink, a thick pen thinned, and scaled to the recognizer's height; "
            "InkML strokes are rasterized as the training data was. A file that cannot be read prints an "
            "error line and the others go on; the exit status is 1 when any file failed. Uses the shipped "
            "recognizer (trained on CROHME and stitched handwriting; its card: formula_gan/weights/recognizer.md) "
            "unless --recognizer is given."
        ),
    )
    p.add_argument("files", nargs="+", metavar="FILE|DIR",
                   help="images (.png, .jpg, ...) or .inkml files, or folders of them (not searched recursively)")
    p.add_argument("--recognizer", metavar="CKPT", help="a recognizer checkpoint (default: the shipped one)")
    p.add_argument("--beam", type=number(int, 1, 100), default=10, help="beam width; 1 = greedy (default 10)")
    p.add_argument("--batch-size", type=number(int, 1, 1024), default=8, help="images decoded together (default 8)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument("--engine", choices=["torch", "onnx"], default="torch",
                   help="what runs the recognizer: torch (default) or onnx (ONNX Runtime on the CPU: the same "
                        "readings, 2-3x faster on two cores; pip install 'formula-gan[onnx]'; --recognizer may then "
                        "be the encoder file of export-recognizer --onnx, and a .pt is converted at start)")
    p.add_argument("--json", action="store_true", help="one JSON object per line: source, latex, tokens, score, error")
    p.add_argument("--out", metavar="FILE.jsonl",
                   help="also write the readings there, one JSON object per file as --json prints them (written "
                        "to a temporary name and renamed when all are read)")
    p.add_argument("--quiet", action="store_true", help="print no readings (with --out: the file only); errors still")
    p.set_defaults(func=recognize)

    e = sub.add_parser(
        "export-recognizer",
        help="a training checkpoint's weights alone (no optimizer), with a checksum, for recognize",
        description=(
            "Write CKPT's model weights, config, vocabulary and step, plus a sha256 of the weights that is "
            "checked on every load, to FILE (about a third of a training checkpoint)."
        ),
    )
    e.add_argument("checkpoint", metavar="CKPT", help="a train-recognizer best.pt or last.pt (or, for --onnx, "
                                                      "an exported file such as the packaged recognizer.pt)")
    e.add_argument("--out", metavar="FILE", help="file to write")
    e.add_argument("--onnx", metavar="FILE", help="also (or only) write ONNX graphs for recognize --engine onnx: FILE "
                                                  "(the encoder) and its .step.onnx sibling (one decoder step); needs "
                                                  "pip install 'formula-gan[onnx]'")
    e.set_defaults(func=export)


def recognize(args: argparse.Namespace) -> int:
    from formula_gan.recognition import Recognizer
    from formula_gan.recognition.batch import ReadingsFile, expand_inputs, reading_json

    files = expand_inputs(args.files)
    out = ReadingsFile(args.out) if args.out else None  # a bad --out is refused before the model loads
    rec = Recognizer(args.recognizer, device=args.device, beam=args.beam, batch_size=args.batch_size,
                     engine=args.engine)
    failed = 0
    with out if out is not None else contextlib.nullcontext():
        for reading in rec.read_files(files):
            failed += reading.error is not None
            if out is not None:
                out.write(reading)
            if reading.error is not None:
                if not args.json or args.quiet:
                    print(f"formula-gan recognize: error: {reading.error}", file=sys.stderr, flush=True)
            if args.quiet:
                continue
            if args.json:
                print(reading_json(reading), flush=True)
            elif reading.error is None:
                print(f"{reading.source}\t{reading.latex}", flush=True)
    return 1 if failed else 0


def export(args: argparse.Namespace) -> int:
    from formula_gan.errors import FormulaGanError
    from formula_gan.recognition.files import export_recognizer

    if not args.out and not args.onnx:
        raise FormulaGanError("export-recognizer: give --out FILE, --onnx FILE or both")
    if args.onnx:
        from formula_gan.models.onnx_files import require_exporter

        require_exporter()  # before --out is written: all or nothing
    if args.out:
        info = export_recognizer(args.checkpoint, args.out)
        print(f"export-recognizer: step {info['step']}, weights sha256 {info['weights_sha256'][:16]}… -> {args.out}")
    if args.onnx:
        from formula_gan.recognition.onnx import export_recognizer_onnx

        info = export_recognizer_onnx(args.checkpoint, args.onnx)
        print(f"export-recognizer: step {info['step']} -> {' and '.join(info['files'])} (ONNX)")
    return 0
