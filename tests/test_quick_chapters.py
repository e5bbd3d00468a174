"""The training chapters' quick mode stays a smoke test: a tiny network, small images, a few steps.

A quick-mode chapter that trains has to finish in about a minute on a 2-core CPU with no GPU. This
test runs no training and times nothing: it executes each chapter's imports, its parameters cell
(with MODE = "quick", as papermill injects it) and the cell that builds the run's TrainConfig, then
checks the sizes that set the run's cost.
"""
import json
import math
import tempfile
from pathlib import Path

import pytest
from IPython.core.inputtransformer2 import TransformerManager

ROOT = Path(__file__).resolve().parents[1]
TRAINING_CHAPTERS = ["book/08_train_isic.ipynb", "book/09_train_acdc.ipynb"]


def code_cells(chapter):
    """The chapter's code cells as plain Python (IPython magics such as the Colab %pip turned into calls)."""
    cells = json.loads((ROOT / chapter).read_text())["cells"]
    to_python = TransformerManager().transform_cell
    return [(c["metadata"].get("tags", []), to_python("".join(c["source"])))
            for c in cells if c["cell_type"] == "code"]


def quick_config(chapter):
    """The TrainConfig that the chapter trains in quick mode."""
    cells = code_cells(chapter)
    imports = cells[0][1]
    parameters = next(src for tags, src in cells if "parameters" in tags)
    config = next(src for _, src in cells if "TrainConfig.from_yaml(" in src)
    ns = {}
    for src in (imports, parameters, 'MODE = "quick"', config):
        exec(compile(src, chapter, "exec"), ns)
    return ns["cfg"]


@pytest.mark.parametrize("chapter", TRAINING_CHAPTERS, ids=[Path(c).stem for c in TRAINING_CHAPTERS])
def test_quick_mode_trains_a_tiny_network_for_a_few_steps(chapter, monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))      # the quick run's folder
    monkeypatch.delenv("RWKVSEG_MODE", raising=False)
    cfg = quick_config(chapter)
    assert cfg.mode == "quick"
    assert cfg.model.endswith("_test"), cfg.model               # a test network, not a paper variant
    assert cfg.img_size <= 64 and not cfg.compile and not cfg.bf16
    assert cfg.max_train_images is not None and cfg.max_eval_items is not None
    steps = cfg.epochs * math.ceil(cfg.max_train_images / cfg.batch_size)
    assert steps <= 8, f"{steps} optimizer steps"
    assert cfg.max_eval_items <= 4
