"""The documents: the generated ones are current, every path they name exists, the README's figures
are the result files', and they describe the software as it is (no dates of work, issue numbers
or paths outside the repository)."""
import glob
import os
import re

import pytest

from io_utils import load_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md", "BENCHMARKS.md"] + sorted(os.path.relpath(p, ROOT)
                                              for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
TOP = ("configs/", "scripts/", "benchmarks/", "toy/", "docs/", "tests/", "data/", "models/", "bench_results/",
       "guidance/", "tools/")


def read(name):
    with open(os.path.join(ROOT, name)) as fh:
        return fh.read()


def test_benchmarks_md_is_what_the_result_files_make_and_every_file_is_used(monkeypatch):
    from benchmarks import report

    used, load = set(), report.load
    monkeypatch.setattr(report, "load", lambda root, name: used.add(name) or load(root, name))
    assert read("BENCHMARKS.md") == report.benchmarks_markdown(ROOT), "BENCHMARKS.md is stale: run python docs/build.py"
    assert used == set(os.listdir(os.path.join(ROOT, "bench_results"))), "a result file no table uses"


@pytest.mark.parametrize("name,most", [("README.md", 250), ("BENCHMARKS.md", 400), ("docs/architecture.md", 150)])
def test_documents_keep_their_length(name, most):
    assert len(read(name).splitlines()) <= most


def named_paths(text):
    """Repository paths a document names: in backticks, in links and images, as commands, and any
    path into one of the repository's folders (in commands too)."""
    found = {m.group(1).rstrip(".,:;)") for m in re.finditer(r"(?<![\w/.-])((?:%s)[\w./-]*)" % "|".join(TOP), text)
             if not text[m.end():m.end() + 1] == "<"}  # bench_<what>.py: a pattern, not a path
    for token in re.findall(r"`([^`\s]+)`|\]\(([^)\s]+)\)|python (\S+\.py)", text):
        for t in token:
            t = t.strip().rstrip(".,:;")
            if t and not t.startswith(("http", "/")) and not any(c in t for c in ("NAME", "*", "WORK", "<")):
                if t.startswith(TOP) or re.fullmatch(r"[\w.-]+\.(py|md|yaml|cff|txt)", t) or t == "LICENSE":
                    found.add(t)
    return found


@pytest.mark.parametrize("name", DOCS)
def test_every_path_a_document_names_exists(name):
    folder = os.path.dirname(os.path.join(ROOT, name))
    missing = []
    for path in named_paths(read(name)):
        path = path.split(":")[0].split("#")[0]
        if path.startswith(("logs/", "data/photo")):  # what a command writes, a user's own photo
            continue
        bases = [ROOT, folder] + ([os.path.join(ROOT, d) for d in TOP] if "/" not in path else [])  # bare: any folder
        if not any(os.path.exists(os.path.join(base, path)) for base in bases):
            missing.append(path)
    assert not missing, missing


@pytest.mark.parametrize("name", DOCS)
def test_documents_tell_what_is_not_how_it_came_to_be(name):
    text = read(name)
    for pattern in (r"\bissue \d+", r"\b20\d\d-\d\d-\d\d\b", r"\bsession\b", r"\.\./shared|/work/|shared/assets"):
        assert not re.search(pattern, text, re.I), f"{name}: {re.search(pattern, text, re.I).group(0)}"


def test_the_readme_figures_are_the_result_files():
    readme = read("README.md")
    quick, spot = load_json(os.path.join(ROOT, "bench_results", "quickstart_cpu.json")), \
        load_json(os.path.join(ROOT, "bench_results", "spot_cpu.json"))["recon"][0]
    expect = {"Chamfer-L1": (quick["chamfer_l1"], 3), "F-score@1%": (quick["fscore"], 2), "PSNR": (quick["psnr"], 1),
              "SSIM": (quick["ssim"], 2), "mask IoU": (quick["mask_iou"], 2)}
    line = re.search(r"Expect (Chamfer-L1.*?)\(`bench_results/quickstart_cpu.json`\)", readme, re.S).group(1)
    for label, (value, digits) in expect.items():
        assert re.search(rf"{re.escape(label)} {value:.{digits}f}\b", line), (label, value, line)
    line = re.search(r"Expect (F-score.*?)\(`bench_results/spot_cpu.json`\)", readme, re.S).group(1)
    for label, key, digits in (("F-score", "fscore", 3), ("PSNR", "psnr", 1), ("SSIM", "ssim", 3),
                               ("mask IoU", "mask_iou", 3)):
        assert re.search(rf"{re.escape(label)} {spot[key]:.{digits}f}\b", line), (label, spot[key], line)
