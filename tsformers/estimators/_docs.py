"""The numpydoc entries every forecaster shares, written once.

A forecaster's docstring lists its own parameters, then the line
``%(common_parameters)s``; :func:`shared_docs` puts these entries there, so
``help(GateformerForecaster)`` shows every parameter.
"""
from __future__ import annotations

import re
import textwrap

COMMON_PARAMETERS = """\
calendar : "auto", str or list of str, optional
    Calendar features computed from the time axis, for the history and the horizon alike, so that
    ``predict`` needs no ``future_df`` for them: any of ``"minute"``, ``"hour"``, ``"dayofweek"``,
    ``"dayofmonth"``, ``"dayofyear"``, ``"weekofyear"``, ``"month"``, ``"quarter"``, each a sine and a
    cosine of its position in its cycle (no jump from hour 23 to hour 0), or ``"auto"``: those that vary
    at the data's step (hourly: hour, dayofweek, dayofyear; daily: dayofweek, dayofyear; monthly: month;
    see :mod:`tsformers.data.calendar`). They enter the network unscaled as its last channels, led by
    ``horizon`` steps like ``future_covariates`` (a streaming network reads them so at every step of its
    recurrence). A feature whose cycle is not longer than the step, and any feature on an integer time
    axis, is refused.
time_col, id_col : str, optional
    The time column (detected: a datetime column, ``ds``/``date``/..., or a
    DatetimeIndex) and, for long frames, the series id (``unique_id`` is detected).
loss : {"mse", "mae", "huber"}, default="mse"
weight_decay : float, default=0.0
    AdamW's weight decay (0 is Adam).
lr_schedule : {"halving", "cosine", "constant"}
    ``"halving"`` halves the learning rate after every epoch (the Time-Series-Library recipe).
patience : int or None, default=3
    Early-stopping patience on the validation loss; the best epoch's weights are kept.
val_size : float or int, default=0.1
    The final part of each series held out for early stopping: a fraction or a number of steps.
gradient_clip : float or None, default=None
    Clip the gradient norm at this value.
ema_decay : float in (0, 1) or None, default=None
    Keep an exponential moving average of the weights, updated after every optimiser step with this
    decay (Lightning's ``EMAWeightAveraging``; 0.99 averages over about the last 100 steps). Validation,
    early stopping and the best epoch then read the averaged weights, and the averaged weights are what
    the fit keeps. None: the weights as trained.
random_state : int, default=0
    The same seed gives the same forecasts, whatever other fits run in other threads
    meanwhile (see :mod:`tsformers.seeding`), on the same processor and torch build; another
    processor's float kernels differ in their last bits, which a fit carries on.
verbose : bool, default=False
    Show Lightning's progress bar and model summary.
trainer_kwargs : dict, optional
    Passed to ``lightning.Trainer`` (accelerator, devices, strategy, precision, logger, callbacks...).
missing : {"error", "interpolate", "mask"}, default="error"
    What to do with missing values (NaN) in targets and past covariates: refuse them, interpolate
    gaps of at most ``max_gap`` steps linearly in time, or mask them (an observed-mask channel per
    variable goes into the network and missing targets are left out of the loss).
max_gap : int, optional
    The longest gap ``missing="interpolate"`` fills; a longer one is refused, naming its
    length. None: 3 steps (``tsformers.data.missing.DEFAULT_MAX_GAP``), so filling a longer outage is a choice.
fill_gaps : bool, default=False
    Insert the missing timestamps of the regular time grid as missing values (then handled by ``missing``).
static : str or list of str, optional
    Per-series attributes (numeric or categorical, constant within a series): columns of a long
    frame, or of the ``static_df`` given to ``fit``/``predict``. Networks with a static input read
    them directly; the others through a learned correction of their forecast.
unknown_static : {"error", "zeros"}, default="error"
    A category not seen in fit: an error, or the all-zero code.
checkpoint_dir : str, optional
    Where training writes its full state (``last.ckpt``) after every epoch.
resume : bool or str, default=False
    ``True`` continues an interrupted fit from ``checkpoint_dir/last.ckpt`` (a first run simply
    starts); a path resumes from that checkpoint. The result equals an uninterrupted fit.
quantiles : list of float, optional
    Forecast these quantile levels in (0, 1), e.g. ``[0.1, 0.5, 0.9]``: a head with one output per
    level that never crosses, trained with the pinball loss (``loss`` is then not used). ``predict``
    adds ``{target}_q{level}`` columns; the point column is the 0.5 quantile, or the mean of the
    quantiles when 0.5 is not requested. Any model also gives conformal intervals,
    ``predict(level=[80, 95])``. See :mod:`tsformers.estimators.evaluation`."""

#: the conformal calibration's attributes, every estimator's (the baselines' too)
CONFORMAL_ATTRIBUTES = """\
conformal_ : ndarray of shape (n_windows, horizon, n_targets) or None
    Sorted absolute errors (each in units of its window's scale) of rolling-origin forecasts over the
    tail of the fit data: the calibration of ``predict(level=...)``.
conformal_scale_ : {"window", "series"}
    What those errors were divided by: each window's scale, the series' times the square root of the
    window's spread (every fit and ``calibrate``), or the series' scale alone (models saved before)."""

COMMON_ATTRIBUTES = """\
schema_ : PanelSchema
    Column roles, layout and time step of the fit data.
scaler_ : PanelScaler
    Scaling statistics, shape (n_series, n_vars).
history_ : ndarray of shape (n_series, lookback, n_vars)
    The last window of each series (of the fit data and of every ``update`` since).
training_log_ : list of dict
    Learning rate, train and validation loss per epoch; a seed ensemble's (``ensemble_size`` > 1) holds
    every member's epochs in turn, each row naming its ``member``.
report_ : dict
    Per series of the fit data: timestamps inserted by ``fill_gaps``, values interpolated, values masked.
""" + CONFORMAL_ATTRIBUTES


ADAPTIVE_DEPTH_ATTRIBUTE = """\
mean_depth_ : float
    Only with ``stack="adaptive_depth"``: the mean number of blocks per encoder
    that the fitted depth gates run over the training windows (out of
    ``e_layers``). ``fit`` trains every exit (their losses, weighted by depth,
    join the training loss), labels each training window with the smallest
    depth within the stack's tolerance (5%) of its best exit, and fits the
    gates on those labels, so ``predict`` runs each window only that deep."""

_LINEAR_BASE_TEXT = """\
    Forecast with the closed-form linear map of the window that :class:`~tsformers.LinearForecaster`
    fits (ridge on last-value-normalised windows, the penalty chosen on the validation windows, or by
    leaving out one training window at a time where there are none),
    plus the network's correction through a learned gate per horizon step
    (:class:`~tsformers.backbone.LinearBase`; a tsformers extension, not in the paper). The map is
    solved before training and the network learns what it leaves. After training, the forecast
    keeps the share of the trained correction (none, a quarter, half, three quarters or all of it)
    that scores best on the validation windows (all of it without them): it is never worse than the
    linear baseline there, nor than the best epoch. ``correction_share_`` says which share was kept
    and ``network_used_`` whether the network contributes at all. A streaming estimator keeps the
    last ``lookback`` values in its state, so streaming stays exact. ``False``: the network alone,
    the paper's form. ``docs/benchmarks.md`` shows what each part buys."""

LINEAR_BASE_PARAMETER = "linear_base : bool, default=True\n" + _LINEAR_BASE_TEXT

LINEAR_BASE_ATTRIBUTE = """\
network_used_ : bool
    Only with ``linear_base=True``: whether the network contributes to the forecast; False where no
    share of the trained correction beat the linear map alone on the validation windows.
correction_share_ : float
    Only with ``linear_base=True``: the share of the network's gated correction the forecast keeps
    (0, 0.25, 0.5, 0.75 or 1), the one of the lowest validation loss."""

_CYCLE_TEXT = """\
    The targets' seasonal cycle, taken out of the scaled values before the model reads them and added
    back onto its forecast: per series and target, the mean scaled value at each phase of the period over
    the training part (residual cycle forecasting as in CycleNet, Lin et al. 2024, with the cycle the
    training mean instead of learned; a tsformers extension). ``"auto"`` takes the period by the data's
    step: a day at steps that divide a day (24 hourly, 96 at 15 minutes, 144 at 10 minutes), a week at
    daily steps (7) and business days (5), a year at monthly (12) and quarterly (4) steps; no cycle at
    other steps, on an integer time axis, or where the training part spans fewer than two periods. An int
    is the period in steps (phases counted from a Monday midnight, or from step 0 on an integer axis);
    None: no cycle. See :mod:`tsformers.data.cycle`; ``docs/benchmarks.md`` shows what it buys."""

CYCLE_PARAMETER = 'cycle : "auto", int or None, default="auto"\n' + _CYCLE_TEXT
CYCLE_PARAMETER_OFF = 'cycle : "auto", int or None, default=None\n' + _CYCLE_TEXT

CYCLE_ATTRIBUTE = """\
cycle_ : SeasonalCycle or None
    The targets' phase means (``profile``, shape (n_series, period, n_targets), in the scaled units) and
    their ``period``; None without a cycle."""

MARKERS = {"%(common_parameters)s": COMMON_PARAMETERS, "%(common_attributes)s": COMMON_ATTRIBUTES,
           "%(adaptive_depth_attribute)s": ADAPTIVE_DEPTH_ATTRIBUTE,
           "%(linear_base_parameter)s": LINEAR_BASE_PARAMETER, "%(linear_base_attribute)s": LINEAR_BASE_ATTRIBUTE,
           "%(cycle_parameter)s": CYCLE_PARAMETER, "%(cycle_parameter_off)s": CYCLE_PARAMETER_OFF,
           "%(cycle_attribute)s": CYCLE_ATTRIBUTE}


def _entries(text: str) -> list[tuple[set[str], str]]:
    """The numpydoc entries of ``text`` (unindented ``name : type`` lines, then their indented description),
    each with the names it documents (``time_col, id_col : str`` documents two)."""
    entries: list[tuple[set[str], list[str]]] = []
    for line in text.splitlines():
        if line and not line[0].isspace():
            names = {name.strip() for name in line.split(" : ", 1)[0].split(",")}
            entries.append((names, [line]))
        else:
            entries[-1][1].append(line)
    return [(names, "\n".join(lines)) for names, lines in entries]


def _own_entries(doc: str) -> set[str]:
    """The names a class docstring documents itself: its entries at the first level of indentation."""
    names = set()
    for match in re.finditer(r"^ {4}(\w[\w, ]*) : ", doc, flags=re.MULTILINE):
        names |= {name.strip() for name in match.group(1).split(",")}
    return names


def shared_docs(cls: type) -> type:
    """Fill the markers of :data:`MARKERS` (``%(common_parameters)s``, ...) in the class docstring, at their
    indentation. A shared entry the class documents itself (another default, say) is left out: one entry per
    name."""
    doc = cls.__doc__ or ""
    own = _own_entries(doc)
    for marker, text in MARKERS.items():
        text = "\n".join(block for names, block in _entries(text) if not names <= own)
        for line in doc.splitlines():
            if line.strip() == marker:
                indent = line[: len(line) - len(line.lstrip())]
                doc = doc.replace(line, textwrap.indent(text, indent))
    cls.__doc__ = doc
    return cls
