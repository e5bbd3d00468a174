"""The training engine on the CPU: a few steps on real ISIC images (committed split, data package),
resume after SIGKILL (mid-epoch, and during the checkpoint write), command-line overrides, the
export, evaluate and predict, synthetic ACDC with both empty-mask rules, quick mode without data."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rwkvseg.cli import main
from rwkvseg.engine import TrainConfig, lr_at, train

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def tiny(isic_dir) -> dict:
    return dict(model="rwkv_unet_test", dataset="isic2018", data_dir=str(isic_dir), img_size=32, batch_size=2,
                epochs=3, max_train_images=12, max_eval_items=2, progress="none", seed=5, tta=False)


def test_config_from_yaml_and_overrides_is_typed_and_checked(tmp_path, monkeypatch, capsys):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("model: unet\nlr: 5e-4\nepochs: 20\ntta: true\n")
    cfg = TrainConfig.from_yaml(cfg_file, epochs="7", lr="1e-3", tta="false", resume="true", betas=[0.9, 0.99],
                                iterations="null", model_kwargs={"drop_path_rate": 0.0})
    assert (cfg.model, cfg.epochs, cfg.lr, cfg.tta, cfg.resume) == ("unet", 7, 1e-3, False, True)
    assert cfg.betas == (0.9, 0.99) and cfg.iterations is None and cfg.model_kwargs == {"drop_path_rate": 0.0}
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="cannot read"):
        TrainConfig.from_dict({"batch_size": "big"})
    with pytest.raises(ValueError, match="selection"):
        TrainConfig(selection="test")
    for bad in ({"epochs": 0}, {"batch_size": -1}, {"eval_every": 0}, {"lr": 0.0}, {"img_size": 100},
                {"model": "no_such_net"}, {"max_eval_items": 0}, {"epochs": True}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrainConfig(**bad)
    # a shipped recipe by name, from any folder, and the same through the command line
    monkeypatch.chdir(tmp_path)
    shipped = TrainConfig.from_yaml("configs/isic2018_rwkv_unet_t.yaml", epochs=3)
    assert shipped.model == "rwkv_unet_t" and shipped.epochs == 3
    assert TrainConfig.from_yaml("isic2018_rwkv_unet_t") == TrainConfig.from_yaml("isic2018_rwkv_unet_t.yaml")
    assert main(["train", "--config", "no_such_recipe"]) == 2
    assert "no such file and no shipped recipe" in capsys.readouterr().err


def test_schedule_cosine_poly_warmup():
    kw = dict(total=100, lr=1e-3, min_lr=1e-5)
    assert lr_at(0, **kw) == pytest.approx(1e-3)
    assert lr_at(100, **kw) == pytest.approx(1e-5)
    assert lr_at(50, **kw) == pytest.approx((1e-3 + 1e-5) / 2)
    assert lr_at(4, warmup=10, **kw) == pytest.approx(5e-4)
    assert lr_at(100, schedule="poly", **kw) == pytest.approx(1e-5)


def _losses(out):
    return [r["train_loss"] for r in json.loads((Path(out) / "history.json").read_text())]


def test_train_then_resume_after_sigkill_replays_the_same_curve(tmp_path, isic_dir):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)               # the killed run's thread count: same reduction order
    try:
        _train_kill_resume(tmp_path, tiny(isic_dir))
    finally:
        torch.set_num_threads(threads)


def _train_kill_resume(tmp_path, TINY):
    ref = train(TrainConfig(**TINY, out_dir=str(tmp_path / "ref")))
    assert ref["test"]["n_images"] == 2 and 0 <= ref["test"]["pooled"]["dsc"] <= 1
    assert ref["selection"]["rule"].startswith("best validation")
    prov = ref["provenance"]
    for key in ("command", "git_commit", "device", "date", "torch", "rwkvseg", "seed",
                "train_img_per_s", "metric_conventions", "wall_time_s"):
        assert key in prov
    assert set(prov["setup_s"]) == {"data", "model"}
    assert 0 < sum(prov["setup_s"].values()) < prov["time_to_first_step_s"]
    assert not torch.backends.cudnn.benchmark                  # cuDNN's heuristics, no timed search at each start
    from rwkvseg.data import NORMALIZATIONS, split_info
    assert ref["split"]["name"] == "isic2018/7-3_seed0"
    assert ref["split"]["train_hash"] == split_info("isic2018", "7-3_seed0", "train-sub")["sha256"]
    assert ref["split"]["test_hash"] == split_info("isic2018", "7-3_seed0", "test")["sha256"]
    assert prov["split"]["test_hash"] == ref["split"]["test_hash"] and prov["epochs"] == 3
    assert {"pooled", "per_image", "per_batch"} <= set(ref["test"])
    exported = json.loads((tmp_path / "ref" / "model" / "config.json").read_text())
    assert exported["model_name"] == "rwkv_unet_test" and exported["input_size"] == [3, 32, 32]
    assert exported["normalization"]["mean"] == list(NORMALIZATIONS["isic2018"].mean)
    assert exported["training_data"]["test_sha256"] == ref["split"]["test_hash"]
    assert exported["metrics"]["test"]["pooled"] == ref["test"]["pooled"]
    assert (tmp_path / "ref" / "metrics.csv").read_text().count("\n") == 4    # header + 3 epochs

    out = tmp_path / "killed"
    args = [f"--{k}={v}" for k, v in TINY.items()] + [f"--out_dir={out}"]
    proc = subprocess.Popen([sys.executable, "-m", "rwkvseg", "train", *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while time.time() < deadline and not ((out / "last.pt").exists() and len(_losses(out)) >= 1):
        time.sleep(0.02)                   # the first epoch's last.pt is written: kill in the second
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(_losses(out))
    assert 1 <= done < 3, f"the run was not killed mid-training ({done} epochs logged)"

    first = torch.load(out / "last.pt", weights_only=True)                       # no pickled code inside
    before = first["wall_time_s"]
    with pytest.raises(ValueError, match="different config: lr"):
        train(TrainConfig(**{**TINY, "lr": 2e-4}, out_dir=str(out), resume=True))

    # killed again while resuming, this time during the checkpoint write (its temporary file exists):
    # the previous last.pt stays whole and the next resume continues from it
    proc = subprocess.Popen([sys.executable, "-m", "rwkvseg", "train", *args, "--resume"], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    writing, deadline = out / "last.tmp", time.time() + 90
    while time.time() < deadline and proc.poll() is None and not writing.exists():
        pass
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert writing.exists(), "the run was not killed during the checkpoint write"
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == first["epoch"]
    resumed = train(TrainConfig(**TINY, out_dir=str(out), resume=True))
    assert [r["epoch"] for r in resumed["history"]] == [0, 1, 2]
    assert resumed["provenance"]["wall_time_s"] > before > 0      # the wall time spans both processes
    np.testing.assert_allclose(_losses(out), _losses(tmp_path / "ref"), rtol=1e-6)


def test_evaluate_and_predict_from_the_command_line(tmp_path, capsys, isic_dir):
    train(TrainConfig(**{**tiny(isic_dir), "epochs": 1, "max_train_images": 4}, out_dir=str(tmp_path / "run")))
    ckpt = tmp_path / "run" / "best.pt"
    assert main(["evaluate", "--checkpoint", str(ckpt), "--max-items", "2",
                 "--json", str(tmp_path / "ev.json")]) == 0
    printed = capsys.readouterr().out
    assert "pooled" in printed and "per_image" in printed
    ev = json.loads((tmp_path / "ev.json").read_text())
    assert ev["no_tta"]["n_images"] == 2 and ev["tta"]["tta"] is True

    from PIL import Image
    src = sorted((isic_dir / "images").glob("*.jpg"))[0]
    odd = tmp_path / "odd.png"
    Image.open(src).resize((90, 70)).save(odd)          # any size: resized in, mask resized back
    assert main(["predict", "--checkpoint", str(ckpt), str(src), str(odd), "--out", str(tmp_path / "pred")]) == 0
    mask = Image.open(tmp_path / "pred" / "odd_mask.png")
    assert mask.size == (90, 70) and set(np.unique(np.asarray(mask))) <= {0, 255}
    assert (tmp_path / "pred" / f"{src.stem}_overlay.png").exists()
    # the exported directory works the same way as the checkpoint file
    assert main(["predict", "--checkpoint", str(tmp_path / "run" / "model"), str(src), "--out",
                 str(tmp_path / "pred2")]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "pred" / f"{src.stem}_mask.png")),
                                  np.asarray(Image.open(tmp_path / "pred2" / f"{src.stem}_mask.png")))


def test_synthetic_acdc_reports_both_empty_mask_rules(tmp_path):
    res = train(TrainConfig(model="rwkv_unet_test", dataset="synthetic_acdc", img_size=32, batch_size=4, epochs=1,
                            max_train_images=8, max_eval_items=2, progress="none", tta=False,
                            out_dir=str(tmp_path / "acdc")))
    t = res["test"]
    assert t["rules"] == "authors" and t["strict"]["rules"] == "strict"
    assert set(t["per_class"]) == set(t["strict"]["per_class"]) == {"RV", "Myo", "LV"}
    assert list(res["normalization"]["mean"]) == [0.0] and res["classes"][0] == "background"
    cfg = json.loads((tmp_path / "acdc" / "model" / "config.json").read_text())
    assert cfg["num_classes"] == 4 and set(cfg["metrics"]["test"]) == {"authors", "strict"}


def test_train_help_lists_the_fields_with_their_help(capsys):
    with pytest.raises(SystemExit) as done:
        main(["train", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--epochs" in out and "--batch_size" in out and "GLOBAL batch" in out


def test_quick_mode_without_data_trains_on_the_shipped_samples(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RWKVSEG_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))                   # no ~/rwkvseg-data either
    kw = dict(model="rwkv_unet_test", dataset="isic2018", img_size=32, batch_size=2, epochs=1, max_train_images=4,
              max_eval_items=2, progress="none", tta=False, save_checkpoints=False)
    res = train(TrainConfig(**kw, mode="quick", out_dir=str(tmp_path / "q")))
    assert res["dataset"] == "isic2018_samples" and res["config"]["dataset"] == "isic2018_samples"
    assert "quick mode trains on isic2018_samples" in capsys.readouterr().out
    from rwkvseg.data import DataNotFoundError
    with pytest.raises(DataNotFoundError, match="ISIC 2018"):
        train(TrainConfig(**kw, mode="full", out_dir=str(tmp_path / "f")))
