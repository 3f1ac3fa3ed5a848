// RUN: irkit-opt %s -p default | filecheck %s
// RUN: irkit-opt %s --pass-pipeline='builtin.module(default)' | filecheck %s --check-prefix=GONE
// RUN: irkit-opt %s -p default --print-ir-after-all 2>&1 >/dev/null | filecheck %s --check-prefix=DUMP

// `-p default` is the pipeline ik.function runs for the CPU: tensor-level
// rewrites, fusion, buffers and loops. The result is upstream MLIR only.

// Nothing of the tensor or fused level is left.
// GONE-NOT: = ik.
// GONE-NOT: ikf.
// GONE-NOT: tensor<

// --print-ir-after-all heads each dump with the pass's name, in pipeline order.
// DUMP:      // -----// IR Dump After canonicalize //----- //
// DUMP:      // -----// IR Dump After constant-fold //----- //
// DUMP:      // -----// IR Dump After stabilize //----- //
// DUMP:      // -----// IR Dump After canonicalize //----- //
// DUMP:      // -----// IR Dump After cse //----- //
// DUMP:      // -----// IR Dump After dce //----- //
// DUMP:      // -----// IR Dump After decompose //----- //
// DUMP:      // -----// IR Dump After canonicalize //----- //
// DUMP:      // -----// IR Dump After cse //----- //
// DUMP:      // -----// IR Dump After fuse //----- //
// DUMP:      ikf.kernel
// DUMP:      // -----// IR Dump After bufferize //----- //
// DUMP:      ikf.kernel ins({{.*}}) outs(
// DUMP:      // -----// IR Dump After lower-to-loops //----- //
// DUMP-NOT:  ikf.kernel

// The gemm routine is declared for @dense.
// CHECK:       func.func private @irkit_gemm_f32(

builtin.module {

  // log(exp(x + y)) -> x + y: one loop nest of loads, an addf and a store
  // CHECK-LABEL: func.func @main(
  // CHECK-SAME:      %x: memref<?x3xf32>, %y: memref<3xf32>) -> memref<?x3xf32> {
  // CHECK:         %[[OUT:.*]] = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x3xf32>
  // CHECK-NOT:     math.exp
  // CHECK-NOT:     math.log
  // CHECK:         %[[A:.*]] = memref.load %x[
  // CHECK-NEXT:    %[[B:.*]] = memref.load %y[
  // CHECK-NEXT:    %[[S:.*]] = arith.addf %[[A]], %[[B]] : f32
  // CHECK-NEXT:    memref.store %[[S]], %[[OUT]][
  // CHECK-NOT:     math.exp
  // CHECK-NOT:     math.log
  // CHECK:         func.return %[[OUT]] : memref<?x3xf32>
  func.func @main(%x: tensor<?x3xf32>, %y: tensor<3xf32>) -> tensor<?x3xf32> {
    %0 = ik.add %x, %y : (tensor<?x3xf32>, tensor<3xf32>) -> tensor<?x3xf32>
    %1 = ik.exp %0 : (tensor<?x3xf32>) -> tensor<?x3xf32>
    %2 = ik.log %1 : (tensor<?x3xf32>) -> tensor<?x3xf32>
    func.return %2 : tensor<?x3xf32>
  }

  // log(softmax(x)) -> log_softmax -> max-shifted: one loop nest per row with the
  // max, then the sum of exp(x - max), then its log, then x - max - log(sum)
  // CHECK-LABEL: func.func @log_softmax(
  // CHECK:         %[[OUT:.*]] = memref.alloc(%{{.*}}, %{{.*}}) {alignment = 64 : i64} : memref<?x?xf32>
  // CHECK:         %[[MAX:.*]] = scf.for {{.*}} iter_args({{.*}}) -> (f32) {
  // CHECK:           arith.maximumf
  // CHECK:         %[[SUM:.*]] = scf.for {{.*}} iter_args({{.*}}) -> ({{f32|f64}}) {
  // CHECK:           arith.subf %{{.*}}, %[[MAX]] : f32
  // CHECK-NEXT:      math.exp
  // CHECK:         math.log
  // CHECK:         scf.for
  // CHECK:           arith.subf %{{.*}}, %[[MAX]] : f32
  // CHECK-NEXT:      %[[R:.*]] = arith.subf
  // CHECK-NEXT:      memref.store %[[R]], %[[OUT]][
  // CHECK:         func.return %[[OUT]] : memref<?x?xf32>
  func.func @log_softmax(%x: tensor<?x?xf32>) -> tensor<?x?xf32> {
    %0 = ik.softmax %x {axis = 1 : i64} : (tensor<?x?xf32>) -> tensor<?x?xf32>
    %1 = ik.log %0 : (tensor<?x?xf32>) -> tensor<?x?xf32>
    func.return %1 : tensor<?x?xf32>
  }

  // tanh(x @ w + b): gemm, then one loop nest adding the bias in place
  // CHECK-LABEL: func.func @dense(
  // CHECK:         %[[C:.*]] = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x500xf32>
  // CHECK:         func.call @irkit_gemm_f32(
  // CHECK:         memref.load %[[C]][
  // CHECK-NEXT:    memref.load %b[
  // CHECK-NEXT:    arith.addf
  // CHECK-NEXT:    math.tanh
  // CHECK-NEXT:    memref.store %{{.*}}, %[[C]][
  // CHECK:         func.return %[[C]] : memref<?x500xf32>
  func.func @dense(%x: tensor<?x784xf32>, %w: tensor<784x500xf32>, %b: tensor<500xf32>) -> tensor<?x500xf32> {
    %0 = ik.matmul %x, %w : (tensor<?x784xf32>, tensor<784x500xf32>) -> tensor<?x500xf32>
    %1 = ik.add %0, %b : (tensor<?x500xf32>, tensor<500xf32>) -> tensor<?x500xf32>
    %2 = ik.tanh %1 : (tensor<?x500xf32>) -> tensor<?x500xf32>
    func.return %2 : tensor<?x500xf32>
  }

  // x * (2 + 3) * 0: 2 + 3 folds to 5; "* 0" stays (NaN * 0 is NaN)
  // CHECK-LABEL: func.func @fold(
  // CHECK-DAG:     %[[FIVE:.*]] = arith.constant 5.000000e+00 : f64
  // CHECK-DAG:     %[[ZERO:.*]] = arith.constant 0.000000e+00 : f64
  // CHECK:         %[[V:.*]] = memref.load %x[
  // CHECK-NEXT:    %[[M:.*]] = arith.mulf %[[V]], %[[FIVE]] : f64
  // CHECK-NEXT:    %[[Z:.*]] = arith.mulf %[[M]], %[[ZERO]] : f64
  // CHECK-NEXT:    memref.store %[[Z]],
  func.func @fold(%x: tensor<?xf64>) -> tensor<?xf64> {
    %two = ik.constant dense<2.000000e+00> : tensor<f64>
    %three = ik.constant dense<3.000000e+00> : tensor<f64>
    %zero = ik.constant dense<0.000000e+00> : tensor<f64>
    %0 = ik.add %two, %three : (tensor<f64>, tensor<f64>) -> tensor<f64>
    %1 = ik.mul %x, %0 : (tensor<?xf64>, tensor<f64>) -> tensor<?xf64>
    %2 = ik.mul %1, %zero : (tensor<?xf64>, tensor<f64>) -> tensor<?xf64>
    func.return %2 : tensor<?xf64>
  }
}
