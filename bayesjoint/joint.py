"""JointInversion: one shared latent model, one likelihood block per modality, one PyMC model."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import arviz as az
import numpy as np
import pymc as pm
import pytensor.tensor as pt
import scipy.linalg as sla
import scipy.sparse as sp
import xarray as xr

from bayesjoint.coupling.base import Coupling
from bayesjoint.io import attach_provenance, provenance
from bayesjoint.latent import LatentVariable
from bayesjoint.linear import LinearGaussianSystem
from bayesjoint.modality import Modality
from bayesjoint.noise import Gaussian
from bayesjoint.priors import Prior

__all__ = ["JointInversion"]

_log = logging.getLogger(__name__)


class _LatentMapping(Mapping):
    """Read-only view of the latent tensors that names the modality on an unknown key."""

    def __init__(self, tensors: Mapping[str, Any], owner: str):
        self._tensors = tensors
        self._owner = owner

    def __getitem__(self, key: str) -> Any:
        try:
            return self._tensors[key]
        except KeyError:
            raise ValueError(
                f"{self._owner}: physics asks for latent variable {key!r}, but the problem "
                f"declares "
                f"{sorted(self._tensors)}; add bj.Parameter/bj.Field named {key!r} or fix the name"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)


def _as_list(items: Any, kind: type, what: str) -> list[Any]:
    if items is None:
        return []
    if isinstance(items, kind):
        return [items]
    out = list(items)
    for item in out:
        if not isinstance(item, kind):
            raise TypeError(
                f"{what} must contain {kind.__name__} objects, got {type(item).__name__}"
            )
    return out


def _fresh_seed() -> int:
    """Draw a seed from OS entropy (never from global state) so every run can be reproduced."""
    return int(np.random.SeedSequence().entropy % (2**31 - 1))


class JointInversion:
    """A Bayesian joint inversion: shared latent model, modalities, couplings.

    Parameters
    ----------
    latent : sequence of Parameter/Field
        The shared latent model ``m``.
    modalities : sequence of Modality
        At least one; names must be distinct.
    couplings : sequence of Coupling, optional
        Soft priors tying latent variables together.

    Attributes
    ----------
    latent : dict of str to LatentVariable
    modalities : dict of str to Modality
    couplings : list of Coupling

    Notes
    -----
    Everything is validated on construction (names, data, noise, shapes where statically known),
    before anything is compiled. The PyMC model is built on first access of :attr:`model` and
    reused by every method afterwards.

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> x = bj.Parameter("x", prior=bj.priors.Normal(0.0, 2.0))
    >>> a = bj.Modality("a", physics=bj.physics.Linear([[1.0]], input="x"), data=[3.0],
    ...                 noise=bj.noise.Gaussian(1.0))
    >>> problem = bj.JointInversion(latent=[x], modalities=[a])
    >>> post = problem.exact_posterior()
    >>> float(post["mean"][0]), float(post["sd"][0] ** 2)
    (2.4, 0.8)
    """

    def __init__(
        self,
        latent: Sequence[LatentVariable] | LatentVariable,
        modalities: Sequence[Modality] | Modality,
        couplings: Sequence[Coupling] | None = None,
    ):
        latent_list = _as_list(latent, LatentVariable, "latent")
        modality_list = _as_list(modalities, Modality, "modalities")
        self.couplings: list[Coupling] = _as_list(couplings, Coupling, "couplings")
        if not latent_list:
            raise ValueError(
                "JointInversion needs at least one latent variable (bj.Parameter/Field)"
            )
        if not modality_list:
            raise ValueError(
                "JointInversion needs at least one modality; "
                "pass modalities=[bj.Modality(...), ...]"
            )
        self.latent: dict[str, LatentVariable] = {}
        for var in latent_list:
            if var.name in self.latent:
                raise ValueError(
                    f"duplicate latent name {var.name!r}; give each variable its own name"
                )
            self.latent[var.name] = var
        self.modalities: dict[str, Modality] = {}
        for mod in modality_list:
            if mod.name in self.modalities:
                raise ValueError(
                    f"duplicate modality name {mod.name!r}; give each modality a distinct name "
                    "(it names the observed variable and its log-likelihood)"
                )
            if mod.name in self.latent:
                raise ValueError(
                    f"modality {mod.name!r} has the same name as a latent variable; rename one"
                )
            self.modalities[mod.name] = mod
        self._coords = self._collect_coords()
        clash = sorted((set(self.latent) | set(self.modalities)) & set(self._coords))
        if clash:
            raise ValueError(
                f"{clash[0]!r} names both a variable and a dimension (a Grid axis or data dim); "
                "rename one, e.g. call the variable 'x_offset' or the axis 'easting'"
            )
        shapes = self.latent_shapes
        for mod in self.modalities.values():
            unknown = [n for n in mod.physics.inputs if n not in self.latent]
            if unknown:
                raise ValueError(
                    f"modality {mod.name!r}: physics reads unknown latent variable(s) {unknown}; "
                    f"the problem declares {sorted(self.latent)}. Add them or fix input="
                )
            predicted = mod.predicted_shape(shapes)
            if predicted is not None:
                self._check_prediction_shape(mod, predicted)
        self._check_discrepancy_blocks()
        coupling_names = [c.name for c in self.couplings]
        for coupling in self.couplings:
            if coupling_names.count(coupling.name) > 1:
                raise ValueError(
                    f"duplicate coupling name {coupling.name!r}; give each coupling name=..."
                )
            coupling.validate(self.latent)
        self._model: pm.Model | None = None

    # -- validation helpers ---------------------------------------------------------------
    def _check_discrepancy_blocks(self) -> None:
        for block, mods in self.blocks():
            if mods[0].discrepancy is not None:
                self._discrepancy_plan(mods)  # the route's noise requirements
            if len(mods) < 2:
                continue
            process = mods[0].discrepancy.process
            names = [m.name for m in mods]
            if process.name is None:
                raise ValueError(
                    f"modalities {names} share one discrepancy process; give it a name, e.g. "
                    "bj.discrepancy.GP(..., name='shared_discrepancy'), which names their block"
                )
            if block in self.modalities or block in self.latent or block in self._coords:
                raise ValueError(
                    f"discrepancy name {block!r} (the block of {names}) is already used; rename it"
                )
            widths = {m.discrepancy_coords.shape[1] for m in mods}
            if len(widths) > 1:
                raise ValueError(
                    f"modalities {names} share discrepancy {block!r} but their coordinates have "
                    f"different dimensions {sorted(widths)}; give coordinates in one common space"
                )

    def _collect_coords(self) -> dict[str, np.ndarray]:
        coords: dict[str, np.ndarray] = {}
        owner: dict[str, str] = {}
        items = [(f"latent {v.name!r}", v.coords) for v in self.latent.values()]
        items += [(f"modality {m.name!r}", m.coords) for m in self.modalities.values()]
        for who, their in items:
            for dim, values in their.items():
                if dim in coords and not np.array_equal(coords[dim], values):
                    raise ValueError(
                        f"{who} and {owner[dim]} both use dimension {dim!r} with different "
                        "coordinates; rename one dimension (e.g. Grid axis or dims=)"
                    )
                coords[dim] = values
                owner[dim] = who
        return coords

    @staticmethod
    def _check_prediction_shape(mod: Modality, predicted: tuple[int | None, ...]) -> None:
        data_shape = mod.data.shape
        same = len(predicted) == len(data_shape) and all(
            p is None or p == d for p, d in zip(predicted, data_shape, strict=True)
        )
        if not same:
            raise ValueError(
                f"modality {mod.name!r}: physics and observation predict shape "
                f"{tuple(predicted)} but the data have shape {data_shape}; the forward output "
                "must match the data one to one (check the operator or the observation indices)"
            )

    @property
    def latent_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of the latent variables by name."""
        return {name: var.shape for name, var in self.latent.items()}

    # -- the PyMC model -------------------------------------------------------------------
    @property
    def model(self) -> pm.Model:
        """The PyMC model (built once, on first access); extend it with plain PyMC if you like."""
        if self._model is None:
            self._model = self._build_model()
        return self._model

    def blocks(self) -> list[tuple[str, list[Modality]]]:
        """Return the likelihood blocks: ``(name, modalities)`` in declaration order.

        Every modality is its own block, except modalities sharing one discrepancy process,
        which form one block named after the process.
        """
        blocks: list[tuple[str, list[Modality]]] = []
        by_process: dict[int, list[Modality]] = {}
        for mod in self.modalities.values():
            if mod.discrepancy is None:
                blocks.append((mod.name, [mod]))
                continue
            key = id(mod.discrepancy.process)
            if key not in by_process:
                by_process[key] = []
                blocks.append((self._process_name(mod), by_process[key]))
            by_process[key].append(mod)
        return [(name if len(mods) > 1 else mods[0].name, mods) for name, mods in blocks]

    def _process_name(self, mod: Modality) -> str:
        process = mod.discrepancy.process
        return process.name if process.name is not None else f"{mod.name}_discrepancy"

    def _build_model(self) -> pm.Model:
        coords = {dim: values for dim, values in self._coords.items()}
        with pm.Model(coords=coords) as model:
            tensors = {name: var.build() for name, var in self.latent.items()}
            for coupling in self.couplings:
                coupling.build(_LatentMapping(tensors, f"coupling {coupling.name!r}"), self.latent)
            means = {}
            for mod in self.modalities.values():
                mu = pt.as_tensor_variable(
                    mod.predict(_LatentMapping(tensors, f"modality {mod.name!r}"))
                )
                static = tuple(mu.type.shape)
                if len(static) != mod.data.ndim or any(s is None for s in static):
                    static = self._evaluate_shape(model, mu)
                self._check_prediction_shape(mod, static)
                means[mod.name] = mu
            for block, mods in self.blocks():
                if mods[0].discrepancy is None:
                    mod = mods[0]
                    mod.noise.build(mod.name, means[mod.name], mod.data, mod.dims)
                else:
                    self._build_discrepancy_block(model, block, mods, means)
        return model

    def _build_discrepancy_block(
        self, model: pm.Model, block: str, mods: list[Modality], means: dict[str, Any]
    ) -> None:
        from bayesjoint import discrepancy as dsc

        process = mods[0].discrepancy.process
        pname = self._process_name(mods[0])
        coords = np.concatenate([m.discrepancy_coords for m in mods])
        data = np.concatenate([m.data.ravel() for m in mods])
        route, marginalize = self._discrepancy_plan(mods)
        ls, amp, ls_range = dsc.build_hyperparameters(process, pname, coords, data)
        if route == "hsgp" and process.method == "auto" and marginalize:
            m, _ = dsc.hsgp_basis_settings(coords, process.kernel, ls_range, process.n_basis)
            if int(np.prod(m)) >= data.size:  # the n x n exact route is cheaper and exact
                route = "exact"
        scales = []
        for mod in mods:
            s = mod.discrepancy.scale
            if isinstance(s, Prior):
                s = s.build(f"{mod.name}_discrepancy_scale", (), None)
            scales.append(s)
        process.hsgp_settings = {}
        process.route = route
        if route == "hsgp":
            phi, weights = dsc.hsgp_basis(process, coords, ls, amp, ls_range)
            n_basis = phi.shape[1]
            if n_basis > dsc.LARGE_BASIS:
                lo, hi = ls_range
                cost = (
                    f"each evaluation factorizes a {n_basis} x {n_basis} matrix"
                    if marginalize
                    else f"NUTS samples {n_basis} coefficients"
                )
                warnings.warn(
                    f"discrepancy {pname!r}: the HSGP basis has {n_basis} functions for the "
                    f"lengthscale range {lo:.3g}-{hi:.3g} (5-95 %), so {cost}. A narrower "
                    "lengthscale prior (the basis grows with its max/min ratio), or n_basis=, "
                    "makes it cheaper",
                    UserWarning,
                    stacklevel=4,
                )
            process.hsgp_settings["coefficients"] = "marginalized" if marginalize else "sampled"
            if not marginalize:
                delta = dsc.hsgp_values(pname, phi, weights)
                start = 0
                for mod, scale in zip(mods, scales, strict=True):
                    piece = pt.reshape(delta[start : start + mod.n_data] * scale, mod.data.shape)
                    start += mod.n_data
                    mod.noise.build(mod.name, means[mod.name] + piece, mod.data, mod.dims)
                return
        mu = pt.concatenate([pt.as_tensor_variable(means[m.name]).flatten() for m in mods])
        if len(mods) == 1:
            dims = mods[0].dims
        else:
            dims = (f"{block}_obs",)
            labels = [f"{m.name}[{i}]" for m in mods for i in range(m.n_data)]
            model.add_coord(dims[0], labels)
        if route == "hsgp":
            noises = [m.noise.factored(m.name, m.n_data) for m in mods]
            sizes = [m.n_data for m in mods]
            dsc.marginal_hsgp_likelihood(block, mu, data, phi, weights, sizes, scales, noises, dims)
            return
        scale_all = pt.concatenate(
            [pt.ones(m.n_data) * s for m, s in zip(mods, scales, strict=True)]
        )
        kernel = dsc.symbolic_kernel(process, coords, ls, amp) * pt.outer(scale_all, scale_all)
        noise = pt.linalg.block_diag(*[m.noise.covariance_tensor(m.name, m.n_data) for m in mods])
        pm.MvNormal(block, mu=mu, cov=noise + kernel, observed=data, dims=dims)

    @staticmethod
    def _discrepancy_plan(mods: list[Modality]) -> tuple[str, bool]:
        """Return ``(route, marginalize_basis)`` of a discrepancy block (errors name a modality)."""
        process = mods[0].discrepancy.process
        n_data = sum(m.n_data for m in mods)
        gaussian = [isinstance(m.noise, Gaussian) for m in mods]
        return process.plan(n_data, gaussian, [m.name for m in mods])

    @staticmethod
    def _evaluate_shape(model: pm.Model, tensor: Any) -> tuple[int, ...]:
        """Return the concrete shape of ``tensor`` at the model's initial point."""
        fn = model.compile_fn(tensor.shape, inputs=model.value_vars, on_unused_input="ignore")
        return tuple(int(s) for s in fn(model.initial_point()))

    # -- inference ------------------------------------------------------------------------
    def _provenance(self, random_seed: Any, extra: Mapping[str, Any] | None = None) -> dict:
        latent = [
            {
                "name": v.name,
                "kind": v.kind,
                "shape": list(v.shape),
                "prior": v.prior.describe(),
                "units": v.units,
            }
            for v in self.latent.values()
        ]
        info = {"latent": latent, "couplings": [c.describe() for c in self.couplings]}
        discrepancies = self._describe_discrepancies()
        if discrepancies:
            info["discrepancies"] = discrepancies
        info.update(extra or {})
        return provenance(random_seed, self.modalities.values(), info)

    def _describe_discrepancies(self) -> list[dict[str, Any]]:
        """Each discrepancy block: process, hyperparameters, route and HSGP basis as built."""

        def text(value: Any) -> Any:
            return value.describe() if isinstance(value, Prior) else value

        out = []
        for block, mods in self.blocks():
            if mods[0].discrepancy is None:
                continue
            process = mods[0].discrepancy.process
            used = process.resolved_hyperparameters
            out.append(
                {
                    "block": block,
                    "process": self._process_name(mods[0]),
                    "modalities": [m.name for m in mods],
                    "kernel": process.kernel,
                    "lengthscale": text(used.get("lengthscale", process.lengthscale)),
                    "amplitude": text(used.get("amplitude", process.amplitude)),
                    "scales": {m.name: text(m.discrepancy.scale) for m in mods},
                    "method": process.method,
                    "route": process.route,
                    "hsgp": dict(process.hsgp_settings),
                }
            )
        return out

    def sample(
        self,
        draws: int = 1000,
        tune: int = 1000,
        chains: int = 4,
        *,
        cores: int | None = None,
        random_seed: int | None = None,
        target_accept: float = 0.8,
        progressbar: bool = True,
        **kwargs: Any,
    ) -> az.InferenceData:
        """Sample the joint posterior with NUTS.

        Parameters
        ----------
        draws, tune, chains : int
            Kept draws, tuning draws and chains.
        cores : int, optional
            Parallel chains; PyMC's default when omitted.
        random_seed : int, optional
            Seed; when omitted one is drawn from OS entropy and recorded in the provenance.
        target_accept : float, default 0.8
            NUTS target acceptance rate (raise towards 0.95 for difficult geometry).
        progressbar : bool, default True
        **kwargs
            Passed to :func:`pymc.sample`.

        Returns
        -------
        arviz.InferenceData
            Groups ``posterior``, ``sample_stats``, ``log_likelihood`` (one variable per
            modality), ``observed_data``; provenance in every group's attributes.
        """
        seed = _fresh_seed() if random_seed is None else int(random_seed)
        idata_kwargs = dict(kwargs.pop("idata_kwargs", None) or {})
        idata_kwargs.setdefault("log_likelihood", True)
        if "step" not in kwargs:  # a user-given step method carries its own settings
            kwargs["target_accept"] = target_accept
        with self.model:
            idata = pm.sample(
                draws=draws,
                tune=tune,
                chains=chains,
                cores=cores,
                random_seed=seed,
                progressbar=progressbar,
                idata_kwargs=idata_kwargs,
                **kwargs,
            )
        extra = {"sampler": "NUTS", "draws": draws, "tune": tune, "chains": chains}
        return attach_provenance(idata, self._provenance(seed, extra))

    def find_map(self, *, random_seed: int | None = None, **kwargs: Any) -> xr.Dataset:
        """Return the maximum a posteriori point as a Dataset on the model's dims.

        Parameters
        ----------
        random_seed : int, optional
            Seeds the starting point's jitter (none by default).
        **kwargs
            Passed to :func:`pymc.find_MAP` (e.g. ``method="L-BFGS-B"``).
        """
        kwargs.setdefault("progressbar", False)
        with self.model:
            point = pm.find_MAP(seed=random_seed, include_transformed=False, **kwargs)
        dims = self.model.named_vars_to_dims
        data = {}
        for name, value in point.items():
            value = np.asarray(value)
            data[name] = (tuple(dims.get(name, ())) if value.ndim else (), value)
        coords = {d: self._coords[d] for v in data.values() for d in v[0]}
        return xr.Dataset(data, coords=coords)

    def sample_posterior_predictive(
        self,
        idata: az.InferenceData,
        *,
        random_seed: int | None = None,
        extend_inferencedata: bool = True,
        progressbar: bool = False,
        **kwargs: Any,
    ) -> az.InferenceData:
        """Draw replicated data for every modality from the posterior.

        Returns
        -------
        arviz.InferenceData
            ``idata`` with a ``posterior_predictive`` group (one variable per modality) when
            ``extend_inferencedata`` is True, else a new InferenceData with that group.
        """
        seed = _fresh_seed() if random_seed is None else int(random_seed)
        with self.model:
            out = pm.sample_posterior_predictive(
                idata,
                var_names=[rv.name for rv in self.model.observed_RVs],
                random_seed=seed,
                extend_inferencedata=extend_inferencedata,
                progressbar=progressbar,
                **kwargs,
            )
        result = idata if extend_inferencedata else out
        result.posterior_predictive.attrs["posterior_predictive_seed"] = str(seed)
        return result

    # -- rugged posteriors ----------------------------------------------------------------
    def find_modes(self, bounds: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        """Global search for the posterior's modes; see :func:`bayesjoint.inference.find_modes`."""
        from bayesjoint.inference.search import find_modes

        return find_modes(self, bounds, **kwargs)

    def sample_from_modes(self, modes: Any = None, **kwargs: Any) -> az.InferenceData:
        """NUTS chains started from each mode, with mode weights.

        See :func:`bayesjoint.multimodal.sample_from_modes`.
        """
        from bayesjoint.inference.multistart import sample_from_modes

        return sample_from_modes(self, modes, **kwargs)

    def sample_smc(self, draws: int = 2000, chains: int = 2, **kwargs: Any) -> az.InferenceData:
        """Tempered sequential Monte Carlo; see :func:`bayesjoint.multimodal.sample_smc`."""
        from bayesjoint.inference.smc import sample_smc

        return sample_smc(self, draws, chains, **kwargs)

    # -- exact linear-Gaussian path -------------------------------------------------------
    def linear_gaussian_system(self) -> LinearGaussianSystem:
        """Return the flat linear-Gaussian form of the problem.

        Raises
        ------
        ValueError
            Naming the first part that is not linear-Gaussian (a prior, a physics or observation
            operator, a noise model, a coupling).
        """
        factors_by_coupling = {}
        for coupling in self.couplings:
            factor = coupling.gaussian_factor(self.latent)
            if factor is None:
                raise ValueError(
                    f"coupling {coupling.name!r} ({coupling!r}) is not a linear-Gaussian factor "
                    "with fixed parameters, so the exact path does not apply; use sample()"
                )
            factors_by_coupling[coupling.name] = factor
        means, factors, labels, latent_of = [], [], [], []
        columns: dict[str, slice] = {}
        start = 0
        for name, var in self.latent.items():
            form = var.prior.gaussian(var.shape, var.grid)
            if form is None:
                raise ValueError(
                    f"latent {name!r}: prior {var.prior!r} is not Gaussian with fixed "
                    "hyperparameters, so the exact path does not apply; use sample()"
                )
            means.append(form[0])
            factors.append(form[1])
            labels.extend(var.labels())
            latent_of.extend([name] * var.size)
            columns[name] = slice(start, start + var.size)
            start += var.size
        n = start
        operators, residuals, names = [], [], []
        for block, mods in self.blocks():
            rows, resids, covs = [], [], []
            for mod in mods:
                a_full, resid, noise_cov = self._linear_block_part(mod, columns, n)
                rows.append(a_full)
                resids.append(resid)
                covs.append(noise_cov)
            a_block, r_block = np.vstack(rows), np.concatenate(resids)
            if mods[0].discrepancy is None:
                factor = covs[0]
            else:
                factor = sla.cholesky(
                    sla.block_diag(*[c @ c.T if c.ndim == 2 else np.diag(c**2) for c in covs])
                    + self._fixed_discrepancy_covariance(mods),
                    lower=True,
                )
            if factor.ndim == 1:
                operators.append(a_block / factor[:, None])
                residuals.append(r_block / factor)
            else:
                operators.append(sla.solve_triangular(factor, a_block, lower=True))
                residuals.append(sla.solve_triangular(factor, r_block, lower=True))
            names.append(block)
        for cname, (ops, offset, sd) in factors_by_coupling.items():
            rows = np.zeros((np.size(offset), n))
            for name, mat in ops.items():
                mat = mat.toarray() if sp.issparse(mat) else np.asarray(mat, dtype=float)
                rows[:, columns[name]] += mat
            sd = np.broadcast_to(np.asarray(sd, dtype=float), np.shape(offset))
            operators.append(rows / sd[:, None])
            residuals.append(np.asarray(offset, dtype=float) / sd)
            names.append(cname)
        return LinearGaussianSystem(
            labels=labels,
            latent_of=latent_of,
            prior_mean=np.concatenate(means),
            prior_factor=sla.block_diag(*factors),
            modalities=names,
            operators=operators,
            residuals=residuals,
        )

    def _linear_block_part(self, mod: Modality, columns: dict[str, slice], n: int):
        """Return ``(A, d − b, noise factor)`` of one modality on the stacked latent vector.

        The noise factor is the sd vector (diagonal noise) or the covariance's Cholesky factor.
        """
        op = mod.linear_operator(self.latent_shapes)
        if op is None:
            part = "physics" if mod.physics.linear_operator() is None else "observation operator"
            which = mod.physics if part == "physics" else mod.observe
            raise ValueError(
                f"modality {mod.name!r}: its {part} {which!r} is not linear, so the exact path "
                "does not apply; use bj.physics.Linear / a linear observation, or sample()"
            )
        if not isinstance(mod.noise, Gaussian):
            raise ValueError(
                f"modality {mod.name!r}: noise {mod.noise!r} is not Gaussian; the exact path "
                "needs bj.noise.Gaussian with a known sd or covariance"
            )
        noise_factor = mod.noise.known_covariance_factor(mod.data.shape)
        if noise_factor is None:
            raise ValueError(
                f"modality {mod.name!r}: noise {mod.noise!r} is learned, so the posterior is "
                "not Gaussian; fix the sd to use the exact path, or use sample()"
            )
        a_local, offset = op
        a_local = a_local.toarray() if sp.issparse(a_local) else np.asarray(a_local)
        a_full = np.zeros((mod.n_data, n))
        col = 0
        for name in mod.physics.inputs:
            size = self.latent[name].size
            a_full[:, columns[name]] += a_local[:, col : col + size]
            col += size
        return a_full, mod.data.ravel() - offset, noise_factor

    @staticmethod
    def _fixed_discrepancy_covariance(mods: list[Modality]) -> np.ndarray:
        """Return ``s_a s_b K(x_a, x_b)`` over a block with fixed discrepancy hyperparameters."""
        from bayesjoint.discrepancy.kernels import kernel_matrix

        process = mods[0].discrepancy.process
        scales = [m.discrepancy.scale for m in mods]
        if not process.fixed or not all(isinstance(s, float) for s in scales):
            raise ValueError(
                f"modality {mods[0].name!r}: its discrepancy has learned hyperparameters or "
                "scales, so the posterior is not Gaussian; fix lengthscale, amplitude and scale "
                "to use the exact path, or use sample()"
            )
        coords = np.concatenate([m.discrepancy_coords for m in mods])
        s = np.concatenate([np.full(m.n_data, sc) for m, sc in zip(mods, scales, strict=True)])
        k = kernel_matrix(coords, coords, process.kernel, process.lengthscale, process.amplitude)
        return k * np.outer(s, s)

    def exact_posterior(self) -> xr.Dataset:
        """Return the exact posterior of a linear-Gaussian problem.

        Returns
        -------
        xarray.Dataset
            ``mean``, ``sd``, ``cov`` over the stacked latent vector (dim ``parameter``, labels
            such as ``'x[3]'``, coordinate ``latent``); see
            :func:`bayesjoint.linear.exact_posterior`.

        Raises
        ------
        ValueError
            Naming the part of the problem that is not linear-Gaussian.
        """
        return self.linear_gaussian_system().posterior()

    def information_budget(self) -> xr.Dataset:
        """Return each modality's information contribution (linear-Gaussian problems).

        See :func:`bayesjoint.linear.information_budget` for the variables. A coupling that is a
        linear-Gaussian factor (e.g. a linear petrophysical link) contributes like a modality and
        appears on the ``modality`` dimension under its own name.
        """
        return self.linear_gaussian_system().budget()

    def stack_latent(self, dataset: xr.Dataset) -> xr.DataArray:
        """Stack the latent variables of a posterior Dataset into one ``parameter`` dimension.

        The order and labels match :meth:`exact_posterior`, so sampled and exact results can be
        compared element by element.

        Parameters
        ----------
        dataset : xarray.Dataset
            E.g. ``idata.posterior``; sample dims (chain, draw) are kept in front.
        """
        pieces = []
        for name, var in self.latent.items():
            arr = dataset[name]
            lead = [d for d in arr.dims if d not in var.dims]
            values = arr.transpose(*lead, *var.dims).values.reshape(
                *[arr.sizes[d] for d in lead], var.size
            )
            pieces.append(values)
            lead_dims = lead
        labels = [lab for var in self.latent.values() for lab in var.labels()]
        return xr.DataArray(
            np.concatenate(pieces, axis=-1),
            dims=(*lead_dims, "parameter"),
            coords={"parameter": labels},
        )

    def __repr__(self) -> str:
        return (
            f"JointInversion(latent={list(self.latent)}, modalities={list(self.modalities)}, "
            f"couplings={[c.name for c in self.couplings]})"
        )
