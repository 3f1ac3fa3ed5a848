// RUN: irkit-opt %s -p fuse | filecheck %s --check-prefix=FUSE
// RUN: irkit-opt %s -p cse | filecheck %s --check-prefix=CSE
// RUN: irkit-opt %s -p fuse,bufferize,lower-to-loops | filecheck %s --check-prefix=LOOPS
// RUN: irkit-opt %s | irkit-opt | filecheck %s --check-prefix=ROUNDTRIP

// Random draws (irkit/dialects/ik/random.py): element i of a draw is Philox4x32-10 of the
// state [key, counter] and i, so a draw is an elementwise op that fuses with its users;
// ik.require carries a run-time check of a distribution's parameters.

builtin.module {

  // the draw joins the kernel of the arithmetic that uses it
  // FUSE-LABEL: func.func @noise(
  // FUSE:         ikf.kernel ins(%state, %{{.*}}, %x
  // FUSE:           ik.random_normal
  // FUSE-NEXT:      ik.mul
  // FUSE-NEXT:      ik.add
  // FUSE-NEXT:      ikf.yield
  // the loops: Philox's two round multipliers (0xD2511F53, 0xCD9E8D57), 32x32->64-bit
  // products on zero-extended words, then Box-Muller's log and cos
  // LOOPS-LABEL: func.func @noise(
  // LOOPS:         arith.constant 3528531795 : i64
  // LOOPS:         arith.constant 3449720151 : i64
  // LOOPS:         arith.extui %{{.*}} : i32 to i64
  // LOOPS:         arith.muli
  // LOOPS:         math.log
  // LOOPS:         math.cos
  // ROUNDTRIP-LABEL: func.func @noise(
  // ROUNDTRIP:       ik.random_normal %state, %{{.*}} {shape = array<i64: -2>} : (tensor<2xi64>, tensor<i64>) -> tensor<?xf64>
  func.func @noise(%x: tensor<?xf64>, %state: tensor<2xi64>) -> tensor<?xf64> {
    %0 = ik.constant dense<2.000000e+00> : tensor<f64>
    %1 = ik.dim %x : (tensor<?xf64>) -> tensor<i64>
    %2 = ik.random_normal %state, %1 {shape = array<i64: -2>} : (tensor<2xi64>, tensor<i64>) -> tensor<?xf64>
    %3 = ik.mul %0, %2 : (tensor<f64>, tensor<?xf64>) -> tensor<?xf64>
    %4 = ik.add %x, %3 : (tensor<?xf64>, tensor<?xf64>) -> tensor<?xf64>
    func.return %4 : tensor<?xf64>
  }

  // a draw is pure: the same state and size give the same numbers (CSE merges them);
  // another state gives other numbers
  // CSE-LABEL: func.func @same_state(
  // CSE-NEXT:    %[[A:.*]] = ik.random_uniform %s {shape = array<i64: 4>}
  // CSE-NEXT:    %[[B:.*]] = ik.random_uniform %t {shape = array<i64: 4>}
  // CSE-NEXT:    func.return %[[A]], %[[A]], %[[B]]
  func.func @same_state(%s: tensor<2xi64>, %t: tensor<2xi64>) -> (tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) {
    %0 = ik.random_uniform %s {shape = array<i64: 4>} : (tensor<2xi64>) -> tensor<4xf32>
    %1 = ik.random_uniform %s {shape = array<i64: 4>} : (tensor<2xi64>) -> tensor<4xf32>
    %2 = ik.random_uniform %t {shape = array<i64: 4>} : (tensor<2xi64>) -> tensor<4xf32>
    func.return %0, %1, %2 : tensor<4xf32>, tensor<4xf32>, tensor<4xf32>
  }

  // integers in [0, hi): the check low < high runs in the kernel that reads hi, and the
  // draw is a 128-bit fixed-point product (the high words of two 64-bit products)
  // LOOPS-LABEL: func.func @integers(
  // LOOPS:         cf.assert %{{.*}}, "ValueError: ik.require: RandomStream.integers: low must be less than high"
  // LOOPS:         arith.shrui
  // LOOPS:         arith.cmpi ult
  // LOOPS:         arith.extui %{{.*}} : i1 to i64
  // ROUNDTRIP-LABEL: func.func @integers(
  // ROUNDTRIP:       ik.require %hi, %{{.*}} {message = "ValueError: RandomStream.integers: low must be less than high"}
  // ROUNDTRIP:       ik.random_integers %state, %{{.*}}, %{{.*}} {shape = array<i64: 3>} : (tensor<2xi64>, tensor<i64>, tensor<i64>) -> tensor<3xi64>
  func.func @integers(%hi: tensor<i64>, %state: tensor<2xi64>) -> tensor<3xi64> {
    %0 = ik.constant dense<0> : tensor<i64>
    %1 = ik.lt %0, %hi : (tensor<i64>, tensor<i64>) -> tensor<i1>
    %2 = ik.require %hi, %1 {message = "ValueError: RandomStream.integers: low must be less than high"} : (tensor<i64>, tensor<i1>) -> tensor<i64>
    %3 = ik.random_integers %state, %0, %2 {shape = array<i64: 3>} : (tensor<2xi64>, tensor<i64>, tensor<i64>) -> tensor<3xi64>
    func.return %3 : tensor<3xi64>
  }
}
