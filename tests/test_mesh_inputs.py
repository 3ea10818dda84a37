"""Meshes other tools wrote: every file of the shared corpus (tests/data/meshes, copied unchanged
from ../shared/assets/meshes: Blender, Wings 3D, MeshLab and glTF exporters) and files written
here by hand from the OBJ/MTL, PLY and glTF 2.0 specifications for what the corpus lacks
(spaces, tabs and options in texture statements, several materials, colours of every kind)."""
import base64
import json
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

from cameras import Camera
from mesh import Mesh, MeshFormatError, NEUTRAL_GREY
from mesh_renderer import render_mesh
from helpers import cli
from io_utils import load_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "tests", "data", "meshes")

# What each corpus file holds (its README) and what loading it must give:
# ("texture", None) | ("colour", rgb) | ("grey", words in the warning) | ("error", words in the error)
EXPECTED = {
    "BoxTextured.glb": ("texture", None),
    "capsule.obj": ("texture", None),
    "ico4uv.obj": ("colour", (0.8, 0.8, 0.8)),  # Kd only
    "rabbit.obj": ("colour", (1.0, 0.0, 1.0)),  # Wings 3D, magenta Kd
    "nancolor.obj": ("error", r"line 7: vertex colour is NaN"),
    "negative_indices.obj": ("grey", "no texture, material colour or vertex colours"),
    "polygonfaces.obj": ("grey", "material library 'surface.mtl' is missing"),
    "cube.OBJ": ("grey", "no texture"),
    "two_objects.obj": ("grey", "no texture"),
    "textured_tetrahedron.obj": ("grey", "no texture"),  # UVs but no material file
    "obj_empty.obj": ("error", "no faces to render: the file holds nothing"),
    "obj_points.obj": ("error", "no faces to render: the file holds only 8 points"),
    "obj_wireframe.obj": ("error", "no faces to render: the file holds only 8 points and 12 lines"),
}
MESH_FILES = sorted(n for n in os.listdir(CORPUS) if n.lower().endswith((".obj", ".glb")))


def test_every_corpus_file_has_an_expectation():
    assert sorted(EXPECTED) == MESH_FILES


def raw_faces(path):
    """Face count as the file states it: triangles of every f line (fan of a polygon)."""
    n = 0
    with open(path) as fh:
        for line in fh:
            parts = line.split()
            if parts and parts[0] == "f":
                n += len(parts) - 3
    return n


@pytest.mark.parametrize("name", MESH_FILES)
def test_corpus_file_loads_with_its_colour_or_fails_in_one_line(name):
    path = os.path.join(CORPUS, name)
    kind, detail = EXPECTED[name]
    if kind == "error":
        with pytest.raises(MeshFormatError) as e:
            Mesh.load(path)
        msg = str(e.value)
        assert "\n" not in msg and name in msg and re.search(detail, msg), msg
        return
    m = Mesh.load(path)
    assert m.f.shape[0] > 0 and torch.isfinite(m.v).all()
    if name.endswith((".obj", ".OBJ")):
        assert m.f.shape[0] == raw_faces(path)  # every polygon kept, fan-triangulated
    if kind == "texture":
        assert m.albedo is not None and m.vt is not None and m.warnings == []
        assert m.vt.min() >= 0 and m.vt.max() <= 1
    elif kind == "colour":
        assert m.albedo is None and m.warnings == []
        assert torch.allclose(m.vc, torch.tensor(detail).expand_as(m.vc), atol=1e-3)
    else:
        assert m.albedo is None and torch.all(m.vc == NEUTRAL_GREY)
        assert len(m.warnings) == 1 and name in m.warnings[0] and detail in m.warnings[0], m.warnings
        assert "neutral grey" in m.warnings[0]


def test_capsule_texture_is_the_jpeg_named_in_its_mtl():
    m = Mesh.load(os.path.join(CORPUS, "capsule.obj"))
    jpeg = np.asarray(Image.open(os.path.join(CORPUS, "capsule0.jpg")).convert("RGB"), np.float32) / 255
    assert m.albedo.shape == jpeg.shape
    assert np.abs(m.albedo.numpy() - jpeg).max() < 1e-6


def test_repeating_uvs_of_the_glb_are_tiled_exactly():
    """BoxTextured's UVs run to u = 6 (the texture repeats once per face): the loaded texture at
    each face's centre equals the original texture at that centre wrapped into [0, 1)."""
    import trimesh

    raw = list(trimesh.load(os.path.join(CORPUS, "BoxTextured.glb"), process=False, force="scene").geometry.values())[0]
    uv0 = np.asarray(raw.visual.uv)
    tex0 = np.asarray(raw.visual.material.baseColorTexture.convert("RGB"), np.float32) / 255
    m = Mesh.load(os.path.join(CORPUS, "BoxTextured.glb"))
    assert uv0.max() > 1.5  # the file really repeats
    f = m.f.numpy()

    def lookup(tex, uv):  # nearest texel; row 0 is v = 1
        h, w = tex.shape[:2]
        x = np.clip((uv[:, 0] * w).astype(int), 0, w - 1)
        y = np.clip(((1 - uv[:, 1]) * h).astype(int), 0, h - 1)
        return tex[y, x]
    c0 = uv0[f].mean(1) % 1.0
    c1 = m.vt.numpy()[f].mean(1)
    assert np.abs(lookup(tex0, c0) - lookup(m.albedo.numpy(), c1)).max() < 0.02


def test_a_texture_bigger_than_the_bound_is_downscaled():
    m = Mesh.load(os.path.join(CORPUS, "capsule.obj"), max_texture=512)
    assert m.albedo.shape == (256, 512, 3)


def test_kd_colour_is_what_the_renderer_shows():
    m = Mesh.load(os.path.join(CORPUS, "rabbit.obj"))
    m.v = (m.v - m.v.mean(0)) / (m.v.max(0).values - m.v.min(0).values).max()
    out = render_mesh(m, Camera.orbit(0, 30, 2.0, 49.1, 64), (1.0, 1.0, 1.0), "torch")
    mask = out["alpha"][0] > 0
    assert mask.sum() > 50
    assert torch.allclose(out["image"][:, mask].mean(1), torch.tensor([1.0, 0.0, 1.0]), atol=1e-4)


# ----------------------------------------------- files written here from the format specifications
def quad_obj(sep=" "):
    """A unit square in the xy plane, two triangles, UVs over [0, 1]^2, material ``mat`` of m.mtl."""
    return sep.join(["mtllib", "m.mtl"]) + "\n" + "\n".join([
        f"v{sep}0 0 0", f"v{sep}1 0 0", f"v{sep}1 1 0", f"v{sep}0 1 0",
        f"vt{sep}0 0", f"vt{sep}1 0", f"vt{sep}1 1", f"vt{sep}0 1",
        f"usemtl{sep}mat", f"f{sep}1/1 2/2 3/3", f"f{sep}1/1 3/3 4/4"]) + "\n"


def four_colour_texture(path, size=64):
    """Quadrants: top-left red, top-right green, bottom-left blue, bottom-right yellow. Returns the
    file's pixels as PIL decodes them (a JPEG is lossy)."""
    img = np.zeros((size, size, 3), np.uint8)
    h = size // 2
    img[:h, :h], img[:h, h:], img[h:, :h], img[h:, h:] = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)
    Image.fromarray(img).save(path)
    return np.asarray(Image.open(path).convert("RGB"), np.float32) / 255


def test_meshlab_texture_name_with_a_space_and_tabs(tmp_path):
    """MeshLab writes the texture name as it is, spaces included; tabs separate the fields."""
    tex = four_colour_texture(tmp_path / "fuze uv.jpg")
    (tmp_path / "m.obj").write_text(quad_obj(sep="\t"))
    (tmp_path / "m.mtl").write_text("newmtl\tmat\nKa 0.2 0.2 0.2\nKd 1.0 1.0 1.0\nillum 2\nmap_Kd\tfuze uv.jpg\n")
    m = Mesh.load(str(tmp_path / "m.obj"))
    assert m.warnings == [] and m.albedo is not None
    assert np.abs(m.albedo.numpy() - tex).max() < 1e-6


@pytest.mark.parametrize("how", ["absolute", "other_machine_windows", "other_case", "subfolder_backslash"])
def test_texture_paths_as_exporters_write_them(tmp_path, how):
    folder = tmp_path / "tex"
    folder.mkdir()
    ref = {"absolute": str(folder / "t.png"), "other_machine_windows": "C:\\Users\\someone\\Desktop\\t.png",
           "other_case": "T.PNG", "subfolder_backslash": "tex\\t.png"}[how]
    target = {"absolute": folder / "t.png", "other_machine_windows": tmp_path / "t.png",
              "other_case": tmp_path / "t.png", "subfolder_backslash": folder / "t.png"}[how]
    tex = four_colour_texture(target)
    (tmp_path / "m.obj").write_text(quad_obj())
    (tmp_path / "m.mtl").write_text(f"newmtl mat\nKd 1 1 1\nmap_Kd {ref}\n")
    m = Mesh.load(str(tmp_path / "m.obj"))
    assert np.abs(m.albedo.numpy() - tex).max() < 1e-6


def test_texture_options_scale_and_offset_the_uvs(tmp_path):
    """``map_Kd -s 2 2 1 -o 0.5 0 0 t.png``: u' = 2u + 0.5, v' = 2v (MTL specification; as Blender
    imports it). The loader tiles the texture over u' in [0.5, 2.5] -> 3 x 2 tiles."""
    tex = four_colour_texture(tmp_path / "t.png", size=32)
    (tmp_path / "m.obj").write_text(quad_obj())
    (tmp_path / "m.mtl").write_text("newmtl mat\nmap_Kd -blendu on -s 2 2 1 -o 0.5 0 0 -bm 1.0 t.png\n")
    m = Mesh.load(str(tmp_path / "m.obj"))
    assert m.albedo.shape == (2 * 32, 3 * 32, 3)
    assert np.abs(m.albedo.numpy() - np.tile(tex, (2, 3, 1))).max() < 1e-6
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float64)
    expect = (uv * 2 + [0.5, 0]) / [3, 2]  # (u' - floor(min u')) / tiles, floor(min u') = 0 here
    got = m.vt.numpy().astype(np.float64)
    order = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731  (vertex order is the reader's)
    assert np.allclose(order(got), order(expect), atol=1e-6), got


def test_several_materials_are_packed_into_one_atlas(tmp_path):
    """Three materials in one file: two textures and one Kd colour. Each face keeps its colour."""
    Image.fromarray(np.full((16, 16, 3), (255, 0, 0), np.uint8)).save(tmp_path / "red.png")
    Image.fromarray(np.full((16, 16, 3), (0, 255, 0), np.uint8)).save(tmp_path / "green.png")
    (tmp_path / "m.mtl").write_text("newmtl a\nmap_Kd red.png\n\nnewmtl b\nmap_Kd green.png\n\n"
                                    "newmtl c\nKd 0.0 0.0 1.0\n")
    lines = ["mtllib m.mtl"]
    for i in range(3):  # three separate triangles side by side
        lines += [f"v {2 * i} 0 0", f"v {2 * i + 1} 0 0", f"v {2 * i} 1 0"]
    lines += ["vt 0.1 0.1", "vt 0.9 0.1", "vt 0.1 0.9"]
    lines += ["o first", "usemtl a", "f 1/1 2/2 3/3", "o second", "usemtl b", "f 4/1 5/2 6/3",
              "o third", "usemtl c", "f 7/1 8/2 9/3"]
    (tmp_path / "m.obj").write_text("\n".join(lines) + "\n")
    m = Mesh.load(str(tmp_path / "m.obj"))
    assert m.albedo is not None and m.f.shape[0] == 3 and m.warnings == []
    from mesh_renderer import sample_texture

    centre_uv = m.vt[m.f].mean(1)  # [3, 2]
    colour = sample_texture(m.albedo, centre_uv[None])[0] * m.vc[m.f].mean(1)
    # which face is which: by x position
    order = m.v[m.f].mean(1)[:, 0].argsort()
    expect = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    assert torch.allclose(colour[order], expect, atol=0.02), colour[order]


def test_a_missing_or_broken_texture_is_an_error_naming_it(tmp_path):
    (tmp_path / "m.obj").write_text(quad_obj())
    (tmp_path / "m.mtl").write_text("newmtl mat\nmap_Kd gone.png\n")
    with pytest.raises(MeshFormatError, match=r"m.obj: texture 'gone.png' not found"):
        Mesh.load(str(tmp_path / "m.obj"))
    (tmp_path / "gone.png").write_bytes(b"not a png")
    with pytest.raises(MeshFormatError, match=r"gone.png' is not a readable image"):
        Mesh.load(str(tmp_path / "m.obj"))


def ply_ascii(vertices, faces, vertex_colours=None, face_colours=None):
    """An ASCII PLY 1.0 file (the format's specification: header, then element lists)."""
    head = ["ply", "format ascii 1.0", f"element vertex {len(vertices)}",
            "property float x", "property float y", "property float z"]
    if vertex_colours is not None:
        head += ["property uchar red", "property uchar green", "property uchar blue"]
    head += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
    if face_colours is not None:
        head += ["property uchar red", "property uchar green", "property uchar blue"]
    head.append("end_header")
    body = []
    for i, v in enumerate(vertices):
        body.append(" ".join(map(str, v)) + ("" if vertex_colours is None else " " + " ".join(map(str, vertex_colours[i]))))
    for i, f in enumerate(faces):
        body.append(f"{len(f)} " + " ".join(map(str, f)) + ("" if face_colours is None else " " + " ".join(
            map(str, face_colours[i]))))
    return "\n".join(head + body) + "\n"


TETRA_V = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)]
TETRA_F = [(0, 2, 1), (0, 1, 3), (0, 3, 2), (1, 2, 3)]


def test_ply_vertex_and_face_colours(tmp_path):
    vc = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]
    (tmp_path / "v.ply").write_text(ply_ascii(TETRA_V, TETRA_F, vertex_colours=vc))
    m = Mesh.load(str(tmp_path / "v.ply"))
    assert m.warnings == [] and torch.allclose(m.vc, torch.tensor(vc, dtype=torch.float32) / 255)
    fc = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 128, 0)]
    (tmp_path / "f.ply").write_text(ply_ascii(TETRA_V, TETRA_F, face_colours=fc))
    m = Mesh.load(str(tmp_path / "f.ply"))
    assert m.f.shape[0] == 4 and m.warnings == []
    per_face = m.vc[m.f]  # each face's three corners hold its colour
    assert torch.allclose(per_face, (torch.tensor(fc, dtype=torch.float32) / 255)[:, None].expand(4, 3, 3))


def test_a_nan_vertex_in_a_ply_is_refused(tmp_path):
    v = list(TETRA_V)
    v[2] = (0, float("nan"), 0)
    (tmp_path / "n.ply").write_text(ply_ascii(v, TETRA_F))
    with pytest.raises(MeshFormatError, match="n.ply: 1 vertex positions row"):
        Mesh.load(str(tmp_path / "n.ply"))


@pytest.mark.parametrize("line,what", [("v 0 nan 0", "vertex position"), ("vt inf 0", "texture coordinate"),
                                       ("v 0 0 0 0.5 -nan 0.5", "vertex colour")])
def test_non_finite_obj_numbers_are_refused_with_their_line(tmp_path, line, what):
    (tmp_path / "m.obj").write_text(f"v 0 0 0\nv 1 0 0\nv 0 1 0\n{line}\nf 1 2 3\n")
    with pytest.raises(MeshFormatError, match=f"m.obj: line 4: {what} is NaN or inf"):
        Mesh.load(str(tmp_path / "m.obj"))


def gltf_with_factor(path, factor):
    """A glTF 2.0 file (JSON + embedded base64 buffer, per the specification): one triangle whose
    material has only a baseColorFactor (linear RGB)."""
    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    idx = np.array([0, 1, 2], np.uint16)
    blob = pos.tobytes() + idx.tobytes() + b"\x00\x00"
    doc = {
        "asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1, "material": 0}]}],
        "materials": [{"pbrMetallicRoughness": {"baseColorFactor": list(factor) + [1.0]}}],
        "buffers": [{"byteLength": len(blob), "uri": "data:application/octet-stream;base64,"
                     + base64.b64encode(blob).decode()}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": 36},
                        {"buffer": 0, "byteOffset": 36, "byteLength": 6}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
                       "min": [0, 0, 0], "max": [1, 1, 0]},
                      {"bufferView": 1, "componentType": 5123, "count": 3, "type": "SCALAR"}],
    }
    path.write_text(json.dumps(doc))


def test_gltf_base_colour_factor_is_linear(tmp_path):
    gltf_with_factor(tmp_path / "t.gltf", (0.2, 0.5, 1.0))
    m = Mesh.load(str(tmp_path / "t.gltf"))

    def srgb(c):  # IEC 61966-2-1, stated here independently
        return 12.92 * c if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055
    assert m.warnings == []
    assert torch.allclose(m.vc[0], torch.tensor([srgb(0.2), srgb(0.5), srgb(1.0)]), atol=1 / 255)


def test_vertex_colours_survive_an_obj_and_glb_round_trip(tmp_path):
    vc = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0.5, 0.5, 0.5]])
    m = Mesh(torch.tensor(TETRA_V, dtype=torch.float32), torch.tensor(TETRA_F), vc=vc)
    for ext in ("obj", "glb"):
        m.save(str(tmp_path / f"m.{ext}"))
        back = Mesh.load(str(tmp_path / f"m.{ext}"))
        assert back.warnings == [] and torch.allclose(back.vc, vc, atol=1 / 255), ext


# ------------------------------------------------------------------ through the command line
@pytest.mark.parametrize("name", [n for n, (k, _) in EXPECTED.items() if k == "error"])
@pytest.mark.slow
def test_unusable_corpus_files_are_one_line_errors_from_main_and_eval(tmp_path, name):
    path = os.path.join(CORPUS, name)
    r = cli("main.py", "--config", "configs/recon.yaml", f"input={path}", f"outdir={tmp_path}", "save_path=x")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0], r.stderr
    assert os.listdir(tmp_path) == []  # nothing written
    r = cli("scripts/eval_recon.py", "--pred", path, "--gt", os.path.join(CORPUS, "rabbit.obj"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.startswith("error: "), r.stderr[-2000:]
    r = cli("scripts/turntable.py", path, "--out", str(tmp_path / "t.gif"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.startswith("error: "), r.stderr[-2000:]


@pytest.mark.slow
def test_an_uncoloured_mesh_is_grey_and_said_so_in_log_run_json_and_eval(tmp_path):
    path = os.path.join(CORPUS, "cube.OBJ")
    r = cli("main.py", "--config", "configs/recon.yaml", f"input={path}", f"outdir={tmp_path}", "save_path=c",
            "iters=20", "recon_num_views=4", "ref_size=48", "num_pts=500", "mc_resolution=32", "mc_num_blocks=2",
            "texture_size=64", "bake_resolution=48", "decimate_target=2000", "density_thresh=0.2", "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "warning: cube.OBJ: no texture, material colour or vertex colours; rendered in neutral grey" in r.stderr
    assert "warning:" not in r.stdout  # a user who redirects the output still sees warnings
    run = load_json(tmp_path / "c_run.json")
    assert any("neutral grey" in w for w in run["stage1"]["warnings"])
    r = cli("scripts/eval_recon.py", "--pred", str(tmp_path / "c_mesh.obj"), "--gt", path, "--views", "2",
            "--resolution", "48")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "warning: cube.OBJ: no texture" in r.stderr
    assert any("neutral grey" in w for w in json.loads(r.stdout.splitlines()[0])["warnings"])


# ------------------------------------------------------------------ reconstruction keeps the colours
GREY_BASELINE_MARGIN = 2.5  # dB over the same geometry in neutral grey (what a lost texture gives)


@pytest.mark.parametrize("name,psnr_min", [("capsule.obj", 18.0), ("BoxTextured.glb", 16.0)])
@pytest.mark.slow
def test_short_reconstruction_reproduces_the_colours(tmp_path, name, psnr_min):
    """16 views at 96 px, 200 + 30 steps (about 25 s each). Measured here: capsule 19.9 dB
    (grey 14.6, white 8.5), BoxTextured 17.7 dB (grey 13.4, white 9.9): a texture lost on the
    way (the MeshLab bug) lands at the grey or white figure, far below the bound."""
    from helpers import SMALL, run_both
    from metrics import evaluate

    src = os.path.join(CORPUS, name)
    run_both("recon.yaml", SMALL + [f"input={src}", "save_path=x", f"outdir={tmp_path}", "iters=200", "ref_size=96",
                                    "num_pts=2000", "position_lr_max_steps=200", "density_start_iter=30",
                                    "density_end_iter=160", "densification_interval=30", "recon_num_views=16",
                                    "mc_resolution=64", "mc_num_blocks=8", "iters_refine=30", "texture_size=256",
                                    "bake_resolution=96", "refine_resolution=96", "decimate_target=10000"])
    fine = evaluate(str(tmp_path / "x.obj"), src, num_views=6, resolution=96, samples=5000)
    gt = Mesh.load(src)
    grey = Mesh(gt.v, gt.f, vc=torch.full_like(gt.v, NEUTRAL_GREY))
    grey.save(str(tmp_path / "grey.obj"))
    base = evaluate(str(tmp_path / "grey.obj"), src, num_views=6, resolution=96, samples=5000)
    assert fine["psnr"] > psnr_min, fine
    assert fine["psnr"] > base["psnr"] + GREY_BASELINE_MARGIN, (fine["psnr"], base["psnr"])
    assert fine["mask_iou"] > 0.85, fine


def test_a_ply_with_faces_is_a_mesh_input_and_a_3dgs_ply_is_gaussians(tmp_path):
    from helpers import make_gaussians
    from posed_views import is_gaussian_ply

    (tmp_path / "mesh.ply").write_text(ply_ascii(TETRA_V, TETRA_F))
    make_gaussians(10).save_ply(str(tmp_path / "splats.ply"))
    assert not is_gaussian_ply(str(tmp_path / "mesh.ply"))
    assert is_gaussian_ply(str(tmp_path / "splats.ply"))
