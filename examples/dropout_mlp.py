"""Train a multilayer perceptron with dropout on scikit-learn's digits (8x8 images, 10
classes; the data ships with scikit-learn, nothing is downloaded).

    python examples/dropout_mlp.py [--epochs 30] [--hidden 256] [--keep 0.5] [--seed 0]

The model of train_mlp.py (tanh hidden layer, softmax output, minibatch SGD) with
inverted dropout on the hidden layer: while training, each hidden unit is kept with
probability `keep` and scaled by 1/keep, so the predictor uses the weights as they are.
The masks come from an `ik.RandomStream`: the draw is part of the compiled training step
(generated inside its kernels, fused with the layer's arithmetic), and its state advances
on every call through the stream's default updates, so each minibatch gets new masks,
and the same seed trains the same network again.
"""

from __future__ import annotations

import argparse
import time

import irkit as ik
from train_mlp import fit, init_params, load  # the same data, parameters and training loop


def build(n_in: int, n_hidden: int, n_out: int, lr: float, keep: float, seed: int = 0):
    """The training step (with dropout) and the predictor (without), compiled."""
    params = init_params(n_in, n_hidden, n_out, seed)
    W1, b1, W2, b2 = params
    srng = ik.RandomStream(seed)

    x = ik.matrix("x", dtype="float32")
    t = ik.ivector("t")
    hidden = ik.tanh(x @ W1 + b1)
    # one mask per example and unit, of the minibatch's (symbolic) shape
    mask = srng.bernoulli(hidden.shape, p=keep, dtype="float32")
    dropped = hidden * mask / keep
    p_train = ik.softmax(dropped @ W2 + b2)
    loss = -ik.mean(ik.log(p_train)[ik.arange(x.shape[0]), t])
    grads = ik.grad(loss, params)
    step = ik.function([x, t], loss, updates=[(w, w - lr * g) for w, g in zip(params, grads)],
                       name="train_step")
    predict = ik.function([x], ik.argmax(hidden @ W2 + b2, axis=1), name="predict")
    return step, predict, srng


def main(epochs: int = 30, hidden: int = 256, batch: int = 32, lr: float = 0.1, keep: float = 0.5,
         seed: int = 0, quiet: bool = False) -> float:
    X_train, X_test, y_train, y_test = load(seed)
    start = time.perf_counter()
    step, predict, _ = build(X_train.shape[1], hidden, 10, lr, keep, seed)
    if not quiet:
        print(f"digits: {len(X_train)} training and {len(X_test)} test images; compiled the training step "
              f"(dropout keep={keep}) and the predictor in {time.perf_counter() - start:.2f} s")
    return fit(step, predict, (X_train, X_test, y_train, y_test), epochs, batch, seed, quiet)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--keep", type=float, default=0.5, help="the probability of keeping a hidden unit")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    acc = main(args.epochs, args.hidden, args.batch, args.lr, args.keep, args.seed)
    print(f"\nfinal test accuracy {100 * acc:.2f}% after {args.epochs} epochs, {time.perf_counter() - t0:.1f} s in all")
