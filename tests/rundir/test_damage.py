"""Damaged run directories: every command that reads one exits 2 with one line, never a traceback.

run.json mutations (each key dropped, each value replaced by a value of another type) and
truncations of every run-directory file, against show, report, card, compare and export.
"""

from __future__ import annotations

import copy
import json
import shutil

import pytest

from actscope.cli import build_parser
from actscope.config import MeasureConfig
from actscope.errors import UserError
from actscope.runner import measure
from tinylm import tiny_corpus, tiny_loaded


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("damage") / "run"
    measure(
        MeasureConfig(out=str(out), progress=False), loaded=tiny_loaded("llama", seed=2), corpus=tiny_corpus()
    )
    return out


def commands(run, tmp):
    return [
        ["show", str(run)],
        ["show", str(run), "--json"],
        ["report", str(run), "-o", str(tmp / "r.html")],
        ["card", str(run)],
        ["compare", str(run), str(run)],
        ["export", str(run), "--format", "json", "-o", str(tmp / "e.json")],
        ["export", str(run), "--format", "smoothquant", "-o", str(tmp / "e.pt")],
    ]


def run_cli(argv, capsys) -> tuple[int, str]:
    """The handler's exit code and stderr; a UserError is what main() turns into one line and 2."""
    args = build_parser().parse_args(argv)
    try:
        rc = int(args.handler(args) or 0)
    except UserError as e:
        msg = str(e)
        assert "\n" not in msg, msg
        return e.exit_code, msg
    finally:
        capsys.readouterr()
    return rc, ""


def paths(obj, prefix=()):
    """Every key path of a JSON object (lists: their first element)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield (*prefix, k)
            yield from paths(v, (*prefix, k))
    elif isinstance(obj, list) and obj and isinstance(obj[0], dict):
        yield from paths(obj[0], (*prefix, 0))


def mutate(m: dict, path, value) -> dict:
    m = copy.deepcopy(m)
    node = m
    for p in path[:-1]:
        node = node[p]
    if value is _DROP:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return m


_DROP = object()
REPLACEMENTS = (_DROP, None, "x", [1])
# Paths whose values no reader uses (free text and provenance of the environment).
FREE = {"environment", "started", "finished", "timings", "actscope_version", "dropped_sites", "sequences"}


def test_run_json_mutations(run_dir, tmp_path, capsys):
    original = json.loads((run_dir / "run.json").read_text())
    tried = failed = 0
    mutations = [(p, v) for p in paths(original) if p[0] not in FREE for v in REPLACEMENTS]
    for i, (path, value) in enumerate(mutations):
        run = tmp_path / "m"
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(run_dir, run)
        (run / "run.json").write_text(json.dumps(mutate(original, path, value)))
        # the HTML report (matplotlib charts) costs ~1 s: every 10th mutation, and every run.json shape above
        for argv in commands(run, tmp_path):
            if argv[0] != "report" or i % 10 == 0:
                tried += 1
                rc, _ = run_cli(argv, capsys)
                assert rc in (0, 2), (path, value, argv, rc)
                failed += rc == 2
    assert tried > 1000 and failed > tried // 2


@pytest.mark.parametrize(
    "name",
    ["run.json", "sites.parquet", "channels.parquet", "hist.parquet", "topk.parquet", "samples.parquet"],
)
@pytest.mark.parametrize("keep", [0.0, 0.5, 0.97])
def test_truncated_files(run_dir, tmp_path, capsys, name, keep):
    run = tmp_path / "t"
    shutil.copytree(run_dir, run)
    data = (run / name).read_bytes()
    (run / name).write_bytes(data[: int(len(data) * keep)])
    codes = []
    for argv in commands(run, tmp_path):
        rc, msg = run_cli(argv, capsys)
        assert rc in (0, 2), (argv, rc, msg)  # 0: that command does not read the file
        codes.append(rc)
    assert 2 in codes or name == "samples.parquet"  # the damage is seen (no view reads samples)


def test_run_json_of_the_wrong_shape(run_dir, tmp_path, capsys):
    for text in ("[]", "null", '"x"', "{}", '{"schema_version": "1"}', "{"):
        run = tmp_path / "w"
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(run_dir, run)
        (run / "run.json").write_text(text)
        for argv in commands(run, tmp_path):
            rc, msg = run_cli(argv, capsys)
            assert rc == 2 and msg, (text, argv)
