// RUN: irkit-opt %s -p stabilize | filecheck %s

// stabilize rewrites expressions that overflow, underflow or cancel into their
// numerically stable forms, and removes what it made dead.

builtin.module {

  // log(softmax(x)) -> log_softmax(x), on the same axis
  // CHECK-LABEL: func.func @log_softmax(
  // CHECK-NEXT:    %[[R:.*]] = ik.log_softmax %x {axis = 1 : i64} : (tensor<?x?xf32>) -> tensor<?x?xf32>
  // CHECK-NEXT:    func.return %[[R]] : tensor<?x?xf32>
  func.func @log_softmax(%x: tensor<?x?xf32>) -> tensor<?x?xf32> {
    %0 = ik.softmax %x {axis = 1 : i64} : (tensor<?x?xf32>) -> tensor<?x?xf32>
    %1 = ik.log %0 : (tensor<?x?xf32>) -> tensor<?x?xf32>
    func.return %1 : tensor<?x?xf32>
  }

  // CHECK-LABEL: func.func @log_softmax_axis0(
  // CHECK-NEXT:    %[[R:.*]] = ik.log_softmax %x {axis = 0 : i64} : (tensor<?x?xf32>) -> tensor<?x?xf32>
  // CHECK-NEXT:    func.return %[[R]] : tensor<?x?xf32>
  func.func @log_softmax_axis0(%x: tensor<?x?xf32>) -> tensor<?x?xf32> {
    %0 = ik.softmax %x {axis = 0 : i64} : (tensor<?x?xf32>) -> tensor<?x?xf32>
    %1 = ik.log %0 : (tensor<?x?xf32>) -> tensor<?x?xf32>
    func.return %1 : tensor<?x?xf32>
  }

  // softmax used elsewhere too: it stays for that use
  // CHECK-LABEL: func.func @log_softmax_shared(
  // CHECK-DAG:     %[[S:.*]] = ik.softmax %x {axis = 1 : i64}
  // CHECK-DAG:     %[[L:.*]] = ik.log_softmax %x {axis = 1 : i64}
  // CHECK:         func.return %[[S]], %[[L]]
  func.func @log_softmax_shared(%x: tensor<?x?xf32>) -> (tensor<?x?xf32>, tensor<?x?xf32>) {
    %0 = ik.softmax %x {axis = 1 : i64} : (tensor<?x?xf32>) -> tensor<?x?xf32>
    %1 = ik.log %0 : (tensor<?x?xf32>) -> tensor<?x?xf32>
    func.return %0, %1 : tensor<?x?xf32>, tensor<?x?xf32>
  }

  // log(1 + x) and log(x + 1) -> log1p(x)
  // CHECK-LABEL: func.func @log1p(
  // CHECK-NEXT:    %[[A:.*]] = ik.log1p %x : (tensor<?xf32>) -> tensor<?xf32>
  // CHECK-NEXT:    %[[B:.*]] = ik.log1p %x : (tensor<?xf32>) -> tensor<?xf32>
  // CHECK-NEXT:    func.return %[[A]], %[[B]] : tensor<?xf32>, tensor<?xf32>
  func.func @log1p(%x: tensor<?xf32>) -> (tensor<?xf32>, tensor<?xf32>) {
    %one = ik.constant dense<1.000000e+00> : tensor<f32>
    %0 = ik.add %one, %x : (tensor<f32>, tensor<?xf32>) -> tensor<?xf32>
    %1 = ik.log %0 : (tensor<?xf32>) -> tensor<?xf32>
    %2 = ik.add %x, %one : (tensor<?xf32>, tensor<f32>) -> tensor<?xf32>
    %3 = ik.log %2 : (tensor<?xf32>) -> tensor<?xf32>
    func.return %1, %3 : tensor<?xf32>, tensor<?xf32>
  }

  // log(2 + x) is not log1p
  // CHECK-LABEL: func.func @log_two_plus_kept(
  // CHECK:         ik.add
  // CHECK-NEXT:    ik.log %
  // CHECK-NOT:     ik.log1p
  func.func @log_two_plus_kept(%x: tensor<?xf32>) -> tensor<?xf32> {
    %two = ik.constant dense<2.000000e+00> : tensor<f32>
    %0 = ik.add %two, %x : (tensor<f32>, tensor<?xf32>) -> tensor<?xf32>
    %1 = ik.log %0 : (tensor<?xf32>) -> tensor<?xf32>
    func.return %1 : tensor<?xf32>
  }

  // exp(x) - 1 -> expm1(x)
  // CHECK-LABEL: func.func @expm1(
  // CHECK-NEXT:    %[[R:.*]] = ik.expm1 %x : (tensor<?x3xf64>) -> tensor<?x3xf64>
  // CHECK-NEXT:    func.return %[[R]] : tensor<?x3xf64>
  func.func @expm1(%x: tensor<?x3xf64>) -> tensor<?x3xf64> {
    %one = ik.constant dense<1.000000e+00> : tensor<f64>
    %0 = ik.exp %x : (tensor<?x3xf64>) -> tensor<?x3xf64>
    %1 = ik.sub %0, %one : (tensor<?x3xf64>, tensor<f64>) -> tensor<?x3xf64>
    func.return %1 : tensor<?x3xf64>
  }

  // 1 - exp(x) is not expm1 (it is -expm1, but the rule is only exp(x) - 1)
  // CHECK-LABEL: func.func @one_minus_exp_kept(
  // CHECK:         ik.exp %x
  // CHECK-NEXT:    ik.sub
  // CHECK-NOT:     ik.expm1
  func.func @one_minus_exp_kept(%x: tensor<?xf64>) -> tensor<?xf64> {
    %one = ik.constant dense<1.000000e+00> : tensor<f64>
    %0 = ik.exp %x : (tensor<?xf64>) -> tensor<?xf64>
    %1 = ik.sub %one, %0 : (tensor<f64>, tensor<?xf64>) -> tensor<?xf64>
    func.return %1 : tensor<?xf64>
  }

  // log(sigmoid(x)) -> -softplus(-x)
  // CHECK-LABEL: func.func @log_sigmoid(
  // CHECK-NOT:     ik.sigmoid
  // CHECK:         %[[N:.*]] = ik.neg %x : (tensor<?xf32>) -> tensor<?xf32>
  // CHECK-NEXT:    %[[S:.*]] = ik.softplus %[[N]] : (tensor<?xf32>) -> tensor<?xf32>
  // CHECK-NEXT:    %[[R:.*]] = ik.neg %[[S]] : (tensor<?xf32>) -> tensor<?xf32>
  // CHECK-NEXT:    func.return %[[R]] : tensor<?xf32>
  func.func @log_sigmoid(%x: tensor<?xf32>) -> tensor<?xf32> {
    %0 = ik.sigmoid %x : (tensor<?xf32>) -> tensor<?xf32>
    %1 = ik.log %0 : (tensor<?xf32>) -> tensor<?xf32>
    func.return %1 : tensor<?xf32>
  }

  // log(1 - sigmoid(x)) -> -softplus(x)
  // CHECK-LABEL: func.func @log_one_minus_sigmoid(
  // CHECK-NOT:     ik.sigmoid
  // CHECK:         %[[S:.*]] = ik.softplus %x : (tensor<?xf32>) -> tensor<?xf32>
  // CHECK-NEXT:    %[[R:.*]] = ik.neg %[[S]] : (tensor<?xf32>) -> tensor<?xf32>
  // CHECK-NEXT:    func.return %[[R]] : tensor<?xf32>
  func.func @log_one_minus_sigmoid(%x: tensor<?xf32>) -> tensor<?xf32> {
    %one = ik.constant dense<1.000000e+00> : tensor<f32>
    %0 = ik.sigmoid %x : (tensor<?xf32>) -> tensor<?xf32>
    %1 = ik.sub %one, %0 : (tensor<f32>, tensor<?xf32>) -> tensor<?xf32>
    %2 = ik.log %1 : (tensor<?xf32>) -> tensor<?xf32>
    func.return %2 : tensor<?xf32>
  }

  // log(sum(exp(x), axis 1)) -> logsumexp(x, axis 1)
  // CHECK-LABEL: func.func @logsumexp(
  // CHECK-NEXT:    %[[R:.*]] = ik.logsumexp %x {axes = array<i64: 1>} : (tensor<?x?xf32>) -> tensor<?xf32>
  // CHECK-NEXT:    func.return %[[R]] : tensor<?xf32>
  func.func @logsumexp(%x: tensor<?x?xf32>) -> tensor<?xf32> {
    %0 = ik.exp %x : (tensor<?x?xf32>) -> tensor<?x?xf32>
    %1 = ik.sum %0 {axes = array<i64: 1>} : (tensor<?x?xf32>) -> tensor<?xf32>
    %2 = ik.log %1 : (tensor<?xf32>) -> tensor<?xf32>
    func.return %2 : tensor<?xf32>
  }

  // keepdims and several axes are kept
  // CHECK-LABEL: func.func @logsumexp_keepdims(
  // CHECK-NEXT:    %[[R:.*]] = ik.logsumexp %t {axes = array<i64: 0, 2>, keepdims} : (tensor<2x?x4xf64>) -> tensor<1x?x1xf64>
  // CHECK-NEXT:    func.return %[[R]] : tensor<1x?x1xf64>
  func.func @logsumexp_keepdims(%t: tensor<2x?x4xf64>) -> tensor<1x?x1xf64> {
    %0 = ik.exp %t : (tensor<2x?x4xf64>) -> tensor<2x?x4xf64>
    %1 = ik.sum %0 {axes = array<i64: 0, 2>, keepdims} : (tensor<2x?x4xf64>) -> tensor<1x?x1xf64>
    %2 = ik.log %1 : (tensor<1x?x1xf64>) -> tensor<1x?x1xf64>
    func.return %2 : tensor<1x?x1xf64>
  }

  // log(sum(x)) without exp is left alone
  // CHECK-LABEL: func.func @log_sum_kept(
  // CHECK:         ik.sum %x
  // CHECK-NEXT:    ik.log %
  // CHECK-NOT:     ik.logsumexp
  func.func @log_sum_kept(%x: tensor<?x?xf32>) -> tensor<?xf32> {
    %0 = ik.sum %x {axes = array<i64: 1>} : (tensor<?x?xf32>) -> tensor<?xf32>
    %1 = ik.log %0 : (tensor<?xf32>) -> tensor<?xf32>
    func.return %1 : tensor<?xf32>
  }
}
