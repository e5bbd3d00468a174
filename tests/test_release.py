"""What a release needs, held in one place: the version, the repository URL, the Colab install line
of every chapter, the console command."""
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

import rwkvseg

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = (ROOT / "pyproject.toml").read_text()
REPOSITORY = re.search(r'^Repository = "([^"]+)"', PYPROJECT, re.M).group(1)
COLAB_LINE = f'%pip install -q "rwkvseg[book] @ git+{REPOSITORY}@v{rwkvseg.__version__}"'


def test_one_version_and_one_repository_url():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["repository"]["url"] == REPOSITORY
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert str(citation["version"]) == rwkvseg.__version__ and citation["repository-code"] == REPOSITORY
    assert f"## [{rwkvseg.__version__}]" in (ROOT / "CHANGELOG.md").read_text()
    assert not re.search(r'^version = "', PYPROJECT, re.M)            # pyproject reads rwkvseg.version


def test_every_chapter_installs_the_pinned_release_in_colab():
    """The first code cell of each chapter installs this version from the repository's URL (Colab),
    and nothing else installs the package."""
    for nb in sorted((ROOT / "book").glob("*.ipynb")):
        cells = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
        first = "".join(cells[0]["source"])
        assert COLAB_LINE in first and 'if "google.colab" in sys.modules:' in first, f"{nb.name}: {first[:300]}"
        others = [c for c in cells[1:] if "pip install" in "".join(c["source"])]
        assert not others, f"{nb.name} installs in another cell"


def test_console_command_has_version_and_help():
    out = subprocess.run([sys.executable, "-m", "rwkvseg", "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == f"rwkvseg {rwkvseg.__version__}"
    assert re.search(r'^\[project.scripts\]\nrwkvseg = "rwkvseg.cli:main"$', PYPROJECT, re.M)


def test_shipped_files_name_no_machine_path():
    """What ships inside the package (records, cards, configs, docs) names the reader's places (DATA_DIR,
    $RWKVSEG_DATA), never a folder of the machine that made it."""
    machine = re.compile(r"\.\./shared|/tmp/|/root/|/work/|\.carry|\$OUT/|/home/")
    found = [f"{p.relative_to(ROOT)}:{n}" for p in (ROOT / "rwkvseg").rglob("*")
             if p.suffix in (".json", ".md", ".txt", ".csv", ".yaml", ".py") and p.is_file()
             for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if machine.search(line)]
    assert not found, found[:20]
