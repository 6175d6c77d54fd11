"""Vector quantisation helpers: weighted k-means, used for the kmVQ baseline and for lowering a codebook's bitwidth."""
from __future__ import annotations

import torch


def kmeans(points: torch.Tensor, k: int, weights: torch.Tensor | None = None, iterations: int = 20,
           seed: int = 0, chunk: int = 1 << 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted Lloyd k-means with k-means++ seeding on a random subsample.

    points: float [M,F]; weights: float [M] >= 0 (None: all ones); k: number of centroids (any k >= 1).
    Returns (centroids float [k,F], assignment int64 [M] in [0,k)). When M <= k every point keeps its own centroid
    (unused centroids repeat the last point), so the assignment is exact.
    """
    m, f = points.shape
    device = points.device
    x = points.float()
    w = torch.ones(m, device=device) if weights is None else weights.float().to(device)
    if m == 0:
        return torch.zeros(k, f, device=device), torch.zeros(0, dtype=torch.int64, device=device)
    if m <= k:
        centroids = torch.cat([x, x[-1:].expand(k - m, f)], 0)
        return centroids, torch.arange(m, device=device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    n_sample = min(m, max(4 * k, 4096))
    if weights is None or not bool((w > 0).any()):
        pick = torch.randperm(m, generator=gen)[:n_sample]
    else:  # seeds where the weight is: unweighted seeding spends centroids on points that do not matter
        pick = torch.multinomial(w.cpu().double(), n_sample, replacement=True, generator=gen)
    sample = x[pick.to(device)]
    if k <= 256:
        centroids = _kmeans_plus_plus(sample, k, gen)
    else:  # k-means++ is sequential in k: plain random seeding keeps large k fast
        centroids = sample[torch.randperm(sample.shape[0], generator=gen)[:k].to(device)].clone()
    for _ in range(iterations):
        assignment = assign(x, centroids, chunk)
        sums = torch.zeros(k, f, device=device).index_add_(0, assignment, x * w[:, None])
        mass = torch.zeros(k, device=device).index_add_(0, assignment, w)
        empty = mass <= 0
        centroids = torch.where(empty[:, None], centroids, sums / mass.clamp_min(1e-12)[:, None])
        if empty.any():  # re-seed empty clusters at the points farthest from their centroid
            dist = ((x - centroids[assignment]) ** 2).sum(1) * (w > 0)
            far = torch.topk(dist, int(empty.sum())).indices
            centroids[empty] = x[far]
    return centroids, assign(x, centroids, chunk)


def assign(points: torch.Tensor, centroids: torch.Tensor, chunk: int = 1 << 16) -> torch.Tensor:
    """Nearest centroid per point: points [M,F], centroids [k,F] -> int64 [M]."""
    out = []
    c2 = (centroids ** 2).sum(1)
    for i in range(0, points.shape[0], chunk):
        p = points[i:i + chunk]
        out.append((c2[None, :] - 2 * p @ centroids.T).argmin(1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64, device=points.device)


def _kmeans_plus_plus(sample: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    n = sample.shape[0]
    first = int(torch.randint(n, (1,), generator=gen))
    centroids = [sample[first]]
    dist = ((sample - sample[first]) ** 2).sum(1)
    for _ in range(1, k):
        total = dist.sum()
        if total <= 0:
            idx = int(torch.randint(n, (1,), generator=gen))
        else:
            idx = int(torch.multinomial((dist / total).cpu(), 1, generator=gen))
        centroids.append(sample[idx])
        dist = torch.minimum(dist, ((sample - sample[idx]) ** 2).sum(1))
    return torch.stack(centroids)
