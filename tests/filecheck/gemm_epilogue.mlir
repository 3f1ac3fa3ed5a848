// RUN: irkit-opt %s -p gemm-epilogue | filecheck %s

// gemm-epilogue folds a matrix added to (or subtracted from) a product into BLAS's gemm:
// beta * c + alpha * (a @ b), alpha the sign times the product's 0-d scale.

builtin.module {

  // the SGD update W - lr * (x^T @ d): one gemm, alpha = -lr folded into a constant
  // CHECK-LABEL: func.func @sgd(
  // CHECK:         %[[T:.*]] = ik.transpose %x
  // CHECK-DAG:     %[[ALPHA:.*]] = ik.constant dense<-1.000000e-02> : tensor<f32>
  // CHECK-DAG:     %[[BETA:.*]] = ik.constant dense<1.000000e+00> : tensor<f32>
  // CHECK:         %[[G:.*]] = ik.gemm %W, %[[T]], %d, %[[ALPHA]], %[[BETA]]
  // CHECK-NOT:     ik.matmul
  // CHECK-NOT:     ik.sub
  // CHECK:         func.return %[[G]]
  func.func @sgd(%W: tensor<?x?xf32>, %x: tensor<?x?xf32>, %d: tensor<?x?xf32>) -> tensor<?x?xf32> {
    %lr = ik.constant dense<1.000000e-02> : tensor<f32>
    %t = ik.transpose %x {perm = array<i64: 1, 0>} : (tensor<?x?xf32>) -> tensor<?x?xf32>
    %g = ik.matmul %t, %d : (tensor<?x?xf32>, tensor<?x?xf32>) -> tensor<?x?xf32>
    %s = ik.mul %lr, %g : (tensor<f32>, tensor<?x?xf32>) -> tensor<?x?xf32>
    %new = ik.sub %W, %s : (tensor<?x?xf32>, tensor<?x?xf32>) -> tensor<?x?xf32>
    func.return %new : tensor<?x?xf32>
  }

  // a product plus a matrix, the product on the left; a scale known only at run time
  // stays an operand (negated for a difference)
  // CHECK-LABEL: func.func @plus_and_minus(
  // CHECK:         %[[P:.*]] = ik.gemm %c, %a, %b, %{{.*}}, %{{.*}} : {{.*}} -> tensor<4x5xf64>
  // CHECK:         %[[NEG:.*]] = ik.neg %s : (tensor<f64>) -> tensor<f64>
  // CHECK:         %[[M:.*]] = ik.gemm %c, %a, %b, %[[NEG]], %{{.*}} : {{.*}} -> tensor<4x5xf64>
  // CHECK:         func.return %[[P]], %[[M]]
  func.func @plus_and_minus(%c: tensor<4x5xf64>, %a: tensor<4x3xf64>, %b: tensor<3x5xf64>, %s: tensor<f64>)
      -> (tensor<4x5xf64>, tensor<4x5xf64>) {
    %p = ik.matmul %a, %b : (tensor<4x3xf64>, tensor<3x5xf64>) -> tensor<4x5xf64>
    %sum = ik.add %p, %c : (tensor<4x5xf64>, tensor<4x5xf64>) -> tensor<4x5xf64>
    %q = ik.matmul %a, %b : (tensor<4x3xf64>, tensor<3x5xf64>) -> tensor<4x5xf64>
    %qs = ik.mul %q, %s : (tensor<4x5xf64>, tensor<f64>) -> tensor<4x5xf64>
    %diff = ik.sub %c, %qs : (tensor<4x5xf64>, tensor<4x5xf64>) -> tensor<4x5xf64>
    func.return %sum, %diff : tensor<4x5xf64>, tensor<4x5xf64>
  }

  // left alone: a product used twice, a broadcast bias, a difference with the product
  // first (-(a @ b) + c is not this form), and an integer product
  // CHECK-LABEL: func.func @untouched(
  // CHECK-NOT:     ik.gemm
  // CHECK:         func.return
  func.func @untouched(%c: tensor<4x5xf32>, %a: tensor<4x3xf32>, %b: tensor<3x5xf32>, %bias: tensor<5xf32>,
                       %i: tensor<4x3xi64>, %j: tensor<3x5xi64>, %k: tensor<4x5xi64>)
      -> (tensor<4x5xf32>, tensor<4x5xf32>, tensor<4x5xf32>, tensor<4x5xf32>, tensor<4x5xi64>) {
    %p = ik.matmul %a, %b : (tensor<4x3xf32>, tensor<3x5xf32>) -> tensor<4x5xf32>
    %twice = ik.add %c, %p : (tensor<4x5xf32>, tensor<4x5xf32>) -> tensor<4x5xf32>
    %q = ik.matmul %a, %b : (tensor<4x3xf32>, tensor<3x5xf32>) -> tensor<4x5xf32>
    %biased = ik.add %q, %bias : (tensor<4x5xf32>, tensor<5xf32>) -> tensor<4x5xf32>
    %r = ik.matmul %a, %b : (tensor<4x3xf32>, tensor<3x5xf32>) -> tensor<4x5xf32>
    %first = ik.sub %r, %c : (tensor<4x5xf32>, tensor<4x5xf32>) -> tensor<4x5xf32>
    %n = ik.matmul %i, %j : (tensor<4x3xi64>, tensor<3x5xi64>) -> tensor<4x5xi64>
    %ints = ik.add %k, %n : (tensor<4x5xi64>, tensor<4x5xi64>) -> tensor<4x5xi64>
    func.return %twice, %p, %biased, %first, %ints : tensor<4x5xf32>, tensor<4x5xf32>, tensor<4x5xf32>, tensor<4x5xf32>, tensor<4x5xi64>
  }
}
