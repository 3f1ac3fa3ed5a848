"""Train a multilayer perceptron on scikit-learn's digits (8x8 images, 10 classes;
the data ships with scikit-learn, nothing is downloaded).

    python examples/train_mlp.py [--epochs 40] [--hidden 128] [--batch 32] [--lr 0.1] [--ir tensor]

The model: tanh hidden layer, softmax output, mean negative log-likelihood, minibatch
SGD. Parameters are shared variables; one compiled function takes a minibatch, returns
the loss and applies the SGD updates. The gradient comes from ik.grad; the loss's
log∘softmax is rewritten to log_softmax, so its gradient is softmax - one-hot.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import irkit as ik


def load(seed: int = 0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    X = (digits.data / 16.0).astype("float32")
    y = digits.target.astype("int64")
    return train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)


def init_params(n_in: int, n_hidden: int, n_out: int, seed: int = 0) -> list:
    """W1, b1, W2, b2 as shared variables (Glorot-uniform weights, zero biases)."""
    rng = np.random.default_rng(seed)

    def glorot(fan_in, fan_out):
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-bound, bound, (fan_in, fan_out)).astype("float32")

    return [ik.shared(glorot(n_in, n_hidden), name="W1"), ik.shared(np.zeros(n_hidden, "float32"), name="b1"),
            ik.shared(glorot(n_hidden, n_out), name="W2"), ik.shared(np.zeros(n_out, "float32"), name="b2")]


def build(n_in: int, n_hidden: int, n_out: int, lr: float, seed: int = 0):
    """The training step and the predictor, compiled."""
    params = init_params(n_in, n_hidden, n_out, seed)
    W1, b1, W2, b2 = params

    x = ik.matrix("x", dtype="float32")
    t = ik.ivector("t")
    hidden = ik.tanh(x @ W1 + b1)
    p = ik.softmax(hidden @ W2 + b2)
    loss = -ik.mean(ik.log(p)[ik.arange(x.shape[0]), t])
    grads = ik.grad(loss, params)
    step = ik.function([x, t], loss, updates=[(w, w - lr * g) for w, g in zip(params, grads)], name="train_step")
    predict = ik.function([x], ik.argmax(p, axis=1), name="predict")
    return step, predict


def main(epochs: int = 40, hidden: int = 128, batch: int = 32, lr: float = 0.1, ir: str | None = "tensor",
         seed: int = 0, quiet: bool = False) -> float:
    X_train, X_test, y_train, y_test = load(seed)
    start = time.perf_counter()
    step, predict = build(X_train.shape[1], hidden, 10, lr, seed)
    if not quiet:
        print(f"digits: {len(X_train)} training and {len(X_test)} test images; compiled the training step "
              f"and the predictor in {time.perf_counter() - start:.2f} s")
        if ir:
            print(f"\n==== the training step at the {ir} level ====")
            print(step.ir(ir))
    return fit(step, predict, (X_train, X_test, y_train, y_test), epochs, batch, seed, quiet)


def fit(step, predict, data, epochs: int, batch: int, seed: int = 0, quiet: bool = False) -> float:
    """Minibatch SGD for `epochs` passes over the shuffled training set, printing each
    epoch's loss, test accuracy and speed; the final test accuracy."""
    X_train, X_test, y_train, y_test = data
    rng = np.random.default_rng(seed)
    accuracy = 0.0
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(X_train))
        t0 = time.perf_counter()
        total = 0.0
        for k in range(0, len(order), batch):
            idx = order[k:k + batch]
            total += float(step(X_train[idx], y_train[idx])) * len(idx)
        seconds = time.perf_counter() - t0
        accuracy = float(np.mean(predict(X_test) == y_test))
        if not quiet:
            print(f"epoch {epoch:3d}  loss {total / len(order):.4f}  test accuracy {100 * accuracy:.2f}%  "
                  f"{len(order) / seconds:,.0f} examples/s")
    return accuracy


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--ir", default="tensor", help="the level of IR to show: tensor, fused, loops, llvm or none")
    args = ap.parse_args()
    t0 = time.perf_counter()
    acc = main(args.epochs, args.hidden, args.batch, args.lr, None if args.ir == "none" else args.ir)
    print(f"\nfinal test accuracy {100 * acc:.2f}% after {args.epochs} epochs, {time.perf_counter() - t0:.1f} s in all")
