"""Multiclass logistic regression (softmax regression) on scikit-learn's digits, trained
with full-batch gradient descent; the gradient comes from ik.grad.

    python examples/logistic_regression.py [--steps 300] [--lr 0.5] [--l2 1e-4]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import irkit as ik


def main(steps: int = 300, lr: float = 0.5, l2: float = 1e-4, quiet: bool = False) -> float:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    X = (digits.data / 16.0).astype("float64")
    X_train, X_test, y_train, y_test = train_test_split(X, digits.target, test_size=0.25, random_state=0,
                                                        stratify=digits.target)
    W = ik.shared(np.zeros((64, 10)), name="W")
    b = ik.shared(np.zeros(10), name="b")
    x, t = ik.matrix("x"), ik.ivector("t")
    logits = x @ W + b
    nll = -ik.mean(ik.log_softmax(logits)[ik.arange(x.shape[0]), t])
    cost = nll + l2 * ik.sum(W * W)
    gW, gb = ik.grad(cost, [W, b])
    train = ik.function([x, t], cost, updates=[(W, W - lr * gW), (b, b - lr * gb)])
    predict = ik.function([x], ik.argmax(logits, axis=1))
    start = time.perf_counter()
    for k in range(1, steps + 1):
        c = train(X_train, y_train)
        if not quiet and (k % 50 == 0 or k == 1):
            acc = np.mean(predict(X_test) == y_test)
            print(f"step {k:4d}  cost {float(c):.4f}  test accuracy {100 * acc:.2f}%")
    accuracy = float(np.mean(predict(X_test) == y_test))
    if not quiet:
        print(f"{steps} steps in {time.perf_counter() - start:.2f} s; test accuracy {100 * accuracy:.2f}%")
    return accuracy


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument("--l2", type=float, default=1e-4)
    args = ap.parse_args()
    main(args.steps, args.lr, args.l2)
