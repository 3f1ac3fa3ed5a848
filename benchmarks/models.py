"""Model workloads: softmax cross-entropy, logistic regression and MLP training steps, a
Hessian-vector product, the Theano 2012 MLP table and the compile time of the MLP step.

Every system trains the same model from the same initial parameters on the same data
(made by numpy from a fixed seed, identical in every process). A training step mutates
its parameters, so each builder starts from its own copy; the check is the first step's
loss and what that step did to the parameters, against a hand-written numpy step.

Systems import their library inside the builder: each family runs in its own process,
and PyTensor's runs in a virtual environment that has none of the others.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from harness import Case, Seconds, Workload, threads

HERE = os.path.dirname(os.path.abspath(__file__))

MLP_SIZES = (784, 500, 10)
LOGREG_SIZES = (784, 10)
STEP_LR = 0.1      # the logistic regression and MLP step workloads
LR_2012 = 0.01     # the Theano 2012 benchmark's learning rate


# ---------------------------------------------------------------------------
# the numpy model: parameters, forward, hand-written backward
# ---------------------------------------------------------------------------

def mlp_params(sizes: tuple[int, ...], seed: int, dtype: str = "float32") -> list[np.ndarray]:
    """[W1, b1, W2, b2, ...] for layer sizes (n_in, hidden..., n_out): Glorot-uniform
    weights, zero biases."""
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        params.append(rng.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype))
        params.append(np.zeros(fan_out, dtype))
    return params


def minibatch(n: int, n_in: int, n_out: int, seed: int, dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    """n synthetic examples: pixel-like inputs in [0, 1) and int64 labels."""
    rng = np.random.default_rng(seed)
    return rng.random((n, n_in)).astype(dtype), rng.integers(0, n_out, n).astype(np.int64)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def numpy_loss_and_grads(params: list[np.ndarray], X: np.ndarray, y: np.ndarray) -> tuple[Any, list[np.ndarray]]:
    """Mean NLL of the tanh MLP and its gradient, by hand: the output's delta is
    (softmax - one-hot) / batch, each tanh layer multiplies by 1 - h^2."""
    Ws, bs = params[0::2], params[1::2]
    acts = [X]
    for W, b in zip(Ws[:-1], bs[:-1]):
        acts.append(np.tanh(acts[-1] @ W + b))
    logp = _log_softmax(acts[-1] @ Ws[-1] + bs[-1])
    rows = np.arange(len(y))
    loss = -logp[rows, y].mean()
    delta = np.exp(logp)
    delta[rows, y] -= 1.0
    delta /= len(y)
    grads: list[np.ndarray] = [None] * len(params)  # type: ignore[list-item]
    for layer in range(len(Ws) - 1, -1, -1):
        grads[2 * layer] = acts[layer].T @ delta
        grads[2 * layer + 1] = delta.sum(axis=0)
        if layer > 0:
            delta = (delta @ Ws[layer].T) * (1.0 - acts[layer] * acts[layer])
    return loss, grads


# ---------------------------------------------------------------------------
# trainers: one SGD step of the tanh MLP (no hidden layer: logistic regression) per system
# ---------------------------------------------------------------------------

@dataclass
class Trainer:
    """A system's training step on its own copy of the parameters."""
    step: Callable[[np.ndarray, np.ndarray], Any]  # (X, y) -> the loss (maybe not yet computed: see sync)
    params: Callable[[], list[np.ndarray]]         # the current parameters, as numpy arrays
    sync: Callable[[], None] = lambda: None        # waits until every step issued so far is done


def numpy_trainer(params: list[np.ndarray], lr: float) -> Trainer:
    p = [w.copy() for w in params]
    lr32 = np.float32(lr) if p[0].dtype == np.float32 else lr

    def step(X, y):
        loss, grads = numpy_loss_and_grads(p, X, y)
        for w, g in zip(p, grads):
            w -= lr32 * g
        return loss
    return Trainer(step, lambda: [w.copy() for w in p])


def _irkit_training_graph(params: list[np.ndarray], lr: float):
    """(inputs, loss, updates) of the SGD step, as a Theano user writes it: shared
    parameters, log of softmax (irkit rewrites it to log_softmax), ik.grad."""
    import irkit as ik
    shared = [ik.shared(p.copy(), name=f"{'W' if p.ndim == 2 else 'b'}{k // 2 + 1}") for k, p in enumerate(params)]
    x, t = ik.matrix("x", dtype=params[0].dtype), ik.lvector("t")
    h = x
    for W, b in zip(shared[0:-2:2], shared[1:-2:2]):
        h = ik.tanh(ik.dot(h, W) + b)
    p = ik.softmax(ik.dot(h, shared[-2]) + shared[-1])
    loss = -ik.mean(ik.log(p)[ik.arange(x.shape[0]), t])
    grads = ik.grad(loss, shared)
    return [x, t], loss, [(w, w - lr * g) for w, g in zip(shared, grads)]


def irkit_trainer(params: list[np.ndarray], lr: float) -> Trainer:
    import irkit as ik
    ik.config.num_threads = threads()
    inputs, loss, updates = _irkit_training_graph(params, lr)
    step = ik.function(inputs, loss, updates=updates, name="train_step")
    shared = [w for w, _ in updates]
    return Trainer(step, lambda: [w.get_value() for w in shared])


def _jax_step_fn(lr: float) -> Callable:
    """The pure step: (params, X, y) -> (loss, new params)."""
    import jax
    import jax.numpy as jnp

    def loss_fn(params, X, y):
        h = X
        for W, b in zip(params[0:-2:2], params[1:-2:2]):
            h = jnp.tanh(h @ W + b)
        logp = jax.nn.log_softmax(h @ params[-2] + params[-1])
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    def step(params, X, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, X, y)
        return loss, [w - lr * g for w, g in zip(params, grads)]
    return step


def jax_trainer(params: list[np.ndarray], lr: float, donate: bool) -> Trainer:
    """jax.jit of the step; with donate, the old parameters' buffers are given to XLA
    to write the new ones into."""
    import jax
    import jax.numpy as jnp
    step = jax.jit(_jax_step_fn(lr), donate_argnums=(0,) if donate else ())
    state = {"params": [jnp.array(p) for p in params], "loss": None}

    def run(X, y):
        state["loss"], state["params"] = step(state["params"], X, y)
        return state["loss"]
    return Trainer(run, lambda: [np.array(w) for w in state["params"]],
                   lambda: jax.block_until_ready((state["loss"], state["params"])))


def _pytensor_function(inputs, outputs, updates=None):
    """pytensor.function in PyTensor's default mode (in its own venv, with the numba it
    pins: PyTensor 3 picks its numba linker); the C virtual machine when the default
    cannot compile the graph (a message says so)."""
    import pytensor
    try:
        return pytensor.function(inputs, outputs, updates=updates)
    except Exception as e:  # noqa: BLE001  (any failure of the default backend: fall back, say so)
        from pytensor.compile.mode import Mode
        print(f"  (pytensor: the default mode failed ({type(e).__name__}); using Mode(linker='cvm'))",
              file=sys.stderr)
        return pytensor.function(inputs, outputs, updates=updates, mode=Mode(linker="cvm", optimizer="fast_run"))


def _pytensor_training_graph(params: list[np.ndarray], lr: float):
    import pytensor
    import pytensor.tensor as pt
    shared = [pytensor.shared(p.copy()) for p in params]
    x, t = pt.matrix("x", dtype=params[0].dtype), pt.lvector("t")
    h = x
    for W, b in zip(shared[0:-2:2], shared[1:-2:2]):
        h = pt.tanh(pt.dot(h, W) + b)
    p = pt.special.softmax(pt.dot(h, shared[-2]) + shared[-1], axis=-1)
    loss = -pt.mean(pt.log(p)[pt.arange(x.shape[0]), t])
    grads = pytensor.grad(loss, shared)
    lr_typed = np.asarray(lr, dtype=params[0].dtype)  # a Python float would upcast float32 to float64
    return [x, t], loss, [(w, w - lr_typed * g) for w, g in zip(shared, grads)]


def pytensor_trainer(params: list[np.ndarray], lr: float) -> Trainer:
    inputs, loss, updates = _pytensor_training_graph(params, lr)
    step = _pytensor_function(inputs, loss, updates)
    shared = [w for w, _ in updates]
    return Trainer(step, lambda: [w.get_value() for w in shared])


_NUMBA_KERNELS: dict[str, Callable] = {}


def _numba_mlp_step() -> Callable:
    """The hand-written step as one njit function: np.dot (BLAS) for the products, loops
    for the softmax, weights updated in place. Ws and bs are tuples (numba indexes a
    homogeneous tuple with a loop variable)."""
    if "mlp_step" in _NUMBA_KERNELS:
        return _NUMBA_KERNELS["mlp_step"]
    import numba

    @numba.njit(cache=False)
    def mlp_step(Ws, bs, X, y, lr):
        n_layers = len(Ws)
        acts = [X]
        h = X
        for layer in range(n_layers - 1):
            h = np.tanh(np.dot(h, Ws[layer]) + bs[layer])
            acts.append(h)
        logits = np.dot(h, Ws[n_layers - 1]) + bs[n_layers - 1]
        n, classes = logits.shape
        inv_n = np.float32(1.0) / np.float32(n)
        delta = np.empty_like(logits)
        loss = 0.0
        for i in range(n):
            m = logits[i, 0]
            for j in range(1, classes):
                m = max(m, logits[i, j])
            s = np.float32(0.0)
            for j in range(classes):
                e = np.exp(logits[i, j] - m)
                delta[i, j] = e
                s += e
            loss += np.log(s) + m - logits[i, y[i]]
            scale = inv_n / s
            for j in range(classes):
                delta[i, j] *= scale
            delta[i, y[i]] -= inv_n
        for layer in range(n_layers - 1, -1, -1):
            a = acts[layer]
            W = Ws[layer]
            b = bs[layer]
            gW = np.dot(a.T, delta)
            gb = delta.sum(axis=0)
            if layer > 0:
                delta = np.dot(delta, W.T) * (np.float32(1.0) - a * a)
            W -= lr * gW
            b -= lr * gb
        return loss / n
    _NUMBA_KERNELS["mlp_step"] = mlp_step
    return mlp_step


def numba_trainer(params: list[np.ndarray], lr: float) -> Trainer:
    import numba
    numba.set_num_threads(min(threads(), numba.config.NUMBA_NUM_THREADS))
    kernel = _numba_mlp_step()
    p = [w.copy() for w in params]
    Ws, bs = tuple(p[0::2]), tuple(p[1::2])
    lr_typed = np.float32(lr)
    return Trainer(lambda X, y: kernel(Ws, bs, X, y, lr_typed), lambda: [w.copy() for w in p])


def torch_trainer(params: list[np.ndarray], lr: float) -> Trainer:
    """Autograd for the gradient, the SGD update in place under no_grad."""
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads())
    p = [torch.tensor(w.copy(), requires_grad=True) for w in params]

    def step(X, y):
        h = torch.from_numpy(X)
        for W, b in zip(p[0:-2:2], p[1:-2:2]):
            h = torch.tanh(h @ W + b)
        loss = F.cross_entropy(h @ p[-2] + p[-1], torch.from_numpy(y))
        grads = torch.autograd.grad(loss, p)
        with torch.no_grad():
            for w, g in zip(p, grads):
                w.sub_(g, alpha=lr)
        return loss.detach()
    return Trainer(step, lambda: [w.detach().numpy().copy() for w in p])


TRAINERS: dict[str, Callable[[list[np.ndarray], float], Trainer]] = {
    "irkit": irkit_trainer,
    "numpy": numpy_trainer,
    "jax": lambda params, lr: jax_trainer(params, lr, donate=False),
    "jax (donated)": lambda params, lr: jax_trainer(params, lr, donate=True),
    "pytensor": pytensor_trainer,
    "numba": numba_trainer,
    "torch": torch_trainer,
}


def _scalar(loss: Any) -> float:
    return float(np.asarray(loss))


# ---------------------------------------------------------------------------
# 1. softmax cross-entropy forward + backward
# ---------------------------------------------------------------------------
# The answer checked is (mean loss, N * d loss / d logits): the gradient of a mean over
# N rows is ~1/N per entry, far below the check's absolute tolerance; scaled by N it is
# softmax - one-hot, of order one.

def xent_setup(quick: bool) -> dict:
    n, classes = (256, 1000) if quick else (4096, 1000)
    rng = np.random.default_rng(8)
    return {"logits": (2.0 * rng.standard_normal((n, classes))).astype(np.float32),
            "labels": rng.integers(0, classes, n).astype(np.int64)}


def numpy_xent(logits: np.ndarray, labels: np.ndarray) -> tuple[Any, np.ndarray]:
    rows = np.arange(len(labels))
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    loss = (np.log(s[:, 0]) - shifted[rows, labels]).mean()
    grad = e / s
    grad[rows, labels] -= 1.0
    grad /= len(labels)
    return loss, grad


def _xent_case(data: dict, run: Callable[[], tuple[Any, Any]]) -> Case:
    n = len(data["labels"])

    def result():
        loss, grad = run()
        return _scalar(loss), np.asarray(grad) * n
    return Case(run, result)


def xent_reference(data: dict):
    loss, grad = numpy_xent(data["logits"], data["labels"])
    return float(loss), grad * len(data["labels"])


def xent_irkit(data: dict) -> Case:
    import irkit as ik
    ik.config.num_threads = threads()
    x, t = ik.matrix("logits", dtype="float32"), ik.lvector("labels")
    loss = -ik.mean(ik.log_softmax(x)[ik.arange(x.shape[0]), t])
    f = ik.function([x, t], [loss, ik.grad(loss, x)], name="softmax_xent")
    return _xent_case(data, lambda: f(data["logits"], data["labels"]))


def xent_numpy(data: dict) -> Case:
    return _xent_case(data, lambda: numpy_xent(data["logits"], data["labels"]))


def xent_jax(data: dict) -> Case:
    import jax
    import jax.numpy as jnp

    def loss_fn(logits, labels):
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))
    f = jax.jit(jax.value_and_grad(loss_fn))
    logits, labels = jnp.asarray(data["logits"]), jnp.asarray(data["labels"])
    return _xent_case(data, lambda: jax.block_until_ready(f(logits, labels)))


def xent_pytensor(data: dict) -> Case:
    import pytensor
    import pytensor.tensor as pt
    x, t = pt.matrix("logits", dtype="float32"), pt.lvector("labels")
    loss = -pt.mean(pt.special.log_softmax(x, axis=-1)[pt.arange(x.shape[0]), t])
    f = _pytensor_function([x, t], [loss, pytensor.grad(loss, x)])
    return _xent_case(data, lambda: f(data["logits"], data["labels"]))


def xent_numba_parallel(data: dict) -> Case:
    """Rows in parallel (prange), each in three passes: max, exp and sum, scale; fastmath
    lets LLVM vectorise the reductions, as anyone tuning this kernel would."""
    import numba
    numba.set_num_threads(min(threads(), numba.config.NUMBA_NUM_THREADS))

    @numba.njit(parallel=True, fastmath=True)
    def softmax_xent(logits, labels):
        n, classes = logits.shape
        grad = np.empty_like(logits)
        losses = np.empty(n, np.float32)
        inv_n = np.float32(1.0) / np.float32(n)
        for i in numba.prange(n):
            m = logits[i, 0]
            for j in range(1, classes):
                m = max(m, logits[i, j])
            s = np.float32(0.0)
            for j in range(classes):
                e = np.exp(logits[i, j] - m)
                grad[i, j] = e
                s += e
            scale = inv_n / s
            for j in range(classes):
                grad[i, j] *= scale
            grad[i, labels[i]] -= inv_n
            losses[i] = np.log(s) + m - logits[i, labels[i]]
        return losses.mean(), grad
    return _xent_case(data, lambda: softmax_xent(data["logits"], data["labels"]))


def xent_torch(data: dict) -> Case:
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads())
    logits = torch.tensor(data["logits"], requires_grad=True)
    labels = torch.from_numpy(data["labels"])

    def run():
        loss = F.cross_entropy(logits, labels)
        (grad,) = torch.autograd.grad(loss, logits)
        return loss.detach(), grad
    return _xent_case(data, run)


# ---------------------------------------------------------------------------
# 2-3. one SGD step of logistic regression and of the MLP, on one minibatch
# ---------------------------------------------------------------------------
# The check: the first step's loss, and the step it took, (new - initial) / lr, for every
# parameter. That is the updated parameters compared with the initial ones subtracted:
# the initial values would otherwise dominate, and hide an error in the update.

def step_setup(sizes: tuple[int, ...], batch: int) -> Callable[[bool], dict]:
    def setup(quick: bool) -> dict:
        n = min(batch, 64) if quick else batch
        X, y = minibatch(n, sizes[0], sizes[-1], seed=3)
        return {"X": X, "y": y, "params": mlp_params(sizes, seed=4), "lr": STEP_LR}
    return setup


def step_reference(data: dict):
    loss, grads = numpy_loss_and_grads(data["params"], data["X"], data["y"])
    return [float(loss)] + [-g for g in grads]


def step_builder(system: str) -> Callable[[dict], Case]:
    def build(data: dict) -> Case:
        trainer = TRAINERS[system](data["params"], data["lr"])
        X, y = data["X"], data["y"]
        first: list[Any] = []

        def run():
            loss = trainer.step(X, y)
            trainer.sync()
            if not first:
                first.append(loss)
            return loss

        def result():
            taken = [(new.astype(np.float64) - old) / data["lr"] for new, old in zip(trainer.params(), data["params"])]
            return [_scalar(first[0])] + taken
        return Case(run, result)
    return build


def step_workload(name: str, sizes: tuple[int, ...], batch: int, what: str) -> Workload:
    return Workload(
        name=name,
        description=f"One SGD step (lr {STEP_LR}) of {what} on a minibatch of {batch} float32 examples: "
                    "forward, mean NLL of the softmax, gradient, update of the parameters in place "
                    "(returns the loss). Same minibatch every call.",
        setup=step_setup(sizes, batch), reference=step_reference,
        systems={s: step_builder(s) for s in TRAINERS}, tol=1e-4)


# ---------------------------------------------------------------------------
# 4. Hessian-vector product of the MLP loss (float64)
# ---------------------------------------------------------------------------

def hvp_setup(quick: bool) -> dict:
    sizes = (784, 64, 10) if quick else MLP_SIZES
    X, y = minibatch(32 if quick else 128, sizes[0], sizes[-1], seed=5, dtype="float64")
    params = mlp_params(sizes, seed=6, dtype="float64")
    rng = np.random.default_rng(7)
    return {"X": X, "y": y, "params": params, "v": [rng.standard_normal(p.shape) for p in params]}


def numpy_hvp(params: list[np.ndarray], v: list[np.ndarray], X: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """The exact product, by Pearlmutter's R-operator applied to the hand-written forward
    and backward passes: R{.} is the derivative along v of each intermediate, so R{W} = v_W
    and the R-gradients are the Hessian times v (exact to rounding, unlike a finite
    difference of the gradient, whose truncation error is too close to any useful tolerance)."""
    Ws, bs, vWs, vbs = params[0::2], params[1::2], v[0::2], v[1::2]
    acts, r_acts = [X], [np.zeros_like(X)]
    for W, b, vW, vb in zip(Ws[:-1], bs[:-1], vWs[:-1], vbs[:-1]):
        a = np.tanh(acts[-1] @ W + b)
        r_z = r_acts[-1] @ W + acts[-1] @ vW + vb
        acts.append(a)
        r_acts.append((1.0 - a * a) * r_z)
    logp = _log_softmax(acts[-1] @ Ws[-1] + bs[-1])
    r_logits = r_acts[-1] @ Ws[-1] + acts[-1] @ vWs[-1] + vbs[-1]
    p = np.exp(logp)
    rows = np.arange(len(y))
    delta = p.copy()
    delta[rows, y] -= 1.0
    delta /= len(y)
    r_delta = p * (r_logits - (p * r_logits).sum(axis=1, keepdims=True)) / len(y)
    out: list[np.ndarray] = [None] * len(params)  # type: ignore[list-item]
    for layer in range(len(Ws) - 1, -1, -1):
        a, r_a = acts[layer], r_acts[layer]
        out[2 * layer] = r_a.T @ delta + a.T @ r_delta
        out[2 * layer + 1] = r_delta.sum(axis=0)
        if layer > 0:
            back = delta @ Ws[layer].T
            r_back = r_delta @ Ws[layer].T + delta @ vWs[layer].T
            delta, r_delta = back * (1.0 - a * a), r_back * (1.0 - a * a) - back * (2.0 * a * r_a)
    return out


def hvp_reference(data: dict) -> list[np.ndarray]:
    return numpy_hvp(data["params"], data["v"], data["X"], data["y"])


def hvp_numpy(data: dict) -> Callable:
    return lambda: numpy_hvp(data["params"], data["v"], data["X"], data["y"])


def hvp_irkit(data: dict) -> Callable:
    """Forward over reverse: ik.Rop of ik.grad."""
    import irkit as ik
    ik.config.num_threads = threads()
    x, t = ik.dmatrix("x"), ik.lvector("t")
    params = [ik.dmatrix(f"W{k // 2 + 1}") if k % 2 == 0 else ik.dvector(f"b{k // 2 + 1}")
              for k in range(len(data["params"]))]
    vs = [ik.dmatrix(f"v{k}") if k % 2 == 0 else ik.dvector(f"v{k}") for k in range(len(params))]
    h = x
    for W, b in zip(params[0:-2:2], params[1:-2:2]):
        h = ik.tanh(ik.dot(h, W) + b)
    loss = -ik.mean(ik.log_softmax(ik.dot(h, params[-2]) + params[-1])[ik.arange(x.shape[0]), t])
    hv = ik.Rop(ik.grad(loss, params), params, vs)
    f = ik.function([x, t, *params, *vs], hv, name="hvp")
    args = (data["X"], data["y"], *data["params"], *data["v"])
    return lambda: f(*args)


def hvp_jax(data: dict) -> Callable:
    """jvp of grad (forward over reverse), jitted."""
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)  # the other workloads pass float32 arrays: they stay float32

    def loss_fn(params, X, y):
        h = X
        for W, b in zip(params[0:-2:2], params[1:-2:2]):
            h = jnp.tanh(h @ W + b)
        logp = jax.nn.log_softmax(h @ params[-2] + params[-1])
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    @jax.jit
    def hvp(params, v, X, y):
        return jax.jvp(lambda p: jax.grad(loss_fn)(p, X, y), (params,), (v,))[1]
    args = ([jnp.asarray(p) for p in data["params"]], [jnp.asarray(d) for d in data["v"]],
            jnp.asarray(data["X"]), jnp.asarray(data["y"]))
    return lambda: jax.block_until_ready(hvp(*args))


def hvp_pytensor(data: dict) -> Callable:
    """The forward-mode product of the gradient with v: pytensor.gradient.pushforward (Rop
    before PyTensor 3, which deprecates it), built from two Lops by default."""
    import pytensor
    import pytensor.tensor as pt
    x, t = pt.dmatrix("x"), pt.lvector("t")
    params = [pt.dmatrix() if k % 2 == 0 else pt.dvector() for k in range(len(data["params"]))]
    vs = [pt.dmatrix() if k % 2 == 0 else pt.dvector() for k in range(len(params))]
    h = x
    for W, b in zip(params[0:-2:2], params[1:-2:2]):
        h = pt.tanh(pt.dot(h, W) + b)
    loss = -pt.mean(pt.special.log_softmax(pt.dot(h, params[-2]) + params[-1], axis=-1)[pt.arange(x.shape[0]), t])
    forward = getattr(pytensor.gradient, "pushforward", None) or pytensor.gradient.Rop
    hv = forward(pytensor.grad(loss, params), params, vs)
    f = _pytensor_function([x, t, *params, *vs], hv)
    args = (data["X"], data["y"], *data["params"], *data["v"])
    return lambda: f(*args)


def hvp_torch(data: dict) -> Callable:
    """Double backward: the gradient with create_graph, then its vjp with v."""
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads())
    params = [torch.tensor(p, requires_grad=True) for p in data["params"]]
    vs = [torch.from_numpy(d) for d in data["v"]]
    X, y = torch.from_numpy(data["X"]), torch.from_numpy(data["y"])

    def run():
        h = X
        for W, b in zip(params[0:-2:2], params[1:-2:2]):
            h = torch.tanh(h @ W + b)
        loss = F.cross_entropy(h @ params[-2] + params[-1], y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        return torch.autograd.grad(grads, params, grad_outputs=vs)
    return run


# ---------------------------------------------------------------------------
# 5. the Theano 2012 MLP table: examples/s of SGD over the data in minibatches
# ---------------------------------------------------------------------------
# One call trains on the next chunk of the 6,000 examples, one step per minibatch, each
# step called from Python (as the 2012 benchmark called Theano's compiled function).

EXAMPLES_2012 = 6000


def examples_per_call(sizes: tuple[int, ...], batch: int, quick: bool) -> int:
    """Enough minibatches for a steady rate, few enough that a call stays near a second:
    at batch 1 a numpy step of the 784-1000-1000-1000-10 net takes 10-30 ms here (each
    update streams its three 4 MB weight matrices several times), so that net gets 60."""
    if quick:
        return max(batch, 10)
    return 60 if len(sizes) > 3 else 600


def mlp2012_setup(sizes: tuple[int, ...], batch: int) -> Callable[[bool], dict]:
    def setup(quick: bool) -> dict:
        chunk = examples_per_call(sizes, batch, quick)
        n = 2 * chunk if quick else EXAMPLES_2012
        X, y = minibatch(n, sizes[0], sizes[-1], seed=2012)
        return {"X": X, "y": y, "params": mlp_params(sizes, seed=2013), "batch": batch, "chunk": chunk}
    return setup


def mlp2012_reference(data: dict):
    """numpy's SGD over the first chunk: the first minibatch's loss, the parameters after."""
    trainer = numpy_trainer(data["params"], LR_2012)
    b = data["batch"]
    losses = [trainer.step(data["X"][k:k + b], data["y"][k:k + b]) for k in range(0, data["chunk"], b)]
    return [float(losses[0])] + trainer.params()


def mlp2012_builder(system: str) -> Callable[[dict], Case]:
    def build(data: dict) -> Case:
        trainer = TRAINERS[system](data["params"], LR_2012)
        X, y, batch, chunk = data["X"], data["y"], data["batch"], data["chunk"]
        n_chunks = len(X) // chunk
        state = {"calls": 0, "first_loss": None}

        def run():
            start = (state["calls"] % n_chunks) * chunk
            for k in range(start, start + chunk, batch):
                loss = trainer.step(X[k:k + batch], y[k:k + batch])
                if state["first_loss"] is None:
                    state["first_loss"] = loss
            trainer.sync()
            state["calls"] += 1

        return Case(run, lambda: [_scalar(state["first_loss"])] + trainer.params())
    return build


def mlp2012_workload(sizes: tuple[int, ...], batch: int) -> Workload:
    arch = "-".join(map(str, sizes))
    return Workload(
        name=f"mlp2012_{arch}_b{batch}",
        description=f"The Theano 2012 MLP benchmark: a {arch} MLP (tanh hidden layers, softmax, mean NLL), "
                    f"SGD lr {LR_2012}, float32, minibatches of {batch}, one compiled step per minibatch called "
                    f"from Python; a call trains on the next {examples_per_call(sizes, batch, False)} of {EXAMPLES_2012} "
                    "synthetic examples. "
                    "Checked: the first minibatch's loss and the parameters after the first call.",
        setup=mlp2012_setup(sizes, batch), reference=mlp2012_reference,
        systems={s: mlp2012_builder(s) for s in TRAINERS},
        tol=1e-4,  # hundreds of float32 steps, each system rounding its own way
        rate=("examples", lambda data: data["chunk"]),
        heavy=len(sizes) > 3, group="Theano 2012 MLP")


# ---------------------------------------------------------------------------
# 6. compile time of the MLP training step in a new process, cold and warm cache
# ---------------------------------------------------------------------------
# The parent writes the initial parameters and a minibatch to a file; the child builds
# the graph, times only the compile, runs the step once and prints both. The harness
# records the child's seconds (Seconds) and skips its check, so the parent checks the
# child's loss against numpy's itself, on every call.

COMPILE_BATCH = 128


def compile_setup(quick: bool) -> dict:
    X, y = minibatch(COMPILE_BATCH, MLP_SIZES[0], MLP_SIZES[-1], seed=9)
    params = mlp_params(MLP_SIZES, seed=10)
    loss, _ = numpy_loss_and_grads(params, X, y)
    return {"X": X, "y": y, "params": params, "loss": float(loss)}


def compile_child(family: str, data_file: str, cache_dir: str | None) -> None:
    """In the child process: build the step's graph, time its compile, run it once, print
    {"seconds": ..., "loss": ...} as the last line."""
    import time
    with np.load(data_file) as f:
        X, y = f["X"], f["y"]
        params = [f[f"p{k}"] for k in range(len(f.files) - 2)]
    if family == "irkit":
        import irkit as ik
        inputs, loss, updates = _irkit_training_graph(params, STEP_LR)
        t0 = time.perf_counter()
        step = ik.function(inputs, loss, updates=updates, name="train_step")
        seconds = time.perf_counter() - t0
        value = step(X, y)
    elif family == "jax":
        import jax
        if cache_dir is not None:
            jax.config.update("jax_compilation_cache_dir", cache_dir)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
            jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
        import jax.numpy as jnp
        args = ([jnp.asarray(p) for p in params], jnp.asarray(X), jnp.asarray(y))
        t0 = time.perf_counter()
        step = jax.jit(_jax_step_fn(STEP_LR)).lower(*args).compile()
        seconds = time.perf_counter() - t0
        value, _ = step(*args)
    elif family == "pytensor":
        # pytensor.function only rewrites the graph: its numba backend compiles at the first
        # call. The compile is that first call's time less a second call's (the step itself).
        inputs, loss, updates = _pytensor_training_graph(params, STEP_LR)
        t0 = time.perf_counter()
        step = _pytensor_function(inputs, loss, updates)
        value = step(X, y)
        t1 = time.perf_counter()
        step(X, y)
        seconds = (t1 - t0) - (time.perf_counter() - t1)
    else:
        raise ValueError(f"no compile child for {family}")
    print(json.dumps({"seconds": seconds, "loss": _scalar(value)}))


def _run_compile_child(family: str, data: dict, data_file: str, cache_dir: str, pycache: str) -> float:
    env = dict(os.environ)
    child_cache: str | None = None
    if family == "irkit":
        env["IRKIT_CACHE_DIR"] = cache_dir
        # Python's bytecode cache as an installed package has it (pip compiles the modules of
        # the peers' packages when it installs them; irkit's editable install writes them on
        # first import), in the bench's own folder: where the environment sets
        # PYTHONDONTWRITEBYTECODE, each child would compile irkit's modules from source inside
        # the timed compile.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = pycache
    elif family == "pytensor":
        # base_compiledir, not compiledir: PyTensor 3 keeps its numba cache in base_compiledir/numba
        env["PYTENSOR_FLAGS"] = ",".join(filter(None, [env.get("PYTENSOR_FLAGS"), f"base_compiledir={cache_dir}"]))
    elif family == "jax":
        child_cache = cache_dir if data["warm"] else None  # cold: JAX's default, no persistent cache
    # on every core of the machine, as a user's process compiles (the worker that starts it is
    # pinned to the thread count being compared; compiling is not part of that comparison)
    code = (f"import os, sys; sys.path.insert(0, {HERE!r}); import models; "
            f"hasattr(os, 'sched_setaffinity') and os.sched_setaffinity(0, range(os.cpu_count())); "
            f"models.compile_child({family!r}, {data_file!r}, {child_cache!r})")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"the compile child failed ({proc.returncode}): {tail}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if not np.isclose(out["loss"], data["loss"], rtol=1e-4, atol=1e-4):
        raise AssertionError(f"{family}: the compiled step's loss {out['loss']!r} differs from numpy's "
                             f"{data['loss']!r}")
    return float(out["seconds"])


def compile_builder(family: str, warm: bool) -> Callable[[dict], Callable[[], Seconds]]:
    def build(data: dict) -> Callable[[], Seconds]:
        workdir = tempfile.mkdtemp(prefix=f"irkit-bench-compile-{family}-")
        atexit.register(shutil.rmtree, workdir, ignore_errors=True)  # the warm cache lives until the worker ends
        data_file = os.path.join(workdir, "data.npz")
        np.savez(data_file, X=data["X"], y=data["y"], **{f"p{k}": p for k, p in enumerate(data["params"])})
        child_data = {**data, "warm": warm}
        pycache = os.path.join(workdir, "pycache")
        if family == "irkit" and not warm:  # fills pycache (the warm run's first call does)
            _run_compile_child(family, child_data, data_file, tempfile.mkdtemp(dir=workdir), pycache)
        if warm:
            cache_dir = os.path.join(workdir, "cache")
            os.makedirs(cache_dir)
            _run_compile_child(family, child_data, data_file, cache_dir, pycache)  # fills the cache
            return lambda: Seconds(_run_compile_child(family, child_data, data_file, cache_dir, pycache))

        def cold() -> Seconds:
            with tempfile.TemporaryDirectory(dir=workdir) as cache_dir:
                return Seconds(_run_compile_child(family, child_data, data_file, cache_dir, pycache))
        return cold
    return build


def compile_workload(warm: bool) -> Workload:
    which = "warm" if warm else "cold"
    how = ("the on-disk cache filled by an earlier process (irkit's IRKIT_CACHE_DIR, JAX's persistent "
           "compilation cache, PyTensor's compiledir)" if warm else
           "an empty cache (a new IRKIT_CACHE_DIR and PyTensor base_compiledir; JAX without a persistent cache)")
    return Workload(
        name=f"compile_mlp_{which}",
        description=f"Compile time of the {'-'.join(map(str, MLP_SIZES))} MLP training step in a new process, "
                    f"with {how}, on all the machine's cores: the graph is built first; only the compile is "
                    "timed (irkit: ik.function; "
                    "JAX: jit(step).lower(...).compile(); PyTensor: pytensor.function and its first call, "
                    "where its numba backend compiles, less a second call). The child runs the step once "
                    "and its loss is checked against numpy's.",
        setup=compile_setup, reference=lambda data: data["loss"],
        systems={family: compile_builder(family, warm) for family in ("irkit", "jax", "pytensor")},
        threads_matter=False, repeat=3,
        # cold, PyTensor's numba backend compiles for 30-60 s here: too slow for --quick (the warm
        # workload, which fills its cache with one cold compile first, still runs there)
        heavy=not warm)


# ---------------------------------------------------------------------------
# the list
# ---------------------------------------------------------------------------

WORKLOADS: list[Workload] = [
    Workload(
        name="softmax_xent_4096x1000",
        description="Softmax cross-entropy forward and backward on (4096, 1000) float32 logits with int "
                    "labels: the mean loss and its gradient with respect to the logits.",
        setup=xent_setup, reference=xent_reference,
        systems={"irkit": xent_irkit, "numpy": xent_numpy, "jax": xent_jax, "pytensor": xent_pytensor,
                 "numba parallel": xent_numba_parallel, "torch": xent_torch},
        tol=1e-4),
    step_workload("logreg_step_b128", LOGREG_SIZES, 128, "logistic regression 784->10"),
    step_workload("logreg_step_b4096", LOGREG_SIZES, 4096, "logistic regression 784->10"),
    step_workload("mlp_step_b128", MLP_SIZES, 128, "the 784-500-10 tanh MLP"),
    step_workload("mlp_step_b1024", MLP_SIZES, 1024, "the 784-500-10 tanh MLP"),
    Workload(
        name="hvp_mlp",
        description="Hessian-vector product of the 784-500-10 tanh MLP's mean NLL with respect to all its "
                    "parameters, float64, batch 128 (numpy: Pearlmutter's R-operator on the hand-written "
                    "backward pass, also the reference).",
        setup=hvp_setup, reference=hvp_reference,
        systems={"irkit": hvp_irkit, "numpy (R-op)": hvp_numpy, "jax": hvp_jax,
                 "pytensor": hvp_pytensor, "torch": hvp_torch},
        tol=1e-9),
    *[mlp2012_workload(sizes, batch) for sizes in ((784, 10), (784, 500, 10), (784, 1000, 1000, 1000, 10))
      for batch in (1, 10, 60)],
    compile_workload(warm=False),
    compile_workload(warm=True),
]
