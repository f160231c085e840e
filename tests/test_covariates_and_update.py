"""Covariates (past-observed and known-future), update(), and the streaming protocol of the base class."""
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from tsformers.backbone import KnownFutureHead
from tsformers import GateformerForecaster
from tsformers.data.windows import lead_future
from tsformers.datasets import make_demo
from tsformers.estimators.streaming import StreamingForecaster

SMALL = dict(horizon=12, lookback=24, d_model=16, d_ff=32, n_heads=2, batch_size=32, learning_rate=3e-3,
             random_state=0)


def driven(n=900, seed=0):
    """A target that equals an unpredictable covariate at the same step."""
    rng = np.random.default_rng(seed)
    c = np.convolve(rng.standard_normal(n + 4), np.ones(5) / 5, mode="valid")[:n]
    return pd.DataFrame({"date": pd.date_range("2024-01-01", periods=n, freq="h"), "y": c.copy(), "c": c})


def test_lead_future_shifts_only_the_future_channels():
    v = np.arange(12, dtype=float).reshape(1, 6, 2)  # channel 0 = target, channel 1 = future covariate
    led = lead_future(v, n_future=1, horizon=2, future=np.array([[[100.0], [101.0]]]))
    assert led[0, :, 0].tolist() == v[0, :, 0].tolist()
    assert led[0, :, 1].tolist() == [5, 7, 9, 11, 100, 101]
    assert np.isnan(lead_future(v, 1, 2)[0, -2:, 1]).all(), "no value may be invented past the data"


def test_known_future_covariate_is_used():
    df = driven()
    train = df.iloc[:700]
    settings = dict(SMALL, max_epochs=8, lr_schedule="constant", target="y")
    future = GateformerForecaster(**settings, future_covariates=["c"]).fit(train)
    past = GateformerForecaster(**settings, covariates=["c"]).fit(train)
    err_future, err_past = [], []
    for origin in range(700, 888, 12):  # every later origin, each forecast from the history before it
        history, test = df.iloc[:origin], df.iloc[origin:origin + 12]
        with_future = future.predict(history, future_df=test[["date", "c"]])
        assert list(with_future.columns) == ["date", "y"]
        err_future.append(np.mean((with_future["y"].to_numpy() - test["y"].to_numpy()) ** 2))
        err_past.append(np.mean((past.predict(history)["y"].to_numpy() - test["y"].to_numpy()) ** 2))
    assert np.mean(err_future) < 0.5 * np.mean(err_past), (np.mean(err_future), np.mean(err_past))
    # score reads the future covariates from the last horizon rows of the frame itself
    assert future.score(df.iloc[:712]) == pytest.approx(-err_future[0], rel=1e-9)


def test_future_covariate_errors_say_what_is_missing():
    df = driven(n=200)
    f = GateformerForecaster(**SMALL, max_epochs=1, target="y", future_covariates="c").fit(df)
    with pytest.raises(ValueError, match="future_df=.*'c'|future_covariates \\['c'\\]"):
        f.predict()
    nxt = pd.DataFrame({"date": pd.date_range(df.date.iloc[-1], periods=13, freq="h")[1:], "c": 0.0})
    with pytest.raises(ValueError, match="covers 8 of the 12 forecast steps"):
        f.predict(future_df=nxt.iloc[:8])
    with pytest.raises(ValueError, match="lacks column"):
        f.predict(future_df=nxt.drop(columns="c"))
    with pytest.raises(ValueError, match="'c'.*NaN|NaN.*'c'|'c' has"):
        f.predict(future_df=nxt.assign(c=np.nan))
    assert len(f.predict(future_df=pd.concat([nxt, nxt.assign(date=nxt.date + pd.Timedelta(hours=12))]))) == 12
    plain = GateformerForecaster(**SMALL, max_epochs=1).fit(df)
    with pytest.raises(ValueError, match="without future_covariates"):
        plain.predict(future_df=nxt)
    with pytest.raises(ValueError, match="lookback >= horizon"):
        GateformerForecaster(**{**SMALL, "horizon": 30}, future_covariates="c", target="y").fit(df)


def test_update_slides_the_window_without_retraining():
    df = make_demo(n_steps=400)
    f = GateformerForecaster(**SMALL, max_epochs=1).fit(df.iloc[:-30])
    weights = {k: v.clone() for k, v in f.network_.state_dict().items()}
    f.update(df.iloc[-30:-10]).update(df.iloc[-10:])
    pd.testing.assert_frame_equal(f.predict(), f.predict(df))
    assert all(torch.equal(weights[k], v) for k, v in f.network_.state_dict().items())
    with pytest.raises(ValueError, match="continue the series"):
        f.update(df.iloc[-5:])


# the streaming protocol, on a minimal recurrent network ------------------------------------

class SmoothedLevel(nn.Module):
    """Exponential smoothing with a learned rate per variable: the smallest stateful forecaster."""

    def __init__(self, *, horizon, n_vars):
        super().__init__()
        self.horizon = horizon
        self.logit = nn.Parameter(torch.zeros(n_vars))
        self.drift = nn.Parameter(torch.zeros(horizon, n_vars))

    def init_state(self, batch_size):
        return {"level": torch.zeros(batch_size, self.logit.numel()), "seen": torch.zeros(batch_size, 1)}

    def advance(self, state, x):                     # x: (B, T, N)
        level, alpha = state["level"], torch.sigmoid(self.logit)
        for t in range(x.shape[1]):
            level = torch.where(state["seen"] > 0, (1 - alpha) * level + alpha * x[:, t], x[:, t])
            state = {"level": level, "seen": state["seen"] + 1}
        return state

    def forecast(self, state):                       # (B, H, N)
        return state["level"][:, None, :] + self.drift

    def forward(self, x):
        return self.forecast(self.advance(self.init_state(x.shape[0]), x))


class SmoothedLevelForecaster(StreamingForecaster):
    def __init__(self, horizon=12, lookback=24, *, target=None, covariates=None, future_covariates=None,
                 time_col=None, id_col=None, loss="mse", learning_rate=0.05, weight_decay=0.0,
                 lr_schedule="constant", batch_size=64, max_epochs=2, patience=3, val_size=0.1, scaler="standard",
                 gradient_clip=None, random_state=0, verbose=False, trainer_kwargs=None, missing="error",
                 max_gap=None, fill_gaps=False, static=None, unknown_static="error", checkpoint_dir=None,
                 resume=False, quantiles=None):
        for name, value in locals().items():
            if name not in ("self", "__class__"):
                setattr(self, name, value)

    def _build_network(self, n_vars):
        return SmoothedLevel(horizon=self.horizon, n_vars=n_vars)


def test_streaming_update_equals_the_full_history_recurrence(tmp_path, monkeypatch):
    import tsformers

    monkeypatch.setattr(tsformers, "SmoothedLevelForecaster", SmoothedLevelForecaster, raising=False)
    df = make_demo(n_steps=300, layout="long")
    last = df.ds.sort_values().unique()
    head, mid, tail = df[df.ds <= last[-40]], df[(df.ds > last[-40]) & (df.ds <= last[-7])], df[df.ds > last[-7]]
    f = SmoothedLevelForecaster().fit(head)
    assert set(f.state_) == {"level", "seen"} and f.state_["seen"].flatten().tolist() == [261.0] * 3
    f.update(mid).update(tail)
    streamed, full = f.predict(), f.predict(df)
    np.testing.assert_allclose(streamed["y"].to_numpy(), full["y"].to_numpy(), rtol=1e-5)
    assert (streamed["ds"] == full["ds"]).all()
    loaded = SmoothedLevelForecaster.load(f.save(tmp_path / "m"))
    pd.testing.assert_frame_equal(loaded.predict(), streamed)
    # any streaming network takes known-future covariates: they reach its forecast, not its recurrence
    with_future = SmoothedLevelForecaster(target="y", future_covariates=["x"]).fit(df.assign(x=1.0))
    assert isinstance(with_future.network_, KnownFutureHead)
    assert with_future.network_.network.init_state(1).keys() == {"level", "seen"}
