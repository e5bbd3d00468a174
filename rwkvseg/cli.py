"""Command line: `python -m rwkvseg train | evaluate | record | predict | cache`.

    python -m rwkvseg train --config configs/isic2018_rwkv_unet_t.yaml --epochs 10 --seed 1
    torchrun --nproc_per_node 2 -m rwkvseg train --config configs/acdc_rwkv_unet_t.yaml
    python -m rwkvseg evaluate --checkpoint runs/x/best.pt [--data DIR] [--split test] [--json out.json]
                               [--cases DIR [--n-cases 2]]
    python -m rwkvseg record --run runs/x --out results/train_isic2018/<name> [--n-cases 2]
    python -m rwkvseg predict --checkpoint runs/x/model a.jpg b.png --out pred/
    python -m rwkvseg cache --dataset acdc --data_dir ../shared/data --out .carry/

`cache` writes the uint8 cache file a training run reads (rwkvseg.data): `acdc_224.npz` (bzip2,
~49 MiB) or `isic2018_256x256.npz` (~291 MiB) in --out; `train --data_dir <that folder>` then
loads it without the source files (e.g. on a remote GPU). `evaluate` and `predict` take a
checkpoint file (best.pt / last.pt) or the exported directory out_dir/model; `evaluate --cases DIR`
also writes the best, median and worst cases (cases.json, cases.png: rwkvseg.cases) to DIR.
`record` turns a finished run directory into the folder a result is committed as (rwkvseg.record:
results.json with provenance, metrics.csv, curves.png, cases.json, cases.png), as the training
chapters do in full mode.

`train` fills the same TrainConfig dataclass as the notebooks' parameters: the YAML file first,
then every `--field value` (or `--field=value`) on top. Values are read as YAML (`--tta false`,
`--betas [0.9,0.99]`, `--model_kwargs {drop_path: 0.1}`) and converted to the field's type; a bare
`--resume` means true.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path

import yaml

from rwkvseg.train import TrainConfig


def _coerce(name: str, value, hint: str):
    """Convert a YAML-parsed value to the type named by a TrainConfig annotation."""
    if value is None or (value == "None" and not hint.startswith("str")):
        if "None" not in hint:
            raise ValueError(f"--{name} cannot be None (type {hint})")
        return None
    try:
        if hint.startswith("bool"):
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if hint.startswith("tuple"):
            return tuple(float(v) for v in value)
        if hint.startswith("dict"):
            if not isinstance(value, dict):
                raise ValueError
            return value
        if hint.startswith("float"):
            return float(value)
        if hint.startswith("int"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        return str(value)
    except (TypeError, ValueError):
        raise ValueError(f"--{name}: cannot read {value!r} as {hint}") from None


def parse_overrides(args: list[str]) -> dict:
    """['--epochs', '10', '--tta=false', '--resume'] -> {'epochs': '10'→10, ...} (raw YAML values)."""
    out, i = {}, 0
    while i < len(args):
        a = args[i]
        if not a.startswith("--"):
            raise ValueError(f"expected --field value, got {a!r}")
        key = a[2:]
        if "=" in key:
            key, raw = key.split("=", 1)
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            raw = args[i + 1]
            i += 2
        else:
            raw = "true"
            i += 1
        out[key.replace("-", "_")] = yaml.safe_load(raw) if raw != "" else ""
    return out


def build_config(config_path: str | None, overrides: dict) -> TrainConfig:
    """TrainConfig from a YAML file (optional) plus overrides, each converted to its field's type."""
    values = {}
    if config_path:
        p = Path(config_path)
        if not p.is_file():
            raise FileNotFoundError(f"config {p} not found; the recipes live in configs/*.yaml")
        values.update(yaml.safe_load(p.read_text()) or {})
    values.update(overrides)
    hints = {f.name: str(f.type) for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ValueError(f"unknown TrainConfig field(s) {unknown}; known: {', '.join(hints)}")
    return TrainConfig(**{k: _coerce(k, v, hints[k]) for k, v in values.items()})


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "train" and any(a in ("-h", "--help") for a in rest):
        print("python -m rwkvseg train [--config configs/<experiment>.yaml] [--<field> <value> ...]\n\nfields "
              "(rwkvseg.train.TrainConfig; the YAML fills them, the command line overrides them):")
        for f in dataclasses.fields(TrainConfig):
            print(f"  --{f.name:<18} {f.type}")
        return 0
    if cmd == "train":
        config_path = None
        if "--config" in rest:
            j = rest.index("--config")
            config_path = rest[j + 1]
            rest = rest[:j] + rest[j + 2:]
        overrides = parse_overrides(rest)
        overrides.setdefault("command", " ".join(["python -m rwkvseg", *argv]))
        cfg = build_config(config_path, overrides)
        from rwkvseg.train import train

        results = train(cfg)
        if results is not None:
            print(json.dumps({"test": results["test"], "selection": results["selection"]}, default=str))
        return 0
    if cmd == "evaluate":
        ap = argparse.ArgumentParser(prog="python -m rwkvseg evaluate")
        ap.add_argument("--checkpoint", required=True)
        ap.add_argument("--data", "--data_dir", "--data-dir", dest="data", default=None,
                        help="data root, data set folder or cache folder (default: the training run's)")
        ap.add_argument("--split", default="test", choices=("test", "val"))
        ap.add_argument("--no-tta", action="store_true")
        ap.add_argument("--max-items", type=int, default=None)
        ap.add_argument("--device", default=None)
        ap.add_argument("--json", default=None, help="also write the result to this file")
        ap.add_argument("--cases", default=None, metavar="DIR",
                        help="also write the best, median and worst cases (no TTA) to DIR: cases.json, cases.png")
        ap.add_argument("--n-cases", type=int, default=2, help="cases per group (best, median, worst)")
        a = ap.parse_args(rest)
        from rwkvseg.evaluate import evaluate_checkpoint, format_table, write_json

        res = evaluate_checkpoint(a.checkpoint, data_dir=a.data, split=a.split, tta=not a.no_tta,
                                  max_items=a.max_items, device=a.device, cases_dir=a.cases, n_cases=a.n_cases,
                                  command=" ".join(["python -m rwkvseg", *argv]))
        print(format_table(res))
        print(json.dumps(res, default=str))
        if a.json:
            write_json(res, a.json)
        return 0
    if cmd == "record":
        ap = argparse.ArgumentParser(prog="python -m rwkvseg record")
        ap.add_argument("--run", required=True, help="the run's out_dir (results.json, metrics.csv, model/)")
        ap.add_argument("--out", required=True, help="the record folder to write, e.g. results/train_acdc/<name>")
        ap.add_argument("--n-cases", type=int, default=2, help="cases per group (best, median, worst)")
        a = ap.parse_args(rest)
        from rwkvseg.record import write_record

        run = Path(a.run)
        if not (run / "results.json").is_file():
            raise FileNotFoundError(f"{run / 'results.json'} not found: pass the out_dir of a finished "
                                    "`python -m rwkvseg train` run")
        summary = write_record(json.loads((run / "results.json").read_text()), a.out, run_dir=run,
                               n_cases=a.n_cases, recorded_by=" ".join(["python -m rwkvseg", *argv]))
        print(json.dumps(summary, default=str))
        return 0
    if cmd == "predict":
        ap = argparse.ArgumentParser(prog="python -m rwkvseg predict")
        ap.add_argument("--checkpoint", required=True)
        ap.add_argument("images", nargs="+")
        ap.add_argument("--out", required=True)
        ap.add_argument("--tta", action="store_true")
        ap.add_argument("--device", default=None)
        a = ap.parse_args(rest)
        from rwkvseg.evaluate import load_model, normalization_for, predict_images

        model, cfg = load_model(a.checkpoint, device=a.device)
        for p in predict_images(model, a.images, a.out, img_size=cfg["img_size"], tta=a.tta,
                                normalization=normalization_for(cfg["dataset"])):
            print(p)
        return 0
    if cmd == "cache":
        ap = argparse.ArgumentParser(prog="python -m rwkvseg cache")
        ap.add_argument("--dataset", required=True, choices=("acdc", "isic2018"))
        ap.add_argument("--data_dir", "--data-dir", default=None,
                        help="data root or the data set's folder (default: $RWKVSEG_DATA or ../shared/data)")
        ap.add_argument("--out", required=True, help="folder for the cache file (carry it, pass it as --data_dir)")
        ap.add_argument("--size", type=int, default=None, help="training size (default: acdc 224, isic2018 256)")
        ap.add_argument("--rebuild", action="store_true")
        a = ap.parse_args(rest)
        from rwkvseg.data import acdc_cache, isic2018_cache

        if a.dataset == "acdc":
            size = a.size or 224
            cache = acdc_cache(a.data_dir, cache_dir=a.out, size=size, rebuild=a.rebuild)
            name = f"acdc_{size}.npz"
        else:
            size = a.size or 256
            cache = isic2018_cache(a.data_dir, cache_dir=a.out, size=(size, size), rebuild=a.rebuild)
            name = f"isic2018_{size}x{size}.npz"
        path = Path(a.out) / name
        print(f"{path}: {len(cache)} items, images {cache.images.shape}, {path.stat().st_size / 2**20:.1f} MiB, "
              f"sha256 {cache.meta.get('sha256', '')[:16]}")
        print(f"train with: python -m rwkvseg train ... --dataset {a.dataset} --img_size {size} --data_dir {a.out}")
        return 0
    print(f"unknown command {cmd!r}: use train, evaluate, record, predict or cache\n{__doc__}", file=sys.stderr)
    return 2
