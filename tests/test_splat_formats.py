"""Splat files as other tools write them, checked against @playcanvas/splat-transform, the formats'
reference implementation: its files (tests/data/splats, written by splat-transform 3.7.0 from
source.ply) decode to the Gaussians it was given, and it reads ours back to the same Gaussians
(where npm installed it into tools/, as .ci/run does; skipped with a message elsewhere)."""
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from gaussians import GaussianModel
from helpers import ROOT, cli, make_gaussians

DATA = os.path.join(ROOT, "tests", "data", "splats")
SOURCE = os.path.join(DATA, "source.ply")  # 300 Gaussians, SH degree 1 (helpers.make_gaussians(300, seed=7, sh_degree=1))
SPLAT_TRANSFORM = os.path.join(ROOT, "tools", "node_modules", ".bin", "splat-transform")


def assert_refused(tmp_path, cases):
    """convert_splat on each (file name, words): exit 2, one line containing the words, nothing written."""
    for name, words in cases:
        r = cli("scripts/convert_splat.py", str(tmp_path / name), "--out", str(tmp_path / "x.ply"))
        assert r.returncode == 2 and words in r.stderr and r.stderr.count("\n") == 1, r.stderr
        assert not os.path.exists(tmp_path / "x.ply")


def splat_transform(*args):
    """Run the reference implementation (npm install --prefix tools @playcanvas/splat-transform@3.7.0)."""
    if not (os.path.isfile(SPLAT_TRANSFORM) and shutil.which("node")):
        pytest.skip("splat-transform not installed (npm install --prefix tools @playcanvas/splat-transform@3.7.0)")
    r = subprocess.run([SPLAT_TRANSFORM, "-w", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def matched(decoded: dict, original: dict):
    """``original`` reordered to ``decoded``'s Gaussians (writers reorder them: Morton order), by position."""
    d = torch.cdist(torch.from_numpy(decoded["means"]).double(), torch.from_numpy(original["means"]).double())
    idx = d.argmin(1).numpy()
    assert len(set(idx.tolist())) == len(idx), "positions do not match one to one"
    return {k: (v[idx] if isinstance(v, np.ndarray) else v) for k, v in original.items()}


def unit(q):
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    return q


def assert_within_quantisation(dec: dict, orig: dict, extent: float):
    """The compressed PLY's quantisation: positions to 1/1023 of a chunk's extent, log scales to 1/1023
    of theirs, colours and opacity to 8 bits, rotations to 10 bits, SH rest to 8 bits over [-4, 4]."""
    o = matched(dec, orig)
    assert np.abs(dec["means"] - o["means"]).max() <= extent / 1023 + 1e-6
    assert np.abs(dec["scales"] - o["scales"]).max() <= 0.01
    rgb = lambda a: 0.5 + 0.28209479 * a["sh0"]  # noqa: E731
    assert np.abs(rgb(dec) - rgb(o)).max() <= 1 / 255 + 1e-6
    alpha = lambda a: 1 / (1 + np.exp(-a["opacities"]))  # noqa: E731
    assert np.abs(alpha(dec) - alpha(o)).max() <= 0.5 / 255 + 1e-6
    assert np.abs(np.abs((unit(dec["quats"]) * unit(o["quats"])).sum(1)) - 1).max() < 1e-5
    assert np.abs(dec["shN"] - o["shN"]).max() <= 8 / 256 + 1e-6
    assert dec["sh_degree"] == o["sh_degree"]


def test_splat_transform_compressed_ply_decodes_to_its_source():
    """The committed file splat-transform wrote from source.ply reads, by its content, as the
    Gaussians of source.ply within the format's quantisation."""
    src = GaussianModel.load(SOURCE).arrays()
    dec = GaussianModel.load(os.path.join(DATA, "st.compressed.ply")).arrays()
    assert len(dec["means"]) == 300
    assert_within_quantisation(dec, src, float((src["means"].max(0) - src["means"].min(0)).max()))


def test_our_compressed_ply_round_trips_and_is_found_by_content(tmp_path):
    src = GaussianModel.load(SOURCE)
    src.save(str(tmp_path / "a.compressed.ply"))
    shutil.copy(tmp_path / "a.compressed.ply", tmp_path / "renamed.ply")  # a .ply name: told apart by content
    for name in ("a.compressed.ply", "renamed.ply"):
        dec = GaussianModel.load(str(tmp_path / name)).arrays()
        a = src.arrays()
        assert_within_quantisation(dec, a, float((a["means"].max(0) - a["means"].min(0)).max()))
    # SH degree 0 writes no 'sh' element, degree 3 all 45 rest coefficients
    for deg in (0, 3):
        g = make_gaussians(n=40, seed=deg, sh_degree=deg)
        g.save(str(tmp_path / f"d{deg}.compressed.ply"))
        back = GaussianModel.load(str(tmp_path / f"d{deg}.compressed.ply"))
        assert back.sh_degree == deg and len(back) == 40


def test_splat_transform_reads_our_compressed_ply_as_we_do(tmp_path):
    """The reference decodes our file to exactly what our reader decodes (same file, same order)."""
    GaussianModel.load(SOURCE).save(str(tmp_path / "ours.compressed.ply"))
    splat_transform(str(tmp_path / "ours.compressed.ply"), str(tmp_path / "theirs.ply"))
    ours = GaussianModel.load(str(tmp_path / "ours.compressed.ply")).arrays()
    theirs = GaussianModel.load(str(tmp_path / "theirs.ply")).arrays()
    for k in ("means", "scales", "opacities", "sh0", "shN"):
        np.testing.assert_allclose(ours[k], theirs[k], atol=1e-5, err_msg=k)
    np.testing.assert_allclose(np.abs((unit(ours["quats"]) * unit(theirs["quats"])).sum(1)), 1, atol=1e-5)


def assert_within_spz_quantisation(dec: dict, orig: dict):
    """The .spz's quantisation: positions to 1/4096, log scales to 1/16, colour to 1/(0.15 * 255) of
    f_dc, opacity to 8 bits, rotations to 9 bits, SH degree 1 to 5 bits and the rest to 4, of +-1."""
    assert np.abs(dec["means"] - orig["means"]).max() <= 0.5 / 4096 + 1e-6
    assert np.abs(dec["scales"] - orig["scales"]).max() <= 0.5 / 16 + 1e-6
    assert np.abs(dec["sh0"] - orig["sh0"]).max() <= 0.5 / (0.15 * 255) + 1e-5
    alpha = lambda a: 1 / (1 + np.exp(-a["opacities"]))  # noqa: E731
    assert np.abs(alpha(dec) - alpha(orig)).max() <= 0.5 / 255 + 1e-6
    assert np.abs(np.abs((unit(dec["quats"]) * unit(orig["quats"])).sum(1)) - 1).max() < 1e-4
    assert np.abs(dec["shN"][:, :3] - orig["shN"][:, :3]).max() <= (4 + 1) / 128  # half a bucket of 8, and rounding
    assert np.abs(dec["shN"][:, 3:] - orig["shN"][:, 3:]).max(initial=0) <= (8 + 1) / 128
    assert dec["sh_degree"] == orig["sh_degree"]


def test_splat_transform_spz_decodes_to_its_source():
    """The committed .spz splat-transform wrote (version 4: zstd streams) reads as source.ply, in
    the same order, within the format's quantisation; coordinates are not flipped."""
    dec = GaussianModel.load(os.path.join(DATA, "st.spz")).arrays()
    assert_within_spz_quantisation(dec, GaussianModel.load(SOURCE).arrays())


def test_our_spz_is_read_by_splat_transform_as_we_read_it(tmp_path):
    src = GaussianModel.load(SOURCE)
    src.save(str(tmp_path / "ours.spz"))
    ours = GaussianModel.load(str(tmp_path / "ours.spz")).arrays()
    assert_within_spz_quantisation(ours, src.arrays())
    # byte for byte the attribute streams splat-transform (Niantic's packer) writes, but for rounding
    from splat_formats import _spz_streams

    a = _spz_streams(Path(tmp_path / "ours.spz").read_bytes(), "ours")[1]
    b = _spz_streams(Path(os.path.join(DATA, "st.spz")).read_bytes(), "theirs")[1]
    for x, y in zip(a, b):
        assert len(x) == len(y) and np.mean(np.frombuffer(x, np.uint8) != np.frombuffer(y, np.uint8)) < 0.01
    splat_transform(str(tmp_path / "ours.spz"), str(tmp_path / "theirs.ply"))
    theirs = GaussianModel.load(str(tmp_path / "theirs.ply")).arrays()
    for k in ("means", "scales", "opacities", "sh0", "shN"):
        np.testing.assert_allclose(ours[k], theirs[k], atol=1e-5, err_msg=k)


def assert_close_to_sog(dec: dict, src: dict):
    """SOG's quantisation: 16-bit positions (of the log-mapped range), 256-entry codebooks for log
    scales and f_dc, 8-bit opacity, 8-bit smallest-three rotations, an SH palette (k-means) whose
    entries index a 256-value codebook."""
    o = matched(dec, src)
    assert np.abs(dec["means"] - o["means"]).max() < 1e-4
    assert np.abs(dec["scales"] - o["scales"]).max() < 0.02
    assert np.abs(dec["sh0"] - o["sh0"]).max() < 0.02
    alpha = lambda a: 1 / (1 + np.exp(-a["opacities"]))  # noqa: E731
    assert np.abs(alpha(dec) - alpha(o)).max() <= 1 / 255 + 1e-6
    assert np.abs(np.abs((unit(dec["quats"]) * unit(o["quats"])).sum(1)) - 1).max() < 1e-3
    assert np.abs(dec["shN"] - o["shN"]).mean() < 0.03 and np.abs(dec["shN"] - o["shN"]).max() < 0.35
    assert dec["sh_degree"] == o["sh_degree"]


def test_splat_transform_sog_decodes_to_its_source():
    """The committed .sog splat-transform wrote (-g cpu: its k-means on the CPU) reads as source.ply."""
    assert_close_to_sog(GaussianModel.load(os.path.join(DATA, "st.sog")).arrays(), GaussianModel.load(SOURCE).arrays())


def test_our_sog_is_read_by_splat_transform_as_we_read_it(tmp_path):
    src = GaussianModel.load(SOURCE)
    src.save(str(tmp_path / "ours.sog"))
    ours = GaussianModel.load(str(tmp_path / "ours.sog")).arrays()
    assert_close_to_sog(ours, src.arrays())
    splat_transform(str(tmp_path / "ours.sog"), str(tmp_path / "theirs.ply"))
    theirs = GaussianModel.load(str(tmp_path / "theirs.ply")).arrays()
    for k in ("means", "scales", "opacities", "sh0", "shN"):
        np.testing.assert_allclose(ours[k], theirs[k], atol=1e-5, err_msg=k)


def test_damaged_sog_is_a_one_line_error(tmp_path):
    import zipfile

    data = Path(os.path.join(DATA, "st.sog")).read_bytes()
    (tmp_path / "cut.sog").write_bytes(data[:len(data) // 2])
    with zipfile.ZipFile(os.path.join(DATA, "st.sog")) as z, zipfile.ZipFile(tmp_path / "nomeans.sog", "w") as out:
        for name in z.namelist():
            if name != "means_u.webp":
                out.writestr(name, z.read(name))
    assert_refused(tmp_path, (("cut.sog", "not a readable SOG bundle"), ("nomeans.sog", "lacks means_u.webp")))


def test_splat_transform_glb_decodes_to_its_source_turned_about_z():
    """The committed .glb splat-transform wrote from source.ply: every attribute, float32, with the
    turn it applies on the way (it takes a .ply to be y-down and glTF y-up: 180 degrees about z, so
    x and y negate, rotations are pre-multiplied by z's half-turn and the SH x and y terms flip)."""
    dec = GaussianModel.load(os.path.join(DATA, "st.glb")).arrays()
    src = GaussianModel.load(SOURCE).arrays()
    np.testing.assert_allclose(dec["means"], src["means"] * [-1, -1, 1], atol=1e-6)
    for k in ("scales", "opacities", "sh0"):
        np.testing.assert_allclose(dec[k], src[k], atol=1e-5, err_msg=k)
    w, x, y, z = src["quats"].T
    turned = np.stack([-z, -y, x, w], 1)
    np.testing.assert_allclose(np.abs((unit(dec["quats"]) * unit(turned)).sum(1)), 1, atol=1e-5)
    np.testing.assert_allclose(dec["shN"], src["shN"] * np.array([-1, 1, -1])[None, :, None], atol=1e-6)


def gltf_validator_codes(path):
    node = shutil.which("node")
    if not (node and os.path.isdir(os.path.join(ROOT, "tools", "node_modules", "gltf-validator"))):
        pytest.skip("Khronos glTF-Validator not installed (npm install --prefix tools gltf-validator)")
    r = subprocess.run([node, os.path.join(ROOT, "tools", "gltf_validate.js"), path], capture_output=True, text=True,
                       timeout=120)
    import json

    report = json.loads(r.stdout)
    return report


def test_our_glb_round_trips_and_validates_as_the_reference_does(tmp_path):
    """Our .glb keeps every attribute exactly (float32), and the Khronos glTF-Validator (2.0.0-dev.3.10,
    which predates the extension) reports on it only what it reports on splat-transform's own file:
    MESH_PRIMITIVE_INVALID_ATTRIBUTE for each KHR_gaussian_splatting:* attribute name, nothing else."""
    src = GaussianModel.load(SOURCE)
    src.save(str(tmp_path / "ours.glb"))
    dec, a = GaussianModel.load(str(tmp_path / "ours.glb")).arrays(), src.arrays()
    for k in ("means", "scales", "opacities", "sh0", "shN"):
        np.testing.assert_allclose(dec[k], a[k], atol=1e-5, err_msg=k)
    np.testing.assert_allclose(dec["quats"], unit(a["quats"]), atol=1e-6)  # unit, as the extension requires
    ours, theirs = gltf_validator_codes(str(tmp_path / "ours.glb")), gltf_validator_codes(os.path.join(DATA, "st.glb"))
    assert ours["errors"] == theirs["errors"] == 7 and ours["warnings"] == theirs["warnings"] == 0, (ours, theirs)
    for report in (ours, theirs):
        assert all(m["code"] == "MESH_PRIMITIVE_INVALID_ATTRIBUTE" and "KHR_gaussian_splatting:" in m["pointer"]
                   for m in report["messages"]), report


def babylon_rows(path, tmp_path):
    """The splat rows Babylon.js's glTF loader (its KHR_gaussian_splatting extension) decodes from
    ``path``, read through tools/babylon_splat.mjs (headless), as a .splat structured array."""
    node = shutil.which("node")
    if not (node and os.path.isdir(os.path.join(ROOT, "tools", "node_modules", "@babylonjs", "loaders"))):
        pytest.skip("Babylon.js not installed (npm install --prefix tools @babylonjs/core@9.28.0 "
                    "@babylonjs/loaders@9.28.0 babylonjs-gltf2interface@9.28.0)")
    out = tmp_path / "babylon.splat"
    r = subprocess.run([node, os.path.join(ROOT, "tools", "babylon_splat.mjs"), path, str(out)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return np.fromfile(out, GaussianModel.SPLAT_DTYPE)


def test_babylon_reads_our_glb_as_the_gaussians_we_wrote(tmp_path):
    """A viewer that reads KHR_gaussian_splatting: Babylon.js 9.28's glTF loader takes our .glb to the
    Gaussians we wrote, in our order: positions and linear scales exactly, colour (0.5 + SH_C0 f_dc)
    and opacity to its byte, rotations to its byte (it packs q * 127.5 + 127.5 unnormalised, so the
    unit quaternions the extension requires are what make this hold)."""
    a = GaussianModel.load(SOURCE).arrays()
    path = str(tmp_path / "ours.glb")
    GaussianModel.from_arrays(a).save(path)
    rows = babylon_rows(path, tmp_path)
    assert len(rows) == len(a["means"])
    np.testing.assert_array_equal(rows["position"], a["means"])
    np.testing.assert_allclose(rows["scale"], np.exp(a["scales"]), rtol=1e-6)
    rgb = np.clip((0.5 + 0.28209479177387814 * a["sh0"].reshape(-1, 3)) * 255, 0, 255)
    assert np.abs(rows["rgba"][:, :3] - rgb).max() <= 0.51
    assert np.abs(rows["rgba"][:, 3] - 255 / (1 + np.exp(-a["opacities"]))).max() <= 0.51
    q = unit(a["quats"])  # w, x, y, z, as Babylon's rows
    assert np.abs((rows["rot"].astype(np.float64) - 127.5) / 127.5 - q).max() <= 0.51 / 127.5


def test_glb_that_is_a_mesh_or_damaged_is_a_one_line_error(tmp_path):
    data = Path(os.path.join(DATA, "st.glb")).read_bytes()
    (tmp_path / "cut.glb").write_bytes(data[:len(data) - 500])
    import trimesh

    trimesh.creation.box().export(tmp_path / "box.glb")
    assert_refused(tmp_path, (("cut.glb", "truncated"), ("box.glb", "no KHR_gaussian_splatting primitive")))


def test_damaged_spz_is_a_one_line_error(tmp_path):
    data = Path(os.path.join(DATA, "st.spz")).read_bytes()
    (tmp_path / "cut.spz").write_bytes(data[:len(data) - 100])
    (tmp_path / "junk.spz").write_bytes(b"NGSP" + bytes(60))
    assert_refused(tmp_path, (("cut.spz", "truncated or inconsistent"), ("junk.spz", "not supported")))


def test_damaged_compressed_ply_is_a_one_line_error(tmp_path):
    data = Path(os.path.join(DATA, "st.compressed.ply")).read_bytes()
    (tmp_path / "cut.compressed.ply").write_bytes(data[:len(data) // 2])
    head = data[:data.index(b"end_header")]
    (tmp_path / "bad.compressed.ply").write_bytes(head.replace(b"element chunk 2", b"element chunk 1")
                                                  + data[len(head):-72])  # one chunk row fewer, same body
    assert_refused(tmp_path, (("cut.compressed.ply", "truncated or damaged"), ("bad.compressed.ply", "chunks for 300")))


@pytest.mark.slow
def test_convert_splat_writes_by_the_destination_and_refuses_what_it_cannot(tmp_path):
    r = cli("scripts/convert_splat.py", SOURCE, "--out", str(tmp_path / "a.compressed.ply"))
    assert r.returncode == 0, r.stderr
    assert b"packed_position" in (tmp_path / "a.compressed.ply").read_bytes()[:2000]
    r = cli("scripts/convert_splat.py", str(tmp_path / "a.compressed.ply"), "--out", str(tmp_path / "b.splat"))
    assert r.returncode == 0 and len(GaussianModel.load(str(tmp_path / "b.splat"))) == 300, r.stderr
    r = cli("scripts/convert_splat.py", str(tmp_path / "b.splat"), "--out", str(tmp_path / "c.spz"))
    assert r.returncode == 0 and (tmp_path / "c.spz").read_bytes()[:4] == b"NGSP", r.stderr
    r = cli("scripts/convert_splat.py", SOURCE, "--out", str(tmp_path / "a.xyz"))
    assert r.returncode == 2 and "cannot write" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not os.path.exists(tmp_path / "a.xyz")


def test_recon_and_viewer_take_a_compressed_ply_as_gaussians(tmp_path):
    """Wherever a Gaussian file is read: recon's input= (rendered with the Gaussian renderer),
    the viewer's file type check."""
    from config import load_config
    from posed_views import is_gaussian_ply, load_views

    from posed_views import is_gaussian_file

    path = os.path.join(DATA, "st.compressed.ply")
    assert is_gaussian_ply(path)
    for name in ("st.spz", "st.sog", "st.glb"):
        assert is_gaussian_file(os.path.join(DATA, name)), name
    cfg = load_config(os.path.join(ROOT, "configs", "recon.yaml"), [f"input={path}", "save_path=x", "recon_num_views=2",
                                                                    "ref_size=32"])
    views = load_views(path, cfg, "cpu")
    assert len(views) == 2 and float(views.masks.max()) > 0.5


@pytest.mark.parametrize("fmt", ["compressed.ply", "spz", "sog", "glb"])
def test_stage1_writes_splat_format_and_load_reads_it(tmp_path, fmt):
    """splat_format= names the stage-1 Gaussians' format; load= continues from that file; recon's
    input= takes it as Gaussians (rendered with the Gaussian renderer)."""
    from config import load_config
    from trainer import Stage1

    spot = os.path.join(ROOT, "data", "spot", "spot_triangulated.obj")
    small = ["recon_num_views=2", "ref_size=32", "num_pts=200", "mc_resolution=32", "mc_num_blocks=2",
             "texture_size=32", "bake_resolution=32", "density_thresh=0.05", "quiet=true"]
    cfg = load_config(os.path.join(ROOT, "configs", "recon.yaml"),
                      [f"input={spot}", f"outdir={tmp_path}", "save_path=s", f"splat_format={fmt}", "iters=3", *small])
    Stage1(cfg, log=lambda *a: None).run()
    out = tmp_path / f"s_model.{fmt}"
    assert out.is_file() and not (tmp_path / "s_model.ply").exists()
    n = len(GaussianModel.load(str(out)))
    cfg = load_config(os.path.join(ROOT, "configs", "recon.yaml"),
                      [f"input={spot}", f"outdir={tmp_path}", "save_path=t", f"load={out}", "iters=1", *small])
    s = Stage1(cfg, log=lambda *a: None)
    assert len(s.model) == n
    from posed_views import load_views

    views = load_views(str(out), load_config(os.path.join(ROOT, "configs", "recon.yaml"),
                                             [f"input={out}", "save_path=x", *small]))
    assert float(views.masks.max()) > 0.5
