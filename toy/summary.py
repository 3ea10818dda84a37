"""How ``benchmarks/bench_toy.py`` judges its runs: per object, does the trained toy prior beat both
baselines (the untrained network, no prior) by more than the spread over repeats; does the oracle
beat the untrained network; does stage 2 improve on stage 1; and the summary and table of all.
"""
from __future__ import annotations

import numpy as np

RUNS = ("oracle", "trained", "untrained", "no_prior")
BASELINES = ("untrained", "no_prior")  # what the trained prior must beat (the oracle is the ceiling, not a rival)
METRICS = ("chamfer", "fscore", "fscore_5", "iou", "iou_back", "psnr_back", "psnr", "ssim")
STAGE_METRICS = ("psnr_stage1", "psnr_stage2", "ssim_stage1", "ssim_stage2")


def _mean(rows, metric):
    vals = [x[metric] for x in rows if x.get(metric) is not None]
    return float(np.mean(vals)) if vals else None


def wins(entry) -> dict:
    """Per metric: does the trained prior's mean beat both baselines' means by more than the largest
    standard deviation over the repeats?"""
    out = {}
    runs = [r for r in ("trained",) + BASELINES if entry.get(r)]
    for metric in ("iou_back", "fscore", "fscore_5", "psnr_back"):
        if "trained" not in runs or len(runs) < 2 or not all(x.get(metric) is not None for r in runs for x in entry[r]):
            continue
        means = {r: _mean(entry[r], metric) for r in runs}
        spread = max(float(np.std([x[metric] for x in entry[r]])) for r in runs)
        best_other = max(v for r, v in means.items() if r != "trained")
        out[metric] = {"margin": means["trained"] - best_other, "spread": spread,
                       "win": bool(means["trained"] - best_other > spread)}
    return out


def oracle_checks(entry) -> dict:
    """Does the oracle's mean beat the untrained network's on back-view IoU, F-score@5 % and
    back-view PSNR?"""
    if not entry.get("oracle") or not entry.get("untrained"):
        return {}
    out = {}
    for metric in ("iou_back", "fscore_5", "psnr_back"):
        a, b = _mean(entry["oracle"], metric), _mean(entry["untrained"], metric)
        if a is not None and b is not None:
            out[metric] = {"oracle": a, "untrained": b, "beats": bool(a > b)}
    return out


def stage2_gains(entry) -> dict:
    """Per run: mean PSNR and SSIM change from stage 1 to stage 2 (8 views)."""
    out = {}
    for run in RUNS:
        rows = [x for x in entry.get(run, []) if x.get("psnr_stage2") is not None]
        if rows:
            out[run] = {"psnr": float(np.mean([x["psnr_stage2"] - x["psnr_stage1"] for x in rows])),
                        "ssim": float(np.mean([x["ssim_stage2"] - x["ssim_stage1"] for x in rows]))}
    return out


def score(results: dict, seed: str):
    """The per-object judgements, from its runs."""
    entry = results[seed]
    entry["wins"] = wins(entry)
    entry["oracle_vs_untrained"] = oracle_checks(entry)
    gains = stage2_gains(entry)
    if gains:
        entry["stage2_gain"] = gains


def judge(results: dict) -> dict:
    """Every object's judgements (``score``) and the summary of all, added to ``results``."""
    for seed in [k for k in results if k != "summary"]:
        score(results, seed)
    results["summary"] = summarise(results)
    return results


def summarise(results: dict) -> dict:
    seeds = [k for k in results if k != "summary"]
    summary = {}
    for run in RUNS:
        rows = [x for s in seeds for x in results[s].get(run, [])]
        if not rows:
            continue
        summary[run] = {m: _mean(rows, m) for m in METRICS + STAGE_METRICS if any(m in x for x in rows)}
        summary[run]["failed"] = sum("error" in x for x in rows)
    for metric in ("iou_back", "fscore", "fscore_5", "psnr_back"):
        summary[f"wins_{metric}"] = sum(results[s]["wins"].get(metric, {}).get("win", False) for s in seeds)
    summary["wins_both"] = sum(all(results[s]["wins"].get(m, {}).get("win", False) for m in ("iou_back", "fscore"))
                               for s in seeds)
    checks = [results[s]["oracle_vs_untrained"] for s in seeds if results[s].get("oracle_vs_untrained")]
    if checks:
        summary["oracle_beats_untrained"] = {m: sum(c[m]["beats"] for c in checks if m in c)
                                             for m in ("iou_back", "fscore_5", "psnr_back")}
        summary["oracle_beats_untrained_all"] = sum(all(c[m]["beats"] for m in c) for c in checks)
    gains = [results[s]["stage2_gain"] for s in seeds if results[s].get("stage2_gain")]
    if gains:
        summary["stage2_improves"] = {run: sum(g[run]["psnr"] > 0 and g[run]["ssim"] > 0 for g in gains if run in g)
                                      for run in RUNS if any(run in g for g in gains)}
    summary["objects"] = len(seeds)
    nv = [results[s]["novel_views"] for s in seeds if "novel_views" in results[s]]
    if nv:
        summary["novel_views"] = {k: {m: float(np.mean([x[k][m] for x in nv])) for m in ("psnr", "iou")}
                                  for k in ("prior", "input_copied")}
    return summary


def columns(results) -> list:
    """(metric, heading) of the table: both stages' PSNR and SSIM where the runs made stage 2."""
    stage2 = any("psnr_stage2" in x for s in results if s != "summary" for r in RUNS for x in results[s].get(r, []))
    cols = [("chamfer", "Chamfer-L1"), ("fscore", "F-score@1%"), ("fscore_5", "F-score@5%"), ("iou", "mask IoU (8)"),
            ("iou_back", "IoU back (3)"), ("psnr_back", "PSNR back (3)")]
    return cols + ([("psnr_stage1", "PSNR st.1 (8)"), ("psnr_stage2", "PSNR st.2"), ("ssim_stage1", "SSIM st.1"),
                    ("ssim_stage2", "SSIM st.2")] if stage2 else [("psnr", "PSNR (8)"), ("ssim", "SSIM (8)")])


def summary_table(results) -> str:
    """Each run's means over every object and repeat."""
    cols, sm = columns(results), results["summary"]
    lines = ["| run | " + " | ".join(c for _, c in cols) + " | failed runs |", "|---" * (len(cols) + 2) + "|"]
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    for run in RUNS:
        if run in sm:
            lines.append(f"| {run} | " + " | ".join(fmt(sm[run].get(m)) for m, _ in cols) + f" | {sm[run]['failed']} |")
    return "\n".join(lines)


def judgements(results) -> list:
    """The summary's counts as sentences: the trained prior's wins, the oracle against the
    untrained network, stage 2's gains, the prior's own novel views."""
    sm = results["summary"]
    lines = [f"trained beats both baselines by more than the spread: iou_back on {sm['wins_iou_back']}, "
             f"fscore on {sm['wins_fscore']}, both on {sm['wins_both']} of {sm['objects']} objects "
             f"(fscore_5: {sm['wins_fscore_5']}, psnr_back: {sm['wins_psnr_back']})"]
    if "oracle_beats_untrained" in sm:
        o = sm["oracle_beats_untrained"]
        lines.append(f"oracle beats the untrained network: iou_back on {o['iou_back']}, fscore_5 on {o['fscore_5']}, "
                     f"psnr_back on {o['psnr_back']}, all three on {sm['oracle_beats_untrained_all']} of "
                     f"{sm['objects']} objects")
    if "stage2_improves" in sm:
        lines.append("stage 2 raises both PSNR and SSIM over stage 1 (mean over repeats): " + ", ".join(
            f"{run} on {n} of {sm['objects']}" for run, n in sm["stage2_improves"].items()))
    if "novel_views" in sm:
        nv = sm["novel_views"]
        lines.append(f"prior's novel views (azimuth +90/180/270): PSNR {nv['prior']['psnr']:.2f} dB, mask IoU "
                     f"{nv['prior']['iou']:.3f}; input view copied: PSNR {nv['input_copied']['psnr']:.2f} dB, "
                     f"mask IoU {nv['input_copied']['iou']:.3f}")
    return lines


def table(results) -> str:
    """Per object and run, mean ± standard deviation over the repeats; then ``summary_table`` and
    the ``judgements``."""
    cols = columns(results)
    lines = ["| object | run | " + " | ".join(c for _, c in cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for s in [k for k in results if k != "summary"]:
        for run in RUNS:
            rows = results[s].get(run)
            if not rows:
                continue

            def ms(m):
                vals = [x[m] for x in rows if x.get(m) is not None]
                return f"{np.mean(vals):.4f} ± {np.std(vals):.4f}" if vals else "failed"
            lines.append(f"| {s} | {run} | " + " | ".join(ms(m) for m, _ in cols) + " |")
    lines += ["", summary_table(results), ""] + judgements(results)
    return "\n".join(lines)
