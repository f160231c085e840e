"""The data path (tsformers.data.prepare) and the missing policy: exact values on small hand-made panels."""
import numpy as np
import pandas as pd
import pytest
import torch

from tsformers import GateformerForecaster, LMUFormerForecaster
from tsformers.data.frames import Panel, PanelSchema
from tsformers.data.missing import MissingPolicy
from tsformers.data.prepare import Prepared, fit_scaler, prepare, scaler_for
from tsformers.data.scaling import PanelScaler
from tsformers.data.windows import cut_windows, sliding_windows, windows_before
from tsformers.datasets import make_demo


def schema(targets=("y",), covariates=(), future=()):
    return PanelSchema(layout="wide", backend="pandas", time_col="t", id_col=None, targets=list(targets),
                       covariates=list(covariates), future_covariates=list(future),
                       columns=["t", *targets, *covariates, *future], step=1)


def panel(values):
    values = np.asarray(values, dtype=np.float64)
    return Panel(values=values, times=pd.Index(range(values.shape[1])), series=[None] * values.shape[0])


# -- MissingPolicy ---------------------------------------------------------------------------------------


def test_missing_policy_refuses_an_unknown_mode_and_says_which_are_known():
    with pytest.raises(ValueError, match=r"missing must be one of \['error', 'interpolate', 'mask'\], got 'drop'"):
        MissingPolicy("drop")


def test_only_error_refuses_gaps_when_reading():
    assert [MissingPolicy(m).allows_gaps for m in ("error", "interpolate", "mask")] == [False, True, True]


def test_interpolate_fills_gaps_linearly_and_the_other_modes_keep_the_panel():
    raw = panel([[[1.0], [np.nan], [np.nan], [7.0], [9.0]]])
    filled = MissingPolicy("interpolate").fill(raw, ["y"])
    np.testing.assert_array_equal(filled.values[0, :, 0], [1.0, 3.0, 5.0, 7.0, 9.0])
    assert np.isnan(raw.values[0, 1, 0]), "the panel as read is left as it is"
    assert MissingPolicy("mask").fill(raw, ["y"]) is raw and MissingPolicy("error").fill(raw, ["y"]) is raw
    with pytest.raises(ValueError, match="gap of 2 steps.*max_gap=1"):
        MissingPolicy("interpolate", max_gap=1).fill(raw, ["y"])


def test_mask_mode_zeroes_gaps_and_adds_one_observed_channel_per_gappy_variable():
    values = np.array([[[1.0, 10.0, 5.0], [np.nan, 20.0, 6.0], [3.0, np.nan, 7.0]]])   # y, x (past), f (future)
    masked = MissingPolicy("mask").with_masks(values, n_gappy=2)
    np.testing.assert_array_equal(masked[0], [[1.0, 10.0, 1, 1, 5.0], [0.0, 20.0, 0, 1, 6.0], [3.0, 0.0, 1, 0, 7.0]])
    assert MissingPolicy("interpolate").with_masks(values, 2) is values


def test_a_gap_running_up_to_an_origin_is_held_at_its_last_observed_row_under_interpolate_only():
    raw = np.array([[[0.0], [1.0], [np.nan], [np.nan], [4.0], [5.0]]])
    rows, origins = np.array([0, 0, 0]), np.array([2, 4, 6])      # forecasts from rows 2, 4 and 6
    held = MissingPolicy("interpolate").last_observed_before(raw, rows, origins, n_gappy=1)
    np.testing.assert_array_equal(held, [[1], [1], [5]])         # origin 4 sits after a gap: held at row 1
    assert MissingPolicy("interpolate").last_observed_before(raw, rows[[0, 2]], origins[[0, 2]], 1) is None
    assert MissingPolicy("mask").last_observed_before(raw, rows, origins, 1) is None


def test_the_report_counts_interpolated_and_masked_values_per_series():
    raw = panel([[[1.0], [np.nan], [3.0]], [[np.nan], [2.0], [np.nan]]])
    raw.inserted = [0, 1]
    filled = panel([[[1.0], [2.0], [3.0]], [[np.nan], [2.0], [np.nan]]])
    assert MissingPolicy.report(raw, filled) == {"series": [None, None], "inserted_timestamps": [0, 1],
                                                 "interpolated": [1, 0], "masked": [0, 2]}


# -- scaling -------------------------------------------------------------------------------------------


def test_fit_scaler_standardises_or_is_the_identity():
    values = np.array([[[1.0], [3.0]], [[0.0], [0.0]]])
    scaler = fit_scaler(values, "standard")
    np.testing.assert_array_equal(scaler.mean, [[2.0], [0.0]])
    np.testing.assert_array_equal(scaler.scale, [[1.0], [1.0]])    # std 1, and an all-zero series keeps scale 1
    identity = fit_scaler(values, None)
    np.testing.assert_array_equal(identity.transform(values), values)


def test_a_series_unseen_in_fit_is_scaled_by_its_own_history_and_known_ones_by_their_fitted_statistics():
    fitted = PanelScaler(mean=np.array([[1.0], [2.0]]), scale=np.array([[10.0], [20.0]]))
    new = Panel(values=np.array([[[4.0], [8.0]], [[0.0], [0.0]]]), times=pd.Index([0, 1]), series=["new", "b"])
    scaler = scaler_for(new, fitted, ["a", "b"], "standard")
    np.testing.assert_array_equal(scaler.mean, [[6.0], [2.0]])
    np.testing.assert_array_equal(scaler.scale, [[2.0], [20.0]])
    np.testing.assert_array_equal(scaler_for(new.__class__(values=new.values, times=new.times, series=["b", "a"]),
                                             fitted, ["a", "b"], "standard").mean, [[2.0], [1.0]])


# -- prepare -----------------------------------------------------------------------------------------------


def hand_made(mode="mask"):
    """One series, 8 steps: a target with a gap at step 2, a past covariate, a known-future covariate."""
    y = [0.0, 1.0, np.nan, 3.0, 4.0, 5.0, 6.0, 7.0]
    x = [10.0, 10.0, 10.0, 10.0, 20.0, 20.0, 20.0, 20.0]
    f = [100.0, 101.0, 102.0, 103.0, 104.0, 105.0, 106.0, 107.0]
    raw = panel(np.stack([y, x, f], axis=-1)[None])
    scaler = PanelScaler(mean=np.array([[1.0, 10.0, 100.0]]), scale=np.array([[2.0, 5.0, 1.0]]))
    return prepare(raw, schema(covariates=["x"], future=["f"]), MissingPolicy(mode), scaler, lookback=3, horizon=2)


def test_prepare_scales_masks_and_leads_the_future_covariates_as_the_network_reads_them():
    data = hand_made("mask")
    assert isinstance(data, Prepared) and data.panel is data.raw       # mask: nothing filled
    y = (np.array([0.0, 1.0, np.nan, 3.0, 4.0, 5.0, 6.0, 7.0]) - 1.0) / 2.0
    x = (np.array([10.0] * 4 + [20.0] * 4) - 10.0) / 5.0
    np.testing.assert_array_equal(data.scaled[0, :, 0], y)
    # channels: y (gap zeroed), x, observed(y), observed(x), f led by 2 steps (NaN past the data)
    expected = np.stack([np.nan_to_num(y), x, ~np.isnan(y), np.ones(8),
                         [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, np.nan, np.nan]], axis=-1)
    np.testing.assert_array_equal(data.inputs[0], expected)
    assert data.n_gappy == 2 and data.inputs.shape[-1] == 5


def test_the_last_window_scales_the_given_future_values_into_the_led_rows():
    data = hand_made("mask")
    window = data.last_windows(future=np.array([[[108.0], [109.0]]]))     # f after the end, in the data's units
    np.testing.assert_array_equal(window[0, :, 4], [7.0, 8.0, 9.0])        # steps 5..7 see f at 7, 8 and 9
    np.testing.assert_array_equal(window[0, :, 0], data.inputs[0, 5:, 0])
    np.testing.assert_array_equal(data.windows_before(np.array([0]), np.array([6]))[0], data.inputs[0, 3:6])


def test_split_cuts_the_training_part_and_the_validation_part_with_its_lookback_context():
    data = hand_made("mask")
    train, val = data.split(val_size=2)                                 # 2 validation steps of 8
    assert train[0].dtype == torch.float32 and train[0].shape == (1, 6, 5) and val[0].shape == (1, 5, 5)
    np.testing.assert_array_equal(train[0].numpy(), data.inputs[:, :6].astype(np.float32))
    np.testing.assert_array_equal(val[1].numpy(), data.scaled[:, 3:, :1].astype(np.float32))
    assert torch.isnan(train[1][0, 2, 0]), "a missing target stays NaN: the loss leaves it out"
    assert data.validation_steps(2) == 2 and data.validation_steps(1) == 0    # 1 step is shorter than horizon
    assert data.split(val_size=1)[1] is None


def test_under_interpolate_the_scaler_sees_the_filled_panel_and_origins_inside_a_gap_hold_it():
    seen = []

    def statistics(filled):
        seen.append(filled.values[0, 2, 0])
        return PanelScaler.identity(1, 1)

    raw = panel([[[0.0], [1.0], [np.nan], [np.nan], [4.0], [5.0], [6.0]]])
    data = prepare(raw, schema(), MissingPolicy("interpolate"), statistics, lookback=2, horizon=1)
    assert seen == [2.0]
    np.testing.assert_array_equal(data.scaled[0, :, 0], [0, 1, 2, 3, 4, 5, 6])
    rows, origins = np.array([0, 0]), np.array([3, 5])
    held = data.last_observed_before(rows, origins)
    np.testing.assert_array_equal(held, [[1], [4]])
    windows = data.windows_before(rows, origins, held)
    np.testing.assert_array_equal(windows[..., 0], [[1.0, 1.0], [3.0, 4.0]])  # origin 3 does not see step 3's 3.0
    np.testing.assert_array_equal(data.held_history(held[:1])[0, :, 0], [0, 1, 1, 1, 1, 1, 1])


def test_select_keeps_the_chosen_series_with_their_statistics():
    values = np.arange(2 * 4 * 1, dtype=float).reshape(2, 4, 1)
    scaler = PanelScaler(mean=np.array([[1.0], [2.0]]), scale=np.array([[1.0], [4.0]]))
    data = prepare(Panel(values=values, times=pd.Index(range(4)), series=["a", "b"]), schema(), MissingPolicy(),
                   scaler, lookback=2, horizon=1)
    part = data.select(np.array([1]))
    assert part.panel.series == ["b"]
    np.testing.assert_array_equal(part.scaled, (values[1:] - 2.0) / 4.0)


def test_every_window_is_cut_by_one_function_for_numpy_and_torch_alike():
    values = np.arange(2 * 6 * 2, dtype=float).reshape(2, 6, 2)
    rows, ends = np.array([1, 0]), np.array([4, 6])
    expected = np.stack([values[1, 1:4], values[0, 3:6]])
    np.testing.assert_array_equal(windows_before(values, rows, ends, 3), expected)
    tensor = torch.from_numpy(values)
    np.testing.assert_array_equal(windows_before(tensor, torch.from_numpy(rows), torch.from_numpy(ends), 3).numpy(),
                                  expected)
    assert windows_before(values, rows, ends, 3).flags.c_contiguous
    np.testing.assert_array_equal(cut_windows(sliding_windows(values, 3), rows, ends - 3), expected)


# -- the estimators on the data path -------------------------------------------------------------------------

SMALL = dict(horizon=6, lookback=24, max_epochs=1, batch_size=32)


def gappy_demo():
    df = make_demo(n_series=2, n_steps=160, layout="long")
    df.loc[df.index[[40, 41, 100, 150, 151, 152]], "y"] = np.nan   # the last gap is inside the calibration tail
    return df


def test_the_public_prepare_reads_a_frame_as_predict_does():
    df = make_demo(n_series=2, n_steps=120, layout="long")
    f = GateformerForecaster(**SMALL, d_model=16, d_ff=32, n_heads=2).fit(df)
    data = f.prepare(df)
    with torch.no_grad():
        out = f.network_(torch.from_numpy(data.last_windows().astype(np.float32))).double().numpy()
    out = data.restore_cycle(out, np.arange(2), data.panel.last + 1)   # the daily cycle (cycle="auto") back on
    expected = data.scaler.inverse(out[..., :1], 1)
    np.testing.assert_allclose(f.predict(df)["y"].to_numpy(), expected.reshape(-1), rtol=0, atol=0)
    with pytest.raises(ValueError, match="too short to compress with: series '.*' has 10 rows, but lookback \\+ "
                                         "horizon = 30 rows are needed"):
        f.prepare(df.groupby("unique_id").tail(10), min_rows=30, action="compress with")


@pytest.mark.parametrize("cls, params", [(GateformerForecaster, dict(d_model=16, d_ff=32, n_heads=2)),
                                         (LMUFormerForecaster, dict(d_model=16, memory_size=16))])
def test_refresh_with_the_fitted_network_and_frame_reproduces_what_fit_derived(cls, params):
    # compress calls refresh after replacing network_: with the network unchanged it must give fit's own
    # calibration (scored against the values as read, gaps held at origins) and, when streaming, fit's state
    df = gappy_demo()
    f = cls(**SMALL, **params, missing="interpolate", val_size=0.25).fit(df)
    conformal, state = f.conformal_.copy(), getattr(f, "state_", None)
    f.refresh(f.prepare(df))
    np.testing.assert_array_equal(f.conformal_, conformal)
    if state is not None:
        assert all(torch.equal(f.state_[k], state[k]) for k in state)
