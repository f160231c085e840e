"""Data-parallel training (Lightning DDP, 2 CPU processes over gloo) trains as one process does.

``batch_size`` is the global batch, the processes' shares of each step are the step's batch, the losses are
reduced over the processes, early stopping and the best epoch are decided alike, and the launching process of
``strategy="ddp_spawn"`` ends with the trained estimator. See ``docs/scaling.md``.

Weights and forecasts are compared as ``tests/_equal_fits.py`` says (flat directions of attention left out).
"""
import pandas as pd
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from tsformers import GateformerForecaster, GTrXLForecaster
from tsformers.datasets import make_demo
from tsformers.estimators.base import BaseForecaster
from tsformers.training.datamodule import EpochShuffle, ShardedBatches

from _equal_fits import FLAT, assert_forecast_ignores, assert_same_forecasts, assert_same_weights

if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("this torch build has no gloo backend for CPU processes", allow_module_level=True)

DDP = {"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"}


@pytest.fixture(scope="module")
def df():
    return make_demo(n_steps=300)  # 211 training windows, 19 validation windows


def test_shares_of_each_step_are_the_single_process_batch_without_overlap_or_loss():
    sampler = EpochShuffle(11, seed=3)
    one = list(ShardedBatches(sampler, 4))
    assert [len(b) for b in one] == [4, 4, 3]
    assert one == [sampler_batch.tolist() for sampler_batch in torch.tensor(list(sampler)).split(4)]
    for world in (2, 3):
        shares = [list(ShardedBatches(sampler, 6 if world == 3 else 4, rank, world)) for rank in range(world)]
        assert len({len(s) for s in shares}) == 1, "every process runs the same number of steps"
    shares = [list(ShardedBatches(sampler, 4, rank, 2)) for rank in range(2)]
    for step, batch in enumerate(one):
        assert shares[0][step] + shares[1][step] == batch
    sampler.set_epoch(1)  # a new order each epoch, the same on every process
    assert list(ShardedBatches(sampler, 4, 0, 2))[0] + list(ShardedBatches(sampler, 4, 1, 2))[0] != one[0]
    # 9 windows in global batches of 4: the last has 1, so the second process gets window 8's padding (9 + 8)
    last = [list(ShardedBatches(EpochShuffle(9, seed=0), 4, rank, 2))[-1] for rank in range(2)]
    assert last[0] == [list(EpochShuffle(9, seed=0))[-1]] and last[1] == [9 + last[0][0]]


def test_ddp_fit_equals_the_single_process_fit_stops_at_its_epoch_and_is_a_usual_estimator(df, tmp_path):
    # batch_size=30: the epoch's last global batch holds 211 % 30 = 1 window, so one process gets only padding;
    # a constant, high learning rate makes the validation loss rise, so early stopping ends the fit at epoch 3 of 6.
    params = {**GateformerForecaster.get_test_params(), "horizon": 12, "lookback": 48, "dropout": 0.0,
              "batch_size": 30, "learning_rate": 0.05, "lr_schedule": "constant", "max_epochs": 6, "patience": 1,
              "random_state": 0, "linear_base": False,   # the network's own loss curve; the share under DDP: the streaming test
              "patch_len": 8, "stride": 8,   # the loss curve this scenario was built on (the default is 16)
              "cycle": None,                 # (and on the data with its daily cycle in)
              "ensemble_size": 1}            # one network's loss curve
    one = GateformerForecaster(**params).fit(df)
    two = GateformerForecaster(**params, trainer_kwargs=DDP, checkpoint_dir=str(tmp_path / "ckpt")).fit(df)

    epochs = [row["epoch"] for row in one.training_log_]
    assert epochs == [0, 1, 2, 3], "early stopping ends the single-process fit before max_epochs"
    assert [row["epoch"] for row in two.training_log_] == epochs, "and the DDP fit at the same epoch"
    # DDP averages two halves' gradients where one process takes the whole batch's mean: they round apart, and
    # four epochs at a learning rate of 0.05 carry that to about 2e-5 of the losses (measured with AdamW's fused
    # update, which rounds otherwise than its foreach form, whose fits agreed to 1e-5)
    for a, b in zip(one.training_log_, two.training_log_):
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
    assert_forecast_ignores(one, FLAT)
    assert_same_weights(one.network_, two.network_)  # the best epoch's (2), restored in the launching process
    assert_same_forecasts(one.predict(), two.predict())
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["best.ckpt", "last.ckpt"]

    loaded = BaseForecaster.load(two.save(tmp_path / "model"))
    pd.testing.assert_frame_equal(loaded.predict(), two.predict())


def test_ddp_fit_of_a_streaming_estimator_equals_the_single_process_fit_and_is_tracked(df, tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="mlflow, a dependency of the package: pip install -e .")
    import tsformers.tracking as tracking

    params = {**GTrXLForecaster.get_test_params(), "horizon": 12, "lookback": 48, "dropout": 0.0, "max_epochs": 2,
              "random_state": 0}
    one = GTrXLForecaster(**params).fit(df)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        mlflow.set_experiment(experiment_id=mlflow.create_experiment("ddp", (tmp_path / "artifacts").as_uri()))
        tracking.autolog()  # its Lightning logger and callback travel to the training processes
        two = GTrXLForecaster(**params, trainer_kwargs=DDP).fit(df)
        [run] = mlflow.search_runs(output_format="list")
        history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_loss")
        assert run.info.status == "FINISHED"
        assert [m.value for m in history] == [row["val_loss"] for row in two.training_log_]  # logged by rank 0
        assert run.data.metrics["epochs_trained"] == 2
        assert run.data.metrics["correction_share"] == two.correction_share_  # decided alike on both processes
    finally:
        tracking.autolog(disable=True)
        while mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri(previous)
    assert [r["val_loss"] for r in two.training_log_] == pytest.approx([r["val_loss"] for r in one.training_log_],
                                                                       rel=1e-5)
    assert_same_weights(one.network_, two.network_)
    assert one.correction_share_ == two.correction_share_   # the share's validation sums are reduced over processes
    assert_same_forecasts(one.predict(), two.predict())
    assert_same_forecasts(one.predict(df.iloc[:250]), two.predict(df.iloc[:250]))  # the streaming state's path


class Crash(Exception):
    pass


class CrashAfterEpoch(Callback):
    def on_train_epoch_end(self, trainer, module):
        if trainer.current_epoch == 1:
            raise Crash


def test_ddp_resumes_a_checkpoint_and_ends_as_an_uninterrupted_fit(df, tmp_path):
    # with the linear base (the default), whose share is chosen on the validation windows after training
    params = {**GateformerForecaster.get_test_params(), "horizon": 12, "lookback": 48, "dropout": 0.0,
              "max_epochs": 4, "patience": None, "random_state": 0,
              "ensemble_size": 1}   # one network, interrupted after an epoch and resumed
    straight = GateformerForecaster(**params).fit(df)
    interrupted = GateformerForecaster(**params, checkpoint_dir=str(tmp_path),
                                       trainer_kwargs={"callbacks": [CrashAfterEpoch()]})
    with pytest.raises(Crash):
        interrupted.fit(df)
    resumed = interrupted.set_params(trainer_kwargs=DDP, resume=True).fit(df)
    assert [row["epoch"] for row in resumed.training_log_] == [1, 2, 3]
    assert_same_weights(straight.network_, resumed.network_)
    assert_same_forecasts(straight.predict(), resumed.predict())


def test_batch_size_is_the_global_batch_split_evenly_over_the_processes(df):
    params = {**GateformerForecaster.get_test_params(), "horizon": 12, "lookback": 48, "max_epochs": 1}
    with pytest.raises(ValueError, match="batch_size=31 is the global batch.*2 training processes.*multiple of 2"):
        GateformerForecaster(**params | {"batch_size": 31}, trainer_kwargs=DDP).fit(df)  # refused before launching
    with pytest.raises(ValueError, match="use_distributed_sampler"):
        GateformerForecaster(**params, trainer_kwargs={"use_distributed_sampler": True}).fit(df)


def test_ddp_fit_with_weight_averaging_keeps_the_single_process_fits_average(df, tmp_path):
    # ema_decay: every process updates the same average after each (all-reduced) step; the best epoch's average,
    # written by the first process into a weights-only checkpoint, is what the launching process ends with, and
    # the linear base's share is chosen on it.
    params = {**GateformerForecaster.get_test_params(), "horizon": 12, "lookback": 48, "dropout": 0.0,
              "max_epochs": 3, "patience": None, "ema_decay": 0.9, "random_state": 0,
              "cycle": None,   # with the daily cycle out the map leaves the network too little to average apart
              "ensemble_size": 1}
    one = GateformerForecaster(**params).fit(df)
    two = GateformerForecaster(**params, trainer_kwargs=DDP).fit(df)
    plain = GateformerForecaster(**(params | {"ema_decay": None})).fit(df)
    assert [r["val_loss"] for r in two.training_log_] == pytest.approx([r["val_loss"] for r in one.training_log_],
                                                                       rel=1e-5)
    assert [r["val_loss"] for r in one.training_log_] != pytest.approx([r["val_loss"] for r in plain.training_log_],
                                                                       rel=1e-3), "the average is validated"
    assert_same_weights(one.network_, two.network_)
    assert_same_forecasts(one.predict(), two.predict())


def test_a_fit_ends_the_process_group_it_started_and_leaves_the_callers_alone(df, tmp_path):
    # A gloo group left to the process's exit can abort it ("terminate called without an active exception",
    # pytorch/pytorch#190489); the processes of ddp_spawn exit right after their fit. Here in this process:
    # strategy="ddp" on one device starts its group in the fitting process itself.
    import torch.distributed as dist

    params = {**GateformerForecaster.get_test_params(), "horizon": 12, "lookback": 48, "max_epochs": 1}
    one_process = {"accelerator": "cpu", "devices": 1, "strategy": "ddp"}
    assert not dist.is_initialized()
    first = GateformerForecaster(**params, trainer_kwargs=one_process).fit(df)
    assert not dist.is_initialized(), "the fit's own group ends with the fit"
    second = GateformerForecaster(**params, trainer_kwargs=one_process).fit(df)   # and the next fit starts another
    pd.testing.assert_frame_equal(first.predict(), second.predict())

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        GateformerForecaster(**params, trainer_kwargs=one_process).fit(df)
        assert dist.is_initialized(), "a group the caller started is the caller's"
    finally:
        dist.destroy_process_group()
