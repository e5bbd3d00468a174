"""Every checkpoint the repository ships loads strictly into its registered model, and segments
real ISIC images as its card says."""
import json
from pathlib import Path

import pytest
import torch

import rwkvseg
from rwkvseg.data import NORMALIZATIONS, find_data_root, load_isic, split_ids
from rwkvseg.evaluate import evaluate_binary

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


@pytest.mark.parametrize("name", sorted(p.name for p in WEIGHTS.iterdir() if (p / "config.json").is_file()))
def test_shipped_weights_load_strictly_with_a_card(name):
    model = rwkvseg.from_pretrained(WEIGHTS / name)            # strict=True inside
    record = json.loads((WEIGHTS / name / "config.json").read_text())
    assert sum(p.numel() for p in model.parameters()) > 0
    assert (WEIGHTS / name / "README.md").is_file(), "each shipped checkpoint has a model card"
    assert (WEIGHTS / name / "model.safetensors").stat().st_size < 10 * 2**20
    assert record["metrics"]["test"], "the card's config.json records the test metrics"


def test_rwkv_unet_t_isic2018_segments_real_test_images():
    try:
        root = find_data_root()
    except Exception as err:                                    # the CI machine has ../shared/data
        pytest.skip(f"ISIC 2018 data not found: {err}")
    ids = split_ids("isic2018", "7-3_seed0", "test")[:24]
    data = load_isic(Path(root) / "isic2018", ids=ids, dataset="isic2018")
    model = rwkvseg.from_pretrained(WEIGHTS / "rwkv_unet_t_isic2018")
    with torch.no_grad():
        result = evaluate_binary(model, torch.as_tensor(data.images), torch.as_tensor(data.masks),
                                 normalization=NORMALIZATIONS["isic2018"], batch_size=8)
    card = json.loads((WEIGHTS / "rwkv_unet_t_isic2018" / "config.json").read_text())
    dsc = result["pooled"]["dsc"]
    assert abs(dsc - 0.9473) < 0.005, f"pooled DSC on the first 24 test images {dsc:.4f}, the card says 0.9473"
    assert abs(dsc - card["metrics"]["test"]["pooled"]["dsc"]) < 0.1


def test_rwkv_unet_t_acdc_segments_real_test_volumes():
    from rwkvseg.data import build_acdc_cache, cache_volumes
    from rwkvseg.evaluate import evaluate_volumes

    try:
        root = find_data_root()
    except Exception as err:
        pytest.skip(f"ACDC data not found: {err}")
    names = split_ids("acdc", "ssl4mis", "test")[:2]                 # patient011 frames 01 and 02
    volumes = cache_volumes(build_acdc_cache(Path(root) / "acdc", volumes=names), names)
    model = rwkvseg.from_pretrained(WEIGHTS / "rwkv_unet_t_acdc")
    result = evaluate_volumes(model, volumes, normalization=NORMALIZATIONS["acdc"], hd95=False)
    card = json.loads((WEIGHTS / "rwkv_unet_t_acdc" / "config.json").read_text())
    assert abs(result["dice"] - 0.891) < 0.005, f"mean Dice on 2 test volumes {result['dice']:.4f}, the card says 0.891"
    assert abs(result["dice"] - card["metrics"]["test"]["authors"]["dice"]) < 0.1
