import math

import torch

from densification import DensifyStrategy, duplicate, remove, reset_opacity, split
from gaussians import GaussianModel, inverse_sigmoid


def hand_made(scales=(0.01, 0.01, 0.5), opac=(0.5, 0.5, 0.005)):
    n = len(scales)
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1
    g = GaussianModel(0).set_params(
        means=torch.arange(n * 3.0).reshape(n, 3), scales=torch.log(torch.tensor(scales))[:, None].repeat(1, 3),
        quats=quats, opacities=inverse_sigmoid(torch.tensor(opac)),
        sh0=torch.arange(n * 3.0).reshape(n, 1, 3), shN=torch.zeros(n, 0, 3))
    g.setup_optimizer()
    return g


def fake_adam_step(g):
    """Give every parameter a distinct Adam state to follow through the edits (lr 0: no move)."""
    for grp in g.optimizer.param_groups:
        grp["lr"] = 0.0
    for p in g.params.values():
        p.grad = torch.ones_like(p) * (1 + torch.arange(p.shape[0]).reshape((-1,) + (1,) * (p.dim() - 1)))
    g.optimizer.step()
    g.optimizer.zero_grad()


def moments(g, name):
    return g.optimizer.state[g.params[name]]["exp_avg"]


def test_duplicate_copies_points_and_zeroes_new_moments():
    g = hand_made()
    fake_adam_step(g)
    before = moments(g, "means").clone()
    duplicate(g, torch.tensor([False, True, False]))
    assert len(g) == 4
    torch.testing.assert_close(g.means[3], g.means[1])
    torch.testing.assert_close(moments(g, "means")[:3], before)
    assert (moments(g, "means")[3] == 0).all()
    assert all(g.optimizer.param_groups[i]["params"][0] is g.params[g.optimizer.param_groups[i]["name"]]
               for i in range(6))


def test_split_samples_and_shrinks():
    g = hand_made()
    fake_adam_step(g)
    before = moments(g, "sh0").clone()
    parent_scale = g.scales[2].detach().clone()
    parent = g.means[2].detach().clone()
    split(g, torch.tensor([False, False, True]), n=2, scale_div=1.6, generator=torch.Generator().manual_seed(0))
    assert len(g) == 4  # 2 kept + 2 children
    torch.testing.assert_close(moments(g, "sh0")[:2], before[:2])  # kept points keep their moments
    assert (moments(g, "sh0")[2:] == 0).all()
    torch.testing.assert_close(g.scales[2:], (parent_scale / 1.6).expand(2, 3))
    d = (g.means[2:] - parent).norm(dim=1)
    assert (d > 0).all() and (d < 3 * 0.5 * math.sqrt(3)).all()  # sampled from the parent Gaussian
    torch.testing.assert_close(g.params["sh0"][2:], g.params["sh0"][2:3].expand(2, 1, 3))
    assert g.params["sh0"][2, 0, 0] > 5.9  # the parent's colour (6, 7, 8), not a kept point's


def test_remove_and_reset_opacity():
    g = hand_made()
    fake_adam_step(g)
    remove(g, torch.tensor([True, False, False]))
    assert len(g) == 2
    torch.testing.assert_close(g.means[0], torch.tensor([3.0, 4, 5]))
    reset_opacity(g, 0.01)
    torch.testing.assert_close(g.opacities, torch.tensor([0.01, 0.005]), rtol=1e-5, atol=1e-7)
    assert (moments(g, "opacities") == 0).all()
    assert moments(g, "means").abs().sum() > 0


def test_strategy_clones_small_splits_large_prunes_transparent():
    g = hand_made(scales=(0.01, 0.01, 0.5, 0.01), opac=(0.5, 0.5, 0.5, 0.005))
    s = DensifyStrategy(densify_grad_threshold=0.01, percent_dense=0.01, extent=4.0, min_opacity=0.01,
                        max_world_size=0.0, densification_interval=2, density_start_iter=1,
                        opacity_reset_interval=0)
    state = s.initialize_state(len(g))
    W = H = 100
    for step in (1, 2):
        means2d = torch.zeros(4, 2, requires_grad=True)
        # NDC gradient norms: 0.02 (high), 0.001 (low), 0.02 (high, large), 0.02 (transparent, small)
        pix = torch.tensor([[0.02, 0], [0.001, 0], [0, 0.02], [0.02, 0]]) / (W / 2)
        (means2d * pix).sum().backward()
        info = {"means2d": means2d, "visibility": torch.ones(4, dtype=torch.bool), "radii": torch.full((4,), 3)}
        rep = s.step_post_backward(g, state, [(info, W, H)], step)
    assert rep["cloned"] == 2 and rep["split"] == 1
    # 4 - 1 split parent + 2 clones + 2 children = 7, minus the transparent point and its clone
    assert rep["pruned"] == 2 and len(g) == 5
    assert (g.opacities >= 0.01).all()
    assert state["grad2d"].shape == (5,) and state["count"].sum() == 0


def test_strategy_accumulates_only_visible_and_resets_opacity():
    g = hand_made()
    s = DensifyStrategy(density_start_iter=1, densification_interval=1000, opacity_reset_interval=3)
    state = s.initialize_state(3)
    for step in (1, 2, 3):
        means2d = torch.zeros(3, 2, requires_grad=True)
        (means2d * torch.tensor([[1.0, 0], [0, 1], [1, 1]])).sum().backward()
        info = {"means2d": means2d, "visibility": torch.tensor([True, True, False]),
                "radii": torch.tensor([2, step, 9])}
        rep = s.step_post_backward(g, state, [(info, 10, 20)], step)
    torch.testing.assert_close(state["count"], torch.tensor([3.0, 3, 0]))
    torch.testing.assert_close(state["grad2d"], torch.tensor([15.0, 30, 0]))
    torch.testing.assert_close(state["max_radii"], torch.tensor([2.0, 3, 0]))
    assert rep["reset"] and g.opacities.max() <= 0.01 + 1e-6
