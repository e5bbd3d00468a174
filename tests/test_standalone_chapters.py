"""Every chapter runs alone from the installed wheel, as in a Colab runtime: no checkout, no data.

The wheel is built from this tree and installed (with the pinned requirements.txt, not -e) into a
fresh virtual environment; each chapter of _toc.yml is copied, alone, into an empty temporary
folder and executed there with papermill in quick mode, with no RWKVSEG_* variable and no
PYTHONPATH. Slow (an install, then every chapter): runs with RWKVSEG_RELEASE_TESTS=1.
"""
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = [ch["file"] for part in yaml.safe_load((ROOT / "_toc.yml").read_text()).get("parts", [])
            for ch in part["chapters"]]
CHAPTERS = [f if f.endswith(".ipynb") else f + ".ipynb" for f in CHAPTERS
            if (ROOT / (f if f.endswith(".ipynb") else f + ".ipynb")).is_file()]

pytestmark = [
    pytest.mark.release,
    pytest.mark.skipif(os.environ.get("RWKVSEG_RELEASE_TESTS") != "1",
                       reason="builds a wheel and runs every chapter: RWKVSEG_RELEASE_TESTS=1"),
]

SOURCE_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "venv", "_build", "build", "dist", "scratch", "runs", ".cache", ".carry", ".whl",
    "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", ".ipynb_checkpoints")


def clean_env(venv_dir: Path) -> dict:
    """The environment of a reader's runtime: the venv first on PATH, no project variables."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RWKVSEG_") and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV",
                                                         "TRITON_INTERPRET", "MPLBACKEND")}
    env["PATH"] = os.pathsep.join([str(venv_dir / "bin"), env.get("PATH", "")])
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def run(cmd, **kw):
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    failed = result.returncode != 0
    assert not failed, f"{' '.join(map(str, cmd))}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    """A fresh venv holding requirements.txt and the wheel built from this tree."""
    base = tmp_path_factory.mktemp("standalone")
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=SOURCE_IGNORE)                 # the build leaves build/ beside it
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", base / "dist", src])
    wheels = sorted((base / "dist").glob("rwkvseg-*.whl"))
    assert len(wheels) == 1, wheels
    venv_dir = base / "venv"
    venv.EnvBuilder(with_pip=True).create(venv_dir)
    python = venv_dir / "bin" / "python"
    run([python, "-m", "pip", "install", "-q", "-r", ROOT / "requirements.txt", wheels[0]], timeout=1800)
    empty = base / "empty"
    empty.mkdir()
    where = run([python, "-c", "import rwkvseg; print(rwkvseg.__file__)"], cwd=empty,
                env=clean_env(venv_dir))
    assert Path(where.stdout.strip()).is_relative_to(venv_dir), f"rwkvseg imported from {where.stdout}"
    shutil.rmtree(src)
    return venv_dir


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[Path(c).stem for c in CHAPTERS])
def test_chapter_runs_from_the_wheel(chapter, wheel_venv, tmp_path):
    """The chapter alone in an empty folder, executed by the venv's papermill in quick mode."""
    work = tmp_path / "run"
    work.mkdir()
    notebook = work / Path(chapter).name
    shutil.copyfile(ROOT / chapter, notebook)
    # --execution-timeout: a cell that waits (on a widget, say) fails after 10 minutes
    result = subprocess.run(
        [str(wheel_venv / "bin" / "papermill"), notebook.name, "executed.ipynb", "-k", "python3",
         "-p", "MODE", "quick", "--cwd", str(work), "--execution-timeout", "600"],
        cwd=work, env=clean_env(wheel_venv), capture_output=True, text=True, timeout=1800)
    failed = result.returncode != 0
    assert not failed, f"{chapter} failed from the wheel:\n{result.stderr[-4000:]}"
