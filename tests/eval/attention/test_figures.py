"""Heatmap figure: 2x4 grid shape, valid PNG bytes, atomic CLI output, clear errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.checkpoint import save_checkpoint
from core.detector import AttentionUnavailableError
from core.factory import build_model
from eval.attention.figures import PANEL, TITLE_H, heatmap_figure, heatmap_png, main
from tests.conftest import exit_status

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SHAPE = (2 * (TITLE_H + PANEL), 4 * PANEL, 3)


@pytest.mark.parametrize("name", ["cbam", "eca_cbam", "eca_cbam_parallel"])
def test_figure_is_a_2x4_grid_and_valid_png(name, rgb_image):
    model = build_model(name).eval()
    figure = heatmap_figure(model, rgb_image, conf_thresh=0.5)
    assert figure.shape == SHAPE and figure.dtype == np.uint8
    assert_panels_are_drawn(figure, rgb_image)
    png = heatmap_png(model, rgb_image)
    assert png.startswith(PNG_SIGNATURE)
    decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == SHAPE


def assert_panels_are_drawn(figure: np.ndarray, rgb: np.ndarray) -> None:
    """Each of the 8 panels has a title and a non-blank body, and the 6 heatmaps blend a mask over the input."""
    titles, bodies = [], []
    for row in range(2):
        for col in range(4):
            top, left = row * (TITLE_H + PANEL), col * PANEL
            titles.append(figure[top:top + TITLE_H, left:left + PANEL])
            bodies.append(figure[top + TITLE_H:top + TITLE_H + PANEL, left:left + PANEL].astype(np.int16))
    for i, (title, body) in enumerate(zip(titles, bodies, strict=True)):
        assert title.min() < 100, f"panel {i} has no title text"
        assert body.std() > 20 and len(np.unique(body.reshape(-1, 3), axis=0)) > 50, f"panel {i} is blank"
    height, width = rgb.shape[:2]  # 120 x 160 -> letterboxed to 240 x 320, 40 px white above and below
    assert (height, width) == (PANEL * 3 // 8, PANEL // 2)
    plain = np.full((PANEL, PANEL, 3), 255, np.int16)
    plain[PANEL // 8 : PANEL // 8 + 2 * height] = cv2.resize(rgb, (2 * width, 2 * height))  # INTER_LINEAR
    for i in (1, 2, 3, 5, 6, 7):  # heatmaps: the letterboxed input with a coloured mask blended in
        assert np.abs(bodies[i] - plain).mean() > 10, f"panel {i} shows no mask"


def test_no_attention_model_has_no_figure(rgb_image):
    with pytest.raises(AttentionUnavailableError, match="no-attention"):
        heatmap_figure(build_model("none"), rgb_image)


def test_cli_writes_png_atomically(tmp_path, rgb_image):
    image = tmp_path / "in.png"
    cv2.imwrite(str(image), rgb_image[..., ::-1])
    weights = tmp_path / "w.pth"
    save_checkpoint(weights, build_model("eca_cbam_parallel"))
    out = tmp_path / "figures" / "attention_heatmaps_parallel.png"
    assert main(["--network", "eca_cbam_parallel", "--trained-model", str(weights), "--image", str(image),
                 "--out", str(out)]) == 0
    assert cv2.imread(str(out)).shape == SHAPE
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp files left


def test_cli_errors_leave_no_file(tmp_path, rgb_image, capsys):
    image = tmp_path / "in.png"
    cv2.imwrite(str(image), rgb_image)
    out = tmp_path / "fig.png"
    assert main(["--network", "none", "--image", str(image), "--out", str(out)]) == 2
    assert "no-attention ablation" in capsys.readouterr().err
    assert exit_status(main, ["--network", "cbam", "--image", str(tmp_path / "missing.png"), "--out", str(out)]) == 2
    assert "argument --image: " in (err := capsys.readouterr().err) and "missing.png': file not found" in err
    weights = tmp_path / "w.pth"
    save_checkpoint(weights, build_model("cbam"))
    assert main(["--network", "eca_cbam", "--trained-model", str(weights), "--image", str(image),
                 "--out", str(out)]) == 2
    assert "holds model 'cbam'" in capsys.readouterr().err
    assert not out.exists()
