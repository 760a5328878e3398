"""The docs: a short README, and a site a newcomer reads in order, whose every link resolves."""

import subprocess
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 200


def nav_pages(nav: list) -> list[str]:
    """The pages of mkdocs.yml's nav, in reading order."""
    pages = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_the_readme_stays_short():
    lines = (CHECKOUT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move the detail into docs/"


def test_every_docs_page_is_in_the_nav_once():
    yaml = pytest.importorskip("yaml", reason="PyYAML comes with mkdocs (the dev extra)")
    config = yaml.safe_load((CHECKOUT / "mkdocs.yml").read_text())

    pages = nav_pages(config["nav"])

    assert sorted(pages) == sorted(path.name for path in (CHECKOUT / "docs").glob("*.md"))
    assert len(pages) == len(set(pages))
    assert pages[0] == "index.md"


def test_the_site_builds_strictly_with_the_readme_as_home_and_the_benchmarks_included(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[dev]')")

    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                            str(CHECKOUT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
                           capture_output=True, text=True, timeout=300)

    assert built.returncode == 0, built.stderr  # a broken link or anchor, or a page left out of nav, fails
    home = (tmp_path / "site/index.html").read_text()
    assert "make demo" in home and 'href="install/"' in home  # README.md, its docs/ links made site links
    recipes = (CHECKOUT / "benchmarks/RECIPES.md").read_text().splitlines()[0].split(" by ")[0]
    assert recipes in (tmp_path / "site/benchmarks/index.html").read_text()
