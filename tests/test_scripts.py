import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import cli
from io_utils import load_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = os.path.join(ROOT, "data", "ghost_rgba.png")
SPOT = os.path.join(ROOT, "data", "spot", "spot_triangulated.obj")


def run(*args):
    return cli(*args, timeout=600)


def test_process_recentres_and_resizes(tmp_path):
    from PIL import Image

    img = np.zeros((100, 80, 4), np.uint8)
    img[10:30, 5:25] = 255  # a small square in a corner
    Image.fromarray(img, "RGBA").save(tmp_path / "sq.png")
    r = run("process.py", str(tmp_path / "sq.png"), "--size", "64", "--border_ratio", "0.25")
    assert r.returncode == 0, r.stderr
    out = np.asarray(Image.open(tmp_path / "sq_rgba.png"))
    assert out.shape == (64, 64, 4)
    ys, xs = np.nonzero(out[..., 3] > 127)
    assert abs(ys.mean() - 31.5) < 1.5 and abs(xs.mean() - 31.5) < 1.5  # centred
    assert 44 <= ys.max() - ys.min() + 1 <= 50  # fills 1 - 0.25 of the frame


def test_turntable_writes_gif_and_grid(tmp_path):
    r = run("scripts/turntable.py", SPOT, "--out", str(tmp_path / "t.gif"), "--frames", "6", "--size", "64",
            "--grid", "3")
    assert r.returncode == 0, r.stderr
    import imageio.v2 as imageio

    frames = imageio.mimread(tmp_path / "t.gif")
    assert len(frames) == 6
    grid = imageio.imread(tmp_path / "t_grid.png")
    assert grid.shape[:2] == (64, 192)
    assert (grid < 250).any()  # something was drawn


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    path = str(tmp_path_factory.mktemp("clip"))
    torch.manual_seed(0)
    cfg = CLIPConfig(text_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                                      vocab_size=100),
                     vision_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4,
                                        num_hidden_layers=2, image_size=32, patch_size=8), projection_dim=16)
    CLIPModel(cfg).save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def test_clip_similarity_with_a_tiny_clip(tiny_clip):
    from metrics import clip_similarity, embed, load_clip

    r = clip_similarity(IMAGE, SPOT, tiny_clip, views=3, size=64)
    assert -1 <= r["clip_similarity"] <= 1 and len(r["per_view"]) == 3
    m, p = load_clip(tiny_clip)
    a = np.random.rand(40, 40, 3).astype(np.float32)
    e = embed(m, p, [a, a, 1 - a])
    assert torch.allclose(e[0] @ e[1], torch.tensor(1.0), atol=1e-5) and (e[0] @ e[2]) < 0.9999


def test_clip_eval_missing_model_is_one_line(tmp_path):
    r = run("scripts/clip_eval.py", "--image", IMAGE, "--mesh", SPOT, "--model", str(tmp_path / "noclip"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "CLIP model" in r.stderr


def test_eval_metrics_on_known_cases():
    from metrics import chamfer_fscore

    from mesh import Mesh

    spot = Mesh.load(SPOT)
    same = chamfer_fscore(spot, spot, 20000)
    assert same["fscore"] == 1.0 and same["chamfer_l1"] == 0.0
    # two parallel unit squares d apart: every nearest distance is d
    sq = lambda z: Mesh(torch.tensor([[0, 0, z], [1, 0, z], [1, 1, z], [0, 1, z]], dtype=torch.float32),  # noqa
                        torch.tensor([[0, 1, 2], [0, 2, 3]]))
    for d, f in ((0.005, 1.0), (0.05, 0.0)):  # tau = 1% of the diagonal sqrt(2) = 0.0141
        r = chamfer_fscore(sq(d), sq(0.0), 5000)
        assert r["chamfer_l1"] == pytest.approx(d, rel=1e-3) and r["fscore"] == f


def test_winding_numbers_and_outer_surface_against_exact_spheres():
    """The generalised winding number is 1 inside a closed outward surface and 0 outside (checked
    against the exact sphere away from its faceted boundary); outer_surface drops exactly the faces
    of two overlapping spheres that lie inside the other one, whether or not the mesh repeats its
    vertices along UV seams, and leaves a mesh of one part as it is."""
    import trimesh

    from metrics import outer_surface, winding_numbers
    from mesh import Mesh

    ball = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    pts = np.random.default_rng(0).uniform(-0.8, 0.8, (2000, 3))
    r = np.linalg.norm(pts, axis=1)
    clear = np.abs(r - 0.5) > 0.01  # the icosphere's faces lie within 0.4 % of the radius of the sphere
    w = winding_numbers(pts, ball.vertices, ball.faces)
    assert np.allclose(w[clear], (r[clear] < 0.5).astype(float), atol=1e-6)

    shift = np.array([0.6, 0.0, 0.0])
    v = np.concatenate([ball.vertices, ball.vertices + shift])
    f = np.concatenate([ball.faces, ball.faces + len(ball.vertices)])
    two = Mesh(torch.tensor(v, dtype=torch.float32), torch.tensor(f))
    centroids = v[f].mean(1)
    other = np.where(np.arange(len(f)) < len(ball.faces), 1, 0)[:, None] * shift  # the other sphere's centre
    d = np.linalg.norm(centroids - other, axis=1)
    out = outer_surface(two)
    kept = {tuple(x) for x in out.f.tolist()}
    for face, dist in zip(f.tolist(), d):
        if abs(dist - 0.5) > 0.02:
            assert (tuple(face) in kept) == (dist > 0.5)
    assert len(ball.faces) < len(out.f) < 2 * len(ball.faces)
    # the same spheres with every face's corners its own vertices (as a UV-split OBJ): same faces kept
    split = Mesh(torch.tensor(v[f].reshape(-1, 3), dtype=torch.float32), torch.arange(3 * len(f)).reshape(-1, 3))
    assert len(outer_surface(split).f) == len(out.f)
    one = Mesh(torch.tensor(ball.vertices, dtype=torch.float32), torch.tensor(ball.faces))
    assert outer_surface(one) is one


@pytest.mark.slow
def test_batch_runs_resumes_and_survives_failures(tmp_path, zero123_path):
    from PIL import Image

    data = tmp_path / "imgs"
    data.mkdir()
    img = Image.open(IMAGE)
    img.save(data / "good_rgba.png")
    Image.fromarray(np.zeros((8, 8, 4), np.uint8), "RGBA").save(data / "bad_rgba.png")
    out = tmp_path / "out"
    small = ["iters=3", "iters_refine=1", "ref_size=64", "resolution_schedule=[32,64]", "resolution_milestones=[0.5]",
             "num_pts=500", "mc_resolution=32", "mc_num_blocks=4", "texture_size=64", "bake_resolution=32",
             "bake_num_azimuth=2", "bake_elevations=[0]", "refine_resolution=32", "refine_inference_steps=4",
             f"guidance_model={zero123_path}", "device=cpu", "density_thresh=0.05"]
    r = run("scripts/batch.py", "--dir", str(data), "--outdir", str(out), *small)
    assert r.returncode == 1, r.stdout + r.stderr  # one image failed
    assert "| good | ok |" in r.stdout and "| bad | failed |" in r.stdout, r.stdout
    assert re.search(r"\| bad \| failed \| [\d.]+ \|  \| 2 \| main.py: error: .*at least 32x32", r.stdout), r.stdout
    assert (out / "good.obj").is_file() and "at least 32x32" in (out / "bad.log").read_text()
    # a rerun from another folder with relative paths: the same outputs are found and skipped, and
    # the failing image is retried with its paths intact (its log is rewritten in out/)
    (out / "bad.log").unlink()
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "batch.py"), "--dir", "imgs", "--outdir", "out",
                        *small], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert "| good | skipped |" in r.stdout, r.stdout + r.stderr
    assert "at least 32x32" in (out / "bad.log").read_text()


@pytest.mark.slow
def test_mesh_from_ply_remeshes_without_training(tmp_path):
    from gaussians import sphere_of_gaussians

    sphere_of_gaussians(6000, radius=0.5, scale=0.03).save_ply(str(tmp_path / "s.ply"))
    args = ["mc_resolution=32", "mc_num_blocks=4", "texture_size=64", "bake_resolution=32", "bake_num_azimuth=2",
            "bake_elevations=[0]", "decimate_target=2000"]
    r = run("scripts/mesh_from_ply.py", str(tmp_path / "s.ply"), "--out", str(tmp_path / "s.glb"), *args)
    assert r.returncode == 0, r.stderr
    from mesh import Mesh

    m = Mesh.load(str(tmp_path / "s.glb"))
    assert m.albedo is not None and abs(float(m.v.norm(dim=1).mean()) - 0.55) < 0.05
    r = run("scripts/mesh_from_ply.py", str(tmp_path / "s.ply"), "--out", str(tmp_path / "t.obj"), *args,
            "density_thresh=1000")
    assert r.returncode == 2 and "try a threshold" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_gpu_check_smoke_run_on_the_cpu(tmp_path):
    """scripts/gpu_check.py's steps with the tiny model: parity tests (skipped without CUDA),
    the rasterizer benchmark, both stages on a hub-layout checkpoint and every prior's SDS step,
    into one JSON."""
    out = tmp_path / "gc.json"
    r = run("scripts/gpu_check.py", "--tiny", "--device", "cpu", "--iters", "3", "--iters-refine", "1",
            "--skip-install", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    rep = load_json(out)
    assert rep["parity_tests"]["rc"] == 0
    assert rep["render_bench"]["results"] and rep["render_bench"]["results"][0]["backend"] == "torch"
    p = rep["pipeline"]
    assert p["stage1"]["iters"] == 3 and p["stage1"]["train"] > 0 and p["stage1"]["mesh_export"] > 0
    assert p["stage2"]["iters_refine"] == 1 and p["stage2"]["train"] > 0
    rows = rep["guidance_bench"]["results"]  # one SDS step and one refinement of every prior
    assert {(r["model"], r["op"]) for r in rows} == {(m + " (tiny)", op) for m in ("zero123", "sd", "mvdream", "imagedream")
                                                     for op in ("sds_step", "refine_10_steps")}
    r = run("scripts/gpu_check.py", "--out", str(tmp_path / "x.json"))
    if not torch.cuda.is_available():
        assert r.returncode == 2 and "no CUDA device" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_finetune_decoder_trains_the_decoder_only_and_records_it(tmp_path):
    """The shipped prior's VAE, a few decoder steps on 2 training objects: the encoder (so the latents
    the UNet knows, and stage 1) bit-identical, the decoder moved, the run appended to training.json;
    a second run without --again is a one-line refusal that leaves the folder as it was."""
    import json
    import shutil

    from safetensors.torch import load_file

    model = tmp_path / "toy"
    shutil.copytree(os.path.join(ROOT, "models", "toy-zero123", "vae"), model / "vae")
    record = load_json(os.path.join(ROOT, "models", "toy-zero123", "training.json"))
    record.pop("decoder_finetune", None)  # the shipped decoder was fine-tuned: start from before that
    (model / "training.json").write_text(json.dumps(record))
    before = load_file(str(model / "vae" / "diffusion_pytorch_model.safetensors"))
    args = ["toy/finetune_decoder.py", "--model", str(model), "--work", str(tmp_path / "work"), "--objects", "2",
            "--views", "2", "--steps", "3", "--batch", "2", "--eval-objects", "1", "--threads", "1"]
    r = run(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    after = load_file(str(model / "vae" / "diffusion_pytorch_model.safetensors"))
    assert before.keys() == after.keys()
    for k in before:  # each trained tensor moved, each frozen one is bit-identical
        assert torch.equal(before[k], after[k]) != k.startswith(("decoder.", "post_quant_conv.")), k
    runs = load_json(model / "training.json")["decoder_finetune"]
    assert len(runs) == 1 and runs[0]["steps"] == 3 and set(runs[0]["heldout_roundtrip"]) >= {"before", "after"}
    r = run(*args)
    assert r.returncode == 2 and "--again" in r.stderr and "Traceback" not in r.stderr
    assert len(load_json(model / "training.json")["decoder_finetune"]) == 1
