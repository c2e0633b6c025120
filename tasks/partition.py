"""Partitioners: split a centralized dataset's examples into clients.

Each returns a list with one int64 index array per client (indices into the
examples), disjoint, drawn only from `rng`.

- `by_feature`: the natural partition by a per-example client feature.
- `iid`: equal-size uniform shards.
- `power_law_sizes` + `iid_with_sizes`: client sizes from a power law
  (Pareto), labels IID (LEAF/FedProx-style unbalanced clients).
- `dirichlet`: latent Dirichlet allocation over labels (Hsu et al., 2019):
  each client draws class proportions q ~ Dir(alpha * prior) and fills its
  quota class by class; classes that run out are renormalized away.
- `pam`: Pachinko allocation (Li & McCallum, 2006) over a two-level label
  hierarchy, as TFF built its federated CIFAR-100 (Reddi et al., 2021): each
  client draws coarse-label proportions ~ Dir(alpha) and, per coarse label,
  fine-label proportions ~ Dir(beta); each example draws a coarse label and a
  fine label from them, without replacement (exhausted labels drop out).
"""

from collections.abc import Sequence

import numpy as np

PARTITIONS = ('iid', 'powerlaw', 'dirichlet', 'pam')


def by_feature(values: Sequence) -> tuple[list[str], list[np.ndarray]]:
  """Client ids (first-appearance order) and each client's example indices."""
  values = np.asarray(values)
  keys = [v.decode() if isinstance(v, bytes) else str(v) for v in values]
  order: dict[str, list[int]] = {}
  for i, k in enumerate(keys):
    order.setdefault(k, []).append(i)
  return list(order), [np.asarray(v, np.int64) for v in order.values()]


def _check(num_examples: int, num_clients: int) -> None:
  if num_clients < 1:
    raise ValueError(f'num_clients must be >= 1, got {num_clients}.')
  if num_examples < num_clients:
    raise ValueError(f'cannot split {num_examples} examples into {num_clients} '
                     'non-empty clients.')


def iid(num_examples: int, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
  _check(num_examples, num_clients)
  return [np.sort(s) for s in np.array_split(rng.permutation(num_examples), num_clients)]


def power_law_sizes(num_examples: int, num_clients: int, exponent: float,
                    rng: np.random.Generator, min_size: int = 1) -> np.ndarray:
  """Client sizes summing to `num_examples`, each >= min_size, the rest split by
  Pareto(exponent) weights (smaller exponent: heavier tail)."""
  _check(num_examples, num_clients * min_size)
  if exponent <= 0:
    raise ValueError(f'power-law exponent must be > 0, got {exponent}.')
  weights = rng.pareto(exponent, num_clients) + 1.0
  spare = num_examples - num_clients * min_size
  sizes = np.floor(weights / weights.sum() * spare).astype(np.int64)
  remainder = spare - sizes.sum()
  sizes[np.argsort(-weights)[:remainder]] += 1
  return sizes + min_size


def iid_with_sizes(sizes: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
  perm = rng.permutation(int(np.sum(sizes)))
  return [np.sort(s) for s in np.split(perm, np.cumsum(sizes)[:-1])]


def _draw_without_replacement(pools: list[list[int]], proportions: np.ndarray,
                              count: int, rng: np.random.Generator) -> list[int]:
  """`count` items from label pools: label counts ~ Multinomial(proportions),
  redrawn over the labels still holding items when a pool runs short."""
  taken: list[int] = []
  p = np.asarray(proportions, np.float64)
  while len(taken) < count:
    sizes = np.array([len(pool) for pool in pools])
    if not sizes.any():
      break
    q = np.where(sizes > 0, p, 0.0)
    q = q / q.sum() if q.sum() > 0 else (sizes > 0) / (sizes > 0).sum()
    want = rng.multinomial(count - len(taken), q)
    for label in np.flatnonzero(want):
      k = min(int(want[label]), sizes[label])
      taken.extend(pools[label][-k:] if k else [])
      del pools[label][len(pools[label]) - k:]
  return taken


def dirichlet(labels: Sequence[int], num_clients: int, alpha: float,
              rng: np.random.Generator, sizes: np.ndarray = None) -> list[np.ndarray]:
  """LDA over labels; equal client sizes unless `sizes` is given."""
  labels = np.asarray(labels, np.int64)
  _check(len(labels), num_clients)
  if alpha <= 0:
    raise ValueError(f'Dirichlet alpha must be > 0, got {alpha}.')
  classes, counts = np.unique(labels, return_counts=True)
  prior = counts / counts.sum()
  pools = [list(rng.permutation(np.flatnonzero(labels == c))) for c in classes]
  if sizes is None:
    sizes = np.full(num_clients, len(labels) // num_clients)
    sizes[: len(labels) % num_clients] += 1
  clients = []
  for size in sizes:
    q = rng.dirichlet(alpha * prior * len(classes))
    clients.append(np.sort(np.asarray(
        _draw_without_replacement(pools, q, int(size), rng), np.int64)))
  return clients


def pam(fine_labels: Sequence[int], coarse_labels: Sequence[int], num_clients: int,
        samples_per_client: int, alpha: float, beta: float,
        rng: np.random.Generator) -> list[np.ndarray]:
  """Pachinko allocation over (coarse, fine) labels."""
  fine = np.asarray(fine_labels, np.int64)
  coarse = np.asarray(coarse_labels, np.int64)
  _check(len(fine), num_clients)
  if num_clients * samples_per_client > len(fine):
    raise ValueError(f'{num_clients} clients x {samples_per_client} examples exceed '
                     f'the {len(fine)} examples.')
  coarse_ids = np.unique(coarse)
  children = {c: np.unique(fine[coarse == c]) for c in coarse_ids}
  pools = {(c, f): list(rng.permutation(np.flatnonzero((coarse == c) & (fine == f))))
           for c in coarse_ids for f in children[c]}
  keys = [(c, f) for c in coarse_ids for f in children[c]]
  left = np.array([len(pools[k]) for k in keys])
  owner = np.array([np.flatnonzero(coarse_ids == c)[0] for c, _ in keys])
  clients = []
  for _ in range(num_clients):
    root = rng.dirichlet(np.full(len(coarse_ids), alpha))
    leaf_p = np.concatenate([rng.dirichlet(np.full(len(children[c]), beta))
                             for c in coarse_ids])
    taken = []
    for _ in range(samples_per_client):
      coarse_left = np.bincount(owner, weights=left, minlength=len(coarse_ids)) > 0
      if not coarse_left.any():
        break
      p = np.where(coarse_left, root, 0.0)
      p = p / p.sum() if p.sum() > 0 else coarse_left / coarse_left.sum()
      c = rng.choice(len(coarse_ids), p=p)
      in_c = (owner == c) & (left > 0)
      q = np.where(in_c, leaf_p, 0.0)
      q = q / q.sum() if q.sum() > 0 else in_c / in_c.sum()
      k = rng.choice(len(keys), p=q)
      taken.append(pools[keys[k]].pop())
      left[k] -= 1
    clients.append(np.sort(np.asarray(taken, np.int64)))
  return clients
