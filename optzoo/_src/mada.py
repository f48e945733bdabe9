"""MADA: meta-adaptive optimizers through hyper-gradient descent.

One parameterized update interpolates Adam, AVGrad, Yogi, Adan and Lion through six global
coefficients ``kappa = (b1, b2, b3, rho, c, gamma)``, and the coefficients are learned during
training by one-step-back hypergradient descent. The equations follow the authors' code
(``amazon-science/mada_optimizer_search``), which this port reproduces numerically in
``compat='reference'``.

Implementation notes (the hypergradient is carried forward as tangents):

* Step ``t`` computes the direction ``u_t`` and, in closed form (the tests check them against
  ``jax.jvp`` and finite differences), the tangents ``du_t/dkappa_k`` of every *learned*
  coefficient, all in one per-leaf function. The tangents are kept in the state
  (``tangents``, one param-shaped array per learned coefficient); step ``t+1`` turns them into
  the hypergradient ``h_k = -alpha_t * sum(g_{t+1} * du_t/dkappa_k)``: one reduction pass, then
  the update pass. The tangents of ``b1`` and ``b2`` are written in terms of the *new* moments
  (``m_{t-1} - g = (m_t - g) / b1``), so the old ones need not be kept.
* Trimming: a coefficient that is not learned and sits at its Adam value (``b3 = 0``,
  ``rho = 1``, ``c = 1``, ``gamma = 1``) removes its arrays and its arithmetic statically
  (``b3``: ``diff_mu`` and ``prev_grad``; ``rho``: ``nu_avg``; ``gamma``: ``lion_mu``). With
  only ``b1`` and ``b2`` learned (HyperAdam) the state is ``mu, nu`` plus two tangents (2x
  Adam's); with all six learned it is 12 param-sized arrays (6x Adam's).
* Cost: the step is memory-bound. XLA:CPU emits one loop per param-sized output (no
  multi-output fusion), so every new state array and tangent is its own pass over memory. A
  backend that fuses all outputs of a leaf into one loop (GPU, TPU) reads and writes each
  array once.

References:
  Ozkara et al., `MADA: Meta-Adaptive Optimizers through hyper-gradient Descent
  <https://arxiv.org/abs/2401.08893>`_, 2024
"""

from __future__ import annotations

import functools
from typing import Any, Literal, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax


from optzoo._src import alias
from optzoo._src.base import checks, trees


class _Coeffs(NamedTuple):
  """The six coefficients of one step (global scalars), in the order of ``state.coeffs``."""

  b1: Any
  b2: Any
  b3: Any
  rho: Any
  c: Any
  gamma: Any


#: The six coefficients, in the order of ``state.coeffs``.
MADA_COEFF_NAMES: tuple[str, ...] = _Coeffs._fields
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
      ``optax.tree.get(state, "coeffs")``; ``optzoo.mada_coefficients`` names them.
    hypergrad: the hypergradient ``h`` of the last update, ``(6,)`` (before clipping; zero
      for coefficients that are not learned and during the first ``hyper_start`` steps).
    hyper_buf: heavy-ball momentum buffer of the hyper-optimizer, ``(6,)``.
    prev_lr: the learning rate ``alpha_{t-1}`` the last update was scaled with.
    mu: first moment ``m``.
    nu: raw second moment ``v`` (starts at ``v_init``).
    nu_avg: uniform running mean of ``v_1..v_t`` (AVGrad), or None when trimmed.
    diff_mu: Adan's EMA ``n`` of gradient differences, or None when trimmed.
    prev_grad: the previous gradient (``compat='paper'`` with ``b3`` active), else None.
    lion_mu: Lion's momentum ``l``, or None when trimmed.
    tangents: one pytree per learned coefficient (in ``MADA_COEFF_NAMES`` order): ``du_t/dkappa_k``.
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


def mada_coefficients(state: Any) -> dict[str, jax.Array]:
  """``{name: value}`` of the coefficients in ``state`` (a MADA state or any state holding one).

  >>> import jax.numpy as jnp, optzoo
  >>> tx = optzoo.mada(1e-3)
  >>> sorted(optzoo.mada_coefficients(tx.init(jnp.zeros(2))))
  ['b1', 'b2', 'b3', 'c', 'gamma', 'rho']
  """
  coeffs = optax.tree.get(state, "coeffs")
  return {name: coeffs[..., i] for i, name in enumerate(MADA_COEFF_NAMES)}


def _per_coeff(name: str, value: Any) -> tuple[Any, ...]:
  """A scalar, a sequence with one entry per coefficient or a ``{coeff: value}`` mapping -> a
  tuple in ``MADA_COEFF_NAMES`` order."""
  if isinstance(value, Mapping):
    unknown = set(value) - set(MADA_COEFF_NAMES)
    if unknown:
      raise ValueError(f"{name}: unknown coefficient(s) {sorted(unknown)}; "
                       f"known: {MADA_COEFF_NAMES}")
    return tuple(value.get(k, 0.0) for k in MADA_COEFF_NAMES)
  if isinstance(value, (tuple, list)):
    if len(value) != len(MADA_COEFF_NAMES):
      raise ValueError(
          f"{name} must have {len(MADA_COEFF_NAMES)} entries {MADA_COEFF_NAMES}, got {len(value)}.")
    return tuple(value)
  return (value,) * len(MADA_COEFF_NAMES)


def _safe_sqrt(x):
  """sqrt with a zero (not infinite) derivative at 0: no NaN hypergradients at zero gradients."""
  pos = x > 0
  return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)


# --------------------------------------------------------------------------- one leaf, one step
class _StepRule(NamedTuple):
  """The static shape of a step: which coefficients are active, and the fixed constants."""

  b3: bool
  c: bool
  rho: bool
  gamma: bool
  reference: bool
  eps: float
  eps_root: float
  lion_b1: float
  lion_b2: float


class _Quantities(NamedTuple):
  """Per-leaf quantities of one step, read by the closed-form tangents (None when trimmed)."""

  g: jax.Array           # the gradient g_t
  v_prev: jax.Array      # v_{t-1}
  d: Any                 # the gradient difference (b3 active)
  n_prev: Any            # n_{t-1} (b3 active)
  gh: jax.Array          # g_t + b3 d
  sigma: Any             # sign(gh^2 - v_{t-1}) (c active)
  q: jax.Array           # the second-moment input
  m: jax.Array           # m_t
  v: jax.Array           # v_t
  n: Any                 # n_t (b3 active)
  vb: Any                # vbar_t (rho active)
  ell: Any               # Lion's l_t (gamma active)
  vmix: jax.Array        # rho v_t + (1 - rho) vbar_t
  vhat: jax.Array        # vmix / (1 - b2^t) + eps_root
  inv_d: jax.Array       # 1 / (sqrt(vhat) + eps)
  num: jax.Array         # m_t / (1 - b1^t) + b3 n_t
  adapt: jax.Array       # num / D
  s: Any                 # the Lion sign (gamma active)
  bc1: jax.Array         # 1 - b1^t
  bc2: jax.Array         # 1 - b2^t


def _direction(kap: _Coeffs, g, m, v, vb, n, prev_grad, ell, *, t, first, rule: _StepRule):
  """One MADA step on one leaf with coefficients ``kap``: ``(u, quantities)``.

  Trimmed quantities (inactive in ``rule``) are skipped; their arrays may be None. Pure
  function of its inputs; ``jax.jvp`` of ``u`` in a coefficient gives the tangents that
  :func:`_tangents` computes in closed form (the tests check this).
  """
  d = n_prev = sigma = n_new = vb_new = ell_new = s = None
  if rule.b3:
    if rule.reference:  # the stored previous gradient is zero; n_0 = g_1^2
      d = g
      n_prev = jnp.where(first, g * g, n)
    else:  # real difference, d_1 = 0, n_0 = 0
      d = jnp.where(first, jnp.zeros_like(g), g - prev_grad)
      n_prev = n
    gh = g + kap.b3 * d
  else:
    gh = g
  gh2 = gh * gh
  # An infinite second moment (float32 |g| above ~1e19) stays infinite, as in optax.amsgrad:
  # the formula could give inf - inf or 0 * inf there.
  overflow = jnp.isinf(v) | jnp.isinf(gh2)
  if rule.c:
    sigma = jnp.sign(gh2 - v)
    yogi = v + sigma * gh2
    overflow = overflow | jnp.isinf(yogi)
    q = kap.c * gh2 + (1.0 - kap.c) * yogi
  else:
    q = gh2
  m_new = kap.b1 * m + (1.0 - kap.b1) * g
  v_new = jnp.where(overflow, jnp.inf, kap.b2 * v + (1.0 - kap.b2) * q)
  # Materialize the new moments once (they are outputs anyway): otherwise XLA:CPU recomputes
  # them from the old ones inside every consumer, which also forces copies of the old state.
  m_new, v_new = jax.lax.optimization_barrier((m_new, v_new))
  bc1 = 1.0 - kap.b1**t
  bc2 = 1.0 - kap.b2**t
  num = m_new * (1.0 / bc1)
  if rule.b3:
    n_new = kap.b3 * n_prev + (1.0 - kap.b3) * d
    num = num + kap.b3 * n_new
  if rule.rho:
    # an overflowed vbar = inf stays inf (inf - inf would be NaN); v_t = inf makes vbar inf
    vb_new = jnp.where(jnp.isinf(vb), vb, vb + (v_new - vb) / t)
    # the reference detaches vbar inside vhat
    vmix = kap.rho * v_new + (1.0 - kap.rho) * jax.lax.stop_gradient(vb_new)
    vmix = jnp.where(jnp.isnan(vmix), jnp.inf, vmix)  # 0 * inf at rho = 0 or 1 when v_t = inf
  else:
    vmix = v_new
  vhat = vmix * (1.0 / bc2) + rule.eps_root
  r = _safe_sqrt(vhat)
  inv_d = 1.0 / (r + rule.eps)
  adapt = num * inv_d
  u = adapt
  if rule.gamma:
    ell_new = rule.lion_b2 * ell + (1.0 - rule.lion_b2) * g
    s = jnp.sign(rule.lion_b1 * (ell_new if rule.reference else ell) + (1.0 - rule.lion_b1) * g)
    u = kap.gamma * adapt + (1.0 - kap.gamma) * s
  return u, _Quantities(
      g=g, v_prev=v, d=d, n_prev=n_prev, gh=gh, sigma=sigma, q=q, m=m_new, v=v_new, n=n_new,
      vb=vb_new, ell=ell_new, vmix=vmix, vhat=vhat, inv_d=inv_d, num=num, adapt=adapt, s=s,
      bc1=bc1, bc2=bc2)


class _Shared(NamedTuple):
  """Terms shared by several tangents."""

  gd: jax.Array      # gamma / D
  big_f: Any         # F = du/dvmix (None when no tangent needs it)
  rho: Any           # rho, or 1.0 when rho is trimmed
  inv_bc1: jax.Array
  inv_bc2: jax.Array


#: The coefficients whose tangent goes through ``vmix`` (they read ``F``).
_THROUGH_VMIX = ("b2", "b3", "rho", "c")


def _shared_terms(kap: _Coeffs, f: _Quantities, learned: Sequence[str], rule: _StepRule) -> _Shared:
  """``gamma/D``, the scalar reciprocals, and ``F = -gamma N / (2 D^2 R B2)``, the derivative of
  ``u`` in ``vmix`` (zero where ``R = 0``, the safe-sqrt convention)."""
  vhat = f.vhat
  pos = vhat > 0
  inv_d = inv_d_f = f.inv_d
  if not (rule.b3 or rule.c or rule.rho or rule.gamma):
    # Adam family (HyperAdam): 1/D recomputed from vhat in two more forms, bitwise equal to the
    # forward's 1/(safe_sqrt(vhat) + eps) but different HLO, so XLA cannot merge them with the
    # forward's: each of u, du/db1, du/db2 then computes 1/D in its own loop instead of all
    # three reading one materialized 1/D array (10M params on CPU: ~23 instead of ~30
    # param-sized reads+writes per step). Where vhat > 0, |vhat| = max(vhat, tiny) = vhat;
    # elsewhere the outer select gives 0. (With more coefficients active the shared array
    # measured better.)
    eps = rule.eps
    inv_d = 1.0 / (jnp.where(pos, jnp.sqrt(jnp.abs(vhat)), 0.0) + eps)
    tiny = jnp.finfo(vhat.dtype).smallest_subnormal
    inv_d_f = 1.0 / (jnp.where(pos, jnp.sqrt(jnp.maximum(vhat, tiny)), 0.0) + eps)
  gd = kap.gamma * inv_d if rule.gamma else inv_d
  need_f = [k for k in learned if k in _THROUGH_VMIX]
  # scalar reciprocals: array / scalar would cost a division per element in every tangent
  inv_bc1 = 1.0 / f.bc1
  inv_bc2 = 1.0 / f.bc2
  big_f = None
  if need_f:
    # 1/R as rsqrt(vhat), not 1/sqrt(vhat): a different op, so XLA does not share (and
    # materialize) the forward's sqrt; the tangent recomputes it in its own loop.
    inv_r = jnp.where(pos, jax.lax.rsqrt(jnp.where(pos, vhat, 1.0)), 0.0)
    gd_f = kap.gamma * inv_d_f if rule.gamma else inv_d_f
    adapt = f.adapt if inv_d_f is f.inv_d else f.num * inv_d_f
    big_f = (-0.5 * inv_bc2) * gd_f * adapt * inv_r
    if len(need_f) > 1:  # shared by several tangents: materialize it once
      big_f = jax.lax.optimization_barrier(big_f)
  rho = kap.rho if rule.rho else 1.0
  return _Shared(gd=gd, big_f=big_f, rho=rho, inv_bc1=inv_bc1, inv_bc2=inv_bc2)


def _tangent_b1(kap, f, t, sh, rule):
  """m_t and the bias correction 1 - b1^t; m_{t-1} - g = (m_t - g) / b1 exactly, so only the
  new m is read."""
  del rule
  dbc = t * kap.b1 ** (t - 1.0) * sh.inv_bc1
  return sh.gd * ((f.m - f.g) * (1.0 / kap.b1) + f.m * dbc) * sh.inv_bc1


def _tangent_b2(kap, f, t, sh, rule):
  """v_t and the bias correction 1 - b2^t; v_{t-1} - q = (v_t - q) / b2."""
  del rule
  dbc = t * kap.b2 ** (t - 1.0) * sh.inv_bc2
  return sh.big_f * (sh.rho * (1.0 / kap.b2) * (f.v - f.q) + f.vmix * dbc)


def _tangent_b3(kap, f, t, sh, rule):
  """n_t, its weight in N, and ghat inside q."""
  del t
  dn = f.n + kap.b3 * (f.n_prev - f.d)
  dq = 2.0 * f.gh * f.d
  if rule.c:
    dq = dq * (kap.c + (1.0 - kap.c) * f.sigma)
  return sh.gd * dn + sh.big_f * (sh.rho * (1.0 - kap.b2)) * dq


def _tangent_rho(kap, f, t, sh, rule):
  """The mixture of v and vbar."""
  del kap, t, rule
  return sh.big_f * (f.v - f.vb)


def _tangent_c(kap, f, t, sh, rule):
  """Square vs Yogi rule."""
  del t, rule
  gh2 = f.gh * f.gh
  return sh.big_f * (sh.rho * (1.0 - kap.b2)) * (gh2 - f.v_prev - f.sigma * gh2)


def _tangent_gamma(kap, f, t, sh, rule):
  """Adaptive direction vs Lion sign."""
  del kap, t, sh, rule
  return f.adapt - f.s


#: Closed-form ``du/dkappa`` per coefficient. A learned coefficient is always active (never
#: trimmed), so each rule may read the quantities of its own term.
_TANGENTS = {"b1": _tangent_b1, "b2": _tangent_b2, "b3": _tangent_b3, "rho": _tangent_rho,
             "c": _tangent_c, "gamma": _tangent_gamma}


def _tangents(kap: _Coeffs, f: _Quantities, t, learned: Sequence[str],
              rule: _StepRule) -> dict[str, jax.Array]:
  """Closed-form ``{name: du/dkappa_name}`` for the ``learned`` coefficients (in that order).

  Every tangent is a few multiply-adds on the quantities of :func:`_direction`; the
  dependence through the bias corrections is included and ``vbar`` is held fixed inside
  ``vhat`` (as in the reference code).
  """
  if not learned:
    return {}
  sh = _shared_terms(kap, f, learned, rule)
  out = {name: _TANGENTS[name](kap, f, t, sh, rule) for name in learned}
  # where vhat is infinite u is flat in vmix (F = 0), but F times an infinite factor is NaN
  return {name: jnp.where(jnp.isinf(f.vhat), 0.0, x) if name in _THROUGH_VMIX else x
          for name, x in out.items()}


# --------------------------------------------------------------------------- the transform
class _Config(NamedTuple):
  """The validated, static arguments of :func:`scale_by_mada`."""

  learning_rate: Any
  learned: tuple[str, ...]
  init_vals: dict[str, Any]
  lo: np.ndarray
  hi: np.ndarray
  hyper_lrs: tuple[Any, ...]
  hyper_moms: tuple[Any, ...]
  hyper_clip: float
  hyper_start: int
  v_init: float
  reference: bool
  eps: float
  eps_root: float
  lion_b1: float
  lion_b2: float
  mu_dtype: Any


def _config(learning_rate, b1, b2, b3, rho, c, gamma, eps, eps_root, lion_b1, lion_b2, learn,
            hyper_lr, hyper_momentum, hyper_clip, hyper_start, bounds, v_init, compat,
            mu_dtype) -> _Config:
  """Validates the arguments of :func:`scale_by_mada` (``ValueError`` naming the argument)."""
  checks.check_learning_rate(learning_rate)
  checks.check_choice("compat", compat, ("paper", "reference"))
  learn = tuple(learn)
  for name in learn:
    checks.check_choice("learn", name, MADA_COEFF_NAMES)
  learned = tuple(k for k in MADA_COEFF_NAMES if k in learn)  # canonical order, no duplicates
  init_vals = dict(b1=b1, b2=b2, b3=b3, rho=rho, c=c, gamma=gamma)
  bounds = tuple(tuple(float(x) for x in b) for b in bounds)
  if len(bounds) != len(MADA_COEFF_NAMES) or any(len(b) != 2 or b[0] > b[1] for b in bounds):
    raise ValueError(f"bounds must be {len(MADA_COEFF_NAMES)} (low, high) pairs with low <= high, "
                     f"got {bounds!r}.")
  for name in ("b1", "b2", "b3"):
    checks.check_beta(name, init_vals[name])
  for name in ("b1", "b2"):
    if name in learned and not 0.0 < bounds[MADA_COEFF_NAMES.index(name)][0]:
      raise ValueError(f"bounds for a learned {name} must have a lower end > 0, got "
                       f"{bounds[MADA_COEFF_NAMES.index(name)]!r}.")
  for name in ("rho", "c", "gamma"):
    checks.check_range(name, init_vals[name], 0.0, 1.0)
  for name in learned:  # a learned coefficient starts inside its box (it is never clipped in)
    low, high = bounds[MADA_COEFF_NAMES.index(name)]
    x = checks.concrete_float(init_vals[name])
    if x is not None and not low <= x <= high:
      raise ValueError(
          f"{name}={init_vals[name]!r} lies outside its bounds [{low!r}, {high!r}]: a learned "
          "coefficient must start inside its box (the hyper-step would clip it there). Widen "
          f"bounds, start {name} inside, or leave it out of learn.")
  checks.check_range("eps", eps, 0.0)
  checks.check_range("eps_root", eps_root, 0.0)
  checks.check_beta("lion_b1", lion_b1)
  checks.check_beta("lion_b2", lion_b2)
  checks.check_range("hyper_clip", hyper_clip, 0.0)
  checks.check_range("hyper_start", hyper_start, 0.0)
  checks.check_range("v_init", v_init, 0.0)
  hyper_lrs = _per_coeff("hyper_lr", hyper_lr)
  hyper_moms = _per_coeff("hyper_momentum", hyper_momentum)
  for k, x in zip(MADA_COEFF_NAMES, hyper_lrs):
    checks.check_range(f"hyper_lr[{k}]", x, 0.0)
  for k, x in zip(MADA_COEFF_NAMES, hyper_moms):
    checks.check_beta(f"hyper_momentum[{k}]", x)
  return _Config(
      learning_rate=learning_rate, learned=learned, init_vals=init_vals,
      lo=np.array([b[0] for b in bounds]), hi=np.array([b[1] for b in bounds]),
      hyper_lrs=hyper_lrs, hyper_moms=hyper_moms, hyper_clip=hyper_clip,
      hyper_start=hyper_start, v_init=v_init, reference=compat == "reference", eps=eps,
      eps_root=eps_root, lion_b1=lion_b1, lion_b2=lion_b2,
      mu_dtype=None if mu_dtype is None else jnp.dtype(mu_dtype))


def _is_active(cfg: _Config, name: str) -> bool:
  """Whether coefficient ``name`` keeps its arrays: learned, or not (concretely) at Adam's value."""
  if name in cfg.learned:
    return True
  value = checks.concrete_float(cfg.init_vals[name])
  return value is None or value != _ADAM_VALUE[name]


_COMPLEX_REASON = (
    "MADA does not support complex parameters: its Yogi and Lion terms take signs of real "
    "numbers and its hypergradient is a real inner product. Optimize the real and imaginary "
    "parts as two real leaves instead.")


def _init(cfg: _Config, params) -> ScaleByMadaState:
  checks.check_float_leaves("mada", params, complex_reason=_COMPLEX_REASON)
  dtypes = [jnp.dtype(x.dtype) for x in jax.tree.leaves(params)]
  cd = jnp.float64 if jnp.dtype("float64") in dtypes else jnp.float32
  act = {k: _is_active(cfg, k) for k in _ADAM_VALUE}
  zeros = lambda: optax.tree.zeros_like(params)  # noqa: E731
  n_coeffs = len(MADA_COEFF_NAMES)
  return ScaleByMadaState(
      count=jnp.zeros([], jnp.int32),
      coeffs=jnp.stack([jnp.asarray(cfg.init_vals[k], cd) for k in MADA_COEFF_NAMES]),
      hypergrad=jnp.zeros([n_coeffs], cd),
      hyper_buf=jnp.zeros([n_coeffs], cd),
      prev_lr=jnp.zeros([], cd),
      mu=optax.tree.zeros_like(params, dtype=cfg.mu_dtype),
      nu=optax.tree.full_like(params, cfg.v_init),
      nu_avg=optax.tree.full_like(params, cfg.v_init) if act["rho"] else None,
      diff_mu=zeros() if act["b3"] else None,
      prev_grad=zeros() if (act["b3"] and not cfg.reference) else None,
      lion_mu=zeros() if act["gamma"] else None,
      tangents=tuple(zeros() for _ in cfg.learned),
  )


def _hypergradient(cfg: _Config, treedef, g_leaves, state: ScaleByMadaState) -> jax.Array:
  """``h_k = -alpha_{t-1} <g_t, du_{t-1}/dkappa_k>`` for the learned ``k`` (0 elsewhere and
  during the first ``hyper_start`` steps): one reduction pass over the stored tangents."""
  cd = state.coeffs.dtype
  h = jnp.zeros([len(MADA_COEFF_NAMES)], cd)
  if not cfg.learned:
    return h
  # one vectorized reduction per tangent (a variadic reduce reading g once measured slower)
  dots = [sum(jnp.sum(g.astype(cd) * tg.astype(cd))
              for g, tg in zip(g_leaves, treedef.flatten_up_to(tangent)))
          for tangent in state.tangents]
  learned_idx = np.array([MADA_COEFF_NAMES.index(k) for k in cfg.learned])
  h = h.at[learned_idx].set(-state.prev_lr * jnp.stack(dots))
  return jnp.where(state.count >= cfg.hyper_start, h, jnp.zeros_like(h))


def _hyper_sgd(cfg: _Config, h: jax.Array, state: ScaleByMadaState):
  """Clipped heavy-ball SGD on the coefficients, projected into the boxes: ``(coeffs, buf)``."""
  cd = state.coeffs.dtype
  h_clip = h * jnp.minimum(1.0, cfg.hyper_clip / (jnp.abs(h) + 1e-6))
  h_clip = jnp.where(jnp.isinf(h), jnp.sign(h) * cfg.hyper_clip, h_clip)  # inf * 0 is NaN
  mom = jnp.stack([jnp.asarray(x, cd) for x in cfg.hyper_moms])
  lrs = jnp.stack([jnp.asarray(x, cd) for x in cfg.hyper_lrs])
  buf = mom * state.hyper_buf + h_clip
  stepped = jnp.clip(state.coeffs - lrs * buf, cfg.lo.astype(cd), cfg.hi.astype(cd))
  learned_mask = np.array([k in cfg.learned for k in MADA_COEFF_NAMES])
  coeffs = jnp.where(learned_mask, stepped, state.coeffs)
  buf = jnp.where(learned_mask, buf, state.hyper_buf)
  return coeffs, buf


def _cast(x, ref):
  return None if x is None else x.astype(ref.dtype)


def _leaf_step(cfg: _Config, rule: _StepRule, kap: _Coeffs, t, first, cd,
               g, m, v, vb, n, prev_grad, ell) -> tuple[Any, ...]:
  """The direction, the new state and the tangents of one leaf, cast to the state's dtypes:
  ``(u, m, v, vbar, n, prev_grad, l, *tangents)``, one fused pass per leaf."""
  # one compute dtype for the leaf: the coefficients' (float32 or float64) or wider, so that
  # bfloat16 or float16 moments are widened explicitly, not by implicit promotion
  ct = trees.promote(cd, g.dtype)
  u, f = _direction(kap, *(None if x is None else x.astype(ct)
                           for x in (g, m, v, vb, n, prev_grad, ell)),
                    t=t, first=first, rule=rule)
  tangents = _tangents(kap, f, t, cfg.learned, rule)
  return (u.astype(g.dtype), f.m.astype(m.dtype), f.v.astype(v.dtype), _cast(f.vb, vb),
          _cast(f.n, n), None if prev_grad is None else g, _cast(f.ell, ell),
          *(x.astype(g.dtype) for x in tangents.values()))


def _update(cfg: _Config, updates, state: ScaleByMadaState, params=None, **extra_args):
  del extra_args
  checks.check_same_structure(updates, params)
  checks.check_leaf_shapes("mada", updates, state.nu)
  treedef = jax.tree.structure(updates)
  g_leaves = treedef.flatten_up_to(updates)
  # 1. hypergradient of the previous step's direction; 2. the hyper-SGD step
  h = _hypergradient(cfg, treedef, g_leaves, state)
  coeffs, buf = _hyper_sgd(cfg, h, state)
  # 3. the direction and its tangents with the new coefficients, one fused pass per leaf
  cd = state.coeffs.dtype
  count = optax.safe_increment(state.count)
  t = count.astype(cd)
  first = state.count == 0
  lr = cfg.learning_rate
  lr = jnp.asarray(lr(state.count) if callable(lr) else lr, cd)
  rule = _StepRule(
      b3=state.diff_mu is not None, c="c" in cfg.learned or _is_active(cfg, "c"),
      rho=state.nu_avg is not None, gamma=state.lion_mu is not None, reference=cfg.reference,
      eps=cfg.eps, eps_root=cfg.eps_root, lion_b1=cfg.lion_b1, lion_b2=cfg.lion_b2)
  kap = _Coeffs(*(coeffs[i] for i in range(len(MADA_COEFF_NAMES))))

  def leaves(tree):
    return [None] * len(g_leaves) if tree is None else treedef.flatten_up_to(tree)

  outs = [_leaf_step(cfg, rule, kap, t, first, cd, *args)
          for args in zip(g_leaves, leaves(state.mu), leaves(state.nu), leaves(state.nu_avg),
                          leaves(state.diff_mu), leaves(state.prev_grad), leaves(state.lion_mu))]
  u, mu, nu, nu_avg, diff_mu, prev_grad, lion_mu, *tangents = trees.unzip(
      treedef, outs, 7 + len(cfg.learned))
  return u, ScaleByMadaState(
      count=count, coeffs=coeffs, hypergrad=h, hyper_buf=buf, prev_lr=lr, mu=mu, nu=nu,
      nu_avg=nu_avg if rule.rho else None, diff_mu=diff_mu if rule.b3 else None,
      prev_grad=None if state.prev_grad is None else prev_grad,
      lion_mu=lion_mu if rule.gamma else None, tangents=tuple(tangents))


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
    learn: Sequence[str] = MADA_COEFF_NAMES,
    hyper_lr: Any = DEFAULT_HYPER_LR,
    hyper_momentum: Any = 0.0,
    hyper_clip: float = 10.0,
    hyper_start: int = 0,
    bounds: Sequence[tuple[float, float]] = DEFAULT_BOUNDS,
    v_init: float = 1e-15,
    *,
    compat: Literal["paper", "reference"] = "paper",
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

  Hypergradient (one step back): before computing ``u_t``,
  :math:`h_k = -\alpha_{t-1} \sum_i g_t[i]\, \partial u_{t-1}[i] / \partial \kappa_k` over all
  leaves, holding the previous state, ``g_{t-1}`` and ``l`` fixed and treating
  ``vbar_{t-1}`` as a constant inside ``vhat`` (as the reference code does); ``sign`` has zero
  derivative; the bias corrections' dependence on ``b1, b2`` is included. Then ``h_k = 0``
  for unlearned coefficients and for the first ``hyper_start`` steps,
  ``h_k <- h_k min(1, hyper_clip/(|h_k| + 1e-6))``, heavy-ball SGD ``buf <- mu_k buf + h_k``,
  ``kappa_k <- kappa_k - eta_k buf_k``, and a hard projection into ``bounds``; ``u_t`` uses
  the new coefficients. Unlearned coefficients never move.

  The hypergradient assumes the update is exactly ``-alpha_t (u_t + weight decay)``: put
  nothing that rescales updates (clipping of updates, a second learning rate) after it. A
  preceding ``clip_by_global_norm`` feeds the clipped gradient to the hypergradient too (the
  reference code used the unclipped one). Under ``optax.MultiSteps`` one hypergradient is
  taken per accumulated step, from the averaged gradient (the reference code took it from the
  first micro-batch, scaled by one over the number of micro-batches).

  Parameters must be real floating point: complex leaves are rejected at ``init`` (the Yogi
  and Lion terms take signs of real numbers and the hypergradient is a real inner product;
  optimize real and imaginary parts as two real leaves), and so are integer leaves. Every
  ``update`` checks the gradient's shapes against the state and names a mismatching leaf; an
  empty pytree gives empty updates. Where the second moment overflows (float32 gradients above
  about ``1.8e19``) ``v`` and ``vbar`` stay ``inf``, the adaptive part of ``u_t`` is 0 there and
  those coordinates add nothing to the hypergradient: finite updates, as ``optax.amsgrad``.

  **The coefficients are shared by every leaf**: one NaN or infinite gradient entry anywhere
  makes the hypergradient, hence the coefficients and every leaf's update, NaN from that step
  on. Wrap the optimizer in ``optax.apply_if_finite(tx, max_consecutive_errors)``: it skips a
  step whose gradient is not finite as a whole (the state, coefficients included, is left
  untouched), so nothing is poisoned.

  Args:
    learning_rate: ``alpha_t``, the step size the caller applies after this transform (a float
      or a schedule of this transform's step count). It only scales the hypergradient; pass the
      same value to ``optax.scale_by_learning_rate``. Default 1.0. :func:`mada` wires it.
    b1, b2, b3, rho, c, gamma: initial coefficients. Defaults ``0.9, 0.95, 0, 1, 1, 1``: the
      Adam corner of the reference GPT-2 run (its README example starts ``rho`` at 0.6).
      ``b3, rho, c, gamma`` decide trimming in ``init`` and so must be concrete (static).
    eps: added outside the square root (>= 0). Default 1e-6 (GPT-2; 1e-8 Shakespeare).
    eps_root: added inside the square root (>= 0). Default 0.
    lion_b1, lion_b2: Lion's fixed betas, in [0, 1). Default 0.95, 0.98 (reference code).
    learn: names of the learned coefficients, a subset of ``MADA_COEFF_NAMES``. Default: all six.
      ``("b1", "b2")`` is the paper's HyperAdam baseline; ``()`` freezes everything.
    hyper_lr: per-coefficient hyper learning rates ``eta`` (>= 0): a scalar for all, a
      6-sequence or a ``{name: value}`` mapping (missing names get 0). Default
      ``(5e-4, 5e-4, .1, .1, .1, .1)`` (reference GPT-2; with gradient accumulation over ``k``
      micro-batches, divide by ``k`` to match the reference's dynamics).
    hyper_momentum: heavy-ball momentum ``mu`` of the hyper-SGD, in [0, 1) (scalar, 6-sequence
      or mapping). Default 0 (GPT-2; the Shakespeare grid used 0.5).
    hyper_clip: hypergradient clip threshold (>= 0). Default 10 (reference).
    hyper_start: number of initial steps with ``h = 0`` (>= 0). Default 0; GPT-2 used 50.
    bounds: six ``(low, high)`` projection boxes. Default ``DEFAULT_BOUNDS``:
      ``b1`` [0.01, 0.99], ``b2`` [0.501, 0.99], ``b3`` [0, 0.99], ``rho, c, gamma`` [0, 1].
      A learned coefficient must start inside its box (``ValueError`` otherwise, rather than
      a silent clip at the first step); unlearned ones are not bounded.
    v_init: initial ``v`` and ``vbar`` (>= 0). Default 1e-15 (reference; it keeps the
      hypergradient finite where a leaf's gradient is zero); 0 gives exactly Adam at the Adam
      corner.
    compat: keyword-only. ``'paper'`` (default): real gradient difference
      ``d_t = g_t - g_{t-1}`` with ``d_1 = 0``, ``n_0 = 0``, and real Lion
      ``s_t = sign(b1L l_{t-1} + (1-b1L) g_t)``. ``'reference'``: the authors' code as run:
      its stored previous gradient is always zero so ``d = g_t``, ``n_0 = g_1^2``, and ``s_t``
      uses the already updated ``l_t`` (its ``n_0 = g_1^2`` overflows, and the step is NaN,
      for a float32 first gradient above about ``1.8e19``).
    mu_dtype: keyword-only dtype of the first moment ``m``; default None keeps the params'
      dtype.

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

  References:
    Ozkara et al., `MADA: Meta-Adaptive Optimizers through hyper-gradient Descent
    <https://arxiv.org/abs/2401.08893>`_, 2024
  """
  cfg = _config(learning_rate, b1, b2, b3, rho, c, gamma, eps, eps_root, lion_b1, lion_b2,
                learn, hyper_lr, hyper_momentum, hyper_clip, hyper_start, bounds, v_init, compat,
                mu_dtype)
  return optax.GradientTransformationExtraArgs(
      functools.partial(_init, cfg), functools.partial(_update, cfg))


@alias.static_args("b1", "b2", "b3", "rho", "c", "gamma", "learn", "hyper_lr", "hyper_momentum",
                   "bounds", "compat", "mu_dtype", "mask")
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
    learn: Sequence[str] = MADA_COEFF_NAMES,
    hyper_lr: Any = DEFAULT_HYPER_LR,
    hyper_momentum: Any = 0.0,
    hyper_clip: float = 10.0,
    hyper_start: int = 0,
    bounds: Sequence[tuple[float, float]] = DEFAULT_BOUNDS,
    v_init: float = 1e-15,
    *,
    compat: Literal["paper", "reference"] = "paper",
    mu_dtype: Any | None = None,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    mask: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""MADA with decoupled weight decay.

  .. math::
    \theta_t = \theta_{t-1} - \alpha_t \bigl(u_t + \lambda\, \theta_{t-1}\bigr)

  ``u_t`` and the hypergradient descent on its six coefficients are those of
  :func:`scale_by_mada` (see there for the full rule and every argument). Built as
  ``optax.chain(scale_by_mada(learning_rate=learning_rate, ...),
  optax.add_decayed_weights(weight_decay, mask), optax.scale_by_learning_rate(learning_rate))``;
  weight decay does not depend on the coefficients, so it does not enter the hypergradient.

  Memory: at the defaults the state is 12 param-sized float32 arrays, 48 bytes per parameter
  (6x Adam's): the six moments of the mixed update (Adam's ``mu`` and ``nu``, AVGrad's running
  mean of ``nu``, Adan's moment of gradient differences and the previous gradient, Lion's
  momentum) and one tangent ``du/dkappa`` per learned coefficient, six. With
  ``learn=("b1", "b2")`` and the other coefficients at their Adam values (the defaults;
  HyperAdam) the unused moments are trimmed: ``mu``, ``nu`` and two tangents, 16 bytes per
  parameter (2x Adam's). Measure the peak of the update (state + temporaries) of
  either with ``optzoo.bytes_per_param`` plus ``optzoo.temp_bytes_per_param(..., donate=True)``;
  the project's README lists both at 10M parameters.

  The arguments ``b1, b2, b3, rho, c, gamma, eps, eps_root, lion_b1, lion_b2, learn, hyper_lr,
  hyper_momentum, hyper_clip, hyper_start, bounds, v_init, compat, mu_dtype`` are those of
  :func:`scale_by_mada`, with the same defaults (``compat``, ``mu_dtype`` and the arguments after
  them are keyword-only).

  Args:
    learning_rate: ``alpha_t``, a float or schedule (>= 0). Not learned.
    weight_decay: decoupled decay ``lambda`` (>= 0). Default 0; the reference GPT-2 runs used
      0.1 on tensors with ``ndim >= 2`` only: pass ``mask=lambda p: jax.tree.map(lambda x:
      x.ndim >= 2, p)`` to reproduce that.
    mask: pytree of bools (or a callable returning one) selecting the params to decay.
      Default None: decay every param.

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  Example:
    >>> import jax, jax.numpy as jnp, optax, optzoo
    >>> params = jnp.array([1.0, -2.0])
    >>> tx = optzoo.mada(learning_rate=1e-2, learn=("b1", "b2"))
    >>> state = tx.init(params)
    >>> grads = jax.grad(lambda p: jnp.sum(p ** 2))(params)
    >>> updates, state = tx.update(grads, state, params)
    >>> params = optax.apply_updates(params, updates)

  References:
    Ozkara et al., `MADA: Meta-Adaptive Optimizers through hyper-gradient Descent
    <https://arxiv.org/abs/2401.08893>`_, 2024
  """
  return alias.decoupled_alias(
      scale_by_mada(
          learning_rate=learning_rate, b1=b1, b2=b2, b3=b3, rho=rho, c=c, gamma=gamma, eps=eps,
          eps_root=eps_root, lion_b1=lion_b1, lion_b2=lion_b2, learn=learn, hyper_lr=hyper_lr,
          hyper_momentum=hyper_momentum, hyper_clip=hyper_clip, hyper_start=hyper_start,
          bounds=bounds, v_init=v_init, compat=compat, mu_dtype=mu_dtype),
      learning_rate, weight_decay, mask)
