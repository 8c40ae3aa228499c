"""`facerestore doctor`: one line per optional part, exit 0 when the core works."""

from __future__ import annotations

from typer.testing import CliRunner

from facerestore.cli import app


NAMES = {"core", "VGG16 (perceptual)", "LPIPS-VGG v0.1", "dlib", "dlib_resnet (identity)", "68-point predictor",
         "5-point predictor", "MTCNN (detector)", "facenet (identity)"}


def _lines(output: str) -> dict[str, str]:
    """Component name (second column) -> its line."""
    return {line[10:32].strip(): line for line in output.splitlines() if line[10:32].strip() in NAMES}


def test_doctor_lists_every_part(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no facenet weights there
    monkeypatch.setenv("FACERESTORE_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(app, ["doctor", "--no-parity"])
    assert result.exit_code == 0, result.output
    lines = _lines(result.output)
    assert set(lines) == NAMES, result.output
    assert lines["core"].startswith("ok")
    for line in lines.values():
        assert line.split()[0] in {"ok", "missing", "error"}
        if line.startswith("missing"):
            assert "pip install" in line or "put " in line, line  # says what to do
    fn = lines["facenet (identity)"]
    assert fn.startswith("missing") and "20180402-114759-vggface2.pt" in fn and str(tmp_path / "torch") in fn
    if lines["68-point predictor"].startswith("ok"):
        assert "non-commercial" in lines["68-point predictor"]


def test_doctor_parity_line():
    import pytest

    pytest.importorskip("dlib", reason="dlib not installed")
    pytest.importorskip("skimage", reason="scikit-image not installed")
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    line = next(l for l in result.output.splitlines() if "dlib_resnet" in l)
    assert line.startswith("ok") and "parity vs dlib on astronaut chip: cosine" in line
    cos = float(line.split("cosine ")[1].split(")")[0].split(";")[0])
    assert cos >= 0.999


def test_doctor_lists_bundled_models():
    import hashlib

    from facerestore.models import bundled

    result = CliRunner().invoke(app, ["doctor", "--no-parity"])
    for name, facts in bundled().items():
        line = next(l for l in result.output.splitlines() if l.split()[1:3] == ["model", name])
        digest = hashlib.sha256(facts.path.read_bytes()).hexdigest()[:16]
        assert line.startswith("ok") and f"sha256 {digest}" in line and "celeba" in line
