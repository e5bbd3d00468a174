"""Best, median and worst cases (rwkvseg.report.cases, `rwkvseg evaluate --cases DIR`): the shipped
ISIC weights on the 16 shipped sample pairs, and the command line on a tiny exported model."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import rwkvseg
from rwkvseg.cli import main
from rwkvseg.data import NORMALIZATIONS, EvalSet, isic_samples, resize_label
from rwkvseg.engine import evaluate_split
from rwkvseg.report import case_rows, pick_cases, write_cases
SIZE = 160                  # smaller than trained (256): the shipped network still segments them, in seconds


def test_pick_cases_orders_and_groups():
    cases = [{"id": f"c{i}", "dice": d} for i, d in enumerate([0.5, 0.9, 0.1, 0.7, 0.3, 0.8, 0.2])]
    picked = pick_cases(cases, k=2)
    assert picked == {"best": ["c1", "c5"], "median": ["c0", "c4"], "worst": ["c6", "c2"]}
    assert pick_cases(cases[:4], k=2) == {"best": ["c1"], "median": ["c0"], "worst": ["c2"]}  # k <= n // 3
    with pytest.raises(ValueError):
        pick_cases([])


def _check_written(out: Path, ids: list[str]) -> dict:
    record = json.loads((out / "cases.json").read_text())
    assert (out / "cases.png").stat().st_size < 300_000
    dice = {c["id"]: c["dice"] for c in record["cases"]}
    assert set(dice) <= set(ids)
    groups = [[dice[c["id"]] for c in record["picked"][g]] for g in ("best", "median", "worst")]
    assert all(c["id"] in ids for g in record["picked"].values() for c in g)
    assert min(groups[0]) >= max(groups[1]) and min(groups[1]) >= max(groups[2])
    assert {"command", "git_commit", "device", "date", "torch", "rwkvseg"} <= set(record["provenance"])
    return record


def test_cases_of_the_shipped_isic_weights_on_the_samples(tmp_path):
    cache = isic_samples()
    images = F.interpolate(torch.from_numpy(cache.images).float(), size=SIZE, mode="bilinear", antialias=True)
    split = EvalSet("samples", images=images.round().clamp(0, 255).byte(),
                    masks=resize_label(cache.masks, (SIZE, SIZE)), ids=list(cache.ids))
    model = rwkvseg.from_pretrained("rwkv_unet_t_isic2018")
    norm = NORMALIZATIONS["isic2018"]
    result = evaluate_split(model, split, binary=True, normalization=norm, per_case=True)
    assert len(result["per_case"]) == 16
    mean = sum(c["dice"] for c in result["per_case"]) / 16
    assert mean == pytest.approx(result["per_image"]["dsc"]) and mean > 0.5     # the network works at this size
    summary = write_cases(tmp_path, model, split, result, binary=True, normalization=norm, k=2)
    record = _check_written(tmp_path, list(cache.ids))
    assert len(record["cases"]) == 16
    assert record["k"] == 2 and summary["picked"]["best"] == [c["id"] for c in record["picked"]["best"]]
    assert record["agreement"] is None                  # not the test split: nothing to compare against
    rows = case_rows(record, run="samples")             # what the training chapters show
    assert [r["case"] for r in rows] == [c["id"] for g in record["picked"].values() for c in g]
    assert rows[0]["run"] == "samples" and rows[0]["group"] == "best"


def test_evaluate_cases_from_the_command_line(tmp_path):
    torch.manual_seed(0)
    model = rwkvseg.create_model("rwkv_unet_test")
    train_config = {"model": "rwkv_unet_test", "dataset": "isic2018_samples", "img_size": 32, "seed": 0}
    rwkvseg.save_pretrained(model, tmp_path / "model", model_name="rwkv_unet_test", train_config=train_config)
    out = tmp_path / "cases"
    assert main(["evaluate", "--checkpoint", str(tmp_path / "model"), "--no-tta", "--cases", str(out)]) == 0
    record = _check_written(out, list(isic_samples().ids))          # the samples' 3 test images
    assert record["k"] == 1 and record["tta"] is False and record["split"] == "test"
    assert record["provenance"]["command"].startswith("rwkvseg evaluate")
