// RUN: irkit-opt %s -p copies-to-loops | filecheck %s

// A copy of an array becomes a flat parallel loop of loads and stores (the CPU's elementwise
// loops: the thread pool, streaming stores); a scalar's copy, and a copy inside a parallel
// loop's body, stay copies.

builtin.module {

  // CHECK-LABEL: func.func @matrix(
  // CHECK-NOT:     memref.copy
  // CHECK:         %[[A:.*]] = memref.collapse_shape %a {{\[}}[0 : i64, 1 : i64]] : memref<?x?xf32> into memref<?xf32>
  // CHECK:         %[[B:.*]] = memref.collapse_shape %b {{\[}}[0 : i64, 1 : i64]] : memref<?x?xf32> into memref<?xf32>
  // CHECK:         %[[N:.*]] = memref.dim %[[B]], %{{.*}} : memref<?xf32>
  // CHECK:         "scf.parallel"(%{{.*}}, %[[N]], %{{.*}})
  // CHECK-NEXT:    ^{{.*}}(%[[I:.*]]: index):
  // CHECK-NEXT:      %[[X:.*]] = memref.load %[[A]][%[[I]]] : memref<?xf32>
  // CHECK-NEXT:      memref.store %[[X]], %[[B]][%[[I]]] : memref<?xf32>
  // CHECK-NEXT:      scf.reduce
  func.func @matrix(%a: memref<?x?xf32>, %b: memref<?x?xf32>) {
    "memref.copy"(%a, %b) : (memref<?x?xf32>, memref<?x?xf32>) -> ()
    func.return
  }

  // a static size: the loop's bound is a constant
  // CHECK-LABEL: func.func @static(
  // CHECK:         %[[N:.*]] = arith.constant 24 : index
  // CHECK:         "scf.parallel"(%{{.*}}, %[[N]], %{{.*}})
  func.func @static(%a: memref<2x3x4xi8>, %b: memref<2x3x4xi8>) {
    "memref.copy"(%a, %b) : (memref<2x3x4xi8>, memref<2x3x4xi8>) -> ()
    func.return
  }

  // CHECK-LABEL: func.func @scalar(
  // CHECK:         "memref.copy"(%a, %b)
  func.func @scalar(%a: memref<f64>, %b: memref<f64>) {
    "memref.copy"(%a, %b) : (memref<f64>, memref<f64>) -> ()
    func.return
  }

  // CHECK-LABEL: func.func @in_a_parallel_loop(
  // CHECK:         "scf.parallel"
  // CHECK:           "memref.copy"(%a, %b)
  // CHECK-NOT:     "scf.parallel"
  func.func @in_a_parallel_loop(%a: memref<?xf32>, %b: memref<?xf32>, %n: index) {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    "scf.parallel"(%c0, %n, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
    ^bb0(%i: index):
      "memref.copy"(%a, %b) : (memref<?xf32>, memref<?xf32>) -> ()
      scf.reduce
    }) : (index, index, index) -> ()
    func.return
  }
}
