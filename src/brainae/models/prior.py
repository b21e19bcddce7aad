"""A Gaussian mixture fitted to a trained VAE's codes, to sample from (ex-post density estimation).

A VAE is trained to pull its codes towards N(0, I), but the codes of real images never fill it: they
gather in clumps (one per slice orientation, roughly) with empty space between them, and decoding a
draw from that empty space gives a blob. Fitting a mixture of Gaussians to the codes of the training
images, after training, and drawing from it instead keeps samples where real images lie. The
training loss (and every score) is unchanged; only where samples come from changes.

Components are found by expectation-maximisation with diagonal covariances (a 512 x 512 covariance
per component cannot be estimated from a few dozen codes). Draws, though, use each component's full
covariance as its member codes spread it (weighted by responsibility): a combination of those codes'
deviations from the mean, so the 512 units of a draw vary together the way they do in real codes.
Independent units (the diagonal) decode to anatomy pieced together from different slices; measured
in benchmarks/vae_samples.py, the full draws are far closer to real images.
"""
from __future__ import annotations

import math
from typing import Optional

import torch


class MixturePrior:
    """A Gaussian mixture over codes (D units), kept as the codes it was fitted to:

    weights (K,), means (K, D), codes (N, D), resp (N, K): each code's responsibility per component.
    Component k's covariance is sum_i resp[i, k] (codes[i] - means[k])(...)^T / sum_i resp[i, k].

    Example:
        >>> z = torch.cat([torch.randn(200, 4) - 5, torch.randn(200, 4) + 5])
        >>> prior = MixturePrior.fit(z, components=2, seed=0)
        >>> sorted(round(m) for m in prior.means[:, 0].tolist())
        [-5, 5]
    """

    def __init__(self, weights: torch.Tensor, means: torch.Tensor, codes: torch.Tensor, resp: torch.Tensor) -> None:
        self.weights, self.means, self.codes, self.resp = weights.float(), means.float(), codes.float(), resp.float()

    @property
    def components(self) -> int:
        return len(self.weights)

    @property
    def n_codes(self) -> int:
        return len(self.codes)

    def to(self, device: torch.device | str) -> "MixturePrior":
        return MixturePrior(self.weights.to(device), self.means.to(device), self.codes.to(device), self.resp.to(device))

    @classmethod
    def fit(cls, codes: torch.Tensor, components: int = 30, seed: int = 0, iterations: int = 200,
            tol: float = 1e-5) -> "MixturePrior":
        """Fit by EM from a k-means++ start (seeded). ``components`` is capped at a tenth of the codes."""
        z = torch.as_tensor(codes, dtype=torch.float64)
        n = len(z)
        k = max(1, min(components, n // 10))
        g = torch.Generator().manual_seed(seed)
        floor = 1e-3 * z.var(dim=0).mean().item() + 1e-8  # keeps a component from collapsing onto one code
        means = kmeans_pp(z, k, g)
        var = z.var(dim=0, keepdim=True).expand(k, -1).clone() + floor
        weights = torch.full((k,), 1.0 / k, dtype=torch.float64)
        previous = -math.inf
        for _ in range(iterations):
            logp = diag_log_density(z, means, var) + weights.log()  # (n, k)
            total = torch.logsumexp(logp, dim=1)
            resp = (logp - total[:, None]).exp()
            nk = resp.sum(dim=0) + 1e-10
            weights = nk / n
            means = resp.T @ z / nk[:, None]
            var = (resp.T @ z.pow(2) / nk[:, None] - means.pow(2)).clamp_min(0) + floor
            mean_ll = total.mean().item()
            if mean_ll - previous < tol * abs(mean_ll):
                break
            previous = mean_ll
        return cls(weights, means, z, resp)

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``n`` codes (n, D): a component by weight, then a draw from N(its mean, its covariance),
        made as mean + sum_i eps_i * sqrt(resp[i, k] / N_k) * (codes[i] - mean), eps ~ N(0, 1)."""
        which = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.n_codes, generator=generator, device=self.codes.device)
        share = self.resp[:, which].T  # (n, N)
        coef = eps * (share / share.sum(dim=1, keepdim=True)).sqrt()
        mean = self.means[which]
        return mean + coef @ self.codes - coef.sum(dim=1, keepdim=True) * mean

    def state(self) -> dict:
        return {"weights": self.weights, "means": self.means, "codes": self.codes, "resp": self.resp}

    @classmethod
    def from_state(cls, state: dict) -> "MixturePrior":
        return cls(state["weights"], state["means"], state["codes"], state["resp"])


def diag_log_density(z: torch.Tensor, means: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """log N(z_i | means_k, diag(var_k)) for every code i and component k: (N, K)."""
    maha = (z.pow(2) @ (1 / var).T) - 2 * z @ (means / var).T + (means.pow(2) / var).sum(dim=1)
    return -0.5 * (maha + var.log().sum(dim=1) + z.shape[1] * math.log(2 * math.pi))


def kmeans_pp(z: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
    """k starting means drawn apart from each other (k-means++ seeding)."""
    chosen = [int(torch.randint(len(z), (1,), generator=g))]
    dist = (z - z[chosen[0]]).pow(2).sum(dim=1)
    for _ in range(1, k):
        nxt = int(torch.multinomial(dist / dist.sum(), 1, generator=g)) if dist.sum() > 0 else len(chosen)
        chosen.append(nxt)
        dist = torch.minimum(dist, (z - z[nxt]).pow(2).sum(dim=1))
    return z[chosen].clone()
