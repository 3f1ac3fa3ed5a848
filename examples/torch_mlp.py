"""A PyTorch MLP (64-128-10 on scikit-learn's digits) compiled with irkit as the
torch.compile backend: the predictions match eager PyTorch, and training through the
compiled forward and backward graphs follows eager PyTorch's losses step by step.

    python examples/torch_mlp.py [--steps 60] [--lr 0.5]

Needs PyTorch (pip install 'irkit[torch]').
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

import irkit.torch_backend


class MLP(nn.Module):
    def __init__(self, n_in: int = 64, n_hidden: int = 128, n_out: int = 10) -> None:
        super().__init__()
        self.hidden = nn.Linear(n_in, n_hidden)
        self.out = nn.Linear(n_hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.out(torch.relu(self.hidden(x))), dim=-1)


def load_digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split
    digits = sklearn_digits()
    X_train, X_test, y_train, y_test = train_test_split(digits.data / 16.0, digits.target, test_size=0.25,
                                                        random_state=0, stratify=digits.target)
    as_float = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return as_float(X_train), as_float(X_test), torch.tensor(y_train), torch.tensor(y_test)


def main(steps: int = 60, lr: float = 0.5, batch: int = 128, quiet: bool = False) -> dict[str, float]:
    """Train an eager and an irkit-compiled copy of one MLP on the same batches; returns the
    largest prediction and loss differences between them and the compiled model's accuracy."""
    torch.manual_seed(0)
    X_train, X_test, y_train, y_test = load_digits()
    eager = MLP()
    model = copy.deepcopy(eager)
    compiled = torch.compile(model, backend=irkit.torch_backend)

    with torch.no_grad():
        prediction_diff = (compiled(X_test) - eager(X_test)).abs().max().item()
    if not quiet:
        print(f"predictions before training: max |irkit - eager| = {prediction_diff:.2e}")

    optimizers = [torch.optim.SGD(m.parameters(), lr=lr) for m in (eager, model)]
    order = torch.randperm(len(X_train), generator=torch.Generator().manual_seed(1))
    loss_diff = 0.0
    elapsed = {"eager": 0.0, "irkit": 0.0}
    for step in range(1, steps + 1):
        start = (step - 1) * batch % (len(X_train) - batch)
        index = order[start:start + batch]
        x, t = X_train[index], y_train[index]
        losses = []
        for name, net, optimizer in (("eager", eager, optimizers[0]), ("irkit", compiled, optimizers[1])):
            began = time.perf_counter()
            loss = nn.functional.nll_loss(net(x), t)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step > 1:  # the first step compiles
                elapsed[name] += time.perf_counter() - began
            losses.append(loss.item())
        loss_diff = max(loss_diff, abs(losses[0] - losses[1]))
        if not quiet and (step == 1 or step % 10 == 0):
            print(f"step {step:3d}  loss eager {losses[0]:.6f}  irkit {losses[1]:.6f}")

    with torch.no_grad():
        accuracy = (compiled(X_test).argmax(dim=1) == y_test).float().mean().item()
        final_diff = (compiled(X_test) - eager(X_test)).abs().max().item()
    if not quiet:
        print(f"max loss difference over {steps} steps: {loss_diff:.2e}")
        print(f"predictions after training: max |irkit - eager| = {final_diff:.2e}")
        print(f"time per training step after the first: eager {1e3 * elapsed['eager'] / max(steps - 1, 1):.2f} ms, "
              f"irkit {1e3 * elapsed['irkit'] / max(steps - 1, 1):.2f} ms")
        print(f"test accuracy (irkit-compiled model) {100 * accuracy:.2f}%")
    return {"prediction_diff": max(prediction_diff, final_diff), "loss_diff": loss_diff, "accuracy": accuracy}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--lr", type=float, default=0.5)
    args = ap.parse_args()
    main(steps=args.steps, lr=args.lr)
