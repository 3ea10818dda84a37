import math

import numpy as np
import pytest

from cameras import Camera, orbit_camera


def test_front_camera_is_identity_rotation_on_plus_z():
    c2w = orbit_camera(0, 0, 2.0)
    np.testing.assert_allclose(c2w[:3, 3], [0, 0, 2], atol=1e-6)
    np.testing.assert_allclose(c2w[:3, :3], np.eye(3), atol=1e-6)  # looks down -z at the origin


def test_azimuth_90_is_on_plus_x_looking_at_origin():
    c2w = orbit_camera(0, 90, 3.0)
    np.testing.assert_allclose(c2w[:3, 3], [3, 0, 0], atol=1e-6)
    forward = -c2w[:3, 2]  # OpenGL camera looks along -z
    np.testing.assert_allclose(forward, [-1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(c2w[:3, 1], [0, 1, 0], atol=1e-6)  # up stays +y


def test_negative_elevation_is_above_looking_down():
    c2w = orbit_camera(-30, 0, 2.0)
    np.testing.assert_allclose(c2w[:3, 3], [0, 1.0, 2 * math.cos(math.radians(30))], atol=1e-6)
    forward = -c2w[:3, 2]
    assert forward[1] < 0  # looking down
    np.testing.assert_allclose(forward, -c2w[:3, 3] / 2.0, atol=1e-6)


def test_elevation_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="elevation"):
        orbit_camera(90, 0, 1)


def test_projection_of_world_points():
    cam = Camera.orbit(0, 0, 2.0, 49.1, 64, 48)
    vm, K = cam.viewmat, cam.K
    def project(p):
        pc = vm[:3, :3] @ p + vm[:3, 3]
        uv = K @ pc
        return uv[:2] / uv[2], pc[2]
    (u, v), z = project(np.array([0.0, 0, 0]))
    np.testing.assert_allclose([u, v, z], [32, 24, 2], atol=1e-5)
    (u, v), _ = project(np.array([0.2, 0, 0]))  # +x appears on the right
    assert u > 32 and abs(v - 24) < 1e-5
    (u, v), _ = project(np.array([0, 0.2, 0]))  # +y appears at the top (image rows grow down)
    assert v < 24
    f = 24 / math.tan(math.radians(49.1) / 2)
    np.testing.assert_allclose(K[0, 0], f, rtol=1e-6)
    np.testing.assert_allclose(math.tan(cam.fovx / 2), math.tan(cam.fovy / 2) * 64 / 48, rtol=1e-6)


def test_opengl_projection_maps_near_and_far():
    cam = Camera.orbit(0, 0, 2.0, 60, 32, near=0.5, far=10)
    P = cam.proj
    for z, ndc in ((-0.5, -1.0), (-10, 1.0)):
        clip = P @ np.array([0, 0, z, 1.0])
        assert abs(clip[2] / clip[3] - ndc) < 1e-5
    # a world point right of centre has positive NDC x through w2c and proj as well
    clip = P @ cam.w2c @ np.array([0.3, 0, 0, 1.0])
    assert clip[0] / clip[3] > 0


