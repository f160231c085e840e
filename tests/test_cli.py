"""The tsformers command: demo and forecast, atomic output, clear failures."""
import pandas as pd
import pytest

from tsformers import GateformerForecaster
from tsformers.cli import main
from tsformers.datasets import make_demo


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "model"
    GateformerForecaster(horizon=12, lookback=48, d_model=16, d_ff=16, n_heads=2, batch_size=64,
                         max_epochs=1).fit(make_demo(n_steps=300)).save(path)
    return path


def test_demo_prints_the_comparison_and_writes_the_forecast(tmp_path, capsys):
    out = tmp_path / "f.csv"
    assert main(["demo", "--max-epochs", "1", "--horizon", "12", "--lookback", "48", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "naive (last value)" in printed and "Gateformer" in printed
    forecast = pd.read_csv(out, parse_dates=["date"])
    assert len(forecast) == 12 and list(forecast.columns) == ["date", "series_0", "series_1", "series_2"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_forecast_reads_history_and_writes_the_same_forecast_as_python(model_dir, tmp_path, suffix):
    history = make_demo(n_steps=200, seed=5)
    data = tmp_path / f"history{suffix}"
    history.to_csv(data, index=False) if suffix == ".csv" else history.to_parquet(data)
    out = tmp_path / f"forecast{suffix}"
    assert main(["forecast", "--model", str(model_dir), "--data", str(data), "--out", str(out)]) == 0
    written = pd.read_csv(out, parse_dates=["date"]) if suffix == ".csv" else pd.read_parquet(out)
    expected = GateformerForecaster.load(model_dir).predict(history)
    pd.testing.assert_frame_equal(written, expected, check_dtype=False)


def test_bad_input_exits_2_with_a_message_and_writes_nothing(model_dir, tmp_path, capsys):
    history = make_demo(n_steps=200).drop(columns="series_1")
    history.to_csv(tmp_path / "bad.csv", index=False)
    out = tmp_path / "forecast.csv"
    assert main(["forecast", "--model", str(model_dir), "--data", str(tmp_path / "bad.csv"), "--out", str(out)]) == 2
    assert "series_1" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"], "no output or temporary file left"
