"""irkit in one screen: build a function with the Python API, look at every level
of IR it goes through, run it, and check it against numpy.

    python examples/quickstart.py
"""

import time

import numpy as np

import irkit as ik

# The predictions and loss of a linear softmax classifier, with an L2 penalty:
# symbolic inputs (their first dim is dynamic), one shared weight matrix.
x = ik.matrix("x", dtype="float32")               # (n, 4)
t = ik.ivector("t")                               # (n,) class labels
W = ik.shared(np.random.default_rng(0).standard_normal((4, 3)).astype("float32"), name="W")
b = ik.shared(np.zeros(3, "float32"), name="b")

logits = x @ W + b
p = ik.softmax(logits)
nll = -ik.mean(ik.log(p)[ik.arange(x.shape[0]), t])    # log∘softmax is rewritten to log_softmax
loss = nll + 1e-3 * ik.sum(W * W)

start = time.perf_counter()
f = ik.function([x, t], [p, loss], name="classify")
print(f"compiled in {1e3 * (time.perf_counter() - start):.0f} ms\n")

for stage in ("tensor", "fused", "loops"):
    print(f"==== {stage} level " + "=" * 50)
    print(f.ir(stage))
llvm = f.ir("llvm")
print("==== llvm level (first lines of the vectorised code) " + "=" * 20)
print("\n".join(line for line in llvm.splitlines() if line.strip())[:1800], "\n...\n")

# Run it, and compute the same with numpy.
rng = np.random.default_rng(1)
X = rng.standard_normal((8, 4)).astype("float32")
T = rng.integers(0, 3, 8)
probs, value = f(X, T)

z = X @ W.get_value() + b.get_value()
z = z - z.max(axis=1, keepdims=True)
ref_p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
ref_loss = -np.mean(np.log(ref_p[np.arange(8), T])) + 1e-3 * np.sum(W.get_value() ** 2)
print("probabilities (first 3 rows):\n", probs[:3])
print(f"loss: irkit {float(value):.6f}   numpy {ref_loss:.6f}")
assert np.allclose(probs, ref_p, atol=1e-6) and np.isclose(value, ref_loss, rtol=1e-5)
print("irkit matches numpy.")
