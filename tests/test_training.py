"""The Lightning training module: losses against a reference, the learning-rate schedules, clipping."""
import pandas as pd
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from tsformers import GateformerForecaster
from tsformers.datasets import make_demo
from tsformers.training import ForecastingModule

# one network's training loop (a seed ensemble trains each member through it: tests/test_ensemble.py)
SMALL = dict(horizon=12, lookback=48, d_model=16, d_ff=16, n_heads=2, batch_size=64, random_state=0, ensemble_size=1)


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


class AveragesSeenByValidation(Callback):
    """Records the weights each validation epoch scores (after a WeightAveraging callback swapped in its average)
    and the weights as trained at the end of each training epoch."""

    def __init__(self):
        self.validated, self.trained = [], []

    def on_validation_epoch_start(self, trainer, module):
        self.validated.append({k: v.clone() for k, v in module.network.state_dict().items()})

    def on_train_epoch_end(self, trainer, module):
        self.trained.append({k: v.clone() for k, v in module.network.state_dict().items()})


def test_ema_decay_validates_the_weight_average_and_keeps_the_best_epochs_average():
    df = make_demo(n_steps=400)
    seen = AveragesSeenByValidation()
    model = GateformerForecaster(**SMALL, max_epochs=4, patience=None, val_size=96, ema_decay=0.9,
                                 trainer_kwargs={"callbacks": [seen]}).fit(df)
    val_losses = [row["val_loss"] for row in model.training_log_]
    best = val_losses.index(min(val_losses))
    assert len(seen.validated) == len(seen.trained) == 4
    # the best epoch's average, as validation scored it (the linear base's share is chosen after training)
    kept = {name: value for name, value in model.network_.state_dict().items() if name != "share"}
    for name, value in kept.items():
        torch.testing.assert_close(value, seen.validated[best][name], rtol=0, atol=0)
    drift = max((seen.trained[best][name] - value).abs().max().item() for name, value in kept.items()
                if value.is_floating_point())
    assert drift > 1e-4, "the average is not the weights as trained"


def test_a_weight_averaging_callback_of_trainer_kwargs_gives_what_ema_decay_gives():
    from lightning.pytorch.callbacks import EMAWeightAveraging

    df = make_demo(n_steps=400)
    settings = dict(**SMALL, max_epochs=3, val_size=96)
    ours = GateformerForecaster(**settings, ema_decay=0.9).fit(df)
    # Lightning's callback alone writes the average into full checkpoints only; the best epoch's is weights-only
    theirs = GateformerForecaster(**settings, trainer_kwargs={"callbacks": [EMAWeightAveraging(decay=0.9)]}).fit(df)
    plain = GateformerForecaster(**settings).fit(df)
    assert ours.training_log_ == theirs.training_log_ != plain.training_log_
    for name, value in ours.network_.state_dict().items():
        torch.testing.assert_close(theirs.network_.state_dict()[name], value, rtol=0, atol=0)
    pd.testing.assert_frame_equal(ours.predict(), theirs.predict())


@pytest.mark.parametrize("decay", [0.0, 1.0, 1.5])
def test_ema_decay_outside_the_open_unit_interval_is_refused(decay):
    with pytest.raises(ValueError, match="ema_decay"):
        GateformerForecaster(**SMALL, max_epochs=1, ema_decay=decay).fit(make_demo(n_steps=200))


class WindowsRead(Callback):
    """The targets of every training batch, per epoch."""

    def __init__(self):
        self.epochs = []

    def on_train_epoch_start(self, trainer, module):
        self.epochs.append([])

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.epochs[-1].append(batch[-1].clone())


def test_val_every_windows_validates_after_each_fresh_part_while_the_schedule_counts_passes():
    df = make_demo(n_steps=300)   # 211 training windows at lookback 48, horizon 12
    read = WindowsRead()
    settings = {**SMALL, "max_epochs": 1, "patience": None, "batch_size": 8, "val_size": 0.1, "learning_rate": 1e-3}
    parts = GateformerForecaster(**settings, val_every_windows=50, trainer_kwargs={"callbacks": [read]}).fit(df)
    # ceil(50 / 8) = 7 batches (56 windows, a share of 56 / 211 of a pass) between validations, and
    # max_epochs=1 pass: ceil(211 / 56) = 4 parts, each validated
    assert [len(batches) for batches in read.epochs] == [7, 7, 7, 7]
    assert [sum(len(b) for b in batches) for batches in read.epochs] == [56] * 4
    firsts = [batches[0] for batches in read.epochs]
    assert not any(torch.equal(a, b) for a, b in zip(firsts, firsts[1:])), "a fresh part each time"
    assert [row["epoch"] for row in parts.training_log_] == [0, 1, 2, 3]
    assert all("val_loss" in row for row in parts.training_log_)
    # the halving schedule halves the rate once a pass: by 0.5 ** (56 / 211) after each part
    assert [row["lr"] for row in parts.training_log_] == pytest.approx([1e-3 * 0.5 ** (k * 56 / 211) for k in range(4)])

    # at or above the number of windows nothing changes
    plain = GateformerForecaster(**settings).fit(df)
    roomy = GateformerForecaster(**settings, val_every_windows=211).fit(df)
    assert roomy.training_log_ == plain.training_log_ and len(plain.training_log_) == 1
    pd.testing.assert_frame_equal(roomy.predict(), plain.predict())


def test_val_every_windows_below_one_is_refused_and_old_models_load_validating_each_pass():
    from tsformers.estimators.persistence import saved_params

    with pytest.raises(ValueError, match="val_every_windows"):
        GateformerForecaster(**SMALL, max_epochs=1, val_every_windows=0).fit(make_demo(n_steps=200))
    params = saved_params("GateformerForecaster", {"horizon": 12}, GateformerForecaster().get_params())
    assert params["val_every_windows"] is None


def test_bf16_mixed_precision_trains_under_autocast_and_fits_the_same_kind_of_estimator(tmp_path):
    """docs/scaling.md: mixed precision is ``trainer_kwargs={"precision": "bf16-mixed"}``, and the fitted estimator is
    the same object however it was trained."""
    trained_in = set()

    class Spy(Callback):
        def on_train_start(self, trainer, module):
            first = next(m for m in module.network.modules() if isinstance(m, nn.Linear))
            first.register_forward_hook(lambda layer, args, out: trained_in.add(out.dtype) if layer.training else None)

    df = make_demo(n_steps=24 * 30)
    history, future = df.iloc[:-12], df.iloc[-12:]
    errors = {}
    for precision in ("32-true", "bf16-mixed"):
        trained_in.clear()
        f = GateformerForecaster(**SMALL, max_epochs=3,
                                 trainer_kwargs={"precision": precision, "callbacks": [Spy()]}).fit(history)
        assert trained_in == {torch.bfloat16 if precision == "bf16-mixed" else torch.float32}
        assert {p.dtype for p in f.network_.parameters()} == {torch.float32}
        forecast = f.predict(history)
        f.set_params(trainer_kwargs={"precision": precision})  # the spy is no setting to save
        assert f.load(f.save(tmp_path / precision)).predict(history).equals(forecast)
        targets = [c for c in df.columns if c != "date"]
        errors[precision] = float(((forecast[targets].to_numpy() - future[targets].to_numpy()) ** 2).mean())
    last_value = float(((history[targets].iloc[-1].to_numpy() - future[targets].to_numpy()) ** 2).mean())
    assert errors["bf16-mixed"] < 0.5 * last_value and errors["bf16-mixed"] == pytest.approx(errors["32-true"], rel=0.2)
