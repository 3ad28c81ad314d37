"""Simulation-based calibration (Talts et al. 2018, arXiv:1804.06788) of pkpd's NUTS fit on the
plasticity core.

    nice -n 10 python benchmarks/sbc.py [--quick] [--replicates N] [--measure-api] --json PATH

Problem: the psilocybin model (human, one 25 mg oral dose, PK and driver at their card values)
with two core parameters free, ``k_spine_form`` and ``k_spine_elim``, informed by the spine
density % change at 1, 3, 7, 14, 30 and 60 days. Each replicate

1. draws z = (log k_spine_form, log k_spine_elim) from the model-card prior (Normal(mu, sigma) in
   the fit's unconstrained z-space, :class:`pkpd.fit.Problem`);
2. simulates the six statistics with ``Problem.predict`` (the fit's solver settings) plus Normal
   noise with the fit's standard deviation ``Problem.sd()`` (reported se 2 %-points and an
   *additive* residual error of 1.5 %-points: sd = 2.5 %-points; see SBC.md for why not the default
   proportional error);
3. runs one NUTS chain (dense mass, target acceptance 0.8) from the prior median, keeps every
   ``thin``-th post-warmup draw, and records the rank of each true z among the kept draws.

The posterior is the fit's (:func:`pkpd.fit._numpyro_model`, checked to give the same log
density at several points); only the derivative mode differs: forward mode
(``adjoint=diffrax.ForwardMode()``), ~2.7x cheaper than the reverse-mode checkpointed adjoint for
two parameters. Everything (NUTS initialisation, adaptation, sampling, the ODE solves) is one
``jax.jit`` of a function of (key, simulated data, initial z), compiled once for all replicates:
the public ``fit_nuts`` rebuilds and recompiles its model, its MAP start and its sampler on every
call (``--measure-api`` measures that).

Output: rank histograms (10 bins), chi-square and KS uniformity statistics per parameter, seconds
per replicate, divergences; the JSON follows the benchmark schema (``machine``, ``settings``,
``results`` [{name, value, unit, baseline, ratio}]) plus ``ranks`` and per-replicate details.
The JSON is rewritten after every replicate (``"complete": false`` until the end).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

TIMES_H = (24.0, 72.0, 168.0, 336.0, 720.0, 1440.0)
PARAMETERS = ("k_spine_form", "k_spine_elim")
SE = 2.0  # reported standard error of each point, %-points
ADDITIVE = 1.5  # residual (model) error, %-points
BINS = 10
API_ITER = 20  # warmup = draws of the --measure-api fit_nuts calls


def synthetic_rows():
    """Published-curve rows (``pkpd.load_curves`` format) for the design; values are placeholders."""
    import pandas as pd

    row = dict(
        species="human",
        modality="psilocybin",
        citation="simulated (SBC)",
        doi="none",
        quote="simulated",
        n=20.0,
        study_id="sbc",
        readout="spine_density",
        statistic="percent_change",
        unit="%",
        time_unit="h",
        value=0.0,
        dispersion=str(SE),
        dispersion_type="se",
    )
    return pd.DataFrame([dict(row, time=t) for t in TIMES_H])


def uniformity(ranks: np.ndarray, n_ranks: int, bins: int = BINS) -> dict:
    """Histogram and uniformity statistics of integer ranks in 0..n_ranks-1 (n_ranks = L + 1)."""
    from scipy import stats

    ranks = np.asarray(ranks, int)
    n = ranks.size
    edges = np.linspace(0, n_ranks, bins + 1)  # bin b holds ranks with edges[b] <= r < edges[b+1]
    counts = np.histogram(ranks, bins=edges)[0]
    # exact expected probabilities under the discrete uniform (equal if bins divides n_ranks)
    per_bin = np.array(
        [np.sum((np.arange(n_ranks) >= lo) & (np.arange(n_ranks) < hi)) for lo, hi in zip(edges[:-1], edges[1:])]
    )
    expected = n * per_bin / n_ranks
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    chi2_p = float(stats.chi2.sf(chi2, bins - 1))
    # KS-type: largest gap between the empirical CDF of the ranks and the discrete uniform CDF
    k = np.arange(n_ranks)
    ecdf = np.searchsorted(np.sort(ranks), k, side="right") / n
    ks = float(np.max(np.abs(ecdf - (k + 1) / n_ranks)))
    ks_p = float(stats.kstwo.sf(ks, n))  # continuous-uniform reference: conservative for discrete ranks
    u = (ranks + 0.5) / n_ranks
    return dict(
        histogram=counts.tolist(),
        expected_per_bin=expected.tolist(),
        chi2=chi2,
        chi2_df=bins - 1,
        chi2_p=chi2_p,
        ks=ks,
        ks_p=ks_p,
        mean_normalised_rank=float(u.mean()),
        sd_normalised_rank=float(u.std(ddof=1)),
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="12 replicates (default 50)")
    ap.add_argument("--replicates", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--draws", type=int, default=98, help="post-warmup draws before thinning")
    ap.add_argument("--thin", type=int, default=2)
    ap.add_argument("--max-tree-depth", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--measure-api",
        action="store_true",
        help="also time two calls of pkpd.fit.fit_nuts on two simulated data sets (recompilation)",
    )
    ap.add_argument("--json", required=True)
    args = ap.parse_args(argv)
    n_rep = args.replicates or (12 if args.quick else 50)

    import diffrax as dfx
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.diagnostics import effective_sample_size
    from numpyro.infer.hmc import hmc
    from numpyro.infer.util import initialize_model, log_density

    import pkpd
    from pkpd.fit import Problem, _numpyro_model

    t_setup = time.perf_counter()
    error = pkpd.ErrorModel(kind="additive", additive=ADDITIVE)
    problem = Problem("psilocybin", synthetic_rows(), parameters=list(PARAMETERS), error=error)
    assert problem.names == list(PARAMETERS), problem.names
    sd = jnp.asarray(problem.sd())
    n_obs = problem.obs.n
    mu, sigma = problem.mu, problem.sigma
    names = [f"z_{n}" for n in problem.names]

    # The fit's model with forward-mode derivatives through the solver (same density, checked below).
    def model(obs):
        z = jnp.stack([numpyro.sample(f"z_{s.name}", dist.Normal(s.mu, s.sigma)) for s in problem.specs])
        pred = problem.predict(z, adjoint=dfx.ForwardMode())
        numpyro.sample("obs", dist.Normal(pred, sd), obs=obs)

    predict = jax.jit(problem.predict)
    fit_model, _ = _numpyro_model(problem)
    y_check = np.asarray(predict(jnp.asarray(mu)))
    for zc in (mu, mu + sigma, mu - 0.7 * sigma):
        params = {n: jnp.asarray(zc[i]) for i, n in enumerate(names)}
        a = float(log_density(model, (), {"obs": jnp.asarray(y_check + 1.0)}, params)[0])
        b = float(log_density(fit_model, (), {"obs": jnp.asarray(y_check + 1.0)}, params)[0])
        assert abs(a - b) <= 1e-8 * max(1.0, abs(b)), (a, b)

    _, pe_gen, _, _ = initialize_model(
        jax.random.PRNGKey(0),
        model,
        model_args=(jnp.zeros(n_obs),),
        dynamic_args=True,
        forward_mode_differentiation=True,
    )
    init_kernel, sample_kernel = hmc(potential_fn_gen=pe_gen, algo="NUTS")
    W, N, thin = args.warmup, args.draws, args.thin

    def run_chain(key, y, z0):
        state = init_kernel(
            {n: z0[i] for i, n in enumerate(names)},
            num_warmup=W,
            dense_mass=[tuple(sorted(names))],
            target_accept_prob=0.8,
            max_tree_depth=args.max_tree_depth,
            forward_mode_differentiation=True,
            model_args=(y,),
            rng_key=key,
        )

        def step(st, _):
            st = sample_kernel(st, model_args=(y,))
            return st, (jnp.stack([st.z[n] for n in names]), st.diverging, st.num_steps)

        _, (zs, div, nsteps) = jax.lax.scan(step, state, None, length=W + N)
        return zs, div, nsteps

    run = jax.jit(run_chain)
    setup_s = time.perf_counter() - t_setup

    kept = np.arange(W + thin - 1, W + N, thin)  # every thin-th post-warmup draw
    L = kept.size
    ranks = {p: [] for p in PARAMETERS}
    reps: list[dict] = []
    rejected_prior_draws = 0
    z0 = jnp.asarray(mu)  # start at the prior median: independent of the truth

    def report(complete: bool, extra_results=()):
        secs = [r["seconds"] for r in reps[1:]] if len(reps) > 1 else [r["seconds"] for r in reps]
        results = [
            dict(
                name="sbc_seconds_per_replicate",
                value=float(np.median(secs)) if secs else None,
                unit="s",
                baseline=None,
                ratio=None,
            ),
            dict(
                name="sbc_first_replicate_seconds_with_compile",
                value=reps[0]["seconds"] if reps else None,
                unit="s",
                baseline=None,
                ratio=None,
            ),
            dict(name="sbc_replicates", value=len(reps), unit="1", baseline=None, ratio=None),
            dict(
                name="sbc_divergences_post_warmup_total",
                value=int(sum(r["divergences_post_warmup"] for r in reps)),
                unit="1",
                baseline=None,
                ratio=None,
            ),
            dict(
                name="sbc_replicates_with_post_warmup_divergences",
                value=int(sum(r["divergences_post_warmup"] > 0 for r in reps)),
                unit="1",
                baseline=None,
                ratio=None,
            ),
            dict(
                name="sbc_divergences_warmup_total",
                value=int(sum(r["divergences_warmup"] for r in reps)),
                unit="1",
                baseline=None,
                ratio=None,
            ),
            dict(
                name="sbc_mean_leapfrog_steps_per_draw",
                value=float(np.mean([r["mean_leapfrog_post_warmup"] for r in reps])) if reps else None,
                unit="1",
                baseline=None,
                ratio=None,
            ),
            dict(name="sbc_compiled_functions", value=int(run._cache_size()), unit="1", baseline=None, ratio=None),
        ]
        stats_all = {}
        for p in PARAMETERS:
            if len(ranks[p]) < 2:
                continue
            s = uniformity(np.asarray(ranks[p]), L + 1)
            stats_all[p] = s
            ess = [r["ess_kept"][p] for r in reps]
            zscore = [r["z_score"][p] for r in reps]
            contraction = [r["contraction"][p] for r in reps]
            results += [
                dict(
                    name=f"sbc_chi2_{p}", value=s["chi2"], unit=f"chi2 ({s['chi2_df']} df)", baseline=None, ratio=None
                ),
                dict(name=f"sbc_chi2_p_{p}", value=s["chi2_p"], unit="1", baseline=None, ratio=None),
                dict(name=f"sbc_ks_{p}", value=s["ks"], unit="1", baseline=None, ratio=None),
                dict(name=f"sbc_ks_p_{p}", value=s["ks_p"], unit="1", baseline=None, ratio=None),
                dict(
                    name=f"sbc_mean_normalised_rank_{p}",
                    value=s["mean_normalised_rank"],
                    unit="1 (uniform: 0.5)",
                    baseline=None,
                    ratio=None,
                ),
                dict(
                    name=f"sbc_sd_normalised_rank_{p}",
                    value=s["sd_normalised_rank"],
                    unit="1 (uniform: 0.289)",
                    baseline=None,
                    ratio=None,
                ),
                dict(
                    name=f"sbc_median_ess_of_kept_draws_{p}",
                    value=float(np.median(ess)),
                    unit=f"draws (of {L})",
                    baseline=None,
                    ratio=None,
                ),
                dict(
                    name=f"sbc_mean_z_score_{p}",
                    value=float(np.mean(zscore)),
                    unit="(posterior mean - truth) / posterior sd",
                    baseline=None,
                    ratio=None,
                ),
                dict(
                    name=f"sbc_median_contraction_{p}",
                    value=float(np.median(contraction)),
                    unit="1 - posterior var / prior var",
                    baseline=None,
                    ratio=None,
                ),
            ]
        results += list(extra_results)
        out = {
            "machine": {
                "python": platform.python_version(),
                "machine": platform.machine(),
                "jax": jax.__version__,
                "numpyro": numpyro.__version__,
                "pkpd": getattr(pkpd, "__version__", "?"),
                "cpu_count": os.cpu_count(),
                "load_average_1_5_15": list(os.getloadavg()),
                "niceness": os.nice(0),
            },
            "settings": {
                "modality": "psilocybin",
                "species": "human",
                "schedule": "protocol('psilocybin'): one oral dose",
                "parameters": list(PARAMETERS),
                "prior_mu_z": mu.tolist(),
                "prior_sigma_z": sigma.tolist(),
                "observations": [f"spine_density percent_change at {t:g} h" for t in TIMES_H],
                "se": SE,
                "error_model": dict(kind="additive", additive=ADDITIVE),
                "likelihood_sd": np.asarray(sd).tolist(),
                "replicates_requested": n_rep,
                "warmup": W,
                "draws": N,
                "thin": thin,
                "kept_draws": L,
                "rank_values": L + 1,
                "bins": BINS,
                "max_tree_depth": args.max_tree_depth,
                "dense_mass": True,
                "target_accept_prob": 0.8,
                "init": "prior median",
                "derivatives": "forward mode (diffrax.ForwardMode)",
                "seed": args.seed,
                "setup_seconds": setup_s,
                "complete": complete,
                "rejected_prior_draws_nonfinite_simulation": rejected_prior_draws,
            },
            "results": results,
            "ranks": {p: [int(r) for r in ranks[p]] for p in PARAMETERS},
            "uniformity": stats_all,
            "replicates": reps,
        }
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
        return out

    rng = np.random.default_rng(args.seed)
    t_all = time.perf_counter()
    for i in range(n_rep):
        while True:  # a prior draw whose simulation fails would have to be discarded (counted)
            z_true = mu + sigma * rng.standard_normal(len(mu))
            y_mean = np.asarray(predict(jnp.asarray(z_true)))
            if np.all(np.isfinite(y_mean)):
                break
            rejected_prior_draws += 1
        y = y_mean + np.asarray(sd) * rng.standard_normal(n_obs)
        t0 = time.perf_counter()
        zs, div, nsteps = jax.block_until_ready(run(jax.random.PRNGKey(1000 * args.seed + i), jnp.asarray(y), z0))
        secs = time.perf_counter() - t0
        zs, div, nsteps = np.asarray(zs), np.asarray(div), np.asarray(nsteps)
        draws = zs[kept]
        rec = dict(
            replicate=i,
            seconds=secs,
            z_true=z_true.tolist(),
            y=y.tolist(),
            divergences_warmup=int(div[:W].sum()),
            divergences_post_warmup=int(div[W:].sum()),
            mean_leapfrog_post_warmup=float(nsteps[W:].mean()),
            max_leapfrog=int(nsteps.max()),
            ranks={},
            ess_kept={},
            z_score={},
            contraction={},
            posterior_mean={},
            posterior_sd={},
        )
        for j, p in enumerate(PARAMETERS):
            r = int(np.sum(draws[:, j] < z_true[j]))
            ranks[p].append(r)
            m, s = float(draws[:, j].mean()), float(draws[:, j].std(ddof=1))
            rec["ranks"][p] = r
            rec["posterior_mean"][p], rec["posterior_sd"][p] = m, s
            rec["z_score"][p] = (m - z_true[j]) / s
            rec["contraction"][p] = 1.0 - s**2 / sigma[j] ** 2
            rec["ess_kept"][p] = float(effective_sample_size(draws[None, :, j]))
        reps.append(rec)
        print(
            f"[sbc] replicate {i + 1}/{n_rep}: {secs:.1f} s, ranks {[rec['ranks'][p] for p in PARAMETERS]} of {L}, "
            f"divergences {rec['divergences_warmup']}+{rec['divergences_post_warmup']}, "
            f"leapfrog/draw {rec['mean_leapfrog_post_warmup']:.1f}, load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        report(False)
    total = time.perf_counter() - t_all

    extra = [dict(name="sbc_total_seconds", value=total, unit="s", baseline=None, ratio=None)]
    if args.measure_api:
        # The public path: fit_nuts(Problem(...)) per data set (MAP start + NUTS, reverse-mode
        # gradients); short chains, since what is measured is the per-call (re)compilation.
        from pkpd.fit import fit_nuts

        api = []
        for k in range(2):
            z_true = mu + sigma * rng.standard_normal(len(mu))
            rows = synthetic_rows()
            rows["value"] = np.asarray(predict(jnp.asarray(z_true))) + np.asarray(sd) * rng.standard_normal(n_obs)
            t0 = time.perf_counter()
            pr = Problem("psilocybin", rows, parameters=list(PARAMETERS), error=error)
            fit_nuts(pr, chains=1, warmup=API_ITER, draws=API_ITER, seed=k, progress=False, prior_draws=10)
            api.append(time.perf_counter() - t0)
            print(f"[sbc] fit_nuts call {k + 1}: {api[-1]:.1f} s", flush=True)
        own = float(np.median([r["seconds"] for r in reps[1:]])) if len(reps) > 1 else reps[0]["seconds"]
        extra += [
            dict(
                name=f"api_fit_nuts_first_call_seconds_warmup{API_ITER}_draws{API_ITER}",
                value=api[0],
                unit="s",
                baseline="sbc_seconds_per_replicate",
                ratio=api[0] / own,
            ),
            dict(
                name=f"api_fit_nuts_second_call_seconds_warmup{API_ITER}_draws{API_ITER}",
                value=api[1],
                unit="s",
                baseline="sbc_seconds_per_replicate",
                ratio=api[1] / own,
            ),
        ]
    out = report(True, extra)
    for r in out["results"]:
        print(
            f"{r['name']:<48} {r['value']:.4g} {r['unit']}"
            if isinstance(r["value"], float)
            else f"{r['name']:<48} {r['value']} {r['unit']}"
        )
    for p in PARAMETERS:
        print(f"{p}: rank histogram {out['uniformity'][p]['histogram']}")


if __name__ == "__main__":
    main()
