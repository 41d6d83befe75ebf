"""JointInversion: one shared latent model, one likelihood block per modality, one PyMC model."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import arviz as az
import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import xarray as xr

from bayesjoint import linear
from bayesjoint._checks import as_real_array, as_seed, checked_init
from bayesjoint.coupling.base import Coupling
from bayesjoint.discrepancy.builder import DiscrepancyBlock, process_name
from bayesjoint.io import provenance
from bayesjoint.latent import LatentVariable
from bayesjoint.linear import LinearGaussianSystem
from bayesjoint.modality import Modality

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

    @checked_init("bj.JointInversion")
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
        self._discrepancy_blocks = self._plan_discrepancy_blocks()
        coupling_names = [c.name for c in self.couplings]
        for coupling in self.couplings:
            if coupling_names.count(coupling.name) > 1:
                raise ValueError(
                    f"duplicate coupling name {coupling.name!r}; give each coupling name=..."
                )
            coupling.validate(self.latent)
        self._model: pm.Model | None = None
        self._linear_system: LinearGaussianSystem | ValueError | None = None
        # observed data of the modalities outside discrepancy blocks, as shared variables of the
        # model: with_data() hands the built model on and only these values change
        self._observed: dict[str, Any] = {}

    # -- validation helpers ---------------------------------------------------------------
    def _plan_discrepancy_blocks(self) -> dict[str, DiscrepancyBlock]:
        """Plan each discrepancy block (route and its noise requirements, shared-block names)."""
        taken = set(self.modalities) | set(self.latent) | set(self._coords)
        return {
            block: DiscrepancyBlock.plan(block, mods, taken)
            for block, mods in self.blocks()
            if mods[0].discrepancy is not None
        }

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
        for name, shared in self._observed.items():  # a model shared with with_data() copies
            own = self.modalities[name].data
            if shared.get_value(borrow=True) is not own:
                shared.set_value(own, borrow=True)
        return self._model

    def with_data(self, data: Mapping[str, Any]) -> JointInversion:
        """Return the same problem with new data for some modalities, reusing what was built.

        Parameters
        ----------
        data : mapping of str to array_like
            New data per modality name, each of the shape of that modality's data (finite
            reals); modalities left out keep theirs.

        Returns
        -------
        JointInversion
            A problem that shares this one's latent variables, couplings, noise models and, when
            no discrepancy block holds a changed modality, its PyMC model: the observed data
            are shared variables of the model, set to the problem's own values whenever its
            :attr:`model` is read, so compiled functions cached on the model (the exact route's)
            are reused. The linear-Gaussian system is assembled afresh (the data vector changes,
            the operators do not). The collapsed route's marginal model, its factorizations of
            the operators and its compiled functions are shared too (the data enter them as
            shared variables), and so are the log density and gradient that the preconditioned
            NUTS route's MAP search compiles on the model. Since the model is shared, a
            variable added to one copy's model (``with copy.model: ...``) is in every
            copy's, and a model object held on to carries the data of the copy read last:
            sample through the problem (:meth:`sample`), not ``pm.sample(model=...)``. For the
            same reason, copies must not be sampled at the same time from threads of one
            process (each would set the shared data); separate processes each hold their own
            model, and ``bj.sample_many`` and ``bj.validate.sbc`` run one task at a time per
            worker process.

        Raises
        ------
        ValueError
            For an unknown modality name, or data of another shape or with NaN/inf values.

        Examples
        --------
        >>> import bayesjoint as bj
        >>> x = bj.Parameter("x", prior=bj.priors.Normal(0.0, 2.0))
        >>> a = bj.Modality("a", physics=bj.physics.Linear([[1.0]], input="x"), data=[3.0],
        ...                 noise=bj.noise.Gaussian(1.0))
        >>> problem = bj.JointInversion(latent=[x], modalities=[a])
        >>> float(problem.with_data({"a": [1.0]}).exact_posterior()["mean"][0])
        0.8
        """
        import copy

        if not isinstance(data, Mapping):
            raise TypeError(
                f"with_data takes a mapping of modality name to data, got {type(data).__name__}"
            )
        unknown = sorted(set(data) - set(self.modalities))
        if unknown:
            raise ValueError(
                f"with_data: {unknown} are not modalities of this problem; it has "
                f"{sorted(self.modalities)}"
            )
        modalities = dict(self.modalities)
        for name, values in data.items():
            old = self.modalities[name]
            values = as_real_array(
                getattr(values, "values", values), f"with_data: the data of modality {name!r}"
            )
            if values.shape != old.data.shape:
                raise ValueError(
                    f"with_data: modality {name!r} has data of shape {old.data.shape}, got "
                    f"{values.shape}; give new data of the same shape (or build a new problem)"
                )
            if not np.all(np.isfinite(values)):
                raise ValueError(
                    f"with_data: the new data of modality {name!r} contain NaN or inf values"
                )
            values = values.copy()
            values.flags.writeable = False
            mod = copy.copy(old)
            mod.data = values
            modalities[name] = mod
        new = copy.copy(self)
        new.modalities = modalities
        new._linear_system = None
        changed_blocks = {
            block for block, mods in self.blocks() if any(m.name in data for m in mods)
        }
        if changed_blocks & set(self._discrepancy_blocks):
            # a discrepancy block's plan reads its data (e.g. a default amplitude prior)
            new._discrepancy_blocks = new._plan_discrepancy_blocks()
            new._model, new._observed = None, {}
        else:
            new._model = self.model  # built once here, so that every copy shares it
            new._observed = dict(self._observed)
        return new

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
                blocks.append((process_name(mod), by_process[key]))
            by_process[key].append(mod)
        return [(name if len(mods) > 1 else mods[0].name, mods) for name, mods in blocks]

    @property
    def discrepancy_blocks(self) -> dict[str, DiscrepancyBlock]:
        """The discrepancy blocks of this problem by block name (see :meth:`blocks`).

        Each :class:`~bayesjoint.discrepancy.builder.DiscrepancyBlock` holds what this problem
        decides for the block — route, HSGP basis, hyperparameters as used — and is recorded in
        the ``discrepancies`` provenance of saved results. The user's
        :class:`~bayesjoint.discrepancy.GP` is never written to, so a process shared by several
        problems keeps each problem's decisions apart.
        """
        return dict(self._discrepancy_blocks)

    def _build_model(self) -> pm.Model:
        coords = {dim: values for dim, values in self._coords.items()}
        self._observed = {}
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
                if block in self._discrepancy_blocks:
                    self._discrepancy_blocks[block].build(model, means)
                else:
                    mod = mods[0]
                    observed = pytensor.shared(mod.data, name=f"{mod.name}__observed", borrow=True)
                    self._observed[mod.name] = observed
                    mod.noise.build(mod.name, means[mod.name], observed, mod.dims)
        return model

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
        return [block.describe() for block in self._discrepancy_blocks.values()]

    def sample(
        self,
        draws: int = 1000,
        tune: int = 1000,
        chains: int = 4,
        *,
        method: str = "auto",
        cores: int | None = None,
        random_seed: int | None = None,
        target_accept: float | None = None,
        progressbar: bool = True,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: float = 30.0,
        resume: bool = False,
        **kwargs: Any,
    ) -> az.InferenceData:
        """Sample the joint posterior by the fastest route that is right for the problem.

        Parameters
        ----------
        draws, tune, chains : int
            Kept draws, tuning draws and chains (``tune`` does not apply to ``exact``/``smc``).
        method : {"auto", "exact", "collapsed", "nuts", "nuts-plain", "smc"}, default "auto"
            The route (see :mod:`bayesjoint.inference.routes`): ``exact`` draws independently
            from the closed-form posterior of a linear-Gaussian problem; ``collapsed`` runs NUTS
            on the learned hyperparameters with the fields integrated out, then draws the fields
            exactly; ``nuts`` runs NUTS with the Laplace covariance at the MAP as mass matrix;
            ``nuts-plain`` is PyMC's NUTS unchanged; ``smc`` is tempered SMC. ``auto`` takes the
            first of ``exact``, ``collapsed``, ``nuts``, ``nuts-plain`` that applies, logs its
            choice in one line and records it (``route``, ``route_reason``) in the provenance.
        cores : int, optional
            Chains run at once. Default: one per CPU this process may use, up to ``chains``
            (PyMC's own default halves the CPU count). The sampling routes run BLAS with the
            CPUs left over per running chain (one thread when every CPU runs a chain); both
            figures are recorded (``cores``, ``blas_threads``). See
            :mod:`bayesjoint.inference.threads`.
        random_seed : int, numpy.random.Generator or numpy.random.SeedSequence, optional
            Seed (a Generator or SeedSequence gives an integer seed drawn from it); when omitted
            one is drawn from OS entropy; the integer is recorded in the provenance.
        target_accept : float, optional
            NUTS target acceptance rate (raise towards 0.95 for difficult geometry); by default
            0.8 on the NUTS routes and 0.95 on the collapsed route, whose few hyperparameters
            often have a steep side.
        progressbar : bool, default True
        checkpoint : str or path-like, optional
            A results file written while sampling (every ``checkpoint_every`` seconds on the
            NUTS routes, at the end on the others) and when the run ends or is interrupted;
            :func:`bayesjoint.load` reads it at any moment (see
            ``bayesjoint.inference.checkpoint``). An existing file is refused unless
            ``resume=True``.
        checkpoint_every : float, default 30
            Seconds between writes of the checkpoint.
        resume : bool, default False
            Continue the run in ``checkpoint`` to ``draws`` per chain (each chain from its last
            kept draw); start afresh when the file does not exist.
        **kwargs
            Passed to :func:`pymc.sample` (NUTS routes; NUTS step options such as
            ``max_treedepth`` go to the preconditioned step) or :func:`pymc.sample_smc`; the
            exact route takes none. ``init=`` or ``n_init=`` (PyMC's own initialization) make
            ``auto`` take ``nuts-plain``.

        Returns
        -------
        arviz.InferenceData
            Groups ``posterior``, ``sample_stats``, ``log_likelihood`` (one variable per
            likelihood block: a modality, or modalities sharing a discrepancy),
            ``observed_data``; provenance in every group's attributes.

        Raises
        ------
        TypeError, ValueError
            Before anything is compiled: for a count that is not a whole number ≥ 1 (``tune``
            ≥ 0), ``target_accept`` outside (0, 1), a seed of another type, an unknown keyword
            (naming the closest valid one), draws that cannot fit in memory (with the figure).
        ValueError
            For an unknown ``method``, or a route that does not apply (naming the part of the
            problem that prevents it).
        bayesjoint.SamplingInterrupted
            On SIGINT (Ctrl-C) or SIGTERM: every chain stops, no worker process is left, and the
            exception carries the kept draws (``.idata``, provenance ``interrupted``,
            ``complete = 0``, ``draws_per_chain``), also written to ``checkpoint``.
        """
        from bayesjoint.inference.arguments import check_sample_arguments
        from bayesjoint.inference.checkpoint import sample_checkpointed

        seed = check_sample_arguments(
            self,
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            random_seed=random_seed,
            target_accept=target_accept,
            method=method,
            kwargs=kwargs,
        )
        seed = _fresh_seed() if seed is None else seed

        def attrs(entries: Mapping[str, Any]) -> dict:
            extra = dict(entries)
            extra.setdefault("tune", tune)
            if extra.get("route") in ("nuts", "nuts-plain", "collapsed"):
                extra.setdefault("target_accept", 0.8 if target_accept is None else target_accept)
            return self._provenance(seed, extra)

        return sample_checkpointed(
            self,
            method,
            attrs,
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            random_seed=seed,
            target_accept=target_accept,
            progressbar=progressbar,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            resume=resume,
            **kwargs,
        )

    def find_map(self, *, random_seed: int | None = None, **kwargs: Any) -> xr.Dataset:
        """Return the maximum a posteriori point as a Dataset on the model's dims.

        Parameters
        ----------
        random_seed : int, optional
            Seeds the starting point's jitter (none by default).
        **kwargs
            Passed to :func:`pymc.find_MAP` (e.g. ``method="L-BFGS-B"``).

        Raises
        ------
        TypeError
            For a keyword neither :func:`pymc.find_MAP` nor :func:`scipy.optimize.minimize`
            takes (with the closest valid name), before anything is compiled.
        """
        from bayesjoint._checks import check_kwargs
        from bayesjoint.inference.keywords import find_map_keywords

        check_kwargs(kwargs, find_map_keywords(), "find_map()")
        random_seed = as_seed(random_seed, "find_map(random_seed=...)")
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
        seed = as_seed(random_seed, "sample_posterior_predictive(random_seed=...)")
        seed = _fresh_seed() if seed is None else seed
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

        See :func:`bayesjoint.inference.sample_from_modes`.
        """
        from bayesjoint.inference.multistart import sample_from_modes

        return sample_from_modes(self, modes, **kwargs)

    def sample_smc(self, draws: int = 2000, chains: int = 2, **kwargs: Any) -> az.InferenceData:
        """Tempered sequential Monte Carlo; see :func:`bayesjoint.inference.sample_smc`."""
        from bayesjoint.inference.smc import sample_smc

        return sample_smc(self, draws, chains, **kwargs)

    # -- exact linear-Gaussian path (bayesjoint.linear assembles the system) ----------------
    def linear_gaussian_system(self) -> LinearGaussianSystem:
        """Return the flat linear-Gaussian form of the problem.

        See :func:`bayesjoint.linear.linear_gaussian_system`.

        Raises
        ------
        ValueError
            Naming the first part that is not linear-Gaussian (a coupling, a prior, a physics or
            observation operator, a noise model, a discrepancy).

        Notes
        -----
        Assembled once per problem, like :attr:`model`, and reused by :meth:`exact_posterior`,
        :meth:`information_budget` and the exact sampling route.
        """
        if self._linear_system is None:
            try:
                self._linear_system = linear.linear_gaussian_system(self)
            except ValueError as err:
                self._linear_system = err
        if isinstance(self._linear_system, ValueError):
            raise ValueError(str(self._linear_system))
        return self._linear_system

    def exact_posterior(self) -> xr.Dataset:
        """Return the exact posterior of a linear-Gaussian problem.

        Returns
        -------
        xarray.Dataset
            ``mean``, ``sd`` and, up to 4,096 parameters, ``cov`` over the stacked latent
            vector (dim ``parameter``, labels such as ``'x[3]'``, coordinate ``latent``); see
            :func:`bayesjoint.linear.exact_posterior` and
            :meth:`bayesjoint.linear.LinearGaussianSystem.posterior` (``cov=True`` at any size).

        Raises
        ------
        ValueError
            Naming the part of the problem that is not linear-Gaussian.
        """
        return linear.exact_posterior(self.linear_gaussian_system())

    def information_budget(self) -> xr.Dataset:
        """Return each modality's information contribution (linear-Gaussian problems).

        See :func:`bayesjoint.linear.information_budget` for the variables. A coupling that is a
        linear-Gaussian factor (e.g. a linear petrophysical link) contributes like a modality and
        appears on the ``modality`` dimension under its own name.
        """
        return linear.information_budget(self.linear_gaussian_system())

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
