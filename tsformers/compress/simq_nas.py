"""SimQ-NAS: joint search of architecture and per-layer bit-width over a weight-sharing supernet.

One genome holds the elastic depth of each encoder and, per block, its heads,
FFN width and weight bit-width (fp32 / int8 / int4, fake-quantised in the
supernet; see :mod:`tsformers.compress.supernet`). The search:

1. trains the supernet with the sandwich rule (or takes a trained one);
2. samples ``n_samples`` subnets and measures their validation MSE (weight
   sharing: no retraining) and CPU latency (the extracted, physically smaller
   network at ``latency_batch``), and fits two light predictors on them (ridge
   regressions on the genome's features);
3. runs NSGA-II (Deb et al., IEEE TEVC 2002: non-dominated sorting, crowding
   distance, elitism) over (predicted MSE, predicted latency, size in bits,
   exact) and returns the Pareto set, each member then measured for real;
4. extracts the chosen subnet (the lowest validation MSE within ``max_size``
   and ``max_latency``) as a physically smaller fitted estimator.

Supports the estimators whose networks hold full-attention/FFN encoders
(Gateformer, PV-Client; see :class:`~tsformers.compress.supernet.Supernet`).
Cost: supernet training ~ (2 + n_random) x fit epochs; measurement ``n_samples``
evaluations; NSGA-II only calls the predictors.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import torch

from tsformers.compress.supernet import Supernet, cpu_latency, supernet

__all__ = ["SimQResult", "crowding_distance", "non_dominated_sort", "nsga2", "simq_nas"]


# -- NSGA-II ------------------------------------------------------------------------------------------------

def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """``a`` is no worse than ``b`` in every objective and better in one (minimisation)."""
    return bool(np.all(a <= b) and np.any(a < b))


def non_dominated_sort(objectives: np.ndarray) -> list[list[int]]:
    """Fronts of row indices: the first holds the rows no other row dominates, and so on. O(n^2 k)."""
    F = np.asarray(objectives, dtype=float)
    n = len(F)
    better = (F[:, None, :] <= F[None, :, :]).all(-1) & (F[:, None, :] < F[None, :, :]).any(-1)  # i dominates j
    count = better.sum(0)                                          # how many dominate j
    fronts, current = [], [i for i in range(n) if count[i] == 0]
    while current:
        fronts.append(current)
        nxt = []
        for i in current:
            for j in np.flatnonzero(better[i]):
                count[j] -= 1
                if count[j] == 0:
                    nxt.append(int(j))
        current = nxt
    return fronts


def crowding_distance(objectives: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance of each row within its front (the extremes get infinity)."""
    F = np.asarray(objectives, dtype=float)
    n, k = F.shape
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for m in range(k):
        order = np.argsort(F[:, m], kind="stable")
        span = F[order[-1], m] - F[order[0], m]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span > 0:
            dist[order[1:-1]] += (F[order[2:], m] - F[order[:-2], m]) / span
    return dist


def nsga2(evaluate, choices: list[list], *, population: int = 32, generations: int = 20, seed: int = 0,
          initial: list[tuple] | None = None, canonical=None, mutation: float | None = None):
    """NSGA-II over discrete genomes (tuples of choice indices); minimises every objective.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(list of genomes) -> array (n, k)`` of objectives; each genome is evaluated once (cached).
    choices : list of list
        The choices of each gene; a genome holds one index per gene.
    population, generations, seed :
        Population size, generations, the random seed.
    initial : list of tuple, optional
        Genomes to start from (the rest are drawn at random).
    canonical : callable, optional
        Maps a genome to its canonical form (e.g. inactive genes zeroed), so equal subnets are one genome.
    mutation : float, optional
        Per-gene mutation probability (default 1 / number of genes).

    Returns
    -------
    (genomes, objectives)
        The non-dominated genomes of everything evaluated, and their objectives (n, k).
    """
    rng = random.Random(seed)
    canon = canonical or tuple
    n_genes = len(choices)
    p_mut = mutation if mutation is not None else 1.0 / n_genes
    cache: dict[tuple, np.ndarray] = {}

    def score(genomes):
        new = [g for g in dict.fromkeys(genomes) if g not in cache]
        if new:
            for g, f in zip(new, np.asarray(evaluate(new), dtype=float)):
                cache[g] = f
        return np.stack([cache[g] for g in genomes])

    def random_genome():
        return canon(tuple(rng.randrange(len(c)) for c in choices))

    pop = list(dict.fromkeys(canon(tuple(g)) for g in (initial or [])))[:population]
    tries = 0
    while len(pop) < population and tries < 50 * population:
        g = random_genome()
        tries += 1
        if g not in pop:
            pop.append(g)

    def rank_and_crowd(genomes):
        F = score(genomes)
        rank, crowd = np.zeros(len(genomes), dtype=int), np.zeros(len(genomes))
        for r, front in enumerate(non_dominated_sort(F)):
            rank[front] = r
            crowd[front] = crowding_distance(F[front])
        return rank, crowd

    for _ in range(generations):
        rank, crowd = rank_and_crowd(pop)

        def tournament():
            i, j = rng.randrange(len(pop)), rng.randrange(len(pop))
            return pop[i] if (rank[i], -crowd[i]) <= (rank[j], -crowd[j]) else pop[j]

        children = []
        tries = 0
        while len(children) < population and tries < 50 * population:
            tries += 1
            a, b = tournament(), tournament()
            child = [a[i] if rng.random() < 0.5 else b[i] for i in range(n_genes)]        # uniform crossover
            child = [rng.randrange(len(choices[i])) if rng.random() < p_mut else g for i, g in enumerate(child)]
            child = canon(tuple(child))
            if child not in pop and child not in children:
                children.append(child)
        merged = pop + children
        rank, crowd = rank_and_crowd(merged)
        order = sorted(range(len(merged)), key=lambda i: (rank[i], -crowd[i]))   # elitist survival
        pop = [merged[i] for i in order[:population]]

    everything = list(cache)
    F = np.stack([cache[g] for g in everything])
    front = non_dominated_sort(F)[0]
    return [everything[i] for i in front], F[front]


# -- predictors ------------------------------------------------------------------------------------------

def genome_features(net: Supernet, genome: dict) -> np.ndarray:
    """Per encoder its depth; per block (zero when inactive) heads and width as fractions, int8 and int4 flags."""
    feats = [genome["depth"][e] for e in net.encoders]
    for gene, on, heads, widths in zip(genome["blocks"], net.active(genome), net.head_choices, net.width_choices):
        feats += [on * gene["heads"] / heads[-1], on * gene["d_ff"] / widths[-1],
                  on * (gene["bits"] == 8), on * (gene["bits"] == 4)]
    return np.asarray(feats, dtype=float)


def _predictor():
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), Ridge(alpha=1.0))


def measure_latency(net: Supernet, genome: dict, batch_size: int = 1, reps: int = 5) -> float:
    """CPU seconds of one forward of the extracted subnet at ``batch_size`` (median of ``reps``)."""
    est = net.estimator
    x = torch.zeros(batch_size, est.lookback, est.n_features_in_)
    n_static = est.static_encoder_.n_channels
    static = torch.zeros(batch_size, n_static) if n_static else None
    return cpu_latency(net.extract(genome), x, reps=reps, static=static)


# -- the search ------------------------------------------------------------------------------------------

@dataclass
class SimQResult:
    """The outcome of :func:`simq_nas`.

    ``pareto``: one dict per Pareto-optimal subnet (``genome``, predicted and measured
    ``val_mse`` and ``latency_s``, ``size_bits``, ``size_ratio``), sorted by size;
    ``chosen``: the index of the extracted one; ``estimator``: that subnet as a fitted
    estimator; ``supernet``: the trained supernet (``supernet.extract_estimator(genome)``
    gives any other member); ``samples``: the measured training set of the predictors;
    ``predictor_r2``: their fit on it.
    """

    pareto: list[dict]
    chosen: int
    estimator: object
    supernet: Supernet
    samples: list[dict] = field(default_factory=list)
    predictor_r2: dict = field(default_factory=dict)

    def extract(self, i: int):
        """The i-th Pareto subnet as a fitted estimator."""
        return self.supernet.extract_estimator(self.pareto[i]["genome"], {"method": "simq_nas"})


def simq_nas(estimator, df, *, net: Supernet | None = None, epochs: int = 2, n_samples: int = 32,
             population: int = 32, generations: int = 20, latency_batch: int = 1, max_size: float = 0.5,
             max_latency: float | None = None, bits=(32, 8, 4), seed: int = 0) -> SimQResult:
    """Search subnets and bit-widths of a fitted estimator's network; return the Pareto set and the chosen subnet.

    Parameters
    ----------
    estimator : fitted BaseForecaster
        With full-attention/FFN encoders (Gateformer, PV-Client).
    df : DataFrame
        Training data with the fit columns; its validation part (``val_size``) scores the subnets.
    net : Supernet, optional
        A trained supernet of this estimator (from :func:`~tsformers.compress.supernet.supernet`);
        by default one is trained here for ``epochs`` epochs with the ``bits`` choices.
    n_samples : int, default=32
        Subnets measured to fit the accuracy and latency predictors.
    population, generations : int
        NSGA-II's.
    latency_batch : int, default=1
        The batch size at which CPU latency is measured.
    max_size : float, default=0.5
        The chosen subnet's size (parameter bits) as a fraction of the original network's at most
        (when no Pareto subnet is that small: a warning, and the smallest is chosen).
    max_latency : float, optional
        And its measured latency (seconds) at most.
    seed : int, default=0

    Returns
    -------
    SimQResult
    """
    net = net if net is not None else supernet(estimator, df, epochs=epochs, bits=bits)
    rng = random.Random(seed)
    full = net.max_genome()
    full_bits = net.size_bits(full)
    genomes = [full, net.min_genome()] + [net.sample(rng) for _ in range(max(0, n_samples - 2))]
    samples = []
    for g in genomes:
        samples.append({"genome": g, "val_mse": net.evaluate(g, net.val_batch),
                        "latency_s": measure_latency(net, g, latency_batch), "size_bits": net.size_bits(g)})
    X = np.stack([genome_features(net, s["genome"]) for s in samples])
    acc, lat = _predictor(), _predictor()
    y_acc = np.log([s["val_mse"] for s in samples])
    y_lat = np.log([s["latency_s"] for s in samples])
    acc.fit(X, y_acc)
    lat.fit(X, y_lat)

    def evaluate(codes):
        gs = [net.decode(c) for c in codes]
        feats = np.stack([genome_features(net, g) for g in gs])
        return np.stack([np.exp(acc.predict(feats)), np.exp(lat.predict(feats)),
                         [net.size_bits(g) / full_bits for g in gs]], axis=1)

    codes, objectives = nsga2(evaluate, net.gene_choices(), population=population, generations=generations,
                              seed=seed, initial=[net.encode(s["genome"]) for s in samples],
                              canonical=lambda c: net.encode(net.decode(c)))
    pareto = []
    for c, (p_mse, p_lat, ratio) in zip(codes, objectives):
        g = net.decode(c)
        pareto.append({"genome": g, "predicted_val_mse": float(p_mse), "predicted_latency_s": float(p_lat),
                       "val_mse": net.evaluate(g, net.val_batch), "latency_s": measure_latency(net, g, latency_batch),
                       "size_bits": net.size_bits(g), "size_ratio": float(ratio)})
    pareto.sort(key=lambda p: (p["size_bits"], p["val_mse"]))
    fits = [i for i, p in enumerate(pareto) if p["size_ratio"] <= max_size
            and (max_latency is None or p["latency_s"] <= max_latency)]
    if fits:
        chosen = min(fits, key=lambda i: pareto[i]["val_mse"])
    else:
        import warnings

        chosen = 0
        warnings.warn(f"no Pareto subnet within max_size={max_size} and max_latency={max_latency} (the "
                      f"smallest is {pareto[0]['size_ratio']:.3f} of the original: parameters outside the "
                      f"encoders are not in the search space); extracting the smallest.", UserWarning, stacklevel=2)
    r2 = {"val_mse": float(acc.score(X, y_acc)), "latency": float(lat.score(X, y_lat))}
    best = pareto[chosen]
    est = net.extract_estimator(best["genome"], {"method": "simq_nas", "val_mse": best["val_mse"],
                                                 "latency_s": best["latency_s"], "size_ratio": best["size_ratio"],
                                                 "latency_batch": latency_batch})
    return SimQResult(pareto=pareto, chosen=chosen, estimator=est, supernet=net, samples=samples, predictor_r2=r2)
