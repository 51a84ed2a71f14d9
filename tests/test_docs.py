"""The README is a front page and the manual lives in docs/: short, every relative link
resolves, every docs page is in the site's navigation, and the demo section is what
benchmarks/demo_readme.py renders from the committed result file."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")


def _links(path: Path) -> list[str]:
    return [m.group(1) for m in LINK.finditer(path.read_text())
            if not m.group(1).startswith(("http://", "https://", "mailto:"))]


def test_readme_is_a_front_page_and_links_resolve():
    readme = ROOT / "README.md"
    assert len(readme.read_text().splitlines()) <= 300
    pages = [readme, *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        for target in _links(page):
            assert (page.parent / target).exists(), f"{page.name}: broken link {target}"
    linked = {Path(t).name for t in _links(readme)}
    assert {p.name for p in (ROOT / "docs").glob("*.md")} - {"index.md"} <= linked


def test_every_docs_page_is_in_the_site_navigation():
    nav = (ROOT / "mkdocs.yml").read_text()
    assert "strict: true" in nav
    for page in (ROOT / "docs").glob("*.md"):
        assert page.name in nav, page.name


def test_readme_demo_section_is_rendered_from_the_committed_results():
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "demo_readme.py")],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    text = (ROOT / "README.md").read_text()
    section = text.split("<!-- demo:start -->\n", 1)[1].split("<!-- demo:end -->", 1)[0]
    assert section == res.stdout


def test_docs_build_as_a_site_in_strict_mode(tmp_path):
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                          "--site-dir", str(tmp_path / "site")], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "site" / "index.html").is_file()
