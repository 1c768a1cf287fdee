"""The README and docs/: their result tables are those the committed reports/ give (pipeline.report.docs), and
every link between the pages reaches a file and a heading that exist."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from conftest import ROOT


def test_every_generated_table_is_what_the_committed_reports_give():
    from pipeline.report.docs import stale

    assert stale() == [], "run `python -m pipeline docs` and commit the result"


@pytest.fixture
def tree(tmp_path):
    """A copy of the committed reports and a README with every README table generated from them."""
    from pipeline.report.docs import render

    shutil.copytree(ROOT / "reports", tmp_path / "reports")
    text = "# x\n\n<!-- generated: headline -->\n<!-- end generated -->\n\n<!-- generated: results -->\n<!-- end generated -->\n"
    (tmp_path / "README.md").write_text(render(text, tmp_path / "reports", "README.md"))
    return tmp_path


def test_a_number_that_differs_from_the_reports_is_named(tree):
    from pipeline.report.docs import stale

    assert stale(tree) == []
    metrics = json.loads((tree / "reports/metrics.json").read_text())
    teacher = metrics["models"]["teacher"]
    teacher[metrics["main_metric"]] = round(teacher[metrics["main_metric"]] - 0.01, 4)
    (tree / "reports/metrics.json").write_text(json.dumps(metrics))
    assert stale(tree) == ["README.md: headline", "README.md: results"]


def test_the_headline_picks_the_teacher_and_the_best_student_of_each_kind(tree):
    from pipeline.report.docs import headline, method_of

    metrics = json.loads((tree / "reports/metrics.json").read_text())
    main, rows = metrics["main_metric"], metrics["models"]
    students = [n for n in rows if ":" not in n and n != "teacher" and n not in metrics["ablations"]]
    best = {kind: max((n for n in students if (method_of(tree / "reports", n) == "tang") == bilstm),
                      key=lambda n: rows[n][main]) for kind, bilstm in (("Transformer", False), ("BiLSTM", True))}
    table = headline(tree / "reports")
    assert f"| {best['Transformer']} | best Transformer student | PyTorch | {100 * rows[best['Transformer']][main]:.2f} |" in table
    assert f"| {best['BiLSTM']} | best BiLSTM student | PyTorch |" in table
    assert table.count("| teacher | teacher |") == 2  # PyTorch and its fastest runtime


def test_an_unknown_table_name_is_an_error_naming_it(tree):
    from pipeline.report.docs import render

    with pytest.raises(SystemExit, match="README.md: no generated table named 'headlines'"):
        render("<!-- generated: headlines -->\n<!-- end generated -->\n", tree / "reports", "README.md")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_between_the_pages_reaches_a_file_and_a_heading():
    from pipeline.report.docs import documents

    pages = documents(ROOT)
    assert {"README.md", "docs/results.md", "docs/extending.md", "docs/prefect.md", "docs/troubleshooting.md",
            "docs/benchmarks.md", "docs/glossary.md"} <= {str(p.relative_to(ROOT)) for p in pages}
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"\w+://", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.relative_to(ROOT)}: {target}"
            if anchor:
                headings = re.findall(r"^#+ (.+)$", linked.read_text(encoding="utf-8"), re.M)
                assert anchor in {slug(h) for h in headings}, f"{page.relative_to(ROOT)}: {target}"
