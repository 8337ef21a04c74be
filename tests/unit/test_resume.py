"""``tpserve sweep --resume`` and ``tpserve tune --resume``: a point whose runs are all recorded in the output
folder is not measured again; one with a run missing or unreadable is."""

from tests.conftest import tpserve
from tests.unit.fakebackend import FakeBackend, fake_campaign
from tpserve.axes import parse_axes
from tpserve.sweep import run_sweep
from tpserve.tune import Budget, tune


def figures(point):
    return 100.0 * point.tensor, 50.0, 5.0


def sweep(out, backend, resume):
    return run_sweep(fake_campaign(out, backend, layouts="1,2,4", name="org/tiny", repeats=2, resume=resume))


def test_a_resumed_sweep_measures_only_the_points_without_every_run_recorded(tmp_path):
    sweep(tmp_path, FakeBackend(figures, failing={"tp4x1": "the server exited with status 1"}), resume=False)
    (tmp_path / "org--tiny-tp2x1-run2.json").unlink()
    again = FakeBackend(figures)
    result = sweep(tmp_path, again, resume=True)
    assert again.started == ["tp2x1", "tp4x1"]
    assert sorted(path.name for path in result.runs) == sorted(
        f"org--tiny-tp{tensor}x1-run{repeat}.json" for tensor in (1, 2, 4) for repeat in (1, 2))
    assert result.failures == []


def test_a_run_record_that_does_not_load_is_measured_again(tmp_path):
    sweep(tmp_path, FakeBackend(figures), resume=False)
    (tmp_path / "org--tiny-tp1x1-run1.json").write_text('{"tpserve_schema_version": 2')
    again = FakeBackend(figures)
    sweep(tmp_path, again, resume=True)
    assert again.started == ["tp1x1"]


def test_without_resume_every_point_is_measured_again(tmp_path):
    sweep(tmp_path, FakeBackend(figures), resume=False)
    again = FakeBackend(figures)
    sweep(tmp_path, again, resume=False)
    assert again.started == ["tp1x1", "tp2x1", "tp4x1"]


def test_a_resumed_search_starts_no_server_for_a_candidate_already_recorded(tmp_path):
    def search(backend, resume):
        return tune(fake_campaign(tmp_path, backend, layouts="1,2", settings_axes=parse_axes(["max-num-seqs=4,8"]),
                                  resume=resume), Budget())

    def by_label(point):
        return 100.0 + 10 * len(point.label), 50.0, 5.0

    first = search(FakeBackend(by_label), resume=False)
    (tmp_path / first.winner.runs[0]).unlink()
    backend = FakeBackend(by_label)
    resumed = search(backend, resume=True)
    assert backend.started == [first.winner.point.label]
    assert resumed.server_starts == 1
    assert (resumed.winner.point, resumed.winner.tok_s_per_gpu) == (first.winner.point, first.winner.tok_s_per_gpu)


def test_resume_without_an_output_folder_is_refused_naming_the_fix():
    done = tpserve("sweep", "/models/tiny", "--resume", timeout=120)
    assert done.returncode == 2
    assert "--resume continues the sweep in the folder --out names: add --out FOLDER" in done.stderr
