"""Every checkpoint the repository ships loads strictly into its registered model, and segments
real ISIC images as its card says."""
import json
from pathlib import Path

import pytest
import torch

import rwkvseg
from rwkvseg.data import NORMALIZATIONS, build_acdc_cache, cache_volumes, load_isic, split_ids
from rwkvseg.engine.evaluate import evaluate_binary, evaluate_volumes
from rwkvseg.hub import SHIPPED as WEIGHTS
from rwkvseg.hub import list_pretrained


@pytest.mark.parametrize("name", list_pretrained())
def test_shipped_weights_load_strictly_with_a_card(name):
    model = rwkvseg.from_pretrained(name)                       # by name; strict=True inside
    record = json.loads((WEIGHTS / name / "config.json").read_text())
    assert sum(p.numel() for p in model.parameters()) > 0
    assert (WEIGHTS / name / "README.md").is_file(), "each shipped checkpoint has a model card"
    assert (WEIGHTS / name / "model.safetensors").stat().st_size < 10 * 2**20
    assert record["metrics"]["test"], "the card's config.json records the test metrics"


def test_rwkv_unet_t_isic2018_segments_real_test_images(isic_dir):
    ids = split_ids("isic2018", "7-3_seed0", "test")[:24]
    data = load_isic(isic_dir, ids=ids, dataset="isic2018")
    model = rwkvseg.from_pretrained(WEIGHTS / "rwkv_unet_t_isic2018")
    with torch.no_grad():
        result = evaluate_binary(model, torch.as_tensor(data.images), torch.as_tensor(data.masks),
                                 normalization=NORMALIZATIONS["isic2018"], batch_size=8)
    card = json.loads((WEIGHTS / "rwkv_unet_t_isic2018" / "config.json").read_text())
    dsc = result["pooled"]["dsc"]
    assert abs(dsc - 0.9473) < 0.005, f"pooled DSC on the first 24 test images {dsc:.4f}, the card says 0.9473"
    assert abs(dsc - card["metrics"]["test"]["pooled"]["dsc"]) < 0.1


def test_rwkv_unet_t_acdc_segments_real_test_volumes(acdc_dir):
    names = split_ids("acdc", "ssl4mis", "test")[:2]                 # patient011 frames 01 and 02
    volumes = cache_volumes(build_acdc_cache(acdc_dir, volumes=names), names)
    model = rwkvseg.from_pretrained(WEIGHTS / "rwkv_unet_t_acdc")
    result = evaluate_volumes(model, volumes, normalization=NORMALIZATIONS["acdc"], hd95=False)
    card = json.loads((WEIGHTS / "rwkv_unet_t_acdc" / "config.json").read_text())
    assert abs(result["dice"] - 0.891) < 0.005, f"mean Dice on 2 test volumes {result['dice']:.4f}, the card says 0.891"
    assert abs(result["dice"] - card["metrics"]["test"]["authors"]["dice"]) < 0.1
