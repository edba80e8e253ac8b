from dermsynth.core import paths
from dermsynth.views import tracking


def test_store_is_at_the_repository_root(workdir, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.delenv("DVC_ROOT", raising=False)
    (workdir / "sub").mkdir()
    monkeypatch.chdir(workdir / "sub")
    assert tracking.tracking_uri() == f"sqlite:///{workdir / 'mlflow.db'}"


def test_queued_experiments_log_into_the_real_repository(workdir, tmp_path_factory, monkeypatch):
    """`dvc exp run --queue` runs in a temporary copy and sets DVC_ROOT to the real repository."""
    real = tmp_path_factory.mktemp("real-repo")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setenv("DVC_ROOT", str(real))
    assert paths.root() == workdir
    assert tracking.tracking_uri() == f"sqlite:///{real / 'mlflow.db'}"


def test_explicit_tracking_uri_wins(workdir, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri() == "http://127.0.0.1:5000"
