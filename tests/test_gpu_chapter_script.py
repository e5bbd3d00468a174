"""dev/gpu_chapter.sh without a GPU: the papermill line it would run (DRY_RUN=1), its refusals, and the
wheel list it installs from (one pinned version per line)."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "dev" / "gpu_chapter.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def run(*args, **env):
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **env})


def test_dry_run_prints_the_full_mode_papermill_line(tmp_path):
    out = run("09_train_acdc", str(tmp_path), "rwkvseg/results/train_acdc/x", "-p", "EPOCHS", "3", DRY_RUN="1")
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert line.startswith("python3 -m papermill book/09_train_acdc.ipynb ")
    assert f" {ROOT}/rwkvseg/results/train_acdc/x/executed.ipynb --cwd book -k python3 -p MODE full " in line
    assert f"-p DATA_DIR {tmp_path} -p RESULTS_DIR {ROOT}/rwkvseg/results/train_acdc/x -p COMPILE False" in line
    assert line.index("-p COMMAND") < line.index("-p EPOCHS 3 --log-output --request-save-on-cell-execute")
    assert "bash\\ dev/gpu_chapter.sh\\ 09_train_acdc" in line     # the command the provenance records


@pytest.mark.parametrize("args, message", [
    ((), "usage"),
    (("06_training", ".", "x"), "no chapter book/06_training.ipynb"),
    (("07_unets", ".", "x"), "book/07_unets.ipynb has no RESULTS_DIR parameter"),
    (("08_train_isic", "no/such/dir", "x"), "DATA_DIR no/such/dir does not exist"),
])
def test_refusals_name_what_is_wrong(args, message):
    out = run(*args)
    assert out.returncode == 2 and message in out.stderr


def test_no_papermill_stops_before_any_work(tmp_path):
    out = run("08_train_isic", str(tmp_path), str(tmp_path / "r"), SITE=str(tmp_path / "site"),
              WHEELS=str(tmp_path / "none"), PYTHON="python3-that-does-not-exist")
    assert out.returncode == 3 and "no papermill/ipykernel importable" in out.stderr
    assert not (tmp_path / "r").exists()


def test_wheel_list_pins_one_version_each():
    lines = [x for x in (ROOT / "dev" / "device_wheels.txt").read_text().splitlines() if x and not x.startswith("#")]
    names = [re.fullmatch(r"([A-Za-z0-9_.-]+)==[0-9][A-Za-z0-9.]*", x).group(1).lower().replace("_", "-") for x in lines]
    assert len(names) == len(set(names)) and "papermill" in names and "ipykernel" in names


def test_size_adds_the_carried_paths_to_the_tree(tmp_path):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout")
    (tmp_path / "a").write_bytes(b"x" * 2**20)
    small, big = run("--size", str(tmp_path)), run("--size", str(tmp_path), str(tmp_path), str(tmp_path))
    assert small.returncode == 0 and "+ carry 1.00 MiB" in small.stdout
    assert "+ carry 3.00 MiB" in big.stdout
    (tmp_path / "huge").write_bytes(b"")
    with open(tmp_path / "huge", "wb") as f:
        f.truncate(64 * 2**20)                              # sparse: the size counts, not the blocks
    over = run("--size", str(tmp_path))
    assert over.returncode == 5 and "over the device call's 64 MiB" in over.stderr


def test_split_and_join_a_data_file(tmp_path):
    """A file split for two calls joins back byte for byte; a missing part or a changed byte is refused."""
    data = tmp_path / "cache.npz"
    data.write_bytes(bytes(range(256)) * 1000)
    parts = tmp_path / "parts"
    assert run("--split", str(data), str(parts)).returncode == 0
    out = tmp_path / "joined" / "cache.npz"
    ok = run("--join", str(parts), str(out))
    assert ok.returncode == 0, ok.stderr
    assert out.read_bytes() == data.read_bytes()
    (parts / "part_00").write_bytes(b"x" + (parts / "part_00").read_bytes()[1:])
    bad = run("--join", str(parts), str(out))
    assert bad.returncode == 6 and "sha256 differs" in bad.stderr and not out.exists()
    (parts / "part_00").unlink()
    gone = run("--join", str(parts), str(out))
    assert gone.returncode == 6 and "missing part" in gone.stderr
