"""AtlasForecaster: the scikit-learn face of :class:`tsformers.models.atlas.Atlas`."""
from __future__ import annotations

from numbers import Integral, Real

from sklearn.utils._param_validation import Interval, StrOptions

from tsformers.backbone.registry import Slot, available
from tsformers.estimators import networks
from tsformers.estimators._docs import shared_docs
from tsformers.estimators.streaming import StreamingForecaster
from tsformers.models.atlas import ATLAS_MEMORY, LAYERS, memories


@shared_docs
class AtlasForecaster(StreamingForecaster):
    """ATLAS: deep memories that keep learning at test time, by the Omega rule and a Muon-style optimiser.

    Every time step becomes a token (a causal convolution over the last
    ``conv_kernel`` steps), one token stream per variable by default
    (``channel_independent=True``, with its own memories; weights shared), or one
    stream per series mixing all variables. Each layer holds a long-term memory,
    a small MLP per head whose *weights are the state*: as tokens arrive it takes
    gradient steps on an associative loss ||M(phi(k)) - v||^2 over a sliding
    window of the last ``omega_window`` tokens (ATLAS's Omega rule, with learned
    input-dependent token weights, step size, momentum and retention), with the
    momentum orthogonalised by Newton-Schulz iterations (``optimizer="muon"``) or
    plain (``"momentum"``), one step per chunk of ``chunk_size`` tokens. Keys and
    queries pass through a polynomial feature map for capacity. ``layer`` picks
    how the memory meets attention: ``"deep"`` (memory in place of attention),
    ``"mag"`` (memory beside sliding-window attention, gated) or ``"mal"``
    (memory, then sliding-window attention). A linear head on the last token and
    a linear map of the normalised last ``lookback`` steps forecast the horizon.
    By default the tokens read each step's change and the forecast is made from
    the last observed value (``normalize``).

    The model is **streaming**: ``fit`` trains the outer weights on windows of
    ``lookback`` steps (each starting from the learned initial memory), then runs
    the memories over the whole training history; :meth:`update` advances them by
    new rows and ``predict()`` forecasts from there. The memories keep learning
    on every new observation while the trained outer weights stay fixed.
    Updating row by row, in blocks, or predicting from the full history give the
    same numbers.

    Parameters
    ----------
    horizon : int, default=96
        Number of steps to forecast.
    lookback : int, default=96
        Length of the training windows, and of the window the linear path and the
        output normalisation read; the memories see the whole history.
    channel_independent : bool, default=True
        One token stream (and set of memories) per variable, or one per series whose
        tokens mix all variables.
    d_model, n_layers, n_heads, d_ff : int, default=32, 1, 2, 64
        Width, number of ATLAS blocks, memory (and attention) heads, FFN width.
    layer : {"deep", "mag", "mal"}, default="mag"
        The block: memory alone (DeepTransformer-style), memory gated with
        sliding-window attention (MAG), or memory then sliding-window attention (MAL).
    memory : str, default="omega"
        The memory of every block, by its registry name in
        ``tsformers.backbone.available("memory", "AtlasForecaster")``: ``"omega"`` is
        the paper's (the deep MLP written by the Omega rule that the parameters
        ``d_key`` to ``frozen_memory`` below set up); ``"lmu_cell"`` is LMUFormer's
        Legendre memory cell (``d_model`` coefficients over the last ``lookback``
        steps); ``"mamba"``, ``"sla"`` and ``"sliding_window"`` (over ``window`` steps)
        are the causal mixers with a streaming state
        (``tsformers.backbone.streaming()``), whose state carries the history instead
        of memory weights; ``"identity"``, also listed there, holds nothing (the
        memory's ablation). Streaming stays exact with each. Other parts are refused
        in ``fit``, naming these: ``"lmu"`` is the Legendre system inside
        ``"lmu_cell"``, ``"segment"`` a cache with no read-out of its own.
    window : int, default=32
        Sliding-window attention span in steps (not used by ``"deep"``).
    n_persistent : int, default=4
        Learned persistent-memory tokens every attention query sees.
    conv_kernel : int, default=16
        Steps per token (the causal convolution's width).
    d_key : int, default=4
        Key and query dimensions per head before the feature map.
    memory_depth, memory_expansion : int, default=2, 1
        Weight matrices of each memory MLP, and its hidden width over d_model / n_heads.
    poly_degree : int, default=2
        Degree of the polynomial feature map on keys and queries (the registry's
        ``"polynomial"`` feature map, ATLAS's; 0: none, the keys as they are).
    omega_window : int, default=8
        The Omega rule's window c (1: the online Titans-style update).
    chunk_size : int, default=16
        Tokens per memory update (1: one update per token).
    optimizer : {"muon", "momentum"}, default="muon"
        The memory optimiser, by its registry name in
        ``tsformers.backbone.available("memory_optimizer")``: ATLAS's Muon-style update
        (momentum orthogonalised by Newton-Schulz) or Titans' plain momentum.
    ns_steps : int, default=5
        Newton-Schulz iterations of ``"muon"``.
    max_lr : float, default=0.1
        Largest inner step size.
    frozen_memory : bool, default=False
        Never write the memories (an ablation: they stay at their trained initial weights).
        Omega memory only; refused with another ``memory``.
    dropout : float, default=0.1
    linear_path : bool, default=True
        Add a linear map of the normalised last ``lookback`` steps to the forecast.
    normalize : {"last_value", "none"}, default="last_value"
        The causal normalisation (a tsformers extension, not in the paper; the same
        parameter and meaning as in LMUFormer and GTrXL). ``"last_value"``: the tokens
        read each step's change from the step before, the linear path reads the window
        minus its last value (over the window's spread), and the forecast is added onto
        the last observed value, so it moves exactly with the series' level (adding c to
        the history adds c to the forecast) and a trend or a level never seen in training
        does not throw it; the state keeps the last values and changes, so streaming
        stays exact. ``"none"``: the tokens read the values, and the output is
        instance-normalised with the window's mean and spread (RevIN at the output only;
        on Exchange at H = 96 this lost to the last value, MSE 0.088 vs 0.081).
    target : str or list of str, optional
        Columns to forecast; by default every numeric column that is not a covariate.
    covariates : str or list of str, optional
        Past-observed exogenous columns: read as input, not forecast.
    future_covariates : None
        Not supported by a streaming model (their values over the horizon would be
        needed at every update); pass such columns as ``covariates``.
    learning_rate : float, default=1e-3
    batch_size : int, default=32
    max_epochs : int, default=10
    scaler : {"standard"} or None, default="standard"
        Per series and variable, fitted on the training part only. The tokens see
        the data scaled so (its changes, by default); the output's normalisation
        uses the last ``lookback`` steps only (per-window statistics at the input
        would change every token the memories have already stored).
    gradient_clip : float or None, default=1.0
        Clip the gradient norm at this value (see Notes: the memories' test-time
        updates make the gradients spike); None does not clip.
    %(cycle_parameter_off)s
    %(linear_base_parameter)s
    %(common_parameters)s

    Attributes
    ----------
    network_ : torch.nn.Module
        The trained :class:`~tsformers.models.atlas.Atlas`.
    state_ : dict of str to Tensor
        The streaming state after the training history and every :meth:`update`
        since, one row per series: each block's memory weights
        ``"block<i>.memory.w<j>"`` and momenta ``"block<i>.memory.s<j>"``
        (n_series, streams, n_heads, d_in, d_out) with streams = n_vars when
        channel independent (else 1), the Omega window's keys, values and gates
        (with another ``memory``, its own state under ``"block<i>.memory."``),
        the attention cache, ``"inputs"`` (the last ``lookback`` scaled steps),
        ``"last"`` (n_series, streams, d_model), the last token of each stream, and with
        ``normalize="last_value"`` ``"changes"`` (the last ``lookback`` steps' changes) and
        ``"seen"`` (n_series, 1, 1; 1 once a step was read).
    %(common_attributes)s
    %(cycle_attribute)s
    %(linear_base_attribute)s

    Notes
    -----
    ATLAS has no official code and no time-series experiments; the layer
    follows ``shared/design/architectures.md`` section 5. The defaults are
    sized for CPUs: one MAG block, keys of 4 dimensions per head (15 after the
    degree-2 feature map), a 2-layer memory MLP as wide as the values, Omega
    window 8, chunks of 16 steps, 5 Newton-Schulz steps; the window, chunk size
    and Newton-Schulz steps are within the ranges suggested there, the key size
    is below them. Channel independence is the default because the channel-mixing
    token stream overfits ETTh1 (validation loss rising after the first epoch,
    test MSE 0.48 against 0.39 for its linear path alone). A chunk is one optimiser step on the mean of its tokens'
    Omega objectives, with gradients at the weights the chunk starts from
    (chunk-wise parallel training as in Titans); ``chunk_size=1`` is the exact
    token-by-token rule. Training backpropagates through the unrolled memory
    updates, whose gradients can spike; hence ``gradient_clip=1.0`` by default.

    Training windows hold ``lookback`` steps and start from the learned initial
    memories, while ``predict()`` forecasts from memories that have read the
    whole history: the outer weights never saw memories that old. A larger
    ``lookback`` trains them on longer contexts (``benchmarks/atlas.py`` compares
    forecasts from fresh and from streamed memories on ETTh1).

    References
    ----------
    Behrouz et al., "ATLAS: Learning to Optimally Memorize the Context at Test Time", arXiv 2505.23735, 2025.
    Behrouz, Zhong & Mirrokni, "Titans: Learning to Memorize at Test Time", arXiv 2501.00663, 2025.

    Examples
    --------
    >>> from tsformers.estimators.atlas import AtlasForecaster
    >>> from tsformers.datasets import make_demo
    >>> df = make_demo(n_steps=600)
    >>> f = AtlasForecaster(horizon=24, lookback=96, d_model=16, n_heads=2, d_ff=32, max_epochs=1).fit(df.iloc[:-5])
    >>> f.update(df.iloc[-5:]).predict().shape
    (24, 4)
    """

    _parameter_constraints = {
        **StreamingForecaster._parameter_constraints,  # with normalize
        "channel_independent": ["boolean"],
        "d_model": [Interval(Integral, 1, None, closed="left")],
        "n_layers": [Interval(Integral, 1, None, closed="left")],
        "n_heads": [Interval(Integral, 1, None, closed="left")],
        "d_ff": [Interval(Integral, 1, None, closed="left")],
        "layer": [StrOptions(set(LAYERS))],
        "memory": [str],  # checked in fit against memories(), naming them
        "window": [Interval(Integral, 1, None, closed="left")],
        "n_persistent": [Interval(Integral, 0, None, closed="left")],
        "conv_kernel": [Interval(Integral, 1, None, closed="left")],
        "d_key": [Interval(Integral, 1, None, closed="left")],
        "memory_depth": [Interval(Integral, 1, None, closed="left")],
        "memory_expansion": [Interval(Integral, 1, None, closed="left")],
        "poly_degree": [Interval(Integral, 0, None, closed="left")],
        "omega_window": [Interval(Integral, 1, None, closed="left")],
        "chunk_size": [Interval(Integral, 1, None, closed="left")],
        "optimizer": [str],
        "ns_steps": [Interval(Integral, 1, None, closed="left")],
        "max_lr": [Interval(Real, 0, None, closed="neither")],
        "frozen_memory": ["boolean"],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "linear_path": ["boolean"],
    }

    def __init__(self, horizon=96, lookback=96, *, channel_independent=True, d_model=32, n_layers=1, n_heads=2,
                 d_ff=64, layer="mag", memory=ATLAS_MEMORY, window=32, n_persistent=4, conv_kernel=16, d_key=4,
                 memory_depth=2, memory_expansion=1, poly_degree=2, omega_window=8, chunk_size=16, optimizer="muon",
                 ns_steps=5, max_lr=0.1, frozen_memory=False, dropout=0.1, linear_path=True, normalize="last_value",
                 linear_base=True, target=None, covariates=None, future_covariates=None, calendar=None, cycle=None,
                 time_col=None, id_col=None, loss="mse", learning_rate=1e-3, weight_decay=0.0, lr_schedule="halving",
                 batch_size=32, max_epochs=10, patience=3, val_size=0.1, scaler="standard", gradient_clip=1.0,
                 ema_decay=None, random_state=0, verbose=False, trainer_kwargs=None, missing="error", max_gap=None,
                 fill_gaps=False, static=None, unknown_static="error", checkpoint_dir=None, resume=False,
                 quantiles=None):
        self.horizon = horizon
        self.lookback = lookback
        self.channel_independent = channel_independent
        self.d_model = d_model
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.d_ff = d_ff
        self.layer = layer
        self.memory = memory
        self.window = window
        self.n_persistent = n_persistent
        self.conv_kernel = conv_kernel
        self.d_key = d_key
        self.memory_depth = memory_depth
        self.memory_expansion = memory_expansion
        self.poly_degree = poly_degree
        self.omega_window = omega_window
        self.chunk_size = chunk_size
        self.optimizer = optimizer
        self.ns_steps = ns_steps
        self.max_lr = max_lr
        self.frozen_memory = frozen_memory
        self.dropout = dropout
        self.linear_path = linear_path
        self.normalize = normalize
        self.linear_base = linear_base
        self.target = target
        self.covariates = covariates
        self.future_covariates = future_covariates
        self.calendar = calendar
        self.cycle = cycle
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
        return networks.atlas(self, n_vars)

    def _slots(self):
        # frozen_memory freezes the Omega rule's writes: only the Omega memory has them
        return {"memory": Slot(("memory", "mixer"), [ATLAS_MEMORY] if self.frozen_memory else memories()),
                "optimizer": Slot(("memory_optimizer",), available("memory_optimizer"))}

    @classmethod
    def get_test_params(cls):
        return {"d_model": 16, "n_heads": 2, "d_ff": 32, "n_layers": 1, "d_key": 4, "window": 16,
                "chunk_size": 8, "omega_window": 4, "batch_size": 32, "learning_rate": 3e-3}
