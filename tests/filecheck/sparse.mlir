// RUN: irkit-opt %s -p bufferize | filecheck %s
// RUN: irkit-opt %s -p default | filecheck %s --check-prefix=ROUND

// The sparse products of ik (dialects/ik/sparse.py) lower at the buffer level to loop
// kernels over the stored values, never to a dense product: S @ M is an scf.parallel over
// the rows of S, each row's [indptr[i], indptr[i+1]) range an scf.for that reads one
// stored value, checks its column index and multiplies a row of M. Whether M is one
// column is decided once, before the loop over rows: then M is read as a vector (a term's
// address is its index), and each row's sum is a multiply and an add with no fusion flags
// (a loop-carried multiply-add would lengthen the chain, and this keeps scipy's rounding).

builtin.module {
  // CHECK-LABEL: func.func @spmm(
  // CHECK-NOT:     func.call @irkit_gemm
  // CHECK:         cf.assert %{{.*}}, "ValueError: ik.sparse_matmul: indptr[0] must be 0"
  // CHECK:         %[[V:[0-9]+]] = memref.collapse_shape %M {{.*}} into memref<?xf64>
  // CHECK-NEXT:    scf.if %{{[0-9]+}} {
  // CHECK:         "scf.parallel"
  // CHECK-NEXT:    ^bb0(%[[I:.*]]: index):
  // CHECK-NEXT:      memref.load %p[%[[I]]] : memref<?xi32>
  // CHECK:           cf.assert %{{.*}}, "ValueError: ik.sparse_matmul: indptr must be non-decreasing
  // CHECK:           %[[SUM:.*]] = scf.for %[[P:[^ ]*]] = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%[[ACC:[^ ]*]] = %{{.*}}) -> (f64)
  // CHECK-NEXT:        %[[X:.*]] = memref.load %d[%[[P]]] : memref<?xf64>
  // CHECK-NEXT:        memref.load %i[%[[P]]] : memref<?xi32>
  // CHECK:             cf.assert %{{.*}}, "IndexError: ik.sparse_matmul: a stored index is out of bounds
  // CHECK-NEXT:        %[[R:.*]] = arith.index_cast
  // CHECK-NEXT:        %[[Y:.*]] = memref.load %[[V]][%[[R]]] : memref<?xf64>
  // CHECK-NEXT:        %[[T:.*]] = arith.mulf %[[X]], %[[Y]] : f64
  // CHECK-NEXT:        %[[S:.*]] = arith.addf %[[ACC]], %[[T]] : f64
  // CHECK-NEXT:        scf.yield %[[S]] : f64
  // CHECK:           memref.store %[[SUM]], %{{.*}}[%[[I]], %{{.*}}] : memref<?x?xf64>
  // CHECK:         } else {
  // CHECK:         "scf.parallel"
  // CHECK:             scf.for %[[Q:[^ ]*]] = %{{.*}} to %{{.*}} step %{{.*}} iter_args
  // CHECK-NEXT:          memref.load %d[%[[Q]]] : memref<?xf64>
  // CHECK-NEXT:          memref.load %i[%[[Q]]] : memref<?xi32>
  // CHECK:               cf.assert %{{.*}}, "IndexError: ik.sparse_matmul: a stored index is out of bounds
  // CHECK:               memref.load %M[%{{.*}}, %{{.*}}] : memref<?x?xf64>
  // CHECK-NEXT:          arith.mulf %{{.*}}, %{{.*}} : f64
  // CHECK-NEXT:          arith.addf %{{.*}}, %{{.*}} : f64
  // CHECK:         scf.reduce
  // CHECK:         func.return
  func.func @spmm(%d: tensor<?xf64>, %i: tensor<?xi32>, %p: tensor<?xi32>, %n: tensor<i64>,
                  %M: tensor<?x?xf64>) -> tensor<?x?xf64> {
    %y = ik.sparse_matmul %d, %i, %p, %n, %M : (tensor<?xf64>, tensor<?xi32>, tensor<?xi32>, tensor<i64>, tensor<?x?xf64>) -> tensor<?x?xf64>
    func.return %y : tensor<?x?xf64>
  }

  // The whole default pipeline keeps the op a loop kernel (it fuses into nothing).
  // ROUND-LABEL: func.func @spmm(
  // ROUND-NOT:     = ik.sparse_matmul
  // ROUND-NOT:     irkit_gemm
  // ROUND:         "scf.parallel"
  // ROUND:         func.return
}
