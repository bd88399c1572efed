"""`aios journal` and `aios explain` over a journal the engine wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aios.cli import app
from aios.engine import Engine
from aios.journal import Journal
from aios.model import PortfolioView, Stage
from aios.registry import plugin_set
from aios.state import database_path
from aios.testing import T0, candles_from_closes, default_policy, market
from tests.test_engine import Blocker, Source

runner = CliRunner()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A state dir whose journal holds one cycle: a signal observed, blocked in the shadow."""
    policy = default_policy("universe:\n  symbols: [ETH/BTC]\n")
    with Journal(database_path(tmp_path)) as journal:
        engine = Engine(
            policy, plugin_set([Source(), Blocker()]), journal, stage=Stage.OBSERVATION, run_id="r1"
        )
        view = market({"ETH/BTC": candles_from_closes([100.0] * 30)})
        engine.entry_cycle(T0, view, PortfolioView(1.0, 1.0, prices={"ETH/BTC": 100.0}))
    return tmp_path


def test_explain_a_signal_tells_the_whole_chain(state: Path) -> None:
    result = runner.invoke(app, ["explain", "ETH/BTC@1", "--state-dir", str(state)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "ETH/BTC@1"
    assert any(
        "portfolio_balancer" in line and "observed only" in line and "blocks: cap reached" in line
        for line in lines
    )
    assert any("actual order r1-1-1" in line for line in lines)
    assert any("shadow: blocked by portfolio_balancer: cap reached" in line for line in lines)


def test_explain_by_symbol_and_as_json(state: Path) -> None:
    result = runner.invoke(
        app, ["explain", "ETH/BTC", "--format", "json", "--state-dir", str(state)]
    )
    assert result.exit_code == 0, result.output
    chains = json.loads(result.stdout)
    assert list(chains) == ["ETH/BTC@1"]
    assert {row["subsystem"] for row in chains["ETH/BTC@1"]} >= {
        "signal_model",
        "portfolio_balancer",
        "engine",
    }


def test_explain_unknown_subject(state: Path) -> None:
    result = runner.invoke(app, ["explain", "DOGE/BTC", "--state-dir", str(state)])
    assert result.exit_code == 1
    assert "nothing in the journal about 'DOGE/BTC'" in result.output


def test_journal_filters(state: Path) -> None:
    result = runner.invoke(
        app, ["journal", "--observed", "--format", "json", "--state-dir", str(state)]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows and {row["outcome"] for row in rows} == {"observed"}
    text = runner.invoke(
        app, ["journal", "--subsystem", "portfolio_balancer", "--state-dir", str(state)]
    )
    assert text.exit_code == 0
    [line] = text.output.splitlines()
    assert "portfolio_balancer" in line and "[OBSERVE observed] blocks: cap reached" in line


def test_journal_without_a_state_store_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["journal", "--state-dir", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "no journal at" in result.output and "Traceback" not in result.output
