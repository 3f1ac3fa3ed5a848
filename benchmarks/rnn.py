"""Recurrent workloads: an Elman RNN forward and back-propagated through time, by
irkit's scan, a hand-written numpy BPTT, and (when installed) JAX's lax.scan and
PyTensor's scan, on the same data.

- `rnn_fwd_*` / `rnn_bptt_*`: h_t = tanh(x_t W + h_{t-1} U), float32; BPTT is the
  gradient of sum(h) with respect to W, U and h0.
- `rnn2012_*`: the Theano 2012 paper's RNN benchmark: a word-level Elman network
  (sigmoid hidden, softmax output over the vocabulary, summed NLL), 100-step
  sequences, batch 1, one full BPTT + SGD update per sequence; reported as words/s.
"""

from __future__ import annotations

import numpy as np

from harness import Case, Workload


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# ---------------------------------------------------------------------------
# tanh RNN: forward and BPTT
# ---------------------------------------------------------------------------

def _rnn_data(T: int, B: int, I: int, H: int):  # noqa: E741
    rng = np.random.default_rng(7)
    x = rng.standard_normal((T, B, I)).astype("float32")
    W = (rng.standard_normal((I, H)) / np.sqrt(I)).astype("float32")
    U = (rng.standard_normal((H, H)) / np.sqrt(H)).astype("float32")
    h0 = np.zeros((B, H), "float32")
    return x, W, U, h0


def _numpy_forward(x, W, U, h0):
    hs = np.empty((len(x),) + h0.shape, np.float32)
    h = h0
    xw = x @ W  # the input projection of every step at once
    for t in range(len(x)):
        h = np.tanh(xw[t] + h @ U)
        hs[t] = h
    return hs


def _numpy_bptt(x, W, U, h0):
    hs = _numpy_forward(x, W, U, h0)
    T = len(x)
    prev = np.concatenate([h0[None], hs[:-1]])
    deltas = np.empty_like(hs)
    dh = np.zeros_like(h0)
    for t in range(T - 1, -1, -1):
        da = (1.0 + dh) * (1.0 - hs[t] * hs[t])
        deltas[t] = da
        dh = da @ U.T
    B, H = h0.shape
    flat = deltas.reshape(T * B, H)
    dW = x.reshape(T * B, -1).T @ flat
    dU = prev.reshape(T * B, H).T @ flat
    return dW, dU, dh


def _irkit_rnn(grad: bool):
    def build(data):
        import irkit as ik
        x = ik.tensor3("x", dtype="float32")
        W, U, h0 = (ik.matrix(n, dtype="float32") for n in ("W", "U", "h0"))
        xw = ik.reshape(ik.dot(ik.reshape(x, (-1, x.shape[2])), W), (x.shape[0], x.shape[1], W.shape[1]))
        hs, _ = ik.scan(lambda a, h, U: ik.tanh(a + ik.dot(h, U)), sequences=xw, outputs_info=h0,
                        non_sequences=U)
        f = ik.function([x, W, U, h0], ik.grad(ik.sum(hs), [W, U, h0]) if grad else hs)
        return lambda: f(*data)
    return build


def _jax_rnn(grad: bool):
    def build(data):
        import jax
        import jax.numpy as jnp

        def forward(x, W, U, h0):
            def step(h, a):
                h = jnp.tanh(a + h @ U)
                return h, h
            _, hs = jax.lax.scan(step, h0, x @ W)
            return hs
        f = jax.jit(jax.grad(lambda *a: forward(*a).sum(), argnums=(1, 2, 3)) if grad else forward)
        args = [jax.device_put(a) for a in data]
        return lambda: jax.block_until_ready(f(*args))
    return build


def _pytensor_rnn(grad: bool):
    def build(data):
        import pytensor
        import pytensor.tensor as pt
        x = pt.tensor3("x", dtype="float32")
        W, U, h0 = (pt.matrix(n, dtype="float32") for n in ("W", "U", "h0"))
        hs, _ = pytensor.scan(lambda a, h, U: pt.tanh(a + pt.dot(h, U)), sequences=pt.dot(x, W),
                              outputs_info=h0, non_sequences=U)
        f = pytensor.function([x, W, U, h0], pytensor.grad(hs.sum(), [W, U, h0]) if grad else hs)
        return lambda: f(*data)
    return build


def rnn(T: int, B: int, I: int, H: int, grad: bool) -> Workload:  # noqa: E741
    name = f"rnn_{'bptt' if grad else 'fwd'}_T{T}" + (f"_B{B}" if B > 1 else "") + f"_H{H}"
    what = "its BPTT: d sum(h) / d (W, U, h0)" if grad else "tanh RNN forward, h_t = tanh(x_t W + h_{t-1} U)"
    numpy_fn = _numpy_bptt if grad else _numpy_forward
    return Workload(
        name, f"{what}; T={T}, B={B}, I={I}, H={H}, float32 (T=100 with --quick).",
        setup=lambda quick: _rnn_data(min(T, 100) if quick else T, B, I, H),
        reference=lambda data: numpy_fn(*data), tol=2e-3 if grad else 1e-4,
        rate=("steps", lambda data: len(data[0])), group="Recurrent networks",
        systems={"irkit": _irkit_rnn(grad), "numpy": lambda data: (lambda: numpy_fn(*data)),
                 "jax": _jax_rnn(grad), "pytensor": _pytensor_rnn(grad)})


# ---------------------------------------------------------------------------
# the cost of a step: a scalar recurrence over a million steps
# ---------------------------------------------------------------------------

def _recurrence(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    a = 0.0
    for t, v in enumerate(x.tolist()):
        a = a * 0.5 + v
        out[t] = a
    return out


def _irkit_recurrence(x):
    import irkit as ik
    xs = ik.vector("x", dtype="float64")
    acc, _ = ik.scan(lambda v, a: a * 0.5 + v, sequences=xs, outputs_info=ik.constant(0.0, "float64"))
    f = ik.function([xs], acc)
    return lambda: f(x)


def _jax_recurrence(x):
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    g = jax.jit(lambda v: jax.lax.scan(lambda a, e: (a * 0.5 + e, a * 0.5 + e), jnp.float64(0.0), v)[1])
    xd = jax.device_put(x)
    return lambda: g(xd).block_until_ready()


def _pytensor_recurrence(x):
    import pytensor
    import pytensor.tensor as pt
    xs = pt.dvector("x")
    acc, _ = pytensor.scan(lambda v, a: a * 0.5 + v, sequences=xs, outputs_info=pt.constant(0.0, dtype="float64"))
    f = pytensor.function([xs], acc)
    return lambda: f(x)


def scan_overhead() -> Workload:
    """acc_t = 0.5 acc_{t-1} + x_t, float64: the loop itself is all there is to time."""
    return Workload(
        "scan_overhead", "the cost of a scan step: acc = 0.5 * acc + x_t over 1M steps, float64 (100k with "
        "--quick).", setup=lambda quick: np.random.default_rng(11).standard_normal(100_000 if quick else 1_000_000),
        reference=_recurrence, tol=1e-12, rate=("steps", len), threads_matter=False, repeat=5,
        systems={"irkit": _irkit_recurrence, "numpy (Python loop)": lambda x: (lambda: _recurrence(x)),
                 "jax": _jax_recurrence, "pytensor": _pytensor_recurrence})


# ---------------------------------------------------------------------------
# the Theano 2012 RNN benchmark: words/s of full BPTT + SGD on 100-word sequences
# ---------------------------------------------------------------------------

STEPS = 100
LR = 0.01


def _lm_params(H: int, V: int):
    rng = np.random.default_rng(2012)
    return [(rng.standard_normal((V, H)) * 0.1).astype("float32"),
            (rng.standard_normal((H, H)) / np.sqrt(H)).astype("float32"),
            np.zeros(H, "float32"),
            (rng.standard_normal((H, V)) * 0.1).astype("float32"),
            np.zeros(V, "float32")]


class NumpyLM:
    """The hand-written BPTT: weight gradients as one contraction over the stacked states."""

    def __init__(self, params):
        self.p = [p.copy() for p in params]

    def grads(self, words, targets):
        W_in, W_rec, b_h, W_out, b_o = self.p
        T, H = len(words), W_rec.shape[0]
        E = W_in[words] + b_h
        hs = np.empty((T, H), np.float32)
        h = np.zeros(H, np.float32)
        for t in range(T):
            h = _sigmoid(E[t] + h @ W_rec)
            hs[t] = h
        logits = hs @ W_out + b_o
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        loss = -np.log(p[np.arange(T), targets]).sum()
        p[np.arange(T), targets] -= 1.0
        dW_out, db_o = hs.T @ p, p.sum(0)
        dhs = p @ W_out.T
        deltas = np.empty_like(hs)
        dh = np.zeros(H, np.float32)
        for t in range(T - 1, -1, -1):
            da = (dhs[t] + dh) * hs[t] * (1.0 - hs[t])
            deltas[t] = da
            dh = da @ W_rec.T
        prev = np.vstack([np.zeros((1, H), np.float32), hs[:-1]])
        dW_rec, db_h = prev.T @ deltas, deltas.sum(0)
        dW_in = np.zeros_like(W_in)
        np.add.at(dW_in, words, deltas)
        return loss, [dW_in, dW_rec, db_h, dW_out, db_o]

    def step(self, words, targets):
        loss, grads = self.grads(words, targets)
        for p, g in zip(self.p, grads):
            p -= LR * g
        return loss


def _irkit_lm(data):
    import irkit as ik
    params, words, targets = data
    shared = [ik.shared(p.copy(), name=n) for p, n in zip(params, ["W_in", "W_rec", "b_h", "W_out", "b_o"])]
    W_in, W_rec, b_h, W_out, b_o = shared
    w, t = ik.lvector("words"), ik.lvector("targets")
    h0 = ik.zeros((W_rec.shape[0],), "float32")
    hs, _ = ik.scan(lambda e, h, U: ik.sigmoid(e + ik.dot(h, U)), sequences=W_in[w] + b_h, outputs_info=h0,
                    non_sequences=W_rec)
    logp = ik.log_softmax(ik.dot(hs, W_out) + b_o)
    loss = -ik.sum(logp[ik.arange(w.shape[0]), t])
    grads = ik.grad(loss, shared)
    train = ik.function([w, t], loss, updates=[(p, p - LR * g) for p, g in zip(shared, grads)])
    state = {}

    def run():
        state["loss"] = train(words, targets)
        return state["loss"]
    return Case(run, result=lambda: [state["loss"], *(p.get_value() for p in shared)])


def _numpy_lm(data):
    params, words, targets = data
    model = NumpyLM(params)
    state = {}

    def run():
        state["loss"] = model.step(words, targets)
        return state["loss"]
    return Case(run, result=lambda: [state["loss"], *model.p])


def _jax_lm(data):
    import jax
    import jax.numpy as jnp
    params, words, targets = data

    def loss_fn(p, words, targets):
        W_in, W_rec, b_h, W_out, b_o = p

        def step(h, e):
            h = jax.nn.sigmoid(e + h @ W_rec)
            return h, h
        _, hs = jax.lax.scan(step, jnp.zeros(W_rec.shape[0], jnp.float32), W_in[words] + b_h)
        logp = jax.nn.log_softmax(hs @ W_out + b_o)
        return -logp[jnp.arange(words.shape[0]), targets].sum()

    @jax.jit
    def step(p, words, targets):
        loss, g = jax.value_and_grad(loss_fn)(p, words, targets)
        return loss, [w - LR * d for w, d in zip(p, g)]
    state = {"p": [jnp.asarray(p) for p in params]}

    def run():
        state["loss"], state["p"] = step(state["p"], words, targets)
        return jax.block_until_ready(state["loss"])
    return Case(run, result=lambda: [state["loss"], *state["p"]])


def _pytensor_lm(data):
    import pytensor
    import pytensor.tensor as pt
    params, words, targets = data
    shared = [pytensor.shared(p.copy()) for p in params]
    W_in, W_rec, b_h, W_out, b_o = shared
    w, t = pt.lvector("words"), pt.lvector("targets")
    hs, _ = pytensor.scan(lambda e, h, U: pt.sigmoid(e + pt.dot(h, U)), sequences=W_in[w] + b_h,
                          outputs_info=pt.zeros((W_rec.shape[0],), dtype="float32"), non_sequences=W_rec)
    logp = pt.special.log_softmax(pt.dot(hs, W_out) + b_o, axis=-1)
    loss = -logp[pt.arange(w.shape[0]), t].sum()
    grads = pytensor.grad(loss, shared)
    train = pytensor.function([w, t], loss, updates=[(p, p - np.float32(LR) * g) for p, g in zip(shared, grads)])
    state = {}

    def run():
        state["loss"] = train(words, targets)
        return state["loss"]
    return Case(run, result=lambda: [state["loss"], *(p.get_value() for p in shared)])


def _lm_reference(data):
    """One step from the initial parameters: the loss and the updated parameters."""
    params, words, targets = data
    model = NumpyLM(params)
    loss = model.step(words, targets)
    return [loss, *model.p]


def rnn2012(H: int, V: int) -> Workload:
    def setup(quick: bool):
        words = np.random.default_rng(5).integers(0, V, STEPS)
        return _lm_params(H, V), words, np.roll(words, -1)
    return Workload(
        f"rnn2012_H{H}_V{V}", f"Theano 2012 RNN: Elman (sigmoid), hidden {H}, vocabulary {V}, 100-word "
        "sequences, batch 1, full BPTT + SGD (lr 0.01); one call is one sequence.",
        setup=setup, reference=_lm_reference, tol=1e-3, rate=("words", lambda data: STEPS),
        heavy=H >= 500, group="Theano 2012 RNN",
        systems={"irkit": _irkit_lm, "numpy": _numpy_lm, "jax": _jax_lm, "pytensor": _pytensor_lm})


WORKLOADS = [
    scan_overhead(),
    rnn(1000, 1, 10, 10, grad=False), rnn(1000, 1, 10, 10, grad=True),
    rnn(200, 16, 100, 100, grad=False), rnn(200, 16, 100, 100, grad=True),
    *[rnn2012(h, v) for h, v in ((50, 10), (100, 54), (500, 3000), (1500, 3000))],
]
