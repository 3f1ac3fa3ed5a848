"""A character-level Elman RNN language model, trained with full back-propagation
through time: the RNN benchmark of the 2012 Theano paper, in miniature.

    python examples/rnn_lm.py [--epochs 50] [--hidden 64] [--seq 100] [--lr 15]

The text ships with Python (The Zen of Python, `import this`; nothing is downloaded).
The model: one-hot characters, a sigmoid hidden layer with recurrent weights, a
softmax output predicting the next character; loss = mean negative log-likelihood;
plain SGD with batch 1 and one update per 100-character sequence. The recurrence is
one `ik.scan`, compiled into a native loop; its gradient is the reverse loop that
`ik.grad` derives (BPTT), with the weight gradients contracted once after it.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import io
import time

import numpy as np

import irkit as ik


def corpus() -> str:
    with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the text
        import this
    return codecs.decode(this.s, "rot13")


def build(vocab: int, hidden: int, lr: float, seed: int = 0):
    rng = np.random.default_rng(seed)

    def init(*shape, scale):
        return (rng.standard_normal(shape) * scale).astype("float32")

    W_in = ik.shared(init(vocab, hidden, scale=0.1), name="W_in")
    W_rec = ik.shared(init(hidden, hidden, scale=1.0 / np.sqrt(hidden)), name="W_rec")
    b_h = ik.shared(np.zeros(hidden, "float32"), name="b_h")
    W_out = ik.shared(init(hidden, vocab, scale=0.1), name="W_out")
    b_o = ik.shared(np.zeros(vocab, "float32"), name="b_o")
    h_carry = ik.shared(np.zeros(hidden, "float32"), name="h")   # the state between sequences
    params = [W_in, W_rec, b_h, W_out, b_o]

    chars = ik.lvector("chars")     # the input characters of one sequence
    targets = ik.lvector("targets")  # the characters that follow them
    inputs = W_in[chars] + b_h       # one-hot times W_in: a row per character, outside the loop

    def step(x_t, h_prev, W_rec):
        return ik.sigmoid(x_t + ik.dot(h_prev, W_rec))

    hs, _ = ik.scan(step, sequences=inputs, outputs_info=h_carry, non_sequences=W_rec)
    logits = ik.dot(hs, W_out) + b_o
    n = chars.shape[0]
    loss = -ik.mean(ik.log_softmax(logits)[ik.arange(n), targets])
    grads = ik.grad(loss, params)
    updates = [(p, p - lr * g) for p, g in zip(params, grads)] + [(h_carry, hs[-1])]
    train = ik.function([chars, targets], loss, updates=updates, name="bptt_step")
    return train, h_carry


def main(epochs: int = 50, hidden: int = 64, seq: int = 100, lr: float = 15.0, seed: int = 0,
         quiet: bool = False) -> tuple[float, float]:
    text = corpus()
    alphabet = sorted(set(text))
    ids = np.array([alphabet.index(c) for c in text], dtype="int64")
    start = time.perf_counter()
    train, h_carry = build(len(alphabet), hidden, lr, seed)
    if not quiet:
        print(f"{len(text)} characters, {len(alphabet)} symbols; hidden {hidden}, sequences of {seq}; "
              f"compiled in {time.perf_counter() - start:.2f} s")
    first = last = None
    for epoch in range(1, epochs + 1):
        h_carry.set_value(np.zeros(hidden, "float32"))
        t0 = time.perf_counter()
        losses, tokens = [], 0
        for s in range(0, len(ids) - 1, seq):
            x, y = ids[s:s + seq], ids[s + 1:s + seq + 1]
            x = x[:len(y)]
            losses.append(float(train(x, y)) * len(y))
            tokens += len(y)
        dt = time.perf_counter() - t0
        loss = sum(losses) / tokens
        first = loss if first is None else first
        last = loss
        if not quiet:
            print(f"epoch {epoch:3d}  loss {loss:.3f} nats/char  ({tokens / dt:,.0f} characters/s)")
    return first, last


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--seq", type=int, default=100)
    ap.add_argument("--lr", type=float, default=15.0, help="the step size (the loss is a mean per character)")
    args = ap.parse_args()
    main(args.epochs, args.hidden, args.seq, args.lr)
