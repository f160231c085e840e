"""GateformerForecaster: the scikit-learn face of :class:`tsformers.models.Gateformer`."""
from __future__ import annotations

from numbers import Integral, Real

from sklearn.utils._param_validation import Interval

from tsformers.backbone import BLOCK_SLOTS, Slot, available, order_free
from tsformers.backbone.blocks import block_part_names, stacks_for_parts
from tsformers.backbone.registry import home_stack
from tsformers.estimators import networks
from tsformers.estimators._docs import shared_docs
from tsformers.estimators.base import BaseForecaster
from tsformers.models.gateformer import (MultiScaleView, patch_embeddings, temporal_blocks,
                                         temporal_fusions, temporal_mixers, temporal_reducers, temporal_stacks)


@shared_docs
class GateformerForecaster(BaseForecaster):
    """Gateformer: temporal and variate-wise attention with gated representations.

    Each variate's lookback window becomes one token by gating a global linear
    embedding with a patch-wise temporal Transformer; attention across the
    variate tokens, gated again, mixes the variates; a linear head forecasts
    every step of the horizon at once. The network defaults are the paper's
    ETTh1 setting at horizon 96 but for its patches, 16 steps long instead of 8
    (half as many tokens: the training step is about 1.5 times faster at the
    same validation loss); they and the training defaults were chosen on the
    validation windows of the benchmark data sets (batches of 32 at a learning
    rate of 1e-3 halved every epoch, at most 10 epochs, patience 2; the paper's
    recipe is batches of 8 at 5e-4, patience 3, on patches of 8). By default the
    network corrects a closed-form linear map of the window (``linear_base``, a
    tsformers extension); ``linear_base=False`` is the paper's network alone.

    Parameters
    ----------
    horizon : int, default=96
        Number of steps to forecast.
    lookback : int, default=96
        Number of past steps the network reads.
    d_model, n_heads, d_ff, e_layers : int, default=64, 4, 64, 1
        Width, attention heads, feed-forward width and layers of both encoders.
    patch_len, stride : int, default=16, 16
        Patches of the temporal encoder: ``(lookback - patch_len) // stride + 2``
        of them, the window padded by ``stride`` repeated last values (7 at the
        defaults; the paper's 8, 8 gives 13).
    dropout : float, default=0.1
    attention_dropout : float or None, default=None
        The dropout of the mixers named by ``temporal_mixer`` and ``variate_mixer``: on
        the attention weights of an attention mixer (``dropout`` is that of the
        embeddings, blocks and heads). None: ``dropout``, as in the paper. At 0 an
        attention mixer runs torch's fused attention kernel in training too (on CPU an
        attention with dropout does not). 0 was tried as the default and not taken: on
        the validation windows it tied on the ETT data sets but was higher on every seed
        on weather, for a training step of the default network at most 4 % faster
        (the Gateformer page of the docs gives the numbers).
    temporal_mixer : str, default="full"
        The token mixer over the patches of each variate (ordered time tokens), by
        its name in ``tsformers.backbone.available("temporal_mixer", "GateformerForecaster")``:
        every registered mixer with a non-causal form, since all the patches of a
        window see each other (``"xl_relative"`` is causal only, and refused). ``"cswin"``
        (CSWin's cross-shaped windows) attends over each sample's whole variates × patches
        grid, the variates as an unordered set: half the heads inside each variate's row of
        patches, half over all variates × ``stripe_width`` adjacent patches, LePE along time
        only, so the forecast does not depend on the order of the columns; it needs a stack
        that hands it every variate's row whole (``available("temporal_stack", ...)`` lists
        them: not ``"fit"``, ``"sret"``, ``"adaptive_depth"``, ``"dual_stream"``). ``"fca"``
        (FcaFormer's forward cross attention) attends to cross tokens merged from
        the earlier blocks' outputs, which only its own stage makes: with it the
        temporal encoder is that stage, ``"fca_stage"`` (``stack`` must then be
        ``"standard"``, and ``ffn``/``norm`` the defaults: its blocks are its own).
    variate_mixer : str, default="full"
        The token mixer over the variate tokens (an unordered set: mixers that
        need ordered tokens, or cross tokens merged along positions, are refused
        here), one of ``tsformers.backbone.order_free("mixer", standalone=True)``.
    stack : str, default="standard"
        How both encoders' blocks are arranged, by its name in
        ``tsformers.backbone.order_free("stack")`` (e.g. ``"looped"`` for one block
        applied ``e_layers`` times); ``"standard"`` is the paper's plain stack of
        ``e_layers`` blocks. The stack also runs over the variate tokens, so stacks
        that need ordered tokens (``"sret"``, ``"fit"``, ...) are refused: they fit
        ``temporal_stack``.
    temporal_stack : str, optional
        How the temporal encoder's blocks are arranged, when not as ``stack``: by its name in
        ``tsformers.backbone.available("temporal_stack", "GateformerForecaster")``. None (the
        default, the paper's): ``stack`` arranges both encoders. The temporal encoder runs over
        the patches of one variate, ordered time tokens, so besides the order-free stacks it
        takes those that read token order: ``"fit"`` (FIT's local groups with latents), ``"sret"``
        (sliced recursive blocks), ``"hybrid"`` (Mamba and attention blocks), ``"mixed"`` (softmax
        and linear attention blocks) and ``"three_phase"`` (the Three-Phase Transformer, with its
        position side channel). ``stack`` then arranges the variate encoder alone. These stacks
        build their own blocks, so they take ``ffn`` and ``norm`` at their defaults only; with
        ``temporal_mixer="fca"`` the temporal stack is ``"fca_stage"``.
    temporal_reducer : str, optional
        What shrinks each variate's P patch tokens, after the temporal encoder, to ceil(P/2)
        tokens for the flatten head, by its name in
        ``tsformers.backbone.available("temporal_reducer", "GateformerForecaster")``. None (the
        default, the paper's): the head reads all P tokens. A stage of stride 2 reduces the
        ordered patches: ``"qpool_stage"`` (Hiera's Q-pooling attention block: queries max-pooled
        over two patches attend to all P) or ``"resnas_stage"`` (ViT-ResNAS's residual reduction:
        an average-pooled skip plus a strided convolution). A reducer reads them through ceil(P/2)
        learned queries: ``"pem_xattn"`` (PEM's prototype cross-attention: each query takes its
        most similar patch), ``"kmeans_xattn"`` (kMaX's k-means cross-attention: patches clustered
        onto the centres) or ``"ltm"`` (learnable token merging: convex combinations of the patches).
    temporal_block : str, optional
        The blocks of the temporal encoder, when not the stack's own (None, the default, the
        paper's), by its name in ``tsformers.backbone.available("temporal_block",
        "GateformerForecaster")``: ``"tnt"`` makes it ``e_layers`` TNT blocks (Han et al., NeurIPS
        2021), each an inner transformer over the words of every patch, added to the patch token,
        then an outer block over the patches with ``temporal_mixer``. It reads the words of
        ``embedding="tnt_words"`` (required), arranges the blocks in sequence (``temporal_stack``
        None or ``"standard"``; ``stack`` then arranges the variate encoder alone) and builds its
        own MLPs and LayerNorms (``ffn`` and ``norm`` at their defaults).
    temporal_fusion : str, optional
        A two-branch encoder in place of the patch embedding, the temporal encoder and its flatten
        head, by its name in ``tsformers.backbone.available("temporal_fusion",
        "GateformerForecaster")``. None (the default): the paper's patches. ``"crossvit_two_branch"``
        (CrossViT, Chen, Fan and Panda, ICCV 2021) cuts each variate's window into patches of
        ``patch_len`` steps (``d_model`` wide) and of 2·``patch_len`` steps (2·``d_model`` wide),
        each branch with a CLS token, runs ``e_layers`` multi-scale encoders (a block per branch,
        then cross-attention of each CLS token over the other branch's patches) and reads both CLS
        tokens through a Linear into the variate's token. It needs ``stride == patch_len`` and
        ``lookback >= 2·patch_len``, and its blocks are its own: ``temporal_mixer``,
        ``temporal_stack``, ``temporal_reducer``, ``temporal_block``, ``embedding``, ``ffn`` and
        ``norm`` at their defaults.
    ffn : str, default="mlp"
        The feed-forward network of every block of both encoders, by its name in
        ``tsformers.backbone.available("ffn")``: ``"mlp"`` (the paper's Linear-ReLU-Linear),
        ``"conv"`` (LMUFormer's conv FFN with batch norms) or ``"cofrnet"``
        (CoFrGeNet's continued-fraction FFN; ``d_ff`` unused). Only stacks built from
        the standard block take it, ``tsformers.backbone.with_block_slot("ffn")``;
        another choice with another stack is refused.
    norm : str, default="layernorm"
        The normalisation of every block of both encoders, by its name in
        ``tsformers.backbone.available("norm")``: ``"layernorm"`` (the paper's) or
        ``"prepbn"`` (SLAB's progressive re-parameterised batch norm: LayerNorm decaying
        into a batch norm over 10,000 training steps, foldable into the next Linear at
        inference). Stacks as for ``ffn``: ``tsformers.backbone.with_block_slot("norm")``.
    embedding : str, default="patch"
        How each variate's patches become the temporal encoder's tokens, by its name in
        ``tsformers.backbone.available("embedding", "GateformerForecaster")``: ``"patch"``
        (the paper's: Linear(patch_len -> d_model) over patches cut every ``stride`` steps,
        the end padded by ``stride``), ``"cel"`` (CrossFormer's cross-scale embedding:
        convolutions over P, 2P, 4P and 8P steps around each patch; needs
        ``stride == patch_len`` and ``d_model >= 8``) or ``"tnt_words"`` (TNT's words, one
        per step, made into a patch token as TNT makes its sentence tokens; no end padding).
        Every choice gets the same fixed sinusoidal positions; a choice that does not fit
        the other parameters is refused by ``fit``, naming those that do.
    target : str or list of str, optional
        Columns to forecast; by default every numeric column that is not a covariate.
    covariates : str or list of str, optional
        Past-observed exogenous columns: read as input, not forecast.
    future_covariates : str or list of str, optional
        Known-future exogenous columns (a weather forecast, a calendar): their
        values over the horizon are passed to ``predict(df, future_df)``.
    learning_rate : float, default=1e-3
    batch_size : int, default=32
    max_epochs : int, default=10
    patience : int or None, default=2
        Early-stopping patience on the validation loss; the best epoch's weights are kept.
    val_every_windows : int or None, default=None
        Validate after every ``val_every_windows`` training windows (whole batches) rather than
        after each pass over all of them, where there are more: early stopping's ``patience`` and
        the best checkpoint count these validations, so a large data set stops ``patience``
        validations after its last improvement, not ``patience`` passes. The learning-rate
        schedule and ``max_epochs`` still count passes over the training windows. Each part
        between validations is a fresh random part of the windows (a Lightning epoch of
        ``ceil(val_every_windows / batch_size)`` batches, ``limit_train_batches``; the training
        log has a row for each). None: validate after each pass.
    scaler : {"standard"} or None, default="standard"
        Per series and variable, fitted on the training part only.
    %(cycle_parameter)s
    %(linear_base_parameter)s
    ensemble_size : int, default=2
        Networks fitted, each on its own from its own seed, whose mean is the forecast (a seed ensemble,
        :class:`~tsformers.backbone.SeedEnsemble`; a tsformers extension). The first member is the network
        ``ensemble_size=1`` fits under ``random_state``, the others' seeds are drawn from it
        (:func:`~tsformers.seeding.member_seeds`); each member gets its own linear base share and early
        stopping, and ``training_log_`` holds every member's epochs, each row naming its ``member``. Fit and
        forecast cost scale with it. The default was chosen on the validation windows of the benchmark data
        sets (``docs/benchmarks.md``); 1 is the paper's single network.
    %(common_parameters)s

    Attributes
    ----------
    network_ : torch.nn.Module
        The trained :class:`~tsformers.models.Gateformer`, behind its
        :class:`~tsformers.backbone.LinearBase` with ``linear_base=True``; with ``ensemble_size`` > 1, a
        :class:`~tsformers.backbone.SeedEnsemble` of such networks (``network_.members``).
    %(adaptive_depth_attribute)s
    %(common_attributes)s
    %(cycle_attribute)s
    %(linear_base_attribute)s

    References
    ----------
    Lan & Oermann, "Gateformer: Advancing Multivariate Time Series Forecasting through
    Temporal and Variate-Wise Attention with Gated Representations", ICML 2025, arXiv 2505.00307.

    Examples
    --------
    >>> from tsformers import GateformerForecaster
    >>> from tsformers.datasets import make_demo
    >>> df = make_demo(n_steps=600)
    >>> f = GateformerForecaster(horizon=24, lookback=96, max_epochs=1, batch_size=32).fit(df)
    >>> f.predict().shape
    (24, 4)
    """

    _tags = {**BaseForecaster._tags, "static": True}

    _parameter_constraints = {
        **BaseForecaster._parameter_constraints,
        "linear_base": ["boolean"],
        "ensemble_size": [Interval(Integral, 1, None, closed="left")],
        "d_model": [Interval(Integral, 1, None, closed="left")],
        "n_heads": [Interval(Integral, 1, None, closed="left")],
        "d_ff": [Interval(Integral, 1, None, closed="left")],
        "e_layers": [Interval(Integral, 1, None, closed="left")],
        "patch_len": [Interval(Integral, 1, None, closed="left")],
        "stride": [Interval(Integral, 1, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "attention_dropout": [Interval(Real, 0, 1, closed="left"), None],
        "temporal_mixer": [str],
        "variate_mixer": [str],
        "stack": [str],
        "temporal_stack": [str, None],
        "temporal_reducer": [str, None],
        "temporal_block": [str, None],
        "temporal_fusion": [str, None],
        "ffn": [str],
        "norm": [str],
        "embedding": [str],
    }

    def __init__(self, horizon=96, lookback=96, *, d_model=64, n_heads=4, d_ff=64, e_layers=1, patch_len=16, stride=16,
                 dropout=0.1, attention_dropout=None, temporal_mixer="full", variate_mixer="full", stack="standard",
                 temporal_stack=None, temporal_reducer=None, temporal_block=None, temporal_fusion=None, ffn="mlp",
                 norm="layernorm", embedding="patch", target=None, covariates=None, future_covariates=None,
                 calendar=None, cycle="auto", time_col=None, id_col=None, loss="mse", learning_rate=1e-3,
                 weight_decay=0.0, lr_schedule="halving", batch_size=32, max_epochs=10, val_every_windows=None,
                 patience=2, val_size=0.1, scaler="standard", gradient_clip=None, ema_decay=None, random_state=0,
                 verbose=False, trainer_kwargs=None, missing="error", max_gap=None, fill_gaps=False, static=None,
                 unknown_static="error", checkpoint_dir=None, resume=False, quantiles=None, linear_base=True,
                 ensemble_size=2):
        self.horizon = horizon
        self.lookback = lookback
        self.d_model = d_model
        self.n_heads = n_heads
        self.d_ff = d_ff
        self.e_layers = e_layers
        self.patch_len = patch_len
        self.stride = stride
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.temporal_mixer = temporal_mixer
        self.variate_mixer = variate_mixer
        self.stack = stack
        self.temporal_stack = temporal_stack
        self.temporal_reducer = temporal_reducer
        self.temporal_block = temporal_block
        self.temporal_fusion = temporal_fusion
        self.ffn = ffn
        self.norm = norm
        self.embedding = embedding
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
        self.val_every_windows = val_every_windows
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
        self.linear_base = linear_base
        self.ensemble_size = ensemble_size

    def _build_network(self, n_vars):
        return networks.gateformer(self, n_vars)

    def _slots(self):
        block_parts = {"ffn": self.ffn, "norm": self.norm}
        default_blocks = all(part == BLOCK_SLOTS[slot] for slot, part in block_parts.items())
        mixer_known = self.temporal_mixer in available("mixer")
        home = home_stack(self.temporal_mixer) if mixer_known else None
        fitting = temporal_stacks(self.temporal_mixer) if mixer_known else []
        embeddings = patch_embeddings(lookback=self.lookback, d_model=self.d_model, patch_len=self.patch_len,
                                      stride=self.stride)
        reducers = temporal_reducers()
        # the stack also runs over the variates (order-free only); with temporal_stack None it arranges the
        # temporal encoder too, unless a mixer with a stage of its own (fca) makes that stage the temporal
        # encoder, and the stack then stays standard
        stacks = stacks_for_parts(order_free("stack"), **block_parts)
        if self.temporal_fusion is not None:
            # CrossViT's branches, of their own blocks, replace the patch embedding and the temporal encoder
            temporal, temporal_stack_names, reducers = ["full"], [], []
            embeddings = [name for name in embeddings if name == "patch"]
            encoders = None
        elif self.temporal_block is not None:
            # e_layers TNT blocks in sequence over the words; the stack arranges the variate encoder alone
            temporal = [mixer for mixer in temporal_mixers() if home_stack(mixer) is None]
            temporal_stack_names = ["standard"]
            embeddings = [name for name in embeddings if name == "tnt_words"]
            encoders = None
        elif self.temporal_stack is None:
            stacks = [stack for stack in stacks if stack == "standard"] if home else stacks
            # a grid mixer (cswin) needs a stack that hands it every variate's row whole
            stacks = [stack for stack in stacks if stack in fitting] if mixer_known and not home else stacks
            temporal = [mixer for mixer in temporal_mixers()
                        if (home_stack(mixer) is None and self.stack in temporal_stacks(mixer))
                        or (self.stack == "standard" and stacks_for_parts([home_stack(mixer)], **block_parts))]
            temporal_stack_names = stacks_for_parts(fitting, **block_parts)
            encoders = [self.stack, home or self.stack]   # the variate and the temporal encoders' stacks
        else:
            temporal = [mixer for mixer in temporal_mixers() if self.temporal_stack in temporal_stacks(mixer)]
            temporal_stack_names = stacks_for_parts(fitting, **block_parts)
            encoders = [self.stack, self.temporal_stack]
        # TNT's blocks and CrossViT's branches build their own MLPs and norms: the defaults alone, for both encoders
        part_names = {slot: block_part_names(slot, encoders, unordered=True) if encoders else [BLOCK_SLOTS[slot]]
                      for slot in BLOCK_SLOTS}
        word_blocks = (self.temporal_fusion is None and "tnt_words" in embeddings and self.embedding == "tnt_words"
                       and self.temporal_stack in (None, "standard") and mixer_known and home is None
                       and default_blocks)
        multiscale = (self.temporal_block is None and self.temporal_reducer is None and self.embedding == "patch"
                      and self.temporal_stack is None and self.temporal_mixer == "full" and default_blocks
                      and MultiScaleView.misfit(lookback=self.lookback, patch_len=self.patch_len,
                                                stride=self.stride) is None)
        return {"temporal_mixer": Slot(("mixer",), temporal),
                "variate_mixer": Slot(("mixer",), order_free("mixer", standalone=True)),
                "stack": Slot(("stack",), stacks),
                "temporal_stack": Slot(("stack",), temporal_stack_names),
                "temporal_reducer": Slot(("stage", "reducer"), reducers),
                "temporal_block": Slot(("block",), temporal_blocks() if word_blocks else []),
                "temporal_fusion": Slot(("fusion",), temporal_fusions() if multiscale else []),
                **{slot: Slot((slot,), names) for slot, names in part_names.items()},
                "embedding": Slot(("embedding",), embeddings)}

    @classmethod
    def get_test_params(cls):
        return {"d_model": 16, "d_ff": 32, "n_heads": 2, "batch_size": 32, "learning_rate": 1e-3}
