"""The output rule (issue 23): outputs never replace inputs, wrong kinds are refused before any work, partial
files never survive (success, error, SIGTERM, Ctrl-C), stale ones of the same target are removed.

Each case builds its input here: the session's simulated exposure (a folder of links), the micro dataset, or
small files; every refusal is checked for exit status 2, one line naming both paths, and an untouched input.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _support.exposure import full_exposure, linked_copy, one
from _support.model_fixtures import micro_data  # noqa: F401
from drcnet.cli import app
from drcnet.outputs import Output, OutputError, check_outputs
from drcnet.provenance import atomic_path, write_text_atomic


def _cli(*args: object) -> tuple[int, str]:
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in res.output, res.output
    return res.exit_code, " ".join(res.output.split())  # rich may wrap one message over lines


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def exposure(tmp_path_factory, data_root):
    return full_exposure(tmp_path_factory, data_root)


# -- the rule itself ------------------------------------------------------------------------------------
def test_rule_resolves_links_and_names_both_paths(tmp_path):
    data = tmp_path / "data.h5"
    data.write_bytes(b"x")
    link = tmp_path / "sub" / ".." / "link.h5"
    (tmp_path / "link.h5").symlink_to(data)
    with pytest.raises(OutputError) as err:
        check_outputs([Output(link)], files=[data])
    assert str(link) in str(err.value) and str(data) in str(err.value) and "\n" not in str(err.value)
    check_outputs([Output(tmp_path / "new.csv")], files=[data])  # a new file beside the input: fine


def test_rule_folders_trees_duplicates_and_kinds(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "a.fits").write_bytes(b"x")
    with pytest.raises(OutputError, match="inside .*lib, a folder this command reads as a whole"):
        check_outputs([Output(lib / "new.h5")], folders=[lib])
    exp = tmp_path / "exp"
    exp.mkdir()
    check_outputs([Output(exp / "catalogue.csv")], trees=[exp])  # a new file beside the frames: allowed
    with pytest.raises(OutputError, match="is the folder"):
        check_outputs([Output(exp, "--qa", "folder")], trees=[exp])
    with pytest.raises(OutputError, match=r"\(--dataset\) is also"):
        check_outputs([Output(tmp_path / "x.h5"), Output(tmp_path / "x.h5", "--dataset")])
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    with pytest.raises(OutputError, match="must be a folder, but this is an existing file"):
        check_outputs([Output(a_file, kind="folder")])
    with pytest.raises(OutputError, match="is an existing folder"):
        check_outputs([Output(lib)])
    with pytest.raises(OutputError, match="f.txt is a file, not a folder"):
        check_outputs([Output(a_file / "x.csv")])
    with pytest.raises(OutputError, match="holds the input file"):
        check_outputs([Output(lib, kind="folder", replaces_folder=True)], files=[lib / "a.fits"])


# -- commands: an output that is an input ---------------------------------------------------------------
@pytest.mark.slow
def test_frames_commands_refuse_to_write_over_their_inputs(exposure, tmp_path):
    folder = linked_copy(exposure, tmp_path / "exp")
    raw = one(folder, "ro-01b-*.fit")
    fmap = one(folder, "fibermap-*.fits")
    before = _sha(raw), _sha(fmap)
    code, msg = _cli("frames", "reduce", folder, "--out", raw)
    assert code == 2 and f"{raw} (--out) is the input file {raw}" in msg
    code, msg = _cli("frames", "classify", "--exposure", folder, "--out", fmap)
    assert code == 2 and f"{fmap} (--out) is the input file" in msg
    code, msg = _cli("frames", "classify", "--exposure", folder, "--out", tmp_path / "c.csv", "--dataset", raw)
    assert code == 2 and f"{raw} (--dataset) is the input file" in msg
    code, msg = _cli("frames", "classify", "--exposure", folder, "--out", tmp_path / "c.csv", "--qa", folder)
    assert code == 2 and "(--qa) is the folder" in msg
    assert (_sha(raw), _sha(fmap)) == before
    assert not (tmp_path / "c.csv").exists()


def test_predict_refuses_a_link_to_its_dataset_and_names_a_folder_not_a_temporary(micro_data, tmp_path):
    data = tmp_path / "t.h5"
    data.write_bytes(micro_data.read_bytes())
    link = tmp_path / "out.csv"
    link.symlink_to(data)
    before = _sha(data)
    code, msg = _cli("predict", "--data", data, "--out", data)
    assert code == 2 and f"{data} (--out) is the input file {data}" in msg
    code, msg = _cli("predict", "--data", data, "--out", link)
    assert code == 2 and f"{link} (--out) is the input file {data}" in msg
    assert _sha(data) == before
    adir = tmp_path / "adir"
    adir.mkdir()
    code, msg = _cli("predict", "--data", data, "--out", adir)
    assert code == 2 and f"{adir}: --out is an existing folder" in msg and ".part" not in msg
    assert list(adir.iterdir()) == []


@pytest.mark.parametrize("command", ["evaluate", "report"])
def test_an_existing_file_as_an_output_folder_is_refused_before_the_work(tmp_path, command):
    existing = tmp_path / "EXISTING"
    existing.write_text("keep me\n")
    not_hdf5 = tmp_path / "tiny.h5"  # the work would fail on it: the refusal must come first
    not_hdf5.write_text("not a dataset\n")
    from drcnet.models import pretrained_dir

    code, msg = _cli(command, pretrained_dir("drcnet"), "--data", not_hdf5, "--out", existing)
    assert code == 2 and f"{existing}: --out must be a folder, but this is an existing file" in msg
    assert "Errno" not in msg and "tiny.h5" not in msg and existing.read_text() == "keep me\n"


# -- partial files ---------------------------------------------------------------------------------------
def test_atomic_path_removes_stale_parts_of_its_target_only(tmp_path):
    final = tmp_path / "red.h5"
    stale = tmp_path / ".red.h5.abcd1234.part"
    stale.write_bytes(b"0" * 1000)
    other = tmp_path / ".blue.h5.abcd1234.part"
    other.write_bytes(b"x")
    users = tmp_path / "notes.part"
    users.write_bytes(b"x")
    write_text_atomic(final, "ok\n")
    assert final.read_text() == "ok\n"
    assert not stale.exists() and other.exists() and users.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".blue.h5.abcd1234.part", "notes.part", "red.h5"]


def test_atomic_path_cleans_up_on_error_and_removes_the_folders_it_made(tmp_path):
    qa = tmp_path / "qa" / "sub"
    with pytest.raises(RuntimeError, match="boom"), atomic_path(qa / "index.html") as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert not (tmp_path / "qa").exists()
    existing = tmp_path / "keep"
    existing.mkdir()
    with pytest.raises(KeyboardInterrupt), atomic_path(existing / "a.csv") as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert existing.is_dir() and list(existing.iterdir()) == []


_SLOW_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import typer
    from drcnet.cli.common import friendly_errors
    from drcnet.provenance import atomic_path

    @friendly_errors
    def main(out: Path) -> None:
        with atomic_path(out) as tmp:
            tmp.write_bytes(b"0" * 4096)
            print("writing", flush=True)
            time.sleep(60)

    typer.run(main)
""")


@pytest.mark.parametrize(
    "sig, code, words", [(signal.SIGTERM, 143, "terminated (SIGTERM)"), (signal.SIGINT, 130, "interrupted (Ctrl-C)")]
)
def test_a_signal_during_a_write_leaves_no_partial_file(tmp_path, sig, code, words):
    out = tmp_path / "red.h5"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    # a pytest-xdist worker ignores SIGINT and a child would inherit that; a user's shell does not
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITER, str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "writing"
    assert len(list(tmp_path.glob(".red.h5.*.part"))) == 1
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert words in " ".join(err.split()) and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


# -- review of issue 23: variants -------------------------------------------------------------------------
def test_rule_catches_a_hard_link_to_an_input(tmp_path):
    fmap = tmp_path / "fibermap-X-sp01.fits"
    fmap.write_bytes(b"fiber map")
    hard = tmp_path / "catalogue.fits"
    os.link(fmap, hard)  # another name of the same file: writing it would break the link the user made
    with pytest.raises(OutputError) as err:
        check_outputs([Output(hard)], files=[fmap])
    assert f"{hard} (--out) is the input file {fmap}" in str(err.value)
    copy = tmp_path / "copy.fits"
    copy.write_bytes(b"fiber map")  # same bytes, another file: fine
    check_outputs([Output(copy)], files=[fmap])


@pytest.fixture()
def shipped_copy(tmp_path, monkeypatch):
    """The shipped model ``drcnet`` as a copy in tmp_path, returned for that name (a failing test cannot
    touch the package's own files)."""
    import shutil

    import drcnet.models.run_folder as rf

    real_dir = rf.pretrained_dir("drcnet")
    copy = tmp_path / "pkg" / "drcnet"
    shutil.copytree(real_dir, copy)
    original = rf.pretrained_dir
    monkeypatch.setattr(
        rf, "pretrained_dir", lambda name=rf.DEFAULT_MODEL: copy if name == "drcnet" else original(name)
    )
    return copy


def test_a_shipped_model_named_on_the_command_line_is_an_input(shipped_copy, tmp_path):
    not_hdf5 = tmp_path / "t.h5"  # the work would fail on it: the refusal must come first
    not_hdf5.write_text("not a dataset\n")
    weights = shipped_copy / "best.safetensors"
    before = _sha(weights), _sha(shipped_copy / "run.json")
    code, msg = _cli("predict", "drcnet", "--data", not_hdf5, "--out", weights)
    assert code == 2 and f"{weights} (--out) is the input file {weights}" in msg
    code, msg = _cli("predict", "drcnet", "--data", not_hdf5, "--out", shipped_copy / "x" / ".." / "run.json")
    assert code == 2 and "is the input file" in msg and "run.json" in msg
    code, msg = _cli("frames", "classify", "drcnet", "--exposure", tmp_path / "noexp", "--out", weights)
    assert code == 2 and f"{weights} (--out) is the input file {weights}" in msg
    # --overwrite would empty the folder the run starts from: refused before anything is removed
    code, msg = _cli(
        "train",
        "-m",
        "drcnet",
        "--data",
        not_hdf5,
        "--out",
        shipped_copy,
        "--init-from",
        "drcnet",
        "--overwrite",
        "--epochs",
        "1",
        "--no-progress",
    )
    assert code == 2 and f"{shipped_copy} (--out) holds the input file" in msg
    assert (_sha(weights), _sha(shipped_copy / "run.json")) == before


def test_train_overwrite_with_an_unknown_init_from_keeps_the_old_run(tmp_path):
    data = tmp_path / "t.h5"
    data.write_text("not a dataset\n")
    old = tmp_path / "old_run"
    old.mkdir()
    (old / "run.json").write_text("{}\n")
    code, msg = _cli(
        "train",
        "-m",
        "drcnet",
        "--data",
        data,
        "--out",
        old,
        "--init-from",
        "no-such-model",
        "--overwrite",
        "--epochs",
        "1",
        "--no-progress",
    )
    assert code == 2 and "no-such-model: neither a run folder nor a shipped model" in msg
    assert (old / "run.json").read_text() == "{}\n"


@pytest.mark.parametrize(
    "name, make, words",
    [
        ("night.work", "file", "night.work: --out (.work folder beside it) must be a folder"),
        ("night.manifest.json", "dir", "night.manifest.json: --out (.manifest.json beside it) is an existing folder"),
    ],
)
def test_night_refuses_its_side_outputs_of_the_wrong_kind_before_any_work(tmp_path, name, make, words):
    root = tmp_path / "root"
    root.mkdir()  # no exposure: any work would fail differently
    side = tmp_path / name
    side.write_text("keep\n") if make == "file" else side.mkdir()
    code, msg = _cli("night", "classify", root, "--out", tmp_path / "night.parquet", "--threads", "--workers", "1")
    assert code == 2 and words in msg and "Errno" not in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["root", name])


def test_a_forked_worker_dies_quietly_on_sigterm():
    # multiprocessing's Pool.terminate() ends fork workers with SIGTERM; with the CLI's handler inherited,
    # each idle worker of a successful `frames simulate` could print a Terminated traceback
    from drcnet.cli.common import _raise_terminated

    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report its handler, then wait to be terminated (never back into pytest)
            try:
                os.write(w, b"1" if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL else b"0")
                signal.pause()
            finally:
                os._exit(7)
        os.close(w)
        handler_was_default = os.read(r, 1) == b"1"
        os.kill(pid, signal.SIGTERM)
        _, status = os.waitpid(pid, 0)
        assert handler_was_default
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_frames_classify_takes_a_shipped_model_by_name(shipped_copy, tmp_path):
    # as `drcnet predict` does: the name is resolved (here to the copy), not read as a missing folder
    code, msg = _cli("frames", "classify", "drcnet", "--exposure", tmp_path / "noexp", "--out", tmp_path / "c.csv")
    assert code == 2 and "not a drcnet run folder" not in msg and "noexp" in msg
