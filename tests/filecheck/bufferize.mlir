// RUN: irkit-opt %s -p bufferize | filecheck %s

// bufferize turns the fused level (tensor-form ikf.kernel + standalone ik ops)
// into buffers: memref signatures, one memref.alloc per kernel output,
// buffer-form kernels (ins(...) outs(...)), cf.assert where dynamic dims must
// agree, library calls for float matmuls, views for reshapes, and deallocs.

// The library routine is declared once, privately, and a constant array becomes
// a private constant memref.global, both at the top of the module.
// CHECK-DAG:   func.func private @irkit_gemm_f32(i1, i1, index, index, index, f32, memref<?xf32>, index, index, memref<?xf32>, index, index, f32, memref<?xf32>, index, index)
// CHECK-DAG:   memref.global{{.*}}__constant_0{{.*}}dense<[1.000000e+00, 2.000000e+00, 3.000000e+00]> : tensor<3xf32>
// CHECK-NOT:   func.func private @irkit_gemm_f32

builtin.module {

  // x + y with dynamic leading dims that must agree at run time
  // CHECK-LABEL: func.func @elementwise(
  // CHECK-SAME:      %x: memref<?x3xf32>, %y: memref<?x3xf32>) -> memref<?x3xf32> {
  // CHECK-DAG:     %[[NX:.*]] = memref.dim %x, %{{.*}} : memref<?x3xf32>
  // CHECK-DAG:     %[[NY:.*]] = memref.dim %y, %{{.*}} : memref<?x3xf32>
  // CHECK:         %[[EQ:.*]] = arith.cmpi eq, %{{.*}}, %{{.*}} : index
  // CHECK-NEXT:    cf.assert %[[EQ]], "{{.*}}ik.add{{.*}}"
  // CHECK-NEXT:    %[[OUT:.*]] = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x3xf32>
  // CHECK-NEXT:    ikf.kernel ins(%x, %y : memref<?x3xf32>, memref<?x3xf32>) outs(%[[OUT]] : memref<?x3xf32>) {
  // CHECK-NEXT:    ^bb0(%[[A:.*]]: tensor<?x3xf32>, %[[B:.*]]: tensor<?x3xf32>):
  // CHECK-NEXT:      %[[S:.*]] = ik.add %[[A]], %[[B]] : (tensor<?x3xf32>, tensor<?x3xf32>) -> tensor<?x3xf32>
  // CHECK-NEXT:      ikf.yield %[[S]] : tensor<?x3xf32>
  // CHECK-NEXT:    }
  // CHECK-NOT:     memref.dealloc
  // CHECK:         func.return %[[OUT]] : memref<?x3xf32>
  func.func @elementwise(%x: tensor<?x3xf32>, %y: tensor<?x3xf32>) -> tensor<?x3xf32> {
    %0 = ikf.kernel ins(%x, %y : tensor<?x3xf32>, tensor<?x3xf32>) {
    ^bb0(%a: tensor<?x3xf32>, %b: tensor<?x3xf32>):
      %1 = ik.add %a, %b : (tensor<?x3xf32>, tensor<?x3xf32>) -> tensor<?x3xf32>
      ikf.yield %1 : tensor<?x3xf32>
    } -> (tensor<?x3xf32>)
    func.return %0 : tensor<?x3xf32>
  }

  // a static shape needs no dims and no asserts
  // CHECK-LABEL: func.func @static(
  // CHECK-SAME:      %x: memref<4x3xf64>) -> memref<4x3xf64> {
  // CHECK-NOT:     cf.assert
  // CHECK-NEXT:    %[[OUT:.*]] = memref.alloc() {alignment = 64 : i64} : memref<4x3xf64>
  // CHECK-NEXT:    ikf.kernel ins(%x : memref<4x3xf64>) outs(%[[OUT]] : memref<4x3xf64>)
  func.func @static(%x: tensor<4x3xf64>) -> tensor<4x3xf64> {
    %0 = ikf.kernel ins(%x : tensor<4x3xf64>) {
    ^bb0(%a: tensor<4x3xf64>):
      %1 = ik.exp %a : (tensor<4x3xf64>) -> tensor<4x3xf64>
      ikf.yield %1 : tensor<4x3xf64>
    } -> (tensor<4x3xf64>)
    func.return %0 : tensor<4x3xf64>
  }

  // a temporary (the column sums) is freed after its last use; the result is not
  // CHECK-LABEL: func.func @temporary(
  // CHECK:         %[[T:.*]] = memref.alloc() {alignment = 64 : i64} : memref<1x3xf32>
  // CHECK-NEXT:    ikf.kernel ins(%x : memref<?x3xf32>) outs(%[[T]] : memref<1x3xf32>)
  // CHECK:         %[[OUT:.*]] = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x3xf32>
  // CHECK-NEXT:    ikf.kernel ins(%x, %[[T]] : memref<?x3xf32>, memref<1x3xf32>) outs(%[[OUT]] : memref<?x3xf32>)
  // CHECK:         memref.dealloc %[[T]] : memref<1x3xf32>
  // CHECK-NOT:     memref.dealloc
  // CHECK:         func.return %[[OUT]] : memref<?x3xf32>
  func.func @temporary(%x: tensor<?x3xf32>) -> tensor<?x3xf32> {
    %0 = ikf.kernel ins(%x : tensor<?x3xf32>) {
    ^bb0(%a: tensor<?x3xf32>):
      %1 = ik.sum %a {axes = array<i64: 0>, keepdims} : (tensor<?x3xf32>) -> tensor<1x3xf32>
      ikf.yield %1 : tensor<1x3xf32>
    } -> (tensor<1x3xf32>)
    %1 = ikf.kernel ins(%x, %0 : tensor<?x3xf32>, tensor<1x3xf32>) {
    ^bb0(%a: tensor<?x3xf32>, %s: tensor<1x3xf32>):
      %2 = ik.sub %a, %s : (tensor<?x3xf32>, tensor<1x3xf32>) -> tensor<?x3xf32>
      ikf.yield %2 : tensor<?x3xf32>
    } -> (tensor<?x3xf32>)
    func.return %1 : tensor<?x3xf32>
  }

  // float32 matmul: a call to irkit_gemm_f32 on
  // flattened buffers; the bias kernel then writes in place over the product
  // CHECK-LABEL: func.func @dense(
  // CHECK-SAME:      %x: memref<?x784xf32>, %w: memref<784x500xf32>, %b: memref<500xf32>) -> memref<?x500xf32> {
  // CHECK:         %[[C:.*]] = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x500xf32>
  // CHECK-NOT:     scf.for
  // CHECK:         func.call @irkit_gemm_f32(
  // CHECK-NEXT:    ikf.kernel ins(%[[C]], %b : memref<?x500xf32>, memref<500xf32>) outs(%[[C]] : memref<?x500xf32>)
  // CHECK:         func.return %[[C]] : memref<?x500xf32>
  func.func @dense(%x: tensor<?x784xf32>, %w: tensor<784x500xf32>, %b: tensor<500xf32>) -> tensor<?x500xf32> {
    %0 = ik.matmul %x, %w : (tensor<?x784xf32>, tensor<784x500xf32>) -> tensor<?x500xf32>
    %1 = ikf.kernel ins(%0, %b : tensor<?x500xf32>, tensor<500xf32>) {
    ^bb0(%m: tensor<?x500xf32>, %bb: tensor<500xf32>):
      %2 = ik.add %m, %bb : (tensor<?x500xf32>, tensor<500xf32>) -> tensor<?x500xf32>
      %3 = ik.tanh %2 : (tensor<?x500xf32>) -> tensor<?x500xf32>
      ikf.yield %3 : tensor<?x500xf32>
    } -> (tensor<?x500xf32>)
    func.return %1 : tensor<?x500xf32>
  }

  // A product of static shape with few multiply-adds is inlined loops (a BLAS call costs
  // more); one whose size is known only at run time is one call of the runtime's
  // irkit_gemm_f32, which chooses there (loops or BLAS).
  // CHECK-LABEL: func.func @tiny_static(
  // CHECK-NOT:     func.call
  // CHECK:         arith.mulf %{{.*}} fastmath<reassoc,contract> : f32
  // CHECK:         func.return
  func.func @tiny_static(%x: tensor<2x3xf32>, %w: tensor<3x4xf32>) -> tensor<2x4xf32> {
    %0 = ik.matmul %x, %w : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>
    func.return %0 : tensor<2x4xf32>
  }
  // CHECK-LABEL: func.func @small_or_large(
  // CHECK-NOT:     scf.if
  // CHECK-NOT:     scf.for
  // CHECK:         func.call @irkit_gemm_f32(
  // CHECK-NOT:     scf.for
  // CHECK:         func.return
  func.func @small_or_large(%x: tensor<?x8xf32>, %w: tensor<8x4xf32>) -> tensor<?x4xf32> {
    %0 = ik.matmul %x, %w : (tensor<?x8xf32>, tensor<8x4xf32>) -> tensor<?x4xf32>
    func.return %0 : tensor<?x4xf32>
  }

  // x @ w.T: no copy of the transpose, gemm is told B is transposed; the
  // inner dims must agree at run time
  // CHECK-LABEL: func.func @matmul_transposed(
  // CHECK:         cf.assert %{{.*}}, "{{.*}}ik.matmul{{.*}}"
  // CHECK-NOT:     scf.for
  // CHECK-DAG:     %[[TA:.*]] = arith.constant false
  // CHECK-DAG:     %[[TB:.*]] = arith.constant true
  // CHECK:         func.call @irkit_gemm_f32(%[[TA]], %[[TB]],
  // CHECK-NOT:     scf.for
  // CHECK:         func.return
  func.func @matmul_transposed(%x: tensor<?x?xf32>, %w: tensor<?x?xf32>) -> tensor<?x?xf32> {
    %0 = ik.transpose %w {perm = array<i64: 1, 0>} : (tensor<?x?xf32>) -> tensor<?x?xf32>
    %1 = ik.matmul %x, %0 : (tensor<?x?xf32>, tensor<?x?xf32>) -> tensor<?x?xf32>
    func.return %1 : tensor<?x?xf32>
  }

  // an integer matmul has no BLAS: loops, the inner one carrying the sum
  // CHECK-LABEL: func.func @matmul_int(
  // CHECK-NOT:     func.call
  // CHECK:         scf.for
  // CHECK:           scf.for
  // CHECK:             scf.for %{{.*}} = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%{{.*}} = %{{.*}}) -> (i64) {
  // CHECK:               arith.muli %{{.*}}, %{{.*}} : i64
  // CHECK:               arith.addi %{{.*}}, %{{.*}} : i64
  // CHECK:               scf.yield
  // CHECK:             memref.store
  func.func @matmul_int(%a: tensor<4x5xi64>, %b: tensor<5x6xi64>) -> tensor<4x6xi64> {
    %0 = ik.matmul %a, %b : (tensor<4x5xi64>, tensor<5x6xi64>) -> tensor<4x6xi64>
    func.return %0 : tensor<4x6xi64>
  }

  // a reshape is a view: collapse_shape to 1-D (no copy, no new buffer)
  // CHECK-LABEL: func.func @reshape_collapse(
  // CHECK:         %[[E:.*]] = memref.alloc(%{{.*}}, %{{.*}}) {alignment = 64 : i64} : memref<?x?xf32>
  // CHECK-NEXT:    ikf.kernel ins(%x : memref<?x?xf32>) outs(%[[E]] : memref<?x?xf32>)
  // CHECK:         %[[V:.*]] = memref.collapse_shape %[[E]] {{\[\[0( : i64)?, 1( : i64)?\]\]}} : memref<?x?xf32> into memref<?xf32>
  // CHECK-NOT:     memref.alloc
  // CHECK-NOT:     memref.copy
  // CHECK:         func.return
  func.func @reshape_collapse(%x: tensor<?x?xf32>) -> tensor<?xf32> {
    %0 = ikf.kernel ins(%x : tensor<?x?xf32>) {
    ^bb0(%a: tensor<?x?xf32>):
      %1 = ik.exp %a : (tensor<?x?xf32>) -> tensor<?x?xf32>
      ikf.yield %1 : tensor<?x?xf32>
    } -> (tensor<?x?xf32>)
    %1 = ik.reshape %0 {shape = array<i64: -1>} : (tensor<?x?xf32>) -> tensor<?xf32>
    func.return %1 : tensor<?xf32>
  }

  // a reshape to (3, -1): an assert that the size divides, then expand_shape
  // CHECK-LABEL: func.func @reshape_expand(
  // CHECK:         %[[E:.*]] = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?xf64>
  // CHECK:         %[[N:.*]] = arith.floordivsi %{{.*}}, %{{.*}} : index
  // CHECK:         cf.assert %{{.*}}, "{{.*}}ik.reshape: cannot reshape an array of shape (?) into shape (3, -1)"
  // CHECK-NEXT:    %[[V:.*]] = memref.expand_shape %[[E]] {{\[\[0( : i64)?, 1( : i64)?\]\]}} output_shape [3, %[[N]]] : memref<?xf64> into memref<3x?xf64>
  // CHECK-NEXT:    func.return %[[V]] : memref<3x?xf64>
  func.func @reshape_expand(%v: tensor<?xf64>) -> tensor<3x?xf64> {
    %0 = ikf.kernel ins(%v : tensor<?xf64>) {
    ^bb0(%a: tensor<?xf64>):
      %1 = ik.exp %a : (tensor<?xf64>) -> tensor<?xf64>
      ikf.yield %1 : tensor<?xf64>
    } -> (tensor<?xf64>)
    %1 = ik.reshape %0 {shape = array<i64: 3, -1>} : (tensor<?xf64>) -> tensor<3x?xf64>
    func.return %1 : tensor<3x?xf64>
  }

  // a result never aliases an argument: returning %x copies it
  // CHECK-LABEL: func.func @return_argument(
  // CHECK:         %[[E:.*]] = memref.alloc
  // CHECK:         %[[C:.*]] = memref.alloc
  // CHECK-NEXT:    {{"?}}memref.copy{{"?}}{{.*}}%x, %[[C]]
  // CHECK:         func.return %[[C]], %[[E]] : memref<?xf32>, memref<?xf32>
  func.func @return_argument(%x: tensor<?xf32>) -> (tensor<?xf32>, tensor<?xf32>) {
    %0 = ikf.kernel ins(%x : tensor<?xf32>) {
    ^bb0(%a: tensor<?xf32>):
      %1 = ik.exp %a : (tensor<?xf32>) -> tensor<?xf32>
      ikf.yield %1 : tensor<?xf32>
    } -> (tensor<?xf32>)
    func.return %x, %0 : tensor<?xf32>, tensor<?xf32>
  }

  // two results never share a buffer: the second is a copy
  // CHECK-LABEL: func.func @same_result_twice(
  // CHECK:         %[[E:.*]] = memref.alloc
  // CHECK:         ikf.kernel ins(%x : memref<?xf32>) outs(%[[E]] : memref<?xf32>)
  // CHECK:         %[[C:.*]] = memref.alloc
  // CHECK-NEXT:    {{"?}}memref.copy{{"?}}{{.*}}%[[E]], %[[C]]
  // CHECK:         func.return %[[E]], %[[C]] : memref<?xf32>, memref<?xf32>
  func.func @same_result_twice(%x: tensor<?xf32>) -> (tensor<?xf32>, tensor<?xf32>) {
    %0 = ikf.kernel ins(%x : tensor<?xf32>) {
    ^bb0(%a: tensor<?xf32>):
      %1 = ik.exp %a : (tensor<?xf32>) -> tensor<?xf32>
      ikf.yield %1 : tensor<?xf32>
    } -> (tensor<?xf32>)
    func.return %0, %0 : tensor<?xf32>, tensor<?xf32>
  }

  // a constant array is read from its global; the result is a copy of it
  // CHECK-LABEL: func.func @constant_array(
  // CHECK-NEXT:    %[[G:.*]] = memref.get_global @__constant_0 : memref<3xf32>
  // CHECK-NEXT:    %[[C:.*]] = memref.alloc() {alignment = 64 : i64} : memref<3xf32>
  // CHECK-NEXT:    {{"?}}memref.copy{{"?}}{{.*}}%[[G]], %[[C]]
  // CHECK-NEXT:    func.return %[[C]] : memref<3xf32>
  func.func @constant_array() -> tensor<3xf32> {
    %0 = ik.constant dense<[1.000000e+00, 2.000000e+00, 3.000000e+00]> : tensor<3xf32>
    func.return %0 : tensor<3xf32>
  }

  // gemm's 0-d constants are values in the call, never buffers; a 0-d constant
  // returned is stored in a buffer of its own
  // CHECK-LABEL: func.func @gemm_scalars(
  // CHECK-NOT:     memref.alloc() {{.*}} : memref<f32>
  // CHECK-DAG:     %[[A:.*]] = arith.constant -1.000000e-01 : f32
  // CHECK-DAG:     %[[B:.*]] = arith.constant 1.000000e+00 : f32
  // CHECK:         func.call @irkit_gemm_f32(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %[[A]], %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %[[B]],
  // CHECK:         %[[S:.*]] = memref.alloc() {alignment = 64 : i64} : memref<f32>
  // CHECK-NEXT:    %[[V:.*]] = arith.constant 1.000000e+00 : f32
  // CHECK-NEXT:    memref.store %[[V]], %[[S]][] : memref<f32>
  // CHECK:         func.return %{{.*}}, %[[S]] : memref<?x?xf32>, memref<f32>
  func.func @gemm_scalars(%c: tensor<?x?xf32>, %a: tensor<?x?xf32>, %b: tensor<?x?xf32>) -> (tensor<?x?xf32>, tensor<f32>) {
    %alpha = ik.constant dense<-1.000000e-01> : tensor<f32>
    %beta = ik.constant dense<1.000000e+00> : tensor<f32>
    %0 = ik.gemm %c, %a, %b, %alpha, %beta : (tensor<?x?xf32>, tensor<?x?xf32>, tensor<?x?xf32>, tensor<f32>, tensor<f32>) -> tensor<?x?xf32>
    func.return %0, %beta : tensor<?x?xf32>, tensor<f32>
  }
}
