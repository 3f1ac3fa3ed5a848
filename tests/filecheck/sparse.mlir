// RUN: irkit-opt %s -p bufferize | filecheck %s
// RUN: irkit-opt %s -p default | filecheck %s --check-prefix=ROUND

// The sparse products of ik (dialects/ik/sparse.py) lower at the buffer level to loop
// kernels over the stored values, never to a dense product: S @ M is an scf.parallel over
// the rows of S, each row's [indptr[i], indptr[i+1]) range an scf.for that reads one
// stored value, checks its column index and multiplies a row of M.

builtin.module {
  // CHECK-LABEL: func.func @spmm(
  // CHECK-NOT:     func.call @irkit_gemm
  // CHECK:         cf.assert %{{.*}}, "ValueError: ik.sparse_matmul: indptr[0] must be 0"
  // CHECK:         "scf.parallel"
  // CHECK-NEXT:    ^bb0(%[[I:.*]]: index):
  // CHECK-NEXT:      memref.load %p[%[[I]]] : memref<?xi32>
  // CHECK:           cf.assert %{{.*}}, "ValueError: ik.sparse_matmul: indptr must be non-decreasing
  // CHECK:           scf.for
  // CHECK:             scf.for %[[K:[^ ]*]] = %{{.*}} to %{{.*}} step
  // CHECK-NEXT:          memref.load %d[%[[K]]] : memref<?xf64>
  // CHECK-NEXT:          memref.load %i[%[[K]]] : memref<?xi32>
  // CHECK:               cf.assert %{{.*}}, "IndexError: ik.sparse_matmul: a stored index is out of bounds
  // CHECK:               memref.load %M[%{{.*}}, %{{.*}}] : memref<?x?xf64>
  // CHECK:               arith.mulf
  // CHECK:               arith.addf
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
