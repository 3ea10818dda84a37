"""BENCHMARKS.md from the result files in bench_results/: every table is made here from a committed
JSON file, and the benchmark commands print their tables with the same functions.
``python docs/build.py`` writes the page; tests/test_docs.py fails when the committed one differs."""
from __future__ import annotations

import json
import os

RESULTS = "bench_results"


def table(header: list, rows: list) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def publish(json_path, record: dict, table_fn):
    """A benchmark's end: its machine as a JSON line, its table, and the record written to
    ``json_path`` (where given, atomically)."""
    print(json.dumps({"machine": record["machine"]}))
    print("\n" + table_fn(record))
    if json_path:
        from io_utils import save_json

        save_json(json_path, record)


def machine_line(record) -> str:
    """The machine a result file records, as one line."""
    m = record.get("machine") if isinstance(record, dict) else None
    if not m:
        return "Machine: not recorded in the file (a 2-core CPU machine of this project's kind)."
    cpu = m.get("cpu") or "CPU model not recorded"
    cores = m.get("cores") or m.get("cpus")
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU"
    return f"Machine: {cpu}, {cores} cores{gpu}, torch {m.get('torch', 'not recorded')}."


def f(v, digits=3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


# ------------------------------------------------------------------ one table per benchmark
def render_table(result: dict) -> str:
    return table(["backend", "device", "size", "Gaussians", "opacity", "fwd (s)", "fwd+bwd (s)", "peak mem (MiB)"],
                 [[r["backend"], r["device"], r["size"], r["gaussians"], r.get("opacity", ""),
                   f(r["fwd_median_s"]), f(r["fwd_bwd_median_s"]), f(r["peak_mem_mib"], 0)]
                  for r in result["results"]])


def mesh_table(result: dict) -> str:
    """The density query alone: seconds by Gaussian count and grid (the counts timed on every grid)."""
    dq = {(r["gaussians"], r["resolution"]): r["seconds"] for r in result["results"] if r["stage"] == "density_query"}
    grids = sorted({g for _, g in dq})
    counts = [n for n in sorted({n for n, _ in dq}) if all((n, g) in dq for g in grids)]
    return table(["Gaussians", *(f"density query, {g}^3 grid (s)" for g in grids)],
                 [[n, *(f(dq[(n, g)]) for g in grids)] for n in counts])


def export_table(result: dict) -> str:
    """The whole export with each ``uv_unwrap``, a row each: its stages, total, mesh and a stage-2
    step's mesh render forward and backward on it."""
    rows = []
    for method in dict.fromkeys(r["method"] for r in result["results"] if "method" in r):
        of = {r["stage"]: r for r in result["results"] if r.get("method") == method}
        total, render = of["export_total"], of["mesh_render_fwd_bwd_512"]
        rows.append([method] + [f(of[f"export/{k}"]["seconds"], 2) for k in EXPORT_STAGES]
                    + [f(total["seconds"], 1), total["vertices"], total["faces"], f(total["texel_coverage"], 4),
                       f(render["seconds"])])
    return table(["atlas", *EXPORT_STAGES, "total", "vertices", "faces", "texels seen", "render fwd+bwd 512"],
                 rows)


EXPORT_STAGES = ("density_query", "fill_interior", "marching_cubes", "cleanup_decimate", "uv_unwrap",
                 "back_projection")


def unwrap_table(result: dict) -> str:
    """Both ``uv_unwrap`` methods on each mesh, side by side: charts / xatlas."""
    by = {}
    for r in result["unwraps"] + result["rebakes"]:
        by.setdefault((r["mesh"], r["faces"]), {})[r["method"]] = r
    rows = []
    for (mesh, faces), m in by.items():
        c, x = m["charts"], m["xatlas"]
        rows.append([mesh, faces, f"{c['seconds']:.2f} / {x['seconds']:.2f}", f"{x['seconds'] / c['seconds']:.1f}x",
                     f"{c['charts']} / {x['charts']}", f"{c['seam_edges']} / {x['seam_edges']}",
                     f"{c['utilisation']:.3f} / {x['utilisation']:.3f}"])
    return table(["mesh", "faces", "seconds: charts / xatlas", "speed-up", "charts", "seam edges", "utilisation"], rows)


def mesh_tables(result: dict) -> str:
    return "\n\n".join([mesh_table(result), export_table(result), unwrap_table(result)])


def guidance_table(result: dict) -> str:
    return table(["model", "step", "views", "resolution", "device", "dtype", "median (s)", "build (s)"],
                 [[r["model"], r["op"], r.get("views", 1), r["resolution"], r["device"], r["dtype"],
                   r["median_s"], r["build_s"]] for r in result["results"]])


def loads_table(result: dict) -> str:
    return table(["file", "result", "detail", "faces", "load (s)"],
                 [[r["file"], r["result"], r["detail"], r.get("faces", ""), r["seconds"]] for r in result["loads"]])


def recon_table(result: dict) -> str:
    return table(["file", "PSNR", "SSIM", "mask IoU", "F-score", "PSNR grey", "PSNR white", "seconds"],
                 [[r["file"], f(r["psnr"], 2), f(r["ssim"]), f(r["mask_iou"]), f(r["fscore"]), f(r["psnr_grey"], 2),
                   f(r["psnr_white"], 2), r["seconds"]] for r in result["recon"]])


def splat_formats_table(result: dict) -> str:
    rows = []
    for ext, r in result["formats"].items():
        st = "-" if r["splat_transform_bytes"] is None else f"{r['splat_transform_bytes'] / 1024:.0f} KB"
        psnr = "exact" if r["psnr"] == float("inf") or r["psnr"] > 99 else f"{r['psnr']:.1f} dB"
        rows.append([ext, f"{r['bytes'] / 1024:.0f} KB", f"{r['bytes_per_gaussian']:.1f}", st, f"{r['write_s']:.2f}",
                     f"{r['read_s']:.2f}", f"{r['max_position_error']:.1e}", r["sh_degree"], psnr])
    return table(["format", "size", "bytes / Gaussian", "splat-transform's size", "write s", "read s",
                  "max position error (of extent)", "SH degree kept", "PSNR of renders"], rows)


def batch_table(result: dict) -> str:
    jobs, rows = result["jobs"], []
    for label, r in result["rows"].items():
        outside = r["outside_jobs_s"] if r["outside_jobs_s"] is not None else ""
        rows.append([label, r["wall_s"], f"{r['wall_s'] / jobs:.2f}", r["job_mean_s"], outside, r["overhead_per_job_s"]])
    return table(["backend", "wall (s)", "wall / jobs (s)", "job's own stages, mean (s)", "wall outside the jobs (s)",
                  "wall vs local, per job (s)"], rows)


def viewer_table(result: dict) -> str:
    base = result["rows"]["no viewer"]
    return table(["setting", "steps/s", "vs no viewer"],
                 [[k, f"{v:.2f}", f"{100 * v / base:.0f} %"] for k, v in result["rows"].items()])


def toy_step_table(result: dict) -> str:
    rows = []
    for r in result["rows"]:
        extra = f" (compile {r['compile_seconds']:.0f} s)" if "compile_seconds" in r else ""
        rows.append([r["variant"] + extra, r["batch"], f"{r['seconds']:.3f}", f"{1000 * r['seconds'] / r['batch']:.1f}"])
    return table(["variant", "batch", "seconds a step", "ms a sample"], rows)


# ------------------------------------------------------------------ the toy world
def toy_table(result: dict) -> str:
    from toy.summary import judgements, summary_table

    return summary_table(result) + "\n\n" + "\n".join(f"- {line}" for line in judgements(result))


def summarised(result: dict) -> dict:
    """A bench_toy result with its summary (made as the benchmark makes it where a file has none)."""
    if "summary" in result:
        return result
    from toy.summary import judge

    return judge({k: dict(v) for k, v in result.items() if k.isdigit()})


def scale_table(results: dict) -> str:
    """The trained prior's stage-1 means at each guidance scale (one file a scale)."""
    rows = []
    for scale, r in results.items():
        r = summarised(r)
        sm = r["summary"]["trained"]
        repeats = len(next(v for k, v in r.items() if k != "summary")["trained"])
        rows.append([scale, repeats, f(sm["chamfer"], 4), f(sm["fscore_5"]), f(sm["iou_back"]), f(sm["psnr_back"], 2)])
    return table(["guidance_scale", "seeds", "Chamfer", "F-score@5%", "IoU back", "PSNR back (dB)"], rows)


def fill_table(without: dict, with_fill: dict) -> str:
    rows = []
    for run in ("oracle", "trained", "untrained", "no_prior"):
        a, b = without["summary"].get(run), with_fill["summary"].get(run)
        if a and b:
            rows.append([run, f"{f(a['chamfer'], 4)} / {f(b['chamfer'], 4)}", f"{f(a['fscore_5'])} / {f(b['fscore_5'])}",
                         f"{f(a['iou_back'])} / {f(b['iou_back'])}"])
    return table(["run", "Chamfer (no fill / fill)", "F-score@5%", "IoU back"], rows)


def stage2_table(result: dict) -> str:
    sm = result["summary"]
    rows = [["the VAE's round trip of the truth (the oracle targets' ceiling)", "",
             f"{f(sm['vae']['psnr'], 2)} / {f(sm['vae']['ssim'])}", "", ""]]
    for name, r in sm.items():
        if name == "vae" or not isinstance(r, dict):
            continue
        rows.append([name, f"{f(r['stage1']['psnr'], 2)} / {f(r['stage1']['ssim'])}",
                     f"{f(r['oracle']['psnr'], 2)} / {f(r['oracle']['ssim'])}",
                     f"{f(r['exact']['psnr'], 2)} / {f(r['exact']['ssim'])}",
                     f"{r['improves_oracle']} / {r['improves_exact']}"])
    return table(["stage 2 setting", "stage 1 PSNR / SSIM", "oracle targets", "exact targets",
                  "objects improved (oracle / exact)"], rows)


def view_sets_table(results: dict) -> str:
    from toy.view_sets import summarise, table as sets_table

    runs, sets = results["settings"]["runs"], results["settings"]["view_sets"]
    summary = summarise(results, runs, sets)
    counts = [f"- {k}: {v}" for k, v in summary.items() if "/" not in k and "minus" not in k]
    return sets_table(summary, runs, sets) + "\n\n" + "\n".join(counts)


def combined(*results: dict) -> dict:
    """Input-view results of several runs over the same objects and view sets, as one."""
    out = {"settings": {**results[0]["settings"], "runs": [r for res in results for r in res["settings"]["runs"]]}}
    for res in results:
        for seed, entry in res.items():
            if seed.isdigit():
                out.setdefault(seed, {}).update(entry)
    return out


def meshes_table(result: dict) -> str:
    rows = []
    for name, r in result["meshes"].items():
        v, rc = r["views_no_prior"], r["recon_32_views"]
        rows.append([name, f"{f(v['chamfer'], 4)} / {f(v['fscore_5'])}", f"{f(rc['chamfer'], 4)} / {f(rc['fscore_5'])}"])
    return table(["mesh", "3 views, no prior: Chamfer / F-score@5%", "recon mode, 32 views"], rows)


def curve_table(points: list) -> str:
    return table(["UNet step", "training hours", "novel views PSNR / IoU", "azimuth mirrored", "input view copied",
                  "VAE round trip PSNR"],
                 [[p["step"], f(p["hours"], 2), f"{f(p['prior_psnr'], 2)} / {f(p['prior_iou'])}",
                   f"{f(p['prior_mirrored_psnr'], 2)} / {f(p['prior_mirrored_iou'])}",
                   f"{f(p['input_copied_psnr'], 2)} / {f(p['input_copied_iou'])}", f(p["vae_psnr"], 2)]
                  for p in points])


def prior_eval_table(result: dict) -> str:
    (_, r), = ((k, v) for k, v in result.items() if k != "machine")
    ts = list(r["train"])
    cell = lambda split, key, digits: " / ".join(f(r[split][t][key], digits) for t in ts)  # noqa: E731
    rows = [[split, cell(split, "eps", 4), cell(split, "eps_uncond", 4), cell(split, "gain", 3), cell(split, "x0", 4)]
            for split in ("train", "heldout", "heldout_mirrored", "heldout_still")]
    nv = r["novel_views"]
    head = f"(t = {' / '.join(ts)})"
    return (table(["pairs", f"eps MSE {head}", "eps MSE, no conditions", "gain", "x0 MSE"], rows) +
            f"\n\nNovel views (DDIM at azimuth +90 / 180 / 270): PSNR {f(nv['prior']['psnr'], 2)} dB, mask IoU "
            f"{f(nv['prior']['iou'])}; the input view copied there: {f(nv['input_copied']['psnr'], 2)} dB, "
            f"{f(nv['input_copied']['iou'])}. VAE round trip of held-out renders: "
            f"{f(r['vae_heldout']['psnr'], 2)} dB, SSIM {f(r['vae_heldout']['ssim'])}.")


def vae_table(result: dict) -> str:
    rows = []
    for name, r in result.items():
        if name in ("settings", "machine"):
            continue
        last = r["curve"][-1]
        rows.append([name, r["parameters"], "x".join(str(x) for x in r["latent"]), last["step"],
                     f(last["psnr"], 2), f(last["ssim"])])
    return table(["VAE", "parameters", "latent", "steps", "held-out round trip PSNR", "SSIM"], rows)


# ------------------------------------------------------------------ the page
def load(root: str, name: str):
    with open(os.path.join(root, RESULTS, name)) as fh:
        return json.load(fh)


def section(title: str, commands: list, record, body: str, reading: str) -> str:
    cmd = "\n".join(commands)
    return f"## {title}\n\n```bash\n{cmd}\n```\n\n{machine_line(record)}\n\n{body}\n\n{reading}\n"


def stage_of(result: dict, name: str, method: str) -> float:
    return next(r["seconds"] for r in result["results"] if r["stage"] == name and r.get("method") == method)


def benchmarks_markdown(root: str) -> str:
    """The whole of BENCHMARKS.md, from the files in ``root``/bench_results."""
    out = ["# Benchmarks", "",
           "Every table is made from a committed result file in `bench_results/` by `python docs/build.py`, under the",
           "command that writes the file and the machine that ran it. Times compare within one table only: machines",
           "of one kind differ by up to 2.5x.", ""]

    render, render01 = load(root, "render_cpu.json"), load(root, "render_cpu_op01.json")
    pick = {(r["size"], r["gaussians"]): r for r in render["results"]}
    r256 = pick.get((256, 10000))
    out.append(section(
        "Gaussian rasterizer", ["python benchmarks/bench_render.py --json bench_results/render_cpu.json",
                                "python benchmarks/bench_render.py --sizes --counts --extra 256x10000 512x20000 "
                                "--opacity 0.1 --json bench_results/render_cpu_op01.json"],
        render, render_table({"results": render["results"] + render01["results"]}),
        "The pure-PyTorch tiled rasterizer (`rasterizer=torch`) on the CPU: N Gaussians initialised as in training, "
        "one image, loss = its mean; median of 5 runs after a warm-up, peak memory the resident-set growth. "
        + (f"A 256 px training render of 10,000 Gaussians takes {r256['fwd_bwd_median_s']:.2f} s forward and "
           "backward. " if r256 else "")
        + "Opacity 0.1 (a fresh initialisation) is the slow case: splats saturate the pixels later."))

    mesh = load(root, "mesh_cpu.json")
    total = {m: stage_of(mesh, "export_total", m) for m in ("charts", "xatlas")}
    unwrap = {m: stage_of(mesh, "export/uv_unwrap", m) for m in ("charts", "xatlas")}
    shell = {r["method"]: r for r in mesh["unwraps"] if r["mesh"] == "sphere shell" and r["faces"] == 100000}
    out.append(section(
        "Gaussians to textured mesh",
        ["python main.py --config configs/toy.yaml input=data/toy/toy_100000_rgba.png save_path=toy  # the quick start",
         "python main.py --config configs/recon.yaml input=data/spot/spot_triangulated.obj save_path=spot  # Spot",
         "python benchmarks/bench_mesh.py --meshes logs/toy_mesh.obj logs/spot_mesh.obj "
         "--json bench_results/mesh_cpu.json"], mesh,
        mesh_tables(mesh),
        "Gaussians on a sphere shell. The second table is the whole export at `configs/image.yaml`'s defaults "
        "(128^3 grid, interior fill, 100,000 faces, 1024 texture, 26 bake views at 512 px) with each `uv_unwrap`: "
        f"{total['charts']:.0f} s with `charts` (the unwrap {unwrap['charts']:.1f} s), {total['xatlas']:.0f} s with "
        f"`xatlas` (the unwrap {unwrap['xatlas']:.0f} s). On the same 100,000-face mesh `charts` unwraps "
        f"{shell['xatlas']['seconds'] / shell['charts']['seconds']:.0f}x faster, with "
        f"{shell['charts']['seam_edges']:,} seam edges against {shell['xatlas']['seam_edges']:,} and "
        f"{100 * shell['charts']['utilisation']:.0f} % of the texels on a face against "
        f"{100 * shell['xatlas']['utilisation']:.0f} %. Where xatlas's time goes (its own profiler, `XA_PROFILE`, "
        "on these meshes): growing charts, which reparameterises a chart and tests its boundary after every face "
        "it adds (two thirds to nine tenths of the time), and re-cutting piece by piece the charts whose LSCM "
        "parameterisation fails its check, nearly all of them on marching-cubes meshes (most of the rest); packing "
        "takes 0.1 to 0.5 s (1 % on the 100,000-face shell), so `charts` keeps xatlas's packer. The third table is "
        "the unwrap alone, both methods on the same mesh: the shell decimated three ways, the two README examples' "
        "stage-1 meshes and Spot (utilisation: the fraction of the texels on a face). "
        "Spot's renders baked onto each fresh unwrap (`metrics.rebake`, the test of the back-projection, 512 "
        "texture) score " + " and ".join(
            f"{' / '.join(f(p, 2) for p in r['psnr'])} dB with `{r['method']}`" for r in mesh["rebakes"])
        + " at the four held-out views. The render column is a stage-2 step's mesh work "
        "(512 px forward and backward) on each export."))

    spot, first = load(root, "spot_cpu.json"), load(root, "spot_first_cpu.json")
    w, b = spot["recon"][0], first["recon"][0]
    out.append(section(
        "Reconstruction: Spot, the README's offline example",
        ["python benchmarks/bench_inputs.py --dir data/spot --recon spot_triangulated.obj --outdir logs/bench_spot_weighted "
         "--json bench_results/spot_cpu.json bake_blend=weighted",
         "python benchmarks/bench_inputs.py --dir data/spot --recon spot_triangulated.obj --outdir logs/bench_spot_first "
         "--json bench_results/spot_first_cpu.json bake_blend=first"], spot,
        table(["bake_blend", "PSNR", "SSIM", "mask IoU", "F-score@1%", "seconds"],
              [[name, f(r["psnr"], 2), f(r["ssim"]), f(r["mask_iou"]), f(r["fscore"]), r["seconds"]]
               for name, r in (("weighted (configs/recon.yaml)", w), ("first (the reference's rule)", b))]),
        "Both stages of `configs/recon.yaml` on Spot (32 renders at 256 px), scored by `scripts/eval_recon.py`'s "
        "metrics at 16 held-out views. `bake_blend: weighted` (every view that sees a texel, weighted by how "
        f"squarely) against the reference's first-view rule: {w['psnr'] - b['psnr']:+.2f} dB, so recon.yaml "
        "uses it; image mode keeps the reference's rule."))

    quick = load(root, "quickstart_cpu.json")
    out.append(section(
        "The README's quick start (the toy prior)",
        ["python main.py --config configs/toy.yaml input=data/toy/toy_100000_rgba.png save_path=toy",
         "python main2.py --config configs/toy.yaml input=data/toy/toy_100000_rgba.png save_path=toy",
         "python scripts/eval_recon.py --pred logs/toy.obj --gt data/toy/toy_100000.ply --resolution 128 "
         "--json bench_results/quickstart_cpu.json"], quick,
        table(["Chamfer-L1", "F-score@1%", "PSNR", "SSIM", "mask IoU"],
              [[f(quick["chamfer_l1"], 4), f(quick["fscore"]), f(quick["psnr"], 2), f(quick["ssim"]),
                f(quick["mask_iou"])]]),
        "One held-out toy object from its front view, both stages, against its ground-truth mesh at 16 views: the "
        "figures the README quotes."))

    inputs = load(root, "inputs_cpu.json")
    out.append(section(
        "Meshes other tools wrote",
        ["python benchmarks/bench_inputs.py --recon capsule.obj BoxTextured.glb --json bench_results/inputs_cpu.json"],
        inputs, loads_table(inputs) + "\n\n" + recon_table(inputs),
        "How each file of `tests/data/meshes` (written by Blender, Wings 3D, MeshLab and glTF exporters) loads, and "
        "how well recon mode keeps the textured ones' colours, beside the same geometry painted grey or white (what "
        "a texture lost on the way scores)."))

    splats = load(root, "splat_formats_cpu.json")
    out.append(section(
        "Splat formats", ["python benchmarks/bench_splat_formats.py logs/bench_spot_weighted/spot_triangulated_model.ply "
                          "--json bench_results/splat_formats_cpu.json"],
        splats, splat_formats_table(splats),
        f"Spot's reconstructed Gaussians ({splats['gaussians']}, SH degree {splats['sh_degree']}) written and read "
        "back in every format; PSNR of renders of the round trip against renders of the original, and PlayCanvas "
        "splat-transform's size for the same Gaussians."))

    batch = load(root, "batch_cpu.json")
    out.append(section(
        "Batch runner: Ray against local", ["python benchmarks/bench_batch.py --json bench_results/batch_cpu.json"],
        batch, batch_table(batch),
        f"{batch['jobs']} copies of a small recon input through `scripts/batch.py`; the overhead per job is the "
        "difference to running the jobs' own stage times back to back."))

    viewer = load(root, "viewer_cpu.json")
    out.append(section(
        "Live view cost", ["python benchmarks/bench_viewer.py --json bench_results/viewer_cpu.json"], viewer,
        viewer_table(viewer),
        f"Stage 1 of the Spot example with `gui=true`: the live renders took {viewer['render_seconds']:.1f} s of "
        f"{viewer['wall']:.1f} s while a browser watched (`gui_render_budget`); with nobody watching the view "
        "costs no measurable time."))

    guidance, multi = load(root, "guidance_cpu.json"), load(root, "guidance_multiview_cpu.json")
    out.append(section(
        "Guidance", ["python benchmarks/bench_guidance.py --json bench_results/guidance_cpu.json",
                     "python benchmarks/bench_guidance.py --models mvdream imagedream --json "
                     "bench_results/guidance_multiview_cpu.json"], guidance,
        guidance_table({"results": guidance["results"] + multi["results"]}),
        "One SDS step and one stage-2 refinement of each prior at its published size with random weights (the "
        "multi-view priors from single-file checkpoints in the published key layout): what a step costs on a CPU."))

    toy = load(root, "toy_cpu.json")
    out.append(section(
        "Image-to-3D with the toy prior",
        ["python benchmarks/bench_toy.py --seeds 100000 100001 100002 100003 100004 100005 100006 100007 "
         "--runs oracle trained untrained no_prior --stage2 --repeats 3 --json bench_results/toy_cpu.json"],
        toy.get("summary", {}), toy_table(toy),
        "Eight held-out toy objects from their front view, 3 seeds, both stages of `configs/toy.yaml`: the oracle (a "
        "denoiser that knows the object: what the loop makes of a perfect prior), the shipped toy prior, its "
        "architecture untrained, and no prior. Geometry is the coarse mesh's against the truth's outer surface; "
        "IoU and PSNR \"back\" are the 3 of 8 views that face away from the input."))

    scales = {s: load(root, f"toy_guidance_scale{s}_cpu.json") for s in ("5", "2", "1.5", "1")}
    scales = dict(sorted(scales.items(), key=lambda kv: -float(kv[0])))
    out.append(section(
        "Guidance scale of the toy prior",
        ["python benchmarks/bench_toy.py --seeds 100000 100001 100002 100003 100004 100005 100006 100007 --runs trained "
         "--repeats 1 guidance_scale=<G> --json bench_results/toy_guidance_scale<G>_cpu.json"], scales["5"].get("summary", {}),
        scale_table(scales),
        "Stage 1 with the toy prior at each classifier-free guidance scale (the real Zero123's is 5): lower scales "
        "build better shapes with this weak prior, hence `configs/toy.yaml`'s 1.5."))

    without, with_fill = load(root, "toy_nofill_cpu.json"), load(root, "toy_fill_cpu.json")
    out.append(section(
        "The hollow inside (`mc_close_radius`)",
        ["python benchmarks/bench_toy.py --seeds 100000 100001 100002 100003 100004 100005 100006 100007 --runs oracle "
         "trained untrained no_prior --stage2 --repeats 3 mc_close_radius=0 --json bench_results/toy_nofill_cpu.json",
         "python benchmarks/bench_toy.py --seeds 100000 100001 100002 100003 100004 100005 100006 100007 --runs oracle "
         "trained untrained no_prior --repeats 3 --remesh --json bench_results/toy_fill_cpu.json"],
        with_fill.get("summary", {}), fill_table(without, with_fill),
        "SDS shapes only what the cameras see: the Gaussians form a shell, and marching cubes meshes its hollow "
        "inside as walls no view shows. The same runs' Gaussians meshed again with the inside filled before "
        "marching cubes (`mc_close_radius`, on by default in image mode; the reference has no fill)."))

    stage2 = load(root, "stage2_oracle_cpu.json")
    out.append(section(
        "Stage 2 with a perfect prior",
        ["python benchmarks/bench_stage2.py --seeds 100000 100001 100002 --threads 1 "
         "--json bench_results/stage2_oracle_cpu.json"],
        stage2, stage2_table(stage2),
        "Stage 2 on the oracle's stage-1 meshes of 3 objects, with the oracle's SDEdit targets and with exact "
        "ones (the ground truth's renders), per setting; PSNR / SSIM at 8 views. The toy VAE's round trip bounds "
        "what the oracle's targets can give. `configs/toy.yaml` renders stage 2 at 256 px with a learning rate of "
        "0.02: the reference's rate fits the toy VAE's blurry targets too closely."))

    trained = load(root, "input_views_trained_cpu.json")
    oracle = load(root, "input_views_oracle_cpu.json")
    noprior = load(root, "input_views_noprior_cpu.json")
    meshes = load(root, "input_views_meshes_cpu.json")
    out.append(section(
        "Several input views",
        [f"python benchmarks/bench_input_views.py --seeds {' '.join(str(100000 + i) for i in range(8))} --runs {run} "
         f"--view-sets 0 0,90,180 --unseen 270 --repeats 3 ref_size=128 --json bench_results/{name}"
         for run, name in (("trained", "input_views_trained_cpu.json"),
                           ("oracle", "input_views_oracle_cpu.json"))] +
        ["python benchmarks/bench_input_views.py --seeds 100000 100001 100002 100003 100004 100005 100006 100007 "
         "--runs no_prior --view-sets 0 0,90,180 --unseen 270 --repeats 3 ref_size=128 "
         "--json bench_results/input_views_noprior_cpu.json",
         "python benchmarks/bench_input_views.py --seeds --meshes data/spot/spot_triangulated.obj "
         "tests/data/meshes/rabbit.obj tests/data/meshes/capsule.obj --json bench_results/input_views_meshes_cpu.json"],
        trained.get("settings", {}),
        view_sets_table(combined(trained, oracle, noprior)) + "\n\nReal meshes from three views, no prior, "
        "against recon mode's 32:\n\n" + meshes_table(meshes),
        "Eight held-out toy objects, 3 seeds, stage 1 at 128 px, from one view (azimuth 0) or three (0, 90, 180); "
        "\"unseen\" is the view no input faces (azimuth 270). The oracle's one view already reaches F-score@5% of "
        "1.000 on some objects, where three views can only tie."))

    prior_eval = load(root, "toy_prior_eval_cpu.json")
    out.append(section(
        "The toy prior's own quality",
        ["python toy/eval_prior.py --models models/toy-zero123 --json bench_results/toy_prior_eval_cpu.json"],
        prior_eval, prior_eval_table(prior_eval),
        "Denoising error of (input view -> target view) pairs through the guidance's own conditioning, on training "
        "and held-out objects, with the azimuth mirrored and with the camera held still; gain = 1 - eps / "
        "eps without conditions."))

    curve = load(root, "toy_prior_curve_cpu.json")
    out.append(section(
        "The toy prior's learning curve",
        ["python toy/train_prior.py --out models/toy-zero123 --init-from W1 --unet-steps 3000 --unet-lr 5e-4 "
         "--min-snr 5 --attention classic --eval-every 500"], None, curve_table(curve),
        "The shipped prior's last training run (docs/toy_prior.md), scored every 500 UNet steps on 8 held-out "
        "objects."))

    vae, step = load(root, "toy_vae_cpu.json"), load(root, "toy_step_cpu.json")
    out.append(section(
        "The toy prior's VAE",
        ["python benchmarks/bench_toy_vae.py --data WORK/data.pt --variants shipped latent16 --steps 1000 "
         "--eval-every 250 --threads 1 --json bench_results/toy_vae_cpu.json"], vae, vae_table(vae),
        "Candidate VAEs trained as the shipped one for the same steps, scored by the round trip of held-out renders."))
    out.append(section(
        "The toy prior's training step", ["python benchmarks/bench_toy_step.py --json bench_results/toy_step_cpu.json"],
        step, toy_step_table(step),
        "One UNet training step (forward, backward, AdamW) per batch size and CPU variant."))

    out.append("## Tried and not kept\n")
    out += [f"- tried: {line}, no gain." for line in TRIED]
    return "\n".join(out).rstrip() + "\n"


TRIED = [
    "mixing the two nearest input views' noise predictions for each novel view (`zero123_blend_inputs`)",
    "drawing the novel views away from the input views when there are several (`away_view_prob`)",
    "filling the cells most grid directions see the object from, behind openings wider than the closing ball "
    "(`mc_fill_occluded`)",
    "a lower RGB weight for several input views from the start, or on their colours or opacities only",
    "stage 2 compared at the toy prior's 64 px, or with residual targets (render + refined - the render's VAE "
    "round trip)",
    "training the toy prior on 32 px renders with the same 8x8 latents (`--resolution 32`)",
    "a wider toy VAE, 16x16 latents, or 8 latent channels (`benchmarks/bench_toy_vae.py` variants)",
    "a fused autograd function per chunk in the PyTorch rasterizer (less memory, slower at 256 px), chunks that "
    "grow for deep tiles, the alpha sum folded into the colour matmul",
    "xatlas's chart options on the 50,000-face shell (`max_chart_area` 1 % of the surface: 2.8x faster, "
    "`max_boundary_length`: 4x, both with a fifth fewer texels on a face; `max_cost` 0.5, `max_iterations` 0: not "
    "faster), and its brute-force packing of our charts (1 to 3 % more texels used, 6 to 18x slower)",
    "charts along 14 directions (axes and diagonals; 2.5x the charts, Spot's re-bake within 0.2 dB), or labelled by "
    "each face's own normal (4.5x the charts, 1.9x the seam edges on the sphere shell)",
]
