// RUN: irkit-opt %s -p bufferize | filecheck %s

// A donated argument ({irkit.donate = k}: a shared variable the function updates, result k
// its new value) is overwritten in place once dead and returned as itself -- unless a check
// that may fail would run after the first write (then a failed call would leave it half
// updated): such an argument is bufferized again as not donated, and copied.

builtin.module {

  // the SGD update as one gemm: BLAS adds into W's own buffer, W is returned
  // CHECK-LABEL: func.func @sgd(
  // CHECK-SAME:      %W: memref<?x?xf32> {irkit.donate = 0 : i64}
  // CHECK-NOT:     memref.copy
  // CHECK-NOT:     memref.alloc(%
  // CHECK:         %[[C:.*]] = memref.collapse_shape %W
  // CHECK:         func.call @irkit_gemm_f32(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %[[C]],
  // CHECK:         func.return %W : memref<?x?xf32>
  func.func @sgd(%W: tensor<?x?xf32> {irkit.donate = 0 : i64}, %x: tensor<?x?xf32>, %d: tensor<?x?xf32>) -> tensor<?x?xf32> {
    %alpha = ik.constant dense<-1.000000e-02> : tensor<f32>
    %beta = ik.constant dense<1.000000e+00> : tensor<f32>
    %t = ik.transpose %x {perm = array<i64: 1, 0>} : (tensor<?x?xf32>) -> tensor<?x?xf32>
    %new = ik.gemm %W, %t, %d, %alpha, %beta : (tensor<?x?xf32>, tensor<?x?xf32>, tensor<?x?xf32>, tensor<f32>, tensor<f32>) -> tensor<?x?xf32>
    func.return %new : tensor<?x?xf32>
  }

  // an elementwise update written over v, whose old value is read first by another output
  // CHECK-LABEL: func.func @elementwise(
  // CHECK:         ikf.kernel ins(%v : memref<?xf64>) outs(%[[OUT:.*]] : memref<?xf64>)
  // CHECK:         ikf.kernel ins(%v : memref<?xf64>) outs(%v : memref<?xf64>)
  // CHECK:         func.return %[[OUT]], %v : memref<?xf64>, memref<?xf64>
  func.func @elementwise(%v: tensor<?xf64> {irkit.donate = 1 : i64}) -> (tensor<?xf64>, tensor<?xf64>) {
    %sq = ikf.kernel ins(%v : tensor<?xf64>) {
    ^bb0(%a: tensor<?xf64>):
      %0 = ik.mul %a, %a : (tensor<?xf64>, tensor<?xf64>) -> tensor<?xf64>
      ikf.yield %0 : tensor<?xf64>
    } -> (tensor<?xf64>)
    %next = ikf.kernel ins(%v : tensor<?xf64>) {
    ^bb0(%a: tensor<?xf64>):
      %1 = ik.exp %a : (tensor<?xf64>) -> tensor<?xf64>
      ikf.yield %1 : tensor<?xf64>
    } -> (tensor<?xf64>)
    func.return %sq, %next : tensor<?xf64>, tensor<?xf64>
  }

  // the update comes first and a check of x's and y's sizes after it: v is not written
  // in place (a copy is updated, and returned)
  // CHECK-LABEL: func.func @check_after(
  // CHECK:         %[[NEW:.*]] = memref.alloc
  // CHECK:         ikf.kernel ins(%v : memref<?xf64>) outs(%[[NEW]] : memref<?xf64>)
  // CHECK:         cf.assert
  // CHECK:         func.return %[[NEW]], %{{.*}} : memref<?xf64>, memref<?xf64>
  func.func @check_after(%v: tensor<?xf64> {irkit.donate = 0 : i64}, %x: tensor<?xf64>, %y: tensor<?xf64>)
      -> (tensor<?xf64>, tensor<?xf64>) {
    %next = ikf.kernel ins(%v : tensor<?xf64>) {
    ^bb0(%a: tensor<?xf64>):
      %0 = ik.exp %a : (tensor<?xf64>) -> tensor<?xf64>
      ikf.yield %0 : tensor<?xf64>
    } -> (tensor<?xf64>)
    %s = ikf.kernel ins(%x, %y : tensor<?xf64>, tensor<?xf64>) {
    ^bb0(%a: tensor<?xf64>, %b: tensor<?xf64>):
      %1 = ik.add %a, %b : (tensor<?xf64>, tensor<?xf64>) -> tensor<?xf64>
      ikf.yield %1 : tensor<?xf64>
    } -> (tensor<?xf64>)
    func.return %next, %s : tensor<?xf64>, tensor<?xf64>
  }
}
