"""Gaussian splat files other tools write: PlayCanvas / SuperSplat ``.compressed.ply`` and ``.sog``,
Niantic's ``.spz`` and glTF's ``KHR_gaussian_splatting`` (.glb).

Every codec here works on the raw 3DGS parameters as ``gaussians.GaussianModel`` keeps them, as a
dict of numpy arrays: ``means`` [N,3], ``scales`` [N,3] (log), ``quats`` [N,4] (w, x, y, z as the
3DGS .ply's rot_0..3), ``opacities`` [N] (logit), ``sh0`` [N,1,3], ``shN`` [N,K,3] (K = 0, 3, 8, 15).

``.compressed.ply`` (PlayCanvas's compressed PLY; the layout @playcanvas/splat-transform 3.7.0
reads and writes, its ``decompress-ply`` / ``write-compressed-ply``): a binary little-endian PLY
with three elements,

* ``chunk`` (one per 256 Gaussians, float32): per-chunk bounds ``min_x .. max_z`` of the positions,
  ``min_scale_x .. max_scale_z`` of the log scales (clamped to [-20, 20]), ``min_r .. max_b`` of
  the colours ``0.5 + SH_C0 * f_dc``;
* ``vertex`` (uint32 each): ``packed_position`` and ``packed_scale`` (11, 10, 11 bits of the
  position within its chunk's bounds), ``packed_rotation`` (2 bits: the index of the largest
  quaternion component, made positive; 10 bits each for the other three, scaled by sqrt(2)/2 + 0.5),
  ``packed_color`` (8 bits each: r, g, b within the chunk's colour bounds, then sigmoid(opacity));
* ``sh`` (only with SH bands): uint8 ``f_rest_*``, trunc((f / 8 + 0.5) * 256) clamped to 0..255.

It keeps every SH band, at 8 bits over [-4, 4]; positions to 1/2047 (1/1023 vertically) of their
chunk's extent, hence the Gaussians sorted into Morton order first (as splat-transform does), so
that a chunk is a small region.
"""
from __future__ import annotations

import math

import numpy as np

from io_utils import atomic_write, bytes_writer

SH_C0 = 0.28209479177387814
CHUNK = 256  # Gaussians per chunk of a .compressed.ply
CHUNK_PROPS = ["min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
               "min_scale_x", "min_scale_y", "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z",
               "min_r", "min_g", "min_b", "max_r", "max_g", "max_b"]
VERTEX_PROPS = ["packed_position", "packed_rotation", "packed_scale", "packed_color"]
SH_BANDS_OF_REST = {0: 0, 9: 1, 24: 2, 45: 3}  # number of f_rest_* -> SH degree
# the file name endings of every Gaussian format read and written (longest first: .compressed.ply
# before .ply); a .ply, .glb, .spz or .sog is also told by its content (format_of)
GAUSSIAN_EXTENSIONS = (".compressed.ply", ".ply", ".splat", ".spz", ".sog", ".glb")
# the indices of the three other quaternion components, by the index of the largest (smallest-three packings)
OTHERS = np.array([[i for i in range(4) if i != m] for m in range(4)])


class SplatFormatError(ValueError):
    """A splat file that cannot be read as its format says (truncated, inconsistent)."""


# ------------------------------------------------------------------------------ helpers
def is_compressed_ply(path: str) -> bool:
    """A .ply whose header has a ``chunk`` element and ``packed_*`` vertex properties."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    if not head.startswith(b"ply"):
        return False
    header = head.split(b"end_header")[0]
    return b"element chunk" in header and b"packed_position" in header


def is_spz(path: str) -> bool:
    """A Niantic .spz: the 'NGSP' header (version 4), or a gzip stream (versions 2 and 3) whose
    name says .spz."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return head == b"NGSP" or (head[:2] == b"\x1f\x8b" and path.lower().endswith(".spz"))


def format_of(path: str) -> str:
    """Which Gaussian format ``path`` holds, as GaussianModel reads it: "splat" by the name; "glb",
    "sog", "spz" by the name or the content; else "compressed.ply" or "ply" by the content."""
    low = path.lower()
    if low.endswith(".splat"):
        return "splat"
    if low.endswith(".glb") or is_gaussian_glb(path):
        return "glb"
    if low.endswith(".sog") or is_sog(path):
        return "sog"
    if low.endswith(".spz") or is_spz(path):
        return "spz"
    return "compressed.ply" if is_compressed_ply(path) else "ply"


def sh_degree_of(params: dict) -> int:
    """The SH degree of ``params`` (0-3, from shN's coefficients per channel); a one-line
    SplatFormatError for no Gaussians or a count that is no degree."""
    if len(params["means"]) == 0:
        raise SplatFormatError("no Gaussians to write")
    k = np.shape(params["shN"])[1]
    degree = {0: 0, 3: 1, 8: 2, 15: 3}.get(k)
    if degree is None:
        raise SplatFormatError(f"{k} SH coefficients per channel match no SH degree 0..3")
    return degree


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def morton_order(means: np.ndarray) -> np.ndarray:
    """Indices sorting points along a 3D Morton (Z-order) curve of 10 bits per axis."""
    lo, hi = means.min(0), means.max(0)
    q = ((means - lo) / np.maximum(hi - lo, 1e-12) * 1023).astype(np.uint64).clip(0, 1023)

    def spread(v):  # 10 bits -> every third bit of 30
        v = (v | (v << np.uint64(16))) & np.uint64(0x030000FF)
        v = (v | (v << np.uint64(8))) & np.uint64(0x0300F00F)
        v = (v | (v << np.uint64(4))) & np.uint64(0x030C30C3)
        v = (v | (v << np.uint64(2))) & np.uint64(0x09249249)
        return v
    code = spread(q[:, 0]) | (spread(q[:, 1]) << np.uint64(1)) | (spread(q[:, 2]) << np.uint64(2))
    return np.argsort(code, kind="stable")


def _unorm(v, bits):
    t = (1 << bits) - 1
    return np.clip(np.floor(v * t + 0.5), 0, t).astype(np.uint32)


def _from_unorm(v, bits):
    t = (1 << bits) - 1
    return (v & t).astype(np.float64) / t


def _normalise(x, lo, hi):
    """splat-transform's normalize: 0 at or below lo, 1 at or above hi, 0 for a range under 1e-5."""
    rng = hi - lo
    out = np.where(rng < 1e-5, 0.0, (x - lo) / np.where(rng < 1e-5, 1.0, rng))
    return np.where(x <= lo, 0.0, np.where(x >= hi, 1.0, out))


def _pack_rotation(q: np.ndarray) -> np.ndarray:
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    largest = np.abs(q).argmax(1)
    q = np.where(q[np.arange(len(q)), largest][:, None] < 0, -q, q)
    out = largest.astype(np.uint32)
    others = OTHERS[largest]  # [N,3]
    for j in range(3):  # the other three in order, 10 bits each
        comp = q[np.arange(len(q)), others[:, j]]
        out = (out << np.uint32(10)) | _unorm(comp * (math.sqrt(2) * 0.5) + 0.5, 10)
    return out


def _unpack_rotation(p: np.ndarray) -> np.ndarray:
    norm = 1.0 / (math.sqrt(2) * 0.5)
    a = (_from_unorm(p >> np.uint32(20), 10) - 0.5) * norm
    b = (_from_unorm(p >> np.uint32(10), 10) - 0.5) * norm
    c = (_from_unorm(p, 10) - 0.5) * norm
    m = np.sqrt(np.maximum(0, 1 - (a * a + b * b + c * c)))
    largest = (p >> np.uint32(30)).astype(np.int64)
    q = np.zeros((len(p), 4))
    others = OTHERS[largest]
    rows = np.arange(len(p))
    q[rows, largest] = m
    for j, v in enumerate((a, b, c)):
        q[rows, others[:, j]] = v
    return q


def _pack_111011(x, y, z):
    return (_unorm(x, 11) << np.uint32(21)) | (_unorm(y, 10) << np.uint32(11)) | _unorm(z, 11)


def _unpack_111011(p):
    return _from_unorm(p >> np.uint32(21), 11), _from_unorm(p >> np.uint32(11), 10), _from_unorm(p, 11)


# ------------------------------------------------------------------ .compressed.ply
def write_compressed_ply(params: dict, path: str):
    """``params`` (module docstring) as a PlayCanvas .compressed.ply, Gaussians in Morton order."""
    sh_degree_of(params)
    means = np.asarray(params["means"], np.float64)
    n = len(means)
    order = morton_order(means)
    means = means[order]
    scales = np.asarray(params["scales"], np.float64)[order]
    quats = np.asarray(params["quats"], np.float64)[order]
    alpha = sigmoid(np.asarray(params["opacities"], np.float64)[order])
    colour = np.asarray(params["sh0"], np.float64).reshape(n, 3)[order] * SH_C0 + 0.5
    shN = np.asarray(params["shN"], np.float64)[order]
    n_rest = shN.shape[1] * 3
    n_chunks = (n + CHUNK - 1) // CHUNK
    chunk_of = np.arange(n) // CHUNK

    def bounds(v, clamp=None):
        lo = np.stack([v[chunk_of == c].min(0) for c in range(n_chunks)])
        hi = np.stack([v[chunk_of == c].max(0) for c in range(n_chunks)])
        if clamp is not None:
            lo, hi = np.clip(lo, -clamp, clamp), np.clip(hi, -clamp, clamp)
        return lo.astype(np.float32), hi.astype(np.float32)

    (plo, phi), (slo, shi), (clo, chi) = bounds(means), bounds(scales, 20.0), bounds(colour)
    chunk = np.concatenate([plo, phi, slo, shi, clo, chi], 1)

    def rel(v, lo, hi):  # each value within its chunk's (float32) bounds
        lo, hi = lo.astype(np.float64)[chunk_of], hi.astype(np.float64)[chunk_of]
        return [_normalise(v[:, k], lo[:, k], hi[:, k]) for k in range(3)]

    vertex = np.empty((n, 4), np.uint32)
    vertex[:, 0] = _pack_111011(*rel(means, plo, phi))
    vertex[:, 1] = _pack_rotation(quats)
    vertex[:, 2] = _pack_111011(*rel(scales, slo, shi))
    r, g, b = rel(colour, clo, chi)
    vertex[:, 3] = ((_unorm(r, 8) << np.uint32(24)) | (_unorm(g, 8) << np.uint32(16)) | (_unorm(b, 8) << np.uint32(8))
                    | _unorm(alpha, 8))
    rest = shN.transpose(0, 2, 1).reshape(n, -1)  # f_rest_* order: channel-major, as the 3DGS .ply
    sh = np.clip(np.trunc((rest / 8 + 0.5) * 256), 0, 255).astype(np.uint8)
    header = ["ply", "format binary_little_endian 1.0", "comment Generated by dreamgaussian (splat_formats.py)",
              f"element chunk {n_chunks}", *[f"property float {p}" for p in CHUNK_PROPS],
              f"element vertex {n}", *[f"property uint {p}" for p in VERTEX_PROPS]]
    if n_rest:
        header += [f"element sh {n}", *[f"property uchar f_rest_{i}" for i in range(n_rest)]]
    data = ("\n".join(header + ["end_header"]) + "\n").encode() + chunk.astype("<f4").tobytes() \
        + vertex.astype("<u4").tobytes() + (sh.tobytes() if n_rest else b"")
    atomic_write(path, bytes_writer(data))


def read_compressed_ply(path: str) -> dict:
    """A PlayCanvas .compressed.ply as ``params`` (module docstring); a truncated or inconsistent
    file is a one-line SplatFormatError."""
    from plyfile import PlyData

    try:
        ply = PlyData.read(path)
    except Exception as e:  # plyfile raises several exception types; a truncated body among them
        raise SplatFormatError(f"{path}: not a readable compressed .ply (truncated or damaged: "
                               f"{str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__})") from None
    names = {el.name: el for el in ply.elements}
    if "chunk" not in names or "vertex" not in names:
        raise SplatFormatError(f"{path}: a compressed .ply needs 'chunk' and 'vertex' elements")
    ch, v = names["chunk"].data, names["vertex"].data
    missing = [p for p in CHUNK_PROPS[:12] if p not in ch.dtype.names] + \
              [p for p in VERTEX_PROPS if p not in v.dtype.names]
    if missing:
        raise SplatFormatError(f"{path}: compressed .ply lacks {', '.join(missing)}")
    n = len(v)
    if n == 0:
        raise SplatFormatError(f"{path}: the compressed .ply is empty (0 Gaussians)")
    if len(ch) != (n + CHUNK - 1) // CHUNK:
        raise SplatFormatError(f"{path}: {len(ch)} chunks for {n} Gaussians; a compressed .ply has one per {CHUNK} "
                               f"({(n + CHUNK - 1) // CHUNK})")
    c = np.arange(n) // CHUNK
    col = lambda a: np.asarray(ch[a], np.float64)[c]  # noqa: E731
    lerp = lambda lo, hi, t: lo * (1 - t) + hi * t  # noqa: E731
    pp, pr, ps, pc = (np.asarray(v[p], np.uint32) for p in VERTEX_PROPS)
    tx, ty, tz = _unpack_111011(pp)
    means = np.stack([lerp(col("min_x"), col("max_x"), tx), lerp(col("min_y"), col("max_y"), ty),
                      lerp(col("min_z"), col("max_z"), tz)], 1)
    sx, sy, sz = _unpack_111011(ps)
    scales = np.stack([lerp(col("min_scale_x"), col("max_scale_x"), sx),
                       lerp(col("min_scale_y"), col("max_scale_y"), sy),
                       lerp(col("min_scale_z"), col("max_scale_z"), sz)], 1)
    cr, cg, cb = (_from_unorm(pc >> np.uint32(s), 8) for s in (24, 16, 8))
    if "min_r" in ch.dtype.names:
        cr, cg, cb = (lerp(col(f"min_{k}"), col(f"max_{k}"), t) for k, t in zip("rgb", (cr, cg, cb)))
    alpha = np.clip(_from_unorm(pc, 8), 0.5 / 255, 1 - 0.5 / 255)
    sh0 = (np.stack([cr, cg, cb], 1) - 0.5) / SH_C0
    n_rest = 0
    shN = np.zeros((n, 0, 3))
    if "sh" in names:
        s = names["sh"].data
        n_rest = len(s.dtype.names)
        if n_rest not in SH_BANDS_OF_REST or len(s) != n:
            raise SplatFormatError(f"{path}: the 'sh' element has {n_rest} properties x {len(s)} rows; expected "
                                   f"9, 24 or 45 x {n}")
        raw = np.stack([np.asarray(s[f"f_rest_{i}"], np.float64) for i in range(n_rest)], 1)
        nrm = np.where(raw == 0, 0.0, np.where(raw == 255, 1.0, (raw + 0.5) / 256))
        shN = ((nrm - 0.5) * 8).reshape(n, 3, -1).transpose(0, 2, 1)
    out = {"means": means, "scales": scales, "quats": _unpack_rotation(pr), "opacities": np.log(alpha / (1 - alpha)),
           "sh0": sh0[:, None, :], "shN": shN}
    out = {k: np.ascontiguousarray(a, dtype=np.float32) for k, a in out.items()}
    if not all(np.isfinite(a).all() for a in out.values()):
        raise SplatFormatError(f"{path}: non-finite values in the compressed .ply's chunk bounds")
    out["sh_degree"] = SH_BANDS_OF_REST[n_rest]
    return out


# ----------------------------------------------------------------------------------- .spz
# Niantic's .spz, as @playcanvas/splat-transform 3.7.0 reads and writes it (its readSpz / writeSpz,
# the writer being Niantic's own packer built to WebAssembly): little-endian; version 4 (what it
# writes) is a 32-byte header (u32 magic 'NGSP' 0x5053474e, u32 version, u32 count, u8 SH degree,
# u8 fractional bits, u8 flags (1: antialiased), u8 number of streams, u32 offset of the table of
# streams, zeros), the table (u64 compressed and u64 uncompressed size per stream) and a zstd frame
# per stream; versions 2 and 3 are one gzip stream holding a 16-byte header and the streams
# uncompressed. The streams: positions (3 x signed 24-bit fixed point, 12 fractional bits),
# alphas (u8 sigmoid(opacity) * 255), colours (u8 f_dc * 0.15 * 255 + 127.5), scales (u8 (log
# scale + 10) * 16), rotations (version 2: x, y, z as u8 (q * 127.5 + 127.5) with w >= 0; 3 and 4:
# smallest three, a u32 of the largest component's index (2 bits) and the other three as sign +
# 9-bit magnitude / sqrt(1/2)), and SH rest (u8 round(f * 128) + 128, coefficient-major with r, g,
# b inner, degree-1 coefficients to 5 bits and the rest to 4). Coordinates are stored as they are,
# in the .ply's own frame, as splat-transform does (it packs with the format's UNSPECIFIED
# coordinate system, so no axis is flipped).
SPZ_MAGIC = 0x5053474E
SPZ_COLOR_SCALE = 0.15
SPZ_SH_COEFFS = {0: 0, 1: 3, 2: 8, 3: 15}


def _spz_streams(data: bytes, path: str) -> tuple:
    """(header fields, [positions, alphas, colours, scales, rotations, sh] raw bytes)."""
    import gzip
    import struct

    if data[:2] == b"\x1f\x8b":  # versions 2 and 3: one gzip stream
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise SplatFormatError(f"{path}: the .spz's gzip stream is damaged or truncated ({e})") from None
    if len(data) < 16 or struct.unpack_from("<I", data)[0] != SPZ_MAGIC:
        raise SplatFormatError(f"{path}: not a .spz file (no 'NGSP' header)")
    version, n, degree, frac, flags, n_streams = struct.unpack_from("<IIBBBB", data, 4)
    if version not in (2, 3, 4):
        raise SplatFormatError(f"{path}: .spz version {version} is not supported (2, 3 and 4 are)")
    if degree not in SPZ_SH_COEFFS:
        raise SplatFormatError(f"{path}: .spz SH degree {degree} is not supported (0 to 3)")
    if n == 0:
        raise SplatFormatError(f"{path}: the .spz is empty (0 Gaussians)")
    k = SPZ_SH_COEFFS[degree] * 3
    sizes = [n * 9, n, n * 3, n * 3, n * (3 if version == 2 else 4), n * k]
    if version == 4:
        import zstandard

        if len(data) < 32:
            raise SplatFormatError(f"{path}: the .spz is truncated (header)")
        toc = struct.unpack_from("<I", data, 16)[0]
        expected = 6 if degree else 5
        if n_streams != expected or toc < 32 or toc + 16 * n_streams > len(data):
            raise SplatFormatError(f"{path}: inconsistent .spz header ({n_streams} streams at byte {toc}; expected "
                                   f"{expected})")
        streams, offset = [], toc + 16 * n_streams
        for i in range(n_streams):
            comp, raw = struct.unpack_from("<QQ", data, toc + 16 * i)
            if raw != sizes[i] or offset + comp > len(data):
                raise SplatFormatError(f"{path}: the .spz is truncated or inconsistent (stream {i}: {comp} bytes "
                                       f"for {raw}, {sizes[i]} expected)")
            try:
                out = zstandard.ZstdDecompressor().decompress(data[offset:offset + comp], max_output_size=raw)
            except zstandard.ZstdError as e:
                raise SplatFormatError(f"{path}: .spz stream {i} does not decode ({e})") from None
            if len(out) != raw:
                raise SplatFormatError(f"{path}: .spz stream {i} decodes to {len(out)} bytes, not {raw}")
            streams.append(out)
            offset += comp
        if not degree:
            streams.append(b"")
    else:
        if flags & 0x2:
            raise SplatFormatError(f"{path}: this .spz carries extensions, which are not read here")
        if len(data) < 16 + sum(sizes):
            raise SplatFormatError(f"{path}: the .spz is truncated ({len(data)} bytes, {16 + sum(sizes)} needed)")
        streams, offset = [], 16
        for s in sizes:
            streams.append(data[offset:offset + s])
            offset += s
    return (version, n, degree, frac, flags), streams


def read_spz(path: str) -> dict:
    """A Niantic .spz (versions 2-4) as ``params`` (module docstring)."""
    with open(path, "rb") as fh:
        data = fh.read()
    (version, n, degree, frac, _), (pos, alpha, col, scale, rot, sh) = _spz_streams(data, path)
    b = np.frombuffer(pos, np.uint8).reshape(n, 3, 3).astype(np.int32)
    fixed = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16)
    fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)
    means = fixed.astype(np.float64) / (1 << frac)
    a = np.clip(np.frombuffer(alpha, np.uint8) / 255.0, 1e-6, 1 - 1e-6)
    sh0 = (np.frombuffer(col, np.uint8).reshape(n, 3) / 255.0 - 0.5) / SPZ_COLOR_SCALE
    scales = np.frombuffer(scale, np.uint8).reshape(n, 3) / 16.0 - 10.0
    if version == 2:
        xyz = np.frombuffer(rot, np.uint8).reshape(n, 3) / 127.5 - 1.0
        w = np.sqrt(np.maximum(0, 1 - (xyz ** 2).sum(1)))
        quats = np.concatenate([w[:, None], xyz], 1)
    else:
        comp = np.frombuffer(rot, "<u4").astype(np.int64)
        largest = comp >> 30
        xyzw = np.zeros((n, 4))
        rest = comp.copy()
        total = np.zeros(n)
        for i in (3, 2, 1, 0):  # the last packed component sits in the lowest bits
            here = largest != i
            mag, neg = rest & 511, (rest >> 9) & 1
            v = math.sqrt(0.5) * mag / 511 * np.where(neg == 1, -1, 1)
            xyzw[here, i] = v[here]
            total += np.where(here, v * v, 0)
            rest = np.where(here, rest >> 10, rest)
        xyzw[np.arange(n), largest] = np.sqrt(np.maximum(0, 1 - total))
        quats = xyzw[:, [3, 0, 1, 2]]
    k = SPZ_SH_COEFFS[degree]
    shN = ((np.frombuffer(sh, np.uint8).astype(np.float64) - 128) / 128).reshape(n, k, 3)
    out = {"means": means, "scales": scales, "quats": quats, "opacities": np.log(a / (1 - a)), "sh0": sh0[:, None, :],
           "shN": shN}
    out = {key: np.ascontiguousarray(v, dtype=np.float32) for key, v in out.items()}
    out["sh_degree"] = degree
    return out


def write_spz(params: dict, path: str, antialiased: bool = False):
    """``params`` as a version-4 .spz (as splat-transform writes it: module docstring)."""
    import struct

    import zstandard

    degree = sh_degree_of(params)
    means = np.asarray(params["means"], np.float64)
    n = len(means)
    shN = np.asarray(params["shN"], np.float64)
    frac = 12
    fixed = np.round(means * (1 << frac)).astype(np.int64)
    if np.abs(fixed).max() >= 1 << 23:
        raise SplatFormatError(f"positions beyond +-{(1 << 23) / (1 << frac):g} do not fit the .spz's 24-bit fixed point")
    fixed &= 0xFFFFFF
    pos = np.stack([fixed & 0xFF, (fixed >> 8) & 0xFF, (fixed >> 16) & 0xFF], -1).astype(np.uint8)
    u8 = lambda x: np.clip(np.round(x), 0, 255).astype(np.uint8)  # noqa: E731
    alpha = u8(sigmoid(np.asarray(params["opacities"], np.float64)) * 255)
    col = u8(np.asarray(params["sh0"], np.float64).reshape(n, 3) * (SPZ_COLOR_SCALE * 255) + 127.5)
    scale = u8((np.asarray(params["scales"], np.float64) + 10) * 16)
    q = np.asarray(params["quats"], np.float64)[:, [1, 2, 3, 0]]  # wxyz -> xyzw
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    largest = np.abs(q).argmax(1)
    negate = q[np.arange(n), largest] < 0
    comp = largest.astype(np.uint64)
    for i in range(4):
        here = largest != i
        negbit = ((q[:, i] < 0) ^ negate).astype(np.uint64)
        mag = np.floor(511 * np.abs(q[:, i]) / math.sqrt(0.5) + 0.5).astype(np.uint64)
        comp = np.where(here, (comp << np.uint64(10)) | (negbit << np.uint64(9)) | mag, comp)
    rot = comp.astype("<u4")
    sh = np.zeros((n, shN.shape[1], 3), np.uint8)
    for j in range(shN.shape[1]):  # degree-1 coefficients to 5 bits, the rest to 4 (buckets of 8 and 16)
        bucket = 8 if j < 3 else 16
        v = np.round(shN[:, j] * 128) + 128
        sh[:, j] = np.clip((v + bucket // 2) // bucket * bucket, 0, 255).astype(np.uint8)
    streams = [pos.tobytes(), alpha.tobytes(), col.tobytes(), scale.tobytes(), rot.tobytes()]
    if degree:
        streams.append(sh.tobytes())
    cctx = zstandard.ZstdCompressor(level=12)
    packed = [cctx.compress(s) for s in streams]
    header = struct.pack("<IIIBBBBI", SPZ_MAGIC, 4, n, degree, frac, 1 if antialiased else 0, len(streams), 32) + bytes(12)
    toc = b"".join(struct.pack("<QQ", len(p), len(s)) for p, s in zip(packed, streams))
    data = header + toc + b"".join(packed)
    atomic_write(path, bytes_writer(data))


# ----------------------------------------------------------------------------------- .sog
# PlayCanvas's SOG (version 2, as @playcanvas/splat-transform 3.7.0 reads and writes it): a zip of
# meta.json and lossless WebP images, one texel per Gaussian (texture width ceil(sqrt(N) / 4) * 4,
# height ceil(N / width / 4) * 4, Gaussians in Morton order):
#   means_l / means_u  low and high bytes of 16-bit positions, each axis mapped linearly between
#                      meta.means.mins and maxs of sign(x) * ln(|x| + 1);
#   quats              smallest three: the other three components * sqrt(2) (the largest made
#                      positive) as 255 * (v * 0.5 + 0.5), alpha 252 + the largest's index (w, x,
#                      y, z order);
#   scales             r, g, b: indices into meta.scales.codebook (256 log scales shared by axes);
#   sh0                r, g, b: indices into meta.sh0.codebook (256 f_dc values), alpha
#                      sigmoid(opacity) * 255;
#   shN (SH bands)     shN_labels: a 16-bit palette index (r low, g high); shN_centroids: 64
#                      palette entries per row, each shCoeffs texels whose r, g, b index
#                      meta.shN.codebook (256 values), meta.shN.count entries, meta.shN.bands.
# Byte values are truncated, as the reference's Uint8Array stores are. Codebooks here are 1D
# k-means (the reference uses an optimal 1D quantiser: any 256 ascending values decode the same
# way) and the SH palette k-means on the coefficient vectors.
SOG_SH_COEFFS = [0, 3, 8, 15]


def is_sog(path: str) -> bool:
    """A zip (SOG bundle) whose entries include meta.json."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return "meta.json" in z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def _kmeans1d(values: np.ndarray, k: int = 256, iters: int = 20) -> tuple:
    """(ascending codebook [k], labels uint8) of 1D values by Lloyd's algorithm from quantiles."""
    v = np.asarray(values, np.float64).ravel()
    centres = np.unique(np.quantile(v, (np.arange(k) + 0.5) / k))
    for _ in range(iters):
        edges = (centres[1:] + centres[:-1]) / 2
        lab = np.searchsorted(edges, v)
        sums = np.bincount(lab, v, len(centres))
        cnt = np.bincount(lab, None, len(centres))
        new = np.where(cnt > 0, sums / np.maximum(cnt, 1), centres)
        new = np.unique(new)
        if len(new) == len(centres) and np.allclose(new, centres):
            break
        centres = new
    edges = (centres[1:] + centres[:-1]) / 2
    code = np.zeros(k)
    code[:len(centres)] = centres
    code[len(centres):] = centres[-1]
    return code, np.searchsorted(edges, v).astype(np.uint8).reshape(np.shape(values))


def _kmeans(x: np.ndarray, k: int, iters: int = 10, seed: int = 0) -> tuple:
    """(centroids [k,D], labels [N]) of vectors ``x`` [N,D]: Lloyd's algorithm from a random subset."""
    import torch

    t = torch.from_numpy(np.asarray(x, np.float32))
    k = min(k, len(t))
    g = torch.Generator().manual_seed(seed)
    c = t[torch.randperm(len(t), generator=g)[:k]].clone()
    lab = torch.zeros(len(t), dtype=torch.long)
    for _ in range(iters):
        lab = torch.cat([torch.cdist(part, c).argmin(1) for part in t.split(8192)])
        sums = torch.zeros_like(c).index_add_(0, lab, t)
        cnt = torch.bincount(lab, minlength=k).float()[:, None]
        c = torch.where(cnt > 0, sums / cnt.clamp(min=1), c)
    lab = torch.cat([torch.cdist(part, c).argmin(1) for part in t.split(8192)])
    return c.numpy(), lab.numpy()


def _webp(rgba: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "WEBP", lossless=True, quality=100, exact=True)
    return buf.getvalue()


def _unwebp(data: bytes, name: str, path: str) -> np.ndarray:
    import io

    from PIL import Image

    try:
        im = Image.open(io.BytesIO(data))
        return np.asarray(im.convert("RGBA"))
    except Exception as e:
        raise SplatFormatError(f"{path}: the SOG's {name} is not a readable WebP image ({type(e).__name__})") from None


def write_sog(params: dict, path: str):
    """``params`` as a bundled SOG (.sog: module docstring's layout, meta.json version 2)."""
    import io
    import json
    import zipfile

    bands = sh_degree_of(params)
    means = np.asarray(params["means"], np.float64)
    n = len(means)
    shN = np.asarray(params["shN"], np.float64)
    width = int(math.ceil(math.sqrt(n) / 4) * 4)
    height = int(math.ceil(n / width / 4) * 4)
    order = morton_order(means)

    def texture(channels: list) -> np.ndarray:  # per-Gaussian bytes -> an RGBA texture in Morton order
        img = np.zeros((width * height, 4), np.uint8)
        img[:, 3] = 255
        for c, v in enumerate(channels):
            img[:n, c] = np.asarray(v)[order]
        return img.reshape(height, width, 4)

    files = {}
    lt = np.sign(means) * np.log(np.abs(means) + 1)
    lo, hi = lt.min(0), lt.max(0)
    q16 = np.trunc(65535 * (lt - lo) / np.where(hi > lo, hi - lo, 1)).astype(np.int64).clip(0, 65535)
    files["means_l.webp"] = texture([q16[:, a] & 0xFF for a in range(3)])
    files["means_u.webp"] = texture([(q16[:, a] >> 8) & 0xFF for a in range(3)])
    q = np.asarray(params["quats"], np.float64)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    largest = np.abs(q).argmax(1)
    q = q * (np.where(q[np.arange(n), largest] < 0, -1.0, 1.0) * math.sqrt(2))[:, None]
    others = OTHERS[largest]
    qb = [np.trunc(255 * (q[np.arange(n), others[:, j]] * 0.5 + 0.5)).clip(0, 255).astype(np.uint8) for j in range(3)]
    files["quats.webp"] = texture(qb + [(252 + largest).astype(np.uint8)])
    s_code, s_lab = _kmeans1d(np.asarray(params["scales"], np.float64))
    files["scales.webp"] = texture([s_lab[:, a] for a in range(3)])
    c_code, c_lab = _kmeans1d(np.asarray(params["sh0"], np.float64).reshape(n, 3))
    alpha = np.trunc(np.clip(sigmoid(np.asarray(params["opacities"], np.float64)) * 255, 0, 255)).astype(np.uint8)
    files["sh0.webp"] = texture([c_lab[:, a] for a in range(3)] + [alpha])
    meta = {"version": 2, "asset": {"generator": "dreamgaussian splat_formats.py"}, "count": n,
            "means": {"mins": lo.tolist(), "maxs": hi.tolist(), "files": ["means_l.webp", "means_u.webp"]},
            "scales": {"codebook": s_code.tolist(), "files": ["scales.webp"]}, "quats": {"files": ["quats.webp"]},
            "sh0": {"codebook": c_code.tolist(), "files": ["sh0.webp"]}}
    if bands:
        k = SOG_SH_COEFFS[bands]
        rest = shN.transpose(0, 2, 1).reshape(n, 3 * k)  # channel-major, as f_rest
        palette = min(64, 2 ** math.floor(math.log2(n / 1024))) * 1024 if n >= 1024 else min(n, 256)
        centroids, labels = _kmeans(rest, palette)
        m = len(centroids)
        sh_code, sh_lab = _kmeans1d(centroids)  # [m, 3k] codebook indices
        cen = np.zeros((int(math.ceil(m / 64)) * 64 * k, 4), np.uint8)
        cen[:, 3] = 255
        for j in range(k):
            for ch in range(3):
                cen[np.arange(m) * k + j, ch] = sh_lab[:, ch * k + j]
        files["shN_centroids.webp"] = cen.reshape(int(math.ceil(m / 64)), 64 * k, 4)
        files["shN_labels.webp"] = texture([labels & 0xFF, (labels >> 8) & 0xFF, np.zeros(n, np.uint8)])
        meta["shN"] = {"count": m, "bands": bands, "codebook": sh_code.tolist(),
                       "files": ["shN_centroids.webp", "shN_labels.webp"]}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, img in files.items():
            z.writestr(name, _webp(np.ascontiguousarray(img)))
        z.writestr("meta.json", json.dumps(meta))
    data = buf.getvalue()
    atomic_write(path, bytes_writer(data))


def read_sog(path: str) -> dict:
    """A bundled SOG (.sog; meta.json version 2) as ``params`` (module docstring)."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            entries = {name: z.read(name) for name in z.namelist()}
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise SplatFormatError(f"{path}: not a readable SOG bundle (zip: {e})") from None
    if "meta.json" not in entries:
        raise SplatFormatError(f"{path}: the SOG bundle has no meta.json")
    try:
        meta = json.loads(entries["meta.json"])
        n = int(meta["count"])
        if meta.get("version") != 2:
            raise SplatFormatError(f"{path}: SOG meta.json version {meta.get('version')} is not read here (2 is)")
        need = [meta["means"]["files"][0], meta["means"]["files"][1], meta["quats"]["files"][0],
                meta["scales"]["files"][0], meta["sh0"]["files"][0]]
        s_code = np.asarray(meta["scales"]["codebook"], np.float64)
        c_code = np.asarray(meta["sh0"]["codebook"], np.float64)
        lo, hi = np.asarray(meta["means"]["mins"], np.float64), np.asarray(meta["means"]["maxs"], np.float64)
    except SplatFormatError:
        raise
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise SplatFormatError(f"{path}: the SOG's meta.json is incomplete ({type(e).__name__}: {e})") from None
    missing = [f for f in need if f not in entries]
    if missing:
        raise SplatFormatError(f"{path}: the SOG bundle lacks {', '.join(missing)}")
    if n <= 0:
        raise SplatFormatError(f"{path}: the SOG is empty (0 Gaussians)")
    if len(s_code) != 256 or len(c_code) != 256 or lo.shape != (3,) or hi.shape != (3,):
        raise SplatFormatError(f"{path}: the SOG's codebooks or bounds have the wrong size")

    def pixels(name):
        img = _unwebp(entries[name], name, path).reshape(-1, 4)
        if len(img) < n:
            raise SplatFormatError(f"{path}: the SOG's {name} has {len(img)} texels for {n} Gaussians")
        return img[:n].astype(np.int64)

    ml, mu, qt, sc, c0 = (pixels(f) for f in need)
    v = (ml[:, :3] | (mu[:, :3] << 8)) / 65535.0
    t = lo + np.where(hi - lo != 0, hi - lo, 1) * v
    means = np.sign(t) * (np.exp(np.abs(t)) - 1)
    tag = qt[:, 3]
    largest = np.clip(tag - 252, 0, 3)
    abc = (qt[:, :3] / 255 * 2 - 1) / math.sqrt(2)
    quats = np.zeros((n, 4))
    others = OTHERS[largest]
    rows = np.arange(n)
    for j in range(3):
        quats[rows, others[:, j]] = abc[:, j]
    quats[rows, largest] = np.sqrt(np.maximum(0, 1 - (abc ** 2).sum(1)))
    bad = (tag < 252) | (tag > 255)
    quats[bad] = (1, 0, 0, 0)
    a = np.clip(c0[:, 3] / 255, 1e-6, 1 - 1e-6)
    out = {"means": means, "scales": s_code[sc[:, :3]], "quats": quats, "opacities": np.log(a / (1 - a)),
           "sh0": c_code[c0[:, :3]][:, None, :], "shN": np.zeros((n, 0, 3))}
    bands = 0
    if meta.get("shN") and SOG_SH_COEFFS[int(meta["shN"].get("bands", 0))] > 0:
        sh = meta["shN"]
        bands = int(sh["bands"])
        k = SOG_SH_COEFFS[bands]
        files = sh.get("files", [])
        if len(files) < 2 or any(f not in entries for f in files[:2]):
            raise SplatFormatError(f"{path}: the SOG bundle lacks its shN textures")
        code = np.asarray(sh["codebook"], np.float64)
        cen = _unwebp(entries[files[0]], files[0], path).astype(np.int64)
        if cen.shape[1] != 64 * k:
            raise SplatFormatError(f"{path}: the SOG's shN centroids are {cen.shape[1]} texels wide, {64 * k} expected")
        lab = pixels(files[1])
        label = lab[:, 0] | (lab[:, 1] << 8)
        count = int(sh["count"])
        rest = np.zeros((n, 3, k))
        ok = label < min(count, cen.shape[0] * 64)
        cy, cx = label // 64, (label % 64) * k
        for j in range(k):
            texel = cen[np.where(ok, cy, 0), np.where(ok, cx + j, 0)]
            for ch in range(3):
                rest[:, ch, j] = np.where(ok, code[texel[:, ch]], 0)
        out["shN"] = rest.transpose(0, 2, 1)
    out = {key: np.ascontiguousarray(val, dtype=np.float32) for key, val in out.items()}
    out["sh_degree"] = bands
    return out


# ------------------------------------------------------------------- glTF KHR_gaussian_splatting
# The Khronos extension (ratified), laid out as @playcanvas/splat-transform 3.7.0 writes it: one
# point primitive (mode 0) carrying the extension object (kernel "ellipse", colorSpace
# "srgb_rec709_display", sortingMethod "cameraDistance", projection "perspective") and float
# attributes POSITION (VEC3, with min/max), KHR_gaussian_splatting:ROTATION (VEC4 x, y, z, w; unit
# quaternions, as the ratified text requires: splat-transform 3.7.0 copies them unnormalised),
# KHR_gaussian_splatting:SCALE (VEC3, linear: exp of the log scale), KHR_gaussian_splatting:OPACITY
# (SCALAR, sigmoid of the logit), KHR_gaussian_splatting:SH_DEGREE_0_COEF_0 (VEC3 f_dc) and
# SH_DEGREE_l_COEF_n (VEC3 r, g, b of each higher coefficient), plus COLOR_0 (VEC4 normalised u8:
# 0.5 + SH_C0 * f_dc, alpha the opacity) as the point-cloud fallback. Positions are in glTF's frame,
# which is this project's (+y up, as its meshes); nothing is rotated. (splat-transform rotates a
# .ply 180 degrees about z on the way to .glb: it takes a .ply to be y-down, as 3DGS training
# output from COLMAP is.) Everything is kept, as float32 (the quaternions' length, which the
# rasterisers ignore, excepted).
GLTF_EXT = "KHR_gaussian_splatting"
SH_COEFS_PER_DEGREE = [1, 3, 5, 7]


def is_gaussian_glb(path: str) -> bool:
    """A binary glTF whose JSON uses KHR_gaussian_splatting."""
    import struct

    try:
        with open(path, "rb") as fh:
            head = fh.read(20)
            if len(head) < 20 or head[:4] != b"glTF":
                return False
            json_len = struct.unpack_from("<I", head, 12)[0]
            return GLTF_EXT.encode() in fh.read(min(json_len, 1 << 22))
    except OSError:
        return False


def unit_quats(q) -> np.ndarray:
    """3DGS quaternions (w, x, y, z; any length: the rasteriser normalises) as unit quaternions, a
    zero one as the identity. The ratified KHR_gaussian_splatting requires unit rotations (renderers
    use them without renormalising: Babylon.js packs q * 127.5 + 127.5 into a byte)."""
    q = np.asarray(q, np.float64)
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    out = np.where(norm > 0, q / np.where(norm > 0, norm, 1), np.array([[1.0, 0.0, 0.0, 0.0]]))
    return out.astype(np.float32)


def write_gaussian_glb(params: dict, path: str):
    """``params`` as a .glb with one KHR_gaussian_splatting point primitive (see above)."""
    import json
    import struct

    degree = sh_degree_of(params)
    means = np.asarray(params["means"], np.float32)
    n = len(means)
    shN = np.asarray(params["shN"], np.float32)
    sh0 = np.asarray(params["sh0"], np.float32).reshape(n, 3)
    alpha = sigmoid(np.asarray(params["opacities"], np.float64)).astype(np.float32)
    colour = np.clip(np.round(np.concatenate([sh0 * SH_C0 + 0.5, alpha[:, None]], 1) * 255), 0, 255).astype(np.uint8)
    segments = [("POSITION", means, 5126, "VEC3"), ("COLOR_0", colour, 5121, "VEC4"),
                (f"{GLTF_EXT}:ROTATION", unit_quats(params["quats"])[:, [1, 2, 3, 0]], 5126, "VEC4"),
                (f"{GLTF_EXT}:SCALE", np.exp(np.asarray(params["scales"], np.float32)), 5126, "VEC3"),
                (f"{GLTF_EXT}:OPACITY", alpha, 5126, "SCALAR"), (f"{GLTF_EXT}:SH_DEGREE_0_COEF_0", sh0, 5126, "VEC3")]
    k = 0
    for d in range(1, degree + 1):
        for c in range(SH_COEFS_PER_DEGREE[d]):
            segments.append((f"{GLTF_EXT}:SH_DEGREE_{d}_COEF_{c}", shN[:, k], 5126, "VEC3"))
            k += 1
    blob, views, accessors, attributes = b"", [], [], {}
    for i, (name, data, ctype, typ) in enumerate(segments):
        raw = np.ascontiguousarray(data).astype("<f4" if ctype == 5126 else "u1").tobytes()
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(raw), "target": 34962})
        acc = {"bufferView": i, "byteOffset": 0, "componentType": ctype, "count": n, "type": typ}
        if name == "POSITION":
            acc.update(min=means.min(0).tolist(), max=means.max(0).tolist())
        if name == "COLOR_0":
            acc["normalized"] = True
        accessors.append(acc)
        attributes[name] = i
        blob += raw + bytes(-len(raw) % 4)
    gltf = {"asset": {"version": "2.0", "generator": "dreamgaussian splat_formats.py"}, "extensionsUsed": [GLTF_EXT],
            "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}], "buffers": [{"byteLength": len(blob)}],
            "bufferViews": views, "accessors": accessors,
            "meshes": [{"primitives": [{"attributes": attributes, "mode": 0, "extensions": {GLTF_EXT: {
                "kernel": "ellipse", "colorSpace": "srgb_rec709_display", "sortingMethod": "cameraDistance",
                "projection": "perspective"}}}]}]}
    js = json.dumps(gltf, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    data = (struct.pack("<III", 0x46546C67, 2, 12 + 8 + len(js) + 8 + len(blob)) + struct.pack("<II", len(js), 0x4E4F534A)
            + js + struct.pack("<II", len(blob), 0x004E4942) + blob)
    atomic_write(path, bytes_writer(data))


def read_gaussian_glb(path: str) -> dict:
    """The KHR_gaussian_splatting primitives of a .glb (all of them, concatenated) as ``params``."""
    import json
    import struct

    with open(path, "rb") as fh:
        data = fh.read()
    if len(data) < 20 or data[:4] != b"glTF":
        raise SplatFormatError(f"{path}: not a binary glTF (.glb) file")
    total = struct.unpack_from("<I", data, 8)[0]
    if total > len(data):
        raise SplatFormatError(f"{path}: the .glb is truncated ({len(data)} of {total} bytes)")
    json_len, kind = struct.unpack_from("<II", data, 12)
    try:
        gltf = json.loads(data[20:20 + json_len])
    except ValueError as e:
        raise SplatFormatError(f"{path}: the .glb's JSON does not parse ({e})") from None
    off = 20 + json_len
    bin_chunk = b""
    if off + 8 <= len(data):
        bin_len, _ = struct.unpack_from("<II", data, off)
        bin_chunk = data[off + 8:off + 8 + bin_len]
    ctypes = {5126: ("<f4", 4), 5121: ("u1", 1), 5123: ("<u2", 2), 5120: ("i1", 1), 5122: ("<i2", 2)}
    widths = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}

    def accessor(i):
        try:
            a = gltf["accessors"][i]
            v = gltf["bufferViews"][a["bufferView"]]
            if v.get("buffer", 0) != 0:
                raise SplatFormatError(f"{path}: accessor {i} reads an external buffer; only the .glb's own is read")
            dtype, size = ctypes[a["componentType"]]
            w = widths[a["type"]]
            start = v.get("byteOffset", 0) + a.get("byteOffset", 0)
            stride = v.get("byteStride") or size * w
            count = a["count"]
        except (KeyError, IndexError, TypeError) as e:
            raise SplatFormatError(f"{path}: accessor {i} is incomplete or unsupported ({type(e).__name__}: {e})") from None
        if start + stride * (count - 1) + size * w > len(bin_chunk):
            raise SplatFormatError(f"{path}: accessor {i} runs past the end of the binary chunk (truncated file?)")
        raw = np.frombuffer(bin_chunk, np.uint8, stride * (count - 1) + size * w, start)
        rows = np.lib.stride_tricks.as_strided(raw, (count, size * w), (stride, 1)).copy()
        out = rows.view(dtype).reshape(count, w).astype(np.float64)
        if a.get("normalized"):
            out /= np.iinfo(np.dtype(dtype)).max
        return out

    prims = [p for m in gltf.get("meshes", []) for p in m.get("primitives", [])
             if GLTF_EXT in (p.get("extensions") or {})]
    if not prims:
        raise SplatFormatError(f"{path}: the .glb has no {GLTF_EXT} primitive (a mesh? recon and the mesh tools read those)")
    for node in gltf.get("nodes", []):
        if any(k in node for k in ("matrix", "rotation", "scale", "translation")) and "mesh" in node:
            raise SplatFormatError(f"{path}: a node moves its splat mesh (matrix/TRS); node transforms are not applied here")
    parts = []
    for p in prims:
        at = p.get("attributes", {})
        need = ["POSITION", f"{GLTF_EXT}:ROTATION", f"{GLTF_EXT}:SCALE", f"{GLTF_EXT}:OPACITY"]
        missing = [a for a in need if a not in at]
        if missing:
            raise SplatFormatError(f"{path}: the {GLTF_EXT} primitive lacks {', '.join(missing)}")
        degree = 0
        while degree < 3 and f"{GLTF_EXT}:SH_DEGREE_{degree + 1}_COEF_0" in at:
            degree += 1
        if f"{GLTF_EXT}:SH_DEGREE_0_COEF_0" in at:
            sh0 = accessor(at[f"{GLTF_EXT}:SH_DEGREE_0_COEF_0"])
        elif "COLOR_0" in at:
            sh0 = (accessor(at["COLOR_0"])[:, :3] - 0.5) / SH_C0
        else:
            raise SplatFormatError(f"{path}: the {GLTF_EXT} primitive has no colour (SH_DEGREE_0_COEF_0 or COLOR_0)")
        rest = [accessor(at[f"{GLTF_EXT}:SH_DEGREE_{d}_COEF_{c}"]) for d in range(1, degree + 1)
                for c in range(SH_COEFS_PER_DEGREE[d])]
        pos = accessor(at["POSITION"])
        n = len(pos)
        scale = accessor(at[f"{GLTF_EXT}:SCALE"])
        alpha = np.clip(accessor(at[f"{GLTF_EXT}:OPACITY"])[:, 0], 1e-6, 1 - 1e-6)
        if (scale <= 0).any():
            raise SplatFormatError(f"{path}: non-positive {GLTF_EXT}:SCALE values")
        parts.append({"means": pos, "quats": accessor(at[f"{GLTF_EXT}:ROTATION"])[:, [3, 0, 1, 2]], "scales": np.log(scale),
                      "opacities": np.log(alpha / (1 - alpha)), "sh0": sh0[:, None, :],
                      "shN": np.stack(rest, 1) if rest else np.zeros((n, 0, 3)), "degree": degree})
    if len({p["degree"] for p in parts}) > 1:
        raise SplatFormatError(f"{path}: its {GLTF_EXT} primitives differ in SH degree")
    out = {k: np.ascontiguousarray(np.concatenate([p[k] for p in parts]), dtype=np.float32)
           for k in ("means", "scales", "quats", "opacities", "sh0", "shN")}
    if not all(np.isfinite(v).all() for v in out.values()):
        raise SplatFormatError(f"{path}: non-finite values in the {GLTF_EXT} attributes")
    out["sh_degree"] = parts[0]["degree"]
    return out
