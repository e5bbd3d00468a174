"""After `jupyter-book build`: every toc entry has a page, and every page reads well.

    python .ci/check_book.py [HTML_DIR]      (default: _build/html beside .ci/)

A green build is not proof: this parses each built HTML page (standard library only) and lists,
per page, what a reader would trip over:

    table     a Markdown table left as `| a | b |` text (in prose or in an output)
    formula   `$`, `$$`, `\\begin{`, a LaTeX command or `x^2` left as text outside MathJax
    warning   a warning or a stderr block in an output
    traceback a traceback, an error output or raw ANSI codes
    path      an absolute or temporary path in an output (/home/, /tmp/, site-packages, ...)
    dump      a raw dict or dataclass printed as an output line (`{'a': ...`, `Config(name=...`)
    repr      an object repr instead of its rendering (`<Figure size ... with 2 Axes>`, `at 0x...`)
    widget    a widget view in static HTML (sliders that do nothing), or one figure shown twice
    long-line a code line longer than 88 characters, in a code cell or in a code block of the text

Exits 1 and prints "N defects" when there is any, or when a toc entry has no page.
"""
import base64
import hashlib
import re
import struct
import sys
from collections import Counter
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import yaml

MAX_CODE_LINE = 88
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
        "source", "track", "wbr"}
PROSE_BLOCKS = {"p", "li", "td", "th", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6", "caption",
                "figcaption", "blockquote"}
NOT_PROSE = {"pre", "code", "script", "style", "kbd", "samp", "tt", "nav", "header", "footer"}
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

TABLE_LINE = re.compile(r"^[ \t]*\|(?:[^|\n]*\|){2,}[ \t]*$", re.M)
# Outside MathJax spans and code, a `$`, a LaTeX command or a sub/superscript is a formula left as text.
FORMULA = re.compile(r"\$(?!\d)|\\begin\{|\\[A-Za-z]{2,}|[A-Za-z0-9)\]]\^[\w{\\]|_\{")
WARNING = re.compile(r"\b[A-Z]\w*Warning\b|\bWarning:|\bwarnings\.warn\b")
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|\x1b\[|\[0;3\dm|\[1;3\dm")
PATH = re.compile(r"/home/|/root/|/tmp/|/work/|/var/folders/|/private/var/|/Users/|/opt/|"
                  r"/usr/(?:local/|lib)|site-packages|dist-packages|\bC:\\|/content/")
DUMP = re.compile(r"^[ \t]*(?:\{['\"]|[A-Z]\w*\((?:\w+)=)", re.M)
REPR = re.compile(r"<Figure size \d+x\d+ with \d+ Axes>|<[\w.]+(?: object)? at 0x[0-9a-fA-F]+>")


@dataclass
class Defect:
    kind: str
    where: str
    excerpt: str

    def __str__(self) -> str:
        return f"  {self.kind:<9} {self.where}: {self.excerpt}"


class Node:
    """An element of the page: tag, attributes, and children (Nodes and text strings)."""

    __slots__ = ("tag", "attrs", "children", "parent")

    def __init__(self, tag: str, attrs: dict, parent: "Node | None"):
        self.tag, self.attrs, self.children, self.parent = tag, attrs, [], parent

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def iter(self):
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter()

    def text(self) -> str:
        """The visible text (scripts and styles left out)."""
        return "".join(c if isinstance(c, str) else c.text() for c in self.children
                       if isinstance(c, str) or c.tag not in ("script", "style"))

    def ancestors(self):
        node = self.parent
        while node is not None:
            yield node
            node = node.parent


class TreeBuilder(HTMLParser):
    """html.parser into a Node tree; tolerant of unclosed and stray end tags."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, None)
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: (v or "") for k, v in attrs}, self.stack[-1])
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        node = Node(tag, {k: (v or "") for k, v in attrs}, self.stack[-1])
        self.stack[-1].children.append(node)

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    builder = TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def excerpt(text: str, match: "re.Match | None" = None, width: int = 90) -> str:
    """A one-line excerpt of `text`, around `match` when given."""
    start = max(0, match.start() - 20) if match else 0
    short = " ".join(text[start:start + width * 2].split())
    return repr(short[:width] + ("..." if len(short) > width else ""))


def png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    return None


def image_bytes(img: Node, page: Path | None) -> bytes | None:
    src = img.attrs.get("src", "")
    if src.startswith("data:"):
        try:
            return base64.b64decode(src.split(",", 1)[1])
        except (IndexError, ValueError):
            return None
    if page is not None and src and "://" not in src:
        path = (page.parent / src.split("#")[0].split("?")[0])
        if path.is_file():
            return path.read_bytes()
    return None


def section_of(node: Node) -> str:
    for anc in node.ancestors():
        if anc.tag == "section" and anc.attrs.get("id"):
            return "#" + anc.attrs["id"]
    return "page"


def main_content(root: Node) -> Node:
    for node in root.iter():
        if node.attrs.get("role") == "main" or node.tag == "main":
            return node
    return root


def output_blocks(content: Node) -> list[tuple[Node, Node | None]]:
    """(block, cell) pairs: each child element of a cell's output area, and any element with
    class 'output' outside one."""
    blocks, seen = [], set()
    for node in content.iter():
        if "cell_output" in node.classes:
            cell = next((a for a in node.ancestors() if "cell" in a.classes), None)
            for child in node.children:
                if isinstance(child, Node) and child.tag not in ("script", "style"):
                    blocks.append((child, cell))
                    seen.update(id(n) for n in child.iter())
    for node in content.iter():
        if "output" in node.classes and id(node) not in seen:
            blocks.append((node, None))
            seen.update(id(n) for n in node.iter())
    return blocks


def check_outputs(content: Node, cell_no: dict) -> list[Defect]:
    defects = []
    for block, cell in output_blocks(content):
        where = f"cell {cell_no[id(cell)]} output" if cell is not None else f"{section_of(block)} output"
        text = block.text()
        classes = block.classes
        found = {}
        if "traceback" in classes or "error" in classes:
            found["traceback"] = excerpt(text)
        elif m := TRACEBACK.search(text):
            found["traceback"] = excerpt(text, m)
        if m := WARNING.search(text):
            found["warning"] = excerpt(text, m)
        elif "stderr" in classes:
            found["warning"] = "stderr output " + excerpt(text)
        if m := PATH.search(text):
            found["path"] = excerpt(text, m)
        if m := TABLE_LINE.search(text):
            found["table"] = excerpt(text, m)
        if m := DUMP.search(text):
            found["dump"] = excerpt(text, m)
        if m := REPR.search(text):
            found["repr"] = excerpt(text, m)
        defects += [Defect(kind, where, ex) for kind, ex in found.items()]
    return defects


def check_widgets(content: Node, cell_no: dict, page: Path | None) -> list[Defect]:
    defects = []
    for cell in (n for n in content.iter() if "cell" in n.classes):
        outputs = [n for n in cell.iter() if "cell_output" in n.classes]
        views = [n for o in outputs for n in o.iter()
                 if n.tag == "script" and n.attrs.get("type") == WIDGET_VIEW]
        images = [image_bytes(n, page) for o in outputs for n in o.iter() if n.tag == "img"]
        images = [b for b in images if b]
        sizes = Counter(png_size(b) for b in images if png_size(b))
        twice = {f"{w}x{h}": n for (w, h), n in sizes.items() if n > 1}
        same = [n for n in Counter(hashlib.sha1(b).hexdigest() for b in images).values() if n > 1]
        where = f"cell {cell_no[id(cell)]}"
        if views:
            note = f"; {', '.join(f'{n} figures of {s}' for s, n in twice.items())}" if twice else ""
            defects.append(Defect("widget", where, f"{len(views)} widget view(s) in static HTML{note}"))
        elif same:
            defects.append(Defect("widget", where, f"the same figure shown {max(same)} times"))
    return defects


def check_code(content: Node, cell_no: dict) -> list[Defect]:
    """Code lines wider than the page shows: cells' inputs and the text's code blocks (not outputs)."""
    defects = []
    for pre in (n for n in content.iter() if n.tag == "pre"):
        cell = next((a for a in pre.ancestors() if "cell" in a.classes), None)
        if cell is None:
            where = f"code block in {section_of(pre)}"
        elif any("cell_input" in a.classes for a in pre.ancestors()):
            where = f"cell {cell_no.get(id(cell), '?')} input"
        else:
            continue
        for line in pre.text().splitlines():
            if len(line.rstrip()) > MAX_CODE_LINE:
                n = len(line.rstrip())
                defects.append(Defect("long-line", where, f"{n} chars {excerpt(line.strip(), None, 60)}"))
    return defects


def prose_blocks(content: Node) -> list[tuple[Node, str]]:
    """The text of each prose block (paragraph, list item, table cell, heading) outside code,
    math, outputs' code blocks and scripts."""
    texts: dict[int, list[str]] = {}
    owners: dict[int, Node] = {}

    def walk(node: Node, block: Node | None):
        if node.tag in NOT_PROSE or "math" in node.classes or "cell_input" in node.classes \
                or "headerlink" in node.classes:
            return
        if node.tag in PROSE_BLOCKS:
            block = node
        for child in node.children:
            if isinstance(child, Node):
                walk(child, block)
            elif block is not None:
                texts.setdefault(id(block), []).append(child)
                owners[id(block)] = block

    walk(content, None)
    return [(owners[k], "".join(v)) for k, v in texts.items()]


def check_prose(content: Node, cell_no: dict) -> list[Defect]:
    """Prose outside outputs, and Markdown rendered from outputs (formulas only: an output's
    table is counted once, by check_outputs)."""
    defects = []
    for block, text in prose_blocks(content):
        cell = next((a for a in block.ancestors() if "cell_output" in a.classes), None)
        cell = next((a for a in cell.ancestors() if "cell" in a.classes), None) if cell else None
        where = f"cell {cell_no[id(cell)]} output" if cell is not None else f"{section_of(block)} text"
        if cell is None and (m := TABLE_LINE.search(text)):
            defects.append(Defect("table", where, excerpt(text, m)))
        if m := FORMULA.search(text):
            defects.append(Defect("formula", where, excerpt(text, m)))
    return defects


def check_html(html: str, page: Path | None = None) -> list[Defect]:
    """Every defect of one page (`page` locates its images on disk)."""
    content = main_content(parse(html))
    cells = [n for n in content.iter() if "cell" in n.classes]
    cell_no = {id(c): i for i, c in enumerate(cells, 1)}
    return (check_prose(content, cell_no) + check_outputs(content, cell_no)
            + check_widgets(content, cell_no, page) + check_code(content, cell_no))


def toc_files(toc_path: Path) -> list[str]:
    toc = yaml.safe_load(toc_path.read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [ch["file"] for ch in part.get("chapters", [])]
    files += [ch["file"] for ch in toc.get("chapters", [])]
    return [str(Path(f).with_suffix("")) if Path(f).suffix in {".md", ".ipynb"} else f for f in files]


def main(argv: list[str]) -> int:
    repo = Path(__file__).resolve().parents[1]
    html_dir = Path(argv[1]).resolve() if len(argv) > 1 else repo / "_build" / "html"
    toc_path = html_dir.parents[1] / "_toc.yml"
    if not toc_path.is_file():
        toc_path = repo / "_toc.yml"
    files = toc_files(toc_path)
    missing = [f for f in files if not (html_dir / f"{f}.html").is_file()]
    if not (html_dir / "index.html").is_file():
        missing.append("index")
    if missing:
        print(f"book build incomplete, missing pages: {missing}")

    pages = [html_dir / f"{f}.html" for f in files if (html_dir / f"{f}.html").is_file()]
    kinds, per_page = Counter(), []
    for page in pages:
        defects = check_html(page.read_text(encoding="utf-8"), page)
        counts = Counter(d.kind for d in defects)
        kinds.update(counts)
        rel = page.relative_to(html_dir)
        summary = ", ".join(f"{k} {n}" for k, n in sorted(counts.items())) or "clean"
        per_page.append(f"{rel}: {len(defects)} ({summary})")
        if defects:
            print(f"{rel}: {len(defects)} defects ({summary})")
            print("\n".join(str(d) for d in defects))
    total = sum(kinds.values())
    if per_page:
        print("\nper page:\n  " + "\n  ".join(per_page))
    by_kind = f" ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))})" if kinds else ""
    print(f"{total} defects in {len(pages)} pages{by_kind}")
    if missing or total:
        return 1
    print(f"book ok: {len(files)} pages")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
