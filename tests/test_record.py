"""The record a training chapter writes in full mode (rwkvseg.report.record; `rwkvseg record`), on
tiny CPU runs: synthetic ACDC volumes (no data needed) and a few real ISIC images."""
import json
from pathlib import Path

import pytest

from rwkvseg.cli import main
from rwkvseg.engine import TrainConfig, train
from rwkvseg.report import curves_figure, write_record

FILES = ["cases.json", "cases.png", "curves.png", "metrics.csv", "results.json"]
PROVENANCE = {"command", "git_commit", "device", "date", "torch", "triton", "rwkvseg", "mode", "seed", "split"}


def test_record_of_a_synthetic_acdc_run(tmp_path):
    run = tmp_path / "run"
    results = train(TrainConfig(model="rwkv_unet_test", dataset="synthetic_acdc", img_size=32, batch_size=4, epochs=2,
                                max_train_images=8, max_eval_items=3, eval_every=1, progress="none", tta=False,
                                mode="quick", out_dir=str(run)))
    summary = write_record(results, tmp_path / "record", run_dir=run, command="papermill book/09_train_acdc.ipynb x",
                           notebook="book/09_train_acdc.ipynb")
    assert summary["files"] == FILES
    rec = json.loads((tmp_path / "record" / "results.json").read_text())
    assert PROVENANCE <= set(rec["provenance"]) and rec["provenance"]["mode"] == "quick"
    assert rec["provenance"]["command"] == "papermill book/09_train_acdc.ipynb x"
    assert rec["provenance"]["notebook"] == "book/09_train_acdc.ipynb"
    assert rec["test"]["dice"] == results["test"]["dice"] and len(rec["history"]) == 2
    cases = json.loads((tmp_path / "record" / "cases.json").read_text())
    assert cases["split"] == "test" and len(cases["cases"]) == 3 and cases["provenance"]["mode"] == "quick"
    assert cases["provenance"]["command"] == rec["provenance"]["command"]
    # the record's cases come from the exported (selected) weights: their mean is the engine's test Dice
    assert cases["agreement"]["comparable"] and cases["agreement"]["max_abs_difference_points"] < 1e-3


def test_curves_mark_the_selected_epoch():
    history = [{"epoch": e, "train_loss": 1 / (e + 1), "lr": 1e-3, "val_metric": "pooled_dsc",
                "val_score": 0.5 + 0.1 * e} for e in range(3)]
    fig = curves_figure(history, selected_epoch=2, title="t")
    ax_loss, ax_lr, ax_val = fig.axes
    assert ax_val.get_legend().get_texts()[0].get_text() == "selected: epoch 3"
    assert ax_loss.get_xlabel() == "epoch" and ax_lr.get_ylabel().startswith("learning rate")


def test_record_from_the_command_line(tmp_path, capsys, isic_dir):
    run = tmp_path / "run"
    train(TrainConfig(model="rwkv_unet_test", dataset="isic2018", data_dir=str(isic_dir), img_size=32, batch_size=2,
                      epochs=1, max_train_images=4, max_eval_items=3, progress="none", tta=False, mode="quick",
                      command="python -m rwkvseg train (test)", out_dir=str(run)))
    assert main(["record", "--run", str(run), "--out", str(tmp_path / "record"), "--n-cases", "1"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["files"] == FILES
    rec = json.loads((tmp_path / "record" / "results.json").read_text())
    assert rec["provenance"]["command"] == "python -m rwkvseg train (test)"
    assert rec["provenance"]["recorded_by"].startswith("rwkvseg record --run")
    cases = json.loads((tmp_path / "record" / "cases.json").read_text())
    assert cases["k"] == 1 and len(cases["cases"]) == 3
    assert main(["record", "--run", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2
    assert "finished" in capsys.readouterr().err
