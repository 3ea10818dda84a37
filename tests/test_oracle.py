"""The generative loop against a perfect prior (toy/oracle.py): Zero123's guidance with its
denoiser replaced by one that knows the toy object. What the loop makes of it bounds what any prior
can get from it, and a mirrored camera convention anywhere between the guidance's embedding and the
exported mesh shows as the wrong object."""
import math
import os

import numpy as np
import pytest
import torch

from toy import objects as toy_objects
from cameras import Camera, View, orbit_camera
from helpers import ROOT


MODEL = os.path.join(ROOT, "models", "toy-zero123")
SEED = 100003  # held out; its green arm sticks out to the right: left and right differ (mirrored silhouette IoU 0.54)
EXAMPLE = os.path.join(ROOT, "data", "toy", f"toy_{SEED}_rgba.png")

# Bounds from BENCHMARKS.md (benchmarks/bench_toy.py --runs oracle ... untrained --stage2 on this object,
# 3 random seeds, mean ± std, the toy config's defaults since 2026-12-02: the hollow inside filled,
# bench_results/toy_fill_full_cpu.json): oracle F-score@5% 0.943 ± 0.004, back-view IoU 0.792 ± 0.009,
# back-view PSNR 19.21 ± 0.16 dB (stage 2 +0.08 dB, +0.0015 SSIM over stage 1); the untrained network
# 0.777 / 0.594 / 15.84; the oracle with the azimuth mirrored (these tests, seed 0) 0.760 / 0.529 /
# 14.96. Each bound lies between the oracle and both of the others.
FSCORE5_MIN = 0.88
IOU_BACK_MIN = 0.70
PSNR_BACK_MIN = 17.5


def test_camera_from_zero123_T_inverts_zero123_T():
    rng = np.random.default_rng(3)
    for _ in range(50):
        cond = orbit_camera(rng.uniform(-40, 40), rng.uniform(-180, 180), rng.uniform(1.5, 3))
        target = orbit_camera(rng.uniform(-70, 70), rng.uniform(-180, 180), rng.uniform(1.5, 3))
        back = toy_objects.camera_from_zero123_T(toy_objects.zero123_T(cond, target), cond)
        np.testing.assert_allclose(back, target, atol=1e-4)
    # Stable-Zero123's last entry is no distance: the radius is given instead
    cond, target = orbit_camera(10.0, 0.0, 2.0), orbit_camera(-20.0, 75.0, 2.0)
    T = toy_objects.zero123_T(cond, target)
    T[3] = math.radians(100)
    np.testing.assert_allclose(toy_objects.camera_from_zero123_T(T, cond, radius=2.0), target, atol=1e-4)


@pytest.fixture(scope="module")
def oracle():
    from inputs import load_input_image
    from toy.oracle import OracleZero123

    g = OracleZero123(MODEL, toy_objects.make_object(SEED), seed=0)
    rgb, mask = load_input_image(EXAMPLE, g.image_size, do_recenter=False)
    g.prepare(image=rgb, mask=mask, elevation=0.0, radius=toy_objects.RADIUS)
    return g


def views_at(azimuths, elevation=-20.0):
    return [View(Camera.orbit(elevation, a, toy_objects.RADIUS, toy_objects.FOVY, 64), elevation, a, toy_objects.RADIUS)
            for a in azimuths]


def test_oracle_reads_the_guidance_embedding_back_to_the_view_camera(oracle):
    views = views_at([30.0, -100.0, 170.0])
    for cam, v in zip(oracle.cameras(views), views):
        np.testing.assert_allclose(cam.c2w, v.camera.c2w, atol=1e-4)
    oracle.mirror_azimuth = True
    try:  # a guidance with a mirrored orbit convention: the camera on the other side of the object
        for cam, v in zip(oracle.cameras(views), views):
            np.testing.assert_allclose(cam.campos * [-1, 1, 1], v.camera.campos, atol=1e-4)
    finally:
        oracle.mirror_azimuth = False


def test_oracle_denoiser_returns_the_noise_of_the_ground_truth(oracle):
    """x_t made from the ground truth's latents at the view: its prediction is exactly the noise,
    on both classifier-free branches (guidance scale 3 changes nothing), and a step down SDS's
    gradient brings a render's latents closer to the ground truth's."""
    views = views_at([60.0, 200.0])
    x0 = oracle.x0(views)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    for step in (50, 500, 950):
        t = torch.full((2,), step, dtype=torch.long)
        eps = oracle._eps(oracle.scheduler.add_noise(x0, noise, t), t, views)
        assert torch.allclose(eps, noise, atol=2e-3), step
    far = torch.full((2, 3, 64, 64), 0.7, requires_grad=True)  # a grey render: the object is missing
    oracle.train_step(far, views, 0.5).backward()
    dist = lambda img: float((oracle.encode(img, sample=False) - x0).norm())  # noqa: E731
    with torch.no_grad():
        assert dist(far - 0.1 * far.grad / far.grad.abs().max()) < dist(far)


def oracle_run(tmp_path, mirror, stage2=True):
    from toy.runs import colour_metrics, mesh_metrics, run_stages
    from mesh import Mesh
    from toy.oracle import oracle_builder

    paths = run_stages(os.path.join(ROOT, "configs", "toy.yaml"),
                       [f"input={EXAMPLE}", "save_path=o", f"outdir={tmp_path}", f"guidance_model={MODEL}", "quiet=true",
                        "device=cpu", "seed=0"], stage2, oracle_builder(SEED, mirror))
    gt = Mesh.load(os.path.join(ROOT, "data", "toy", f"toy_{SEED}.ply"))
    m = mesh_metrics(Mesh.load(paths["coarse"]), gt)
    fine = colour_metrics(Mesh.load(paths["fine"]), gt) if stage2 else None
    print("oracle" + (" mirrored" if mirror else ""), {k: round(v, 4) for k, v in m.items() if isinstance(v, float)},
          "stage 2:", fine and {k: round(v, 4) for k, v in fine.items()})
    return m, fine


@pytest.mark.slow
def test_oracle_loop_recovers_the_object_and_stage2_improves_it(tmp_path):
    """Both stages with the perfect prior: the geometry and the back's colours beat the untrained
    network's by a wide margin, and stage 2 raises PSNR and SSIM over stage 1's texture."""
    m, fine = oracle_run(tmp_path, mirror=False)
    assert m["fscore_5"] >= FSCORE5_MIN, m
    assert m["iou_back"] >= IOU_BACK_MIN, m
    assert fine["psnr_back"] >= PSNR_BACK_MIN, fine
    assert fine["psnr"] > m["psnr"] and fine["ssim"] > m["ssim"], (m, fine)


@pytest.mark.slow
def test_mirrored_azimuth_makes_the_mirror_image(tmp_path):
    """The same loop with the guidance's azimuth mirrored: the oracle describes the mirror image of
    this asymmetric object, SDS, densification and export build it, and it falls below the bounds
    the correct convention reaches. This pins the camera convention end to end. Stage 1 only: the
    mirror is in its geometry and colours already (stage 2 repaints the texture, the correct run's
    stage 1 clears the back-view PSNR bound by itself: 19.25 dB)."""
    m, _ = oracle_run(tmp_path, mirror=True, stage2=False)
    assert m["iou_back"] < IOU_BACK_MIN, m
    assert m["psnr_back"] < PSNR_BACK_MIN, m
    assert m["fscore_5"] < FSCORE5_MIN, m


def test_bench_toy_scores_the_oracle_and_both_stages():
    """bench_toy's judgements from per-run rows: the trained prior's wins over the baselines (the
    oracle is no baseline), the oracle against the untrained network, stage 2's gain per run."""
    from toy.summary import score, summarise, table

    def row(f5, iou_back, psnr_back, p1, p2, s1, s2):
        return {"chamfer": 0.05, "fscore": f5 / 4, "fscore_5": f5, "iou": iou_back, "iou_back": iou_back,
                "psnr_back": psnr_back, "psnr": p2, "ssim": s2, "psnr_stage1": p1, "psnr_stage2": p2,
                "ssim_stage1": s1, "ssim_stage2": s2}
    results = {"100000": {"oracle": [row(0.95, 0.9, 20.0, 21.0, 21.2, 0.88, 0.89)] * 2,
                          "trained": [row(0.80, 0.8, 18.0, 19.0, 19.1, 0.85, 0.84)] * 2,
                          "untrained": [row(0.70, 0.7, 17.0, 18.0, 18.1, 0.84, 0.85)] * 2,
                          "no_prior": [row(0.60, 0.6, 16.0, 17.0, 17.0, 0.83, 0.83)] * 2}}
    score(results, "100000")
    e = results["100000"]
    assert e["wins"]["iou_back"]["win"] and e["wins"]["psnr_back"]["margin"] == pytest.approx(1.0)
    assert all(c["beats"] for c in e["oracle_vs_untrained"].values())
    assert e["stage2_gain"]["trained"]["ssim"] == pytest.approx(-0.01)
    results["summary"] = summarise(results)
    sm = results["summary"]
    assert sm["oracle_beats_untrained_all"] == 1 and sm["wins_both"] == 1
    assert sm["stage2_improves"] == {"oracle": 1, "trained": 0, "untrained": 1, "no_prior": 0}
    assert sm["oracle"]["psnr_stage2"] == pytest.approx(21.2)
    text = table(results)
    assert "PSNR st.2" in text and "oracle beats the untrained network" in text and "| 100000 | oracle |" in text


def test_quickstart_picture_grid_and_bad_input(tmp_path):
    from helpers import cli
    from toy.pictures import draw

    out = tmp_path / "grid.png"
    tiles = [np.full((16, 16, 3), 0.5, np.float32)] * 3
    draw([("a:\nstage 1", tiles), ("b", tiles)], np.ones((32, 32, 4), np.float32), [0.0, 90.0, 180.0], 16, str(out))
    from PIL import Image

    im = Image.open(out)
    assert im.size == (150 + 16 * 4, 18 + 16 * 2)
    r = cli("toy/quickstart_pictures.py", "--input", os.path.join(ROOT, "data", "anya_rgba.png"))
    assert r.returncode == 2 and "not a held-out toy example" in r.stderr and r.stderr.count("\n") == 1
    r = cli("benchmarks/bench_stage2.py", "--seeds", "7")
    assert r.returncode == 2 and "training objects" in r.stderr
