import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import make_gaussians
from io_utils import load_json, save_image
from mesh import Mesh
from mesh_renderer import render_mesh
from posed_views import ViewsError, from_gaussians, from_transforms, orbit_cameras

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPOT = os.path.join(ROOT, "data", "spot", "spot_triangulated.obj")


def write_blender_folder(folder, mesh, cams):
    """A NeRF/Blender dataset: RGBA PNGs plus transforms.json (OpenGL camera-to-world)."""
    frames = []
    os.makedirs(folder / "train", exist_ok=True)
    for i, c in enumerate(cams):
        o = render_mesh(mesh, c, (0, 0, 0))
        rgba = torch.cat([o["image"], o["alpha"]]).permute(1, 2, 0).numpy()
        save_image(str(folder / "train" / f"r_{i}.png"), rgba)
        frames.append({"file_path": f"./train/r_{i}", "transform_matrix": c.c2w.tolist()})
    Path(folder / "transforms.json").write_text(json.dumps({"camera_angle_x": cams[0].fovx, "frames": frames}))


def test_transforms_json_round_trip(tmp_path):
    spot = Mesh.load(SPOT)
    cams = orbit_cameras(6, 48, 3.0, 40.0)  # the object at the origin, cameras at distance 3
    write_blender_folder(tmp_path, spot, cams)
    views = from_transforms(str(tmp_path), resolution=48, radius=2.0)
    assert len(views) == 6 and views.rgbs.shape == (6, 3, 48, 48)
    np.testing.assert_allclose(views.center, 0.0, atol=1e-4)  # every axis passes through the origin
    assert views.scale == pytest.approx(2.0 / 3.0, rel=1e-4)
    assert math.degrees(views.cameras[0].fovy) == pytest.approx(40.0, rel=1e-4)
    # re-rendering the normalised mesh from the loaded cameras reproduces the images
    m = Mesh((spot.v - torch.as_tensor(views.center)) * views.scale, spot.f, spot.vt, spot.albedo)
    for i in (0, 3):
        o = render_mesh(m, views.cameras[i], (0, 0, 0))
        assert (o["alpha"] - views.masks[i]).abs().mean() < 0.01
        assert (o["image"] * o["alpha"] - views.rgbs[i] * views.masks[i]).abs().mean() < 0.02
    v = torch.tensor([[0.1, 0.2, 0.3]])
    torch.testing.assert_close(views.to_source(v * views.scale), v, atol=1e-5, rtol=0)


def test_malformed_transforms_are_clear_errors(tmp_path):
    spot = Mesh.load(SPOT)
    write_blender_folder(tmp_path, spot, orbit_cameras(2, 32, 3.0, 40.0))
    meta = load_json(tmp_path / "transforms.json")

    def check(m, pattern):
        Path(tmp_path / "transforms.json").write_text(json.dumps(m))
        with pytest.raises(ViewsError, match=pattern):
            from_transforms(str(tmp_path), 32, 2.0)

    check({"frames": meta["frames"]}, "camera_angle_x")
    check({**meta, "frames": [{"file_path": "./train/r_0"}]}, "transform_matrix")
    check({**meta, "frames": [{**meta["frames"][0], "transform_matrix": [[1, 0], [0, 1]]}]}, "4x4")
    check({**meta, "frames": meta["frames"] + [{**meta["frames"][0], "file_path": "./train/missing"}]}, "not found")
    save_image(str(tmp_path / "train" / "r_1.png"), np.zeros((16, 16, 4), np.float32))
    check(meta, "differs from the first frame")
    (tmp_path / "transforms.json").write_text("{ not json")
    with pytest.raises(ViewsError, match="not valid JSON"):
        from_transforms(str(tmp_path), 32, 2.0)
    with pytest.raises(ViewsError, match="no transforms.json"):
        from_transforms(str(tmp_path / "train"), 32, 2.0)


def test_degenerate_poses_are_one_line_errors_naming_the_frame(tmp_path):
    """What the bad-input sweep found: an all-zero matrix (was a numpy warning, then 'SVD did not
    converge', no frame named), every frame at one pose (trained silently), a mirrored or sheared
    rotation; each a one-line error from main.py before training, naming the frame."""
    from helpers import cli

    spot = Mesh.load(SPOT)
    write_blender_folder(tmp_path, spot, orbit_cameras(3, 32, 3.0, 40.0))
    meta = load_json(tmp_path / "transforms.json")
    frames = meta["frames"]
    mirror = np.array(frames[1]["transform_matrix"])
    mirror[:3, 0] *= -1
    shear = np.array(frames[1]["transform_matrix"])
    shear[:3, 0] += 0.3 * shear[:3, 1]
    cases = [([frames[0], {**frames[1], "transform_matrix": np.zeros((4, 4)).tolist()}, frames[2]],
              r"frame 1 \(\./train/r_1\) transform_matrix has a zero rotation column"),
             ([{**f, "transform_matrix": frames[0]["transform_matrix"]} for f in frames],
              "all 3 frames have the same transform_matrix"),
             ([frames[0], {**frames[1], "transform_matrix": mirror.tolist()}, frames[2]], "frame 1 .* mirrors the scene"),
             ([frames[0], {**frames[1], "transform_matrix": shear.tolist()}, frames[2]], "frame 1 .* not a rotation")]
    for fr, pattern in cases:
        Path(tmp_path / "transforms.json").write_text(json.dumps({**meta, "frames": fr}))
        with pytest.raises(ViewsError, match=pattern):
            from_transforms(str(tmp_path), 32, 2.0)
    Path(tmp_path / "transforms.json").write_text(json.dumps({**meta, "frames": cases[0][0]}))
    r = cli("main.py", "--config", "configs/recon.yaml", f"input={tmp_path}", f"outdir={tmp_path / 'out'}", "save_path=x")
    assert r.returncode != 0 and "frame 1" in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
    assert "RuntimeWarning" not in r.stderr and "SVD" not in r.stderr


def test_a_damaged_draco_gltf_is_a_one_line_error(tmp_path):
    """trimesh reads a Draco buffer that does not decode as zeros (was: 'zero extent'); now the file
    and primitive are named."""
    import struct

    import trimesh

    from helpers import cli

    data = trimesh.load(os.path.join(ROOT, "tests", "data", "meshes", "BoxTextured.glb"), force="scene").export(
        file_type="glb", extension_draco=True)
    json_len = struct.unpack_from("<I", data, 12)[0]
    tree = json.loads(data[20:20 + json_len])
    view = tree["bufferViews"][tree["meshes"][0]["primitives"][0]["extensions"]["KHR_draco_mesh_compression"]["bufferView"]]
    start = 20 + json_len + 8 + view.get("byteOffset", 0)
    bad = bytearray(data)
    bad[start:start + view["byteLength"]] = b"\x55" * view["byteLength"]
    (tmp_path / "bad.glb").write_bytes(bytes(bad))
    from mesh import MeshFormatError

    with pytest.raises(MeshFormatError, match="Draco-compressed geometry of mesh 0 .* does not decode"):
        Mesh.load(str(tmp_path / "bad.glb"))
    r = cli("main.py", "--config", "configs/recon.yaml", f"input={tmp_path / 'bad.glb'}", f"outdir={tmp_path / 'o'}",
            "save_path=x")
    assert r.returncode != 0 and "does not decode" in r.stderr and "zero extent" not in r.stderr, r.stderr


def test_gaussian_ply_input_is_normalised_and_rendered(tmp_path):
    g = make_gaussians(300, seed=0, opacity_range=(0.6, 0.9))
    with torch.no_grad():
        g.params["means"].mul_(3.0).add_(torch.tensor([5.0, -2.0, 1.0]))  # off-centre and large
        g.params["scales"].add_(math.log(3.0))
    path = str(tmp_path / "g.ply")
    g.save_ply(path)
    views = from_gaussians(path, num_views=4, resolution=48, radius=2.0, fovy=49.1, extent=1.0)
    assert views.rgbs.shape == (4, 3, 48, 48) and views.masks.max() > 0.9
    np.testing.assert_allclose(views.center, [5.0, -2.0, 1.0], atol=0.3)
    assert views.scale == pytest.approx(1.0 / (2 * 0.4 * 3.0), rel=0.15)
    # the object is in the frame: it covers a good part of it but not the border
    m = views.masks[:, 0] > 0.5
    assert 0.05 < m.float().mean().item() < 0.8
    border = torch.cat([m[:, 0], m[:, -1], m[:, :, 0], m[:, :, -1]], 1)
    assert border.float().mean() < 0.1
