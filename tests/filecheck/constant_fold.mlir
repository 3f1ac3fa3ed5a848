// RUN: irkit-opt %s -p constant-fold | filecheck %s
// RUN: irkit-opt %s -p 'constant-fold{max-elements=2}' | filecheck %s --check-prefix=SMALL
// RUN: irkit-opt %s -p constant-fold,dce | filecheck %s --check-prefix=DCE

// constant-fold evaluates ops whose operands are all ik.constant with the op's
// numpy reference; results larger than max-elements (default 65536) stay ops.

builtin.module {

  // CHECK-LABEL: func.func @fold_add(
  // CHECK-NOT:     ik.add
  // CHECK:         %[[R:.*]] = ik.constant dense<[1.000000e+00, 2.000000e+00, 3.000000e+00]> : tensor<3xf32>
  // CHECK-NEXT:    func.return %[[R]] : tensor<3xf32>
  // 3 elements > max-elements=2: not folded
  // SMALL-LABEL: func.func @fold_add(
  // SMALL:         %[[R:.*]] = ik.add
  // SMALL-NEXT:    func.return %[[R]]
  // dce removes the constants that folding left unused
  // DCE-LABEL:   func.func @fold_add(
  // DCE-NEXT:      %[[R:.*]] = ik.constant dense<[1.000000e+00, 2.000000e+00, 3.000000e+00]> : tensor<3xf32>
  // DCE-NEXT:      func.return %[[R]] : tensor<3xf32>
  func.func @fold_add() -> tensor<3xf32> {
    %a = ik.constant dense<[0.000000e+00, 1.000000e+00, 2.000000e+00]> : tensor<3xf32>
    %one = ik.constant dense<1.000000e+00> : tensor<f32>
    %0 = ik.add %a, %one : (tensor<3xf32>, tensor<f32>) -> tensor<3xf32>
    func.return %0 : tensor<3xf32>
  }

  // a chain folds all the way: log(exp(2)) * 2 = 4
  // CHECK-LABEL: func.func @fold_chain(
  // CHECK-NOT:     ik.exp
  // CHECK-NOT:     ik.log
  // CHECK-NOT:     ik.mul
  // CHECK:         %[[R:.*]] = ik.constant dense<4.000000e+00> : tensor<f64>
  // CHECK-NEXT:    func.return %[[R]] : tensor<f64>
  // SMALL-LABEL: func.func @fold_chain(
  // SMALL:         ik.constant dense<4.000000e+00> : tensor<f64>
  func.func @fold_chain() -> tensor<f64> {
    %two = ik.constant dense<2.000000e+00> : tensor<f64>
    %0 = ik.exp %two : (tensor<f64>) -> tensor<f64>
    %1 = ik.log %0 : (tensor<f64>) -> tensor<f64>
    %2 = ik.mul %1, %two : (tensor<f64>, tensor<f64>) -> tensor<f64>
    func.return %2 : tensor<f64>
  }

  // integers follow numpy: floor division rounds toward -inf; comparisons give i1
  // CHECK-LABEL: func.func @fold_int(
  // CHECK-NOT:     ik.floordiv
  // CHECK-NOT:     ik.gt
  // CHECK-DAG:     %[[Q:.*]] = ik.constant dense<[3, -4, 4]> : tensor<3xi64>
  // CHECK-DAG:     %[[C:.*]] = ik.constant dense<[true, false, true]> : tensor<3xi1>
  // CHECK:         func.return %[[Q]], %[[C]] : tensor<3xi64>, tensor<3xi1>
  func.func @fold_int() -> (tensor<3xi64>, tensor<3xi1>) {
    %a = ik.constant dense<[7, -7, 8]> : tensor<3xi64>
    %b = ik.constant dense<2> : tensor<i64>
    %0 = ik.floordiv %a, %b : (tensor<3xi64>, tensor<i64>) -> tensor<3xi64>
    %1 = ik.gt %a, %b : (tensor<3xi64>, tensor<i64>) -> tensor<3xi1>
    func.return %0, %1 : tensor<3xi64>, tensor<3xi1>
  }

  // reductions, transposes and matmuls fold too
  // CHECK-LABEL: func.func @fold_reduce_matmul(
  // CHECK-NOT:     ik.sum
  // CHECK-NOT:     ik.transpose
  // CHECK-NOT:     ik.matmul
  // CHECK-DAG:     %[[S:.*]] = ik.constant dense<[6.000000e+00, 1.500000e+01]> : tensor<2xf32>
  // CHECK-DAG:     %[[M:.*]] = ik.constant dense<{{\[}}[1.400000e+01, 3.200000e+01], [3.200000e+01, 7.700000e+01]]> : tensor<2x2xf32>
  // CHECK:         func.return %[[S]], %[[M]] : tensor<2xf32>, tensor<2x2xf32>
  // SMALL-LABEL: func.func @fold_reduce_matmul(
  // SMALL:         %[[S:.*]] = ik.constant dense<[6.000000e+00, 1.500000e+01]> : tensor<2xf32>
  // SMALL:         ik.transpose
  // SMALL:         ik.matmul
  func.func @fold_reduce_matmul() -> (tensor<2xf32>, tensor<2x2xf32>) {
    %a = ik.constant dense<[[1.000000e+00, 2.000000e+00, 3.000000e+00], [4.000000e+00, 5.000000e+00, 6.000000e+00]]> : tensor<2x3xf32>
    %0 = ik.sum %a {axes = array<i64: 1>} : (tensor<2x3xf32>) -> tensor<2xf32>
    %t = ik.transpose %a {perm = array<i64: 1, 0>} : (tensor<2x3xf32>) -> tensor<3x2xf32>
    %1 = ik.matmul %a, %t : (tensor<2x3xf32>, tensor<3x2xf32>) -> tensor<2x2xf32>
    func.return %0, %1 : tensor<2xf32>, tensor<2x2xf32>
  }

  // a big result (300 x 300 = 90000 > 65536 elements) is not folded
  // CHECK-LABEL: func.func @big_not_folded(
  // CHECK:         %[[F:.*]] = ik.fill %{{.*}} {shape = array<i64: 300, 300>} : (tensor<f64>) -> tensor<300x300xf64>
  // CHECK:         %[[R:.*]] = ik.add %[[F]], %{{.*}} : (tensor<300x300xf64>, tensor<f64>) -> tensor<300x300xf64>
  // CHECK-NEXT:    func.return %[[R]]
  // CHECK-NOT:     tensor<300x300xf64>} : tensor<300x300xf64>
  func.func @big_not_folded() -> tensor<300x300xf64> {
    %z = ik.constant dense<0.000000e+00> : tensor<f64>
    %0 = ik.fill %z {shape = array<i64: 300, 300>} : (tensor<f64>) -> tensor<300x300xf64>
    %one = ik.constant dense<1.000000e+00> : tensor<f64>
    %1 = ik.add %0, %one : (tensor<300x300xf64>, tensor<f64>) -> tensor<300x300xf64>
    func.return %1 : tensor<300x300xf64>
  }

  // only the constant part of an expression folds
  // CHECK-LABEL: func.func @partial(
  // CHECK-NOT:     ik.sqrt
  // CHECK:         %[[C:.*]] = ik.constant dense<1.41421354> : tensor<f32>
  // CHECK-NEXT:    %[[R:.*]] = ik.mul %x, %[[C]] : (tensor<?xf32>, tensor<f32>) -> tensor<?xf32>
  // CHECK-NEXT:    func.return %[[R]]
  func.func @partial(%x: tensor<?xf32>) -> tensor<?xf32> {
    %two = ik.constant dense<2.000000e+00> : tensor<f32>
    %0 = ik.sqrt %two : (tensor<f32>) -> tensor<f32>
    %1 = ik.mul %x, %0 : (tensor<?xf32>, tensor<f32>) -> tensor<?xf32>
    func.return %1 : tensor<?xf32>
  }

  // ops on non-constants are left alone
  // CHECK-LABEL: func.func @not_constant(
  // CHECK:         %[[R:.*]] = ik.exp %x
  // CHECK-NEXT:    func.return %[[R]]
  func.func @not_constant(%x: tensor<?xf32>) -> tensor<?xf32> {
    %0 = ik.exp %x : (tensor<?xf32>) -> tensor<?xf32>
    func.return %0 : tensor<?xf32>
  }
}
