"""The README and docs/ pages: every relative link and image resolves, every anchor exists, and the
README stays a front page whose claims table is study.md's."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def prose(path: Path) -> str:
    """The page without its code blocks (a `](` inside code is not a link)."""
    return re.sub(r"```.*?```", "", path.read_text(), flags=re.S)


def anchors(path: Path) -> set[str]:
    """GitHub's anchors of a page's headings."""
    heads = re.findall(r"^#{1,6} (.+)$", prose(path), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def test_every_relative_link_and_anchor_resolves():
    broken = []
    for page in PAGES:
        for target in LINK.findall(prose(page)):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            if not dest.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []


def test_the_readme_is_a_front_page_that_links_every_docs_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 200
    assert "make test" in text and "make run" in text
    for page in PAGES[1:]:
        assert f"](docs/{page.name})" in text, page.name


def _claim_rows(text: str) -> dict[str, list[str]]:
    """The rows of a Markdown table whose first cell is a numbered claim, split into cells."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and re.match(r"\d\. ", cells[0]):
            rows[cells[0]] = cells
    return rows


def test_the_readme_claims_table_is_the_one_study_md_gives():
    """Each claim's "holds under k of K" and the default protocol's verdict, effect and interval
    are study.md's, word for word (the README joins a cell's lines with "; ")."""
    study_md = (ROOT / "results" / "reference" / "study" / "study.md").read_text()
    header = next(line for line in study_md.splitlines() if line.startswith("| claim |"))
    default = [c.strip() for c in header.strip("|").split("|")].index("norm=gain, wavelets=single")
    study = _claim_rows(study_md)
    readme = _claim_rows((ROOT / "README.md").read_text())
    assert len(study) == 8 and list(readme) == list(study)
    for claim, cells in study.items():
        assert readme[claim][1:] == [cells[-1], cells[default].replace("<br>", "; ")], claim
