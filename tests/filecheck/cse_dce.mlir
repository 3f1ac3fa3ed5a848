// RUN: irkit-opt %s -p cse | filecheck %s --check-prefix=CSE
// RUN: irkit-opt %s -p dce | filecheck %s --check-prefix=DCE

// cse and dce are xDSL's; these check that irkit's ops declare what they need
// (ik ops are pure, properties take part in equality, a tensor-form kernel is
// pure, a buffer-form kernel writes memory).

builtin.module {

  // identical constants and ops merge; sums over different axes do not; dead ops go
  // CSE-LABEL: func.func @tensor_ops(
  // CSE-NEXT:    %[[C:.*]] = ik.constant dense<1.000000e+00> : tensor<f32>
  // CSE-NEXT:    %[[A:.*]] = ik.add %x, %[[C]]
  // CSE-NEXT:    %[[E:.*]] = ik.exp %[[A]]
  // CSE-NEXT:    %[[S0:.*]] = ik.sum %x {axes = array<i64: 0>}
  // CSE-NEXT:    %[[S1:.*]] = ik.sum %x {axes = array<i64: 1>}
  // CSE-NEXT:    func.return %[[E]], %[[E]], %[[S0]], %[[S1]] :
  // DCE-LABEL: func.func @tensor_ops(
  // DCE-COUNT-2: ik.constant
  // DCE-COUNT-2: ik.add
  // DCE-COUNT-2: ik.exp
  // DCE-COUNT-2: ik.sum
  // DCE-NOT:     ik.log
  // DCE:         func.return
  func.func @tensor_ops(%x: tensor<?x?xf32>) -> (tensor<?x?xf32>, tensor<?x?xf32>, tensor<?xf32>, tensor<?xf32>) {
    %c1 = ik.constant dense<1.000000e+00> : tensor<f32>
    %c2 = ik.constant dense<1.000000e+00> : tensor<f32>
    %0 = ik.add %x, %c1 : (tensor<?x?xf32>, tensor<f32>) -> tensor<?x?xf32>
    %1 = ik.add %x, %c2 : (tensor<?x?xf32>, tensor<f32>) -> tensor<?x?xf32>
    %2 = ik.exp %0 : (tensor<?x?xf32>) -> tensor<?x?xf32>
    %3 = ik.exp %1 : (tensor<?x?xf32>) -> tensor<?x?xf32>
    %4 = ik.sum %x {axes = array<i64: 0>} : (tensor<?x?xf32>) -> tensor<?xf32>
    %5 = ik.sum %x {axes = array<i64: 1>} : (tensor<?x?xf32>) -> tensor<?xf32>
    %dead = ik.log %x : (tensor<?x?xf32>) -> tensor<?x?xf32>
    func.return %2, %3, %4, %5 : tensor<?x?xf32>, tensor<?x?xf32>, tensor<?xf32>, tensor<?xf32>
  }

  // different constants do not merge
  // CSE-LABEL: func.func @different_constants(
  // CSE:         ik.constant dense<1.000000e+00> : tensor<f32>
  // CSE:         ik.constant dense<2.000000e+00> : tensor<f32>
  // CSE-COUNT-2: ik.mul
  func.func @different_constants(%x: tensor<?xf32>) -> (tensor<?xf32>, tensor<?xf32>) {
    %c1 = ik.constant dense<1.000000e+00> : tensor<f32>
    %c2 = ik.constant dense<2.000000e+00> : tensor<f32>
    %0 = ik.mul %x, %c1 : (tensor<?xf32>, tensor<f32>) -> tensor<?xf32>
    %1 = ik.mul %x, %c2 : (tensor<?xf32>, tensor<f32>) -> tensor<?xf32>
    func.return %0, %1 : tensor<?xf32>, tensor<?xf32>
  }

  // tensor-form kernels are pure: identical ones merge, unused ones go
  // CSE-LABEL: func.func @kernels(
  // CSE:         %[[K:.*]] = ikf.kernel ins(%x : tensor<?xf32>)
  // CSE:           ik.exp
  // CSE-NOT:     ikf.kernel
  // CSE:         func.return %[[K]], %[[K]] : tensor<?xf32>, tensor<?xf32>
  // DCE-LABEL: func.func @kernels(
  // DCE-COUNT-2: ik.exp
  // DCE-NOT:     ik.log
  // DCE:         func.return
  func.func @kernels(%x: tensor<?xf32>) -> (tensor<?xf32>, tensor<?xf32>) {
    %0 = ikf.kernel ins(%x : tensor<?xf32>) {
    ^bb0(%a: tensor<?xf32>):
      %1 = ik.exp %a : (tensor<?xf32>) -> tensor<?xf32>
      ikf.yield %1 : tensor<?xf32>
    } -> (tensor<?xf32>)
    %2 = ikf.kernel ins(%x : tensor<?xf32>) {
    ^bb0(%a: tensor<?xf32>):
      %1 = ik.exp %a : (tensor<?xf32>) -> tensor<?xf32>
      ikf.yield %1 : tensor<?xf32>
    } -> (tensor<?xf32>)
    %3 = ikf.kernel ins(%x : tensor<?xf32>) {
    ^bb0(%a: tensor<?xf32>):
      %1 = ik.log %a : (tensor<?xf32>) -> tensor<?xf32>
      ikf.yield %1 : tensor<?xf32>
    } -> (tensor<?xf32>)
    func.return %0, %2 : tensor<?xf32>, tensor<?xf32>
  }

  // a buffer-form kernel has no results but writes its outs: it is never dead
  // CSE-LABEL: func.func @buffer_kernel(
  // CSE:         ikf.kernel ins(%x : memref<?xf32>) outs(%y : memref<?xf32>)
  // DCE-LABEL: func.func @buffer_kernel(
  // DCE:         ikf.kernel ins(%x : memref<?xf32>) outs(%y : memref<?xf32>)
  // DCE:           ik.exp
  // DCE:         func.return
  func.func @buffer_kernel(%x: memref<?xf32>, %y: memref<?xf32>) {
    ikf.kernel ins(%x : memref<?xf32>) outs(%y : memref<?xf32>) {
    ^bb0(%a: tensor<?xf32>):
      %1 = ik.exp %a : (tensor<?xf32>) -> tensor<?xf32>
      ikf.yield %1 : tensor<?xf32>
    }
    func.return
  }
}
