"""NUTS preconditioned by the exact path of a linear-Gaussian approximation.

A problem whose latents all have Gaussian-field priors is sampled by NUTS in the prior-whitened
coordinates ``z`` (the ``<name>_white`` variables, ``m = μ₀ + L z``). When a linear-Gaussian
approximation of the problem is available (e.g. the same problem without a nonlinear coupling,
or with that coupling linearized), its posterior precision in those coordinates,
``I + WᵀW``, is an excellent NUTS mass matrix, and its exact posterior gives starting points
already in the typical set. :class:`LowRankMass` is that mass matrix in ``O(n m)`` form and
:func:`preconditioned_sample` runs NUTS with it.
"""

from __future__ import annotations

from typing import Any

import arviz as az
import numpy as np
import pymc as pm
from pymc.step_methods.hmc.quadpotential import QuadPotential

from bayesjoint.inference.threads import safe_start_method
from bayesjoint.io import attach_provenance

__all__ = ["LowRankMass", "preconditioned_sample"]


class LowRankMass(QuadPotential):
    """NUTS mass matrix ``M = I + WᵀW`` (a Gaussian approximation's precision, whitened).

    Parameters
    ----------
    w : array_like, shape (m, n)
        The low-rank factor ``W``: for a linear-Gaussian problem, the noise-whitened forward
        operators times the prior factor, stacked over modalities (``W_k = G_k L``).
    rng : numpy.random.Generator or int, optional
        Generator for the momentum draws of :meth:`random`.

    Notes
    -----
    With ``W`` of shape (m, n), the Woodbury identity (Golub & Van Loan 2013, §2.1.4) gives the
    velocity

    .. math:: M^{-1} p = p - W^T (I_m + W W^T)^{-1} W p,

    and momenta ``p ~ N(0, M)`` are drawn as ``p = ξ + Wᵀη`` with ``ξ ~ N(0, I_n)``,
    ``η ~ N(0, I_m)`` independent, so ``Cov p = I_n + WᵀW = M``. The kinetic energy is
    ``K(p) = ½ pᵀ M⁻¹ p`` (Neal 2011, "MCMC using Hamiltonian dynamics", eq. 5.13). Each costs
    ``O(n m)`` after an ``O(m² n + m³)`` set-up: no dense n × n matrix is formed. The mass
    matrix is fixed (no adaptation during tuning). All quantities are dimensionless (whitened
    coordinates).

    Examples
    --------
    >>> import numpy as np
    >>> w = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0]])
    >>> mass = LowRankMass(w, rng=np.random.default_rng(0))
    >>> p = np.array([1.0, -1.0, 0.5])
    >>> dense = np.linalg.solve(np.eye(3) + w.T @ w, p)
    >>> bool(np.allclose(mass.velocity(p), dense, rtol=1e-12))
    True
    >>> mass.random().shape
    (3,)
    """

    def __init__(self, w: Any, rng: Any = None):
        super().__init__(rng)
        w = np.asarray(w, dtype=float)
        if w.ndim != 2 or w.shape[1] == 0:
            raise ValueError(
                f"LowRankMass w must be a 2-D array of shape (m, n) with n > 0, got shape "
                f"{w.shape}; stack the whitened operators with np.vstack"
            )
        if not np.all(np.isfinite(w)):
            raise ValueError("LowRankMass w contains NaN or inf entries; pass a finite matrix")
        self.w = np.ascontiguousarray(w)
        small = np.eye(self.w.shape[0]) + self.w @ self.w.T
        self.k = np.linalg.solve(small, self.w).T  # Wᵀ (I + W Wᵀ)⁻¹
        self.dtype = np.dtype("float64")
        self.n = self.w.shape[1]

    def velocity(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray | None:
        """Return ``M⁻¹ x`` (into ``out`` when given, then returning None).

        Parameters
        ----------
        x : numpy.ndarray, shape (n,)
            Momentum.
        out : numpy.ndarray, optional
            Array to write the velocity into.

        Returns
        -------
        numpy.ndarray or None
            The velocity, or None when ``out`` was given.
        """
        v = x - self.k @ (self.w @ x)
        if out is None:
            return v
        out[...] = v
        return None

    def energy(self, x: np.ndarray, velocity: np.ndarray | None = None) -> float:
        """Return the kinetic energy ``½ xᵀ M⁻¹ x``.

        Parameters
        ----------
        x : numpy.ndarray, shape (n,)
            Momentum.
        velocity : numpy.ndarray, optional
            ``M⁻¹ x`` when already known.

        Returns
        -------
        float
        """
        if velocity is None:
            velocity = self.velocity(x)
        return 0.5 * float(np.dot(x, velocity))

    def velocity_energy(self, x: np.ndarray, v_out: np.ndarray) -> float:
        """Write ``M⁻¹ x`` into ``v_out`` and return the kinetic energy.

        Parameters
        ----------
        x : numpy.ndarray, shape (n,)
            Momentum.
        v_out : numpy.ndarray, shape (n,)
            Output array for the velocity.

        Returns
        -------
        float
        """
        self.velocity(x, out=v_out)
        return 0.5 * float(np.dot(x, v_out))

    def random(self) -> np.ndarray:
        """Draw a momentum ``p ~ N(0, M)`` as ``ξ + Wᵀη``.

        Returns
        -------
        numpy.ndarray, shape (n,)
        """
        return self.rng.standard_normal(self.n) + self.w.T @ self.rng.standard_normal(
            self.w.shape[0]
        )


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"preconditioned_sample {what} must be a positive integer, got {value!r}")
    return int(value)


def _check_same_latents(problem: Any, approx: Any) -> list[str]:
    """Return the latent names, raising unless ``approx`` declares the same latents."""
    names = list(problem.latent)
    approx_names = list(approx.latent)
    sizes = [problem.latent[n].size for n in names]
    if approx_names != names or [approx.latent[n].size for n in names] != sizes:
        raise ValueError(
            f"preconditioned_sample approx must declare the same latents as problem (names, order "
            f"and sizes): problem has {names}, approx has {approx_names}"
        )
    return names


def _exact_path_start(
    problem: Any, approx: Any, chains: int, seed: int
) -> tuple[LowRankMass, list[dict[str, np.ndarray]]]:
    """Return the mass matrix ``I + WᵀW`` of ``approx`` and one exact posterior draw per chain.

    The draws ``z̄ + M⁻¹ p``, ``p ~ N(0, M)``, are split into ``{'<name>_white': value}``
    starting points (see :func:`preconditioned_sample`).
    """
    names = list(problem.latent)
    sizes = [problem.latent[n].size for n in names]
    system = approx.linear_gaussian_system()
    whitened = system.whitened()
    mass = LowRankMass(np.vstack(whitened), rng=np.random.default_rng(seed + 1))
    rhs = sum(
        wk.T @ (rk - gk @ system.prior_mean)
        for wk, gk, rk in zip(whitened, system.operators, system.residuals, strict=True)
    )
    z_mean = mass.velocity(rhs)
    draw_rng = LowRankMass(mass.w, rng=np.random.default_rng(seed + 2))
    initvals = []
    for _ in range(chains):
        z = z_mean + draw_rng.velocity(draw_rng.random())
        parts = np.split(z, np.cumsum(sizes)[:-1])
        initvals.append(
            {
                f"{n}_white": p.reshape(problem.latent[n].shape)
                for n, p in zip(names, parts, strict=True)
            }
        )
    return mass, initvals


def preconditioned_sample(
    problem: Any,
    approx: Any,
    *,
    draws: int,
    tune: int,
    chains: int,
    seed: int,
    cores: int = 1,
) -> az.InferenceData:
    """Sample ``problem`` with NUTS, mass matrix and starting points from ``approx``'s exact path.

    Parameters
    ----------
    problem : JointInversion
        The problem to sample. Its latents must all have
        :class:`~bayesjoint.priors.GaussianField` priors with fixed hyperparameters (NUTS then
        samples the whitened ``<name>_white`` variables, the coordinates of the exact path).
    approx : JointInversion
        A linear-Gaussian problem on the same latents (same names, order and sizes), e.g.
        ``problem`` without its nonlinear coupling or with it linearized; ``problem`` itself when
        that is linear-Gaussian.
    draws, tune, chains : int
        Kept draws, tuning draws and chains (positive).
    seed : int
        Seed of the sampler; ``seed + 1`` and ``seed + 2`` seed the mass matrix's momentum
        draws and the starting points.
    cores : int, default 1
        Parallel chains.

    Returns
    -------
    arviz.InferenceData
        As :meth:`bayesjoint.JointInversion.sample` (with ``log_likelihood``); provenance, with
        ``sampler``, ``draws``, ``tune`` and ``chains``, in every group's attributes.

    Raises
    ------
    ValueError
        When the latents of ``problem`` and ``approx`` differ, a latent has no whitened
        variable, or ``approx`` is not linear-Gaussian.

    Notes
    -----
    With ``approx``'s exact path ``m = μ₀ + L z``, whitened operators ``W_k = G_k L`` and
    whitened residuals ``r_k`` (data minus offset, divided by the noise factor), the posterior
    of ``z`` is Gaussian with precision ``M = I + Σ_k W_kᵀ W_k`` and mean
    ``z̄ = M⁻¹ Σ_k W_kᵀ (r_k − G_k μ₀)`` (Tarantola 2005, eq. 3.37, in whitened form). NUTS
    (Hoffman & Gelman 2014) uses the fixed mass matrix ``M`` (:class:`LowRankMass`; for a
    target with covariance ``M⁻¹`` this makes the dynamics isotropic, Neal 2011 §4.1), with
    target acceptance 0.9. Each chain starts at ``z̄ + M⁻¹ p``, ``p ~ N(0, M)``, which is an
    exact draw ``N(z̄, M⁻¹)`` from the approximation's posterior.

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> grid = bj.Grid(x=np.arange(3.0) * 10.0, z=np.array([-20.0, -10.0]))
    >>> field = bj.Field("f", grid, bj.priors.GaussianField(1.0, 15.0))
    >>> g = np.random.default_rng(0).standard_normal((3, grid.size))
    >>> survey = bj.Modality("s", bj.physics.Linear(g, "f"), g.sum(1), bj.noise.Gaussian(0.5))
    >>> problem = bj.JointInversion([field], [survey])
    >>> idata = preconditioned_sample(problem, problem, draws=20, tune=20, chains=2, seed=1)
    >>> idata.posterior["f"].shape[:2]
    (2, 20)
    """
    draws = _positive_int(draws, "draws")
    tune = _positive_int(tune, "tune")
    chains = _positive_int(chains, "chains")
    names = _check_same_latents(problem, approx)
    model = problem.model
    missing = [n for n in names if f"{n}_white" not in model.named_vars]
    if missing:
        raise ValueError(
            f"preconditioned_sample problem latents {missing} have no whitened variable "
            "'<name>_white'; give them GaussianField priors with fixed hyperparameters"
        )
    mass, initvals = _exact_path_start(problem, approx, chains, seed)
    with model:
        step = pm.NUTS(vars=[model[f"{n}_white"] for n in names], potential=mass, target_accept=0.9)
        idata = pm.sample(
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            step=step,
            initvals=initvals,
            random_seed=seed,
            progressbar=False,
            compute_convergence_checks=False,
            idata_kwargs={"log_likelihood": True},
            **safe_start_method(cores, {}, chains),
        )
    extra = {
        "sampler": "NUTS, mass matrix from the exact path of a Gaussian approximation",
        "draws": draws,
        "tune": tune,
        "chains": chains,
    }
    return attach_provenance(idata, problem._provenance(seed, extra))
