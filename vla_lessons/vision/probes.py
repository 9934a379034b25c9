"""Linear probes: what do frozen patch features know about "what" and "where"?

Introduced in lesson 04.

A linear probe fits only a linear map on top of frozen features; whatever it can read out, the
features hold in a linearly accessible form. Two probes:

* **what** -- a linear classifier (multinomial logistic regression) of the target object's colour
  or shape from the **mean-pooled** patch features (D numbers per image). Pooling throws away
  where each patch was, so only "what is in the image" survives.
* **where** -- a linear regressor (ridge) of an object's table (x, y) from an **attention-free
  linear map over the patch grid**: one linear detector ``w . f_p`` shared by all patches, whose
  outputs are summed with weights that are fixed functions of each patch's image coordinates
  (u, v): 1, u, v, uv, u^2, v^2 (the quadratic terms absorb the camera's perspective). As the
  map is linear, this is ridge regression on :func:`coordinate_pooled` features (6 x D numbers).
  :func:`flattened` (N x D numbers, a separate weight for every patch) is the unshared
  alternative; it needs far more labelled scenes, since each patch's detector is learnt from
  the few scenes with an object in that patch.

What makes the comparison fair between SigLIP, DINOv2 and their fusion:

1. the same frozen images, the same train/test split, the same targets for every encoder;
2. features are standardised with the training split's mean and std, so one regularisation
   grid means the same thing for every encoder whatever the scale of its features;
3. the regularisation strength is chosen per encoder by k-fold cross-validation on the training
   split only (the fused features are wider; a tuned penalty stops width alone from winning
   through over-fitting or losing through it), and the test split is used once;
4. a control row: the same architecture with random weights, which shows what the
   architecture (patch embedding + position embedding) gives before any training -- colour,
   for one, is nearly linear in the mean pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .encoders import patch_tokens

#: Regularisation strengths tried by cross-validation (after standardisation).
CLASSIFIER_L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)
RIDGE_ALPHA_GRID = (1e-1, 1e0, 1e1, 1e2, 1e3, 1e4)


@torch.no_grad()
def encoder_features(model, pixel_values: torch.Tensor, feature_layer: int = -2,
                     batch_size: int = 64) -> torch.Tensor:
    """Frozen patch features of a dataset: (B, 3, S, S) float32 -> (B, N, D) float32.

    Introduced in lesson 04. ``model`` is an encoder (see
    :func:`~vla_lessons.vision.encoders.patch_tokens`) or a
    :class:`~vla_lessons.vision.fusion.FusedBackbone` fed its (B, 6, S, S) input.
    """
    from .fusion import FusedBackbone

    was_training = model.training
    model.eval()
    chunks = []
    for start in range(0, pixel_values.shape[0], batch_size):
        batch = pixel_values[start:start + batch_size]
        if isinstance(model, FusedBackbone):
            chunks.append(model(batch))
        else:
            chunks.append(patch_tokens(model, batch, feature_layer))
    model.train(was_training)
    return torch.cat(chunks)


def mean_pooled(features: torch.Tensor) -> torch.Tensor:
    """(B, N, D) -> (B, D): the average over patches (the "what" probe's input).

    Introduced in lesson 04.
    """
    return features.mean(dim=1)


def coordinate_pooled(features: torch.Tensor) -> torch.Tensor:
    """(B, N, D) -> (B, 6 * D): patch features summed with weights 1, u, v, uv, u^2, v^2 / N.

    Introduced in lesson 04. (u, v) in [-1, 1] are the patch centres' image coordinates
    (u to the right, v down) on the square grid of N = g x g patches. A linear map of these
    features is a per-patch linear detector, shared across the grid, combined with the patch
    coordinates: the "where" probe's input.
    """
    b, n, d = features.shape
    g = math.isqrt(n)
    if g * g != n:
        raise ValueError(f"features must come from a square patch grid, got {n} patches")
    centres = (torch.arange(g, dtype=features.dtype) + 0.5) / g * 2 - 1
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    u, v = u.reshape(-1), v.reshape(-1)
    weights = torch.stack([torch.ones_like(u), u, v, u * v, u * u, v * v])  # (6, N)
    return torch.einsum("kn,bnd->bkd", weights, features).reshape(b, 6 * d) / n


def flattened(features: torch.Tensor) -> torch.Tensor:
    """(B, N, D) -> (B, N * D): every patch's features side by side (the "where" probe's input).

    Introduced in lesson 04.
    """
    return features.reshape(features.shape[0], -1)


@dataclass
class ProbeResult:
    """Outcome of a linear probe on a held-out test split.

    Introduced in lesson 04. ``score`` is the test accuracy (classifier) or test R^2 averaged
    over the target columns (regressor); ``baseline`` the same score for a probe that ignores
    the features (the training split's majority class; its mean target, R^2 about 0);
    ``mean_error`` and ``baseline_error`` the mean Euclidean errors of a regressor and of that
    mean-target guess, in the targets' units (NaN for a classifier); ``penalty`` the chosen
    regularisation; ``predictions`` the test predictions.
    """

    score: float
    baseline: float
    train_score: float
    mean_error: float
    baseline_error: float
    penalty: float
    n_train: int
    n_test: int
    predictions: np.ndarray


def _as_float64(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).to(torch.float64)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contain NaN or inf")
    return t


def _split(n: int, train_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_train = int(round(train_fraction * n))
    if n_train < 2 or n - n_train < 1:
        raise ValueError(f"{n} samples are too few to split {train_fraction:.0%} / rest")
    return order[:n_train], order[n_train:]


def _standardise(train: torch.Tensor, *others: torch.Tensor):
    mean, std = train.mean(dim=0), train.std(dim=0).clamp_min(1e-6)
    return [(x - mean) / std for x in (train, *others)]


def _fit_logistic(x: torch.Tensor, y: torch.Tensor, n_classes: int, l2: float) -> torch.Tensor:
    """Multinomial logistic regression by L-BFGS; returns weights (D + 1, C), bias last."""
    xb = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    w = torch.zeros(xb.shape[1], n_classes, dtype=x.dtype, requires_grad=True)
    optimizer = torch.optim.LBFGS([w], lr=1.0, max_iter=200, tolerance_grad=1e-9, tolerance_change=1e-12,
                                  history_size=20, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(xb @ w, y) + l2 * (w[:-1] ** 2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach()


def _newton(objective, grad_hess, w: torch.Tensor, max_iter: int, tol: float) -> torch.Tensor:
    """Minimise a smooth convex ``objective`` from ``w`` by damped Newton steps with backtracking.

    ``grad_hess(w)`` returns the gradient (same shape as ``w``) and the Hessian (w.numel() square).
    """
    loss = objective(w)
    for _ in range(max_iter):
        grad, hess = grad_hess(w)
        step = torch.linalg.solve(hess, grad.reshape(-1)).reshape(w.shape)
        decrement = float((grad * step).sum())                      # the squared Newton decrement
        if decrement < tol:
            break
        t = 1.0
        while True:
            candidate = w - t * step
            new_loss = objective(candidate)
            if new_loss <= loss - 0.25 * t * decrement or t < 1e-8:
                break
            t /= 2
        w, loss = candidate, new_loss
    return w


def _fit_logistic_newton(x: torch.Tensor, y: torch.Tensor, n_classes: int, l2: float,
                         max_iter: int = 50, tol: float = 1e-12) -> torch.Tensor:
    """The same problem as :func:`_fit_logistic`, solved by Newton's method; weights (D + 1, C).

    The problem is convex and small (D of a few hundred), so a handful of exact Newton steps reach
    the optimum where L-BFGS may use all its 200 iterations on badly conditioned features.

    Two classes: the softmax only sees ``d = w_1 - w_0``, and the symmetric penalty
    ``l2 (|w_0|^2 + |w_1|^2)`` is smallest at ``w_1 = -w_0 = d / 2``; so this solves the binary
    logistic regression in ``d`` with penalty ``l2 / 2 |d|^2`` (a (D+1)-square Hessian instead
    of a 2(D+1)-square one) and returns ``(-d/2, d/2)``. More classes: the full Hessian, whose
    null direction "the same constant added to every bias" gets a 1e-9 damping (the gradient is
    zero along it).
    """
    n = len(x)
    xb = torch.cat([x, torch.ones(n, 1, dtype=x.dtype)], dim=1)                 # (n, k)
    k = xb.shape[1]
    mask = torch.ones(k, dtype=x.dtype)
    mask[-1] = 0                                                               # the bias is not penalised
    if n_classes == 2:
        target = y.to(x.dtype)

        def objective(d):
            return (torch.nn.functional.binary_cross_entropy_with_logits(xb @ d, target)
                    + 0.5 * l2 * (d[:-1] ** 2).sum())

        def grad_hess(d):
            p = torch.sigmoid(xb @ d)
            hess = xb.T @ ((p * (1 - p))[:, None] * xb) / n + torch.diag(l2 * mask + 1e-12)
            return xb.T @ (p - target) / n + l2 * mask * d, hess

        d = _newton(objective, grad_hess, torch.zeros(k, dtype=x.dtype), max_iter, tol)
        return torch.stack([-d / 2, d / 2], dim=1)

    onehot = torch.nn.functional.one_hot(y, n_classes).to(x.dtype)             # (n, C)
    # parameters in class-major order: w.T, shape (C, k)
    def objective(wt):
        return torch.nn.functional.cross_entropy(xb @ wt.T, y) + l2 * (wt[:, :-1] ** 2).sum()

    def grad_hess(wt):
        p = torch.softmax(xb @ wt.T, dim=1)
        s = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]                # (n, C, C)
        hess = torch.empty(n_classes, k, n_classes, k, dtype=x.dtype)
        for a in range(n_classes):
            for b in range(a, n_classes):
                block = xb.T @ (s[:, a, b, None] * xb) / n
                hess[a, :, b], hess[b, :, a] = block, block
        hess = hess.reshape(n_classes * k, n_classes * k) + torch.diag((2 * l2 * mask + 1e-9).repeat(n_classes))
        return (p - onehot).T @ xb / n + 2 * l2 * mask * wt, hess

    return _newton(objective, grad_hess, torch.zeros(n_classes, k, dtype=x.dtype), max_iter, tol).T


#: Solvers of the logistic probe (:func:`fit_linear_classifier`'s ``solver``).
LOGISTIC_SOLVERS = {"lbfgs": _fit_logistic, "newton": _fit_logistic_newton}


def _predict_logistic(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1) @ w).argmax(dim=1)


def _folds(n: int, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    edges = np.linspace(0, n, k + 1).astype(int)
    idx = np.arange(n)
    return [(np.concatenate([idx[:a], idx[b:]]), idx[a:b]) for a, b in zip(edges[:-1], edges[1:])]


def fit_linear_classifier(features, labels, *, train_fraction: float = 0.8, l2_grid=CLASSIFIER_L2_GRID,
                          folds: int = 3, seed: int = 0, solver: str = "lbfgs") -> ProbeResult:
    """The "what" probe: logistic regression from features (M, D) to class labels (M,).

    Introduced in lesson 04. Features are standardised on the training split; the L2 penalty
    is picked from ``l2_grid`` by ``folds``-fold cross-validation on the training split; the
    score is the accuracy on the held-out split (``1 - train_fraction`` of the samples, chosen
    by ``seed``). ``solver`` is ``"lbfgs"`` (the default) or ``"newton"`` (the same optimum,
    reached in a few exact steps: several times faster on a few hundred features, and closer
    to the optimum when the features are badly conditioned).
    """
    if solver not in LOGISTIC_SOLVERS:
        raise ValueError(f"solver must be one of {sorted(LOGISTIC_SOLVERS)}, got {solver!r}")
    fit = LOGISTIC_SOLVERS[solver]
    x = _as_float64(features, "features")
    y = torch.as_tensor(np.asarray(labels)).long()
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"features must be (M, D) and labels (M,), got {tuple(x.shape)} and {tuple(y.shape)}")
    n_classes = int(y.max()) + 1
    train, test = _split(len(x), train_fraction, seed)
    x_train, x_test = _standardise(x[train], x[test])
    y_train = y[train]
    best_l2, best_acc = l2_grid[0], -1.0
    for l2 in l2_grid:
        accs = []
        for fit_idx, val_idx in _folds(len(train), folds):
            w = fit(x_train[fit_idx], y_train[fit_idx], n_classes, l2)
            accs.append(float((_predict_logistic(w, x_train[val_idx]) == y_train[val_idx]).double().mean()))
        if np.mean(accs) > best_acc:
            best_l2, best_acc = l2, float(np.mean(accs))
    w = fit(x_train, y_train, n_classes, best_l2)
    pred = _predict_logistic(w, x_test)
    majority = int(torch.bincount(y_train).argmax())
    return ProbeResult(
        score=float((pred == y[test]).double().mean()),
        baseline=float((y[test] == majority).double().mean()),
        train_score=float((_predict_logistic(w, x_train) == y_train).double().mean()),
        mean_error=float("nan"), baseline_error=float("nan"), penalty=best_l2,
        n_train=len(train), n_test=len(test), predictions=pred.numpy(),
    )


def _ridge_predictions(x_fit: torch.Tensor, y_fit: torch.Tensor, x_new: torch.Tensor,
                       alphas) -> list[torch.Tensor]:
    """Ridge regression with an intercept for several penalties at once; one prediction per alpha.

    One eigendecomposition serves every alpha: of X^T X (primal, D <= n) or of X X^T (dual,
    D > n, where w = X^T (X X^T + alpha I)^-1 y).
    """
    x_mean, y_mean = x_fit.mean(dim=0), y_fit.mean(dim=0)
    xc, yc, xn = x_fit - x_mean, y_fit - y_mean, x_new - x_mean
    n, d = xc.shape
    if d <= n:
        evals, vecs = torch.linalg.eigh(xc.T @ xc)
        proj, left = vecs.T @ (xc.T @ yc), xn @ vecs
    else:
        evals, vecs = torch.linalg.eigh(xc @ xc.T)
        proj, left = vecs.T @ yc, (xn @ xc.T) @ vecs
    evals = evals.clamp_min(0)
    return [left @ (proj / (evals + alpha)[:, None]) + y_mean for alpha in alphas]


def _r2(pred: torch.Tensor, target: torch.Tensor) -> float:
    ss_res = ((pred - target) ** 2).sum(dim=0)
    ss_tot = ((target - target.mean(dim=0)) ** 2).sum(dim=0).clamp_min(1e-12)
    return float((1 - ss_res / ss_tot).mean())


def fit_linear_regressor(features, targets, *, train_fraction: float = 0.8, alpha_grid=RIDGE_ALPHA_GRID,
                         folds: int = 3, seed: int = 0) -> ProbeResult:
    """The "where" probe: ridge regression from features (M, D) to targets (M, T), e.g. (x, y).

    Introduced in lesson 04. Same protocol as :func:`fit_linear_classifier`: standardised
    features, ridge penalty from ``alpha_grid`` by cross-validation on the training split,
    R^2 (mean over target columns) and mean Euclidean error on the held-out split.
    """
    x = _as_float64(features, "features")
    y = _as_float64(targets, "targets")
    if y.ndim == 1:
        y = y[:, None]
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise ValueError(f"features must be (M, D) and targets (M, T), got {tuple(x.shape)} and {tuple(y.shape)}")
    train, test = _split(len(x), train_fraction, seed)
    x_train, x_test = _standardise(x[train], x[test])
    y_train = y[train]
    cv = np.zeros(len(alpha_grid))
    for f, v in _folds(len(train), folds):
        preds = _ridge_predictions(x_train[f], y_train[f], x_train[v], alpha_grid)
        cv += [_r2(p, y_train[v]) for p in preds]
    best_alpha = alpha_grid[int(np.argmax(cv))]
    pred, train_pred = _ridge_predictions(x_train, y_train, torch.cat([x_test, x_train]), [best_alpha])[0].split(
        [len(test), len(train)])
    guess = y_train.mean(dim=0).expand_as(y[test])
    return ProbeResult(
        score=_r2(pred, y[test]), baseline=_r2(guess, y[test]), train_score=_r2(train_pred, y_train),
        mean_error=float(torch.linalg.norm(pred - y[test], dim=1).mean()),
        baseline_error=float(torch.linalg.norm(guess - y[test], dim=1).mean()), penalty=best_alpha,
        n_train=len(train), n_test=len(test), predictions=pred.numpy(),
    )


@dataclass
class ProbeSummary:
    """Several probes of one kind (one per colour or shape), averaged.

    Introduced in lesson 04. ``score``, ``baseline``, ``mean_error`` and ``baseline_error`` are
    the means over ``per_column`` (see :class:`ProbeResult`); ``columns`` names the probes.
    """

    score: float
    baseline: float
    mean_error: float
    baseline_error: float
    columns: list[str]
    per_column: list[ProbeResult]


def _summary(results: list[ProbeResult], columns: list[str]) -> ProbeSummary:
    if not results:
        raise ValueError("no column had enough labelled samples to fit a probe")
    mean = lambda key: float(np.mean([getattr(r, key) for r in results]))  # noqa: E731
    return ProbeSummary(mean("score"), mean("baseline"), mean("mean_error"), mean("baseline_error"),
                        columns, results)


def what_probe(pooled, present, names=None, **kwargs) -> ProbeSummary:
    """"What": one binary linear classifier per column of ``present`` (N, K), e.g. "is there a
    red object?", from mean-pooled features (N, D); mean test accuracy over the K questions.

    Introduced in lesson 04. Columns where every scene gives the same answer are skipped.
    ``kwargs`` go to :func:`fit_linear_classifier`.
    """
    present = np.asarray(present)
    names = names or [str(k) for k in range(present.shape[1])]
    results, used = [], []
    for k in range(present.shape[1]):
        if len(np.unique(present[:, k])) < 2:
            continue
        results.append(fit_linear_classifier(pooled, present[:, k], **kwargs))
        used.append(names[k])
    return _summary(results, used)


def where_probe(features, positions, names=None, min_samples: int = 30, **kwargs) -> ProbeSummary:
    """"Where": one ridge regressor per column of ``positions`` (N, K, 2), e.g. "where is the red
    object?", from per-image features (N, D') -- :func:`coordinate_pooled` or :func:`flattened`
    patch features -- on the scenes where that column is not NaN.

    Introduced in lesson 04. Mean test R^2 and mean error (metres) over the K columns; columns
    with fewer than ``min_samples`` labelled scenes are skipped. ``kwargs`` go to
    :func:`fit_linear_regressor`.
    """
    positions = np.asarray(positions)
    features = features if isinstance(features, torch.Tensor) else torch.as_tensor(np.asarray(features))
    names = names or [str(k) for k in range(positions.shape[1])]
    results, used = [], []
    for k in range(positions.shape[1]):
        rows = np.flatnonzero(np.isfinite(positions[:, k]).all(axis=1))
        if len(rows) < min_samples:
            continue
        results.append(fit_linear_regressor(features[torch.from_numpy(rows)], positions[rows, k], **kwargs))
        used.append(names[k])
    return _summary(results, used)


def pixel_values_for(model, images) -> torch.Tensor:
    """uint8 images (B, H, W, 3) -> the input ``model`` expects (its size and normalisation).

    Introduced in lesson 04. SigLIP models get SigLIP's normalisation, DINOv2 ImageNet's, a
    :class:`~vla_lessons.vision.fusion.FusedBackbone` the stacked (B, 6, S, S) pair.
    """
    from transformers import SiglipVisionModel

    from .encoders import vision_tower
    from .fusion import FusedBackbone
    from .pixels import preprocess

    if isinstance(model, FusedBackbone):
        return model.preprocess(images)
    tower = vision_tower(model)
    encoder = "siglip" if isinstance(tower, SiglipVisionModel) else "dino"
    return preprocess(images, int(tower.config.image_size), encoder)


def probe_table(models: dict, data, feature_layer: int = -2, batch_size: int = 64,
                flat: bool = False, min_samples: int = 30) -> list[dict]:
    """Run the "what", "where" and "what + where" probes for each named model on ``data``.

    Introduced in lesson 04. ``models`` maps a row name to an encoder or a ``FusedBackbone``;
    ``data`` is a :class:`~vla_lessons.vision.data.VisionData`. Every model sees the same
    images, splits and penalty grids. One dict per model with the feature width ``dim`` and:

    * ``what_colour``, ``what_shape``: mean test accuracy of "is there a movable object of
      colour c / shape s?" from mean-pooled features (``*_baseline``: majority class);
    * ``where_r2``, ``where_cm``: test R^2 and mean error (cm) of each receptacle's (x, y) from
      coordinate-pooled features (``where_baseline_cm``: guessing the mean position); only
      when the scenes have receptacles;
    * ``bind_r2``, ``bind_cm``: the same for "where is the movable object of colour c?", which
      needs the colour (what) and the place (where) together (``bind_baseline_cm``);
    * with ``flat=True`` also ``bind_r2_flat``, ``bind_cm_flat`` from flattened features.

    Position probes skip the columns with fewer than ``min_samples`` labelled scenes.
    """
    present_colour, present_shape = data.presence("colour"), data.presence("shape")
    by_colour = data.positions("colour")
    receptacles = data.values("shape", "receptacle")
    rows = []
    for name, model in models.items():
        chunks = [encoder_features(model, pixel_values_for(model, data.images[i:i + batch_size]), feature_layer,
                                   batch_size) for i in range(0, len(data), batch_size)]
        features = torch.cat(chunks)
        pooled, coords = mean_pooled(features), coordinate_pooled(features)
        colour = what_probe(pooled, present_colour, data.colours)
        shape = what_probe(pooled, present_shape, data.shapes)
        row = {"model": name, "dim": int(features.shape[-1]),
               "what_colour": colour.score, "what_colour_baseline": colour.baseline,
               "what_shape": shape.score, "what_shape_baseline": shape.baseline}
        if receptacles:
            where = where_probe(coords, data.positions("shape", "receptacle"), receptacles, min_samples)
            row.update(where_r2=where.score, where_cm=100 * where.mean_error,
                       where_baseline_cm=100 * where.baseline_error)
        bind = where_probe(coords, by_colour, data.colours, min_samples)
        row.update(bind_r2=bind.score, bind_cm=100 * bind.mean_error, bind_baseline_cm=100 * bind.baseline_error)
        if flat:
            bind_flat = where_probe(flattened(features), by_colour, data.colours, min_samples)
            row.update(bind_r2_flat=bind_flat.score, bind_cm_flat=100 * bind_flat.mean_error)
        rows.append(row)
    return rows
