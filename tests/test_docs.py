"""README.md and docs/: links resolve, the README stays short, and every
results table equals what experiments/render_docs.py renders from the result
files now (so no quoted number can drift from experiments/results/*.json)."""
from __future__ import annotations

import copy
import glob
import importlib.util
import os
import re
from typing import Dict, Iterator, List, Tuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
PAGES = [README] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
MAX_WORDS, MAX_CELL_WORDS, MAX_ROWS = 1500, 25, 10


def _render_docs():
  spec = importlib.util.spec_from_file_location(
      "render_docs", os.path.join(ROOT, "experiments", "render_docs.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


render_docs = _render_docs()


def _read(path: str) -> str:
  with open(path, encoding="utf-8") as f:
    return f.read()


def _prose(text: str) -> Iterator[str]:
  """The lines of ``text`` outside fenced and indented code blocks."""
  fenced = False
  for line in text.splitlines():
    if line.lstrip().startswith("```"):
      fenced = not fenced
      continue
    if not fenced and not line.startswith("    "):
      yield line


def slug(heading: str) -> str:
  """GitHub's anchor of a heading: lower case, punctuation dropped, spaces → -."""
  return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set:
  """Every heading anchor of a page (GitHub numbers repeats -1, -2, ...)."""
  seen: Dict[str, int] = {}
  out = set()
  for line in _prose(text):
    m = re.match(r"#{1,6} (.+)", line)
    if m:
      s = slug(m[1])
      out.add(s if s not in seen else f"{s}-{seen[s]}")
      seen[s] = seen.get(s, 0) + 1
  return out


def links(text: str) -> List[str]:
  """Targets of the page's markdown links and images (not inside code)."""
  out = []
  for line in _prose(text):
    line = re.sub(r"`[^`]*`", "", line)
    out += re.findall(r"\]\(([^)\s]+)\)", line)
  return out


def cells(text: str) -> List[Tuple[int, str]]:
  """(line number, cell) of every table cell (``|`` inside code kept)."""
  out = []
  for n, line in enumerate(text.splitlines(), 1):
    if not line.startswith("|"):
      continue
    cur, code = "", False
    for ch in line.strip()[1:]:
      if ch == "`":
        code = not code
      if ch == "|" and not code:
        out.append((n, cur.strip()))
        cur = ""
      else:
        cur += ch
  return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_relative_link_resolves(page):
  text = _read(page)
  broken = []
  for target in links(text):
    if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
      continue
    path, _, anchor = target.partition("#")
    dest = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
    if not os.path.exists(dest):
      broken.append(target)
    elif anchor and dest.endswith(".md") and anchor not in anchors(_read(dest)):
      broken.append(target)
  assert broken == []


def test_docs_pages_exist_and_readme_links_each():
  targets = {os.path.normpath(os.path.join(ROOT, t.partition("#")[0]))
             for t in links(_read(README))}
  assert len(PAGES) > 5
  assert set(PAGES[1:]) <= targets, "a docs page the README does not link"


def test_readme_is_short():
  assert len(_read(README).split()) <= MAX_WORDS


def test_no_readme_table_cell_is_long():
  long = [(n, c[:60]) for n, c in cells(_read(README))
          if len(c.split()) > MAX_CELL_WORDS]
  assert long == []


def test_cell_parser_sees_long_cells():
  table = "| a | " + "word " * (MAX_CELL_WORDS + 1) + "| `x | y` |\n"
  assert [len(c.split()) for _, c in cells(table)] == [1, MAX_CELL_WORDS + 1, 3]


def test_readme_results_table_is_at_a_glance():
  rows = render_docs.BLOCKS["readme"]
  assert 0 < len(rows) <= MAX_ROWS
  for source, *_ in rows:
    assert os.path.exists(os.path.join(ROOT, "experiments", "results", source + ".md"))
    assert os.path.exists(os.path.join(ROOT, "experiments", "results", source + ".json"))
  assert "<!-- results:begin -->" in _read(README)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: os.path.relpath(p, ROOT))
def test_results_blocks_equal_a_fresh_render(page):
  text = _read(page)
  results = render_docs.load_results()
  assert render_docs.render_page(text, page, results) == text, (
      "stale results block: run `python experiments/render_docs.py`")


def test_every_rendered_number_comes_from_its_file():
  results = render_docs.load_results()
  for rows in render_docs.BLOCKS.values():
    for row in rows:
      for cell in row[1:]:
        for m in render_docs.FIELD.finditer(cell):
          value = render_docs.lookup(results, m[1], m[2])
          assert isinstance(value, (int, float)), m[0]
          assert render_docs.format_value(value, m[3]) in render_docs.fill(cell, results)


def test_a_changed_result_changes_the_readme_block():
  results = render_docs.load_results()
  text = _read(README)
  changed = copy.deepcopy(results)
  changed["accuracy"]["int8"]["global"]["exit_4"]["mean"] += 1.0
  assert render_docs.render_page(text, README, changed) != text
  with pytest.raises(KeyError):
    render_docs.fill("{accuracy:summary.no_such_key|.1f}", results)


def test_render_rewrites_only_the_block(tmp_path):
  results = render_docs.load_results()
  page = tmp_path / "page.md"
  page.write_text("before\n<!-- results:begin -->\nSTALE\n<!-- results:end -->\nafter\n")
  out = render_docs.render_page(page.read_text(), str(page), results, ROOT)
  assert out.startswith("before\n<!-- results:begin -->\n")
  assert out.endswith("<!-- results:end -->\nafter\n") and "STALE" not in out
  assert render_docs.render_page(out, str(page), results, ROOT) == out
