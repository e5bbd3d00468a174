"""Chapters are committed without outputs or execution counts (the build executes them)."""
import json
import sys
from pathlib import Path

dirty = []
for path in sorted(Path(__file__).resolve().parents[1].glob("book/*.ipynb")):
    nb = json.loads(path.read_text())
    if any(c.get("outputs") or c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code"):
        dirty.append(path.name)
    if nb.get("metadata", {}).get("kernelspec", {}).get("name") != "python3":
        dirty.append(f"{path.name} (kernelspec.name must be python3)")
if dirty:
    sys.exit(f"notebooks with outputs or a wrong kernelspec: {dirty}")
print("notebooks clean")
