"""The docs: a short README, and a site a newcomer reads in order, whose every link resolves."""

import re
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


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """`mkdocs build --strict` of the checkout's docs into a temporary folder: (the build, the site)."""
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[dev]')")
    folder = tmp_path_factory.mktemp("docs") / "site"
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                            str(CHECKOUT / "mkdocs.yml"), "--site-dir", str(folder)],
                           capture_output=True, text=True, timeout=300)
    return built, folder


def test_the_site_builds_strictly(site):
    built, _ = site
    assert built.returncode == 0, built.stderr  # a broken link or anchor, or a page left out of nav, fails


def test_the_sites_home_is_the_readme_with_its_links_made_site_links(site):
    home = (site[1] / "index.html").read_text()
    assert "make demo" in home and 'href="install/"' in home


def test_the_benchmark_pages_are_the_benchmark_files_included(site):
    recipes = (CHECKOUT / "benchmarks/RECIPES.md").read_text().splitlines()[0].split(" by ")[0]
    assert recipes in (site[1] / "benchmarks/index.html").read_text()


def test_every_fenced_block_renders_as_a_code_block(site):
    # A ``` fence that Markdown did not take as one (inside a list, say) comes out as inline code over lines.
    pages = site[1].rglob("index.html")
    broken = [page.parent.name for page in pages if re.search(r"<p><code>\w*\n", page.read_text())]
    assert broken == []
