"""`python -m portfolio.score`: a usable file works; anything else is one plain line and exit 2, never a traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from models import CARD_PATH, PICKLE_PATH
from portfolio.score import main, score
from tests.portfolio.conftest import Portfolio
from tests.utils.servers import ROOT


def _fails(caplog: pytest.LogCaptureFixture, *argv: str) -> str:
    caplog.clear()
    assert main(list(argv)) == 2
    assert [r.levelname for r in caplog.records] == ["ERROR"] and caplog.records[0].exc_info is None
    return caplog.text


def test_missing_column_is_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = tmp_path / "in.csv"
    source.write_text("CUST_ID,BALANCE,PURCHASES,CASH_ADVANCE,PAYMENTS\nC1,1,2,3,4\n", encoding="utf-8")
    err = _fails(caplog, "--input", str(source), "--output", str(tmp_path / "out.csv"))
    assert "missing column: CREDIT_LIMIT (or credit_limit)" in err
    assert not list(tmp_path.glob("out*")) and not list(tmp_path.glob(".out*")), "nothing half-written"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("in.parquet", b"this is not parquet", "not a readable Parquet file"),
        ("in.xlsx", b"PK\x03\x04", "unknown format"),
        ("in.csv", b"BALANCE,PURCHASES,CASH_ADVANCE,CREDIT_LIMIT,PAYMENTS\n1,2,3,4,5\n1,2\n", "Expected 5 columns"),
        ("in.csv", b"\xff\xfe\x00garbage\x00\n\x00", "not a readable CSV table"),
        ("in.csv", b"just,some,text\n1,2,3\n", "missing columns: BALANCE (or balance), PURCHASES"),
    ],
)
def test_not_a_table(tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str, content: bytes, message: str) -> None:
    source = tmp_path / name
    source.write_bytes(content)
    err = _fails(caplog, "--input", str(source), "--output", str(tmp_path / "out.parquet"))
    assert message in err
    assert not list(tmp_path.glob("*out*"))


def test_missing_input_and_bad_output(tmp_path: Path, portfolio: Portfolio, caplog: pytest.LogCaptureFixture) -> None:
    assert "no such file" in _fails(caplog, "--input", str(tmp_path / "nope.csv"), "--output", str(tmp_path / "o.csv"))
    assert "unknown format" in _fails(caplog, "--input", str(portfolio.csv), "--output", str(tmp_path / "o.json"))
    assert "no such directory" in _fails(
        caplog, "--input", str(portfolio.csv), "--output", str(tmp_path / "x" / "o.csv")
    )


def test_bad_candidate_policy(tmp_path: Path, portfolio: Portfolio, caplog: pytest.LogCaptureFixture) -> None:
    policy = tmp_path / "candidate.yaml"
    policy.write_text("version: x\nsegments: {}\n", encoding="utf-8")
    err = _fails(caplog, "--input", str(portfolio.csv), "--output", str(tmp_path / "o.csv"), "--policy-b", str(policy))
    assert "policy file refused" in err and "candidate.yaml" in err


def test_tampered_pickle_is_never_unpickled(tmp_path: Path, portfolio: Portfolio) -> None:
    pickle = tmp_path / PICKLE_PATH.name
    shutil.copyfile(PICKLE_PATH, pickle)
    with pickle.open("ab") as f:
        f.write(b"\0")
    with pytest.raises(Exception, match="does not match the model card"):
        score(
            input_path=str(portfolio.csv), output_path=str(tmp_path / "o.csv"), pickle_path=pickle, card_path=CARD_PATH
        )


def test_the_command_runs_as_typed(tmp_path: Path, portfolio: Portfolio) -> None:
    out = tmp_path / "decisions.parquet"
    done = subprocess.run(
        [sys.executable, "-m", "portfolio.score", "--input", str(portfolio.csv), "--output", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert out.is_file() and Path(f"{out}.summary.json").is_file()
    assert f"{len(portfolio.frame)} rows" in done.stderr


def test_default_policy_is_the_apis() -> None:
    from evaluation_api.config import Settings
    from portfolio.score import DEFAULT_POLICY

    assert Settings.model_fields["policy_path"].default == DEFAULT_POLICY


@pytest.mark.parametrize("explain", [False, True])
def test_numba_is_loaded_only_to_explain(tmp_path: Path, portfolio: Portfolio, explain: bool) -> None:
    """Importing numba costs a run about 0.35 s (and loading the compiled search 0.5 s more): a run
    without the explanation columns must not pay for them."""
    out = tmp_path / "decisions.parquet"
    code = (
        "import sys; from portfolio.score import score; "
        f"score(input_path={str(portfolio.csv)!r}, output_path={str(out)!r}, explain={explain}); "
        "print('numba' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(explain)
