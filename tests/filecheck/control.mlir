// RUN: irkit-opt %s -p sink-branches | filecheck %s --check-prefix=SINK
// RUN: irkit-opt %s -p scan-keep-last | filecheck %s --check-prefix=KEEP
// RUN: irkit-opt %s -p autodiff | filecheck %s --check-prefix=BPTT
// RUN: irkit-opt %s -p autodiff,canonicalize,cse,dce,fuse,bufferize,lower-to-loops,hoist-allocs | filecheck %s --check-prefix=LOOPS
// RUN: irkit-opt %s | irkit-opt | filecheck %s --check-prefix=ROUNDTRIP
// Scan and if round-trip at every level (printed, re-parsed, printed the same):
// RUN: irkit-opt %s -p autodiff,canonicalize,cse,dce -o %t.mlir && irkit-opt %t.mlir | diff -u %t.mlir -
// RUN: irkit-opt %s -p autodiff,canonicalize,cse,dce,decompose,fuse -o %t.mlir && irkit-opt %t.mlir | diff -u %t.mlir -
// RUN: irkit-opt %s -p autodiff,dce,fuse,bufferize,lower-to-loops,hoist-allocs -o %t.mlir && \
// RUN:   irkit-opt %t.mlir | diff -u %t.mlir -

// The work only one branch reads moves into it (exp and mul into then, sin into else).
// SINK-LABEL: func.func @lazy
// SINK-NOT:     ik.exp
// SINK:         "ik.if"(%c, %x, %x)
// SINK:         ik.exp
// SINK:         ik.mul
// SINK:         ik.yield
// SINK:         ik.sin
// SINK:         ik.yield
// ROUNDTRIP-LABEL: func.func @lazy
// ROUNDTRIP:      "ik.if"(%c, %{{.*}}, %{{.*}})
func.func @lazy(%c: tensor<i1>, %x: tensor<?xf64>) -> tensor<?xf64> {
  %0 = ik.exp %x : (tensor<?xf64>) -> tensor<?xf64>
  %1 = ik.constant dense<2.000000e+00> : tensor<f64>
  %2 = ik.mul %0, %1 : (tensor<?xf64>, tensor<f64>) -> tensor<?xf64>
  %3 = ik.sin %x : (tensor<?xf64>) -> tensor<?xf64>
  %4 = "ik.if"(%c, %2, %3) <{operandSegmentSizes = array<i32: 1, 1, 1>}> ({
  ^bb0(%5: tensor<?xf64>):
    ik.yield %5 : tensor<?xf64>
  }, {
  ^bb0(%6: tensor<?xf64>):
    ik.yield %6 : tensor<?xf64>
  }) : (tensor<i1>, tensor<?xf64>, tensor<?xf64>) -> tensor<?xf64>
  func.return %4 : tensor<?xf64>
}

// h_t = tanh(h_{t-1} * x_t), only the last state is read: it is kept alone (a ring of its
// taps), and hs[-1] of no step stays an IndexError (nonempty).
// KEEP-LABEL: func.func @last_state
// KEEP:         "ik.scan"(%{{.*}}) <{{{.*}}last_only = array<i64: 0>, nonempty = array<i64: 0>
// KEEP:         }) : (tensor<i64>, tensor<?x?xf64>, tensor<?xf64>) -> tensor<?xf64>
// KEEP-NOT:     ik.slice
// KEEP:         func.return
// Its gradient is a reverse scan (go_backwards) that carries the state's cotangent.
// BPTT-LABEL: func.func @last_state_grad
// BPTT:         "ik.scan"
// BPTT:         "ik.scan"(%{{.*}}) <{{{.*}}last_only = array<i64: 0>, go_backwards
// BPTT-NOT:     ikad.grad
// BPTT:         func.return
// The step is one scf.for in the function, its temporaries allocated before it and freed after.
// LOOPS-LABEL: func.func @last_state
// LOOPS:         memref.alloc
// LOOPS:         scf.for
// LOOPS-NOT:       memref.alloc
// LOOPS:           math.tanh
// LOOPS-NOT:       memref.alloc
// LOOPS:         }
// LOOPS:         memref.dealloc
func.func @last_state(%xs: tensor<?x?xf64>, %h0: tensor<?xf64>) -> tensor<?xf64> {
  %0 = ik.dim %xs : (tensor<?x?xf64>) -> tensor<i64>
  %1 = "ik.scan"(%0, %xs, %h0) <{seq_taps = [array<i64: 0>], state_taps = [array<i64: -1>], operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
  ^bb0(%x: tensor<?xf64>, %h: tensor<?xf64>):
    %2 = ik.mul %h, %x : (tensor<?xf64>, tensor<?xf64>) -> tensor<?xf64>
    %3 = ik.tanh %2 : (tensor<?xf64>) -> tensor<?xf64>
    ik.yield %3 : tensor<?xf64>
  }) : (tensor<i64>, tensor<?x?xf64>, tensor<?xf64>) -> tensor<?x?xf64>
  %4 = ik.slice %1 {spec = "-1, :"} : (tensor<?x?xf64>) -> tensor<?xf64>
  func.return %4 : tensor<?xf64>
}

func.func @last_state_grad(%xs: tensor<?x?xf64>, %h0: tensor<?xf64>) -> tensor<?xf64> {
  %0 = ik.dim %xs : (tensor<?x?xf64>) -> tensor<i64>
  %1 = "ik.scan"(%0, %xs, %h0) <{seq_taps = [array<i64: 0>], state_taps = [array<i64: -1>], operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
  ^bb0(%x: tensor<?xf64>, %h: tensor<?xf64>):
    %2 = ik.mul %h, %x : (tensor<?xf64>, tensor<?xf64>) -> tensor<?xf64>
    %3 = ik.tanh %2 : (tensor<?xf64>) -> tensor<?xf64>
    ik.yield %3 : tensor<?xf64>
  }) : (tensor<i64>, tensor<?x?xf64>, tensor<?xf64>) -> tensor<?x?xf64>
  %4 = ik.slice %1 {spec = "-1, :"} : (tensor<?x?xf64>) -> tensor<?xf64>
  %5 = ik.sum %4 {axes = array<i64: 0>} : (tensor<?xf64>) -> tensor<f64>
  %6 = ikad.grad of(%5 : tensor<f64>) wrt(%h0 : tensor<?xf64>) -> (tensor<?xf64>)
  func.return %6 : tensor<?xf64>
}
