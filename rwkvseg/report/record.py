"""A training run's record: what a training chapter writes in full mode, and what is committed.

    results = rwkvseg.engine.train(cfg)
    write_record(results, "records/isic2018_rwkv_unet_t", run_dir=cfg.out_dir)
    rwkvseg record --run runs/isic2018_rwkv_unet_t --out records/isic2018_rwkv_unet_t

writes into the record folder
    results.json            the engine's results (test metrics with and without TTA, per-epoch history,
                            config, split hashes) and its provenance: command, commit, device, date,
                            versions, mode, seed, split
    metrics.csv             one row per epoch, as the run directory has it
    curves.png              training loss and validation score per epoch, the selected epoch marked
    cases.json, cases.png   the best, median and worst test cases of the selected weights
                            (rwkvseg.report.cases, as `rwkvseg evaluate --no-tta --cases` writes them)

The cases come from the weights the engine selected and exported (run_dir/model: best validation
epoch, or the last), evaluated once more on the test split without TTA as the engine evaluates (bf16
autocast on CUDA when the run trained with it: the kernels compiled for training serve again, and the
numbers are the engine's); cases.json sets that evaluation beside the engine's test numbers under
"agreement".
A papermill run adds executed.ipynb to the folder.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from rwkvseg.engine.evaluate import evaluate_checkpoint
from rwkvseg.report.cases import write_cases


def curves_figure(history: list[dict], *, title: str | None = None, selected_epoch: int | None = None):
    """A matplotlib Figure (no pyplot, Agg canvas) of a run's history (rwkvseg.engine.train's
    results["history"]), three panels: the training loss per epoch, the learning rate at each
    epoch's end, and the validation score of the epochs that were validated, with `selected_epoch`
    (0-based) marked."""
    epochs = [r["epoch"] + 1 for r in history]
    fig = Figure(figsize=(10, 2.8), layout="constrained")
    ax_loss, ax_lr, ax_val = fig.subplots(1, 3)
    ax_loss.plot(epochs, [r["train_loss"] for r in history], "o-", ms=3)
    ax_loss.set_ylabel("training loss")
    ax_lr.plot(epochs, [r["lr"] for r in history], "o-", ms=3, color="0.45")
    ax_lr.set_ylabel("learning rate (end of epoch)")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    val = [(r["epoch"] + 1, r["val_score"]) for r in history if r.get("val_score") is not None]
    if val:
        ax_val.plot(*zip(*val), "s-", ms=3, color="C1")
        ax_val.set_ylabel("validation " + next(r["val_metric"] for r in history if r.get("val_metric")))
        chosen = [(e, s) for e, s in val if selected_epoch is not None and e == selected_epoch + 1]
        if chosen:
            ax_val.plot(*chosen[0], "*", ms=12, color="C3", label=f"selected: epoch {chosen[0][0]}")
            ax_val.legend(loc="lower right", fontsize=8)
    else:
        ax_val.text(0.5, 0.5, "no validation\n(selection: last epoch)", ha="center", va="center",
                    transform=ax_val.transAxes)
    for ax in (ax_loss, ax_lr, ax_val):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))     # epochs are whole numbers
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def write_record(results: dict, out_dir: str | Path, *, run_dir: str | Path, command: str | None = None,
                 n_cases: int = 2, dpi: int = 100, **provenance) -> dict:
    """Write results.json, metrics.csv, curves.png, cases.json and cases.png of a finished run to
    `out_dir` (see the module docstring); returns {"dir", "files", "cases"}.

    `results` is what rwkvseg.engine.train returned (also run_dir/results.json); `run_dir` its out_dir,
    holding metrics.csv and the exported weights (run_dir/model). `command` replaces the provenance's
    command (e.g. the papermill line that ran a chapter); `provenance` adds keys to it (e.g. notebook=).
    The cases are evaluated on the run's own test split (its first max_eval_items in quick mode)."""
    out, run = Path(out_dir), Path(run_dir)
    model_dir = run / "model"
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} holds no exported weights: write_record needs a run trained with "
                                "save_checkpoints=True (train() exports the selected weights there)")
    out.mkdir(parents=True, exist_ok=True)
    record = dict(results)
    record["provenance"] = {**results["provenance"], **({"command": command} if command else {}), **provenance}
    (out / "results.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    if (run / "metrics.csv").is_file():
        shutil.copyfile(run / "metrics.csv", out / "metrics.csv")

    selection = results.get("selection") or {}
    fig = curves_figure(results["history"], selected_epoch=selection.get("epoch"),
                        title=f"{results['model']} on {results['dataset']}: {len(results['history'])} epochs, "
                              f"selected by {selection.get('rule', '?')}")
    fig.savefig(out / "curves.png", dpi=dpi, pil_kwargs={"optimize": True})

    bf16 = bool(results["provenance"].get("bf16"))
    evaluated = evaluate_checkpoint(model_dir, split="test", tta=False, per_case=True, bf16=bf16,
                                    max_items=results["config"].get("max_eval_items"))
    cases = write_cases(out, evaluated.model, evaluated.split, evaluated.result["no_tta"],
                        binary=evaluated.binary, normalization=evaluated.normalization,
                        k=n_cases, dataset=results["dataset"], checkpoint=str(model_dir),
                        split_info=evaluated.result["split_info"], command=record["provenance"]["command"],
                        mode=results["provenance"].get("mode", "full"), bf16=bf16)
    files = sorted(p.name for p in out.iterdir() if p.is_file())
    return {"dir": str(out), "files": files, "cases": cases}
