// RUN: irkit-opt %s -p block-reductions | filecheck %s

// block-reductions (CPU pipeline): a reduction nest becomes, when it has at least two
// blocks, a parallel loop over blocks whose partial results a buffer holds, their
// combination in block order from the nest's own initial value, and the rest of the
// original loop after the blocks.

builtin.module {

  // a 1-d float32 sum accumulated in f64: blocks of 16384 elements, each from -0.0
  // CHECK-LABEL: func.func @sum(
  // CHECK:         %[[C0:.*]] = arith.constant 0 : index
  // CHECK:         %[[INIT:.*]] = arith.constant 0.000000e+00 : f64
  // CHECK:         %[[BLOCK:.*]] = arith.constant 16384 : index
  // CHECK-NEXT:    %[[BLOCKS:.*]] = arith.divsi %{{.*}}, %[[BLOCK]] : index
  // CHECK-NEXT:    %[[TWO:.*]] = arith.constant 2 : index
  // CHECK-NEXT:    %[[ENOUGH:.*]] = arith.cmpi sge, %[[BLOCKS]], %[[TWO]] : index
  // CHECK-NEXT:    %[[TOTAL:.*]] = scf.if %[[ENOUGH]] -> (f64) {
  // CHECK-NEXT:      %[[P:.*]] = memref.alloc(%[[BLOCKS]]) {alignment = 64 : i64} : memref<?xf64>
  // CHECK-NEXT:      "scf.parallel"(%[[Z:.*]], %[[BLOCKS]], %[[O:.*]]) <{
  // CHECK-NEXT:      ^{{.*}}(%[[B:.*]]: index):
  // CHECK-NEXT:        %[[OFF:.*]] = arith.muli %[[B]], %[[BLOCK]] : index
  // CHECK-NEXT:        %[[START:.*]] = arith.addi %[[C0]], %[[OFF]] : index
  // CHECK-NEXT:        %[[ID:.*]] = arith.constant -0.000000e+00 : f64
  // CHECK-NEXT:        %[[Q:.*]] = scf.for %[[J:.*]] = %[[Z]] to %[[BLOCK]] step %[[O]] iter_args(%[[A:.*]] = %[[ID]]) -> (f64) {
  // CHECK-NEXT:          %[[I:.*]] = arith.addi %[[START]], %[[J]] : index
  // CHECK-NEXT:          memref.load %x[%[[I]]] : memref<?xf32>
  // CHECK:               arith.addf %[[A]], %{{.*}} fastmath<reassoc> : f64
  // CHECK:             memref.store %[[Q]], %[[P]][%[[B]]] : memref<?xf64>
  // CHECK-NEXT:        scf.reduce
  // CHECK:           %[[SUM:.*]] = scf.for %[[K:.*]] = %[[Z]] to %[[BLOCKS]] step %[[O]] iter_args(%[[S:.*]] = %[[INIT]]) -> (f64) {
  // CHECK-NEXT:        %[[V:.*]] = memref.load %[[P]][%[[K]]] : memref<?xf64>
  // CHECK-NEXT:        %[[W:.*]] = arith.addf %[[S]], %[[V]] fastmath<reassoc> : f64
  // CHECK-NEXT:        scf.yield %[[W]] : f64
  // CHECK:           memref.dealloc %[[P]] : memref<?xf64>
  // CHECK-NEXT:      scf.yield %[[SUM]] : f64
  // CHECK-NEXT:    } else {
  // CHECK-NEXT:      scf.yield %[[INIT]] : f64
  // CHECK:         %[[PAST:.*]] = arith.addi %[[C0]], %{{.*}} : index
  // CHECK-NEXT:    %[[REST:.*]] = arith.select %[[ENOUGH]], %[[PAST]], %[[C0]] : index
  // CHECK-NEXT:    scf.for %{{.*}} = %[[REST]] to %n step %{{.*}} iter_args(%{{.*}} = %[[TOTAL]]) -> (f64) {
  func.func @sum(%x: memref<?xf32>, %o: memref<f32>) {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %n = memref.dim %x, %c0 : memref<?xf32>
    %init = arith.constant 0.000000e+00 : f64
    %s = scf.for %i = %c0 to %n step %c1 iter_args(%a = %init) -> (f64) {
      %v = memref.load %x[%i] : memref<?xf32>
      %w = arith.extf %v : f32 to f64
      %u = arith.addf %a, %w fastmath<reassoc> : f64
      scf.yield %u : f64
    }
    %r = arith.truncf %s : f64 to f32
    memref.store %r, %o[] : memref<f32>
    func.return
  }

  // a 2-d max: a block holds whole rows, ceil(16384 / row length) of them; the identity
  // of maximumf is -inf
  // CHECK-LABEL: func.func @max_2d(
  // CHECK:         %[[M:.*]] = arith.maxsi %{{.*}}, %{{.*}} : index
  // CHECK:         %[[ROWS:.*]] = arith.ceildivsi %{{.*}}, %{{.*}} : index
  // CHECK:         "scf.parallel"
  // CHECK:           arith.constant 0xfff0000000000000 : f64
  // CHECK-NEXT:      scf.for %{{.*}} = %{{.*}} to %[[ROWS]] step
  // CHECK:             scf.for
  // CHECK:               arith.maximumf
  func.func @max_2d(%x: memref<?x?xf64>, %o: memref<f64>) {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %n = memref.dim %x, %c0 : memref<?x?xf64>
    %m = memref.dim %x, %c1 : memref<?x?xf64>
    %init = arith.constant 0xFFF0000000000000 : f64
    %s = scf.for %i = %c0 to %n step %c1 iter_args(%a = %init) -> (f64) {
      %t = scf.for %j = %c0 to %m step %c1 iter_args(%b = %a) -> (f64) {
        %v = memref.load %x[%i, %j] : memref<?x?xf64>
        %u = arith.maximumf %b, %v : f64
        scf.yield %u : f64
      }
      scf.yield %t : f64
    }
    memref.store %s, %o[] : memref<f64>
    func.return
  }

  // an integer product: each block starts from 1
  // CHECK-LABEL: func.func @product(
  // CHECK:         "scf.parallel"
  // CHECK:           %[[ONE:.*]] = arith.constant 1 : i64
  // CHECK-NEXT:      scf.for %{{.*}} = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%{{.*}} = %[[ONE]]) -> (i64) {
  func.func @product(%x: memref<?xi64>, %o: memref<i64>) {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %n = memref.dim %x, %c0 : memref<?xi64>
    %init = arith.constant 1 : i64
    %s = scf.for %i = %c0 to %n step %c1 iter_args(%a = %init) -> (i64) {
      %v = memref.load %x[%i] : memref<?xi64>
      %u = arith.muli %a, %v : i64
      scf.yield %u : i64
    }
    memref.store %s, %o[] : memref<i64>
    func.return
  }

  // a size known to give fewer than two blocks stays one loop
  // CHECK-LABEL: func.func @small(
  // CHECK-NOT:     scf.parallel
  // CHECK:         scf.for
  // CHECK-NOT:     scf.parallel
  // CHECK:         func.return
  func.func @small(%x: memref<1000xf64>, %o: memref<f64>) {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %n = arith.constant 1000 : index
    %init = arith.constant 0.000000e+00 : f64
    %s = scf.for %i = %c0 to %n step %c1 iter_args(%a = %init) -> (f64) {
      %v = memref.load %x[%i] : memref<1000xf64>
      %u = arith.addf %a, %v fastmath<reassoc> : f64
      scf.yield %u : f64
    }
    memref.store %s, %o[] : memref<f64>
    func.return
  }

  // without reassoc a float sum keeps its order; a row's reduction in a parallel loop's
  // body (already on a thread of the pool) stays as it is
  // CHECK-LABEL: func.func @not_rewritten(
  // CHECK:         scf.for
  // CHECK-NOT:     memref.alloc
  // CHECK:         "scf.parallel"
  // CHECK-NEXT:    ^{{.*}}(%{{.*}}: index):
  // CHECK-NEXT:      scf.for
  // CHECK-NOT:       "scf.parallel"
  func.func @not_rewritten(%x: memref<?x?xf64>, %o: memref<f64>, %rows: memref<?xf64>) {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %n = memref.dim %x, %c0 : memref<?x?xf64>
    %m = memref.dim %x, %c1 : memref<?x?xf64>
    %init = arith.constant 0.000000e+00 : f64
    %s = scf.for %i = %c0 to %n step %c1 iter_args(%a = %init) -> (f64) {
      %v = memref.load %x[%i, %c0] : memref<?x?xf64>
      %u = arith.addf %a, %v : f64
      scf.yield %u : f64
    }
    memref.store %s, %o[] : memref<f64>
    "scf.parallel"(%c0, %n, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
    ^bb0(%i: index):
      %t = scf.for %j = %c0 to %m step %c1 iter_args(%b = %init) -> (f64) {
        %v = memref.load %x[%i, %j] : memref<?x?xf64>
        %u = arith.addf %b, %v fastmath<reassoc> : f64
        scf.yield %u : f64
      }
      memref.store %t, %rows[%i] : memref<?xf64>
      scf.reduce
    }) : (index, index, index) -> ()
    func.return
  }
}
