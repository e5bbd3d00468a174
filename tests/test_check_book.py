"""The CI's page checker (.ci/check_book.py) and README command extractor (.ci/readme_commands.py)
on small synthetic pages: each defect is found, a clean page passes."""
import base64
import importlib.util
import struct
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / ".ci" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_book = load("check_book")
readme_commands = load("readme_commands")


def png(width, height, tag=b""):
    """The first bytes of a PNG (signature and IHDR): enough for the checker to read its size."""
    header = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
    data = header + struct.pack(">II", width, height) + b"\x08\x06\x00\x00\x00" + tag
    return "data:image/png;base64," + base64.b64encode(data).decode()


def page(body):
    return f"<html><head><title>t</title></head><body><nav><p>| nav | menu |</p></nav>" \
           f"<article role='main'>{body}</article></body></html>"


def cell(code="x = 1", outputs=""):
    return (f"<div class='cell docutils container'><div class='cell_input docutils container'>"
            f"<div class='highlight-ipython3'><div class='highlight'><pre><span></span>{code}\n</pre>"
            f"</div></div></div>"
            f"<div class='cell_output docutils container'>{outputs}</div></div>")


def stream(text, kind="stream"):
    return (f"<div class='output {kind} highlight-myst-ansi notranslate'><div class='highlight'>"
            f"<pre><span></span>{text}</pre></div></div>")


CLEAN = page(
    "<section id='s'><h1>Title</h1>"
    "<p>The weight <span class='math notranslate nohighlight'>\\(e^{-w}\\)</span> of <code>$PATH</code> "
    "and <code>/tmp/x</code> in code.</p>"
    "<div class='math notranslate nohighlight'>\\[\\begin{cases} a \\\\ b \\end{cases}\\]</div>"
    "<table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr></table>"
    + cell("print('pooled DSC', 0.91)", stream("pooled DSC 0.91\nIoU | 0.84\n"))
    + cell("fig", f"<img alt='f' src='{png(40, 30)}' />")
    + "</section>"
)

DEFECTS = {
    "table": page("<p>| a | b |\n|---|---|\n| 1 | 2 |</p>"),
    "formula": page("<p>so $\\partial L/\\partial v_i = e^{k_i}</p>"),
    "warning": page(cell(outputs=stream("x.py:3: RuntimeWarning: divide by zero", "stderr"))),
    "traceback": page(cell(outputs=stream("Traceback (most recent call last):\n  File x\nValueError"))),
    "path": page(cell(outputs=stream("record written to results/run\ncache in /var/folders/ab/T/x"))),
    "dump": page(cell(outputs=stream("config:\n{'lr': 0.001, 'epochs': 2}"))),
    "repr": page(cell(outputs=stream("&lt;Figure size 420x360 with 2 Axes&gt;", "text_plain"))),
    "long-line": page(cell("y = " + " + ".join(["x"] * 40))),
    "long-line-in-text": page("<div class='highlight-bash notranslate'><div class='highlight'><pre>"
                              "rwkvseg train " + "--flag value " * 8 + "</pre></div></div>"),
}


@pytest.mark.parametrize("kind", sorted(DEFECTS))
def test_each_defect_found(kind):
    defects = check_book.check_html(DEFECTS[kind])
    assert [d.kind for d in defects] == [kind.replace("-in-text", "")], defects


def test_clean_page_passes():
    assert check_book.check_html(CLEAN) == []


def test_table_in_output_counted_once():
    markdown = "<div class='output text_markdown'><p>| a | b |\n|—|—|\n| 1 | 2 |</p></div>"
    html = page(cell(outputs=markdown))
    assert [d.kind for d in check_book.check_html(html)] == ["table"]


def test_stderr_block_is_a_warning():
    defects = check_book.check_html(page(cell(outputs=stream("epoch 1: 100%", "stderr"))))
    assert [d.kind for d in defects] == ["warning"] and "stderr" in defects[0].excerpt


def test_error_output_is_a_traceback():
    error = "<div class='output traceback highlight-ipythontb'><pre>ValueError: x</pre></div>"
    html = page(cell(outputs=error))
    assert [d.kind for d in check_book.check_html(html)] == ["traceback"]


def test_static_first_widget_shown_twice():
    view = "<script type='application/vnd.jupyter.widget-view+json'>{\"model_id\": \"a\"}</script>"
    outputs = f"<img src='{png(420, 360, b'1')}' /><img src='{png(420, 360, b'2')}' />{view}"
    defects = check_book.check_html(page(cell("static_then_widget(plot)", outputs)))
    assert [d.kind for d in defects] == ["widget"] and "2 figures of 420x360" in defects[0].excerpt


def test_same_figure_twice_without_widget():
    outputs = f"<img src='{png(10, 10)}' /><img src='{png(10, 10)}' />"
    assert [d.kind for d in check_book.check_html(page(cell("plot()", outputs)))] == ["widget"]


def test_main_counts_and_missing_pages(tmp_path, capsys):
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nparts:\n"
                                       "  - caption: c\n    chapters:\n      - file: book/01\n")
    html = tmp_path / "_build" / "html"
    (html / "book").mkdir(parents=True)
    (html / "index.html").write_text(page("<p>home</p>"))
    (html / "book" / "intro.html").write_text(CLEAN)
    assert check_book.main(["check_book.py", str(html)]) == 1            # book/01 missing
    assert "missing pages: ['book/01']" in capsys.readouterr().out
    (html / "book" / "01.html").write_text(DEFECTS["table"])
    assert check_book.main(["check_book.py", str(html)]) == 1
    assert "1 defects in 2 pages (table 1)" in capsys.readouterr().out
    (html / "book" / "01.html").write_text(CLEAN)
    assert check_book.main(["check_book.py", str(html)]) == 0


def test_readme_commands_synthetic():
    text = ("# x\n\n## Set up, build the book, run the tests\n\nSome text.\n\n```bash\n"
            "# 1. install\npython3 -m venv .venv && \\\n  .venv/bin/pip install .\n\n# 2. test\n"
            ".venv/bin/pytest\n```\n\n```bash\nnot this one\n```\n")
    assert readme_commands.readme_commands(text) == [
        "python3 -m venv .venv && .venv/bin/pip install .", ".venv/bin/pytest"]
    with pytest.raises(ValueError):
        readme_commands.readme_commands(f"{readme_commands.HEADING}\n\nno block\n\n## Next\n")


def test_readme_holds_two_commands():
    commands = readme_commands.readme_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(commands) == 2, commands
