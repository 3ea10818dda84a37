"""UV atlases for the exported mesh.

    verts, faces, uvs = unwrap_uv(verts, faces, resolution=1024, padding=2, method="charts")

``method="xatlas"`` is what the reference does: xatlas computes the charts and packs them. On the
meshes marching cubes makes, its chart growing reparameterises a chart and tests its boundary for
self-intersection after every face it adds, and most charts then fail its LSCM check and are
re-cut piece by piece, so its time grows much faster than the face count (BENCHMARKS.md,
*Gaussians to textured mesh*).

``method="charts"`` computes the charts here and leaves only the packing to xatlas:

1. Each face takes one of the six axis directions: the one closest to its normal averaged over
   ``SMOOTH_RINGS`` rings of neighbours, among those its own normal faces by more than
   ``COS_MIN``; sweeps of majority votes between neighbours then straighten the borders.
2. A chart is a connected set of faces of one direction. It is projected orthographically along
   the area-weighted mean normal of its faces (along its axis where a face would face that mean
   by ``COS_MIN`` or less), so no face is flipped in UV space.
3. xatlas packs the charts (``add_uv_mesh``) with the same options as ``method="xatlas"``.
4. A chart that covers itself in the projection (the surface folds back over itself while still
   facing the same way) is found by rasterizing the packed atlas at ``resolution``: a texel centre
   strictly inside two faces. The upper face of each such pair leaves its chart, and the atlas is
   packed again; after ``MAX_SPLIT_ROUNDS`` such rounds the faces still overlapping become charts of
   one face, until none overlaps.

Vertices are split along chart seams, as xatlas's output is.
"""
from __future__ import annotations

import itertools

import numpy as np
import torch

METHODS = ("charts", "xatlas")
SMOOTH_RINGS = 10  # rings of neighbours the labelling normal is averaged over
COS_MIN = 0.2  # a face joins a direction only when its own normal faces it by more than this
VOTE_WEIGHT = 2.0  # weight of one neighbour's direction against the cosine in the labelling
VOTE_SWEEPS = 30  # at most this many sweeps of neighbour votes
MAX_SPLIT_ROUNDS = 8  # split-and-repack rounds for charts that fold over themselves
AXES = np.concatenate([np.eye(3), -np.eye(3)])


def unwrap_uv(verts, faces, resolution: int = 1024, padding: int = 2, method: str = "charts"):
    """UV-unwrap ``verts`` [V,3] / ``faces`` [F,3]; returns (verts, faces, uvs [V',2] in [0,1]),
    vertices split along chart seams."""
    if method not in METHODS:
        raise ValueError(f"uv_unwrap must be one of {', '.join(METHODS)}, got '{method}'")
    verts = np.asarray(verts, np.float32)
    faces = np.asarray(faces, np.int64)
    if method == "xatlas":
        return _xatlas_unwrap(verts, faces, resolution, padding)
    return chart_unwrap(verts, faces, resolution, padding)


def _pack_options(resolution, padding):
    import xatlas

    pack = xatlas.PackOptions()
    pack.resolution = resolution
    pack.padding = padding
    pack.bilinear = True
    return pack


def _xatlas_unwrap(verts, faces, resolution, padding):
    import xatlas

    atlas = xatlas.Atlas()
    atlas.add_mesh(verts, faces.astype(np.uint32))
    atlas.generate(chart_options=xatlas.ChartOptions(), pack_options=_pack_options(resolution, padding))
    vmapping, new_faces, uvs = atlas[0]
    return verts[vmapping], new_faces.astype(np.int64), uvs.astype(np.float32)


# --------------------------------------------------------------- charts
def face_adjacency(faces):
    """Pairs (a, b) of faces that share an edge."""
    import trimesh

    pairs = trimesh.graph.face_adjacency(faces=faces)
    return pairs[:, 0], pairs[:, 1]


def _components(n, a, b, joined):
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(int(joined.sum())), (a[joined], b[joined])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def face_directions(verts, faces, adjacency):
    """Per face: the index into ``AXES`` it is projected along (step 1), its normal scaled by its
    area and its unit normal (zero where the face has no area)."""
    from scipy.sparse import coo_matrix

    v = verts.astype(np.float64)
    cross = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    area2 = np.linalg.norm(cross, axis=1)
    degenerate = area2 <= 1e-12 * max(float(area2.max()), 1e-30)
    normal = cross / np.where(degenerate, 1.0, area2)[:, None]
    a, b = adjacency
    n = len(faces)
    neighbours = coo_matrix((np.ones(2 * len(a)), (np.concatenate([a, b]), np.concatenate([b, a]))), (n, n)).tocsr()
    smooth = cross
    for _ in range(SMOOTH_RINGS):
        smooth = smooth + neighbours @ smooth
        smooth /= np.maximum(np.linalg.norm(smooth, axis=1, keepdims=True), 1e-30)
    allowed = (normal @ AXES.T > COS_MIN) | degenerate[:, None]
    affinity = np.where(allowed, smooth @ AXES.T, -np.inf)
    label = np.argmax(affinity, 1)
    for _ in range(VOTE_SWEEPS):
        votes = neighbours @ np.eye(len(AXES))[label]
        new = np.argmax(affinity + VOTE_WEIGHT * votes, 1)
        if np.array_equal(new, label):
            break
        label = new
    return label, cross, np.where(degenerate[:, None], 0.0, normal)


def chart_axes(chart, label, cross, normal):
    """Projection direction of every chart (step 2): [C,3] unit vectors."""
    n_charts = int(chart.max()) + 1
    area_normal = np.zeros((n_charts, 3))
    np.add.at(area_normal, chart, cross)
    length = np.linalg.norm(area_normal, axis=1, keepdims=True)
    direction = area_normal / np.maximum(length, 1e-30)
    facing = (normal * direction[chart]).sum(1)
    fallback = length[:, 0] <= 1e-30  # a chart of faces without area
    fallback[chart[(facing <= COS_MIN) & normal.any(1)]] = True
    axis = np.zeros(n_charts, np.int64)
    axis[chart] = label
    direction[fallback] = AXES[axis[fallback]]
    return direction


def project(verts, faces, chart, direction):
    """Split vertices per chart and project each chart along its direction: (vertex map [V'],
    faces [F,3] into the split vertices, uv [V',2] in world units, chart of each split vertex)."""
    n = len(verts)
    key = np.repeat(chart, 3).astype(np.int64) * n + faces.reshape(-1)
    uniq, inverse = np.unique(key, return_inverse=True)
    vmap, vchart = uniq % n, uniq // n
    helper = np.eye(3)[np.argmin(np.abs(direction), 1)]  # the axis least along each direction
    tangent = np.cross(direction, helper)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    bitangent = np.cross(direction, tangent)  # tangent x bitangent = direction: no face flips
    p = verts[vmap].astype(np.float64)
    uv = np.stack([(p * tangent[vchart]).sum(1), (p * bitangent[vchart]).sum(1)], 1)
    return vmap, inverse.reshape(-1, 3), uv, vchart


def pack(uv, faces, vchart, resolution, padding):
    """Pack the charts with xatlas; returns uv [V',2] in [0,1] (same vertices and faces)."""
    import xatlas

    n_charts = int(vchart.max()) + 1
    lo = np.full((n_charts, 2), np.inf)
    hi = np.full((n_charts, 2), -np.inf)
    np.minimum.at(lo, vchart, uv)
    np.maximum.at(hi, vchart, uv)
    # xatlas joins faces whose UVs touch into one chart: lay the charts apart on a grid first
    cell = float((hi - lo).max()) * 1.05 + 1e-6
    cols = int(np.ceil(np.sqrt(n_charts)))
    offset = np.stack([np.arange(n_charts) % cols, np.arange(n_charts) // cols], 1) * cell
    # and it leaves out faces of UV area below FLT_EPSILON: the median face gets area 1
    e0, e1 = uv[faces[:, 1]] - uv[faces[:, 0]], uv[faces[:, 2]] - uv[faces[:, 0]]
    area = np.abs(e0[:, 0] * e1[:, 1] - e0[:, 1] * e1[:, 0]) / 2
    scale = 1.0 / np.sqrt(max(float(np.median(area[area > 0])), 1e-30)) if (area > 0).any() else 1.0
    atlas = xatlas.Atlas()
    atlas.add_uv_mesh(((uv - lo[vchart] + offset[vchart]) * scale).astype(np.float32), faces.astype(np.uint32))
    atlas.generate(pack_options=_pack_options(resolution, padding))
    vmapping, new_faces, packed = atlas[0]
    if len(vmapping) != len(uv) or not np.array_equal(new_faces, faces):
        raise RuntimeError("xatlas changed the charts it was given to pack")
    packed = packed.astype(np.float32)
    # a vertex only faces without area touch was not packed: it takes a packed neighbour's place
    lost = atlas.get_mesh_vertex_assignment(0)[1] == np.iinfo(np.uint32).max
    while lost.any():
        before = int(lost.sum())
        for k in range(3):
            take = lost[faces[:, k]] & ~lost[faces[:, (k + 1) % 3]]
            packed[faces[take, k]] = packed[faces[take, (k + 1) % 3]]
            lost[faces[take, k]] = False
        if int(lost.sum()) == before:  # charts of faces without area only: no texel is on them
            packed[lost] = 0.0
            break
    return packed


def texel_hits(uv, faces, size, strict=False):
    """(face, texel) pairs of an atlas at ``size`` x ``size``: texel centres inside each face
    (``strict``: not on its edges). Texel (i, j) has centre ((j+.5)/S, (i+.5)/S) in UV."""
    from mesh_renderer import bary_weights, box_pixels

    t = torch.as_tensor(np.asarray(uv, np.float64))[torch.as_tensor(faces)] * size - 0.5  # [F,3,2], texel units
    tri = torch.cat([t, torch.zeros_like(t[..., :1]), torch.ones_like(t[..., :1])], -1)  # as clip coords, w = 1
    e0, e1 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    keep = (e0[:, 0] * e1[:, 1] - e0[:, 1] * e1[:, 0]).abs() > 1e-12
    fids, pixels = [], []
    for fid, px, py in box_pixels(t[..., 0], t[..., 1], size, size, keep):
        w = bary_weights(tri[fid], torch.stack([px, py], -1).double())
        b = w / w.sum(-1, keepdim=True)
        inside = (b > 1e-6).all(-1) if strict else (b >= 0).all(-1)
        fids.append(fid[inside])
        pixels.append((py * size + px)[inside])
    if not fids:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return torch.cat(fids).numpy(), torch.cat(pixels).numpy()


def overlapping_pairs(uv, faces, size):
    """Pairs (a, b) of faces with a texel centre strictly inside both."""
    fid, pix = texel_hits(uv, faces, size, strict=True)
    order = np.argsort(pix, kind="stable")
    fid, pix = fid[order], pix[order]
    dup = np.nonzero(pix[1:] == pix[:-1])[0]
    return fid[dup], fid[dup + 1]


def chart_unwrap(verts, faces, resolution=1024, padding=2):
    """``unwrap_uv(method="charts")``: see the module docstring."""
    a, b = face_adjacency(faces)
    label, cross, normal = face_directions(verts, faces, (a, b))
    chart = _components(len(faces), a, b, label[a] == label[b])
    direction = chart_axes(chart, label, cross, normal)[chart]  # per face, kept when charts split
    depth = (verts[faces].mean(1) * direction).sum(1)
    for round_ in itertools.count():
        vmap, new_faces, uv, vchart = project(verts, faces, chart, _per_chart(chart, direction))
        packed = pack(uv, new_faces, vchart, resolution, padding)
        f1, f2 = overlapping_pairs(packed, new_faces, resolution)
        if not len(f1):
            return verts[vmap], new_faces, packed
        group = chart.copy()
        if round_ < MAX_SPLIT_ROUNDS:  # the upper layer of each fold leaves its chart
            group[np.where(depth[f1] >= depth[f2], f1, f2)] += int(chart.max()) + 1
        else:  # the faces still overlapping become charts of one face (a face cannot fold): each round
            both = np.unique(np.concatenate([f1, f2]))  # makes one at least, so the loop ends
            group[both] = int(chart.max()) + 1 + np.arange(len(both))
        chart = _components(len(faces), a, b, group[a] == group[b])


def _per_chart(chart, face_direction):
    out = np.zeros((int(chart.max()) + 1, 3))
    out[chart] = face_direction
    return out


def atlas_stats(faces_in, faces_out, uv, size):
    """What an atlas costs and uses: charts (connected in UV), seam edges (mesh edges cut open),
    and utilisation (the fraction of the ``size`` x ``size`` texels whose centre lies on a face)."""
    import trimesh

    def n_edges(f):
        return len(trimesh.grouping.unique_rows(np.sort(trimesh.geometry.faces_to_edges(f), 1))[0])

    a, b = face_adjacency(faces_out)
    charts = len(np.unique(_components(len(faces_out), a, b, np.ones(len(a), bool))))
    _, pix = texel_hits(uv, faces_out, size)
    return {"charts": charts, "seam_edges": n_edges(faces_out) - n_edges(faces_in),
            "utilisation": round(len(np.unique(pix)) / size ** 2, 4)}
