"""UV atlases: the charts unwrap covers every face once, keeps faces apart in the texture (checked
against a brute-force texel test), splits a surface that folds over itself, and xatlas stays as
it was."""
import numpy as np
import pytest
import torch

from gaussians import sphere_of_gaussians
from mesh import Mesh
from mesh_utils import clean_mesh, density_grid, marching_cubes, texel_surface
from uv_atlas import (atlas_stats, chart_unwrap, overlapping_pairs, pack, project, texel_hits, unwrap_uv)


def shell_mesh(res=48):
    """A marching-cubes sphere shell, as the export makes them (noisy normals, slivers)."""
    grid, c, h = density_grid(sphere_of_gaussians(3000, radius=0.5, scale=0.03), res, res // 8)
    return clean_mesh(*marching_cubes(grid, c, h, 1.0))


def helicoid(turns=1.4, n_theta=160, n_r=8):
    """A spiral ramp: every face looks up, yet seen from above it covers itself after one turn."""
    theta = np.linspace(0, 2 * np.pi * turns, n_theta)
    r = np.linspace(0.3, 1.0, n_r)
    t, rr = np.meshgrid(theta, r, indexing="ij")
    v = np.stack([rr * np.cos(t), rr * np.sin(t), 0.05 * t], -1).reshape(-1, 3).astype(np.float32)
    idx = np.arange(n_theta * n_r).reshape(n_theta, n_r)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    f = np.concatenate([np.stack([a, d, b], -1).reshape(-1, 3), np.stack([b, d, c], -1).reshape(-1, 3)])
    return v, f.astype(np.int64)


def brute_overlaps(uv, faces, size):
    """Faces with a texel centre strictly inside another face: each face against every texel of
    its bounding box, one face at a time."""
    owners = {}
    for fi, t in enumerate(uv[faces].astype(np.float64) * size):
        lo, hi = np.floor(t.min(0)).astype(int), np.ceil(t.max(0)).astype(int)
        j, i = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1))
        p = np.stack([j.ravel(), i.ravel()], 1) + 0.5
        area = (t[1, 0] - t[0, 0]) * (t[2, 1] - t[0, 1]) - (t[1, 1] - t[0, 1]) * (t[2, 0] - t[0, 0])
        if abs(area) < 1e-12:
            continue
        w = np.stack([(t[(k + 2) % 3, 0] - t[(k + 1) % 3, 0]) * (p[:, 1] - t[(k + 1) % 3, 1])
                      - (t[(k + 2) % 3, 1] - t[(k + 1) % 3, 1]) * (p[:, 0] - t[(k + 1) % 3, 0]) for k in range(3)], 1)
        for texel in map(tuple, p[(w / area > 1e-6).all(1)]):
            owners.setdefault(texel, []).append(fi)
    return {fi for fs in owners.values() if len(fs) > 1 for fi in fs}


def corner_positions(v, f):
    return np.asarray(v)[np.asarray(f)]


def test_charts_keep_every_face_and_give_each_texel_one_face():
    v, f = shell_mesh()
    v2, f2, uv = unwrap_uv(v, f, 256)
    assert f2.shape == f.shape
    np.testing.assert_array_equal(corner_positions(v2, f2), corner_positions(v, f))  # same faces, same order
    assert np.isfinite(uv).all() and uv.min() >= 0 and uv.max() <= 1
    assert brute_overlaps(uv, f2, 256) == set()
    stats = atlas_stats(f, f2, uv, 256)
    assert stats["charts"] >= 6 and stats["seam_edges"] > 0 and 0.3 < stats["utilisation"] < 1


def test_texel_hits_are_the_bake_rasterizers_texels():
    v, f = shell_mesh(32)
    v2, f2, uv = unwrap_uv(v, f, 128)
    fid, pix = texel_hits(uv, f2, 128)
    ours = np.zeros(128 * 128, bool)
    ours[pix] = True
    face_id, _, _ = texel_surface(Mesh(torch.from_numpy(v2), torch.from_numpy(f2), torch.from_numpy(uv)), 128)
    theirs = (face_id >= 0).numpy()[::-1].reshape(-1)  # the rasterizer's row 0 is v = 1
    assert (ours != theirs).sum() <= 0.001 * theirs.sum()


def test_overlap_check_matches_brute_force():
    rng = np.random.default_rng(0)
    centres = rng.uniform(0.1, 0.9, (40, 2))
    uv = (centres[:, None] + rng.uniform(-0.08, 0.08, (40, 3, 2))).reshape(-1, 2).clip(0, 1)
    faces = np.arange(120).reshape(40, 3)
    a, b = overlapping_pairs(uv, faces, 64)
    assert set(a) | set(b) == brute_overlaps(uv, faces, 64) != set()


def test_a_surface_that_covers_itself_is_split_until_nothing_overlaps():
    v, f = helicoid()
    # projected whole, straight down, the ramp covers itself
    one = np.zeros(len(f), np.int64)
    vmap, f1, uv, vchart = project(v, f, one, np.array([[0.0, 0.0, 1.0]]))
    assert len(overlapping_pairs(pack(uv, f1, vchart, 256, 2), f1, 256)[0]) > 0
    v2, f2, uv2 = chart_unwrap(v, f, 256)
    assert brute_overlaps(uv2, f2, 256) == set()
    assert atlas_stats(f, f2, uv2, 256)["charts"] >= 2


def test_folds_left_after_the_split_rounds_become_one_face_charts(monkeypatch):
    import uv_atlas

    monkeypatch.setattr(uv_atlas, "MAX_SPLIT_ROUNDS", 0)  # straight to the last resort
    v, f = helicoid()
    v2, f2, uv2 = chart_unwrap(v, f, 256)
    assert brute_overlaps(uv2, f2, 256) == set()


def test_a_cube_gets_one_chart_per_side():
    import trimesh

    box = trimesh.creation.box()
    v, f = np.asarray(box.vertices, np.float32), np.asarray(box.faces, np.int64)
    v2, f2, uv = unwrap_uv(v, f, 64)
    stats = atlas_stats(f, f2, uv, 64)
    assert stats["charts"] == 6 and stats["seam_edges"] == 12 and len(v2) == 24


def test_faces_without_area_still_get_uvs_in_the_atlas():
    v, f = shell_mesh(32)
    v = v.copy()
    v[f[:20, 1]] = v[f[:20, 0]]  # twenty faces collapse (and their neighbours with them)
    n = len(v)
    v = np.concatenate([v, [[0, 0, 0], [0.1, 0, 0], [0.2, 0, 0]]]).astype(np.float32)  # a lone line
    f = np.concatenate([f, [[n, n + 1, n + 2]]])
    v2, f2, uv = unwrap_uv(v, f, 128)
    assert np.isfinite(uv).all() and uv.min() >= 0 and uv.max() <= 1
    assert brute_overlaps(uv, f2, 128) == set()


def test_xatlas_method_is_xatlas_with_the_previous_options():
    import xatlas

    v, f = shell_mesh(32)
    atlas = xatlas.Atlas()
    atlas.add_mesh(v, f.astype(np.uint32))
    pack_options = xatlas.PackOptions()
    pack_options.resolution, pack_options.padding, pack_options.bilinear = 512, 2, True
    atlas.generate(chart_options=xatlas.ChartOptions(), pack_options=pack_options)
    vmapping, faces, uvs = atlas[0]
    v2, f2, uv2 = unwrap_uv(v, f, 512, method="xatlas")
    np.testing.assert_array_equal(v2, v[vmapping])
    np.testing.assert_array_equal(f2, faces)
    np.testing.assert_array_equal(uv2, uvs)


def test_an_unknown_method_is_refused():
    v, f = shell_mesh(16)
    with pytest.raises(ValueError, match="uv_unwrap must be one of charts, xatlas"):
        unwrap_uv(v, f, 64, method="lscm")
