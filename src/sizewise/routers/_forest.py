"""Evaluate a LightGBM regression model from its text model string, in numpy/pure Python.

Why: importing lightgbm takes 1-2 s (it pulls in scikit-learn and pandas), which would break the
"router loads in under a second" promise; training still uses LightGBM itself. Supports what
``gbdt`` trains: numerical splits, LightGBM's missing-value rules, summed leaf values.
"""

from __future__ import annotations

import numpy as np

_K_ZERO = 1e-35  # LightGBM's kZeroThreshold


class Forest:
    """The trees of one LightGBM model string; ``predict(x)`` equals ``Booster.predict(x)`` for regression."""

    def __init__(self, text: str) -> None:
        if not text.startswith("tree"):
            raise ValueError("not a LightGBM model string")
        self.n_features = -1
        blocks: list[dict[str, str]] = []
        for line in text.splitlines():
            if line.startswith("max_feature_idx=") and not blocks:
                self.n_features = int(line.split("=", 1)[1]) + 1
            elif line.startswith("Tree="):
                blocks.append({})
            elif line.startswith("end of trees"):
                break
            elif blocks and "=" in line:
                key, value = line.split("=", 1)
                blocks[-1][key] = value
        try:
            self.trees = [self._parse(block) for block in blocks]
        except (KeyError, ValueError, IndexError) as error:
            raise ValueError(f"bad LightGBM tree ({error})") from None
        if self.n_features < 1 or not self.trees:
            raise ValueError("LightGBM model string has no trees")

    @staticmethod
    def _parse(raw: dict[str, str]) -> dict[str, list[float] | list[int]]:
        if int(raw.get("num_cat", "0")) != 0:
            raise ValueError("categorical splits are not supported")
        leaves = [float(v) for v in raw["leaf_value"].split()]
        if int(raw["num_leaves"]) == 1:
            return {"leaf": leaves, "feature": [], "threshold": [], "decision": [], "left": [], "right": []}
        return {
            "leaf": leaves,
            "feature": [int(v) for v in raw["split_feature"].split()],
            "threshold": [float(v) for v in raw["threshold"].split()],
            "decision": [int(v) for v in raw["decision_type"].split()],
            "left": [int(v) for v in raw["left_child"].split()],
            "right": [int(v) for v in raw["right_child"].split()],
        }

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Sum of leaf values over trees for each row of ``x`` (shape ``(n, n_features)``)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} features, got shape {x.shape}")
        if len(x) <= 8:  # a pure-Python walk is faster than numpy for a few rows
            return np.array([self._predict_row(row.tolist()) for row in x])
        return self._predict_batch(x)

    def _predict_row(self, row: list[float]) -> float:
        total = 0.0
        for tree in self.trees:
            feature, threshold, decision = tree["feature"], tree["threshold"], tree["decision"]
            left, right = tree["left"], tree["right"]
            node = 0 if feature else -1
            while node >= 0:
                value = row[int(feature[node])]
                kind = int(decision[node])
                missing = (kind >> 2) & 3
                if value != value and missing != 2:  # NaN without NaN-handling counts as zero
                    value = 0.0
                if (missing == 1 and abs(value) <= _K_ZERO) or (missing == 2 and value != value):
                    node = int(left[node]) if kind & 2 else int(right[node])
                else:
                    node = int(left[node]) if value <= threshold[node] else int(right[node])
            total += tree["leaf"][~node]
        return total

    def _predict_batch(self, x: np.ndarray) -> np.ndarray:
        rows = np.arange(len(x))
        total = np.zeros(len(x))
        for tree in self.trees:
            if not tree["feature"]:
                total += tree["leaf"][0]
                continue
            feature = np.asarray(tree["feature"])
            threshold = np.asarray(tree["threshold"])
            decision = np.asarray(tree["decision"])
            left, right = np.asarray(tree["left"]), np.asarray(tree["right"])
            node = np.zeros(len(x), dtype=np.int64)
            active = node >= 0
            while active.any():
                idx = node[active]
                value = x[rows[active], feature[idx]]
                missing = (decision[idx] >> 2) & 3
                value = np.where(np.isnan(value) & (missing != 2), 0.0, value)
                default = ((missing == 1) & (np.abs(value) <= _K_ZERO)) | ((missing == 2) & np.isnan(value))
                go_left = np.where(default, (decision[idx] & 2) > 0, value <= threshold[idx])
                node[active] = np.where(go_left, left[idx], right[idx])
                active = node >= 0
            total += np.asarray(tree["leaf"])[~node]
        return total
