"""AQR: projection, local windows, gathered attention, gaussian renderer and modulator (docs/model.md §6, docs/golden.md §E)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from aqr_ros.model.aqr import (
    AqrWeightGenerator,
    FeatureModulator,
    Projection,
    WeightRenderer,
    gathered_attention,
    gaussian_kernel,
    local_attention_mask,
    local_key_indices,
    project_reference_points,
)
from aqr_ros.model.config import AqrConfig, load_config
from aqr_ros.tools.rig_inputs import rig_model_input
from aqr_ros.tools.synthetic_rig import SyntheticRig

CFG = load_config("cmt_aqr_voxel0100_r50_800x320")
BEV = (128, 128)
PERS = (6, 20, 50)
WINDOWS = (8, 5)
MANIFEST = Path(__file__).parent / "data" / "state-dict-manifest.json"


def make_projection(bev_rc: Tensor, pers_vhw: Tensor, bev_shape: tuple[int, int] = BEV,
                    pers_shape: tuple[int, int, int] = PERS) -> Projection:
    """A Projection from (row, col) and (view, h, w) with the flat indices of §6.2."""
    _, feat_h, feat_w = pers_shape
    bev_index = bev_rc[..., 0] * bev_shape[1] + bev_rc[..., 1]
    pers_index = (pers_vhw[..., 0] * feat_h + pers_vhw[..., 1]) * feat_w + pers_vhw[..., 2]
    return Projection(bev_rc=bev_rc, bev_index=bev_index, pers_vhw=pers_vhw, pers_index=pers_index)


def random_projection(gen: torch.Generator, batch: int, queries: int, bev_shape: tuple[int, int],
                      pers_shape: tuple[int, int, int]) -> Projection:
    """Random cells with many border cells, out-of-grid BEV refs (row wrap) and invisible (0, 0, 0) queries."""
    bev_h, bev_w = bev_shape
    views, feat_h, feat_w = pers_shape
    rows = torch.randint(-3, bev_h + 3, (batch, queries), generator=gen)
    cols = torch.randint(-3, bev_w + 3, (batch, queries), generator=gen)
    border = torch.rand(batch, queries, generator=gen) < 0.3
    rows = torch.where(border, torch.tensor([0, bev_h - 1])[torch.randint(0, 2, rows.shape, generator=gen)], rows)
    vhw = torch.stack((torch.randint(0, views, (batch, queries), generator=gen),
                       torch.randint(0, feat_h, (batch, queries), generator=gen),
                       torch.randint(0, feat_w, (batch, queries), generator=gen)), dim=-1)
    edge = torch.rand(batch, queries, generator=gen) < 0.3
    vhw[..., 2] = torch.where(edge, torch.tensor([0, 1, feat_w - 2, feat_w - 1])[
        torch.randint(0, 4, edge.shape, generator=gen)], vhw[..., 2])
    vhw[..., 1] = torch.where(edge, torch.tensor([0, feat_h - 1])[torch.randint(0, 2, edge.shape, generator=gen)],
                              vhw[..., 1])
    invisible = torch.rand(batch, queries, generator=gen) < 0.1
    vhw = vhw * ~invisible[..., None]
    return make_projection(torch.stack((rows, cols), dim=-1), vhw, bev_shape, pers_shape)


def render_reference(renderer: WeightRenderer, lidar_w: Tensor, camera_w: Tensor,
                     proj: Projection) -> tuple[Tensor, Tensor]:
    """The original's slow per-query loop, with its clipping and order; same contract as ``renderer(...)``."""
    batch, queries = lidar_w.shape
    bev_h, bev_w = renderer.bev_shape
    views, feat_h, feat_w = renderer.pers_shape
    kernel = renderer.gaussian_kernel
    half = kernel.shape[-1] // 2
    thr = renderer.cfg.min_weight_threshold
    lidar_w, camera_w = lidar_w.detach().clamp(0, 1), camera_w.detach().clamp(0, 1)
    bev_map = lidar_w.new_zeros(batch, bev_h, bev_w)
    pers_map = camera_w.new_zeros(batch, views, feat_h, feat_w)

    def splat(target: Tensor, weight: float, y: int, x: int) -> None:
        height, width = target.shape
        if weight < thr or not (0 <= y < height and 0 <= x < width):
            return
        y0, y1, x0, x1 = max(0, y - half), min(height, y + half + 1), max(0, x - half), min(width, x + half + 1)
        ky, kx = half - (y - y0), half - (x - x0)
        target[y0:y1, x0:x1] += weight * kernel[ky:ky + y1 - y0, kx:kx + x1 - x0]

    for b in range(batch):
        for q in range(queries):
            splat(bev_map[b], lidar_w[b, q].item(), int(proj.bev_rc[b, q, 0].item()),
                  int(proj.bev_rc[b, q, 1].item()))
            view = int(proj.pers_vhw[b, q, 0].item())
            if 0 <= view < views:
                splat(pers_map[b, view], camera_w[b, q].item(), int(proj.pers_vhw[b, q, 1].item()),
                      int(proj.pers_vhw[b, q, 2].item()))
    bev_map = renderer._postprocess(bev_map)
    if renderer.cfg.postprocess_perspective:
        pers_map = renderer._postprocess(pers_map)
    return bev_map, pers_map


# --------------------------------------------------------------------------------------------- kernel


def test_gaussian_kernel_matches_golden_values() -> None:
    k = gaussian_kernel(1.0)
    assert k.shape == (7, 7) and k.dtype == torch.float32
    c = 3
    assert k[c, c].item() == pytest.approx(0.15924112, abs=1e-8)
    for dy, dx, value in [(1, 0, 0.09658463), (2, 0, 0.02155094), (2, 1, 0.01307131), (3, 3, 1.9652e-05)]:
        for sy in (-1, 1):
            for sx in (-1, 1):
                assert k[c + sy * dy, c + sx * dx].item() == pytest.approx(value, rel=1e-5)
                assert k[c + sx * dx, c + sy * dy].item() == pytest.approx(value, rel=1e-5)
    assert k.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert (1.0 / k[c, c]).item() == pytest.approx(6.279785, abs=1e-5)  # the unnormalised sum (centre = 1)
    k2 = gaussian_kernel(2.0)
    assert k2.shape == (13, 13) and k2[6, 6].item() == pytest.approx(0.03987036, abs=1e-8)
    assert gaussian_kernel(0.5).shape == (5, 5)  # int(4.0) = 4 is made odd


def test_renderer_buffer_and_modulator_state() -> None:
    renderer = WeightRenderer(CFG.aqr, BEV, PERS)
    assert list(renderer.state_dict()) == ["gaussian_kernel"]
    assert torch.equal(renderer.gaussian_kernel, gaussian_kernel(1.0))
    assert not list(FeatureModulator(0.7).state_dict())


# --------------------------------------------------------------------------------------------- renderer


def _pileup(postprocess: bool, at_bev: bool) -> tuple[Tensor, Tensor]:
    cfg = AqrConfig(postprocess_perspective=postprocess)
    renderer = WeightRenderer(cfg, BEV, PERS)
    q = 20
    bev_rc = torch.full((1, q, 2), 64 if at_bev else -5)
    proj = make_projection(bev_rc, torch.zeros(1, q, 3, dtype=torch.long))
    w = torch.full((1, q), 0.8)
    return renderer(w, w, proj)


def test_pileup_of_invisible_queries_fixed_and_buggy() -> None:
    bev, pers = _pileup(postprocess=True, at_bev=True)
    assert pers[0, 0, 0, 0].item() == pytest.approx(1.5, abs=1e-7)
    assert pers.max().item() == pytest.approx(1.5, abs=1e-7)
    assert bev[0, 64, 64].item() == pytest.approx(1.5, abs=1e-7)
    assert bev.max().item() <= 1.5
    _, pers_bug = _pileup(postprocess=False, at_bev=True)
    assert pers_bug[0, 0, 0, 0].item() == pytest.approx(2.5478585, abs=2e-6)
    assert pers_bug[0, 1:].abs().max().item() == 0.0  # only view 0 is touched
    # Out-of-grid BEV cells are skipped entirely.
    bev_out, _ = _pileup(postprocess=True, at_bev=False)
    assert bev_out.abs().max().item() == 0.0


def test_bev_threshold_and_clamp_postprocessing() -> None:
    renderer = WeightRenderer(AqrConfig(), BEV, PERS)
    proj = make_projection(torch.tensor([[[10, 10], [100, 20]]]), torch.zeros(1, 2, 3, dtype=torch.long))
    bev, _ = renderer(torch.tensor([[0.5, 0.005]]), torch.tensor([[0.5, 0.5]]), proj)
    k = gaussian_kernel(1.0)
    patch = 0.5 * k
    expected = torch.where(patch < 0.01, 0.0, patch)
    assert torch.allclose(bev[0, 7:14, 7:14], expected, atol=1e-7)
    assert bev[0, 7:14, 7:14].gt(0).sum().item() == 13  # centre, 8 neighbours, (±2, 0), (0, ±2) stay
    assert bev.sum().item() == pytest.approx(expected.sum().item(), abs=1e-6)  # weight 0.005 < 0.01 skipped


@pytest.mark.parametrize("postprocess", [True, False])
def test_fast_renderer_equals_reference_loop(postprocess: bool) -> None:
    gen = torch.Generator().manual_seed(3)
    for bev_shape, pers_shape, sigma in [(BEV, PERS, 1.0), ((24, 30), (3, 9, 40), 2.0)]:
        cfg = AqrConfig(gaussian_sigma=sigma, postprocess_perspective=postprocess)
        renderer = WeightRenderer(cfg, bev_shape, pers_shape)
        proj = random_projection(gen, 2, 150, bev_shape, pers_shape)
        lidar_w = torch.rand(2, 150, generator=gen) * 1.2 - 0.1  # some below threshold, some clamped
        camera_w = torch.rand(2, 150, generator=gen) * 1.2 - 0.1
        bev, pers = renderer(lidar_w, camera_w, proj)
        bev_ref, pers_ref = render_reference(renderer, lidar_w, camera_w, proj)
        assert bev.shape == (2, *bev_shape) and pers.shape == (2, *pers_shape)
        assert torch.allclose(bev, bev_ref, atol=1e-6, rtol=0)
        assert torch.allclose(pers, pers_ref, atol=1e-6, rtol=0)
        assert bev.max() <= cfg.max_weight_clamp
        if postprocess:
            assert pers.max() <= cfg.max_weight_clamp
        elif sigma == 1.0:
            assert pers.max() > cfg.max_weight_clamp  # the pile-up at view 0 (0, 0) stays unclamped


def test_renderer_is_differentiable() -> None:
    renderer = WeightRenderer(AqrConfig(), BEV, PERS)
    proj = make_projection(torch.tensor([[[40, 40], [-1, 3], [90, 90]]]),
                           torch.tensor([[[2, 10, 25], [0, 0, 0], [5, 19, 49]]]))
    lidar_w = torch.tensor([[0.5, 0.6, 0.005]], requires_grad=True)
    camera_w = torch.tensor([[0.5, 0.6, 0.7]], requires_grad=True)
    bev, pers = renderer(lidar_w, camera_w, proj)
    (bev.sum() + pers.sum()).backward()
    k = gaussian_kernel(1.0)
    kept_sum = k[0.5 * k >= 0.01].sum().item()
    # d(sum)/dw = kernel mass above the threshold; skipped (out of grid, below 0.01) queries get 0.
    assert lidar_w.grad[0, 0].item() == pytest.approx(kept_sum, abs=1e-6)
    assert lidar_w.grad[0, 1].item() == 0.0 and lidar_w.grad[0, 2].item() == 0.0
    assert camera_w.grad[0, 0].item() == pytest.approx(kept_sum, abs=1e-6)
    assert 0 < camera_w.grad[0, 1].item() < kept_sum  # clipped at the corner
    assert 0 < camera_w.grad[0, 2].item() < kept_sum


def test_query_threshold_compares_like_the_original_python_float() -> None:
    # The original reads each weight with .item() and skips it when `weight < 0.01` in double precision,
    # so float32(0.01) = 0.0099999998 is skipped while the next float32 up is rendered (§6.6).
    renderer = WeightRenderer(AqrConfig(postprocess_perspective=False), BEV, PERS)
    q = 10  # piled up on one cell so the BEV centre survives the 0.01 map threshold
    proj = make_projection(torch.tensor([[40, 40]]).expand(1, q, 2), torch.tensor([[2, 10, 25]]).expand(1, q, 3))
    w = torch.full((1, q), 0.01, dtype=torch.float32)
    assert w[0, 0].item() < 0.01
    bev, pers = renderer(w, w, proj)
    bev_ref, pers_ref = render_reference(renderer, w, w, proj)
    assert bev.abs().max().item() == 0.0 and pers.abs().max().item() == 0.0
    assert torch.equal(bev, bev_ref) and torch.equal(pers, pers_ref)
    w_up = torch.nextafter(w, torch.ones_like(w))
    assert w_up[0, 0].item() >= 0.01
    bev, pers = renderer(w_up, w_up, proj)
    bev_ref, pers_ref = render_reference(renderer, w_up, w_up, proj)
    assert bev[0, 40, 40].item() > 0.0 and pers[0, 2, 10, 25].item() > 0.0
    assert torch.allclose(bev, bev_ref, atol=1e-7, rtol=0) and torch.allclose(pers, pers_ref, atol=1e-7, rtol=0)


# --------------------------------------------------------------------------------------------- modulator


def test_modulation_gains_and_view_order() -> None:
    mod = FeatureModulator(0.7)
    x = torch.randn(2, 4, 128, 128)
    bev_map = torch.zeros(2, 128, 128)
    bev_map[1, 5, 6] = 1.5
    pers_map = torch.arange(12, dtype=torch.float32).reshape(2, 6, 1, 1).expand(2, 6, 20, 50) / 10
    x_img = torch.randn(12, 4, 20, 50)
    out, out_img = mod(x, x_img, bev_map, pers_map)
    assert torch.allclose(out[0], x[0] * 0.7)
    assert torch.allclose(out[1, :, 5, 6], x[1, :, 5, 6] * 2.2, rtol=1e-6)
    assert torch.equal(out, x * bev_map[:, None] + 0.7 * x)  # the code's op order, bit for bit
    for b in range(2):
        for v in range(6):
            gain = (b * 6 + v) / 10 + 0.7
            assert torch.allclose(out_img[b * 6 + v], x_img[b * 6 + v] * gain, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------------------------- projection


def _look(forward: tuple[float, float, float], f: float = 200.0) -> Tensor:
    """lidar2img of a camera at the origin looking along ``forward`` (horizontal), image 800x320."""
    fwd = torch.tensor(forward, dtype=torch.float64)
    fwd = fwd / fwd.norm()
    up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    right = torch.linalg.cross(fwd, up)
    rot = torch.stack((right, -up, fwd))  # camera x right, y down, z forward
    k = torch.tensor([[f, 0, 400.0], [0, f, 160.0], [0, 0, 1.0]], dtype=torch.float64)
    out = torch.eye(4, dtype=torch.float64)
    out[:3, :3] = k @ rot
    return out.float()


def _rig(directions: list[tuple[float, float, float]]) -> Tensor:
    return torch.stack([_look(d) for d in directions])[None]


def _ref(x: float, y: float, z: float) -> list[float]:
    """Normalised reference point of metric (x, y, z) in the default range."""
    return [(x + 54) / 108, (y + 54) / 108, (z + 5) / 8]


def test_projection_of_hand_made_points() -> None:
    ahead, behind = (1.0, 0.0, 0.0), (-1.0, 0.0, 0.0)
    rig = _rig([behind, ahead, ahead, behind, behind, behind])
    # (x, 0, 0) lies on the optical axis of views 1 and 2: pixel (400, 160) → cell (10, 25).
    ref = torch.tensor([[[0.75, 0.5, 0.625],          # x = 27 m ahead, seen by views 1 and 2
                         _ref(20.0, -30.0, 0.0),        # ahead but far right, outside the image (u = 700)
                         _ref(20.0, -8.0, 0.0),         # u = 400 + 200*8/20 = 480, v = 160 → (10, 30)
                         [0.25, 0.5, 0.625]]])          # x = -27 m: behind views 1, 2; ahead of 0, 3, 4, 5
    proj = project_reference_points(ref, rig, CFG)
    assert proj.pers_vhw.dtype == torch.long and proj.bev_index.dtype == torch.long
    assert proj.pers_vhw[0, 0].tolist() == [1, 10, 25]
    assert proj.pers_vhw[0, 2].tolist() == [1, 10, 30]
    assert proj.pers_vhw[0, 3].tolist() == [0, 10, 25]  # first valid view among 0, 3, 4, 5
    assert proj.pers_index[0].tolist()[0] == 1000 + 10 * 50 + 25
    # u = 400 + 200*30/20 = 700 is inside 800 → visible at w = 43.
    assert proj.pers_vhw[0, 1].tolist() == [1, 10, 43]

    forward_only = _rig([ahead] * 6)
    far_left = torch.tensor([[_ref(10.0, 30.0, 0.0), [0.25, 0.5, 0.625]]])  # u = -200 and behind all
    proj = project_reference_points(far_left, forward_only, CFG)
    assert proj.pers_vhw[0].tolist() == [[0, 0, 0], [0, 0, 0]]
    assert proj.pers_index[0].tolist() == [0, 0]

    valid = torch.tensor([[True, False, True, True, True, True]])
    proj = project_reference_points(ref[:, :1], rig, CFG, valid)
    assert proj.pers_vhw[0, 0].tolist() == [2, 10, 25]
    valid = torch.tensor([[True, False, False, True, True, True]])
    proj = project_reference_points(ref[:, :1], rig, CFG, valid)
    assert proj.pers_vhw[0, 0].tolist() == [0, 0, 0]


def test_bev_cells_follow_the_float32_formula_and_raw_refs() -> None:
    rig = _rig([(1.0, 0.0, 0.0)] * 6)
    edges = np.arange(-2, 131, dtype=np.float32) / np.float32(128)
    rng = np.random.default_rng(0)
    xs = np.concatenate([edges, rng.uniform(-0.1, 1.1, 300).astype(np.float32)])
    ys = rng.permutation(xs)
    ref = torch.from_numpy(np.stack([xs, ys, np.full_like(xs, 0.5)], -1))[None]
    proj = project_reference_points(ref, rig, CFG)

    def cell(r: np.ndarray) -> np.ndarray:  # the original's float32 op order: denormalise, shift, scale, floor
        return np.floor((r * np.float32(108.0) + np.float32(-54.0) + np.float32(54.0))
                        * np.float32(128 / 108)).astype(np.int64)

    col, row = cell(xs), cell(ys)
    assert proj.bev_rc[0, :, 1].numpy().tolist() == col.tolist()
    assert proj.bev_rc[0, :, 0].numpy().tolist() == row.tolist()
    assert proj.bev_index[0].numpy().tolist() == (row * 128 + col).tolist()
    assert col.min() < 0 and col.max() >= 128  # raw refs outside [0, 1] leave the grid (not clamped)
    assert project_reference_points(torch.tensor([[[0.5, 0.25, 0.5]]]), rig, CFG).bev_rc[0, 0].tolist() == [32, 64]


# --------------------------------------------------------------------------------------------- windows


def test_window_counts_interior_borders_and_out_of_grid() -> None:
    bev_rc = torch.tensor([[[64, 64], [0, 0], [0, 64], [127, 127], [-1, 5], [5, 128], [200, 3], [-3, 64]]])
    vhw = torch.tensor([[[3, 10, 25], [0, 0, 0], [2, 0, 25], [5, 19, 49], [1, 10, 0], [4, 2, 47],
                         [0, 4, 4], [5, 15, 45]]])
    proj = make_projection(bev_rc, vhw)
    _, valid = local_key_indices(proj, WINDOWS, BEV, PERS)
    assert valid.shape == (1, 8, 25 + 81)
    # BEV: interior 25, corner 9, top edge 15, corner 9, row -1 → rows 0..1 x 5 cols = 10,
    # (5, 128) wraps to (6, 0) → 5 rows x 3 cols = 15, far outside → 0, row -3 → 0 (all candidates < 0).
    assert valid[0, :, :25].sum(-1).tolist() == [25, 9, 15, 9, 10, 15, 0, 0]
    # Camera: interior 81, corner 25, top edge 45, corner 25, left edge 45, (2, 47) → 7 x 7,
    # (4, 4) and (15, 45) touch the borders without clipping → 81.
    assert valid[0, :, 25:].sum(-1).tolist() == [81, 25, 45, 25, 45, 49, 81, 81]
    mask = local_attention_mask(proj, WINDOWS, BEV, PERS, num_heads=4)
    assert mask.shape == (4, 8, 128 * 128 + 6000) and mask.dtype == torch.bool
    assert (~mask[0]).sum(-1).tolist() == valid[0].sum(-1).tolist()
    assert torch.equal(mask[0], mask[3])
    # Wrapped-row BEV window: (5, 128) attends to columns 0..2 of rows 4..8, never to the end of row 5.
    free = (~mask[0, 5, :16384]).nonzero().squeeze(1)
    assert sorted({int(i) % 128 for i in free}) == [0, 1, 2]
    assert sorted({int(i) // 128 for i in free}) == [4, 5, 6, 7, 8]
    # Camera window stays in the query's own view.
    cam_free = (~mask[0, 3, 16384:]).nonzero().squeeze(1)
    assert set((cam_free // 1000).tolist()) == {5}


def test_window_sizes_15_give_225_taps() -> None:
    proj = make_projection(torch.tensor([[[64, 64]]]), torch.tensor([[[1, 10, 25]]]))
    _, valid = local_key_indices(proj, (15, 5), BEV, PERS)
    assert valid[0, 0, 25:].sum().item() == 225


# --------------------------------------------------------------------------------------------- generator


def test_state_dict_matches_manifest() -> None:
    manifest = json.loads(MANIFEST.read_text())
    prefix = "pts_bbox_head.aqr_weight_generator."
    expected = {k[len(prefix):]: v for k, v in manifest.items() if k.startswith(prefix)}
    gen = AqrWeightGenerator(256, 4, 1024, WINDOWS, BEV, PERS)
    assert {k: list(v.shape) for k, v in gen.state_dict().items()} == expected
    assert manifest["pts_bbox_head.weight_renderer.gaussian_kernel"] == [7, 7]


def test_predictor_init_gives_sigmoid_0_8176() -> None:
    torch.manual_seed(0)
    gen = AqrWeightGenerator(256, 4, 1024, WINDOWS, (16, 16), (2, 10, 12))
    assert torch.all(gen.weight_predictor.bias == 1.5)
    bound = math.sqrt(6 / (256 + 2))
    assert gen.weight_predictor.weight.abs().max() <= bound
    assert gen.weight_predictor.weight.abs().max() > 0.5 * bound  # xavier-uniform, not the default init
    with torch.no_grad():
        gen.weight_predictor.weight.zero_()
    proj = make_projection(torch.tensor([[[3, 4], [-2, 20]]]), torch.tensor([[[1, 2, 3], [0, 0, 0]]]),
                           (16, 16), (2, 10, 12))
    tokens = 16 * 16 + 2 * 120
    out = gen(torch.randn(1, tokens, 256), torch.randn(1, tokens, 256), torch.randn(1, 2, 256), proj)
    assert out.shape == (1, 2, 2)
    assert torch.allclose(out, torch.full_like(out, 0.8176), atol=1e-4)


def _dense_forward(gen: AqrWeightGenerator, memory: Tensor, pos: Tensor, query_pos: Tensor,
                   mask: Tensor) -> tuple[Tensor, Tensor]:
    """The original layer with nn.MultiheadAttention and the dense mask: (attention output, weights)."""
    layer = gen.encoder.layers[0]
    attn = layer.attentions[0].attn
    attended = attn(query_pos, memory + pos, memory, attn_mask=mask, need_weights=False)[0]
    t1 = layer.norms[0](torch.zeros_like(attended) + attended)
    t2 = layer.norms[1](t1 + layer.ffns[0].layers(t1))
    return attended, gen.weight_predictor(gen.encoder.post_norm(t2)).sigmoid()


def test_gathered_attention_equals_dense_masked_attention() -> None:
    torch.manual_seed(1)
    bev_shape, pers_shape = (32, 32), (6, 12, 20)
    tokens = 32 * 32 + 6 * 12 * 20
    gen = AqrWeightGenerator(256, 4, 1024, WINDOWS, bev_shape, pers_shape).eval()
    with torch.no_grad():
        gen.encoder.layers[0].attentions[0].attn.in_proj_bias.normal_(0, 0.1)
    proj = random_projection(torch.Generator().manual_seed(2), 2, 900, bev_shape, pers_shape)
    memory, pos = torch.randn(2, tokens, 256), torch.randn(2, tokens, 256)
    query_pos = torch.randn(2, 900, 256)
    mask = local_attention_mask(proj, WINDOWS, bev_shape, pers_shape, num_heads=4)
    index, valid = local_key_indices(proj, WINDOWS, bev_shape, pers_shape)
    assert (valid[..., :25].sum(-1) == 0).any() and (valid[..., :25].sum(-1) < 25).any()  # out-of-grid refs
    assert (valid[..., 25:].sum(-1) < 81).any()
    with torch.no_grad():
        attended, weights = _dense_forward(gen, memory, pos, query_pos, mask)
        gathered = gathered_attention(gen.encoder.layers[0].attentions[0].attn, query_pos, memory + pos, memory,
                                      index, valid)
        out = gen(memory, pos, query_pos, proj)
    assert torch.allclose(gathered, attended, atol=1e-5, rtol=0)
    assert torch.allclose(out, weights, atol=1e-5, rtol=0)
    # The dense mask is the scatter of the gathered validity.
    rebuilt = torch.ones(2, 900, tokens, dtype=torch.int32).scatter_add_(2, index, -valid.int()) > 0
    assert torch.equal(rebuilt, mask[::4])


@pytest.mark.parametrize("bev_shape, pers_shape", [((8, 4), (2, 8, 20)), ((6, 6), (3, 5, 7))])
def test_gathered_attention_on_grids_narrower_than_the_window(bev_shape: tuple[int, int],
                                                             pers_shape: tuple[int, int, int]) -> None:
    """Tiny test grids: wrapped, clamped and aliased candidates still give the dense-mask result."""
    torch.manual_seed(6)
    tokens = bev_shape[0] * bev_shape[1] + math.prod(pers_shape)
    gen = AqrWeightGenerator(64, 4, 128, WINDOWS, bev_shape, pers_shape).eval()
    proj = random_projection(torch.Generator().manual_seed(7), 2, 60, bev_shape, pers_shape)
    memory, pos, query_pos = torch.randn(2, tokens, 64), torch.randn(2, tokens, 64), torch.randn(2, 60, 64)
    mask = local_attention_mask(proj, WINDOWS, bev_shape, pers_shape, num_heads=4)
    _, valid = local_key_indices(proj, WINDOWS, bev_shape, pers_shape)
    assert torch.equal(valid.sum(-1), (~mask[::4]).sum(-1))
    with torch.no_grad():
        _, weights = _dense_forward(gen, memory, pos, query_pos, mask)
        assert torch.allclose(gen(memory, pos, query_pos, proj), weights, atol=1e-5, rtol=0)


def test_gradients_reach_the_generator_through_the_renderer() -> None:
    torch.manual_seed(4)
    bev_shape, pers_shape = (16, 16), (2, 10, 12)
    tokens = 16 * 16 + 2 * 120
    gen = AqrWeightGenerator(256, 4, 1024, WINDOWS, bev_shape, pers_shape)
    renderer = WeightRenderer(AqrConfig(), bev_shape, pers_shape)
    proj = random_projection(torch.Generator().manual_seed(5), 1, 40, bev_shape, pers_shape)
    weights = gen(torch.randn(1, tokens, 256), torch.randn(1, tokens, 256), torch.randn(1, 40, 256), proj)
    bev, pers = renderer(weights[..., 0], weights[..., 1], proj)
    (bev.square().sum() + pers.square().sum()).backward()
    for name in ("weight_predictor.weight", "encoder.layers.0.attentions.0.attn.in_proj_weight",
                 "encoder.layers.0.ffns.0.layers.0.0.weight"):
        grad = dict(gen.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_projection_ignores_autocast():
    """Mixed precision must not move queries between cells: the projection always runs in float32."""
    cfg = load_config("cmt_aqr_voxel0100_r50_800x320")
    gen = torch.Generator().manual_seed(7)
    ref = torch.rand(1, 900, 3, generator=gen)
    lidar2img = rig_model_input(SyntheticRig(seed=0), cfg, frame_index=0).lidar2img[None]
    exact = project_reference_points(ref, lidar2img, cfg)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = project_reference_points(ref, lidar2img, cfg)
    for name in ("bev_rc", "bev_index", "pers_vhw", "pers_index"):
        assert torch.equal(getattr(mixed, name), getattr(exact, name)), name
