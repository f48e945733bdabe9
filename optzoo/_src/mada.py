"""MADA: meta-adaptive optimizers through hyper-gradient descent (Ozkara et al., arXiv 2401.08893).

One parameterized update interpolates Adam, AVGrad, Yogi, Adan and Lion through six global
coefficients ``kappa = (b1, b2, b3, rho, c, gamma)``, and the coefficients are learned during
training by one-step-back hypergradient descent. Spec: ``shared/specs/mada.md`` (verified
against the authors' code ``amazon-science/mada_optimizer_search``).

Implementation notes (the "tangent" storage of spec section 6 (b)):

* Step ``t`` computes the direction ``u_t`` and, in closed form (spec section 3; the tests
  check them against ``jax.jvp`` and finite differences), the tangents ``du_t/dkappa_k`` of
  every *learned* coefficient, all in one per-leaf function. The tangents are kept in the
  state (``tangents``, one param-shaped array per learned coefficient); step ``t+1`` turns
  them into the hypergradient ``h_k = -alpha_t * sum(g_{t+1} * du_t/dkappa_k)``: one
  reduction pass, then the update pass. The tangents of ``b1`` and ``b2`` are written in terms
  of the *new* moments (``m_{t-1} - g = (m_t - g) / b1``), so the old ones need not be kept.
* Trimming: a coefficient that is not learned and sits at its Adam value (``b3 = 0``,
  ``rho = 1``, ``c = 1``, ``gamma = 1``) removes its arrays and its arithmetic statically
  (``b3``: ``diff_mu`` and ``prev_grad``; ``rho``: ``nu_avg``; ``gamma``: ``lion_mu``). With
  only ``b1`` and ``b2`` learned (HyperAdam) the state is ``mu, nu`` plus two tangents (2x
  Adam's); with all six learned it is 12 param-sized arrays (6x Adam's).
* Cost: the step is memory-bound. XLA:CPU emits one loop per param-sized output (no
  multi-output fusion), so every new state array and tangent is its own pass over memory;
  ``benchmarks/results/step_time.md`` has the measured ratios to ``optax.adam`` and, in its
  passes column, how many param-sized arrays each compiled step streams. A backend that fuses
  all outputs of a leaf into one loop (GPU, TPU) reads and writes each array once.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax


from optzoo._src import alias, checks

#: The six coefficients, in the order of ``state.coeffs``.
COEFF_NAMES: tuple[str, ...] = ("b1", "b2", "b3", "rho", "c", "gamma")
#: Projection boxes (the reference GPT-2 configuration; b2's lower bound is 0.01 in the toy).
DEFAULT_BOUNDS: tuple[tuple[float, float], ...] = (
    (0.01, 0.99), (0.501, 0.99), (0.0, 0.99), (0.0, 1.0), (0.0, 1.0), (0.0, 1.0))
#: Hyper-learning rates of the reference GPT-2 configuration.
DEFAULT_HYPER_LR: tuple[float, ...] = (5e-4, 5e-4, 0.1, 0.1, 0.1, 0.1)
#: Values that switch a coefficient off (Adam); a coefficient there and not learned is trimmed.
_ADAM_VALUE = {"b3": 0.0, "rho": 1.0, "c": 1.0, "gamma": 1.0}


class ScaleByMadaState(NamedTuple):
  """State of :func:`scale_by_mada`.

  Attributes:
    count: int32 optimizer step ``t`` (``optax.safe_increment``).
    coeffs: the six coefficients ``(b1, b2, b3, rho, c, gamma)`` used by the last update, a
      ``(6,)`` float array (float64 when the params are float64, else float32). Read with
      ``optax.tree.get(state, "coeffs")``; :func:`coeffs_dict` names them.
    hypergrad: the hypergradient ``h`` of the last update, ``(6,)`` (before clipping; zero
      for coefficients that are not learned and during the first ``hyper_start`` steps).
    hyper_buf: heavy-ball momentum buffer of the hyper-optimizer, ``(6,)``.
    prev_lr: the learning rate ``alpha_{t-1}`` the last update was scaled with.
    mu: first moment ``m``.
    nu: raw second moment ``v`` (starts at ``v_init``).
    nu_avg: uniform running mean of ``v_1..v_t`` (AVGrad), or None when trimmed.
    diff_mu: Adan's EMA ``n`` of gradient differences, or None when trimmed.
    prev_grad: the previous gradient (paper mode with ``b3`` active), else None.
    lion_mu: Lion's momentum ``l``, or None when trimmed.
    tangents: one pytree per learned coefficient (in ``COEFF_NAMES`` order): ``du_t/dkappa_k``.
  """

  count: jax.Array
  coeffs: jax.Array
  hypergrad: jax.Array
  hyper_buf: jax.Array
  prev_lr: jax.Array
  mu: optax.Updates
  nu: optax.Updates
  nu_avg: optax.Updates | None
  diff_mu: optax.Updates | None
  prev_grad: optax.Updates | None
  lion_mu: optax.Updates | None
  tangents: tuple[optax.Updates, ...]


def coeffs_dict(state: Any) -> dict[str, jax.Array]:
  """``{name: value}`` of the coefficients in ``state`` (a MADA state or any state holding one).

  >>> import jax.numpy as jnp, optzoo
  >>> from optzoo.mada import coeffs_dict
  >>> tx = optzoo.mada(1e-3)
  >>> sorted(coeffs_dict(tx.init(jnp.zeros(2))))
  ['b1', 'b2', 'b3', 'c', 'gamma', 'rho']
  """
  coeffs = optax.tree.get(state, "coeffs")
  return {name: coeffs[..., i] for i, name in enumerate(COEFF_NAMES)}


def _per_coeff(name: str, value: Any) -> tuple[Any, ...]:
  """A scalar, a 6-sequence or a ``{coeff: value}`` mapping -> a 6-tuple."""
  if isinstance(value, Mapping):
    unknown = set(value) - set(COEFF_NAMES)
    if unknown:
      raise ValueError(f"{name}: unknown coefficient(s) {sorted(unknown)}; known: {COEFF_NAMES}")
    return tuple(value.get(k, 0.0) for k in COEFF_NAMES)
  if isinstance(value, (tuple, list)):
    if len(value) != 6:
      raise ValueError(f"{name} must have 6 entries {COEFF_NAMES}, got {len(value)}.")
    return tuple(value)
  return (value,) * 6


def _safe_sqrt(x):
  """sqrt with a zero (not infinite) derivative at 0: no NaN hypergradients (spec P8)."""
  pos = x > 0
  return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)


def _forward(kap, g, m, v, vb, n, gp, ell, *, t, first, use_b3, use_c, use_rho, use_gamma,
             reference, eps, eps_root, lion_b1, lion_b2):
  """One MADA step on one leaf with coefficients ``kap``: ``(u, intermediates)``.

  Trimmed quantities (``use_* = False``) are skipped; their arrays may be None. Pure
  function of its inputs; ``jax.jvp`` of ``u`` in a coefficient gives the tangents that
  :func:`_tangents` computes in closed form (the tests check this).
  """
  k_b1, k_b2, k_b3, k_rho, k_c, k_gamma = kap
  f: dict[str, Any] = {"g": g, "m_prev": m, "v_prev": v}
  if use_b3:
    if reference:  # P1, P2: the stored previous gradient is zero; n_0 = g_1^2
      d = g
      n_prev = jnp.where(first, g * g, n)
    else:  # real difference, d_1 = 0, n_0 = 0
      d = jnp.where(first, jnp.zeros_like(g), g - gp)
      n_prev = n
    gh = g + k_b3 * d
    f.update(d=d, n_prev=n_prev)
  else:
    gh = g
  gh2 = gh * gh
  f["gh"] = gh
  if use_c:
    sigma = jnp.sign(gh2 - v)
    q = k_c * gh2 + (1.0 - k_c) * (v + sigma * gh2)
    f["sigma"] = sigma
  else:
    q = gh2
  f["q"] = q
  m_new = k_b1 * m + (1.0 - k_b1) * g
  v_new = k_b2 * v + (1.0 - k_b2) * q
  # Materialize the new moments once (they are outputs anyway): otherwise XLA:CPU recomputes
  # them from the old ones inside every consumer, which also forces copies of the old state.
  m_new, v_new = jax.lax.optimization_barrier((m_new, v_new))
  bc1 = 1.0 - k_b1**t
  bc2 = 1.0 - k_b2**t
  num = m_new * (1.0 / bc1)
  n_new = None
  if use_b3:
    n_new = k_b3 * n_prev + (1.0 - k_b3) * d
    num = num + k_b3 * n_new
  vb_new = None
  if use_rho:
    vb_new = vb + (v_new - vb) / t
    # the reference detaches vbar inside vhat (spec section 3)
    vmix = k_rho * v_new + (1.0 - k_rho) * jax.lax.stop_gradient(vb_new)
  else:
    vmix = v_new
  vhat = vmix * (1.0 / bc2) + eps_root
  r = _safe_sqrt(vhat)
  inv_d = 1.0 / (r + eps)
  adapt = num * inv_d
  u = adapt
  ell_new = None
  if use_gamma:
    ell_new = lion_b2 * ell + (1.0 - lion_b2) * g
    s = jnp.sign(lion_b1 * (ell_new if reference else ell) + (1.0 - lion_b1) * g)
    u = k_gamma * adapt + (1.0 - k_gamma) * s
    f["s"] = s
  f.update(m=m_new, v=v_new, n=n_new, vb=vb_new, ell=ell_new, vmix=vmix, vhat=vhat, inv_d=inv_d,
           num=num, adapt=adapt, bc1=bc1, bc2=bc2, eps=eps)
  return u, f


def _tangents(kap, f, t, learned_idx, *, use_b3, use_c, use_rho, use_gamma, **unused):
  """Closed-form ``du/dkappa_k`` for ``k`` in ``learned_idx`` (spec section 3).

  ``F = -gamma * N / (2 D^2 R B2)`` is the derivative of ``u`` in ``vmix`` (zero where
  ``R = 0``, the safe-sqrt convention); every tangent is a few multiply-adds on the
  intermediates of :func:`_forward`.
  """
  del unused
  if not learned_idx:
    return []
  k_b1, k_b2, k_b3, k_rho, k_c, k_gamma = kap
  vhat = f["vhat"]
  pos = vhat > 0
  inv_d = inv_d_f = f["inv_d"]
  if not (use_b3 or use_c or use_rho or use_gamma):
    # Adam family (HyperAdam): 1/D recomputed from vhat in two more forms, bitwise equal to the
    # forward's 1/(safe_sqrt(vhat) + eps) but different HLO, so XLA cannot merge them with the
    # forward's: each of u, du/db1, du/db2 then computes 1/D in its own loop instead of all
    # three reading one materialized 1/D array (10M params on CPU: ~23 instead of ~30
    # param-sized reads+writes per step). Where vhat > 0, |vhat| = max(vhat, tiny) = vhat;
    # elsewhere the outer select gives 0. (With more coefficients active the shared array
    # measured better.)
    eps = f["eps"]
    inv_d = 1.0 / (jnp.where(pos, jnp.sqrt(jnp.abs(vhat)), 0.0) + eps)
    tiny = jnp.finfo(vhat.dtype).smallest_subnormal
    inv_d_f = 1.0 / (jnp.where(pos, jnp.sqrt(jnp.maximum(vhat, tiny)), 0.0) + eps)
  gd = k_gamma * inv_d if use_gamma else inv_d
  need_f = [i for i in learned_idx if i in (1, 2, 3, 4)]
  # scalar reciprocals: array / scalar would cost a division per element in every tangent
  inv_bc1 = 1.0 / f["bc1"]
  inv_bc2 = 1.0 / f["bc2"]
  if need_f:
    # 1/R as rsqrt(vhat), not 1/sqrt(vhat): a different op, so XLA does not share (and
    # materialize) the forward's sqrt; the tangent recomputes it in its own loop.
    inv_r = jnp.where(pos, jax.lax.rsqrt(jnp.where(pos, vhat, 1.0)), 0.0)
    gd_f = k_gamma * inv_d_f if use_gamma else inv_d_f
    adapt = f["adapt"] if inv_d_f is f["inv_d"] else f["num"] * inv_d_f
    big_f = (-0.5 * inv_bc2) * gd_f * adapt * inv_r
    if len(need_f) > 1:  # shared by several tangents: materialize it once
      big_f = jax.lax.optimization_barrier(big_f)
  rho = k_rho if use_rho else 1.0
  out = []
  for i in learned_idx:
    if i == 0:  # b1: m_t and the bias correction 1 - b1^t
      # m_{t-1} - g = (m_t - g) / b1 exactly: reading the new m only avoids keeping the old
      dbc = t * k_b1 ** (t - 1.0) * inv_bc1
      out.append(gd * ((f["m"] - f["g"]) * (1.0 / k_b1) + f["m"] * dbc) * inv_bc1)
    elif i == 1:  # b2: v_t and the bias correction 1 - b2^t; v_{t-1} - q = (v_t - q) / b2
      dbc = t * k_b2 ** (t - 1.0) * inv_bc2
      out.append(big_f * (rho * (1.0 / k_b2) * (f["v"] - f["q"]) + f["vmix"] * dbc))
    elif i == 2:  # b3: n_t, its weight in N, and ghat inside q
      if use_b3:
        d, gh = f["d"], f["gh"]
        dn = f["n"] + k_b3 * (f["n_prev"] - d)
        dq = 2.0 * gh * d
        if use_c:
          dq = dq * (k_c + (1.0 - k_c) * f["sigma"])
        out.append(gd * dn + big_f * (rho * (1.0 - k_b2)) * dq)
      else:
        out.append(jnp.zeros_like(f["m"]))
    elif i == 3:  # rho: the mixture of v and vbar
      out.append(big_f * (f["v"] - f["vb"]) if use_rho else jnp.zeros_like(f["m"]))
    elif i == 4:  # c: square vs Yogi rule
      if use_c:
        gh2 = f["gh"] * f["gh"]
        out.append(big_f * (rho * (1.0 - k_b2)) * (gh2 - f["v_prev"] - f["sigma"] * gh2))
      else:
        out.append(jnp.zeros_like(f["m"]))
    else:  # gamma: adaptive direction vs Lion sign
      out.append(f["adapt"] - f["s"] if use_gamma else jnp.zeros_like(f["m"]))
  return out


def scale_by_mada(
    learning_rate: optax.ScalarOrSchedule = 1.0,
    b1: float = 0.9,
    b2: float = 0.95,
    b3: float = 0.0,
    rho: float = 1.0,
    c: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-6,
    eps_root: float = 0.0,
    lion_b1: float = 0.95,
    lion_b2: float = 0.98,
    learn: Sequence[str] = COEFF_NAMES,
    hyper_lr: Any = DEFAULT_HYPER_LR,
    hyper_momentum: Any = 0.0,
    hyper_clip: float = 10.0,
    hyper_start: int = 0,
    bounds: Sequence[tuple[float, float]] = DEFAULT_BOUNDS,
    v_init: float = 1e-15,
    compat: str = "paper",
    mu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""MADA's direction ``u_t`` with its coefficients learned by hypergradient descent.

  Per step ``t`` (elementwise in every leaf; the six coefficients are global scalars):

  .. math::
    d &= g_t - g_{t-1},\quad \hat g = g_t + \beta_3 d,\quad
    q = c\,\hat g^2 + (1-c)\,[v_{t-1} + \operatorname{sign}(\hat g^2 - v_{t-1})\,\hat g^2] \\
    m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) q,\quad
    n_t = \beta_3 n_{t-1} + (1-\beta_3) d,\quad \bar v_t = \bar v_{t-1} + (v_t - \bar v_{t-1})/t \\
    \ell_t &= \beta_{2L}\ell_{t-1} + (1-\beta_{2L}) g_t,\quad
    s_t = \operatorname{sign}(\beta_{1L}\ell_{t-1} + (1-\beta_{1L}) g_t) \\
    \hat v &= \frac{\rho v_t + (1-\rho)\bar v_t}{1-\beta_2^t},\quad
    u_t = \gamma\,\frac{m_t/(1-\beta_1^t) + \beta_3 n_t}{\sqrt{\hat v + \epsilon_{root}} + \epsilon}
      + (1-\gamma)\, s_t

  Corners: Adam (``b3=0, rho=c=gamma=1``), AVGrad (``rho=0``), Yogi (``c=0``), Adan-like
  (``b3>0``, official Adan's convention: ``b3`` both weights and decays ``n``, no bias
  correction of ``n``), Lion (``gamma=0``, fixed betas ``lion_b1, lion_b2``).

  Hypergradient (one step back, spec section 3): before computing ``u_t``,
  ``h_k = -alpha_{t-1} sum_i g_t[i] du_{t-1}[i]/dkappa_k`` over all leaves, holding the
  previous state, ``g_{t-1}`` and ``l`` fixed and treating ``vbar_{t-1}`` as a constant inside
  ``vhat`` (as the reference code does); ``sign`` has zero derivative; the bias corrections'
  dependence on ``b1, b2`` is included. Then ``h_k = 0`` for unlearned coefficients and for the
  first ``hyper_start`` steps, ``h_k <- h_k min(1, hyper_clip/(|h_k| + 1e-6))``, heavy-ball SGD
  ``buf <- mu_k buf + h_k``, ``kappa_k <- kappa_k - eta_k buf_k``, and a hard projection into
  ``bounds``; ``u_t`` uses the new coefficients. Unlearned coefficients never move.

  The hypergradient assumes the update is exactly ``-alpha_t (u_t + weight decay)``: put
  nothing that rescales updates (clipping of updates, a second learning rate) after it. A
  preceding ``clip_by_global_norm`` feeds the clipped gradient to the hypergradient too (the
  reference used the unclipped one, spec P6). Under ``optax.MultiSteps`` one hypergradient is
  taken per accumulated step, from the averaged gradient (spec P7).

  Args:
    learning_rate: ``alpha_t``, the step size the caller applies after this transform (a float
      or a schedule of this transform's step count). It only scales the hypergradient; pass the
      same value to ``optax.scale_by_learning_rate``. Default 1.0. :func:`mada` wires it.
    b1, b2, b3, rho, c, gamma: initial coefficients. Defaults: the Adam corner with
      ``b1=0.9, b2=0.95`` (the reference GPT-2 run; its README example starts ``rho`` at 0.6).
      ``b3, rho, c, gamma`` decide trimming in ``init`` and so must be concrete (static).
    eps: added outside the square root (>= 0). Default 1e-6 (GPT-2; 1e-8 Shakespeare).
    eps_root: added inside the square root (>= 0). Default 0.
    lion_b1, lion_b2: Lion's fixed betas, in [0, 1). Default 0.95, 0.98 (reference code).
    learn: names of the learned coefficients, a subset of ``COEFF_NAMES``. Default: all six.
      ``("b1", "b2")`` is the paper's HyperAdam baseline; ``()`` freezes everything.
    hyper_lr: per-coefficient hyper learning rates ``eta`` (>= 0): a scalar for all, a
      6-sequence or a ``{name: value}`` mapping. Default ``(5e-4, 5e-4, .1, .1, .1, .1)``
      (reference GPT-2; with gradient accumulation divide by the number of micro-steps, P7).
    hyper_momentum: heavy-ball momentum ``mu`` of the hyper-SGD, in [0, 1) (scalar, 6-sequence
      or mapping). Default 0 (GPT-2; the Shakespeare grid used 0.5).
    hyper_clip: hypergradient clip threshold (>= 0). Default 10 (reference).
    hyper_start: number of initial steps with ``h = 0`` (>= 0). Default 0; GPT-2 used 50.
    bounds: six ``(low, high)`` projection boxes. Default ``DEFAULT_BOUNDS`` (b2 >= 0.501).
    v_init: initial ``v`` and ``vbar`` (>= 0). Default 1e-15 (reference; guards NaN, P8);
      0 gives exactly Adam at the Adam corner.
    compat: ``'paper'`` (default): real gradient difference ``d_t = g_t - g_{t-1}`` with
      ``d_1 = 0``, ``n_0 = 0``, and real Lion ``s_t = sign(b1L l_{t-1} + (1-b1L) g_t)``.
      ``'reference'``: the authors' code as run (spec P1-P3): ``g_{t-1} = 0`` so ``d = g_t``,
      ``n_0 = g_1^2``, and ``s_t`` from the already updated ``l_t``.
    mu_dtype: dtype of the first moment ``m``; ``None`` keeps the params' dtype.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; updates have the gradients' dtype.

  Example:
    >>> import jax, jax.numpy as jnp, optax, optzoo
    >>> tx = optax.chain(optzoo.scale_by_mada(learning_rate=1e-2), optax.scale(-1e-2))
    >>> params = {"w": jnp.array([1.0, -2.0])}
    >>> state = tx.init(params)
    >>> for _ in range(3):
    ...   grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(params)
    ...   updates, state = tx.update(grads, state, params)
    ...   params = optax.apply_updates(params, updates)
    >>> optax.tree.get(state, "coeffs").shape
    (6,)

  Reference: Ozkara, Karakus, Raman, Hong, Sabach, Kveton, Cevher, MADA: Meta-Adaptive
  Optimizers through hyper-gradient Descent, arXiv 2401.08893 (ICML 2024).
  """
  checks.check_learning_rate(learning_rate)
  checks.check_choice("compat", compat, ("paper", "reference"))
  learn = tuple(learn)
  for name in learn:
    checks.check_choice("learn", name, COEFF_NAMES)
  learned = tuple(k for k in COEFF_NAMES if k in learn)  # canonical order, no duplicates
  init_vals = dict(b1=b1, b2=b2, b3=b3, rho=rho, c=c, gamma=gamma)
  bounds = tuple(tuple(float(x) for x in b) for b in bounds)
  if len(bounds) != 6 or any(len(b) != 2 or b[0] > b[1] for b in bounds):
    raise ValueError(f"bounds must be six (low, high) pairs with low <= high, got {bounds!r}.")
  for name in ("b1", "b2", "b3"):
    checks.check_beta(name, init_vals[name])
  for name in ("b1", "b2"):
    if name in learned and not 0.0 < bounds[COEFF_NAMES.index(name)][0]:
      raise ValueError(f"bounds for a learned {name} must have a lower end > 0, got "
                       f"{bounds[COEFF_NAMES.index(name)]!r}.")
  for name in ("rho", "c", "gamma"):
    checks.check_range(name, init_vals[name], 0.0, 1.0)
  checks.check_range("eps", eps, 0.0)
  checks.check_range("eps_root", eps_root, 0.0)
  checks.check_beta("lion_b1", lion_b1)
  checks.check_beta("lion_b2", lion_b2)
  checks.check_range("hyper_clip", hyper_clip, 0.0)
  checks.check_range("hyper_start", hyper_start, 0.0)
  checks.check_range("v_init", v_init, 0.0)
  hyper_lrs = _per_coeff("hyper_lr", hyper_lr)
  hyper_moms = _per_coeff("hyper_momentum", hyper_momentum)
  for k, x in zip(COEFF_NAMES, hyper_lrs):
    checks.check_range(f"hyper_lr[{k}]", x, 0.0)
  for k, x in zip(COEFF_NAMES, hyper_moms):
    checks.check_beta(f"hyper_momentum[{k}]", x)
  mu_dtype = None if mu_dtype is None else jnp.dtype(mu_dtype)
  reference = compat == "reference"

  def is_active(name: str) -> bool:
    if name in learned:
      return True
    value = checks.concrete_float(init_vals[name])
    return value is None or value != _ADAM_VALUE[name]

  learned_idx = tuple(COEFF_NAMES.index(k) for k in learned)
  learned_mask = np.array([k in learned for k in COEFF_NAMES])
  lo = np.array([b[0] for b in bounds])
  hi = np.array([b[1] for b in bounds])

  def coeff_dtype(params):
    dtypes = [jnp.dtype(x.dtype) for x in jax.tree.leaves(params)]
    return jnp.float64 if jnp.dtype("float64") in dtypes else jnp.float32

  def init_fn(params):
    cd = coeff_dtype(params)
    act = {k: is_active(k) for k in _ADAM_VALUE}

    def full(value):
      return jax.tree.map(lambda p: jnp.full_like(p, value, dtype=p.dtype), params)

    zeros = lambda: optax.tree.zeros_like(params)  # noqa: E731
    return ScaleByMadaState(
        count=jnp.zeros([], jnp.int32),
        coeffs=jnp.stack([jnp.asarray(init_vals[k], cd) for k in COEFF_NAMES]),
        hypergrad=jnp.zeros([6], cd),
        hyper_buf=jnp.zeros([6], cd),
        prev_lr=jnp.zeros([], cd),
        mu=optax.tree.zeros_like(params, dtype=mu_dtype),
        nu=full(v_init),
        nu_avg=full(v_init) if act["rho"] else None,
        diff_mu=zeros() if act["b3"] else None,
        prev_grad=zeros() if (act["b3"] and not reference) else None,
        lion_mu=zeros() if act["gamma"] else None,
        tangents=tuple(zeros() for _ in learned),
    )

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    checks.check_same_structure(updates, params)
    cd = state.coeffs.dtype
    use_rho = state.nu_avg is not None
    use_b3 = state.diff_mu is not None
    use_gamma = state.lion_mu is not None
    use_c = "c" in learned or is_active("c")
    treedef = jax.tree.structure(updates)
    g_leaves = treedef.flatten_up_to(updates)

    def leaves(tree):
      return [None] * len(g_leaves) if tree is None else treedef.flatten_up_to(tree)

    # ---- 1. hypergradient of the previous step's direction, one reduction pass
    tangent_leaves = [leaves(tr) for tr in state.tangents]
    h = jnp.zeros([6], cd)
    if learned:
      # one vectorized reduction per tangent (a variadic reduce reading g once measured slower)
      dots = [sum(jnp.sum(g.astype(cd) * tg.astype(cd)) for g, tg in zip(g_leaves, tl))
              for tl in tangent_leaves]
      h = h.at[np.array(learned_idx)].set(-state.prev_lr * jnp.stack(dots))
      h = jnp.where(state.count >= hyper_start, h, jnp.zeros_like(h))
    # ---- 2. clipped heavy-ball SGD on the coefficients, projected into the boxes
    h_clip = h * jnp.minimum(1.0, hyper_clip / (jnp.abs(h) + 1e-6))
    mom = jnp.stack([jnp.asarray(x, cd) for x in hyper_moms])
    lrs = jnp.stack([jnp.asarray(x, cd) for x in hyper_lrs])
    buf = mom * state.hyper_buf + h_clip
    stepped = jnp.clip(state.coeffs - lrs * buf, lo.astype(cd), hi.astype(cd))
    coeffs = jnp.where(learned_mask, stepped, state.coeffs)
    buf = jnp.where(learned_mask, buf, state.hyper_buf)
    # ---- 3. the direction and its tangents, one fused pass per leaf
    count = optax.safe_increment(state.count)
    t = count.astype(cd)
    first = state.count == 0
    lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
    lr = jnp.asarray(lr, cd)
    flags = dict(use_b3=use_b3, use_c=use_c, use_rho=use_rho, use_gamma=use_gamma,
                 reference=reference, eps=eps, eps_root=eps_root, lion_b1=lion_b1,
                 lion_b2=lion_b2)

    def leaf(g, m, v, vb, n, gp, ell):
      kap = [coeffs[i] for i in range(6)]
      u, f = _forward(kap, g.astype(cd) if cd == jnp.float64 else g, m, v, vb, n, gp, ell,
                      t=t, first=first, **flags)
      tangents = _tangents(kap, f, t, learned_idx, **flags)
      tangents = [x.astype(g.dtype) for x in tangents]
      cast = lambda x, ref: None if x is None else x.astype(ref.dtype)  # noqa: E731
      return (u.astype(g.dtype), f["m"].astype(m.dtype), f["v"].astype(v.dtype),
              cast(f["vb"], vb), cast(f["n"], n), None if gp is None else g, cast(f["ell"], ell),
              tangents)

    outs = [leaf(*args) for args in zip(g_leaves, leaves(state.mu), leaves(state.nu),
                                         leaves(state.nu_avg), leaves(state.diff_mu),
                                         leaves(state.prev_grad), leaves(state.lion_mu))]

    def tree(j, present=True):
      return jax.tree.unflatten(treedef, [o[j] for o in outs]) if present else None

    new_tangents = tuple(jax.tree.unflatten(treedef, [o[7][j] for o in outs])
                         for j in range(len(learned_idx)))
    new_state = ScaleByMadaState(
        count=count, coeffs=coeffs, hypergrad=h, hyper_buf=buf, prev_lr=lr,
        mu=tree(1), nu=tree(2), nu_avg=tree(3, use_rho), diff_mu=tree(4, use_b3),
        prev_grad=tree(5, state.prev_grad is not None), lion_mu=tree(6, use_gamma),
        tangents=new_tangents)
    return tree(0), new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def mada(
    learning_rate: optax.ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.95,
    b3: float = 0.0,
    rho: float = 1.0,
    c: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-6,
    eps_root: float = 0.0,
    lion_b1: float = 0.95,
    lion_b2: float = 0.98,
    learn: Sequence[str] = COEFF_NAMES,
    hyper_lr: Any = DEFAULT_HYPER_LR,
    hyper_momentum: Any = 0.0,
    hyper_clip: float = 10.0,
    hyper_start: int = 0,
    bounds: Sequence[tuple[float, float]] = DEFAULT_BOUNDS,
    v_init: float = 1e-15,
    compat: str = "paper",
    mu_dtype: Any | None = None,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    mask: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""MADA with decoupled weight decay: ``theta_t = theta_{t-1} - alpha_t (u_t + lambda theta_{t-1})``.

  ``u_t`` and the hypergradient descent on its six coefficients are those of
  :func:`scale_by_mada` (see there for the full rule and every argument). Built as
  ``optax.chain(scale_by_mada(learning_rate=learning_rate, ...),
  optax.add_decayed_weights(weight_decay, mask), optax.scale_by_learning_rate(learning_rate))``;
  weight decay does not depend on the coefficients, so it does not enter the hypergradient.

  Args:
    learning_rate: ``alpha_t``, a float or schedule (>= 0). Not learned.
    b1, b2, b3, rho, c, gamma, eps, eps_root, lion_b1, lion_b2, learn, hyper_lr,
      hyper_momentum, hyper_clip, hyper_start, bounds, v_init, compat, mu_dtype: as in
      :func:`scale_by_mada` (same defaults).
    weight_decay: decoupled decay ``lambda`` (>= 0). Default 0; the reference GPT-2 runs used
      0.1 on tensors with ``ndim >= 2`` only: pass ``mask=lambda p: jax.tree.map(lambda x:
      x.ndim >= 2, p)`` to reproduce that.
    mask: pytree of bools (or a callable returning one) selecting the params to decay.

  Example:
    >>> import jax, jax.numpy as jnp, optax, optzoo
    >>> params = jnp.array([1.0, -2.0])
    >>> tx = optzoo.mada(learning_rate=1e-2, learn=("b1", "b2"))
    >>> state = tx.init(params)
    >>> grads = jax.grad(lambda p: jnp.sum(p ** 2))(params)
    >>> updates, state = tx.update(grads, state, params)
    >>> params = optax.apply_updates(params, updates)

  Reference: Ozkara et al., MADA: Meta-Adaptive Optimizers through hyper-gradient Descent,
  arXiv 2401.08893 (ICML 2024).
  """
  return alias.decoupled_alias(
      scale_by_mada(
          learning_rate=learning_rate, b1=b1, b2=b2, b3=b3, rho=rho, c=c, gamma=gamma, eps=eps,
          eps_root=eps_root, lion_b1=lion_b1, lion_b2=lion_b2, learn=learn, hyper_lr=hyper_lr,
          hyper_momentum=hyper_momentum, hyper_clip=hyper_clip, hyper_start=hyper_start,
          bounds=bounds, v_init=v_init, compat=compat, mu_dtype=mu_dtype),
      learning_rate, weight_decay, mask)
