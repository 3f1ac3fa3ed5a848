"""irkit as a torch.compile backend, against eager PyTorch: forward values, gradients
through the compiled backward, partial fallback to PyTorch, dtypes, recompilation."""

import copy
import logging
import subprocess
import sys
import warnings

import pytest

torch = pytest.importorskip("torch", reason="torch not installed")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import irkit.torch_backend as tb  # noqa: E402

TOLERANCE = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-12)}


@pytest.fixture(autouse=True)
def fresh_dynamo(monkeypatch):
    torch._dynamo.reset()
    tb.reports.clear()
    monkeypatch.setattr(tb, "_warned_ops", set())  # each test sees its own first warnings
    yield
    torch._dynamo.reset()


def compiled(model, backend=tb):
    return torch.compile(model, backend=backend)


def graphs(kind):
    return [r for r in tb.reports if r.kind == kind]


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(12, 16)
        self.out = nn.Linear(16, 5)

    def forward(self, x):
        return F.softmax(self.out(F.relu(self.hidden(x))), dim=-1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mlp_runs_as_one_irkit_function(dtype):
    torch.manual_seed(0)
    model = MLP().to(dtype)
    x = torch.randn(8, 12, dtype=dtype)
    with torch.no_grad():
        got = compiled(model)(x)
        want = model(x)
    assert got.dtype == dtype
    torch.testing.assert_close(got, want, **TOLERANCE[dtype])
    (report,) = tb.reports
    assert report.kind == "inference" and report.fallbacks == {}
    (region,) = report.regions
    assert len(region.functions) == 1
    assert {"aten.addmm", "aten.relu", "aten._softmax"} <= set(region.op_names)


class Activations(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 10)
        self.b = nn.Linear(10, 4)

    def forward(self, x):
        h = self.a(x)
        h = F.gelu(h) + F.leaky_relu(h, 0.2) + F.softplus(h) + torch.sigmoid(h) * torch.tanh(h)
        return F.log_softmax(self.b(h), dim=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_training_through_compiled_backward_matches_eager(dtype):
    torch.manual_seed(0)
    eager = Activations().to(dtype)
    model = copy.deepcopy(eager)
    fast = compiled(model)
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.2) for m in (eager, model)]
    for step in range(3):
        x = torch.randn(7, 6, dtype=dtype)
        t = torch.randint(0, 4, (7,))
        x_eager, x_fast = x.clone().requires_grad_(), x.clone().requires_grad_()
        losses = []
        for net, inp, optimizer in ((eager, x_eager, optimizers[0]), (fast, x_fast, optimizers[1])):
            loss = F.nll_loss(net(inp), t)
            optimizer.zero_grad()
            loss.backward()
            losses.append(loss.detach())
        torch.testing.assert_close(losses[1], losses[0], **TOLERANCE[dtype])
        torch.testing.assert_close(x_fast.grad, x_eager.grad, **TOLERANCE[dtype])
        for p_fast, p_eager in zip(model.parameters(), eager.parameters()):
            torch.testing.assert_close(p_fast.grad, p_eager.grad, **TOLERANCE[dtype])
        for optimizer in optimizers:
            optimizer.step()
    # the backward ran in irkit too, not in PyTorch
    (forward,), (backward,) = graphs("forward"), graphs("backward")
    for report in (forward, backward):
        assert report.fallbacks == {} and len(report.regions) == 1
        assert report.regions[0].functions
    assert "aten.mm" in backward.irkit_ops


class Reshaping(nn.Module):
    def forward(self, x):
        y = x.reshape(2, 3, 4).permute(2, 0, 1).transpose(0, 2)           # (3, 2, 4)
        z = y.flatten(1).unsqueeze(0).squeeze(0)                          # (3, 8)
        w = torch.cat([z, z * 2], dim=1)[:, 1::3]                         # (3, 6)
        return (w.sum(dim=1, keepdim=True) - w.mean(dim=0), y.amax(dim=(0, 2)), y[1, :, -1],
                torch.stack([x, -x], dim=1).sum(), w.t())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reductions_and_shape_ops_match_eager(dtype):
    x = torch.randn(24, dtype=dtype)
    got = compiled(Reshaping())(x)
    want = Reshaping()(x)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        torch.testing.assert_close(g, w, **TOLERANCE[dtype])
    (report,) = tb.reports
    assert report.fallbacks == {} and len(report.regions) == 1


class WithCumsum(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 6)
        self.b = nn.Linear(6, 3)

    def forward(self, x):
        h = torch.relu(self.a(x))
        c = torch.cumsum(h, dim=1)  # irkit has no scan-like cumulative sum op: PyTorch runs it
        return self.b(torch.tanh(c) * c.sum(dim=0))


def test_unsupported_op_falls_back_to_pytorch_and_gradients_still_match(caplog):
    torch.manual_seed(0)
    eager = WithCumsum()
    model = copy.deepcopy(eager)
    x = torch.randn(4, 5)
    with caplog.at_level(logging.INFO, logger="irkit.torch_backend"), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = compiled(model)(x)
        got.sum().backward()
    fallback_warnings = [str(w.message) for w in caught if issubclass(w.category, tb.TorchFallbackWarning)]
    assert fallback_warnings == ["irkit.torch_backend: aten.cumsum runs in PyTorch: no irkit translation",
                                 "irkit.torch_backend: aten.flip runs in PyTorch: no irkit translation"]
    want = eager(x)
    want.sum().backward()
    torch.testing.assert_close(got, want)
    for p_fast, p_eager in zip(model.parameters(), eager.parameters()):
        torch.testing.assert_close(p_fast.grad, p_eager.grad)
    (forward,) = graphs("forward")
    assert forward.fallbacks == {"aten.cumsum": "no irkit translation"}
    assert len(forward.regions) == 2  # before and after the cumsum
    assert all(region.functions for region in forward.regions)
    assert "aten.cumsum" not in forward.irkit_ops
    (backward,) = graphs("backward")  # cumsum's derivative: flip, cumsum, flip
    assert set(backward.fallbacks) == {"aten.cumsum", "aten.flip"} and backward.regions
    assert any("aten.cumsum (no irkit translation)" in record.getMessage() for record in caplog.records)


def test_fallback_warning_is_given_once_per_op():
    x = torch.randn(3, 4)
    fn = lambda x: torch.cumsum(x * 2 + 1, dim=0) * 3  # noqa: E731
    with pytest.warns(tb.TorchFallbackWarning):
        compiled(fn)(x)
    torch._dynamo.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error", tb.TorchFallbackWarning)
        torch.testing.assert_close(compiled(fn)(x), fn(x))
    assert all(r.fallbacks == {"aten.cumsum": "no irkit translation"} for r in tb.reports)


def int_and_bool_ops(x, idx, tokens, table):
    mask = x > 0
    count = mask.sum(dim=1)                                   # bool -> int64
    best = x.argmax(dim=1)
    kept = torch.where(mask, x, torch.zeros_like(x)) * 2
    mixed = (count + best * 3) // 2 % 5
    picked = x[torch.arange(x.shape[0]), idx]                 # advanced indexing
    logic = (mask & (x < 1)) | ~mask
    narrow = (idx.to(torch.int32) * 7 - 20) // 3              # int32 floor division
    trunc = torch.div(idx - 3, 2, rounding_mode="trunc")
    embedded = F.embedding(tokens, table).mean(dim=1)         # int64 indices into a float table
    return kept, mixed, picked, logic, narrow, trunc, x.long() + idx[:, None], torch.any(mask, dim=0), embedded


def test_int_and_bool_ops_match_eager():
    torch.manual_seed(0)
    args = (torch.randn(6, 5), torch.randint(0, 5, (6,)), torch.randint(0, 10, (6, 3)), torch.randn(10, 4))
    got = compiled(int_and_bool_ops)(*args)
    want = int_and_bool_ops(*args)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        torch.testing.assert_close(g, w)
    (report,) = tb.reports
    assert report.fallbacks == {} and len(report.regions) == 1


def indexing(x, index):
    return (torch.gather(x, 1, index), torch.index_select(x, 0, index[:, 0]), x[1:, ::2], x[-1],
            torch.split(x, 2, dim=1)[1], x[index[:, 1]])


def test_indexing_ops_match_eager():
    torch.manual_seed(0)
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 4, (4, 3))
    got = compiled(indexing)(x, index)
    want = indexing(x, index)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)
    # the gradients scatter back: gather -> scatter_add, index -> index_put with accumulate
    weights = [torch.randn(w.shape, dtype=torch.float64) for w in want]
    grad_got, = torch.autograd.grad(sum((g * w).sum() for g, w in zip(got, weights)), x)
    grad_want, = torch.autograd.grad(sum((g * w).sum() for g, w in zip(want, weights)), x)
    torch.testing.assert_close(grad_got, grad_want)
    assert all(r.fallbacks == {} for r in tb.reports)


def test_batch_size_change_recompiles():
    torch.manual_seed(0)
    model = MLP()
    fast = compiled(model)
    with torch.no_grad():
        for n in (4, 7, 9):
            x = torch.randn(n, 12)
            torch.testing.assert_close(fast(x), model(x))
    # dynamo retraced once, with a symbolic batch size (its automatic dynamic shapes); irkit
    # compiled that graph once per batch size it met
    first, dynamic = tb.reports
    assert [len(r.functions) for r in first.regions] == [1]
    assert [len(r.functions) for r in dynamic.regions] == [2]
    batch_inputs = {part[1] for signature in dynamic.regions[0].specializations for part in signature
                    if part[0] == "tensor" and len(part[1]) == 2 and part[1][1] == 12}
    assert {(7, 12), (9, 12)} <= batch_inputs and (4, 12) not in batch_inputs


def test_a_region_keeps_its_most_recent_shapes_only(monkeypatch, caplog):
    """Ever new batch sizes do not grow a region without bound: beyond MAX_SPECIALIZATIONS the
    least recently used compile is dropped (said once in the log), and results stay right."""
    monkeypatch.setattr(tb, "MAX_SPECIALIZATIONS", 2)
    torch.manual_seed(0)
    model = MLP()
    fast = compiled(model)
    with torch.no_grad(), caplog.at_level(logging.WARNING, logger="irkit.torch_backend"):
        for n in (4, 5, 6, 7, 6, 8):
            x = torch.randn(n, 12)
            torch.testing.assert_close(fast(x), model(x))
    dynamic = tb.reports[-1]
    (region,) = dynamic.regions
    assert len(region.specializations) == 2 and region.evicted == 2  # 5, 6, 7, 8 met; 6 reused
    # each signature's batch: the rows of its (n, 12) input (the first layer's weight is (16, 12))
    kept = [{p[1][0] for p in sig if p[0] == "tensor" and len(p[1]) == 2 and p[1][1] == 12} - {16}
            for sig in region.specializations]
    assert kept == [{6}, {8}]  # the most recently used, oldest first
    assert sum("has seen more than 2 input shapes" in r.getMessage() for r in caplog.records) == 1


class Views(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 6)

    def forward(self, x):
        h = self.lin(x.reshape(x.shape[0], -1))
        h = F.relu(h, inplace=True) * 2
        h.add_(1)
        return h.t(), x.flatten()  # a view of an intermediate, and of the input where it can be


def test_noncontiguous_inputs_views_and_inplace_ops_match_eager():
    torch.manual_seed(0)
    eager = Views()
    model = copy.deepcopy(eager)
    base = torch.randn(2, 3, 5)
    x = base.permute(2, 0, 1).contiguous().requires_grad_()   # (5, 2, 3)
    x_t = torch.randn(3, 2, 5).permute(2, 1, 0)                # non-contiguous (5, 2, 3)
    got_t, got_view = compiled(model)(x)
    want_t, want_view = eager(x)
    torch.testing.assert_close(got_t, want_t)
    torch.testing.assert_close(got_view, want_view)
    assert got_view.data_ptr() == x.data_ptr()  # as in eager, the view aliases the input
    (got_t.sum() + got_view.sum()).backward()
    grad_fast = x.grad.clone()
    x.grad = None
    (want_t.sum() + want_view.sum()).backward()
    torch.testing.assert_close(grad_fast, x.grad)
    with torch.no_grad():
        torch.testing.assert_close(compiled(model)(x_t)[0], eager(x_t)[0])


def test_outputs_keep_the_traced_layout_for_ops_left_in_pytorch():
    # as_strided reads the storage of a transposed region output: it must be laid out as torch
    # traced it, not in irkit's C order (same values, other storage positions)
    fn = lambda x: (torch.relu(x) * 2 + 1).t().as_strided((2, 2), (1, 3)) * 3  # noqa: E731
    x = torch.randn(3, 4)
    with pytest.warns(tb.TorchFallbackWarning, match="aten.as_strided"):
        got = compiled(fn)(x)
    torch.testing.assert_close(got, fn(x))
    (report,) = tb.reports
    assert "aten.permute" in report.irkit_ops


def test_transformer_encoder_layer_trains_like_eager():
    # attention's flash kernel stays in PyTorch (forward and backward); everything around it,
    # layer norms and feed-forward included, runs in irkit, and the gradients agree
    torch.manual_seed(0)
    eager = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0, batch_first=True).double()
    model = copy.deepcopy(eager)
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tb.TorchFallbackWarning)
        compiled(model)(x).square().sum().backward()
    eager(x).square().sum().backward()
    for (name, p_fast), p_eager in zip(model.named_parameters(), eager.parameters()):
        torch.testing.assert_close(p_fast.grad, p_eager.grad, rtol=1e-7, atol=1e-13, msg=name)
    (forward,), (backward,) = graphs("forward"), graphs("backward")
    assert set(forward.fallbacks) == {"aten._scaled_dot_product_flash_attention_for_cpu"}
    assert set(backward.fallbacks) == {"aten._scaled_dot_product_flash_attention_for_cpu_backward"}
    assert "aten.native_layer_norm" in forward.irkit_ops


def test_unsupported_dtype_stays_in_pytorch():
    x = torch.randn(4, 3).to(torch.float16)
    fn = lambda x: torch.relu(x * 2 + 1) - x  # noqa: E731
    with pytest.warns(tb.TorchFallbackWarning, match="float16"):
        got = compiled(fn)(x)
    torch.testing.assert_close(got, fn(x))
    (report,) = tb.reports
    assert report.regions == []
    assert all("dtype float16" in why for why in report.fallbacks.values())


def test_region_irkit_cannot_compile_runs_in_pytorch(monkeypatch):
    def refuse(out, x):
        raise ValueError("refused for the test")
    from irkit.torch_backend import translations
    monkeypatch.setitem(translations._TRANSLATIONS, torch.ops.aten.tanh, translations._Translation(refuse))
    fn = lambda x: torch.tanh(x * 3) + x.sum()  # noqa: E731
    x = torch.randn(5)
    with pytest.warns(tb.TorchFallbackWarning, match="refused for the test"):
        got = compiled(fn)(x)
    torch.testing.assert_close(got, fn(x))
    (report,) = tb.reports
    (region,) = report.regions
    assert region.functions == [] and list(region.specializations.values()) == [None]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_graph_stays_in_pytorch(caplog):
    model = MLP().cuda()
    x = torch.randn(3, 12, device="cuda")
    with caplog.at_level(logging.INFO, logger="irkit.torch_backend"):
        got = compiled(model)(x)
    torch.testing.assert_close(got, model(x))
    (report,) = tb.reports
    assert report.kind == "eager" and report.regions == []
    assert any("cuda" in record.getMessage() for record in caplog.records)


def test_registered_by_name_and_the_module_is_the_backend():
    assert "irkit" in torch._dynamo.list_backends()
    x = torch.randn(3, 4)
    fn = lambda x: torch.sigmoid(x) * x.sum(dim=0)  # noqa: E731
    torch.testing.assert_close(compiled(fn, backend="irkit")(x), fn(x))
    assert callable(tb) and tb.reports and tb.reports[-1].regions


def test_importing_irkit_does_not_import_torch():
    code = "import sys, irkit; assert 'torch' not in sys.modules, 'irkit imported torch'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
