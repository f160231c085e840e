"""PVClientForecaster: the scikit-learn face of :class:`tsformers.models.pvclient.PVClient`."""
from __future__ import annotations

from numbers import Integral, Real

from sklearn.utils._param_validation import Interval

from tsformers.backbone import BLOCK_SLOTS, Slot, order_free
from tsformers.backbone.blocks import block_part_names, blocks_for_parts, stacks_for_parts
from tsformers.estimators import networks
from tsformers.estimators._docs import shared_docs
from tsformers.estimators.base import BaseForecaster
from tsformers.estimators.forecasting import pv_power_limits
from tsformers.models.pvclient import PAPER_BLOCK, STEP_FUSIONS


@shared_docs
class PVClientForecaster(BaseForecaster):
    """PV-Client: photovoltaic power from its own history and weather, with attention across variables.

    The PV power and every weather factor (irradiance, temperature, humidity,
    cloud cover, ...) are tokens: each variable's normalised lookback window is
    one token, with no embedding and no positions (d_model = lookback). A
    post-LN Transformer encoder attends across these tokens and a projection
    maps each to the horizon; a linear module learns the trend straight from
    the normalised window; the two are weighted per variable and added. The
    forecasts are physical: never below zero (a plant does not consume power)
    and, with ``capacity``, never above the plant's rating (``clip=False``
    turns this off, for data that is not PV power: PV-Client's network is
    Client's, a long-horizon forecaster).

    With known-future inputs (``future_covariates`` or ``calendar``), a
    tsformers extension is on by default: a per-step pathway, one MLP shared
    by the horizon steps, maps each step's known-future values (and the
    targets one horizon earlier) to the targets at that step, added to the
    paper's output. It is what a regression of the hour's power on the hour's
    weather does, which the paper's window tokens cannot (see
    :class:`~tsformers.models.pvclient.PVClient`); ``step_pathway=False``
    keeps the paper's form; ``step_fusion="cross_gating"`` fuses the pathway's
    two streams (each hour's weather, the power one horizon earlier) across
    the hours with MAXIM's cross-gating block instead of the MLP.

    Every target is treated as PV power (clipped at 0 and ``capacity``): put the
    weather in ``covariates`` (past-observed) or ``future_covariates`` (a
    weather forecast), not in ``target``.

    The network defaults are PV-Client's (lookback 192 and horizon 96, i.e. two
    days of 15-minute data forecasting one; 4 heads, d_ff 128, 2 encoder
    layers, dropout 0.1, both branch weights starting at 1). The paper feeds
    five *forecast* weather features plus the PV power lagged by the horizon,
    so that every input channel covers the forecast period; here
    ``future_covariates`` generalise that: each known-future column enters led
    by ``horizon`` steps (its window ends with its values over the horizon), so
    the weather forecast and the observed power history can be combined
    freely. PV-Client's repository gives no training settings; the training
    defaults are Client's (batch 32, 10 epochs, patience 3, the rate halved
    every epoch) with its most frequent learning rate, 1e-3.

    Night-time steps are safe: the instance normalisation adds 1e-5 to the
    variance of every window and the fitted scaler gives a constant column
    scale 1, so no scaling divides by zero; normalise reporting errors by
    capacity (:func:`tsformers.metrics.nmae`, :func:`tsformers.metrics.nrmse`),
    not by the observed power.

    Parameters
    ----------
    horizon : int, default=96
        Number of steps to forecast.
    lookback : int, default=192
        Number of past steps the network reads; also the width of the tokens
        (d_model), so ``n_heads`` must divide it.
    n_heads : int, default=4
        Attention heads of the encoder.
    d_ff : int, default=128
        Width of the encoder's feed-forward networks.
    e_layers : int, default=2
        Encoder layers.
    dropout : float, default=0.1
    mixer : str, default="full"
        The token mixer of the cross-variable encoder, by its name in
        ``tsformers.backbone.order_free("mixer", standalone=True)`` (variate tokens
        are an unordered set: mixers that need ordered tokens are refused, and so
        is ``"fca"``, whose cross tokens are merged along positions).
        ``tsformers.backbone.available(None, "PVClientForecaster")`` lists what each slot
        (``mixer``, ``stack``, ``block``, ``ffn``, ``norm``, ``step_fusion``) accepts, given the
        others.
    stack : str, default="standard"
        How the encoder's blocks are arranged, by name in
        ``tsformers.backbone.order_free("stack")`` (stacks that need ordered tokens
        are refused, as mixers are); "standard" is the paper's post-LN stack.
    ffn : str, default="mlp"
        The feed-forward network of every encoder block, by its name in
        ``tsformers.backbone.available("ffn")``: ``"mlp"`` (the paper's
        Linear-GELU-Linear), ``"conv"`` (LMUFormer's conv FFN with batch norms) or
        ``"cofrnet"`` (CoFrGeNet's continued-fraction FFN; ``d_ff`` unused). Only
        stacks built from the standard block take it,
        ``tsformers.backbone.with_block_slot("ffn")``; another choice with another
        stack is refused in ``fit``, naming those stacks.
    norm : str, default="layernorm"
        The normalisation of every encoder block (and the standard stack's final
        norm), by its name in ``tsformers.backbone.available("norm")``:
        ``"layernorm"`` (the paper's) or ``"prepbn"`` (SLAB's LayerNorm decaying into
        a batch norm over 10,000 training steps, foldable into the next Linear at
        inference). Stacks as for ``ffn``.
    block : str, default="postnorm"
        The block the standard stack repeats, by its name in
        ``tsformers.backbone.available("block", "PVClientForecaster")``: ``"postnorm"``
        (the paper's post-LN block), ``"prenorm"`` or ``"metaformer"`` (Yu et al.,
        CVPR 2022: x + LayerScale(mixer(Norm(x))), x + LayerScale(MLP(Norm(x))),
        layer scale 1e-5; its token mixer is ``mixer``, since PoolFormer's pooling
        needs an order the variates lack, and its MLP is fixed, so ``ffn`` must
        stay ``"mlp"``). Other stacks build their own blocks and take only
        ``"postnorm"``.
    step_pathway : bool, default=True
        The per-step pathway from each horizon step's known-future inputs to
        its forecast (a tsformers extension, built only when the model has
        ``future_covariates`` or ``calendar`` features; width ``d_ff``).
        False: the paper's architecture.
    step_fusion : {"cross_gating"} or None, default=None
        How the per-step pathway combines its two streams of horizon tokens, the
        known-future inputs of each forecast step and the targets one horizon
        earlier. None: one MLP over each step's inputs concatenated.
        ``"cross_gating"``: MAXIM's cross-gating block (Tu et al., CVPR 2022),
        registered as fusion ``"cross_gating"``: both streams embedded per step to
        ``d_ff``, each gates the other with weights along the step axis (in
        blocks of b consecutive steps and along a g-row grid, b = g =
        ceil(sqrt(horizon))), then a Linear to the targets that starts at zero.
        Listed whenever ``step_pathway`` is on; like the pathway, it is built
        only when ``fit`` finds ``future_covariates`` or ``calendar`` features,
        and unused without them. Refused with ``step_pathway=False``.
    w_trans, w_lin : float, default=1.0, 1.0
        Initial values of the learnable per-variable weights of the Transformer
        branch and of the linear branch (Client's scripts start ``w_lin`` at
        0.05 to 1.0 depending on the data).
    capacity : float, optional
        The plant's rated power, in the units of the target: forecasts are
        clipped at it. Forecasts are clipped at zero unless ``clip=False``.
    clip : bool, default=True
        Clip the forecasts to ``[0, capacity]`` (PV physics). False for data
        that is not PV power (then ``capacity`` must be None).
    target : str or list of str, optional
        The PV power column(s) to forecast; by default every numeric column that
        is not a covariate.
    covariates : str or list of str, optional
        Past-observed exogenous columns (measured weather): read as input, not forecast.
    future_covariates : str or list of str, optional
        Known-future exogenous columns (a weather forecast, clear-sky
        irradiance, a calendar): their values over the horizon are passed to
        ``predict(df, future_df)``. Needs ``lookback >= horizon``.
    learning_rate : float, default=1e-3
    batch_size : int, default=32
    max_epochs : int, default=10
    scaler : {"standard"} or None, default="standard"
        Per series and variable, fitted on the training part only.
    %(common_parameters)s

    Attributes
    ----------
    network_ : torch.nn.Module
        The trained :class:`~tsformers.models.pvclient.PVClient`.
    %(adaptive_depth_attribute)s
    %(common_attributes)s

    See Also
    --------
    tsformers.datasets.make_pv_demo : a synthetic PV plant with weather.
    tsformers.datasets.load_pv : the real PV data sets with aligned weather.

    References
    ----------
    Gao, Cao, Chen, Zhang, PV-Client, arXiv 2406.03808 (code: github.com/daxin007/PV-Client).
    Gao et al., "Client: Cross-variable Linear Integrated Enhanced Transformer for Multivariate
    Long-Term Time Series Forecasting", arXiv 2305.18838.

    Examples
    --------
    >>> from tsformers.estimators.pvclient import PVClientForecaster
    >>> from tsformers.datasets import make_pv_demo
    >>> df = make_pv_demo(n_steps=600, capacity=5.0)
    >>> f = PVClientForecaster(horizon=24, lookback=48, max_epochs=1, capacity=5.0, target="power",
    ...                        covariates=["ghi", "temperature", "humidity", "cloud_cover"],
    ...                        future_covariates=["clearsky_ghi"])
    >>> history, future = df.iloc[:-24], df.iloc[-24:][["date", "clearsky_ghi"]]
    >>> forecast = f.fit(history).predict(future_df=future)
    >>> forecast.shape, bool(forecast["power"].between(0, 5).all())
    ((24, 2), True)
    """

    _parameter_constraints = {
        **BaseForecaster._parameter_constraints,
        "n_heads": [Interval(Integral, 1, None, closed="left")],
        "d_ff": [Interval(Integral, 1, None, closed="left")],
        "e_layers": [Interval(Integral, 1, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "mixer": [str],
        "stack": [str],
        "ffn": [str],
        "norm": [str],
        "w_trans": [Interval(Real, None, None, closed="neither")],
        "w_lin": [Interval(Real, None, None, closed="neither")],
        "capacity": [Interval(Real, 0, None, closed="neither"), None],
        "clip": ["boolean"],
        "step_pathway": ["boolean"],
        "block": [str],
        "step_fusion": [str, None],
    }

    def __init__(self, horizon=96, lookback=192, *, n_heads=4, d_ff=128, e_layers=2, dropout=0.1, mixer="full",
                 stack="standard", ffn="mlp", norm="layernorm", block="postnorm", step_pathway=True, step_fusion=None,
                 w_trans=1.0, w_lin=1.0, capacity=None, clip=True, target=None, covariates=None,
                 future_covariates=None, calendar=None, time_col=None, id_col=None, loss="mse", learning_rate=1e-3,
                 weight_decay=0.0, lr_schedule="halving", batch_size=32, max_epochs=10, patience=3, val_size=0.1,
                 scaler="standard", gradient_clip=None, ema_decay=None, random_state=0, verbose=False,
                 trainer_kwargs=None, missing="error", max_gap=None, fill_gaps=False, static=None,
                 unknown_static="error", checkpoint_dir=None, resume=False, quantiles=None):
        self.horizon = horizon
        self.lookback = lookback
        self.n_heads = n_heads
        self.d_ff = d_ff
        self.e_layers = e_layers
        self.dropout = dropout
        self.mixer = mixer
        self.stack = stack
        self.ffn = ffn
        self.norm = norm
        self.block = block
        self.step_pathway = step_pathway
        self.step_fusion = step_fusion
        self.w_trans = w_trans
        self.w_lin = w_lin
        self.capacity = capacity
        self.clip = clip
        self.target = target
        self.covariates = covariates
        self.future_covariates = future_covariates
        self.calendar = calendar
        self.time_col = time_col
        self.id_col = id_col
        self.loss = loss
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.val_size = val_size
        self.scaler = scaler
        self.gradient_clip = gradient_clip
        self.ema_decay = ema_decay
        self.random_state = random_state
        self.verbose = verbose
        self.trainer_kwargs = trainer_kwargs
        self.missing = missing
        self.max_gap = max_gap
        self.fill_gaps = fill_gaps
        self.static = static
        self.unknown_static = unknown_static
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.quantiles = quantiles

    def _build_network(self, n_vars):
        return networks.pvclient(self, n_vars)

    def _postprocess(self, forecast):
        """PV physics: no negative power, none above ``capacity`` (nothing with ``clip=False``)."""
        return pv_power_limits(forecast, {"capacity": self.capacity, "clip": self.clip})

    def _slots(self):
        # every part runs over variate tokens, an unordered set; a block other than the paper's needs the stack
        # that repeats a block by name
        parts = {"ffn": self.ffn, "norm": self.norm}
        stacks = [stack for stack in stacks_for_parts(order_free("stack"), **parts)
                  if self.block in blocks_for_parts(stack, default=PAPER_BLOCK, **parts)]
        return {"mixer": Slot(("mixer",), order_free("mixer", standalone=True)),
                "stack": Slot(("stack",), stacks),
                "block": Slot(("block",), blocks_for_parts(self.stack, default=PAPER_BLOCK, **parts)),
                **{slot: Slot((slot,), block_part_names(slot, [self.stack], unordered=True, block=self.block))
                   for slot in BLOCK_SLOTS},
                # the hour streams of the per-step pathway, whose presence fit decides from the known-future inputs
                "step_fusion": Slot(("fusion",), list(STEP_FUSIONS) if self.step_pathway else [])}

    @classmethod
    def get_test_params(cls):
        return {"n_heads": 2, "d_ff": 32, "batch_size": 32, "learning_rate": 1e-3}
