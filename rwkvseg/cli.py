"""The command line: `rwkvseg train | evaluate | record | predict | cache` (or `python -m rwkvseg ...`).

    rwkvseg train --config isic2018_rwkv_unet_t --epochs 10 --seed 1
    torchrun --nproc_per_node 2 -m rwkvseg train --config acdc_rwkv_unet_t
    rwkvseg evaluate --checkpoint runs/x/best.pt [--data_dir DIR] [--split test] [--json out.json] [--cases DIR]
    rwkvseg record --run runs/x --out records/<name>
    rwkvseg predict --checkpoint weights/rwkv_unet_t_isic2018 a.jpg b.png --out pred/
    rwkvseg cache --dataset acdc --data_dir DATA --out cache/

`train` fills the same TrainConfig as the book's chapters: the recipe (`--config`: a YAML file or
the name of a shipped recipe, see `rwkvseg train --help`) first, then every `--field value` on top.
Values are read as YAML (`--tta false`, `--betas [0.9,0.99]`, `--model_kwargs "{drop_path: 0.1}"`);
a bare `--resume` means true. `cache` writes the uint8 cache file a run reads (`acdc_224.npz` or
`isic2018_256x256.npz`), so that `train --data_dir <that folder>` loads it without the source files.
`evaluate` and `predict` take a checkpoint file (best.pt / last.pt) or an exported directory.
`predict` never overwrites: inputs that share a stem get distinct output names; a file it cannot
read is reported and skipped (exit status 1), or stops the batch with --stop-on-error.
Every argument is checked before any work starts (options are never abbreviated). An anticipated
error (a bad file, argument or config) prints one line naming the file or the argument and exits
with status 2; `--debug` shows the traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import sys
import tokenize
import warnings
from pathlib import Path

import torch
import yaml

from rwkvseg.data import acdc_cache, acdc_cache_name, isic2018_cache, isic2018_cache_name
from rwkvseg.data.errors import DataError, DataNoteWarning, DataSkipWarning
from rwkvseg.data.files import read_text
from rwkvseg.data.sets import normalization_of
from rwkvseg.engine import config as config_module
from rwkvseg.engine import evaluate_checkpoint, format_table, load_model, train
from rwkvseg.engine.checkpoint import CheckpointError
from rwkvseg.engine.config import TrainConfig, shipped_configs
from rwkvseg.predict import predict_images
from rwkvseg.report import write_cases, write_record
from rwkvseg.version import __version__

ANTICIPATED = (DataError, CheckpointError, ValueError, OSError, yaml.YAMLError)
RESULTS_KEYS = ("dataset", "model", "config", "history", "provenance")    # what `record` reads from results.json


def field_help() -> dict[str, str]:
    """Each TrainConfig field's comment in rwkvseg/engine/config.py (its --help text)."""
    helps: dict[str, str] = {}
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    current = None
    source = Path(config_module.__file__).read_text()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME and tok.start[1] == 4 and tok.string in names:
            current = tok.string
        elif tok.type == tokenize.COMMENT and current is not None:
            text = tok.string.lstrip("# ").strip()
            helps[current] = f"{helps[current]} {text}" if current in helps else text
        elif tok.type == tokenize.NAME and tok.start[1] == 4 and tok.string not in names:
            current = None
    return helps


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (no usage block) and options never abbreviated."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")


def one_line(message: str) -> str:
    """An error message on one line (hints and YAML positions may span several)."""
    return " ".join(message.split())


def _parser() -> argparse.ArgumentParser:
    ap = Parser(prog="rwkvseg", description="RWKV-based medical image segmentation.",
                epilog="`rwkvseg <command> --help` lists a command's options.")
    ap.add_argument("--version", action="version", version=f"rwkvseg {__version__}")
    ap.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = ap.add_subparsers(dest="command", metavar="{train,evaluate,record,predict,cache}")

    t = sub.add_parser("train", help="train a network (a shipped recipe or a YAML file, plus --field value)",
                       description=f"Train a network. Shipped recipes: {', '.join(shipped_configs())}.")
    t.add_argument("--config", default=None, help="a recipe: a YAML file or a shipped recipe's name")
    helps = field_help()
    checked = {"device": _train_device, "out_dir": _out_dir}    # the rest are checked by TrainConfig
    for f in dataclasses.fields(TrainConfig):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        t.add_argument(f"--{f.name}", dest=f.name, default=argparse.SUPPRESS, nargs="?", const="true",
                       type=checked.get(f.name), metavar="VALUE",
                       help=f"{helps.get(f.name, '')} (default: {default!r})".replace("%", "%%"))

    e = sub.add_parser("evaluate", help="the metrics of a checkpoint on its data set's test (or val) split")
    e.add_argument("--checkpoint", required=True, help="best.pt / last.pt, or an exported directory")
    e.add_argument("--data_dir", "--data-dir", "--data", dest="data_dir", default=None,
                   help="data root, data set folder or cache folder (default: the training run's)")
    e.add_argument("--split", default="test", choices=("test", "val"))
    e.add_argument("--no-tta", action="store_true", help="skip the flip TTA evaluation")
    e.add_argument("--max-items", type=_positive, default=None, help="evaluate only the first N images / volumes")
    e.add_argument("--device", type=_device, default=None,
                   help="cpu, cuda, cuda:1 ... (default: the first GPU, else the CPU)")
    e.add_argument("--json", type=_new_file, default=None, help="also write the result to this file")
    e.add_argument("--cases", type=_out_dir, default=None, metavar="DIR",
                   help="also write the best, median and worst cases (no TTA) to DIR: cases.json, cases.png")
    e.add_argument("--n-cases", type=_positive, default=2, help="cases per group (best, median, worst)")

    r = sub.add_parser("record", help="turn a finished run into a record folder (results, curves, cases)")
    r.add_argument("--run", required=True, help="the run's out_dir (results.json, metrics.csv, model/)")
    r.add_argument("--out", type=_out_dir, required=True, help="the record folder to write")
    r.add_argument("--n-cases", type=_positive, default=2, help="cases per group (best, median, worst)")

    p = sub.add_parser("predict", help="segment image files: <stem>_mask.png and <stem>_overlay.png")
    p.add_argument("--checkpoint", required=True, help="best.pt / last.pt, or an exported directory")
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    p.add_argument("--out", type=_out_dir, required=True,
                   help="folder for the masks and overlays (inputs sharing a stem get distinct names)")
    p.add_argument("--tta", action="store_true", help="average with the horizontally flipped prediction")
    p.add_argument("--device", type=_device, default=None,
                   help="cpu, cuda, cuda:1 ... (default: the first GPU, else the CPU)")
    p.add_argument("--stop-on-error", action="store_true",
                   help="stop at the first file that cannot be read (default: report it, skip it, exit with 1)")

    c = sub.add_parser("cache", help="decode a data set once into the uint8 cache file a run reads")
    c.add_argument("--dataset", required=True, choices=("acdc", "isic2018"))
    c.add_argument("--data_dir", "--data-dir", default=None,
                   help="data root or the data set's folder (default: $RWKVSEG_DATA or ~/rwkvseg-data)")
    c.add_argument("--out", type=_out_dir, required=True,
                   help="folder for the cache file (pass it as --data_dir to train)")
    c.add_argument("--size", type=_img_size, default=None,
                   help="training size, a multiple of 32 (default: acdc 224, isic2018 256)")
    c.add_argument("--rebuild", action="store_true")
    return ap


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _img_size(text: str) -> int:
    value = _positive(text)
    if value % 32:
        raise argparse.ArgumentTypeError(f"must be a multiple of 32, got {value}")
    return value


def _device(text: str) -> str:
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: cpu, cuda, cuda:1, mps ...") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has no CUDA device (use cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has no Apple GPU (use cpu)")
    return text


def _train_device(text: str) -> str:
    return text if text.lower() in ("none", "null") else _device(text)


def _out_dir(text: str) -> str:
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a folder")
    return text


def _new_file(text: str) -> str:
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder: name the file to write")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: the folder {path.parent} does not exist")
    return text


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = _parser()
    a = ap.parse_args(argv)
    if a.command is None:
        ap.print_help()
        return 0
    command = " ".join(["rwkvseg", *argv])
    try:
        return COMMANDS[a.command](a, command)
    except ANTICIPATED as err:
        if a.debug:
            raise
        print(f"rwkvseg {a.command}: error: {one_line(str(err))}\n(run with --debug for the traceback)",
              file=sys.stderr)
        return 2


def cmd_train(a, command: str) -> int:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    overrides = {k: (yaml.safe_load(v) if isinstance(v, str) and v != "" else v)
                 for k, v in vars(a).items() if k in fields}
    overrides.setdefault("command", command)
    cfg = TrainConfig.from_yaml(a.config, **overrides) if a.config else TrainConfig.from_dict(overrides)
    results = train(cfg)
    if results is not None:
        print(json.dumps({"test": results["test"], "selection": results["selection"]}, default=str))
    return 0


def cmd_evaluate(a, command: str) -> int:
    evaluated = evaluate_checkpoint(a.checkpoint, data_dir=a.data_dir, split=a.split, tta=not a.no_tta,
                                    max_items=a.max_items, device=a.device, per_case=a.cases is not None)
    result = evaluated.result
    if a.cases is not None:
        result["cases"] = write_cases(a.cases, evaluated.model, evaluated.split, result["no_tta"],
                                      binary=evaluated.binary, normalization=evaluated.normalization, k=a.n_cases,
                                      dataset=result["dataset"], checkpoint=str(a.checkpoint),
                                      split_info=result["split_info"], command=command,
                                      mode="quick" if a.max_items else "full")
        del result["no_tta"]["per_case"]                        # in cases.json, not in this result
    print(format_table(result))
    print(json.dumps(result, default=str))
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1, default=str))
    return 0


def read_results(run: Path) -> dict:
    """The results.json of a finished run, checked: a JSON mapping with the keys `record` reads."""
    path = run / "results.json"
    if not run.is_dir():
        raise DataError(run, "no such run folder", hint="pass the out_dir of a finished `rwkvseg train` run")
    if not path.exists():
        raise DataError(path, "not found", hint="pass the out_dir of a finished `rwkvseg train` run")
    try:
        results = json.loads(read_text(path, "results file", empty_ok=False))
    except json.JSONDecodeError as e:
        raise DataError(path, f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})",
                        hint="was the run interrupted? train it again") from None
    if not isinstance(results, dict):
        raise DataError(path, f"holds a JSON {type(results).__name__}, expected the mapping `rwkvseg train` writes")
    missing = [k for k in RESULTS_KEYS if k not in results]
    if missing:
        raise DataError(path, f"lacks {missing}: not the results of `rwkvseg train`")
    return results


def cmd_record(a, command: str) -> int:
    run = Path(a.run)
    summary = write_record(read_results(run), a.out, run_dir=run, n_cases=a.n_cases, recorded_by=command)
    print(json.dumps(summary, default=str))
    return 0


def cmd_predict(a, command: str) -> int:
    model, cfg = load_model(a.checkpoint, device=a.device)
    with warnings.catch_warnings():                       # printed below, one line per file
        warnings.simplefilter("ignore", (DataSkipWarning, DataNoteWarning))
        report = predict_images(model, a.images, a.out, img_size=cfg["img_size"], tta=a.tta,
                                normalization=normalization_of(cfg["dataset"]),
                                on_error="raise" if a.stop_on_error else "skip")
    for pr in report.predictions:
        for note in pr.notes:
            print(f"rwkvseg predict: note: {pr.image}: {note}", file=sys.stderr)
        print(pr.mask)
        print(pr.overlay)
    for path, problem in report.skipped.items:
        print(f"rwkvseg predict: skipped {path}: {problem}", file=sys.stderr)
    if report.skipped:
        print(f"rwkvseg predict: {len(report.skipped)} file(s) skipped, {len(report.predictions)} predicted "
              "(--stop-on-error stops at the first)", file=sys.stderr)
        return 1
    return 0


def cmd_cache(a, command: str) -> int:
    if a.dataset == "acdc":
        size = a.size or 224
        cache = acdc_cache(a.data_dir, cache_dir=a.out, size=size, rebuild=a.rebuild)
        name = acdc_cache_name(size)
    else:
        size = a.size or 256
        cache = isic2018_cache(a.data_dir, cache_dir=a.out, size=(size, size), rebuild=a.rebuild)
        name = isic2018_cache_name((size, size))
    path = Path(a.out) / name
    print(f"{path}: {len(cache)} items, images {tuple(cache.images.shape)}, {path.stat().st_size / 2**20:.1f} MiB, "
          f"sha256 {cache.meta.get('sha256', '')[:16]}")
    print(f"train with: rwkvseg train ... --dataset {a.dataset} --img_size {size} --data_dir {a.out}")
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "record": cmd_record, "predict": cmd_predict,
            "cache": cmd_cache}
