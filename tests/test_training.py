"""The Lightning training module: losses against a reference, the learning-rate schedules, clipping."""
import pandas as pd
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from tsformers import GateformerForecaster
from tsformers.datasets import make_demo
from tsformers.training import ForecastingModule

SMALL = dict(horizon=12, lookback=48, d_model=16, d_ff=16, n_heads=2, batch_size=64, random_state=0)


class Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 2)

    def forward(self, x):               # (B, 4, 3) -> (B, 2, 3)
        return self.proj(x.mT).mT


@pytest.mark.parametrize("loss, reference", [
    ("mse", lambda e: (e ** 2).mean()),
    ("mae", lambda e: e.abs().mean()),
    ("huber", lambda e: torch.where(e.abs() < 1, 0.5 * e ** 2, e.abs() - 0.5).mean()),
])
def test_losses_match_their_formula_on_the_target_variables_only(loss, reference):
    torch.manual_seed(0)
    module = ForecastingModule(Linear(), n_targets=2, loss=loss)
    x, y = torch.randn(5, 4, 3), 3 * torch.randn(5, 2, 2)
    pred = module(x)
    assert pred.shape == (5, 2, 2), "the first n_targets variables are the forecast"
    torch.testing.assert_close(module.loss_fn(pred, y), reference(pred - y))


def test_unknown_loss_names_the_choices():
    with pytest.raises(ValueError, match="huber"):
        ForecastingModule(Linear(), n_targets=1, loss="quantile")


@pytest.mark.parametrize("schedule, expected", [
    ("halving", [1e-3, 5e-4, 2.5e-4]),
    ("constant", [1e-3, 1e-3, 1e-3]),
])
def test_learning_rate_schedule_per_epoch(schedule, expected):
    f = GateformerForecaster(**SMALL, learning_rate=1e-3, lr_schedule=schedule, max_epochs=3, patience=None)
    f.fit(make_demo(n_steps=300))
    assert [row["lr"] for row in f.training_log_] == pytest.approx(expected)


def test_gradient_clipping_reaches_the_trainer():
    seen = []

    class Spy(Callback):
        def on_train_start(self, trainer, module):
            seen.append(trainer.gradient_clip_val)

    GateformerForecaster(**SMALL, max_epochs=1, gradient_clip=0.5, trainer_kwargs={"callbacks": [Spy()]}) \
        .fit(make_demo(n_steps=300))
    assert seen == [0.5]


def test_a_diverging_loss_stops_with_epoch_step_and_advice():
    df = make_demo(n_steps=300)
    df["series_0"] *= 1e30  # squares overflow float32
    with pytest.raises(FloatingPointError, match="epoch 0, step 0.*lower learning_rate"):
        GateformerForecaster(**SMALL, max_epochs=1, scaler=None).fit(df)


def test_predict_from_several_threads_equals_serial():
    from concurrent.futures import ThreadPoolExecutor

    df = make_demo(n_steps=300)
    f = GateformerForecaster(**SMALL, max_epochs=1).fit(df)
    histories = [df.iloc[: 200 + 10 * k] for k in range(8)]
    serial = [f.predict(h) for h in histories]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(f.predict, histories))
    for a, b in zip(serial, threaded):
        assert a.equals(b)


class Crash(Exception):
    pass


def test_an_interrupted_fit_resumed_from_its_checkpoint_equals_an_uninterrupted_fit(tmp_path):
    df = make_demo(n_steps=300)
    straight = GateformerForecaster(**SMALL, max_epochs=4, patience=None).fit(df)

    class CrashAfterEpoch(Callback):
        def on_train_epoch_end(self, trainer, module):
            if trainer.current_epoch == 1:
                raise Crash

    interrupted = GateformerForecaster(**SMALL, max_epochs=4, patience=None, checkpoint_dir=str(tmp_path),
                                       trainer_kwargs={"callbacks": [CrashAfterEpoch()]})
    with pytest.raises(Crash):
        interrupted.fit(df)
    assert (tmp_path / "last.ckpt").is_file()
    resumed = interrupted.set_params(trainer_kwargs=None, resume=True).fit(df)
    assert [row["epoch"] for row in resumed.training_log_] == [1, 2, 3]
    for name, value in straight.network_.state_dict().items():
        torch.testing.assert_close(resumed.network_.state_dict()[name], value, rtol=0, atol=0)
    pd.testing.assert_frame_equal(resumed.predict(), straight.predict())


def test_resume_needs_somewhere_to_resume_from():
    with pytest.raises(ValueError, match="checkpoint_dir"):
        GateformerForecaster(**SMALL, max_epochs=1, resume=True).fit(make_demo(n_steps=300))
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        GateformerForecaster(**SMALL, max_epochs=1, resume="nowhere.ckpt").fit(make_demo(n_steps=300))
