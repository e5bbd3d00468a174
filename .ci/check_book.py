"""After `jupyter-book build`: every toc entry has an HTML page (a green exit code is not proof)."""
import sys
from pathlib import Path

import yaml

root = Path(__file__).resolve().parents[1]
toc = yaml.safe_load((root / "_toc.yml").read_text())
files = [toc["root"]] + [ch["file"] for part in toc.get("parts", []) for ch in part["chapters"]]
html = root / "_build" / "html"
missing = [f for f in files if not (html / f"{f}.html").is_file()]
if not (html / "index.html").is_file():
    missing.append("index.html")
if missing:
    sys.exit(f"book build incomplete, missing pages: {missing}")
print(f"book ok: {len(files)} pages")
