"""Checkpoints: save_pretrained / from_pretrained round trips for every registered model; the
weights' sha256, non-finite weights and damaged files refused naming the file (the whole corpus of
damaged checkpoints runs through every entry point in test_bad_inputs.py)."""
import dataclasses
import hashlib
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from rwkvseg.hub import (CONFIG_NAME, SHIPPED, WEIGHTS_NAME, CheckpointError, _as_tuples, from_pretrained,
                         list_pretrained, load_config, save_pretrained)
from rwkvseg.models import create_model, list_models

SIDE = 32          # small, divisible by 16 (RWKV-UNet) and 32 (MS-RWKV-UNet)


@pytest.fixture(autouse=True)
def torch_wkv_path(monkeypatch):
    """'auto' picks the Triton CPU interpreter under TRITON_INTERPRET=1: use the torch path here."""
    if not torch.cuda.is_available():
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)


def perturb_buffers(model):
    """Give BatchNorm statistics non-default values so the round trip checks them too."""
    with torch.no_grad():
        for key, b in model.named_buffers():
            if b.is_floating_point():
                b.add_(0.01 * torch.rand_like(b))


def build(name, device="cpu"):
    try:
        with torch.device(device):
            return create_model(name)
    except NotImplementedError as err:                 # another engineer's model still being written
        pytest.skip(f"{name}: {err}")


@pytest.mark.parametrize("name", list_models())
def test_config_round_trip_every_registered_model(name):
    """config.json alone rebuilds every registered network (built on "meta": no storage, fast)."""
    model = build(name, "meta")
    record = json.loads(json.dumps({"config": dataclasses.asdict(model.config)}))
    rebuilt = build_from_record(name, record)
    assert rebuilt.config == model.config
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def build_from_record(name, record):
    with torch.device("meta"):
        return create_model(name, **{k: _as_tuples(v) for k, v in record["config"].items()})


SMALL = 8_000_000      # weights round trip (write, read, compare) for networks up to this size


@pytest.mark.parametrize("name", list_models())
def test_weights_round_trip(name, tmp_path):
    n = sum(p.numel() for p in build(name, "meta").parameters())
    if n > SMALL:
        pytest.skip(f"{name}: {n:,} parameters; its config round trip is tested above")
    torch.manual_seed(0)
    model = build(name)
    perturb_buffers(model)
    model.eval()
    in_chans = model.config.in_chans
    run_forward = name in ("rwkv_unet_test", "unet")    # outputs too (cheap); the rest: every tensor and the config
    x = torch.randn(1, in_chans, SIDE, SIDE)
    if run_forward:
        with torch.no_grad():
            y = model(x)
    save_pretrained(model, tmp_path / name, model_name=name, input_size=[SIDE, SIDE],
                    normalization={"mean": [0.5] * in_chans, "std": [0.5] * in_chans},
                    training_data="none (random init)", metrics={}, note="test")
    loaded = from_pretrained(tmp_path / name)
    assert type(loaded) is type(model) and loaded.config == model.config and not loaded.training
    for (k1, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k1 == k2 and torch.equal(a, b), k1
    if run_forward:
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), y, rtol=0, atol=0)
    record = load_config(tmp_path / name)
    assert record["model_name"] == name and record["in_chans"] == in_chans
    assert record["input_size"] == [SIDE, SIDE] and record["extra"] == {"note": "test"}


def test_fp16_checkpoint(tmp_path):
    torch.manual_seed(1)
    model = create_model("rwkv_unet_test").eval()
    save_pretrained(model, tmp_path / "fp32", model_name="rwkv_unet_test")
    save_pretrained(model, tmp_path / "fp16", model_name="rwkv_unet_test", dtype=torch.float16)
    size32 = (tmp_path / "fp32" / WEIGHTS_NAME).stat().st_size
    size16 = (tmp_path / "fp16" / WEIGHTS_NAME).stat().st_size
    assert size16 < 0.6 * size32
    assert load_config(tmp_path / "fp16")["dtype"] == "float16"
    loaded = from_pretrained(tmp_path / "fp16")
    for key, p in loaded.state_dict().items():
        ref = model.state_dict()[key]
        assert p.dtype == ref.dtype
        torch.testing.assert_close(p, ref, rtol=1e-3, atol=1e-3)


def test_overrides_survive_the_round_trip(tmp_path):
    model = create_model("rwkv_unet_test", in_chans=1, num_classes=4, mix_stages=(False, False, True, False))
    save_pretrained(model, tmp_path / "m", model_name="rwkv_unet_test")
    loaded = from_pretrained(tmp_path / "m")
    assert loaded.config == model.config and loaded.config.mix_stages == (False, False, True, False)


def test_mismatched_checkpoint_is_refused(tmp_path):
    model = create_model("rwkv_unet_test")
    path = save_pretrained(model, tmp_path / "m", model_name="rwkv_unet_test")
    record = json.loads((path / CONFIG_NAME).read_text())
    record["config"]["mix_stages"] = [False, False, False, False]     # drops the spatial mixes
    (path / CONFIG_NAME).write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"unexpected keys: .*mix\.key\.weight"):
        from_pretrained(path)
    record["config"]["mix_stages"] = [False, False, True, True]
    record["config"]["num_classes"] = 3
    (path / CONFIG_NAME).write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"shape mismatches: .*head\.weight"):
        from_pretrained(path)


def test_missing_keys_are_named(tmp_path):
    path = save_pretrained(create_model("rwkv_unet_test"), tmp_path / "m", model_name="rwkv_unet_test")
    state = load_file(str(path / WEIGHTS_NAME))
    del state["head.bias"]
    save_file(state, str(path / WEIGHTS_NAME))
    with pytest.raises(CheckpointError, match="does not match weights_sha256"):     # rewritten behind its config
        from_pretrained(path)
    record = json.loads((path / CONFIG_NAME).read_text())
    record["weights_sha256"] = hashlib.sha256((path / WEIGHTS_NAME).read_bytes()).hexdigest()
    (path / CONFIG_NAME).write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"missing keys: head\.bias"):
        from_pretrained(path)


def test_weights_are_checksummed_and_checked(tmp_path):
    path = save_pretrained(create_model("rwkv_unet_test"), tmp_path / "m", model_name="rwkv_unet_test")
    data = (path / WEIGHTS_NAME).read_bytes()
    assert load_config(path)["weights_sha256"] == hashlib.sha256(data).hexdigest()
    (path / WEIGHTS_NAME).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))               # one bit of one weight
    with pytest.raises(CheckpointError, match="corrupt or was changed") as info:
        from_pretrained(path)
    assert info.value.path == str(path / WEIGHTS_NAME)


@pytest.mark.parametrize("name", list_pretrained())
def test_shipped_networks_carry_their_sha256(name):
    record = load_config(name)
    assert record["weights_sha256"] == hashlib.sha256((SHIPPED / name / WEIGHTS_NAME).read_bytes()).hexdigest()


def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path):
    model = create_model("rwkv_unet_test")
    with torch.no_grad():
        model.head.bias[0] = float("inf")
    path = save_pretrained(model, tmp_path / "m", model_name="rwkv_unet_test")
    with pytest.raises(CheckpointError, match=r"NaN or infinite weights in 1 tensor\(s\): head\.bias"):
        from_pretrained(path)


def test_save_needs_a_registered_name(tmp_path):
    with pytest.raises(ValueError, match="model_name"):
        save_pretrained(create_model("rwkv_unet_test"), tmp_path / "m")
    with pytest.raises(ValueError, match="not registered"):
        save_pretrained(create_model("rwkv_unet_test"), tmp_path / "m", model_name="nope")
    with pytest.raises(FileNotFoundError, match=CONFIG_NAME):
        from_pretrained(tmp_path / "empty")
