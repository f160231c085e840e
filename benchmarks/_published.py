"""Published long-horizon results at lookback 96 (MSE, MAE on the scaled data), for the tables next to ours.

``ITRANSFORMER_TABLE``: the iTransformer paper's full results (Liu et al., "iTransformer", ICLR 2024,
Table 10, lookback 96), for iTransformer and the peers it reran under the same protocol (PatchTST,
DLinear, TimesNet). Checked here against a public transcription of that table (OLinear's Table 15,
which copies these columns). Exchange: DLinear and TimesNet only, checked against two later papers'
lookback-96 tables; the iTransformer and PatchTST Exchange cells could not be checked against a copy
here and are left out rather than quoted from memory. Gateformer's own paper table was not recoverable
(an image), so it has no published row.
"""
from __future__ import annotations

SOURCE = "iTransformer paper (ICLR 2024), Table 10 full results, lookback 96"
SOURCE_EXCHANGE = "iTransformer paper Table 10 (lookback 96), as reproduced in later papers' tables"

# model -> dataset -> horizon -> (mse, mae)
ITRANSFORMER_TABLE = {
    "iTransformer": {
        "ETTh1": {96: (0.386, 0.405), 192: (0.441, 0.436), 336: (0.487, 0.458), 720: (0.503, 0.491)},
        "ETTh2": {96: (0.297, 0.349), 192: (0.380, 0.400), 336: (0.428, 0.432), 720: (0.427, 0.445)},
        "ETTm1": {96: (0.334, 0.368), 192: (0.377, 0.391), 336: (0.426, 0.420), 720: (0.491, 0.459)},
        "ETTm2": {96: (0.180, 0.264), 192: (0.250, 0.309), 336: (0.311, 0.348), 720: (0.412, 0.407)},
        "weather": {96: (0.174, 0.214), 192: (0.221, 0.254), 336: (0.278, 0.296), 720: (0.358, 0.349)},
    },
    "PatchTST": {
        "ETTh1": {96: (0.414, 0.419), 192: (0.460, 0.445), 336: (0.501, 0.466), 720: (0.500, 0.488)},
        "ETTh2": {96: (0.302, 0.348), 192: (0.388, 0.400), 336: (0.426, 0.433), 720: (0.431, 0.446)},
        "ETTm1": {96: (0.329, 0.367), 192: (0.367, 0.385), 336: (0.399, 0.410), 720: (0.454, 0.439)},
        "ETTm2": {96: (0.175, 0.259), 192: (0.241, 0.302), 336: (0.305, 0.343), 720: (0.402, 0.400)},
        "weather": {96: (0.177, 0.218), 192: (0.225, 0.259), 336: (0.278, 0.297), 720: (0.354, 0.348)},
    },
    "DLinear": {
        "ETTh1": {96: (0.386, 0.400), 192: (0.437, 0.432), 336: (0.481, 0.459), 720: (0.519, 0.516)},
        "ETTh2": {96: (0.333, 0.387), 192: (0.477, 0.476), 336: (0.594, 0.541), 720: (0.831, 0.657)},
        "ETTm1": {96: (0.345, 0.372), 192: (0.380, 0.389), 336: (0.413, 0.413), 720: (0.474, 0.453)},
        "ETTm2": {96: (0.193, 0.292), 192: (0.284, 0.362), 336: (0.369, 0.427), 720: (0.554, 0.522)},
        "weather": {96: (0.196, 0.255), 192: (0.237, 0.296), 336: (0.283, 0.335), 720: (0.345, 0.381)},
        "exchange": {96: (0.088, 0.218), 192: (0.176, 0.315), 336: (0.313, 0.427), 720: (0.839, 0.695)},
    },
    "TimesNet": {
        "ETTh1": {96: (0.384, 0.402), 192: (0.436, 0.429), 336: (0.491, 0.469), 720: (0.521, 0.500)},
        "ETTh2": {96: (0.340, 0.374), 192: (0.402, 0.414), 336: (0.452, 0.452), 720: (0.462, 0.468)},
        "ETTm1": {96: (0.338, 0.375), 192: (0.374, 0.387), 336: (0.410, 0.411), 720: (0.478, 0.450)},
        "ETTm2": {96: (0.187, 0.267), 192: (0.249, 0.309), 336: (0.321, 0.351), 720: (0.408, 0.403)},
        "weather": {96: (0.172, 0.220), 192: (0.219, 0.261), 336: (0.280, 0.306), 720: (0.365, 0.359)},
        "exchange": {96: (0.107, 0.234), 192: (0.226, 0.344), 336: (0.367, 0.448), 720: (0.964, 0.746)},
    },
}
PEERS = list(ITRANSFORMER_TABLE)

# Client (the PV-Client paper's LTSF model), its repository's result file (design/architectures.md §2.3).
CLIENT = {"ETTh1": {96: (0.392, 0.409), 192: (0.445, 0.436), 336: (0.482, 0.456), 720: (0.489, 0.480)},
          "ETTh2": {96: (0.305, 0.353), 192: (0.382, 0.401), 336: (0.434, 0.445), 720: (0.424, 0.444)},
          "ETTm1": {96: (0.336, 0.369), 192: (0.376, 0.385), 336: (0.408, 0.407), 720: (0.477, 0.442)},
          "ETTm2": {96: (0.184, 0.267), 192: (0.252, 0.307), 336: (0.314, 0.345), 720: (0.412, 0.403)},
          "weather": {96: (0.163, 0.207), 192: (0.214, 0.253), 336: (0.271, 0.294), 720: (0.350, 0.346)},
          "exchange": {96: (0.086, 0.206), 192: (0.176, 0.299), 336: (0.330, 0.416), 720: (0.828, 0.689)}}
CLIENT_SOURCE = "daxin007/Client, result_of_Client.txt (lookback 96)"


def reference() -> dict:
    """``{(dataset, horizon): [(model, mse, mae, source), ...]}`` for every published cell."""
    out: dict = {}
    for model, table in ITRANSFORMER_TABLE.items():
        for dataset, cells in table.items():
            for horizon, (mse, mae) in cells.items():
                source = SOURCE_EXCHANGE if dataset == "exchange" else SOURCE
                out.setdefault((dataset, horizon), []).append((model, mse, mae, source))
    for dataset, cells in CLIENT.items():
        for horizon, (mse, mae) in cells.items():
            out.setdefault((dataset, horizon), []).append(("Client", mse, mae, CLIENT_SOURCE))
    return out
