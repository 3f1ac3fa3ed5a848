// RUN: irkit-opt %s -p decompose | filecheck %s

// decompose expands softmax, log_softmax and logsumexp into their max-shifted
// formulas over primitive ops (so that fuse can make kernels of them).

builtin.module {

  // softmax(x) = e / sum(e), e = exp(x - max(x)), along axis 1
  // CHECK-LABEL: func.func @softmax(
  // CHECK-NEXT:    %[[M:.*]] = ik.max %x {axes = array<i64: 1>, keepdims} : (tensor<?x?xf32>) -> tensor<?x1xf32>
  // CHECK-NEXT:    %[[D:.*]] = ik.sub %x, %[[M]] : (tensor<?x?xf32>, tensor<?x1xf32>) -> tensor<?x?xf32>
  // CHECK-NEXT:    %[[E:.*]] = ik.exp %[[D]] : (tensor<?x?xf32>) -> tensor<?x?xf32>
  // CHECK-NEXT:    %[[S:.*]] = ik.sum %[[E]] {axes = array<i64: 1>, keepdims} : (tensor<?x?xf32>) -> tensor<?x1xf32>
  // CHECK-NEXT:    %[[R:.*]] = ik.truediv %[[E]], %[[S]] : (tensor<?x?xf32>, tensor<?x1xf32>) -> tensor<?x?xf32>
  // CHECK-NEXT:    func.return %[[R]] : tensor<?x?xf32>
  func.func @softmax(%x: tensor<?x?xf32>) -> tensor<?x?xf32> {
    %0 = ik.softmax %x {axis = 1 : i64} : (tensor<?x?xf32>) -> tensor<?x?xf32>
    func.return %0 : tensor<?x?xf32>
  }

  // along axis 0 the reductions are over axis 0
  // CHECK-LABEL: func.func @softmax_axis0(
  // CHECK-NEXT:    %[[M:.*]] = ik.max %x {axes = array<i64: 0>, keepdims} : (tensor<?x3xf64>) -> tensor<1x3xf64>
  // CHECK-NEXT:    %[[D:.*]] = ik.sub %x, %[[M]]
  // CHECK-NEXT:    %[[E:.*]] = ik.exp %[[D]]
  // CHECK-NEXT:    %[[S:.*]] = ik.sum %[[E]] {axes = array<i64: 0>, keepdims} : (tensor<?x3xf64>) -> tensor<1x3xf64>
  // CHECK-NEXT:    %[[R:.*]] = ik.truediv %[[E]], %[[S]]
  // CHECK-NEXT:    func.return %[[R]]
  func.func @softmax_axis0(%x: tensor<?x3xf64>) -> tensor<?x3xf64> {
    %0 = ik.softmax %x {axis = 0 : i64} : (tensor<?x3xf64>) -> tensor<?x3xf64>
    func.return %0 : tensor<?x3xf64>
  }

  // an integer input is cast to the float result type first
  // CHECK-LABEL: func.func @softmax_int(
  // CHECK-NEXT:    %[[C:.*]] = ik.cast %x : (tensor<?x?xi64>) -> tensor<?x?xf64>
  // CHECK-NEXT:    %[[M:.*]] = ik.max %[[C]] {axes = array<i64: 1>, keepdims}
  // CHECK-NEXT:    %[[D:.*]] = ik.sub %[[C]], %[[M]]
  // CHECK-NEXT:    %[[E:.*]] = ik.exp %[[D]]
  // CHECK-NEXT:    %[[S:.*]] = ik.sum %[[E]] {axes = array<i64: 1>, keepdims}
  // CHECK-NEXT:    %[[R:.*]] = ik.truediv %[[E]], %[[S]] : (tensor<?x?xf64>, tensor<?x1xf64>) -> tensor<?x?xf64>
  // CHECK-NEXT:    func.return %[[R]] : tensor<?x?xf64>
  func.func @softmax_int(%x: tensor<?x?xi64>) -> tensor<?x?xf64> {
    %0 = ik.softmax %x {axis = 1 : i64} : (tensor<?x?xi64>) -> tensor<?x?xf64>
    func.return %0 : tensor<?x?xf64>
  }

  // log_softmax(x) = z - log(sum(exp(z))), z = x - max(x)
  // CHECK-LABEL: func.func @log_softmax(
  // CHECK-NEXT:    %[[M:.*]] = ik.max %x {axes = array<i64: 1>, keepdims} : (tensor<?x?xf32>) -> tensor<?x1xf32>
  // CHECK-NEXT:    %[[Z:.*]] = ik.sub %x, %[[M]] : (tensor<?x?xf32>, tensor<?x1xf32>) -> tensor<?x?xf32>
  // CHECK-NEXT:    %[[E:.*]] = ik.exp %[[Z]]
  // CHECK-NEXT:    %[[S:.*]] = ik.sum %[[E]] {axes = array<i64: 1>, keepdims}
  // CHECK-NEXT:    %[[L:.*]] = ik.log %[[S]] : (tensor<?x1xf32>) -> tensor<?x1xf32>
  // CHECK-NEXT:    %[[R:.*]] = ik.sub %[[Z]], %[[L]] : (tensor<?x?xf32>, tensor<?x1xf32>) -> tensor<?x?xf32>
  // CHECK-NEXT:    func.return %[[R]] : tensor<?x?xf32>
  func.func @log_softmax(%x: tensor<?x?xf32>) -> tensor<?x?xf32> {
    %0 = ik.log_softmax %x {axis = 1 : i64} : (tensor<?x?xf32>) -> tensor<?x?xf32>
    func.return %0 : tensor<?x?xf32>
  }

  // logsumexp(x) = log(sum(exp(x - m))) + m, m = max(x) where finite, else 0
  // CHECK-LABEL: func.func @logsumexp(
  // CHECK-NEXT:    %[[M:.*]] = ik.max %x {axes = array<i64: 1>, keepdims} : (tensor<?x?xf32>) -> tensor<?x1xf32>
  // CHECK-NEXT:    %[[F:.*]] = ik.isfinite %[[M]] : (tensor<?x1xf32>) -> tensor<?x1xi1>
  // CHECK-NEXT:    %[[Z:.*]] = ik.constant dense<0.000000e+00> : tensor<f32>
  // CHECK-NEXT:    %[[W:.*]] = ik.where %[[F]], %[[M]], %[[Z]]
  // CHECK-NEXT:    %[[D:.*]] = ik.sub %x, %[[W]]
  // CHECK-NEXT:    %[[E:.*]] = ik.exp %[[D]]
  // CHECK-NEXT:    %[[S:.*]] = ik.sum %[[E]] {axes = array<i64: 1>, keepdims}
  // CHECK-NEXT:    %[[L:.*]] = ik.log %[[S]]
  // CHECK-NEXT:    %[[A:.*]] = ik.add %[[L]], %[[W]] : (tensor<?x1xf32>, tensor<?x1xf32>) -> tensor<?x1xf32>
  // CHECK-NEXT:    %[[R:.*]] = ik.squeeze %[[A]] {axes = array<i64: 1>} : (tensor<?x1xf32>) -> tensor<?xf32>
  // CHECK-NEXT:    func.return %[[R]] : tensor<?xf32>
  func.func @logsumexp(%x: tensor<?x?xf32>) -> tensor<?xf32> {
    %0 = ik.logsumexp %x {axes = array<i64: 1>} : (tensor<?x?xf32>) -> tensor<?xf32>
    func.return %0 : tensor<?xf32>
  }

  // with keepdims there is no squeeze
  // CHECK-LABEL: func.func @logsumexp_keepdims(
  // CHECK:         ik.max %x {axes = array<i64: 0, 1>, keepdims}
  // CHECK:         %[[A:.*]] = ik.add
  // CHECK-NOT:     ik.squeeze
  // CHECK:         func.return %[[A]] : tensor<1x1xf64>
  func.func @logsumexp_keepdims(%x: tensor<?x?xf64>) -> tensor<1x1xf64> {
    %0 = ik.logsumexp %x {axes = array<i64: 0, 1>, keepdims} : (tensor<?x?xf64>) -> tensor<1x1xf64>
    func.return %0 : tensor<1x1xf64>
  }

  // primitive ops are left alone
  // CHECK-LABEL: func.func @primitive(
  // CHECK-NEXT:    ik.exp %x
  // CHECK-NEXT:    func.return
  func.func @primitive(%x: tensor<?xf32>) -> tensor<?xf32> {
    %0 = ik.exp %x : (tensor<?xf32>) -> tensor<?xf32>
    func.return %0 : tensor<?xf32>
  }

  // the gradient of x[arange(n), j]: one increment per row into zeros is the select it is,
  // with j's bounds still checked and negative j counted from the end; no scatter is left
  // CHECK-LABEL: func.func @one_per_row(
  // CHECK-NOT:     = ik.scatter
  // CHECK:         ik.require %j
  // CHECK:         ik.eq
  // CHECK:         %[[G:.*]] = ik.where
  // CHECK-NOT:     = ik.scatter
  // CHECK:         func.return %[[G]]
  func.func @one_per_row(%x: tensor<?x?xf32>, %j: tensor<?xi64>, %y: tensor<?xf32>) -> tensor<?x?xf32> {
    %z = ik.constant dense<0.000000e+00> : tensor<f32>
    %c0 = ik.constant dense<0> : tensor<i64>
    %c1 = ik.constant dense<1> : tensor<i64>
    %n = ik.dim %x : (tensor<?x?xf32>) -> tensor<i64>
    %m = ik.dim %x {axis = 1 : i64} : (tensor<?x?xf32>) -> tensor<i64>
    %rows = ik.arange %c0, %n, %c1 : (tensor<i64>, tensor<i64>, tensor<i64>) -> tensor<?xi64>
    %zeros = ik.fill %z, %n, %m {shape = array<i64: -2, -2>} : (tensor<f32>, tensor<i64>, tensor<i64>) -> tensor<?x?xf32>
    %g = ik.scatter %zeros, %y, %rows, %j {axes = array<i64: 0, 1>, mode = "inc"} : (tensor<?x?xf32>, tensor<?xf32>, tensor<?xi64>, tensor<?xi64>) -> tensor<?x?xf32>
    func.return %g : tensor<?x?xf32>
  }

  // rows that are not provably all of them (an arange to another length) stay a scatter
  // CHECK-LABEL: func.func @some_rows_stay(
  // CHECK:         ik.scatter
  func.func @some_rows_stay(%x: tensor<?x?xf32>, %j: tensor<?xi64>, %y: tensor<?xf32>, %k: tensor<i64>) -> tensor<?x?xf32> {
    %z = ik.constant dense<0.000000e+00> : tensor<f32>
    %c0 = ik.constant dense<0> : tensor<i64>
    %c1 = ik.constant dense<1> : tensor<i64>
    %n = ik.dim %x : (tensor<?x?xf32>) -> tensor<i64>
    %m = ik.dim %x {axis = 1 : i64} : (tensor<?x?xf32>) -> tensor<i64>
    %rows = ik.arange %c0, %k, %c1 : (tensor<i64>, tensor<i64>, tensor<i64>) -> tensor<?xi64>
    %zeros = ik.fill %z, %n, %m {shape = array<i64: -2, -2>} : (tensor<f32>, tensor<i64>, tensor<i64>) -> tensor<?x?xf32>
    %g = ik.scatter %zeros, %y, %rows, %j {axes = array<i64: 0, 1>, mode = "inc"} : (tensor<?x?xf32>, tensor<?xf32>, tensor<?xi64>, tensor<?xi64>) -> tensor<?x?xf32>
    func.return %g : tensor<?x?xf32>
  }
}
