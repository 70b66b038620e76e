import pytest
import torch

from archlab.data.transforms import (Compose, Normalize, RandomAffine, RandomCrop, RandomElastic, RandomHorizontalFlip,
                                     Resize, Translate, displace, gaussian_blur, turn_and_zoom)
from archlab.errors import ConfigError


def test_normalize_per_channel_batch_and_single():
    x = torch.stack([torch.full((2, 2), 0.5), torch.full((2, 2), 1.0)])  # (2, 2, 2): C=2
    t = Normalize(mean=(0.5, 0.0), std=(0.25, 2.0))
    out = t(x)
    assert out.shape == (2, 2, 2) and torch.all(out[0] == 0.0) and torch.all(out[1] == 0.5)
    batch = t(x.unsqueeze(0).repeat(3, 1, 1, 1).double())
    assert batch.dtype == torch.float64 and torch.equal(batch[2], out.double())
    with pytest.raises(ConfigError, match="images have 3 channels, Normalize expects 2"):
        t(torch.zeros(3, 4, 4))
    with pytest.raises(ConfigError, match=r"images must be a tensor \(C, H, W\) or \(N, C, H, W\), got "
                                          r"torch.Size\(\[4, 4\]\)"):
        t(torch.zeros(4, 4))


def test_random_crop_cuts_a_window_of_the_padded_image():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4) + 1  # no zeros inside
    g = torch.Generator().manual_seed(0)
    out = RandomCrop(4, padding=2)(x, generator=g)
    assert out.shape == (2, 3, 4, 4)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    offsets = []
    for n in range(2):
        hits = [(i, j) for i in range(5) for j in range(5) if torch.equal(padded[n, :, i:i + 4, j:j + 4], out[n])]
        assert len(hits) == 1  # exactly one window of the padded image, all channels together
        offsets.append(hits[0])
    # seeded: the same generator state gives the same crops; offsets are those randint drew
    g2 = torch.Generator().manual_seed(0)
    top, left = torch.randint(0, 5, (2,), generator=g2), torch.randint(0, 5, (2,), generator=g2)
    assert offsets == list(zip(top.tolist(), left.tolist()))
    assert torch.equal(RandomCrop(4, padding=2)(x, generator=torch.Generator().manual_seed(0)), out)
    # no padding and full size: the identity
    assert torch.equal(RandomCrop(4)(x), x)
    assert RandomCrop((2, 3))(x[0]).shape == (3, 2, 3)
    with pytest.raises(ConfigError, match=r"crop size \(9, 9\) is larger than the padded image \(8, 8\)"):
        RandomCrop(9, padding=2)(x)


def test_random_horizontal_flip_is_per_image_and_seeded():
    x = torch.arange(16, dtype=torch.float32).view(16, 1, 1, 1).expand(16, 1, 2, 3).contiguous()
    x[..., 0] = -1  # left column marked
    assert torch.equal(RandomHorizontalFlip(1.0)(x), x.flip(-1))
    assert torch.equal(RandomHorizontalFlip(0.0)(x), x)
    out = RandomHorizontalFlip(0.5)(x, generator=torch.Generator().manual_seed(3))
    expected = torch.rand(16, generator=torch.Generator().manual_seed(3)) < 0.5
    flipped = out[:, 0, 0, -1] == -1
    assert torch.equal(flipped, expected) and 0 < int(flipped.sum()) < 16
    with pytest.raises(ConfigError, match=r"p must be in \[0, 1\], got 1.5"):
        RandomHorizontalFlip(1.5)


def test_turn_and_zoom_is_a_rotation_and_a_scaling_about_the_centre():
    x = torch.rand(3, 2, 8, 8, dtype=torch.float64)
    # Quarter and half turns land on the pixel grid: exact, counter-clockwise as displayed.
    assert torch.equal(turn_and_zoom(x, torch.zeros(3), torch.ones(3)), x)
    assert torch.allclose(turn_and_zoom(x, 90.0, 1.0), torch.rot90(x, 1, dims=(-2, -1)), atol=1e-12)
    assert torch.allclose(turn_and_zoom(x, -90.0, 1.0), torch.rot90(x, -1, dims=(-2, -1)), atol=1e-12)
    wide = torch.rand(2, 1, 4, 6, dtype=torch.float64)  # not square: still a true half turn
    assert torch.allclose(turn_and_zoom(wide, 180.0, 1.0), wide.flip(-1, -2), atol=1e-12)
    # One angle per image.
    both = turn_and_zoom(x[:2], torch.tensor([90.0, -90.0]), torch.ones(2))
    assert torch.allclose(both[0], torch.rot90(x[0], 1, (-2, -1)), atol=1e-12)
    assert torch.allclose(both[1], torch.rot90(x[1], -1, (-2, -1)), atol=1e-12)
    # A zoom of 2 magnifies the centre: output pixel p reads input p / 2, so the middle 4x4 of a
    # 16x16 image fills the middle 8x8 (bilinear between its pixels) and its corners come from there.
    img = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    img[..., 6:10, 6:10] = 1.0
    big = turn_and_zoom(img, 0.0, 2.0)
    assert torch.all(big[..., 5:11, 5:11] == 1.0) and torch.all(big[..., :3, :] == 0.0)
    # A zoom of 0.5 shrinks: the whole image fits in the middle half, zeros around it.
    small = turn_and_zoom(torch.ones(1, 1, 16, 16, dtype=torch.float64), 0.0, 0.5)
    assert torch.all(small[..., 5:11, 5:11] == 1.0) and torch.all(small[..., :3, :] == 0.0)
    assert torch.all(small[..., :, -3:] == 0.0)
    # A round blob about the centre of a wide image is unchanged by any turn, up to interpolation
    # (max 0.013); one turned in normalised coordinates without the aspect terms would be an ellipse
    # (0.22 off).
    yy, xx = torch.meshgrid(torch.arange(24.0) - 11.5, torch.arange(40.0) - 19.5, indexing="ij")
    blob = (-(yy ** 2 + xx ** 2) / 30).exp().double().view(1, 1, 24, 40)
    assert torch.allclose(turn_and_zoom(blob, 37.0, 1.0), blob, atol=0.02)
    with pytest.raises(ConfigError, match="zoom factors must be positive"):
        turn_and_zoom(x, 0.0, 0.0)


def test_random_affine_draws_angles_and_zooms_in_range_and_is_seeded():
    t = RandomAffine(15, 0.1)
    angles, zooms = t.draw(1000, torch.Generator().manual_seed(0))
    assert angles.abs().max() <= 15 and angles.abs().max() > 14  # spread over the whole range
    assert (zooms - 1).abs().max() <= 0.1 and (zooms - 1).abs().max() > 0.09
    x = torch.rand(6, 1, 10, 10)
    a = t(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, t(x, generator=torch.Generator().manual_seed(1)))
    assert not torch.equal(a, t(x, generator=torch.Generator().manual_seed(2)))
    assert torch.allclose(a, turn_and_zoom(x, *t.draw(6, torch.Generator().manual_seed(1))))
    assert torch.equal(RandomAffine()(x), x)  # nothing asked: the images themselves
    assert RandomAffine(10)(x[0], generator=torch.Generator().manual_seed(0)).shape == (1, 10, 10)
    with pytest.raises(ConfigError, match=r"degrees must be a number in \[0, 180\], got 200"):
        RandomAffine(200)
    with pytest.raises(ConfigError, match=r"scale must be a number in \[0, 1\), got 1.0"):
        RandomAffine(0, 1.0)


def test_displace_moves_pixels_by_the_field_and_gaussian_blur_keeps_the_mean():
    x = torch.rand(2, 3, 9, 11, dtype=torch.float64)
    assert torch.allclose(displace(x, torch.zeros(2, 2, 9, 11, dtype=torch.float64)), x, atol=1e-12)
    # A field of +2 along x: output column j reads input column j + 2, zeros past the edge.
    right = torch.zeros(2, 2, 9, 11, dtype=torch.float64)
    right[:, 0] = 2.0
    moved = displace(x, right)
    assert torch.allclose(moved[..., :-2], x[..., 2:], atol=1e-12) and torch.all(moved[..., -2:] == 0)
    # -1 along y in the first image only: output row i reads row i - 1; the second image stays.
    up = torch.zeros(2, 2, 9, 11, dtype=torch.float64)
    up[0, 1] = -1.0
    moved = displace(x, up)
    assert torch.allclose(moved[0, :, 1:], x[0, :, :-1], atol=1e-12) and torch.allclose(moved[1], x[1])
    # Half a pixel: the mean of the two neighbours (bilinear).
    half = torch.zeros(2, 2, 9, 11, dtype=torch.float64)
    half[:, 0] = 0.5
    assert torch.allclose(displace(x, half)[..., :-1], (x[..., :-1] + x[..., 1:]) / 2, atol=1e-12)
    with pytest.raises(ConfigError, match=r"field must be \(N, 2, H, W\)"):
        displace(x, torch.zeros(2, 2, 9, 9))
    # The blur of a constant is that constant away from the edges, and one bright pixel spreads
    # into a normalised Gaussian with the asked spread.
    assert torch.allclose(gaussian_blur(torch.ones(1, 1, 40, 40), 3.0)[..., 10:30, 10:30], torch.ones(20, 20))
    dot = torch.zeros(1, 1, 41, 41, dtype=torch.float64)
    dot[..., 20, 20] = 1.0
    spread = gaussian_blur(dot, 2.5)
    r2 = (torch.arange(41.0, dtype=torch.float64) - 20) ** 2
    assert abs(spread.sum().item() - 1) < 1e-12
    # Its variance along x is sigma^2, less 1% for the tails cut at 3 sigma.
    assert abs((spread.sum((0, 1, 2)) * r2).sum().item() - 2.5 ** 2) < 0.1


def test_random_elastic_bends_digits_smoothly_and_is_seeded():
    t = RandomElastic(34, 4)
    fields = t.draw(200, 28, 28, torch.Generator().manual_seed(0))
    # Uniform noise of variance 1/3 blurred by a 2-D Gaussian keeps 1 / (4 pi sigma^2) of it:
    # a standard deviation of alpha / sqrt(3) / (2 sqrt(pi) sigma) = 1.38 px inside the image.
    inner = fields[..., 12:16, 12:16]
    assert 1.2 < inner.std().item() < 1.6, inner.std().item()
    # Smooth: neighbouring pixels move almost together (correlation exp(-1 / (4 sigma^2)) = 0.98;
    # 0 for the noise before the blur).
    a, b = fields[..., 4:24, 4:23].flatten(), fields[..., 4:24, 5:24].flatten()
    assert torch.corrcoef(torch.stack((a, b)))[0, 1] > 0.95
    x = torch.rand(6, 1, 28, 28)
    a = t(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, t(x, generator=torch.Generator().manual_seed(1)))
    assert not torch.equal(a, t(x, generator=torch.Generator().manual_seed(2)))
    assert torch.allclose(a, displace(x, t.draw(6, 28, 28, torch.Generator().manual_seed(1)).float()), atol=1e-6)
    assert torch.equal(RandomElastic()(x), x)  # strength 0: the images themselves
    with pytest.raises(ConfigError, match=r"alpha must be a number of pixels in \[0, 100\], got -1"):
        RandomElastic(-1)
    with pytest.raises(ConfigError, match=r"sigma must be a number of pixels in \[0.5, 20\], got 0"):
        RandomElastic(10, 0)


def test_resize_bilinear_and_nearest():
    x = torch.tensor([[[0.0, 1.0]]])  # (C=1, H=1, W=2)
    out = Resize((1, 4))(x)
    assert torch.allclose(out, torch.tensor([[[0.0, 0.25, 0.75, 1.0]]]), atol=1e-7)
    img = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    assert torch.equal(Resize(4, mode="nearest")(img)[0], img[0].repeat_interleave(2, 0).repeat_interleave(2, 1))
    assert Resize(8)(torch.rand(5, 3, 4, 4)).shape == (5, 3, 8, 8)
    with pytest.raises(ConfigError, match=r"size must be a positive int or \(H, W\), got 0"):
        Resize(0)


def test_compose_uses_one_generator_and_works_under_autocast():
    x = torch.rand(8, 3, 6, 6)
    t = Compose([RandomCrop(6, padding=1), RandomHorizontalFlip(), Normalize((0.5,) * 3, (0.5,) * 3)])
    a = t(x, generator=torch.Generator().manual_seed(1))
    b = t(x, generator=torch.Generator().manual_seed(1))
    c = t(x, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = t(x.bfloat16(), generator=torch.Generator().manual_seed(1))
    assert y.dtype == torch.bfloat16 and torch.allclose(y.float(), a, atol=2e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_transforms_follow_the_images_device():
    x = torch.rand(4, 3, 8, 8)
    t = Compose([RandomCrop(8, padding=2), RandomHorizontalFlip(), Resize(6), Normalize((0.5,) * 3, (0.2,) * 3)])
    on_cpu = t(x, generator=torch.Generator().manual_seed(0))
    on_gpu = t(x.cuda(), generator=torch.Generator().manual_seed(0))
    assert on_gpu.device.type == "cuda"
    assert torch.allclose(on_gpu.cpu(), on_cpu, atol=1e-5)  # same crops and flips: one CPU generator


def test_translate_moves_every_image_and_fills_the_gap():
    x = torch.arange(2 * 1 * 4 * 5, dtype=torch.float32).view(2, 1, 4, 5) + 1  # no zero pixel
    right = Translate(0, 2)(x)
    assert torch.equal(right[..., :, 2:], x[..., :, :3]) and not right[..., :, :2].any()
    up = Translate(-1, 0, fill=-1.0)(x)
    assert torch.equal(up[..., :3, :], x[..., 1:, :]) and (up[..., 3, :] == -1).all()
    diagonal = Translate(1, -3)(x)
    assert torch.equal(diagonal[..., 1:, :2], x[..., :3, 3:])
    assert torch.equal(Translate(0, 0)(x), x) and not Translate(4, 0)(x).any()  # moved out entirely
    assert Translate(1, 1)(x[0]).shape == (1, 4, 5)  # one image (C, H, W)
    with pytest.raises(ConfigError, match="dy and dx must be integers"):
        Translate(0.5, 0)
